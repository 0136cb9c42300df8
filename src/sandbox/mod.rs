//! Running commands for the agent: the [`Sandbox`] trait and its implementations.
//!
//! Every command the model proposes (the `run` tool, the check command) goes through here, never through
//! `std::process` elsewhere. A sandbox reports how a command ended and what it printed, capped; it never
//! decides what the agent does next.

pub mod cgroup;
pub mod confine;
pub mod linux;
pub mod none;
mod process;
pub mod profile;
pub mod proxy;
pub mod view;
#[cfg(feature = "plugins")]
pub mod wasm;

pub use process::available_bytes;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// What a plugin tool may do to the worktree (commands always get the worktree read-write). Written
/// `"read"` / `"write"` in a plugin's manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceAccess {
    #[default]
    Read,
    Write,
}

impl WorkspaceAccess {
    /// "read-only" / "read-write", as listings and notes show it.
    pub fn label(self) -> &'static str {
        match self {
            WorkspaceAccess::Read => "read-only",
            WorkspaceAccess::Write => "read-write",
        }
    }
}

/// What to run, where, and under which limits.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// A shell command line, run with `sh -c`.
    pub command: String,
    /// Working directory: the task's worktree.
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// Extra environment variables on top of the inherited environment.
    pub env: Vec<(String, String)>,
    /// Most bytes of output kept; the middle is dropped with a note when exceeded.
    pub output_limit: usize,
}

/// Why a command stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum StopReason {
    Exited(i32),
    Signal(i32),
    TimedOut,
    /// Killed by the memory limit.
    OutOfMemory,
    /// Killed because the worktree's disk was nearly full (the profile's `min_free_disk_mb`).
    Disk,
}

/// How a command ended.
#[derive(Debug, Clone, Serialize)]
pub struct CommandOutcome {
    pub stop: StopReason,
    /// stdout and stderr interleaved as written, capped at `output_limit`.
    pub output: String,
    pub truncated: bool,
    pub elapsed_ms: u64,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.stop == StopReason::Exited(0)
    }

    /// One line saying how it ended, e.g. "exit 101 after 3.2 s".
    pub fn status_line(&self) -> String {
        let secs = self.elapsed_ms as f64 / 1000.0;
        match self.stop {
            StopReason::TimedOut => format!("timed out after {secs:.1} s and was killed"),
            StopReason::Disk => format!(
                "killed after {secs:.1} s: the disk was nearly full (the sandbox profile's min_free_disk_mb)"
            ),
            _ => format!("{} after {secs:.1} s", self.ending()),
        }
    }

    /// How it ended without how long it took, e.g. "exit 101": what the model is shown, since a
    /// duration differs from run to run and says nothing about the code.
    pub fn ending(&self) -> String {
        match self.stop {
            StopReason::Exited(code) => format!("exit {code}"),
            StopReason::Signal(sig) => format!("killed by signal {sig}"),
            StopReason::TimedOut => "timed out and was killed".to_string(),
            StopReason::OutOfMemory => "killed by the memory limit".to_string(),
            StopReason::Disk => {
                "killed: the disk was nearly full (the sandbox profile's min_free_disk_mb)"
                    .to_string()
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("could not start `{command}` in {cwd}: {source}")]
    Spawn {
        command: String,
        cwd: PathBuf,
        source: std::io::Error,
    },
    #[error("lost track of `{command}`: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
}

/// Runs commands in a worktree under limits.
pub trait Sandbox: Send + Sync {
    /// A short name for reports, e.g. "none (plain subprocess)".
    fn describe(&self) -> String;
    fn run(&self, spec: &CommandSpec) -> Result<CommandOutcome, SandboxError>;
    /// A long-lived process confined exactly as [`Sandbox::run`] confines a command (an MCP server
    /// the run talks to over stdin/stdout). `spec.timeout` bounds its CPU time; `spec.output_limit`
    /// is not used. The caller spawns it, owns its pipes, and must keep [`Service::guard`] until the
    /// process has been killed.
    fn service(&self, spec: &CommandSpec) -> Service;
}

/// A confined process, ready to spawn: [`Service::command`] holds the program, arguments,
/// environment, working directory, limits and its own process group; stdio is the caller's to set.
pub struct Service {
    pub command: std::process::Command,
    /// What must live as long as the process (its cgroup, which kills what is left when dropped).
    pub guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Environment variables whose values name cache directories commands may write (build outputs,
/// fetched dependencies); the sandbox keeps them writable.
/// Is this environment variable a credential? Such variables never reach a command the model runs,
/// whatever the sandbox or its profile says: tokens for GitHub, model APIs, hubs and clouds, and the
/// ssh agent's socket.
pub fn is_secret_env(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    const EXACT: &[&str] = &[
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "AGENT_GIT_TOKEN",
        "AGENT_API_KEY",
        "OPENAI_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "SSH_AUTH_SOCK",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "CARGO_REGISTRY_TOKEN",
        "NPM_TOKEN",
        "NODE_AUTH_TOKEN",
        "TWINE_PASSWORD",
    ];
    EXACT.contains(&upper.as_str())
        || [
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "API_KEY",
            "APIKEY",
            "PRIVATE_KEY",
            "CREDENTIAL",
        ]
        .iter()
        .any(|word| upper.contains(word))
        || upper.starts_with("AWS_")
        || upper.starts_with("AZURE_")
        || upper.starts_with("GOOGLE_APPLICATION")
}

pub const CACHE_ENV: &[&str] = &["CARGO_TARGET_DIR", PYDEPS_ENV];

/// Where the fetch phase installs Python dependencies (`pip install --target`).
pub const PYDEPS_ENV: &str = "AGENT_PYDEPS";

/// Which sandbox to use (`--sandbox`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// bubblewrap when it works here, else unconfined with a warning.
    Auto,
    /// bubblewrap, or fail.
    Bwrap,
    /// No confinement (only a timeout and an output cap).
    None,
}

/// Build the chosen sandbox. `read_only` paths stay visible inside (e.g. the repository whose objects
/// the workspace borrows). Returns the sandbox and, when protection is missing, a warning saying what.
pub fn select(
    choice: Choice,
    read_only: Vec<PathBuf>,
    profile: &str,
) -> Result<(Box<dyn Sandbox>, Option<String>), String> {
    select_with(choice, read_only, profile::Profile::load(profile)?)
}

/// [`select`] with a profile already loaded (and perhaps changed, e.g. given network for an MCP
/// server whose configuration grants it).
pub fn select_with(
    choice: Choice,
    read_only: Vec<PathBuf>,
    profile: profile::Profile,
) -> Result<(Box<dyn Sandbox>, Option<String>), String> {
    match choice {
        Choice::None => Ok((
            Box::new(none::NoSandbox),
            Some(
                "--sandbox none: commands run unconfined, with your user's full rights and network"
                    .into(),
            ),
        )),
        Choice::Bwrap => linux::BwrapSandbox::probe(read_only, profile)
            .map(|s| (Box::new(s) as Box<dyn Sandbox>, None)),
        Choice::Auto => match linux::BwrapSandbox::probe(read_only, profile) {
            Ok(sandbox) => Ok((Box::new(sandbox), None)),
            Err(why) => Ok((
                Box::new(none::NoSandbox),
                Some(format!(
                    "commands run UNCONFINED (no filesystem, network or process isolation): {why}"
                )),
            )),
        },
    }
}

/// Keep the head and tail of `bytes` within `limit`, noting what was dropped. Test runners print the
/// summary last and the first error first, so both ends matter more than the middle.
pub fn cap_output(bytes: &[u8], limit: usize) -> (String, bool) {
    if bytes.len() <= limit {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let head = limit / 3;
    let tail = limit - head;
    let omitted = bytes.len() - head - tail;
    let text = format!(
        "{}\n[... {omitted} bytes of output omitted ...]\n{}",
        String::from_utf8_lossy(&bytes[..head]),
        String::from_utf8_lossy(&bytes[bytes.len() - tail..])
    );
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_both_ends() {
        let input: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
        let (text, truncated) = cap_output(&input, 300);
        assert!(truncated);
        assert!(text.starts_with("abc"));
        assert!(text.contains("700 bytes of output omitted"));
        assert!(text.ends_with(std::str::from_utf8(&input[800..]).unwrap()));
        assert_eq!(cap_output(b"short", 300), ("short".to_string(), false));
    }
}
