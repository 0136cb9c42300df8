//! Parser for the envelope format (`*** Begin Patch` … `*** End Patch`), tolerant of code fences,
//! heredoc wrappers around it, and markers padded with spaces.

use super::unified::{body_line, trim_trailing_blank_context};
use super::{FilePatch, Hunk, Line, PatchError};

const ADD: &str = "*** Add File:";
const UPDATE: &str = "*** Update File:";
const DELETE: &str = "*** Delete File:";
const MOVE: &str = "*** Move to:";

/// Does this (trimmed) line start a file section?
pub fn is_file_marker(line: &str) -> bool {
    [ADD, UPDATE, DELETE].iter().any(|m| line.starts_with(m))
}

enum Section {
    Add,
    Update,
    Delete,
}

pub fn parse(text: &str) -> Result<Vec<FilePatch>, PatchError> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let begin = lines
        .iter()
        .position(|l| l.trim() == "*** Begin Patch")
        .map_or(0, |i| i + 1);
    let mut files: Vec<FilePatch> = Vec::new();
    let mut section: Option<Section> = None;
    for (index, raw) in lines.iter().enumerate().skip(begin) {
        let number = index + 1;
        let marker = raw.trim();
        if marker == "*** End Patch" {
            break;
        }
        if let Some((kind, path)) = file_marker(marker) {
            if path.is_empty() {
                return Err(PatchError::Syntax {
                    line: number,
                    reason: format!("`{marker}` names no file"),
                });
            }
            let file = match kind {
                Section::Add => FilePatch {
                    old_path: None,
                    new_path: Some(path),
                    hunks: vec![Hunk::default()],
                    ordered: true,
                },
                Section::Update => FilePatch {
                    old_path: Some(path.clone()),
                    new_path: Some(path),
                    hunks: Vec::new(),
                    ordered: true,
                },
                Section::Delete => FilePatch {
                    old_path: Some(path),
                    new_path: None,
                    hunks: Vec::new(),
                    ordered: true,
                },
            };
            files.push(file);
            section = Some(kind);
            continue;
        }
        let Some(kind) = &section else {
            // Fences, heredoc lines and prose before the first file carry nothing; a misspelt file
            // marker would leave the patch empty, so it is named instead.
            if is_unknown_marker(marker) && !marker.starts_with("*** Begin") {
                return Err(unknown_marker(number, marker));
            }
            continue;
        };
        let Some(file) = files.last_mut() else {
            continue;
        };
        match kind {
            Section::Delete => {}
            Section::Add => {
                if marker.starts_with("```") || marker == "*** End of File" {
                    continue;
                }
                if is_unknown_marker(marker) {
                    return Err(unknown_marker(number, marker));
                }
                // Models sometimes forget the `+` on some lines of a new file; take them as written.
                let text = raw.strip_prefix('+').unwrap_or(raw);
                if let Some(hunk) = file.hunks.last_mut() {
                    hunk.lines.push(Line::Add(text.to_string()));
                }
            }
            Section::Update => {
                if let Some(target) = marker.strip_prefix(MOVE) {
                    file.new_path = Some(target.trim().to_string());
                } else if let Some(anchor) = marker.strip_prefix("@@") {
                    let anchor = anchor.trim().trim_end_matches("@@").trim();
                    file.hunks.push(Hunk {
                        anchor: (!anchor.is_empty()).then(|| anchor.to_string()),
                        ..update_hunk()
                    });
                } else if marker == "*** End of File" {
                    // The hunk above ends where the file ends.
                    if let Some(hunk) = file.hunks.last_mut() {
                        hunk.at_eof = true;
                    }
                } else if marker.starts_with("```") {
                    continue;
                } else if is_unknown_marker(marker) {
                    return Err(unknown_marker(number, marker));
                } else {
                    if file.hunks.is_empty() {
                        file.hunks.push(update_hunk());
                    }
                    if let (Some(hunk), Some(line)) = (file.hunks.last_mut(), body_line(raw)) {
                        hunk.lines.push(line);
                    }
                }
            }
        }
    }
    for file in &mut files {
        for hunk in &mut file.hunks {
            trim_trailing_blank_context(hunk);
        }
        if file.old_path.is_none() {
            // A new file's trailing blank lines are usually the gap before the next marker.
            if let Some(hunk) = file.hunks.last_mut() {
                while matches!(hunk.lines.last(), Some(Line::Add(s)) if s.trim().is_empty()) {
                    hunk.lines.pop();
                }
            }
        }
    }
    files.retain(|f| {
        !(f.old_path.is_some()
            && f.new_path == f.old_path
            && f.hunks.iter().all(|h| h.lines.is_empty()))
    });
    if files.is_empty() {
        return Err(PatchError::Empty);
    }
    Ok(files)
}

/// A hunk of an Update section. The format cannot say "no newline at end of file", so a hunk that
/// reaches the end of the file leaves it ending with one (as Codex's own engine does).
fn update_hunk() -> Hunk {
    Hunk {
        new_final_newline: Some(true),
        ..Hunk::default()
    }
}

/// A `*** Something File:` or `*** End …` line that is none of the format's markers: a typo or another
/// format's marker, never file content to write or match.
fn is_unknown_marker(line: &str) -> bool {
    line.starts_with("*** ")
        && (line.contains(" File")
            || line.starts_with("*** End")
            || line.starts_with("*** Begin")
            || line.starts_with("*** Move"))
}

fn unknown_marker(number: usize, marker: &str) -> PatchError {
    PatchError::Syntax {
        line: number,
        reason: format!(
            "`{marker}` is not a marker of the patch format (`*** Add File:`, `*** Update File:`, `*** Delete File:`, `*** Move to:`, `*** End of File`, `*** End Patch`)"
        ),
    }
}

fn file_marker(line: &str) -> Option<(Section, String)> {
    let path = |rest: &str| rest.trim().trim_matches('`').to_string();
    if let Some(rest) = line.strip_prefix(ADD) {
        return Some((Section::Add, path(rest)));
    }
    if let Some(rest) = line.strip_prefix(UPDATE) {
        return Some((Section::Update, path(rest)));
    }
    line.strip_prefix(DELETE)
        .map(|rest| (Section::Delete, path(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_sections_inside_a_heredoc_and_fence() {
        let text = "apply_patch <<'EOF'\n```\n  *** Begin Patch  \n*** Add File: new.txt\n+hello\n+\n+world\n*** Update File: src/lib.rs\n*** Move to: src/main.rs\n@@ fn main() {\n-    old();\n+    new();\n@@\n keep\n-x\n+y\n*** Delete File: gone.txt\n*** End Patch\n```\nEOF\n";
        let files = parse(text).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].old_path, None);
        assert_eq!(files[0].hunks[0].new_lines(), vec!["hello", "", "world"]);
        assert_eq!(files[1].old_path.as_deref(), Some("src/lib.rs"));
        assert_eq!(files[1].new_path.as_deref(), Some("src/main.rs"));
        assert_eq!(files[1].hunks.len(), 2);
        assert_eq!(files[1].hunks[0].anchor.as_deref(), Some("fn main() {"));
        assert_eq!(files[1].hunks[0].old(), vec!["    old();"]);
        assert_eq!(files[1].hunks[1].old(), vec!["keep", "x"]);
        assert_eq!(files[2].new_path, None);
    }

    #[test]
    fn refuses_empty_envelopes_and_nameless_files() {
        assert_eq!(
            parse("*** Begin Patch\n*** End Patch\n"),
            Err(PatchError::Empty)
        );
        assert!(matches!(
            parse("*** Begin Patch\n*** Update File:\n"),
            Err(PatchError::Syntax { .. })
        ));
        let err = parse("*** Begin Patch\n*** Update File: a\n@@\n-x\n+y\n*** Frobnicate File: b\n*** End Patch\n")
            .unwrap_err();
        assert!(err.to_string().contains("Frobnicate"), "{err}");
    }

    #[test]
    fn end_of_file_marks_the_hunk() {
        let files = parse(
            "*** Begin Patch\n*** Update File: a\n@@\n x\n-y\n+z\n*** End of File\n*** End Patch\n",
        )
        .unwrap();
        assert!(files[0].hunks[0].at_eof);
        assert_eq!(files[0].hunks[0].old(), vec!["x", "y"]);
    }
}
