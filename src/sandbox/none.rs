//! The unconfined sandbox: a plain subprocess in its own process group, with a wall-clock timeout that
//! kills the whole group and an output cap.
//!
//! It confines nothing but time and output; the confined Linux sandbox replaces it as the default. It
//! must never leave a process behind: the group is killed when the command ends, times out or fails.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Instant;

use wait_timeout::ChildExt;

use super::{cap_output, CommandOutcome, CommandSpec, Sandbox, SandboxError, StopReason};

pub struct NoSandbox;

impl Sandbox for NoSandbox {
    fn describe(&self) -> String {
        "none (plain subprocess with timeout; no confinement)".into()
    }

    fn run(&self, spec: &CommandSpec) -> Result<CommandOutcome, SandboxError> {
        let spawn_err = |source| SandboxError::Spawn {
            command: spec.command.clone(),
            cwd: spec.cwd.clone(),
            source,
        };
        let wait_err = |source| SandboxError::Wait {
            command: spec.command.clone(),
            source,
        };
        // One pipe for both streams keeps stdout and stderr interleaved as the command wrote them.
        let (mut reader, writer) = std::io::pipe().map_err(spawn_err)?;
        let writer_err = writer.try_clone().map_err(spawn_err)?;
        let started = Instant::now();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&spec.command)
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_err)
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        let pgid = child.id() as i32;
        // The parent's copies of the write end were moved into Command and dropped with it, so the reader
        // sees EOF once every process of the group has exited or been killed.
        let limit = spec.output_limit;
        let collector = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut tail = Vec::new();
            let mut buf = [0u8; 8192];
            let mut total = 0usize;
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
                // Keep the first `limit` bytes and a rolling tail, so memory stays bounded for chatty commands.
                if kept.len() < limit {
                    let take = n.min(limit - kept.len());
                    kept.extend_from_slice(&buf[..take]);
                    tail.extend_from_slice(&buf[take..n]);
                } else {
                    tail.extend_from_slice(&buf[..n]);
                }
                if tail.len() > 2 * limit {
                    tail.drain(..tail.len() - limit);
                }
            }
            (kept, tail, total)
        });
        let waited = child.wait_timeout(spec.timeout).map_err(wait_err)?;
        let stop = match waited {
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => StopReason::Exited(code),
                (None, Some(sig)) => StopReason::Signal(sig),
                (None, None) => StopReason::Exited(-1),
            },
            None => StopReason::TimedOut,
        };
        // Kill what is left of the group: the command itself on timeout, background children otherwise.
        // SAFETY: kill(2) with a negative pid only sends a signal to our own child's process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        if waited.is_none() {
            child.wait().map_err(wait_err)?;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (kept, tail, total) = collector.join().unwrap_or_default();
        let mut all = kept;
        let dropped = total - all.len() - tail.len();
        all.extend_from_slice(&tail);
        let (mut output, mut truncated) = cap_output(&all, limit);
        if dropped > 0 {
            truncated = true;
            output =
                format!("{output}\n[{dropped} further bytes were dropped while the command ran]");
        }
        Ok(CommandOutcome {
            stop,
            output,
            truncated,
            elapsed_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(command: &str, timeout_ms: u64) -> CommandSpec {
        CommandSpec {
            command: command.into(),
            cwd: std::env::temp_dir(),
            timeout: Duration::from_millis(timeout_ms),
            env: vec![("AGENT_TEST_VAR".into(), "hello".into())],
            output_limit: 4096,
        }
    }

    #[test]
    fn reports_exit_code_and_interleaved_output() {
        let out = NoSandbox
            .run(&spec(
                "echo out; echo err >&2; echo $AGENT_TEST_VAR; exit 3",
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
