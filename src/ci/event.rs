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
    #[error("refused: {who} is {association} on this repository, and only {allowed} may start the agent (--allow-association); nothing was run")]
    NotAllowed {
        who: String,
        association: String,
        allowed: String,
    },
}

/// Who may start a run from an event: GitHub's `author_association` values allowed for the author of
/// a triggering comment (or of an issue whose opening or editing triggers the run). A label needs
/// triage rights already, and a manual dispatch write access, so those are not checked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub allowed: Vec<String>,
}

/// The default: people with a role in the repository.
pub const DEFAULT_ASSOCIATIONS: &str = "OWNER,MEMBER,COLLABORATOR";

impl Trigger {
    pub fn parse(list: &str) -> Self {
        Self {
            allowed: list
                .split(',')
                .map(|a| a.trim().to_ascii_uppercase())
                .filter(|a| !a.is_empty())
                .collect(),
        }
    }

    fn check(&self, author: &Value) -> Result<(), EventError> {
        let association = author["author_association"]
            .as_str()
            .unwrap_or("NONE")
            .to_ascii_uppercase();
        if self.allowed.contains(&association) {
            return Ok(());
        }
        Err(EventError::NotAllowed {
            who: author["user"]["login"]
                .as_str()
                .map_or("the author".into(), |l| format!("@{l}")),
            association,
            allowed: self.allowed.join(", "),
        })
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Self::parse(DEFAULT_ASSOCIATIONS)
    }
}

/// The mention that addresses the agent in an issue comment.
pub const MENTION: &str = "@agent";

/// Read the task from the event JSON at `path`, if `trigger` allows whoever caused it.
pub fn from_file(path: &std::path::Path, trigger: &Trigger) -> Result<CiTask, EventError> {
    let unreadable = |reason: String| EventError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    let event: Value = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    from_event(&event, trigger)
}

/// The task of a parsed event. Titles, bodies and comments are data: they become the task text and
/// nothing else (never a command line, never a file name).
pub fn from_event(event: &Value, trigger: &Trigger) -> Result<CiTask, EventError> {
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
            title: crate::text::first_line(input, 72),
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
    if !event["comment"].is_null() {
        trigger.check(&event["comment"])?;
    } else if matches!(
        event["action"].as_str(),
        Some("opened" | "edited" | "reopened")
    ) {
        trigger.check(issue)?;
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
        let trigger = Trigger::default();
        let task = from_event(&issue, &trigger).unwrap();
        assert_eq!(task.issue, Some(12));
        assert_eq!(task.text, "# Add a --verbose flag\n\nPrint each step.");

        let comment = json!({"action": "created", "issue": {"number": 3, "title": "Bug", "body": null},
                             "comment": {"body": "@agent please fix the off-by-one in range.py", "author_association": "MEMBER"}});
        let task = from_event(&comment, &trigger).unwrap();
        assert!(task
            .text
            .ends_with("Request in a comment:\nplease fix the off-by-one in range.py"));
        let unrelated = json!({"issue": {"number": 3, "title": "Bug"}, "comment": {"body": "me too", "author_association": "OWNER"}});
        assert!(from_event(&unrelated, &trigger)
            .unwrap_err()
            .to_string()
            .contains("@agent"));
        let on_pr = json!({"issue": {"number": 4, "title": "x", "pull_request": {"url": "u"}}, "comment": {"body": "@agent"}});
        assert!(from_event(&on_pr, &trigger).is_err());

        let dispatch = json!({"inputs": {"task": "Rename foo to bar", "issue": "#7"}});
        let task = from_event(&dispatch, &trigger).unwrap();
        assert_eq!(
            (task.text.as_str(), task.issue),
            ("Rename foo to bar", Some(7))
        );
        assert!(from_event(&json!({"ref": "x"}), &trigger).is_err());
    }

    #[test]
    fn strangers_cannot_start_a_run() {
        let trigger = Trigger::default();
        for association in [None, Some("NONE"), Some("CONTRIBUTOR"), Some("FIRST_TIMER")] {
            let mut comment = json!({"action": "created", "issue": {"number": 3, "title": "Bug"},
                                     "comment": {"body": "@agent rm -rf", "user": {"login": "mallory"}}});
            if let Some(a) = association {
                comment["comment"]["author_association"] = json!(a);
            }
            let err = from_event(&comment, &trigger).unwrap_err().to_string();
            assert!(
                err.contains("@mallory") && err.contains("OWNER, MEMBER, COLLABORATOR"),
                "{err}"
            );
        }
        let opened = json!({"action": "opened", "issue": {"number": 5, "title": "x", "author_association": "NONE"}});
        assert!(from_event(&opened, &trigger).is_err());
        let wider = Trigger::parse("owner, contributor");
        let comment = json!({"issue": {"number": 3, "title": "Bug"},
                             "comment": {"body": "@agent fix", "author_association": "CONTRIBUTOR"}});
        assert!(from_event(&comment, &wider).is_ok());
    }
}
