//! A patch that names no file: hunk lines (` ` context, `-` removed, `+` added) with no `--- a/PATH`
//! header and no `*** Update File:` section, what small models write when they forget the header
//! (Qwen2.5-Coder-1.5B: `*** Begin Patch`, `-    old line`, `+    new line`, `*** End Patch`). Here
//! such text is read into hunks; the caller decides which file they belong to (the one file they
//! match, never a guess between several). Pure text work: no file is read here.

use super::unified::{body_line, trim_trailing_blank_context};
use super::{Hunk, Line};

/// The hunks of a patch that names no file, or `None` when `text` is not one: every line other than
/// wrappers (`*** Begin Patch`, `*** End Patch`, fences, a heredoc or call around it) must be a hunk
/// line or an `@@` separator, with at least one removed or context line to locate it by and one
/// change. `N| ` prefixes copied from read_file's numbering are dropped when every line has one.
pub fn parse(text: &str) -> Option<Vec<Hunk>> {
    let mut hunks: Vec<Hunk> = vec![Hunk::default()];
    for raw in text.lines() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if is_wrapper(trimmed) {
            continue;
        }
        if trimmed.starts_with("@@") {
            hunks.push(Hunk::default());
            continue;
        }
        if !(line.is_empty() || line.starts_with([' ', '-', '+'])) {
            return None;
        }
        if line.starts_with("--- ") || line.starts_with("+++ ") {
            return None; // a file header: not headerless
        }
        let hunk = hunks.last_mut().expect("never empty");
        hunk.lines.extend(body_line(line));
    }
    hunks.retain(|h| !h.lines.is_empty());
    for hunk in &mut hunks {
        trim_trailing_blank_context(hunk);
        while matches!(hunk.lines.first(), Some(Line::Context(s)) if s.trim().is_empty()) {
            hunk.lines.remove(0);
        }
    }
    hunks.retain(|h| !h.lines.is_empty());
    strip_line_numbers(&mut hunks);
    let usable =
        |h: &Hunk| !h.old().is_empty() && h.lines.iter().any(|l| !matches!(l, Line::Context(_)));
    (!hunks.is_empty() && hunks.iter().all(usable)).then_some(hunks)
}

fn is_wrapper(trimmed: &str) -> bool {
    matches!(
        trimmed,
        "*** Begin Patch"
            | "*** End Patch"
            | "*** End of File"
            | "EOF"
            | "'EOF'"
            | "\"\"\")"
            | "\"\"\""
            | ")"
    ) || trimmed.starts_with("```")
        || trimmed.starts_with("apply_patch")
}

/// `-13|     x = 1` → `-    x = 1`, when every non-blank line carries such a prefix.
fn strip_line_numbers(hunks: &mut [Hunk]) {
    fn numbered(text: &str) -> Option<&str> {
        let digits = text.trim_start().len()
            - text
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        let rest = &text.trim_start()[digits..];
        (digits > 0).then_some(())?;
        let rest = rest.strip_prefix('|')?;
        Some(rest.strip_prefix(' ').unwrap_or(rest))
    }
    let text = |l: &Line| match l {
        Line::Context(s) | Line::Remove(s) | Line::Add(s) => s.clone(),
    };
    let all = hunks
        .iter()
        .flat_map(|h| &h.lines)
        .filter(|l| !text(l).trim().is_empty())
        .all(|l| numbered(&text(l)).is_some());
    if !all {
        return;
    }
    for line in hunks.iter_mut().flat_map(|h| &mut h.lines) {
        let (Line::Context(s) | Line::Remove(s) | Line::Add(s)) = line;
        if let Some(rest) = numbered(s) {
            *s = rest.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunk_lines_without_a_file_header_are_read_with_their_wrappers_dropped() {
        // What Qwen2.5-Coder-1.5B sent for a one-line fix in dnd_character.py.
        let text = "apply_patch(\"\"\"\n*** Begin Patch\n-    self.hitpoints = 11 + modifier(self.constitution)\n+    self.hitpoints = 10 + modifier(self.constitution)\n*** End Patch\n\"\"\")\n";
        let hunks = parse(text).unwrap();
        assert_eq!(hunks.len(), 1);
        assert_eq!(
            hunks[0].lines,
            vec![
                Line::Remove("    self.hitpoints = 11 + modifier(self.constitution)".into()),
                Line::Add("    self.hitpoints = 10 + modifier(self.constitution)".into()),
            ]
        );
        // read_file's numbering copied into the lines is dropped.
        let numbered = "*** Begin Patch\n-13|     x = 1\n+13|     x = 2\n*** End Patch\n";
        assert_eq!(
            parse(numbered).unwrap()[0].lines,
            vec![
                Line::Remove("    x = 1".into()),
                Line::Add("    x = 2".into())
            ]
        );
        // `@@` separates hunks.
        assert_eq!(parse("@@\n a\n-b\n+c\n@@\n d\n-e\n").unwrap().len(), 2);
    }

    #[test]
    fn text_that_is_not_a_headerless_patch_is_not_read_as_one() {
        for text in [
            "",
            "*** Begin Patch\n*** End Patch\n",
            "fix the bug\n-    x = 1\n+    x = 2\n", // prose
            "+    x = 2\n",                          // nothing to locate it by
            " a\n b\n",                              // no change
            "--- a/x\n+++ b/x\n-a\n+b\n",            // a header: the unified parser's business
        ] {
            assert!(parse(text).is_none(), "{text:?}");
        }
    }
}
