//! The in-process layers, applied by the agent's own binary re-executed as a helper inside bubblewrap
//! (`agent __sandbox-helper --write DIR ... -- CMD ...`), just before it execs the command:
//! - landlock: the filesystem is readable, writable only under the given directories; TCP bind and
//!   connect are denied;
//! - seccomp: `socket()` for anything but AF_UNIX, `ptrace`, `process_vm_readv/writev` and `io_uring`
//!   fail with EPERM (Python's socketpair and `sendto` on it keep working).
//!
//! Both survive exec and cannot be lifted by the command. This module must never loosen a rule it
//! cannot apply: it reports what is missing instead.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

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
    seccompiler::apply_filter(&program).map_err(|e| err(&e))
}

/// The helper: apply both layers, then become `command`. Returns only on failure (exit status 125).
pub fn helper_main(writable: &[PathBuf], network: bool, command: &[String]) -> u8 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("agent sandbox helper: no command given");
        return 125;
    };
    match apply_landlock(writable, network) {
        Ok(RulesetStatus::FullyEnforced) => {}
        Ok(status) => eprintln!("agent sandbox: landlock only partly enforced here ({status:?})"),
        Err(e) => eprintln!("agent sandbox: {e}; continuing without it"),
    }
    if let Err(e) = apply_seccomp(network) {
        eprintln!("agent sandbox: {e}");
        return 125;
    }
    let error = std::process::Command::new(program).args(args).exec();
    eprintln!("agent sandbox helper: cannot run {program}: {error}");
    125
}
