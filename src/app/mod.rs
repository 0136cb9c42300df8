//! The commands' wiring: everything that touches the user's terminal or environment lives here or in
//! `report`. `run` (with `resume` and `replay`, which start the same run in another way) is in
//! [`run`]; `log` in [`log`]; `apply`, `sandbox exec` and `doctor` below.

mod doctor;
mod eval;
mod log;
mod run;
mod tools;

pub use doctor::doctor;
pub use eval::eval;
pub use log::log;
pub use run::{replay, resume, run};
pub use tools::tools;

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;

use crate::cli::{ApplyArgs, SandboxExecArgs};
use crate::patch;
use crate::sandbox::{self, CommandSpec, StopReason};

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
    // The checkout and the patch may both be hostile (a tracked link to `.git` or out of the tree):
    // every read and write goes through the same confined layer as the agent's own tools.
    let fs = match crate::hostfs::Beneath::open(&args.repo) {
        Ok(fs) => fs,
        Err(e) => return Err(UsageError(format!("--repo: {e}")).into()),
    };
    let changes = match patch::plan(&files, &fs) {
        Ok(changes) => changes,
        Err(e) => return refused(e.to_string()),
    };
    let hunks: usize = files.iter().map(|f| f.hunks.len()).sum();
    let mut out = std::io::stdout().lock();
    if args.check {
        for change in &changes {
            writeln!(out, "would be {}", change.describe_with(": "))?;
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
    if let Err(e) = patch::write_all_or_nothing(&fs, &writes) {
        return refused(format!(
            "writing failed ({e}); files already written were restored"
        ));
    }
    for change in &changes {
        writeln!(out, "{}", change.describe_with(": "))?;
    }
    Ok(0)
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
    // The sandbox runs a shell command line; the words given are quoted back into one.
    let command = shlex::try_join(args.command.iter().map(String::as_str))
        .map_err(|e| UsageError(format!("the command cannot be quoted for the shell: {e}")))?;
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
        StopReason::Disk => {
            eprintln!("agent sandbox exec: {}", outcome.status_line());
            137
        }
        StopReason::TimedOut => {
            eprintln!("agent sandbox exec: {}", outcome.status_line());
            124
        }
    })
}
