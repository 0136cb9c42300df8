//! Real workloads run inside the sandbox unchanged: an Exercism Rust task's `cargo test --offline`, an
//! Exercism Python task's unittest, and `npm test` on a tiny node project.

mod common;

use std::path::Path;
use std::process::Command;

fn materialise(task: &serde_json::Value, with_reference: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut files = task["files"].as_object().unwrap().clone();
    if with_reference {
        files.extend(task["reference"].as_object().unwrap().clone());
    }
    for (path, content) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content.as_str().unwrap()).unwrap();
    }
    dir
}

fn sandboxed(dir: &Path, command: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["sandbox", "exec", "--timeout", "300", "--dir"])
        .arg(dir)
        .args(["--", "sh", "-c", command])
        .output()
        .unwrap()
}

fn assert_passes(dir: &Path, command: &str) {
    let out = sandboxed(dir, command);
    assert!(
        out.status.success(),
        "`{command}` failed in the sandbox:\n{}",
        common::describe(&out)
    );
}

#[test]
fn exercism_rust_tests_pass_inside_and_fail_without_the_solution() {
    let task = common::eval_task("exercism-rust.jsonl", "exercism-rust/armstrong-numbers");
    let command = task["test_command"].as_str().unwrap();
    assert_passes(materialise(&task, true).path(), command);
    assert!(
        !sandboxed(materialise(&task, false).path(), command)
            .status
            .success(),
        "the stub must fail"
    );
}

#[test]
fn exercism_python_tests_pass_inside() {
    let task = common::eval_task("exercism-python.jsonl", "exercism-python/two-fer");
    assert_passes(
        materialise(&task, true).path(),
        task["test_command"].as_str().unwrap(),
    );
}

#[test]
fn npm_test_passes_inside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "tiny", "version": "1.0.0", "scripts": {"test": "node test.js"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test.js"),
        "require('assert').strictEqual(1 + 1, 2);\n",
    )
    .unwrap();
    assert_passes(dir.path(), "npm test");
}
