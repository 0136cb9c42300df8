//! The oracle run: every task of ../shared/eval (Rust and Python) through the whole loop — planner,
//! executor, sandboxed check, commit, publish — with a replay model that plans one step and writes the
//! task's reference solution through the real tools. It measures the harness, not a model: every task
//! must be solved, its commit on its branch. Prints "N passed, M failed".

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::*;
use serde_json::{json, Value};

/// The replay script that solves `task`: plan, write each reference file, finish.
fn oracle_script(task: &Value) -> Value {
    let files: Vec<String> = task["reference"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut turns = vec![
        json!({"content": "one step", "tool_calls": [{"name": "plan", "arguments": {"steps": [
            {"title": "Implement the solution", "intent": "Write the solution files.", "files": files, "check": ""}
        ]}}]}),
    ];
    for (path, content) in task["reference"].as_object().unwrap() {
        turns.push(json!({"content": format!("write {path}"), "tool_calls": [{"name": "write_file", "arguments": {"path": path, "content": content}}]}));
    }
    turns.push(json!({"tool_calls": [{"name": "finish", "arguments": {"summary": "reference solution written"}}]}));
    json!(turns)
}

/// `None` when solved, else why not.
fn solve(home: &std::path::Path, task: &Value) -> Option<String> {
    let id = task["id"].as_str().unwrap();
    let repo = repo_with(&task_files(task, "files"));
    let script_dir = tempfile::tempdir().unwrap();
    let model = replay_script(script_dir.path(), oracle_script(task));
    let output = agent(home)
        .args(["run", "--json", "--model", &model, "--check"])
        .arg(task["test_command"].as_str().unwrap())
        .arg(task["instructions"].as_str().unwrap())
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    if output.status.code() != Some(0) {
        let text = describe(&output);
        let tail = &text[text.floor_char_boundary(text.len().saturating_sub(1500))..];
        return Some(format!("{id}: exit {:?}\n{tail}", output.status.code()));
    }
    let events = events(&output);
    let branch = of_kind(&events, "finished")[0]["branch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let count = git(
        repo.path(),
        &["rev-list", "--count", &format!("main..{branch}")],
    );
    if count != "1" {
        return Some(format!("{id}: {count} commits on {branch:?}"));
    }
    for (path, content) in task["reference"].as_object().unwrap() {
        let landed = git(repo.path(), &["show", &format!("{branch}:{path}")]);
        if landed != content.as_str().unwrap().trim_end() {
            return Some(format!("{id}: {path} on {branch} is not the reference"));
        }
    }
    None
}

#[test]
fn every_eval_task_is_solved_by_the_oracle_through_the_whole_loop() {
    let mut tasks = eval_tasks("exercism-rust.jsonl");
    tasks.extend(eval_tasks("exercism-python.jsonl"));
    let home = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(task) = tasks.get(i) else { break };
                if let Some(why) = solve(home.path(), task) {
                    eprintln!("FAILED {why}");
                    failures.lock().unwrap().push(why);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!(
        "{} passed, {} failed",
        tasks.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} tasks failed:\n{}",
        failures.len(),
        tasks.len(),
        failures.join("\n\n")
    );
}
