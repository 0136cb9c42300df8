//! Unified diffs of file changes, plain (for patch files) or coloured (for terminals), via `similar`.

use console::Style;
use similar::{ChangeTag, TextDiff};

use crate::vcs::FileChange;

/// A unified diff of `changes`, `git apply`-compatible when `color` is false.
pub fn render(changes: &[FileChange], color: bool) -> String {
    let mut out = String::new();
    for change in changes {
        let old = change.old.as_deref().map(String::from_utf8_lossy);
        let new = change.new.as_deref().map(String::from_utf8_lossy);
        // A name with a newline would forge header lines: quote odd names the way git does (and
        // `git apply` reads them back).
        let quoted = |prefix: &str| crate::hostfs::quote_path(&format!("{prefix}{}", change.path));
        let old_name = if old.is_some() {
            quoted("a/")
        } else {
            "/dev/null".into()
        };
        let new_name = if new.is_some() {
            quoted("b/")
        } else {
            "/dev/null".into()
        };
        let header = format!("diff --git {} {}\n", quoted("a/"), quoted("b/"));
        let old_text = old.as_deref().unwrap_or("");
        let new_text = new.as_deref().unwrap_or("");
        let diff = TextDiff::from_lines(old_text, new_text);
        let mut unified = diff.unified_diff();
        let body = unified
            .context_radius(3)
            .header(&old_name, &new_name)
            .missing_newline_hint(true)
            .to_string();
        if !color {
            out.push_str(&header);
            out.push_str(&body);
            continue;
        }
        out.push_str(&Style::new().bold().apply_to(header).to_string());
        // Coloured output is for a terminal: the file's own bytes must not steer it.
        let body = crate::report::terminal_safe(&body);
        for line in body.lines() {
            let styled = if line.starts_with("+++") || line.starts_with("---") {
                Style::new().bold().apply_to(line)
            } else if line.starts_with("@@") {
                Style::new().cyan().apply_to(line)
            } else if line.starts_with('+') {
                Style::new().green().apply_to(line)
            } else if line.starts_with('-') {
                Style::new().red().apply_to(line)
            } else {
                Style::new().apply_to(line)
            };
            out.push_str(&styled.force_styling(true).to_string());
            out.push('\n');
        }
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

    #[test]
    fn renders_git_style_diff_and_stat() {
        let changes = vec![
            FileChange {
                path: "a.txt".into(),
                old: Some(b"one\ntwo\n".to_vec()),
                new: Some(b"one\n2\n".to_vec()),
            },
            FileChange {
                path: "new.txt".into(),
                old: None,
                new: Some(b"hi\n".to_vec()),
            },
        ];
        let plain = render(&changes, false);
        assert!(
            plain.contains("--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n"),
            "{plain}"
        );
        assert!(plain.contains("--- /dev/null\n+++ b/new.txt\n"), "{plain}");
        assert!(render(&changes, true).contains("\u{1b}["));
        assert_eq!(stat(&changes), "2 files changed, +2 -1");
    }

    #[test]
    fn odd_names_are_quoted_and_escapes_never_reach_a_terminal() {
        let changes = vec![FileChange {
            path: "x\n+++ b/evil".into(),
            old: None,
            new: Some(b"\x1b]52;c;aGk=\x07hi\n".to_vec()),
        }];
        let plain = render(&changes, false);
        assert!(plain.contains("+++ \"b/x\\n+++ b/evil\"\n"), "{plain}");
        assert_eq!(plain.matches("\n+++ ").count(), 1, "{plain}");
        let coloured = render(&changes, true);
        assert!(
            !coloured.contains('\x07') && !coloured.contains("\x1b]"),
            "{coloured:?}"
        );
    }
}
