//! Phase 1 of a run: the task, from the command line, a file, stdin, or a GitHub event.

use std::io::Read;

use anyhow::Context;

use crate::app::UsageError;
use crate::ci::CiTask;
use crate::cli::RunArgs;

/// What the run is asked to do.
pub(super) struct Task {
    pub text: String,
    /// The GitHub issue it comes from (`--github-event`): names the branch `agent/issue-N` and is
    /// linked from the pull request.
    pub issue: Option<u64>,
}

impl Task {
    /// The task of a new run: the `--github-event`'s issue or comment when given, else the argument,
    /// `--task-file`, or stdin (`-`). An empty task is a usage error.
    pub fn read(args: &RunArgs) -> anyhow::Result<Task> {
        if let Some(ci) = ci_task(args)? {
            return Ok(Task {
                text: ci.text,
                issue: ci.issue,
            });
        }
        Ok(Task {
            text: read_text(args)?,
            issue: None,
        })
    }

    /// The task recorded by an earlier run, with its issue read again from the recorded
    /// `--github-event` when a pull request is to be drafted from it.
    pub fn recorded(text: String, args: &RunArgs) -> anyhow::Result<Task> {
        let issue = if args.pr {
            ci_task(args)?.and_then(|c| c.issue)
        } else {
            None
        };
        Ok(Task { text, issue })
    }

    /// The task's first line, for titles.
    pub fn title(&self) -> String {
        crate::text::first_line(self.text.trim_start_matches(['#', ' ']), 80)
    }
}

/// The task of `--github-event`, if given.
fn ci_task(args: &RunArgs) -> anyhow::Result<Option<CiTask>> {
    match &args.github_event {
        Some(path) => Ok(Some(
            crate::ci::event::from_file(
                path,
                &crate::ci::event::Trigger::parse(&args.allow_association),
            )
            .map_err(|e| UsageError(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

fn read_text(args: &RunArgs) -> anyhow::Result<String> {
    let text = match (&args.task, &args.task_file) {
        (_, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| UsageError(format!("cannot read --task-file {}: {e}", file.display())))?,
        (Some(dash), None) if dash == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the task from stdin")?;
            text
        }
        (Some(task), None) => task.clone(),
        (None, None) => String::new(),
    };
    if text.trim().is_empty() {
        return Err(UsageError("the task is empty; give it as an argument, with --task-file FILE, or on stdin with `-`".into()).into());
    }
    Ok(text)
}
