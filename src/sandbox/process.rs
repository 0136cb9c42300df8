//! Supervising one sandboxed process: its own process group, merged and capped output, a wall-clock
//! timeout, and no survivors.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::{cap_output, CommandOutcome, CommandSpec, SandboxError, StopReason};

/// How long output is still read after the command ended, for processes that left its group.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Run `command` (already holding its program, arguments and environment) in `spec.cwd` in its own
/// process group, with stdin closed, output merged and capped, and the whole group killed on timeout
/// and after exit. Shared by every sandbox: confinement only changes how `command` is built.
pub fn supervise(mut command: Command, spec: &CommandSpec) -> Result<CommandOutcome, SandboxError> {
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
    let mut child = command
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0)
        .spawn()
        .map_err(spawn_err)?;
    // The Command holds the parent's copies of the pipe's write end; dropping them means the reader
    // sees EOF once every process of the group has exited or been killed.
    drop(command);
    let pgid = child.id() as i32;
    let limit = spec.output_limit;
    // Set once the command is gone: a process that left the group (`setsid`) may still hold the
    // pipe, so from then on the output is read only until this deadline, not until EOF.
    let stop_reading_at = Arc::new(Mutex::new(None::<Instant>));
    let deadline = Arc::clone(&stop_reading_at);
    let collector = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        let mut total = 0usize;
        loop {
            let mut poll = libc::pollfd {
                fd: reader.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one valid descriptor we own.
            let ready = unsafe { libc::poll(&mut poll, 1, 100) };
            if ready == 0 {
                let past = deadline
                    .lock()
                    .ok()
                    .and_then(|d| *d)
                    .is_some_and(|d| Instant::now() >= d);
                if past {
                    break;
                }
                continue;
            }
            let Ok(n) = reader.read(&mut buf) else { break };
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
    if let Ok(mut at) = stop_reading_at.lock() {
        *at = Some(Instant::now() + OUTPUT_GRACE);
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (kept, tail, total) = collector.join().unwrap_or_default();
    let mut all = kept;
    let dropped = total - all.len() - tail.len();
    all.extend_from_slice(&tail);
    let (mut output, mut truncated) = cap_output(&all, limit);
    if dropped > 0 {
        truncated = true;
        output = format!("{output}\n[{dropped} further bytes were dropped while the command ran]");
    }
    Ok(CommandOutcome {
        stop,
        output,
        truncated,
        elapsed_ms,
    })
}
