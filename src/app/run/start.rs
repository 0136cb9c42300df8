//! The three ways a run starts: fresh (`agent run`), continuing a recorded run on its branch
//! (`agent resume`), or re-running a recorded run's model turns in a throwaway copy (`agent replay`).
//! Here the recorded run is read back: its command line, task, events and commits.

use anyhow::Context;
use clap::Parser;

use super::task::Task;
use crate::app::UsageError;
use crate::cli::{Cli, Command, ReplayArgs, ResumeArgs, RunArgs};
use crate::model::replay::ScriptedTurn;
use crate::protocol::{Event, Outcome};
use crate::runs::{self, RunRecord};

/// How a run starts.
pub(super) enum Start {
    Fresh,
    /// Continue run `record` on its branch.
    Resume {
        record: RunRecord,
        events: Vec<Event>,
    },
    /// Re-run `record`'s model turns from its base commit, without publishing.
    Replay {
        record: RunRecord,
        turns: Vec<ScriptedTurn>,
        /// The recorded step commits: (step, tree id), as the log last left them.
        commits: Vec<(usize, String)>,
        outcome: Option<Outcome>,
    },
}

/// A run read back from its record, ready to execute again.
pub(super) struct Recorded {
    pub args: RunArgs,
    pub task: Task,
    pub start: Start,
}

/// The run `agent resume` names; `None` when it already finished with its check passing (nothing to
/// do, and said so).
pub(super) fn resume(args: ResumeArgs) -> anyhow::Result<Option<Recorded>> {
    let dir = runs::find(&args.run).map_err(UsageError)?;
    let record = RunRecord::load(&dir).map_err(UsageError)?;
    if record.dry_run {
        return Err(UsageError(format!(
            "run {} was a dry run: it published nothing, so there is nothing to continue; start it again",
            record.run_id
        ))
        .into());
    }
    if let Some(pid) = runs::lock_holder(&dir) {
        return Err(UsageError(format!(
            "run {} is still running (process {pid}); stop it first or wait for it",
            record.run_id
        ))
        .into());
    }
    let events = runs::read_events(&dir).map_err(UsageError)?;
    if let Some(Event::Finished {
        outcome: Outcome::Finished,
        ..
    }) = last_finish(&events)
    {
        eprintln!(
            "run {} already finished with its check passing; nothing to resume",
            record.run_id
        );
        return Ok(None);
    }
    let mut run_args = recorded_args(&record)?;
    run_args.json = args.json;
    if let Some(turns) = args.max_turns {
        run_args.max_turns = turns;
    }
    let task = Task::recorded(record.task.clone(), &run_args)?;
    Ok(Some(Recorded {
        args: run_args,
        task,
        start: Start::Resume { record, events },
    }))
}

/// The run `agent replay` names, as a dry run fed by its recorded model turns.
pub(super) fn replay(args: ReplayArgs) -> anyhow::Result<Recorded> {
    let dir = runs::find(&args.run).map_err(UsageError)?;
    let record = RunRecord::load(&dir).map_err(UsageError)?;
    let events = runs::read_events(&dir).map_err(UsageError)?;
    let turns = runs::replay_turns(&events);
    if turns.is_empty() {
        return Err(UsageError(format!(
            "run {} recorded no model turn to replay",
            record.run_id
        ))
        .into());
    }
    let mut commits: Vec<(usize, String)> = Vec::new();
    for event in &events {
        match event {
            Event::Commit { step, tree, .. } => {
                commits.retain(|(s, _)| s < step);
                commits.push((*step, tree.clone()));
            }
            Event::RolledBack { step, .. } => commits.retain(|(s, _)| s < step),
            _ => {}
        }
    }
    let outcome = match last_finish(&events) {
        Some(Event::Finished { outcome, .. }) => Some(*outcome),
        _ => None,
    };
    let mut run_args = recorded_args(&record)?;
    run_args.json = args.json;
    run_args.dry_run = true;
    let task = Task::recorded(record.task.clone(), &run_args)?;
    Ok(Recorded {
        args: run_args,
        task,
        start: Start::Replay {
            record,
            turns,
            commits,
            outcome,
        },
    })
}

fn last_finish(events: &[Event]) -> Option<&Event> {
    events
        .iter()
        .rev()
        .find(|e| matches!(e, Event::Finished { .. }))
}

/// The recorded command line, parsed again as it was given (from the directory it was given in).
fn recorded_args(record: &RunRecord) -> anyhow::Result<RunArgs> {
    if record.cwd.is_dir() {
        std::env::set_current_dir(&record.cwd)
            .with_context(|| format!("entering {}", record.cwd.display()))?;
    }
    let cli = Cli::try_parse_from(&record.argv).map_err(|e| {
        UsageError(format!(
            "the recorded command line of run {} no longer parses: {e}",
            record.run_id
        ))
    })?;
    let Command::Run(args) = cli.command else {
        return Err(UsageError(format!(
            "run {} was not started by `agent run`",
            record.run_id
        ))
        .into());
    };
    let mut args = *args;
    // The recorded command line already carries the config files' settings of that run.
    args.argv = record.argv.clone();
    args.task = Some(record.task.clone());
    args.task_file = None;
    args.repo = record.repo.clone();
    Ok(args)
}
