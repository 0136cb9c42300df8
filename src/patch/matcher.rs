//! Locating hunks in a file and computing its new content.
//!
//! Each hunk's old lines are searched after the previous hunk, first exactly, then ignoring trailing
//! whitespace. The first level with any match decides: one match is applied, several are refused as
//! ambiguous. A file's line endings and final-newline state are preserved.

use super::{Hunk, PatchError};

/// Apply `hunks` in order to `original`, returning the new content.
pub fn apply_hunks(path: &str, original: &str, hunks: &[Hunk]) -> Result<String, PatchError> {
    let crlf = original.contains("\r\n");
    let final_newline = original.is_empty() || original.ends_with('\n');
    let mut lines: Vec<String> = original
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect();
    let mut cursor = 0usize;
    for (index, hunk) in hunks.iter().enumerate() {
        let number = index + 1;
        let at = if hunk.old.is_empty() {
            insertion_point(path, number, hunk, &lines, cursor)?
        } else {
            locate(path, number, hunk, &lines, cursor)?
        };
        lines.splice(at..at + hunk.old.len(), hunk.new.iter().cloned());
        cursor = at + hunk.new.len();
    }
    let ending = if crlf { "\r\n" } else { "\n" };
    let mut out = lines.join(ending);
    if final_newline && !lines.is_empty() {
        out.push_str(ending);
    }
    Ok(out)
}

/// A hunk without old lines inserts at its hinted line, or into an empty file.
fn insertion_point(
    path: &str,
    number: usize,
    hunk: &Hunk,
    lines: &[String],
    cursor: usize,
) -> Result<usize, PatchError> {
    if lines.is_empty() {
        return Ok(0);
    }
    match hunk.old_start {
        // `@@ -N,0` means "after line N".
        Some(after) if after <= lines.len() && after >= cursor => Ok(after),
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
    lines: &[String],
    cursor: usize,
) -> Result<usize, PatchError> {
    let levels: [fn(&str, &str) -> bool; 2] = [|a, b| a == b, |a, b| a.trim_end() == b.trim_end()];
    for same in levels {
        let matches: Vec<usize> = (cursor..=lines.len().saturating_sub(hunk.old.len()))
            .filter(|&start| {
                start + hunk.old.len() <= lines.len()
                    && hunk
                        .old
                        .iter()
                        .zip(&lines[start..])
                        .all(|(want, have)| same(want, have))
            })
            .collect();
        match matches.as_slice() {
            [] => continue,
            [only] => return Ok(*only),
            many => {
                // The header's line number breaks a tie when it points exactly at one candidate.
                if let Some(hint) = hunk
                    .old_start
                    .filter(|&h| many.contains(&(h.saturating_sub(1))))
                {
                    return Ok(hint - 1);
                }
                let shown: Vec<String> = many.iter().take(5).map(|m| (m + 1).to_string()).collect();
                return Err(PatchError::Ambiguous {
                    path: path.into(),
                    hunk: number,
                    count: many.len(),
                    lines: shown.join(", "),
                });
            }
        }
    }
    Err(PatchError::NoMatch {
        path: path.into(),
        hunk: number,
        detail: closest_region(hunk, lines, cursor),
    })
}

/// Describe where the hunk came closest to matching, to help the model fix its next try.
fn closest_region(hunk: &Hunk, lines: &[String], cursor: usize) -> String {
    let score = |start: usize| {
        hunk.old
            .iter()
            .zip(&lines[start..])
            .filter(|(w, h)| w.trim() == h.trim())
            .count()
    };
    let best = (cursor..lines.len()).max_by_key(|&s| (score(s), std::cmp::Reverse(s)));
    let Some(start) = best.filter(|&s| score(s) > 0) else {
        return format!(
            "none of its {} old lines (first: {:?}) occur in the file after line {cursor}; read the file again and copy the lines exactly",
            hunk.old.len(),
            hunk.old.first().map_or("", |s| s.as_str())
        );
    };
    let end = (start + hunk.old.len()).min(lines.len());
    let first_diff = hunk
        .old
        .iter()
        .zip(&lines[start..end])
        .position(|(w, h)| w != h);
    let mut detail = format!(
        "closest region is lines {}-{end}, where {} of {} old lines match",
        start + 1,
        score(start),
        hunk.old.len()
    );
    if let Some(i) = first_diff {
        let (want, have) = (&hunk.old[i], &lines[start + i]);
        let what = if want.trim() == have.trim() {
            "indentation differs"
        } else {
            "text differs"
        };
        detail.push_str(&format!(
            "; line {} of the hunk ({want:?}) vs file line {} ({have:?}): {what}",
            i + 1,
            start + i + 1
        ));
    } else if end - start < hunk.old.len() {
        detail.push_str("; the hunk runs past the end of the file");
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hunk(old: &[&str], new: &[&str]) -> Hunk {
        Hunk {
            old_start: None,
            old: old.iter().map(|s| s.to_string()).collect(),
            new: new.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn applies_in_order_and_keeps_crlf_and_missing_final_newline() {
        let original = "a\r\nb\r\nc\r\nb";
        let out = apply_hunks(
            "f",
            original,
            &[hunk(&["a", "b"], &["a", "B"]), hunk(&["b"], &["bee"])],
        )
        .unwrap();
        assert_eq!(out, "a\r\nB\r\nc\r\nbee");
    }

    #[test]
    fn tolerates_trailing_whitespace_but_refuses_ambiguity() {
        assert_eq!(
            apply_hunks("f", "x  \ny\n", &[hunk(&["x", "y"], &["z"])]).unwrap(),
            "z\n"
        );
        let err = apply_hunks("f", "x\nx\n", &[hunk(&["x"], &["y"])]).unwrap_err();
        assert!(
            matches!(err, PatchError::Ambiguous { count: 2, .. }),
            "{err}"
        );
        let mut hinted = hunk(&["x"], &["y"]);
        hinted.old_start = Some(2);
        assert_eq!(apply_hunks("f", "x\nx\n", &[hinted]).unwrap(), "x\ny\n");
    }

    #[test]
    fn explains_a_miss() {
        let err = apply_hunks(
            "f",
            "fn a() {\n    one\n}\n",
            &[hunk(&["fn a() {", "  one", "}"], &[])],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("lines 1-3") && text.contains("indentation differs"),
            "{text}"
        );
        let err = apply_hunks("f", "abc\n", &[hunk(&["zzz"], &[])]).unwrap_err();
        assert!(err.to_string().contains("none of its 1 old lines"), "{err}");
    }

    #[test]
    fn inserts_into_empty_files_and_at_hints() {
        assert_eq!(
            apply_hunks("f", "", &[hunk(&[], &["new"])]).unwrap(),
            "new\n"
        );
        let mut h = hunk(&[], &["mid"]);
        h.old_start = Some(1);
        assert_eq!(apply_hunks("f", "a\nb\n", &[h]).unwrap(), "a\nmid\nb\n");
        assert!(apply_hunks("f", "a\n", &[hunk(&[], &["x"])]).is_err());
    }
}
