//! The confined Linux sandbox, layer one: bubblewrap. Each command runs in an allow-list view of the
//! machine ([`super::view`]: system directories, toolchains, the worktree writable with its `.git`
//! read-only, the caches the profile allows; secrets masked; no host sockets), a private
//! size-limited `/tmp` and `$HOME`, a fresh `/proc` and pid namespace, no network (its own empty
//! network namespace), all capabilities dropped, a new session, and a cleared environment with an
//! allow-list. rlimits bound CPU time, file size, data size, open files and core dumps. The
//! wall-clock timeout kills bwrap's process group, and with it the pid namespace.
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
use super::proxy::RegistryProxy;
use super::view::{self, Mount, ViewInputs};
use super::{CommandOutcome, CommandSpec, Sandbox, SandboxError, Service, StopReason};

/// Numbers the commands of this process, for unique cgroup names.
static COMMANDS: AtomicUsize = AtomicUsize::new(0);

pub struct BwrapSandbox {
    bwrap: PathBuf,
    home: Option<PathBuf>,
    /// Extra read-only paths (e.g. the user's repository, whose objects the workspace borrows).
    read_only: Vec<PathBuf>,
    profile: Profile,
    /// The agent's own binary, re-executed inside to apply landlock and seccomp; `None` when it
    /// cannot be found (then those layers are missing and `describe` says so).
    helper: Option<PathBuf>,
    /// The registry proxy, the only way out for a profile with `allow_hosts`.
    proxy: Option<RegistryProxy>,
}

/// Where the registry proxy's folder appears inside the sandbox.
const PROXY_MOUNT: &str = "/run/agent-proxy";

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
            helper: helper_binary(),
            proxy: if profile.network && !profile.allow_hosts.is_empty() {
                let proxy = RegistryProxy::start(profile.allow_hosts.clone())
                    .map_err(|e| format!("cannot start the registry proxy: {e}"))?;
                Some(proxy)
            } else {
                None
            },
            profile,
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
        let limits = self.profile.limits;
        // Caches named in the environment (CARGO_TARGET_DIR, ...) stay writable so work is reused.
        let mut writable = Vec::new();
        for (key, value) in &spec.env {
            if super::CACHE_ENV.contains(&key.as_str()) && self.profile.writable_env.contains(key) {
                writable.push(PathBuf::from(value));
            }
        }
        for dir in self.profile.writable_paths(self.home.as_deref()) {
            writable.push(dir);
        }
        writable.retain(|dir| std::fs::create_dir_all(dir).is_ok());
        let mut read_only = self.read_only.clone();
        read_only.extend(self.helper.clone());
        read_only.extend(
            spec.env
                .iter()
                .filter(|(k, _)| {
                    super::CACHE_ENV.contains(&k.as_str()) && !self.profile.writable_env.contains(k)
                })
                .map(|(_, v)| PathBuf::from(v))
                .filter(|p| p.is_absolute()),
        );
        let env = |key: &str| {
            spec.env
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    self.profile
                        .env
                        .iter()
                        .any(|k| k == key)
                        .then(|| std::env::var(key).ok())
                        .flatten()
                })
        };
        let toolchain_env = view::TOOLCHAIN_ENV
            .iter()
            .filter_map(|k| env(k).map(|v| (k.to_string(), v)))
            .collect();
        let inputs = ViewInputs {
            home: self.home.clone(),
            path: env("PATH"),
            toolchain_env,
            read_only,
            writable: writable.clone(),
            worktree: spec.cwd.clone(),
            tmp_size: limits.tmp_size_mb << 20,
        };
        for mount in view::mounts(&inputs) {
            match mount {
                Mount::ReadOnly(p) => cmd.arg("--ro-bind").arg(&p).arg(&p),
                Mount::ReadWrite(p) => cmd.arg("--bind").arg(&p).arg(&p),
                Mount::Symlink { target, link } => cmd.arg("--symlink").arg(target).arg(link),
                Mount::Tmpfs { path, size } => {
                    if let Some(size) = size {
                        cmd.arg("--size").arg(size.to_string());
                    }
                    cmd.arg("--tmpfs").arg(path)
                }
                Mount::MaskFile(p) => cmd.arg("--ro-bind").arg("/dev/null").arg(p),
                Mount::MaskDir(p) => cmd.arg("--tmpfs").arg(&p).arg("--remount-ro").arg(&p),
            };
        }
        if let Some(proxy) = &self.proxy {
            cmd.arg("--bind").arg(proxy.folder()).arg(PROXY_MOUNT);
        }
        cmd.args(["--dev", "/dev", "--proc", "/proc"]);
        writable.extend([
            spec.cwd.clone(),
            PathBuf::from("/tmp"),
            PathBuf::from("/dev"),
        ]);
        cmd.arg("--unshare-all");
        // With a proxy the command keeps its own empty network namespace: the proxy's socket is its
        // only way out.
        if self.profile.network && self.proxy.is_none() {
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
            if let Some(proxy) = &self.proxy {
                cmd.arg("--proxy")
                    .arg(Path::new(PROXY_MOUNT).join(proxy.socket_name()));
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
/// this process's own executable when it is `agent`. When that file was removed or replaced while
/// this process runs (a rebuild during `agent eval`), bubblewrap cannot bind the deleted file, so a
/// copy of the running binary is made for the purpose: without it the commands would run without
/// landlock and seccomp.
fn helper_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AGENT_SANDBOX_HELPER").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    if name == "agent" && exe.is_file() {
        return Some(exe);
    }
    if name == "agent (deleted)" {
        return copy_of_running_binary();
    }
    None
}

/// `<cache>/helper/agent-<pid>`: a copy of this process's (deleted) executable. Copies of processes
/// that have ended are removed on the way.
fn copy_of_running_binary() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::dirs::cache_dir().join("helper");
    std::fs::create_dir_all(&dir).ok()?;
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let pid = entry
            .file_name()
            .to_string_lossy()
            .strip_prefix("agent-")
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        // SAFETY: kill with signal 0 only asks whether the process exists.
        if let Some(pid) = pid.filter(|&p| unsafe { libc::kill(p, 0) } != 0) {
            let _ = std::fs::remove_file(dir.join(format!("agent-{pid}")));
        }
    }
    let copy = dir.join(format!("agent-{}", std::process::id()));
    if !copy.is_file() {
        let partial = dir.join(format!(".agent-{}.partial", std::process::id()));
        std::fs::copy("/proc/self/exe", &partial).ok()?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).ok()?;
        std::fs::rename(&partial, &copy).ok()?;
    }
    Some(copy)
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
        &format!("agent-{}-probe", std::process::id()),
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
        let network = match (&self.proxy, self.profile.network) {
            (Some(proxy), _) if self.helper.is_some() => format!(
                "network only through the registry proxy, HTTPS to {}",
                proxy.allowed().join(", ")
            ),
            (Some(_), _) => "MISSING the registry proxy's forwarder (the agent binary could not be found): no network".into(),
            (None, true) => "NETWORK ALLOWED".into(),
            (None, false) => "no network".into(),
        };
        format!(
            "bubblewrap, profile {} (read-only system, writable worktree, {network}, private /tmp and /proc, \
             $HOME hidden, rlimits) + {inner} + {cgroups}",
            self.profile.name
        )
    }

    fn run(&self, spec: &CommandSpec) -> Result<CommandOutcome, SandboxError> {
        let (command, cgroup) = self.command_in_cgroup(spec);
        let min_free = self.profile.limits.min_free_disk_mb.map(|mb| mb << 20);
        let mut outcome = supervise(command, spec, min_free)?;
        let refused = self
            .proxy
            .as_ref()
            .map(|p| p.take_refusals())
            .unwrap_or_default();
        if !refused.is_empty() {
            outcome.output.push_str(&format!(
                "\n[agent: the registry proxy refused: {}]\n",
                refused.join("; ")
            ));
        }
        if cgroup.as_ref().is_some_and(|c| c.hit_memory_limit()) {
            outcome.stop = StopReason::OutOfMemory;
        }
        Ok(outcome)
    }

    fn service(&self, spec: &CommandSpec) -> Service {
        let (mut command, cgroup) = self.command_in_cgroup(spec);
        command.current_dir(&spec.cwd).process_group(0);
        Service {
            command,
            guard: cgroup.map(|c| Box::new(c) as Box<dyn std::any::Any + Send + Sync>),
        }
    }
}

impl BwrapSandbox {
    /// The bwrap command line for `spec`, entering a cgroup of its own (pids and memory limits)
    /// where this machine has writable cgroup controllers.
    fn command_in_cgroup(&self, spec: &CommandSpec) -> (Command, Option<Arc<CommandCgroup>>) {
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
        (command, cgroup)
    }
}
