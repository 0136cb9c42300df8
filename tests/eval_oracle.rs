//! `agent eval --oracle` over every task of ../shared/eval (Rust and Python): each task goes through
//! the whole loop — planner, executor, sandboxed check, commit, publish — with a replay model that plans
//! one step and writes the reference solution through the real tools, and is then judged with its
//! original tests restored. It measures the harness, not a model: everything must be solved, each with
//! its one verified commit on its branch.

mod common;

use std::path::Path;

use common::*;

fn eval_dir() -> std::path::PathBuf {
    std::env::var_os("AGENT_EVAL_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval"))
}

fn results(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_oracle_solves_every_eval_task_through_the_whole_loop() {
    let home = tempfile::tempdir().unwrap();
    for file in ["exercism-rust.jsonl", "exercism-python.jsonl"] {
        let out = home.path().join(file);
        let output = agent(home.path())
            .arg("eval")
            .arg(eval_dir().join(file))
            .args(["--oracle", "-j", "2", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("{file}:\n{stdout}");
        let tasks = eval_tasks(file).len();
        assert!(
            stdout.ends_with(&format!("{tasks} passed, 0 failed\n")),
            "{}",
            describe(&output)
        );
        assert_eq!(output.status.code(), Some(0));
        let results = results(&out);
        assert_eq!(results.len(), tasks);
        for r in &results {
            assert_eq!(r["solved"], true, "{r}");
            assert_eq!(r["outcome"], "finished", "{r}");
            assert_eq!(r["commits"], 1, "one verified commit on its branch: {r}");
            assert_eq!(r["steps_accepted"], 1, "{r}");
            assert!(r["error"].is_null(), "{r}");
        }
        assert!(stdout.contains("harness overhead"), "{stdout}");
    }
}

#[test]
fn eval_filters_limits_and_resumes_from_its_results() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out");
    let file = eval_dir().join("exercism-python.jsonl");
    let run = |extra: &[&str]| {
        agent(home.path())
            .arg("eval")
            .arg(&file)
            .args(["--oracle", "--filter", "*/b*", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&["--limit", "2"]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_eq!(results(&out).len(), 2);
    let second = run(&["--limit", "3"]);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("(2 already done"),
        "{}",
        describe(&second)
    );
    let ids: Vec<String> = results(&out)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "only the new task ran: {ids:?}");
    assert!(
        ids.iter().all(|id| id.starts_with("exercism-python/b")),
        "{ids:?}"
    );
    assert!(String::from_utf8_lossy(&second.stdout).ends_with("3 passed, 0 failed\n"));

    let none = agent(home.path())
        .arg("eval")
        .arg(&file)
        .args(["--oracle", "--filter", "nothing*"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", describe(&none));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no task in"));
}
