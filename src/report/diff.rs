//! Diffs of file changes for people: the `git apply` text from `vcs`, coloured for terminals, and a
//! one-line summary of its size.

use console::Style;
use similar::{ChangeTag, TextDiff};

use crate::vcs::{patch_text, FileChange};

/// A unified diff of `changes`: exactly [`patch_text`] (`git apply`-compatible) when `color` is
/// false; for a terminal, the same lines coloured, with the files' own control bytes made harmless.
pub fn render(changes: &[FileChange], color: bool) -> String {
    let text = patch_text(changes);
    if !color {
        return text;
    }
    // Coloured output is for a terminal: the file's own bytes must not steer it.
    let text = crate::report::terminal_safe(&text);
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let style = if line.starts_with("diff --git ")
            || line.starts_with("+++")
            || line.starts_with("---")
        {
            Style::new().bold()
        } else if line.starts_with("@@") {
            Style::new().cyan()
        } else if line.starts_with('+') {
            Style::new().green()
        } else if line.starts_with('-') {
            Style::new().red()
        } else {
            Style::new()
        };
        out.push_str(&style.apply_to(line).force_styling(true).to_string());
        out.push('\n');
    }
    out
}

/// `N files changed, +A -D`.
pub fn stat(changes: &[FileChange]) -> String {
    let (mut added, mut removed) = (0, 0);
    for change in changes {
        let old = String::from_utf8_lossy(change.old.as_deref().unwrap_or_default()).into_owned();
        let new = String::from_utf8_lossy(change.new.as_deref().unwrap_or_default()).into_owned();
        for op in TextDiff::from_lines(&old, &new).iter_all_changes() {
            match op.tag() {
                ChangeTag::Insert => added += 1,
                ChangeTag::Delete => removed += 1,
                ChangeTag::Equal => {}
            }
        }
    }
    let files = changes.len();
    format!(
        "{files} file{} changed, +{added} -{removed}",
        if files == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, old: Option<&[u8]>, new: &[u8]) -> FileChange {
        FileChange {
            path: path.into(),
            old: old.map(<[u8]>::to_vec),
            new: Some(new.to_vec()),
        }
    }

    #[test]
    fn plain_is_the_git_text_and_colour_only_adds_styles() {
        let changes = vec![
            change("a.txt", Some(b"one\ntwo\n"), b"one\n2\n"),
            change("new.txt", None, b"hi\n"),
        ];
        assert_eq!(render(&changes, false), patch_text(&changes));
        let coloured = render(&changes, true);
        assert!(coloured.contains("\u{1b}[32m+2\u{1b}[0m"), "{coloured:?}");
        assert_eq!(console::strip_ansi_codes(&coloured), patch_text(&changes));
        assert_eq!(stat(&changes), "2 files changed, +2 -1");
    }

    #[test]
    fn escapes_in_a_file_never_reach_a_terminal() {
        let changes = vec![change("x", None, b"\x1b]52;c;aGk=\x07hi\n")];
        let coloured = render(&changes, true);
        assert!(
            !coloured.contains('\x07') && !coloured.contains("\x1b]"),
            "{coloured:?}"
        );
    }
}
