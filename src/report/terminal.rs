//! Human-readable progress on stderr: a spinner line (current turn, tool, elapsed) on a terminal, plain
//! lines otherwise (CI logs, pipes).

use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressStyle};

use super::{first_line, Event, Outcome, Reporter};

pub struct TerminalReporter {
    bar: Option<ProgressBar>,
}

impl TerminalReporter {
    /// A spinner when stderr is a terminal and `CI` is not set; plain lines otherwise.
    pub fn new() -> Self {
        let interactive = console::Term::stderr().is_term() && std::env::var_os("CI").is_none();
        let bar = interactive.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{}", console::strip_ansi_codes(&text)),
        }
    }

    fn status(&self, text: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text);
        }
    }
}

impl Default for TerminalReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for TerminalReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                task_title,
                repo,
                branch,
                base,
                model,
                check,
                check_source,
                sandbox,
                dry_run,
                log,
                ..
            } => {
                let mode = if *dry_run {
                    " (dry run: the repository will not be changed)"
                } else {
                    ""
                };
                self.line(format!(
                    "{} {task_title}{mode}",
                    style("agent").bold().cyan()
                ));
                self.line(format!(
                    "  repo    {} at {}",
                    repo.display(),
                    &base[..base.len().min(10)]
                ));
                if !dry_run {
                    self.line(format!("  branch  {branch}"));
                }
                self.line(format!("  model   {model}"));
                match check {
                    Some(cmd) => self.line(format!("  check   {cmd}  ({check_source})")),
                    None => self.line(format!(
                        "  check   none ({check_source}); steps are committed unverified"
                    )),
                }
                self.line(format!("  sandbox {sandbox}"));
                if let Some(log) = log {
                    self.line(format!("  log     {}", log.display()));
                }
                self.status("waiting for the model".into());
            }
            Event::ModelTurn {
                turn,
                max_turns,
                content,
                usage,
                ..
            } => {
                if !content.trim().is_empty() {
                    self.line(format!(
                        "{} {}",
                        style(format!("[{turn}/{max_turns}]")).dim(),
                        first_line(content, 100)
                    ));
                }
                if usage.completion_tokens > 0 {
                    self.status(format!(
                        "turn {turn}/{max_turns} · {} prompt + {} generated tokens · first token {:.1} s · {:.1} tok/s",
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        usage.ttft_ms as f64 / 1000.0,
                        usage.decode_tok_per_s
                    ));
                }
            }
            Event::ToolCall {
                turn,
                name,
                arguments,
            } => {
                let shown = arguments
                    .get("path")
                    .or_else(|| arguments.get("command"))
                    .or_else(|| arguments.get("pattern"))
                    .and_then(|v| v.as_str())
                    .map(|s| first_line(s, 60))
                    .unwrap_or_default();
                self.line(format!(
                    "{} {} {shown}",
                    style(format!("[{turn}]")).dim(),
                    style(name).bold()
                ));
                self.status(format!("turn {turn} · {name} {shown}"));
            }
            Event::ToolResult { ok, output, .. } => {
                let mark = if *ok {
                    style("ok").green()
                } else {
                    style("error").red()
                };
                self.line(format!("      {mark} {}", first_line(output, 100)));
                self.status("waiting for the model".into());
            }
            Event::CheckStarted { command, .. } => self.status(format!("checking: {command}")),
            Event::CheckResult {
                command,
                passed,
                status,
                ..
            } => {
                let mark = if *passed {
                    style("passed").green().bold()
                } else {
                    style("failed").red().bold()
                };
                self.line(format!("  check {mark}: {command} ({status})"));
                self.status("waiting for the model".into());
            }
            Event::Commit {
                commit, message, ..
            } => {
                self.line(format!(
                    "  {} {} {}",
                    style("committed").green(),
                    &commit[..commit.len().min(10)],
                    first_line(message, 70)
                ));
            }
            Event::Note { message } => self.line(format!("  {} {message}", style("note").yellow())),
            Event::Finished {
                outcome,
                summary,
                branch,
                commits,
                unverified_patch,
                turns,
                elapsed_ms,
                ..
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let headline = match outcome {
                    Outcome::Finished => style("finished").green().bold(),
                    Outcome::BudgetExhausted => {
                        style("stopped: turn budget exhausted").yellow().bold()
                    }
                    Outcome::CheckFailing => style("stopped: the check still fails").red().bold(),
                    Outcome::ModelFailed => style("stopped: the model failed").red().bold(),
                };
                self.line(format!(
                    "{headline} after {turns} turns in {:.1} s",
                    *elapsed_ms as f64 / 1000.0
                ));
                if !summary.is_empty() {
                    self.line(format!("  {summary}"));
                }
                match (branch, commits.len()) {
                    (Some(branch), n) if n > 0 => {
                        self.line(format!("  {n} verified commit(s) on branch {branch}"))
                    }
                    (None, n) if n > 0 => {
                        self.line(format!("  {n} verified step(s) (dry run: not committed)"))
                    }
                    _ => self.line("  no step was accepted".into()),
                }
                if let Some(path) = unverified_patch {
                    self.line(format!("  unverified changes saved to {}", path.display()));
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
