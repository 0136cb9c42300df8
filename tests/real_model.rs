//! A real run with the embedded SmolLM2-135M GGUF through mistral.rs (installed by scripts/setup.sh).
//! Whether the tiny model solves the task is not the point; the run must complete without a crash, log
//! every model turn, decode only valid tool calls, and change nothing outside its worktree. Once with the
//! GGUF file, once with the same model as a safetensors folder quantised in place (`--isq`).
#![cfg(feature = "embedded")]

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::*;

#[test]
fn embedded_smollm2_run_completes_and_touches_nothing_outside_the_worktree() {
    let model = installed_model();
    run_and_check(&[model.into()]);
}

#[test]
fn a_safetensors_folder_with_in_situ_quantisation_runs_the_same_way() {
    let folder = installed_model_folder();
    run_and_check(&[folder.into(), "--isq".into(), "Q8_0".into()]);
}

/// `agent run --model MODEL_ARGS...` on the bundled example, and every check of the module comment.
fn run_and_check(model_args: &[OsString]) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks/examples");
    let files: Vec<(String, String)> = ["greet.py", "greet_test.py"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(example.join("hello-repo").join(f)).unwrap(),
            )
        })
        .collect();
    let repo = repo_with(&files);
    let before = user_state(repo.path());
    let home = tempfile::tempdir().unwrap();

    let output = agent(home.path())
        .args(["run", "--json", "--max-turns", "4", "--model"])
        .args(model_args)
        .arg("--task-file")
        .arg(example.join("hello.md"))
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    let code = output.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "the run crashed or was misconfigured: {}",
        describe(&output)
    );
    let events = events(&output);
    let finished = of_kind(&events, "finished");
    assert_eq!(finished.len(), 1, "{}", describe(&output));
    let finished = finished[0];
    assert_ne!(finished["outcome"], "model_failed", "{}", describe(&output));

    // Every model turn is logged, with real token counts, and every call names a real tool.
    let turns = of_kind(&events, "model_turn");
    assert_eq!(
        turns.len() as u64,
        finished["turns"].as_u64().unwrap(),
        "{}",
        describe(&output)
    );
    assert!(!turns.is_empty());
    for turn in &turns {
        assert!(
            turn["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{turn}"
        );
    }
    let calls = assert_calls_fit_their_schemas(&events);
    assert_eq!(
        calls.first().map(String::as_str),
        Some("plan"),
        "a run starts with its plan"
    );
    // The same events were written to the run log.
    let started = of_kind(&events, "run_started")[0];
    let log = std::fs::read_to_string(started["log"].as_str().unwrap()).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"event\":\"model_turn\""))
            .count(),
        turns.len()
    );

    assert_eq!(
        user_state(repo.path()),
        before,
        "the user's checkout changed"
    );
    let branches = git(repo.path(), &["branch", "--list", "agent/*"]);
    let commits = finished["commits"].as_array().unwrap().len();
    assert_eq!(
        branches.is_empty(),
        commits == 0,
        "a branch exists exactly when a step was accepted: {branches}"
    );
}
