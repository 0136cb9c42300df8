//! A `git apply`-compatible unified diff of file changes, via `similar`: what a dry run prints, what a
//! saved patch file holds, and what the terminal reporter colours.

use similar::TextDiff;

use super::FileChange;

/// The unified diff of `changes` (three lines of context, git's headers), which `git apply` reads.
pub fn patch_text(changes: &[FileChange]) -> String {
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
        out.push_str(&format!("diff --git {} {}\n", quoted("a/"), quoted("b/")));
        let diff = TextDiff::from_lines(old.as_deref().unwrap_or(""), new.as_deref().unwrap_or(""));
        let mut unified = diff.unified_diff();
        let body = unified
            .context_radius(3)
            .header(&old_name, &new_name)
            .missing_newline_hint(true)
            .to_string();
        out.push_str(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_style_headers_and_hunks() {
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
        let text = patch_text(&changes);
        assert!(
            text.starts_with("diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n"),
            "{text}"
        );
        assert!(text.contains("--- /dev/null\n+++ b/new.txt\n"), "{text}");
    }

    #[test]
    fn odd_names_are_quoted_so_they_cannot_forge_headers() {
        let changes = vec![FileChange {
            path: "x\n+++ b/evil".into(),
            old: None,
            new: Some(b"hi\n".to_vec()),
        }];
        let text = patch_text(&changes);
        assert!(text.contains("+++ \"b/x\\n+++ b/evil\"\n"), "{text}");
        assert_eq!(text.matches("\n+++ ").count(), 1, "{text}");
    }
}
