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

/// Remove the cgroups (`agent-<pid>-<n>`) of agent processes that no longer exist: a process killed
/// with SIGKILL cannot remove its own. Empty cgroups only (rmdir refuses others); once per directory
/// per process.
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
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
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
