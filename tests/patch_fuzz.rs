//! Differential fuzz test of the edit engine: random files and random edits, the same edit rendered
//! in every supported format (unified diff, `*** Begin Patch` envelope, SEARCH/REPLACE blocks with
//! and without fences, Aider's `<source>` fence among them) with the drift models introduce
//! (trailing whitespace, uniform re-indentation, smart quotes, CRLF patches, stale line numbers).
//! Every rendering must either apply to exactly the intended file or be refused: never anything else.
//!
//! `cargo test --test patch_fuzz` runs 3,000 cases; `AGENT_PATCH_FUZZ_CASES=200000 cargo test --release
//! --test patch_fuzz -- --nocapture` runs the large one and prints its tally (docs/benchmarks.md).

use std::collections::BTreeMap;

use agent::patch::{apply_hunks, parse_any};
use similar::{ChangeTag, TextDiff};

/// A small deterministic generator (splitmix64): the same seed gives the same cases on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "x = 1",
    "return x",
    "say(\"hi\")",
    "if a:",
    "else:",
    "}",
    "",
    "total += n",
    "call(it's)",
    "log('done')",
];

/// A file of 3-30 lines; half of them drawn from a small vocabulary (so lines repeat and hunks are
/// often ambiguous), half unique.
fn random_file(rng: &mut Rng) -> Vec<String> {
    let n = 3 + rng.below(28);
    (0..n)
        .map(|i| {
            let indent = "    ".repeat(rng.below(3));
            if rng.below(2) == 0 {
                let word = rng.pick(WORDS);
                if word.is_empty() {
                    String::new()
                } else {
                    format!("{indent}{word}")
                }
            } else {
                format!("{indent}line_{i}_{}", rng.below(1000))
            }
        })
        .collect()
}

/// The file after 1-3 random changes: lines replaced, removed, or inserted.
fn random_edit(rng: &mut Rng, old: &[String]) -> Vec<String> {
    let mut new = old.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(new.len() + 1);
        let indent = "    ".repeat(rng.below(3));
        let fresh = format!("{indent}new_{}(\"q\")", rng.below(10_000));
        match rng.below(3) {
            0 if at < new.len() => new[at] = fresh,
            1 if at < new.len() && new.len() > 1 => {
                new.remove(at);
            }
            _ => new.insert(at, fresh),
        }
    }
    new
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Format {
    Unified,
    Envelope,
    SearchReplace,
    SearchReplaceFenced,
    SearchReplaceSourceTag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Drift {
    None,
    TrailingSpaces,
    Reindent,
    SmartQuotes,
    CrlfPatch,
    StaleLineNumbers,
}

const FORMATS: [Format; 5] = [
    Format::Unified,
    Format::Envelope,
    Format::SearchReplace,
    Format::SearchReplaceFenced,
    Format::SearchReplaceSourceTag,
];
const DRIFTS: [Drift; 6] = [
    Drift::None,
    Drift::TrailingSpaces,
    Drift::Reindent,
    Drift::SmartQuotes,
    Drift::CrlfPatch,
    Drift::StaleLineNumbers,
];

/// One line of a hunk as the model would copy it (`copied`: a context or removed line, which drift
/// touches; added lines only get re-indented).
fn drifted(line: &str, drift: Drift, copied: bool) -> String {
    match drift {
        Drift::TrailingSpaces if copied && !line.is_empty() => format!("{line}  "),
        Drift::Reindent if !line.is_empty() => format!("  {line}"),
        Drift::SmartQuotes if copied => line.replace('"', "\u{201C}"),
        _ => line.to_string(),
    }
}

fn render(format: Format, drift: Drift, old: &str, new: &str, rng: &mut Rng) -> String {
    let diff = TextDiff::from_lines(old, new);
    let mut text = String::new();
    let groups = diff.grouped_ops(3);
    match format {
        Format::Unified => text.push_str("--- a/f.py\n+++ b/f.py\n"),
        Format::Envelope => text.push_str("*** Begin Patch\n*** Update File: f.py\n"),
        _ => {}
    }
    for ops in &groups {
        let changes: Vec<(ChangeTag, String)> = ops
            .iter()
            .flat_map(|op| diff.iter_changes(op))
            .map(|c| {
                let line = c.value().trim_end_matches(['\n', '\r']).to_string();
                (c.tag(), line)
            })
            .collect();
        let line = |(tag, l): &(ChangeTag, String)| drifted(l, drift, *tag != ChangeTag::Insert);
        match format {
            Format::Unified | Format::Envelope => {
                if format == Format::Unified {
                    let first = ops[0].old_range().start + 1;
                    let shift = if drift == Drift::StaleLineNumbers {
                        rng.below(7)
                    } else {
                        0
                    };
                    text.push_str(&format!(
                        "@@ -{},1 +{},1 @@\n",
                        first + shift,
                        first + shift
                    ));
                } else {
                    text.push_str("@@\n");
                }
                for change in &changes {
                    let marker = match change.0 {
                        ChangeTag::Equal => ' ',
                        ChangeTag::Delete => '-',
                        ChangeTag::Insert => '+',
                    };
                    text.push_str(&format!("{marker}{}\n", line(change)));
                }
            }
            _ => {
                let side = |keep: ChangeTag| -> String {
                    changes
                        .iter()
                        .filter(|(t, _)| *t == ChangeTag::Equal || *t == keep)
                        .map(|c| format!("{}\n", line(c)))
                        .collect()
                };
                let (search, replace) = (side(ChangeTag::Delete), side(ChangeTag::Insert));
                let (open, close) = match format {
                    Format::SearchReplaceFenced => ("```python\n", "```\n"),
                    Format::SearchReplaceSourceTag => ("<source>python\n", "</source>\n"),
                    _ => ("", ""),
                };
                text.push_str(&format!(
                    "f.py\n{open}<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n{close}\n"
                ));
            }
        }
    }
    if format == Format::Envelope {
        text.push_str("*** End Patch\n");
    }
    if drift == Drift::CrlfPatch {
        text = text.replace('\n', "\r\n");
    }
    text
}

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    applied: usize,
    refused: usize,
    wrong: usize,
}

fn join(lines: &[String], ending: &str, final_newline: bool) -> String {
    let mut text = lines.join(ending);
    if final_newline && !lines.is_empty() {
        text.push_str(ending);
    }
    text
}

#[test]
fn every_rendering_applies_exactly_or_is_refused() {
    let cases: usize = std::env::var("AGENT_PATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut rng = Rng(0x5EED_2026_1205);
    let mut tally: BTreeMap<(Format, Drift), Tally> = BTreeMap::new();
    let mut wrong = Vec::new();
    for _ in 0..cases {
        let old_lines = random_file(&mut rng);
        let new_lines = random_edit(&mut rng, &old_lines);
        if old_lines == new_lines {
            continue;
        }
        let ending = *rng.pick(&["\n", "\n", "\r\n", "\r"]);
        // A file without a final newline keeps that state; the envelope format cannot say so and
        // gives every file it edits one, so it only sees files that have one.
        let final_newline = rng.below(5) != 0;
        let format = *rng.pick(&FORMATS);
        // A last line that is empty and unterminated is not a line in bytes: such files have one.
        let ends_blank = |l: &[String]| l.last().is_some_and(|l| l.is_empty());
        let final_newline = final_newline
            || format == Format::Envelope
            || ends_blank(&old_lines)
            || ends_blank(&new_lines);
        let drift = *rng.pick(&DRIFTS);
        if drift == Drift::StaleLineNumbers && format != Format::Unified {
            continue;
        }
        let old = join(&old_lines, ending, final_newline);
        let intended = join(&new_lines, ending, final_newline);
        // The diff is rendered from the LF text; the file itself may use other line ends.
        let patch = render(
            format,
            drift,
            &join(&old_lines, "\n", true),
            &join(&new_lines, "\n", true),
            &mut rng,
        );
        let outcome = parse_any(&patch).and_then(|(_, files)| {
            let file = &files[0];
            apply_hunks("f.py", &old, &file.hunks, file.ordered)
        });
        let entry = tally.entry((format, drift)).or_default();
        match outcome {
            Ok(text) if text == intended => entry.applied += 1,
            Ok(text) => {
                entry.wrong += 1;
                if wrong.len() < 3 {
                    wrong.push(format!(
                        "{format:?}/{drift:?}\n--- file:\n{old:?}\n--- patch:\n{patch}\n--- got:\n{text:?}\n--- intended:\n{intended:?}"
                    ));
                }
            }
            Err(_) => entry.refused += 1,
        }
    }
    println!("| format | drift | applied | refused | wrong |\n|---|---|---|---|---|");
    let mut total = Tally::default();
    for ((format, drift), t) in &tally {
        println!(
            "| {format:?} | {drift:?} | {} | {} | {} |",
            t.applied, t.refused, t.wrong
        );
        total.applied += t.applied;
        total.refused += t.refused;
        total.wrong += t.wrong;
    }
    println!(
        "| all | | {} | {} | {} |",
        total.applied, total.refused, total.wrong
    );
    assert!(
        wrong.is_empty(),
        "wrong applications:\n{}",
        wrong.join("\n\n")
    );
    // Not vacuous: most renderings apply (the rest are ambiguous in these repetitive files).
    let rate = total.applied as f64 / (total.applied + total.refused).max(1) as f64;
    assert!(rate > 0.6, "only {:.1}% applied: {total:?}", rate * 100.0);
}
