//! The eval harness's parts: tasks in the format of ../shared/eval (see its README), the oracle's
//! replay script, materialising a task as a git repository, judging a result with the original tests
//! restored, per-task results, and the summary.
//!
//! It never decides how a task is solved: `agent eval` runs the real `agent run` per task and only
//! reads its events and its branch.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::protocol::Event;
use crate::sandbox::{CommandSpec, Sandbox};

/// One task.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub difficulty: u32,
    pub instructions: String,
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub test_files: Vec<String>,
    pub test_command: String,
    #[serde(default)]
    pub reference: BTreeMap<String, String>,
}

/// Read a JSONL task file.
pub fn load(path: &Path) -> Result<Vec<Task>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: not a task: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The oracle's replay script: plan one step, write every reference file with the real `write_file`
/// tool, finish. Through the whole loop it measures the harness, not a model.
pub fn oracle_script(task: &Task) -> Result<Value, String> {
    if task.reference.is_empty() {
        return Err(format!(
            "{} has no reference solution for --oracle",
            task.id
        ));
    }
    let files: Vec<&String> = task.reference.keys().take(4).collect();
    let mut turns = vec![
        json!({"content": "one step", "tool_calls": [{"name": "plan", "arguments": {"steps": [
            {"title": "Implement the solution", "intent": "Write the solution files.", "files": files, "check": ""}
        ]}}]}),
    ];
    for (path, content) in &task.reference {
        turns.push(json!({"content": format!("write {path}"), "tool_calls": [{"name": "write_file", "arguments": {"path": path, "content": content}}]}));
    }
    turns.push(json!({"tool_calls": [{"name": "finish", "arguments": {"summary": "reference solution written"}}]}));
    Ok(json!(turns))
}

/// Write the task's files into `dir` and commit them as `main`.
pub fn materialise(task: &Task, dir: &Path) -> Result<(), String> {
    for (path, content) in &task.files {
        let full = crate::tools::confine(dir, path).map_err(|e| format!("{}: {e}", task.id))?;
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&full, content).map_err(|e| format!("writing {path}: {e}"))?;
    }
    let git = |e: git2::Error| format!("{}: git: {e}", task.id);
    let repo =
        git2::Repository::init_opts(dir, git2::RepositoryInitOptions::new().initial_head("main"))
            .map_err(git)?;
    let mut index = repo.index().map_err(git)?;
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .map_err(git)?;
    index.write().map_err(git)?;
    let tree = repo
        .find_tree(index.write_tree().map_err(git)?)
        .map_err(git)?;
    let who = git2::Signature::now("eval", "eval@localhost").map_err(git)?;
    repo.commit(Some("HEAD"), &who, &who, &task.id, &tree, &[])
        .map_err(git)?;
    Ok(())
}

/// Judge the work on `branch` (or the starting commit when the run left none): check it out, restore
/// the task's original test files, and run its test command in `sandbox`.
pub fn judge(
    task: &Task,
    repo_dir: &Path,
    branch: Option<&str>,
    sandbox: &dyn Sandbox,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(bool, String), String> {
    let git = |e: git2::Error| format!("judging {}: git: {e}", task.id);
    let repo = git2::Repository::open(repo_dir).map_err(git)?;
    let refname = format!("refs/heads/{}", branch.unwrap_or("main"));
    repo.set_head(&refname).map_err(git)?;
    repo.checkout_head(Some(
        git2::build::CheckoutBuilder::new()
            .force()
            .remove_untracked(true),
    ))
    .map_err(git)?;
    for path in &task.test_files {
        if let Some(original) = task.files.get(path) {
            let full = crate::tools::confine(repo_dir, path).map_err(|e| e.to_string())?;
            std::fs::write(full, original).map_err(|e| format!("restoring {path}: {e}"))?;
        }
    }
    let outcome = sandbox
        .run(&CommandSpec {
            command: task.test_command.clone(),
            cwd: repo_dir.to_path_buf(),
            timeout,
            env: env.to_vec(),
            output_limit: 16 * 1024,
        })
        .map_err(|e| format!("judging {}: {e}", task.id))?;
    Ok((outcome.success(), outcome.status_line()))
}

/// One task's result: a line of `results.jsonl`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskResult {
    pub id: String,
    pub language: String,
    pub difficulty: u32,
    pub solved: bool,
    /// What the judge's test run said.
    pub judge: String,
    pub run_id: Option<String>,
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    pub steps_accepted: usize,
    pub steps_rejected: usize,
    /// Commits on the task branch.
    pub commits: usize,
    pub turns: usize,
    pub tokens: u64,
    pub checks: usize,
    /// Wall time of the whole `agent run`, and the parts of it spent in the model, the tools, the
    /// checks (sandbox) and git (commit + publish).
    pub wall_ms: u64,
    pub model_ms: u64,
    pub tools_ms: u64,
    pub checks_ms: u64,
    pub git_ms: u64,
    pub judge_ms: u64,
    /// Model turns offered tools, and how many of them made exactly one parsed call; turns asked
    /// for plain text (the whole-file first try) are in neither.
    #[serde(default)]
    pub call_turns: usize,
    #[serde(default)]
    pub valid_calls: usize,
    /// Edit calls (`apply_patch`, `write_file`, the whole-file try's writes) and how many applied.
    #[serde(default)]
    pub edit_calls: usize,
    #[serde(default)]
    pub edits_applied: usize,
    /// Why the task could not be run or judged.
    pub error: Option<String>,
}

impl TaskResult {
    /// Fill in what the run's events say.
    pub fn absorb(&mut self, events: &[Event]) {
        // Whether the turn being answered was offered tools (its request comes just before it).
        let mut offered = true;
        for event in events {
            match event {
                Event::RunStarted { run_id, .. } => self.run_id = Some(run_id.clone()),
                Event::ModelRequest { tools, .. } => offered = !tools.is_empty(),
                Event::ModelTurn {
                    usage, tool_calls, ..
                } => {
                    self.model_ms += usage.elapsed_ms;
                    if offered {
                        self.call_turns += 1;
                        self.valid_calls += usize::from(tool_calls.len() == 1);
                    }
                }
                Event::ToolResult {
                    name,
                    ok,
                    elapsed_ms,
                    ..
                } => {
                    self.tools_ms += elapsed_ms;
                    if EDIT_TOOLS.contains(&name.as_str()) {
                        self.edit_calls += 1;
                        self.edits_applied += usize::from(*ok);
                    }
                }
                Event::CheckResult { elapsed_ms, .. } => self.checks_ms += elapsed_ms,
                Event::Commit { elapsed_ms, .. } => self.git_ms += elapsed_ms,
                Event::Finished {
                    outcome,
                    exit_code,
                    turns,
                    steps_accepted,
                    steps_rejected,
                    checks,
                    tokens,
                    commits,
                    ..
                } => {
                    self.commits = commits.len();
                    self.outcome = serde_json::to_value(outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string));
                    self.exit_code = Some(*exit_code);
                    self.turns = *turns;
                    self.steps_accepted = *steps_accepted;
                    self.steps_rejected = *steps_rejected;
                    self.checks = *checks;
                    self.tokens = *tokens;
                }
                _ => {}
            }
        }
    }
}

/// The tools whose calls change files: the edit calls counted per task.
const EDIT_TOOLS: [&str; 2] = ["apply_patch", "write_file"];

/// The branch a run's events name, if it published one.
pub fn branch_of(events: &[Event]) -> Option<String> {
    events.iter().rev().find_map(|e| match e {
        Event::Finished { branch, .. } => branch.clone(),
        _ => None,
    })
}

/// The summary: pass rates per language and per difficulty, where the time went, and last the line
/// `N passed, M failed`.
pub fn summarize(results: &[TaskResult], elapsed: Duration) -> String {
    let mut text = String::new();
    let rate = |group: &[&TaskResult]| {
        let solved = group.iter().filter(|r| r.solved).count();
        format!(
            "{solved}/{} ({:.0}%)",
            group.len(),
            100.0 * solved as f64 / group.len().max(1) as f64
        )
    };
    let mut languages: BTreeMap<&str, Vec<&TaskResult>> = BTreeMap::new();
    let mut difficulties: BTreeMap<u32, Vec<&TaskResult>> = BTreeMap::new();
    for r in results {
        languages.entry(r.language.as_str()).or_default().push(r);
        difficulties.entry(r.difficulty).or_default().push(r);
    }
    for (language, group) in &languages {
        text.push_str(&format!("{language:<10} {}\n", rate(group)));
    }
    let per_difficulty: Vec<String> = difficulties
        .iter()
        .map(|(d, group)| format!("{d}: {}", rate(group)))
        .collect();
    text.push_str(&format!("difficulty {}\n", per_difficulty.join(", ")));
    let sum = |f: fn(&TaskResult) -> u64| results.iter().map(f).sum::<u64>();
    let wall = sum(|r| r.wall_ms).max(1);
    let share = |ms: u64| 100.0 * ms as f64 / wall as f64;
    let (model, tools, checks, git) = (
        sum(|r| r.model_ms),
        sum(|r| r.tools_ms),
        sum(|r| r.checks_ms),
        sum(|r| r.git_ms),
    );
    let other = wall.saturating_sub(model + tools + checks + git);
    text.push_str(&format!(
        "time in runs {:.1} s: model {:.0}%, checks {:.0}%, tools {:.0}%, git {:.0}%, other (start-up, dependency fetch, workspace) {:.0}%\n",
        wall as f64 / 1000.0,
        share(model),
        share(checks),
        share(tools),
        share(git),
        share(other)
    ));
    text.push_str(&format!(
        "harness overhead (outside the model and the checks): {:.0}% of run time; judging took {:.1} s; eval wall time {:.1} s\n",
        share(tools + git + other),
        sum(|r| r.judge_ms) as f64 / 1000.0,
        elapsed.as_secs_f64()
    ));
    let count = |f: fn(&TaskResult) -> usize| results.iter().map(f).sum::<usize>();
    let percent = |a: usize, b: usize| {
        if b == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * a as f64 / b as f64)
        }
    };
    let (call_turns, valid, edits, applied) = (
        count(|r| r.call_turns),
        count(|r| r.valid_calls),
        count(|r| r.edit_calls),
        count(|r| r.edits_applied),
    );
    text.push_str(&format!(
        "model turns {}: {} of {call_turns} tool turns made one valid call ({}); edit calls applied {applied} of {edits} ({}); tokens {}\n",
        count(|r| r.turns),
        valid,
        percent(valid, call_turns),
        percent(applied, edits),
        sum(|r| r.tokens),
    ));
    let errors = results.iter().filter(|r| r.error.is_some()).count();
    if errors > 0 {
        text.push_str(&format!(
            "{errors} task(s) could not be run or judged (see `error` in the results)\n"
        ));
    }
    let passed = results.iter().filter(|r| r.solved).count();
    text.push_str(&format!(
        "{passed} passed, {} failed\n",
        results.len() - passed
    ));
    text
}

/// Milliseconds since `started`.
pub fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_groups_by_language_and_difficulty_and_ends_with_the_count() {
        let result = |id: &str, language: &str, difficulty: u32, solved: bool| TaskResult {
            id: id.into(),
            language: language.into(),
            difficulty,
            solved,
            wall_ms: 1000,
            model_ms: 500,
            checks_ms: 250,
            ..TaskResult::default()
        };
        let results = vec![
            result("a", "rust", 1, true),
            result("b", "rust", 2, false),
            result("c", "python", 1, true),
        ];
        let text = summarize(&results, Duration::from_secs(3));
        assert!(text.contains("rust       1/2 (50%)"), "{text}");
        assert!(text.contains("python     1/1 (100%)"), "{text}");
        assert!(
            text.contains("difficulty 1: 2/2 (100%), 2: 0/1 (0%)"),
            "{text}"
        );
        assert!(text.contains("model 50%, checks 25%"), "{text}");
        assert!(text.ends_with("2 passed, 1 failed\n"), "{text}");
    }

    #[test]
    fn call_figures_count_tool_turns_only_and_edits_that_applied() {
        use crate::model::{ToolCall, Usage};
        let request = |tools: &[&str]| Event::ModelRequest {
            turn: 1,
            conversation: "step-1".into(),
            first_message: 0,
            messages: Vec::new(),
            tools: tools.iter().map(|t| t.to_string()).collect(),
        };
        let turn = |calls: usize| Event::ModelTurn {
            turn: 1,
            max_turns: 10,
            content: String::new(),
            tool_calls: (0..calls)
                .map(|_| ToolCall {
                    id: String::new(),
                    name: "read_file".into(),
                    arguments: json!({}),
                })
                .collect(),
            usage: Usage::default(),
        };
        let result = |name: &str, ok: bool| Event::ToolResult {
            turn: 1,
            name: name.into(),
            ok,
            output: String::new(),
            elapsed_ms: 0,
        };
        let events = vec![
            // A plain-text turn (the whole-file try) is no tool turn; its write still counts.
            request(&[]),
            turn(0),
            result("write_file", false),
            request(&["read_file", "apply_patch"]),
            turn(1),
            result("apply_patch", true),
            request(&["read_file", "apply_patch"]),
            turn(0),
            request(&["read_file"]),
            turn(1),
            result("read_file", true),
        ];
        let mut figures = TaskResult::default();
        figures.absorb(&events);
        assert_eq!((figures.call_turns, figures.valid_calls), (3, 2));
        assert_eq!((figures.edit_calls, figures.edits_applied), (2, 1));
        let text = summarize(&[figures], Duration::from_secs(1));
        assert!(
            text.contains(
                "2 of 3 tool turns made one valid call (67%); edit calls applied 1 of 2 (50%)"
            ),
            "{text}"
        );
    }

    #[test]
    fn materialised_tasks_are_committed_and_the_judge_restores_the_tests() {
        let task: Task = serde_json::from_value(json!({
            "id": "t/one", "language": "python", "difficulty": 1, "instructions": "x",
            "files": {"a.py": "X = 1\n", "a_test.py": "from a import X\nassert X == 2\n"},
            "test_files": ["a_test.py"], "test_command": "python3 a_test.py",
            "reference": {"a.py": "X = 2\n"}
        }))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        materialise(&task, dir.path()).unwrap();
        let sandbox = crate::sandbox::none::NoSandbox;
        let timeout = Duration::from_secs(30);
        let (solved, _) = judge(&task, dir.path(), None, &sandbox, &[], timeout).unwrap();
        assert!(!solved);
        // A "solution" that weakens the test instead of fixing the code is judged on the original test.
        let repo = git2::Repository::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("a_test.py"), "pass\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("a_test.py")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        let who = git2::Signature::now("t", "t@t").unwrap();
        repo.commit(
            Some("refs/heads/agent/cheat"),
            &who,
            &who,
            "cheat",
            &tree,
            &[&head],
        )
        .unwrap();
        let (solved, _) = judge(
            &task,
            dir.path(),
            Some("agent/cheat"),
            &sandbox,
            &[],
            timeout,
        )
        .unwrap();
        assert!(!solved, "the original test was restored");
        assert_eq!(oracle_script(&task).unwrap().as_array().unwrap().len(), 3);
    }
}
