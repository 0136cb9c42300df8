//! `--model hf:org/name[:file.gguf]`: the download through mistral.rs's hub client into the Hugging Face
//! cache, the token, the offline mode, and the errors, end to end with the real `agent` binary.
//!
//! This machine cannot reach huggingface.co, so the hub here is a small HTTP server on 127.0.0.1 that
//! speaks the part of the hub protocol the client uses (`/api/models/{repo}/revision/{rev}` for the file
//! list, `/{repo}/resolve/{rev}/{file}` with ranges, ETag and X-Repo-Commit headers) and serves the real
//! SmolLM2 files; `HF_ENDPOINT` points the client at it, as it would at a mirror. Everything else (the
//! client, the cache layout, the model load and the run) is the real thing.
#![cfg(feature = "embedded")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_test_token_not_a_secret";

#[test]
fn a_gguf_from_the_hub_is_downloaded_once_then_runs_offline_from_the_cache() {
    let gguf = installed_model();
    let file = gguf.file_name().unwrap().to_str().unwrap().to_string();
    let repo_id = "test-org/SmolLM2-135M-Instruct-GGUF";
    let hub = Hub::start(BTreeMap::from([(
        repo_id.to_string(),
        HubRepo {
            files: vec![(file.clone(), gguf.clone())],
            token: Some(TOKEN.into()),
        },
    )]));
    let home = tempfile::tempdir().unwrap();
    let repo = repo_with(&[("notes.txt", "hello\n")]);
    let spec = format!("hf:{repo_id}:{file}");

    // Online: the file lands in the standard cache layout, fetched with the token.
    let output = run(home.path(), repo.path(), &spec)
        .env("HF_ENDPOINT", hub.url())
        .env("HF_TOKEN", TOKEN)
        .output()
        .unwrap();
    check_run(&output);
    let cached = home
        .path()
        .join("hf/hub/models--test-org--SmolLM2-135M-Instruct-GGUF/snapshots")
        .join(COMMIT)
        .join(&file);
    assert!(
        cached.is_file(),
        "not in the HF cache: {}",
        describe(&output)
    );
    assert_eq!(
        std::fs::metadata(&cached).unwrap().len(),
        std::fs::metadata(&gguf).unwrap().len()
    );
    let requests = hub.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("/{repo_id}/resolve/main/{file}"))),
        "{requests:?}"
    );
    assert!(
        hub.unauthorised() == 0,
        "every request carried HF_TOKEN: {requests:?}"
    );

    // Offline: the hub is gone; the cached file is used without touching the network.
    drop(hub);
    let output = run(home.path(), repo.path(), &spec)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    check_run(&output);
    // The same with the cache named by HF_HUB_CACHE, which takes precedence over HF_HOME.
    let output = run(home.path(), repo.path(), &spec)
        .env("HF_HOME", home.path().join("empty-hf-home"))
        .env("HF_HUB_CACHE", home.path().join("hf/hub"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    check_run(&output);

    // Offline and not cached: a clear error before anything is loaded.
    let output = run(
        home.path(),
        repo.path(),
        &format!("hf:{repo_id}:other.Q8_0.gguf"),
    )
    .env("HF_HUB_OFFLINE", "1")
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HF_HUB_OFFLINE") && stderr.contains("not in the Hugging Face cache"),
        "{stderr}"
    );
}

#[test]
fn a_safetensors_repo_from_the_hub_is_downloaded_and_quantised_in_place() {
    let folder = installed_model_folder();
    let files = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    let repo_id = "test-org/SmolLM2-135M-Instruct";
    let hub = Hub::start(BTreeMap::from([(
        repo_id.to_string(),
        HubRepo { files, token: None },
    )]));
    let home = tempfile::tempdir().unwrap();
    let repo = repo_with(&[("notes.txt", "hello\n")]);
    let mut cmd = run(home.path(), repo.path(), &format!("hf:{repo_id}"));
    cmd.env("HF_ENDPOINT", hub.url()).args(["--isq", "Q8_0"]);
    let output = cmd.output().unwrap();
    check_run(&output);
    let snapshot = home
        .path()
        .join("hf/hub/models--test-org--SmolLM2-135M-Instruct/snapshots")
        .join(COMMIT);
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(
            snapshot.join(file).is_file(),
            "{file} not in the HF cache: {}",
            describe(&output)
        );
    }
}

#[test]
fn hub_errors_say_what_is_wrong_and_what_to_do() {
    let gguf = installed_model();
    let hub = Hub::start(BTreeMap::from([(
        "gated-org/model-GGUF".to_string(),
        HubRepo {
            files: vec![("model.gguf".into(), gguf)],
            token: Some(TOKEN.into()),
        },
    )]));
    let home = tempfile::tempdir().unwrap();
    let repo = repo_with(&[("notes.txt", "hello\n")]);
    for (spec, wanted) in [
        ("hf:no-org/no-such-model-GGUF:model.gguf", "404"),
        ("hf:gated-org/model-GGUF:model.gguf", "HF_TOKEN"),
        ("hf:gated-org/model-GGUF:missing.gguf", "missing.gguf"),
    ] {
        let token = spec.ends_with("missing.gguf").then_some(TOKEN);
        let mut cmd = run(home.path(), repo.path(), spec);
        // candle puts a backtrace into its error text when this is set; the user must not see it.
        cmd.env("HF_ENDPOINT", hub.url()).env("RUST_BACKTRACE", "1");
        if let Some(token) = token {
            cmd.env("HF_TOKEN", token);
        }
        let output = cmd.output().unwrap();
        assert!(!output.status.success(), "{spec}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(wanted) && stderr.contains(spec),
            "{spec}: the error should name the model and say {wanted:?}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("   0: "),
            "{spec}: a panic or a backtrace instead of an error: {stderr}"
        );
        assert!(
            !stderr.contains("mistralrs login"),
            "{spec}: advice for a command this tool does not have: {stderr}"
        );
    }
}

/// `agent run` on `repo` with the hub cache under `home/hf`, no ambient hub settings.
fn run(home: &Path, repo: &Path, spec: &str) -> std::process::Command {
    let mut cmd = agent(home);
    cmd.env("HF_HOME", home.join("hf"))
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_ENDPOINT")
        .args(["run", "--json", "--max-turns", "2", "--model", spec])
        .args(["--repo"])
        .arg(repo)
        .arg("Add a line that says goodbye to notes.txt.");
    cmd
}

/// The run loaded the model and the model took turns; whether it solved the task is not the point.
fn check_run(output: &std::process::Output) {
    assert!(
        matches!(output.status.code(), Some(0) | Some(1)),
        "{}",
        describe(output)
    );
    let events = events(output);
    let finished = of_kind(&events, "finished");
    assert_eq!(finished.len(), 1, "{}", describe(output));
    assert_ne!(
        finished[0]["outcome"],
        "model_failed",
        "{}",
        describe(output)
    );
    assert!(
        !of_kind(&events, "model_turn").is_empty(),
        "{}",
        describe(output)
    );
}

struct HubRepo {
    /// (name in the repo, file on disk)
    files: Vec<(String, PathBuf)>,
    /// If set, every request for this repo must carry `Authorization: Bearer TOKEN`, else 401.
    token: Option<String>,
}

/// The stand-in hub: one thread accepting connections, one thread per request, `Connection: close`.
struct Hub {
    port: u16,
    log: Arc<Mutex<Vec<(String, bool)>>>,
    stopped: Arc<AtomicBool>,
}

impl Hub {
    fn start(repos: BTreeMap<String, HubRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let repos = Arc::new(repos);
        let stopped = Arc::new(AtomicBool::new(false));
        let (shared, stop) = (log.clone(), stopped.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                if stop.load(Ordering::SeqCst) {
                    break; // dropping the listener closes the port
                }
                let (repos, log) = (repos.clone(), shared.clone());
                std::thread::spawn(move || {
                    // A client that hangs up mid-download is not the hub's problem.
                    let _ = serve(stream, &repos, &log);
                });
            }
        });
        Self { port, log, stopped }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn unauthorised(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ok)| !ok)
            .count()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The accept loop sees the flag on the connection made here, ends, and closes the port.
        self.stopped.store(true, Ordering::SeqCst);
        drop(TcpStream::connect(("127.0.0.1", self.port)));
    }
}

fn serve(
    mut stream: TcpStream,
    repos: &BTreeMap<String, HubRepo>,
    log: &Mutex<Vec<(String, bool)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let respond = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        )?;
        stream.write_all(body)
    };

    // /api/models/{org}/{name}/revision/{rev}  or  /{org}/{name}/resolve/{rev}/{file}
    let route = if let Some(rest) = path.strip_prefix("/api/models/") {
        rest.split_once("/revision/").map(|(repo, _)| (repo, None))
    } else {
        path.trim_start_matches('/')
            .split_once("/resolve/")
            .and_then(|(repo, rest)| rest.split_once('/').map(|(_, file)| (repo, Some(file))))
    };
    let Some((name, file)) = route.filter(|_| method == "GET") else {
        log.lock().unwrap().push((path.clone(), true));
        return respond(&mut stream, "400 Bad Request", "", b"bad request");
    };
    let Some(repo) = repos.get(name) else {
        log.lock().unwrap().push((path.clone(), true));
        return respond(&mut stream, "404 Not Found", "", b"Repository not found");
    };
    let authorised = repo
        .token
        .as_ref()
        .is_none_or(|token| headers.get("authorization") == Some(&format!("Bearer {token}")));
    log.lock().unwrap().push((path.clone(), authorised));
    if !authorised {
        return respond(
            &mut stream,
            "401 Unauthorized",
            "",
            b"Access to this repo is restricted",
        );
    }
    let Some(file) = file else {
        let siblings: Vec<_> = repo
            .files
            .iter()
            .map(|(name, _)| serde_json::json!({ "rfilename": name }))
            .collect();
        let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings }).to_string();
        return respond(
            &mut stream,
            "200 OK",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        );
    };
    let Some((_, on_disk)) = repo.files.iter().find(|(n, _)| n == file) else {
        return respond(
            &mut stream,
            "404 Not Found",
            "X-Error-Code: EntryNotFound\r\n",
            b"Entry not found",
        );
    };
    let mut data = std::fs::File::open(on_disk)?;
    let size = data.metadata()?.len();
    // "bytes=START-" or "bytes=START-END" (inclusive), as the client sends them.
    let (start, end) = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(s, e)| {
            let start = s.parse().unwrap_or(0);
            let end = e.parse().map_or(size - 1, |e: u64| e.min(size - 1));
            (start, end)
        })
        .unwrap_or((0, size - 1));
    let length = end + 1 - start.min(end + 1);
    write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {length}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\
         ETag: \"etag-{file}-{size}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n"
    )?;
    data.seek(SeekFrom::Start(start))?;
    std::io::copy(&mut data.take(length), &mut stream)?;
    stream.flush()
}
