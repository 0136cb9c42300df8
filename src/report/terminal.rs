//! Human-readable progress on stderr: a spinner line (current turn, tool, elapsed) on a terminal, plain
//! lines otherwise (CI logs, pipes).

use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressStyle};

use super::{first_line, Event, Outcome, Reporter};

pub struct TerminalReporter {
    bar: Option<ProgressBar>,
    /// Plain lines on stdout (`agent log`) instead of stderr.
    stdout: bool,
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
        Self { bar, stdout: false }
    }

    /// Plain lines on stdout, for reading a recorded run.
    pub fn printer() -> Self {
        Self {
            bar: None,
            stdout: true,
        }
    }

    /// Colours follow `--color` (console's flags: a terminal, NO_COLOR, CLICOLOR, CLICOLOR_FORCE).
    fn line(&self, text: String) {
        let plain = |on: bool| {
            if on {
                text.clone()
            } else {
                console::strip_ansi_codes(&text).into_owned()
            }
        };
        match &self.bar {
            Some(bar) => bar.println(plain(console::colors_enabled_stderr())),
            None if self.stdout => println!("{}", plain(console::colors_enabled())),
            None => eprintln!("{}", plain(console::colors_enabled_stderr())),
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
        // Requests are not shown; the rest is cleaned first (they can be large).
        if matches!(event, Event::ModelRequest { .. }) {
            return;
        }
        // Everything in an event may come from the model, a command or the repository; only the
        // styling added here reaches the terminal as escape sequences.
        let event = &super::terminal_safe_event(event);
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
                        "  check   none ({check_source}); nothing is committed without one unless --allow-unverified"
                    )),
                }
                self.line(format!("  sandbox {sandbox}"));
                if let Some(log) = log {
                    self.line(format!("  log     {}", log.display()));
                }
                self.status("waiting for the model".into());
            }
            Event::PlanMade {
                revision,
                first_step,
                steps,
                reason,
            } => {
                let heading = if *revision == 1 {
                    "plan".to_string()
                } else {
                    format!("revised plan (revision {revision})")
                };
                self.line(format!("{}", style(heading).bold()));
                if let Some(reason) = reason {
                    self.line(format!("  because {}", first_line(reason, 100)));
                }
                for (i, step) in steps.iter().enumerate() {
                    self.line(format!("  {}. {}", first_step + i, step.title));
                }
            }
            Event::StepStarted {
                step, of, title, check,
            } => {
                let check = check
                    .as_deref()
                    .map_or(String::new(), |c| format!(" (check: {c})"));
                self.line(format!(
                    "{} {title}{check}",
                    style(format!("step {step}/{of}")).bold().cyan()
                ));
                self.status(format!("step {step}/{of} · {title}"));
            }
            Event::StepRejected {
                step,
                attempt,
                reason,
            } => self.line(format!(
                "  {} step {step}, attempt {attempt}: {}",
                style("not accepted").yellow(),
                first_line(reason, 90)
            )),
            Event::StepAccepted { record, of } => self.line(format!(
                "  {} step {}/{of}: {}",
                style("accepted").green().bold(),
                record.step,
                record.check
            )),
            Event::RolledBack {
                step,
                to,
                files,
                saved,
            } => {
                let saved = saved
                    .as_ref()
                    .map_or(String::new(), |p| format!("; saved to {}", p.display()));
                self.line(format!(
                    "  {} step {step}: {files} changed file(s) reset to {}{saved}",
                    style("rolled back").red(),
                    &to[..to.len().min(10)]
                ));
            }
            Event::RunResumed {
                run_id,
                branch,
                head,
                done_steps,
                remaining_steps,
                ..
            } => self.line(format!(
                "{} run {run_id} on {branch} at {}: {done_steps} step(s) done, {remaining_steps} planned step(s) left",
                style("resumed").bold().cyan(),
                &head[..head.len().min(10)]
            )),
            Event::ModelRequest { .. } => {}
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
            Event::PullRequest {
                branch,
                base,
                url,
                created,
                command,
                ..
            } => match (url, command) {
                (Some(url), _) => self.line(format!(
                    "  {} {url} ({branch} into {base})",
                    style(if *created { "draft pull request opened" } else { "pull request updated" }).green().bold()
                )),
                (None, Some(command)) => self.line(format!(
                    "  pushed {branch}; no GITHUB_TOKEN/GITHUB_REPOSITORY, so open the draft pull request with:\n    {command}"
                )),
                (None, None) => self.line(format!("  pushed {branch}")),
            },
            Event::Note { message } => self.line(format!("  {} {message}", style("note").yellow())),
            Event::Finished {
                outcome,
                summary,
                branch,
                commits,
                unverified_patch,
                turns,
                steps_accepted,
                steps_rejected,
                checks,
                tokens,
                elapsed_ms,
                ..
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let headline = match outcome {
                    Outcome::Finished => style("finished").green().bold(),
                    Outcome::BudgetExhausted => style("stopped: budget exhausted").yellow().bold(),
                    Outcome::LoopDetected => {
                        style("stopped: the model was going in circles").red().bold()
                    }
                    Outcome::CheckFailing => style("stopped: the check still fails").red().bold(),
                    Outcome::ModelFailed => style("stopped: the model failed").red().bold(),
                    Outcome::Unverified => {
                        style("stopped: no check, nothing committed").yellow().bold()
                    }
                };
                self.line(format!(
                    "{headline} after {turns} turns in {:.1} s",
                    *elapsed_ms as f64 / 1000.0
                ));
                if !summary.is_empty() {
                    self.line(format!("  {summary}"));
                }
                self.line(format!(
                    "  steps: {steps_accepted} accepted, {steps_rejected} rolled back · checks: {checks} · tokens: {tokens}"
                ));
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
