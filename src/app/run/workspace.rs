//! Phase 2 of a run: the isolated workspace it works in (a new task branch, the branch of an
//! interrupted run, or a throwaway copy at a recorded base), where an interrupted run continues, and
//! the check that verifies its steps.

use std::time::{SystemTime, UNIX_EPOCH};

use super::start::Start;
use super::task::Task;
use crate::agent::{verify, Check, ResumePoint};
use crate::app::UsageError;
use crate::cli::RunArgs;
use crate::protocol::Event;
use crate::runs::{self, RunRecord};
use crate::vcs::Workspace;

/// The workspace of a run, its id, and (when it continues an interrupted run) where it goes on.
pub(super) struct Prepared {
    pub workspace: Workspace,
    pub run_id: String,
    pub resume: Option<ResumePoint>,
}

impl Prepared {
    pub fn prepare(args: &RunArgs, task: &Task, start: &Start) -> anyhow::Result<Prepared> {
        Ok(match start {
            Start::Fresh => Prepared {
                workspace: open_fresh(args, task)?,
                run_id: new_run_id(),
                resume: None,
            },
            Start::Resume { record, events } => {
                let base = recorded_base(record)?;
                clear_stale_lock(&record.repo, &record.branch);
                let workspace = Workspace::resume(&record.repo, &record.branch, base)?;
                let point = resume_point(&workspace, record, events)?;
                Prepared {
                    workspace,
                    run_id: record.run_id.clone(),
                    resume: Some(point),
                }
            }
            Start::Replay { record, .. } => Prepared {
                workspace: Workspace::open_at(
                    &record.repo,
                    &task.text,
                    Some(recorded_base(record)?),
                )?,
                run_id: new_run_id(),
                resume: None,
            },
        })
    }
}

/// The check that verifies the steps: `--check CMD`, else what the workspace's files suggest.
pub(super) fn check(args: &RunArgs, workspace: &Workspace) -> anyhow::Result<Option<Check>> {
    Ok(match &args.check {
        Some(cmd) if cmd.trim().is_empty() => {
            return Err(UsageError("--check is empty".into()).into())
        }
        Some(cmd) => Some(Check {
            command: cmd.clone(),
            // A check from a config file says which file: a repository's can set it.
            source: args
                .configured
                .iter()
                .find(|s| s.key == "run.check")
                .map_or_else(|| "--check".into(), |s| format!("from {}", s.origin)),
        }),
        None => verify::detect(workspace.root()),
    })
}

fn recorded_base(record: &RunRecord) -> anyhow::Result<git2::Oid> {
    Ok(git2::Oid::from_str(&record.base)
        .map_err(|e| UsageError(format!("run {}: bad base commit: {e}", record.run_id)))?)
}

/// The workspace of a new run. With an issue (from `--github-event`) the branch is `agent/issue-N`
/// and a new run continues it; with `--pr` the remote's copy of that branch is fetched first.
fn open_fresh(args: &RunArgs, task: &Task) -> anyhow::Result<Workspace> {
    let branch = match task.issue {
        Some(n) => format!("agent/issue-{n}"),
        None if args.pr => format!("agent/{}", crate::vcs::slugify(&task.text)),
        None => return Ok(Workspace::open(&args.repo, &task.text)?),
    };
    if args.pr {
        crate::vcs::prepare_branch(&args.repo, &args.remote, &branch)?;
    }
    Ok(Workspace::continue_branch(&args.repo, &branch)?)
}

/// Where the interrupted run continues: its branch's last commit must be one of its verified steps.
fn resume_point(
    workspace: &Workspace,
    record: &RunRecord,
    events: &[Event],
) -> anyhow::Result<ResumePoint> {
    let commits = workspace.step_commits()?;
    let Some((tip, _, message)) = commits.last() else {
        return Ok(runs::resume_point(events, None));
    };
    let trailers = runs::step_trailers(message)
        .filter(|t| t.run_id == record.run_id)
        .ok_or_else(|| {
            UsageError(format!(
                "the last commit {tip} on {} is not a step of run {}; the branch was changed by someone else, \
                 so the agent will not continue on it",
                record.branch, record.run_id
            ))
        })?;
    Ok(runs::resume_point(
        events,
        Some((&trailers, &tip.to_string())),
    ))
}

/// A `.lock` left on the task branch by a process killed mid-update would block every later update.
/// The run's own process is gone (checked before), so a lock on its branch is stale.
fn clear_stale_lock(repo: &std::path::Path, branch: &str) {
    let Ok(user_repo) = git2::Repository::discover(repo) else {
        return;
    };
    let lock = user_repo
        .commondir()
        .join("refs/heads")
        .join(format!("{branch}.lock"));
    if lock.is_file() {
        let _ = std::fs::remove_file(&lock);
    }
}

fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{:06}-{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}
