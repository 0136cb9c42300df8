//! The in-process layers on their own: the helper (`agent __sandbox-helper`) run without bubblewrap,
//! so each rule is shown to hold by itself, not only behind bubblewrap's namespaces.

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

#[test]
fn only_the_fetch_profile_reaches_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let connect = format!(
        "import socket; socket.create_connection((\"127.0.0.1\", {port}), 5); print(\"connected\")"
    );
    let run = |profile: &str| {
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["sandbox", "exec", "--profile", profile, "--dir"])
            .arg(dir.path())
            .args(["--", "python3", "-c", &connect])
            .output()
            .unwrap()
    };
    let offline = run("default");
    assert!(
        !offline.status.success(),
        "the default profile reached the network"
    );
    let online = run("fetch");
    assert!(
        String::from_utf8_lossy(&online.stdout).contains("connected"),
        "{}",
        String::from_utf8_lossy(&online.stderr)
    );
    // The fetch profile still writes only where it may.
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["sandbox", "exec", "--profile", "fetch", "--dir"])
        .arg(dir.path())
        .args(["--", "sh", "-c", "echo x > /etc/agent-fetch-escape"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!std::path::Path::new("/etc/agent-fetch-escape").exists());
}
