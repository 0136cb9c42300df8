//! `agent sandbox exec`: one command under the agent's sandbox, for trying a profile by hand.

use std::io::Write;
use std::time::Duration;

use super::UsageError;
use crate::cli::SandboxExecArgs;
use crate::sandbox::{self, CommandSpec, StopReason};

/// `agent sandbox exec`: one command under the agent's sandbox; its exit status is passed through.
pub fn sandbox_exec(args: SandboxExecArgs) -> anyhow::Result<u8> {
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| UsageError(format!("--dir {}: {e}", args.dir.display())))?;
    let profile = sandbox::profile::Profile::load(&args.profile)
        .and_then(|p| p.with_registries(&args.registries))
        .map_err(UsageError)?;
    let (sandbox, warning) =
        sandbox::select_with(args.sandbox, Vec::new(), profile).map_err(UsageError)?;
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
