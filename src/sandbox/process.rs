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

/// How often the free space of the worktree's file system is looked at while a command runs.
const DISK_POLL: Duration = Duration::from_millis(250);

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn available_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) writes into the struct we own, reading a NUL-terminated path.
    (unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == 0)
        .then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Run `command` (already holding its program, arguments and environment) in `spec.cwd` in its own
/// process group, with stdin closed, output merged and capped, and the whole group killed on timeout
/// and after exit. With `min_free_disk`, the group is also killed ([`StopReason::Disk`]) when the
/// worktree's file system has fewer bytes available than that (on a disk already below it at the
/// start: than half of what it had). Shared by every sandbox: confinement only changes
/// how `command` is built.
pub fn supervise(
    mut command: Command,
    spec: &CommandSpec,
    min_free_disk: Option<u64>,
) -> Result<CommandOutcome, SandboxError> {
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
    // On a disk already below the floor, commands still run: they may use half of what is left.
    let floor = min_free_disk.and_then(|floor| {
        available_bytes(&spec.cwd).map(|at_start| {
            if at_start > floor {
                floor
            } else {
                at_start / 2
            }
        })
    });
    let mut disk_full = false;
    let waited = loop {
        let left = spec.timeout.saturating_sub(started.elapsed());
        let slice = if floor.is_some() {
            left.min(DISK_POLL)
        } else {
            left
        };
        if let Some(status) = child.wait_timeout(slice).map_err(wait_err)? {
            break Some(status);
        }
        if started.elapsed() >= spec.timeout {
            break None;
        }
        if floor.is_some_and(|floor| available_bytes(&spec.cwd).is_some_and(|a| a < floor)) {
            disk_full = true;
            break None;
        }
    };
    let stop = match waited {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => StopReason::Exited(code),
            (None, Some(sig)) => StopReason::Signal(sig),
            (None, None) => StopReason::Exited(-1),
        },
        None if disk_full => StopReason::Disk,
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
