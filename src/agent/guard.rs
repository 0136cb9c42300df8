//! Loop safety and budgets: how far a run may go, and what to do when the model repeats itself.
//!
//! Repetition is answered in escalating steps, never ignored: the same tool call or the same check
//! failure seen a third time gets a nudge, a fourth time a new plan, a fifth time a clean stop that keeps
//! every accepted commit. The counts reset when the worktree changes, because then a repeated read or
//! check can legitimately give a new answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What to do about a repeated action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// The first time: carry on.
    None,
    /// The second time: carry on, telling the model it is a repeat.
    Repeat,
    Nudge,
    Replan,
    Stop,
}

/// Counts identical actions since the worktree last changed.
#[derive(Debug, Default)]
pub struct LoopGuard {
    seen: HashMap<String, usize>,
}

impl LoopGuard {
    /// Record one occurrence of `key` (a tool call or a check failure) and say how to answer it.
    pub fn observe(&mut self, key: &str) -> Escalation {
        let count = self.seen.entry(key.to_string()).or_insert(0);
        *count += 1;
        match *count {
            1 => Escalation::None,
            2 => Escalation::Repeat,
            3 => Escalation::Nudge,
            4 => Escalation::Replan,
            _ => Escalation::Stop,
        }
    }

    /// How many times `key` was recorded since the worktree last changed, without recording it.
    pub fn seen(&self, key: &str) -> usize {
        self.seen.get(key).copied().unwrap_or(0)
    }

    /// The worktree changed: earlier results may no longer hold.
    pub fn progress(&mut self) {
        self.seen.clear();
    }
}

/// The limits of one run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most model turns, planning included.
    pub max_turns: usize,
    /// Most plan steps started.
    pub max_steps: usize,
    /// Most tokens (prompt + completion, all turns); `None` for no limit.
    pub max_tokens: Option<u64>,
    /// Wall-clock limit for the run; `None` for no limit.
    pub time_limit: Option<Duration>,
    /// Verification attempts per step before it is rolled back and the plan revised.
    pub step_tries: usize,
    /// Plan revisions before the run stops.
    pub max_replans: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_turns: 40,
            max_steps: 8,
            max_tokens: None,
            time_limit: None,
            step_tries: 3,
            max_replans: 2,
        }
    }
}

/// What a run has used so far.
#[derive(Debug)]
pub struct Spent {
    pub turns: usize,
    pub tokens: u64,
    pub steps_started: usize,
    pub started: Instant,
}

impl Spent {
    pub fn new(turns: usize) -> Self {
        Self {
            turns,
            tokens: 0,
            steps_started: 0,
            started: Instant::now(),
        }
    }

    /// Why no further model turn may start, if one may not.
    pub fn exhausted(&self, limits: &Limits) -> Option<String> {
        if self.turns >= limits.max_turns {
            return Some(format!(
                "the turn budget ({} model turns) is used up",
                limits.max_turns
            ));
        }
        if let Some(max) = limits.max_tokens.filter(|max| self.tokens >= *max) {
            return Some(format!(
                "the token budget is used up ({} of {max} tokens)",
                self.tokens
            ));
        }
        if let Some(limit) = limits.time_limit.filter(|l| self.started.elapsed() >= *l) {
            return Some(format!(
                "the time limit of {} s is reached",
                limit.as_secs()
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_escalates_and_progress_resets_it() {
        let mut guard = LoopGuard::default();
        let answers: Vec<Escalation> = (0..5).map(|_| guard.observe("read_file:a")).collect();
        assert_eq!(
            answers,
            [
                Escalation::None,
                Escalation::Repeat,
                Escalation::Nudge,
                Escalation::Replan,
                Escalation::Stop
            ]
        );
        assert_eq!(guard.observe("other"), Escalation::None);
        guard.progress();
        assert_eq!(guard.observe("read_file:a"), Escalation::None);
    }

    #[test]
    fn budgets_say_which_limit_ran_out() {
        let limits = Limits {
            max_turns: 2,
            max_tokens: Some(100),
            ..Limits::default()
        };
        let mut spent = Spent::new(0);
        assert_eq!(spent.exhausted(&limits), None);
        spent.tokens = 150;
        assert!(spent.exhausted(&limits).unwrap().contains("token budget"));
        spent.turns = 2;
        assert!(spent.exhausted(&limits).unwrap().contains("turn budget"));
        let timed = Limits {
            time_limit: Some(Duration::ZERO),
            ..Limits::default()
        };
        assert!(Spent::new(0)
            .exhausted(&timed)
            .unwrap()
            .contains("time limit"));
    }
}
