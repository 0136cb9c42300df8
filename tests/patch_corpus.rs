//! The edit-engine corpus benchmark: every real edit in ../shared/eval (stub → reference solution),
//! rendered in the three patch formats, with the drift models introduce. Reports, per format and
//! drift, how many applied correctly, were refused, or applied wrongly — and fails if any applied
//! wrongly, or if fewer than 99% of the tolerable drifts applied correctly.
//!
//! Run: `cargo test --test patch_corpus -- --nocapture` (prints the table; see docs/benchmarks.md).

mod common;

use std::collections::BTreeMap;

use agent::patch::{apply_hunks, parse_any};
use similar::{ChangeTag, TextDiff};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Format {
    Unified,
    Envelope,
    SearchReplace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Drift {
    None,
    StaleLineNumbers,
    MissingLineNumbers,
    TrailingSpaces,
    IndentShift,
    SpacesToTabs,
    SmartQuotes,
    Crlf,
    Fenced,
    /// A blank context line dropped (or, in a hunk without one, a blank line added to the context).
    BlankContextLines,
    // Not tolerable: information is lost or doubled; refusing is the right answer.
    DroppedContextLine,
    DuplicatedHunk,
}

impl Drift {
    const ALL: [Drift; 12] = [
        Drift::None,
        Drift::StaleLineNumbers,
        Drift::MissingLineNumbers,
        Drift::TrailingSpaces,
        Drift::IndentShift,
        Drift::SpacesToTabs,
        Drift::SmartQuotes,
        Drift::Crlf,
        Drift::Fenced,
        Drift::BlankContextLines,
        Drift::DroppedContextLine,
        Drift::DuplicatedHunk,
    ];
    fn tolerable(self) -> bool {
        !matches!(self, Drift::DroppedContextLine | Drift::DuplicatedHunk)
    }
    fn applies_to(self, format: Format) -> bool {
        !matches!(self, Drift::StaleLineNumbers | Drift::MissingLineNumbers)
            || format == Format::Unified
    }
}

/// A hunk: its start lines and its (tag, text, ends-without-newline) lines.
#[derive(Clone)]
struct Group {
    old_start: usize,
    new_start: usize,
    lines: Vec<(ChangeTag, String, bool)>,
}

fn groups(old: &str, new: &str) -> Vec<Group> {
    let diff = TextDiff::from_lines(old, new);
    diff.grouped_ops(3)
        .iter()
        .map(|ops| Group {
            old_start: ops.first().map_or(0, |o| o.old_range().start),
            new_start: ops.first().map_or(0, |o| o.new_range().start),
            lines: ops
                .iter()
                .flat_map(|op| diff.iter_changes(op))
                .map(|c| {
                    let text = c.value().trim_end_matches(['\n', '\r']).to_string();
                    (c.tag(), text, !c.value().ends_with('\n'))
                })
                .collect(),
        })
        .collect()
}

/// Apply a drift to one hunk body line (without its marker).
fn drift_line(drift: Drift, line: &str, tag: ChangeTag) -> String {
    match drift {
        Drift::TrailingSpaces if tag != ChangeTag::Insert => format!("{line}  "),
        Drift::IndentShift if !line.is_empty() => format!("    {line}"),
        Drift::SpacesToTabs => {
            let spaces = line.len() - line.trim_start_matches(' ').len();
            format!(
                "{}{}",
                "\t".repeat(spaces / 4),
                &line[spaces - spaces % 4..]
            )
        }
        Drift::SmartQuotes => {
            let mut open = true;
            line.chars()
                .map(|c| match c {
                    '"' => {
                        open = !open;
                        if open {
                            '\u{201D}'
                        } else {
                            '\u{201C}'
                        }
                    }
                    '\'' => '\u{2019}',
                    other => other,
                })
                .collect()
        }
        _ => line.to_string(),
    }
}

fn render(format: Format, path: &str, old: Option<&str>, new: &str, drift: Drift) -> String {
    let mut groups = groups(old.unwrap_or(""), new);
    if drift == Drift::DroppedContextLine {
        // A line skipped while copying context: one with context on both sides. (Dropping a line that
        // separates a removal from an addition yields another self-consistent patch with a different
        // meaning, which no engine can tell from the intended one; it is not measured.)
        for g in &mut groups {
            let equal = |i: usize| {
                g.lines
                    .get(i)
                    .is_some_and(|(t, _, _)| *t == ChangeTag::Equal)
            };
            if let Some(i) = (1..g.lines.len()).find(|&i| equal(i - 1) && equal(i) && equal(i + 1))
            {
                g.lines.remove(i);
            }
        }
    }
    if drift == Drift::BlankContextLines {
        // As models copy context: one blank line of two between functions, or one more.
        for g in &mut groups {
            let equal = |i: usize| {
                g.lines
                    .get(i)
                    .is_some_and(|(t, _, _)| *t == ChangeTag::Equal)
            };
            let blank = |i: usize| g.lines[i].1.trim().is_empty();
            let inner = (1..g.lines.len()).filter(|&i| equal(i - 1) && equal(i) && equal(i + 1));
            match inner.clone().find(|&i| blank(i)) {
                Some(i) => {
                    g.lines.remove(i);
                }
                None => {
                    if let Some(i) = inner.clone().next() {
                        g.lines.insert(i, (ChangeTag::Equal, String::new(), false));
                    }
                }
            }
        }
    }
    if drift == Drift::DuplicatedHunk {
        if let Some(first) = groups.first().cloned() {
            groups.insert(1, first);
        }
    }
    let body = |g: &Group| -> String {
        let mut out = String::new();
        for (tag, line, no_newline) in &g.lines {
            let marker = match tag {
                ChangeTag::Equal => ' ',
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
            };
            out.push_str(&format!("{marker}{}\n", drift_line(drift, line, *tag)));
            if *no_newline {
                out.push_str("\\ No newline at end of file\n");
            }
        }
        out
    };
    let count = |g: &Group, skip: ChangeTag| g.lines.iter().filter(|(t, _, _)| *t != skip).count();
    let mut text = String::new();
    match format {
        Format::Unified => {
            let from = if old.is_some() {
                format!("a/{path}")
            } else {
                "/dev/null".into()
            };
            text.push_str(&format!("--- {from}\n+++ b/{path}\n"));
            for g in &groups {
                let shift = if drift == Drift::StaleLineNumbers {
                    7
                } else {
                    0
                };
                if drift == Drift::MissingLineNumbers {
                    text.push_str("@@\n");
                } else {
                    text.push_str(&format!(
                        "@@ -{},{} +{},{} @@\n",
                        g.old_start + 1 + shift,
                        count(g, ChangeTag::Insert),
                        g.new_start + 1 + shift,
                        count(g, ChangeTag::Delete)
                    ));
                }
                text.push_str(&body(g));
            }
        }
        Format::Envelope => {
            text.push_str("*** Begin Patch\n");
            let verb = if old.is_some() { "Update" } else { "Add" };
            text.push_str(&format!("*** {verb} File: {path}\n"));
            for g in &groups {
                if old.is_some() {
                    text.push_str("@@\n");
                }
                text.push_str(&body(g).replace("\\ No newline at end of file\n", ""));
            }
            text.push_str("*** End Patch\n");
        }
        Format::SearchReplace => {
            for g in &groups {
                let side = |keep: ChangeTag| -> String {
                    g.lines
                        .iter()
                        .filter(|(t, _, _)| *t == ChangeTag::Equal || *t == keep)
                        .map(|(t, l, _)| format!("{}\n", drift_line(drift, l, *t)))
                        .collect()
                };
                let (search, replace) = (side(ChangeTag::Delete), side(ChangeTag::Insert));
                text.push_str(&format!("{path}\n```\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n\n"));
            }
        }
    }
    match drift {
        Drift::Crlf => text.replace('\n', "\r\n"),
        Drift::Fenced => format!("Here is the change:\n\n```diff\n{text}```\n"),
        _ => text,
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    correct: usize,
    refused: usize,
    wrong: usize,
}

fn apply(patch: &str, old: Option<&str>) -> Option<String> {
    let (_, files) = parse_any(patch).ok()?;
    let file = files.first()?;
    apply_hunks("f", old.unwrap_or(""), &file.hunks, file.ordered).ok()
}

#[test]
fn corpus_of_real_edits_applies_correctly_or_is_refused() {
    let mut tallies: BTreeMap<(Format, Drift), Tally> = BTreeMap::new();
    let mut wrong_examples = Vec::new();
    let mut edits = 0;
    for file in ["exercism-rust.jsonl", "exercism-python.jsonl"] {
        for task in common::eval_tasks(file) {
            for (path, new) in task["reference"].as_object().unwrap() {
                let new = new.as_str().unwrap();
                let old = task["files"].get(path).and_then(|v| v.as_str());
                if old == Some(new) {
                    continue;
                }
                edits += 1;
                for format in [Format::Unified, Format::Envelope, Format::SearchReplace] {
                    if old.is_none() && format == Format::SearchReplace {
                        continue; // an empty SEARCH creates the file; covered by the parser's tests
                    }
                    for drift in Drift::ALL.into_iter().filter(|d| d.applies_to(format)) {
                        let patch = render(format, path, old, new, drift);
                        let tally = tallies.entry((format, drift)).or_default();
                        // Only unified diffs can say that a file ends without a newline.
                        let same = |result: &str| {
                            result == new
                                || (format != Format::Unified
                                    && result.trim_end_matches('\n') == new.trim_end_matches('\n'))
                        };
                        match apply(&patch, old) {
                            Some(result) if same(&result) => tally.correct += 1,
                            Some(_) => {
                                tally.wrong += 1;
                                wrong_examples
                                    .push(format!("{} {path} {format:?} {drift:?}", task["id"]));
                            }
                            None => tally.refused += 1,
                        }
                    }
                }
            }
        }
    }
    println!("\n{edits} real edits (stub -> reference) from ../shared/eval\n");
    println!("| format | drift | applied correctly | refused | applied wrongly |");
    println!("|---|---|---|---|---|");
    let (mut tolerable, mut tolerable_correct) = (0, 0);
    for ((format, drift), t) in &tallies {
        let total = t.correct + t.refused + t.wrong;
        let mark = if drift.tolerable() {
            ""
        } else {
            " (not tolerable)"
        };
        println!(
            "| {format:?} | {drift:?}{mark} | {} ({:.1}%) | {} | {} |",
            t.correct,
            100.0 * t.correct as f64 / total as f64,
            t.refused,
            t.wrong
        );
        if drift.tolerable() {
            tolerable += total;
            tolerable_correct += t.correct;
        }
    }
    let rate = 100.0 * tolerable_correct as f64 / tolerable as f64;
    println!("\ntolerable drift: {tolerable_correct}/{tolerable} applied correctly ({rate:.2}%)");
    assert!(
        wrong_examples.is_empty(),
        "applied wrongly: {wrong_examples:#?}"
    );
    assert!(
        rate >= 99.0,
        "only {rate:.2}% of tolerable drifts applied correctly"
    );
}
