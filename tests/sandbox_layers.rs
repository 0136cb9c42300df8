//! The in-process layers on their own: the helper (`agent __sandbox-helper`) run without bubblewrap,
//! so each rule is shown to hold by itself, not only behind bubblewrap's namespaces.

use std::path::Path;
use std::process::{Command, Output};

fn helper(writable: &std::path::Path, script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["__sandbox-helper", "--write"])
        .arg(writable)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

#[test]
fn landlock_allows_writes_only_under_the_given_directories() {
    let inside = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("escaped");
    let out = helper(
        inside.path(),
        &format!("echo x > {}; echo $?", target.display()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim().ends_with('2'),
        "the write outside did not fail: {stdout}"
    );
    assert!(!target.exists());
    let out = helper(
        inside.path(),
        &format!("echo ok > {}/in.txt", inside.path().display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(inside.path().join("in.txt").exists());
}

#[test]
fn seccomp_denies_network_sockets_and_ptrace_but_not_socketpairs() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let script = format!(
        "python3 -c '\nimport ctypes, socket\nfor family in (socket.AF_INET, socket.AF_INET6):\n    try:\n        socket.socket(family)\n        print(\"open\", family)\n    except PermissionError:\n        print(\"denied\")\na, b = socket.socketpair()\na.send(b\"x\")\nprint(\"pair\", b.recv(1))\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(\"ptrace\", libc.ptrace(16, {}, 0, 0), ctypes.get_errno())\n'",
        sleeper.id()
    );
    let out = helper(dir.path(), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "denied\ndenied\npair b'x'\nptrace -1 1\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sleeper = sleeper;
    let _ = sleeper.kill();
}

/// Did anything connect to `listener` (nonblocking check)?
fn saw_connection(listener: &std::net::TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    listener.accept().is_ok()
}

#[test]
fn the_fetch_profile_reaches_the_registries_only_through_the_proxy() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
import socket, urllib.request
for label, target in [("loopback", ("127.0.0.1", {port})), ("metadata", ("169.254.169.254", 80))]:
    try:
        socket.create_connection(target, 3); print(label, "connected")
    except OSError as e: print(label, "refused", e)
for url in ["https://index.crates.io/config.json", "https://example.com/", "http://127.0.0.1:{port}/"]:
    try:
        print(url, urllib.request.urlopen(url, timeout=20).status)
    except Exception as e: print(url, "failed", e)
"#
    );
    let run = |profile: &str| {
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args([
                "sandbox",
                "exec",
                "--timeout",
                "120",
                "--profile",
                profile,
                "--dir",
            ])
            .arg(dir.path())
            .args(["--", "python3", "-c", &script])
            .output()
            .unwrap()
    };
    let offline = run("default");
    let text = String::from_utf8_lossy(&offline.stdout);
    assert!(
        !text.contains("connected") && !text.contains(" 200"),
        "{text}"
    );
    let online = run("fetch");
    let text = String::from_utf8_lossy(&online.stdout);
    assert!(
        text.contains("https://index.crates.io/config.json 200"),
        "a registry is unreachable from the fetch profile: {text}{}",
        String::from_utf8_lossy(&online.stderr)
    );
    assert!(!text.contains(" connected"), "{text}");
    assert!(text.contains("https://example.com/ failed"), "{text}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/ failed")),
        "{text}"
    );
    assert!(
        text.contains("not an allowed registry host") || text.contains("registry proxy refused"),
        "the refusal is not explained: {text}"
    );
    assert!(
        !saw_connection(&listener),
        "the host's loopback listener saw a connection"
    );
    // The fetch profile still writes only where it may: a folder this user can write outside the
    // worktree (not /etc, which only root could write anyway, so the test would prove nothing for
    // others) stays untouched, whether the write fails or lands in a private view.
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("agent-fetch-escape");
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["sandbox", "exec", "--profile", "fetch", "--dir"])
        .arg(dir.path())
        .args(["--", "sh", "-c"])
        .arg(format!("echo x > {}", canary.display()))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!canary.exists(), "the write outside the worktree landed");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn doctor_probes_every_layer_and_fails_when_one_is_missing() {
    let cache = tempfile::tempdir().unwrap();
    let doctor = |path: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent"));
        cmd.arg("doctor")
            .env("XDG_CACHE_HOME", cache.path())
            .env("XDG_CONFIG_HOME", cache.path().join("config"));
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        cmd.output().unwrap()
    };
    let out = doctor(None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for layer in [
        "bubblewrap",
        "filesystem view",
        "network",
        "host sockets",
        "fetch proxy: HTTPS to registries only",
        "landlock",
        "seccomp",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(layer)),
            "{layer} not probed ok: {text}"
        );
    }
    // The machine's other prerequisites are named too (each ok or a warning with its fix).
    for item in ["disk:", "git identity:", "wasm32-wasip1 target:", "config:"] {
        assert!(
            text.lines()
                .any(|l| (l.starts_with("ok") || l.starts_with("warn")) && l.contains(item)),
            "{item} not reported: {text}"
        );
    }
    // The probes leave nothing behind in the cache folder.
    let left: Vec<_> = std::fs::read_dir(cache.path().join("agent"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("doctor-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Without bubblewrap on PATH: said, and exit 1.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.path().join("sh")).unwrap();
    let out = doctor(Some(bin.path()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("MISSING  bubblewrap"), "{text}");
}

/// Bytes available on the file system holding `path` (as `df` reports them).
fn available(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_command_filling_the_disk_is_stopped_before_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let free = available(dir.path());
    // A floor 150 MiB below today's free space, so the test need not fill the real disk.
    let floor_mb = (free >> 20).saturating_sub(150);
    let profile = dir.path().join("tight.toml");
    let default = include_str!("../sandboxes/default.toml");
    std::fs::write(
        &profile,
        default.replace(
            "min_free_disk_mb = 1024",
            &format!("min_free_disk_mb = {floor_mb}"),
        ),
    )
    .unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // 60 files of 10 MiB, a little at a time: 600 MiB would pass the floor by 450 MiB.
    let script = "for i in $(seq 1 60); do head -c 10485760 /dev/zero > f$i; sync f$i 2>/dev/null; sleep 0.05; done; echo wrote-all";
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["sandbox", "exec", "--timeout", "120", "--profile"])
        .arg(&profile)
        .arg("--dir")
        .arg(&work)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    let written = std::fs::read_dir(&work).unwrap().count();
    let left = available(dir.path());
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the disk was nearly full"),
        "{out:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("wrote-all"));
    assert!(written < 60, "{written} files written");
    assert!(
        left + (250 << 20) > floor_mb << 20,
        "the command went {} MiB past the floor",
        ((floor_mb << 20) - left) >> 20
    );
}

#[test]
fn a_registry_host_named_with_registry_is_reached_through_the_proxy_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import urllib.request
try:
    print("status", urllib.request.urlopen("https://deb.debian.org/", timeout=20).status)
except Exception as e: print("failed", e)
"#;
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["sandbox", "exec", "--command-timeout", "120"])
            .args(extra)
            .arg("--repo")
            .arg(dir.path())
            .args(["--", "python3", "-c", script])
            .output()
            .unwrap()
    };
    let without = run(&["--profile", "fetch"]);
    let text = String::from_utf8_lossy(&without.stdout);
    assert!(
        text.contains("failed") && text.contains("registry proxy refused"),
        "{text}"
    );
    let with = run(&["--profile", "fetch", "--registry", "deb.debian.org"]);
    let text = String::from_utf8_lossy(&with.stdout);
    assert!(
        text.contains("status 200"),
        "{text}{}",
        String::from_utf8_lossy(&with.stderr)
    );
    // Only host names, and only for a profile that has the proxy.
    for (extra, expected) in [
        (
            &["--profile", "fetch", "--registry", "127.0.0.1"][..],
            "must be a lower-case DNS name",
        ),
        (
            &[
                "--profile",
                "fetch",
                "--registry",
                "https://deb.debian.org/",
            ][..],
            "must be a lower-case DNS name",
        ),
        (
            &["--profile", "default", "--registry", "deb.debian.org"][..],
            "has no registry proxy",
        ),
    ] {
        let refused = run(extra);
        assert_eq!(refused.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}
