//! The model layer: one trait, [`ChatModel`], that the agent loop talks to, and the backends behind it.
//!
//! A backend turns a conversation plus tool specifications into one assistant turn (text and/or tool
//! calls) with usage figures. Backends never run tools, touch the repository or print: they only talk
//! to a model.

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod replay;
pub mod schema;

use std::path::{Path, PathBuf};

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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// Token counts and speeds of one model turn. Backends fill in what they know.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub prompt_tok_per_s: f64,
    pub decode_tok_per_s: f64,
    pub elapsed_ms: u64,
}

/// One reply of the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AssistantTurn {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("replay script {path} is exhausted: it holds {turns} assistant turns and turn {next} was requested; add turns to the script or lower --max-steps")]
    ReplayExhausted {
        path: PathBuf,
        turns: usize,
        next: usize,
    },
    #[error("could not load the model: {0}")]
    Load(String),
    #[error("the model failed while generating: {0}")]
    Generation(String),
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
}

/// Where the model named by `--model` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// `replay:FILE`: scripted assistant turns.
    Replay(PathBuf),
    /// A local `.gguf` file run in-process through mistral.rs.
    Gguf(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("--model {0:?}: no such file. Give a path to a .gguf file, or replay:FILE; run scripts/setup.sh to install the default model")]
    Missing(String),
    #[error("--model {0:?}: not a model this build understands. Use a path to a .gguf file or replay:FILE")]
    Unknown(String),
    #[error("no --model given and the default model is not installed at {0}; run scripts/setup.sh (or set AGENT_MODEL)")]
    NoDefault(PathBuf),
    #[error("--model {0:?} needs the embedded mistral.rs backend, but this binary was built without the `embedded` feature")]
    NotBuiltIn(String),
}

impl ModelSpec {
    /// Parse the `--model` argument. `None` means the default model installed by the set-up script.
    pub fn parse(spec: Option<&str>) -> Result<Self, SpecError> {
        let Some(spec) = spec else {
            let path = default_model_path();
            return if path.is_file() {
                Ok(Self::Gguf(path))
            } else {
                Err(SpecError::NoDefault(path))
            };
        };
        if let Some(file) = spec.strip_prefix("replay:") {
            let path = PathBuf::from(file);
            return if path.is_file() {
                Ok(Self::Replay(path))
            } else {
                Err(SpecError::Missing(spec.into()))
            };
        }
        let path = Path::new(spec);
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return if path.is_file() {
                Ok(Self::Gguf(path.to_path_buf()))
            } else {
                Err(SpecError::Missing(spec.into()))
            };
        }
        Err(SpecError::Unknown(spec.into()))
    }

    /// Build the backend. Loading a real model can take a while; the caller reports progress.
    pub fn load(&self) -> anyhow::Result<Box<dyn ChatModel>> {
        match self {
            Self::Replay(path) => Ok(Box::new(replay::ReplayModel::from_file(path)?)),
            #[cfg(feature = "embedded")]
            Self::Gguf(path) => Ok(Box::new(embedded::EmbeddedModel::load_gguf(path)?)),
            #[cfg(not(feature = "embedded"))]
            Self::Gguf(path) => Err(SpecError::NotBuiltIn(path.display().to_string()).into()),
        }
    }
}

/// The default model: `$AGENT_MODEL`, else the SmolLM2 GGUF that `scripts/setup.sh` installs into the
/// cache directory (`$XDG_CACHE_HOME/agent/models` or `~/.cache/agent/models`).
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENT_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    cache_dir()
        .join("models")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// `$XDG_CACHE_HOME/agent`, else `$HOME/.cache/agent`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("agent")
}
