//! The confined Linux sandbox, layer one: bubblewrap. Each command runs with a read-only view of the
//! system, the worktree (and the build cache) writable, the worktree's `.git` read-only, a private
//! size-limited `/tmp`, a fresh `/proc` and pid namespace, no network (its own empty network
//! namespace), all capabilities dropped, a new session, a cleared environment with an allow-list, and
//! `$HOME` hidden except the toolchain directories, bound read-only. rlimits bound CPU time, file size,
//! data size, open files and core dumps. The wall-clock timeout kills bwrap's process group, and with it
//! the pid namespace.
//!
//! It must never widen what a command can reach beyond the paths named here.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::cgroup::{CgroupLimits, CommandCgroup};
use super::process::supervise;
use super::{CommandOutcome, CommandSpec, Sandbox, SandboxError, StopReason};

/// Numbers the commands of this process, for unique cgroup names.
static COMMANDS: AtomicUsize = AtomicUsize::new(0);

/// Environment variables passed through from the agent's environment.
const ENV_ALLOW: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "VIRTUAL_ENV",
    "NODE_PATH",
    "GOPATH",
    "GOROOT",
    "JAVA_HOME",
];

/// Directories under `$HOME` that hold toolchains; they stay visible, read-only.
const HOME_TOOLCHAINS: &[&str] = &[
    ".cargo",
    ".rustup",
    ".pyenv",
    ".local/bin",
    ".local/lib",
    ".nvm",
    ".npm",
    "go",
    ".venv",
];

/// Resource limits applied to every sandboxed command.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub file_size: u64,
    pub data_size: u64,
    pub open_files: u64,
    /// Size of the private `/tmp`.
    pub tmp_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            file_size: 2 << 30,
            data_size: 8 << 30,
            open_files: 4096,
            tmp_size: 1 << 30,
        }
    }
}

pub struct BwrapSandbox {
    bwrap: PathBuf,
    home: Option<PathBuf>,
    /// Extra read-only paths (e.g. the user's repository, whose objects the workspace borrows).
    read_only: Vec<PathBuf>,
    limits: Limits,
    /// The agent's own binary, re-executed inside to apply landlock and seccomp; `None` when it
    /// cannot be found (then those layers are missing and `describe` says so).
    helper: Option<PathBuf>,
}

impl BwrapSandbox {
    /// Find bubblewrap and check that it can create its namespaces here; `Err` says why not.
    pub fn probe(read_only: Vec<PathBuf>) -> Result<Self, String> {
        let bwrap = find_in_path("bwrap")
            .ok_or("bubblewrap (bwrap) is not installed; install the `bubblewrap` package")?;
        let sandbox = Self {
            bwrap,
            // Hiding `/` as "home" would hide everything; only a real home directory is hidden.
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute() && h.parent().is_some() && h.is_dir()),
            read_only,
            limits: Limits::default(),
            helper: std::env::current_exe().ok().filter(|p| p.is_file()),
        };
        let out = Command::new(&sandbox.bwrap)
            .args([
                "--ro-bind",
                "/",
                "/",
                "--unshare-all",
                "--die-with-parent",
                "--",
                "true",
            ])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", sandbox.bwrap.display()))?;
        if !out.status.success() {
            return Err(format!(
                "bubblewrap cannot create namespaces here ({}); user namespaces may be disabled (e.g. by AppArmor)",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(sandbox)
    }

    /// The bwrap command line for `spec`.
    fn command(&self, spec: &CommandSpec) -> Command {
        let mut cmd = Command::new(&self.bwrap);
        let arg_path = |cmd: &mut Command, flag: &str, path: &Path| {
            cmd.arg(flag).arg(path).arg(path);
        };
        cmd.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
        cmd.args([
            "--size",
            &self.limits.tmp_size.to_string(),
            "--tmpfs",
            "/tmp",
        ]);
        if let Some(home) = &self.home {
            cmd.arg("--tmpfs").arg(home);
            for dir in HOME_TOOLCHAINS
                .iter()
                .map(|d| home.join(d))
                .filter(|d| d.exists())
            {
                arg_path(&mut cmd, "--ro-bind", &dir);
            }
        }
        for path in self.read_only.iter().filter(|p| p.exists()) {
            arg_path(&mut cmd, "--ro-bind", path);
        }
        // Build caches named in the environment (CARGO_TARGET_DIR) stay writable so builds are reused.
        let mut writable = vec![
            spec.cwd.clone(),
            PathBuf::from("/tmp"),
            PathBuf::from("/dev"),
        ];
        for (key, value) in &spec.env {
            if key == "CARGO_TARGET_DIR" {
                let dir = PathBuf::from(value);
                let _ = std::fs::create_dir_all(&dir);
                arg_path(&mut cmd, "--bind", &dir);
                writable.push(dir);
            }
        }
        if let Some(helper) = &self.helper {
            arg_path(&mut cmd, "--ro-bind", helper);
        }
        arg_path(&mut cmd, "--bind", &spec.cwd);
        let git = spec.cwd.join(".git");
        if git.exists() {
            arg_path(&mut cmd, "--ro-bind", &git);
        }
        cmd.args([
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
        ]);
        for key in ENV_ALLOW {
            if let Some(value) = std::env::var_os(key) {
                cmd.arg("--setenv").arg(key).arg(value);
            }
        }
        for (key, value) in &spec.env {
            cmd.arg("--setenv").arg(key).arg(value);
        }
        cmd.arg("--setenv").arg("TMPDIR").arg("/tmp");
        cmd.arg("--chdir").arg(&spec.cwd);
        cmd.arg("--");
        // Inside, the agent's own binary applies landlock and seccomp, then execs the shell.
        if let Some(helper) = &self.helper {
            cmd.arg(helper).arg("__sandbox-helper");
            for dir in &writable {
                cmd.arg("--write").arg(dir);
            }
            cmd.arg("--");
        }
        cmd.args(["sh", "-c", &spec.command]);
        let limits = self.limits;
        let cpu = spec.timeout.as_secs() + 10;
        // SAFETY: only async-signal-safe setrlimit(2) calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_CORE, 0)?;
                set_limit(libc::RLIMIT_FSIZE, limits.file_size)?;
                set_limit(libc::RLIMIT_DATA, limits.data_size)?;
                set_limit(libc::RLIMIT_NOFILE, limits.open_files)?;
                set_limit(libc::RLIMIT_CPU, cpu)?;
                Ok(())
            });
        }
        cmd
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Can per-command cgroups be made here?
pub fn cgroups_available() -> bool {
    CommandCgroup::create(
        &format!("agent-probe-{}", std::process::id()),
        CgroupLimits::default(),
    )
    .is_some()
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

impl Sandbox for BwrapSandbox {
    fn describe(&self) -> String {
        let inner = if self.helper.is_some() {
            "landlock (writes only to the worktree, /tmp, caches; no TCP), seccomp (no network sockets, ptrace, io_uring)"
        } else {
            "MISSING landlock and seccomp (the agent binary could not be found to re-execute)"
        };
        let cgroups = if cgroups_available() {
            "cgroup pids/memory limits"
        } else {
            "MISSING cgroup pids/memory limits (no writable cgroup controllers here; a fork bomb is stopped only by the timeout)"
        };
        format!(
            "bubblewrap (read-only system, writable worktree, no network, private /tmp and /proc, $HOME hidden, \
             rlimits) + {inner} + {cgroups}"
        )
    }

    fn run(&self, spec: &CommandSpec) -> Result<CommandOutcome, SandboxError> {
        let mut command = self.command(spec);
        let name = format!(
            "agent-{}-{}",
            std::process::id(),
            COMMANDS.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = CommandCgroup::create(&name, CgroupLimits::default()).map(Arc::new);
        if let Some(cgroup) = &cgroup {
            let cgroup = Arc::clone(cgroup);
            // SAFETY: `enter` only makes async-signal-safe system calls.
            unsafe {
                command.pre_exec(move || cgroup.enter());
            }
        }
        let mut outcome = supervise(command, spec)?;
        if cgroup.as_ref().is_some_and(|c| c.hit_memory_limit()) {
            outcome.stop = StopReason::OutOfMemory;
        }
        Ok(outcome)
    }
}
