//! The pull request a CI run drafts: title and Markdown body — the task (with `Closes #N`), one line per
//! accepted step with its commit and check, what was not done, the diffstat, tokens, time and model.
//! Also the comment-ready explanation when nothing was accepted.

use crate::protocol::{PlanStep, StepRecord};

/// What the PR text is made from.
pub struct PrDraft<'a> {
    pub task_title: &'a str,
    pub task: &'a str,
    pub issue: Option<u64>,
    pub steps: &'a [StepRecord],
    pub not_done: &'a [PlanStep],
    pub outcome: &'a str,
    pub summary: &'a str,
    pub diffstat: &'a str,
    pub model: &'a str,
    pub turns: usize,
    pub tokens: u64,
    pub elapsed_s: f64,
    pub run_id: &'a str,
    /// The run had no check (`--allow-unverified`): its commits carry `Agent-Verified: no`.
    pub unverified: bool,
}

pub fn title(draft: &PrDraft<'_>) -> String {
    let title = crate::report::first_line(draft.task_title.trim_start_matches(['#', ' ']), 72);
    let title = if draft.unverified {
        format!("[unverified] {title}")
    } else {
        title
    };
    match draft.issue {
        Some(n) => format!("{title} (#{n})"),
        None => title,
    }
}

pub fn body(draft: &PrDraft<'_>) -> String {
    let mut text = String::new();
    if let Some(n) = draft.issue {
        text.push_str(&format!("Closes #{n}.\n\n"));
    }
    if draft.unverified {
        text.push_str(&format!(
            "Drafted by `agent` (run `{}`). **Unverified:** the run had no check (`--allow-unverified`), so \
             no commit below was tested; each carries an `Agent-Verified: no` trailer. Review and test it \
             before merging.\n\n",
            draft.run_id
        ));
    } else {
        text.push_str(&format!(
            "Drafted by `agent` (run `{}`). Every commit below passed its check in the sandbox before it was \
             committed; review it like any other contribution.\n\n",
            draft.run_id
        ));
    }
    text.push_str("## Steps\n\n| # | step | commit | verified by |\n|---|---|---|---|\n");
    for step in draft.steps {
        let commit = step.commit.as_deref().map_or("no changes".into(), |c| {
            format!("`{}`", &c[..c.len().min(10)])
        });
        text.push_str(&format!(
            "| {} | {} | {commit} | {} |\n",
            step.step,
            cell(&step.title),
            cell(&step.check)
        ));
    }
    if !draft.not_done.is_empty() {
        text.push_str("\n## Not done\n\n");
        for step in draft.not_done {
            text.push_str(&format!("- {}\n", step.title));
        }
        text.push_str(&format!(
            "\nThe run ended with `{}`: {}\n",
            draft.outcome,
            crate::report::first_line(draft.summary, 300)
        ));
    }
    text.push_str(&format!(
        "\n## Changes\n\n{}\n\n<details><summary>Task</summary>\n\n{}\n\n</details>\n\n",
        draft.diffstat,
        draft.task.trim()
    ));
    text.push_str(&format!(
        "Model `{}` · {} model turns · {} tokens · {:.0} s\n",
        draft.model, draft.turns, draft.tokens, draft.elapsed_s
    ));
    text
}

/// Why no pull request was opened, ready to post as a comment on the issue.
pub fn nothing_accepted(draft: &PrDraft<'_>) -> String {
    format!(
        "`agent` could not complete a verified step for this task, so no pull request was opened.\n\n\
         The run ended with `{}`: {}\n\nRun `{}` took {} model turns; its log has the details \
         (`agent log {}`).\n",
        draft.outcome,
        crate::report::first_line(draft.summary, 500),
        draft.run_id,
        draft.turns,
        draft.run_id
    )
}

/// Markdown table cells cannot hold `|` or line breaks.
fn cell(text: &str) -> String {
    crate::report::first_line(text, 120).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_lists_steps_and_what_is_left() {
        let steps = vec![StepRecord {
            step: 1,
            title: "Add the | flag".into(),
            summary: "added".into(),
            commit: Some("0123456789abcdef".into()),
            check: "`cargo test` passed".into(),
        }];
        let not_done = vec![crate::protocol::PlanStep::whole_task("Document it")];
        let draft = PrDraft {
            task_title: "# Add --verbose",
            task: "# Add --verbose\n\nPlease.",
            issue: Some(12),
            steps: &steps,
            not_done: &not_done,
            outcome: "budget_exhausted",
            summary: "stopped: the turn budget (40 model turns) is used up",
            diffstat: "1 file changed, +3 -0",
            model: "replay:x",
            turns: 40,
            tokens: 1234,
            elapsed_s: 61.0,
            run_id: "r1",
            unverified: false,
        };
        assert_eq!(title(&draft), "Add --verbose (#12)");
        let unverified = PrDraft {
            unverified: true,
            ..draft
        };
        assert_eq!(title(&unverified), "[unverified] Add --verbose (#12)");
        assert!(body(&unverified).contains("**Unverified:**"));
        let draft = PrDraft {
            unverified: false,
            ..unverified
        };
        let body = body(&draft);
        assert!(body.starts_with("Closes #12.\n"), "{body}");
        assert!(
            body.contains("| 1 | Add the \\| flag | `0123456789` | `cargo test` passed |"),
            "{body}"
        );
        assert!(body.contains("## Not done\n\n- Document it\n"), "{body}");
        assert!(body.contains("1 file changed, +3 -0"));
        assert!(nothing_accepted(&draft).contains("no pull request was opened"));
    }
}
