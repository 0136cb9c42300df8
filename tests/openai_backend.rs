//! The OpenAI-compatible backend against recorded replies of Ollama, llama.cpp and vLLM, served by a
//! small HTTP server on 127.0.0.1 that also records what the agent sent. The same backend against a
//! real server (llama-cpp-python serving the SmolLM2 GGUF) is in tests/openai_server.rs.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agent::model::{ChatModel, Message, ModelOptions, ModelSpec, ToolCallMode};
use serde_json::{json, Value};

use common::*;

/// One canned HTTP response.
#[derive(Clone)]
struct Canned {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/openai")
            .join(name),
    )
    .unwrap()
}

fn ok(name: &str) -> Canned {
    Canned {
        status: 200,
        content_type: if name.ends_with(".sse") {
            "text/event-stream"
        } else {
            "application/json"
        },
        body: fixture(name),
    }
}

/// The content type of a canned reply that is served as an event stream cut off in the middle.
const BROKEN_STREAM: &str = "broken-event-stream";

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<String>,
    body: Value,
}

/// Serves `GET /v1/models` with `models` (404 when None) and each `POST /v1/chat/completions` with the
/// next of `replies`. Returns the base URL and the requests seen.
fn serve(models: Option<String>, replies: Vec<Canned>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut replies = replies.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let HttpRequest {
                path,
                headers,
                body,
                ..
            } = read_http_request(&stream);
            let reply = if path.ends_with("/models") {
                match &models {
                    Some(body) => ok_body(body),
                    None => Canned {
                        status: 404,
                        content_type: "text/plain",
                        body: "404 page not found".into(),
                    },
                }
            } else {
                log.lock().unwrap().push(Seen {
                    path: path.clone(),
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                replies.next().unwrap_or(Canned {
                    status: 500,
                    content_type: "application/json",
                    body: r#"{"error":{"message":"the test server has no more replies"}}"#.into(),
                })
            };
            // A stream that breaks off: it promises more bytes than it sends, then closes.
            let (content_type, promised) = match reply.content_type {
                BROKEN_STREAM => ("text/event-stream", reply.body.len() + 1000),
                other => (other, reply.body.len()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                reply.status,
                content_type,
                promised,
                reply.body
            );
        }
    });
    (url, seen)
}

fn ok_body(body: &str) -> Canned {
    Canned {
        status: 200,
        content_type: "application/json",
        body: body.to_string(),
    }
}

fn load(url: &str, mode: ToolCallMode, context_window: Option<usize>) -> Box<dyn ChatModel> {
    let spec = ModelSpec::parse(Some(&format!("openai:{url}#test-model"))).unwrap();
    let options = ModelOptions {
        tool_calls: mode,
        context_window,
        prefix_cache: true,
        ..ModelOptions::default()
    };
    spec.load(&options).unwrap()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are a test."),
        Message::user("Do the thing."),
    ]
}

#[test]
fn recorded_tool_calls_of_real_servers_parse_into_calls() {
    let cases: [(&str, &str, Value, &str, usize); 5] = [
        (
            "ollama_native.json",
            "write_file",
            json!({"path": "NOTES.md", "content": "hello from ollama\n"}),
            "call_7k2n1x0q",
            31,
        ),
        (
            "llamacpp_stream.sse",
            "read_file",
            json!({"path": "greet.py"}),
            "Jx8sPq2vLm",
            14,
        ),
        (
            "vllm_stream.sse",
            "run",
            json!({"command": "ls -la"}),
            "chatcmpl-tool-5e0c",
            21,
        ),
        (
            "object_arguments.json",
            "search",
            json!({"pattern": "fn main", "path": "src"}),
            "",
            0,
        ),
        (
            "qwen_content_call.json",
            "list_files",
            json!({"path": "."}),
            "",
            25,
        ),
    ];
    let mut table = String::new();
    for (file, name, arguments, id, completion_tokens) in cases {
        let (url, _) = serve(None, vec![ok(file)]);
        let mut model = load(&url, ToolCallMode::Native, None);
        let turn = model
            .complete(&conversation(), &agent::tools::specs())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(turn.tool_calls.len(), 1, "{file}: {turn:?}");
        let call = &turn.tool_calls[0];
        assert_eq!(call.name, name, "{file}");
        assert_eq!(call.arguments, arguments, "{file}");
        assert_eq!(
            call.id, id,
            "{file}: ids are kept when the server sends them"
        );
        assert_eq!(
            turn.usage.completion_tokens, completion_tokens,
            "{file}: usage"
        );
        table.push_str(&format!("{file:<26} -> {name}({arguments})\n"));
    }
    println!("{table}");
}

#[test]
fn constrained_mode_sends_the_one_call_schema_and_parses_the_streamed_reply() {
    let (url, seen) = serve(None, vec![ok("constrained_stream.sse")]);
    let mut model = load(&url, ToolCallMode::Constrained, None);
    let turn = model
        .complete(&conversation(), &agent::tools::specs())
        .unwrap();
    assert_eq!(turn.content, "look first");
    assert_eq!(turn.tool_calls[0].name, "read_file");
    assert_eq!(turn.tool_calls[0].arguments, json!({"path": "greet.py"}));
    assert!(
        turn.usage.completion_tokens > 0,
        "estimated from chunks without usage"
    );

    let request = &seen.lock().unwrap()[0];
    assert_eq!(request.path, "/v1/chat/completions");
    let body = &request.body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["stream"], true);
    assert!(
        body.get("tools").is_none(),
        "constrained mode sends no tools"
    );
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    let schema = &format["json_schema"]["schema"];
    let names: Vec<&str> = schema["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["properties"]["tool"]["const"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = agent::tools::specs().into_iter().map(|t| t.name).collect();
    assert_eq!(names, expected);
    let text = schema.to_string();
    assert!(
        !text.contains("maxLength") && !text.contains("x-guidance"),
        "no length bounds for server grammar compilers: {text}"
    );
}

#[test]
fn a_server_that_rejects_json_schema_gets_the_json_object_form() {
    // llama-cpp-python's validation error, answered with a 500.
    let rejection = Canned {
        status: 500,
        content_type: "application/json",
        body: r#"{"error":{"message":"1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}","type":"internal_server_error"}}"#.into(),
    };
    let (url, seen) = serve(None, vec![rejection, ok("constrained_stream.sse")]);
    let mut model = load(&url, ToolCallMode::Constrained, None);
    let turn = model
        .complete(&conversation(), &agent::tools::specs())
        .unwrap();
    assert_eq!(turn.tool_calls[0].name, "read_file");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body["response_format"]["type"], "json_object");
    assert!(seen[1].body["response_format"]["schema"]["anyOf"].is_array());
}

#[test]
fn a_stream_that_breaks_off_is_asked_again_without_streaming() {
    let whole = fixture("constrained_stream.sse");
    let first_chunks: String = whole
        .split("\n\n")
        .take(2)
        .map(|c| format!("{c}\n\n"))
        .collect();
    let broken = Canned {
        status: 200,
        content_type: BROKEN_STREAM,
        body: first_chunks,
    };
    // The second answer, without streaming: the server's error as a status and message.
    let error = Canned {
        status: 500,
        content_type: "application/json",
        body: r#"{"error":{"message":"Unexpected empty grammar stack after accepting piece"}}"#
            .into(),
    };
    let (url, seen) = serve(None, vec![broken.clone(), error]);
    let mut model = load(&url, ToolCallMode::Constrained, None);
    let err = model
        .complete(&conversation(), &agent::tools::specs())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broke off") && err.contains("empty grammar stack"),
        "the server's own reason reaches the user: {err}"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body["stream"], true);
        assert_eq!(seen[1].body["stream"], false);
        assert!(seen[1].body.get("stream_options").is_none());
    }

    // When the second answer is a good one, the turn goes on as if nothing happened.
    let whole_reply = Canned {
        status: 200,
        content_type: "application/json",
        body: json!({"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": "{\"thought\": \"t\", \"tool\": \"read_file\", \"arguments\": {\"path\": \"greet.py\"}}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9}})
        .to_string(),
    };
    let (url, _) = serve(None, vec![broken, whole_reply]);
    let mut model = load(&url, ToolCallMode::Constrained, None);
    let turn = model
        .complete(&conversation(), &agent::tools::specs())
        .unwrap();
    assert_eq!(turn.tool_calls[0].name, "read_file");
    assert_eq!(turn.tool_calls[0].arguments, json!({"path": "greet.py"}));
}

#[test]
fn server_errors_say_what_to_do() {
    let (url, _) = serve(
        None,
        vec![Canned {
            status: 401,
            content_type: "application/json",
            body: r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#.into(),
        }],
    );
    let mut model = load(&url, ToolCallMode::Native, None);
    let err = model
        .complete(&conversation(), &agent::tools::specs())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 401")
            && err.contains("Incorrect API key")
            && err.contains("OPENAI_API_KEY"),
        "{err}"
    );

    // Nothing listens on a port that was just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut model = load(
        &format!("http://127.0.0.1:{port}/v1"),
        ToolCallMode::Native,
        Some(4096),
    );
    let err = model
        .complete(&conversation(), &agent::tools::specs())
        .unwrap_err()
        .to_string();
    assert!(err.contains("is the server running"), "{err}");
}

#[test]
fn the_context_window_comes_from_the_server_or_the_flag() {
    for (models, flag, expected) in [
        (Some(fixture("llamacpp_models.json")), None, 32768),
        (Some(fixture("vllm_models.json")), None, 32768),
        (Some(fixture("vllm_models.json")), Some(16384), 16384),
        // Ollama reports no length; the fallback is used (and --context-window is the fix).
        (None, None, 8192),
    ] {
        let (url, _) = serve(models, vec![]);
        let model = load(&url, ToolCallMode::Native, flag);
        assert_eq!(model.context_window(), expected);
    }
}

/// The whole agent through a recorded Ollama: the call writes a file, the check passes, the step is
/// committed on the task branch, and the follow-up request carries the tool result in native form.
#[test]
fn agent_run_through_a_recorded_ollama_commits_the_step() {
    let finish = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_fin","type":"function","function":{"name":"finish","arguments":"{\"summary\":\"wrote the notes\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":500,"completion_tokens":12}}"#;
    let plan = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_plan","type":"function","function":{"name":"plan","arguments":"{\"steps\":[{\"title\":\"Write the notes\",\"intent\":\"Create NOTES.md.\",\"files\":[\"NOTES.md\"],\"check\":\"\"}]}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":400,"completion_tokens":30}}"#;
    let (url, seen) = serve(
        None,
        vec![ok_body(plan), ok("ollama_native.json"), ok_body(finish)],
    );
    let repo = repo_with(&[("README.md", "a project\n")]);
    let before = user_state(repo.path());
    let home = tempfile::tempdir().unwrap();
    let output = agent(home.path())
        .env("AGENT_API_KEY", "sekrit-key")
        .args(["run", "write the notes", "--json", "--no-fetch"])
        .args(["--model", &format!("openai:{url}#qwen2.5-coder:7b")])
        .args(["--tool-calls", "native", "--check", "test -f NOTES.md"])
        .arg("--repo")
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        user_state(repo.path()),
        before,
        "the user's checkout is untouched"
    );
    let notes = git(repo.path(), &["show", "agent/write-the-notes:NOTES.md"]);
    assert_eq!(notes, "hello from ollama");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].body["tools"].as_array().unwrap().len(),
        1,
        "the planner is offered only the plan"
    );
    let seen = &seen[1..];
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Bearer sekrit-key")),
        "{:?}",
        seen[0].headers
    );
    assert_eq!(seen[0].body["model"], "qwen2.5-coder:7b");
    assert!(seen[0].body["tools"].as_array().unwrap().len() >= 5);
    let messages = seen[1].body["messages"].as_array().unwrap();
    let call = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("the call is sent back");
    assert_eq!(call["tool_calls"][0]["id"], "call_7k2n1x0q");
    assert_eq!(call["tool_calls"][0]["function"]["name"], "write_file");
    let result = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the result is sent as a tool message");
    assert_eq!(result["tool_call_id"], "call_7k2n1x0q");
}

#[test]
fn a_hostile_server_cannot_make_the_client_allocate_without_bound() {
    // A streamed call numbered 10^9: the client must not make room for a billion calls.
    let huge_index = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1000000000,\"id\":\"c\",",
        "\"function\":{\"name\":\"read_file\",\"arguments\":\"{}\"}}]}}]}\n\ndata: [DONE]\n\n"
    );
    // A whole reply past the cap, and a stream whose one line never ends.
    let padding = "x".repeat((agent::model::openai::MAX_REPLY_BYTES + (1 << 20)) as usize);
    let long_json = format!(
        r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"{padding}"}},"finish_reason":"stop"}}]}}"#
    );
    let long_line = format!("data: {padding}");
    let (url, seen) = serve(
        None,
        vec![
            Canned {
                status: 200,
                content_type: "text/event-stream",
                body: huge_index.into(),
            },
            ok_body(&long_json),
            Canned {
                status: 200,
                content_type: "text/event-stream",
                body: long_line,
            },
        ],
    );
    let mut model = load(&url, ToolCallMode::Native, Some(8192));
    let specs = agent::tools::specs();
    let err = model
        .complete(&conversation(), &specs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tool call number 1000000000"), "{err}");
    // The broken stream is asked again without streaming (the client's recovery), which gets the
    // over-long JSON reply: refused whole, not parsed.
    assert!(err.contains("longer than 32 MiB"), "{err}");
    let err = model
        .complete(&conversation(), &specs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than 32 MiB"), "{err}");
    // Each broken stream was asked once more without streaming; nothing else was sent.
    assert_eq!(seen.lock().unwrap().len(), 4);
}
