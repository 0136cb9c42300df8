//! Plugin tools (WebAssembly, run by wasmtime): a hostile plugin's escapes are refused or stopped with a
//! clear error and the host untouched; the shipped plugins (`outline`, `todo_scan`) give useful answers;
//! `agent tools` lists and installs them; and a replayed agent run uses them next to the built-in tools.
//!
//! The modules are real: the tests build tools/ and tests/fixtures/plugins/hostile for wasm32-wasip1
//! (the target scripts/setup.sh installs) before using them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use agent::sandbox::none::NoSandbox;
use agent::tools::plugin::{self, Origin, Plugin};
use agent::tools::{ToolContext, ToolError, ToolOutput, Toolbox};
use common::*;
use serde_json::{json, Value};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Build the WASI crate (or workspace) in `dir` into `dir/target`; once per test process and folder.
fn build_wasm(dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip1"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "building the wasm plugins in {} failed (is the target installed? `rustup target add wasm32-wasip1`, \
         which scripts/setup.sh does):\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds happen once per process; the compiled-module cache goes to a temp dir, not the user's.
fn setup() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let cache = std::env::temp_dir().join(format!("agent-plugin-cache-{}", std::process::id()));
        std::env::set_var("AGENT_PLUGIN_CACHE", cache);
        build_wasm(&manifest_dir().join("tools"));
        build_wasm(&manifest_dir().join("tests/fixtures/plugins/hostile"));
    });
}

fn shipped(name: &str) -> Plugin {
    setup();
    plugin::load(&manifest_dir().join("tools").join(name), Origin::Repository).unwrap()
}

fn hostile() -> Plugin {
    setup();
    plugin::load(
        &manifest_dir().join("tests/fixtures/plugins/hostile"),
        Origin::Repository,
    )
    .unwrap()
}

fn call(plugin: &Plugin, root: &Path, arguments: Value) -> Result<ToolOutput, ToolError> {
    let ctx = ToolContext {
        root,
        sandbox: &NoSandbox,
        command_timeout: Duration::from_secs(10),
        output_limit: 16 * 1024,
        command_env: &[],
    };
    Toolbox::with_plugins(vec![plugin.clone()]).call(&ctx, &plugin.name, &arguments)
}

fn text(result: Result<ToolOutput, ToolError>) -> String {
    match result {
        Ok(ToolOutput::Text(text)) => text,
        other => panic!("expected text, got {other:?}"),
    }
}

fn error(result: Result<ToolOutput, ToolError>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

/// `base/secret.txt` outside, `base/work/` the workspace with `victim.txt` and a symlink `link` to `base`.
struct Layout {
    _base: tempfile::TempDir,
    outside: PathBuf,
    work: PathBuf,
}

fn layout() -> Layout {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().canonicalize().unwrap();
    std::fs::write(outside.join("secret.txt"), "TOPSECRET-41\n").unwrap();
    let work = outside.join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("victim.txt"), "original\n").unwrap();
    std::os::unix::fs::symlink(&outside, work.join("link")).unwrap();
    Layout {
        _base: base,
        outside,
        work,
    }
}

#[test]
fn reading_outside_the_workspace_is_refused_and_nothing_leaks() {
    let layout = layout();
    let before = snapshot(&layout.outside, true);
    let secret = layout.outside.join("secret.txt");
    let output = text(call(
        &hostile(),
        &layout.work,
        json!({"attack": "read_outside", "target": secret.to_str().unwrap()}),
    ));
    assert!(!output.contains("SUCCEEDED"), "{output}");
    assert!(
        !output.contains("TOPSECRET") && !output.contains("root:"),
        "{output}"
    );
    assert_eq!(output.matches("refused").count(), 5, "{output}");
    assert!(output.contains("env vars: 0"), "{output}");
    assert_eq!(snapshot(&layout.outside, true), before);
}

#[test]
fn sockets_cannot_be_opened() {
    let layout = layout();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let output = text(call(
        &hostile(),
        &layout.work,
        json!({"attack": "socket", "target": address}),
    ));
    assert!(!output.contains("SUCCEEDED"), "{output}");
    assert_eq!(output.matches("refused").count(), 3, "{output}");
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the plugin reached the host's listener"
    );
}

/// The error a hostile attack that cannot complete ends with. A call the sandbox fails to stop fails
/// the test after a minute instead of hanging the suite.
fn stopped_by(attack: &str) -> String {
    let plugin = hostile();
    let arguments = json!({"attack": attack});
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let layout = layout();
        let _ = sender.send(error(call(&plugin, &layout.work, arguments)));
    });
    receiver
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the {attack} attack was not stopped within a minute"))
}

#[test]
fn an_endless_loop_is_stopped_at_the_time_limit() {
    let message = stopped_by("spin");
    assert!(
        message.contains("stopped") && message.contains("time limit of 1s"),
        "{message}"
    );
}

#[test]
fn sleeping_is_not_supported_so_it_cannot_outlast_the_deadline() {
    let message = stopped_by("sleep");
    assert!(message.contains("hostile crashed"), "{message}");
    assert!(!message.contains("slept"), "{message}");
}

#[test]
fn allocating_a_gigabyte_is_stopped_by_the_memory_limit() {
    let message = stopped_by("alloc");
    assert!(
        message.contains("stopped") && message.contains("over its limit of 64 MiB"),
        "{message}"
    );
    assert!(message.contains("GiB"), "{message}");
}

#[test]
fn a_read_only_plugin_cannot_write_and_a_write_plugin_can() {
    let layout = layout();
    let before = snapshot(&layout.outside, true);
    let output = text(call(&hostile(), &layout.work, json!({"attack": "write"})));
    assert!(!output.contains("SUCCEEDED"), "{output}");
    assert_eq!(output.matches("refused").count(), 5, "{output}");
    assert_eq!(snapshot(&layout.outside, true), before);

    // The same module granted write access does write: the refusal above is the permission.
    let granted = tempfile::tempdir().unwrap();
    let module = hostile().module;
    std::fs::write(
        granted.path().join(plugin::MANIFEST),
        format!(
            "name = \"hostile\"\ndescription = \"x\"\nmodule = {:?}\n[schema]\ntype = \"object\"\n\
             [schema.properties.attack]\ntype = \"string\"\n[permissions]\nworkspace = \"write\"\n",
            module.display().to_string()
        ),
    )
    .unwrap();
    let writer = plugin::load(granted.path(), Origin::User).unwrap();
    let output = text(call(&writer, &layout.work, json!({"attack": "write"})));
    assert!(output.contains("create new.txt: SUCCEEDED"), "{output}");
    assert_eq!(
        std::fs::read_to_string(layout.work.join("new.txt")).unwrap(),
        "new"
    );
    assert!(layout.outside.join("secret.txt").is_file());
}

#[test]
fn failures_and_bad_arguments_are_explained() {
    let layout = layout();
    let message = error(call(&hostile(), &layout.work, json!({"attack": "fail"})));
    assert!(
        message.contains("hostile failed (exit 3)") && message.contains("failed on purpose"),
        "{message}"
    );
    let message = error(call(&hostile(), &layout.work, json!({"attack": "nuke"})));
    assert!(
        message.contains("invalid arguments for hostile"),
        "{message}"
    );
    let message = error(call(&hostile(), &layout.work, json!({})));
    assert!(
        message.contains("\"attack\" is a required property"),
        "{message}"
    );
}

#[test]
fn outline_lists_symbols_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/shapes.rs"),
        "//! Shapes.\n\npub struct Circle {\n    pub r: f64,\n}\n\nimpl Circle {\n    pub fn area(&self) -> f64 {\n        3.14 * self.r * self.r\n    }\n}\n\nfn helper() {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tool.py"),
        "import os\n\nclass Tool:\n    def run(self):\n        pass\n\nasync def main():\n    pass\n",
    )
    .unwrap();
    let outline = shipped("outline");
    let rust = text(call(&outline, dir.path(), json!({"path": "src/shapes.rs"})));
    assert_eq!(
        rust,
        "src/shapes.rs: 13 lines, 4 symbols\n     3  pub struct Circle\n     7  impl Circle\n     8    pub fn area(&self) -> f64\n    13  fn helper() {}\n"
    );
    let python = text(call(&outline, dir.path(), json!({"path": "tool.py"})));
    assert!(
        python.contains("     3  class Tool\n     4    def run(self)\n     7  async def main()"),
        "{python}"
    );
    let folder = text(call(&outline, dir.path(), json!({"path": "src"})));
    assert!(folder.contains("src/shapes.rs: 13 lines"), "{folder}");
    let message = error(call(&outline, dir.path(), json!({"path": "README.md"})));
    assert!(
        message.contains("outline knows Rust (.rs) and Python (.py)"),
        "{message}"
    );
    let message = error(call(
        &outline,
        dir.path(),
        json!({"path": "../../etc/passwd"}),
    ));
    assert!(message.contains("outline failed (exit 1)"), "{message}");
}

#[test]
fn todo_scan_finds_markers_and_skips_build_output() {
    let dir = repo_with(&[
        (
            "src/lib.rs",
            "pub fn f() -> u32 {\n    todo!()\n}\n// FIXME: overflow\nconst TODOS: u32 = 0;\n",
        ),
        ("app.py", "def g():\n    raise NotImplementedError\n"),
        ("target/debug/gen.rs", "// TODO generated\n"),
        ("notes.md", "nothing to do\n"),
    ]);
    let scan = text(call(&shipped("todo-scan"), dir.path(), json!({})));
    assert_eq!(
        scan,
        "3 marker(s) in 2 file(s) (3 text files scanned)\n\
         app.py:2: NotImplementedError: raise NotImplementedError\n\
         src/lib.rs:2: todo!: todo!()\n\
         src/lib.rs:4: FIXME: // FIXME: overflow\n"
    );
    let only_src = text(call(
        &shipped("todo-scan"),
        dir.path(),
        json!({"path": "src"}),
    ));
    assert!(
        only_src.starts_with("2 marker(s) in 1 file(s)"),
        "{only_src}"
    );
}

/// `agent tools install tools/<name>` into `home`'s config dir; returns what it printed.
fn install_shipped(home: &Path, name: &str) -> String {
    let installed = agent(home)
        .args(["tools", "install"])
        .arg(manifest_dir().join("tools").join(name))
        .output()
        .unwrap();
    assert!(installed.status.success(), "{}", describe(&installed));
    String::from_utf8_lossy(&installed.stdout).into_owned()
}

#[test]
fn agent_tools_lists_and_installs_and_compiles_once() {
    setup();
    let home = tempfile::tempdir().unwrap();
    let repo = repo_with(&[("README.md", "x\n")]);
    let listed = agent(home.path())
        .args(["tools", "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", describe(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("no plugins in"),
        "{}",
        describe(&listed)
    );
    for name in ["outline", "todo-scan"] {
        let said = install_shipped(home.path(), name);
        assert!(said.contains("compiled in"), "{said}");
    }
    let cached: Vec<_> = std::fs::read_dir(home.path().join("cache/agent/plugins"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 2);
    let again = agent(home.path())
        .args(["tools", "install", "--force"])
        .arg(manifest_dir().join("tools/outline"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already compiled"),
        "{}",
        describe(&again)
    );
    let refused = agent(home.path())
        .args(["tools", "install"])
        .arg(manifest_dir().join("tools/outline"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));

    let listed = agent(home.path())
        .args(["tools", "--json", "--repo"])
        .arg(repo.path())
        .output()
        .unwrap();
    let value: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = value["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["outline", "todo_scan"]);
    assert_eq!(value["plugins"][0]["access"], "read");
    assert_eq!(value["plugins"][0]["built"], true);
}

#[test]
fn a_replayed_run_uses_the_shipped_plugins() {
    setup();
    let home = tempfile::tempdir().unwrap();
    for name in ["outline", "todo-scan"] {
        install_shipped(home.path(), name);
    }
    let repo = repo_with(&[(
        "src/lib.rs",
        "pub struct Meter(pub u32);\n\nimpl Meter {\n    pub fn double(&self) -> u32 {\n        todo!()\n    }\n}\n",
    )]);
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Implement Meter::double"]),
            {"content": "where is the unfinished work?", "tool_calls": [{"name": "todo_scan", "arguments": {}}]},
            {"content": "look at the file", "tool_calls": [{"name": "outline", "arguments": {"path": "src/lib.rs"}}]},
            {"content": "fix it", "tool_calls": [{"name": "apply_patch", "arguments": {"patch":
                "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -4,3 +4,3 @@\n     pub fn double(&self) -> u32 {\n-        todo!()\n+        self.0 * 2\n     }\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "implemented double"}}]}
        ]),
    );
    let run = |extra: &[&str]| {
        agent(home.path())
            .args(["run", "implement Meter::double", "--json", "--no-fetch"])
            .args(["--model", &model, "--check", "! grep -rn 'todo!' src"])
            .args(extra)
            .arg("--repo")
            .arg(repo.path())
            .output()
            .unwrap()
    };
    let output = run(&[]);
    assert!(output.status.success(), "{}", describe(&output));
    let events = events(&output);
    let notes = notes(&events);
    assert!(
        notes
            .iter()
            .any(|n| n == "plugin tools offered: outline (read-only), todo_scan (read-only)"),
        "{notes:?}"
    );
    let results = of_kind(&events, "tool_result");
    let scan = results.iter().find(|e| e["name"] == "todo_scan").unwrap();
    assert_eq!(scan["ok"], true, "{scan}");
    assert!(
        scan["output"]
            .as_str()
            .unwrap()
            .contains("src/lib.rs:5: todo!: todo!()"),
        "{scan}"
    );
    let outline = results.iter().find(|e| e["name"] == "outline").unwrap();
    assert!(
        outline["output"]
            .as_str()
            .unwrap()
            .contains("     4    pub fn double(&self) -> u32"),
        "{outline}"
    );
    let branch = git(
        repo.path(),
        &["branch", "--list", "agent/*", "--format=%(refname:short)"],
    );
    let content = git(
        repo.path(),
        &["show", &format!("{}:src/lib.rs", branch.trim())],
    );
    assert!(content.contains("self.0 * 2"), "{content}");

    // Without plugins the same script is refused at the first plugin call: they really were offered.
    let output = run(&["--no-plugins"]);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        describe(&output).contains("todo_scan"),
        "{}",
        describe(&output)
    );
}
