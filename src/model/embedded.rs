//! The embedded backend: a model run in-process through mistral.rs (a GGUF file, a Hugging Face folder of
//! safetensors, or a hub id), with every turn decoded under a grammar that admits exactly one valid call
//! of one offered tool: in the model's own format when its chat template writes Hermes-style
//! `<tool_call>` calls (the tools rendered by the template, see [`super::hermes`]), else as a generic
//! JSON object described in the system prompt.
//!
//! Constraining the decoder is what keeps small local models from emitting malformed tool calls: the
//! model cannot produce an unknown tool name or wrongly typed arguments. The conversation is sent
//! append-only, so mistral.rs's prefix cache reuses the KV cache of everything already seen. This
//! module never runs tools.

use std::path::Path;
use std::time::Instant;

use either::Either;
use mistralrs::{
    Constraint, GgufModelBuilder, Model, NormalRequest, Request, RequestBuilder, RequestLike,
    RequestMessage, Response, SamplingParams, StopTokens, TextMessageRole, TextMessages,
    TextModelBuilder, TokenSource, ToolChoice,
};
use serde_json::json;

use super::schema::{
    constrained_turn, render_assistant, render_tool_result, tool_call_schema,
    tool_call_schema_within,
};
use super::{
    hermes, AssistantTurn, ChatModel, ChatRequest, FillRequest, Message, ModelError, ModelOptions,
    ModelSpec, ReplyShape, Role, SharedModel, ToolCall, ToolCallMode, ToolSpec, Usage,
};

/// Tokens a turn may generate at first. A cut-off turn is generated once more with twice the room,
/// in constrained mode under bounds that make the call fit (see `complete`).
const TURN_TOKEN_BUDGET: usize = 1024;
/// The same when a tool's body (a whole file, a patch) may follow the call.
const BODY_TURN_TOKEN_BUDGET: usize = 2048;
/// Below this much room for the reply, a request is refused as a context overflow.
const MIN_REPLY_TOKENS: usize = 256;
/// A turn's reply when the run's time is (nearly) up: enough for a short call.
const MIN_TOKENS_BY_TIME: usize = 32;
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

/// How this model's calls are produced, settled at load from `--tool-calls` and its chat template.
#[derive(Debug, Clone, PartialEq)]
enum CallFormat {
    /// The generic `{"thought", "tool", "arguments"}` object under a JSON schema.
    Generic,
    /// The template's own Hermes format under a grammar of it; with `bodies`, code and patches are
    /// written after the call's JSON line as plain text.
    Hermes {
        markers: hermes::Markers,
        bodies: bool,
    },
    /// The template's own format, unconstrained, read by mistral.rs's parser (`--tool-calls native`
    /// for a template whose format this backend cannot constrain).
    Free,
}

pub struct EmbeddedModel {
    runtime: tokio::runtime::Runtime,
    model: Model,
    name: String,
    context_window: usize,
    format: CallFormat,
    /// Ids of the END_TOKENS this model's vocabulary has as single tokens.
    stop_ids: Vec<u32>,
    /// The model's fill-in-the-middle tokens, when its vocabulary has a known set.
    fim: Option<Fim>,
    /// When the run must end ([`ChatModel::set_deadline`]), and the decode speed of the last turn
    /// (tokens/s), from which a turn's reply is bounded by the time left.
    deadline: std::sync::Mutex<(Option<Instant>, f64)>,
}

/// A family's fill-in-the-middle tokens, as token ids.
#[derive(Debug, Clone)]
struct Fim {
    prefix: u32,
    suffix: u32,
    middle: u32,
    /// Codestral's order: suffix first, then prefix (SPM); the others put the prefix first (PSM).
    suffix_first: bool,
    /// Tokens that end a fill besides the end-of-text ones (the next file, padding).
    stops: Vec<u32>,
    /// Those tokens and the end-of-text ones this vocabulary has, as text.
    stop_texts: Vec<String>,
}

/// Known FIM token sets: (prefix, suffix, middle, suffix first, extra stops). The first whose three
/// tokens are all single tokens of the vocabulary is the model's.
const FIM_FAMILIES: &[(&str, &str, &str, bool, &[&str])] = &[
    // Qwen2.5-Coder, Qwen3-Coder
    (
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        false,
        &[
            "<|fim_pad|>",
            "<|file_sep|>",
            "<|repo_name|>",
            "<|fim_prefix|>",
        ],
    ),
    // StarCoder, StarCoder2, SantaCoder
    (
        "<fim_prefix>",
        "<fim_suffix>",
        "<fim_middle>",
        false,
        &["<file_sep>", "<fim_pad>", "<fim_prefix>"],
    ),
    // DeepSeek-Coder
    (
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
        false,
        &[],
    ),
    // Codestral
    ("[PREFIX]", "[SUFFIX]", "[MIDDLE]", true, &[]),
    // CodeLlama
    ("▁<PRE>", "▁<SUF>", "▁<MID>", false, &["▁<EOT>"]),
];

impl EmbeddedModel {
    /// Load what `spec` names. Errors say which file or repo, what went wrong and what to do.
    pub fn load(spec: &ModelSpec, options: &ModelOptions) -> Result<Self, ModelError> {
        let load_err = |what: String| {
            // mistral.rs's hub errors advise its own CLI's login command; ours reads the environment.
            let what = without_backtrace(&what)
                .replace("You may need to run `mistralrs login` or set HF_TOKEN.", "")
                .replace("Check the model ID and your access token.", "");
            let help = if what.contains("Hugging Face") {
                "Check the repo id and file name (hf:org/name:file.gguf); a gated or private repo needs \
                 HF_TOKEN (or a token in HF_HOME/token); HF_ENDPOINT selects a mirror; with HF_HUB_OFFLINE=1 \
                 only the local cache is used. See docs/models.md"
            } else {
                "mistral.rs 0.8.1 runs GGUF models of the llama, mistral, phi2, phi3, starcoder2, qwen2, qwen3 and \
                 qwen3moe architectures (K-quants, Q4_0..Q8_0; no I-quants), and safetensors folders of the \
                 architectures it lists; see docs/models.md. For the default model, re-run scripts/setup.sh"
            };
            ModelError::Load(format!(
                "{spec}: {}. {help}",
                what.trim_end().trim_end_matches('.')
            ))
        };
        if let Some(n) = options.threads {
            // candle sizes its CPU thread pool from this variable; it is read when the pool starts,
            // which is during the load below, before any other thread of ours exists.
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| load_err(format!("cannot start the async runtime: {e}")))?;
        let prefix_cache = options.prefix_cache.then_some(16);
        let template = options.chat_template.as_deref();
        let (build, name) = match spec {
            ModelSpec::Gguf(path) => {
                let (dir, file) = split_file(path).map_err(load_err)?;
                // A local file needs no hub token; never read one.
                let builder = GgufModelBuilder::new(dir, vec![file.clone()])
                    .with_token_source(TokenSource::None);
                (gguf_build(builder, template, prefix_cache), file)
            }
            ModelSpec::Hub {
                repo,
                file: Some(file),
            } => {
                let builder = GgufModelBuilder::new(repo, vec![file.clone()])
                    .with_token_source(TokenSource::CacheToken);
                (
                    gguf_build(builder, template, prefix_cache),
                    format!("{repo}:{file}"),
                )
            }
            ModelSpec::HfFolder(dir) => {
                let builder = TextModelBuilder::new(dir.to_string_lossy())
                    .with_token_source(TokenSource::None);
                (
                    text_build(builder, options, prefix_cache).map_err(load_err)?,
                    dir.file_name()
                        .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned()),
                )
            }
            ModelSpec::Hub { repo, file: None } => {
                let builder =
                    TextModelBuilder::new(repo).with_token_source(TokenSource::CacheToken);
                (
                    text_build(builder, options, prefix_cache).map_err(load_err)?,
                    repo.clone(),
                )
            }
            ModelSpec::Replay(_) | ModelSpec::OpenAi { .. } | ModelSpec::Serve { .. } => {
                return Err(load_err("not a model the embedded backend runs".into()))
            }
        };
        let model = runtime
            .block_on(build)
            .map_err(|e| load_err(format!("{e:#}")))?;
        let model_window = model.config().ok().and_then(|c| c.max_seq_len);
        let context_window = match (options.context_window, model_window) {
            (Some(asked), Some(model)) => asked.min(model),
            (asked, model) => asked.or(model).unwrap_or(FALLBACK_CONTEXT),
        };
        // The id of `token` when the vocabulary holds it as one token.
        let single = |token: &str| {
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
        };
        let stop_ids = END_TOKENS.iter().filter_map(|t| single(t)).collect();
        let fim = FIM_FAMILIES
            .iter()
            .find_map(|(prefix, suffix, middle, suffix_first, stops)| {
                Some(Fim {
                    prefix: single(prefix)?,
                    suffix: single(suffix)?,
                    middle: single(middle)?,
                    suffix_first: *suffix_first,
                    stops: stops.iter().filter_map(|t| single(t)).collect(),
                    stop_texts: stops
                        .iter()
                        .chain(END_TOKENS)
                        .filter(|t| single(t).is_some())
                        .map(|t| t.to_string())
                        .collect(),
                })
            });
        let format = match options.tool_calls {
            ToolCallMode::Constrained => CallFormat::Generic,
            mode => match hermes_markers(&runtime, &model) {
                Some(markers) => CallFormat::Hermes {
                    markers,
                    bodies: !options.code_in_json,
                },
                None if mode == ToolCallMode::Native => CallFormat::Free,
                None => CallFormat::Generic,
            },
        };
        Ok(Self {
            deadline: std::sync::Mutex::new((None, 0.0)),
            runtime,
            model,
            name,
            context_window,
            format,
            stop_ids,
            fim,
        })
    }

    fn request(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        max_len: usize,
        squeeze: Option<usize>,
    ) -> RequestBuilder {
        let mut request = RequestBuilder::new()
            .set_deterministic_sampler()
            .set_sampler_max_len(max_len);
        // Every tool is rendered; only the callable ones are in the grammar.
        let callable = super::callable(tools);
        match &self.format {
            CallFormat::Generic => {
                let schema = match squeeze {
                    Some(fit) => tool_call_schema_within(&callable, fit),
                    None => tool_call_schema(&callable),
                };
                request = request.set_constraint(Constraint::JsonSchema(schema));
                for message in messages {
                    let (role, text) = render(message);
                    request = request.add_message(role, text);
                }
            }
            CallFormat::Hermes { markers, bodies } => {
                let shown = hermes::offered(tools, *bodies);
                // The reply is read here (`hermes::parse_reply`), thought included; mistral.rs's own
                // parser would drop the text before the call.
                request = request
                    .set_tools(native_tools(&shown))
                    .set_constraint(Constraint::Lark(hermes::grammar(
                        markers, &callable, *bodies, squeeze,
                    )))
                    .set_tool_choice(ToolChoice::None);
                for message in messages {
                    let (role, text) = render_hermes(message, &shown);
                    request = request.add_message(role, text);
                }
            }
            CallFormat::Free => {
                request = request.set_tools(native_tools(tools));
                for message in messages {
                    request = match message.role {
                        Role::Assistant if !message.tool_calls.is_empty() => request
                            .add_message_with_tool_call(
                                TextMessageRole::Assistant,
                                &message.content,
                                message.tool_calls.iter().map(native_call).collect(),
                            ),
                        Role::Tool => request.add_tool_message(
                            &message.content,
                            message.tool_call_id.as_deref().unwrap_or_default(),
                        ),
                        _ => {
                            let (role, text) = render(message);
                            request.add_message(role, text)
                        }
                    };
                }
            }
        }
        if !self.stop_ids.is_empty() {
            request = request.set_sampler_stop_toks(StopTokens::Ids(self.stop_ids.clone()));
        }
        request
    }

    /// The exact prompt length as the chat template renders it (with the unconstrained native format,
    /// tool calls are counted in the generic rendering, which is close).
    /// The prompt's tokens and the room the window leaves after them for a reply; a context
    /// overflow (reported as needing room for `asked` reply tokens) when that is less than `least`.
    fn room_after_prompt(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        least: usize,
        asked: usize,
    ) -> Result<(usize, usize), ModelError> {
        let prompt = self.prompt_tokens(messages, tools)?;
        let room = self.context_window.saturating_sub(prompt);
        if room < least {
            return Err(ModelError::ContextOverflow {
                needed: prompt + asked,
                window: self.context_window,
            });
        }
        Ok((prompt, room))
    }

    fn prompt_tokens(&self, messages: &[Message], tools: &[ToolSpec]) -> Result<usize, ModelError> {
        self.prompt_ids(messages, tools).map(|ids| ids.len())
    }

    /// The token ids of the prompt a turn with `messages` and `tools` decodes from, rendered as
    /// [`ChatModel::complete`] renders them (benchmarks feed the same ids to another engine).
    pub fn prompt_ids(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<Vec<u32>, ModelError> {
        let offered = match &self.format {
            CallFormat::Hermes { bodies, .. } => hermes::offered(tools, *bodies),
            _ => tools.to_vec(),
        };
        let text = messages.iter().fold(TextMessages::new(), |acc, m| {
            let (role, text) = match self.format {
                CallFormat::Hermes { .. } => render_hermes(m, &offered),
                _ => render(m),
            };
            acc.add_message(role, text)
        });
        let tools = (self.format != CallFormat::Generic).then(|| native_tools(&offered));
        self.runtime
            .block_on(
                self.model
                    .tokenize(Either::Left(text), tools, true, true, None),
            )
            .map_err(|e| ModelError::Generation(format!("cannot tokenize the conversation: {e}")))
    }
}

type BuildFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Model>>>>;

fn gguf_build(
    builder: GgufModelBuilder,
    template: Option<&Path>,
    prefix_cache: Option<usize>,
) -> BuildFuture {
    let mut builder = builder.with_prefix_cache_n(prefix_cache);
    match template {
        Some(t) if is_jinja(t) => {
            builder = builder.with_jinja_explicit(t.to_string_lossy().into_owned())
        }
        Some(t) => builder = builder.with_chat_template(t.to_string_lossy()),
        None => {}
    }
    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    let builder = builder.with_force_cpu();
    Box::pin(async move { builder.build().await })
}

fn text_build(
    builder: TextModelBuilder,
    options: &ModelOptions,
    prefix_cache: Option<usize>,
) -> Result<BuildFuture, String> {
    let mut builder = builder.with_prefix_cache_n(prefix_cache);
    match options.chat_template.as_deref() {
        Some(t) if is_jinja(t) => {
            builder = builder.with_jinja_explicit(t.to_string_lossy().into_owned())
        }
        Some(t) => builder = builder.with_chat_template(t.to_string_lossy()),
        None => {}
    }
    if let Some(isq) = &options.isq {
        let isq = mistralrs::core::parse_isq_value(isq, None)
            .map_err(|e| format!("--isq {isq:?}: {e}"))?;
        builder = builder.with_isq(isq);
    }
    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    let builder = builder.with_force_cpu();
    Ok(Box::pin(async move { builder.build().await }))
}

fn is_jinja(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jinja") || e.eq_ignore_ascii_case("j2"))
}

/// candle's errors carry a backtrace in their text when `RUST_BACKTRACE` is set; a load error is for
/// the user, so keep only the message (the lines before the first backtrace frame, `   0: ...`).
fn without_backtrace(message: &str) -> String {
    let frame = |line: &str| {
        line.trim_start()
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    message
        .lines()
        .take_while(|line| !frame(line))
        .collect::<Vec<_>>()
        .join("\n")
}

fn split_file(path: &Path) -> Result<(String, String), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = path
        .file_name()
        .ok_or("not a file path")?
        .to_string_lossy()
        .into_owned();
    Ok((dir.to_string_lossy().into_owned(), file))
}

/// The Hermes markers, when this model's chat template renders offered tools and asks for
/// `<tool_call>` calls: a probe conversation with one tool is rendered and read back.
fn hermes_markers(runtime: &tokio::runtime::Runtime, model: &Model) -> Option<hermes::Markers> {
    const PROBE: &str = "agent_probe_tool";
    let probe = ToolSpec {
        name: PROBE.into(),
        description: "probe".into(),
        parameters: json!({"type": "object", "properties": {}}),
        body: None,
        withheld: false,
        body_opens: None,
    };
    let conversation = TextMessages::new().add_message(TextMessageRole::User, "hello");
    let ids = runtime
        .block_on(model.tokenize(
            Either::Left(conversation),
            Some(native_tools(&[probe])),
            true,
            true,
            None,
        ))
        .ok()?;
    let prompt = runtime.block_on(model.detokenize(ids, false)).ok()?;
    if !(prompt.contains(PROBE) && prompt.contains(hermes::OPEN) && prompt.contains(hermes::CLOSE))
    {
        return None;
    }
    let single_token = |marker: &str| {
        let ids = runtime
            .block_on(model.tokenize(Either::Right(marker.to_string()), None, false, false, None))
            .ok()?;
        (ids.len() == 1).then(|| ids[0])
    };
    Some(hermes::Markers::new(
        single_token(hermes::OPEN),
        single_token(hermes::CLOSE),
    ))
}

fn native_tools(tools: &[ToolSpec]) -> Vec<mistralrs::Tool> {
    tools
        .iter()
        .filter_map(|t| {
            serde_json::from_value(json!({
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": super::schema::sanitize(&t.parameters),
                }
            }))
            .ok()
        })
        .collect()
}

fn native_call(call: &ToolCall) -> mistralrs::ToolCallResponse {
    mistralrs::ToolCallResponse {
        index: 0,
        id: call.id.clone(),
        tp: mistralrs::ToolCallType::Function,
        function: mistralrs::CalledFunction {
            name: call.name.clone(),
            arguments: call.arguments.to_string(),
        },
    }
}

/// The constrained format has no native tool roles: calls are shown as the JSON the model wrote, and
/// results as user messages naming the tool.
fn render(message: &Message) -> (TextMessageRole, String) {
    match message.role {
        Role::System => (TextMessageRole::System, message.content.clone()),
        Role::User => (TextMessageRole::User, message.content.clone()),
        Role::Assistant => (TextMessageRole::Assistant, render_assistant(message)),
        Role::Tool => (TextMessageRole::User, render_tool_result(message)),
    }
}

/// The Hermes format: calls shown exactly as the model wrote them (the template would show the
/// arguments as a JSON-encoded string, since mistral.rs passes them as one), results in the tool role,
/// which the template wraps in `<tool_response>`.
fn render_hermes(message: &Message, tools: &[ToolSpec]) -> (TextMessageRole, String) {
    match message.role {
        Role::Assistant => (
            TextMessageRole::Assistant,
            hermes::render_turn(&message.content, &message.tool_calls, tools),
        ),
        Role::Tool => (TextMessageRole::Tool, message.content.clone()),
        _ => render(message),
    }
}

impl ChatModel for EmbeddedModel {
    fn describe(&self) -> String {
        let format = match self.format {
            CallFormat::Generic => "constrained tool calls",
            CallFormat::Hermes { bodies: true, .. } => {
                "native <tool_call> format, constrained, code after the call"
            }
            CallFormat::Hermes { bodies: false, .. } => {
                "native <tool_call> format, constrained, code inside the JSON"
            }
            CallFormat::Free => "native tool calls, unconstrained",
        };
        format!("{} (embedded mistral.rs, {format})", self.name)
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    fn fill_in_middle(&mut self, fill: &FillRequest) -> Result<AssistantTurn, ModelError> {
        self.fill(fill, &mut |_| true)
    }

    fn chat(
        &mut self,
        messages: &[Message],
        request: &ChatRequest,
    ) -> Result<AssistantTurn, ModelError> {
        self.chat_within_window(messages, request, &mut |_| true)
    }

    fn complete(
        &mut self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError> {
        SharedModel::complete(self, messages, tools)
    }

    fn as_shared(&self) -> Option<&dyn SharedModel> {
        Some(self)
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline_and_speed().0 = deadline;
    }
}

/// The engine batches requests that arrive together (its scheduler runs up to 32 sequences a
/// step), so `agent serve` may call these from several threads at once.
impl SharedModel for EmbeddedModel {
    fn fill_in_middle(
        &self,
        fill: &FillRequest,
        sink: Sink<'_>,
    ) -> Result<AssistantTurn, ModelError> {
        self.fill(fill, sink)
    }

    fn chat(
        &self,
        messages: &[Message],
        request: &ChatRequest,
        sink: Sink<'_>,
    ) -> Result<AssistantTurn, ModelError> {
        self.chat_within_window(messages, request, sink)
    }

    fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<AssistantTurn, ModelError> {
        let started = Instant::now();
        let (prompt, room) =
            self.room_after_prompt(messages, tools, MIN_REPLY_TOKENS, MIN_REPLY_TOKENS)?;
        if tools.is_empty() {
            let plain = ChatRequest {
                max_tokens: TEXT_TOKEN_BUDGET.min(room),
                shape: None,
            };
            return self.reply_in_text(messages, prompt, &plain, started, &mut |_| true);
        }
        // A body is a whole file or patch, longer than any JSON call.
        let body_offered = matches!(self.format, CallFormat::Hermes { bodies: true, .. })
            && tools.iter().any(|t| t.body.is_some());
        let turn_budget = if body_offered {
            BODY_TURN_TOKEN_BUDGET
        } else {
            TURN_TOKEN_BUDGET
        };
        let mut budget = turn_budget.min(room);
        let by_time = self.tokens_in_time_left();
        if let Some(tokens) = by_time {
            budget = budget.min(tokens);
        }
        // Constrained mode: after a cut-off, the retry decodes under string bounds scaled so that the
        // longest valid call fits its budget, so the retry cannot be cut off mid-string.
        let mut squeeze = None;
        let mut usage = Usage::default();
        loop {
            let request = self.request(messages, tools, budget, squeeze);
            let response = self
                .runtime
                .block_on(self.model.send_chat_request(request))
                .map_err(|e| ModelError::Generation(format!("{e:#}")))?;
            usage.prompt_tokens = response.usage.prompt_tokens;
            usage.completion_tokens += response.usage.completion_tokens;
            usage.prompt_tok_per_s = f64::from(response.usage.avg_prompt_tok_per_sec);
            usage.decode_tok_per_s = f64::from(response.usage.avg_compl_tok_per_sec);
            if usage.ttft_ms == 0 {
                usage.ttft_ms = (response.usage.total_prompt_time_sec * 1000.0) as u64;
            }
            let Some(choice) = response.choices.first() else {
                return Err(ModelError::Generation(
                    "the model returned no choices".into(),
                ));
            };
            let text = choice.message.content.clone().unwrap_or_default();
            let cut_off = choice.finish_reason == "length";
            self.deadline_and_speed().1 = usage.decode_tok_per_s;
            // Cut off by the time left, the run is over: no second try with more room.
            let time_bound = by_time.is_some_and(|tokens| tokens <= budget);
            if cut_off && usage.cut_off_retries == 0 && budget < room && !time_bound {
                // The call did not fit; one retry with twice the room, reported in the usage.
                usage.cut_off_retries += 1;
                budget = (budget * 2).min(room);
                squeeze = Some(budget);
                continue;
            }
            usage.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(match &self.format {
                CallFormat::Generic => constrained_turn(&text, cut_off, usage),
                CallFormat::Hermes { bodies, .. } => hermes::parse_reply(
                    &text,
                    &hermes::offered(&super::callable(tools), *bodies),
                    cut_off,
                    usage,
                ),
                CallFormat::Free => native_turn(
                    text,
                    choice.message.tool_calls.as_deref().unwrap_or_default(),
                    usage,
                ),
            });
        }
    }
}

impl EmbeddedModel {
    fn deadline_and_speed(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, f64)> {
        self.deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// With a deadline and a decode speed measured, the tokens the time left allows (at least
    /// [`MIN_TOKENS_BY_TIME`]: the turn then ends the run with a short, cut-off reply); `None` when
    /// nothing bounds a turn by time (no deadline, or no turn decoded yet).
    fn tokens_in_time_left(&self) -> Option<usize> {
        let (deadline, speed) = *self.deadline_and_speed();
        let left = deadline?.saturating_duration_since(Instant::now());
        (speed > 0.0).then(|| ((left.as_secs_f64() * speed) as usize).max(MIN_TOKENS_BY_TIME))
    }

    /// A plain chat reply as `request` asks, of fewer tokens where the window has less room.
    fn chat_within_window(
        &self,
        messages: &[Message],
        request: &ChatRequest,
        sink: Sink<'_>,
    ) -> Result<AssistantTurn, ModelError> {
        let started = Instant::now();
        let (prompt, room) = self.room_after_prompt(messages, &[], 1, request.max_tokens)?;
        let by_time = self.tokens_in_time_left().unwrap_or(usize::MAX);
        let within = ChatRequest {
            max_tokens: request.max_tokens.min(room).min(by_time),
            shape: request.shape.clone(),
        };
        let turn = self.reply_in_text(messages, prompt, &within, started, sink)?;
        self.deadline_and_speed().1 = turn.usage.decode_tok_per_s;
        Ok(turn)
    }

    /// Fill in the middle: the prompt is built from token ids (the family's FIM tokens around the
    /// tokenized prefix and suffix), so text in the code that spells a special token stays text.
    /// The text goes to `sink` as it is made.
    fn fill(&self, fill: &FillRequest, sink: Sink<'_>) -> Result<AssistantTurn, ModelError> {
        let (prefix, suffix, max_tokens) = (&fill.prefix, &fill.suffix, fill.max_tokens);
        let started = Instant::now();
        let Some(fim) = self.fim.clone() else {
            return Err(ModelError::NoFim(self.name.clone()));
        };
        let tokens = |text: &str| {
            self.runtime
                .block_on(self.model.tokenize(
                    Either::Right(text.to_string()),
                    None,
                    false,
                    false,
                    None,
                ))
                .map_err(|e| ModelError::Generation(format!("cannot tokenize the code: {e}")))
        };
        let (before, after) = (tokens(prefix)?, tokens(suffix)?);
        let room = self.context_window.saturating_sub(max_tokens + 3);
        // Too long for the window: keep the code nearest the cursor, most of it before.
        let keep_after = after.len().min(room / 4);
        let keep_before = before.len().min(room - keep_after);
        let before = &before[before.len() - keep_before..];
        let after = &after[..keep_after];
        let mut ids = Vec::with_capacity(before.len() + after.len() + 3);
        if fim.suffix_first {
            ids.push(fim.suffix);
            ids.extend_from_slice(after);
            ids.push(fim.prefix);
            ids.extend_from_slice(before);
        } else {
            ids.push(fim.prefix);
            ids.extend_from_slice(before);
            ids.push(fim.suffix);
            ids.extend_from_slice(after);
        }
        ids.push(fim.middle);
        let mut sampling = SamplingParams::deterministic();
        sampling.max_len = Some(max_tokens);
        sampling.stop_toks = Some(if fill.stop.is_empty() {
            let mut stops = self.stop_ids.clone();
            stops.extend(&fim.stops);
            StopTokens::Ids(stops)
        } else {
            // Strings stop the generation itself (a one-line completion ends at its newline instead
            // of running to max_tokens); the engine turns those that are one token into ids.
            let mut stops = fill.stop.clone();
            stops.extend(fim.stop_texts.iter().cloned());
            StopTokens::Seqs(stops)
        });
        let prompt_tokens = ids.len();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let request = NormalRequest::new_simple(
            RequestMessage::CompletionTokens(ids),
            sampling,
            tx,
            0,
            None,
            None,
        );
        self.stream(request, rx, started, prompt_tokens, sink)
    }

    /// Send `request` (whose responses go to `rx`) to the engine as a streaming request and hand its
    /// text to `sink` as it comes, chat and completion chunks alike. When the sink wants no more,
    /// dropping the receiver cancels the generation in the engine.
    fn stream(
        &self,
        mut request: NormalRequest,
        mut rx: tokio::sync::mpsc::Receiver<Response>,
        started: Instant,
        prompt_tokens: usize,
        sink: Sink<'_>,
    ) -> Result<AssistantTurn, ModelError> {
        request.is_streaming = true;
        let inner = self.model.inner();
        self.runtime.block_on(async {
            let sender = inner
                .get_sender(None)
                .map_err(|e| ModelError::Generation(format!("{e}")))?;
            sender
                .send(Request::Normal(Box::new(request)))
                .await
                .map_err(|e| ModelError::Generation(format!("{e}")))?;
            let mut streamed = Streamed::new(started, prompt_tokens);
            while let Some(response) = rx.recv().await {
                let (text, finished) = match &response {
                    Response::Chunk(chunk) => {
                        if let Some(usage) = &chunk.usage {
                            streamed.reported(usage);
                        }
                        let Some(choice) = chunk.choices.first() else {
                            continue;
                        };
                        let text = choice.delta.content.as_deref().unwrap_or_default();
                        (text, choice.finish_reason.is_some())
                    }
                    Response::CompletionChunk(chunk) => {
                        let Some(choice) = chunk.choices.first() else {
                            continue;
                        };
                        (choice.text.as_str(), choice.finish_reason.is_some())
                    }
                    _ => return Err(stream_error(&response)),
                };
                if !streamed.push(text, sink) || finished {
                    break;
                }
            }
            drop(rx);
            Ok(streamed.into_turn())
        })
    }

    /// A turn offered no tools (a plain chat through `agent serve`): free text, or text held to the
    /// request's shape by its grammar; handed to `sink` as it is made.
    fn reply_in_text(
        &self,
        messages: &[Message],
        prompt_tokens: usize,
        request: &ChatRequest,
        started: Instant,
        sink: Sink<'_>,
    ) -> Result<AssistantTurn, ModelError> {
        let mut builder = RequestBuilder::new()
            .set_deterministic_sampler()
            .set_sampler_max_len(request.max_tokens.max(1));
        if let Some(shape) = &request.shape {
            builder = builder.set_constraint(match shape {
                ReplyShape::JsonSchema(schema) => Constraint::JsonSchema(schema.clone()),
                ReplyShape::Lark(grammar) => Constraint::Lark(grammar.clone()),
                ReplyShape::Regex(regex) => Constraint::Regex(regex.clone()),
            });
        }
        for message in messages {
            let (role, text) = render(message);
            builder = builder.add_message(role, text);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut request = NormalRequest::new_simple(
            builder.take_messages(),
            builder.take_sampling_params(),
            tx,
            0,
            None,
            None,
        );
        request.constraint = builder.take_constraint();
        self.stream(request, rx, started, prompt_tokens, sink)
    }
}

/// Tokens a reply in plain text may take when the request does not say.
const TEXT_TOKEN_BUDGET: usize = 1024;

/// Where streamed text goes; false back means nobody listens any more.
type Sink<'a> = &'a mut dyn FnMut(&str) -> bool;

/// A reply as it streams: its text so far, and the figures its usage is made of: the engine's own
/// when its last chunk reports them, else counted here (one piece per token, the time to the
/// first).
struct Streamed {
    started: Instant,
    text: String,
    prompt_tokens: usize,
    pieces: usize,
    first_ms: Option<u64>,
    reported: Option<mistralrs::Usage>,
}

impl Streamed {
    fn new(started: Instant, prompt_tokens: usize) -> Self {
        Self {
            started,
            text: String::new(),
            prompt_tokens,
            pieces: 0,
            first_ms: None,
            reported: None,
        }
    }

    fn reported(&mut self, usage: &mistralrs::Usage) {
        self.reported = Some(usage.clone());
    }

    /// Take one piece and hand it on; false when the sink wants no more.
    fn push(&mut self, piece: &str, sink: Sink<'_>) -> bool {
        self.pieces += 1;
        self.first_ms
            .get_or_insert_with(|| self.started.elapsed().as_millis() as u64);
        self.text.push_str(piece);
        piece.is_empty() || sink(piece)
    }

    fn into_turn(self) -> AssistantTurn {
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        if let Some(usage) = self.reported {
            return AssistantTurn {
                content: self.text,
                tool_calls: Vec::new(),
                usage: Usage {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    prompt_tok_per_s: f64::from(usage.avg_prompt_tok_per_sec),
                    decode_tok_per_s: f64::from(usage.avg_compl_tok_per_sec),
                    ttft_ms: (usage.total_prompt_time_sec * 1000.0) as u64,
                    elapsed_ms,
                    cut_off_retries: 0,
                },
            };
        }
        let ttft_ms = self.first_ms.unwrap_or(elapsed_ms);
        let decode_s = elapsed_ms.saturating_sub(ttft_ms) as f64 / 1000.0;
        AssistantTurn {
            content: self.text,
            tool_calls: Vec::new(),
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.pieces,
                prompt_tok_per_s: self.prompt_tokens as f64 * 1000.0 / ttft_ms.max(1) as f64,
                decode_tok_per_s: if decode_s > 0.0 {
                    self.pieces.saturating_sub(1) as f64 / decode_s
                } else {
                    0.0
                },
                ttft_ms,
                elapsed_ms,
                cut_off_retries: 0,
            },
        }
    }
}

/// What a stream that sent something other than its chunks means.
fn stream_error(response: &Response) -> ModelError {
    ModelError::Generation(match response {
        Response::ModelError(e, _) | Response::CompletionModelError(e, _) => e.clone(),
        Response::ValidationError(e) => return ModelError::Refused(e.to_string()),
        Response::InternalError(e) => e.to_string(),
        _ => "an unexpected kind of reply while streaming".into(),
    })
}

/// A native-mode reply: calls whose arguments are not JSON are reported in the content (the loop then
/// asks again) rather than passed on half-parsed.
fn native_turn(text: String, calls: &[mistralrs::ToolCallResponse], usage: Usage) -> AssistantTurn {
    let mut content = text;
    let mut tool_calls = Vec::new();
    for call in calls {
        match serde_json::from_str(&call.function.arguments) {
            Ok(arguments) => tool_calls.push(ToolCall {
                id: call.id.clone(),
                name: call.function.name.clone(),
                arguments,
            }),
            Err(e) => content.push_str(&format!(
                "\n[malformed call of {}: arguments are not JSON ({e})]",
                call.function.name
            )),
        }
    }
    AssistantTurn {
        content,
        tool_calls,
        usage,
    }
}
