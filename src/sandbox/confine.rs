//! The in-process layers, applied by the agent's own binary re-executed as a helper inside bubblewrap
//! (`agent __sandbox-helper --write DIR ... -- CMD ...`), just before it execs the command:
//! - landlock: the filesystem is readable, writable only under the given directories; TCP bind and
//!   connect are denied;
//! - seccomp: `socket()` for anything but AF_UNIX, `ptrace`, `process_vm_readv/writev` and `io_uring`
//!   fail with EPERM (Python's socketpair and `sendto` on it keep working), and so does every x32-ABI
//!   system call, whether or not the kernel enables x32.
//!
//! Both survive exec and cannot be lifted by the command. This module must never loosen a rule it
//! cannot apply: it reports what is missing instead.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Restrict this process with landlock: read anywhere, write only under `writable`, no TCP.
/// With `network`, outgoing TCP is allowed (binding stays denied).
pub fn apply_landlock(writable: &[PathBuf], network: bool) -> Result<RulesetStatus, String> {
    let net = if network {
        AccessNet::BindTcp.into()
    } else {
        AccessNet::BindTcp | AccessNet::ConnectTcp
    };
    let abi = ABI::V4;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(net))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(writable, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    Ok(status.ruleset)
}

/// Install the seccomp filter.
/// With `network`, sockets of any family are allowed.
pub fn apply_seccomp(network: bool) -> Result<(), String> {
    let program = seccomp_program(network)?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))
}

/// The seccomp program `apply_seccomp` installs.
fn seccomp_program(network: bool) -> Result<BpfProgram, String> {
    let err = |e: &dyn std::fmt::Display| format!("seccomp: {e}");
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| err(&e))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let not_unix = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Ne,
        libc::AF_UNIX as u64,
    )
    .map_err(|e| err(&e))?;
    if !network {
        rules.insert(
            libc::SYS_socket,
            vec![SeccompRule::new(vec![not_unix]).map_err(|e| err(&e))?],
        );
    }
    for syscall in [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(syscall, Vec::new());
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(&e))?;
    Ok(with_x32_denied(program))
}

/// On x86-64, x32-ABI system calls carry the x86-64 audit arch and their own numbers (bit 30 set), so
/// a filter keyed by x86-64 numbers would let them all through wherever the kernel enables x32. The
/// filter is prefixed with: load the number; bit 30 set → EPERM. (Jumps in BPF are relative, so the
/// program after the prefix is unchanged.)
fn with_x32_denied(program: BpfProgram) -> BpfProgram {
    if !cfg!(target_arch = "x86_64") {
        return program;
    }
    const LOAD_NR: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
    const JSET: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let insn = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    let mut guarded = vec![
        insn(LOAD_NR, 0, 0, 0),
        insn(JSET, 0, 1, X32_SYSCALL_BIT),
        insn(RET, 0, 0, RET_ERRNO | libc::EPERM as u32),
    ];
    guarded.extend(program);
    guarded
}

/// The helper: apply both layers, then become `command`. With `proxy` (the registry proxy's socket,
/// bound into the sandbox), first start the forwarder that makes it reachable as
/// `http://127.0.0.1:<port>` and point the proxy variables at it. Returns only on failure (exit
/// status 125).
pub fn helper_main(
    writable: &[PathBuf],
    network: bool,
    proxy: Option<&Path>,
    command: &[String],
) -> u8 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("agent sandbox helper: no command given");
        return 125;
    };
    let mut exec = std::process::Command::new(program);
    exec.args(args);
    if let Some(socket) = proxy {
        match start_forwarder(socket) {
            Ok(port) => {
                let url = format!("http://127.0.0.1:{port}");
                for key in [
                    "HTTPS_PROXY",
                    "https_proxy",
                    "HTTP_PROXY",
                    "http_proxy",
                    "ALL_PROXY",
                    "all_proxy",
                    "npm_config_https_proxy",
                    "npm_config_proxy",
                ] {
                    exec.env(key, &url);
                }
                exec.env("CARGO_HTTP_PROXY", format!("127.0.0.1:{port}"));
                exec.env_remove("NO_PROXY").env_remove("no_proxy");
            }
            Err(e) => {
                eprintln!("agent sandbox helper: cannot reach the registry proxy: {e}");
                return 125;
            }
        }
    }
    match apply_landlock(writable, network) {
        Ok(RulesetStatus::FullyEnforced) => {}
        Ok(status) => eprintln!("agent sandbox: landlock only partly enforced here ({status:?})"),
        Err(e) => eprintln!("agent sandbox: {e}; continuing without it"),
    }
    if let Err(e) = apply_seccomp(network) {
        eprintln!("agent sandbox: {e}");
        return 125;
    }
    let error = exec.exec();
    eprintln!("agent sandbox helper: cannot run {program}: {error}");
    125
}

/// Listen on 127.0.0.1 inside the sandbox's own network namespace and fork a process that forwards
/// each connection to the registry proxy's unix socket; returns the port. The forwarder lives until
/// the sandbox's pid namespace ends with the command.
fn start_forwarder(socket: &Path) -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let port = listener.local_addr()?.port();
    // Fail here, not in the first download, when the socket is not there.
    drop(std::os::unix::net::UnixStream::connect(socket)?);
    // SAFETY: the helper is single-threaded at this point; the child only runs the loop below.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // The forwarder must not hold the command's output pipes open, nor write anywhere.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                for fd in 0..3 {
                    // SAFETY: dup2 onto the standard descriptors of this process.
                    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
                }
            }
            let _ = apply_landlock(&[], true);
            for client in listener.incoming().flatten() {
                let socket = socket.to_path_buf();
                std::thread::spawn(move || {
                    if let Ok(upstream) = std::os::unix::net::UnixStream::connect(&socket) {
                        super::proxy::splice(upstream, client);
                    }
                });
            }
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        _ => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the classic-BPF `program` answers for a system call (the subset seccompiler emits).
    fn verdict(program: &BpfProgram, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let insn = &program[pc];
            pc += 1;
            match insn.code {
                0x20 => {
                    let k = insn.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x54 => acc &= insn.k,
                0x06 => return insn.k,
                0x05 => pc += insn.k as usize,
                code => {
                    let taken = match code {
                        0x15 => acc == insn.k,
                        0x25 => acc > insn.k,
                        0x35 => acc >= insn.k,
                        0x45 => acc & insn.k != 0,
                        other => panic!("instruction {other:#x} not modelled"),
                    };
                    pc += if taken { insn.jt } else { insn.jf } as usize;
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_filter_denies_network_sockets_and_every_x32_call() {
        const X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
        const ALLOW: u32 = 0x7fff_0000;
        let eperm = 0x0005_0000 | libc::EPERM as u32;
        let program = seccomp_program(false).unwrap();
        let socket = libc::SYS_socket as u32;
        let inet = [libc::AF_INET as u64, 1, 0, 0, 0, 0];
        let unix = [libc::AF_UNIX as u64, 1, 0, 0, 0, 0];
        assert_eq!(verdict(&program, X86_64, socket, inet), eperm);
        assert_eq!(verdict(&program, X86_64, socket, unix), ALLOW);
        assert_eq!(
            verdict(&program, X86_64, libc::SYS_read as u32, [0; 6]),
            ALLOW
        );
        assert_eq!(
            verdict(&program, X86_64, libc::SYS_ptrace as u32, [0; 6]),
            eperm
        );
        // x32: the same numbers with bit 30 set, inet socket and read alike.
        assert_eq!(verdict(&program, X86_64, socket | 0x4000_0000, inet), eperm);
        assert_eq!(
            verdict(
                &program,
                X86_64,
                libc::SYS_read as u32 | 0x4000_0000,
                [0; 6]
            ),
            eperm
        );
    }
}
