//! The edit engine: parse the diffs models write and apply them to files all-or-nothing.
//!
//! Parsing ([`parse`]) and matching ([`apply_hunks`]) are pure functions over text; [`write_all_or_nothing`]
//! is the only place that touches the disk. Line numbers in a diff are hints: hunks are located by their
//! content, after the previous hunk, and a hunk that matches in more than one place is refused rather
//! than guessed. This module knows nothing about worktrees or confinement: callers resolve paths first.

mod matcher;
mod unified;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use matcher::apply_hunks;
pub use unified::parse;

/// One hunk: the lines it expects (`old`) and the lines that replace them (`new`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hunk {
    /// The 1-based old start line from the `@@` header, if any. A hint only.
    pub old_start: Option<usize>,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

/// The change to one file. `old_path` is `None` for a new file, `new_path` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub hunks: Vec<Hunk>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch holds no file changes; write a unified diff with `--- a/PATH`, `+++ b/PATH` and `@@` hunks")]
    Empty,
    #[error("line {line} of the patch: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("hunk {hunk} of {path} did not match: {detail}")]
    NoMatch {
        path: String,
        hunk: usize,
        detail: String,
    },
    #[error("hunk {hunk} of {path} matches in {count} places (lines {lines}); add more context lines so it matches once")]
    Ambiguous {
        path: String,
        hunk: usize,
        count: usize,
        lines: String,
    },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// Write `bytes` to `path` through a temporary file and a rename, so readers never see half a file.
/// Keeps an existing file's permissions; creates parent directories.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if let Some(permissions) = permissions {
        tmp.as_file().set_permissions(permissions)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Apply every change (`None` deletes) or none: on a failed write, files already written are restored.
pub fn write_all_or_nothing(changes: &[(PathBuf, Option<Vec<u8>>)]) -> std::io::Result<()> {
    let originals: Vec<Option<Vec<u8>>> =
        changes.iter().map(|(p, _)| std::fs::read(p).ok()).collect();
    for (done, (path, content)) in changes.iter().enumerate() {
        let result = match content {
            Some(bytes) => write_atomically(path, bytes),
            None => std::fs::remove_file(path),
        };
        if let Err(e) = result {
            for ((path, _), original) in changes[..done].iter().zip(&originals) {
                let _ = match original {
                    Some(bytes) => write_atomically(path, bytes),
                    None => std::fs::remove_file(path),
                };
            }
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_nothing_restores_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "old").unwrap();
        // Deleting a file that does not exist fails after `a` was written.
        let changes = vec![
            (a.clone(), Some(b"new".to_vec())),
            (dir.path().join("missing"), None),
        ];
        assert!(write_all_or_nothing(&changes).is_err());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");
    }

    #[test]
    fn write_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_atomically(&script, b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(
            std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
}
