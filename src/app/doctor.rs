//! `agent doctor`: each protection layer, probed for real on this machine rather than assumed. Every
//! probe attacks the way a hostile command would (read a planted secret, connect to a planted
//! listener, write outside, reach a non-registry host through the fetch proxy) and checks the
//! planted thing itself. Exit status 1 when a layer the sandbox profiles require is missing.
//!
//! Probes only ever touch throwaway files and listeners this command creates.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::sandbox::linux::{cgroups_available, BwrapSandbox};
use crate::sandbox::profile::Profile;
use crate::sandbox::{CommandSpec, Sandbox};

use super::UsageError;

/// How one probe came out.
enum Verdict {
    Ok(String),
    /// A layer the profiles require is not in force.
    Missing(String),
    /// Not required (or not testable here); said, but no failure.
    Warn(String),
}

pub fn doctor() -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    let mut missing = 0;
    let mut say = |verdict: Verdict, out: &mut dyn Write| -> std::io::Result<()> {
        let (tag, text) = match verdict {
            Verdict::Ok(t) => ("ok     ", t),
            Verdict::Missing(t) => {
                missing += 1;
                ("MISSING", t)
            }
            Verdict::Warn(t) => ("warn   ", t),
        };
        writeln!(out, "{tag}  {text}")
    };
    let default = Profile::load("default").map_err(UsageError)?;
    let fetch = Profile::load("fetch").map_err(UsageError)?;
    let scratch = tempfile::tempdir()?;
    let worktree = scratch.path().join("worktree");
    std::fs::create_dir_all(&worktree)?;
    let offline = match BwrapSandbox::probe(Vec::new(), default) {
        Ok(sandbox) => {
            say(
                Verdict::Ok("bubblewrap: namespaces work (mount, pid, network, ipc, uts; capabilities dropped)".into()),
                &mut out,
            )?;
            Some(sandbox)
        }
        Err(why) => {
            say(
                Verdict::Missing(format!("bubblewrap: {why}; commands would run unconfined")),
                &mut out,
            )?;
            None
        }
    };
    if let Some(sandbox) = &offline {
        for verdict in probe_offline(sandbox, &worktree)? {
            say(verdict, &mut out)?;
        }
    }
    match BwrapSandbox::probe(Vec::new(), fetch) {
        Ok(sandbox) => {
            for verdict in probe_fetch(&sandbox, &worktree)? {
                say(verdict, &mut out)?;
            }
        }
        Err(why) => say(Verdict::Missing(format!("fetch sandbox: {why}")), &mut out)?,
    }
    for verdict in probe_helper()? {
        say(verdict, &mut out)?;
    }
    say(
        if cgroups_available() {
            Verdict::Ok("cgroups: per-command pids and memory limits".into())
        } else {
            Verdict::Warn("cgroups: no writable pids/memory controllers here; rlimits bound memory per process, and a fork bomb is stopped by the timeout".into())
        },
        &mut out,
    )?;
    for verdict in [disk_verdict(), git_verdict(), wasm_verdict()] {
        say(verdict, &mut out)?;
    }
    let (verdict, configured_model) = config_verdict();
    say(verdict, &mut out)?;
    let model = crate::model::default_model_path();
    if let Some(spec) = configured_model {
        say(Verdict::Ok(format!("configured model: {spec}")), &mut out)?;
    } else {
        say(
            if model.is_file() {
                Verdict::Ok(format!("default model: {}", model.display()))
            } else {
                Verdict::Warn(format!(
                "default model: {} is missing (scripts/fetch-model.py qwen2.5-coder-1.5b fetches it)",
                model.display()
            ))
            },
            &mut out,
        )?;
    }
    if missing > 0 {
        writeln!(
            out,
            "{missing} required item(s) MISSING above: a missing sandbox layer lets the commands the model writes reach more than the profiles allow; a broken config stops every run"
        )?;
        return Ok(1);
    }
    Ok(0)
}

/// Free space where the models, build caches and run records live. Commands are stopped below the
/// profiles' floor (1 GiB by default), so less than twice that is worth a warning.
fn disk_verdict() -> Verdict {
    let cache = crate::dirs::cache_dir();
    let probe = cache
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    match crate::sandbox::available_bytes(&probe) {
        Some(bytes) if bytes >= 2 << 30 => Verdict::Ok(format!(
            "disk: {:.1} GiB free for {}",
            bytes as f64 / (1u64 << 30) as f64,
            cache.display()
        )),
        Some(bytes) => Verdict::Warn(format!(
            "disk: only {} MiB free for {}: model downloads and builds may fail, and commands are stopped below 1 GiB (min_free_disk_mb)",
            bytes >> 20,
            cache.display()
        )),
        None => Verdict::Warn(format!("disk: cannot tell the free space of {}", probe.display())),
    }
}

/// Whose name the agent's commits carry.
fn git_verdict() -> Verdict {
    match crate::vcs::user_identity() {
        Some((name, email)) => Verdict::Ok(format!("git identity: {name} <{email}> authors the agent's commits")),
        None => Verdict::Warn(
            "git identity: none set, so commits say agent <agent@localhost>; set yours with `git config --global user.name NAME` and `git config --global user.email EMAIL`".into(),
        ),
    }
}

/// The WebAssembly target, needed only to build plugin tools (running built ones needs nothing).
fn wasm_verdict() -> Verdict {
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip1")
        });
    match installed {
        Some(true) => Verdict::Ok("wasm32-wasip1 target: installed (for building plugin tools)".into()),
        Some(false) => Verdict::Warn(
            "wasm32-wasip1 target: missing, needed only to build plugin tools: `rustup target add wasm32-wasip1`".into(),
        ),
        None => Verdict::Warn(
            "wasm32-wasip1 target: rustup not found; building plugin tools needs Rust with that target".into(),
        ),
    }
}

/// The user's config file: valid, absent, or broken (then every `agent run` would stop with a usage
/// error, so it counts as missing); with the model it configures, if any.
fn config_verdict() -> (Verdict, Option<String>) {
    let Some(path) = crate::config::user_path() else {
        return (
            Verdict::Warn("config: no home directory, no user config".into()),
            None,
        );
    };
    match crate::config::read(&path) {
        Ok(None) => (
            Verdict::Ok(format!(
                "config: {} absent, defaults in use (`agent config init` writes a starter)",
                path.display()
            )),
            None,
        ),
        Ok(Some(file)) => {
            let model = file.model.as_ref().map(|name| match file.models.get(name) {
                Some(profile) => format!("{name} ({})", profile.spec),
                None => name.clone(),
            });
            (
                Verdict::Ok(format!("config: {} is valid", path.display())),
                model,
            )
        }
        Err(e) => (
            Verdict::Missing(format!(
                "config: {e} (every run would stop; `agent config show` points at it)"
            )),
            None,
        ),
    }
}

fn run_in(sandbox: &dyn Sandbox, worktree: &Path, command: String) -> String {
    let spec = CommandSpec {
        command,
        cwd: worktree.to_path_buf(),
        timeout: Duration::from_secs(60),
        env: Vec::new(),
        output_limit: 64 << 10,
    };
    match sandbox.run(&spec) {
        Ok(outcome) => outcome.output,
        Err(e) => format!("probe failed to start: {e}"),
    }
}

/// A secret outside the worktree where the user keeps things (the agent's own cache folder), a
/// listener on the host's loopback, a unix socket beside the secret.
fn probe_offline(sandbox: &dyn Sandbox, worktree: &Path) -> anyhow::Result<Vec<Verdict>> {
    let mut verdicts = Vec::new();
    std::fs::create_dir_all(crate::dirs::cache_dir())?;
    let canary_dir = tempfile::Builder::new()
        .prefix("doctor-")
        .tempdir_in(crate::dirs::cache_dir())?;
    let secret_bytes = format!("doctor-secret-{}", std::process::id());
    let secret = canary_dir.path().join("secret");
    std::fs::write(&secret, &secret_bytes)?;
    let seen = run_in(
        sandbox,
        worktree,
        format!("cat '{}' 2>&1; echo inside-ran", secret.display()),
    );
    verdicts.push(if !seen.contains("inside-ran") {
        Verdict::Missing(format!("filesystem view: the probe did not run ({seen})"))
    } else if seen.contains(&secret_bytes) {
        Verdict::Missing(format!(
            "filesystem view: a file outside the worktree ({}) is readable inside",
            secret.display()
        ))
    } else {
        Verdict::Ok("filesystem view: files outside the worktree and toolchains are not there (a planted secret stayed unread)".into())
    });
    let outside = canary_dir.path().join("written");
    let _ = run_in(
        sandbox,
        worktree,
        format!("echo x > '{}' 2>/dev/null", outside.display()),
    );
    verdicts.push(if outside.exists() {
        Verdict::Missing("filesystem: a write outside the worktree landed".into())
    } else {
        Verdict::Ok("filesystem: writes outside the worktree do not land".into())
    });
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let socket = canary_dir.path().join("service.sock");
    let unix = std::os::unix::net::UnixListener::bind(&socket)?;
    unix.set_nonblocking(true)?;
    let probe = format!(
        "python3 -c 'import socket\ntry: socket.create_connection((\"127.0.0.1\", {port}), 3)\nexcept OSError: pass\ntry: socket.socket(socket.AF_UNIX).connect(\"{}\")\nexcept OSError: pass\nprint(\"probed\")'",
        socket.display()
    );
    let seen = run_in(sandbox, worktree, probe);
    let tcp_hit = listener.accept().is_ok();
    let unix_hit = unix.accept().is_ok();
    verdicts.push(if !seen.contains("probed") {
        Verdict::Warn(format!(
            "network: not probed (python3 did not run inside: {})",
            crate::report::first_line(&seen, 100)
        ))
    } else if tcp_hit {
        Verdict::Missing("network: a command reached a listener on the host's loopback".into())
    } else {
        Verdict::Ok("network: none (a listener on the host's loopback saw no connection)".into())
    });
    if seen.contains("probed") {
        verdicts.push(if unix_hit {
            Verdict::Missing("host sockets: a command reached a unix socket of the host".into())
        } else {
            Verdict::Ok("host sockets: a unix socket of the host saw no connection".into())
        });
    }
    Ok(verdicts)
}

/// The fetch profile: a registry is reachable (a warning when not: the machine may be offline),
/// a host that is not a registry and the host's loopback are refused by the proxy.
fn probe_fetch(sandbox: &dyn Sandbox, worktree: &Path) -> anyhow::Result<Vec<Verdict>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let probe = format!(
        "python3 -c 'import urllib.request\nfor u in [\"https://index.crates.io/config.json\", \"https://example.com/\", \"https://127.0.0.1:{port}/\"]:\n  try: print(u, urllib.request.urlopen(u, timeout=20).status)\n  except Exception as e: print(u, \"failed\", e)'"
    );
    let seen = run_in(sandbox, worktree, probe);
    let mut verdicts = Vec::new();
    if !seen.contains("example.com") {
        verdicts.push(Verdict::Warn(format!(
            "fetch proxy: not probed (python3 did not run inside: {})",
            crate::report::first_line(&seen, 100)
        )));
        return Ok(verdicts);
    }
    let refused = seen.contains("https://example.com/ failed")
        && seen.contains(&format!("127.0.0.1:{port}/ failed"))
        && listener.accept().is_err();
    verdicts.push(if refused {
        Verdict::Ok(
            "fetch proxy: HTTPS to registries only (example.com and the host's loopback refused)"
                .into(),
        )
    } else {
        Verdict::Missing(format!(
            "fetch proxy: the fetch profile reached a host that is not a registry: {}",
            crate::report::first_line(&seen, 200)
        ))
    });
    verdicts.push(if seen.contains("config.json 200") {
        Verdict::Ok("fetch proxy: a registry (index.crates.io) is reachable".into())
    } else {
        Verdict::Warn("fetch proxy: index.crates.io is not reachable from here (offline? add a mirror to the fetch profile's allow_hosts)".into())
    });
    Ok(verdicts)
}

/// landlock and seccomp, tried on the helper bare: a write outside a throwaway directory goes to a
/// second throwaway directory, so a missing layer harms nothing.
fn probe_helper() -> anyhow::Result<Vec<Verdict>> {
    let scratch = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    let probe = format!(
        "import socket\ntry:\n socket.socket()\nexcept PermissionError:\n print('net-blocked')\nopen('{}/probe','w')",
        outside.path().display()
    );
    let helper = std::process::Command::new(std::env::current_exe()?)
        .arg("__sandbox-helper")
        .arg("--write")
        .arg(scratch.path())
        .args(["--", "python3", "-c", &probe])
        .output();
    let out = match helper {
        Ok(out) => out,
        Err(e) => {
            return Ok(vec![Verdict::Missing(format!(
                "landlock/seccomp helper: cannot run it ({e})"
            ))])
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let landlock = !outside.path().join("probe").exists();
    let seccomp = stdout.contains("net-blocked");
    Ok(vec![
        if landlock {
            Verdict::Ok("landlock: writes outside the allowed folders denied".into())
        } else {
            Verdict::Missing("landlock: not enforced by this kernel (writes outside landed)".into())
        },
        if seccomp {
            Verdict::Ok("seccomp: network sockets, ptrace, io_uring and the x32 ABI denied".into())
        } else {
            Verdict::Missing("seccomp: a network socket could be made".into())
        },
    ])
}
