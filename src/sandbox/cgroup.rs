//! Per-command cgroups: a pids limit (fork bombs) and a memory limit, where a writable cgroup
//! hierarchy with those controllers exists (cgroup v1 `pids`/`memory` mounts, or a delegated v2
//! subtree). The child joins its cgroup between fork and exec, so every descendant is counted.
//!
//! New cgroups are created under the agent's own, so limits set on the agent still apply. This module
//! never moves any other process and removes its cgroups when the command is over.

use std::ffi::CString;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Limits for one command's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct CgroupLimits {
    pub pids: u64,
    pub memory_bytes: u64,
}

impl Default for CgroupLimits {
    fn default() -> Self {
        Self {
            pids: 1024,
            memory_bytes: 8 << 30,
        }
    }
}

/// The cgroups of one command.
pub struct CommandCgroup {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each, ready for the child to write itself into without allocating.
    procs: Vec<CString>,
    memory_dir: Option<PathBuf>,
}

/// This process's cgroup path for a v1 controller, or the v2 path (`controller` = "").
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.trim_start_matches('/').to_string())
    })
}

/// Remove the cgroups (`agent-<pid>-<n>`, `agent-<pid>-probe`, `agent-probe-<pid>`) of agent processes that no longer
/// exist: a process killed with SIGKILL cannot remove its own. A pid in use again by a process
/// that started after the cgroup was made counts as gone. Empty cgroups only (rmdir refuses
/// others); once per directory per process.
fn reap_stale(parent: &Path) {
    static REAPED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut reaped) = REAPED.lock() else {
        return;
    };
    if reaped.iter().any(|p| p == parent) {
        return;
    }
    reaped.push(parent.to_path_buf());
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("agent-")
            // `agent-probe-<pid>`: the probe's name in earlier versions.
            .map(|rest| rest.strip_prefix("probe-").unwrap_or(rest))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let made = entry.metadata().and_then(|m| m.modified()).ok();
        let owner_alive = match (process_start(pid), made) {
            (None, _) => false,
            // The owner made its cgroup after it started (a second of slack for clock ticks).
            (Some(started), Some(made)) => started <= made + std::time::Duration::from_secs(1),
            (Some(_), None) => true,
        };
        if !owner_alive {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// When process `pid` started, from `/proc/<pid>/stat` (clock ticks since boot) and the boot time.
fn process_start(pid: u32) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; starttime is field 22.
    let ticks: u64 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0)?;
    Some(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(boot)
            + std::time::Duration::from_millis(ticks * 1000 / hz),
    )
}

fn make(dir: &Path, settings: &[(&str, String)]) -> Option<PathBuf> {
    if let Some(parent) = dir.parent() {
        reap_stale(parent);
    }
    std::fs::create_dir(dir).ok()?;
    for (file, value) in settings {
        if std::fs::write(dir.join(file), value).is_err() {
            let _ = std::fs::remove_dir(dir);
            return None;
        }
    }
    Some(dir.to_path_buf())
}

impl CommandCgroup {
    /// Create the command's cgroups; `None` when no writable pids or memory controller exists here.
    pub fn create(name: &str, limits: CgroupLimits) -> Option<Self> {
        let mut dirs = Vec::new();
        let mut memory_dir = None;
        let v1 = |controller: &str| {
            Path::new(ROOT)
                .join(controller)
                .join(own_path(controller)?)
                .join(name)
                .into()
        };
        let v1: &dyn Fn(&str) -> Option<PathBuf> = &v1;
        if let Some(dir) =
            v1("pids").and_then(|d| make(&d, &[("pids.max", limits.pids.to_string())]))
        {
            dirs.push(dir);
        }
        if let Some(dir) = v1("memory").and_then(|d| {
            make(
                &d,
                &[("memory.limit_in_bytes", limits.memory_bytes.to_string())],
            )
        }) {
            memory_dir = Some(dir.clone());
            dirs.push(dir);
        }
        if dirs.is_empty() {
            // cgroup v2, where this process's cgroup delegates pids and memory to children.
            let own = Path::new(ROOT).join(own_path("").unwrap_or_default());
            let controllers =
                std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap_or_default();
            if controllers.contains("pids") && controllers.contains("memory") {
                let settings = [
                    ("pids.max", limits.pids.to_string()),
                    ("memory.max", limits.memory_bytes.to_string()),
                ];
                if let Some(dir) = make(&own.join(name), &settings) {
                    memory_dir = Some(dir.clone());
                    dirs.push(dir);
                }
            }
        }
        if dirs.is_empty() {
            return None;
        }
        let procs = dirs
            .iter()
            .filter_map(|d| {
                CString::new(d.join("cgroup.procs").as_os_str().as_encoded_bytes()).ok()
            })
            .collect();
        Some(Self {
            dirs,
            procs,
            memory_dir,
        })
    }

    /// Move the calling process into the cgroups. Async-signal-safe: meant for `pre_exec`.
    pub fn enter(&self) -> std::io::Result<()> {
        for path in &self.procs {
            // SAFETY: open/write/close on a valid NUL-terminated path and a static buffer.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Did the memory limit kill something?
    pub fn hit_memory_limit(&self) -> bool {
        let Some(dir) = &self.memory_dir else {
            return false;
        };
        let events = std::fs::read_to_string(dir.join("memory.oom_control"))
            .or_else(|_| std::fs::read_to_string(dir.join("memory.events")))
            .unwrap_or_default();
        events
            .lines()
            .any(|l| l.starts_with("oom_kill ") && !l.ends_with(" 0"))
    }
}

impl Drop for CommandCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Whatever is left (normally nothing: the pid namespace died with the command) is killed,
            // then the empty cgroup removed.
            // A fork bomb's thousands of processes can take a few seconds to be reaped.
            for _ in 0..500 {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) on a pid read from our own cgroup.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn made_at(dir: &Path, when: SystemTime) {
        std::fs::create_dir(dir).unwrap();
        std::fs::File::open(dir)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn cgroups_of_gone_or_replaced_owners_are_reaped_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let hour_ago = now - Duration::from_secs(3600);
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = sleeper.id();
        let dead = {
            let mut gone = std::process::Command::new("true").spawn().unwrap();
            let pid = gone.id();
            gone.wait().unwrap();
            pid
        };
        let own = std::process::id();
        let dir = |name: String| parent.path().join(name);
        made_at(&dir(format!("agent-{dead}-0")), now);
        made_at(&dir(format!("agent-{dead}-probe")), now);
        made_at(&dir(format!("agent-probe-{dead}")), now);
        // `live` started after this cgroup was made: the pid was reused.
        made_at(&dir(format!("agent-{live}-0")), hour_ago);
        made_at(
            &dir(format!("agent-{live}-1")),
            now + Duration::from_secs(1),
        );
        made_at(&dir(format!("agent-{own}-0")), hour_ago);
        made_at(&dir("other-1".into()), hour_ago);
        reap_stale(parent.path());
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let mut left: Vec<String> = std::fs::read_dir(parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            format!("agent-{live}-1"),
            format!("agent-{own}-0"),
            "other-1".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_process_start_time_is_read_from_proc() {
        let started = process_start(std::process::id()).expect("own start time");
        assert!(started <= SystemTime::now());
        assert!(SystemTime::now().duration_since(started).unwrap() < Duration::from_secs(3600));
        assert_eq!(process_start(u32::MAX), None);
    }
}
