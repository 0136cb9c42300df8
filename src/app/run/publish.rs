//! Phase 7 of a run (after the loop): what it leaves behind. Accepted steps are already commits on the
//! task branch; here unverified work is saved as a patch beside the run log, the draft pull request is
//! pushed (`--pr`), the `finished` event is emitted, a dry run prints its diff, and a replay is
//! compared with the run it replays.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::start::Start;
use super::task::Task;
use crate::agent::{RunConfig, RunResult};
use crate::ci::github::{gh_command, GitHub};
use crate::cli::RunArgs;
use crate::protocol::{Event, Outcome, Reporter};
use crate::report::diff;
use crate::report::pr::{self, PrDraft};
use crate::vcs::{FileChange, Workspace};

/// What the run left on its branch and beside its log.
pub(super) struct Landed {
    /// The task branch's step commits, oldest first.
    pub commits: Vec<String>,
    /// Their trees, for comparing a replay.
    pub trees: Vec<String>,
    /// Every change the commits made, for the dry run's diff and the pull request's stat.
    pub accepted: Vec<FileChange>,
    pub unverified_patch: Option<PathBuf>,
}

impl Landed {
    /// Work no check accepted is never thrown away: it is saved as a patch beside the run log.
    pub fn collect(workspace: &mut Workspace, run_dir: &Path) -> anyhow::Result<Landed> {
        let unverified_patch = save_unverified(workspace, run_dir)?;
        let step_commits = workspace.step_commits()?;
        Ok(Landed {
            commits: step_commits
                .iter()
                .map(|(oid, _, _)| oid.to_string())
                .collect(),
            trees: step_commits
                .iter()
                .map(|(_, tree, _)| tree.to_string())
                .collect(),
            accepted: workspace.committed_changes()?,
            unverified_patch,
        })
    }
}

/// Save the worktree's changes that no check accepted as `unverified.patch` in `run_dir`; `None`
/// when there are none.
pub(super) fn save_unverified(
    workspace: &mut Workspace,
    run_dir: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let leftover = workspace.uncommitted_changes()?;
    if leftover.is_empty() {
        return Ok(None);
    }
    let path = run_dir.join("unverified.patch");
    std::fs::create_dir_all(run_dir)
        .and_then(|_| std::fs::write(&path, crate::vcs::patch_text(&leftover)))
        .with_context(|| format!("saving unverified changes to {}", path.display()))?;
    Ok(Some(path))
}

/// Everything the pull request's text is made of.
pub(super) struct Finished<'a> {
    pub task: &'a Task,
    pub config: &'a RunConfig,
    pub result: &'a RunResult,
    pub model: String,
    pub elapsed_s: f64,
    /// The run's folder: the body goes there unless `--pr-body-out` says otherwise.
    pub run_dir: &'a Path,
}

/// `--pr`: push the task branch and create or update the draft pull request (or say how to). With no
/// step accepted there is no pull request: the explanation is written where its body would be, and
/// the run exits 1. Returns the run's exit code.
pub(super) fn pull_request(
    args: &RunArgs,
    finished: &Finished<'_>,
    landed: &Landed,
    workspace: &Workspace,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<i32> {
    let outcome_name = serde_json::to_value(finished.result.outcome)?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let task_title = finished.task.title();
    let diffstat = diff::stat(&landed.accepted);
    let draft = PrDraft {
        task_title: &task_title,
        task: &finished.config.task,
        issue: finished.task.issue,
        steps: &finished.result.steps,
        not_done: &finished.result.not_done,
        outcome: &outcome_name,
        summary: &finished.result.summary,
        diffstat: &diffstat,
        model: &finished.model,
        turns: finished.result.turns,
        tokens: finished.result.tokens,
        elapsed_s: finished.elapsed_s,
        run_id: &finished.config.run_id,
        unverified: finished.config.check.is_none(),
    };
    let body_path = args
        .pr_body_out
        .clone()
        .unwrap_or_else(|| finished.run_dir.join("pr-body.md"));
    if landed.commits.is_empty() {
        let text = pr::nothing_accepted(&draft);
        std::fs::write(&body_path, &text)
            .with_context(|| format!("writing {}", body_path.display()))?;
        reporter.event(&Event::Note {
            message: format!(
                "no pull request: no step was accepted; the explanation is in {}",
                body_path.display()
            ),
        });
        return Ok(1);
    }
    let event = draft_pull_request(args, workspace, &draft, &body_path)?;
    reporter.event(&event);
    Ok(finished.result.outcome.exit_code())
}

/// Push the task branch and create or update the draft pull request (or say how to).
fn draft_pull_request(
    args: &RunArgs,
    workspace: &Workspace,
    draft: &PrDraft<'_>,
    body_path: &Path,
) -> anyhow::Result<Event> {
    let title = pr::title(draft);
    let body = pr::body(draft);
    std::fs::write(body_path, &body).with_context(|| format!("writing {}", body_path.display()))?;
    let branch = workspace.branch.clone();
    crate::vcs::push_branch(workspace.user_repo_path(), &args.remote, &branch)?;
    let base = match &args.pr_base {
        Some(base) => base.clone(),
        None => crate::vcs::prepare_branch(workspace.user_repo_path(), &args.remote, &branch)?
            .default_branch
            .unwrap_or_else(|| "main".into()),
    };
    Ok(match GitHub::from_env() {
        Some(github) => {
            let pull = github
                .create_or_update(&branch, &base, &title, &body)
                .map_err(anyhow::Error::msg)?;
            Event::PullRequest {
                branch,
                base,
                title,
                url: Some(pull.url),
                number: Some(pull.number),
                created: pull.created,
                command: None,
                body_file: body_path.to_path_buf(),
            }
        }
        None => Event::PullRequest {
            command: Some(gh_command(&branch, &base, &title, body_path)),
            branch,
            base,
            title,
            url: None,
            number: None,
            created: false,
            body_file: body_path.to_path_buf(),
        },
    })
}

/// The run's last event: how it ended, what it left, and what it cost.
pub(super) fn finished_event(
    args: &RunArgs,
    result: RunResult,
    landed: &Landed,
    workspace: &Workspace,
    exit_code: i32,
    elapsed_ms: u64,
) -> Event {
    Event::Finished {
        outcome: result.outcome,
        summary: result.summary,
        branch: (!args.dry_run && !landed.commits.is_empty()).then(|| workspace.branch.clone()),
        commits: landed.commits.clone(),
        patch: args
            .dry_run
            .then(|| crate::vcs::patch_text(&landed.accepted)),
        unverified_patch: landed.unverified_patch.clone(),
        exit_code,
        turns: result.turns,
        steps_accepted: result.steps_accepted,
        steps_rejected: result.steps_rejected,
        checks: result.checks,
        tokens: result.tokens,
        elapsed_ms,
    }
}

/// A dry run without `--json` prints its proposed diff (coloured on a terminal) and its size.
pub(super) fn print_dry_run(landed: &Landed, user_repo: &Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if landed.accepted.is_empty() {
        writeln!(out, "No verified changes to propose.")?;
        return Ok(());
    }
    let colour = console::colors_enabled();
    write!(out, "{}", diff::render(&landed.accepted, colour))?;
    writeln!(
        out,
        "{} (dry run: nothing was changed in {})",
        diff::stat(&landed.accepted),
        user_repo.display()
    )?;
    Ok(())
}

/// A replay's verdict on stderr: 0 when the outcome and every commit's tree are the recorded ones,
/// 1 with the differences otherwise.
pub(super) fn compare_replay(
    start: &Start,
    outcome: Outcome,
    landed: &Landed,
) -> anyhow::Result<u8> {
    let Start::Replay {
        record,
        commits: recorded,
        outcome: recorded_outcome,
        ..
    } = start
    else {
        return Ok(0);
    };
    let recorded: Vec<&String> = recorded.iter().map(|(_, tree)| tree).collect();
    let replayed: Vec<&String> = landed.trees.iter().collect();
    let mut differences = Vec::new();
    if *recorded_outcome != Some(outcome) {
        differences.push(format!(
            "outcome {outcome:?} instead of the recorded {recorded_outcome:?}"
        ));
    }
    if replayed != recorded {
        differences.push(format!(
            "commit trees differ: recorded {recorded:?}, replayed {replayed:?}"
        ));
    }
    let mut out = std::io::stderr().lock();
    if differences.is_empty() {
        writeln!(
            out,
            "replay of {}: same outcome ({outcome:?}) and the same {} commit tree(s)",
            record.run_id,
            replayed.len()
        )?;
        return Ok(0);
    }
    writeln!(out, "replay of {} diverged:", record.run_id)?;
    for d in differences {
        writeln!(out, "  {d}")?;
    }
    Ok(1)
}
