//! `kill -9` at 20 random points of a real run (replay model, real sandbox, real git), then `agent
//! resume`. After every kill: the user's checkout is byte-identical, the task branch holds only
//! commits whose own check passes on their tree, and `resume` completes the task.
//!
//! The kill points are drawn between the moment the run is recorded and the length of an
//! uninterrupted run; the seed is printed (set AGENT_KILL_SEED to repeat a sequence).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const STEPS: [(&str, &str, &str); 4] = [
    ("Add a", "a.txt", "test -f a.txt"),
    ("Add b", "b.txt", "grep -qx b b.txt"),
    ("Add c", "c.txt", "grep -qx c c.txt"),
    ("Add d", "d.txt", ""),
];
const TASK_CHECK: &str = "test -f a.txt && test -f b.txt && test -f c.txt && grep -qx d d.txt";

fn script(home: &Path) -> String {
    let steps: Vec<Value> = STEPS
        .iter()
        .map(|(title, _, check)| json!({"title": title, "intent": "", "files": [], "check": check}))
        .collect();
    let mut turns = vec![json!({"tool_calls": [{"name": "plan", "arguments": {"steps": steps}}]})];
    for (_, file, _) in STEPS {
        let content = format!("{}\n", &file[..1]);
        turns.push(
            json!({"tool_calls": [{"name": "read_file", "arguments": {"path": "README.md"}}]}),
        );
        turns.push(json!({"tool_calls": [{"name": "write_file", "arguments": {"path": file, "content": content}}]}));
        turns.push(json!({"tool_calls": [{"name": "finish", "arguments": {"summary": format!("{file} written")}}]}));
    }
    replay_script(home, json!(turns))
}

fn start(home: &Path, repo: &Path, model: &str) -> std::process::Child {
    agent(home)
        .args(["run", "write four files", "--json", "--no-fetch"])
        .args(["--model", model, "--check", TASK_CHECK, "--repo"])
        .arg(repo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Every commit on `branch` is a step of the run whose recorded check passes on the commit's own tree.
fn assert_only_verified_commits(repo: &Path, branch: &str) -> usize {
    if git(repo, &["branch", "--list", branch]).is_empty() {
        return 0;
    }
    let commits = git(repo, &["rev-list", "--reverse", &format!("main..{branch}")]);
    let mut count = 0;
    for commit in commits.lines() {
        let message = git(repo, &["log", "-1", "--format=%B", commit]);
        let check = message
            .lines()
            .find_map(|l| l.strip_prefix("Check: `"))
            .and_then(|l| l.strip_suffix("` passed"))
            .unwrap_or_else(|| {
                panic!("commit {commit} does not record a passed check:\n{message}")
            });
        assert!(message.contains("Agent-Step: "), "{message}");
        let tree = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "git -C {} archive {commit} | tar -x -C {} && cd {} && {check}",
                repo.display(),
                tree.path().display(),
                tree.path().display()
            ))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "commit {commit} fails its own check `{check}`"
        );
        count += 1;
    }
    count
}

#[test]
fn kill_9_at_twenty_random_points_then_resume_completes() {
    // An uninterrupted run, to know how long a run lasts.
    let home = tempfile::tempdir().unwrap();
    let repo = repo_with(&[("README.md", "four files\n")]);
    let model = script(home.path());
    let began = Instant::now();
    let status = start(home.path(), repo.path(), &model).wait().unwrap();
    let full = began.elapsed();
    assert!(status.success(), "the uninterrupted run failed");
    assert_eq!(
        assert_only_verified_commits(repo.path(), "agent/write-four-files"),
        4
    );

    let mut seed: u64 = std::env::var("AGENT_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!(
        "AGENT_KILL_SEED={seed}; an uninterrupted run takes {} ms",
        full.as_millis()
    );
    let mut committed_at_kill = Vec::new();
    for point in 0..20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let home = tempfile::tempdir().unwrap();
        let repo = repo_with(&[("README.md", "four files\n")]);
        let before = user_state(repo.path());
        let model = script(home.path());
        let mut child = start(home.path(), repo.path(), &model);
        // Wait until the run is recorded (it cannot be resumed before), then kill at a random moment.
        let runs = home.path().join("state/agent/runs");
        let waiting = Instant::now();
        while std::fs::read_dir(&runs)
            .map(|d| d.flatten().all(|e| !e.path().join("run.json").exists()))
            .unwrap_or(true)
        {
            assert!(
                waiting.elapsed() < Duration::from_secs(30),
                "the run never recorded itself"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let delay = Duration::from_micros((seed >> 11) % (full.as_micros() as u64).max(1));
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let branch = "agent/write-four-files";
        let landed = assert_only_verified_commits(repo.path(), branch);
        assert_eq!(
            user_state(repo.path()),
            before,
            "kill {point}: the checkout changed"
        );
        committed_at_kill.push(landed);

        let resumed = agent(home.path())
            .args(["resume", "last", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            resumed.status.code(),
            Some(0),
            "kill {point} after {} ms (run status {status:?}, {landed} step(s) committed): {}",
            delay.as_millis(),
            describe(&resumed)
        );
        assert_eq!(assert_only_verified_commits(repo.path(), branch), 4);
        assert_eq!(git(repo.path(), &["show", &format!("{branch}:d.txt")]), "d");
        assert_eq!(
            user_state(repo.path()),
            before,
            "resume {point}: the checkout changed"
        );
    }
    println!("steps committed when killed: {committed_at_kill:?}");
    // The point of the test is kills that land *after* some commits and before the last: a resume
    // from the middle of the plan. Twenty uniform delays over the run all missing that window would
    // mean the kills are not where the test says they are.
    assert!(
        committed_at_kill.iter().any(|&n| n > 0 && n < 4),
        "no kill landed between two commits: {committed_at_kill:?}"
    );
}
