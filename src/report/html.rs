//! A recorded run as one self-contained HTML page (`agent log RUN --html FILE`): the task, each plan
//! and revision, every step with its model turns, tool calls and results, checks and commits (diffs
//! coloured), tokens and time per step as a small chart, and the outcome.
//!
//! Everything in a run's log may be hostile (model output, file contents, command output, the task):
//! every piece of it is escaped, nothing is ever put into an attribute unescaped, and the page
//! carries a Content-Security-Policy that allows no script and no network at all (no external
//! assets exist to load). It never changes how the run went; it only reads events.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::protocol::{Event, Outcome};

/// Longest text shown per block; the rest stays in events.jsonl (the page says how much).
const MAX_BLOCK: usize = 40_000;

/// The page for `events`; `diffs` maps a commit id to its unified diff, when the commit could be read.
pub fn render(events: &[Event], diffs: &BTreeMap<String, String>) -> String {
    let mut page = Page::default();
    page.head(events);
    let segments = segments(events);
    for segment in &segments {
        page.segment(segment, diffs);
    }
    page.chart(&segments);
    page.finish()
}

#[derive(Default)]
struct Page {
    title: String,
    top: String,
    body: String,
}

impl Page {
    fn head(&mut self, events: &[Event]) {
        for event in events {
            if let Event::RunStarted {
                run_id,
                task_title,
                repo,
                branch,
                base,
                model,
                check,
                check_source,
                sandbox,
                dry_run,
                ..
            } = event
            {
                self.title = task_title.clone();
                let _ = write!(
                    self.top,
                    "<h1>{}</h1>\n<dl class=\"facts\">\n",
                    esc(task_title)
                );
                let check = match check {
                    Some(c) => format!("<code>{}</code> ({})", esc(c), esc(check_source)),
                    None => format!("none ({})", esc(check_source)),
                };
                let base = &short(base);
                let facts = [
                    ("run", format!("<code>{}</code>", esc(run_id))),
                    ("repository", esc(&repo.display().to_string())),
                    (
                        "branch",
                        format!(
                            "<code>{}</code> from <code>{}</code>",
                            esc(branch),
                            esc(base)
                        ),
                    ),
                    ("model", esc(model)),
                    ("check", check),
                    ("sandbox", esc(sandbox)),
                    (
                        "mode",
                        if *dry_run {
                            "dry run".into()
                        } else {
                            "run".into()
                        },
                    ),
                ];
                for (name, value) in facts {
                    let _ = writeln!(self.top, "<dt>{name}</dt><dd>{value}</dd>");
                }
                self.top.push_str("</dl>\n");
            }
        }
        if let Some(Event::Finished {
            outcome,
            summary,
            commits,
            turns,
            steps_accepted,
            steps_rejected,
            checks,
            tokens,
            elapsed_ms,
            unverified_patch,
            patch,
            ..
        }) = events
            .iter()
            .rev()
            .find(|e| matches!(e, Event::Finished { .. }))
        {
            let class = if *outcome == Outcome::Finished {
                "pass"
            } else {
                "fail"
            };
            let _ = write!(
                self.top,
                "<section class=\"outcome {class}\" id=\"outcome\"><h2>Outcome: {}</h2>\n<p>{}</p>\n\
                 <p>{turns} turns · {steps_accepted} steps accepted, {steps_rejected} rejected · {checks} checks · \
                 {tokens} tokens · {}</p>\n",
                esc(&format!("{outcome:?}")),
                esc(summary),
                seconds(*elapsed_ms)
            );
            if !commits.is_empty() {
                self.top.push_str("<p>Commits: ");
                for commit in commits {
                    let short = short(commit);
                    let _ = write!(
                        self.top,
                        "<a href=\"#commit-{}\"><code>{}</code></a> ",
                        esc(commit),
                        esc(&short)
                    );
                }
                self.top.push_str("</p>\n");
            }
            if let Some(path) = unverified_patch {
                let _ = writeln!(
                    self.top,
                    "<p>Unverified work saved as <code>{}</code>.</p>",
                    esc(&path.display().to_string())
                );
            }
            if let Some(patch) = patch.as_deref().filter(|p| !p.is_empty()) {
                let _ = writeln!(
                    self.top,
                    "<details open><summary>Proposed patch (dry run)</summary>{}</details>",
                    diff_block(patch)
                );
            }
            self.top.push_str("</section>\n");
        } else {
            self.top.push_str(
                "<section class=\"outcome fail\" id=\"outcome\"><h2>Outcome: unfinished</h2>\
                 <p>The run was interrupted; `agent resume` continues it.</p></section>\n",
            );
        }
    }

    fn segment(&mut self, segment: &Segment<'_>, diffs: &BTreeMap<String, String>) {
        let _ = writeln!(
            self.body,
            "<section class=\"step\" id=\"{}\"><h2>{}</h2>",
            segment.anchor,
            esc(&segment.title)
        );
        for event in &segment.events {
            self.event(event, diffs);
        }
        self.body.push_str("</section>\n");
    }

    fn event(&mut self, event: &Event, diffs: &BTreeMap<String, String>) {
        let out = &mut self.body;
        match event {
            Event::PlanMade {
                revision,
                first_step,
                steps,
                reason,
            } => {
                let _ = write!(
                    out,
                    "<div class=\"plan\"><h3>Plan, revision {revision}</h3>"
                );
                if let Some(reason) = reason {
                    let _ = write!(out, "<p>Revised because: {}</p>", esc(reason));
                }
                let _ = write!(out, "<ol start=\"{first_step}\">");
                for step in steps {
                    let check = if step.check.is_empty() {
                        String::new()
                    } else {
                        format!(" <small>check: <code>{}</code></small>", esc(&step.check))
                    };
                    let _ = write!(
                        out,
                        "<li><b>{}</b> {}{check}</li>",
                        esc(&step.title),
                        esc(&step.intent)
                    );
                }
                out.push_str("</ol></div>\n");
            }
            Event::ModelRequest { turn, messages, .. } => {
                let _ = write!(
                    out,
                    "<details class=\"prompt\"><summary>prompt of turn {turn}: {} new message(s)</summary>",
                    messages.len()
                );
                for message in messages {
                    let _ = write!(
                        out,
                        "<div class=\"message\"><small>{}</small>{}</div>",
                        esc(&format!("{:?}", message.role).to_lowercase()),
                        pre(&message.content)
                    );
                }
                out.push_str("</details>\n");
            }
            Event::ModelTurn {
                turn,
                max_turns,
                content,
                tool_calls,
                usage,
            } => {
                let calls: Vec<&str> = tool_calls.iter().map(|c| c.name.as_str()).collect();
                let _ = writeln!(
                    out,
                    "<details class=\"turn\"><summary>turn {turn}/{max_turns}: {} · {} tokens · {}</summary>{}</details>",
                    esc(&if calls.is_empty() { "no call".to_string() } else { calls.join(", ") }),
                    usage.prompt_tokens + usage.completion_tokens,
                    seconds(usage.elapsed_ms),
                    pre(content)
                );
            }
            Event::ToolCall {
                name, arguments, ..
            } => {
                let mut rest = arguments.clone();
                // Patches and whole files read best as what they are, not as JSON strings.
                let mut bodies = String::new();
                for key in ["patch", "content"] {
                    if let Some(text) = rest
                        .as_object_mut()
                        .and_then(|o| o.remove(key))
                        .and_then(|v| v.as_str().map(str::to_string))
                    {
                        bodies += &if key == "patch" {
                            diff_block(&text)
                        } else {
                            pre(&text)
                        };
                    }
                }
                let compact = serde_json::to_string(&rest).unwrap_or_default();
                let (head, full) = if compact.len() <= 160 {
                    (compact, String::new())
                } else {
                    (
                        String::new(),
                        pre(&serde_json::to_string_pretty(&rest).unwrap_or_default()),
                    )
                };
                let _ = writeln!(
                    out,
                    "<details class=\"call\" open><summary>{} <code>{}</code></summary>{bodies}{full}</details>",
                    esc(name),
                    esc(&head)
                );
            }
            Event::ToolResult {
                name,
                ok,
                output,
                elapsed_ms,
                ..
            } => {
                let class = if *ok { "pass" } else { "fail" };
                let _ = writeln!(
                    out,
                    "<details class=\"result {class}\"><summary>{} {} · {}</summary>{}</details>",
                    esc(name),
                    if *ok { "ok" } else { "failed" },
                    seconds(*elapsed_ms),
                    pre(output)
                );
            }
            Event::CheckResult {
                command,
                passed,
                status,
                output,
                elapsed_ms,
                ..
            } => {
                let class = if *passed { "pass" } else { "fail" };
                let _ = writeln!(
                    out,
                    "<details class=\"check {class}\"><summary>check <code>{}</code> {} ({}; {})</summary>{}</details>",
                    esc(command),
                    if *passed { "passed" } else { "failed" },
                    esc(status),
                    seconds(*elapsed_ms),
                    pre(output)
                );
            }
            Event::StepRejected {
                attempt, reason, ..
            } => {
                let _ = writeln!(
                    out,
                    "<p class=\"fail\">attempt {attempt} not accepted: {}</p>",
                    esc(reason)
                );
            }
            Event::StepAccepted { record, .. } => {
                let _ = writeln!(
                    out,
                    "<p class=\"pass\">accepted: {}</p>",
                    esc(&record.line())
                );
            }
            Event::RolledBack { to, files, .. } => {
                let _ = writeln!(
                    out,
                    "<p class=\"fail\">rolled back {files} file(s) to <code>{}</code></p>",
                    esc(&short(to))
                );
            }
            Event::Commit {
                commit, message, ..
            } => {
                let _ = write!(
                    out,
                    "<div class=\"commit\" id=\"commit-{}\"><p>commit <code>{}</code> {}</p>",
                    esc(commit),
                    esc(&short(commit)),
                    esc(&crate::text::first_line(message, 100))
                );
                match diffs.get(commit) {
                    Some(diff) => {
                        let _ = write!(
                            out,
                            "<details open><summary>diff</summary>{}</details>",
                            diff_block(diff)
                        );
                    }
                    None => out.push_str(
                        "<p><small>(the commit is no longer in the repository)</small></p>",
                    ),
                }
                out.push_str("</div>\n");
            }
            Event::Note { message } => {
                let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(message));
            }
            Event::PullRequest {
                branch,
                url,
                command,
                ..
            } => {
                let target = url.as_deref().or(command.as_deref()).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "<p>pull request for <code>{}</code>: {}</p>",
                    esc(branch),
                    esc(target)
                );
            }
            Event::RunResumed {
                turns, done_steps, ..
            } => {
                let _ = writeln!(
                    out,
                    "<p class=\"note\">resumed after {done_steps} accepted step(s), at turn {turns}</p>"
                );
            }
            Event::RunStarted { .. }
            | Event::StepStarted { .. }
            | Event::CheckStarted { .. }
            | Event::Finished { .. } => {}
        }
    }

    /// Tokens and time per step, as horizontal bars (inline SVG).
    fn chart(&mut self, segments: &[Segment<'_>]) {
        let rows: Vec<(String, u64, u64)> = segments
            .iter()
            .map(|s| {
                let (tokens, ms) = s.cost();
                (s.short.clone(), tokens, ms)
            })
            .collect();
        let most_tokens = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
        let most_ms = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
        let height = 22 * rows.len() + 24;
        let mut svg = format!(
            "<svg class=\"chart\" role=\"img\" aria-label=\"tokens and time per step\" width=\"640\" height=\"{height}\" viewBox=\"0 0 640 {height}\">\
             <text x=\"110\" y=\"14\">tokens</text><text x=\"380\" y=\"14\">time</text>"
        );
        for (i, (label, tokens, ms)) in rows.iter().enumerate() {
            let y = 24 + i * 22;
            let tw = 250 * tokens / most_tokens;
            let mw = 250 * ms / most_ms;
            let _ = write!(
                svg,
                "<text x=\"0\" y=\"{}\">{}</text>\
                 <rect class=\"bar tokens\" x=\"110\" y=\"{y}\" width=\"{tw}\" height=\"16\"><title>{tokens} tokens</title></rect>\
                 <rect class=\"bar time\" x=\"380\" y=\"{y}\" width=\"{mw}\" height=\"16\"><title>{}</title></rect>",
                y + 12,
                esc(label),
                seconds(*ms)
            );
        }
        svg.push_str("</svg>");
        let _ = writeln!(
            self.top,
            "<section id=\"cost\"><h2>Tokens and time per step</h2>{svg}</section>"
        );
    }

    fn finish(self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>agent run: {}</title>\n<style>{STYLE}</style></head>\n<body>\n{}{}</body></html>\n",
            esc(&self.title),
            self.top,
            self.body
        )
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:1rem auto;padding:0 1rem;color:#1b1b1b}\
code,pre{font:13px/1.35 ui-monospace,monospace}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}\
section{border-top:1px solid #ddd;margin-top:1rem}details{margin:.3rem 0}summary{cursor:pointer}\
.pass{color:#176c2f}.fail{color:#a4161a}.outcome.pass{background:#eef8f0}.outcome.fail{background:#fbeeee}.outcome{padding:.2rem .8rem}\
.add{color:#176c2f;background:#eef8f0}.del{color:#a4161a;background:#fbeeee}.hunk{color:#0b6e99}.file{font-weight:700}\
.note{color:#555;font-size:90%}.bar.tokens{fill:#4a78c2}.bar.time{fill:#c2884a}.chart text{font:12px system-ui,sans-serif}\
.message small{display:block;color:#555;margin-top:.4rem}";

/// The events between two `step_started`s, with a title.
struct Segment<'a> {
    title: String,
    short: String,
    anchor: String,
    events: Vec<&'a Event>,
}

impl Segment<'_> {
    /// Tokens and milliseconds spent in this segment (model, tools, checks, commits).
    fn cost(&self) -> (u64, u64) {
        let mut tokens = 0u64;
        let mut ms = 0u64;
        for event in &self.events {
            match event {
                Event::ModelTurn { usage, .. } => {
                    tokens += (usage.prompt_tokens + usage.completion_tokens) as u64;
                    ms += usage.elapsed_ms;
                }
                Event::ToolResult { elapsed_ms, .. }
                | Event::CheckResult { elapsed_ms, .. }
                | Event::Commit { elapsed_ms, .. } => ms += elapsed_ms,
                _ => {}
            }
        }
        (tokens, ms)
    }
}

fn segments(events: &[Event]) -> Vec<Segment<'_>> {
    let mut out = vec![Segment {
        title: "Planning".into(),
        short: "plan".into(),
        anchor: "planning".into(),
        events: Vec::new(),
    }];
    for event in events {
        if let Event::StepStarted {
            step,
            of,
            title,
            check,
        } = event
        {
            let check = check
                .as_deref()
                .map(|c| format!(" (check: {c})"))
                .unwrap_or_default();
            out.push(Segment {
                title: format!("Step {step}/{of}: {title}{check}"),
                short: format!("step {step}"),
                anchor: format!("step-{}", out.len()),
                events: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.events.push(event);
        }
    }
    out
}

/// `text` escaped for HTML text and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most [`MAX_BLOCK`] bytes of `text`, cut on a character boundary, with what was left out.
fn capped(text: &str) -> (&str, usize) {
    crate::text::head(text, MAX_BLOCK)
}

fn more(left: usize) -> String {
    if left == 0 {
        String::new()
    } else {
        format!("<p class=\"note\">… {left} more bytes in events.jsonl</p>")
    }
}

fn pre(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let (shown, left) = capped(text);
    format!("<pre>{}</pre>{}", esc(shown), more(left))
}

/// A unified diff with its lines coloured by kind.
fn diff_block(diff: &str) -> String {
    let (shown, left) = capped(diff);
    let mut out = String::from("<pre class=\"diff\">");
    for line in shown.lines() {
        let class = if line.starts_with("diff --git")
            || line.starts_with("+++")
            || line.starts_with("---")
            || line.starts_with("*** ")
        {
            "file"
        } else if line.starts_with("@@") {
            "hunk"
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else {
            ""
        };
        if class.is_empty() {
            let _ = writeln!(out, "{}", esc(line));
        } else {
            let _ = writeln!(out, "<span class=\"{class}\">{}</span>", esc(line));
        }
    }
    out.push_str("</pre>");
    out + &more(left)
}

/// The first ten characters of an object id (on a character boundary, whatever the log holds).
fn short(id: &str) -> String {
    id.chars().take(10).collect()
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let page = render(
            &[Event::Note {
                message: "</p><img src=x onerror=alert(1)>".into(),
            }],
            &BTreeMap::new(),
        );
        assert!(!page.contains("<img"), "{page}");
    }

    #[test]
    fn odd_object_ids_in_a_log_do_not_break_the_page() {
        let page = render(
            &[Event::Commit {
                step: 1,
                of: 1,
                commit: "é".repeat(20),
                tree: String::new(),
                elapsed_ms: 0,
                message: "m".into(),
            }],
            &BTreeMap::new(),
        );
        assert!(page.contains(&"é".repeat(10)));
    }

    #[test]
    fn long_blocks_are_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_BLOCK);
        let (shown, left) = capped(&text);
        assert!(shown.len() <= MAX_BLOCK && shown.len() + left == text.len());
    }
}
