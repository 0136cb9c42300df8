//! Real runs with embedded models through mistral.rs (installed by scripts/setup.sh). Whether the model
//! solves the task is not the point; the run must complete without a crash, log every model turn,
//! decode only valid tool calls, and change nothing outside its worktree. SmolLM2-135M (a chat template
//! without tools: generic constrained calls) once as a GGUF file and once as a safetensors folder
//! quantised in place (`--isq`); the default Qwen2.5-Coder-1.5B in its own `<tool_call>` format under a
//! grammar.
#![cfg(feature = "embedded")]

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::*;

#[test]
fn embedded_smollm2_run_completes_and_touches_nothing_outside_the_worktree() {
    let model = installed_model();
    let events = run_and_check(&[model.into()], 4);
    assert_model(&events, "(embedded mistral.rs, constrained tool calls)");
}

#[test]
fn the_default_coder_model_calls_tools_in_its_own_format_under_a_grammar() {
    let model = installed_coder_model();
    let events = run_and_check(&[model.into()], 3);
    assert_model(
        &events,
        "(embedded mistral.rs, native <tool_call> format, constrained, code after the call)",
    );
}

/// The run says how the model's calls were decoded.
fn assert_model(events: &[serde_json::Value], how: &str) {
    let started = of_kind(events, "run_started")[0];
    let model = started["model"].as_str().unwrap();
    assert!(model.ends_with(how), "{model}");
}

#[test]
fn a_safetensors_folder_with_in_situ_quantisation_runs_the_same_way() {
    let folder = installed_model_folder();
    run_and_check(&[folder.into(), "--isq".into(), "Q8_0".into()], 4);
}

/// `agent run --model MODEL_ARGS...` on the bundled example for at most `turns` model turns, and every
/// check of the module comment. Returns the run's events.
fn run_and_check(model_args: &[OsString], turns: usize) -> Vec<serde_json::Value> {
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
        .args([
            "run",
            "--json",
            "--max-turns",
            &turns.to_string(),
            "--model",
        ])
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
    events
}
