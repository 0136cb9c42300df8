//! Parser for SEARCH/REPLACE blocks (Aider's edit format): the file path on a line before the
//! block (code fences in between are skipped, Aider's other fences too: ```` ```` ````, `<source>`,
//! `<code>`, `<pre>`, `<codeblock>`, `<sourcecode>`), then `<<<<<<< SEARCH`, the old lines, `=======`,
//! the new lines, `>>>>>>> REPLACE`.
//!
//! Blocks for the same file become hunks of one file patch, applied in order to the evolving content.
//! A block with no path line of its own (a `...` elision, prose, or the previous block's end above
//! it) belongs to the previous block's file. An empty SEARCH creates the file, or appends to an
//! existing one. Marker lines are never file content: a second `=======` ends the replacement (as
//! Aider reads it), and a block with a SEARCH marker inside it, or text after a second divider, is
//! refused rather than guessed at.

use super::{FilePatch, Hunk, PatchError};

/// `<<<<<<< SEARCH` with 5 to 9 `<` (Aider's own pattern, with its optional trailing `>`).
pub fn is_search_marker(line: &str) -> bool {
    let body = line.trim_start_matches('<');
    (5..=9).contains(&(line.len() - body.len())) && matches!(body.trim(), "SEARCH" | "SEARCH>")
}

/// `=======` with 5 to 9 `=`: longer runs (a heading underline, a ruler in a comment) are content.
fn is_divider(line: &str) -> bool {
    (5..=9).contains(&line.len()) && line.chars().all(|c| c == '=')
}

fn is_replace_marker(line: &str) -> bool {
    let body = line.trim_start_matches('>');
    (5..=9).contains(&(line.len() - body.len())) && body.trim() == "REPLACE"
}

pub fn parse(text: &str) -> Result<Vec<FilePatch>, PatchError> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut files: Vec<FilePatch> = Vec::new();
    let mut previous_path: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        if !is_search_marker(lines[i].trim()) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let path = match path_before(&lines[..i]) {
            Some(path) => path,
            None => previous_path.clone().ok_or_else(|| PatchError::Syntax {
                line: i + 1,
                reason: "a SEARCH block needs the file path alone on the line before it (or before its opening fence)".into(),
            })?,
        };
        let divider = block_end(&lines, start, is_divider, "`=======`")?;
        let end = block_end(
            &lines,
            divider + 1,
            |l| is_replace_marker(l) || is_divider(l),
            "`>>>>>>> REPLACE`",
        )?;
        let mut next = end + 1;
        if is_divider(lines[end].trim()) {
            // A second divider ends the replacement; only blank lines may follow it before the
            // block's REPLACE marker (what followed would otherwise be a guess).
            let close = (end + 1..lines.len())
                .find(|&j| !lines[j].trim().is_empty())
                .filter(|&j| is_replace_marker(lines[j].trim()));
            match close {
                Some(close) => next = close + 1,
                None => {
                    return Err(PatchError::Syntax {
                        line: end + 1,
                        reason: "the block has a second `=======` with more text after it; write one `=======` between the old and the new lines".into(),
                    })
                }
            }
        }
        let owned = |range: &[&str]| range.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (old, new) = (
            owned(&lines[start..divider]),
            owned(&lines[divider + 1..end]),
        );
        let mut hunk = Hunk::from_old_new(&old, &new);
        hunk.elided = elided_pieces(&old, &new);
        match files
            .iter_mut()
            .find(|f| f.old_path.as_deref() == Some(path.as_str()))
        {
            Some(file) => file.hunks.push(hunk),
            None => files.push(FilePatch {
                old_path: Some(path.clone()),
                new_path: Some(path.clone()),
                hunks: vec![hunk],
                ordered: false,
            }),
        }
        previous_path = Some(path);
        i = next;
    }
    if files.is_empty() {
        return Err(PatchError::Empty);
    }
    Ok(files)
}

/// The pieces of a block whose two sides elide unchanged code with `...` lines at the same places
/// (Aider's convention): each pair of pieces between the elisions becomes its own hunk. Empty when
/// there are no elisions, when the sides disagree on them, or when a piece would have nothing to
/// find (an empty old piece cannot be placed).
fn elided_pieces(old: &[String], new: &[String]) -> Vec<Hunk> {
    let split = |side: &[String]| -> Vec<Vec<String>> {
        side.split(|l| l.trim() == "...")
            .map(<[String]>::to_vec)
            .collect()
    };
    let (old_pieces, new_pieces) = (split(old), split(new));
    if old_pieces.len() < 2 || old_pieces.len() != new_pieces.len() {
        return Vec::new();
    }
    let pairs: Vec<_> = old_pieces
        .into_iter()
        .zip(new_pieces)
        .filter(|(o, n)| !(o.is_empty() && n.is_empty()))
        .collect();
    if pairs
        .iter()
        .any(|(o, _)| o.iter().all(|l| l.trim().is_empty()))
    {
        return Vec::new();
    }
    pairs
        .into_iter()
        .map(|(o, n)| Hunk::from_old_new(&o, &n))
        .collect()
}

/// The first line at or after `from` that `is_end` accepts; any other marker line before it means the
/// block was never closed, and is refused rather than written into the file.
fn block_end(
    lines: &[&str],
    from: usize,
    is_end: impl Fn(&str) -> bool,
    wanted: &str,
) -> Result<usize, PatchError> {
    for (j, line) in lines.iter().enumerate().skip(from) {
        let line = line.trim();
        if is_end(line) {
            return Ok(j);
        }
        if is_search_marker(line) || is_replace_marker(line) {
            return Err(PatchError::Syntax {
                line: j + 1,
                reason: format!("`{line}` comes before the block's {wanted} line; close each block before the next starts"),
            });
        }
    }
    Err(PatchError::Syntax {
        line: from,
        reason: format!("the SEARCH block has no {wanted} line"),
    })
}

/// A code fence of any kind Aider writes: backticks or tildes (with a language), or the HTML-like
/// pairs it uses when the file itself contains backticks.
fn is_fence(line: &str) -> bool {
    if line.starts_with("```") || line.starts_with("~~~") {
        return true;
    }
    let Some(tag) = line
        .strip_prefix("</")
        .or_else(|| line.strip_prefix('<'))
        .and_then(|rest| rest.split_once('>'))
    else {
        return false;
    };
    let (name, after) = tag;
    ["source", "code", "pre", "codeblock", "sourcecode"].contains(&name)
        && after
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-#._".contains(c))
}

/// The nearest non-blank line above a block that is not a fence: the path, stripped of the decoration
/// models put around it (backticks, bold, `#`, a trailing colon, a `File:` label, in any nesting:
/// `**src/a.py**:`). A fence whose info string is a path (```` ```src/a.py ````) names it too, as
/// Aider reads it. `None` when that line is not a path: prose, an elision (`...`), or the end of the
/// previous block.
fn path_before(lines: &[&str]) -> Option<String> {
    let mut above = lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty());
    let line = loop {
        let line = above.next()?;
        if !is_fence(line) {
            break line;
        }
        let info = line.trim_start_matches(['`', '~']).trim();
        let markdown = info.len() < line.len();
        if markdown && (info.contains('.') || info.contains('/')) && !info.contains(' ') {
            return Some(info.to_string());
        }
    };
    if is_replace_marker(line) || is_divider(line) || is_search_marker(line) {
        return None;
    }
    let line = line
        .strip_prefix("File:")
        .or_else(|| line.strip_prefix("file:"))
        .unwrap_or(line);
    let mut path = line;
    loop {
        let stripped = path
            .trim_matches(|c: char| c.is_whitespace() || matches!(c, '`' | '*' | '#'))
            .trim_end_matches(':');
        if stripped == path {
            break;
        }
        path = stripped;
    }
    let path = path.replace("\\_", "_");
    let elision = path.chars().all(|c| c == '.');
    (!path.is_empty() && !elision && !path.contains(' ') && !path.contains('<')).then_some(path)
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
    fn paths_in_nested_decoration_and_in_the_fence_info_are_read() {
        let block = "<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n";
        for (above, path) in [
            ("**src/m.py**:\n```python\n", "src/m.py"),
            ("`src/m.py`:\n```\n", "src/m.py"),
            ("## **src/m.py**\n", "src/m.py"),
            ("```src/m.py\n", "src/m.py"),
            ("Makefile\n```make\n", "Makefile"),
            ("lib/a.rs\n~~~rust\n", "lib/a.rs"),
        ] {
            let files = parse(&format!("{above}{block}")).unwrap();
            assert_eq!(files[0].old_path.as_deref(), Some(path), "{above:?}");
        }
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

    #[test]
    fn reads_aiders_other_fences_and_reuses_the_previous_path() {
        let text = "foo.py\n<source>python\n<<<<<<< SEARCH\none\n=======\ntwo\n>>>>>>> REPLACE\n</source>\n\n...\n\n<source>python\n<<<<<<< SEARCH\nthree\n=======\nfour\n>>>>>>> REPLACE\n</source>\n<<<<<<< SEARCH\nfive\n=======\nsix\n>>>>>>> REPLACE\n";
        let files = parse(text).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].old_path.as_deref(), Some("foo.py"));
        assert_eq!(files[0].hunks.len(), 3);
        let quad =
            "````python\nsrc/a\\_b.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n````\n";
        assert_eq!(
            parse(quad).unwrap()[0].old_path.as_deref(),
            Some("src/a_b.py")
        );
    }

    #[test]
    fn a_second_divider_ends_the_replacement_and_markers_are_never_content() {
        let files =
            parse("f.py\n<<<<<<< SEARCH\na\n=======\nb\n=======\n>>>>>>> REPLACE\n").unwrap();
        assert_eq!(files[0].hunks[0].new_lines(), vec!["b"]);
        // Text after the second divider: which part is meant cannot be told.
        assert!(
            parse("f.py\n<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE\n").is_err()
        );
        // A block left open before the next one starts.
        let err = parse(
            "f.py\n<<<<<<< SEARCH\na\n=======\nb\n<<<<<<< SEARCH\nc\n=======\nd\n>>>>>>> REPLACE\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("close each block"), "{err}");
        // Long `=` runs are content (a heading underline), not dividers.
        let files = parse("f.rst\n<<<<<<< SEARCH\nTitle\n============\n=======\nName\n============\n>>>>>>> REPLACE\n").unwrap();
        assert_eq!(files[0].hunks[0].old(), vec!["Title", "============"]);
    }

    #[test]
    fn elisions_on_both_sides_become_pieces() {
        let files = parse("f.py\n<<<<<<< SEARCH\ndef a():\n    x = 1\n...\n    return x\n=======\ndef a():\n    x = 2\n...\n    return x + 1\n>>>>>>> REPLACE\n").unwrap();
        let pieces = &files[0].hunks[0].elided;
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].old(), vec!["def a():", "    x = 1"]);
        assert_eq!(pieces[1].new_lines(), vec!["    return x + 1"]);
        // Unpaired elisions are no elisions.
        let files =
            parse("f.py\n<<<<<<< SEARCH\na\n...\nb\n=======\nc\n>>>>>>> REPLACE\n").unwrap();
        assert!(files[0].hunks[0].elided.is_empty());
    }
}
