//! The task in a GitHub Actions event (`$GITHUB_EVENT_PATH`): an issue (opened or labelled), a comment
//! on an issue that mentions the agent, or a manual `workflow_dispatch` with a `task` input.

use serde_json::Value;

/// What a CI run works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiTask {
    /// The task text given to the agent.
    pub text: String,
    /// The issue it comes from, for `Closes #N` and a stable branch name.
    pub issue: Option<u64>,
    pub title: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("cannot read the event file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the event has no task: {0}")]
    NoTask(String),
}

/// The mention that addresses the agent in an issue comment.
pub const MENTION: &str = "@agent";

/// Read the task from the event JSON at `path`.
pub fn from_file(path: &std::path::Path) -> Result<CiTask, EventError> {
    let unreadable = |reason: String| EventError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    let event: Value = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    from_event(&event)
}

pub fn from_event(event: &Value) -> Result<CiTask, EventError> {
    let str_of = |v: &Value| v.as_str().unwrap_or("").trim().to_string();
    if let Some(input) = event["inputs"]["task"]
        .as_str()
        .filter(|t| !t.trim().is_empty())
    {
        let issue = event["inputs"]["issue"]
            .as_str()
            .and_then(|n| n.trim().trim_start_matches('#').parse().ok());
        return Ok(CiTask {
            text: input.trim().to_string(),
            issue,
            title: crate::report::first_line(input, 72),
        });
    }
    let issue = &event["issue"];
    if issue.is_null() {
        return Err(EventError::NoTask(
            "it is neither an issue event, an issue comment, nor a workflow_dispatch with a `task` input"
                .into(),
        ));
    }
    if issue.get("pull_request").is_some_and(|p| !p.is_null()) {
        return Err(EventError::NoTask(
            "the comment is on a pull request, not an issue".into(),
        ));
    }
    let number = issue["number"].as_u64();
    let title = str_of(&issue["title"]);
    let body = str_of(&issue["body"]);
    let mut text = format!("# {title}\n\n{body}");
    if let Some(comment) = event["comment"]["body"].as_str() {
        let Some(at) = comment.find(MENTION) else {
            return Err(EventError::NoTask(format!(
                "the comment does not mention {MENTION}"
            )));
        };
        let request = comment[at + MENTION.len()..].trim();
        if !request.is_empty() {
            text.push_str(&format!("\n\nRequest in a comment:\n{request}"));
        }
    }
    if title.is_empty() && body.is_empty() {
        return Err(EventError::NoTask(
            "the issue has no title and no body".into(),
        ));
    }
    Ok(CiTask {
        text: text.trim().to_string(),
        issue: number,
        title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tasks_from_issues_comments_and_dispatches() {
        let issue = json!({"action": "labeled", "issue": {"number": 12, "title": "Add a --verbose flag", "body": "Print each step."}});
        let task = from_event(&issue).unwrap();
        assert_eq!(task.issue, Some(12));
        assert_eq!(task.text, "# Add a --verbose flag\n\nPrint each step.");

        let comment = json!({"action": "created", "issue": {"number": 3, "title": "Bug", "body": null},
                             "comment": {"body": "@agent please fix the off-by-one in range.py"}});
        let task = from_event(&comment).unwrap();
        assert!(task
            .text
            .ends_with("Request in a comment:\nplease fix the off-by-one in range.py"));
        let unrelated =
            json!({"issue": {"number": 3, "title": "Bug"}, "comment": {"body": "me too"}});
        assert!(from_event(&unrelated)
            .unwrap_err()
            .to_string()
            .contains("@agent"));
        let on_pr = json!({"issue": {"number": 4, "title": "x", "pull_request": {"url": "u"}}, "comment": {"body": "@agent"}});
        assert!(from_event(&on_pr).is_err());

        let dispatch = json!({"inputs": {"task": "Rename foo to bar", "issue": "#7"}});
        let task = from_event(&dispatch).unwrap();
        assert_eq!(
            (task.text.as_str(), task.issue),
            ("Rename foo to bar", Some(7))
        );
        assert!(from_event(&json!({"ref": "x"})).is_err());
    }
}
