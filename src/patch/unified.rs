//! Parser for unified diffs as models write them: optional code fences and `diff --git`/`index` lines,
//! `--- a/PATH` / `+++ b/PATH` headers, `@@ -a,b +c,d @@` hunk headers whose numbers may be wrong or
//! missing, and blank lines standing for blank context lines.

use super::{FilePatch, Hunk, Line, PatchError};

/// Parse `text` into per-file patches.
pub fn parse(text: &str) -> Result<Vec<FilePatch>, PatchError> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut files: Vec<FilePatch> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let (Some(old), Some(new)) = (
            line.strip_prefix("--- "),
            lines.get(i + 1).and_then(|n| n.strip_prefix("+++ ")),
        ) {
            let (old_path, new_path) = (header_path(old), header_path(new));
            // After `rename from`/`rename to` git repeats the two names in the headers: one file.
            let same_rename = files.last().is_some_and(|f| {
                f.hunks.is_empty() && f.old_path == old_path && f.new_path == new_path
            });
            if !same_rename {
                files.push(FilePatch {
                    old_path,
                    new_path,
                    hunks: Vec::new(),
                    ordered: true,
                });
            }
            i += 2;
            continue;
        }
        if let (Some(from), Some(to)) = (
            line.strip_prefix("rename from "),
            lines.get(i + 1).and_then(|n| n.strip_prefix("rename to ")),
        ) {
            // git's pure rename (`similarity index 100%`) has no hunks: a move as it stands.
            files.push(FilePatch {
                old_path: Some(from.trim_matches('"').to_string()),
                new_path: Some(to.trim_matches('"').to_string()),
                hunks: Vec::new(),
                ordered: true,
            });
            i += 2;
            continue;
        }
        if line.starts_with("@@") {
            let Some(file) = files.last_mut() else {
                return Err(PatchError::Syntax {
                    line: i + 1,
                    reason: "a hunk (@@) before any `--- a/PATH` / `+++ b/PATH` header".into(),
                });
            };
            let (hunk, next) = parse_hunk(&lines, i);
            file.hunks.push(hunk);
            i = next;
            continue;
        }
        // Fences, `diff --git`, `index`, mode and similarity lines and prose around the diff carry
        // nothing we need.
        i += 1;
    }
    if files.is_empty() {
        return Err(PatchError::Empty);
    }
    for file in &files {
        let path = file.new_path.as_ref().or(file.old_path.as_ref());
        if path.is_none() {
            return Err(PatchError::Syntax {
                line: 1,
                reason: "a file header names /dev/null on both sides".into(),
            });
        }
        if file.hunks.is_empty()
            && file.old_path.is_some()
            && file.new_path.is_some()
            && file.old_path == file.new_path
        {
            return Err(PatchError::Syntax {
                line: 1,
                reason: format!(
                    "{} has a header but no @@ hunks",
                    path.map_or("", |s| s.as_str())
                ),
            });
        }
    }
    Ok(files)
}

/// The path of a `---`/`+++` header: `None` for /dev/null; `a/`/`b/` prefixes and trailing timestamps removed.
fn header_path(raw: &str) -> Option<String> {
    let raw = raw.split('\t').next().unwrap_or(raw).trim();
    let raw = raw.trim_matches('"');
    if raw == "/dev/null" {
        return None;
    }
    let stripped = raw
        .strip_prefix("a/")
        .or_else(|| raw.strip_prefix("b/"))
        .unwrap_or(raw);
    Some(stripped.to_string())
}

/// Parse the hunk whose `@@` header is at `start`; returns it and the index of the first line after it.
fn parse_hunk(lines: &[&str], start: usize) -> (Hunk, usize) {
    let mut hunk = Hunk {
        old_start: old_start(lines[start]),
        ..Hunk::default()
    };
    let mut i = start + 1;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("@@")
            || (line.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ ")))
        {
            break;
        }
        if line.starts_with("```") || line.starts_with("diff --git ") {
            break;
        }
        if line.starts_with('\\') {
            // `\ No newline at end of file` after a line of the new side: the new file ends without one;
            // after a removed line only: the old file lacked it and the new one has it.
            match hunk.lines.last() {
                Some(Line::Add(_)) | Some(Line::Context(_)) => hunk.new_final_newline = Some(false),
                Some(Line::Remove(_)) if hunk.new_final_newline.is_none() => {
                    hunk.new_final_newline = Some(true)
                }
                _ => {}
            }
        }
        hunk.lines.extend(body_line(line));
        i += 1;
    }
    trim_trailing_blank_context(&mut hunk);
    (hunk, i)
}

/// One line of a hunk body: ` ` context, `-` removed, `+` added. A blank line, or a line without a
/// marker, is context whose leading space was lost. `\ No newline at end of file` gives `None`; the
/// hunk parser records what it says about the final newline.
pub(super) fn body_line(line: &str) -> Option<Line> {
    Some(match line.chars().next() {
        Some(' ') => Line::Context(line[1..].to_string()),
        Some('-') => Line::Remove(line[1..].to_string()),
        Some('+') => Line::Add(line[1..].to_string()),
        Some('\\') => return None,
        None => Line::Context(String::new()),
        Some(_) => Line::Context(line.to_string()),
    })
}

/// Blank lines at the end of a hunk are usually the gap before the next file or hunk, not context.
pub(super) fn trim_trailing_blank_context(hunk: &mut Hunk) {
    while matches!(hunk.lines.last(), Some(Line::Context(s)) if s.trim().is_empty()) {
        hunk.lines.pop();
    }
}

fn old_start(header: &str) -> Option<usize> {
    let rest = header.trim_start_matches('@').trim_start();
    let old = rest.strip_prefix('-')?;
    let digits: String = old.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fenced_multi_file_diff() {
        let text = "Here is the fix:\n```diff\ndiff --git a/src/lib.rs b/src/lib.rs\nindex 1..2 100644\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n fn a() {\n-    1\n+    2\n }\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n```\n";
        let files = parse(text).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].old_path.as_deref(), Some("src/lib.rs"));
        assert_eq!(files[0].hunks[0].old(), vec!["fn a() {", "    1", "}"]);
        assert_eq!(
            files[0].hunks[0].new_lines(),
            vec!["fn a() {", "    2", "}"]
        );
        assert_eq!(files[0].hunks[0].old_start, Some(1));
        assert_eq!(files[1].old_path, None);
        assert_eq!(files[1].hunks[0].new_lines(), vec!["hello"]);
    }

    #[test]
    fn tolerates_missing_numbers_and_lost_spaces() {
        let files = parse("--- a/x\n+++ b/x\n@@\nkeep\n\n-old\n+new\n").unwrap();
        assert_eq!(files[0].hunks[0].old(), vec!["keep", "", "old"]);
        assert_eq!(files[0].hunks[0].old_start, None);
    }

    #[test]
    fn removed_line_that_looks_like_a_header_stays_in_the_hunk() {
        let files =
            parse("--- a/x\n+++ b/x\n@@ -1 +1 @@\n--- not a header\n+replacement\n").unwrap();
        assert_eq!(files[0].hunks[0].old(), vec!["-- not a header"]);
    }

    #[test]
    fn rejects_prose_and_headless_hunks() {
        assert_eq!(parse("just words"), Err(PatchError::Empty));
        assert!(matches!(
            parse("@@ -1 +1 @@\n-a\n+b\n"),
            Err(PatchError::Syntax { .. })
        ));
    }
}
