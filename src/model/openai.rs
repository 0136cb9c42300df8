//! The OpenAI-compatible HTTP backend (`--model openai:http://host:port/v1#model`): Ollama, llama.cpp's
//! server, vLLM, `mistralrs serve`, llama-cpp-python, or a hosted API.
//!
//! In the default constrained mode the request carries `response_format` with the same one-call JSON
//! schema the embedded backend decodes under, so a server with grammar support cannot return a malformed
//! call; in native mode the tools go in `tools` and the server's own parser produces the calls. Replies
//! are read tolerantly, because real servers differ: streamed or not, arguments as a string or an object,
//! missing call ids, calls written into the content. This module only talks HTTP; it never runs tools.

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::schema::{
    constrained_turn, render_assistant, render_tool_result, tool_call_schema, without_length_bounds,
};
use super::{
    AssistantTurn, ChatModel, Message, ModelError, ModelOptions, Role, ToolCall, ToolCallMode,
    ToolSpec, Usage,
};

/// Tokens a turn may generate at first; doubled once if a call is cut off.
const TURN_TOKEN_BUDGET: usize = 768;
/// Most tokens of a reply in plain text, offered no tool: room for a few short files written whole.
const TEXT_TOKEN_BUDGET: usize = 4096;
/// Used when neither `--context-window` nor the server says how long the context is.
const FALLBACK_CONTEXT: usize = 8192;
/// Environment variables holding the API key, first found wins.
pub const API_KEY_VARS: &[&str] = &["AGENT_API_KEY", "OPENAI_API_KEY"];

/// The most a server may send for one turn. A turn is at most a few thousand tokens (a few hundred
/// bytes each when streamed), so a reply past this is a broken or hostile server, and reading stops.
pub const MAX_REPLY_BYTES: u64 = 32 << 20;

/// The most tool calls one reply may hold (the agent uses one). A server naming call number 10^9
/// must not make the client allocate a slot for each.
pub const MAX_CALLS_PER_REPLY: usize = 64;

/// The longest one request may take, first byte to last. A server that sends a byte now and then
/// would otherwise keep a turn open forever (each read is also bounded, by [`READ_TIMEOUT`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The longest a server may stay silent: a CPU server can take minutes on a long prompt.
const READ_TIMEOUT: Duration = Duration::from_secs(900);

/// The HTTP client of the model backends: connect, read and whole-request timeouts.
pub(super) fn http_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(READ_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
}

/// The API key from the first of [`API_KEY_VARS`] that is set.
pub(super) fn api_key() -> Option<String> {
    API_KEY_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|k| !k.trim().is_empty()))
}

pub struct OpenAiModel {
    base_url: String,
    model: String,
    api_key: Option<String>,
    mode: ToolCallMode,
    context_window: usize,
    http: ureq::Agent,
    /// The server rejected `response_format: json_schema`; send the older `json_object` + `schema`
    /// form (llama-cpp-python, older llama.cpp) instead.
    json_object_schema: bool,
}

impl OpenAiModel {
    pub fn new(base_url: &str, model: &str, options: &ModelOptions) -> Result<Self, ModelError> {
        let (http, api_key) = (http_agent(), api_key());
        let mut backend = Self {
            base_url: base_url.to_string(),
            model: model.to_string(),
            api_key,
            // A server's chat template is out of reach: `auto` is the generic constrained call, which
            // every grammar-capable server decodes.
            mode: match options.tool_calls {
                ToolCallMode::Auto => ToolCallMode::Constrained,
                mode => mode,
            },
            context_window: options.context_window.unwrap_or(FALLBACK_CONTEXT),
            http,
            json_object_schema: false,
        };
        if options.context_window.is_none() {
            if let Some(n) = backend.server_context_window() {
                backend.context_window = n;
            }
        }
        Ok(backend)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }

    /// vLLM (`max_model_len`), llama.cpp (`meta.n_ctx_train`) and others report the context length in
    /// their model list; Ollama does not, hence `--context-window`.
    fn server_context_window(&self) -> Option<usize> {
        let mut request = self.http.get(&self.url("models"));
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let list: Value = request
            .timeout(Duration::from_secs(10))
            .call()
            .ok()?
            .into_json()
            .ok()?;
        let models = list.get("data")?.as_array()?;
        let entry = models
            .iter()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(&self.model))
            .or_else(|| (models.len() == 1).then(|| &models[0]))?;
        ["max_model_len", "context_length", "n_ctx"]
            .iter()
            .find_map(|k| entry.get(*k))
            .or_else(|| entry.get("meta").and_then(|m| m.get("n_ctx_train")))
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    }

    fn body(&self, messages: &[Message], tools: &[ToolSpec], max_tokens: usize) -> Value {
        let mut body = json!({
            "messages": messages.iter().map(|m| self.wire_message(m)).collect::<Vec<_>>(),
            "temperature": 0,
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !self.model.is_empty() {
            body["model"] = json!(self.model);
        }
        if tools.is_empty() {
            // A reply in plain text (the agent's whole-file first try).
            return body;
        }
        match self.mode {
            ToolCallMode::Constrained | ToolCallMode::Auto => {
                let schema = without_length_bounds(&tool_call_schema(tools));
                body["response_format"] = if self.json_object_schema {
                    json!({"type": "json_object", "schema": schema})
                } else {
                    json!({
                        "type": "json_schema",
                        "json_schema": {"name": "tool_call", "strict": true, "schema": schema},
                    })
                };
            }
            ToolCallMode::Native => {
                body["tools"] = tools
                    .iter()
                    .map(|t| {
                        json!({"type": "function", "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": super::schema::sanitize(&t.parameters),
                        }})
                    })
                    .collect();
            }
        }
        body
    }

    fn wire_message(&self, message: &Message) -> Value {
        let native = self.mode == ToolCallMode::Native;
        match message.role {
            Role::System => json!({"role": "system", "content": message.content}),
            Role::User => json!({"role": "user", "content": message.content}),
            Role::Assistant if native && !message.tool_calls.is_empty() => json!({
                "role": "assistant",
                "content": message.content,
                "tool_calls": message.tool_calls.iter().map(|c| json!({
                    "id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                })).collect::<Vec<_>>(),
            }),
            Role::Assistant => json!({"role": "assistant", "content": render_assistant(message)}),
            Role::Tool if native => json!({
                "role": "tool",
                "tool_call_id": message.tool_call_id.clone().unwrap_or_default(),
                "name": message.tool_name.clone().unwrap_or_default(),
                "content": message.content,
            }),
            Role::Tool => json!({"role": "user", "content": render_tool_result(message)}),
        }
    }

    fn send(&self, body: &Value) -> Result<Reply, ModelError> {
        let url = self.url("chat/completions");
        let server_err = |message: String| ModelError::Server {
            url: url.clone(),
            message,
        };
        let mut request = self.http.post(&url);
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let started = Instant::now();
        let response = match request.send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, response)) => {
                let text = response.into_string().unwrap_or_default();
                let hint = if code == 400 && self.mode == ToolCallMode::Constrained {
                    " (if the server does not support response_format json_schema, try --tool-calls native)"
                } else if code == 401 || code == 403 {
                    " (set AGENT_API_KEY or OPENAI_API_KEY)"
                } else {
                    ""
                };
                return Err(server_err(format!(
                    "HTTP {code}: {}{hint}",
                    error_message(&text)
                )));
            }
            Err(e) => {
                return Err(server_err(format!(
                    "{e}; is the server running? (check the URL: it usually ends in /v1)"
                )))
            }
        };
        let streamed = response
            .header("content-type")
            .is_some_and(|t| t.contains("event-stream"));
        let reader = BufReader::new(response.into_reader().take(MAX_REPLY_BYTES + 1));
        if streamed {
            read_stream(reader, started).or_else(|e| {
                // A stream that breaks off after it started hides the server's error (llama-cpp-python
                // raises inside its generator after the first chunk): ask once more without
                // streaming, which either answers or returns the error as a status and message.
                if body["stream"] == json!(true) {
                    let mut plain = body.clone();
                    plain["stream"] = json!(false);
                    if let Some(map) = plain.as_object_mut() {
                        map.remove("stream_options");
                    }
                    return self.send(&plain).map_err(|again| {
                        server_err(format!(
                            "{e}; the server broke off its reply, and asked again without streaming it said: {again} (see its log; a grammar it could not compile is a common cause: try --tool-calls native)"
                        ))
                    });
                }
                Err(server_err(format!(
                    "{e}; the server broke off its reply, see its log (a grammar it could not compile is a common cause: try --tool-calls native)"
                )))
            })
        } else {
            let mut text = String::new();
            let mut reader = reader;
            reader
                .read_to_string(&mut text)
                .map_err(|e| server_err(format!("reading the reply: {e}")))?;
            if text.len() as u64 > MAX_REPLY_BYTES {
                return Err(server_err(too_long()));
            }
            let mut reply = parse_completion(&text).map_err(server_err)?;
            reply.ttft = started.elapsed();
            Ok(reply)
        }
    }
}

/// Whether an error is a server refusing the `json_schema` response format.
fn rejects_json_schema(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    // llama-cpp-python answers its validation error with a 500, others with 400 or 422.
    message.starts_with("http ")
        && (message.contains("json_schema") || message.contains("response_format"))
}

/// The parts of a reply, however it arrived.
#[derive(Debug, Default)]
struct Reply {
    content: String,
    calls: Vec<PartialCall>,
    finish_reason: String,
    usage: Option<Value>,
    ttft: Duration,
    /// Chunks that carried text or call fragments: about one token each, for servers that send no usage.
    chunks: usize,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    /// Concatenated string fragments, or a whole object from servers that send one.
    arguments: String,
    object: Option<Value>,
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .map(|m| m.as_str().map_or_else(|| m.to_string(), String::from))
        })
        .unwrap_or_else(|| crate::text::first_line(body, 300))
}

/// Parse a whole (non-streamed) chat completion.
fn parse_completion(text: &str) -> Result<Reply, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "the reply is not JSON ({e}): {}",
            crate::text::first_line(text, 200)
        )
    })?;
    if let Some(err) = value.get("error") {
        return Err(error_message(&err.to_string()));
    }
    let mut reply = Reply {
        usage: value.get("usage").cloned(),
        ..Reply::default()
    };
    let choice = value
        .pointer("/choices/0")
        .ok_or("the reply has no choices")?;
    absorb(&mut reply, choice, "message")?;
    Ok(reply)
}

/// What a reply past [`MAX_REPLY_BYTES`] is told.
fn too_long() -> String {
    format!(
        "the server's reply is longer than {} MiB; stopped reading it (a broken or hostile server)",
        MAX_REPLY_BYTES >> 20
    )
}

/// Read a server-sent-event stream of chunks until `[DONE]` or the end. `reader` ends after
/// [`MAX_REPLY_BYTES`] + 1 bytes; reaching that is an error, never a truncated reply.
fn read_stream(mut reader: impl BufRead, started: Instant) -> Result<Reply, String> {
    let mut reply = Reply::default();
    let mut first = true;
    let mut read = 0u64;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| format!("reading the stream: {e}"))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > MAX_REPLY_BYTES {
            return Err(too_long());
        }
        let line = String::from_utf8_lossy(&raw);
        let Some(data) = line.trim_end().strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        if data.is_empty() {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            format!(
                "a stream chunk is not JSON ({e}): {}",
                crate::text::first_line(data, 200)
            )
        })?;
        if let Some(err) = chunk.get("error") {
            return Err(error_message(&err.to_string()));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            reply.usage = Some(usage.clone());
        }
        if let Some(choice) = chunk.pointer("/choices/0") {
            if first {
                first = false;
                reply.ttft = started.elapsed();
            }
            absorb(&mut reply, choice, "delta")?;
            reply.chunks += 1;
        }
    }
    Ok(reply)
}

/// Merge one choice (`message` of a completion, `delta` of a chunk) into the reply. A call index
/// past [`MAX_CALLS_PER_REPLY`] is an error.
fn absorb(reply: &mut Reply, choice: &Value, key: &str) -> Result<(), String> {
    if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
        reply.finish_reason = reason.to_string();
    }
    let Some(part) = choice.get(key) else {
        return Ok(());
    };
    if let Some(text) = part.get("content").and_then(Value::as_str) {
        reply.content.push_str(text);
    }
    let Some(calls) = part.get("tool_calls").and_then(Value::as_array) else {
        return Ok(());
    };
    for (position, call) in calls.iter().enumerate() {
        // Streamed fragments carry an index; whole messages may not. Missing index: its position.
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position as u64, |i| i);
        let index = usize::try_from(index)
            .ok()
            .filter(|&i| i < MAX_CALLS_PER_REPLY)
            .ok_or_else(|| {
                format!(
                    "the server sent tool call number {index}; a reply holds at most {MAX_CALLS_PER_REPLY}"
                )
            })?;
        while reply.calls.len() <= index {
            reply.calls.push(PartialCall::default());
        }
        let slot = &mut reply.calls[index];
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            slot.id = id.to_string();
        }
        let function = call.get("function").unwrap_or(call);
        if let Some(name) = function.get("name").and_then(Value::as_str) {
            slot.name.push_str(name);
        }
        match function.get("arguments") {
            Some(Value::String(fragment)) => slot.arguments.push_str(fragment),
            Some(object @ Value::Object(_)) => slot.object = Some(object.clone()),
            _ => {}
        }
    }
    Ok(())
}

/// A call written into the content instead of `tool_calls` (some servers and templates do this):
/// `{"name": ..., "arguments": {...}}`, optionally inside `<tool_call>` tags or a code fence.
fn call_in_content(content: &str) -> Option<ToolCall> {
    let start = content.find('{')?;
    let end = content.rfind('}')?;
    let value: Value = serde_json::from_str(content.get(start..=end)?).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        Some(Value::String(s)) => serde_json::from_str(s).ok()?,
        Some(v @ Value::Object(_)) => v.clone(),
        None => json!({}),
        Some(_) => return None,
    };
    Some(ToolCall {
        id: String::new(),
        name,
        arguments,
    })
}

impl Reply {
    fn into_turn(self, mode: ToolCallMode, mut usage: Usage) -> AssistantTurn {
        match &self.usage {
            Some(u) => {
                let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
                usage.prompt_tokens = get("prompt_tokens");
                usage.completion_tokens += get("completion_tokens");
            }
            // No usage (llama-cpp-python streams none): one streamed chunk is about one token.
            None => usage.completion_tokens += self.chunks,
        }
        usage.ttft_ms = usage.ttft_ms.max(self.ttft.as_millis() as u64);
        let cut_note = if self.finish_reason == "length" {
            "; cut off at the token budget"
        } else {
            ""
        };
        if mode == ToolCallMode::Constrained {
            return constrained_turn(&self.content, self.finish_reason == "length", usage);
        }
        let mut content = self.content;
        let mut tool_calls = Vec::new();
        for call in self.calls {
            let arguments = match (call.object, call.arguments.trim()) {
                (Some(object), _) => Ok(object),
                (None, "") => Ok(Value::Object(Map::new())),
                (None, text) => serde_json::from_str(text),
            };
            match arguments {
                Ok(arguments) if !call.name.is_empty() => tool_calls.push(ToolCall {
                    id: call.id,
                    name: call.name,
                    arguments,
                }),
                Ok(_) => content.push_str("\n[malformed call: no tool name]"),
                Err(e) => content.push_str(&format!(
                    "\n[malformed call of {}: arguments are not JSON ({e}){cut_note}]",
                    call.name
                )),
            }
        }
        if tool_calls.is_empty() {
            if let Some(call) = call_in_content(&content) {
                tool_calls.push(call);
            }
        }
        AssistantTurn {
            content,
            tool_calls,
            usage,
        }
    }
}

impl ChatModel for OpenAiModel {
    fn describe(&self) -> String {
        let model = if self.model.is_empty() {
            "server default"
        } else {
            &self.model
        };
        format!(
            "{model} at {} (OpenAI-compatible, {})",
            self.base_url,
            self.mode.label()
        )
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    fn complete(
        &mut self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError> {
        // A server cannot be told to describe a tool but not let it be called: a withheld tool is
        // left out of the request (the server's prompt cache pays for that).
        let tools = &super::callable(tools)[..];
        let started = Instant::now();
        let mut usage = Usage::default();
        let (mut budget, mode) = match tools.is_empty() {
            true => (TEXT_TOKEN_BUDGET, ToolCallMode::Native),
            false => (TURN_TOKEN_BUDGET, self.mode),
        };
        loop {
            let reply = match self.send(&self.body(messages, tools, budget)) {
                Err(ModelError::Server { message, .. })
                    if self.mode == ToolCallMode::Constrained
                        && !self.json_object_schema
                        && rejects_json_schema(&message) =>
                {
                    self.json_object_schema = true;
                    continue;
                }
                other => other?,
            };
            let retry = reply.finish_reason == "length" && usage.cut_off_retries == 0;
            let mut turn = reply.into_turn(mode, usage.clone());
            if retry && turn.tool_calls.is_empty() {
                usage = turn.usage;
                usage.cut_off_retries += 1;
                budget *= 2;
                continue;
            }
            turn.usage.elapsed_ms = started.elapsed().as_millis() as u64;
            let decode_secs =
                (turn.usage.elapsed_ms.saturating_sub(turn.usage.ttft_ms)) as f64 / 1000.0;
            if decode_secs > 0.0 {
                turn.usage.decode_tok_per_s = turn.usage.completion_tokens as f64 / decode_secs;
            }
            if turn.usage.ttft_ms > 0 {
                turn.usage.prompt_tok_per_s =
                    turn.usage.prompt_tokens as f64 * 1000.0 / turn.usage.ttft_ms as f64;
            }
            return Ok(turn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_fragments_reassemble_into_calls() {
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"read_file\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"path\\\":\"}}]}}]}\n\n",
            ": keep-alive comment\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"a.rs\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        );
        let reply = read_stream(stream.as_bytes(), Instant::now()).unwrap();
        let turn = reply.into_turn(ToolCallMode::Native, Usage::default());
        assert_eq!(turn.tool_calls.len(), 1);
        assert_eq!(turn.tool_calls[0].id, "c1");
        assert_eq!(turn.tool_calls[0].arguments, json!({"path": "a.rs"}));
        assert_eq!(turn.usage.prompt_tokens, 12);
        assert_eq!(turn.usage.completion_tokens, 7);
    }

    #[test]
    fn malformed_arguments_are_reported_not_guessed() {
        let reply = parse_completion(
            r#"{"choices":[{"message":{"content":"","tool_calls":[{"function":{"name":"run","arguments":"{\"command\": \"ls"}}]},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        let turn = reply.into_turn(ToolCallMode::Native, Usage::default());
        assert!(turn.tool_calls.is_empty());
        assert!(turn.content.contains("malformed call of run"));
        assert!(turn.content.contains("cut off"));
    }

    #[test]
    fn calls_in_content_are_recovered() {
        let call = call_in_content(
            "<tool_call>\n{\"name\": \"list_files\", \"arguments\": {\"path\": \".\"}}\n</tool_call>",
        )
        .unwrap();
        assert_eq!(call.name, "list_files");
        assert_eq!(call.arguments, json!({"path": "."}));
        assert!(call_in_content("no call here").is_none());
    }
}
