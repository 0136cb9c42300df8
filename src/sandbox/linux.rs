//! The confined Linux sandbox, layer one: bubblewrap. Each command runs with a read-only view of the
//! system, the worktree (and the build cache) writable, the worktree's `.git` read-only, a private
//! size-limited `/tmp`, a fresh `/proc` and pid namespace, no network (its own empty network
//! namespace), all capabilities dropped, a new session, a cleared environment with an allow-list, and
//! `$HOME` hidden except the toolchain directories, bound read-only (their credential files masked),
//! and `/run` (where host services keep their sockets) hidden. rlimits bound CPU time, file size,
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
use super::profile::Profile;
use super::{CommandOutcome, CommandSpec, Sandbox, SandboxError, StopReason};

/// Numbers the commands of this process, for unique cgroup names.
static COMMANDS: AtomicUsize = AtomicUsize::new(0);

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

/// Credential files inside the toolchain folders, masked with an empty file.
const HOME_CREDENTIALS: &[&str] = &[
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".npm/_authToken",
    ".local/share/python_keyring",
];

pub struct BwrapSandbox {
    bwrap: PathBuf,
    home: Option<PathBuf>,
    /// Extra read-only paths (e.g. the user's repository, whose objects the workspace borrows).
    read_only: Vec<PathBuf>,
    profile: Profile,
    /// The agent's own binary, re-executed inside to apply landlock and seccomp; `None` when it
    /// cannot be found (then those layers are missing and `describe` says so).
    helper: Option<PathBuf>,
}

impl BwrapSandbox {
    /// Find bubblewrap and check that it can create its namespaces here; `Err` says why not.
    pub fn probe(read_only: Vec<PathBuf>, profile: Profile) -> Result<Self, String> {
        let bwrap = find_in_path("bwrap")
            .ok_or("bubblewrap (bwrap) is not installed; install the `bubblewrap` package")?;
        let sandbox = Self {
            bwrap,
            // Hiding `/` as "home" would hide everything; only a real home directory is hidden.
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute() && h.parent().is_some() && h.is_dir()),
            read_only,
            profile,
            helper: helper_binary(),
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
        let limits = self.profile.limits;
        cmd.args([
            "--size",
            &(limits.tmp_size_mb << 20).to_string(),
            "--tmpfs",
            "/tmp",
        ]);
        // Host services listen on sockets under /run (docker, dbus, databases, the user's runtime dir
        // with ssh and gpg agents); a unix socket is not network, so only hiding them stops a connect.
        cmd.args(["--tmpfs", "/run"]);
        if let Some(home) = &self.home {
            cmd.arg("--tmpfs").arg(home);
            for dir in HOME_TOOLCHAINS
                .iter()
                .map(|d| home.join(d))
                .filter(|d| d.exists())
            {
                arg_path(&mut cmd, "--ro-bind", &dir);
            }
            // The toolchain folders are bound whole, but never the tokens kept in them.
            for secret in HOME_CREDENTIALS
                .iter()
                .map(|f| home.join(f))
                .filter(|f| f.symlink_metadata().is_ok())
            {
                cmd.arg("--ro-bind").arg("/dev/null").arg(&secret);
            }
        }
        for path in self.read_only.iter().filter(|p| p.exists()) {
            arg_path(&mut cmd, "--ro-bind", path);
        }
        // Caches named in the environment (CARGO_TARGET_DIR, ...) stay writable so work is reused.
        let mut writable = vec![
            spec.cwd.clone(),
            PathBuf::from("/tmp"),
            PathBuf::from("/dev"),
        ];
        for (key, value) in &spec.env {
            if super::CACHE_ENV.contains(&key.as_str()) {
                let dir = PathBuf::from(value);
                let _ = std::fs::create_dir_all(&dir);
                arg_path(&mut cmd, "--bind", &dir);
                writable.push(dir);
            }
        }
        for dir in self.profile.writable_paths(self.home.as_deref()) {
            if std::fs::create_dir_all(&dir).is_ok() {
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
        cmd.arg("--unshare-all");
        if self.profile.network {
            cmd.arg("--share-net");
        }
        cmd.args([
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
        ]);
        for key in self.profile.env.iter().filter(|k| !super::is_secret_env(k)) {
            if let Some(value) = std::env::var_os(key) {
                cmd.arg("--setenv").arg(key).arg(value);
            }
        }
        for (key, value) in spec.env.iter().filter(|(k, _)| !super::is_secret_env(k)) {
            cmd.arg("--setenv").arg(key).arg(value);
        }
        cmd.arg("--setenv").arg("TMPDIR").arg("/tmp");
        cmd.arg("--chdir").arg(&spec.cwd);
        cmd.arg("--");
        // Inside, the agent's own binary applies landlock and seccomp, then execs the shell.
        if let Some(helper) = &self.helper {
            cmd.arg(helper).arg("__sandbox-helper");
            if self.profile.network {
                cmd.arg("--network");
            }
            for dir in &writable {
                cmd.arg("--write").arg(dir);
            }
            cmd.arg("--");
        }
        cmd.args(["sh", "-c", &spec.command]);
        let cpu = spec.timeout.as_secs() + 10;
        // SAFETY: only async-signal-safe setrlimit(2) calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_CORE, 0)?;
                set_limit(libc::RLIMIT_FSIZE, limits.file_size_mb << 20)?;
                set_limit(libc::RLIMIT_DATA, limits.data_size_mb << 20)?;
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

/// The `agent` binary, which applies landlock and seccomp inside bubblewrap (`agent __sandbox-helper`):
/// `$AGENT_SANDBOX_HELPER` when set (benches and tests that use the sandbox from another binary), else
/// this process's own executable when it is `agent`.
fn helper_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AGENT_SANDBOX_HELPER").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    std::env::current_exe()
        .ok()
        .filter(|p| p.is_file())
        .filter(|p| p.file_name().is_some_and(|n| n == "agent"))
}

/// Does the helper's landlock ruleset hold here? Tried on two throwaway directories: a write outside
/// the allowed one must fail.
fn landlock_enforced(helper: &Path) -> bool {
    let (Ok(allowed), Ok(other)) = (tempfile::tempdir(), tempfile::tempdir()) else {
        return false;
    };
    let probe = other.path().join("probe");
    let _ = Command::new(helper)
        .arg("__sandbox-helper")
        .arg("--write")
        .arg(allowed.path())
        .args([
            "--",
            "sh",
            "-c",
            "echo x > \"$0\" 2>/dev/null",
            &probe.display().to_string(),
        ])
        .output();
    !probe.exists()
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
        let inner = match &self.helper {
            Some(helper) if landlock_enforced(helper) => {
                "landlock (writes only to the worktree, /tmp, caches; no TCP), seccomp (no network sockets, ptrace, io_uring)"
            }
            Some(_) => "MISSING landlock (not enforced by this kernel), seccomp (no network sockets, ptrace, io_uring)",
            None => "MISSING landlock and seccomp (the agent binary could not be found to re-execute)",
        };
        let cgroups = if cgroups_available() {
            "cgroup pids/memory limits"
        } else {
            "MISSING cgroup pids/memory limits (no writable cgroup controllers here; a fork bomb is stopped only by the timeout)"
        };
        let network = if self.profile.network {
            "NETWORK ALLOWED"
        } else {
            "no network"
        };
        format!(
            "bubblewrap, profile {} (read-only system, writable worktree, {network}, private /tmp and /proc, \
             $HOME hidden, rlimits) + {inner} + {cgroups}",
            self.profile.name
        )
    }

    fn run(&self, spec: &CommandSpec) -> Result<CommandOutcome, SandboxError> {
        let mut command = self.command(spec);
        let name = format!(
            "agent-{}-{}",
            std::process::id(),
            COMMANDS.fetch_add(1, Ordering::Relaxed)
        );
        let limits = CgroupLimits {
            pids: self.profile.limits.pids,
            memory_bytes: self.profile.limits.memory_mb << 20,
        };
        let cgroup = CommandCgroup::create(&name, limits).map(Arc::new);
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
