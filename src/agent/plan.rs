//! The plan: a short ordered list of steps, each with what it is for, the files it likely touches and
//! how to verify it. The planner asks the model for one under the same constrained decoding as tool
//! calls (the plan is offered as the only "tool"), so a plan always parses; a backend without
//! constraints that answers with something else gets a one-step plan and a note, never a crash.
//!
//! This module builds requests and parses replies; it never runs tools or touches the repository.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{AssistantTurn, ToolSpec};

/// The name the plan is requested under.
pub const PLAN_TOOL: &str = "plan";

/// Most steps in one plan; more than this is a sign the task should be split by the user.
pub const MAX_PLAN_STEPS: usize = 6;

/// An ordered plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The steps in order. Each one small enough to be checked on its own; one step for a simple task.
    #[schemars(length(min = 1, max = 6))]
    pub steps: Vec<PlanStep>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// A short imperative title; it becomes the commit title.
    #[schemars(length(min = 1, max = 72))]
    pub title: String,
    /// What the step changes and why, in a sentence or two.
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub intent: String,
    /// Paths the step will likely read or change.
    #[serde(default)]
    #[schemars(length(max = 4), inner(length(max = 100)))]
    pub files: Vec<String>,
    /// A shell command that proves this step works (e.g. `cargo build`), or empty to use the task's
    /// check.
    #[serde(default)]
    #[schemars(length(max = 120))]
    pub check: String,
}

impl PlanStep {
    /// The step of a one-step plan: the whole task.
    pub fn whole_task(task: &str) -> Self {
        Self {
            title: crate::report::first_line(task.trim_start_matches(['#', ' ']), 72),
            intent: "Complete the whole task.".into(),
            files: Vec::new(),
            check: String::new(),
        }
    }
}

/// The plan as a tool spec, with every sub-schema inlined: the one-call schema embeds a tool's
/// parameters under `arguments`, where a `$ref` into `$defs` would no longer resolve.
pub fn spec() -> ToolSpec {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<Plan>();
    ToolSpec {
        name: PLAN_TOOL.into(),
        description: "Give the plan: the ordered steps that complete the task.".into(),
        parameters: schema.to_value(),
    }
}

/// Why a reply is not a plan (the caller falls back to a one-step plan and says so).
#[derive(Debug, thiserror::Error)]
pub enum NotAPlan {
    #[error("the model replied without calling `plan`")]
    NoCall,
    #[error("the model called `{0}` instead of `plan`")]
    OtherTool(String),
    #[error("the plan's arguments do not match its schema: {0}")]
    Invalid(String),
}

/// Read a plan out of a model reply; steps beyond `max_steps` are dropped, blank fields tidied.
pub fn parse(reply: &AssistantTurn, max_steps: usize) -> Result<Plan, NotAPlan> {
    let call = reply.tool_calls.first().ok_or(NotAPlan::NoCall)?;
    if call.name != PLAN_TOOL {
        return Err(NotAPlan::OtherTool(call.name.clone()));
    }
    let mut plan: Plan = serde_json::from_value(call.arguments.clone())
        .map_err(|e| NotAPlan::Invalid(e.to_string()))?;
    plan.steps.retain(|s| !s.title.trim().is_empty());
    if plan.steps.is_empty() {
        return Err(NotAPlan::Invalid("it has no step with a title".into()));
    }
    plan.steps.truncate(max_steps.clamp(1, MAX_PLAN_STEPS));
    for step in &mut plan.steps {
        step.title = crate::report::first_line(&step.title, 72);
        step.check = step.check.trim().to_string();
        step.files.retain(|f| !f.trim().is_empty());
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToolCall;
    use serde_json::json;

    fn reply(name: &str, arguments: serde_json::Value) -> AssistantTurn {
        AssistantTurn {
            tool_calls: vec![ToolCall {
                id: "1".into(),
                name: name.into(),
                arguments,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_plan_schema_is_self_contained_and_bounded() {
        let spec = spec();
        let text = spec.parameters.to_string();
        assert!(!text.contains("$ref"), "{text}");
        assert_eq!(spec.parameters["properties"]["steps"]["maxItems"], 6);
        let step = &spec.parameters["properties"]["steps"]["items"];
        assert_eq!(step["additionalProperties"], false, "{step}");
        assert_eq!(step["properties"]["title"]["maxLength"], 72);
        // What the model is constrained by keeps every field (a field named `title` once vanished).
        let sent = crate::model::schema::tool_call_schema(std::slice::from_ref(&spec));
        let sent_step =
            &sent["anyOf"][0]["properties"]["arguments"]["properties"]["steps"]["items"];
        assert_eq!(
            sent_step["properties"]["title"]["maxLength"], 72,
            "{sent_step}"
        );
        assert_eq!(sent_step["required"], serde_json::json!(["title"]));
        // Every string is bounded, so a constrained plan can never be cut off mid-string.
        let budget = crate::model::schema::max_reply_tokens(
            &crate::model::schema::tool_call_schema(std::slice::from_ref(&spec)),
        );
        assert!(budget < 8000, "{budget}");
    }

    #[test]
    fn parses_plans_and_refuses_other_replies() {
        let plan = parse(
            &reply(
                "plan",
                json!({"steps": [{"title": "Add parse", "intent": "x", "files": ["src/lib.rs", " "], "check": " cargo build "},
                                 {"title": "Add format"}]}),
            ),
            8,
        )
        .unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[0].check, "cargo build");
        assert_eq!(plan.steps[0].files, vec!["src/lib.rs"]);
        assert_eq!(plan.steps[1].check, "");
        let one = parse(
            &reply("plan", json!({"steps": [{"title": "a"}, {"title": "b"}]})),
            1,
        )
        .unwrap();
        assert_eq!(one.steps.len(), 1);
        assert!(matches!(
            parse(&reply("read_file", json!({})), 8),
            Err(NotAPlan::OtherTool(_))
        ));
        assert!(matches!(
            parse(&reply("plan", json!({"steps": []})), 8),
            Err(NotAPlan::Invalid(_))
        ));
        assert!(matches!(
            parse(
                &reply("plan", json!({"steps": [{"title": "a", "extra": 1}]})),
                8
            ),
            Err(NotAPlan::Invalid(_))
        ));
        assert!(matches!(
            parse(&AssistantTurn::default(), 8),
            Err(NotAPlan::NoCall)
        ));
    }
}
