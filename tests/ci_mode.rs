//! CI mode end to end: a recorded GitHub issue event → `agent run --github-event --pr` with the replay
//! model → the task branch pushed to a real bare remote (file:// and a `git daemon` on 127.0.0.1) →
//! a draft pull request through a local HTTP server implementing the GitHub endpoints used. Also the
//! idempotent re-run and the refusals.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

/// A request the fake GitHub saw: method, path with query, JSON body, headers.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Value,
    headers: Vec<String>,
}

/// A minimal GitHub: `GET /repos/{o}/{r}/pulls?head=&state=open`, `POST .../pulls`,
/// `PATCH .../pulls/{n}`, keeping the pulls it created.
fn fake_github() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut pulls: Vec<Value> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let HttpRequest {
                method,
                path,
                headers,
                body,
            } = read_http_request(&stream);
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock().unwrap().push(Seen {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
                headers,
            });
            let (status, reply) = match method.as_str() {
                "GET" if path.starts_with("/repos/octo/proj/pulls?") => {
                    let head = path
                        .split(['?', '&'])
                        .find_map(|p| p.strip_prefix("head="))
                        .unwrap_or("")
                        .replace("%3A", ":")
                        .replace("%2F", "/");
                    let open: Vec<&Value> = pulls
                        .iter()
                        .filter(|p| format!("octo:{}", p["head"]["ref"].as_str().unwrap()) == head)
                        .collect();
                    (200, json!(open))
                }
                "POST" if path == "/repos/octo/proj/pulls" => {
                    let number = pulls.len() as u64 + 1;
                    let pull = json!({"number": number, "html_url": format!("https://github.test/octo/proj/pull/{number}"),
                                      "draft": body["draft"], "title": body["title"], "body": body["body"],
                                      "head": {"ref": body["head"]}, "base": {"ref": body["base"]}});
                    pulls.push(pull.clone());
                    (201, pull)
                }
                "PATCH" if path.starts_with("/repos/octo/proj/pulls/") => {
                    let number: usize = path.rsplit('/').next().unwrap().parse().unwrap();
                    let pull = &mut pulls[number - 1];
                    pull["title"] = body["title"].clone();
                    pull["body"] = body["body"].clone();
                    (200, pull.clone())
                }
                _ => (404, json!({"message": "Not Found"})),
            };
            let text = reply.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

/// A bare repository holding `main` of `repo`, set as `repo`'s `origin`.
fn bare_origin(repo: &Path) -> tempfile::TempDir {
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare", "-b", "main"]);
    git(
        repo,
        &[
            "remote",
            "add",
            "origin",
            &format!("file://{}", bare.path().display()),
        ],
    );
    git(repo, &["push", "-q", "origin", "main"]);
    bare
}

fn issue_event(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("event.json");
    std::fs::write(
        &path,
        json!({
            "action": "labeled",
            "label": {"name": "agent"},
            "issue": {"number": 12, "title": "Write the notes", "body": "NOTES.md should say hello.",
                      "labels": [{"name": "agent"}]},
            "repository": {"full_name": "octo/proj", "default_branch": "main"}
        })
        .to_string(),
    )
    .unwrap();
    path
}

fn write_and_finish(path: &str, content: &str) -> Value {
    json!([
        plan_turn(&[&format!("Write {path}")]),
        {"content": format!("write {path}"), "tool_calls": [{"name": "write_file", "arguments": {"path": path, "content": content}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": format!("{path} written")}}]}
    ])
}

#[test]
fn an_issue_event_becomes_a_draft_pull_request_and_a_rerun_updates_it() {
    let repo = repo_with(&[("README.md", "a project\n")]);
    let origin = bare_origin(repo.path());
    let before = user_state(repo.path());
    let home = tempfile::tempdir().unwrap();
    let event = issue_event(home.path());
    let (api, seen) = fake_github();
    let body_out = home.path().join("pr.md");
    let run = |script: Value| {
        let model = replay_script(home.path(), script);
        agent(home.path())
            .env("GITHUB_TOKEN", "ghs_test")
            .env("GITHUB_REPOSITORY", "octo/proj")
            .env("GITHUB_API_URL", &api)
            .env("CI", "true")
            .args(["run", "--json", "--no-fetch", "--pr", "--model", &model])
            .args(["--check", "test -f NOTES.md", "--github-event"])
            .arg(&event)
            .arg("--pr-body-out")
            .arg(&body_out)
            .arg("--repo")
            .arg(repo.path())
            .output()
            .unwrap()
    };

    let first = run(write_and_finish("NOTES.md", "hello\n"));
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let events = events(&first);
    let pr = of_kind(&events, "pull_request")[0];
    assert_eq!(pr["url"], "https://github.test/octo/proj/pull/1", "{pr}");
    assert_eq!(pr["created"], true);
    assert_eq!(pr["branch"], "agent/issue-12");
    assert_eq!(
        git(origin.path(), &["show", "agent/issue-12:NOTES.md"]),
        "hello",
        "the branch was pushed"
    );
    let requests = seen.lock().unwrap().clone();
    let create = requests.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(create.path, "/repos/octo/proj/pulls");
    assert_eq!(create.body["draft"], true);
    assert_eq!(create.body["head"], "agent/issue-12");
    assert_eq!(create.body["base"], "main");
    assert_eq!(create.body["title"], "Write the notes (#12)");
    let body = create.body["body"].as_str().unwrap();
    assert!(body.starts_with("Closes #12."), "{body}");
    assert!(
        body.contains("| 1 | Write NOTES.md |") && body.contains("`test -f NOTES.md` passed"),
        "{body}"
    );
    assert_eq!(std::fs::read_to_string(&body_out).unwrap(), body);
    assert!(create
        .headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("authorization: Bearer ghs_test")));
    assert!(create
        .headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("x-github-api-version:")));

    // The same issue again: the branch gets a new commit on top, the same pull request a new body.
    let second = run(write_and_finish("MORE.md", "more\n"));
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    let pr = of_kind(&events_of(&second), "pull_request")[0].clone();
    assert_eq!(pr["created"], false, "{pr}");
    assert_eq!(pr["number"], 1);
    assert_eq!(
        git(
            origin.path(),
            &["rev-list", "--count", "main..agent/issue-12"]
        ),
        "2",
        "fast-forwarded, not replaced"
    );
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.iter().filter(|r| r.method == "POST").count(), 1);
    let patch = requests.iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(patch.path, "/repos/octo/proj/pulls/1");
    assert!(patch.body["body"]
        .as_str()
        .unwrap()
        .contains("Write MORE.md"));
    // Like `git push`, the push records where the remote's task branch now is; nothing else changed.
    let mut after = user_state(repo.path());
    after.retain(|k, _| !k.starts_with("ref refs/remotes/origin/agent/issue-12 "));
    assert_eq!(after, before, "the checkout is untouched");
}

fn events_of(output: &std::process::Output) -> Vec<Value> {
    events(output)
}

#[test]
fn foreign_branches_and_empty_runs_open_nothing() {
    let repo = repo_with(&[("README.md", "a project\n")]);
    let origin = bare_origin(repo.path());
    let home = tempfile::tempdir().unwrap();
    let event = issue_event(home.path());
    let body_out = home.path().join("pr.md");
    let run = |script: Value, check: &str| {
        let model = replay_script(home.path(), script);
        agent(home.path())
            .env_remove("GITHUB_TOKEN")
            .args([
                "run",
                "--json",
                "--no-fetch",
                "--pr",
                "--model",
                &model,
                "--check",
                check,
            ])
            .arg("--github-event")
            .arg(&event)
            .arg("--pr-body-out")
            .arg(&body_out)
            .arg("--repo")
            .arg(repo.path())
            .output()
            .unwrap()
    };

    // Nothing accepted: no push, no PR, exit 1, and a comment-ready explanation.
    let failing = run(write_and_finish("NOTES.md", "hello\n"), "false");
    assert_eq!(failing.status.code(), Some(1), "{}", describe(&failing));
    assert!(of_kind(&events(&failing), "pull_request").is_empty());
    let explanation = std::fs::read_to_string(&body_out).unwrap();
    assert!(
        explanation.contains("no pull request was opened"),
        "{explanation}"
    );
    assert!(git(origin.path(), &["branch", "--list", "agent/*"]).is_empty());

    // Someone else's commit on the remote's agent/issue-12: the agent does not touch it.
    git(repo.path(), &["checkout", "-q", "-b", "agent/issue-12"]);
    std::fs::write(repo.path().join("THEIRS.md"), "theirs\n").unwrap();
    git(repo.path(), &["add", "-A"]);
    git(
        repo.path(),
        &[
            "-c",
            "user.name=H",
            "-c",
            "user.email=h@e",
            "commit",
            "-q",
            "-m",
            "human work",
        ],
    );
    git(repo.path(), &["push", "-q", "origin", "agent/issue-12"]);
    git(repo.path(), &["checkout", "-q", "main"]);
    git(repo.path(), &["branch", "-q", "-D", "agent/issue-12"]);
    // A remote whose default branch is the task branch (it exists now): refused before any work.
    git(
        origin.path(),
        &["symbolic-ref", "HEAD", "refs/heads/agent/issue-12"],
    );
    let default = run(write_and_finish("NOTES.md", "hello\n"), "true");
    assert_ne!(default.status.code(), Some(0), "{}", describe(&default));
    assert!(
        String::from_utf8_lossy(&default.stderr).contains("is the default branch"),
        "{}",
        describe(&default)
    );
    git(origin.path(), &["symbolic-ref", "HEAD", "refs/heads/main"]);

    let foreign = run(write_and_finish("NOTES.md", "hello\n"), "true");
    assert_ne!(foreign.status.code(), Some(0), "{}", describe(&foreign));
    assert!(
        String::from_utf8_lossy(&foreign.stderr).contains("which the agent did not make"),
        "{}",
        describe(&foreign)
    );
    assert_eq!(
        git(
            origin.path(),
            &["log", "-1", "--format=%s", "agent/issue-12"]
        ),
        "human work"
    );
}

/// Stops `git daemon` and the daemon process it starts, even when the test fails (a daemon left
/// running would keep `cargo test`'s output pipe open).
struct Daemon(std::process::Child, std::path::PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.1) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_push_to_git_daemon_without_github_credentials_prints_the_gh_command() {
    let served = tempfile::tempdir().unwrap();
    let bare = served.path().join("proj.git");
    std::fs::create_dir(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let pid_file = served.path().join("daemon.pid");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Daemon(
        std::process::Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", served.path().display()))
            .arg(format!("--pid-file={}", pid_file.display()))
            .arg(served.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon"),
        pid_file.clone(),
    );
    let url = format!("git://127.0.0.1:{port}/proj.git");
    let repo = repo_with(&[("README.md", "a project\n")]);
    // Wait for the daemon to listen, then give it main.
    let mut pushed = false;
    for _ in 0..100 {
        let status = std::process::Command::new("git")
            .args(["push", "-q", &url, "main"])
            .current_dir(repo.path())
            .status()
            .unwrap();
        if status.success() {
            pushed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(pushed, "git daemon did not come up");
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(home.path(), write_and_finish("NOTES.md", "hello\n"));
    let output = agent(home.path())
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_REPOSITORY")
        .args([
            "run",
            "write the notes",
            "--json",
            "--no-fetch",
            "--pr",
            "--model",
            &model,
        ])
        .args(["--check", "test -f NOTES.md", "--remote", &url, "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    drop(daemon);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let pr = of_kind(&events(&output), "pull_request")[0].clone();
    let command = pr["command"].as_str().unwrap();
    assert!(
        command.starts_with("gh pr create --draft --head 'agent/write-the-notes' --base 'main'"),
        "{command}"
    );
    assert_eq!(
        git(&bare, &["show", "agent/write-the-notes:NOTES.md"]),
        "hello"
    );
}
