//! Locating hunks in a file and computing its new content.
//!
//! Every hunk is located in the original file: after the previous hunk for diffs, anywhere for
//! SEARCH/REPLACE blocks. Its old lines (context and removed) are compared at each [`Level`] in turn;
//! the first level with any match decides. One match is used; several are refused as ambiguous unless
//! the diff's line number points at exactly one of them. Context lines keep the file's own text, added
//! lines are re-indented (and de-typographed) the way the match required, and the file's line endings
//! and final-newline state are preserved.

use super::normalize::{fold_unicode, Level, Reindent};
use super::{Hunk, Line, PatchError};

struct Placed {
    start: usize,
    len: usize,
    replacement: Vec<String>,
    hunk: usize,
}

/// Apply `hunks` to `original`, returning the new content, or an error naming the hunk that failed.
pub fn apply_hunks(
    path: &str,
    original: &str,
    hunks: &[Hunk],
    ordered: bool,
) -> Result<String, PatchError> {
    let crlf = original.contains("\r\n");
    let mut final_newline = original.is_empty() || original.ends_with('\n');
    let lines: Vec<&str> = original
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let file = FileStyle::of(path, original, &lines);
    let mut placed: Vec<Placed> = Vec::new();
    let mut cursor = 0usize;
    for (index, hunk) in hunks.iter().enumerate() {
        let number = index + 1;
        if let Some(first) = hunks[..index].iter().position(|h| h == hunk) {
            return Err(PatchError::NoMatch {
                path: path.into(),
                hunk: number,
                detail: format!(
                    "it repeats hunk {} exactly; give each change its own context lines",
                    first + 1
                ),
            });
        }
        let mut from = if ordered { cursor } else { 0 };
        if let Some(anchor) = hunk.anchor.as_deref().filter(|a| !a.trim().is_empty()) {
            from = find_anchor(&lines, anchor, from).ok_or_else(|| PatchError::NoMatch {
                path: path.into(),
                hunk: number,
                detail: format!("its anchor line `@@ {anchor}` does not occur after line {from}"),
            })? + 1;
        }
        let old = hunk.old();
        let (start, level) = if old.is_empty() {
            (
                insertion_point(path, number, hunk, &lines, from)?,
                Level::Exact,
            )
        } else {
            locate(path, number, hunk, &old, &lines, from)?
        };
        if let Some(newline) = hunk
            .new_final_newline
            .filter(|_| start + old.len() == lines.len())
        {
            final_newline = newline;
        }
        let region = Region {
            lines: &lines[start..start + old.len()],
            start,
            level,
        };
        let replacement = replacement(path, number, hunk, &region, &file)?;
        placed.push(Placed {
            start,
            len: old.len(),
            replacement,
            hunk: number,
        });
        cursor = start + old.len();
    }
    placed.sort_by_key(|p| (p.start, p.hunk));
    for pair in placed.windows(2) {
        if pair[0].start + pair[0].len > pair[1].start {
            return Err(PatchError::NoMatch {
                path: path.into(),
                hunk: pair[1].hunk,
                detail: format!(
                    "it overlaps hunk {} (both change line {})",
                    pair[0].hunk,
                    pair[1].start + 1
                ),
            });
        }
    }
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    let mut next = 0;
    for p in &placed {
        out.extend_from_slice(&lines[next..p.start]);
        out.extend(p.replacement.iter().map(String::as_str));
        next = p.start + p.len;
    }
    out.extend_from_slice(&lines[next..]);
    let ending = if crlf { "\r\n" } else { "\n" };
    let mut text = out.join(ending);
    if final_newline && !out.is_empty() {
        text.push_str(ending);
    }
    Ok(text)
}

fn find_anchor(lines: &[&str], anchor: &str, from: usize) -> Option<usize> {
    Level::ALL.iter().find_map(|level| {
        let want = level.normalize(anchor);
        (from..lines.len()).find(|&i| level.normalize(lines[i]) == want)
    })
}

/// Where a hunk without old lines goes: into an empty file, right after its anchor, or after the line
/// its `@@ -N,0` header names.
fn insertion_point(
    path: &str,
    number: usize,
    hunk: &Hunk,
    lines: &[&str],
    from: usize,
) -> Result<usize, PatchError> {
    if lines.is_empty() {
        return Ok(0);
    }
    if hunk.anchor.is_some() {
        return Ok(from);
    }
    match hunk.old_start {
        Some(after) if after <= lines.len() && after >= from => Ok(after),
        _ => Err(PatchError::NoMatch {
            path: path.into(),
            hunk: number,
            detail: "it has no context or removed lines, so there is nothing to locate it by; add a few unchanged lines around the insertion".into(),
        }),
    }
}

fn locate(
    path: &str,
    number: usize,
    hunk: &Hunk,
    old: &[&str],
    lines: &[&str],
    from: usize,
) -> Result<(usize, Level), PatchError> {
    if old.len() <= lines.len() {
        for level in Level::ALL {
            let want: Vec<_> = old.iter().map(|l| level.normalize(l)).collect();
            let matches: Vec<usize> = (from..=lines.len() - old.len())
                .filter(|&start| {
                    want.iter()
                        .zip(&lines[start..])
                        .all(|(w, have)| *w == level.normalize(have))
                })
                .collect();
            match matches.as_slice() {
                [] => continue,
                [only] => return Ok((*only, level)),
                many => {
                    // The header's line number breaks a tie when it points exactly at one candidate.
                    if let Some(start) = hunk
                        .old_start
                        .and_then(|h| h.checked_sub(1))
                        .filter(|s| many.contains(s))
                    {
                        return Ok((start, level));
                    }
                    let shown: Vec<String> =
                        many.iter().take(5).map(|m| (m + 1).to_string()).collect();
                    return Err(PatchError::Ambiguous {
                        path: path.into(),
                        hunk: number,
                        count: many.len(),
                        lines: shown.join(", "),
                    });
                }
            }
        }
    }
    Err(PatchError::NoMatch {
        path: path.into(),
        hunk: number,
        detail: closest_region(old, lines, from),
    })
}

/// Where a hunk matched, and how loosely.
struct Region<'a> {
    lines: &'a [&'a str],
    start: usize,
    level: Level,
}

/// What added lines must agree with, whatever the hunk's own lines say.
struct FileStyle {
    /// The file has no typographic punctuation, so a model's smart quotes in added lines are a slip.
    /// Prose files are exempt: there typography may be intended.
    fold_typography: bool,
    /// The file indents with spaces only (`Some(false)`) or tabs only (`Some(true)`), and its unit.
    tabs: Option<bool>,
    unit: usize,
}

impl FileStyle {
    fn of(path: &str, original: &str, lines: &[&str]) -> Self {
        let prose = [".md", ".txt", ".rst", ".adoc", ".html", ".tex"]
            .iter()
            .any(|ext| path.ends_with(ext));
        let fold_typography = !prose && fold_unicode(original) == original;
        let indents: Vec<&str> = lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| &l[..l.len() - l.trim_start().len()])
            .filter(|i| !i.is_empty())
            .collect();
        let tabs = if indents.is_empty() {
            None
        } else if indents.iter().all(|i| i.chars().all(|c| c == ' ')) {
            Some(false)
        } else if indents.iter().all(|i| i.chars().all(|c| c == '\t')) {
            Some(true)
        } else {
            None
        };
        let unit = indents
            .iter()
            .filter(|i| !i.contains('\t'))
            .map(|i| i.len())
            .min()
            .unwrap_or(4)
            .clamp(1, 8);
        Self {
            fold_typography,
            tabs,
            unit,
        }
    }

    /// Make an added line's leading whitespace use the file's character (tabs or spaces).
    fn conform(&self, line: String) -> String {
        let indent_len = line.len() - line.trim_start().len();
        let indent = &line[..indent_len];
        match self.tabs {
            Some(false) if indent.contains('\t') => {
                format!(
                    "{}{}",
                    indent.replace('\t', &" ".repeat(self.unit)),
                    &line[indent_len..]
                )
            }
            Some(true) if indent.starts_with(' ') => {
                let spaces = indent.chars().take_while(|c| *c == ' ').count();
                let unit = self.unit.max(4);
                format!(
                    "{}{}{}",
                    "\t".repeat(spaces / unit),
                    " ".repeat(spaces % unit),
                    &line[spaces..]
                )
            }
            _ => line,
        }
    }
}

/// The lines that replace the matched region: the file's own context lines, and the hunk's added lines
/// adjusted to the file the way the match required.
fn replacement(
    path: &str,
    number: usize,
    hunk: &Hunk,
    region: &Region<'_>,
    file: &FileStyle,
) -> Result<Vec<String>, PatchError> {
    let reindent = if region.level >= Level::SurroundingWhitespace {
        let pairs: Vec<(&str, &str)> = hunk
            .old()
            .into_iter()
            .zip(region.lines.iter().copied())
            .collect();
        Reindent::learn(&pairs).ok_or_else(|| PatchError::NoMatch {
            path: path.into(),
            hunk: number,
            detail: format!(
                "its lines match lines {}-{} except for indentation, which differs unevenly; copy the indentation exactly",
                region.start + 1,
                region.start + region.lines.len()
            ),
        })?
    } else {
        Reindent::Same
    };
    let mut out = Vec::with_capacity(hunk.lines.len());
    let mut file_lines = region.lines.iter();
    for line in &hunk.lines {
        match line {
            Line::Context(_) => out.extend(file_lines.next().map(|l| l.to_string())),
            Line::Remove(_) => {
                file_lines.next();
            }
            Line::Add(text) => {
                // Added lines are kept as written, except for re-indentation and typography.
                let text = if file.fold_typography || region.level >= Level::Unicode {
                    fold_unicode(text).into_owned()
                } else {
                    text.clone()
                };
                let adjusted = reindent.apply(&text).ok_or_else(|| PatchError::NoMatch {
                    path: path.into(),
                    hunk: number,
                    detail: format!("added line {text:?} cannot be re-indented to match the file ({reindent:?})"),
                })?;
                out.push(file.conform(adjusted));
            }
        }
    }
    Ok(out)
}

/// Describe where the hunk came closest to matching, to help the model fix its next try.
fn closest_region(old: &[&str], lines: &[&str], from: usize) -> String {
    let score = |start: usize| {
        old.iter()
            .zip(&lines[start..])
            .filter(|(w, h)| w.trim() == h.trim())
            .count()
    };
    let best = (from..lines.len()).max_by_key(|&s| (score(s), std::cmp::Reverse(s)));
    let Some(start) = best.filter(|&s| score(s) > 0) else {
        return format!(
            "none of its {} old lines (first: {:?}) occur in the file after line {from}; read the file again and copy the lines exactly",
            old.len(),
            old.first().copied().unwrap_or("")
        );
    };
    let end = (start + old.len()).min(lines.len());
    let mut detail = format!(
        "closest region is lines {}-{end}, where {} of {} old lines match",
        start + 1,
        score(start),
        old.len()
    );
    if let Some(i) = old
        .iter()
        .zip(&lines[start..end])
        .position(|(w, h)| w.trim() != h.trim())
    {
        detail.push_str(&format!(
            "; line {} of the hunk ({:?}) is not at file line {} ({:?})",
            i + 1,
            old[i],
            start + i + 1,
            lines[start + i]
        ));
    } else if end - start < old.len() {
        detail.push_str("; the hunk runs past the end of the file");
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hunk(old: &[&str], new: &[&str]) -> Hunk {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Hunk::from_old_new(&owned(old), &owned(new))
    }

    fn apply(original: &str, hunks: &[Hunk]) -> Result<String, PatchError> {
        apply_hunks("f", original, hunks, true)
    }

    #[test]
    fn applies_in_order_and_keeps_crlf_and_missing_final_newline() {
        let out = apply(
            "a\r\nb\r\nc\r\nb",
            &[hunk(&["a", "b"], &["a", "B"]), hunk(&["b"], &["bee"])],
        )
        .unwrap();
        assert_eq!(out, "a\r\nB\r\nc\r\nbee");
    }

    #[test]
    fn tolerates_whitespace_and_keeps_the_files_context() {
        assert_eq!(
            apply("x  \ny\n", &[hunk(&["x", "y"], &["x", "z"])]).unwrap(),
            "x  \nz\n"
        );
        let err = apply("x\nx\n", &[hunk(&["x"], &["y"])]).unwrap_err();
        assert!(
            matches!(err, PatchError::Ambiguous { count: 2, .. }),
            "{err}"
        );
        let mut hinted = hunk(&["x"], &["y"]);
        hinted.old_start = Some(2);
        assert_eq!(apply("x\nx\n", &[hinted]).unwrap(), "x\ny\n");
    }

    #[test]
    fn reindents_the_replacement_like_the_file() {
        let file = "def f():\n    if a:\n        return 1\n";
        let h = hunk(&["if a:", "    return 1"], &["if a:", "    return 2"]);
        assert_eq!(
            apply(file, &[h]).unwrap(),
            "def f():\n    if a:\n        return 2\n"
        );
        let tabs = "fn f() {\n\tlet a = 1;\n}\n";
        let h = hunk(&["    let a = 1;"], &["    let a = 2;", "    let b = 3;"]);
        assert_eq!(
            apply(tabs, &[h]).unwrap(),
            "fn f() {\n\tlet a = 2;\n\tlet b = 3;\n}\n"
        );
    }

    #[test]
    fn folds_smart_quotes_when_the_file_has_none() {
        let h = hunk(
            &["print(\u{201C}hi\u{201D})"],
            &["print(\u{201C}hello\u{201D})"],
        );
        assert_eq!(
            apply("print(\"hi\")\n", &[h]).unwrap(),
            "print(\"hello\")\n"
        );
    }

    #[test]
    fn explains_a_miss_and_refuses_repeats_and_overlaps() {
        let err = apply(
            "fn a() {\n    one\n}\n",
            &[hunk(&["fn a() {", "    two", "}"], &[])],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("lines 1-3") && err.contains("line 2 of the hunk"),
            "{err}"
        );
        let err = apply("abc\n", &[hunk(&["zzz"], &[])]).unwrap_err();
        assert!(err.to_string().contains("none of its 1 old lines"), "{err}");
        let h = hunk(&["x", "a"], &["x", "c"]);
        let err = apply("x\na\ny\n", &[h.clone(), h]).unwrap_err();
        assert!(err.to_string().contains("repeats hunk 1"), "{err}");
        let err = apply_hunks(
            "f",
            "a\nb\nc\n",
            &[hunk(&["a", "b"], &["x"]), hunk(&["b", "c"], &["y"])],
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("overlaps hunk 1"), "{err}");
    }

    #[test]
    fn inserts_into_empty_files_at_hints_and_after_anchors() {
        assert_eq!(apply("", &[hunk(&[], &["new"])]).unwrap(), "new\n");
        let mut h = hunk(&[], &["mid"]);
        h.old_start = Some(1);
        assert_eq!(apply("a\nb\n", &[h]).unwrap(), "a\nmid\nb\n");
        assert!(apply("a\n", &[hunk(&[], &["x"])]).is_err());
        let mut anchored = hunk(&["    x = 1"], &["    x = 2"]);
        anchored.anchor = Some("def g():".into());
        let file = "def f():\n    x = 1\ndef g():\n    x = 1\n";
        assert_eq!(
            apply(file, &[anchored]).unwrap(),
            "def f():\n    x = 1\ndef g():\n    x = 2\n"
        );
    }
}
