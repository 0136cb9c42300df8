//! The filesystem a confined command sees, as an allow-list: what is bound into an otherwise empty
//! root, and what is masked inside what is bound. The system's program and library directories and
//! `/etc` (its secret files masked), the toolchains the command's `PATH` and toolchain variables name
//! (their credential files masked), an empty private `$HOME` holding only those toolchains, empty
//! `/tmp`, `/var/tmp` and `/run`, the worktree, and the read-only extras the caller names (the object
//! store a workspace borrows). Everything else on the machine — other users' and other repositories'
//! files, `/srv`, `/opt`, `/mnt`, `/var`, host sockets under `/run` — is simply not there.
//!
//! This module only computes the list; [`super::linux`] turns it into bubblewrap arguments. It must
//! never add a path that holds credentials, nor `/` or a home directory as a whole.

use std::path::{Component, Path, PathBuf};

/// One entry of the view, applied in order (later entries cover earlier ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The host path, visible read-only at the same place.
    ReadOnly(PathBuf),
    /// The host path, visible read-write at the same place.
    ReadWrite(PathBuf),
    /// A symbolic link at `link` pointing to `target` (`/bin -> usr/bin` on merged-/usr systems).
    Symlink { target: PathBuf, link: PathBuf },
    /// An empty, private, writable directory (memory-backed), `size` bytes at most when given.
    Tmpfs { path: PathBuf, size: Option<u64> },
    /// A secret file hidden behind an empty one.
    MaskFile(PathBuf),
    /// A secret directory hidden behind an empty read-only one.
    MaskDir(PathBuf),
}

/// System directories bound read-only when present: programs, libraries, and stores of packages that
/// hold no user data by design (Nix, Guix).
const SYSTEM: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/sys",
    "/nix/store",
    "/gnu/store",
];

/// Secrets under `/etc` a process of the user may be able to read (all of them when it runs as root,
/// as in containers and CI runners).
const ETC_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/security/opasswd",
    "/etc/krb5.keytab",
    "/etc/machine-id",
];

/// Secret directories under `/etc`, hidden whole.
const ETC_SECRET_DIRS: &[&str] = &[
    "/etc/ssl/private",
    "/etc/pki/tls/private",
    "/etc/letsencrypt",
    "/etc/wireguard",
    "/etc/NetworkManager/system-connections",
    "/etc/sudoers.d",
    "/etc/docker",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/etc/ipsec.d/private",
    "/etc/openvpn",
];

/// Toolchain folders under `$HOME` that stay visible, read-only.
pub const HOME_TOOLCHAINS: &[&str] = &[
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

/// Environment variables naming toolchain roots, bound read-only wherever they point.
pub const TOOLCHAIN_ENV: &[&str] = &[
    "CARGO_HOME",
    "RUSTUP_HOME",
    "PYENV_ROOT",
    "VIRTUAL_ENV",
    "NVM_DIR",
    "GOROOT",
    "JAVA_HOME",
];

/// Credential files a toolchain folder may keep beside its programs (relative to the folder).
const TOOLCHAIN_CREDENTIALS: &[&str] = &[
    "credentials",
    "credentials.toml",
    "_authToken",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
];

/// Credential files under `$HOME`'s toolchain folders, masked with an empty file.
const HOME_CREDENTIALS: &[&str] = &[
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".npm/_authToken",
    ".local/share/python_keyring",
];

/// What the view is made from.
#[derive(Debug, Clone, Default)]
pub struct ViewInputs {
    /// The user's home directory (hidden, replaced by an empty one with the toolchains).
    pub home: Option<PathBuf>,
    /// `PATH` as the command will see it: each directory's toolchain is bound.
    pub path: Option<String>,
    /// Toolchain variables (`CARGO_HOME`, ...) as the command will see them.
    pub toolchain_env: Vec<(String, String)>,
    /// Extra read-only paths (the repository's object store, the helper binary).
    pub read_only: Vec<PathBuf>,
    /// Writable paths besides the worktree (build and package caches).
    pub writable: Vec<PathBuf>,
    /// The worktree: writable, its `.git` read-only.
    pub worktree: PathBuf,
    /// Size of the private `/tmp`.
    pub tmp_size: u64,
}

/// The mounts, in the order to apply them.
pub fn mounts(inputs: &ViewInputs) -> Vec<Mount> {
    let mut out = Vec::new();
    for dir in SYSTEM.iter().map(Path::new) {
        match std::fs::read_link(dir) {
            Ok(target) => out.push(Mount::Symlink {
                target,
                link: dir.to_path_buf(),
            }),
            Err(_) if dir.is_dir() => out.push(Mount::ReadOnly(dir.to_path_buf())),
            Err(_) => {}
        }
    }
    out.extend(
        ETC_SECRETS
            .iter()
            .map(PathBuf::from)
            .filter(|f| f.symlink_metadata().is_ok())
            .map(Mount::MaskFile),
    );
    out.extend(
        ETC_SECRET_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .map(Mount::MaskDir),
    );
    out.extend(ssh_host_keys().into_iter().map(Mount::MaskFile));
    for path in ["/tmp", "/var/tmp"] {
        out.push(Mount::Tmpfs {
            path: path.into(),
            size: Some(inputs.tmp_size),
        });
    }
    // Host services listen on sockets under /run (docker, dbus, databases, the user's runtime dir
    // with ssh and gpg agents); a unix socket is not network, so only leaving them out stops a connect.
    out.push(Mount::Tmpfs {
        path: "/run".into(),
        size: Some(1 << 20),
    });
    let home = inputs.home.as_deref().filter(|h| usable_root(h));
    if let Some(home) = home {
        out.push(Mount::Tmpfs {
            path: home.to_path_buf(),
            size: Some(inputs.tmp_size),
        });
        for dir in HOME_TOOLCHAINS.iter().map(|d| home.join(d)) {
            if dir.is_dir() {
                out.push(Mount::ReadOnly(dir));
            }
        }
    }
    let roots = toolchain_roots(inputs, home);
    out.extend(roots.iter().cloned().map(Mount::ReadOnly));
    // The toolchain folders are bound whole, but never the tokens kept in them.
    let mut masked: Vec<PathBuf> = Vec::new();
    if let Some(home) = home {
        masked.extend(HOME_CREDENTIALS.iter().map(|f| home.join(f)));
    }
    // A toolchain variable may point into a system directory (`CARGO_HOME=/usr/local/cargo`).
    let named = inputs.toolchain_env.iter().map(|(_, v)| PathBuf::from(v));
    for root in roots.iter().cloned().chain(named) {
        masked.extend(TOOLCHAIN_CREDENTIALS.iter().map(|f| root.join(f)));
    }
    for secret in masked {
        if secret.symlink_metadata().is_ok() && !out.contains(&Mount::MaskFile(secret.clone())) {
            out.push(Mount::MaskFile(secret));
        }
    }
    for path in inputs.read_only.iter().filter(|p| p.exists()) {
        out.push(Mount::ReadOnly(path.clone()));
    }
    for path in &inputs.writable {
        out.push(Mount::ReadWrite(path.clone()));
    }
    out.push(Mount::ReadWrite(inputs.worktree.clone()));
    let git = inputs.worktree.join(".git");
    if git.exists() {
        out.push(Mount::ReadOnly(git));
    }
    out
}

/// `/etc/ssh/ssh_host_*_key`: the machine's private host keys.
fn ssh_host_keys() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/etc/ssh") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        })
        .collect()
}

/// May `path` be bound whole? Never `/`, never a relative path, never one with `..`.
fn usable_root(path: &Path) -> bool {
    path.is_absolute()
        && path.parent().is_some()
        && !path.components().any(|c| c == Component::ParentDir)
}

/// Is `path` already visible through a system directory or the home toolchains?
fn covered(path: &Path, home: Option<&Path>) -> bool {
    let system = SYSTEM.iter().any(|s| path.starts_with(s));
    let toolchain =
        home.is_some_and(|h| HOME_TOOLCHAINS.iter().any(|d| path.starts_with(h.join(d))));
    system || toolchain
}

/// The toolchains named by `PATH` and the toolchain variables that the system directories and the
/// home toolchains do not already show. A `PATH` entry `…/bin` brings its parent (the toolchain's
/// libraries live beside it) unless that parent is `/`, the home directory, or holds a home; any other
/// entry only itself. The home directory itself and `/` never count.
fn toolchain_roots(inputs: &ViewInputs, home: Option<&Path>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut consider = |dir: PathBuf| {
        if !usable_root(&dir)
            || !dir.is_dir()
            || covered(&dir, home)
            || home.is_some_and(|h| h.starts_with(&dir) || dir == h)
            || roots.iter().any(|r| dir.starts_with(r))
        {
            return;
        }
        roots.retain(|r| !r.starts_with(&dir));
        roots.push(dir);
    };
    for entry in inputs.path.as_deref().unwrap_or("").split(':') {
        let dir = PathBuf::from(entry);
        if !usable_root(&dir) {
            continue;
        }
        let is_bin = dir
            .file_name()
            .is_some_and(|n| n == "bin" || n == "sbin" || n == "shims");
        match dir.parent() {
            Some(parent)
                if is_bin
                    && usable_root(parent)
                    && home.is_none_or(|h| parent != h && !h.starts_with(parent)) =>
            {
                consider(parent.to_path_buf())
            }
            _ => consider(dir),
        }
    }
    for (_, value) in &inputs.toolchain_env {
        consider(PathBuf::from(value));
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(home: &Path, path: &str) -> ViewInputs {
        ViewInputs {
            home: Some(home.to_path_buf()),
            path: Some(path.to_string()),
            toolchain_env: Vec::new(),
            read_only: Vec::new(),
            writable: Vec::new(),
            worktree: PathBuf::from("/nonexistent-worktree"),
            tmp_size: 1 << 20,
        }
    }

    fn read_only(mounts: &[Mount]) -> Vec<PathBuf> {
        mounts
            .iter()
            .filter_map(|m| match m {
                Mount::ReadOnly(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn path_entries_bring_their_toolchain_but_never_a_home_or_the_root() {
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("home/u");
        let tool = base.path().join("opt/tool");
        for dir in [
            home.join("bin"),
            home.join("project"),
            tool.join("bin"),
            tool.join("lib"),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let path = format!(
            "{}:{}:{}:/:relative/bin:{}",
            tool.join("bin").display(),
            home.join("bin").display(),
            home.display(),
            home.join("project").display()
        );
        let bound = read_only(&mounts(&inputs(&home, &path)));
        assert!(bound.contains(&tool), "{bound:?}");
        assert!(bound.contains(&home.join("bin")), "{bound:?}");
        assert!(bound.contains(&home.join("project")), "{bound:?}");
        for never in [Path::new("/"), home.as_path(), base.path()] {
            assert!(!bound.iter().any(|b| b == never), "{never:?} in {bound:?}");
        }
        assert!(!bound.iter().any(|b| b.is_relative()));
    }

    #[test]
    fn toolchain_credentials_are_masked_wherever_the_toolchain_lives() {
        let base = tempfile::tempdir().unwrap();
        let cargo_home = base.path().join("cargo");
        std::fs::create_dir_all(cargo_home.join("bin")).unwrap();
        std::fs::write(cargo_home.join("credentials.toml"), "token").unwrap();
        let mut view = inputs(&base.path().join("nohome"), "");
        view.toolchain_env = vec![("CARGO_HOME".into(), cargo_home.display().to_string())];
        let mounts = mounts(&view);
        let bound = mounts
            .iter()
            .position(|m| *m == Mount::ReadOnly(cargo_home.clone()));
        let masked = mounts
            .iter()
            .position(|m| *m == Mount::MaskFile(cargo_home.join("credentials.toml")));
        assert!(bound.is_some() && masked > bound, "{mounts:?}");
    }

    #[test]
    fn only_named_system_directories_are_bound() {
        let base = tempfile::tempdir().unwrap();
        let bound = read_only(&mounts(&inputs(base.path(), "")));
        for path in &bound {
            assert!(
                SYSTEM.iter().any(|s| path.starts_with(s)),
                "{path:?} bound without being asked for"
            );
        }
    }
}
