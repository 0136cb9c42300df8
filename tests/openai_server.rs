//! The OpenAI-compatible backend against a real server on 127.0.0.1: llama-cpp-python (installed by
//! scripts/setup.sh) serving the same SmolLM2 GGUF as the embedded backend. Constrained mode goes
//! through the server's grammar (`response_format`), so every turn must be a valid call.

mod common;

use agent::model::{Message, ModelOptions, ModelSpec, ToolCallMode};

use common::*;

#[test]
fn real_server_turns_are_valid_calls_and_a_run_completes() {
    let model = installed_model();
    let logs = tempfile::tempdir().unwrap();
    let mut server = LlamaServer::start(&model, logs.path());
    let spec = ModelSpec::parse(Some(&format!("openai:{}#smollm2", server.url))).unwrap();
    let options = ModelOptions {
        tool_calls: ToolCallMode::Constrained,
        prefix_cache: true,
        ..ModelOptions::default()
    };
    let mut backend = spec.load(&options).unwrap();
    assert!(backend.describe().contains("OpenAI-compatible"));
    let specs = agent::tools::specs();
    let mut messages = vec![
        Message::system(agent::agent::prompt::system(&specs)),
        Message::user("Add a function `double(x: i32) -> i32` to src/lib.rs.\n\nFiles in the repository:\nCargo.toml\nsrc/lib.rs"),
    ];
    for turn in 1..=4 {
        let reply = backend
            .complete(&messages, &specs)
            .unwrap_or_else(|e| panic!("turn {turn}: {e}\n{}", server.log_tail()));
        assert_eq!(reply.tool_calls.len(), 1, "turn {turn}: {reply:?}");
        let call = &reply.tool_calls[0];
        let spec = specs
            .iter()
            .find(|s| s.name == call.name)
            .unwrap_or_else(|| panic!("turn {turn}: a tool never offered: {call:?}"));
        assert_call_fits(spec, &call.arguments);
        println!("turn {turn}: {}({})", call.name, call.arguments);
        messages.push(Message::assistant(
            reply.content.clone(),
            reply.tool_calls.clone(),
        ));
        messages.push(Message::tool_result(call, "ok"));
    }

    // The whole agent through the server.
    let repo = repo_with(&[("greet.py", "def greet(name):\n    return 'hi'\n")]);
    let before = user_state(repo.path());
    let home = tempfile::tempdir().unwrap();
    let output = agent(home.path())
        .args([
            "run",
            "make greet say hello",
            "--json",
            "--no-fetch",
            "--max-turns",
            "4",
        ])
        .args(["--model", &format!("openai:{}#smollm2", server.url)])
        .args(["--check", "true"])
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}\n{}",
        describe(&output),
        server.log_tail()
    );
    let events = events(&output);
    let finished = of_kind(&events, "finished");
    assert_eq!(finished.len(), 1, "{}", describe(&output));
    assert_ne!(
        finished[0]["outcome"],
        "model_failed",
        "{}",
        describe(&output)
    );
    let calls = assert_calls_fit_their_schemas(&events);
    assert_eq!(
        calls.len() as u64,
        finished[0]["turns"].as_u64().unwrap(),
        "every turn is logged: {}",
        describe(&output)
    );
    assert_eq!(
        calls.first().map(String::as_str),
        Some("plan"),
        "a run starts with its plan"
    );
    assert_eq!(user_state(repo.path()), before);
}
