//! What `--model` accepts, end to end through the binary: clear refusals (exit 2) for what cannot
//! work, and hub ids resolved from the Hugging Face cache when HF_HUB_OFFLINE is set.

mod common;

use std::path::Path;

use common::*;

fn run_with_model(home: &Path, repo: &Path, model: &str) -> std::process::Output {
    agent(home)
        .env("HF_HOME", home.join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .args(["run", "say hi", "--json", "--no-fetch", "--max-turns", "1"])
        .args(["--check", "true", "--model", model])
        .arg("--repo")
        .arg(repo)
        .output()
        .unwrap()
}

#[test]
fn unusable_models_are_refused_with_what_to_do() {
    let repo = repo_with(&[("a.txt", "a\n")]);
    let home = tempfile::tempdir().unwrap();
    for (model, says) in [
        (
            "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smol.gguf",
            "not in the Hugging Face cache",
        ),
        ("hf:HuggingFaceTB/SmolLM2-135M-Instruct", "HF_HUB_OFFLINE"),
        (
            "Qwen/Qwen2.5-Coder-7B-Instruct",
            "hf:Qwen/Qwen2.5-Coder-7B-Instruct",
        ),
        ("./nope.gguf", "no such file"),
        ("openai:localhost:11434", "http://"),
    ] {
        let output = run_with_model(home.path(), repo.path(), model);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{model}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{model}: {stderr}");
    }
}

/// A hub id whose file is in the HF cache loads offline, with no network and no token.
#[cfg(feature = "embedded")]
#[test]
fn a_cached_hub_gguf_loads_offline() {
    let model = installed_model();
    let home = tempfile::tempdir().unwrap();
    let cached = home
        .path()
        .join("hf/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF");
    let snapshot = cached.join("snapshots/0123456789abcdef");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(cached.join("refs")).unwrap();
    std::fs::write(cached.join("refs/main"), "0123456789abcdef").unwrap();
    std::os::unix::fs::symlink(&model, snapshot.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let repo = repo_with(&[("a.txt", "a\n")]);
    let output = run_with_model(
        home.path(),
        repo.path(),
        "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
    );
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        describe(&output)
    );
    let events = events(&output);
    let started = of_kind(&events, "run_started");
    assert!(
        started[0]["model"]
            .as_str()
            .unwrap()
            .contains("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        of_kind(&events, "model_turn").len(),
        1,
        "{}",
        describe(&output)
    );
}
