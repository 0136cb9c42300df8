//! `agent apply`: the edit engine as a command, on real files in temp dirs.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{describe, snapshot};

fn agent_apply(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("apply")
        .args(args)
        .arg("--repo")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        std::fs::write(dir.path().join(path), content).unwrap();
    }
    dir
}

#[test]
fn applies_each_format_and_check_changes_nothing() {
    let dir = dir_with(&[("a.py", "def f():\n    return 1\n")]);
    let patches = [
        "--- a/a.py\n+++ b/a.py\n@@ -1,2 +1,2 @@\n def f():\n-    return 1\n+    return 2\n",
        "*** Begin Patch\n*** Update File: a.py\n@@ def f():\n-    return 2\n+    return 3\n*** End Patch\n",
        "a.py\n```python\n<<<<<<< SEARCH\n    return 3\n=======\n    return 4\n>>>>>>> REPLACE\n```\n",
    ];
    for (i, patch) in patches.iter().enumerate() {
        let before = snapshot(dir.path(), true);
        // `--dry-run` (as in `agent run`), and `--check`, its old spelling.
        let flag = if i % 2 == 0 { "--dry-run" } else { "--check" };
        let out = agent_apply(dir.path(), &[flag, "-"], Some(patch));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("applies cleanly"));
        assert_eq!(snapshot(dir.path(), true), before, "{flag} changed files");
        let out = agent_apply(dir.path(), &["-"], Some(patch));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let expected = format!("def f():\n    return {}\n", i + 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.py")).unwrap(),
            expected
        );
    }
}

#[test]
fn a_failing_hunk_refuses_the_whole_patch() {
    let dir = dir_with(&[("a.txt", "one\n"), ("b.txt", "two\n")]);
    let before = snapshot(dir.path(), true);
    let patch_file = dir.path().join("../fix.patch");
    std::fs::write(
        &patch_file,
        "--- a/a.txt\n+++ b/a.txt\n@@\n-one\n+ONE\n--- a/b.txt\n+++ b/b.txt\n@@\n-three\n+THREE\n",
    )
    .unwrap();
    let out = agent_apply(dir.path(), &[patch_file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hunk 1 of b.txt did not match") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(snapshot(dir.path(), true), before);
    std::fs::remove_file(patch_file).unwrap();
}

#[test]
fn escapes_are_refused_and_usage_errors_exit_2() {
    let dir = dir_with(&[("a.txt", "one\n")]);
    let out = agent_apply(
        dir.path(),
        &["-"],
        Some("--- /dev/null\n+++ b/../escaped.txt\n@@\n+x\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
    assert!(!dir.path().join("../escaped.txt").exists());
    let out = agent_apply(dir.path(), &["/nonexistent/patch.diff"], None);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = agent_apply(dir.path(), &["-"], Some("no patch here"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}
