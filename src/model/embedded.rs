//! The embedded backend: a GGUF model run in-process through mistral.rs, with every turn decoded under a
//! JSON schema that admits exactly one valid call of one offered tool.
//!
//! Constraining the decoder is what keeps small local models from emitting malformed tool calls: the
//! model cannot produce an unknown tool name or wrongly typed arguments. This module never runs tools.

use std::path::Path;
use std::time::Instant;

use either::Either;
use mistralrs::{
    Constraint, GgufModelBuilder, Model, RequestBuilder, StopTokens, TextMessageRole, TokenSource,
};

use super::schema::{parse_tool_call_json, tool_call_schema};
use super::{AssistantTurn, ChatModel, Message, ModelError, Role, ToolSpec, Usage};

/// Tokens a single turn may generate at first; doubled once if a call is cut off.
const TURN_TOKEN_BUDGET: usize = 768;
/// End-of-text and end-of-turn tokens of common chat models. The grammar engine ends a finished call with
/// its own idea of end-of-text (often `<|endoftext|>`), which is not always the token the chat template
/// stops on (`<|im_end|>`); without stopping on all of them a finished call is padded to the budget.
const END_TOKENS: &[&str] = &[
    "</s>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<eos>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
];
/// Used when the model does not say how long its context is.
const FALLBACK_CONTEXT: usize = 8192;

pub struct EmbeddedModel {
    runtime: tokio::runtime::Runtime,
    model: Model,
    name: String,
    context_window: usize,
    /// Ids of the END_TOKENS this model's vocabulary has as single tokens.
    stop_ids: Vec<u32>,
}

impl EmbeddedModel {
    pub fn load_gguf(path: &Path) -> Result<Self, ModelError> {
        let load_err = |what: String| {
            ModelError::Load(format!(
                "{}: {what}. Check that the file is a complete GGUF model of an architecture mistral.rs supports \
                 (llama, mistral, phi, qwen, gemma, ...); re-run scripts/setup.sh to reinstall the default model",
                path.display()
            ))
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .ok_or_else(|| load_err("not a file path".into()))?
            .to_string_lossy()
            .into_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| load_err(format!("cannot start the async runtime: {e}")))?;
        // A local file needs no hub token; never read one.
        let builder = GgufModelBuilder::new(dir.to_string_lossy(), vec![file.clone()])
            .with_token_source(TokenSource::None);
        #[cfg(not(any(feature = "cuda", feature = "metal")))]
        let builder = builder.with_force_cpu();
        let model = runtime
            .block_on(builder.build())
            .map_err(|e| load_err(format!("{e:#}")))?;
        let context_window = model
            .config()
            .ok()
            .and_then(|c| c.max_seq_len)
            .unwrap_or(FALLBACK_CONTEXT);
        let stop_ids = END_TOKENS
            .iter()
            .filter_map(|token| {
                let ids = runtime
                    .block_on(model.tokenize(
                        Either::Right(token.to_string()),
                        None,
                        false,
                        false,
                        None,
                    ))
                    .ok()?;
                (ids.len() == 1).then(|| ids[0])
            })
            .collect();
        Ok(Self {
            runtime,
            model,
            name: file,
            context_window,
            stop_ids,
        })
    }

    fn request(&self, messages: &[Message], tools: &[ToolSpec], max_len: usize) -> RequestBuilder {
        let mut request = RequestBuilder::new()
            .set_constraint(Constraint::JsonSchema(tool_call_schema(tools)))
            .set_deterministic_sampler()
            .set_sampler_max_len(max_len);
        if !self.stop_ids.is_empty() {
            request = request.set_sampler_stop_toks(StopTokens::Ids(self.stop_ids.clone()));
        }
        for message in messages {
            let (role, text) = render(message);
            request = request.add_message(role, text);
        }
        request
    }
}

/// The constrained format has no native tool roles: calls are shown as the JSON the model wrote, and
/// results as user messages naming the tool.
fn render(message: &Message) -> (TextMessageRole, String) {
    match message.role {
        Role::System => (TextMessageRole::System, message.content.clone()),
        Role::User => (TextMessageRole::User, message.content.clone()),
        Role::Assistant => {
            let text = match message.tool_calls.first() {
                Some(call) => serde_json::json!({
                    "thought": message.content, "tool": call.name, "arguments": call.arguments
                })
                .to_string(),
                None => message.content.clone(),
            };
            (TextMessageRole::Assistant, text)
        }
        Role::Tool => (
            TextMessageRole::User,
            format!(
                "Result of {}:\n{}",
                message.tool_name.as_deref().unwrap_or("the tool"),
                message.content
            ),
        ),
    }
}

impl ChatModel for EmbeddedModel {
    fn describe(&self) -> String {
        format!("{} (embedded mistral.rs)", self.name)
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    fn complete(
        &mut self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError> {
        let started = Instant::now();
        let mut budget = TURN_TOKEN_BUDGET;
        let mut usage = Usage::default();
        let mut retried = false;
        loop {
            let request = self.request(messages, tools, budget);
            let response = self
                .runtime
                .block_on(self.model.send_chat_request(request))
                .map_err(|e| ModelError::Generation(format!("{e:#}")))?;
            usage.prompt_tokens = response.usage.prompt_tokens;
            usage.completion_tokens += response.usage.completion_tokens;
            usage.prompt_tok_per_s = f64::from(response.usage.avg_prompt_tok_per_sec);
            usage.decode_tok_per_s = f64::from(response.usage.avg_compl_tok_per_sec);
            let Some(choice) = response.choices.first() else {
                return Err(ModelError::Generation(
                    "the model returned no choices".into(),
                ));
            };
            let text = choice.message.content.clone().unwrap_or_default();
            let cut_off = choice.finish_reason == "length";
            if cut_off && !retried {
                retried = true;
                // The call did not fit; one retry with twice the room, as promised in the docs.
                budget *= 2;
                continue;
            }
            usage.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(match parse_tool_call_json(&text) {
                Ok((thought, call)) => AssistantTurn {
                    content: thought,
                    tool_calls: vec![call],
                    usage,
                },
                Err(problem) => AssistantTurn {
                    content: format!(
                        "{text}\n[unparsed: {problem}{}]",
                        if cut_off {
                            "; cut off at the token budget"
                        } else {
                            ""
                        }
                    ),
                    tool_calls: Vec::new(),
                    usage,
                },
            });
        }
    }
}
