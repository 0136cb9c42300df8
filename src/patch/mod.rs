//! The edit engine: parse the diffs models write, locate every hunk, and apply them to files
//! all-or-nothing.
//!
//! Three formats are understood ([`parse_any`] picks one): the `*** Begin Patch` envelope, unified
//! diffs, and SEARCH/REPLACE blocks. Parsing and matching are pure functions over text; [`plan`]
//! computes every file's new content before anything is written, and [`write_all_or_nothing`] is the
//! only place that touches the disk. Line numbers are hints: hunks are located by content through
//! increasingly tolerant levels (see `matcher`), and a hunk that matches in more than one place at the
//! first level that matches is refused rather than guessed. This module knows nothing about worktrees:
//! callers resolve (and confine) paths.

mod envelope;
pub mod headerless;
pub mod listing;
mod matcher;
mod normalize;
mod search_replace;
mod unified;

use std::path::{Path, PathBuf};

pub use matcher::{apply_hunks, apply_hunks_noted, Applied};
pub use normalize::Level;

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Unchanged; must be found in the file, and the file's own text is kept.
    Context(String),
    Remove(String),
    Add(String),
}

/// One hunk: lines to find (context and removed) and what replaces them (context and added).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hunk {
    /// The 1-based old start line from a unified `@@ -N` header. A hint only.
    pub old_start: Option<usize>,
    /// Envelope `@@ text`: the hunk lies after the first line matching this text.
    pub anchor: Option<String>,
    pub lines: Vec<Line>,
    /// From a unified diff's `\ No newline at end of file`: whether the new file ends with a newline.
    /// `None` keeps the file's own final-newline state.
    pub new_final_newline: Option<bool>,
    /// Envelope `*** End of File`: the hunk ends where the file ends (an addition goes at the end).
    pub at_eof: bool,
    /// SEARCH/REPLACE with `...` elision lines at the same places on both sides: the pieces between
    /// them, each its own hunk, tried in order when the whole block does not match.
    pub elided: Vec<Hunk>,
}

impl Hunk {
    /// The lines the file must contain: context and removed lines.
    pub fn old(&self) -> Vec<&str> {
        self.side(|l| !matches!(l, Line::Add(_)))
    }

    /// The lines after the change, as written in the patch.
    pub fn new_lines(&self) -> Vec<&str> {
        self.side(|l| !matches!(l, Line::Remove(_)))
    }

    fn side(&self, keep: impl Fn(&Line) -> bool) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| keep(l))
            .map(|l| match l {
                Line::Context(s) | Line::Remove(s) | Line::Add(s) => s.as_str(),
            })
            .collect()
    }

    /// A hunk from before/after text without markers (SEARCH/REPLACE): the lines both sides share
    /// become context, so the file's own version of them is kept.
    pub fn from_old_new(old: &[String], new: &[String]) -> Self {
        let diff = similar::capture_diff_slices(similar::Algorithm::Myers, old, new);
        let mut lines = Vec::new();
        for op in diff {
            for change in op.iter_changes(old, new) {
                let text = change.value().clone();
                lines.push(match change.tag() {
                    similar::ChangeTag::Equal => Line::Context(text),
                    similar::ChangeTag::Delete => Line::Remove(text),
                    similar::ChangeTag::Insert => Line::Add(text),
                });
            }
        }
        Self {
            lines,
            ..Self::default()
        }
    }
}

/// The change to one file. `old_path` is `None` for a new file, `new_path` is `None` for a deletion;
/// different paths mean a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub hunks: Vec<Hunk>,
    /// Hunks appear in file order (diffs) rather than each anywhere in the file (SEARCH/REPLACE).
    pub ordered: bool,
}

/// Which format a patch was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Envelope,
    Unified,
    SearchReplace,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch holds no file changes; write a unified diff (`--- a/PATH`, `+++ b/PATH`, `@@` hunks), a `*** Begin Patch` envelope, or SEARCH/REPLACE blocks")]
    Empty,
    #[error("line {line} of the patch: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("hunk {hunk} of {path} did not match: {detail}")]
    NoMatch {
        path: String,
        hunk: usize,
        detail: String,
    },
    #[error("hunk {hunk} of {path} matches in {count} places (lines {lines}); add context lines that tell them apart so it matches once:\n{excerpts}")]
    Ambiguous {
        path: String,
        hunk: usize,
        count: usize,
        lines: String,
        /// Each place with a few lines around it, numbered.
        excerpts: String,
    },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// The caller's path resolver refused a path (e.g. it leaves the repository).
    #[error("{0}")]
    Refused(String),
}

/// Detect the format of `text` and parse it.
pub fn parse_any(text: &str) -> Result<(Format, Vec<FilePatch>), PatchError> {
    // A patch written with lone `\r` line ends (old Mac files) reads like any other.
    let text: std::borrow::Cow<'_, str> = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        text.into()
    };
    let text = text.as_ref();
    let trimmed = text.lines().map(str::trim);
    let mut format = Format::Unified;
    for line in trimmed {
        if line == "*** Begin Patch" || envelope::is_file_marker(line) {
            format = Format::Envelope;
            break;
        }
        if search_replace::is_search_marker(line) {
            format = Format::SearchReplace;
            break;
        }
    }
    if format == Format::Envelope && is_wrapped_unified_diff(text) {
        // A unified diff inside the envelope's Begin/End lines, with no `*** Update File:` section:
        // what Qwen2.5-Coder writes for `apply_patch`. The wrapper carries nothing; drop it.
        let inner: String = text
            .lines()
            .filter(|l| !matches!(l.trim(), "*** Begin Patch" | "*** End Patch"))
            .map(|l| format!("{l}\n"))
            .collect();
        return Ok((Format::Unified, unified::parse(&inner)?));
    }
    let files = match format {
        Format::Envelope => envelope::parse(text)?,
        Format::Unified => unified::parse(text)?,
        Format::SearchReplace => search_replace::parse(text)?,
    };
    Ok((format, files))
}

/// `*** Begin Patch` with unified-diff file headers inside and no envelope file section.
fn is_wrapped_unified_diff(text: &str) -> bool {
    let lines = || text.lines().map(str::trim);
    !lines().any(envelope::is_file_marker)
        && lines().any(|l| l.starts_with("--- "))
        && lines().any(|l| l.starts_with("+++ "))
        && lines().any(|l| l.starts_with("@@"))
}

/// One file's outcome: its new content, or `None` to delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub path: PathBuf,
    /// The path as the patch named it.
    pub shown: String,
    pub content: Option<Vec<u8>>,
    pub action: &'static str,
    /// Choices the engine made that the caller should pass on (e.g. "added at the end of the file").
    pub notes: Vec<String>,
}

impl PlannedChange {
    /// `patched src/lib.rs`, with the engine's notes after it.
    pub fn describe(&self) -> String {
        self.describe_with(" ")
    }

    /// As [`describe`](Self::describe), with `separator` between the action and the path.
    pub fn describe_with(&self, separator: &str) -> String {
        let mut text = format!("{}{separator}{}", self.action, self.shown);
        for note in &self.notes {
            text.push_str(&format!(" ({note})"));
        }
        text
    }
}

/// Largest file a patch edits.
pub const MAX_PATCHED_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Where a patch's files are: the caller decides how a patch path is confined and how files are read
/// and written ([`crate::hostfs::Beneath`] for every real tree).
pub trait Files {
    /// Turn a path named in the patch into the key `read`/`write`/`remove` take (or refuse it).
    fn resolve(&self, patch_path: &str) -> Result<PathBuf, PatchError>;
    /// The file's bytes, `None` when it does not exist.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, String>;
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
    fn remove(&self, path: &Path) -> std::io::Result<()>;
}

impl Files for crate::hostfs::Beneath {
    fn resolve(&self, patch_path: &str) -> Result<PathBuf, PatchError> {
        crate::hostfs::relative(patch_path).map_err(|e| PatchError::Refused(e.to_string()))
    }
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
        self.read_if_exists(path, MAX_PATCHED_FILE_BYTES)
            .map_err(|e| e.to_string())
    }
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        crate::hostfs::Beneath::write(self, path, bytes).map_err(std::io::Error::other)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.remove_file(path).map_err(std::io::Error::other)
    }
}

/// Compute every file's new content without writing anything.
pub fn plan(files: &[FilePatch], fs: &dyn Files) -> Result<Vec<PlannedChange>, PatchError> {
    let resolve = |p: &str| fs.resolve(p);
    let mut changes: Vec<PlannedChange> = Vec::new();
    // Later patches of the same file (a model may split one file's hunks) see earlier results.
    let current = |changes: &[PlannedChange], path: &Path| -> Option<Option<Vec<u8>>> {
        changes
            .iter()
            .rev()
            .find(|c| c.path == path)
            .map(|c| c.content.clone())
    };
    for file in files {
        let old = file
            .old_path
            .as_deref()
            .map(|p| resolve(p).map(|full| (p, full)))
            .transpose()?;
        let new = file
            .new_path
            .as_deref()
            .map(|p| resolve(p).map(|full| (p, full)))
            .transpose()?;
        let read = |shown: &str, full: &Path| -> Result<Option<String>, PatchError> {
            let bytes = match current(&changes, full) {
                Some(content) => content,
                None => fs.read(full).map_err(|e| PatchError::File {
                    path: shown.into(),
                    reason: format!("cannot read it: {e}"),
                })?,
            };
            bytes
                .map(|b| {
                    String::from_utf8(b).map_err(|_| PatchError::File {
                        path: shown.into(),
                        reason: "is not UTF-8 text; patches only edit text files".into(),
                    })
                })
                .transpose()
        };
        let creates = file.hunks.iter().all(|h| h.old().is_empty());
        match (&old, &new) {
            (None, None) => {
                return Err(PatchError::Syntax {
                    line: 1,
                    reason: "a file header names /dev/null on both sides".into(),
                })
            }
            (Some((shown, full)), None) => {
                if read(shown, full)?.is_none() {
                    return Err(PatchError::File {
                        path: shown.to_string(),
                        reason: "cannot be deleted: it does not exist".into(),
                    });
                }
                changes.push(PlannedChange {
                    path: full.clone(),
                    shown: shown.to_string(),
                    content: None,
                    action: "deleted",
                    notes: Vec::new(),
                });
            }
            (old, Some((shown, full))) => {
                let source = match old {
                    Some((old_shown, old_full)) => read(old_shown, old_full)?,
                    None => None,
                };
                let mut notes = Vec::new();
                let mut action = if old.is_some() && !creates {
                    "patched"
                } else {
                    "created"
                };
                let content = match (source, old.is_some()) {
                    (Some(text), _) => {
                        let applied =
                            apply_hunks_noted(shown, &text, &file.hunks, file.ordered)?;
                        notes = applied.notes;
                        if applied.text == text {
                            action = "unchanged";
                        }
                        applied.text
                    }
                    (None, true) if !creates => {
                        return Err(PatchError::File {
                            path: old.as_ref().map_or("", |o| o.0).to_string(),
                            reason: "does not exist; to create a file, add it (`--- /dev/null`, `*** Add File:`, or an empty SEARCH)".into(),
                        })
                    }
                    (None, _) => match (old.is_none(), read(shown, full)?) {
                        (true, Some(existing)) => {
                            let replaced = add_over_existing(shown, &existing, &file.hunks)?;
                            action = if replaced == existing {
                                "unchanged"
                            } else {
                                "replaced"
                            };
                            replaced
                        }
                        _ if !creates => {
                            return Err(PatchError::File {
                                path: shown.to_string(),
                                reason: "does not exist, yet the patch creates it (`--- /dev/null`) with lines to remove; a new file's hunk has only `+` lines".into(),
                            })
                        }
                        _ => apply_hunks(shown, "", &file.hunks, file.ordered)?,
                    },
                };
                if let Some((old_shown, old_full)) = old.as_ref().filter(|(_, f)| f != full) {
                    let target_exists = match current(&changes, full) {
                        Some(planned) => planned.is_some(),
                        None => read(shown, full)?.is_some(),
                    };
                    if target_exists {
                        return Err(PatchError::File {
                            path: shown.to_string(),
                            reason: format!("already exists, so moving {old_shown} here would overwrite it; delete it first (`*** Delete File:`) or move elsewhere"),
                        });
                    }
                    changes.push(PlannedChange {
                        path: old_full.clone(),
                        shown: old_shown.to_string(),
                        content: None,
                        action: "moved away",
                        notes: Vec::new(),
                    });
                    action = "moved here";
                }
                changes.push(PlannedChange {
                    path: full.clone(),
                    shown: shown.to_string(),
                    content: Some(content.into_bytes()),
                    action,
                    notes,
                });
            }
        }
    }
    Ok(changes)
}

/// A patch that adds a file which already exists (`*** Add File:`, `--- /dev/null`). Policy: when
/// its new content is the file's content, nothing changes; when its removed lines are the whole
/// file (a `--- /dev/null` diff that replaces everything), it is a whole-file replacement; anything
/// else is refused, since it would silently throw away the file's current text.
fn add_over_existing(shown: &str, existing: &str, hunks: &[Hunk]) -> Result<String, PatchError> {
    let new: Vec<&str> = hunks.iter().flat_map(|h| h.new_lines()).collect();
    let old: Vec<&str> = hunks.iter().flat_map(|h| h.old()).collect();
    let lines: Vec<&str> = existing.lines().map(|l| l.trim_end_matches('\r')).collect();
    let same = |a: &[&str]| {
        a.len() == lines.len()
            && a.iter()
                .zip(&lines)
                .all(|(x, y)| x.trim_end() == y.trim_end())
    };
    if same(&new) && old.is_empty() {
        return Ok(existing.to_string());
    }
    if !old.is_empty() && same(&old) {
        return apply_hunks(shown, existing, hunks, true);
    }
    Err(PatchError::File {
        path: shown.to_string(),
        reason: format!(
            "already exists ({} lines) and the patch adds it as a new file; edit it with a hunk of its own lines (`*** Update File:`, `--- a/{shown}`), or delete it first",
            lines.len()
        ),
    })
}

/// Apply every change (`None` deletes) or none: on a failed write, files already written are restored.
pub fn write_all_or_nothing(
    fs: &dyn Files,
    changes: &[(PathBuf, Option<Vec<u8>>)],
) -> std::io::Result<()> {
    let originals: Vec<Option<Vec<u8>>> = changes
        .iter()
        .map(|(p, _)| fs.read(p).ok().flatten())
        .collect();
    for (done, (path, content)) in changes.iter().enumerate() {
        let result = match content {
            Some(bytes) => fs.write(path, bytes),
            None => fs.remove(path),
        };
        if let Err(e) = result {
            for ((path, _), original) in changes[..done].iter().zip(&originals) {
                let _ = match original {
                    Some(bytes) => fs.write(path, bytes),
                    None => fs.remove(path),
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
        let fs = crate::hostfs::Beneath::open(dir.path()).unwrap();
        let changes = vec![
            (PathBuf::from("a.txt"), Some(b"new".to_vec())),
            (PathBuf::from("missing"), None),
        ];
        assert!(write_all_or_nothing(&fs, &changes).is_err());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");
    }

    #[test]
    fn a_unified_diff_inside_envelope_lines_is_read_as_the_diff() {
        // What Qwen2.5-Coder-1.5B sent as `apply_patch` for a one-token bug in triangle.py.
        let text = "*** Begin Patch\n--- triangle.py\n+++ triangle.py\n@@ -11,3 +11,3 @@\n def equilateral(sides):\n-    return valid(sides) or any(\n+    return valid(sides) and any(\n         x\n*** End Patch\n";
        let (format, files) = parse_any(text).unwrap();
        assert_eq!(format, Format::Unified);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].new_path.as_deref(), Some("triangle.py"));
        let lines: Vec<String> = files[0].hunks[0]
            .lines
            .iter()
            .map(|l| format!("{l:?}"))
            .collect();
        assert!(!lines.iter().any(|l| l.contains("End Patch")), "{lines:?}");
        // A real envelope still parses as one.
        let envelope = "*** Begin Patch\n*** Update File: a.py\n@@\n-x\n+y\n*** End Patch\n";
        assert_eq!(parse_any(envelope).unwrap().0, Format::Envelope);
    }
}
