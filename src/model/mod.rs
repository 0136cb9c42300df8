//! The model layer: one trait, [`ChatModel`], that the agent loop talks to, and the backends behind it.
//!
//! A backend turns a conversation plus tool specifications into one assistant turn (text and/or tool
//! calls) with usage figures. Backends never run tools, touch the repository or print: they only talk
//! to a model.

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod hermes;
pub mod openai;
pub mod replay;
pub mod schema;
pub mod served;
pub mod spec;

pub use spec::{ModelSpec, SpecError};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One call of a tool, as the model asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Backend-assigned id; replay scripts may omit it.
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: the call this message answers, and the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self::plain(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls,
            ..Self::plain(Role::Assistant, content)
        }
    }
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call.id.clone()),
            tool_name: Some(call.name.clone()),
            ..Self::plain(Role::Tool, content)
        }
    }
    fn plain(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
        }
    }
}

/// What the model is told about one tool: its name, what it does, and the JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
    /// The string argument that holds code or a patch (`write_file`'s content, `apply_patch`'s
    /// patch). A format that can, has the model write it after the call as plain text instead of
    /// escaped inside the call's JSON (see [`hermes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// How a body written as plain text must begin (a regex of its first line or two, after any
    /// blank space): `apply_patch`'s opens as a patch does. A format that constrains decoding
    /// holds the body to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_opens: Option<String>,
    /// Described to the model but not callable this turn: constrained decoding leaves it out, and
    /// the loop refuses a call to it. Withholding a tool this way, instead of leaving it out of the
    /// list, keeps the prompt the same from turn to turn (a chat template renders the tool list into
    /// the system prompt), so the backend's prefix cache keeps the whole conversation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
}

/// The tools of `tools` the model may call this turn (those not [`ToolSpec::withheld`]).
pub fn callable(tools: &[ToolSpec]) -> Vec<ToolSpec> {
    tools.iter().filter(|t| !t.withheld).cloned().collect()
}

/// Token counts and speeds of one model turn. Backends fill in what they know.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub prompt_tok_per_s: f64,
    pub decode_tok_per_s: f64,
    /// Time to first token: mostly prompt processing, which the prefix cache shortens.
    pub ttft_ms: u64,
    pub elapsed_ms: u64,
    /// Times the reply hit the token budget mid-call and was generated again with more room.
    #[serde(skip_serializing_if = "is_zero")]
    pub cut_off_retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One reply of the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantTurn {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("replay script {path} is exhausted: it holds {turns} assistant turns and turn {next} was requested; add turns to the script or lower --max-turns")]
    ReplayExhausted {
        path: PathBuf,
        turns: usize,
        next: usize,
    },
    #[error("replay script {path}, turn {turn}, calls `{tool}`, but this request offers only: {offered} (a script starts with a `plan` call, then the steps' tool calls)")]
    ReplayMismatch {
        path: PathBuf,
        turn: usize,
        tool: String,
        offered: String,
    },
    #[error("could not load the model: {0}")]
    Load(String),
    #[error("the model failed while generating: {0}")]
    Generation(String),
    /// Raised before anything is sent, so the caller can shorten the conversation and try again.
    #[error("the conversation needs {needed} tokens (prompt plus room for the reply) but the model's context window is {window}; shorten the conversation or use a model with a longer context (--context-window when the server does not say)")]
    ContextOverflow { needed: usize, window: usize },
    #[error("{0} has no fill-in-the-middle tokens, so it cannot complete code between a prefix and a suffix; use a code model that has them (Qwen2.5-Coder, StarCoder2, DeepSeek-Coder, Codestral, CodeLlama)")]
    NoFim(String),
    #[error("the model server at {url} failed: {message}")]
    Server { url: String, message: String },
    /// The request itself was at fault (a grammar or schema the engine cannot use).
    #[error("the request was refused: {0}")]
    Refused(String),
    #[error("{0} cannot hold a reply to a JSON schema or grammar; use the in-process backend (a GGUF or safetensors model)")]
    NoReplyShape(String),
}

/// A chat model that the agent loop can drive.
pub trait ChatModel {
    /// A short human-readable description, e.g. the model file or the replay script.
    fn describe(&self) -> String;
    /// How many tokens of prompt plus completion the model can hold.
    fn context_window(&self) -> usize;
    /// Produce the next assistant turn for `messages`, offered `tools`.
    fn complete(
        &mut self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError>;
    /// A reply in plain text as `request` bounds and shapes it (a chat with no tools offered, from
    /// `agent serve`'s OpenAI endpoint). Backends that cannot bound it answer as `complete` does;
    /// those that cannot shape it refuse a request with a shape.
    fn chat(
        &mut self,
        messages: &[Message],
        request: &ChatRequest,
    ) -> Result<AssistantTurn, ModelError> {
        if request.shape.is_some() {
            return Err(ModelError::NoReplyShape(self.describe()));
        }
        self.complete(messages, &[])
    }
    /// Code completion from the model's own fill-in-the-middle tokens (the reply's `content`).
    fn fill_in_middle(&mut self, fill: &FillRequest) -> Result<AssistantTurn, ModelError> {
        let _ = fill;
        Err(ModelError::NoFim(self.describe()))
    }
    /// This model as one that answers several requests at once, where the backend can.
    fn as_shared(&self) -> Option<&dyn SharedModel> {
        None
    }
    /// When the run must end (its time limit): a backend whose turns can outlast it (a long reply
    /// decoded on a CPU) bounds each reply by the time left, so a turn cannot run the limit over by
    /// minutes. Remote backends end a request by their own timeouts.
    fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        let _ = deadline;
    }
}

/// A model that can answer several requests at once, from several threads (`agent serve`): the
/// in-process engine batches what arrives together.
pub trait SharedModel: Send + Sync {
    fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError>;
    /// As [`ChatModel::chat`], handing the reply's text to `sink` piece by piece as it is made;
    /// when `sink` returns false (the client went away) the generation stops and the turn holds
    /// what was made.
    fn chat(
        &self,
        messages: &[Message],
        request: &ChatRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<AssistantTurn, ModelError>;
    /// As [`ChatModel::fill_in_middle`], streamed to `sink` as [`SharedModel::chat`] is.
    fn fill_in_middle(
        &self,
        fill: &FillRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<AssistantTurn, ModelError>;
}

/// A plain reply's bounds: at most `max_tokens`, matching `shape` when the client asked for one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub max_tokens: usize,
    pub shape: Option<ReplyShape>,
}

/// What a plain reply must match: OpenAI's `response_format`, or mistral.rs's `grammar` extension.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyShape {
    /// JSON valid under this schema (`{"type": "object"}` for OpenAI's `json_object`).
    JsonSchema(Value),
    /// A Lark grammar, in llguidance's dialect.
    Lark(String),
    /// A regular expression the whole reply matches.
    Regex(String),
}

/// A code completion: the text between `prefix` and `suffix`, at most `max_tokens`, ending at the
/// first of `stop` (e.g. "\n" for one line) or at the model's own end.
#[derive(Debug, Clone, Default)]
pub struct FillRequest {
    pub prefix: String,
    pub suffix: String,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

/// How to run the model, from the command line. Backends use what applies to them.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// A chat template overriding the model's own: a Jinja file, or a JSON file with a `chat_template`.
    pub chat_template: Option<PathBuf>,
    /// CPU threads for the embedded backend (default: all cores).
    pub threads: Option<usize>,
    /// How tool calls are produced.
    pub tool_calls: ToolCallMode,
    /// In-situ quantisation of a safetensors model as it loads, e.g. `Q4K` or `Q8_0`.
    pub isq: Option<String>,
    /// The model's context window in tokens, when the backend cannot tell (OpenAI-compatible servers).
    pub context_window: Option<usize>,
    /// Reuse the KV cache of the conversation's shared prefix between turns (embedded backend).
    pub prefix_cache: bool,
    /// Keep code and patches inside the call's JSON even where the format can take them as plain
    /// text after the call (the Hermes format in-process); for comparing the two.
    pub code_in_json: bool,
}

/// How a backend obtains tool calls from the model.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ToolCallMode {
    /// The model's own format, constrained, where the backend can do that (in-process, with a chat
    /// template that writes Hermes-style `<tool_call>` calls: Qwen2.5, Qwen3 and their kin); otherwise
    /// `constrained`.
    #[default]
    Auto,
    /// Decode under a JSON schema that admits exactly one valid call of an offered tool: a malformed
    /// call, an unknown tool or a wrongly typed argument cannot be produced. Works with any model.
    Constrained,
    /// The model's own tool-call format, through its chat template (or the server's `tools`
    /// parameter). In-process with a Hermes-style template the call is still decoded under a grammar
    /// of that format; otherwise only for models trained for it, arguments checked after the fact.
    Native,
}

impl ToolCallMode {
    /// How backends describe the mode in `describe()`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Auto => "tool calls chosen by the backend",
            Self::Constrained => "constrained tool calls",
            Self::Native => "native tool calls",
        }
    }
}

impl ModelSpec {
    /// Build the backend. Loading a real model can take a while; the caller reports progress.
    pub fn load(&self, options: &ModelOptions) -> anyhow::Result<Box<dyn ChatModel>> {
        match self {
            Self::Replay(path) => Ok(Box::new(replay::ReplayModel::from_file(path)?)),
            Self::OpenAi { base_url, model } => Ok(Box::new(openai::OpenAiModel::new(
                base_url, model, options,
            )?)),
            Self::Serve { base_url } => Ok(Box::new(served::ServedModel::new(base_url, options)?)),
            #[cfg(feature = "embedded")]
            _ => Ok(Box::new(embedded::EmbeddedModel::load(self, options)?)),
            #[cfg(not(feature = "embedded"))]
            _ => Err(SpecError::NotBuiltIn(self.to_string()).into()),
        }
    }
}

/// The default model: `$AGENT_MODEL`, else Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), which
/// `scripts/setup.sh` fetches into the cache directory (`$XDG_CACHE_HOME/agent/models` or
/// `~/.cache/agent/models`) with `scripts/fetch-model.py`, hash-checked.
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENT_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    models_dir().join(DEFAULT_MODEL_FILE)
}

/// The file name of the default model in the model cache.
pub const DEFAULT_MODEL_FILE: &str = "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf";

/// SmolLM2-135M-Instruct (Q4_1, 94 MB), which `scripts/setup.sh` also installs: fast enough for tests
/// that need *a* model, far too small to solve tasks.
pub fn small_model_path() -> PathBuf {
    models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The small model as a Hugging Face folder (safetensors), made from its GGUF by scripts/setup.sh
/// (scripts/gguf-to-hf-folder.py); the tests of `--model DIR` use it.
pub fn small_model_folder() -> PathBuf {
    models_dir().join("SmolLM2-135M-Instruct-hf")
}

/// Where scripts/setup.sh and scripts/fetch-model.py install models.
pub fn models_dir() -> PathBuf {
    crate::dirs::cache_dir().join("models")
}
