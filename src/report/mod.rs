//! Reporting: the events a run emits, and the sinks that show or store them (terminal with progress,
//! plain lines, JSON lines, the run log), plus coloured diffs.
//!
//! The agent loop only emits [`Event`]s; how they look is decided here. The JSON form of an event is a
//! public interface for scripts and CI: add fields, never rename them.

pub mod diff;
pub mod pr;
mod terminal;

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{PlanStep, StepRecord};
use crate::model::{Message, ToolCall, Usage};

pub use terminal::TerminalReporter;

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

/// One JSON object per line on stdout, for scripts and CI.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&mut self, event: &Event) {
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// The run log: every event, in full, as JSON lines in a file outside the repository.
pub struct LogReporter {
    file: std::fs::File,
}

impl LogReporter {
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(Self {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        })
    }
}

impl Reporter for LogReporter {
    fn event(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(self.file, "{line}");
        }
    }
}

/// Sends every event to several reporters.
pub struct Fanout(pub Vec<Box<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&mut self, event: &Event) {
        for reporter in &mut self.0 {
            reporter.event(event);
        }
    }
    fn close(&mut self) {
        for reporter in &mut self.0 {
            reporter.close();
        }
    }
}

/// The first line of `text`, shortened to `max` characters.
/// Text from the model, a command or the repository made safe to print on a terminal: escape
/// sequences (colours, cursor moves that hide lines, OSC 52 clipboard writes, titles, hyperlinks),
/// carriage returns, backspaces, other control characters and bidirectional overrides (which make
/// a line read differently from what it holds) are shown as visible escapes such as `\x1b`.
/// Newlines and tabs stay.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            if (c as u32) < 0x100 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Every string inside `event` made [`terminal_safe`], for the reporters that show events to people.
pub fn terminal_safe_event(event: &Event) -> Event {
    fn clean(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(safe) = terminal_safe(s) {
                    *s = safe;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
            serde_json::Value::Object(map) => map.values_mut().for_each(clean),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(event) else {
        return event.clone();
    };
    clean(&mut value);
    serde_json::from_value(value).unwrap_or_else(|_| event.clone())
}

pub fn first_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}
