//! The `agent serve` backend (`--model serve:http://host:port`): each turn's messages and tool specs
//! go to the server's `/agent/v1/turn`, whose model decodes the call under the same grammar as
//! in-process, and one assistant turn comes back. The loop, the tools, the sandbox and git stay on
//! this machine.
//!
//! The server is trusted with the conversation, not with this process: a reply is size-capped, its
//! calls counted, every read timed out; 429 and 5xx are retried with backoff (honouring
//! `Retry-After`, capped); a refused key is a clear error. This module only talks HTTP.

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};

use super::openai::{api_key, http_agent, MAX_CALLS_PER_REPLY, MAX_REPLY_BYTES};
use super::{AssistantTurn, ChatModel, Message, ModelError, ModelOptions, ToolSpec};

/// Tries of one turn while the server says it is busy or failing.
const TRIES: u32 = 6;
/// The longest wait between tries, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub struct ServedModel {
    base_url: String,
    api_key: Option<String>,
    model_id: String,
    context_window: usize,
    http: ureq::Agent,
}

impl ServedModel {
    /// Connect: the server's model list gives the model's name and context window, and proves the key.
    pub fn new(base_url: &str, options: &ModelOptions) -> Result<Self, ModelError> {
        let mut model = Self {
            base_url: base_url.to_string(),
            api_key: api_key(),
            model_id: String::new(),
            context_window: 0,
            http: http_agent(),
        };
        let list = model.send(
            model
                .http
                .get(&model.url("v1/models"))
                .timeout(Duration::from_secs(30)),
            None,
        )?;
        let entry = list
            .get("data")
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .ok_or_else(|| model.error("its /v1/models lists no model"))?;
        model.model_id = entry
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let served = entry
            .get("context_length")
            .and_then(Value::as_u64)
            .ok_or_else(|| model.error("its /v1/models gives no context_length"))?
            as usize;
        // Using less of the window than the server has is the client's choice; more is not.
        model.context_window = options.context_window.map_or(served, |n| n.min(served));
        Ok(model)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }

    fn error(&self, message: impl Into<String>) -> ModelError {
        ModelError::Server {
            url: self.base_url.clone(),
            message: message.into(),
        }
    }

    /// Send `request` (with `body` as JSON when given), retrying while the server is busy or
    /// failing, and read the JSON answer within the size cap.
    fn send(&self, request: ureq::Request, body: Option<&Value>) -> Result<Value, ModelError> {
        let request = match &self.api_key {
            Some(key) => request.set("Authorization", &format!("Bearer {key}")),
            None => request,
        };
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=TRIES {
            let sent = match body {
                Some(body) => request.clone().send_json(body),
                None => request.clone().call(),
            };
            let retry_after = match sent {
                Ok(response) => return self.read_json(response),
                Err(ureq::Error::Status(401 | 403, response)) => {
                    return Err(self.error(format!(
                        "it refused the API key ({}); set AGENT_API_KEY to the key `agent serve user add NAME` printed for you",
                        server_message(response)
                    )))
                }
                Err(ureq::Error::Status(429 | 500..=599, response)) if attempt < TRIES => {
                    response
                        .header("Retry-After")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                }
                Err(ureq::Error::Status(code, response)) => {
                    return Err(self.status_error(code, response))
                }
                Err(ureq::Error::Transport(_)) if attempt < 3 => None,
                Err(ureq::Error::Transport(t)) => {
                    return Err(self.error(format!("cannot reach it: {t}")))
                }
            };
            std::thread::sleep(retry_after.unwrap_or(wait).min(MAX_WAIT));
            wait = (wait * 2).min(MAX_WAIT);
        }
        Err(self.error(format!("it was still busy or failing after {TRIES} tries")))
    }

    fn read_json(&self, response: ureq::Response) -> Result<Value, ModelError> {
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_REPLY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.error(format!("reading its reply failed: {e}")))?;
        if bytes.len() as u64 > MAX_REPLY_BYTES {
            return Err(self.error(format!(
                "its reply is over {MAX_REPLY_BYTES} bytes; reading stopped"
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| self.error(format!("its reply is not JSON: {e}")))
    }

    /// A refusal the retries cannot help; a context overflow stays one, so the loop can shorten the
    /// conversation and ask again.
    fn status_error(&self, code: u16, response: ureq::Response) -> ModelError {
        let body = self
            .read_json(response)
            .unwrap_or(Value::Null)
            .get("error")
            .cloned()
            .unwrap_or(Value::Null);
        if body.get("type").and_then(Value::as_str) == Some("context_overflow") {
            let number = |k: &str| body.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
            return ModelError::ContextOverflow {
                needed: number("needed"),
                window: number("window"),
            };
        }
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        self.error(format!(
            "HTTP {code}: {}",
            crate::text::first_line(message, 300)
        ))
    }
}

/// The `error.message` of a refusal, for the error the user sees.
fn server_message(response: ureq::Response) -> String {
    let mut bytes = Vec::new();
    let _ = response
        .into_reader()
        .take(64 << 10)
        .read_to_end(&mut bytes);
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .map_or_else(|| "no message".into(), |m| crate::text::first_line(&m, 300))
}

impl ChatModel for ServedModel {
    fn describe(&self) -> String {
        format!("{} on agent serve at {}", self.model_id, self.base_url)
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    fn complete(
        &mut self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError> {
        let body = json!({"messages": messages, "tools": tools});
        let reply = self.send(self.http.post(&self.url("agent/v1/turn")), Some(&body))?;
        let calls = reply
            .get("tool_calls")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if calls > MAX_CALLS_PER_REPLY {
            return Err(self.error(format!(
                "its reply holds {calls} tool calls, more than {MAX_CALLS_PER_REPLY}"
            )));
        }
        serde_json::from_value(reply)
            .map_err(|e| self.error(format!("its reply is not an assistant turn: {e}")))
    }
}
