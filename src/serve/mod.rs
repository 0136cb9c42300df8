//! `agent serve`: one loaded model shared over HTTP by its owner and their friends.
//!
//! Each request is authenticated by its API key (`users`), held to its user's limits, queued (a
//! bounded queue: a full one answers 429 with `Retry-After`; completions first, then users in turn)
//! and answered by the one model: several at once where the engine batches them (`--parallel`),
//! else one at a time on the thread that loaded it. What reaches it:
//!
//! - `POST /agent/v1/turn`: the agent's own turn (messages and tool specs in, one assistant turn out),
//!   which `agent run --model serve:URL` speaks. The server's backend decodes the call under its
//!   grammar exactly as in-process, so a remote run keeps constrained tool calls.
//! - `POST /v1/chat/completions` (OpenAI-compatible; `tools` optional; `response_format` or
//!   mistral.rs's `grammar` shape a plain reply) and `GET /v1/models`, for editors and other
//!   clients; `GET /health` needs no key.
//! - `POST /v1/completions` (with `suffix`) and llama.cpp's `POST /infill`: code completion from
//!   the model's own fill-in-the-middle tokens; these go before every waiting turn.
//!
//! Plain text (a chat reply without tools, a completion) is streamed to a client that asks for
//! `stream` as the model makes it (`stream`); a client that goes away stops its generation.
//!
//! What it must never do: log or store a prompt, a reply or a key. It writes counts and timings only
//! (`usage.json`, one line per request on stderr: user, endpoint, status, tokens, milliseconds).

mod stream;
pub mod users;

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::model::{
    AssistantTurn, ChatModel, ChatRequest, FillRequest, Message, ModelError, ReplyShape, Role,
    SharedModel, ToolCall, ToolSpec,
};
use users::{now_secs, Counts, UsageBook, User, Users};

/// The largest request body read: a long conversation is a few hundred KB.
const MAX_BODY_BYTES: u64 = 16 << 20;

/// Threads reading requests besides one per queue place and one per request in the model: each
/// waits while its request is queued or answered, so with a full queue these few still answer
/// /health, refusals and 429s at once.
const SPARE_WORKERS: usize = 4;

/// How `agent serve` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on; 127.0.0.1 unless the owner says otherwise.
    pub listen: String,
    /// Where `users.toml` and `usage.json` live.
    pub state: PathBuf,
    /// Requests that may wait for the model; one more is answered 429.
    pub queue: usize,
    /// The model's name in `/v1/models` and in replies.
    pub model_id: String,
    /// Requests the model works on at once (an engine that batches them); 1 answers one at a time.
    pub lanes: usize,
}

/// A request for the model, and where its answer goes.
struct Job {
    user: String,
    work: Work,
    /// Send the text as it is made (a client that asked for `stream`), then the turn.
    stream: bool,
    /// Raised by the request's thread when no more text is wanted (the client went away, or a stop
    /// string was reached): the generation stops.
    cancel: Arc<AtomicBool>,
    reply: mpsc::Sender<Answer>,
}

/// What goes back to the request's thread: pieces of text while streaming, then the whole turn.
enum Answer {
    Text(String),
    Done(Result<AssistantTurn, ModelError>),
}

enum Work {
    /// An agent turn or a chat completion offered tools.
    Turn {
        messages: Vec<Message>,
        tools: Vec<ToolSpec>,
    },
    /// A chat completion offered no tools: plain text, bounded and perhaps shaped.
    Chat {
        messages: Vec<Message>,
        request: ChatRequest,
    },
    /// Code completion between a prefix and a suffix.
    Fill(FillRequest),
}

/// The requests waiting for the model. Code completions go first (an editor waits on each
/// keystroke); turns go to the user served least recently, so one user's ten agent runs take turns
/// with another's one. Bounded: a full queue refuses.
struct Queue {
    waiting: Mutex<Waiting>,
    arrived: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct Waiting {
    fills: VecDeque<Job>,
    turns: VecDeque<Job>,
    /// When each user was last served, as a count of jobs served.
    served: HashMap<String, u64>,
    served_count: u64,
}

impl Queue {
    /// Queue `job`; false (and the job dropped) when the queue is full.
    fn push(&self, job: Job) -> bool {
        let mut waiting = lock(&self.waiting);
        if waiting.fills.len() + waiting.turns.len() >= self.capacity {
            return false;
        }
        match job.work {
            Work::Fill(_) => waiting.fills.push_back(job),
            Work::Turn { .. } | Work::Chat { .. } => waiting.turns.push_back(job),
        }
        self.arrived.notify_one();
        true
    }

    /// The next job to run, waiting for one.
    fn pop(&self) -> Job {
        let mut waiting = lock(&self.waiting);
        loop {
            if let Some(job) = waiting.fills.pop_front() {
                return job;
            }
            let next = (0..waiting.turns.len()).min_by_key(|&i| {
                let user = &waiting.turns[i].user;
                (waiting.served.get(user).copied().unwrap_or(0), i)
            });
            if let Some(job) = next.and_then(|i| waiting.turns.remove(i)) {
                waiting.served_count += 1;
                let count = waiting.served_count;
                waiting.served.insert(job.user.clone(), count);
                return job;
            }
            waiting = self
                .arrived
                .wait(waiting)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// What the request threads share.
struct Shared {
    options: Options,
    context_window: usize,
    queue: Arc<Queue>,
    /// Each user's model requests of the last minute.
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
    usage: Mutex<UsageBook>,
    ids: AtomicU64,
}

/// Listen, tell `ready` the address, and answer requests until the process ends. The model stays on
/// this thread.
pub fn serve(
    mut model: Box<dyn ChatModel>,
    options: Options,
    ready: &mut dyn FnMut(SocketAddr),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.state)
        .with_context(|| format!("creating {}", options.state.display()))?;
    let usage = UsageBook::load(&options.state)?;
    let server = Server::http(&options.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
    let address = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    let queue = Arc::new(Queue {
        waiting: Mutex::new(Waiting::default()),
        arrived: Condvar::new(),
        capacity: options.queue.max(1),
    });
    let shared = Arc::new(Shared {
        context_window: model.context_window(),
        options,
        queue: Arc::clone(&queue),
        recent: Mutex::new(HashMap::new()),
        usage: Mutex::new(usage),
        ids: AtomicU64::new(1),
    });
    let server = Arc::new(server);
    for _ in 0..shared.options.queue.max(1) + shared.options.lanes.max(1) + SPARE_WORKERS {
        let (server, shared) = (Arc::clone(&server), Arc::clone(&shared));
        std::thread::spawn(move || {
            while let Ok(request) = server.recv() {
                handle(&shared, request);
            }
        });
    }
    ready(address);
    let lanes = shared.options.lanes.max(1);
    match model.as_shared() {
        // An engine that streams, and with several lanes batches what is in it at once.
        Some(mut engine) => std::thread::scope(|scope| {
            for _ in 0..lanes {
                let queue = &queue;
                scope.spawn(move || loop {
                    work_on(&mut engine, queue.pop());
                });
            }
        }),
        None => loop {
            work_on(&mut model, queue.pop());
        },
    }
    Ok(())
}

/// The model as the serving loop drives it: an engine that threads share and that streams, or a
/// model of this thread only, which hands over each reply whole.
trait Engine {
    fn complete(&mut self, messages: &[Message], tools: &[ToolSpec]) -> ModelAnswer;
    fn chat(&mut self, messages: &[Message], request: &ChatRequest, sink: Sink<'_>) -> ModelAnswer;
    fn fill(&mut self, fill: &FillRequest, sink: Sink<'_>) -> ModelAnswer;
}

type ModelAnswer = Result<AssistantTurn, ModelError>;
type Sink<'a> = &'a mut dyn FnMut(&str) -> bool;

impl Engine for &dyn SharedModel {
    fn complete(&mut self, messages: &[Message], tools: &[ToolSpec]) -> ModelAnswer {
        SharedModel::complete(*self, messages, tools)
    }
    fn chat(&mut self, messages: &[Message], request: &ChatRequest, sink: Sink<'_>) -> ModelAnswer {
        SharedModel::chat(*self, messages, request, sink)
    }
    fn fill(&mut self, fill: &FillRequest, sink: Sink<'_>) -> ModelAnswer {
        SharedModel::fill_in_middle(*self, fill, sink)
    }
}

impl Engine for Box<dyn ChatModel> {
    fn complete(&mut self, messages: &[Message], tools: &[ToolSpec]) -> ModelAnswer {
        ChatModel::complete(self.as_mut(), messages, tools)
    }
    fn chat(&mut self, messages: &[Message], request: &ChatRequest, sink: Sink<'_>) -> ModelAnswer {
        let turn = ChatModel::chat(self.as_mut(), messages, request)?;
        sink(&turn.content);
        Ok(turn)
    }
    fn fill(&mut self, fill: &FillRequest, sink: Sink<'_>) -> ModelAnswer {
        let turn = self.fill_in_middle(fill)?;
        sink(&turn.content);
        Ok(turn)
    }
}

/// Answer one job. Streamed text goes to the request's thread as it is made; when that thread has
/// gone (its client disconnected), the sink says so and the generation stops.
fn work_on(engine: &mut impl Engine, job: Job) {
    let reply = &job.reply;
    let mut sink = |text: &str| {
        !job.stream
            || (!job.cancel.load(Ordering::Relaxed)
                && reply.send(Answer::Text(text.to_string())).is_ok())
    };
    let answer = match &job.work {
        Work::Turn { messages, tools } => engine.complete(messages, tools),
        Work::Chat { messages, request } => engine.chat(messages, request, &mut sink),
        Work::Fill(fill) => engine.fill(fill, &mut sink),
    };
    // The client may have gone: its answer is dropped.
    let _ = reply.send(Answer::Done(answer));
}

/// An answer, before it becomes a tiny_http response.
struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    retry_after: Option<u64>,
}

impl Reply {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            body: serde_json::to_vec(value).unwrap_or_default(),
            content_type: "application/json",
            retry_after: None,
        }
    }

    /// An OpenAI-style error object.
    fn error(status: u16, kind: &str, message: &str) -> Self {
        Self::json(
            status,
            &json!({"error": {"message": message, "type": kind, "code": status}}),
        )
    }

    /// A streamed answer, sent whole: one server-sent event, then `[DONE]`.
    fn events(chunk: &Value) -> Self {
        Self {
            status: 200,
            body: format!("data: {chunk}\n\ndata: [DONE]\n\n").into_bytes(),
            content_type: "text/event-stream",
            retry_after: None,
        }
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

fn handle(shared: &Shared, mut request: Request) {
    let started = Instant::now();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let mut who = String::from("-");
    let mut counts = Counts::default();
    let reply = match (request.method(), path.as_str()) {
        (Method::Get, "/health") => Reply::json(200, &json!({"status": "ok"})),
        (Method::Get, "/v1/models") => match authenticate(shared, &request) {
            Ok(user) => {
                who = user.name;
                models(shared)
            }
            Err(reply) => reply,
        },
        (Method::Post, "/agent/v1/turn" | "/v1/chat/completions" | "/v1/completions" | "/infill") => {
            match admit(shared, &request) {
                Ok(user) => {
                    who = user.name.clone();
                    match answer(shared, &mut request, &path, &user.name, &mut counts) {
                        Outcome::Whole(reply) => {
                            record(shared, &user, &counts);
                            reply
                        }
                        Outcome::Stream(stream) => {
                            let status = relay(request, stream, &mut counts);
                            record(shared, &user, &counts);
                            log(&who, &path, status, &counts, started);
                            return;
                        }
                    }
                }
                Err(reply) => reply,
            }
        }
        (
            _,
            "/health" | "/v1/models" | "/agent/v1/turn" | "/v1/chat/completions" | "/v1/completions"
            | "/infill",
        ) => {
            Reply::error(405, "method_not_allowed", "wrong HTTP method for this endpoint")
        }
        _ => Reply::error(
            404,
            "not_found",
            "no such endpoint; this server offers GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions, POST /infill and POST /agent/v1/turn",
        ),
    };
    log(&who, &path, reply.status, &counts, started);
    respond(request, reply);
}

/// One line per request on stderr: counts and timings only, never a prompt, a reply or a key.
fn log(who: &str, path: &str, status: u16, counts: &Counts, started: Instant) {
    eprintln!(
        "{who} {path} {status} {}+{} tokens {} ms",
        counts.prompt_tokens,
        counts.completion_tokens,
        started.elapsed().as_millis()
    );
}

fn respond(request: Request, reply: Reply) {
    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    if let Ok(header) = Header::from_bytes("Content-Type", reply.content_type) {
        response.add_header(header);
    }
    if let Some(secs) = reply.retry_after {
        if let Ok(header) = Header::from_bytes("Retry-After", secs.to_string()) {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
}

/// The user whose key the request carries (`Authorization: Bearer KEY`). The users file is read
/// on every request, so a removed user is refused at once, without a restart.
fn authenticate(shared: &Shared, request: &Request) -> Result<User, Reply> {
    let key = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| {
            let value = h.value.as_str();
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(key) = key else {
        return Err(Reply::error(
            401,
            "invalid_api_key",
            "no API key: send `Authorization: Bearer KEY` (the owner makes keys with `agent serve user add NAME`)",
        ));
    };
    let users = Users::load(&shared.options.state)
        .map_err(|_| Reply::error(500, "server_error", "the server cannot read its users file"))?;
    users.authenticate(key).cloned().ok_or_else(|| {
        Reply::error(
            401,
            "invalid_api_key",
            "this API key is not valid here (never issued, mistyped or revoked)",
        )
    })
}

/// Authenticate and hold the user to their limits; a request let through counts against the
/// minute at once.
fn admit(shared: &Shared, request: &Request) -> Result<User, Reply> {
    let user = authenticate(shared, request)?;
    if let Some(limit) = user.tokens_per_day {
        let used = lock(&shared.usage).tokens_today(&user.name);
        if used >= limit {
            let to_midnight = 86_400 - now_secs() % 86_400;
            return Err(Reply::error(
                429,
                "rate_limit_exceeded",
                &format!("{} has used {used} of their {limit} tokens today (UTC); the count starts afresh at midnight UTC", user.name),
            )
            .retry_after(to_midnight));
        }
    }
    if let Some(limit) = user.requests_per_minute {
        let mut recent = lock(&shared.recent);
        let times = recent.entry(user.name.clone()).or_default();
        let now = Instant::now();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            let wait = times
                .front()
                .map_or(60, |t| 60 - now.duration_since(*t).as_secs().min(59));
            return Err(Reply::error(
                429,
                "rate_limit_exceeded",
                &format!(
                    "{} may send {limit} model requests a minute; retry after {wait} s",
                    user.name
                ),
            )
            .retry_after(wait));
        }
        times.push_back(now);
    }
    Ok(user)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn record(shared: &Shared, user: &User, counts: &Counts) {
    let mut book = lock(&shared.usage);
    book.record(&user.name, counts);
    if let Err(e) = book.save(&shared.options.state) {
        eprintln!("warning: usage not saved: {e:#}");
    }
}

fn models(shared: &Shared) -> Reply {
    Reply::json(
        200,
        &json!({"object": "list", "data": [{
            "id": shared.options.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "agent serve",
            "context_length": shared.context_window,
        }]}),
    )
}

/// The agent's own turn request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnRequest {
    messages: Vec<Message>,
    #[serde(default)]
    tools: Vec<ToolSpec>,
}

/// Read the body, queue the model request, wait for its answer, and shape the reply for `path`.
fn answer(
    shared: &Shared,
    request: &mut Request,
    path: &str,
    user: &str,
    counts: &mut Counts,
) -> Outcome {
    counts.requests = 1;
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body);
    if read.is_err() {
        return Reply::error(
            400,
            "invalid_request_error",
            "the request body could not be read",
        )
        .into();
    }
    if body.len() as u64 > MAX_BODY_BYTES {
        return Reply::error(
            413,
            "invalid_request_error",
            &format!("the request body is over {MAX_BODY_BYTES} bytes"),
        )
        .into();
    }
    let parsed = match path {
        "/agent/v1/turn" => serde_json::from_slice::<TurnRequest>(&body)
            .map(|r| {
                (
                    Work::Turn {
                        messages: r.messages,
                        tools: r.tools,
                    },
                    Value::Null,
                )
            })
            .map_err(|e| e.to_string()),
        _ => serde_json::from_slice::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                let work = match path {
                    "/v1/chat/completions" => match from_openai(&v)? {
                        (messages, tools) if tools.is_empty() => Work::Chat {
                            messages,
                            request: ChatRequest {
                                max_tokens: ["max_completion_tokens", "max_tokens"]
                                    .iter()
                                    .find_map(|k| v.get(*k).and_then(Value::as_u64))
                                    .map_or(MAX_CHAT_TOKENS, |n| {
                                        (n as usize).clamp(1, MAX_CHAT_TOKENS)
                                    }),
                                shape: reply_shape(&v)?,
                            },
                        },
                        (messages, tools) => {
                            if reply_shape(&v)?.is_some() {
                                return Err("`response_format` or `grammar` with `tools`: a tool call is already held to its tool's schema; send one or the other".into());
                            }
                            Work::Turn { messages, tools }
                        }
                    },
                    _ => fill_from(&v)?,
                };
                Ok((work, v))
            }),
    };
    let (work, original) = match parsed {
        Ok(parts) => parts,
        Err(why) => {
            return Reply::error(
                400,
                "invalid_request_error",
                &format!("malformed request: {why}"),
            )
            .into()
        }
    };
    let id = shared.ids.fetch_add(1, Ordering::Relaxed);
    let model = shared.options.model_id.clone();
    // Plain text streams as it is made; a tool call is sent whole once its grammar has closed it.
    let streamed = original.get("stream").and_then(Value::as_bool) == Some(true);
    let stream_shape = match (&work, path) {
        (Work::Chat { request, .. }, _) if streamed => {
            Some((stream::Shape::Chat, request.max_tokens, Vec::new()))
        }
        (Work::Fill(fill), "/infill") if streamed => {
            Some((stream::Shape::Infill, fill.max_tokens, fill.stop.clone()))
        }
        (Work::Fill(fill), _) if streamed => Some((
            stream::Shape::Completion,
            fill.max_tokens,
            fill.stop.clone(),
        )),
        _ => None,
    };
    let (reply, answers) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = Job {
        user: user.to_string(),
        work,
        stream: stream_shape.is_some(),
        cancel: Arc::clone(&cancel),
        reply,
    };
    if !shared.queue.push(job) {
        return Outcome::Whole(
            Reply::error(
                429,
                "server_busy",
                &format!(
                    "the server is busy: {} requests are already waiting for the model",
                    shared.options.queue
                ),
            )
            .retry_after(5),
        );
    }
    if let Some((shape, max_tokens, stops)) = stream_shape {
        let id = match shape {
            stream::Shape::Chat => format!("chatcmpl-{id}"),
            _ => format!("cmpl-{id}"),
        };
        return Outcome::Stream(stream::Stream {
            answers,
            cancel,
            shape,
            id,
            model,
            stops,
            max_tokens,
        });
    }
    let turn = loop {
        match answers.recv() {
            Ok(Answer::Text(_)) => continue,
            Ok(Answer::Done(Ok(turn))) => break turn,
            Ok(Answer::Done(Err(e))) => return Outcome::Whole(failure(e)),
            Err(_) => return Outcome::Whole(stopped()),
        }
    };
    counts.prompt_tokens = turn.usage.prompt_tokens as u64;
    counts.completion_tokens = turn.usage.completion_tokens as u64;
    counts.model_ms = turn.usage.elapsed_ms;
    Outcome::Whole(match path {
        "/agent/v1/turn" => Reply::json(200, &json!(turn)),
        "/v1/chat/completions" => to_openai(&turn, &format!("chatcmpl-{id}"), &model, &original),
        _ => fill_reply(&turn, path, &format!("cmpl-{id}"), &model, &original),
    })
}

/// What a model request comes to: a reply sent whole, or text relayed as the model makes it.
enum Outcome {
    Whole(Reply),
    Stream(stream::Stream),
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Self {
        Self::Whole(reply)
    }
}

/// Relay a stream on the request's own connection; the HTTP status it answered with. The first
/// answer is awaited before anything is written, so that a refusal (a conversation over the window,
/// a model without fill-in-the-middle) keeps its status code.
fn relay(request: Request, stream: stream::Stream, counts: &mut Counts) -> u16 {
    let first = match stream.answers.recv() {
        Ok(Answer::Done(Err(e))) => {
            let reply = failure(e);
            let status = reply.status;
            respond(request, reply);
            return status;
        }
        Ok(first) => first,
        Err(_) => {
            respond(request, stopped());
            return 503;
        }
    };
    let mut out = request.into_writer();
    stream.relay(first, &mut out, counts);
    200
}

/// A model error as the client sees it.
fn failure(error: ModelError) -> Reply {
    match error {
        ModelError::ContextOverflow { needed, window } => Reply::json(
            400,
            &json!({"error": {
                "type": "context_overflow",
                "code": 400,
                "message": format!("the conversation needs {needed} tokens but the model's context window is {window}"),
                "needed": needed,
                "window": window,
            }}),
        ),
        e @ ModelError::NoFim(_) => Reply::error(400, "fim_unsupported", &e.to_string()),
        e @ (ModelError::Refused(_) | ModelError::NoReplyShape(_)) => {
            Reply::error(400, "invalid_request_error", &e.to_string())
        }
        e => Reply::error(500, "server_error", &e.to_string()),
    }
}

fn stopped() -> Reply {
    Reply::error(503, "server_error", "the model has stopped")
}

/// The most a plain chat reply may generate, and what it generates when not told.
const MAX_CHAT_TOKENS: usize = 2048;

/// What the reply must match: OpenAI's `response_format` (`json_object`, or `json_schema` with its
/// `schema`), or mistral.rs's `grammar` (`{"type": "regex" | "lark" | "json_schema", "value": …}`).
fn reply_shape(request: &Value) -> Result<Option<ReplyShape>, String> {
    let format = request.get("response_format").filter(|f| !f.is_null());
    let grammar = request.get("grammar").filter(|g| !g.is_null());
    let from_format = match format {
        None => None,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(ReplyShape::JsonSchema(json!({"type": "object"}))),
            Some("json_schema") => match f.pointer("/json_schema/schema") {
                Some(schema @ Value::Object(_)) => Some(ReplyShape::JsonSchema(schema.clone())),
                _ => return Err("`response_format.json_schema.schema` must be a JSON schema object".into()),
            },
            other => return Err(format!("`response_format.type` {other:?} is not one of \"text\", \"json_object\", \"json_schema\"")),
        },
    };
    let from_grammar = match grammar {
        None => None,
        Some(g) => {
            let value = g.get("value");
            Some(match (g.get("type").and_then(Value::as_str), value) {
                (Some("regex"), Some(Value::String(r))) => ReplyShape::Regex(r.clone()),
                (Some("lark"), Some(Value::String(l))) => ReplyShape::Lark(l.clone()),
                (Some("json_schema"), Some(schema @ Value::Object(_))) => {
                    ReplyShape::JsonSchema(schema.clone())
                }
                _ => return Err("`grammar` must be {\"type\": \"regex\" or \"lark\", \"value\": a string} or {\"type\": \"json_schema\", \"value\": a schema object}".into()),
            })
        }
    };
    match (from_format, from_grammar) {
        (Some(_), Some(_)) => Err("send `response_format` or `grammar`, not both".into()),
        (format, grammar) => Ok(format.or(grammar)),
    }
}

/// The most a code completion may generate, and what it generates when not told.
const MAX_FILL_TOKENS: usize = 512;
const DEFAULT_FILL_TOKENS: usize = 64;

/// A code completion request: OpenAI's `/v1/completions` (`prompt`, `suffix`, `max_tokens`) or
/// llama.cpp's `/infill` (`input_prefix`, `prompt` = the text typed on the cursor's line,
/// `input_suffix`, `n_predict`).
fn fill_from(request: &Value) -> Result<Work, String> {
    let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
    let infill = request.get("input_prefix").is_some() || request.get("input_suffix").is_some();
    let (prefix, suffix) = if infill {
        (
            format!("{}{}", text("input_prefix"), text("prompt")),
            text("input_suffix").to_string(),
        )
    } else {
        match request.get("prompt") {
            Some(Value::String(p)) => (p.clone(), text("suffix").to_string()),
            _ => return Err("`prompt` must be a string (one prompt per request)".into()),
        }
    };
    Ok(Work::Fill(FillRequest {
        prefix,
        suffix,
        max_tokens: fill_tokens(request),
        stop: stops(request).into_iter().map(String::from).collect(),
    }))
}

/// The request's `stop`: a string or a list of them (empty ones dropped).
fn stops(request: &Value) -> Vec<&str> {
    let list = match request.get("stop") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    list.into_iter().filter(|s| !s.is_empty()).take(8).collect()
}

/// `max_tokens` (or llama.cpp's `n_predict`), within bounds.
fn fill_tokens(request: &Value) -> usize {
    ["max_tokens", "n_predict"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_i64))
        .filter(|n| *n > 0)
        .map_or(DEFAULT_FILL_TOKENS, |n| (n as usize).min(MAX_FILL_TOKENS))
}

/// The completion cut at the first of the request's `stop` strings (a single-line completion asks
/// for "\n").
fn fill_reply(turn: &AssistantTurn, path: &str, id: &str, model: &str, request: &Value) -> Reply {
    let cut = stops(request)
        .iter()
        .filter_map(|s| turn.content.find(s))
        .min();
    let text = &turn.content[..cut.unwrap_or(turn.content.len())];
    let usage = &turn.usage;
    let finish = if cut.is_none() && usage.completion_tokens >= fill_tokens(request) {
        "length"
    } else {
        "stop"
    };
    if path == "/infill" {
        return Reply::json(
            200,
            &json!({
                "content": text,
                "model": model,
                "stop": true,
                "tokens_predicted": usage.completion_tokens,
                "tokens_evaluated": usage.prompt_tokens,
                "timings": {"prompt_ms": usage.ttft_ms, "predicted_ms": usage.elapsed_ms.saturating_sub(usage.ttft_ms)},
            }),
        );
    }
    let completion = json!({
        "id": id, "object": "text_completion", "created": now_secs(), "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": null,
            "finish_reason": finish}],
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens},
    });
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        return Reply::events(&completion);
    }
    Reply::json(200, &completion)
}

/// OpenAI chat messages and tools → the agent's. Content may be a string or a list of text parts;
/// a call's arguments a JSON string or an object.
fn from_openai(request: &Value) -> Result<(Vec<Message>, Vec<ToolSpec>), String> {
    let Some(list) = request.get("messages").and_then(Value::as_array) else {
        return Err("`messages` must be a list".into());
    };
    let mut messages = Vec::with_capacity(list.len());
    for m in list {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool") => Role::Tool,
            other => return Err(format!("unknown message role {other:?}")),
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        let calls =
            m.get("tool_calls")
                .and_then(Value::as_array)
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| {
                            let function = c.get("function").unwrap_or(&Value::Null);
                            let arguments = match function.get("arguments") {
                                Some(Value::String(s)) => serde_json::from_str(s)
                                    .unwrap_or_else(|_| Value::String(s.clone())),
                                Some(v) => v.clone(),
                                None => json!({}),
                            };
                            ToolCall {
                                id: c.get("id").and_then(Value::as_str).unwrap_or("").into(),
                                name: function
                                    .get("name")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .into(),
                                arguments,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
        messages.push(Message {
            role,
            content,
            tool_calls: calls,
            tool_call_id: m
                .get("tool_call_id")
                .and_then(Value::as_str)
                .map(String::from),
            tool_name: m.get("name").and_then(Value::as_str).map(String::from),
        });
    }
    let tools = request
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("function"))
                .map(|f| ToolSpec {
                    name: f.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    description: f
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    parameters: f
                        .get("parameters")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    body: None,
                    withheld: false,
                    body_opens: None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((messages, tools))
}

/// One assistant turn as an OpenAI chat completion, or as one streamed chunk when asked to stream.
fn to_openai(turn: &AssistantTurn, id: &str, model: &str, request: &Value) -> Reply {
    let calls: Vec<Value> = turn
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i,
                "id": if c.id.is_empty() { format!("call_{i}") } else { c.id.clone() },
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments.to_string()},
            })
        })
        .collect();
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let mut message = json!({"role": "assistant", "content": turn.content});
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
    }
    let usage = json!({
        "prompt_tokens": turn.usage.prompt_tokens,
        "completion_tokens": turn.usage.completion_tokens,
        "total_tokens": turn.usage.prompt_tokens + turn.usage.completion_tokens,
    });
    let created = now_secs();
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        return Reply::json(
            200,
            &json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }),
        );
    }
    Reply::events(&json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": message, "finish_reason": finish}],
        "usage": usage,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(user: &str, fill: bool) -> (Job, mpsc::Receiver<Answer>) {
        let (reply, answer) = mpsc::channel();
        let work = if fill {
            Work::Fill(FillRequest::default())
        } else {
            Work::Turn {
                messages: Vec::new(),
                tools: Vec::new(),
            }
        };
        let job = Job {
            user: user.to_string(),
            work,
            stream: false,
            cancel: Arc::default(),
            reply,
        };
        (job, answer)
    }

    #[test]
    fn completions_go_first_and_users_take_turns_and_a_full_queue_refuses() {
        let queue = Queue {
            waiting: Mutex::new(Waiting::default()),
            arrived: Condvar::new(),
            capacity: 6,
        };
        let mut keep = Vec::new();
        for (user, fill) in [
            ("ann", false),
            ("ann", false),
            ("ann", false),
            ("bob", false),
            ("cat", true),
            ("bob", false),
        ] {
            let (job, answer) = job(user, fill);
            assert!(queue.push(job));
            keep.push(answer);
        }
        let (extra, _) = job("dan", true);
        assert!(!queue.push(extra), "the seventh is refused");
        let order: Vec<(String, bool)> = (0..6)
            .map(|_| {
                let job = queue.pop();
                (job.user, matches!(job.work, Work::Fill(_)))
            })
            .collect();
        let order: Vec<(&str, bool)> = order.iter().map(|(u, f)| (u.as_str(), *f)).collect();
        assert_eq!(
            order,
            [
                ("cat", true),
                ("ann", false),
                ("bob", false),
                ("ann", false),
                ("bob", false),
                ("ann", false)
            ]
        );
    }
}
