//! The harness's own costs, per operation an agent run repeats: starting a sandboxed command, searching
//! a large repository (with ripgrep on the same files for scale, when it is installed), and committing
//! plus publishing a step. Run: `cargo bench --no-default-features --bench harness`.

use std::path::Path;
use std::time::Duration;

use agent::sandbox::{self, Choice, CommandSpec};
use agent::tools::{self, ToolContext};
use agent::vcs::Workspace;
use criterion::{criterion_group, criterion_main, Criterion};

/// Files in the generated repository for the search benchmark.
const SEARCH_FILES: usize = 100_000;

fn spawn(c: &mut Criterion) {
    // The landlock/seccomp layer runs inside bubblewrap as `agent __sandbox-helper`.
    std::env::set_var("AGENT_SANDBOX_HELPER", env!("CARGO_BIN_EXE_agent"));
    let dir = tempfile::tempdir().unwrap();
    let spec = CommandSpec {
        command: "true".into(),
        cwd: dir.path().to_path_buf(),
        timeout: Duration::from_secs(10),
        env: Vec::new(),
        output_limit: 4096,
    };
    let mut group = c.benchmark_group("sandbox spawn (`true`)");
    group.sample_size(30);
    for choice in [Choice::None, Choice::Bwrap] {
        let Ok((sandbox, _)) = sandbox::select(choice, Vec::new(), "default") else {
            eprintln!("{choice:?} is not available here; skipped");
            continue;
        };
        assert!(sandbox.run(&spec).unwrap().success());
        group.bench_function(format!("{choice:?}"), |b| {
            b.iter(|| sandbox.run(&spec).unwrap())
        });
    }
    group.finish();
}

/// 100,000 small source files in 1,000 directories; one line in one file matches.
fn generated_repo(root: &Path) {
    for d in 0..SEARCH_FILES / 100 {
        let dir = root.join(format!("src/m{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let n = d * 100 + f;
            let marker = if n == SEARCH_FILES / 2 {
                "    needle_we_look_for();\n"
            } else {
                ""
            };
            std::fs::write(
                dir.join(format!("f{f:03}.rs")),
                format!(
                    "pub fn function_{n}(x: u32) -> u32 {{\n    let y = x * {n};\n{marker}    y + 1\n}}\n"
                ),
            )
            .unwrap();
        }
    }
}

fn search(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    generated_repo(dir.path());
    let (sandbox, _) = sandbox::select(Choice::None, Vec::new(), "default").unwrap();
    let ctx = ToolContext {
        root: dir.path(),
        sandbox: sandbox.as_ref(),
        command_timeout: Duration::from_secs(60),
        output_limit: 16 * 1024,
        command_env: &[],
    };
    let args = serde_json::json!({"pattern": "needle_we_look_for"});
    let found = format!("{:?}", tools::call(&ctx, "search", &args).unwrap());
    assert!(found.contains("needle_we_look_for"), "{found}");
    let mut group = c.benchmark_group("search 100,000 files");
    group.sample_size(10);
    group.bench_function("agent search tool", |b| {
        b.iter(|| tools::call(&ctx, "search", &args).unwrap())
    });
    let rg = std::process::Command::new("rg").arg("--version").output();
    if rg.is_ok_and(|o| o.status.success()) {
        group.bench_function("ripgrep (rg -n)", |b| {
            b.iter(|| {
                let out = std::process::Command::new("rg")
                    .args(["-n", "needle_we_look_for"])
                    .current_dir(dir.path())
                    .output()
                    .unwrap();
                assert!(out.status.success());
            })
        });
    } else {
        eprintln!("ripgrep (rg) is not installed; only the agent's search was measured");
    }
    group.finish();
}

/// One accepted step in a repository of 2,000 files: snapshot the worktree, commit, publish the branch.
fn commit(c: &mut Criterion) {
    let repo = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        let dir = repo.path().join(format!("d{}", i / 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.txt")), format!("line {i}\n")).unwrap();
    }
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=b", "-c", "user.email=b@b"])
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    let mut workspace = Workspace::open(repo.path(), "bench commits").unwrap();
    let mut n = 0u64;
    let mut group = c.benchmark_group("git per step (2,000 files)");
    group.sample_size(30);
    group.bench_function("snapshot + commit + publish", |b| {
        b.iter(|| {
            n += 1;
            std::fs::write(workspace.root().join("d0/f0.txt"), format!("step {n}\n")).unwrap();
            workspace
                .commit_all(&format!("step {n}"))
                .unwrap()
                .expect("a change to commit");
            workspace.publish().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, spawn, search, commit);
criterion_main!(benches);
