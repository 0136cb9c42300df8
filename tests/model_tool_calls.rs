//! Zero malformed tool calls, measured on the real SmolLM2-135M GGUF through the embedded backend:
//! 50 agent-style turns (ten real tasks from ../shared/eval, five turns each, every call executed by
//! the real tools) must each parse into one call of a known tool whose arguments are valid against
//! that tool's JSON schema (checked by an independent validator, not by our parser). And the default
//! coder model, in its own `<tool_call>` format, writing a file and a patch as plain text after the call.
#![cfg(feature = "embedded")]

mod common;

use std::time::Duration;

use agent::agent::prompt;
use agent::model::{Message, ModelOptions, ModelSpec};
use agent::tools::{ToolContext, ToolOutput};

use common::*;

/// The tools' context for a model test: `root`, 20 s per command, 4 KiB of output.
fn tool_context<'a>(
    root: &'a std::path::Path,
    sandbox: &'a dyn agent::sandbox::Sandbox,
) -> ToolContext<'a> {
    ToolContext {
        root,
        sandbox,
        command_timeout: Duration::from_secs(20),
        output_limit: 4096,
        command_env: &[],
    }
}

const TASKS: usize = 10;
const TURNS_PER_TASK: usize = 5;

#[test]
fn fifty_turns_of_smollm2_are_all_valid_calls() {
    // The small test model (the default model is a 1.5B, too slow for 50 turns on a CI runner).
    let spec = ModelSpec::Gguf(installed_model());
    let mut model = spec
        .load(&ModelOptions {
            prefix_cache: true,
            ..ModelOptions::default()
        })
        .unwrap();
    let specs = agent::tools::specs();
    let validators: Vec<(String, jsonschema::Validator)> = specs
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                jsonschema::validator_for(&s.parameters).unwrap(),
            )
        })
        .collect();
    std::env::set_var("AGENT_SANDBOX_HELPER", env!("CARGO_BIN_EXE_agent"));
    let (sandbox, _) =
        agent::sandbox::select(agent::sandbox::Choice::Auto, Vec::new(), "default").unwrap();

    let mut tasks = eval_tasks("exercism-rust.jsonl");
    tasks.truncate(TASKS / 2);
    let mut python = eval_tasks("exercism-python.jsonl");
    python.truncate(TASKS - tasks.len());
    tasks.extend(python);

    let (mut total, mut valid, mut retried) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut used = std::collections::BTreeMap::<String, usize>::new();
    for task in &tasks {
        let dir = tempfile::tempdir().unwrap();
        let files = task_files(task, "files");
        for (path, content) in &files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        let root = dir.path().canonicalize().unwrap();
        let ctx = tool_context(&root, sandbox.as_ref());
        let listing: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        let step = agent::agent::PlanStep::whole_task(task["instructions"].as_str().unwrap());
        let mut messages = vec![
            Message::system(prompt::system(&specs)),
            Message::user(prompt::step_brief(&prompt::StepBrief {
                task: task["instructions"].as_str().unwrap(),
                agents_md: "",
                map: &listing.join("\n"),
                done: &[],
                step: &step,
                remaining: std::slice::from_ref(&step),
                number: 1,
                of: 1,
                check: task["test_command"].as_str(),
                failing_check: None,
                files_shown: "",
            })),
        ];
        for _ in 0..TURNS_PER_TASK {
            total += 1;
            // As the agent loop does: keep the conversation inside the window, shrinking once more by
            // the measured ratio when the backend's exact count says it is still too long.
            let window = model.context_window();
            agent::agent::context::fit(&mut messages, window).unwrap();
            let reply = match model.complete(&messages, &specs) {
                Err(agent::model::ModelError::ContextOverflow { needed, window }) => {
                    agent::agent::context::fit(&mut messages, window * window / needed).unwrap();
                    model.complete(&messages, &specs)
                }
                other => other,
            }
            .unwrap();
            retried += reply.usage.cut_off_retries;
            let verdict = match reply.tool_calls.as_slice() {
                [call] => match validators.iter().find(|(n, _)| *n == call.name) {
                    None => Err(format!("unknown tool {}", call.name)),
                    Some((_, v)) => v
                        .validate(&call.arguments)
                        .map_err(|e| format!("{}({}): {e}", call.name, call.arguments)),
                },
                calls => Err(format!("{} calls: {}", calls.len(), reply.content)),
            };
            println!(
                "{} turn {total}: {} prompt + {} generated tokens in {} ms: {}",
                task["id"],
                reply.usage.prompt_tokens,
                reply.usage.completion_tokens,
                reply.usage.elapsed_ms,
                reply
                    .tool_calls
                    .first()
                    .map_or("no call".to_string(), |c| format!(
                        "{}({})",
                        c.name, c.arguments
                    ))
                    .chars()
                    .take(120)
                    .collect::<String>()
            );
            match verdict {
                Ok(()) => valid += 1,
                Err(why) => failures.push(format!("{}: {why}", task["id"])),
            }
            messages.push(Message::assistant(
                reply.content.clone(),
                reply.tool_calls.clone(),
            ));
            let Some(call) = reply.tool_calls.first() else {
                messages.push(Message::user(prompt::NO_TOOL_CALL));
                continue;
            };
            *used.entry(call.name.clone()).or_default() += 1;
            let result = match agent::tools::call(&ctx, &call.name, &call.arguments) {
                Ok(ToolOutput::Text(text)) => text,
                Ok(ToolOutput::Finish(_)) => {
                    prompt::step_failed("The tests have not been run on a change yet.", 1, 3)
                }
                Err(e) => format!("error: {e}"),
            };
            messages.push(Message::tool_result(call, result));
        }
    }
    println!(
        "valid tool calls: {valid} of {total} (cut-off retries: {retried}); tools used: {used:?}"
    );
    assert_eq!(total, TASKS * TURNS_PER_TASK);
    assert_eq!(valid, total, "malformed or invalid calls: {failures:#?}");
}

/// One turn of the default coder model (Qwen2.5-Coder-1.5B) on a one-line bug, offered only `tool`:
/// the call it makes, executed by the real tool in a temp dir, and the file afterwards.
fn coder_fixes_calc_with(
    model: &mut Box<dyn agent::model::ChatModel>,
    tool: &str,
) -> (agent::model::ToolCall, String, String) {
    let buggy = "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a - b\n\n\ndef label(n):\n    return f\"total: {n}\"\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("calc.py"), buggy).unwrap();
    let specs: Vec<_> = agent::tools::specs()
        .into_iter()
        .filter(|s| s.name == tool)
        .collect();
    let messages = vec![
        Message::system(prompt::system(&specs)),
        Message::user(format!(
            "Task: the test of calc.py fails: `add(2, 3)` returns -1, it must return 5 (the sum). Fix `add` with {tool}.\n\ncalc.py:\n```python\n{buggy}```"
        )),
    ];
    let reply = model.complete(&messages, &specs).unwrap();
    println!("{tool}: {:?} {:?}", reply.content, reply.tool_calls);
    let [call] = reply.tool_calls.as_slice() else {
        panic!("one call expected: {reply:?}");
    };
    std::env::set_var("AGENT_SANDBOX_HELPER", env!("CARGO_BIN_EXE_agent"));
    let (sandbox, _) =
        agent::sandbox::select(agent::sandbox::Choice::None, Vec::new(), "default").unwrap();
    let root = dir.path().canonicalize().unwrap();
    let ctx = tool_context(&root, sandbox.as_ref());
    let result = match agent::tools::call(&ctx, &call.name, &call.arguments) {
        Ok(ToolOutput::Text(text)) => text,
        other => panic!("{tool} failed: {other:?}"),
    };
    let after = std::fs::read_to_string(root.join("calc.py")).unwrap();
    (call.clone(), result, after)
}

#[test]
fn the_coder_model_writes_code_and_patches_as_plain_text_after_its_call() {
    let mut model = ModelSpec::Gguf(installed_coder_model())
        .load(&ModelOptions {
            prefix_cache: true,
            ..ModelOptions::default()
        })
        .unwrap();
    assert!(
        model.describe().ends_with("code after the call)"),
        "{}",
        model.describe()
    );
    // The whole file back, quotes and line breaks as they are (no JSON escaping to get wrong).
    let (call, _, after) = coder_fixes_calc_with(&mut model, "write_file");
    assert_eq!(call.arguments["path"], "calc.py");
    assert!(after.contains("return a + b"), "{after}");
    assert!(after.contains("return f\"total: {n}\""), "{after}");
    assert!(after.contains("\"\"\"Return the sum"), "{after}");
    // A patch in the block applies to the file: a diff, or the whole corrected file (which this
    // model sends on some CPUs, its greedy path turning on the kernels' rounding), which apply_patch
    // takes as the new version of the one file it rewrites. Since prompt attention runs in f32 it
    // writes the fix as a context line around a no-op change (`return a + b` where the file has
    // `a - b`), which the matcher reads as a change of that one line (src/patch/matcher.rs).
    let (call, result, after) = coder_fixes_calc_with(&mut model, "apply_patch");
    let patch = call.arguments["patch"].as_str().unwrap();
    assert!(patch.contains("return a + b"), "{patch}");
    assert!(
        after.contains("return a + b") && !after.contains("a - b"),
        "{result}\n{after}"
    );
}

/// A withheld tool stays in the prompt (the same tokens, so the prefix cache keeps the conversation)
/// but cannot be called: asked to finish with `finish` withheld, the model calls something else.
#[test]
fn a_withheld_tool_is_rendered_but_cannot_be_called() {
    let mut model = ModelSpec::Gguf(installed_coder_model())
        .load(&ModelOptions {
            prefix_cache: true,
            ..ModelOptions::default()
        })
        .unwrap();
    let specs = agent::tools::specs();
    let messages = vec![
        Message::system(prompt::system(&specs)),
        Message::user(
            "calc.py is already correct and its tests pass. The step is done: call finish now with the summary \"nothing to change\".",
        ),
    ];
    let free = model.complete(&messages, &specs).unwrap();
    println!("offered: {:?} {:?}", free.content, free.tool_calls);
    assert_eq!(free.tool_calls[0].name, "finish", "{free:?}");
    let withheld: Vec<_> = specs
        .iter()
        .cloned()
        .map(|mut s| {
            s.withheld = s.name == "finish";
            s
        })
        .collect();
    let held = model.complete(&messages, &withheld).unwrap();
    println!("withheld: {:?} {:?}", held.content, held.tool_calls);
    assert_eq!(
        held.usage.prompt_tokens, free.usage.prompt_tokens,
        "the prompt changed when finish was withheld"
    );
    assert!(!held.tool_calls.is_empty(), "{held:?}");
    assert_ne!(held.tool_calls[0].name, "finish", "{held:?}");
}

/// A run's time limit bounds each reply: once the deadline is reached, a turn that would write a
/// long text or call stops after a few tokens, and is not decoded again with more room, instead of
/// spending its whole budget (on one CPU thread a 2,048-token turn ran a 600-s limit over by minutes).
#[test]
fn a_reply_is_bounded_by_the_time_left_to_the_run() {
    let mut model = ModelSpec::Gguf(installed_model())
        .load(&ModelOptions::default())
        .unwrap();
    let messages = vec![
        Message::system("You are a helpful assistant."),
        Message::user("Write a long story about a lighthouse keeper, at least 400 words."),
    ];
    let request = agent::model::ChatRequest {
        max_tokens: 300,
        shape: None,
    };
    let free = model.chat(&messages, &request).unwrap();
    assert!(free.usage.completion_tokens > 100, "{free:?}");
    model.set_deadline(Some(std::time::Instant::now()));
    let bounded = model.chat(&messages, &request).unwrap();
    assert!(bounded.usage.completion_tokens <= 32, "{bounded:?}");
    let specs = agent::tools::specs();
    let call = model
        .complete(
            &[
                Message::system(prompt::system(&specs)),
                Message::user(
                    "Create story.txt holding a long story (400 words) about a lighthouse keeper.",
                ),
            ],
            &specs,
        )
        .unwrap();
    println!("{call:?}");
    assert!(call.usage.completion_tokens <= 32, "{call:?}");
    assert_eq!(call.usage.cut_off_retries, 0, "{call:?}");
    // Without a deadline the next run's turns have their whole budget again.
    model.set_deadline(None);
    let again = model.chat(&messages, &request).unwrap();
    assert!(again.usage.completion_tokens > 100, "{again:?}");
}
