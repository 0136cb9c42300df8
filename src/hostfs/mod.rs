//! The one door through which host-side code reads and writes the content of a worktree or checkout
//! that the model or a hostile repository could have shaped: tools, patches, the repository map,
//! AGENTS.md, `agent apply`.
//!
//! Paths are resolved beneath the root with `cap-std` (openat2 `RESOLVE_BENEATH` where the kernel has
//! it): absolute links and links that climb out are refused, whatever the path's text says. Links that
//! stay inside still work, except into `.git` (a hook or a config key written there would run on the
//! host the next time git touches the repository); that is checked on the opened descriptor itself,
//! not on the text. Reads open with `O_NONBLOCK`, check that the thing opened is a regular file and
//! read at most a cap, so a FIFO, a device or a sparse giant never blocks or bloats the agent. Writes
//! go to a temporary file in the already-opened parent directory and are renamed into place, so they
//! replace a planted link instead of writing through it.
//!
//! It must never follow a link out of the root, open a non-regular file for reading, or touch `.git`.

mod scrub;

pub use scrub::{scrub, Removed};

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, PermissionsExt};

/// Why a path or a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path itself is not acceptable (absolute, escaping, `.git`, control characters, links out).
    #[error("path {path:?} refused: {reason}")]
    Refused { path: String, reason: String },
    #[error("{path} does not exist")]
    NotFound { path: String },
    #[error("{path} is {kind}, not a regular file; only regular files are read")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is {size} bytes, more than the {cap}-byte limit")]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

impl FsError {
    fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            return Self::NotFound { path: shown(path) };
        }
        // cap-std reports a resolution that would leave the root as a permission error.
        if source.kind() == io::ErrorKind::PermissionDenied
            && source.to_string().contains("outside")
        {
            return Self::Refused {
                path: shown(path),
                reason: "it resolves (through a symlink) to a place outside the repository".into(),
            };
        }
        Self::Io {
            path: shown(path),
            source,
        }
    }
}

fn shown(path: &Path) -> String {
    quote_path(&path.to_string_lossy())
}

/// What a path names, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

/// A directory tree opened as a capability: every operation stays beneath it.
pub struct Beneath {
    dir: Dir,
    /// The root's canonical path, to tell where an opened descriptor really is.
    canonical: PathBuf,
}

impl Beneath {
    pub fn open(root: &Path) -> Result<Self, FsError> {
        let canonical = root.canonicalize().map_err(|e| FsError::io(root, e))?;
        let dir = Dir::open_ambient_dir(&canonical, cap_std::ambient_authority())
            .map_err(|e| FsError::io(root, e))?;
        Ok(Self { dir, canonical })
    }

    /// The root's canonical path.
    pub fn root(&self) -> &Path {
        &self.canonical
    }

    /// What `rel` is (links inside the root followed, the last one too); `None` when nothing is there.
    pub fn kind(&self, rel: &Path) -> Result<Option<Kind>, FsError> {
        match self.dir.metadata(rel) {
            Ok(meta) => Ok(Some(kind_of(&meta.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::io(rel, e)),
        }
    }

    /// The bytes of the regular file `rel`, at most `cap` of them (more is an error, not a truncation).
    pub fn read(&self, rel: &Path, cap: u64) -> Result<Vec<u8>, FsError> {
        let mut options = OpenOptions::new();
        options
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = self
            .dir
            .open_with(rel, &options)
            .map_err(|e| FsError::io(rel, e))?;
        self.refuse_if_in_git(rel, file.as_raw_fd())?;
        let meta = file.metadata().map_err(|e| FsError::io(rel, e))?;
        let kind = kind_of(&meta.file_type());
        if kind != Kind::File {
            return Err(FsError::NotRegular {
                path: shown(rel),
                kind: kind.describe(),
            });
        }
        if meta.len() > cap {
            return Err(FsError::TooLarge {
                path: shown(rel),
                size: meta.len(),
                cap,
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // The file may grow between the check and the read: read one byte past the cap to notice.
        file.into_std()
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FsError::io(rel, e))?;
        if bytes.len() as u64 > cap {
            return Err(FsError::TooLarge {
                path: shown(rel),
                size: bytes.len() as u64,
                cap,
            });
        }
        Ok(bytes)
    }

    /// Like [`Beneath::read`], `None` when the file does not exist.
    pub fn read_if_exists(&self, rel: &Path, cap: u64) -> Result<Option<Vec<u8>>, FsError> {
        match self.read(rel, cap) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(FsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace (or create) `rel` with `bytes`: a temporary file in the parent directory, renamed over
    /// the name, so a link at that name is replaced, never written through. Parent directories are
    /// created; an existing file's permissions are kept.
    pub fn write(&self, rel: &Path, bytes: &[u8]) -> Result<(), FsError> {
        let (parent, name) = self.parent_of(rel, true)?;
        let permissions = parent
            .symlink_metadata(name)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.permissions().mode());
        if parent.symlink_metadata(name).is_ok_and(|m| m.is_dir()) {
            return Err(FsError::Refused {
                path: shown(rel),
                reason: "it is a directory".into(),
            });
        }
        let tmp_name = temp_name(name);
        let mut options = OpenOptions::new();
        options
            .write(true)
            .create_new(true)
            .mode(permissions.unwrap_or(0o644));
        let mut tmp = parent
            .open_with(&tmp_name, &options)
            .map_err(|e| FsError::io(rel, e))?;
        let written = tmp
            .write_all(bytes)
            .and_then(|_| tmp.sync_all())
            .and_then(|_| match permissions {
                // `mode` is filtered by the umask; put an existing file's bits back exactly.
                Some(mode) => tmp.set_permissions(cap_std::fs::Permissions::from_mode(mode)),
                None => Ok(()),
            })
            .and_then(|_| parent.rename(&tmp_name, &parent, name));
        if let Err(e) = written {
            let _ = parent.remove_file(&tmp_name);
            return Err(FsError::io(rel, e));
        }
        Ok(())
    }

    /// Remove the file or link `rel` (never what a link points at).
    pub fn remove_file(&self, rel: &Path) -> Result<(), FsError> {
        let (parent, name) = self.parent_of(rel, false)?;
        parent.remove_file(name).map_err(|e| FsError::io(rel, e))
    }

    /// The opened parent directory of `rel` and its last component; `create` makes missing parents.
    fn parent_of<'p>(&self, rel: &'p Path, create: bool) -> Result<(Dir, &'p OsStr), FsError> {
        let name = rel.file_name().ok_or_else(|| FsError::Refused {
            path: shown(rel),
            reason: "it names no file".into(),
        })?;
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        // One level at a time, each opened directory checked before anything is created in it, so a
        // link into `.git` is refused before a directory could be made there.
        let mut parent = self.dir.try_clone().map_err(|e| FsError::io(rel, e))?;
        for component in parent_rel.components() {
            let part = component.as_os_str();
            let next = match parent.open_dir(part) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    parent.create_dir(part).map_err(|e| FsError::io(rel, e))?;
                    parent.open_dir(part).map_err(|e| FsError::io(rel, e))?
                }
                Err(e) => return Err(FsError::io(rel, e)),
            };
            self.refuse_if_in_git(rel, next.as_raw_fd())?;
            parent = next;
        }
        self.refuse_if_in_git(rel, parent.as_raw_fd())?;
        if is_dot_git(name) {
            return Err(refuse_git(rel));
        }
        Ok((parent, name))
    }

    /// Where the descriptor really is, from the kernel: inside `.git` (reached through a link) is refused.
    fn refuse_if_in_git(&self, rel: &Path, fd: i32) -> Result<(), FsError> {
        let real = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| FsError::Io {
            path: shown(rel),
            source: io::Error::new(
                e.kind(),
                format!("cannot tell where it resolves (/proc is needed): {e}"),
            ),
        })?;
        let inside = real
            .strip_prefix(&self.canonical)
            .map_err(|_| FsError::Refused {
                path: shown(rel),
                reason: "it resolves to a place outside the repository".into(),
            })?;
        if inside.components().any(|c| is_dot_git(c.as_os_str())) {
            return Err(refuse_git(rel));
        }
        Ok(())
    }
}

fn refuse_git(rel: &Path) -> FsError {
    FsError::Refused {
        path: shown(rel),
        reason: "it leads into a .git directory, which is managed by the agent, not by tools"
            .into(),
    }
}

fn temp_name(name: &OsStr) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem: String = name.to_string_lossy().chars().take(40).collect();
    PathBuf::from(format!(".{stem}.agent-tmp-{}-{n}", std::process::id()))
}

fn kind_of(file_type: &cap_std::fs::FileType) -> Kind {
    if file_type.is_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Special
    }
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Special => "a FIFO, socket or device",
        }
    }
}

/// Check a path a model or a patch gave, by its text alone, and return it relative to the root:
/// no NUL or control characters, not absolute, no `..` that climbs out, no `.git` component (in any
/// spelling a case-insensitive or Unicode-folding filesystem would treat as `.git`).
pub fn relative(raw: &str) -> Result<PathBuf, FsError> {
    let refuse = |reason: &str| FsError::Refused {
        path: quote_path(raw),
        reason: reason.into(),
    };
    if raw.is_empty() {
        return Err(refuse("it is empty"));
    }
    if raw.chars().any(char::is_control) {
        return Err(refuse(
            "it contains a control character (newline, tab, escape or NUL); file names must be printable",
        ));
    }
    let path = Path::new(raw);
    if path.is_absolute() {
        return Err(refuse(
            "absolute paths are not allowed; give a path relative to the repository root",
        ));
    }
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                if is_dot_git(part) {
                    return Err(refuse(
                        "the .git directory is managed by the agent, not by tools",
                    ));
                }
                relative.push(part)
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if !relative.pop() {
                    return Err(refuse("it leads outside the repository"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("absolute paths are not allowed"))
            }
        }
    }
    Ok(relative)
}

/// Would some filesystem (Linux, case-insensitive ext4/APFS/NTFS, HFS+ with its ignored code points)
/// treat this name as `.git`? Git itself refuses these names in trees for the same reason.
pub fn is_dot_git(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    // HFS+ ignores these code points when comparing names.
    let folded: String = name
        .chars()
        .filter(|c| {
            !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}')
        })
        .collect::<String>()
        .to_lowercase();
    // NTFS drops trailing dots and spaces, and knows the 8.3 short name.
    let trimmed = folded.trim_end_matches(['.', ' ']);
    trimmed == ".git" || trimmed == "git~1"
}

/// A path as git shows an unusual one: in double quotes with C escapes when it holds control
/// characters, quotes, backslashes or non-printable bytes; unchanged otherwise.
pub fn quote_path(path: &str) -> String {
    if !path
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return path.to_string();
    }
    let mut out = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn dot_git_in_every_spelling() {
        for name in [
            ".git",
            ".GIT",
            ".Git",
            ".git.",
            ".git ",
            "git~1",
            ".g\u{200C}it",
        ] {
            assert!(is_dot_git(OsStr::new(name)), "{name:?}");
        }
        for name in [".github", "git", ".gitignore", "x.git"] {
            assert!(!is_dot_git(OsStr::new(name)), "{name:?}");
        }
    }

    #[test]
    fn relative_refuses_by_text() {
        for raw in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            ".git/config",
            "sub/.GIT/hooks/pre-commit",
            "a\nb",
            "a\u{1b}[2Jb",
            "",
        ] {
            assert!(relative(raw).is_err(), "{raw:?} was allowed");
        }
        assert_eq!(relative("./a/../b/c").unwrap(), PathBuf::from("b/c"));
    }

    #[test]
    fn links_out_and_into_git_are_refused_links_inside_work() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "x").unwrap();
        std::fs::write(dir.path().join("outside"), "secret").unwrap();
        symlink(dir.path(), root.join("up")).unwrap();
        symlink("../outside", root.join("rel-out")).unwrap();
        symlink(".git", root.join("g")).unwrap();
        symlink("src", root.join("alias")).unwrap();
        let fs = Beneath::open(&root).unwrap();
        assert!(matches!(
            fs.read(Path::new("up/outside"), 100),
            Err(FsError::Refused { .. })
        ));
        assert!(matches!(
            fs.read(Path::new("rel-out"), 100),
            Err(FsError::Refused { .. })
        ));
        assert!(fs.write(Path::new("g/hooks/pre-commit"), b"x").is_err());
        assert!(!root.join(".git/hooks/pre-commit").exists());
        assert!(fs.write(Path::new("up/planted"), b"x").is_err());
        assert!(!dir.path().join("planted").exists());
        assert_eq!(fs.read(Path::new("alias/lib.rs"), 100).unwrap(), b"x");
        fs.write(Path::new("alias/new.rs"), b"y").unwrap();
        assert_eq!(std::fs::read(root.join("src/new.rs")).unwrap(), b"y");
    }

    #[test]
    fn writes_replace_links_and_keep_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // A link at the very name written: it is replaced, the target stays.
        std::fs::write(root.join("inside"), "in").unwrap();
        symlink("inside", root.join("link")).unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let fs = Beneath::open(&root).unwrap();
        fs.write(Path::new("link"), b"new").unwrap();
        assert_eq!(std::fs::read(root.join("inside")).unwrap(), b"in");
        assert!(!root.join("link").is_symlink());
        fs.write(Path::new("run.sh"), b"#!/bin/sh\necho\n").unwrap();
        let mode = std::fs::metadata(root.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn fifos_and_giants_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let big = std::fs::File::create(dir.path().join("big")).unwrap();
        big.set_len(1 << 30).unwrap();
        let fs = Beneath::open(dir.path()).unwrap();
        assert!(matches!(
            fs.read(Path::new("pipe"), 100),
            Err(FsError::NotRegular { .. })
        ));
        assert!(matches!(
            fs.read(Path::new("big"), 1 << 20),
            Err(FsError::TooLarge { .. })
        ));
    }

    #[test]
    fn odd_names_are_quoted_like_git() {
        assert_eq!(quote_path("src/lib.rs"), "src/lib.rs");
        assert_eq!(quote_path("a\nb"), "\"a\\nb\"");
        assert_eq!(quote_path("x\u{1b}y"), "\"x\\033y\"");
    }
}
