//! Parser for SEARCH/REPLACE blocks: the file path on the line before (optionally with a code fence in
//! between), then `<<<<<<< SEARCH`, the old lines, `=======`, the new lines, `>>>>>>> REPLACE`.
//!
//! Blocks for the same file become hunks of one file patch, each located anywhere in the file. An empty
//! SEARCH creates the file.

use super::{FilePatch, Hunk, PatchError};

pub fn is_search_marker(line: &str) -> bool {
    line.starts_with("<<<<<<<") && line.trim_start_matches('<').trim() == "SEARCH"
}

fn is_divider(line: &str) -> bool {
    line.len() >= 5 && line.chars().all(|c| c == '=')
}

fn is_replace_marker(line: &str) -> bool {
    line.starts_with(">>>>>>>") && line.trim_start_matches('>').trim() == "REPLACE"
}

pub fn parse(text: &str) -> Result<Vec<FilePatch>, PatchError> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut files: Vec<FilePatch> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !is_search_marker(lines[i].trim()) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let path = path_before(&lines[..i]).ok_or_else(|| PatchError::Syntax {
            line: i + 1,
            reason: "a SEARCH block needs the file path on the line before it".into(),
        })?;
        let divider = (start..lines.len())
            .find(|&j| is_divider(lines[j].trim()))
            .ok_or_else(|| PatchError::Syntax {
                line: start,
                reason: "the SEARCH block has no `=======` line".into(),
            })?;
        let end = (divider + 1..lines.len())
            .find(|&j| is_replace_marker(lines[j].trim()))
            .ok_or_else(|| PatchError::Syntax {
                line: divider + 1,
                reason: "the SEARCH block has no `>>>>>>> REPLACE` line".into(),
            })?;
        let owned = |range: &[&str]| range.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let hunk = Hunk::from_old_new(
            &owned(&lines[start..divider]),
            &owned(&lines[divider + 1..end]),
        );
        match files
            .iter_mut()
            .find(|f| f.old_path.as_deref() == Some(path.as_str()))
        {
            Some(file) => file.hunks.push(hunk),
            None => files.push(FilePatch {
                old_path: Some(path.clone()),
                new_path: Some(path),
                hunks: vec![hunk],
                ordered: false,
            }),
        }
        i = end + 1;
    }
    if files.is_empty() {
        return Err(PatchError::Empty);
    }
    Ok(files)
}

/// The nearest non-blank line above a block that is not a fence: the path, stripped of the decoration
/// models put around it (backticks, bold, a trailing colon, a `File:` label).
fn path_before(lines: &[&str]) -> Option<String> {
    let line = lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with("```"))?;
    let line = line
        .strip_prefix("File:")
        .or_else(|| line.strip_prefix("file:"))
        .unwrap_or(line);
    let path = line
        .trim()
        .trim_matches(|c| c == '`' || c == '*' || c == '#')
        .trim()
        .trim_end_matches(':')
        .trim();
    (!path.is_empty() && !path.contains(' ') && !is_replace_marker(path)).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_with_fences_and_decorated_paths() {
        let text = "Change this:\n\n**src/lib.rs**\n```rust\n<<<<<<< SEARCH\nfn a() {\n    1\n}\n=======\nfn a() {\n    2\n}\n>>>>>>> REPLACE\n```\n\n`src/lib.rs`\n```rust\n<<<<<<< SEARCH\n=======\n// tail\n>>>>>>> REPLACE\n```\n";
        let files = parse(text).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].old_path.as_deref(), Some("src/lib.rs"));
        assert_eq!(files[0].hunks.len(), 2);
        assert_eq!(files[0].hunks[0].old(), vec!["fn a() {", "    1", "}"]);
        assert_eq!(
            files[0].hunks[0].new_lines(),
            vec!["fn a() {", "    2", "}"]
        );
        assert!(!files[0].ordered);
    }

    #[test]
    fn explains_broken_blocks() {
        assert!(matches!(
            parse("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"),
            Err(PatchError::Syntax { .. })
        ));
        let err = parse("f.txt\n<<<<<<< SEARCH\na\nb\n>>>>>>> REPLACE\n").unwrap_err();
        assert!(err.to_string().contains("======="), "{err}");
    }
}
