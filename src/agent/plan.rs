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

pub use crate::protocol::PlanStep;

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
        body: None,
        withheld: false,
        body_opens: None,
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

/// Read a plan out of a model reply; steps beyond `max_steps` are dropped, blank fields tidied, and a
/// step's check that repeats `task_check` is left blank (which means the task's check).
pub fn parse(
    reply: &AssistantTurn,
    max_steps: usize,
    task_check: Option<&str>,
) -> Result<Plan, NotAPlan> {
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
    for step in &mut plan.steps {
        step.title = crate::text::first_line(&step.title, 72);
        step.check = step.check.trim().to_string();
        if task_check.is_some_and(|task| task.trim() == step.check) {
            step.check.clear();
        }
        step.files.retain(|f| !f.trim().is_empty());
    }
    plan.steps = fold_steps_that_change_nothing(std::mem::take(&mut plan.steps));
    plan.steps.truncate(max_steps.clamp(1, MAX_PLAN_STEPS));
    Ok(plan)
}

/// First words of step titles that only look (read, understand, find): the looking is part of the
/// change it serves.
const LOOKING: &[&str] = &[
    "analyse",
    "analyze",
    "determine",
    "diagnose",
    "examine",
    "explore",
    "identify",
    "inspect",
    "investigate",
    "locate",
    "look",
    "read",
    "reproduce",
    "research",
    "review",
    "study",
    "understand",
];

/// First words of step titles that only run the tests: every step's check runs anyway.
const TESTING: &[&str] = &[
    "confirm", "execute", "rerun", "retest", "run", "test", "validate", "verify",
];

fn first_word(title: &str) -> String {
    title
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_lowercase()
}

/// Small models plan "Identify the issue", "Understand the expected behaviour", "Fix it", "Run the
/// tests" for a one-line fix, and each such step costs turns and a check. A step that only looks is
/// merged into the next step, and one that only runs the tests (with no check of its own) into the
/// step before it, so each step left is a change that its check can verify. Their intents and files
/// are kept in the step they join; a plan of nothing but looking keeps its first step.
pub fn fold_steps_that_change_nothing(steps: Vec<PlanStep>) -> Vec<PlanStep> {
    let mut kept: Vec<PlanStep> = Vec::new();
    let mut pending: Vec<PlanStep> = Vec::new();
    for step in steps {
        let word = first_word(&step.title);
        if LOOKING.contains(&word.as_str()) {
            pending.push(step);
            continue;
        }
        if TESTING.contains(&word.as_str()) && pending.is_empty() {
            // A check of its own keeps the step (its check is how it is verified), unless the step
            // before runs the same one.
            if let Some(previous) = kept
                .last_mut()
                .filter(|p| step.check.is_empty() || p.check == step.check)
            {
                absorb(previous, &step);
                continue;
            }
        }
        let mut step = step;
        for looked in pending.drain(..).rev() {
            prepend(&mut step, &looked);
        }
        kept.push(step);
    }
    if !pending.is_empty() {
        match kept.last_mut() {
            Some(last) => pending.iter().for_each(|looked| absorb(last, looked)),
            None => {
                let mut first = pending.remove(0);
                pending.iter().for_each(|looked| absorb(&mut first, looked));
                kept.push(first);
            }
        }
    }
    kept
}

/// `into` takes `other`'s intent (after its own) and files.
fn absorb(into: &mut PlanStep, other: &PlanStep) {
    into.intent = join_intents(&into.intent, &other.title, &other.intent);
    merge_files(into, other);
}

/// `into` takes `other`'s intent (before its own) and files.
fn prepend(into: &mut PlanStep, other: &PlanStep) {
    let own = into.intent.clone();
    into.intent = join_intents(&describe(&other.title, &other.intent), "", &own);
    merge_files(into, other);
}

fn describe(title: &str, intent: &str) -> String {
    if intent.trim().is_empty() {
        format!("{}.", title.trim().trim_end_matches('.'))
    } else {
        intent.trim().to_string()
    }
}

fn join_intents(first: &str, title: &str, second: &str) -> String {
    let second = if title.is_empty() {
        second.trim().to_string()
    } else {
        describe(title, second)
    };
    [first.trim(), second.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn merge_files(into: &mut PlanStep, other: &PlanStep) {
    for file in &other.files {
        if !into.files.contains(file) {
            into.files.push(file.clone());
        }
    }
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

    fn step(title: &str, intent: &str, files: &[&str]) -> PlanStep {
        PlanStep {
            title: title.into(),
            intent: intent.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            check: String::new(),
        }
    }

    #[test]
    fn steps_that_only_look_or_only_test_join_the_change_they_serve() {
        // What Qwen2.5-Coder-1.5B planned for a one-line fix of `add` in calc.py.
        let plan = fold_steps_that_change_nothing(vec![
            step("Identify the issue", "Find why add is wrong", &["calc.py"]),
            step("Understand the expected behavior", "", &["test_calc.py"]),
            step("Fix the add function", "Return a + b", &["calc.py"]),
            step("Run the tests", "Make sure they pass", &[]),
            step("Add a docstring to add", "Document it", &["calc.py"]),
            step("Verify the fix", "", &[]),
        ]);
        let titles: Vec<&str> = plan.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["Fix the add function", "Add a docstring to add"]);
        assert_eq!(
            plan[0].intent,
            "Find why add is wrong Understand the expected behavior. Return a + b Make sure they pass"
        );
        assert_eq!(plan[0].files, ["calc.py", "test_calc.py"]);
        assert_eq!(plan[1].intent, "Document it Verify the fix.");
        // A step with a check of its own is kept: its check is how it is verified.
        let mut build = step("Run the build", "", &[]);
        build.check = "make".into();
        assert_eq!(
            fold_steps_that_change_nothing(vec![step("Add x", "", &[]), build.clone()]).len(),
            2
        );
        // ... unless the step before runs the same check (Qwen2.5-Coder-1.5B: "Fix the bug",
        // "Verify the fix", both checked by the task's tests).
        let mut fix = step("Fix the bug", "", &["a.py"]);
        fix.check = "make".into();
        let folded = fold_steps_that_change_nothing(vec![fix, build]);
        assert_eq!(folded.len(), 1);
        assert_eq!(
            (folded[0].title.as_str(), folded[0].check.as_str()),
            ("Fix the bug", "make")
        );
        // Nothing but looking keeps one step; trailing looking joins the last change.
        let only = fold_steps_that_change_nothing(vec![
            step("Read the code", "", &[]),
            step("Review it", "", &["a"]),
        ]);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].title, "Read the code");
        assert_eq!(only[0].files, ["a"]);
        let tail = fold_steps_that_change_nothing(vec![
            step("Fix it", "", &[]),
            step("Review the result", "", &[]),
        ]);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].intent, "Review the result.");
        // A first step that only tests has nothing before it to join and is kept.
        assert_eq!(
            fold_steps_that_change_nothing(vec![step("Run the tests", "", &[])]).len(),
            1
        );
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
            None,
        )
        .unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[0].check, "cargo build");
        assert_eq!(plan.steps[0].files, vec!["src/lib.rs"]);
        assert_eq!(plan.steps[1].check, "");
        // A step's check that repeats the task's is the task's check, so a "Run the tests" step
        // after the fix joins it.
        let fix_then_test = parse(
            &reply(
                "plan",
                json!({"steps": [{"title": "Fix the bug"}, {"title": "Run the tests", "check": "make test "}]}),
            ),
            8,
            Some("make test"),
        )
        .unwrap();
        assert_eq!(fix_then_test.steps.len(), 1);
        assert_eq!(fix_then_test.steps[0].check, "");
        let one = parse(
            &reply("plan", json!({"steps": [{"title": "a"}, {"title": "b"}]})),
            1,
            None,
        )
        .unwrap();
        assert_eq!(one.steps.len(), 1);
        assert!(matches!(
            parse(&reply("read_file", json!({})), 8, None),
            Err(NotAPlan::OtherTool(_))
        ));
        assert!(matches!(
            parse(&reply("plan", json!({"steps": []})), 8, None),
            Err(NotAPlan::Invalid(_))
        ));
        assert!(matches!(
            parse(
                &reply("plan", json!({"steps": [{"title": "a", "extra": 1}]})),
                8,
                None
            ),
            Err(NotAPlan::Invalid(_))
        ));
        assert!(matches!(
            parse(&AssistantTurn::default(), 8, None),
            Err(NotAPlan::NoCall)
        ));
    }
}
