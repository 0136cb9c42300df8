//! The planner–executor loop end to end, through the real binary with the replay backend, on real git
//! repositories: multi-step plans, a step that fails and is re-planned, loop detection, truncated
//! outputs, a crash between edit and commit with `agent resume`, and `agent log` / `agent replay`.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::{json, Value};

fn write(path: &str, content: &str) -> Value {
    json!({"content": format!("write {path}"), "tool_calls": [{"name": "write_file", "arguments": {"path": path, "content": content}}]})
}

/// A scripted turn that crashes the agent when it is asked for (`"abort": true`).
fn crash_at(mut turn: Value) -> Value {
    turn["abort"] = json!(true);
    turn
}

fn finish(summary: &str) -> Value {
    json!({"tool_calls": [{"name": "finish", "arguments": {"summary": summary}}]})
}

/// A plan whose steps carry their own checks.
fn plan_with_checks(steps: &[(&str, &str)]) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(title, check)| json!({"title": title, "intent": format!("{title}."), "files": [], "check": check}))
        .collect();
    json!({"content": "plan", "tool_calls": [{"name": "plan", "arguments": {"steps": steps}}]})
}

fn run_agent(home: &Path, repo: &Path, task: &str, model: &str, extra: &[&str]) -> Output {
    agent(home)
        .args(["run", task, "--json", "--no-fetch", "--model", model])
        .args(extra)
        .arg("--repo")
        .arg(repo)
        .output()
        .unwrap()
}

fn branch_messages(repo: &Path, branch: &str) -> Vec<String> {
    git(
        repo,
        &[
            "log",
            "--reverse",
            "--format=%B%x00",
            &format!("main..{branch}"),
        ],
    )
    .split('\0')
    .map(|m| m.trim().to_string())
    .filter(|m| !m.is_empty())
    .collect()
}

/// `add` subtracts, and `test_calc.py` says so.
fn buggy_calc_repo() -> tempfile::TempDir {
    repo_with(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        (
            "test_calc.py",
            "import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
        ),
    ])
}

const TASK_CHECK: &str = "test -f a.txt && grep -qx ok b.txt && test -f c.txt";

#[test]
fn a_step_that_fails_twice_is_rolled_back_and_replanned_and_the_run_replays_identically() {
    let repo = repo_with(&[("README.md", "three files\n")]);
    let before = user_state(repo.path());
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_with_checks(&[
                ("Add a", "test -f a.txt"),
                ("Add b", "grep -qx ok b.txt"),
                ("Add c", "")
            ]),
            write("a.txt", "a\n"),
            finish("a added"),
            write("b.txt", "bad\n"),
            finish("b added"),
            write("b.txt", "worse\n"),
            finish("b fixed"),
            plan_with_checks(&[
                ("Add b with the right content", "grep -qx ok b.txt"),
                ("Add c", "")
            ]),
            write("b.txt", "ok\n"),
            finish("b is ok"),
            write("c.txt", "c\n"),
            finish("c added"),
        ]),
    );
    let output = run_agent(
        home.path(),
        repo.path(),
        "add a, b and c",
        &model,
        &["--check", TASK_CHECK, "--step-tries", "2"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);

    // Every prompt is in the trajectory, each request carrying only what is new in its conversation.
    let requests = of_kind(&events, "model_request");
    assert_eq!(requests.len(), of_kind(&events, "model_turn").len());
    assert_eq!(requests[0]["conversation"], "plan-1");
    assert_eq!(requests[0]["tools"], json!(["plan"]));
    assert_eq!(requests[1]["conversation"], "step-1");
    assert_eq!(requests[1]["first_message"], 0);
    assert_eq!(requests[1]["messages"][0]["role"], "system");
    assert!(requests[1]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains("Now do step 1 of 3: Add a"));
    assert_eq!(
        requests[2]["first_message"], 3,
        "system, brief, reply: then the result"
    );
    assert_eq!(requests[2]["messages"][0]["role"], "tool");

    let plans = of_kind(&events, "plan_made");
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[1]["revision"], 2);
    assert_eq!(plans[1]["first_step"], 2);
    let reason = plans[1]["reason"].as_str().unwrap();
    assert!(
        reason.contains("step 2 (Add b)") && reason.contains("2 attempt"),
        "{reason}"
    );

    let rejected = of_kind(&events, "step_rejected");
    assert_eq!(
        rejected.len(),
        1,
        "the second failure ends the step: {rejected:?}"
    );
    let rolled = of_kind(&events, "rolled_back");
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0]["step"], 2);
    let saved = std::fs::read_to_string(rolled[0]["saved"].as_str().unwrap()).unwrap();
    assert!(
        saved.contains("+worse"),
        "the rolled-back work is kept: {saved}"
    );

    let finished = of_kind(&events, "finished")[0];
    assert_eq!(finished["steps_accepted"], 3, "{finished}");
    assert_eq!(finished["steps_rejected"], 1, "{finished}");
    let branch = finished["branch"].as_str().unwrap();
    let messages = branch_messages(repo.path(), branch);
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].starts_with("Add a\n") && messages[0].contains("Agent-Step: 1/3"));
    assert!(
        messages[1].starts_with("Add b with the right content\n")
            && messages[1].contains("Check: `grep -qx ok b.txt` passed")
            && messages[1].contains("Agent-Step: 2/3"),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].contains(&format!("Check: `{TASK_CHECK}` passed"))
            && messages[2].contains("Agent-Step: 3/3"),
        "the last step is verified by the task's check: {}",
        messages[2]
    );
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:b.txt")]),
        "ok"
    );
    assert_eq!(
        user_state(repo.path()),
        before,
        "the user's checkout changed"
    );

    // The trajectory can be read back and replayed to the same commits.
    let run_id = of_kind(&events, "run_started")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = agent(home.path()).args(["log", &run_id]).output().unwrap();
    assert_eq!(log.status.code(), Some(0), "{}", describe(&log));
    let shown = String::from_utf8_lossy(&log.stdout);
    assert!(
        shown.contains("revised plan (revision 2)") && shown.contains("rolled back step 2"),
        "{shown}"
    );
    let list = agent(home.path()).arg("log").output().unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&run_id),
        "{}",
        describe(&list)
    );
    let replay = agent(home.path())
        .args(["replay", &run_id])
        .output()
        .unwrap();
    assert_eq!(replay.status.code(), Some(0), "{}", describe(&replay));
    assert!(
        String::from_utf8_lossy(&replay.stderr)
            .contains("same outcome (Finished) and the same 3 commit tree(s)"),
        "{}",
        describe(&replay)
    );
    assert_eq!(user_state(repo.path()), before, "a replay changes nothing");
}

#[test]
fn a_loop_of_the_same_failing_call_is_stopped_and_accepted_commits_stay() {
    let repo = repo_with(&[("src.txt", "one\n")]);
    let home = tempfile::tempdir().unwrap();
    let bad = json!({"tool_calls": [{"name": "apply_patch", "arguments": {"patch": "--- a/src.txt\n+++ b/src.txt\n@@ -1 +1 @@\n-two\n+three\n"}}]});
    let look = json!({"tool_calls": [{"name": "read_file", "arguments": {"path": "src.txt"}}]});
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Add a", "Change src"]),
            write("a.txt", "a\n"),
            finish("a added"),
            bad,
            // The first repeat is not run: the turn is asked again without apply_patch.
            bad,
            look,
            // Later repeats are run, and counted.
            bad,
            bad,
            plan_turn(&["Change src another way"]),
            bad,
            finish("never reached"),
        ]),
    );
    let output = run_agent(
        home.path(),
        repo.path(),
        "change src",
        &model,
        &["--check", "true"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let events = events(&output);
    let finished = of_kind(&events, "finished")[0];
    assert_eq!(finished["outcome"], "loop_detected", "{finished}");
    assert!(
        finished["summary"].as_str().unwrap().contains("five times"),
        "{finished}"
    );
    let notes: Vec<&str> = of_kind(&events, "note")
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("a third identical `apply_patch` call")),
        "{notes:?}"
    );
    let plans = of_kind(&events, "plan_made");
    assert_eq!(plans.len(), 2);
    assert!(plans[1]["reason"]
        .as_str()
        .unwrap()
        .contains("called the tool `apply_patch` four times with the same arguments"));
    let branch = finished["branch"].as_str().unwrap();
    assert_eq!(
        branch_messages(repo.path(), branch).len(),
        1,
        "step 1 stays"
    );
    assert_eq!(git(repo.path(), &["show", &format!("{branch}:a.txt")]), "a");
}

#[test]
fn an_over_long_tool_output_is_truncated_with_a_way_to_see_more() {
    let repo = repo_with(&[("a.txt", "a\n")]);
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Look at a lot of output"]),
            {"tool_calls": [{"name": "run", "arguments": {"command": "seq 1 200000"}}]},
            finish("looked"),
        ]),
    );
    let output = run_agent(
        home.path(),
        repo.path(),
        "look",
        &model,
        &["--check", "true"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);
    let result = of_kind(&events, "tool_result")[0]["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        result.len() < 20 * 1024,
        "{} bytes reached the model",
        result.len()
    );
    assert!(result.contains("bytes of output omitted"), "{result}");
    assert!(result.contains("199999\n200000"), "the end is kept");
    assert!(
        result.starts_with("$ seq 1 200000\nexit 0"),
        "{}",
        &result[..40]
    );
    assert!(result.contains("\n1\n2\n3\n"), "the start is kept");
    assert!(
        result.contains("`tail -n N`"),
        "how to see more: {}",
        &result[result.len() - 300..]
    );
}

#[test]
fn a_crash_between_the_edit_and_the_commit_is_resumed_from_the_last_accepted_step() {
    let repo = repo_with(&[("README.md", "three files\n")]);
    let before = user_state(repo.path());
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_with_checks(&[
                ("Add a", "test -f a.txt"),
                ("Add b", "grep -qx ok b.txt"),
                ("Add c", "")
            ]),
            write("a.txt", "a\n"),
            finish("a added"),
            write("b.txt", "ok\n"),
            // The replay backend's scripted crash: b.txt is written, step 2 is not committed.
            crash_at(finish("b added")),
            write("c.txt", "c\n"),
            finish("c added"),
        ]),
    );
    let crashed = agent(home.path())
        .args([
            "run",
            "add a, b and c",
            "--json",
            "--no-fetch",
            "--model",
            &model,
            "--check",
            TASK_CHECK,
            "--repo",
        ])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.code(),
        None,
        "killed by SIGABRT: {}",
        describe(&crashed)
    );
    let crash_events = common::events(&crashed);
    let run_id = of_kind(&crash_events, "run_started")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let branch = of_kind(&crash_events, "run_started")[0]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(of_kind(&crash_events, "commit").len(), 1);
    assert_eq!(
        branch_messages(repo.path(), &branch).len(),
        1,
        "only step 1 landed"
    );
    // The crash leaves the run's copy of the repository behind, b.txt written but not committed.
    let abandoned = std::path::PathBuf::from(
        of_kind(&crash_events, "run_started")[0]["workspace"]
            .as_str()
            .unwrap(),
    );
    assert!(abandoned.join("b.txt").is_file());
    assert_eq!(user_state(repo.path()), before);

    // While another process (this test) holds the run's lock, resuming it is refused.
    let run_dir = home.path().join(format!("state/agent/runs/{run_id}"));
    let lock = agent::runs::RunLock::acquire(&run_dir)
        .unwrap()
        .expect("the crashed run left its lock free");
    let refused = agent(home.path())
        .args(["resume", &run_id])
        .output()
        .unwrap();
    drop(lock);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains(&format!("still running (process {})", std::process::id())),
        "{}",
        describe(&refused)
    );

    let resumed = agent(home.path())
        .args(["resume", &run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", describe(&resumed));
    let events = common::events(&resumed);
    // The copy the crash left is gone, its uncommitted change saved beside the run's log.
    assert!(
        !abandoned.exists(),
        "the crashed run's worktree was left behind"
    );
    let saved = run_dir.join("interrupted-1.patch");
    assert!(
        notes(&events)
            .iter()
            .any(|n| n.contains("removed the interrupted run's worktree")
                && n.contains(&saved.display().to_string())),
        "{:?}",
        notes(&events)
    );
    let patch = std::fs::read_to_string(&saved).unwrap();
    assert!(patch.contains("+ok") && patch.contains("b.txt"), "{patch}");
    let point = of_kind(&events, "run_resumed")[0];
    assert_eq!(point["done_steps"], 1, "{point}");
    assert_eq!(point["remaining_steps"], 2, "{point}");
    assert_eq!(point["turns"], 3, "{point}");
    let messages = branch_messages(repo.path(), &branch);
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[1].contains("Agent-Step: 2/3")
            && messages[1].contains(&format!("Agent-Run: {run_id}"))
    );
    assert_eq!(git(repo.path(), &["show", &format!("{branch}:c.txt")]), "c");
    assert_eq!(user_state(repo.path()), before);

    // Finished runs and unknown runs are refused clearly.
    let again = agent(home.path())
        .args(["resume", &run_id])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to resume"));
    let unknown = agent(home.path())
        .args(["resume", "nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("agent log"));
    // The replay of a resumed run skips the interrupted attempt's turns and lands on the same commits.
    let replay = agent(home.path())
        .args(["replay", &run_id])
        .output()
        .unwrap();
    assert_eq!(replay.status.code(), Some(0), "{}", describe(&replay));
}

/// What Qwen2.5-Coder-1.5B did with a one-line fix: it planned six steps ("Identify the issue",
/// "Understand the expected behavior", ...), fixed the bug in step 1 with the check passing, and
/// then ran out of turns in step 2 and exited "budget exhausted" with the task solved.
#[test]
fn a_fix_that_makes_the_failing_check_pass_ends_the_run_and_steps_that_only_look_are_folded() {
    let repo = buggy_calc_repo();
    let home = tempfile::tempdir().unwrap();
    // Only the turns of the first step: a run that went on into the docstring step would find the
    // script exhausted and fail.
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&[
                "Identify the issue",
                "Understand the expected behavior",
                "Fix the add function",
                "Run the tests",
                "Add a docstring to add",
                "Verify the fix"
            ]),
            write("calc.py", "def add(a, b):\n    return a + b\n"),
            finish("add adds")
        ]),
    );
    let out = run_agent(
        home.path(),
        repo.path(),
        "Fix add in calc.py: test_calc.T.test_add fails",
        &model,
        &["--check", "python3 -m unittest test_calc"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = events(&out);
    let plan = of_kind(&events, "plan_made")[0];
    let titles: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Fix the add function", "Add a docstring to add"]);
    // The check ran before any change and failed; its output reached the planner and the step.
    let checks = of_kind(&events, "check_result");
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_eq!(checks[0]["passed"], false);
    assert_eq!(checks[1]["passed"], true);
    let requests = of_kind(&events, "model_request");
    for request in &requests[..2] {
        let text = request["messages"].to_string();
        assert!(
            text.contains("fails now") && text.contains("test_add"),
            "the failing test is shown: {text}"
        );
    }
    let finished = of_kind(&events, "finished")[0];
    assert_eq!(finished["outcome"], "finished", "{finished}");
    let notes = of_kind(&events, "note")
        .iter()
        .map(|n| n["message"].to_string())
        .collect::<Vec<_>>();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("not needed: Add a docstring to add")),
        "{notes:?}"
    );
    let branch = finished["branch"].as_str().unwrap();
    let messages = branch_messages(repo.path(), branch);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("Fix the add function\n"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("Agent-Step: 1/2"), "{}", messages[0]);
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:calc.py")]),
        "def add(a, b):\n    return a + b"
    );
}

/// What Qwen2.5-Coder-1.5B did with the README's example: asked to make `greet_test.py` pass, it
/// replaced the tests with one that passes, and the check "passed".
#[test]
fn a_failing_check_cannot_be_passed_by_rewriting_its_tests() {
    let tests = "import unittest\nfrom greet import greet\n\n\nclass GreetTest(unittest.TestCase):\n    def test_greets_by_name(self):\n        self.assertEqual(greet(\"Ada\"), \"Hello, Ada!\")\n";
    let files = [
        (
            "greet.py",
            "def greet(name):\n    return \"Hello, World!\"\n",
        ),
        ("greet_test.py", tests),
    ];
    let gutted = "import unittest\n\n\nclass GreetTest(unittest.TestCase):\n    def test_nothing(self):\n        pass\n";
    let fixed = "def greet(name):\n    return f\"Hello, {name}!\"\n";
    let script = json!([
        plan_turn(&["Make greet greet by name"]),
        write("greet_test.py", gutted),
        finish("tests pass"),
        write("greet.py", fixed),
        finish("greet uses the name")
    ]);
    let task = "Make greet() greet by name; the tests in greet_test.py describe it";
    let check = ["--check", "python3 -m unittest discover -p '*_test.py'"];

    let repo = repo_with(&files);
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(home.path(), script.clone());
    let out = run_agent(home.path(), repo.path(), task, &model, &check);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let seen = events(&out);
    let rejected = of_kind(&seen, "step_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("greet_test.py were undone"),
        "{}",
        rejected[0]
    );
    // The gutted tests were never checked as the step's work: the only passing check is the fix's.
    let checks = of_kind(&seen, "check_result");
    assert_eq!(
        checks.len(),
        2,
        "before any change, then the fix: {checks:?}"
    );
    let branch = of_kind(&seen, "finished")[0]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:greet_test.py")]),
        tests.trim_end()
    );
    assert_eq!(
        git(repo.path(), &["diff", "--name-only", "main", &branch]),
        "greet.py"
    );

    // With --allow-test-edits the user takes that responsibility: the rewritten tests are committed.
    let repo = repo_with(&files);
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(home.path(), script);
    let mut args = check.to_vec();
    args.push("--allow-test-edits");
    let out = run_agent(home.path(), repo.path(), task, &model, &args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let branch = of_kind(&events(&out), "finished")[0]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:greet_test.py")]),
        gutted.trim_end()
    );
}

/// What Qwen2.5-Coder-1.5B did on bug-fix tasks: it called finish on the untouched files ("the bug has
/// been fixed") turn after turn. After one such finish fails the check, finish is not offered until a
/// file changes; the model is told why.
#[test]
fn finish_on_untouched_failing_files_is_withheld_until_a_file_changes() {
    let repo = buggy_calc_repo();
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Fix the add function"]),
            finish("the bug has been fixed"),
            {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc.py"}}]},
            write("calc.py", "def add(a, b):\n    return a + b\n"),
            finish("add adds")
        ]),
    );
    let out = run_agent(
        home.path(),
        repo.path(),
        "Fix add in calc.py: test_calc.T.test_add fails",
        &model,
        &["--check", "python3 -m unittest test_calc"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = events(&out);
    let offered: Vec<Vec<String>> = of_kind(&events, "model_request")
        .iter()
        .map(|r| {
            r["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let has_finish = |turn: usize| offered[turn].iter().any(|t| t == "finish");
    // Turns: plan, the empty finish, read_file, write_file, finish.
    assert_eq!(offered.len(), 5, "{offered:?}");
    assert!(has_finish(1), "{offered:?}");
    assert!(!has_finish(2) && !has_finish(3), "{offered:?}");
    assert!(has_finish(4), "{offered:?}");
    let rejected = of_kind(&events, "step_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let told = of_kind(&events, "model_request")[2]["messages"].to_string();
    assert!(
        told.contains("finish is not offered until you change a file"),
        "{told}"
    );
    let finished = of_kind(&events, "finished")[0];
    assert_eq!(finished["outcome"], "finished", "{finished}");
}

/// Only a worktree the agent made for this repository is ever removed when a run is resumed: not a
/// folder of the same name without the borrowed objects, not a link to one, not the repository.
#[test]
fn reclaiming_an_abandoned_worktree_touches_nothing_else() {
    let repo = repo_with(&[("README.md", "r\n")]);
    let never = |_: &str| -> std::io::Result<()> { panic!("nothing is ours to save") };
    let decoy = tempfile::Builder::new()
        .prefix("agent-work-")
        .tempdir()
        .unwrap();
    std::fs::write(decoy.path().join("precious.txt"), "keep\n").unwrap();
    let link = std::env::temp_dir().join(format!("agent-work-link-{}", std::process::id()));
    std::os::unix::fs::symlink(decoy.path(), &link).unwrap();
    for path in [decoy.path(), link.as_path(), repo.path()] {
        let reclaimed = agent::vcs::reclaim_abandoned(path, repo.path(), never).unwrap();
        assert_eq!(reclaimed, None, "{}", path.display());
    }
    std::fs::remove_file(&link).unwrap();
    assert_eq!(
        std::fs::read_to_string(decoy.path().join("precious.txt")).unwrap(),
        "keep\n"
    );
    assert!(repo.path().join("README.md").is_file());
}

/// What Qwen2.5-Coder-1.5B did in the bug-fix slice: it copied read_file's `N| ` line numbers (and
/// the header above them) into the file it wrote back and into a patch's context lines. The file
/// must end up without them, and the model be told.
#[test]
fn line_numbers_copied_from_read_file_never_reach_the_file() {
    let fixed = "def add(a, b):\n    return a + b\n";
    let patch = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n 1| def add(a, b):\n-2|     return a - b\n+    return a + b\n";
    let copied = "calc.py (lines 1-2 of 2):\n1| def add(a, b):\n2|     return a + b\n";
    let cases = [
        json!({"content": "patch", "tool_calls": [{"name": "apply_patch", "arguments": {"patch": patch}}]}),
        write("calc.py", copied),
    ];
    for edit in cases {
        let repo = buggy_calc_repo();
        let home = tempfile::tempdir().unwrap();
        let model = replay_script(
            home.path(),
            json!([
                plan_turn(&["Fix the add function"]),
                edit,
                finish("add adds")
            ]),
        );
        let out = run_agent(
            home.path(),
            repo.path(),
            "Fix add in calc.py: test_calc.T.test_add fails",
            &model,
            &["--check", "python3 -m unittest test_calc"],
        );
        assert_eq!(out.status.code(), Some(0), "{edit}\n{}", describe(&out));
        let events = events(&out);
        let result = of_kind(&events, "tool_result")[0]["output"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            result.contains("line numbers"),
            "the model is told: {result}"
        );
        let branch = of_kind(&events, "finished")[0]["branch"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            git(repo.path(), &["show", &format!("{branch}:calc.py")]),
            fixed.trim_end()
        );
    }
}

/// A turn that repeats an answered call is asked again with that tool withheld: the repeat is never
/// run and never enters the conversation, and the recorded run replays the same way.
#[test]
fn a_repeated_call_is_not_run_again_and_its_turn_is_asked_again_without_that_tool() {
    let repo = buggy_calc_repo();
    let home = tempfile::tempdir().unwrap();
    let read = json!({"tool_calls": [{"name": "read_file", "arguments": {"path": "calc.py"}}]});
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Fix the add function"]),
            read,
            read,
            write("calc.py", "def add(a, b):\n    return a + b\n"),
            finish("add adds")
        ]),
    );
    let out = run_agent(
        home.path(),
        repo.path(),
        "Fix add in calc.py: test_calc.T.test_add fails",
        &model,
        &["--check", "python3 -m unittest test_calc"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = events(&out);
    let ran: Vec<&str> = of_kind(&events, "tool_result")
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["read_file", "write_file", "finish"], "{ran:?}");
    assert_eq!(of_kind(&events, "model_turn").len(), 5);
    assert!(
        notes(&events)
            .iter()
            .any(|n| n.contains("repeated an answered `read_file` call")),
        "{:?}",
        notes(&events)
    );
    let requests = of_kind(&events, "model_request");
    assert_eq!(
        requests[3]["messages"],
        json!([]),
        "asked again, nothing new"
    );
    let offered = |i: usize| requests[i]["tools"].to_string();
    assert!(offered(2).contains("\"read_file\""));
    assert!(!offered(3).contains("\"read_file\"") && offered(3).contains("\"write_file\""));
    assert!(
        offered(4).contains("\"read_file\""),
        "withheld for one turn only"
    );
    // The model was shown one read_file call, not the repeat.
    let shown_reads = requests
        .iter()
        .flat_map(|r| r["messages"].as_array().unwrap())
        .filter(|m| m.to_string().contains("\"read_file\""))
        .count();
    assert_eq!(shown_reads, 1);
    let finished = of_kind(&events, "finished")[0];
    let branch = finished["branch"].as_str().unwrap();
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:calc.py")]),
        "def add(a, b):\n    return a + b"
    );

    let run_id = of_kind(&events, "run_started")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let replay = agent(home.path())
        .args(["replay", &run_id])
        .output()
        .unwrap();
    assert_eq!(replay.status.code(), Some(0), "{}", describe(&replay));
    assert!(
        String::from_utf8_lossy(&replay.stderr).contains("same outcome (Finished)"),
        "{}",
        describe(&replay)
    );
}

/// A plan step that names the buggy file.
fn plan_on(title: &str, files: &[&str]) -> Value {
    json!({"content": "plan", "tool_calls": [{"name": "plan", "arguments": {"steps": [
        {"title": title, "intent": format!("{title}."), "files": files, "check": ""}
    ]}}]})
}

/// With the task's check failing and the step naming short files, the model is first asked for the
/// files back whole in plain text; a reply that makes the check pass is the step's commit, before
/// any tool call.
#[test]
fn a_whole_file_reply_that_passes_the_check_is_committed_before_any_tool_call() {
    let repo = buggy_calc_repo();
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_on("Fix add", &["calc.py", "test_calc.py"]),
            {"content": "The bug is the minus.\n\n**calc.py**\n```python\ndef add(a, b):\n    return a + b\n```\n"},
        ]),
    );
    let out = run_agent(
        home.path(),
        repo.path(),
        "Fix add in calc.py: test_calc.T.test_add fails",
        &model,
        &["--check", "python3 -m unittest test_calc"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = events(&out);
    let requests = of_kind(&events, "model_request");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1]["tools"], json!([]), "offered no tool");
    let asked = requests[1]["messages"].to_string();
    assert!(
        asked.contains("def add(a, b):\\n    return a - b")
            && asked.contains("Tests, to read only")
            && asked.contains("assertEqual(add(2, 3), 5)"),
        "{asked}"
    );
    let results = of_kind(&events, "tool_result");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["name"], "write_file");
    let finished = of_kind(&events, "finished")[0];
    assert_eq!(finished["outcome"], "finished", "{finished}");
    let branch = finished["branch"].as_str().unwrap();
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:calc.py")]),
        "def add(a, b):\n    return a + b"
    );
}

/// What a whole-file reply may write is the step's short non-test files only: a test rewritten to
/// pass, a path outside the worktree and a file the step did not name are ignored; a try whose check
/// fails is rolled back; after two tries the step goes on with tools.
#[test]
fn whole_file_replies_write_only_the_named_code_and_failed_tries_are_rolled_back() {
    let repo = buggy_calc_repo();
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary.py");
    std::fs::write(&canary, "keep\n").unwrap();
    let home = tempfile::tempdir().unwrap();
    let hostile = format!(
        "test_calc.py\n```python\nimport unittest\n```\n\n{}\n```\nowned\n```\n\nsetup.py\n```\nowned\n```\n",
        canary.display()
    );
    let model = replay_script(
        home.path(),
        json!([
            plan_on("Fix add", &["calc.py", "test_calc.py"]),
            {"content": hostile},
            {"content": "calc.py\n```\ndef add(a, b):\n    return a * b\n```\n"},
            write("calc.py", "def add(a, b):\n    return a + b\n"),
            finish("add adds"),
        ]),
    );
    let out = run_agent(
        home.path(),
        repo.path(),
        "Fix add in calc.py: test_calc.T.test_add fails",
        &model,
        &["--check", "python3 -m unittest test_calc"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep\n");
    let events = events(&out);
    assert!(
        notes(&events).iter().any(|n| n.contains("held no file")),
        "{:?}",
        notes(&events)
    );
    assert_eq!(of_kind(&events, "rolled_back").len(), 1);
    let finished = of_kind(&events, "finished")[0];
    let branch = finished["branch"].as_str().unwrap();
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:calc.py")]),
        "def add(a, b):\n    return a + b"
    );
    let tests_on_branch = git(repo.path(), &["show", &format!("{branch}:test_calc.py")]);
    assert!(tests_on_branch.contains("assertEqual(add(2, 3), 5)"));
    assert!(git(repo.path(), &["ls-tree", "--name-only", branch])
        .lines()
        .all(|f| f != "setup.py"));
    // The committed step carries no trace of the failed `a * b` try.
    let log = git(repo.path(), &["log", "-p", &format!("main..{branch}")]);
    assert!(!log.contains("a * b"), "{log}");
}

/// A failed whole-file try is kept for the next one, which starts a new conversation from it (asked
/// again in the same one, the model sent its first reply back byte for byte): the second try is
/// shown the first try's file and its failures, and may send only the definition still wrong, which
/// is merged into the first try's file, not into the original.
#[test]
fn a_second_whole_file_try_builds_on_the_first() {
    let repo = repo_with(&[
        (
            "calc.py",
            "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a + b\n",
        ),
        (
            "test_calc.py",
            "import unittest\nfrom calc import add, mul\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n",
        ),
    ]);
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_on("Fix calc", &["calc.py", "test_calc.py"]),
            {"content": "add subtracts.\n\ncalc.py\n```python\ndef add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a + b\n```\n"},
            {"content": "mul adds.\n\ncalc.py\n```python\ndef mul(a, b):\n    return a * b\n```\n"},
        ]),
    );
    let out = run_agent(
        home.path(),
        repo.path(),
        "Fix calc.py: its tests fail",
        &model,
        &["--check", "python3 -m unittest test_calc"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = events(&out);
    assert!(of_kind(&events, "rolled_back").is_empty());
    let requests = of_kind(&events, "model_request");
    assert_eq!(requests[2]["first_message"], 0, "a new conversation");
    let again = requests[2]["messages"].to_string();
    assert!(
        again.contains("A first fix was made")
            && again.contains("test_mul")
            && again.contains("return a + b\\n\\n\\ndef mul")
            && !again.contains("add subtracts"),
        "{again}"
    );
    let finished = of_kind(&events, "finished")[0];
    let branch = finished["branch"].as_str().unwrap();
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:calc.py")]),
        "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b"
    );
}

/// `--no-whole-file-first` goes straight to tools.
#[test]
fn no_whole_file_first_goes_straight_to_tools() {
    let repo = buggy_calc_repo();
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_on("Fix add", &["calc.py"]),
            write("calc.py", "def add(a, b):\n    return a + b\n"),
            finish("add adds"),
        ]),
    );
    let out = run_agent(
        home.path(),
        repo.path(),
        "Fix add in calc.py: test_calc.T.test_add fails",
        &model,
        &[
            "--check",
            "python3 -m unittest test_calc",
            "--no-whole-file-first",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = events(&out);
    assert!(of_kind(&events, "model_request")
        .iter()
        .all(|r| r["tools"] != json!([])));
}
