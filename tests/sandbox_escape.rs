//! The adversarial suite: commands that try to get out of the sandbox through `agent sandbox exec`, the
//! same sandbox the agent uses. Each case must be stopped, and the host must be untouched.
//! Prints "N blocked of N". Requires bubblewrap (installed by scripts/setup.sh): a failure, not a skip.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn exec(dir: &Path, timeout: u64, script: &str, home: &Path) -> Output {
    exec_in("default", dir, timeout, script, home)
}

fn exec_in(profile: &str, dir: &Path, timeout: u64, script: &str, home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "sandbox",
            "exec",
            "--profile",
            profile,
            "--command-timeout",
            &timeout.to_string(),
            "--repo",
        ])
        .arg(dir)
        .args(["--", "sh", "-c", script])
        .env("HOME", home)
        .env("AGENT_SECRET_TOKEN", "hunter2")
        .output()
        .expect("agent runs")
}

/// Returns Err(what got out) if the attempt succeeded.
type Verdict = Box<dyn Fn(&Output) -> Result<(), String>>;

/// Cgroups the agent made (`agent-*`) anywhere in the hierarchy, down to `depth` levels.
fn agent_cgroups(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    {
        if entry.file_name().to_string_lossy().starts_with("agent-") {
            found.push(entry.path());
        } else if depth > 0 {
            found.extend(agent_cgroups(&entry.path(), depth - 1));
        }
    }
    found
}

struct Case {
    name: &'static str,
    script: String,
    timeout: u64,
    blocked: Verdict,
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn adversarial_commands_are_stopped_and_the_host_is_untouched() {
    // Cgroups other processes left on this machine before (e.g. agents killed by other tests) are
    // not this test's doing.
    let cgroups_before = agent_cgroups(Path::new("/sys/fs/cgroup"), 4);
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("work");
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::os::unix::fs::symlink(outer.path(), dir.join("up")).unwrap();
    let home = outer.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), "PRIVATE KEY").unwrap();
    std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
    std::fs::write(
        home.join(".cargo/credentials.toml"),
        "[registry]\ntoken = \"cio-publish-token-41\"\n",
    )
    .unwrap();
    // A host service on a unix socket where services keep them (the tests run as root, as CI does).
    let service_path = PathBuf::from(format!("/run/agent-escape-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&service_path);
    let service = std::os::unix::net::UnixListener::bind(&service_path)
        .expect("a unix socket under /run (the tests run as root)");
    service.set_nonblocking(true).unwrap();
    // Secrets outside $HOME that the user can read: a mode-600 file under /var/tmp, a folder under
    // /opt, another user's home, another checkout beside the worktree.
    let pid = std::process::id();
    let outside_secrets = [
        PathBuf::from(format!("/var/tmp/agent-escape-{pid}.secret")),
        PathBuf::from(format!("/opt/agent-escape-{pid}/secret")),
        PathBuf::from(format!("/home/agent-escape-{pid}/.ssh/id_ed25519")),
        outer.path().join("other-checkout/src/main.rs"),
    ];
    const OUTSIDE_SECRET: &str = "outside-secret-5e1f0c";
    for path in &outside_secrets {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, OUTSIDE_SECRET).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    // Host services on an abstract unix socket and on a pathname socket outside /run.
    let abstract_name = format!("agent-escape-{pid}");
    let abstract_service = {
        use std::os::linux::net::SocketAddrExt;
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    abstract_service.set_nonblocking(true).unwrap();
    let var_socket_path = PathBuf::from(format!("/var/tmp/agent-escape-{pid}.sock"));
    let _ = std::fs::remove_file(&var_socket_path);
    let var_service = std::os::unix::net::UnixListener::bind(&var_socket_path).unwrap();
    var_service.set_nonblocking(true).unwrap();
    let victim = outer.path().join("victim.txt");
    std::fs::write(&victim, "original").unwrap();
    let host_tmp_marker = PathBuf::from(format!("/tmp/agent-escape-{}", std::process::id()));

    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    // A host process with a secret in its environment (as a shell with exported tokens would have).
    const HOST_PROCESS_SECRET: &str = "host-process-secret-93d2";
    let mut host_sleeper = Command::new("sleep")
        .arg("600")
        .env("AGENT_ESCAPE_HOST_TOKEN", HOST_PROCESS_SECRET)
        .spawn()
        .unwrap();
    let sleeper_pid = host_sleeper.id();

    // Blocked when the command failed *and* says why in the sandbox's words: a command that fails for
    // another reason (a missing binary, a typo, a timeout) proves nothing about the sandbox.
    let denied = |reasons: &'static [&'static str]| {
        move |o: &Output| {
            let all = format!("{}{}", out(o), String::from_utf8_lossy(&o.stderr));
            let lower = all.to_lowercase();
            if o.status.success() {
                Err(format!("exit 0: {all}"))
            } else if !reasons.iter().any(|r| lower.contains(&r.to_lowercase())) {
                Err(format!(
                    "failed, but not as the sandbox refuses (expected one of {reasons:?}): {all}"
                ))
            } else {
                Ok(())
            }
        }
    };
    const NO_NETWORK: &[&str] = &["Operation not permitted", "Network is unreachable"];
    const READ_ONLY: &[&str] = &["Read-only file system", "Permission denied"];
    const PROXY_REFUSED: &[&str] = &["the registry proxy refused"];
    // An abstract socket of the host is in another network namespace; a pathname socket outside the
    // view is not there at all (and the listeners below see no connection either way).
    const NO_HOST_SOCKET: &[&str] = &["Connection refused", "No such file or directory"];
    let py = |code: &str| format!("python3 -c '{code}'");
    // Blocked when `needle` appears in neither stdout nor stderr.
    let leaks = |needle: &str| {
        let needle = needle.to_string();
        move |o: &Output| {
            let all = format!("{}{}", out(o), String::from_utf8_lossy(&o.stderr));
            if all.contains(&needle) {
                Err(format!("{needle:?} appeared: {all}"))
            } else {
                Ok(())
            }
        }
    };
    let outer_path = outer.path().display().to_string();
    let cases: Vec<Case> = vec![
        Case { name: "tcp to the host's 127.0.0.1", script: py(&format!("import socket; socket.create_connection((\"127.0.0.1\", {tcp_port}), 2)")), timeout: 20, blocked: Box::new(denied(NO_NETWORK)) },
        Case { name: "tcp to the internet", script: py("import socket; socket.create_connection((\"1.1.1.1\", 80), 2)"), timeout: 20, blocked: Box::new(denied(NO_NETWORK)) },
        Case { name: "dns lookup", script: py("import socket; socket.getaddrinfo(\"crates.io\", 443)"), timeout: 20, blocked: Box::new(denied(&["Temporary failure in name resolution", "Operation not permitted"])) },
        Case { name: "udp to the host", script: py(&format!("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b\"x\", (\"127.0.0.1\", {udp_port}))")), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "write to $HOME", script: "echo x > \"$HOME/escaped\"".into(), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "write to /etc", script: "echo x > /etc/agent-escaped".into(), timeout: 20, blocked: Box::new(denied(READ_ONLY)) },
        Case { name: "write to the host's /tmp", script: format!("echo x > {}", host_tmp_marker.display()), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "write to the worktree's .git", script: "echo evil > .git/HEAD".into(), timeout: 20, blocked: Box::new(denied(READ_ONLY)) },
        Case { name: "write through ..", script: "echo x > ../escaped-dotdot".into(), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "write through a symlink", script: "echo x > up/escaped-link".into(), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "write through /proc/self/root", script: format!("echo x > /proc/self/root{outer_path}/escaped-proc"), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "overwrite a file outside", script: format!("echo pwned > {outer_path}/victim.txt"), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "delete a file outside", script: format!("rm -f {outer_path}/victim.txt"), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "read a secret under $HOME", script: "cat \"$HOME/.ssh/id_rsa\"".into(), timeout: 20, blocked: Box::new(|o| if out(o).contains("PRIVATE KEY") { Err("secret leaked".into()) } else { Ok(()) }) },
        Case { name: "read the cargo registry token", script: "cat \"$HOME/.cargo/credentials.toml\"".into(), timeout: 20, blocked: Box::new(|o| if out(o).contains("cio-publish-token") { Err("token leaked".into()) } else { Ok(()) }) },
        Case { name: "connect to a host service's unix socket", script: py(&format!("import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{}\")", service_path.display())), timeout: 20, blocked: Box::new(denied(NO_HOST_SOCKET)) },
        Case { name: "read a secret from the environment", script: "echo \"token=$AGENT_SECRET_TOKEN\"".into(), timeout: 20, blocked: Box::new(|o| if out(o).contains("hunter2") { Err("env leaked".into()) } else { Ok(()) }) },
        Case { name: "kill a host process", script: format!("kill -9 {sleeper_pid}"), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "see host processes", script: "ls /proc | grep -c '^[0-9]'".into(), timeout: 20, blocked: Box::new(|o| if out(o).trim().parse::<u32>().unwrap_or(99) > 5 { Err(format!("sees {} processes", out(o).trim())) } else { Ok(()) }) },
        Case { name: "keep capabilities", script: "grep CapEff /proc/self/status".into(), timeout: 20, blocked: Box::new(|o| if out(o).contains("0000000000000000") { Ok(()) } else { Err(out(o)) }) },
        Case { name: "mount a filesystem", script: "mkdir -p m && mount -t tmpfs none m".into(), timeout: 20, blocked: Box::new(denied(&["permission denied", "Operation not permitted"])) },
        Case { name: "change the hostname", script: "hostname agent-evil".into(), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "infinite loop", script: "while :; do :; done".into(), timeout: 2, blocked: Box::new(|o| if o.status.code() == Some(124) { Ok(()) } else { Err(format!("{:?}", o.status)) }) },
        Case { name: "daemon that outlives the command", script: "setsid sh -c 'sleep 2; echo late > late.txt' > /dev/null 2>&1 & exit 0".into(), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "memory hog (20 GB)", script: py("b = bytearray(20 * 1024**3)"), timeout: 30, blocked: Box::new(denied(&["MemoryError", "Killed", "out of memory"])) },
        Case { name: "10 GB output stream", script: "yes 0123456789abcdef | head -c 10000000000".into(), timeout: 90, blocked: Box::new(|o| if o.stdout.len() < 20 << 20 { Ok(()) } else { Err(format!("{} bytes of output", o.stdout.len())) }) },
        Case { name: "huge file (past the file-size limit)", script: "head -c 3000000000 /dev/zero > big.bin".into(), timeout: 60, blocked: Box::new(denied(&["File size limit exceeded"])) },
        Case { name: "fill /tmp", script: "head -c 2000000000 /dev/zero > /tmp/fill".into(), timeout: 60, blocked: Box::new(denied(&["No space left on device"])) },
        Case { name: "core dumps", script: "ulimit -c".into(), timeout: 20, blocked: Box::new(|o| if out(o).trim() == "0" { Ok(()) } else { Err(out(o)) }) },
        Case { name: "raw block devices", script: "ls /dev".into(), timeout: 20, blocked: Box::new(|o| {
            let devices: Vec<String> = out(o).lines().filter(|l| ["sd", "vd", "nvme", "xvd", "loop", "dm-"].iter().any(|p| l.starts_with(p))).map(str::to_owned).collect();
            if o.status.success() && devices.is_empty() { Ok(()) } else { Err(format!("{:?}, devices seen: {devices:?}", o.status)) }
        }) },
        Case { name: "write to the host's /dev/shm", script: "echo x > /dev/shm/agent-escaped".into(), timeout: 20, blocked: Box::new(|_| Ok(())) },
        Case { name: "fork bomb", script: "f() { f | f & }; f 2>/dev/null; sleep 30".into(), timeout: 5, blocked: Box::new(|o| {
            let processes = std::fs::read_dir("/proc").unwrap().flatten().filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit())).count();
            if o.status.code() == Some(124) && processes < 2000 { Ok(()) } else { Err(format!("{:?}, {processes} processes on the host afterwards", o.status)) }
        }) },
        Case { name: "read a host process's environment", script: format!("cat /proc/{sleeper_pid}/environ 2>&1; tr '\\0' '\\n' < /proc/1/environ 2>&1"), timeout: 20, blocked: Box::new(leaks(HOST_PROCESS_SECRET)) },
        Case { name: "read secrets outside $HOME (/var/tmp, /opt, another user's home, another checkout)", script: outside_secrets.iter().map(|p| format!("cat {} 2>&1; ", p.display())).collect(), timeout: 20, blocked: Box::new(leaks(OUTSIDE_SECRET)) },
        Case { name: "list the host's other folders", script: "ls -a /srv /opt /mnt /media /home /var /root /work /farm 2>&1".into(), timeout: 20, blocked: Box::new(leaks(&format!("agent-escape-{pid}"))) },
        Case { name: "read /etc/shadow", script: "cat /etc/shadow /etc/gshadow 2>&1".into(), timeout: 20, blocked: Box::new(leaks("root:")) },
        Case { name: "connect to a host service's abstract unix socket", script: py(&format!("import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"\\0{abstract_name}\")")), timeout: 20, blocked: Box::new(denied(NO_HOST_SOCKET)) },
        Case { name: "connect to a host unix socket outside /run", script: py(&format!("import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{}\")", var_socket_path.display())), timeout: 20, blocked: Box::new(denied(NO_HOST_SOCKET)) },
    ];
    // The same attacks from the dependency-fetch profile, whose only network is the registry proxy.
    let curl = |url: &str| format!("curl -fsS --max-time 15 -o /dev/null {url}");
    let fetch_cases: Vec<Case> = vec![
        Case { name: "fetch: tcp to the host's 127.0.0.1", script: py(&format!("import socket; socket.create_connection((\"127.0.0.1\", {tcp_port}), 2)")), timeout: 20, blocked: Box::new(denied(&["Operation not permitted", "Network is unreachable", "Connection refused"])) },
        Case { name: "fetch: the host's 127.0.0.1 through the proxy", script: curl(&format!("https://127.0.0.1:{tcp_port}/")), timeout: 30, blocked: Box::new(denied(PROXY_REFUSED)) },
        Case { name: "fetch: cloud metadata through the proxy", script: curl("http://169.254.169.254/latest/meta-data/"), timeout: 30, blocked: Box::new(denied(PROXY_REFUSED)) },
        Case { name: "fetch: a host that is not a registry", script: curl("https://example.com/"), timeout: 30, blocked: Box::new(denied(PROXY_REFUSED)) },
        Case { name: "fetch: a registry on another port", script: curl("https://pypi.org:8443/"), timeout: 30, blocked: Box::new(denied(PROXY_REFUSED)) },
        Case { name: "fetch: udp to the internet", script: py("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b\"x\", (\"1.1.1.1\", 53)); s.settimeout(3); s.recv(10)"), timeout: 20, blocked: Box::new(denied(NO_NETWORK)) },
        Case { name: "fetch: connect to a host service's unix socket", script: py(&format!("import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{}\")", service_path.display())), timeout: 20, blocked: Box::new(denied(NO_HOST_SOCKET)) },
        Case { name: "fetch: connect to a host service's abstract unix socket", script: py(&format!("import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"\\0{abstract_name}\")")), timeout: 20, blocked: Box::new(denied(NO_HOST_SOCKET)) },
        Case { name: "fetch: read the cargo registry token", script: "cat \"$HOME/.cargo/credentials.toml\" 2>&1".into(), timeout: 20, blocked: Box::new(leaks("cio-publish-token")) },
        Case { name: "fetch: read secrets outside $HOME", script: outside_secrets.iter().map(|p| format!("cat {} 2>&1; ", p.display())).collect(), timeout: 20, blocked: Box::new(leaks(OUTSIDE_SECRET)) },
        Case { name: "fetch: write to /etc", script: "echo x > /etc/agent-escaped".into(), timeout: 20, blocked: Box::new(denied(READ_ONLY)) },
    ];

    // The sandbox must really run commands; otherwise every attempt would "fail" and prove nothing.
    let sanity = exec(&dir, 20, "echo sandbox-works > ok.txt && cat ok.txt", &home);
    assert_eq!(
        String::from_utf8_lossy(&sanity.stdout),
        "sandbox-works\n",
        "the sandbox does not run commands: {sanity:?}"
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut escaped = Vec::new();
    // The fetch profile must really reach a registry, or its cases would prove nothing.
    let online = exec_in(
        "fetch",
        &dir,
        60,
        &curl("https://index.crates.io/config.json"),
        &home,
    );
    assert!(
        online.status.success(),
        "the fetch profile reaches no registry: {online:?}"
    );
    let all_cases = cases
        .iter()
        .map(|c| ("default", c))
        .chain(fetch_cases.iter().map(|c| ("fetch", c)));
    let total = cases.len() + fetch_cases.len();
    for (profile, case) in all_cases {
        let started = Instant::now();
        let output = exec_in(profile, &dir, case.timeout, &case.script, &home);
        if let Err(what) = (case.blocked)(&output) {
            escaped.push(format!("{}: {what}", case.name));
        }
        assert!(
            started.elapsed() < Duration::from_secs(case.timeout + 30),
            "{} was not stopped in time",
            case.name
        );
    }
    std::thread::sleep(Duration::from_secs(3)); // let a surviving daemon show itself
    let big = std::fs::metadata(dir.join("big.bin")).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(dir.join("big.bin"));

    // The host is untouched.
    let mut host = Vec::new();
    if tcp.accept().is_ok() {
        host.push("the host's TCP listener got a connection");
    }
    if udp.recv(&mut [0u8; 16]).is_ok() {
        host.push("the host's UDP socket got a datagram");
    }
    if service.accept().is_ok() {
        host.push("the host's unix-socket service got a connection");
    }
    if abstract_service.accept().is_ok() {
        host.push("the host's abstract-socket service got a connection");
    }
    if var_service.accept().is_ok() {
        host.push("the host's unix-socket service under /var/tmp got a connection");
    }
    let _ = std::fs::remove_file(&service_path);
    let _ = std::fs::remove_file(&var_socket_path);
    let _ = std::fs::remove_file(&outside_secrets[0]);
    let _ = std::fs::remove_dir_all(format!("/opt/agent-escape-{pid}"));
    let _ = std::fs::remove_dir_all(format!("/home/agent-escape-{pid}"));
    for (path, what) in [
        (home.join("escaped"), "file in $HOME"),
        (PathBuf::from("/etc/agent-escaped"), "file in /etc"),
        (host_tmp_marker.clone(), "file in the host's /tmp"),
        (outer.path().join("escaped-dotdot"), "file through .."),
        (outer.path().join("escaped-link"), "file through a symlink"),
        (
            outer.path().join("escaped-proc"),
            "file through /proc/self/root",
        ),
        (dir.join("late.txt"), "file from a surviving daemon"),
        (PathBuf::from("/dev/shm/agent-escaped"), "file in /dev/shm"),
    ] {
        if path.exists() {
            host.push(what);
        }
    }
    if big >= 3_000_000_000 {
        host.push("the huge file was written whole (no file-size limit)");
    }
    if std::fs::read_to_string(&victim).ok().as_deref() != Some("original") {
        host.push("a file outside was changed or deleted");
    }
    if std::fs::read_to_string(dir.join(".git/HEAD")).unwrap() != "ref: refs/heads/main\n" {
        host.push(".git was written");
    }
    if host_sleeper.try_wait().unwrap().is_some() {
        host.push("a host process was killed");
    }
    if std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap() != hostname {
        host.push("the hostname changed");
    }
    let _ = host_sleeper.kill();
    let leftovers: Vec<PathBuf> = agent_cgroups(Path::new("/sys/fs/cgroup"), 4)
        .into_iter()
        .filter(|c| !cgroups_before.contains(c))
        .collect();
    if !leftovers.is_empty() {
        escaped.push(format!("host: cgroups left behind: {leftovers:?}"));
    }
    escaped.extend(host.iter().map(|h| format!("host: {h}")));
    println!("{} blocked of {total}", total - escaped.len().min(total));
    assert!(escaped.is_empty(), "escapes: {escaped:#?}");
}

#[test]
fn without_bubblewrap_auto_warns_loudly_and_bwrap_refuses() {
    // A PATH with a shell and coreutils but no bwrap.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["sh", "echo", "cat"] {
        let real = ["/bin", "/usr/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(real, bin.path().join(tool)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |choice: &str| {
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["sandbox", "exec", "--sandbox", choice, "--dir"])
            .arg(dir.path())
            .args(["--", "echo", "ran"])
            .env("PATH", bin.path())
            .output()
            .unwrap()
    };
    let auto = run("auto");
    assert_eq!(String::from_utf8_lossy(&auto.stdout), "ran\n");
    let warning = String::from_utf8_lossy(&auto.stderr);
    assert!(
        warning.contains("UNCONFINED") && warning.contains("bubblewrap (bwrap) is not installed"),
        "{warning}"
    );
    let strict = run("bwrap");
    assert_eq!(
        strict.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
    assert!(String::from_utf8_lossy(&strict.stderr).contains("not installed"));
}
