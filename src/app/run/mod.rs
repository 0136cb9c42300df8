//! `agent run`, and the two other ways to start the same run: `agent resume` (continue an interrupted
//! run on its task branch) and `agent replay` (re-run a recorded trajectory in a throwaway copy and
//! compare).
//!
//! A run goes through named phases, one module each, in this order: the [`task`] is read; the
//! [`workspace`] is prepared (a task branch in an isolated copy) and the check chosen; the run is
//! [`record`]ed and its reporters opened; the sandboxes are chosen and the dependencies fetched
//! ([`deps`]); the [`model`] is loaded; the tools beyond the built-ins are [`offered`] (plugins, MCP
//! servers started); the agent loop runs; and [`publish`] saves what no check
//! accepted, drafts the pull request and reports how it ended. [`start`] reads a recorded run back for
//! `resume` and `replay`.

mod deps;
mod model;
mod offered;
mod publish;
mod record;
mod start;
mod task;
mod workspace;

use std::time::{Duration, Instant};

pub(crate) use deps::command_env;

use crate::agent::{self, Check, Limits, ResumePoint, RunConfig, RunResult};
use crate::cli::{ReplayArgs, ResumeArgs, RunArgs};
use crate::model::{ChatModel, ModelSpec};
use crate::protocol::{Event, Reporter};
use crate::tools::Toolbox;
use crate::vcs::{Reclaimed, Workspace};
use deps::Sandboxes;
use publish::{Finished, Landed};
use record::Recording;
use start::Start;
use task::Task;
use workspace::Prepared;

/// `agent run`. Returns the process exit code.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let task = Task::read(&args)?;
    execute(args, task, Start::Fresh)
}

/// `agent resume RUN`.
pub fn resume(args: ResumeArgs) -> anyhow::Result<u8> {
    match start::resume(args)? {
        Some(recorded) => execute(recorded.args, recorded.task, recorded.start),
        None => Ok(0),
    }
}

/// `agent replay RUN`.
pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    let recorded = start::replay(args)?;
    execute(recorded.args, recorded.task, recorded.start)
}

fn execute(args: RunArgs, task: Task, start: Start) -> anyhow::Result<u8> {
    let started = Instant::now();
    let spec = ModelSpec::parse(args.model.as_deref())?;
    let Prepared {
        mut workspace,
        run_id,
        resume,
    } = Prepared::prepare(&args, &task, &start)?;
    let check = workspace::check(&args, &workspace)?;
    let (recording, mut reporter) = Recording::open(&args, &task, &start, &workspace, &run_id)?;
    let sandboxes = deps::fetch(&args, &workspace, &mut reporter)?;
    let mut model = model::load(&args, &spec, &start, resume.as_ref(), &mut reporter)?;
    reporter.event(&started_event(
        &recording,
        &task,
        &workspace,
        model.describe(),
        check.as_ref(),
        sandboxes.commands.describe(),
        args.dry_run,
    ));
    if !args.configured.is_empty() {
        reporter.event(&Event::Note {
            message: format!(
                "from config files: {}",
                args.configured
                    .iter()
                    .map(|s| format!("{} = {} ({})", s.key, s.value, s.origin))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    let tools = offered::toolbox(&args, &workspace, &mut reporter);
    if let Some(point) = &resume {
        reporter.event(&resumed_event(&recording.run_id, &workspace, point)?);
        if let Start::Resume { events, .. } = &start {
            reclaim_abandoned(events, &workspace, &recording, &mut reporter);
        }
    }
    let config = run_config(&args, &task, check, &workspace, &recording, resume, tools);
    let result = run_agent(
        &config,
        model.as_mut(),
        &mut workspace,
        &sandboxes,
        &recording,
        &mut reporter,
    )?;

    let landed = Landed::collect(&mut workspace, &recording.dir)?;
    let mut exit_code = result.outcome.exit_code();
    if args.pr && !matches!(start, Start::Replay { .. }) {
        let finished = Finished {
            task: &task,
            config: &config,
            result: &result,
            model: model.describe(),
            elapsed_s: started.elapsed().as_secs_f64(),
            run_dir: &recording.dir,
        };
        exit_code = publish::pull_request(&args, &finished, &landed, &workspace, &mut reporter)?;
    }
    let outcome = result.outcome;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    reporter.event(&publish::finished_event(
        &args, result, &landed, &workspace, exit_code, elapsed_ms,
    ));
    reporter.close();

    if matches!(start, Start::Replay { .. }) {
        return publish::compare_replay(&start, outcome, &landed);
    }
    if args.dry_run && !args.json {
        publish::print_dry_run(&landed, workspace.user_repo_path())?;
    }
    Ok(exit_code as u8)
}

/// The run's first event: what it works on, with what, and under which check and sandbox.
fn started_event(
    recording: &Recording,
    task: &Task,
    workspace: &Workspace,
    model: String,
    check: Option<&Check>,
    sandbox: String,
    dry_run: bool,
) -> Event {
    Event::RunStarted {
        run_id: recording.run_id.clone(),
        task_title: task.title(),
        repo: workspace.user_repo_path().to_path_buf(),
        workspace: workspace.root().to_path_buf(),
        branch: workspace.branch.clone(),
        base: workspace.base.to_string(),
        model,
        check: check.map(|c| c.command.clone()),
        check_source: check.map_or_else(
            || "nothing detected; pass --check CMD".into(),
            |c| c.source.clone(),
        ),
        sandbox,
        dry_run,
        log: recording.log.clone(),
    }
}

fn resumed_event(
    run_id: &str,
    workspace: &Workspace,
    point: &ResumePoint,
) -> anyhow::Result<Event> {
    Ok(Event::RunResumed {
        run_id: run_id.to_string(),
        turns: point.turns,
        branch: workspace.branch.clone(),
        head: workspace.head()?.to_string(),
        done_steps: point.done.len(),
        remaining_steps: point.remaining.len(),
        workspace: Some(workspace.root().to_path_buf()),
    })
}

/// The worktrees the interrupted run left behind (a `kill -9` leaves its copy of the repository in
/// the temporary directory): each one's uncommitted changes are saved in the run's folder, then it
/// is removed. Folders the agent did not make for this repository are left alone.
fn reclaim_abandoned(
    events: &[Event],
    workspace: &Workspace,
    recording: &Recording,
    reporter: &mut dyn Reporter,
) {
    let recorded = events.iter().filter_map(|e| match e {
        Event::RunStarted { workspace, .. } => Some(workspace.clone()),
        Event::RunResumed { workspace, .. } => workspace.clone(),
        _ => None,
    });
    for (n, path) in recorded.enumerate() {
        if path == workspace.root() {
            continue;
        }
        let saved = recording.dir.join(format!("interrupted-{}.patch", n + 1));
        let save = |patch: &str| std::fs::write(&saved, patch);
        let message = match crate::vcs::reclaim_abandoned(&path, workspace.user_repo_path(), save) {
            Ok(None) => continue,
            Ok(Some(Reclaimed::Clean)) => format!(
                "removed the interrupted run's worktree {} (no uncommitted changes)",
                path.display()
            ),
            Ok(Some(Reclaimed::Saved)) => format!(
                "removed the interrupted run's worktree {}; its uncommitted changes are in {}",
                path.display(),
                saved.display()
            ),
            Err(e) => format!(
                "warning: the interrupted run's worktree {} is kept: {e}",
                path.display()
            ),
        };
        reporter.event(&Event::Note { message });
    }
}

/// The loop's configuration from the command line: task, check, budgets, timeouts and tools.
fn run_config(
    args: &RunArgs,
    task: &Task,
    check: Option<Check>,
    workspace: &Workspace,
    recording: &Recording,
    resume: Option<ResumePoint>,
    tools: Toolbox,
) -> RunConfig {
    RunConfig {
        task: task.text.clone(),
        check,
        allow_unverified: args.allow_unverified,
        allow_test_edits: args.allow_test_edits,
        whole_file_first: !args.no_whole_file_first,
        limits: Limits {
            max_turns: args.max_turns as usize,
            max_steps: args.max_steps as usize,
            max_tokens: args.max_tokens,
            time_limit: args.time_limit.map(Duration::from_secs),
            step_tries: args.step_tries as usize,
            ..Limits::default()
        },
        command_timeout: Duration::from_secs(args.command_timeout),
        check_timeout: Duration::from_secs(args.check_timeout),
        output_limit: 16 * 1024,
        command_env: command_env(workspace.root(), workspace.user_repo_path()),
        publish: !args.dry_run,
        run_id: recording.run_id.clone(),
        save_dir: Some(recording.dir.clone()),
        resume,
        tools,
    }
}

/// The agent loop. A git error mid-run must not lose the work: it is saved as a patch (or the
/// worktree kept) before the error is returned.
fn run_agent(
    config: &RunConfig,
    model: &mut dyn ChatModel,
    workspace: &mut Workspace,
    sandboxes: &Sandboxes,
    recording: &Recording,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<RunResult> {
    agent::run(config, model, workspace, sandboxes.as_agent(), reporter).map_err(|e| {
        let kept = publish::save_unverified(workspace, &recording.dir)
            .map(|p| {
                p.map_or(String::new(), |p| {
                    format!("; unverified changes saved to {}", p.display())
                })
            })
            .unwrap_or_else(|why| {
                format!(
                    "; the worktree is kept at {} ({why})",
                    workspace.keep().display()
                )
            });
        reporter.close();
        anyhow::Error::new(e).context(format!("the run stopped on a git error{kept}"))
    })
}
