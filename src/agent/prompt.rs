//! The words the model is given: the planner's and the executor's prompts and the messages the loop
//! adds. Kept apart from the loop so wording changes never touch control flow.

use super::plan::PlanStep;
use super::StepRecord;
use crate::model::ToolSpec;

/// The planner's system prompt.
pub fn planner_system(max_steps: usize, check: Option<&str>) -> String {
    let check = match check {
        Some(cmd) => format!("The task's check is `{cmd}`; the last step must make it pass."),
        None => "No check command is configured for the task.".to_string(),
    };
    format!(
        "You are a careful software engineer planning a change to a git repository.\n\
         Reply with one call of `plan`: 1 to {max_steps} ordered steps. Each step is one coherent change that can be \
         verified on its own; a simple task is one step. Do not plan steps that only read, find or understand code, or \
         that only run the tests: looking is part of each change, and the check runs after every step. For each step give a short imperative title, its intent, \
         the files it will likely touch, and `check`: a shell command that proves the step works, or \"\" to use the \
         task's check.\n{check}\n"
    )
}

/// What the planner is told: the task, the project's instructions, the repository map, and, when
/// re-planning, what is done and what went wrong.
pub struct PlannerRequest<'a> {
    pub task: &'a str,
    pub agents_md: &'a str,
    pub map: &'a str,
    pub done: &'a [StepRecord],
    /// The task's check and its failure report, while the tree is as it was before the run.
    pub failing_check: Option<(&'a str, &'a str)>,
    /// Why the previous plan failed.
    pub failure: Option<&'a str>,
}

pub fn planner_request(request: &PlannerRequest<'_>) -> String {
    let mut text = format!(
        "Task:\n{}\n\n{}Repository map:\n{}",
        request.task, request.agents_md, request.map
    );
    if let Some((command, report)) = request.failing_check {
        text.push_str(&failing_check(command, report));
    }
    if !request.done.is_empty() {
        text.push_str("\nSteps already done and committed:\n");
        for record in request.done {
            text.push_str(&format!("- {}\n", record.line()));
        }
    }
    if let Some(failure) = request.failure {
        text.push_str(&format!(
            "\nThe previous plan failed: {failure}\nIts unverified changes were rolled back. Plan the remaining work \
             differently; do not repeat the steps already done.\n"
        ));
    }
    text
}

/// What the model is told when its edits to existing tests were undone.
pub fn tests_changed(paths: &[String]) -> String {
    format!(
        "Your changes to {} were undone: the tests are right and define the task, and they fail \
         because of the code. Change the code (not the tests) so that they pass, then call finish.",
        paths.join(", ")
    )
}

/// The task's check as it fails before any change: what the model most needs to see for a fix.
fn failing_check(command: &str, report: &str) -> String {
    format!(
        "\nThe task's check `{command}` fails now; the task is done when it passes. The tests are right: \
         change the code, not the tests.\n{}\n",
        report.trim_end()
    )
}

/// The executor's system prompt: role, rules, tools, and how the step is verified.
pub fn system(tools: &[ToolSpec]) -> String {
    let mut text = String::from(
        "You are a careful software engineer working in a git repository, one step of a plan at a time.\n\
         Every reply is exactly one tool call. Paths are relative to the repository root.\n\
         Look at the relevant files, then edit them: a short file by writing it whole with write_file, a long one \
         with apply_patch (a unified diff), a new file with write_file. When the step is done, call finish with a short summary: the step's check then runs, \
         and a passing check commits the step.\n",
    );
    text.push_str("\nTools:\n");
    for tool in tools {
        let args = crate::model::schema::sanitize(&tool.parameters);
        let fields: Vec<String> = args["properties"]
            .as_object()
            .map(|props| props.keys().cloned().collect())
            .unwrap_or_default();
        text.push_str(&format!(
            "- {}({}): {}\n",
            tool.name,
            fields.join(", "),
            tool.description
        ));
    }
    text
}

/// The first user message of a step: the task, the plan with what is done, and this step.
pub struct StepBrief<'a> {
    pub task: &'a str,
    pub agents_md: &'a str,
    pub map: &'a str,
    pub done: &'a [StepRecord],
    pub step: &'a PlanStep,
    /// The text of the step's likely files that are short (see `repo_map::likely_files`).
    pub files_shown: &'a str,
    pub remaining: &'a [PlanStep],
    pub number: usize,
    pub of: usize,
    pub check: Option<&'a str>,
    /// The task's check and its failure report, while the tree is as it was before the run.
    pub failing_check: Option<(&'a str, &'a str)>,
}

pub fn step_brief(brief: &StepBrief<'_>) -> String {
    let mut text = format!(
        "Task:\n{}\n\n{}Repository map:\n{}\n",
        brief.task, brief.agents_md, brief.map
    );
    text.push_str("Plan:\n");
    for record in brief.done {
        text.push_str(&format!("- [done] {}\n", record.line()));
    }
    for (i, step) in brief.remaining.iter().enumerate() {
        let mark = if i == 0 { "[now]" } else { "[later]" };
        text.push_str(&format!("- {mark} {}\n", step.title));
    }
    let step = brief.step;
    text.push_str(&format!(
        "\nNow do step {} of {}: {}\n",
        brief.number, brief.of, step.title
    ));
    if !step.intent.trim().is_empty() {
        text.push_str(&format!("Intent: {}\n", step.intent.trim()));
    }
    if !step.files.is_empty() {
        text.push_str(&format!("Likely files: {}\n", step.files.join(", ")));
    }
    if !brief.files_shown.is_empty() {
        text.push_str(&format!(
            "\nAs they are now (line numbers are not part of the files):\n{}",
            brief.files_shown
        ));
    }
    if let Some((command, report)) = brief.failing_check {
        text.push_str(&failing_check(command, report));
    }
    match brief.check {
        Some(cmd) => text.push_str(&format!(
            "When you call finish, `{cmd}` verifies this step. Only do this step.\n"
        )),
        None => text.push_str(
            "No check command is configured: verify your work with the run tool before you call finish.\n",
        ),
    }
    text
}

pub const NO_TOOL_CALL: &str =
    "Your reply contained no tool call. Reply with exactly one tool call: inspect files, edit them, run a command, or call finish.";

pub const REPEATED_CALL: &str =
    "You made this exact call before and nothing has changed since; its result will be the same. Try a different approach.";

pub const NUDGE: &str =
    "You are repeating yourself: this is the third identical attempt and nothing changed. Stop and think: read the \
     error again, look at a different file, or make a different edit. If the step is done, call finish.";

pub fn step_failed(report: &str, attempt: usize, tries: usize) -> String {
    format!(
        "The step is not accepted yet (attempt {attempt} of {tries}).\n{report}\nFix the cause, then call finish again."
    )
}

/// What the model is told when it finishes a step (not the last) without changing any file.
pub fn nothing_changed(title: &str) -> String {
    format!(
        "You called finish, but no file has changed. This step is \"{title}\": make its change with apply_patch \
         or write_file, then call finish. If it really needs no change, call finish again and say why."
    )
}

/// Added to a rejection when the step has changed nothing and its check fails: `finish` is then not
/// offered until a file changes.
pub const FINISH_WITHHELD: &str =
    "No file has changed yet, and the check fails on the files as they are: finish is not offered until you change a file. Read the failing test if you need to, then edit the code with write_file or apply_patch.";

/// A tool withheld for one turn because the turn before repeated an answered call to it, called anyway
/// (by a backend that cannot leave it out of its grammar).
pub fn repeated_call_withheld(tool: &str) -> String {
    format!("`{tool}` is not offered for this turn: you repeated a call to it that was already answered, and it would be answered the same way. Use what it told you, or another tool.")
}

pub const NO_CHANGE_YET: &str =
    "The step's turns ran out without a change or a finish. Make the change this step needs, then call finish.";
