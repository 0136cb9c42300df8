//! Wiring for `agent run`: read the task, open the workspace, pick the check, load the model, set up the
//! reporters, run the loop, and present the result (branch, dry-run patch, unverified work).
//!
//! Everything that touches the user's terminal or environment for a run lives here or in `report`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::agent::{self, verify, Check, RunConfig};
use crate::cli::{ApplyArgs, RunArgs, SandboxExecArgs};
use crate::model::{cache_dir, ModelSpec};
use crate::patch::{self, PatchError};
use crate::report::{diff, Event, Fanout, JsonReporter, LogReporter, Reporter, TerminalReporter};
use crate::sandbox::{self, CommandSpec, StopReason};
use crate::vcs::Workspace;

/// A mistake in how the command was called; exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `agent apply`: apply a patch to a directory atomically, or with `--check` only report. Returns the
/// process exit code: 0 applied, 1 refused.
pub fn apply(args: ApplyArgs) -> anyhow::Result<u8> {
    let text = if args.patch == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the patch from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.patch)
            .map_err(|e| UsageError(format!("cannot read patch file {}: {e}", args.patch)))?
    };
    if !args.repo.is_dir() {
        return Err(
            UsageError(format!("--repo {} is not a directory", args.repo.display())).into(),
        );
    }
    let refused = |reason: String| {
        eprintln!("refused: {reason}\nnothing was changed");
        Ok(1)
    };
    let (format, files) = match patch::parse_any(&text) {
        Ok(parsed) => parsed,
        Err(e) => return refused(e.to_string()),
    };
    let resolve = |path: &str| {
        crate::tools::confine(&args.repo, path).map_err(|e| PatchError::Refused(e.to_string()))
    };
    let changes = match patch::plan(&files, &resolve) {
        Ok(changes) => changes,
        Err(e) => return refused(e.to_string()),
    };
    let hunks: usize = files.iter().map(|f| f.hunks.len()).sum();
    let mut out = std::io::stdout().lock();
    if args.check {
        for change in &changes {
            writeln!(out, "would be {}: {}", change.action, change.shown)?;
        }
        writeln!(
            out,
            "the patch ({format:?}, {} file(s), {hunks} hunk(s)) applies cleanly",
            files.len()
        )?;
        return Ok(0);
    }
    let writes: Vec<_> = changes
        .iter()
        .map(|c| (c.path.clone(), c.content.clone()))
        .collect();
    if let Err(e) = patch::write_all_or_nothing(&writes) {
        return refused(format!(
            "writing failed ({e}); files already written were restored"
        ));
    }
    for change in &changes {
        writeln!(out, "{}: {}", change.action, change.shown)?;
    }
    Ok(0)
}

/// The dependency-fetch phase: with network, under the `fetch` profile, so the offline phase finds
/// every dependency in the local caches. A failure is reported, not fatal: the check will say more.
fn fetch_dependencies(
    args: &RunArgs,
    read_only: Vec<PathBuf>,
    root: &std::path::Path,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<()> {
    let Some(command) = verify::detect_fetch(root) else {
        return Ok(());
    };
    let (fetch_sandbox, _) =
        sandbox::select(args.sandbox, read_only, "fetch").map_err(UsageError)?;
    reporter.event(&Event::Note {
        message: format!("fetching dependencies (network allowed): {command}"),
    });
    let spec = CommandSpec {
        command: command.clone(),
        cwd: root.to_path_buf(),
        timeout: Duration::from_secs(args.check_timeout),
        env: command_env(root),
        output_limit: 64 * 1024,
    };
    let message = match fetch_sandbox.run(&spec) {
        Ok(outcome) if outcome.success() => {
            format!("dependencies fetched ({})", outcome.status_line())
        }
        Ok(outcome) => format!(
            "WARNING: `{command}` failed ({}); offline builds may miss dependencies:\n{}",
            outcome.status_line(),
            crate::report::first_line(
                outcome
                    .output
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or(""),
                200
            )
        ),
        Err(e) => format!("WARNING: `{command}` could not run: {e}"),
    };
    reporter.event(&Event::Note { message });
    Ok(())
}

/// `agent sandbox exec`: one command under the agent's sandbox; its exit status is passed through.
pub fn sandbox_exec(args: SandboxExecArgs) -> anyhow::Result<u8> {
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| UsageError(format!("--dir {}: {e}", args.dir.display())))?;
    let (sandbox, warning) =
        sandbox::select(args.sandbox, Vec::new(), &args.profile).map_err(UsageError)?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    let command = args
        .command
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let spec = CommandSpec {
        command,
        cwd: dir,
        timeout: Duration::from_secs(args.timeout),
        env: Vec::new(),
        output_limit: 16 << 20,
    };
    let outcome = match sandbox.run(&spec) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(125);
        }
    };
    std::io::stdout().write_all(outcome.output.as_bytes())?;
    Ok(match outcome.stop {
        StopReason::Exited(code) => code.clamp(0, 255) as u8,
        StopReason::Signal(sig) => (128 + sig).clamp(0, 255) as u8,
        StopReason::OutOfMemory => 137,
        StopReason::TimedOut => {
            eprintln!("agent sandbox exec: {}", outcome.status_line());
            124
        }
    })
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// `agent doctor`: which protections work here.
pub fn doctor() -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    let profile = sandbox::profile::Profile::load("default").map_err(UsageError)?;
    match sandbox::linux::BwrapSandbox::probe(Vec::new(), profile) {
        Ok(_) => writeln!(out, "ok       bubblewrap: namespaces work (read-only system, no network, private /tmp and pids; capabilities dropped)")?,
        Err(why) => writeln!(out, "MISSING  bubblewrap: {why}; commands would run unconfined")?,
    }
    writeln!(
        out,
        "ok       rlimits: core dumps off, file size, data size, open files, CPU time"
    )?;
    // The helper is what the sandbox runs inside bubblewrap; try it bare, on a throwaway directory.
    // Writing outside it goes to a second throwaway directory, so a missing layer harms nothing.
    let scratch = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    let probe = format!(
        "import socket\ntry:\n socket.socket()\nexcept PermissionError:\n print('net-blocked')\nopen('{}/probe','w')",
        outside.path().display()
    );
    let helper = std::process::Command::new(std::env::current_exe()?)
        .arg("__sandbox-helper")
        .arg("--write")
        .arg(scratch.path())
        .args(["--", "python3", "-c", &probe])
        .output();
    match helper {
        Ok(out_) => {
            let stdout = String::from_utf8_lossy(&out_.stdout);
            let stderr = String::from_utf8_lossy(&out_.stderr);
            let landlock = stderr.contains("PermissionError") && !stderr.contains("landlock");
            writeln!(
                out,
                "{}  landlock: writes outside the worktree denied{}",
                if landlock { "ok     " } else { "MISSING" },
                if landlock { "" } else { " (not enforced here)" }
            )?;
            let seccomp = stdout.contains("net-blocked");
            writeln!(
                out,
                "{}  seccomp: network sockets, ptrace, io_uring denied",
                if seccomp { "ok     " } else { "MISSING" }
            )?;
        }
        Err(e) => writeln!(out, "MISSING  landlock/seccomp helper: cannot run it ({e})")?,
    }
    if sandbox::linux::cgroups_available() {
        writeln!(out, "ok       cgroups: per-command pids and memory limits")?;
    } else {
        writeln!(out, "MISSING  cgroups: no writable pids/memory controllers; a fork bomb is stopped only by the timeout")?;
    }
    let model = crate::model::default_model_path();
    let state = if model.is_file() {
        "ok     "
    } else {
        "MISSING"
    };
    writeln!(out, "{state}  default model: {}", model.display())?;
    Ok(0)
}

/// `agent run`. Returns the process exit code.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let task = read_task(&args)?;
    let spec = ModelSpec::parse(args.model.as_deref())?;
    let mut workspace = Workspace::open(&args.repo, &task)?;
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
    let run_id = new_run_id();
    let run_dir = state_dir().join("runs").join(&run_id);
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
    if !args.no_fetch {
        fetch_dependencies(&args, read_only, workspace.root(), &mut reporter)?;
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
    let mut model = spec
        .load(&options)
        .with_context(|| format!("loading model {spec}"))?;
    reporter.event(&Event::RunStarted {
        run_id: run_id.clone(),
        task_title: crate::report::first_line(task.trim_start_matches(['#', ' ']), 80),
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

    let config = RunConfig {
        task,
        check,
        max_turns: args.max_steps as usize,
        command_timeout: Duration::from_secs(args.command_timeout),
        check_timeout: Duration::from_secs(args.check_timeout),
        output_limit: 16 * 1024,
        command_env: command_env(workspace.root()),
        publish: !args.dry_run,
        run_id,
    };
    let result = agent::run(
        &config,
        model.as_mut(),
        &mut workspace,
        sandbox.as_ref(),
        &mut reporter,
    )?;

    // Work no check accepted is never thrown away: it is saved as a patch beside the run log.
    let leftover = workspace.uncommitted_changes()?;
    let unverified_patch = if leftover.is_empty() {
        None
    } else {
        let path = run_dir.join("unverified.patch");
        std::fs::create_dir_all(&run_dir)
            .and_then(|_| std::fs::write(&path, diff::render(&leftover, false)))
            .with_context(|| format!("saving unverified changes to {}", path.display()))?;
        Some(path)
    };
    let commits: Vec<String> = workspace
        .step_commits()?
        .into_iter()
        .map(|(oid, _)| oid.to_string())
        .collect();
    let accepted = workspace.committed_changes()?;
    let exit_code = result.outcome.exit_code();
    reporter.event(&Event::Finished {
        outcome: result.outcome,
        summary: result.summary,
        branch: (!args.dry_run && !commits.is_empty()).then(|| workspace.branch.clone()),
        commits,
        patch: args.dry_run.then(|| diff::render(&accepted, false)),
        unverified_patch,
        exit_code,
        turns: result.turns,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    reporter.close();

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
/// reused across runs; Python dependencies fetched for `requirements.txt` are importable.
fn command_env(root: &std::path::Path) -> Vec<(String, String)> {
    let mut env = vec![("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string())];
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        env.push((
            "CARGO_TARGET_DIR".into(),
            cache_dir().join("cargo-target").display().to_string(),
        ));
    }
    if let Ok(requirements) = std::fs::read(root.join("requirements.txt")) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        requirements.hash(&mut hasher);
        let dir = cache_dir()
            .join("pydeps")
            .join(format!("{:016x}", hasher.finish()))
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

/// `$XDG_STATE_HOME/agent`, else `~/.local/state/agent`: run logs and saved patches, outside every repository.
pub fn state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("agent")
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
