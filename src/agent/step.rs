//! The executor: one plan step, from its brief to an accepted commit or a failure.
//!
//! The step's conversation is append-only (so a backend's prefix cache keeps working) and starts fresh
//! for each step: earlier steps appear only as their records. A step ends when the model calls `finish`
//! (or its turns run out); then the step's check decides. A failure goes back to the model until the
//! step's tries are used up.

use super::prompt::{self, StepBrief};
use super::{guard::Escalation, repo_map, Check, Halt, PlanStep, Runner, StepEnd, StepRecord};
use crate::model::Message;
use crate::protocol::{Event, Outcome};
use crate::text::first_line;
use crate::tools::{ToolContext, ToolOutput};

/// Model turns per attempt at a step before its work is checked anyway.
const TURNS_PER_ATTEMPT: usize = 12;

/// How many times one turn is asked again because its call repeats an answered one.
const ASKS_AGAIN: usize = 2;

/// The loop guard's name for a call; `finish` has none (the check judges it).
fn call_key(call: &crate::model::ToolCall) -> Option<String> {
    (call.name != "finish").then(|| format!("{}:{}", call.name, call.arguments))
}

fn check_command(check: &Option<Check>) -> String {
    check
        .as_ref()
        .map(|c| c.command.clone())
        .unwrap_or_default()
}

/// How a stretch of model turns ended.
enum WorkEnd {
    Finished(String),
    TurnsOut,
    Replan(String),
}

impl Runner<'_> {
    /// Run the first of `remaining` (the rest of the plan) to acceptance or failure.
    pub(super) fn execute_step(&mut self, remaining: &[PlanStep]) -> Result<StepEnd, Halt> {
        let step = &remaining[0];
        let number = self.done.len() + 1;
        let of = self.done.len() + remaining.len();
        let is_last = remaining.len() == 1;
        let check = self.step_check(step, is_last);
        self.reporter.event(&Event::StepStarted {
            step: number,
            of,
            title: step.title.clone(),
            check: check.as_ref().map(|c| c.command.clone()),
        });
        let specs = self.config.tools.specs();
        let agents_md = repo_map::agents_md(&self.root, &step.files);
        let files_shown = repo_map::likely_files(&self.root, &step.files);
        let brief = prompt::step_brief(&StepBrief {
            task: &self.config.task,
            agents_md: &agents_md,
            map: &self.map,
            done: &self.done,
            step,
            files_shown: &files_shown,
            remaining,
            number,
            of,
            check: check.as_ref().map(|c| c.command.as_str()),
            failing_check: self.failing_now(),
        });
        let mut messages = vec![
            Message::system(prompt::system(&specs)),
            Message::user(brief),
        ];
        if let (true, Some(check)) = (is_last, &check) {
            if let Some(end) = self.try_whole_files(step, number, of, check)? {
                return Ok(end);
            }
        }
        let tries = self.config.limits.step_tries.max(1);
        let mut told_nothing_changed = false;
        // A step that has changed nothing and failed its check is not offered `finish` again until
        // a file changes: Qwen2.5-Coder-1.5B otherwise called finish on the untouched files turn
        // after turn ("the bug has been fixed") until the step's attempts ran out.
        let mut withhold_finish = false;
        for attempt in 1..=tries {
            let summary = match self.work(&mut messages, &specs, withhold_finish)? {
                WorkEnd::Finished(summary) => summary,
                WorkEnd::TurnsOut => String::new(),
                WorkEnd::Replan(reason) => return Ok(StepEnd::Failed(reason)),
            };
            let tree = self.workspace.snapshot()?;
            let changed = tree != self.workspace.head_tree()?;
            if !changed && !is_last {
                if summary.is_empty() {
                    self.reject(number, attempt, prompt::NO_CHANGE_YET, &mut messages);
                    continue;
                }
                // Small models call finish on a "Fix the bug" step having only read the code, and
                // say it is fixed: asked once, a step that really changes nothing is finished again.
                if !told_nothing_changed {
                    told_nothing_changed = true;
                    self.reject(
                        number,
                        attempt,
                        &prompt::nothing_changed(&step.title),
                        &mut messages,
                    );
                    continue;
                }
                // An exploratory step (read, decide) has nothing to verify or commit.
                return Ok(StepEnd::Accepted(StepRecord {
                    step: number,
                    title: step.title.clone(),
                    summary,
                    commit: None,
                    check: "nothing to verify".into(),
                }));
            }
            if let Some(undone) = self.undo_test_edits()? {
                self.reject(
                    number,
                    attempt,
                    &prompt::tests_changed(&undone),
                    &mut messages,
                );
                continue;
            }
            let failure = match &check {
                None => None,
                Some(check) => match &self.last_failure {
                    // The same tree failed the same check before: it would fail again.
                    Some((t, c, report)) if *t == tree && *c == check.command => {
                        Some(report.clone())
                    }
                    _ => self.run_check(check)?,
                },
            };
            let Some(report) = failure else {
                if self.config.check.is_none() && !self.config.allow_unverified {
                    // No check of the user's: the work stays in the worktree, uncommitted, and ends
                    // up in unverified.patch.
                    self.note(format!(
                        "step {number} not committed: {}",
                        super::NO_CHECK_ADVICE
                    ));
                    return Ok(StepEnd::Accepted(StepRecord {
                        step: number,
                        title: step.title.clone(),
                        summary,
                        commit: None,
                        check: "no check: not committed".into(),
                    }));
                }
                let verified = check
                    .as_ref()
                    .map_or("none configured (unverified)".to_string(), |c| {
                        format!("`{}` passed", c.command)
                    });
                let commit = self.commit_step(step, number, of, &summary, &verified)?;
                self.guard.progress();
                return Ok(StepEnd::Accepted(StepRecord {
                    step: number,
                    title: step.title.clone(),
                    summary,
                    commit,
                    check: verified,
                }));
            };
            self.last_failure = Some((tree, check_command(&check), report.clone()));
            let escalation = self.guard.observe(&format!("check failure: {report}"));
            match escalation {
                Escalation::Stop => {
                    return Err(Halt::End(
                        Outcome::LoopDetected,
                        format!("stopped: the check failed the same way {} times in a row with nothing new tried", 5),
                    ))
                }
                Escalation::Replan => {
                    return Ok(StepEnd::Failed(format!(
                        "step {number} ({}) kept failing its check the same way: {}",
                        step.title,
                        first_line(&report, 200)
                    )))
                }
                _ => {}
            }
            if attempt == tries {
                return Ok(StepEnd::Failed(format!(
                    "step {number} ({}) was not accepted after {tries} attempt(s); the last check said: {}",
                    step.title,
                    first_line(&report, 300)
                )));
            }
            let mut text = prompt::step_failed(&report, attempt, tries);
            if !changed {
                withhold_finish = true;
                text = format!("{text}\n{}", prompt::FINISH_WITHHELD);
            }
            if escalation == Escalation::Nudge {
                text = format!("{text}\n{}", prompt::NUDGE);
                self.note("loop guard: the check failed the same way a third time; told the model to change course".into());
            }
            self.reject(number, attempt, &text, &mut messages);
        }
        Ok(StepEnd::Failed(format!(
            "step {number} ({}) made no change in {tries} attempt(s)",
            step.title
        )))
    }

    /// While the task's check fails as it did before the run, a check passed by changing the tests
    /// proves nothing (a small model asked to make `greet_test.py` pass rewrote `greet_test.py`).
    /// Existing test files the step changed or deleted get their committed content back; the paths
    /// are returned for the model. New test files are kept.
    fn undo_test_edits(&mut self) -> Result<Option<Vec<String>>, Halt> {
        if self.failing_at_start.is_none() || self.config.allow_test_edits {
            return Ok(None);
        }
        let touched: Vec<_> = self
            .workspace
            .uncommitted_changes()?
            .into_iter()
            .filter(|c| c.old.is_some() && super::verify::is_test_file(&c.path))
            .collect();
        if touched.is_empty() {
            return Ok(None);
        }
        let fs = crate::hostfs::Beneath::open(&self.root);
        let mut paths = Vec::new();
        for change in touched {
            let restored = fs.as_ref().map_err(|e| e.to_string()).and_then(|fs| {
                fs.write(
                    std::path::Path::new(&change.path),
                    change.old.as_deref().unwrap_or_default(),
                )
                .map_err(|e| e.to_string())
            });
            if let Err(e) = restored {
                return Err(Halt::End(
                    Outcome::CheckFailing,
                    format!("could not restore the test file {}: {e}", change.path),
                ));
            }
            paths.push(change.path);
        }
        self.note(format!(
            "the step changed test files while the task's check fails; restored: {} (--allow-test-edits permits it)",
            paths.join(", ")
        ));
        Ok(Some(paths))
    }

    /// The step's verification: its own check unless it is the last step, else the task's check.
    pub(super) fn step_check(&self, step: &PlanStep, is_last: bool) -> Option<Check> {
        let own = (!step.check.is_empty()).then(|| Check {
            command: step.check.clone(),
            source: "the plan's check for this step".into(),
        });
        if is_last {
            self.config.check.clone().or(own)
        } else {
            own.or_else(|| self.config.check.clone())
        }
    }

    fn reject(&mut self, number: usize, attempt: usize, text: &str, messages: &mut Vec<Message>) {
        self.reporter.event(&Event::StepRejected {
            step: number,
            attempt,
            reason: first_line(text, 200),
        });
        messages.push(Message::user(text));
    }

    /// Model turns with tool calls until `finish`, the attempt's turns run out, or the guard asks for a
    /// new plan.
    /// With `withhold_finish`, `finish` is not offered until a tool call changes a file.
    fn work(
        &mut self,
        messages: &mut Vec<Message>,
        specs: &[crate::model::ToolSpec],
        withhold_finish: bool,
    ) -> Result<WorkEnd, Halt> {
        let config = self.config;
        let conversation = format!("step-{}", self.done.len() + 1);
        let root = self.root.clone();
        // Withheld, not removed: the tool list stays in the prompt as it was, so the backend's
        // prefix cache keeps the conversation (a template renders the list into the system prompt).
        let without_finish: Vec<_> = specs
            .iter()
            .cloned()
            .map(|mut s| {
                s.withheld |= s.name == "finish";
                s
            })
            .collect();
        let mut edited = false;
        for _ in 0..TURNS_PER_ATTEMPT {
            let mut offered = if withhold_finish && !edited {
                without_finish.clone()
            } else {
                specs.to_vec()
            };
            let mut reply = self.ask(&conversation, messages, &offered)?;
            // Greedy decoding of an almost unchanged conversation gives the same call again:
            // Qwen2.5-Coder-1.5B wrote one refused file ten turns in a row, and sampling at its
            // recommended temperature gave the very same call (the repeats in the context make it
            // near certain). A call answered since the worktree last changed would be answered the
            // same way, so the first time a call comes back it is not answered: the turn is asked
            // again with that tool withheld (still shown, out of the grammar), and the repeat never
            // enters the conversation to prime the next one. The guard still counts it, so a call
            // the model keeps coming back to reaches the guard's nudge, re-plan and stop.
            for _ in 0..ASKS_AGAIN {
                let Some(call) = reply
                    .tool_calls
                    .iter()
                    .find(|call| call_key(call).is_some_and(|key| self.guard.seen(&key) == 1))
                else {
                    break;
                };
                let (name, key) = (call.name.clone(), call_key(call).unwrap_or_default());
                if offered
                    .iter()
                    .all(|spec| spec.withheld || spec.name == name)
                {
                    break;
                }
                for spec in offered.iter_mut() {
                    spec.withheld |= spec.name == name;
                }
                self.guard.observe(&key);
                self.note(format!(
                    "the model repeated an answered `{name}` call; not run again, the turn was asked again with `{name}` withheld"
                ));
                reply = self.ask_again(&conversation, messages, &offered)?;
            }
            messages.push(Message::assistant(
                reply.content.clone(),
                reply.tool_calls.clone(),
            ));
            if reply.tool_calls.is_empty() {
                messages.push(Message::user(prompt::NO_TOOL_CALL));
                self.note("the model replied without a tool call; asked it to call one".into());
                continue;
            }
            let turn = self.spent.turns;
            let mut finished = None;
            for call in &reply.tool_calls {
                self.reporter.event(&Event::ToolCall {
                    turn,
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                });
                // `finish` is judged by the check, whose failures the guard counts instead.
                let escalation = match call_key(call) {
                    Some(key) => self.guard.observe(&key),
                    None => Escalation::None,
                };
                let ctx = ToolContext {
                    root: &root,
                    sandbox: self.sandbox,
                    command_timeout: config.command_timeout,
                    output_limit: config.output_limit,
                    command_env: &config.command_env,
                };
                let started = std::time::Instant::now();
                let before = config
                    .tools
                    .may_edit(&call.name)
                    .then(|| self.workspace.snapshot())
                    .transpose()?;
                let withheld = offered.iter().any(|s| s.withheld && s.name == call.name);
                let result = if withheld {
                    // A backend that cannot leave it out of its grammar sent it anyway.
                    Err(crate::tools::ToolError::Failed(if call.name == "finish" {
                        prompt::FINISH_WITHHELD.into()
                    } else {
                        prompt::repeated_call_withheld(&call.name)
                    }))
                } else {
                    config.tools.call(&ctx, &call.name, &call.arguments)
                };
                let (ok, output) = match result {
                    Ok(ToolOutput::Text(text)) => (true, text),
                    Ok(ToolOutput::Finish(summary)) => {
                        let text = format!("finish requested: {summary}");
                        finished = Some(summary);
                        (true, text)
                    }
                    Err(e) => (false, format!("error: {e}")),
                };
                if let Some(before) = before {
                    if self.workspace.snapshot()? != before {
                        self.guard.progress();
                        edited = true;
                    }
                }
                self.workspace_notes();
                self.reporter.event(&Event::ToolResult {
                    turn,
                    name: call.name.clone(),
                    ok,
                    output: output.clone(),
                    elapsed_ms: started.elapsed().as_millis() as u64,
                });
                let shown = match escalation {
                    Escalation::Repeat => format!("{output}\n\n{}", prompt::REPEATED_CALL),
                    Escalation::Nudge => format!("{output}\n\n{}", prompt::NUDGE),
                    _ => output,
                };
                messages.push(Message::tool_result(call, shown));
                if escalation == Escalation::Nudge {
                    self.note(format!(
                        "loop guard: a third identical `{}` call; told the model to change course",
                        call.name
                    ));
                }
                match escalation {
                    Escalation::Replan => {
                        return Ok(WorkEnd::Replan(format!(
                            "the last attempt called the tool `{}` four times with the same arguments and changed nothing (a tool of the agent, not code in the repository)",
                            call.name
                        )))
                    }
                    Escalation::Stop => {
                        return Err(Halt::End(
                            Outcome::LoopDetected,
                            format!(
                                "stopped: the model made the same `{}` call five times without progress, even after a new plan",
                                call.name
                            ),
                        ))
                    }
                    _ => {}
                }
            }
            if let Some(summary) = finished {
                return Ok(WorkEnd::Finished(summary));
            }
        }
        Ok(WorkEnd::TurnsOut)
    }
}
