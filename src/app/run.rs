//! `agent run`, and the two other ways to start the same run: `agent resume` (continue an interrupted
//! run on its task branch) and `agent replay` (re-run a recorded trajectory in a throwaway copy and
//! compare). Reads the task, opens the workspace, picks the check, loads the model, sets up the
//! reporters and the run's record, runs the loop, and presents the result.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;

use super::UsageError;
use crate::agent::{self, verify, Check, Limits, ResumePoint, RunConfig};
use crate::ci::github::{gh_command, GitHub};
use crate::ci::CiTask;
use crate::cli::{Cli, Command, ReplayArgs, ResumeArgs, RunArgs};
use crate::dirs::cache_dir;
use crate::model::replay::{ReplayModel, ScriptedTurn};
use crate::model::{ChatModel, ModelSpec};
use crate::report::pr::{self, PrDraft};
use crate::report::{
    diff, Event, Fanout, JsonReporter, LogReporter, Outcome, Reporter, TerminalReporter,
};
use crate::runs::{self, RunRecord};
use crate::sandbox;
use crate::tools::Toolbox;
use crate::vcs::Workspace;

/// How a run starts.
enum Start {
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
        commits: Vec<(usize, String)>,
        outcome: Option<Outcome>,
    },
}

/// `agent run`. Returns the process exit code.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let task = match ci_task(&args)? {
        Some(ci) => ci.text,
        None => read_task(&args)?,
    };
    execute(args, task, Start::Fresh)
}

/// The task of `--github-event`, if given.
fn ci_task(args: &RunArgs) -> anyhow::Result<Option<CiTask>> {
    match &args.github_event {
        Some(path) => Ok(Some(
            crate::ci::event::from_file(
                path,
                &crate::ci::event::Trigger::parse(&args.allow_association),
            )
            .map_err(|e| UsageError(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

/// `agent resume RUN`.
pub fn resume(args: ResumeArgs) -> anyhow::Result<u8> {
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
        return Ok(0);
    }
    let mut run_args = recorded_args(&record)?;
    run_args.json = args.json;
    if let Some(turns) = args.max_turns {
        run_args.max_turns = turns;
    }
    let task = record.task.clone();
    execute(run_args, task, Start::Resume { record, events })
}

/// `agent replay RUN`.
pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
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
    let task = record.task.clone();
    execute(
        run_args,
        task,
        Start::Replay {
            record,
            turns,
            commits,
            outcome,
        },
    )
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
    args.task = Some(record.task.clone());
    args.task_file = None;
    args.repo = record.repo.clone();
    Ok(args)
}

fn execute(args: RunArgs, task: String, start: Start) -> anyhow::Result<u8> {
    let started = Instant::now();
    let spec = ModelSpec::parse(args.model.as_deref())?;
    let (mut workspace, run_id, resume_point) = match &start {
        Start::Fresh => (open_fresh(&args, &task)?, new_run_id(), None),
        Start::Resume { record, events } => {
            let base = git2::Oid::from_str(&record.base)
                .map_err(|e| UsageError(format!("run {}: bad base commit: {e}", record.run_id)))?;
            clear_stale_lock(&record.repo, &record.branch);
            let workspace = Workspace::resume(&record.repo, &record.branch, base)?;
            let point = resume_point(&workspace, record, events)?;
            (workspace, record.run_id.clone(), Some(point))
        }
        Start::Replay { record, .. } => {
            let base = git2::Oid::from_str(&record.base)
                .map_err(|e| UsageError(format!("run {}: bad base commit: {e}", record.run_id)))?;
            (
                Workspace::open_at(&record.repo, &task, Some(base))?,
                new_run_id(),
                None,
            )
        }
    };
    let check = match &args.check {
        Some(cmd) if cmd.trim().is_empty() => {
            return Err(UsageError("--check is empty".into()).into())
        }
        Some(cmd) => Some(Check {
            command: cmd.clone(),
            source: "--check".into(),
        }),
        None => verify::detect(workspace.root()),
    };
    let run_dir = runs::runs_dir().join(&run_id);
    if !matches!(start, Start::Resume { .. }) {
        let record = RunRecord {
            run_id: run_id.clone(),
            argv: std::env::args().collect(),
            cwd: std::env::current_dir().unwrap_or_default(),
            task: task.clone(),
            repo: workspace.user_repo_path().to_path_buf(),
            branch: workspace.branch.clone(),
            base: workspace.base.to_string(),
            dry_run: args.dry_run,
            pid: std::process::id(),
        };
        let record = match &start {
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
        };
        if let Err(e) = record.save(&run_dir) {
            eprintln!(
                "warning: cannot record the run in {}: {e}; `agent resume` will not find it",
                run_dir.display()
            );
        }
    }
    // Held until this function returns: `agent resume` refuses the run while it is going.
    let _lock = match runs::RunLock::acquire(&run_dir) {
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
                run_dir.display()
            );
            None
        }
    };
    let log_path = run_dir.join("events.jsonl");
    let mut sinks: Vec<Box<dyn Reporter>> = vec![if args.json {
        Box::new(JsonReporter)
    } else {
        Box::new(TerminalReporter::new())
    }];
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
    let mut reporter = Fanout(sinks);

    let read_only = vec![workspace.borrowed_objects()];
    let (sandbox, sandbox_warning) =
        sandbox::select(args.sandbox, read_only.clone(), &args.sandbox_profile)
            .map_err(|why| UsageError(format!("--sandbox: {why}")))?;
    if let Some(warning) = sandbox_warning {
        reporter.event(&Event::Note {
            message: format!("WARNING: {warning}"),
        });
    }
    let fetch_sandbox = if args.no_fetch {
        None
    } else {
        Some(fetch_dependencies(
            &args,
            read_only,
            &workspace,
            &mut reporter,
        )?)
    };
    let mut model = load_model(&args, &spec, &start, resume_point.as_ref(), &mut reporter)?;
    let task_title = crate::report::first_line(task.trim_start_matches(['#', ' ']), 80);
    reporter.event(&Event::RunStarted {
        run_id: run_id.clone(),
        task_title: task_title.clone(),
        repo: workspace.user_repo_path().to_path_buf(),
        workspace: workspace.root().to_path_buf(),
        branch: workspace.branch.clone(),
        base: workspace.base.to_string(),
        model: model.describe(),
        check: check.as_ref().map(|c| c.command.clone()),
        check_source: check.as_ref().map_or_else(
            || "nothing detected; pass --check CMD".into(),
            |c| c.source.clone(),
        ),
        sandbox: sandbox.describe(),
        dry_run: args.dry_run,
        log,
    });
    let found = super::tools::discover_for_run(workspace.user_repo_path(), args.no_plugins);
    for problem in &found.problems {
        reporter.event(&Event::Note {
            message: format!("warning: {problem}"),
        });
    }
    let plugins = found.plugins;
    if !plugins.is_empty() {
        let offered: Vec<String> = plugins
            .iter()
            .map(|p| format!("{} ({})", p.name, p.access.label()))
            .collect();
        reporter.event(&Event::Note {
            message: format!("plugin tools offered: {}", offered.join(", ")),
        });
    }
    if let Some(point) = &resume_point {
        reporter.event(&Event::RunResumed {
            run_id: run_id.clone(),
            turns: point.turns,
            branch: workspace.branch.clone(),
            head: workspace.head()?.to_string(),
            done_steps: point.done.len(),
            remaining_steps: point.remaining.len(),
        });
    }

    let config = RunConfig {
        task,
        check,
        allow_unverified: args.allow_unverified,
        allow_test_edits: args.allow_test_edits,
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
        run_id,
        save_dir: Some(run_dir.clone()),
        resume: resume_point,
        tools: Toolbox::with_plugins(plugins),
    };
    let result = match agent::run(
        &config,
        model.as_mut(),
        &mut workspace,
        agent::Sandboxes {
            commands: sandbox.as_ref(),
            fetch: fetch_sandbox.as_deref(),
        },
        &mut reporter,
    ) {
        Ok(result) => result,
        Err(e) => {
            // A git error mid-run must not lose the work: save it (or keep the worktree) first.
            let kept = save_unverified(&mut workspace, &run_dir)
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
            return Err(
                anyhow::Error::new(e).context(format!("the run stopped on a git error{kept}"))
            );
        }
    };

    // Work no check accepted is never thrown away: it is saved as a patch beside the run log.
    let unverified_patch = save_unverified(&mut workspace, &run_dir)?;
    let step_commits = workspace.step_commits()?;
    let commits: Vec<String> = step_commits
        .iter()
        .map(|(oid, _, _)| oid.to_string())
        .collect();
    let accepted = workspace.committed_changes()?;
    let mut exit_code = result.outcome.exit_code();
    if args.pr && !matches!(start, Start::Replay { .. }) {
        let outcome_name = serde_json::to_value(result.outcome)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let draft = PrDraft {
            task_title: &task_title,
            task: &config.task,
            issue: ci_task(&args)?.and_then(|c| c.issue),
            steps: &result.steps,
            not_done: &result.not_done,
            outcome: &outcome_name,
            summary: &result.summary,
            diffstat: &diff::stat(&accepted),
            model: &model.describe(),
            turns: result.turns,
            tokens: result.tokens,
            elapsed_s: started.elapsed().as_secs_f64(),
            run_id: &config.run_id,
            unverified: config.check.is_none(),
        };
        let body_path = args
            .pr_body_out
            .clone()
            .unwrap_or_else(|| run_dir.join("pr-body.md"));
        if commits.is_empty() {
            let text = pr::nothing_accepted(&draft);
            std::fs::write(&body_path, &text)
                .with_context(|| format!("writing {}", body_path.display()))?;
            reporter.event(&Event::Note {
                message: format!(
                    "no pull request: no step was accepted; the explanation is in {}",
                    body_path.display()
                ),
            });
            exit_code = 1;
        } else {
            let event = draft_pull_request(&args, &workspace, &draft, &body_path)?;
            reporter.event(&event);
        }
    }
    reporter.event(&Event::Finished {
        outcome: result.outcome,
        summary: result.summary,
        branch: (!args.dry_run && !commits.is_empty()).then(|| workspace.branch.clone()),
        commits,
        patch: args.dry_run.then(|| diff::render(&accepted, false)),
        unverified_patch,
        exit_code,
        turns: result.turns,
        steps_accepted: result.steps_accepted,
        steps_rejected: result.steps_rejected,
        checks: result.checks,
        tokens: result.tokens,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    reporter.close();

    if let Start::Replay {
        record,
        commits: recorded,
        outcome,
        ..
    } = &start
    {
        let replayed: Vec<String> = step_commits
            .iter()
            .map(|(_, tree, _)| tree.to_string())
            .collect();
        let recorded: Vec<String> = recorded.iter().map(|(_, tree)| tree.clone()).collect();
        let mut differences = Vec::new();
        if *outcome != Some(result.outcome) {
            differences.push(format!(
                "outcome {:?} instead of the recorded {outcome:?}",
                result.outcome
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
                "replay of {}: same outcome ({:?}) and the same {} commit tree(s)",
                record.run_id,
                result.outcome,
                replayed.len()
            )?;
            return Ok(0);
        }
        writeln!(out, "replay of {} diverged:", record.run_id)?;
        for d in differences {
            writeln!(out, "  {d}")?;
        }
        return Ok(1);
    }

    if args.dry_run && !args.json {
        let mut out = std::io::stdout().lock();
        if accepted.is_empty() {
            writeln!(out, "No verified changes to propose.")?;
        } else {
            write!(
                out,
                "{}",
                diff::render(&accepted, std::io::stdout().is_terminal())
            )?;
            writeln!(
                out,
                "{} (dry run: nothing was changed in {})",
                diff::stat(&accepted),
                workspace.user_repo_path().display()
            )?;
        }
    }
    Ok(exit_code as u8)
}

/// Save the worktree's changes that no check accepted as `unverified.patch` in `run_dir`; `None`
/// when there are none.
fn save_unverified(
    workspace: &mut Workspace,
    run_dir: &std::path::Path,
) -> anyhow::Result<Option<PathBuf>> {
    let leftover = workspace.uncommitted_changes()?;
    if leftover.is_empty() {
        return Ok(None);
    }
    let path = run_dir.join("unverified.patch");
    std::fs::create_dir_all(run_dir)
        .and_then(|_| std::fs::write(&path, diff::render(&leftover, false)))
        .with_context(|| format!("saving unverified changes to {}", path.display()))?;
    Ok(Some(path))
}

/// The model for this start: a replay of the recorded turns, the scripted model continued after the
/// turns it had used (resuming a replay run), or the model the command line names.
fn load_model(
    args: &RunArgs,
    spec: &ModelSpec,
    start: &Start,
    resume: Option<&ResumePoint>,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Box<dyn ChatModel>> {
    if let Start::Replay { record, turns, .. } = start {
        let path = runs::runs_dir().join(&record.run_id).join("events.jsonl");
        return Ok(Box::new(ReplayModel::new(path, turns.clone())));
    }
    if let (ModelSpec::Replay(path), Some(point)) = (spec, resume) {
        return Ok(Box::new(
            ReplayModel::from_file(path)?.skipping(point.turns),
        ));
    }
    if spec.is_embedded() {
        reporter.event(&Event::Note {
            message: format!("loading {spec} (mistral.rs, in-process)"),
        });
    }
    let options = args.model_options.options();
    if let Some(template) = &options.chat_template {
        if !template.is_file() {
            return Err(UsageError(format!(
                "--chat-template {}: no such file",
                template.display()
            ))
            .into());
        }
    }
    spec.load(&options)
        .with_context(|| format!("loading model {spec}"))
}

/// The workspace of a new run. With an issue (from `--github-event`) the branch is `agent/issue-N`
/// and a new run continues it; with `--pr` the remote's copy of that branch is fetched first.
fn open_fresh(args: &RunArgs, task: &str) -> anyhow::Result<Workspace> {
    let issue = ci_task(args)?.and_then(|c| c.issue);
    let branch = match issue {
        Some(n) => format!("agent/issue-{n}"),
        None if args.pr => format!("agent/{}", crate::vcs::slugify(task)),
        None => return Ok(Workspace::open(&args.repo, task)?),
    };
    if args.pr {
        crate::vcs::prepare_branch(&args.repo, &args.remote, &branch)?;
    }
    Ok(Workspace::continue_branch(&args.repo, &branch)?)
}

/// Push the task branch and create or update the draft pull request (or say how to).
fn draft_pull_request(
    args: &RunArgs,
    workspace: &Workspace,
    draft: &PrDraft<'_>,
    body_path: &std::path::Path,
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

/// The dependency-fetch phase: with network, under the `fetch` profile, so the offline phase finds
/// every dependency in the local caches. A failure is reported, not fatal: the check will say more.
/// Returns the fetch sandbox, for fetching again when a step changes a manifest.
fn fetch_dependencies(
    args: &RunArgs,
    read_only: Vec<PathBuf>,
    workspace: &Workspace,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Box<dyn sandbox::Sandbox>> {
    let root = workspace.root();
    let (fetch_sandbox, _) =
        sandbox::select(args.sandbox, read_only, "fetch").map_err(UsageError)?;
    let timeout = Duration::from_secs(args.check_timeout);
    let env = command_env(root, workspace.user_repo_path());
    for message in verify::fetch(fetch_sandbox.as_ref(), root, timeout, &env) {
        reporter.event(&Event::Note { message });
    }
    Ok(fetch_sandbox)
}

fn read_task(args: &RunArgs) -> anyhow::Result<String> {
    let text = match (&args.task, &args.task_file) {
        (_, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| UsageError(format!("cannot read --task-file {}: {e}", file.display())))?,
        (Some(dash), None) if dash == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the task from stdin")?;
            text
        }
        (Some(task), None) => task.clone(),
        (None, None) => String::new(),
    };
    if text.trim().is_empty() {
        return Err(UsageError("the task is empty; give it as an argument, with --task-file FILE, or on stdin with `-`".into()).into());
    }
    Ok(text)
}

/// Environment for commands: build outputs go outside the worktree so they are never committed and are
/// reused across runs of the same repository; Python dependencies fetched for `requirements.txt` are
/// importable. Both live under a folder of their own for `user_repo` ([`repo_cache_dir`]), so nothing one
/// repository's commands write is run by another's.
pub(crate) fn command_env(worktree: &Path, user_repo: &Path) -> Vec<(String, String)> {
    let mut env = vec![("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string())];
    let cache = repo_cache_dir(user_repo);
    env.push((
        "CARGO_TARGET_DIR".into(),
        cache.join("cargo-target").display().to_string(),
    ));
    if let Ok(requirements) = std::fs::read(worktree.join("requirements.txt")) {
        let digest = hex_digest(&requirements);
        let dir = cache
            .join("pydeps")
            .join(&digest[..16])
            .display()
            .to_string();
        let path = match std::env::var("PYTHONPATH") {
            Ok(existing) if !existing.is_empty() => format!("{dir}:{existing}"),
            _ => dir.clone(),
        };
        env.push((sandbox::PYDEPS_ENV.into(), dir));
        env.push(("PYTHONPATH".into(), path));
    }
    env
}

/// The cache folder of one repository: `<cache>/repos/<first 16 hex digits of the SHA-256 of its
/// canonical path>`.
pub(crate) fn repo_cache_dir(user_repo: &Path) -> PathBuf {
    let canonical = user_repo
        .canonicalize()
        .unwrap_or_else(|_| user_repo.to_path_buf());
    let digest = hex_digest(canonical.as_os_str().as_encoded_bytes());
    cache_dir().join("repos").join(&digest[..16])
}

fn hex_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
