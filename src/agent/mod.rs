//! The agent loop: the one place that decides what happens next.
//!
//! Each turn the model sees the conversation and the tools and answers with tool calls. The tools act in
//! the workspace. After a turn that changed files the check runs: a pass is an accepted step, committed
//! and published to the task branch; a failure goes back to the model. `finish` ends the run only when the
//! check passes. The loop emits events and never prints.

mod context;
pub mod prompt;
pub mod verify;

use std::time::{Duration, Instant};

use crate::model::{ChatModel, Message, ModelError};
use crate::report::{first_line, Event, Outcome, Reporter};
use crate::sandbox::Sandbox;
use crate::tools::{self, ToolContext, ToolOutput};
use crate::vcs::{VcsError, Workspace};

pub use verify::Check;

/// Refused finishes in a row, with no edit between them, before the run stops.
const MAX_REFUSED_FINISHES: usize = 3;

/// Limits and options of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub task: String,
    pub check: Option<Check>,
    /// Most model turns.
    pub max_turns: usize,
    pub command_timeout: Duration,
    pub check_timeout: Duration,
    /// Most bytes of one tool output shown to the model.
    pub output_limit: usize,
    /// Extra environment for commands and checks.
    pub command_env: Vec<(String, String)>,
    /// Publish accepted commits to the user's repository (false for a dry run).
    pub publish: bool,
    pub run_id: String,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: Outcome,
    pub summary: String,
    pub turns: usize,
}

/// Drive `model` until it finishes with a passing check, or the budget runs out.
pub fn run(
    config: &RunConfig,
    model: &mut dyn ChatModel,
    workspace: &mut Workspace,
    sandbox: &dyn Sandbox,
    reporter: &mut dyn Reporter,
) -> Result<RunResult, VcsError> {
    let specs = tools::specs();
    let check_cmd = config.check.as_ref().map(|c| c.command.as_str());
    let root = workspace.root().to_path_buf();
    let ctx = ToolContext {
        root: &root,
        sandbox,
        command_timeout: config.command_timeout,
        output_limit: config.output_limit,
        command_env: &config.command_env,
    };
    // The file list spares the model a first turn of orientation (and tiny models from guessing).
    let files = match tools::call(&ctx, "list_files", &serde_json::json!({})) {
        Ok(ToolOutput::Text(listing)) => listing,
        _ => String::new(),
    };
    let mut messages = vec![
        Message::system(prompt::system(&specs, check_cmd)),
        Message::user(prompt::task(&config.task, &files)),
    ];
    let mut steps = 0usize;
    // None: no check has run on the current state of the worktree.
    let mut check_passing: Option<bool> = None;
    let mut last_failure = String::new();
    let mut previous_calls: Vec<String> = Vec::new();
    // Finishes refused since the last edit; a model that only repeats `finish` is going nowhere.
    let mut refused_finishes = 0usize;

    for turn in 1..=config.max_turns {
        match context::fit(&mut messages, model.context_window()) {
            Ok(0) => {}
            Ok(n) => reporter.event(&Event::Note {
                message: format!(
                    "context: elided {n} old tool output(s) to fit the model's window"
                ),
            }),
            Err(reason) => {
                return Ok(RunResult {
                    outcome: Outcome::ModelFailed,
                    summary: reason,
                    turns: turn - 1,
                })
            }
        }
        let mut answer = model.complete(&messages, &specs);
        if let Err(ModelError::ContextOverflow { needed, window }) = answer {
            // The backend counted exactly and the estimate was optimistic: shrink by the measured
            // ratio and try once more. A second overflow ends the run with the backend's message.
            let shrunk = window.saturating_mul(window) / needed.max(1);
            if let Ok(n) = context::fit(&mut messages, shrunk) {
                reporter.event(&Event::Note {
                    message: format!(
                        "context: the prompt needed {needed} of {window} tokens; elided {n} more old output(s)"
                    ),
                });
                answer = model.complete(&messages, &specs);
            }
        }
        let mut reply = match answer {
            Ok(reply) => reply,
            Err(e) => {
                return Ok(RunResult {
                    outcome: Outcome::ModelFailed,
                    summary: e.to_string(),
                    turns: turn - 1,
                })
            }
        };
        // Results are matched to calls by id; give every call one, whatever the backend did.
        for (i, call) in reply.tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call-{turn}-{i}");
            }
        }
        reporter.event(&Event::ModelTurn {
            turn,
            max_turns: config.max_turns,
            content: reply.content.clone(),
            tool_calls: reply.tool_calls.clone(),
            usage: reply.usage.clone(),
        });
        if reply.usage.cut_off_retries > 0 {
            reporter.event(&Event::Note {
                message: "the reply hit the token budget mid-call and was generated again with twice the room".into(),
            });
        }
        messages.push(Message::assistant(
            reply.content.clone(),
            reply.tool_calls.clone(),
        ));
        if reply.tool_calls.is_empty() {
            messages.push(Message::user(prompt::NO_TOOL_CALL));
            reporter.event(&Event::Note {
                message: "the model replied without a tool call; asked it to call one".into(),
            });
            continue;
        }

        let mut finish_summary = None;
        let mut may_have_edited = false;
        for call in &reply.tool_calls {
            reporter.event(&Event::ToolCall {
                turn,
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            let key = format!("{}:{}", call.name, call.arguments);
            let repeated = previous_calls.contains(&key) && !tools::may_edit(&call.name);
            previous_calls.push(key);
            let (ok, output) = match tools::call(&ctx, &call.name, &call.arguments) {
                Ok(ToolOutput::Text(text)) => (true, text),
                Ok(ToolOutput::Finish(summary)) => {
                    let text = format!("finish requested: {summary}");
                    finish_summary = Some(summary);
                    (true, text)
                }
                Err(e) => (false, format!("error: {e}")),
            };
            may_have_edited |= tools::may_edit(&call.name);
            reporter.event(&Event::ToolResult {
                turn,
                name: call.name.clone(),
                ok,
                output: output.clone(),
            });
            let shown = if repeated {
                format!("{output}\n\n{}", prompt::REPEATED_CALL)
            } else {
                output
            };
            messages.push(Message::tool_result(call, shown));
        }

        if may_have_edited && workspace.is_dirty()? {
            refused_finishes = 0;
            let title = step_title(&reply.content, &reply.tool_calls);
            match verify_and_commit(
                config,
                workspace,
                sandbox,
                reporter,
                turn,
                steps + 1,
                &title,
            )? {
                Verdict::Accepted => {
                    steps += 1;
                    check_passing = Some(true);
                    if let Some(cmd) = check_cmd {
                        messages.push(Message::user(prompt::check_passed(cmd, steps)));
                    }
                }
                Verdict::Rejected(report) => {
                    check_passing = Some(false);
                    last_failure = report.clone();
                    messages.push(Message::user(report));
                }
            }
        }

        if let Some(summary) = finish_summary {
            if check_passing.is_none() {
                // Nothing changed since the last check (or no check ran yet): check the state as it is.
                check_passing = Some(match &config.check {
                    Some(check) => {
                        match run_check(config, check, sandbox, &root, reporter, turn)? {
                            None => true,
                            Some(report) => {
                                last_failure = report;
                                false
                            }
                        }
                    }
                    None => true,
                });
            }
            if check_passing == Some(true) {
                return Ok(RunResult {
                    outcome: Outcome::Finished,
                    summary,
                    turns: turn,
                });
            }
            refused_finishes += 1;
            if refused_finishes >= MAX_REFUSED_FINISHES {
                return Ok(RunResult {
                    outcome: Outcome::CheckFailing,
                    summary: format!(
                        "stopped: the model tried to finish {refused_finishes} times without changing anything while the check fails"
                    ),
                    turns: turn,
                });
            }
            messages.push(Message::user(prompt::finish_refused(&last_failure)));
            reporter.event(&Event::Note {
                message: "finish refused: the check does not pass".into(),
            });
        }
    }
    let outcome = if check_passing == Some(false) {
        Outcome::CheckFailing
    } else {
        Outcome::BudgetExhausted
    };
    Ok(RunResult {
        outcome,
        summary: format!("stopped after {} turns", config.max_turns),
        turns: config.max_turns,
    })
}

enum Verdict {
    Accepted,
    Rejected(String),
}

/// Run the check on the changed worktree; on a pass commit the step and publish it.
fn verify_and_commit(
    config: &RunConfig,
    workspace: &mut Workspace,
    sandbox: &dyn Sandbox,
    reporter: &mut dyn Reporter,
    turn: usize,
    step: usize,
    title: &str,
) -> Result<Verdict, VcsError> {
    let root = workspace.root().to_path_buf();
    let verified = match &config.check {
        Some(check) => match run_check(config, check, sandbox, &root, reporter, turn)? {
            Some(report) => return Ok(Verdict::Rejected(report)),
            None => format!("Check: `{}` passed", check.command),
        },
        None => "Check: none configured (unverified)".to_string(),
    };
    let message = format!(
        "step {step}: {title}\n\n{verified}\n\nAgent-Step: {step}\nAgent-Run: {}\n",
        config.run_id
    );
    if let Some(oid) = workspace.commit_all(&message)? {
        if config.publish {
            workspace.publish()?;
        }
        reporter.event(&Event::Commit {
            step,
            commit: oid.to_string(),
            message,
        });
    }
    Ok(Verdict::Accepted)
}

/// Run the check; `None` when it passed, else the failure report for the model.
fn run_check(
    config: &RunConfig,
    check: &Check,
    sandbox: &dyn Sandbox,
    root: &std::path::Path,
    reporter: &mut dyn Reporter,
    turn: usize,
) -> Result<Option<String>, VcsError> {
    reporter.event(&Event::CheckStarted {
        turn,
        command: check.command.clone(),
    });
    let started = Instant::now();
    let (passed, status, output, report) = match verify::run_check(
        sandbox,
        root,
        check,
        config.check_timeout,
        &config.command_env,
    ) {
        Ok(outcome) => {
            let report = verify::failure_report(check, &outcome, 4000);
            (
                outcome.success(),
                outcome.status_line(),
                outcome.output,
                report,
            )
        }
        Err(e) => {
            let text = format!("The check `{}` could not run: {e}", check.command);
            (
                false,
                format!("could not start after {} ms", started.elapsed().as_millis()),
                text.clone(),
                text,
            )
        }
    };
    reporter.event(&Event::CheckResult {
        turn,
        command: check.command.clone(),
        passed,
        status,
        output,
    });
    Ok(if passed { None } else { Some(report) })
}

/// A commit title for a step: what the model said it was doing, else which files it touched.
fn step_title(content: &str, calls: &[crate::model::ToolCall]) -> String {
    let said = first_line(content, 72);
    if !said.is_empty() {
        return said;
    }
    let targets: Vec<&str> = calls
        .iter()
        .filter_map(|c| c.arguments.get("path").and_then(|p| p.as_str()))
        .collect();
    match targets.as_slice() {
        [] => format!(
            "{} via {}",
            "edit",
            calls
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        paths => format!("edit {}", paths.join(", ")),
    }
}
