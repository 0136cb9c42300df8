//! The run's vocabulary: what a run emits ([`Event`], [`Outcome`]), where events go ([`Reporter`]),
//! and the plan and step records events carry. The agent loop and the reporters both depend on this
//! leaf, never on each other: the loop emits events without knowing how they are shown.
//!
//! The JSON form of an event is a public interface for scripts and CI: add fields, never rename them.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Message, ToolCall, Usage};

/// Something that happened during a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        task_title: String,
        repo: PathBuf,
        workspace: PathBuf,
        branch: String,
        base: String,
        model: String,
        check: Option<String>,
        check_source: String,
        sandbox: String,
        dry_run: bool,
        log: Option<PathBuf>,
    },
    /// A plan (revision 1) or a revised plan for the steps from `first_step` on.
    PlanMade {
        revision: usize,
        first_step: usize,
        steps: Vec<PlanStep>,
        /// Why the plan was revised.
        reason: Option<String>,
    },
    StepStarted {
        step: usize,
        of: usize,
        title: String,
        check: Option<String>,
    },
    /// An attempt at a step was not accepted; the model gets the reason and tries again.
    StepRejected {
        step: usize,
        attempt: usize,
        reason: String,
    },
    StepAccepted {
        #[serde(flatten)]
        record: StepRecord,
        of: usize,
    },
    /// A failed step's changes were thrown away (after saving them) and the worktree reset to `to`.
    RolledBack {
        step: usize,
        to: String,
        files: usize,
        saved: Option<PathBuf>,
    },
    /// `agent resume` continued the run after `done_steps` accepted steps.
    RunResumed {
        run_id: String,
        /// Model turns spent up to the resume point; later turns of the interrupted attempt are void.
        turns: usize,
        branch: String,
        head: String,
        done_steps: usize,
        remaining_steps: usize,
        /// The resumed run's own worktree (absent in logs from before 2026-12-06).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<PathBuf>,
    },
    /// What the model is sent: the messages added to `conversation` since its previous request
    /// (from index `first_message`), and the tools offered. The log holds every prompt this way.
    ModelRequest {
        turn: usize,
        conversation: String,
        first_message: usize,
        messages: Vec<Message>,
        tools: Vec<String>,
    },
    ModelTurn {
        turn: usize,
        max_turns: usize,
        content: String,
        tool_calls: Vec<ToolCall>,
        usage: Usage,
    },
    ToolCall {
        turn: usize,
        name: String,
        arguments: Value,
    },
    ToolResult {
        turn: usize,
        name: String,
        ok: bool,
        output: String,
        #[serde(default)]
        elapsed_ms: u64,
    },
    CheckStarted {
        turn: usize,
        command: String,
    },
    CheckResult {
        turn: usize,
        command: String,
        passed: bool,
        status: String,
        output: String,
        #[serde(default)]
        elapsed_ms: u64,
    },
    Commit {
        step: usize,
        of: usize,
        commit: String,
        /// The commit's tree: equal trees, byte-identical files (what `agent replay` compares).
        #[serde(default)]
        tree: String,
        /// Committing and publishing.
        #[serde(default)]
        elapsed_ms: u64,
        message: String,
    },
    Note {
        message: String,
    },
    /// `--pr`: the task branch was pushed and the draft pull request created or updated (`url`), or,
    /// without GitHub credentials, the `command` that opens it.
    PullRequest {
        branch: String,
        base: String,
        title: String,
        url: Option<String>,
        number: Option<u64>,
        created: bool,
        command: Option<String>,
        body_file: PathBuf,
    },
    Finished {
        outcome: Outcome,
        summary: String,
        branch: Option<String>,
        commits: Vec<String>,
        /// Dry runs: the proposed patch (accepted steps), as a plain unified diff.
        patch: Option<String>,
        unverified_patch: Option<PathBuf>,
        exit_code: i32,
        turns: usize,
        steps_accepted: usize,
        steps_rejected: usize,
        checks: usize,
        tokens: u64,
        elapsed_ms: u64,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The model finished and the last check passed (or, with `--allow-unverified`, no check exists).
    Finished,
    /// The turn budget ran out first.
    BudgetExhausted,
    /// The model finished but the check kept failing.
    CheckFailing,
    /// The model backend failed.
    ModelFailed,
    /// The model kept repeating itself, even after a new plan.
    LoopDetected,
    /// The plan was worked through, but the run had no check, so nothing was committed (the work is
    /// in unverified.patch); `--check CMD` or `--allow-unverified` changes that.
    Unverified,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Finished => 0,
            _ => 1,
        }
    }
}

/// A sink for events.
pub trait Reporter {
    fn event(&mut self, event: &Event);
    /// Called once at the end, before the process prints its final output.
    fn close(&mut self) {}
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// A short imperative title; it becomes the commit title.
    #[schemars(length(min = 1, max = 72))]
    pub title: String,
    /// What the step changes and why, in a sentence or two.
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub intent: String,
    /// Paths the step will likely read or change.
    #[serde(default)]
    #[schemars(length(max = 4), inner(length(max = 100)))]
    pub files: Vec<String>,
    /// A shell command that proves this step works (e.g. `cargo build`), or empty to use the task's
    /// check.
    #[serde(default)]
    #[schemars(length(max = 120))]
    pub check: String,
}

impl PlanStep {
    /// The step of a one-step plan: the whole task.
    pub fn whole_task(task: &str) -> Self {
        Self {
            title: crate::text::first_line(task.trim_start_matches(['#', ' ']), 72),
            intent: "Complete the whole task.".into(),
            files: Vec::new(),
            check: String::new(),
        }
    }
}

/// An accepted step, as later steps and the summary see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub title: String,
    pub summary: String,
    /// `None` for a step that changed nothing.
    pub commit: Option<String>,
    /// How it was verified, e.g. "`cargo test` passed".
    pub check: String,
}

impl StepRecord {
    pub fn line(&self) -> String {
        let commit = self
            .commit
            .as_deref()
            .map_or("no changes".to_string(), |c| {
                format!("commit {}", &c[..c.len().min(10)])
            });
        format!(
            "{}: {} ({commit}; {})",
            self.title,
            crate::text::first_line(&self.summary, 120),
            self.check
        )
    }
}

/// Where an interrupted run continues: the steps it accepted and the plan still to do.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    pub done: Vec<StepRecord>,
    pub remaining: Vec<PlanStep>,
    /// Model turns already spent.
    pub turns: usize,
}
