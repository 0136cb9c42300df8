//! The words the model is given: the system prompt and the messages the loop adds.

use crate::model::ToolSpec;

/// The system prompt: role, rules, tools, and how the work is verified.
pub fn system(tools: &[ToolSpec], check: Option<&str>) -> String {
    let mut text = String::from(
        "You are a careful software engineer working in a git repository. Make the change the user asks for.\n\
         Work in small steps: look at the relevant files, edit them, and let the check verify your work.\n\
         Every reply is exactly one tool call. Paths are relative to the repository root.\n\
         Edit existing files with apply_patch (a unified diff); create new files with write_file.\n\
         When the task is done, call finish with a short summary.\n",
    );
    match check {
        Some(cmd) => text.push_str(&format!(
            "After each edit the check `{cmd}` runs; a passing check commits your step. Finishing requires a passing check.\n"
        )),
        None => text.push_str("No check command is configured; verify your work with the run tool before finishing.\n"),
    }
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

/// The first user message: the task, then the repository's files.
pub fn task(task: &str, files: &str) -> String {
    if files.trim().is_empty() {
        return task.to_string();
    }
    format!("{task}\n\nFiles in the repository:\n{files}")
}

pub const NO_TOOL_CALL: &str =
    "Your reply contained no tool call. Reply with exactly one tool call: inspect files, edit them, run a command, or call finish.";

pub const REPEATED_CALL: &str =
    "You made this exact call before and nothing has changed since; its result will be the same. Try a different approach.";

pub fn check_passed(command: &str, step: usize) -> String {
    format!("The check `{command}` passed; step {step} is committed. Continue with the task, or call finish if it is done.")
}

pub fn finish_refused(report: &str) -> String {
    format!("Not finished: the check must pass first.\n{report}")
}
