//! Locating hunks in a file and computing its new content.
//!
//! Diff hunks (`ordered`) are located in the original file, each after the previous one (or, when
//! the text occurs only before it, there); SEARCH/REPLACE blocks are applied one after another to the
//! evolving content, as their authors expect. A hunk's old lines (context and removed) are compared
//! at each [`Level`] in turn; the first level with any match decides. One match is used; several are
//! refused as ambiguous, with every location shown, unless the diff's line number or an
//! `*** End of File` marker points at exactly one. Context lines keep the file's own text, added lines
//! are re-indented (and de-typographed) the way the match required, and every line keeps its own line
//! ending (`\n`, `\r\n` or a lone `\r`); added lines take the file's most common one.

use super::normalize::{fold_unicode, Level, Reindent};
use super::{Hunk, Line, PatchError};

/// A file's new content, and what the engine decided on its own that the caller should be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub text: String,
    /// E.g. "hunk 2 has no context lines: its lines were added at the end of the file".
    pub notes: Vec<String>,
}

/// Apply `hunks` to `original`, returning the new content, or an error naming the hunk that failed.
pub fn apply_hunks(
    path: &str,
    original: &str,
    hunks: &[Hunk],
    ordered: bool,
) -> Result<String, PatchError> {
    apply_hunks_noted(path, original, hunks, ordered).map(|a| a.text)
}

/// [`apply_hunks`], with the notes about choices the engine made (e.g. where a context-free addition went).
pub fn apply_hunks_noted(
    path: &str,
    original: &str,
    hunks: &[Hunk],
    ordered: bool,
) -> Result<Applied, PatchError> {
    for (index, hunk) in hunks.iter().enumerate() {
        if let Some(first) = hunks[..index].iter().position(|h| h == hunk) {
            return Err(PatchError::NoMatch {
                path: path.into(),
                hunk: index + 1,
                detail: format!(
                    "it repeats hunk {} exactly; give each change its own context lines",
                    first + 1
                ),
            });
        }
    }
    let mut notes = Vec::new();
    if ordered {
        let text = apply_pass(path, original, hunks, 1, true, &mut notes)?;
        return Ok(Applied { text, notes });
    }
    // SEARCH/REPLACE blocks: each sees what the blocks before it made (a later block may edit a line
    // an earlier one wrote); all-or-nothing still holds, since nothing is written until all applied.
    let mut text = original.to_string();
    for (index, hunk) in hunks.iter().enumerate() {
        let whole = apply_pass(
            path,
            &text,
            std::slice::from_ref(hunk),
            index + 1,
            false,
            &mut notes,
        );
        text = match whole {
            Ok(text) => text,
            // `...` elided code between the pieces: each piece must match on its own, in order.
            Err(e) if !hunk.elided.is_empty() => {
                let mut pieces = text.clone();
                for piece in &hunk.elided {
                    pieces = apply_pass(
                        path,
                        &pieces,
                        std::slice::from_ref(piece),
                        index + 1,
                        false,
                        &mut notes,
                    )
                    .map_err(|_| e.clone())?;
                }
                pieces
            }
            Err(e) => return Err(e),
        };
    }
    Ok(Applied { text, notes })
}

/// A text split into lines, each with the ending it had (`""` for a last line without one).
struct Lines<'a> {
    text: Vec<&'a str>,
    endings: Vec<&'a str>,
    /// The most common ending, for lines the patch adds (`\n` when the file has none).
    dominant: &'static str,
}

impl<'a> Lines<'a> {
    fn split(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let (mut lines, mut endings) = (Vec::new(), Vec::new());
        let (mut start, mut i) = (0, 0);
        let mut counts = [0usize; 3]; // \n, \r\n, \r
        while i < bytes.len() {
            let len = match bytes[i] {
                b'\n' => 1,
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => 2,
                b'\r' => 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            lines.push(&text[start..i]);
            let ending = &text[i..i + len];
            counts[match ending {
                "\n" => 0,
                "\r\n" => 1,
                _ => 2,
            }] += 1;
            endings.push(ending);
            i += len;
            start = i;
        }
        if start < bytes.len() {
            lines.push(&text[start..]);
            endings.push("");
        }
        let dominant = if counts[1] > counts[0] && counts[1] >= counts[2] {
            "\r\n"
        } else if counts[2] > counts[0] && counts[2] > counts[1] {
            "\r"
        } else {
            "\n"
        };
        Self {
            text: lines,
            endings,
            dominant,
        }
    }

    fn ends_with_newline(&self) -> bool {
        self.endings.last().is_none_or(|e| !e.is_empty())
    }
}

struct Placed {
    start: usize,
    len: usize,
    /// Each new line, with the ending it keeps from the file (`None`: the file's dominant one).
    replacement: Vec<(String, Option<String>)>,
    hunk: usize,
}

/// One pass over `original`: locate every hunk (after the previous one when `ordered`), then splice.
fn apply_pass(
    path: &str,
    original: &str,
    hunks: &[Hunk],
    first_number: usize,
    ordered: bool,
    notes: &mut Vec<String>,
) -> Result<String, PatchError> {
    let split = Lines::split(original);
    let lines = &split.text;
    let mut final_newline = original.is_empty() || split.ends_with_newline();
    let file = FileStyle::of(path, original, lines);
    let mut placed: Vec<Placed> = Vec::new();
    let mut cursor = 0usize;
    for (index, hunk) in hunks.iter().enumerate() {
        let number = first_number + index;
        let mut from = if ordered { cursor } else { 0 };
        if let Some(anchor) = hunk.anchor.as_deref().filter(|a| !a.trim().is_empty()) {
            from = find_anchor(lines, anchor, from).ok_or_else(|| PatchError::NoMatch {
                path: path.into(),
                hunk: number,
                detail: format!("its anchor line `@@ {anchor}` does not occur after line {from}"),
            })? + 1;
        }
        let (hunk, start, level) = match place(path, number, hunk, lines, from, notes) {
            Ok((start, level)) => (std::borrow::Cow::Borrowed(hunk), start, level),
            Err(e) => {
                // A blank first line in the old text is often the model's, not the file's; so is a
                // blank line of context more or less than the file has.
                let retry = without_leading_blank(hunk)
                    .and_then(|trimmed| {
                        place(path, number, &trimmed, lines, from, notes)
                            .ok()
                            .map(|(start, level)| (trimmed, start, level))
                    })
                    .or_else(|| {
                        let fitted = with_the_files_blank_lines(hunk, lines, from)?;
                        let (start, level) = place(path, number, &fitted, lines, from, notes).ok()?;
                        notes.push(format!(
                            "hunk {number}'s context had other blank lines than {path} has there: \
                             it was matched with blank lines ignored, and the file's blank lines kept"
                        ));
                        Some((fitted, start, level))
                    })
                    .or_else(|| {
                        let (fitted, at, wrote) = with_a_context_line_as_written(hunk, lines, from)?;
                        let (start, level) = place(path, number, &fitted, lines, from, notes).ok()?;
                        notes.push(format!(
                            "hunk {number}'s context line {wrote:?} is not what {path} has at line {} \
                             ({:?}); every other line matched there, so it was read as a change of that \
                             line to what the hunk shows",
                            at + 1,
                            lines[at]
                        ));
                        Some((fitted, start, level))
                    });
                match retry {
                    Some((hunk, start, level)) => (std::borrow::Cow::Owned(hunk), start, level),
                    None => return Err(e),
                }
            }
        };
        let old_len = hunk.old().len();
        if let Some(newline) = hunk
            .new_final_newline
            .filter(|_| start + old_len == lines.len())
        {
            final_newline = newline;
        }
        let region = Region {
            lines: &lines[start..start + old_len],
            endings: &split.endings[start..start + old_len],
            start,
            level,
        };
        let replacement = replacement(path, number, &hunk, &region, &file)?;
        placed.push(Placed {
            start,
            len: old_len,
            replacement,
            hunk: number,
        });
        cursor = cursor.max(start + old_len);
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
    // Splice: the file's own lines keep their endings; added lines take the file's usual one. Every
    // line is written with an ending, and the last one is taken off again for a file without a
    // final newline.
    let mut text = String::with_capacity(original.len() + 64);
    let mut last_ending = 0;
    let mut push = |text: &mut String, line: &str, ending: Option<&str>| {
        let ending = ending.filter(|e| !e.is_empty()).unwrap_or(split.dominant);
        text.push_str(line);
        text.push_str(ending);
        last_ending = ending.len();
    };
    let mut next = 0;
    for p in &placed {
        for (line, ending) in lines[next..p.start]
            .iter()
            .zip(&split.endings[next..p.start])
        {
            push(&mut text, line, Some(ending));
        }
        for (line, ending) in &p.replacement {
            push(&mut text, line, ending.as_deref());
        }
        next = p.start + p.len;
    }
    for (line, ending) in lines[next..].iter().zip(&split.endings[next..]) {
        push(&mut text, line, Some(ending));
    }
    if !final_newline {
        text.truncate(text.len() - last_ending);
    }
    Ok(text)
}

/// The hunk without a blank first old line (context or removed), when it has more lines to go by.
fn without_leading_blank(hunk: &Hunk) -> Option<Hunk> {
    let first = hunk.lines.first()?;
    let blank = matches!(first, Line::Context(s) | Line::Remove(s) if s.trim().is_empty());
    (blank && hunk.old().len() > 2).then(|| Hunk {
        lines: hunk.lines[1..].to_vec(),
        ..hunk.clone()
    })
}

/// `hunk` with one context line turned into a change of the file's line to that text, where every
/// other old line matches exactly one region of the file (whitespace aside) and the two versions of
/// that line are alike: a small model often writes a context line as it wants it to be (the fixed
/// `return a + b` as context around an unrelated change) rather than as the file has it. Returns the
/// fitted hunk, the file line it changes and the hunk's text for it. `None` for fewer than three old
/// lines, a removed line that does not match, more than one line off, more than one such region, or
/// lines too unlike to be versions of each other.
fn with_a_context_line_as_written(
    hunk: &Hunk,
    lines: &[&str],
    from: usize,
) -> Option<(Hunk, usize, String)> {
    let old = hunk.old();
    if old.len() < 3 || old.len() > lines.len() {
        return None;
    }
    let same = |a: &str, b: &str| a.trim() == b.trim();
    let off_by_one_line = |start: usize| -> Option<usize> {
        let mut off = old
            .iter()
            .zip(&lines[start..])
            .enumerate()
            .filter(|(_, (want, have))| !same(want, have))
            .map(|(i, _)| i);
        let first = off.next()?;
        off.next().is_none().then_some(first)
    };
    let last = lines.len() - old.len();
    let found = [from, 0].iter().find_map(|&scope| {
        let found: Vec<(usize, usize)> = (scope.min(last)..=last)
            .filter_map(|start| off_by_one_line(start).map(|i| (start, i)))
            .collect();
        (!found.is_empty()).then_some(found)
    })?;
    let [(start, i)] = found[..] else {
        return None;
    };
    let (wrote, have) = (old[i], lines[start + i]);
    let alike = similar::TextDiff::from_chars(wrote.trim(), have.trim()).ratio() >= 0.6;
    if !alike || old.iter().filter(|l| !l.trim().is_empty()).count() < 3 {
        return None;
    }
    // The i-th old line: only a context line may be read this way (a removed line that is not in the
    // file is a line the model misremembers, not one it rewrote).
    let index = hunk
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !matches!(l, Line::Add(_)))
        .nth(i)
        .map(|(index, _)| index)?;
    if !matches!(hunk.lines[index], Line::Context(_)) {
        return None;
    }
    let mut fitted = hunk.clone();
    fitted.lines.splice(
        index..=index,
        [Line::Remove(have.to_string()), Line::Add(wrote.to_string())],
    );
    Some((fitted, start + i, wrote.to_string()))
}

/// Where a hunk goes: its start line and the level its old lines matched at.
/// `hunk` with its context's blank lines replaced by the file's, where its old lines other than blank
/// ones match exactly one run of the file's non-blank lines (from `from` on, else anywhere): models
/// often drop or add a blank line of context (one of the two between Python functions). `None` where
/// that does not fit: no such unique run, fewer than two non-blank old lines, or a blank line the hunk
/// removes (its intent would be lost).
fn with_the_files_blank_lines(hunk: &Hunk, lines: &[&str], from: usize) -> Option<Hunk> {
    let blank = |s: &str| s.trim().is_empty();
    if hunk
        .lines
        .iter()
        .any(|l| matches!(l, Line::Remove(s) if blank(s)))
    {
        return None;
    }
    let wanted: Vec<&str> = hunk.old().into_iter().filter(|s| !blank(s)).collect();
    if wanted.len() < 2 {
        return None;
    }
    let filled: Vec<usize> = (0..lines.len()).filter(|&i| !blank(lines[i])).collect();
    let filled_text: Vec<&str> = filled.iter().map(|&i| lines[i]).collect();
    let first_after = filled
        .iter()
        .position(|&i| i >= from)
        .unwrap_or(filled.len());
    let found = [first_after, 0].iter().find_map(|&scope| {
        Level::ALL.iter().find_map(|&level| {
            let found = matches_at(&wanted, &filled_text, scope, level);
            (!found.is_empty()).then_some(found)
        })
    })?;
    let [at] = found.as_slice() else {
        return None;
    };
    // The file lines the non-blank old lines matched. Between two of them the hunk may have blank
    // context lines and added lines; the file's blank lines there replace the hunk's blank ones: one
    // for one where the counts agree, else in place of the hunk's one run of them. Where the hunk had
    // none there, added lines after a removed line replace it (the blank lines go after them). Any
    // other way, where the added lines go among the file's blank lines is a guess: not fitted.
    let matched = &filled[*at..*at + wanted.len()];
    let mut gaps: Vec<Vec<&Line>> = vec![Vec::new()];
    let mut olds: Vec<&Line> = Vec::new();
    for line in &hunk.lines {
        match line {
            Line::Context(s) | Line::Remove(s) if !blank(s) => {
                olds.push(line);
                gaps.push(Vec::new());
            }
            _ => gaps.last_mut().expect("never empty").push(line),
        }
    }
    let mut fitted = Vec::new();
    for (k, gap) in gaps.iter().enumerate() {
        let adds: Vec<Line> = gap
            .iter()
            .filter(|l| matches!(l, Line::Add(_)))
            .map(|l| (*l).clone())
            .collect();
        let file_blanks: Vec<Line> = match (k.checked_sub(1), matched.get(k)) {
            (Some(before), Some(&after)) => (matched[before] + 1..after)
                .map(|i| Line::Context(lines[i].to_string()))
                .collect(),
            // Before the first old line or after the last: the hunk's own lines, as they are
            // (leading and trailing blank context lines dropped; the file decides).
            _ => Vec::new(),
        };
        let hunk_blanks = gap.iter().filter(|l| !matches!(l, Line::Add(_))).count();
        // The hunk's blank context lines in this gap, if they form one run: where it starts.
        let run_start = gap.iter().position(|l| !matches!(l, Line::Add(_)));
        let one_run = run_start.is_some_and(|start| {
            gap[start..start + hunk_blanks]
                .iter()
                .all(|l| !matches!(l, Line::Add(_)))
        });
        let after_a_removal = k > 0 && matches!(olds[k - 1], Line::Remove(_));
        let same_count = hunk_blanks == file_blanks.len();
        if adds.is_empty() || file_blanks.is_empty() {
            fitted.extend(file_blanks);
            fitted.extend(adds);
        } else if same_count || one_run {
            // The file's blank lines where the hunk had its own (the same number, or one run).
            let mut file_blanks = file_blanks.into_iter();
            let mut placed = false;
            for line in gap {
                match line {
                    Line::Add(_) => fitted.push((*line).clone()),
                    _ if same_count => {
                        fitted.extend(file_blanks.next());
                    }
                    _ if !placed => {
                        fitted.extend(file_blanks.by_ref());
                        placed = true;
                    }
                    _ => {}
                }
            }
        } else if hunk_blanks == 0 && after_a_removal {
            // Added lines after a removed one replace it: the blank lines follow them.
            fitted.extend(adds);
            fitted.extend(file_blanks);
        } else {
            return None;
        }
        if let Some(old) = olds.get(k) {
            fitted.push((*old).clone());
        }
    }
    Some(Hunk {
        lines: fitted,
        old_start: None,
        ..hunk.clone()
    })
}

fn place(
    path: &str,
    number: usize,
    hunk: &Hunk,
    lines: &[&str],
    from: usize,
    notes: &mut Vec<String>,
) -> Result<(usize, Level), PatchError> {
    let old = hunk.old();
    if !old.is_empty() {
        return locate(path, number, hunk, &old, lines, from);
    }
    let start = if lines.is_empty() {
        0
    } else if hunk.anchor.is_some() {
        from
    } else if hunk.at_eof {
        lines.len()
    } else {
        match hunk.old_start {
            Some(after) if after <= lines.len() && after >= from => after,
            _ => {
                notes.push(format!(
                    "hunk {number} has no context lines to place it by: its lines were added at the end of the file"
                ));
                lines.len()
            }
        }
    };
    Ok((start, Level::Exact))
}

fn find_anchor(lines: &[&str], anchor: &str, from: usize) -> Option<usize> {
    Level::ALL.iter().find_map(|level| {
        let want = level.normalize(anchor);
        (from..lines.len()).find(|&i| level.normalize(lines[i]) == want)
    })
}

/// Every start at or after `from` where `old` matches at `level`.
fn matches_at(old: &[&str], lines: &[&str], from: usize, level: Level) -> Vec<usize> {
    if old.len() > lines.len() || from > lines.len() - old.len() {
        return Vec::new();
    }
    let want: Vec<_> = old.iter().map(|l| level.normalize(l)).collect();
    (from..=lines.len() - old.len())
        .filter(|&start| {
            want.iter()
                .zip(&lines[start..])
                .all(|(w, have)| *w == level.normalize(have))
        })
        .collect()
}

fn locate(
    path: &str,
    number: usize,
    hunk: &Hunk,
    old: &[&str],
    lines: &[&str],
    from: usize,
) -> Result<(usize, Level), PatchError> {
    // After the previous hunk first; a diff's hunks out of file order are then looked for from the
    // top (still only where they match once).
    let scopes: &[usize] = if from > 0 { &[from, 0] } else { &[0] };
    for &scope in scopes {
        for level in Level::ALL {
            let mut found = matches_at(old, lines, scope, level);
            if hunk.at_eof {
                // `*** End of File`: the hunk ends where the file does, when it can.
                let at_end: Vec<usize> = found
                    .iter()
                    .copied()
                    .filter(|s| s + old.len() == lines.len())
                    .collect();
                if !at_end.is_empty() {
                    found = at_end;
                }
            }
            match found.as_slice() {
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
                    return Err(ambiguous(path, number, many, old.len(), lines));
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

/// The refusal for a hunk that matches in several places: every place, with a few lines around it,
/// so the next try can add the context that tells them apart.
fn ambiguous(
    path: &str,
    number: usize,
    starts: &[usize],
    len: usize,
    lines: &[&str],
) -> PatchError {
    const SHOWN: usize = 5;
    const AROUND: usize = 2;
    let mut excerpts = String::new();
    for &start in starts.iter().take(SHOWN) {
        let end = (start + len).min(lines.len());
        excerpts.push_str(&format!("  at lines {}-{end}:\n", start + 1));
        let first = start.saturating_sub(AROUND);
        let last = (end + AROUND).min(lines.len());
        for (i, line) in lines.iter().enumerate().take(last).skip(first) {
            let mark = if (start..end).contains(&i) { '>' } else { ' ' };
            excerpts.push_str(&format!("  {mark}{:>5}| {line}\n", i + 1));
        }
    }
    if starts.len() > SHOWN {
        excerpts.push_str(&format!("  ... and {} more\n", starts.len() - SHOWN));
    }
    PatchError::Ambiguous {
        path: path.into(),
        hunk: number,
        count: starts.len(),
        lines: starts
            .iter()
            .map(|m| (m + 1).to_string())
            .collect::<Vec<_>>()
            .join(", "),
        excerpts,
    }
}

/// Where a hunk matched, and how loosely.
struct Region<'a> {
    lines: &'a [&'a str],
    endings: &'a [&'a str],
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

/// The lines that replace the matched region: the file's own context lines (with their endings), and
/// the hunk's added lines adjusted to the file the way the match required.
fn replacement(
    path: &str,
    number: usize,
    hunk: &Hunk,
    region: &Region<'_>,
    file: &FileStyle,
) -> Result<Vec<(String, Option<String>)>, PatchError> {
    // Only added lines are re-indented: a hunk that adds nothing (a pure deletion) needs no rule.
    let adds_text = hunk
        .lines
        .iter()
        .any(|l| matches!(l, Line::Add(s) if !s.trim().is_empty()));
    let reindent = if region.level >= Level::SurroundingWhitespace && adds_text {
        let pairs: Vec<(&str, &str)> = hunk
            .old()
            .into_iter()
            .zip(region.lines.iter().copied())
            .collect();
        Reindent::learn(&pairs).ok_or_else(|| PatchError::NoMatch {
            path: path.into(),
            hunk: number,
            detail: format!(
                "its lines match lines {}-{} except for indentation, which differs in a way its added lines cannot follow (one indentation of the hunk stands for two in the file); copy the indentation exactly",
                region.start + 1,
                region.start + region.lines.len()
            ),
        })?
    } else {
        Reindent::Same
    };
    let mut out = Vec::with_capacity(hunk.lines.len());
    let mut file_lines = region.lines.iter().zip(region.endings);
    for line in &hunk.lines {
        match line {
            Line::Context(_) => out.extend(
                file_lines
                    .next()
                    .map(|(l, e)| (l.to_string(), Some(e.to_string()))),
            ),
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
                    detail: format!(
                        "added line {text:?} cannot be re-indented the way its old lines were ({reindent:?}); copy the indentation exactly"
                    ),
                })?;
                out.push((file.conform(adjusted), None));
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
    fn a_blank_context_line_more_or_less_than_the_file_has_is_tolerated() {
        let file = "def add(a, b):\n    return a - b\n\n\ndef label(n):\n    return n\n";
        let fixed = "def add(a, b):\n    return a + b\n\n\ndef label(n):\n    return n\n";
        // What Qwen2.5-Coder-1.5B wrote: one blank line where the file has two.
        let one = hunk(
            &["def add(a, b):", "    return a - b", "", "def label(n):"],
            &["def add(a, b):", "    return a + b", "", "def label(n):"],
        );
        let applied = apply_hunks_noted("calc.py", file, &[one], true).unwrap();
        assert_eq!(applied.text, fixed);
        assert!(
            applied.notes.iter().any(|n| n.contains("blank lines")),
            "{:?}",
            applied.notes
        );
        // Three where the file has two, and none at all.
        for blanks in [3, 0] {
            let mut old = vec!["    return a - b"];
            let mut new = vec!["    return a + b"];
            old.extend(std::iter::repeat_n("", blanks));
            new.extend(std::iter::repeat_n("", blanks));
            old.push("def label(n):");
            new.push("def label(n):");
            assert_eq!(apply(file, &[hunk(&old, &new)]).unwrap(), fixed, "{blanks}");
        }
        // A hunk that removes a blank line means it: not matched loosely.
        let removes = hunk(
            &["    return a - b", "", "def label(n):"],
            &["    return a + b", "def label(n):"],
        );
        assert!(apply(file, &[removes]).is_err());
        // Ignoring blank lines must still find one place only.
        let twice = "x\n\ny\nx\ny\n";
        assert!(apply(twice, &[hunk(&["x", "", "", "y"], &["x", "z"])]).is_err());
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
            true,
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
        // No anchor at all: added at the end of the file, and the caller is told so.
        let applied = apply_hunks_noted("f", "a\n", &[hunk(&[], &["x"])], true).unwrap();
        assert_eq!(applied.text, "a\nx\n");
        assert!(applied.notes[0].contains("end of the file"), "{applied:?}");
        let mut anchored = hunk(&["    x = 1"], &["    x = 2"]);
        anchored.anchor = Some("def g():".into());
        let file = "def f():\n    x = 1\ndef g():\n    x = 1\n";
        assert_eq!(
            apply(file, &[anchored]).unwrap(),
            "def f():\n    x = 1\ndef g():\n    x = 2\n"
        );
    }

    #[test]
    fn search_replace_blocks_apply_in_order_to_the_evolving_text() {
        // The second block edits a line the first one wrote.
        let out = apply_hunks(
            "f",
            "a\nb\n",
            &[hunk(&["a"], &["a2"]), hunk(&["a2", "b"], &["a3", "b"])],
            false,
        )
        .unwrap();
        assert_eq!(out, "a3\nb\n");
    }

    #[test]
    fn out_of_order_diff_hunks_are_found_when_they_match_once() {
        let out = apply(
            "a\nb\nc\nd\n",
            &[hunk(&["c"], &["C"]), hunk(&["a"], &["A"])],
        )
        .unwrap();
        assert_eq!(out, "A\nb\nC\nd\n");
    }

    #[test]
    fn end_of_file_hunks_prefer_the_end() {
        let mut h = hunk(&["x"], &["y"]);
        h.at_eof = true;
        assert_eq!(apply("x\nm\nx\n", &[h.clone()]).unwrap(), "x\nm\ny\n");
        let mut add = hunk(&[], &["tail"]);
        add.at_eof = true;
        let applied = apply_hunks_noted("f", "a\nb\n", &[add], true).unwrap();
        assert_eq!(applied.text, "a\nb\ntail\n");
        assert!(applied.notes.is_empty());
    }

    #[test]
    fn every_line_keeps_its_own_ending() {
        // Lone CR (old Mac) files are lines too, and keep their convention.
        assert_eq!(
            apply("a\rb\rc\r", &[hunk(&["b"], &["B", "B2"])]).unwrap(),
            "a\rB\rB2\rc\r"
        );
        // Mixed endings: untouched lines keep theirs, added lines take the most common one.
        assert_eq!(
            apply("a\r\nb\nc\r\nd\r\n", &[hunk(&["b", "c"], &["b", "x", "c"])]).unwrap(),
            "a\r\nb\nx\r\nc\r\nd\r\n"
        );
        assert_eq!(apply("a\nb", &[hunk(&["b"], &["c"])]).unwrap(), "a\nc");
    }

    #[test]
    fn pure_deletions_with_uneven_indentation_apply() {
        let file = "def f():\n    a = 1\n        b = 2\n    c = 3\n";
        let h = hunk(&["a = 1", "  b = 2"], &[]);
        assert_eq!(apply(file, &[h]).unwrap(), "def f():\n    c = 3\n");
    }

    #[test]
    fn per_line_indentation_drift_is_mapped_back() {
        let file = "class A:\n    def f(self):\n        return 1\n";
        // Header kept, body de-indented by 2, and the replacement repeats the drift.
        let h = hunk(
            &["    def f(self):", "      return 1"],
            &["    def f(self):", "      x = 2", "      return x"],
        );
        assert_eq!(
            apply(file, &[h]).unwrap(),
            "class A:\n    def f(self):\n        x = 2\n        return x\n"
        );
        // An added line shallower than anything matched cannot be placed: refused.
        let h = hunk(
            &["    def f(self):", "      return 1"],
            &["  oops", "      return 1"],
        );
        assert!(apply(file, &[h]).is_err());
    }

    #[test]
    fn a_context_line_written_as_wanted_is_read_as_that_change_and_said() {
        // Qwen2.5-Coder-1.5B's patch for `add` (it returned `a - b`): the fix as context, around a
        // docstring "change" that changes nothing.
        let file = "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a - b\n\n\ndef label(n):\n    return f\"total: {n}\"\n";
        let doc = "    \"\"\"Return the sum of a and b.\"\"\"";
        let patch = Hunk {
            lines: vec![
                Line::Context("def add(a, b):".into()),
                Line::Remove(doc.into()),
                Line::Add(doc.into()),
                Line::Context("    return a + b".into()),
            ],
            ..Hunk::default()
        };
        let applied =
            apply_hunks_noted("calc.py", file, std::slice::from_ref(&patch), true).unwrap();
        assert_eq!(applied.text, file.replace("a - b", "a + b"));
        assert!(
            applied
                .notes
                .iter()
                .any(|n| n.contains("line 3") && n.contains("return a - b")),
            "{:?}",
            applied.notes
        );
        // Not when the line is a removed one, two lines are off, the lines are unalike, or the
        // region is not the only one.
        let mut removed = patch.clone();
        removed.lines[3] = Line::Remove("    return a + b".into());
        let mut two_off = patch.clone();
        two_off.lines[0] = Line::Context("def add(x, y):".into());
        let mut unlike = patch.clone();
        unlike.lines[3] = Line::Context("    raise NotImplementedError('nothing')".into());
        for hunk in [removed, two_off, unlike] {
            assert!(
                apply(file, std::slice::from_ref(&hunk)).is_err(),
                "{hunk:?}"
            );
        }
        let twice = format!("{file}\n\n{}", &file[..file.find("\n\n\n").unwrap() + 1]);
        assert!(apply(&twice, &[patch]).is_err());
    }

    #[test]
    fn ambiguity_shows_every_place_with_its_lines() {
        let err = apply(
            "fn a() {\n    x();\n}\nfn b() {\n    x();\n}\n",
            &[hunk(&["    x();"], &["    y();"])],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lines 2, 5"), "{err}");
        assert!(
            err.contains("1| fn a() {") && err.contains("4| fn b() {"),
            "{err}"
        );
    }

    #[test]
    fn a_blank_first_search_line_the_file_lacks_is_dropped() {
        let out = apply_hunks(
            "f",
            "a\nb\nc\n",
            &[hunk(&["", "a", "b"], &["", "a", "B"])],
            false,
        )
        .unwrap();
        assert_eq!(out, "a\nB\nc\n");
    }

    #[test]
    fn elided_blocks_apply_piece_by_piece() {
        let mut h = hunk(
            &["def a():", "    x = 1", "...", "    return x"],
            &["def a():", "    x = 2", "...", "    return x + 1"],
        );
        h.elided = vec![
            hunk(&["def a():", "    x = 1"], &["def a():", "    x = 2"]),
            hunk(&["    return x"], &["    return x + 1"]),
        ];
        let file = "def a():\n    x = 1\n    y = 3\n    return x\n";
        assert_eq!(
            apply_hunks("f", file, &[h], false).unwrap(),
            "def a():\n    x = 2\n    y = 3\n    return x + 1\n"
        );
    }
}
