//! Model speed on this machine, in one run (not a timed test):
//!
//! 1. prompt and decode tokens/s of the same GGUF and thread count through the embedded mistral.rs
//!    backend and through llama.cpp (llama-cpp-python, installed by scripts/setup.sh), same chat
//!    messages, greedy, 128 new tokens, median of five runs after a warm-up; each engine's model
//!    load time and the resident memory its model and warm-up added (VmRSS after minus before);
//! 2. time to first token of turns 1 and 10 of an agent-style conversation (constrained tool calls,
//!    as `agent run` does) with the prefix cache on and off.
//!
//! Run: `cargo bench --profile dev --bench model_speed` (dependencies are optimised in the dev profile;
//! a release build would recompile mistral.rs). `AGENT_BENCH_THREADS` (default 2) and `AGENT_MODEL`
//! choose the threads and the GGUF; `AGENT_BENCH_PROMPT_REPEAT` (default 1) repeats the user message
//! that many times, for prompt speed at agent-turn lengths (12 repeats: ~450 tokens);
//! `AGENT_BENCH_PARTS` (default `speed,conversation`) picks the
//! parts: `speed` takes about two minutes, `conversation` about fifteen (most of it with the prefix
//! cache off), `conversation-cached` only the prefix-cache-on half.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use agent::model::{ChatModel, Message, ModelOptions, ModelSpec, ToolCall};
use mistralrs::{GgufModelBuilder, RequestBuilder, TextMessageRole, TokenSource};
use serde_json::json;

const NEW_TOKENS: usize = 128;
/// Measured runs per engine (after one warm-up); the median is reported.
const RUNS: usize = 5;
const SYSTEM: &str = "You are a helpful assistant.";
const USER: &str = "Write a detailed, step-by-step explanation of how a hash map works internally, \
                    covering hashing, buckets, collisions, resizing and iteration order. Be thorough.";

fn main() {
    let threads: usize = std::env::var("AGENT_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    // Both engines read this; set before any thread pool exists.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let model = agent::model::default_model_path();
    assert!(
        model.is_file(),
        "no model at {}; run scripts/setup.sh",
        model.display()
    );
    let repeat: usize = std::env::var("AGENT_BENCH_PROMPT_REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let user = vec![USER; repeat].join("\n");
    println!(
        "model: {} · threads: {threads} · user message repeated {repeat}x",
        model.display()
    );
    let parts = std::env::var("AGENT_BENCH_PARTS").unwrap_or_else(|_| "speed,conversation".into());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    const KNOWN: [&str; 3] = ["speed", "conversation", "conversation-cached"];
    if let Some(unknown) = parts.iter().find(|p| !KNOWN.contains(p)) {
        panic!("AGENT_BENCH_PARTS: unknown part {unknown:?} (known: {KNOWN:?})");
    }
    if parts.contains(&"speed") {
        engine_speeds(&model, threads, &user);
    }
    if parts.contains(&"conversation") {
        conversations(&model, threads, &[true, false]);
    } else if parts.contains(&"conversation-cached") {
        conversations(&model, threads, &[true]);
    }
}

/// What one engine measured: median tok/s, model load time, and the memory the model added.
struct Speed {
    prompt: f64,
    decode: f64,
    load_s: f64,
    rss_mib: f64,
}

/// Part 1: mistral.rs and llama.cpp on the same prompt.
fn engine_speeds(model: &Path, threads: usize, user: &str) {
    let m = mistralrs_speed(model, user);
    let print = |name: &str, s: &Speed| {
        println!(
            "{name:<11} prompt {:7.1} tok/s   decode {:6.1} tok/s   load {:5.2} s   RSS +{:6.0} MiB",
            s.prompt, s.decode, s.load_s, s.rss_mib
        )
    };
    print("mistral.rs", &m);
    match llama_cpp_speed(model, threads, user) {
        Ok(l) => {
            print("llama.cpp", &l);
            println!(
                "ratio mistral.rs/llama.cpp: prompt {:.2}, decode {:.2}, load time {:.2}, RSS {:.2}",
                m.prompt / l.prompt,
                m.decode / l.decode,
                m.load_s / l.load_s,
                m.rss_mib / l.rss_mib
            );
        }
        Err(e) => println!("llama.cpp   not measured: {e}"),
    }
}

/// This process's resident memory in MiB (Linux; 0 elsewhere).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Part 2: time to first token in an agent conversation, prefix cache on and off.
fn conversations(model: &Path, threads: usize, prefix_cache: &[bool]) {
    for &prefix_cache in prefix_cache {
        let ttft = conversation_ttft(model, threads, prefix_cache);
        println!(
            "agent conversation, prefix cache {}: turn 1 first token {} ms ({} prompt tokens), turn 10 first token {} ms ({} prompt tokens)",
            if prefix_cache { "on " } else { "off" },
            ttft[0].0,
            ttft[0].1,
            ttft[9].0,
            ttft[9].1
        );
    }
}

/// Prompt and decode tok/s for one plain generation, as mistral.rs reports them; the load time, and
/// the resident memory the loaded model and one warm-up generation added to this process.
fn mistralrs_speed(model: &Path, user: &str) -> Speed {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = model.parent().unwrap().to_string_lossy().into_owned();
    let file = model.file_name().unwrap().to_string_lossy().into_owned();
    let rss_before = rss_mib();
    let start = Instant::now();
    let engine = runtime
        .block_on(
            GgufModelBuilder::new(dir, vec![file])
                .with_token_source(TokenSource::None)
                .with_prefix_cache_n(None)
                .with_force_cpu()
                .build(),
        )
        .unwrap();
    let load_s = start.elapsed().as_secs_f64();
    let request = || {
        RequestBuilder::new()
            .add_message(TextMessageRole::System, SYSTEM)
            .add_message(TextMessageRole::User, user)
            .set_deterministic_sampler()
            .set_sampler_max_len(NEW_TOKENS)
    };
    // One warm-up, then the median of RUNS measured runs (prompt and decode separately).
    runtime
        .block_on(engine.send_chat_request(request()))
        .unwrap();
    let rss = rss_mib() - rss_before;
    let (mut prompt, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let usage = runtime
            .block_on(engine.send_chat_request(request()))
            .unwrap()
            .usage;
        println!(
            "mistral.rs  {} prompt tokens, {} generated: prompt {:.1} tok/s, decode {:.1} tok/s",
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.avg_prompt_tok_per_sec,
            usage.avg_compl_tok_per_sec
        );
        prompt.push(f64::from(usage.avg_prompt_tok_per_sec));
        decode.push(f64::from(usage.avg_compl_tok_per_sec));
    }
    Speed {
        prompt: median(prompt),
        decode: median(decode),
        load_s,
        rss_mib: rss,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The same messages through llama-cpp-python; prompt time from a 1-token completion.
fn llama_cpp_speed(model: &Path, threads: usize, user: &str) -> Result<Speed, String> {
    let python = agent::dirs::cache_dir().join("llama-venv/bin/python");
    if !python.is_file() {
        return Err(format!(
            "{} missing; run scripts/setup.sh",
            python.display()
        ));
    }
    let script = r#"
import json, sys, time
from llama_cpp import Llama
model, threads, n, runs, system, user = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
def rss_mib():
    with open("/proc/self/status") as f:
        return next((int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:")), 0.0)
rss_before = rss_mib()
load = time.perf_counter()
llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=4096, verbose=False)
load_s = time.perf_counter() - load
messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
def run(max_tokens):
    llm.reset()
    t = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
    return time.perf_counter() - t, out["usage"]
run(n)  # warm-up
rss = rss_mib() - rss_before
prompts, decodes = [], []
for _ in range(runs):
    prompt_s, usage = run(1)
    total_s, usage = run(n)
    prompts.append(usage["prompt_tokens"] / prompt_s)
    decodes.append((usage["completion_tokens"] - 1) / max(total_s - prompt_s, 1e-9))
    print(f"llama.cpp   {usage['prompt_tokens']} prompt tokens, {usage['completion_tokens']} generated: "
          f"prompt {prompts[-1]:.1f} tok/s, decode {decodes[-1]:.1f} tok/s", file=sys.stderr)
median = lambda xs: sorted(xs)[len(xs) // 2]
print(json.dumps({"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                  "prompt_tok_s": median(prompts), "decode_tok_s": median(decodes),
                  "load_s": load_s, "rss_mib": rss}))
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(model)
        .arg(threads.to_string())
        .arg(NEW_TOKENS.to_string())
        .arg(RUNS.to_string())
        .args([SYSTEM, user])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {out:?}"))?;
    // The per-run lines (the script's stderr also carries llama.cpp's own log lines).
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("llama.cpp "))
        .for_each(|l| println!("{l}"));
    let number = |key: &str| v[key].as_f64().unwrap_or(0.0);
    Ok(Speed {
        prompt: number("prompt_tok_s"),
        decode: number("decode_tok_s"),
        load_s: number("load_s"),
        rss_mib: number("rss_mib"),
    })
}

/// Ten turns of a growing agent conversation; (time to first token in ms, prompt tokens) per turn.
fn conversation_ttft(model: &Path, threads: usize, prefix_cache: bool) -> Vec<(u64, usize)> {
    let options = ModelOptions {
        threads: Some(threads),
        prefix_cache,
        ..ModelOptions::default()
    };
    let started = Instant::now();
    let mut backend: Box<dyn ChatModel> =
        ModelSpec::Gguf(model.to_path_buf()).load(&options).unwrap();
    eprintln!("loaded in {:?}", started.elapsed());
    let specs = agent::tools::specs();
    let mut messages = vec![
        Message::system(agent::agent::prompt::system(&specs)),
        Message::user("Add a `double` function to src/lib.rs.\n\nFiles in the repository:\nCargo.toml\nsrc/lib.rs"),
    ];
    let source: String = (0..30)
        .map(|i| format!("pub fn f{i}(x: i32) -> i32 {{ x + {i} }}\n"))
        .collect();
    let mut out = Vec::new();
    for turn in 0..10 {
        let reply = backend.complete(&messages, &specs).unwrap();
        out.push((reply.usage.ttft_ms, reply.usage.prompt_tokens));
        // A fixed, realistic exchange, so both runs see exactly the same conversation.
        let call = ToolCall {
            id: format!("call-{turn}"),
            name: "read_file".into(),
            arguments: json!({"path": "src/lib.rs", "start_line": turn * 3 + 1}),
        };
        messages.push(Message::assistant("Reading the file.", vec![call.clone()]));
        messages.push(Message::tool_result(&call, source.clone()));
    }
    out
}
