//! The unconfined sandbox: a plain subprocess in its own process group, with a wall-clock timeout that
//! kills the whole group and an output cap.
//!
//! It confines nothing but time and output; the confined Linux sandbox replaces it as the default. It
//! must never leave a process behind: the group is killed when the command ends, times out or fails.

use std::os::unix::process::CommandExt;
use std::process::Command;

use super::process::supervise;
use super::{CommandOutcome, CommandSpec, Sandbox, SandboxError, Service};

pub struct NoSandbox;

impl Sandbox for NoSandbox {
    fn describe(&self) -> String {
        "none (plain subprocess with timeout; no confinement)".into()
    }

    fn run(&self, spec: &CommandSpec) -> Result<CommandOutcome, SandboxError> {
        supervise(command(spec), spec, None)
    }

    fn service(&self, spec: &CommandSpec) -> Service {
        let mut command = command(spec);
        command.current_dir(&spec.cwd).process_group(0);
        Service {
            command,
            guard: None,
        }
    }
}

/// `sh -c` with the spec's environment, and none of the agent's credentials.
fn command(spec: &CommandSpec) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(&spec.command);
    // Unconfined, but still without the agent's credentials.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_none_or(super::is_secret_env) {
            command.env_remove(&key);
        }
    }
    command.envs(
        spec.env
            .iter()
            .filter(|(k, _)| !super::is_secret_env(k))
            .map(|(k, v)| (k, v)),
    );
    command
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sandbox::StopReason;

    fn spec(command: &str, timeout_ms: u64) -> CommandSpec {
        CommandSpec {
            command: command.into(),
            cwd: std::env::temp_dir(),
            timeout: Duration::from_millis(timeout_ms),
            env: vec![("PASSED_THROUGH".into(), "hello".into())],
            output_limit: 4096,
        }
    }

    #[test]
    fn a_detached_grandchild_holding_the_output_does_not_hold_up_the_agent() {
        let started = std::time::Instant::now();
        let out = NoSandbox
            .run(&spec(
                "setsid sh -c 'sleep 30' & echo started; sleep 60",
                1_000,
            ))
            .unwrap();
        assert_eq!(out.stop, StopReason::TimedOut);
        assert!(out.output.contains("started"), "{}", out.output);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited {:?} for a process that left the group",
            started.elapsed()
        );
    }

    #[test]
    fn credentials_never_reach_the_command() {
        // A variable only this test reads (tests in this binary may run in parallel).
        std::env::set_var("AGENT_NONE_TEST_TOKEN", "s3cr3t-value");
        let out = NoSandbox.run(&spec("env; echo done", 10_000)).unwrap();
        assert!(
            out.output.contains("done") && !out.output.contains("s3cr3t-value"),
            "{}",
            out.output
        );
    }

    #[test]
    fn reports_exit_code_and_interleaved_output() {
        let out = NoSandbox
            .run(&spec(
                "echo out; echo err >&2; echo $PASSED_THROUGH; exit 3",
                10_000,
            ))
            .unwrap();
        assert_eq!(out.stop, StopReason::Exited(3));
        assert_eq!(out.output, "out\nerr\nhello\n");
        assert!(!out.success());
    }

    #[test]
    fn kills_a_hung_command_and_its_children() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let path = marker.path().display().to_string();
        let out = NoSandbox
            .run(&spec(
                &format!("(sleep 1; echo late > {path}) & sleep 30"),
                300,
            ))
            .unwrap();
        assert_eq!(out.stop, StopReason::TimedOut);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            std::fs::read_to_string(marker.path()).unwrap(),
            "",
            "a child outlived the timeout"
        );
    }

    #[test]
    fn caps_huge_output() {
        let out = NoSandbox
            .run(&spec("yes line | head -c 1000000", 10_000))
            .unwrap();
        assert!(out.success());
        assert!(out.truncated);
        assert!(out.output.len() < 10_000, "{}", out.output.len());
    }
}
