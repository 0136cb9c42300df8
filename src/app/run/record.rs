//! Phase 3 of a run: its record under the state folder (`run.json`, so `agent resume` and `agent
//! replay` find it; the lock that keeps a second process off it) and the reporters its events go to
//! (the terminal or JSON lines, and the run log `events.jsonl`).

use std::path::{Path, PathBuf};

use super::start::Start;
use super::task::Task;
use crate::app::UsageError;
use crate::cli::RunArgs;
use crate::report::{Fanout, JsonReporter, LogReporter, Reporter, TerminalReporter};
use crate::runs::{self, RunLock, RunRecord};
use crate::vcs::Workspace;

/// A run's folder, its log when it could be created, and the lock held while the run goes.
pub(super) struct Recording {
    pub run_id: String,
    pub dir: PathBuf,
    pub log: Option<PathBuf>,
    /// Held until the run ends: `agent resume` refuses the run while it is going.
    _lock: Option<RunLock>,
}

impl Recording {
    /// Record the run (a resumed run keeps its record), lock it, and open its reporters. A record or
    /// log that cannot be written is a warning, not a failure; a run locked by another process is.
    pub fn open(
        args: &RunArgs,
        task: &Task,
        start: &Start,
        workspace: &Workspace,
        run_id: &str,
    ) -> anyhow::Result<(Recording, Fanout)> {
        let dir = runs::runs_dir().join(run_id);
        if !matches!(start, Start::Resume { .. }) {
            let record = record(args, task, start, workspace, run_id);
            if let Err(e) = record.save(&dir) {
                eprintln!(
                    "warning: cannot record the run in {}: {e}; `agent resume` will not find it",
                    dir.display()
                );
            }
        }
        let lock = match RunLock::acquire(&dir) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                return Err(UsageError(format!(
                "run {run_id} is being worked on by another process; stop it first or wait for it"
            ))
                .into())
            }
            Err(e) => {
                eprintln!(
                    "warning: cannot lock the run in {}: {e}; a concurrent `agent resume` would not be refused",
                    dir.display()
                );
                None
            }
        };
        let (reporter, log) = reporters(args.json, &dir);
        Ok((
            Recording {
                run_id: run_id.to_string(),
                dir,
                log,
                _lock: lock,
            },
            reporter,
        ))
    }
}

fn record(
    args: &RunArgs,
    task: &Task,
    start: &Start,
    workspace: &Workspace,
    run_id: &str,
) -> RunRecord {
    let dry_run = args.dry_run;
    let argv = if args.argv.is_empty() {
        std::env::args().collect()
    } else {
        args.argv.clone()
    };
    let record = RunRecord {
        run_id: run_id.to_string(),
        argv,
        cwd: std::env::current_dir().unwrap_or_default(),
        task: task.text.clone(),
        repo: workspace.user_repo_path().to_path_buf(),
        branch: workspace.branch.clone(),
        base: workspace.base.to_string(),
        dry_run,
        pid: std::process::id(),
    };
    match start {
        // A replay is recorded as the run it replays, so it can itself be replayed.
        Start::Replay {
            record: original, ..
        } => RunRecord {
            argv: original.argv.clone(),
            cwd: original.cwd.clone(),
            dry_run: true,
            ..record
        },
        _ => record,
    }
}

/// The terminal (or JSON lines with `--json`) and the run log in `dir`, when it can be written.
fn reporters(json: bool, dir: &Path) -> (Fanout, Option<PathBuf>) {
    let mut sinks: Vec<Box<dyn Reporter>> = vec![if json {
        Box::new(JsonReporter)
    } else {
        Box::new(TerminalReporter::new())
    }];
    let log_path = dir.join("events.jsonl");
    let log = match LogReporter::create(&log_path) {
        Ok(log) => {
            sinks.push(Box::new(log));
            Some(log_path)
        }
        Err(e) => {
            eprintln!(
                "warning: cannot write the run log {}: {e}; continuing without it",
                log_path.display()
            );
            None
        }
    };
    (Fanout(sinks), log)
}
