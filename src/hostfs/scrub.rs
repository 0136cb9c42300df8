//! Removing from a worktree what host-side readers would trip over before they look at it: git
//! (libgit2), the `.gitignore` walkers and the tools open files implicitly (ignore and attribute files
//! in every directory they enter), with plain `open(2)`. A FIFO there blocks them forever, a link to
//! `/dev/zero` or a sparse giant exhausts memory, and a nested `.git` (a directory, or a file saying
//! `gitdir: /elsewhere`) makes git read another repository. Commands in the sandbox can make all of
//! these; git never checks out any but links, so the worktree is scrubbed after checkout and before
//! every snapshot.

use std::io;
use std::path::{Path, PathBuf};

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;

/// Files that walkers and git read without being asked to.
const IMPLICIT_FILES: &[&str] = &[
    ".gitignore",
    ".ignore",
    ".rgignore",
    ".gitattributes",
    ".gitmodules",
];
/// An implicit file bigger than this is removed rather than read.
const MAX_IMPLICIT_BYTES: u64 = 1024 * 1024;
/// Entries visited at most (a pathological tree is not walked forever).
const MAX_ENTRIES: usize = 2_000_000;

/// What was removed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub path: String,
    pub why: &'static str,
}

/// Remove special files, nested `.git` entries, and implicit files that are links or too big, anywhere
/// below `root` (its own `.git` excepted). Links are never followed.
pub fn scrub(root: &Path) -> io::Result<Vec<Removed>> {
    let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
    let mut removed = Vec::new();
    let mut budget = MAX_ENTRIES;
    walk(&dir, &PathBuf::new(), &mut removed, &mut budget)?;
    Ok(removed)
}

fn walk(dir: &Dir, at: &Path, removed: &mut Vec<Removed>, budget: &mut usize) -> io::Result<()> {
    for entry in dir.entries()? {
        if *budget == 0 {
            return Ok(());
        }
        *budget -= 1;
        let entry = entry?;
        let name = entry.file_name();
        let rel = at.join(&name);
        let kind = entry.file_type()?;
        let top_level_git = at.as_os_str().is_empty() && name == ".git";
        if top_level_git {
            continue;
        }
        let shown = || super::quote_path(&rel.to_string_lossy());
        let why = if super::is_dot_git(&name) {
            Some("a nested .git makes git read another repository")
        } else if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            Some("a FIFO, socket or device would block or mislead the agent's readers")
        } else if IMPLICIT_FILES.iter().any(|f| name == *f) {
            if kind.is_symlink() {
                Some("git and the file walkers would follow this link")
            } else if kind.is_file() && entry.metadata()?.len() > MAX_IMPLICIT_BYTES {
                Some("over 1 MiB: git and the file walkers read it whole")
            } else {
                None
            }
        } else {
            None
        };
        match why {
            Some(why) => {
                if kind.is_dir() {
                    dir.remove_dir_all(&name)?;
                } else {
                    dir.remove_file_or_symlink(&name)?;
                }
                removed.push(Removed { path: shown(), why });
            }
            None if kind.is_dir() => {
                let sub = dir.open_dir_nofollow(&name)?;
                walk(&sub, &rel, removed, budget)?;
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_what_would_block_or_mislead_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::create_dir_all(root.join("vendored/.git")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "fn f() {}").unwrap();
        std::fs::write(root.join("src/.gitignore"), "target\n").unwrap();
        std::fs::write(root.join("sub.git"), "").unwrap();
        std::fs::write(root.join("src/deep/.git"), "gitdir: /elsewhere\n").unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join(".gitignore")).unwrap();
        std::os::unix::fs::symlink("lib.rs", root.join("src/alias.rs")).unwrap();
        let fifo =
            std::ffi::CString::new(root.join("src/pipe").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let big = std::fs::File::create(root.join("src/deep/.gitattributes")).unwrap();
        big.set_len(10 << 20).unwrap();
        let mut removed: Vec<String> = scrub(root).unwrap().into_iter().map(|r| r.path).collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                ".gitignore",
                "src/deep/.git",
                "src/deep/.gitattributes",
                "src/pipe",
                "vendored/.git"
            ]
        );
        assert!(root.join(".git/objects").is_dir());
        assert!(root.join("src/.gitignore").is_file());
        assert!(root.join("src/alias.rs").is_symlink());
        assert!(root.join("sub.git").is_file());
    }
}
