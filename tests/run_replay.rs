//! End-to-end runs of the real binary with the replay backend, on real git repositories in temp dirs.

mod common;

use common::*;
use serde_json::json;

/// A unified diff from `old` to `new` for `path`, as a model would write it.
fn unified(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

#[test]
fn replayed_exercism_solution_lands_as_one_verified_commit_and_leaves_the_checkout_alone() {
    let task = eval_task("exercism-rust.jsonl", "exercism-rust/armstrong-numbers");
    let files = task_files(&task, "files");
    let repo = repo_with(&files);
    // The user's own work in progress must survive untouched.
    std::fs::write(repo.path().join("NOTES.txt"), "untracked notes\n").unwrap();
    std::fs::write(
        repo.path().join("Cargo.toml"),
        format!(
            "{}\n# local edit\n",
            files.iter().find(|f| f.0 == "Cargo.toml").unwrap().1
        ),
    )
    .unwrap();
    let before = user_state(repo.path());

    let stub = &files.iter().find(|f| f.0 == "src/lib.rs").unwrap().1;
    let reference = task["reference"]["src/lib.rs"].as_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Implement is_armstrong_number"]),
            {"content": "Look at the stub first.", "tool_calls": [{"name": "read_file", "arguments": {"path": "src/lib.rs"}}]},
            {"content": "Implement is_armstrong_number", "tool_calls": [{"name": "apply_patch", "arguments": {"patch": unified("src/lib.rs", stub, reference)}}]},
            {"content": "", "tool_calls": [{"name": "finish", "arguments": {"summary": "implemented armstrong numbers"}}]}
        ]),
    );
    let output = agent(home.path())
        .args([
            "run",
            task["instructions"].as_str().unwrap(),
            "--json",
            "--model",
            &model,
            "--check",
        ])
        .arg(task["test_command"].as_str().unwrap())
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);
    let finished = of_kind(&events, "finished")[0];
    assert_eq!(finished["outcome"], "finished");
    let branch = finished["branch"].as_str().unwrap().to_string();
    assert!(branch.starts_with("agent/"), "{branch}");

    let started = of_kind(&events, "run_started")[0];
    assert!(
        started["sandbox"]
            .as_str()
            .unwrap()
            .starts_with("bubblewrap"),
        "the check ran confined (bubblewrap is installed by scripts/setup.sh): {started}"
    );
    let checks = of_kind(&events, "check_result");
    assert_eq!(
        checks.len(),
        2,
        "the check before any change, then one after the edit"
    );
    assert_eq!(checks[0]["passed"], false, "the stub fails: {}", checks[0]);
    assert_eq!(checks[1]["passed"], true, "{}", checks[1]);
    assert_eq!(
        of_kind(&events, "model_turn").len(),
        4,
        "the plan, then three"
    );

    // The branch holds exactly one commit on top of main, whose lib.rs is the reference solution.
    assert_eq!(
        git(
            repo.path(),
            &["rev-list", "--count", &format!("main..{branch}")]
        ),
        "1"
    );
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:src/lib.rs")]),
        reference.trim_end()
    );
    let message = git(repo.path(), &["log", "-1", "--format=%B", &branch]);
    assert!(
        message.starts_with("Implement is_armstrong_number\n"),
        "{message}"
    );
    assert!(
        message.contains("Agent-Step: 1/1") && message.contains("passed"),
        "{message}"
    );
    // Build outputs never land in the commit.
    let tree = git(repo.path(), &["ls-tree", "-r", "--name-only", &branch]);
    assert!(!tree.contains("target/"), "{tree}");
    assert_eq!(git(repo.path(), &["fsck", "--no-progress"]), "");

    assert_eq!(
        user_state(repo.path()),
        before,
        "the user's checkout changed"
    );
}

#[test]
fn dry_run_prints_the_patch_and_leaves_the_repository_byte_identical() {
    let repo = repo_with(&[
        ("greet.py", "def greet(name):\n    return 'hi'\n"),
        ("greet_test.py", "import unittest\nfrom greet import greet\n\nclass T(unittest.TestCase):\n    def test(self):\n        self.assertEqual(greet('Bo'), 'Hello, Bo!')\n"),
    ]);
    let before = snapshot(repo.path(), true);
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Fix greet"]),
            {"content": "Fix greet", "tool_calls": [{"name": "apply_patch", "arguments": {"patch":
                "--- a/greet.py\n+++ b/greet.py\n@@ -1,2 +1,2 @@\n def greet(name):\n-    return 'hi'\n+    return f'Hello, {name}!'\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "greet greets"}}]}
        ]),
    );
    let task_file = home.path().join("task.md");
    std::fs::write(&task_file, "# Make greet greet\n\nReturn `Hello, NAME!`.\n").unwrap();
    let dry_run = |color: &[&str], env: &[(&str, &str)]| {
        agent(home.path())
            .args(color)
            .args(["run", "--dry-run", "--model", &model, "--task-file"])
            .arg(&task_file)
            .arg("--repo")
            .arg(repo.path())
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    // Colour follows --color, then NO_COLOR / CLICOLOR_FORCE, then whether stdout is a terminal.
    for (color, env, coloured) in [
        (&[][..], &[][..], false),
        (&["--color", "always"], &[("NO_COLOR", "1")], true),
        (&[], &[("CLICOLOR_FORCE", "1")], true),
        (&["--color", "never"], &[("CLICOLOR_FORCE", "1")], false),
    ] {
        let output = dry_run(color, env);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout.contains("\x1b["),
            coloured,
            "{color:?} {env:?}: {stdout}"
        );
    }
    let output = dry_run(&[], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("-    return 'hi'\n+    return f'Hello, {name}!'"),
        "{stdout}"
    );
    assert!(stdout.contains("1 file changed, +1 -1"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("detected: *_test.py files"),
        "the detected check is named: {stderr}"
    );
    assert_eq!(
        snapshot(repo.path(), true),
        before,
        "a dry run changed the repository (.git included)"
    );
}

#[test]
fn hostile_paths_are_refused_and_nothing_outside_changes() {
    let outer = tempfile::tempdir().unwrap();
    let repo_dir = outer.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    std::fs::write(repo_dir.join("a.txt"), "a\n").unwrap();
    std::os::unix::fs::symlink("/etc", repo_dir.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("..", repo_dir.join("up")).unwrap();
    git(&repo_dir, &["init", "-q", "-b", "main"]);
    git(&repo_dir, &["add", "-A"]);
    git(
        &repo_dir,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "-m",
            "i",
        ],
    );
    let before_outer = snapshot(outer.path(), true);

    let home = tempfile::tempdir().unwrap();
    let calls = [
        ("read_file", json!({"path": "../../etc/passwd"})),
        ("read_file", json!({"path": "/etc/passwd"})),
        ("read_file", json!({"path": "etc-link/passwd"})),
        (
            "write_file",
            json!({"path": "../escaped.txt", "content": "x"}),
        ),
        (
            "write_file",
            json!({"path": "up/escaped.txt", "content": "x"}),
        ),
        (
            "write_file",
            json!({"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"}),
        ),
        ("list_files", json!({"path": "etc-link"})),
        ("search", json!({"pattern": "root", "path": "/etc"})),
        (
            "apply_patch",
            json!({"patch": "--- /dev/null\n+++ b/../escaped.txt\n@@\n+x\n"}),
        ),
    ];
    let mut turns: Vec<_> = std::iter::once(plan_turn(&["Try to escape"]))
        .chain(
            calls
                .iter()
                .map(|(name, args)| json!({"tool_calls": [{"name": name, "arguments": args}]})),
        )
        .collect();
    turns.push(json!({"tool_calls": [{"name": "finish", "arguments": {"summary": "nothing"}}]}));
    let model = replay_script(home.path(), json!(turns));
    let output = agent(home.path())
        .args([
            "run",
            "try to escape",
            "--json",
            "--check",
            "true",
            "--model",
            &model,
            "--repo",
        ])
        .arg(&repo_dir)
        .output()
        .unwrap();
    let events = events(&output);
    let results = of_kind(&events, "tool_result");
    assert_eq!(results.len(), calls.len() + 1, "{}", describe(&output));
    for (result, (name, args)) in results.iter().zip(&calls) {
        assert_eq!(
            result["ok"], false,
            "{name} {args} was allowed: {}",
            result["output"]
        );
        assert!(
            result["output"].as_str().unwrap().contains("refused"),
            "{name} {args}: {}",
            result["output"]
        );
    }
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("root:x:0:0"),
        "/etc/passwd leaked"
    );
    assert_eq!(snapshot(outer.path(), true), before_outer);
    assert_eq!(
        output.status.code(),
        Some(0),
        "finish with a passing check: {}",
        describe(&output)
    );
}

#[test]
fn a_failing_check_is_never_committed_and_the_work_is_saved() {
    let repo = repo_with(&[("value.txt", "1\n")]);
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Set the value"]),
            {"content": "set the value", "tool_calls": [{"name": "write_file", "arguments": {"path": "value.txt", "content": "3\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}
        ]),
    );
    let output = agent(home.path())
        .args([
            "run",
            "make value.txt hold 2",
            "--json",
            "--check",
            "grep -qx 2 value.txt",
            "--max-turns",
            "5",
            "--model",
            &model,
            "--repo",
        ])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let events = events(&output);
    assert!(of_kind(&events, "commit").is_empty());
    assert_eq!(of_kind(&events, "step_rejected").len(), 1);
    let finished = of_kind(&events, "finished")[0];
    assert_eq!(
        finished["outcome"], "model_failed",
        "the script ran out after the refused finish: {finished}"
    );
    assert!(
        finished["summary"].as_str().unwrap().contains("exhausted"),
        "{finished}"
    );
    assert!(
        git(repo.path(), &["branch", "--list", "agent/*"]).is_empty(),
        "no branch without an accepted step"
    );
    let patch = std::fs::read_to_string(finished["unverified_patch"].as_str().unwrap()).unwrap();
    assert!(patch.contains("-1\n+3\n"), "{patch}");
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let home = tempfile::tempdir().unwrap();
    let not_repo = tempfile::tempdir().unwrap();
    let model = replay_script(home.path(), json!([]));
    let output = agent(home.path())
        .args(["run", "x", "--model", &model, "--repo"])
        .arg(not_repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not inside a git repository"),
        "{}",
        describe(&output)
    );

    let repo = repo_with(&[("a", "")]);
    let output = agent(home.path())
        .args(["run", "x", "--model", "replay:/nonexistent.json", "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let output = agent(home.path())
        .args(["run", "  ", "--model", &model, "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the task is empty"));
}

#[test]
fn task_from_stdin_and_branch_names_stay_unique() {
    let repo = repo_with(&[("a.txt", "a\n")]);
    let home = tempfile::tempdir().unwrap();
    for expected in ["agent/add-b", "agent/add-b-2"] {
        let model = replay_script(
            home.path(),
            json!([
                plan_turn(&["Add b"]),
                {"content": "add b", "tool_calls": [{"name": "write_file", "arguments": {"path": "b.txt", "content": "b\n"}}]},
                {"tool_calls": [{"name": "finish", "arguments": {"summary": "added"}}]}
            ]),
        );
        let mut child = agent(home.path())
            .args([
                "run",
                "-",
                "--json",
                "--check",
                "test -f b.txt",
                "--model",
                &model,
                "--repo",
            ])
            .arg(repo.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"Add b\n").unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let events = events(&output);
        assert_eq!(of_kind(&events, "finished")[0]["branch"], expected);
    }
    assert_eq!(git(repo.path(), &["show", "agent/add-b-2:b.txt"]), "b");
    assert_eq!(
        git(repo.path(), &["rev-parse", "--abbrev-ref", "HEAD"]),
        "main"
    );
}

#[test]
fn a_model_that_only_repeats_itself_is_stopped_early() {
    let repo = repo_with(&[("a.txt", "a\n")]);
    let home = tempfile::tempdir().unwrap();
    let finish = json!({"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]});
    let read = json!({"tool_calls": [{"name": "read_file", "arguments": {"path": "a.txt"}}]});
    let plan = plan_turn(&["Make the check pass"]);
    let look = json!({"tool_calls": [{"name": "search", "arguments": {"pattern": "a"}}]});
    // After its finish on the untouched file fails the check, finish is not offered again in the
    // step: the model can only repeat another call. Its first repeat is not run: the turn is asked
    // again without read_file (`look`); the later ones are run and counted.
    let model = replay_script(
        home.path(),
        json!([plan, finish, read, read, look, read, read, plan, read, read]),
    );
    let output = agent(home.path())
        .args([
            "run",
            "make the check pass",
            "--json",
            "--check",
            "false",
            "--max-turns",
            "30",
            "--model",
            &model,
            "--repo",
        ])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let events = events(&output);
    let finished = of_kind(&events, "finished")[0];
    // The same call: 2nd asked again, 3rd a nudge, 4th a new plan, 5th a stop.
    assert_eq!(finished["outcome"], "loop_detected", "{finished}");
    assert_eq!(finished["turns"], 9, "{finished}");
    assert_eq!(of_kind(&events, "plan_made").len(), 2);
    assert_eq!(
        of_kind(&events, "check_result").len(),
        1,
        "an unchanged tree is checked once"
    );
}

#[test]
fn a_step_that_changed_nothing_is_asked_once_to_make_its_change() {
    // What Qwen2.5-Coder-1.5B did: "Fix the bug" finished having only read the code.
    let repo = repo_with(&[("a.txt", "a\n")]);
    let home = tempfile::tempdir().unwrap();
    let finish = json!({"tool_calls": [{"name": "finish", "arguments": {"summary": "fixed"}}]});
    let write = json!({"tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "b\n"}}]});
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Fix the bug", "Tidy up"]),
            finish,
            write,
            finish,
            finish
        ]),
    );
    let output = agent(home.path())
        .args([
            "run",
            "make a.txt say b",
            "--json",
            "--check",
            "grep -qx b a.txt",
        ])
        .args(["--model", &model, "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);
    let rejected = of_kind(&events, "step_rejected");
    assert_eq!(rejected.len(), 1, "{}", describe(&output));
    assert_eq!(rejected[0]["step"], 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no file has changed"),
        "{}",
        rejected[0]
    );
    // The change was made in step 1 and committed there; step 2 changed nothing and is last.
    let commits = of_kind(&events, "commit");
    assert_eq!(commits.len(), 1, "{}", describe(&output));
    assert_eq!(commits[0]["step"], 1, "{}", commits[0]);
}

#[test]
fn dependencies_are_fetched_with_network_before_the_offline_check() {
    // bottle-song's tests use the crate `pretty_assertions`: the offline check only passes if the fetch
    // phase (network allowed, `fetch` profile) put it into the local cargo cache first.
    let task = eval_task("exercism-rust.jsonl", "exercism-rust/bottle-song");
    let files = task_files(&task, "files");
    let repo = repo_with(&files);
    let home = tempfile::tempdir().unwrap();
    let reference = task["reference"]["src/lib.rs"].as_str().unwrap();
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Write the solution"]),
            {"content": "write the solution", "tool_calls": [{"name": "write_file", "arguments": {"path": "src/lib.rs", "content": reference}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}
        ]),
    );
    let output = agent(home.path())
        .args(["run", "sing", "--json", "--model", &model, "--check"])
        .arg(task["test_command"].as_str().unwrap())
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);
    let notes: Vec<&str> = of_kind(&events, "note")
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("fetching dependencies") && n.contains("cargo fetch")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with("dependencies fetched")),
        "{notes:?}"
    );
}

#[test]
fn a_step_that_adds_a_dependency_is_fetched_again_before_its_offline_check() {
    // The model adds `regex-lite` to Cargo.toml: only a fetch after the edit lets the offline
    // `cargo test` find it (the run's first fetch saw no dependency at all).
    let repo = repo_with(&[
        (
            "Cargo.toml",
            "[package]\nname = \"words\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
        ),
        ("src/lib.rs", "pub fn is_word(s: &str) -> bool {\n    !s.is_empty()\n}\n"),
    ]);
    let home = tempfile::tempdir().unwrap();
    let lib = "pub fn is_word(s: &str) -> bool {\n    regex_lite::Regex::new(\"^[a-z]+$\").unwrap().is_match(s)\n}\n\n#[test]\nfn words() {\n    assert!(is_word(\"abc\") && !is_word(\"a1\"));\n}\n";
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Use regex-lite"]),
            {"tool_calls": [{"name": "apply_patch", "arguments": {"patch": "--- a/Cargo.toml\n+++ b/Cargo.toml\n@@ -5 +5,2 @@\n [dependencies]\n+regex-lite = \"0.1\"\n"}}]},
            {"tool_calls": [{"name": "write_file", "arguments": {"path": "src/lib.rs", "content": lib}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}
        ]),
    );
    let output = agent(home.path())
        .args([
            "run",
            "use regex-lite",
            "--json",
            "--model",
            &model,
            "--check",
            "cargo test --offline",
        ])
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);
    let notes: Vec<&str> = of_kind(&events, "note")
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("manifest changed")),
        "{notes:?}"
    );
    let branch = of_kind(&events, "finished")[0]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(git(repo.path(), &["show", &format!("{branch}:Cargo.toml")]).contains("regex-lite"));
}

#[test]
fn python_requirements_are_fetched_and_importable_offline() {
    // `toolz` is not installed on the machine: the offline check passes only through the fetch phase.
    let repo = repo_with(&[
        ("requirements.txt", "toolz==0.12.1\n"),
        ("uses_toolz.py", "from toolz import identity\n\ndef same(x):\n    return identity(x)\n"),
        ("uses_toolz_test.py", "import unittest\nfrom uses_toolz import same\n\nclass T(unittest.TestCase):\n    def test(self):\n        self.assertEqual(same(3), 3)\n"),
    ]);
    assert_fetched_then_checked_offline(&repo, "pip install", "toolz");
}

#[test]
fn node_dependencies_are_fetched_through_the_proxy_and_usable_offline() {
    // `is-number` is not on the machine: the offline `npm test` passes only through the fetch phase,
    // whose only network is the registry proxy.
    let repo = repo_with(&[
        (
            "package.json",
            "{\"name\": \"p\", \"version\": \"1.0.0\", \"dependencies\": {\"is-number\": \"7.0.0\"},\n \"scripts\": {\"test\": \"node -e \\\"if (!require('is-number')(5)) process.exit(1)\\\"\"}}\n",
        ),
    ]);
    assert_fetched_then_checked_offline(&repo, "npm install", "is-number");
}

/// A repository whose detected check needs `dependency`: with `--no-fetch` the run fails (exit 1); with
/// the fetch phase (its note names `fetcher`) it passes offline.
fn assert_fetched_then_checked_offline(repo: &tempfile::TempDir, fetcher: &str, dependency: &str) {
    let home = tempfile::tempdir().unwrap();
    let model = replay_script(
        home.path(),
        json!([plan_turn(&["Check it"]), {"tool_calls": [{"name": "finish", "arguments": {"summary": "nothing to do"}}]}]),
    );
    let run = |extra: &[&str]| {
        agent(home.path())
            .args(["run", "check it", "--json", "--model", &model])
            .args(extra)
            .arg("--repo")
            .arg(repo.path())
            .output()
            .unwrap()
    };
    let without = run(&["--no-fetch"]);
    assert_eq!(
        without.status.code(),
        Some(1),
        "without the fetch phase {dependency} is missing: {}",
        describe(&without)
    );
    let with = run(&[]);
    assert_eq!(with.status.code(), Some(0), "{}", describe(&with));
    let notes: Vec<String> = of_kind(&events(&with), "note")
        .iter()
        .map(|n| n["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(fetcher) && n.starts_with("fetching")),
        "{notes:?}"
    );
}

/// A run whose own binary was deleted under it (a rebuild during `agent eval` leaves its child runs
/// so) still confines commands with landlock and seccomp: bubblewrap cannot bind a deleted file, so a
/// copy of the running binary serves as the sandbox helper.
#[test]
fn a_run_whose_binary_was_deleted_keeps_landlock_and_seccomp() {
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("agent");
    std::fs::copy(env!("CARGO_BIN_EXE_agent"), &copy).unwrap();
    let repo = repo_with(&[("a.txt", "a\n")]);
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Write b"]),
            {"content": "", "tool_calls": [{"name": "run", "arguments": {"command": "echo inside > b.txt"}}]},
            {"content": "", "tool_calls": [{"name": "finish", "arguments": {"summary": "wrote b"}}]}
        ]),
    );
    // Run the copy through an open descriptor after removing it, as a replaced binary runs, with the
    // environment the other tests' runs get.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("exec 3<\"$0\" && rm \"$0\" && exec /proc/self/fd/3 \"$@\"")
        .arg(&copy)
        .args([
            "run",
            "write b",
            "--json",
            "--check",
            "test -f b.txt",
            "--model",
            &model,
            "--repo",
        ])
        .arg(repo.path());
    for (key, value) in agent(home.path()).get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let output = cmd.env_remove("AGENT_SANDBOX_HELPER").output().unwrap();
    assert!(!copy.exists());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);
    let sandbox = of_kind(&events, "run_started")[0]["sandbox"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sandbox.contains("landlock (writes only"), "{sandbox}");
    assert!(!sandbox.contains("MISSING"), "{sandbox}");
}
