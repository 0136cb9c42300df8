//! Small text helpers shared by every layer (a leaf: it imports nothing of the crate).

/// At most `max` bytes of `text`, cut on a character boundary, and how many bytes were left out.
pub fn head(text: &str, max: usize) -> (&str, usize) {
    let end = text.floor_char_boundary(max);
    (&text[..end], text.len() - end)
}

/// `output` of a command run in `root` with the paths beneath it made relative (`/tmp/agent-work-x/a.py`
/// → `a.py`, `root` itself → `.`): the model's tools take paths relative to the repository, and a
/// temporary directory's random name in a traceback would make the same failure read differently
/// from run to run (enough to change a small model's greedy reply).
pub fn relative_to_root<'a>(output: &'a str, root: &std::path::Path) -> std::borrow::Cow<'a, str> {
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    if root.is_empty() || !output.contains(root) {
        return output.into();
    }
    let mut out = String::with_capacity(output.len());
    let mut rest = output;
    while let Some(at) = rest.find(root) {
        out.push_str(&rest[..at]);
        let after = &rest[at + root.len()..];
        match after.chars().next() {
            Some('/') => rest = &after[1..],
            // Another name that only starts the same (`/tmp/work` in `/tmp/work2`): left alone.
            Some(c) if c.is_alphanumeric() || "._-".contains(c) => {
                out.push_str(root);
                rest = after;
            }
            _ => {
                out.push('.');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.into()
}

/// `output` of a command run in `root` as the model is shown it: paths made relative
/// ([`relative_to_root`]) and the durations test runners print left out (`Ran 21 tests in 0.001s`,
/// cargo's `finished in 0.00s`, pytest's `in 0.12s`, go's `(0.00s)`): they differ from run to run and
/// say nothing about the code, yet a different digit is enough to change a small model's greedy reply.
pub fn steady_output(output: &str, root: &std::path::Path) -> String {
    static TIMINGS: std::sync::LazyLock<Vec<(regex::Regex, &'static str)>> =
        std::sync::LazyLock::new(|| {
            [
                // unittest: `Ran 21 tests in 0.001s`
                (r"(?m)^(Ran \d+ tests?) in \d+(\.\d+)?s$", "$1"),
                // cargo: `test result: ok. 3 passed; ...; finished in 0.00s`, `target(s) in 0.51s`
                (r"(?m)(test result: .*); finished in \d+(\.\d+)?s$", "$1"),
                (
                    r"(?m)^(\s*Finished .*target\(s\)) in \d+(\.\d+)?(s|m \d+s)$",
                    "$1",
                ),
                // pytest: `==== 1 failed, 2 passed in 0.12s ====`
                (
                    r"(?m)^(=+ .*) in \d+(\.\d+)?s( \(\d+:\d+:\d+\))? (=+)$",
                    "$1 $4",
                ),
                // go test: `--- FAIL: TestX (0.00s)`, `FAIL\tpkg\t0.005s`, `ok  \tpkg\t0.1s`
                (
                    r"(?m)^(\s*--- (?:FAIL|PASS|SKIP): \S+) \(\d+(\.\d+)?s\)$",
                    "$1",
                ),
                (r"(?m)^((?:ok|FAIL)\s+\S+)\s+\d+(\.\d+)?s$", "$1"),
                // jest: `Time:        1.234 s`
                (
                    r"(?m)^Time:\s+\d+(\.\d+)?\s*m?s(, estimated \d+ s)?$",
                    "Time: -",
                ),
            ]
            .into_iter()
            .filter_map(|(pattern, with)| regex::Regex::new(pattern).ok().map(|re| (re, with)))
            .collect()
        });
    let mut text = relative_to_root(output, root).into_owned();
    for (pattern, with) in TIMINGS.iter() {
        if let std::borrow::Cow::Owned(replaced) = pattern.replace_all(&text, *with) {
            text = replaced;
        }
    }
    text
}

/// The first non-blank line of `text`, trimmed and shortened to `max` characters (with `…`).
pub fn first_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// The agent shows files with each line's number in front: `{n:>width}| {line}` (`read_file`, a
/// step's brief), under a header like `calc.py (lines 1-21 of 21):`. Small models copy those
/// numbers into what they write. `text` without them, when every line after an optional copied
/// header carries one and the numbers count up by one (two lines at least); None when `text` does
/// not look like a copied display.
pub fn without_display_numbers(text: &str) -> Option<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.first().is_some_and(|l| is_display_header(l)) {
        lines.remove(0);
    }
    if lines.len() < 2 {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut expected = None;
    for line in &lines {
        let (n, rest) = display_number(line)?;
        if expected.is_some_and(|e| e != n) {
            return None;
        }
        expected = Some(n + 1);
        out.push_str(rest);
        out.push('\n');
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    Some(out)
}

/// A patch whose removed and context lines all carry a copied display number (`-13|     x = 1`),
/// without them (added lines lose theirs too, where they have one); None when some removed or
/// context line has none, or there is no such line.
pub fn patch_without_display_numbers(patch: &str) -> Option<String> {
    let is_header = |l: &str| {
        [
            "---", "+++", "@@", "***", "diff ", "<<<<<<<", "=======", ">>>>>>>",
        ]
        .iter()
        .any(|h| l.starts_with(h))
    };
    let mut numbered = 0;
    let mut out = String::with_capacity(patch.len());
    for line in patch.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let marker = body.chars().next();
        match marker {
            Some(m @ ('+' | '-' | ' ')) if !is_header(body) => match display_number(&body[1..]) {
                Some((_, rest)) => {
                    numbered += 1;
                    out.push(m);
                    out.push_str(rest);
                    out.push_str(&line[body.len()..]);
                }
                None if m == '+' => out.push_str(line),
                None => return None,
            },
            _ => out.push_str(line),
        }
    }
    (numbered > 0).then_some(out)
}

/// `13| text` (spaces before the number allowed) → (13, `text`).
fn display_number(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    let digits = trimmed.len()
        - trimmed
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    if digits == 0 || digits > 7 {
        return None;
    }
    let n = trimmed[..digits].parse().ok()?;
    let rest = trimmed[digits..].strip_prefix('|')?;
    Some((n, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// `calc.py (lines 1-21 of 21):`, perhaps behind a `#`.
fn is_display_header(line: &str) -> bool {
    let line = line.trim().trim_start_matches('#').trim();
    line.ends_with("):") && line.contains(" (lines ") && line.contains(" of ")
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn copied_display_numbers_are_removed_and_nothing_else_is() {
        let copied =
            "# calc.py (lines 1-3 of 3):\n 9| def add(a, b):\n10|     return a - b\n11| \n";
        assert_eq!(
            without_display_numbers(copied).unwrap(),
            "def add(a, b):\n    return a - b\n\n"
        );
        assert_eq!(without_display_numbers("1| a\n2| b").unwrap(), "a\nb");
        for not_copied in [
            "def f():\n    return 1\n",
            "1| a\n3| b\n",
            "1| only one line\n",
            "x = 1\n2| b\n",
            "| a | b |\n| 1 | 2 |\n",
        ] {
            assert_eq!(without_display_numbers(not_copied), None, "{not_copied:?}");
        }
        let patch = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n 1| def add(a, b):\n-2|     return a - b\n+    return a + b\n";
        assert_eq!(
            patch_without_display_numbers(patch).unwrap(),
            "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
        );
        let plain =
            "--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-    return a - b\n+    return a + b\n";
        assert_eq!(patch_without_display_numbers(plain), None);
        let mixed = "@@ -1,2 +1,2 @@\n 1| def add(a, b):\n-    return a - b\n+    return a + b\n";
        assert_eq!(patch_without_display_numbers(mixed), None);
    }
}

#[cfg(test)]
mod relative_tests {
    use super::*;

    #[test]
    fn paths_beneath_the_root_are_made_relative_and_others_left_alone() {
        let root = std::path::Path::new("/tmp/agent-work-x1");
        let output =
            "  File \"/tmp/agent-work-x1/triangle_test.py\", line 50\ncwd: /tmp/agent-work-x1\n\
                      other: /tmp/agent-work-x12/a.py /tmp/agent-work-x1.bak '/tmp/agent-work-x1'";
        assert_eq!(
            relative_to_root(output, root),
            "  File \"triangle_test.py\", line 50\ncwd: .\n\
             other: /tmp/agent-work-x12/a.py /tmp/agent-work-x1.bak '.'"
        );
        assert_eq!(relative_to_root("no paths", root), "no paths");
    }

    #[test]
    fn steady_output_drops_test_runners_durations_and_keeps_the_rest() {
        let root = std::path::Path::new("/tmp/agent-work-x1");
        let output = "F.\nFAIL: test_x (/tmp/agent-work-x1/a_test.py)\nAssertionError: 0.5s != 1.5s\n\
            ----------------------------------------------------------------------\n\
            Ran 21 tests in 0.001s\n\nFAILED (failures=1)\n\
            test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.03s\n\
            \u{20}   Finished `test` profile [unoptimized + debuginfo] target(s) in 1m 02s\n\
            ===== 1 failed, 2 passed in 0.12s =====\n\
            --- FAIL: TestAdd (0.00s)\nFAIL\texample.com/calc\t0.005s\n\
            Time:        1.234 s\n";
        assert_eq!(
            steady_output(output, root),
            "F.\nFAIL: test_x (a_test.py)\nAssertionError: 0.5s != 1.5s\n\
             ----------------------------------------------------------------------\n\
             Ran 21 tests\n\nFAILED (failures=1)\n\
             test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n\
             \u{20}   Finished `test` profile [unoptimized + debuginfo] target(s)\n\
             ===== 1 failed, 2 passed =====\n\
             --- FAIL: TestAdd\nFAIL\texample.com/calc\n\
             Time: -\n"
        );
    }
}
