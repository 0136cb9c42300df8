//! The planner–executor loop: the one place that decides what happens next.
//!
//! 1. **Plan**: the model turns the task (with AGENTS.md and a repository map) into ordered steps.
//! 2. **Execute** each step with the tools ([`step`]) until the model calls `finish`.
//! 3. **Verify** the step in the sandbox (its own check, the task's check for the last step). A pass is
//!    committed on the task branch and published; a failure goes back to the model. After the step's
//!    tries run out, its changes are saved as a patch and rolled back, and the plan is revised.
//! 4. Budgets (turns, steps, tokens, time) and the loop guard ([`guard`]) end a run cleanly, keeping every
//!    accepted commit.
//!
//! The loop emits events and never prints; the task branch only ever receives verified commits.

pub mod context;
mod direct;
pub mod guard;
pub mod plan;
pub mod prompt;
pub mod repo_map;
mod step;
pub mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::model::{AssistantTurn, ChatModel, ChatRequest, Message, ModelError, ToolSpec};
use crate::protocol::{Event, Outcome, Reporter};
use crate::sandbox::Sandbox;
use crate::vcs::{VcsError, Workspace};

pub use guard::Limits;
pub use plan::PlanStep;
pub use verify::Check;

/// What a run without a check tells the user.
pub const NO_CHECK_ADVICE: &str = "nothing was committed because the run has no check to verify the work; \
     pass --check CMD (or --allow-unverified to commit unverified work); the changes are saved as unverified.patch";

/// Characters of the repository map shown to the planner and to each step.
const MAP_CHARS: usize = 3000;

/// Limits and options of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub task: String,
    /// The task's check (`--check` or detected). Without one, nothing is committed unless
    /// `allow_unverified` says so.
    pub check: Option<Check>,
    /// Commit steps although the run has no check, with an `Agent-Verified: no` trailer.
    pub allow_unverified: bool,
    /// Accept edits to existing test files while the task's check fails (see `verify::is_test_file`).
    pub allow_test_edits: bool,
    /// Before a step that must make the failing check pass uses tools, ask for its short files back
    /// whole in plain text ([`direct`]).
    pub whole_file_first: bool,
    pub limits: Limits,
    pub command_timeout: Duration,
    pub check_timeout: Duration,
    /// Most bytes of one tool output shown to the model.
    pub output_limit: usize,
    /// Extra environment for commands and checks.
    pub command_env: Vec<(String, String)>,
    /// Publish accepted commits to the user's repository (false for a dry run).
    pub publish: bool,
    pub run_id: String,
    /// Where work that is rolled back is saved as a patch; `None` keeps it nowhere.
    pub save_dir: Option<PathBuf>,
    /// Continue an interrupted run instead of starting with a plan.
    pub resume: Option<ResumePoint>,
    /// The tools offered to the model: the built-ins and the run's plugins.
    pub tools: crate::tools::Toolbox,
}

pub use crate::protocol::{ResumePoint, StepRecord};

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: Outcome,
    pub summary: String,
    pub turns: usize,
    pub steps_accepted: usize,
    pub steps_rejected: usize,
    pub checks: usize,
    pub tokens: u64,
    /// The accepted steps, in order (after a resume, including those accepted before it).
    pub steps: Vec<StepRecord>,
    /// The plan steps not done when the run ended.
    pub not_done: Vec<PlanStep>,
}

/// Why the loop stops before the plan is done.
enum Halt {
    End(Outcome, String),
    Vcs(VcsError),
}

impl From<VcsError> for Halt {
    fn from(e: VcsError) -> Self {
        Self::Vcs(e)
    }
}

/// How one step ended.
enum StepEnd {
    Accepted(StepRecord),
    /// Not accepted within its tries, or the model kept repeating itself: roll back and re-plan.
    Failed(String),
}

/// Where commands run: the model's commands and the checks offline, the dependency fetch (when the
/// run fetches) with network.
#[derive(Clone, Copy)]
pub struct Sandboxes<'a> {
    pub commands: &'a dyn Sandbox,
    pub fetch: Option<&'a dyn Sandbox>,
}

/// Drive `model` through plan, steps and checks until the plan is done or a budget runs out.
pub fn run(
    config: &RunConfig,
    model: &mut dyn ChatModel,
    workspace: &mut Workspace,
    sandboxes: Sandboxes<'_>,
    reporter: &mut dyn Reporter,
) -> Result<RunResult, VcsError> {
    let root = workspace.root().to_path_buf();
    let sandbox = sandboxes.commands;
    let resume = config.resume.clone().unwrap_or_default();
    let mut runner = Runner {
        config,
        model,
        workspace,
        sandbox,
        fetch: sandboxes.fetch,
        fetched_manifests: verify::manifest_fingerprint(&root),
        reporter,
        map: repo_map::repo_map(&root, &config.task, MAP_CHARS),
        root,
        spent: guard::Spent::new(resume.turns),
        guard: guard::LoopGuard::default(),
        done: resume.done,
        rejected: 0,
        checks: 0,
        plan_revision: 0,
        last_failure: None,
        failing_at_start: None,
        sent: None,
        left: Vec::new(),
    };
    // A turn started just before the time limit must not outlast it by the minutes a long reply
    // takes on a CPU: the backend bounds each reply by the time left.
    let deadline = config.limits.time_limit.map(|l| runner.spent.started + l);
    runner.model.set_deadline(deadline);
    let driven = runner.drive(resume.remaining);
    runner.model.set_deadline(None);
    let (outcome, summary) = match driven {
        Ok(summary) => (Outcome::Finished, summary),
        Err(Halt::End(outcome, summary)) => (outcome, summary),
        Err(Halt::Vcs(e)) => return Err(e),
    };
    Ok(RunResult {
        outcome,
        summary,
        turns: runner.spent.turns,
        steps_accepted: runner.done.len(),
        steps_rejected: runner.rejected,
        checks: runner.checks,
        tokens: runner.spent.tokens,
        steps: runner.done,
        not_done: runner.left,
    })
}

/// The state of one run while it goes.
struct Runner<'a> {
    config: &'a RunConfig,
    model: &'a mut dyn ChatModel,
    workspace: &'a mut Workspace,
    sandbox: &'a dyn Sandbox,
    /// The fetch profile's sandbox, when the run fetches dependencies.
    fetch: Option<&'a dyn Sandbox>,
    /// The manifests as they were when dependencies were last fetched.
    fetched_manifests: Vec<u8>,
    reporter: &'a mut dyn Reporter,
    root: PathBuf,
    map: String,
    spent: guard::Spent,
    guard: guard::LoopGuard,
    done: Vec<StepRecord>,
    rejected: usize,
    checks: usize,
    plan_revision: usize,
    /// The last failed check: (worktree, command, report); an unchanged tree is not checked again.
    last_failure: Option<(git2::Oid, String, String)>,
    /// The task's check failed before any change (its report): the task is done when it passes.
    failing_at_start: Option<String>,
    /// The conversation of the last request and how many of its messages the log has.
    sent: Option<(String, usize)>,
    /// The plan steps not done yet.
    left: Vec<PlanStep>,
}

impl Runner<'_> {
    /// Plan, then run the steps in order; a failed step is rolled back and the rest re-planned.
    fn drive(&mut self, mut plan: Vec<PlanStep>) -> Result<String, Halt> {
        let limits = &self.config.limits;
        if plan.is_empty() && self.done.is_empty() {
            self.check_before_any_change()?;
            plan = self.make_plan(None)?;
        }
        let mut next = 0;
        let mut replans = 0;
        while next < plan.len() {
            self.left = plan[next..].to_vec();
            if self.spent.steps_started >= limits.max_steps {
                return Err(Halt::End(
                    Outcome::BudgetExhausted,
                    format!(
                        "stopped: the step budget ({} steps) is used up",
                        limits.max_steps
                    ),
                ));
            }
            self.spent.steps_started += 1;
            let verified_by_task_check = self.verified_by_task_check(&plan[next..]);
            match self.execute_step(&plan[next..])? {
                StepEnd::Accepted(record) => {
                    self.reporter.event(&Event::StepAccepted {
                        record: record.clone(),
                        of: self.done.len() + plan.len() - next,
                    });
                    let changed = record.commit.is_some();
                    self.done.push(record);
                    next += 1;
                    if next < plan.len()
                        && changed
                        && verified_by_task_check
                        && self.failing_at_start.is_some()
                    {
                        return Ok(self.done_early(&plan[next..]));
                    }
                }
                StepEnd::Failed(reason) => {
                    self.rejected += 1;
                    self.roll_back(self.done.len() + 1)?;
                    if replans >= limits.max_replans {
                        return Err(Halt::End(
                            Outcome::CheckFailing,
                            format!(
                                "stopped: {reason}; the plan was already revised {replans} time(s)"
                            ),
                        ));
                    }
                    replans += 1;
                    plan = self.make_plan(Some(&reason))?;
                    next = 0;
                }
            }
        }
        self.left.clear();
        if self.config.check.is_none() && !self.config.allow_unverified {
            return Err(Halt::End(
                Outcome::Unverified,
                format!("no check: {NO_CHECK_ADVICE}"),
            ));
        }
        Ok(self
            .done
            .last()
            .map(|r| r.summary.clone())
            .unwrap_or_default())
    }

    /// Run the task's check once before planning. A check that fails now describes the task (a bug to
    /// fix, a test to make pass): its report goes to the planner and the first step, and the run is
    /// done as soon as a step makes it pass. A check that passes already says nothing about the task.
    fn check_before_any_change(&mut self) -> Result<(), Halt> {
        let Some(check) = self.config.check.clone() else {
            return Ok(());
        };
        let Some(report) = self.run_check(&check)? else {
            return Ok(());
        };
        let tree = self.workspace.snapshot()?;
        self.last_failure = Some((tree, check.command.clone(), report.clone()));
        self.note(format!(
            "`{}` fails before any change: the run is done when a step makes it pass",
            check.command
        ));
        self.failing_at_start = Some(report);
        Ok(())
    }

    /// Whether the first of `remaining` is verified by the task's own check.
    fn verified_by_task_check(&self, remaining: &[PlanStep]) -> bool {
        let step_check = self.step_check(&remaining[0], remaining.len() == 1);
        match (&self.config.check, step_check) {
            (Some(task), Some(step)) => task.command == step.command,
            _ => false,
        }
    }

    /// The task's check failed at the start and passes now: the task is done, and the rest of the
    /// plan is not needed. Small models plan more steps than a fix takes; working through them only
    /// spends the budget and risks ending "budget exhausted" with the task solved.
    fn done_early(&mut self, skipped: &[PlanStep]) -> String {
        let titles: Vec<&str> = skipped.iter().map(|s| s.title.as_str()).collect();
        let command = self
            .config
            .check
            .as_ref()
            .map(|c| c.command.clone())
            .unwrap_or_default();
        self.note(format!(
            "`{command}` failed before the run and passes now: done; plan steps not needed: {}",
            titles.join("; ")
        ));
        self.left.clear();
        self.done
            .last()
            .map(|r| r.summary.clone())
            .unwrap_or_default()
    }

    /// One planner turn; a reply that is not a plan becomes a one-step plan, with a note.
    fn make_plan(&mut self, failure: Option<&str>) -> Result<Vec<PlanStep>, Halt> {
        let check = self.config.check.as_ref().map(|c| c.command.as_str());
        let max_steps = self
            .config
            .limits
            .max_steps
            .saturating_sub(self.spent.steps_started)
            .clamp(1, plan::MAX_PLAN_STEPS);
        let agents_md = repo_map::agents_md(&self.root, &[]);
        let mut messages = vec![
            Message::system(prompt::planner_system(max_steps, check)),
            Message::user(prompt::planner_request(&prompt::PlannerRequest {
                task: &self.config.task,
                agents_md: &agents_md,
                map: &self.map,
                done: &self.done,
                failing_check: self.failing_now(),
                failure,
            })),
        ];
        let conversation = format!("plan-{}", self.plan_revision + 1);
        let reply = self.ask(&conversation, &mut messages, &[plan::spec()])?;
        let task_check = self.config.check.as_ref().map(|c| c.command.as_str());
        let steps = match plan::parse(&reply, max_steps, task_check) {
            Ok(plan) => {
                let asked = reply.tool_calls[0].arguments["steps"]
                    .as_array()
                    .map_or(0, Vec::len);
                if asked > plan.steps.len() {
                    self.note(format!(
                        "plan: {asked} steps asked for, {} kept (steps that only read or run the tests joined the change they serve)",
                        plan.steps.len()
                    ));
                }
                plan.steps
            }
            Err(why) => {
                self.note(format!(
                    "the planner's reply was not a plan ({why}); working on the task as one step"
                ));
                vec![PlanStep::whole_task(&self.config.task)]
            }
        };
        self.plan_revision += 1;
        self.reporter.event(&Event::PlanMade {
            revision: self.plan_revision,
            first_step: self.done.len() + 1,
            steps: steps.clone(),
            reason: failure.map(str::to_string),
        });
        Ok(steps)
    }

    /// The turn just asked for in `conversation` asked again (its reply was not kept): the request
    /// is logged as adding no message, with the tools now offered.
    fn ask_again(
        &mut self,
        conversation: &str,
        messages: &mut [Message],
        specs: &[ToolSpec],
    ) -> Result<AssistantTurn, Halt> {
        if let Some((name, count)) = &mut self.sent {
            if name == conversation {
                *count = (*count).min(messages.len());
            }
        }
        self.ask(conversation, messages, specs)
    }

    /// One model turn within the budgets and the context window; emits the request (the messages new
    /// since the last request of `conversation`, so the log grows linearly) and the turn.
    fn ask(
        &mut self,
        conversation: &str,
        messages: &mut [Message],
        specs: &[ToolSpec],
    ) -> Result<AssistantTurn, Halt> {
        self.ask_for(conversation, messages, specs, None)
    }

    /// A turn in plain text of at most `max_tokens`, offered no tool, as [`Runner::ask`] asks.
    fn ask_in_text(
        &mut self,
        conversation: &str,
        messages: &mut [Message],
        max_tokens: usize,
    ) -> Result<AssistantTurn, Halt> {
        self.ask_for(conversation, messages, &[], Some(max_tokens))
    }

    fn ask_for(
        &mut self,
        conversation: &str,
        messages: &mut [Message],
        specs: &[ToolSpec],
        text_tokens: Option<usize>,
    ) -> Result<AssistantTurn, Halt> {
        if let Some(why) = self.spent.exhausted(&self.config.limits) {
            return Err(Halt::End(
                Outcome::BudgetExhausted,
                format!("stopped: {why}"),
            ));
        }
        match context::fit(messages, self.model.context_window()) {
            Ok(0) => {}
            Ok(n) => self.note(format!(
                "context: elided {n} old tool output(s) to fit the model's window"
            )),
            Err(reason) => return Err(Halt::End(Outcome::ModelFailed, reason)),
        }
        let already = match &self.sent {
            Some((name, count)) if name == conversation && *count <= messages.len() => *count,
            _ => 0,
        };
        self.reporter.event(&Event::ModelRequest {
            turn: self.spent.turns + 1,
            conversation: conversation.to_string(),
            first_message: already,
            messages: messages[already..].to_vec(),
            tools: specs
                .iter()
                .filter(|t| !t.withheld)
                .map(|t| t.name.clone())
                .collect(),
        });
        // The reply is appended by the caller; counting it as sent keeps the next request's delta small.
        self.sent = Some((conversation.to_string(), messages.len() + 1));
        let decode = |model: &mut dyn ChatModel, messages: &[Message]| match text_tokens {
            Some(max_tokens) => model.chat(
                messages,
                &ChatRequest {
                    max_tokens,
                    shape: None,
                },
            ),
            None => model.complete(messages, specs),
        };
        let mut answer = decode(&mut *self.model, messages);
        if let Err(ModelError::ContextOverflow { needed, window }) = answer {
            // The backend counted exactly and the estimate was optimistic: shrink by the measured
            // ratio and try once more. A second overflow ends the run with the backend's message.
            let shrunk = window.saturating_mul(window) / needed.max(1);
            if let Ok(n) = context::fit(messages, shrunk) {
                self.note(format!(
                    "context: the prompt needed {needed} of {window} tokens; elided {n} more old output(s)"
                ));
                answer = decode(&mut *self.model, messages);
            }
        }
        let mut reply = answer.map_err(|e| Halt::End(Outcome::ModelFailed, e.to_string()))?;
        self.spent.turns += 1;
        self.spent.tokens += (reply.usage.prompt_tokens + reply.usage.completion_tokens) as u64;
        let turn = self.spent.turns;
        // Results are matched to calls by id; give every call one, whatever the backend did.
        for (i, call) in reply.tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call-{turn}-{i}");
            }
        }
        self.reporter.event(&Event::ModelTurn {
            turn,
            max_turns: self.config.limits.max_turns,
            content: reply.content.clone(),
            tool_calls: reply.tool_calls.clone(),
            usage: reply.usage.clone(),
        });
        if reply.usage.cut_off_retries > 0 {
            self.note("the reply hit the token budget mid-call and was generated again with twice the room".into());
        }
        Ok(reply)
    }

    /// A step that changed a manifest (a dependency added, say) needs its dependencies fetched before
    /// the offline check can build; the fetch runs none of the repository's code
    /// ([`verify::detect_fetch`]).
    fn refetch_if_manifests_changed(&mut self) {
        let Some(fetch) = self.fetch else { return };
        let now = verify::manifest_fingerprint(&self.root);
        if now == self.fetched_manifests {
            return;
        }
        self.fetched_manifests = now;
        self.note("a dependency manifest changed; fetching again".into());
        for message in verify::fetch(
            fetch,
            &self.root,
            self.config.check_timeout,
            &self.config.command_env,
        ) {
            self.note(message);
        }
    }

    /// Run `check` on the worktree; `None` when it passed, else the failure report for the model.
    fn run_check(&mut self, check: &Check) -> Result<Option<String>, Halt> {
        self.refetch_if_manifests_changed();
        let turn = self.spent.turns;
        self.checks += 1;
        self.reporter.event(&Event::CheckStarted {
            turn,
            command: check.command.clone(),
        });
        let started = Instant::now();
        let config = self.config;
        let (passed, status, output, report) = match verify::run_check(
            self.sandbox,
            &self.root,
            check,
            config.check_timeout,
            &config.command_env,
        ) {
            Ok(outcome) => {
                let report = verify::failure_report(check, &outcome, &self.root, 4000);
                (
                    outcome.success(),
                    outcome.status_line(),
                    outcome.output,
                    report,
                )
            }
            Err(e) => {
                let text = format!("The check `{}` could not run: {e}", check.command);
                let status = format!("could not start after {} ms", started.elapsed().as_millis());
                (false, status, text.clone(), text)
            }
        };
        self.reporter.event(&Event::CheckResult {
            turn,
            command: check.command.clone(),
            passed,
            status,
            output,
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
        Ok((!passed).then_some(report))
    }

    /// Commit the verified worktree as step `number` of `of`, and publish it.
    fn commit_step(
        &mut self,
        step: &PlanStep,
        number: usize,
        of: usize,
        summary: &str,
        verified: &str,
    ) -> Result<Option<String>, Halt> {
        let mut message = format!("{}\n\n", step.title);
        for part in [step.intent.trim(), summary.trim()] {
            if !part.is_empty() && !message.contains(part) {
                message.push_str(&format!("{part}\n\n"));
            }
        }
        message.push_str(&format!(
            "Check: {verified}\n\nAgent-Step: {number}/{of}\nAgent-Run: {}\nAgent-Turns: {}\n",
            self.config.run_id, self.spent.turns
        ));
        if self.config.check.is_none() {
            message.push_str("Agent-Verified: no\n");
        }
        let started = Instant::now();
        let committed = self.workspace.commit_all(&message);
        self.workspace_notes();
        let Some(oid) = committed? else {
            return Ok(None);
        };
        if self.config.publish {
            self.workspace.publish()?;
        }
        let tree = self.workspace.head_tree()?;
        self.reporter.event(&Event::Commit {
            step: number,
            of,
            commit: oid.to_string(),
            tree: tree.to_string(),
            elapsed_ms: started.elapsed().as_millis() as u64,
            message,
        });
        Ok(Some(oid.to_string()))
    }

    /// Throw away the failed step's changes, saving them first as a patch.
    fn roll_back(&mut self, number: usize) -> Result<(), Halt> {
        let changes = self.workspace.uncommitted_changes()?;
        let mut saved = None;
        if let (Some(dir), false) = (&self.config.save_dir, changes.is_empty()) {
            let path = dir.join(format!(
                "rolled-back-step-{number}-plan-{}.patch",
                self.plan_revision
            ));
            let written = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&path, crate::vcs::patch_text(&changes)));
            match written {
                Ok(()) => saved = Some(path),
                Err(e) => self.note(format!(
                    "WARNING: could not save the rolled-back changes to {}: {e}",
                    path.display()
                )),
            }
        }
        let to = self.workspace.roll_back()?;
        if !changes.is_empty() {
            self.guard.progress();
        }
        self.reporter.event(&Event::RolledBack {
            step: number,
            to: to.to_string(),
            files: changes.len(),
            saved,
        });
        Ok(())
    }

    /// The task check's failure report while no step has been accepted yet (the tree is as it was).
    fn failing_now(&self) -> Option<(&str, &str)> {
        let command = self.config.check.as_ref()?.command.as_str();
        let report = self.failing_at_start.as_deref()?;
        self.done.is_empty().then_some((command, report))
    }

    fn note(&mut self, message: String) {
        self.reporter.event(&Event::Note { message });
    }

    /// Say what the workspace's snapshots removed from the worktree or left out of commits.
    fn workspace_notes(&mut self) {
        for message in self.workspace.take_notes() {
            self.note(message);
        }
    }
}
