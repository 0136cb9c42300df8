//! The replay backend (`--model replay:FILE`): returns pre-recorded assistant turns in order.
//!
//! It makes runs of the whole agent deterministic for tests and for reproducing a recorded run. It never
//! improvises: when the script runs out it fails with a clear error instead of inventing a turn.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::{AssistantTurn, ChatModel, Message, ModelError, ToolCall, ToolSpec, Usage};

/// One scripted turn: `{"content": "...", "tool_calls": [{"name": "...", "arguments": {...}}]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedTurn {
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// A scripted crash, for tests of `agent resume`: the process aborts when this turn is asked
    /// for, as a power cut or `kill -9` would stop it (after the previous turn's tools ran, before
    /// anything of this turn). A resumed run never crashes again: the crash has happened.
    #[serde(default)]
    pub abort: bool,
}

pub struct ReplayModel {
    path: PathBuf,
    turns: Vec<ScriptedTurn>,
    next: usize,
    /// Whether scripted crashes fire (not in a resumed run).
    crashes: bool,
}

impl ReplayModel {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading replay script {}", path.display()))?;
        let turns: Vec<ScriptedTurn> = serde_json::from_str(&text).with_context(|| {
            format!(
                "replay script {} is not a JSON array of turns like \
                 [{{\"content\": \"...\", \"tool_calls\": [{{\"name\": \"read_file\", \"arguments\": {{\"path\": \"src/lib.rs\"}}}}]}}]",
                path.display()
            )
        })?;
        Ok(Self::new(path.to_path_buf(), turns))
    }

    pub fn new(path: PathBuf, turns: Vec<ScriptedTurn>) -> Self {
        Self {
            path,
            turns,
            next: 0,
            crashes: true,
        }
    }

    /// Continue after the first `turns` turns (resuming a run that had used them).
    pub fn skipping(mut self, turns: usize) -> Self {
        self.next = turns;
        self.crashes = false;
        self
    }
}

impl ChatModel for ReplayModel {
    fn describe(&self) -> String {
        format!("replay:{}", self.path.display())
    }

    fn context_window(&self) -> usize {
        // A script has no real window; report a large one so context management never trims for it.
        1 << 20
    }

    fn complete(
        &mut self,
        _messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError> {
        let tools = &super::callable(tools)[..];
        let Some(turn) = self.turns.get(self.next) else {
            return Err(ModelError::ReplayExhausted {
                path: self.path.clone(),
                turns: self.turns.len(),
                next: self.next + 1,
            });
        };
        let index = self.next;
        if turn.abort && self.crashes {
            std::process::abort();
        }
        // Like constrained decoding, a script may only call what the request offers.
        if let Some(call) = turn
            .tool_calls
            .iter()
            .find(|c| !tools.is_empty() && !tools.iter().any(|t| t.name == c.name))
        {
            return Err(ModelError::ReplayMismatch {
                path: self.path.clone(),
                turn: index + 1,
                tool: call.name.clone(),
                offered: tools
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        self.next += 1;
        let tool_calls = turn
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: if call.id.is_empty() {
                    format!("replay-{index}-{i}")
                } else {
                    call.id.clone()
                },
                ..call.clone()
            })
            .collect();
        Ok(AssistantTurn {
            content: turn.content.clone(),
            tool_calls,
            usage: Usage::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_turns_in_order_then_fails_clearly() {
        let turns: Vec<ScriptedTurn> = serde_json::from_str(
            r#"[{"content": "look", "tool_calls": [{"name": "read_file", "arguments": {"path": "a"}}]},
                {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}]"#,
        )
        .unwrap();
        let mut model = ReplayModel::new("s.json".into(), turns);
        let first = model.complete(&[], &[]).unwrap();
        assert_eq!(first.content, "look");
        assert_eq!(first.tool_calls[0].name, "read_file");
        assert_eq!(first.tool_calls[0].id, "replay-0-0");
        assert_eq!(
            model.complete(&[], &[]).unwrap().tool_calls[0].name,
            "finish"
        );
        let err = model.complete(&[], &[]).unwrap_err().to_string();
        assert!(
            err.contains("exhausted") && err.contains("2 assistant turns"),
            "{err}"
        );
    }

    #[test]
    fn rejects_unknown_fields() {
        assert!(serde_json::from_str::<Vec<ScriptedTurn>>(r#"[{"contnet": "typo"}]"#).is_err());
    }
}
