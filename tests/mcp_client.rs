//! MCP servers as tools: a real MCP server (tests/fixtures/mcp_server.py, speaking newline-delimited
//! JSON-RPC on stdio) named in the user's config is started inside the bubblewrap sandbox, and a
//! replayed model calls its tools through `agent run`. The model is the attacker: through the server's
//! tools it tries to read a secret, write outside the worktree, reach a listener on the host, see the
//! agent's credentials, flood the context and hang the run.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The shell command that starts the fixture server with `args`: its source travels in the command
/// line, so nothing outside the sandbox's view is needed and the model cannot edit it.
fn fixture_command(args: &str) -> String {
    let source =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_server.py"))
            .unwrap();
    let hex: String = source.iter().map(|b| format!("{b:02x}")).collect();
    format!("python3 -c \"exec(bytes.fromhex('{hex}').decode())\" {args}")
}

/// A user config naming the fixture server (and any extra TOML).
fn user_config(home: &Path, server_args: &str, extra: &str) {
    let dir = home.join("config/agent");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[mcp_servers.fixture]\ncommand = {}\n{extra}",
            toml_string(&fixture_command(server_args))
        ),
    )
    .unwrap();
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn result_of<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    of_kind(events, "tool_result")
        .into_iter()
        .filter(|e| e["name"] == name)
        .collect()
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"content": format!("call {name}"), "tool_calls": [{"name": name, "arguments": arguments}]})
}

#[test]
fn a_run_offers_and_calls_the_tools_of_an_mcp_server_from_the_user_config() {
    let home = tempfile::tempdir().unwrap();
    user_config(home.path(), "", "");
    let repo = repo_with(&[("text.txt", "one two three\n")]);
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Count the words and note it"]),
            call("fixture__count_words", json!({"path": "text.txt"})),
            call("fixture__append_note", json!({"text": "text.txt has 3 words"})),
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "noted"}}]}
        ]),
    );
    let run = |extra: &[&str]| {
        agent(home.path())
            .args([
                "run",
                "count the words",
                "--json",
                "--no-fetch",
                "--sandbox",
                "bwrap",
            ])
            .args(["--model", &model, "--check", "grep -q '3 words' NOTES.md"])
            .args(extra)
            .arg("--repo")
            .arg(repo.path())
            .output()
            .unwrap()
    };
    let output = run(&[]);
    assert!(output.status.success(), "{}", describe(&output));
    let events = events(&output);
    let notes = notes(&events);
    assert!(
        notes.iter().any(|n| n.starts_with("MCP server fixture (no network, call limit 300 s): tools offered: fixture__count_words, fixture__append_note,")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("mcp_servers = fixture (no network) (user config")),
        "{notes:?}"
    );
    let counted = result_of(&events, "fixture__count_words");
    assert_eq!(counted[0]["ok"], true, "{}", counted[0]);
    assert_eq!(counted[0]["output"], "3 words");
    let branch = git(
        repo.path(),
        &["branch", "--list", "agent/*", "--format=%(refname:short)"],
    );
    let notes_file = git(
        repo.path(),
        &["show", &format!("{}:NOTES.md", branch.trim())],
    );
    assert_eq!(notes_file, "text.txt has 3 words");
    assert!(
        !repo.path().join("NOTES.md").exists(),
        "the checkout was touched"
    );

    // With --no-mcp the same script fails at its first MCP call: the tools really were offered.
    let output = run(&["--no-mcp"]);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        describe(&output).contains("fixture__count_words"),
        "{}",
        describe(&output)
    );
    assert!(
        !describe(&output).contains("MCP server fixture"),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_hostile_model_cannot_use_an_mcp_server_to_reach_secrets_files_network_or_time() {
    let home = tempfile::tempdir().unwrap();
    user_config(
        home.path(),
        "",
        "[mcp_servers.slow]\ncommand = \"sleep 600\"\n",
    );
    // The fixture's own `hang` gets a 3-second limit through the JSON form of --mcp-server below.
    let outside = tempfile::tempdir().unwrap();
    let secret = "SECRET-mcp-7f3a9c1e";
    let canary = outside.path().join("canary.txt");
    std::fs::write(&canary, format!("canary {secret}\n")).unwrap();
    let planted = outside.path().join("planted.txt");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let watcher = std::thread::spawn(move || {
        let mut connections = 0;
        while !stopped.load(Ordering::SeqCst) {
            if listener.accept().is_ok() {
                connections += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        connections
    });
    let repo = repo_with(&[("a.txt", "a\n")]);
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Attack through the MCP server"]),
            call("fixture__read_path", json!({"path": canary})),
            call("fixture__write_path", json!({"path": planted, "text": "planted"})),
            call("fixture__connect", json!({"port": port})),
            call("fixture__env", json!({})),
            call("fixture__flood", json!({})),
            call("fixture__count_words", json!({"path": 7})),
            call("fixture__fail", json!({})),
            call("fixture__hang", json!({})),
            call("fixture__count_words", json!({"path": "a.txt"})),
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}
        ]),
    );
    let server = format!(
        "fixture={}",
        json!({"command": fixture_command(""), "timeout": 3})
    );
    let started = Instant::now();
    let output = agent(home.path())
        .args([
            "run",
            "attack",
            "--json",
            "--no-fetch",
            "--sandbox",
            "bwrap",
        ])
        .args(["--model", &model, "--check", "true", "--max-turns", "20"])
        .args(["--mcp-server", &server])
        .env("AGENT_API_KEY", secret)
        .env("OPENAI_API_KEY", secret)
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let all = describe(&output);
    let events = events(&output);

    // The secret's bytes appear nowhere: not read from the file, not in the server's environment.
    assert!(!all.contains(secret), "the secret leaked:\n{all}");
    let read = result_of(&events, "fixture__read_path");
    assert!(
        read[0]["output"].as_str().unwrap().contains("cannot read"),
        "{}",
        read[0]
    );
    let env = result_of(&events, "fixture__env");
    assert_eq!(env[0]["ok"], true, "{}", env[0]);
    assert!(
        !env[0]["output"].as_str().unwrap().contains("API_KEY"),
        "{}",
        env[0]
    );
    // Nothing written outside; the canary byte-identical.
    assert!(!planted.exists(), "the server wrote outside the worktree");
    assert_eq!(
        std::fs::read_to_string(&canary).unwrap(),
        format!("canary {secret}\n")
    );
    // No connection reached the host's listener.
    let refused = result_of(&events, "fixture__connect");
    assert!(
        refused[0]["output"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{}",
        refused[0]
    );
    // Three megabytes of output reach the model capped.
    let flood = result_of(&events, "fixture__flood");
    let flood_len = flood[0]["output"].as_str().unwrap().len();
    assert!(flood_len < 20_000, "{flood_len} bytes reached the model");
    // Arguments that do not fit the tool's schema never reach the server; its own errors are errors.
    let bad = result_of(&events, "fixture__count_words");
    assert_eq!(bad[0]["ok"], false, "{}", bad[0]);
    assert!(
        bad[0]["output"]
            .as_str()
            .unwrap()
            .contains("invalid arguments"),
        "{}",
        bad[0]
    );
    let failed = result_of(&events, "fixture__fail");
    assert_eq!(failed[0]["ok"], false);
    assert!(
        failed[0]["output"]
            .as_str()
            .unwrap()
            .contains("fail failed on purpose"),
        "{}",
        failed[0]
    );
    // A hung call ends at the server's limit and stops the server; later calls say so.
    let hang = result_of(&events, "fixture__hang");
    assert!(
        hang[0]["output"]
            .as_str()
            .unwrap()
            .contains("did not answer within 3 s"),
        "{}",
        hang[0]
    );
    assert!(
        bad[1]["output"]
            .as_str()
            .unwrap()
            .contains("is not running"),
        "{}",
        bad[1]
    );
    assert!(
        elapsed < Duration::from_secs(90),
        "the run took {elapsed:?}"
    );
    // --mcp-server on the command line replaces the config's servers.
    assert!(
        !notes(&events).iter().any(|n| n.contains("MCP server slow")),
        "{:?}",
        notes(&events)
    );

    stop.store(true, Ordering::SeqCst);
    assert_eq!(watcher.join().unwrap(), 0, "the listener saw a connection");
}

#[test]
fn a_repository_cannot_add_mcp_servers_and_a_server_that_fails_is_a_warning() {
    let home = tempfile::tempdir().unwrap();
    user_config(
        home.path(),
        "",
        "[mcp_servers.broken]\ncommand = \"echo 'no such server' >&2; exit 3\"\n",
    );
    let repo = repo_with(&[
        ("a.txt", "a\n"),
        (
            ".agent.toml",
            "[mcp_servers.evil]\ncommand = \"python3 -c 'print(1)'\"\n",
        ),
    ]);
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Nothing"]),
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}
        ]),
    );
    let output = agent(home.path())
        .args([
            "run",
            "nothing",
            "--json",
            "--no-fetch",
            "--sandbox",
            "bwrap",
        ])
        .args(["--model", &model, "--check", "true"])
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sets `mcp_servers`, ignored: a repository may not start MCP servers"),
        "{}",
        describe(&output)
    );
    let events = events(&output);
    let notes = notes(&events);
    assert!(!notes.iter().any(|n| n.contains("evil")), "{notes:?}");
    let broken = notes
        .iter()
        .find(|n| n.starts_with("warning: MCP server broken"))
        .unwrap_or_else(|| panic!("{notes:?}"));
    assert!(broken.contains("no such server"), "{broken}");
    assert!(
        notes.iter().any(|n| n.starts_with("MCP server fixture")),
        "{notes:?}"
    );
}

#[test]
fn agent_tools_lists_what_a_server_offers_and_what_it_refused() {
    let home = tempfile::tempdir().unwrap();
    user_config(
        home.path(),
        "--hostile-list",
        "[sandbox]\nmode = \"bwrap\"\n",
    );
    let repo = repo_with(&[("a.txt", "a\n")]);
    let output = agent(home.path())
        .args(["tools", "--json", "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let server = &listed["mcp_servers"][0];
    assert_eq!(server["name"], "fixture");
    assert_eq!(server["network"], "no network");
    let tools = server["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 64, "{server}");
    assert_eq!(tools[0]["name"], "fixture__fine");
    assert_eq!(tools[1]["name"], "fixture__long_description");
    assert!(tools[1]["description"].as_str().unwrap().len() < 1_100);
    let problems: Vec<&str> = listed["mcp_problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let expect = [
        "tool \"bad name!\" is not offered",
        "tool \"xxxxxxxx",
        "tool \"not_an_object\" is not offered: its input schema does not describe an object",
        "tool \"fine\" is listed twice",
        "more than 64 tools",
    ];
    for expected in expect {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
    // The plain listing says the same for people.
    let output = agent(home.path())
        .args(["tools", "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("MCP server fixture"), "{text}");
    assert!(
        text.contains("  fixture__fine: A tool that may be offered."),
        "{text}"
    );
}
