//! The whole-file first try: before a step that must make the task's failing check pass works with
//! tools, the model is shown the step's short files whole and asked for the files it changes back
//! whole, in plain text, as Aider's "whole" edit format asks. On Qwen2.5-Coder-1.5B that format
//! solved 2 of 4 bug-fix tasks where the tool loop solved none (docs/benchmarks.md): a small model
//! copies a file with its fix more reliably than it writes a patch or a call around one.
//!
//! Only files the step named, that exist, are short and are not tests, may be written, and only
//! through the `write_file` tool (so through the same confinement as any edit). A try whose check
//! fails is kept for the next, which starts a new conversation from it: its files as that try left
//! them and the check's new failures (undone, the model was shown the old code and wrote the same
//! wrong fix again; asked again in the same conversation, Qwen2.5-Coder-1.5B sent its first reply
//! back byte for byte). The last failed try is rolled back, and the step goes on with tools as if
//! nothing had happened.

use std::collections::BTreeMap;

use serde_json::json;

use super::{verify, Check, Halt, PlanStep, Runner, StepEnd, StepRecord};
use crate::hostfs::Beneath;
use crate::model::Message;
use crate::patch::listing::{whole_or_merged, Listing};
use crate::protocol::Event;
use crate::tools::{ToolContext, ToolOutput};

/// Whole-file tries before the step works with tools.
const TRIES: usize = 2;
/// Files shown for editing: at most this many, each and together at most this long.
const MAX_FILES: usize = 3;
const MAX_BYTES: usize = 8000;
/// The reply's room: the editable files written back whole, and some words around them.
const REPLY_TOKENS: usize = 3072;
/// How much of a failing check's output the model is shown (its end, where the failures are).
const REPORT_CHARS: usize = 3000;

/// Explaining first, then writing the files, is the order Aider's whole-file prompt asks for too: the
/// model that wrote the file back at once copied the bug with it.
const SYSTEM: &str = "You are an expert software developer. You fix code so that a failing check passes.\n\
First say in a few sentences what is wrong in the code and how to fix it. \
Then give every file you change in full, as a file listing: the file's path alone on a line, a line ```, \
the whole new content of the file, and a line ```. \
A file listing holds every line of the file, not only the changed ones: no line numbers, nothing left out or elided with \"...\". \
Change only what the fix needs. Do not change the tests: they are right.";

/// A file the model may see or change, with its text.
struct Shown {
    path: String,
    text: String,
    editable: bool,
}

impl Runner<'_> {
    /// The whole-file tries for `step`, when it is the last step, the task's check fails as before
    /// the run, and the step names short files to change. `Some` when a try was accepted.
    pub(super) fn try_whole_files(
        &mut self,
        step: &PlanStep,
        number: usize,
        of: usize,
        check: &Check,
    ) -> Result<Option<StepEnd>, Halt> {
        if !self.config.whole_file_first {
            return Ok(None);
        }
        let Some((command, report)) = self.failing_now() else {
            return Ok(None);
        };
        let (command, report) = (command.to_string(), report.to_string());
        let files = self.shown_files(&step.files);
        if !files.iter().any(|f| f.editable) {
            return Ok(None);
        }
        let editable: Vec<String> = files
            .iter()
            .filter(|f| f.editable)
            .map(|f| f.path.clone())
            .collect();
        self.note(format!(
            "whole-file first try: asking for {} back whole",
            editable.join(", ")
        ));
        let mut conversation = format!("whole-{number}");
        let mut messages = vec![
            Message::system(SYSTEM),
            Message::user(request(&self.config.task, &command, &report, &files, false)),
        ];
        let listed = editable.join(", ");
        // The editable files as the last try left them.
        let mut current: BTreeMap<String, String> = files
            .iter()
            .filter(|f| f.editable)
            .map(|f| (f.path.clone(), f.text.clone()))
            .collect();
        let mut last_tried = None;
        for attempt in 1..=TRIES {
            let before = self.workspace.snapshot()?;
            let reply = self.ask_in_text(&conversation, &mut messages, REPLY_TOKENS)?;
            messages.push(Message::assistant(reply.content.clone(), Vec::new()));
            let written = files_in_reply(&reply.content, &editable);
            if written.is_empty() {
                self.note("whole-file first try: the reply held no file listing".into());
                messages.push(Message::user(format!(
                    "Your reply held no file listing of {listed}. Say what is wrong in the code, then give the fixed file as a file listing: its path alone on a line, a line ```, the whole file, a line ```."
                )));
                continue;
            }
            let mut partial = Vec::new();
            for (path, listing) in written {
                let original = current.get(&path).map_or("", String::as_str);
                let content = match whole_or_merged(original, &listing) {
                    Listing::Whole(content) => content,
                    Listing::Merged(content) => {
                        self.note(format!(
                            "whole-file first try: the listing of {path} held only some definitions; they replaced the file's own"
                        ));
                        content
                    }
                    Listing::Partial => {
                        partial.push(path);
                        continue;
                    }
                };
                self.write_whole(&path, &content)?;
                current.insert(path, content);
            }
            if !partial.is_empty() {
                let parts = partial.join(", ");
                self.note(format!(
                    "whole-file first try: the listing of {parts} was part of the file, not fitted to it; nothing written from it"
                ));
                if self.workspace.snapshot()? == before {
                    messages.push(Message::user(format!(
                        "Your listing of {parts} held only part of the file, and it could not be placed: nothing was written. Give the whole file, every line of it, as a file listing."
                    )));
                    continue;
                }
            }
            let tree = self.workspace.snapshot()?;
            if last_tried == Some(tree) {
                self.note("whole-file first try: the same files as the last try".into());
                continue;
            }
            last_tried = Some(tree);
            if tree == self.workspace.head_tree()? {
                self.note("whole-file first try: the files came back unchanged".into());
                messages.push(Message::user(format!(
                    "You wrote {listed} back unchanged, so the check `{command}` still fails as it did:\n{}\n\nThe bug is still in the code. Say which line is wrong and what it must be instead, then give the fixed file as a file listing.",
                    tail(&report, REPORT_CHARS)
                )));
                continue;
            }
            match self.run_check(check)? {
                None => {
                    let verified = format!("`{}` passed", check.command);
                    let summary = format!("rewrote {} whole", editable.join(", "));
                    let commit = self.commit_step(step, number, of, &summary, &verified)?;
                    self.guard.progress();
                    return Ok(Some(StepEnd::Accepted(StepRecord {
                        step: number,
                        title: step.title.clone(),
                        summary,
                        commit,
                        check: verified,
                    })));
                }
                Some(failure) if attempt < TRIES => {
                    let now: Vec<Shown> = files
                        .iter()
                        .map(|f| Shown {
                            path: f.path.clone(),
                            text: current.get(&f.path).unwrap_or(&f.text).clone(),
                            editable: f.editable,
                        })
                        .collect();
                    conversation = format!("whole-{number}-{}", attempt + 1);
                    messages = vec![
                        Message::system(SYSTEM),
                        Message::user(request(&self.config.task, &command, &failure, &now, true)),
                    ];
                }
                Some(_) => {}
            }
        }
        if self.workspace.snapshot()? != self.workspace.head_tree()? {
            self.roll_back(number)?;
        }
        self.note("whole-file first try: not accepted; the step goes on with tools".into());
        Ok(None)
    }

    /// The step's files that exist as short text files: tests to read, the rest to change.
    fn shown_files(&self, files: &[String]) -> Vec<Shown> {
        let Ok(fs) = Beneath::open(&self.root) else {
            return Vec::new();
        };
        let mut shown: Vec<Shown> = Vec::new();
        let mut left = MAX_BYTES;
        for path in files {
            let Ok(rel) = crate::hostfs::relative(path) else {
                continue;
            };
            let Ok(bytes) = fs.read(&rel, left as u64 + 1) else {
                continue;
            };
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            if text.len() > left || shown.iter().any(|s| s.path == *path) {
                continue;
            }
            left -= text.len();
            shown.push(Shown {
                editable: !verify::is_test_file(path),
                path: path.clone(),
                text,
            });
            if shown.len() == MAX_FILES {
                break;
            }
        }
        shown
    }

    /// Write `content` to `path` through the `write_file` tool, reported as a call of it.
    fn write_whole(&mut self, path: &str, content: &str) -> Result<(), Halt> {
        let turn = self.spent.turns;
        let arguments = json!({"path": path, "content": content});
        self.reporter.event(&Event::ToolCall {
            turn,
            name: "write_file".into(),
            arguments: arguments.clone(),
        });
        let ctx = ToolContext {
            root: &self.root,
            sandbox: self.sandbox,
            command_timeout: self.config.command_timeout,
            output_limit: self.config.output_limit,
            command_env: &self.config.command_env,
        };
        let started = std::time::Instant::now();
        let (ok, output) = match self.config.tools.call(&ctx, "write_file", &arguments) {
            Ok(ToolOutput::Text(text)) => (true, text),
            Ok(ToolOutput::Finish(_)) => (true, String::new()),
            Err(e) => (false, format!("error: {e}")),
        };
        self.workspace_notes();
        self.reporter.event(&Event::ToolResult {
            turn,
            name: "write_file".into(),
            ok,
            output,
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
        Ok(())
    }
}

/// A try's request: the task, the failing check, the files to change and the tests to read. `again`:
/// the files to change hold an earlier try's fix, on which the check still fails.
fn request(task: &str, command: &str, report: &str, files: &[Shown], again: bool) -> String {
    let fails = match again {
        true => "A first fix was made (the files below hold it), and the check",
        false => "The check",
    };
    let mut text = format!(
        "Task: {}\n\n{fails} `{command}` fails:\n{}\n",
        task.trim(),
        tail(report, REPORT_CHARS)
    );
    for (editable, heading) in [
        (true, "Files you may change"),
        (false, "Tests, to read only (they are right)"),
    ] {
        let group: Vec<&Shown> = files.iter().filter(|f| f.editable == editable).collect();
        if group.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{heading}:\n"));
        for file in group {
            let body = file.text.trim_end_matches('\n');
            text.push_str(&format!("\n{}\n```\n{body}\n```\n", file.path));
        }
    }
    text.push_str(
        "\nFirst say what is wrong and how to fix it; then give each file you change as a file listing.",
    );
    text
}

/// The last `chars` characters of `text` (where a test run's failures are).
fn tail(text: &str, chars: usize) -> &str {
    let count = text.chars().count();
    match text.char_indices().nth(count.saturating_sub(chars)) {
        Some((at, _)) => &text[at..],
        None => text,
    }
}

/// The files a whole-file reply writes: each fenced block preceded by a line naming one of
/// `editable` (the path may be decorated as Markdown does: `**calc.py**`, `` `calc.py` ``, `# calc.py:`),
/// or, when only one file is editable, a block after a line that names no file. The last block for a
/// file wins; a block after a path not offered is ignored.
pub(super) fn files_in_reply(reply: &str, editable: &[String]) -> Vec<(String, String)> {
    let mut files = BTreeMap::new();
    // The path the line before a block names: `Some(None)` for a path not offered.
    let mut named: Option<Option<String>> = None;
    let mut lines = reply.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if !trimmed.starts_with("```") {
            if !trimmed.is_empty() {
                let bare = trimmed
                    .trim_start_matches('#')
                    .trim()
                    .trim_matches(|c: char| matches!(c, '*' | '`' | ':' | '"' | '\''))
                    .trim();
                let path_like = !bare.is_empty()
                    && !bare.contains(char::is_whitespace)
                    && (bare.contains('.') || bare.contains('/'));
                named = match editable.iter().find(|p| *p == bare) {
                    Some(path) => Some(Some(path.clone())),
                    None if path_like => Some(None),
                    None => None,
                };
            }
            continue;
        }
        let mut body = String::new();
        let mut closed = false;
        for inner in lines.by_ref() {
            if inner.trim() == "```" {
                closed = true;
                break;
            }
            body.push_str(inner);
            body.push('\n');
        }
        // A path written as a block of its own (```\ncalc.py\n```) names the next block.
        if let Some(path) = editable.iter().find(|p| body.trim() == p.as_str()) {
            named = Some(Some(path.clone()));
            continue;
        }
        let path = match named.take() {
            Some(named) => named,
            None => (editable.len() == 1).then(|| editable[0].clone()),
        };
        if let (Some(path), true) = (path, closed) {
            files.insert(path, body);
        }
    }
    files.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn files_are_read_from_blocks_after_their_paths() {
        let reply = "Here is the fix.\n\n**calc.py**\n```python\ndef add(a, b):\n    return a + b\n```\n\nutil.py:\n```\nX = 1\n```\n";
        assert_eq!(
            files_in_reply(reply, &paths(&["calc.py", "util.py"])),
            [
                (
                    "calc.py".to_string(),
                    "def add(a, b):\n    return a + b\n".to_string()
                ),
                ("util.py".to_string(), "X = 1\n".to_string())
            ]
        );
    }

    #[test]
    fn a_block_without_a_path_is_the_one_editable_file_and_nothing_else_is_written() {
        let one = paths(&["calc.py"]);
        assert_eq!(
            files_in_reply("```python\nx = 2\n```", &one),
            [("calc.py".to_string(), "x = 2\n".to_string())]
        );
        // Two files offered: a block that names none is ignored, and so is a path not offered.
        let two = paths(&["calc.py", "util.py"]);
        assert!(files_in_reply("```\nx = 2\n```", &two).is_empty());
        assert!(files_in_reply("calc_test.py\n```\nx = 2\n```", &two).is_empty());
        assert!(files_in_reply("../../etc/passwd\n```\nroot\n```", &one).is_empty());
        assert!(files_in_reply("calc_test.py\n```\nx = 2\n```", &one).is_empty());
        assert_eq!(
            files_in_reply("The fix:\n```\nx = 2\n```", &one),
            [("calc.py".to_string(), "x = 2\n".to_string())]
        );
        // A path fenced as a block of its own names the block after it.
        assert_eq!(
            files_in_reply("```\ncalc.py\n```\n```python\nx = 3\n```", &two),
            [("calc.py".to_string(), "x = 3\n".to_string())]
        );
        // An unclosed block (the reply was cut off) writes nothing.
        assert!(files_in_reply("calc.py\n```\nx = 2\n", &one).is_empty());
    }

    #[test]
    fn the_tail_of_a_report_is_cut_on_a_character_boundary() {
        assert_eq!(tail("ééé", 2), "éé");
        assert_eq!(tail("ab", 5), "ab");
    }
}
