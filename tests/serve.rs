//! `agent serve` as its users meet it: a real server process on 127.0.0.1, real HTTP requests, and
//! `agent run --model serve:URL` fixing a bug in a real repository through it. Keys: missing, wrong
//! and revoked ones are refused; a user's limit answers 429 with Retry-After; usage counts what was
//! asked; and no prompt text or key reaches the server's log or its state files.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A running `agent serve`, killed when dropped; its stderr collected.
struct Served {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `agent serve` of `model` in a fresh home with one user: the home (removed when dropped), the
/// server's state folder, the server, and the user's key.
#[cfg(feature = "embedded")]
fn serve_to_one_user(
    model: &Path,
    user: &str,
) -> (tempfile::TempDir, std::path::PathBuf, Served, String) {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("serve");
    let key = add_user(home.path(), &state, user, &[]);
    let server = start(home.path(), &state, model.to_str().unwrap(), &[]);
    (home, state, server, key)
}

fn start(home: &Path, state: &Path, model: &str, extra: &[&str]) -> Served {
    let mut child = agent(home)
        .args([
            "serve",
            "--model",
            model,
            "--listen",
            "127.0.0.1:0",
            "--state",
        ])
        .arg(state)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (found, url) = mpsc::channel();
    let shared = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening on ") {
                let _ = found.send(rest.split(' ').next().unwrap_or("").to_string());
            }
            let mut log = shared.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let url = url
        .recv_timeout(Duration::from_secs(300))
        .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
    Served { child, url, log }
}

fn add_user(home: &Path, state: &Path, name: &str, extra: &[&str]) -> String {
    let out = agent(home)
        .args(["serve", "user", "add", name, "--state"])
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// POST `body` to `path` with `key`: the status, the Retry-After header and the JSON answer.
fn post(url: &str, path: &str, key: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    let mut request = ureq::post(&format!("{url}{path}")).timeout(Duration::from_secs(600));
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    let response = match request.send_json(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = response.status();
    let retry = response.header("Retry-After").map(String::from);
    let text = response.into_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry, value)
}

/// Every file under `dir`, read whole.
fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bytes.extend(all_bytes_under(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_friend_runs_the_agent_through_the_server_and_only_counts_are_kept() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("serve");
    let alice = add_user(home.path(), &state, "alice", &[]);
    let bob = add_user(home.path(), &state, "bob", &["--requests-per-minute", "1"]);
    assert!(alice.starts_with("agent-") && alice != bob);
    let users = std::fs::read_to_string(state.join("users.toml")).unwrap();
    assert!(!users.contains(&alice) && !users.contains(&bob), "{users}");
    let list = agent(home.path())
        .args(["serve", "user", "list", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(listed.contains("alice") && listed.contains("bob\trequests/min: 1"));
    assert!(!listed.contains(&alice));

    // The server's model is a replay script: the turns of a run that fixes `add`.
    let marker = "PRIVATE-TASK-TEXT-5b1e";
    let script = replay_script(
        home.path(),
        json!([
            plan_turn(&["Fix the add function"]),
            {"content": "fix it", "tool_calls": [{"name": "write_file", "arguments": {"path": "calc.py", "content": "def add(a, b):\n    return a + b\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "add adds"}}]},
        ]),
    );
    let server = start(home.path(), &state, &script, &[]);
    let health = ureq::get(&format!("{}/health", server.url)).call().unwrap();
    assert_eq!(health.status(), 200);

    // Keys: none, a wrong one.
    let turn = json!({"messages": [{"role": "user", "content": marker}], "tools": []});
    let (status, _, error) = post(&server.url, "/agent/v1/turn", None, &turn);
    assert_eq!(status, 401, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("API key"));
    let last = if alice.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &alice[..alice.len() - 1]);
    assert_eq!(
        post(&server.url, "/agent/v1/turn", Some(&wrong), &turn).0,
        401
    );

    // Bob may send one model request a minute (a malformed one counts too).
    let (status, _, _) = post(
        &server.url,
        "/agent/v1/turn",
        Some(&bob),
        &json!({"nonsense": 1}),
    );
    assert_eq!(status, 400);
    let (status, retry, error) = post(&server.url, "/agent/v1/turn", Some(&bob), &turn);
    assert_eq!(status, 429, "{error}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // Alice runs the agent on her machine; only the model turns go to the server.
    let repo = repo_with(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        (
            "test_calc.py",
            "import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
        ),
    ]);
    let out = agent(home.path())
        .args([
            "run",
            &format!("Fix add ({marker})"),
            "--json",
            "--no-fetch",
        ])
        .args(["--model", &format!("serve:{}", server.url)])
        .args(["--check", "python3 -m unittest test_calc", "--repo"])
        .arg(repo.path())
        .env("AGENT_API_KEY", &alice)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = events(&out);
    let branch = of_kind(&events, "finished")[0]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        git(repo.path(), &["show", &format!("{branch}:calc.py")]),
        "def add(a, b):\n    return a + b"
    );
    let model = of_kind(&events, "run_started")[0].to_string();
    assert!(model.contains("on agent serve at"), "{model}");

    let usage = agent(home.path())
        .args(["serve", "usage", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let usage = String::from_utf8_lossy(&usage.stdout).to_string();
    assert!(
        usage.contains("\nalice\t3\t"),
        "three turns for alice: {usage}"
    );
    assert!(usage.contains("\nbob\t1\t"), "one request for bob: {usage}");

    // Removing alice takes effect on the running server.
    let removed = agent(home.path())
        .args(["serve", "user", "remove", "alice", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(removed.status.success());
    assert_eq!(
        post(&server.url, "/agent/v1/turn", Some(&alice), &turn).0,
        401
    );
    let refused = agent(home.path())
        .args(["run", "again", "--json", "--no-fetch"])
        .args(["--model", &format!("serve:{}", server.url)])
        .args(["--check", "true", "--repo"])
        .arg(repo.path())
        .env("AGENT_API_KEY", &alice)
        .output()
        .unwrap();
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused the API key"),
        "{}",
        describe(&refused)
    );

    // Nothing of the prompts, and no key, in the server's log or state.
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("alice /agent/v1/turn 200"), "{log}");
    let kept = all_bytes_under(&state);
    for secret in [marker, alice.as_str(), bob.as_str(), "return a - b"] {
        assert!(!log.contains(secret), "{secret:?} in the log: {log}");
        assert!(
            !contains(&kept, secret),
            "{secret:?} in {}",
            state.display()
        );
    }
}

/// The real small model behind the OpenAI-compatible endpoint: a plain chat reply, a constrained
/// tool call, and usage that adds up to what the replies said.
#[cfg(feature = "embedded")]
#[test]
fn openai_clients_get_chat_replies_and_constrained_calls_from_the_shared_model() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("serve");
    let key = add_user(
        home.path(),
        &state,
        "carol",
        &["--tokens-per-day", "100000"],
    );
    let model = installed_model();
    let server = start(
        home.path(),
        &state,
        model.to_str().unwrap(),
        &["--parallel", "4"],
    );

    let models: Value = ureq::get(&format!("{}/v1/models", server.url))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert!(models["data"][0]["context_length"].as_u64().unwrap() >= 2048);

    let chat = json!({"model": "any", "max_tokens": 8,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]});
    let (status, _, reply) = post(&server.url, "/v1/chat/completions", Some(&key), &chat);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "chat.completion");
    assert!(reply["choices"][0]["message"]["content"].is_string());
    let told = reply["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&told), "max_tokens is honoured: {reply}");
    let tools = json!({"messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]});
    let (status, _, called) = post(&server.url, "/v1/chat/completions", Some(&key), &tools);
    assert_eq!(status, 200, "{called}");
    let call = &called["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "weather", "{called}");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(arguments["city"].is_string(), "{arguments}");

    // Three friends at once: the engine works on them together (--parallel 4) and each gets its
    // own answer.
    let together: Vec<_> = ["lighthouse", "harbour", "ferry"]
        .iter()
        .map(|topic| {
            let (url, key) = (server.url.clone(), key.clone());
            let body = json!({"max_tokens": 12, "messages": [{"role": "user", "content": format!("Write about a {topic}.")}]});
            std::thread::spawn(move || post(&url, "/v1/chat/completions", Some(&key), &body))
        })
        .collect();
    let together: Vec<Value> = together
        .into_iter()
        .map(|t| {
            let (status, _, reply) = t.join().unwrap();
            assert_eq!(status, 200, "{reply}");
            reply
        })
        .collect();

    let tokens = |r: &Value, k: &str| r["usage"][k].as_u64().unwrap();
    let all: Vec<&Value> = [&reply, &called].into_iter().chain(&together).collect();
    let prompt: u64 = all.iter().map(|r| tokens(r, "prompt_tokens")).sum();
    let completion: u64 = all.iter().map(|r| tokens(r, "completion_tokens")).sum();
    assert!(completion > 0);
    let usage = agent(home.path())
        .args(["serve", "usage", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let usage = String::from_utf8_lossy(&usage.stdout).to_string();
    let line = usage.lines().find(|l| l.starts_with("carol\t")).unwrap();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[1], "5", "{line}");
    assert_eq!(fields[2], (prompt + completion).to_string(), "{line}");
    assert_eq!(fields[4], prompt.to_string(), "{line}");
    assert_eq!(fields[5], completion.to_string(), "{line}");
    // SmolLM2 has no fill-in-the-middle tokens: code completion is refused, saying so.
    let fill = json!({"prompt": "def add(a, b):\n    return ", "suffix": "\n"});
    let (status, _, refused) = post(&server.url, "/v1/completions", Some(&key), &fill);
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["type"], "fim_unsupported", "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no fill-in-the-middle tokens"));
    let log = server.log.lock().unwrap().clone();
    assert!(!log.contains("Paris") && !log.contains(&key), "{log}");
}

/// The `data:` events of a server-sent event stream, as JSON (`[DONE]` left out).
#[cfg(feature = "embedded")]
fn sse_events(stream: &str) -> Vec<Value> {
    stream
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| panic!("not JSON: {e:?}")))
        .collect()
}

/// A chat asked to stream arrives as the model makes it: many events whose text is exactly the reply
/// the same request gets whole (greedy decoding), the usage on the last. A client that goes away
/// after the first words stops the generation: the server records far fewer tokens than the same
/// request generates when someone reads it to the end.
#[cfg(feature = "embedded")]
#[test]
fn a_streamed_chat_arrives_piece_by_piece_and_a_client_that_leaves_stops_it() {
    use std::io::{Read, Write};

    let (_home, state, server, key) = serve_to_one_user(&installed_model(), "erin");
    let long = 300;
    // The grammar holds the model to numbers until the token limit (alone it stops at 20).
    let chat = |stream: bool| {
        json!({"max_tokens": long, "stream": stream, "messages": [{"role": "user",
            "content": "Count from 1 to 500, one number per line."}],
            "grammar": {"type": "regex", "value": "([0-9]{1,4}\n){1000}"}})
    };
    let (status, _, whole) = post(
        &server.url,
        "/v1/chat/completions",
        Some(&key),
        &chat(false),
    );
    assert_eq!(status, 200, "{whole}");
    assert_eq!(
        whole["usage"]["completion_tokens"].as_u64(),
        Some(long as u64),
        "the request runs to its limit when read to the end: {whole}"
    );
    let (status, _, streamed) = post(&server.url, "/v1/chat/completions", Some(&key), &chat(true));
    assert_eq!(status, 200);
    let streamed = streamed.as_str().expect("an event stream, not JSON");
    assert!(streamed.ends_with("data: [DONE]\n\n"), "{streamed}");
    let events = sse_events(streamed);
    assert!(
        events.len() > 10,
        "one event per piece, not one at the end: {}",
        events.len()
    );
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{last}");
    assert_eq!(
        last["usage"]["completion_tokens"].as_u64(),
        Some(long as u64)
    );

    // The same stream, but the client hangs up after its first words.
    let address = server.url.strip_prefix("http://").unwrap();
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let body = chat(true).to_string();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The role event and two pieces of text.
    while seen.windows(6).filter(|w| w == b"data: ").count() < 3 {
        let n = socket.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    drop(socket);
    // The request's log line comes when the generation has ended: its tokens, far below the 300.
    let line = (0..600)
        .find_map(|_| {
            let log = server.log.lock().unwrap().clone();
            let found = log
                .lines()
                .filter(|l| l.starts_with("erin /v1/chat/completions 200"))
                .nth(2)
                .map(String::from);
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(200));
            }
            found
        })
        .expect("the abandoned request never ended");
    let generated: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|t| t.split('+').nth(1))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no token count in {line:?}"));
    assert!(
        (1..long as u64 / 3).contains(&generated),
        "the generation went on after the client left: {line}"
    );
    let usage = std::fs::read_to_string(state.join("usage.json")).unwrap();
    assert!(!usage.contains("Count from"), "{usage}");
}

/// `response_format` and mistral.rs's `grammar` hold a plain reply to a JSON schema, a regular
/// expression or a Lark grammar, even on a model far too small to follow such instructions; a
/// grammar the engine cannot use is the client's error (400), not the server's.
#[cfg(feature = "embedded")]
#[test]
fn replies_are_held_to_the_schema_or_grammar_the_client_sends() {
    let (_home, _, server, key) = serve_to_one_user(&installed_model(), "fay");
    let ask = |extra: Value| {
        let mut body = json!({"max_tokens": 60, "messages": [{"role": "user",
            "content": "Tell me about a city."}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        post(&server.url, "/v1/chat/completions", Some(&key), &body)
    };
    let content = |reply: &Value| {
        reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let schema = json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 20},
            "size": {"enum": ["village", "town", "city"]}},
        "required": ["name", "size"], "additionalProperties": false});
    let (status, _, reply) = ask(json!({"response_format": {"type": "json_schema",
        "json_schema": {"name": "city", "schema": schema}}}));
    assert_eq!(status, 200, "{reply}");
    let city: Value = serde_json::from_str(&content(&reply))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {reply}"));
    assert!(
        city["name"].is_string() && city["size"].is_string(),
        "{city}"
    );
    assert_eq!(city.as_object().unwrap().len(), 2, "{city}");

    let (status, _, reply) =
        ask(json!({"grammar": {"type": "regex", "value": "(yes|no), [0-9]{3}"}}));
    assert_eq!(status, 200, "{reply}");
    let text = content(&reply);
    let (word, number) = text.split_once(", ").unwrap_or_else(|| panic!("{text:?}"));
    assert!(["yes", "no"].contains(&word), "{text:?}");
    assert!(
        number.len() == 3 && number.bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );

    let (status, _, reply) = ask(json!({"grammar": {"type": "lark",
        "value": "start: \"colour: \" COLOUR\nCOLOUR: \"red\" | \"green\" | \"blue\"\n"}}));
    assert_eq!(status, 200, "{reply}");
    assert!(
        ["colour: red", "colour: green", "colour: blue"].contains(&content(&reply).as_str()),
        "{reply}"
    );

    let (status, _, refused) =
        ask(json!({"grammar": {"type": "lark", "value": "start: undefined_rule\n"}}));
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["type"], "invalid_request_error",
        "{refused}"
    );
    let (status, _, refused) = ask(json!({"response_format": {"type": "xml"}}));
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("response_format"));
}

/// Code completion from the default coder model's own FIM tokens, as OpenAI's completions (with a
/// suffix and a one-line stop) and as llama.cpp's /infill, which llama.vscode and llama.vim send.
#[cfg(feature = "embedded")]
#[test]
fn editors_get_code_completion_between_prefix_and_suffix() {
    let (_home, _, server, key) = serve_to_one_user(&installed_coder_model(), "dev");
    let prefix = "def add(a, b):\n    \"\"\"The sum of a and b.\"\"\"\n    return ";
    let suffix = "\n\n\ndef sub(a, b):\n    return a - b\n";
    let (status, _, reply) = post(
        &server.url,
        "/v1/completions",
        Some(&key),
        &json!({"prompt": prefix, "suffix": suffix, "max_tokens": 16, "stop": ["\n"]}),
    );
    assert_eq!(status, 200, "{reply}");
    let text = reply["choices"][0]["text"].as_str().unwrap();
    assert!(text.replace(' ', "").starts_with("a+b"), "{text:?}");
    assert!(!text.contains('\n'), "one line: {text:?}");
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let (status, _, infill) = post(
        &server.url,
        "/infill",
        Some(&key),
        &json!({"input_prefix": prefix, "input_suffix": suffix, "n_predict": 16}),
    );
    assert_eq!(status, 200, "{infill}");
    let content = infill["content"].as_str().unwrap();
    assert!(content.replace(' ', "").starts_with("a+b"), "{content:?}");
    // Editors stream completions: the same text, piece by piece, cut at the stop string even when
    // it arrives inside a piece, then [DONE].
    let (status, _, streamed) = post(
        &server.url,
        "/v1/completions",
        Some(&key),
        &json!({"prompt": prefix, "suffix": suffix, "max_tokens": 16, "stop": ["\n"], "stream": true}),
    );
    assert_eq!(status, 200);
    let streamed = streamed.as_str().expect("an event stream");
    assert!(streamed.ends_with("data: [DONE]\n\n"), "{streamed}");
    let events = sse_events(streamed);
    assert!(events.len() > 2, "{streamed}");
    let pieces: String = events
        .iter()
        .map(|e| e["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, text, "{streamed}");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    // llama.cpp's streamed /infill: `content` events, the last one `stop: true` with its counts.
    let (status, _, streamed) = post(
        &server.url,
        "/infill",
        Some(&key),
        &json!({"input_prefix": prefix, "input_suffix": suffix, "n_predict": 16, "stream": true}),
    );
    assert_eq!(status, 200);
    let events = sse_events(streamed.as_str().expect("an event stream"));
    let (last, pieces) = events.split_last().unwrap();
    assert!(pieces.iter().all(|e| e["stop"] == false), "{events:?}");
    assert_eq!(last["stop"], true);
    assert!(last["tokens_predicted"].as_u64().unwrap() > 0);
    let pieces: String = pieces
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, content);
}

/// A hostile or broken server behind `serve:URL`: the client waits as `Retry-After` says and tries
/// again, and a reply with more calls than a turn can hold is an error, not an allocation.
#[test]
fn the_client_retries_a_busy_server_and_refuses_an_oversized_reply() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let turns = Arc::new(Mutex::new(0usize));
    let seen = Arc::clone(&turns);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|n| n.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).unwrap();
            let (status, extra, reply) = if head.starts_with("GET /v1/models") {
                (
                    "200 OK",
                    "",
                    json!({"data": [{"id": "m", "context_length": 8192}]}).to_string(),
                )
            } else {
                let mut n = seen.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    (
                        "429 Too Many Requests",
                        "Retry-After: 1\r\n",
                        json!({"error": {"message": "busy"}}).to_string(),
                    )
                } else {
                    let calls: Vec<Value> = (0..1000)
                        .map(|i| json!({"id": i.to_string(), "name": "plan", "arguments": {}}))
                        .collect();
                    (
                        "200 OK",
                        "",
                        json!({"content": "", "tool_calls": calls, "usage": {}}).to_string(),
                    )
                }
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{reply}",
                reply.len()
            );
        }
    });
    let home = tempfile::tempdir().unwrap();
    let repo = repo_with(&[("README.md", "hi\n")]);
    let out = agent(home.path())
        .args(["run", "change the readme", "--no-fetch", "--check", "true"])
        .args(["--model", &format!("serve:{url}"), "--repo"])
        .arg(repo.path())
        .env("AGENT_API_KEY", "agent-test")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1000 tool calls, more than 64"),
        "{}",
        describe(&out)
    );
    assert_eq!(*turns.lock().unwrap(), 2, "one refusal, one retry");
}
