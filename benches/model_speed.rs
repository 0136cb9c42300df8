//! Model speed on this machine, in one run (not a timed test):
//!
//! 1. prompt and decode tokens/s of the same GGUF and thread count through the embedded mistral.rs
//!    backend and through llama.cpp (llama-cpp-python, installed by scripts/setup.sh), same chat
//!    messages, greedy, 128 new tokens, median of five runs after a warm-up; each engine's model
//!    load time and the resident memory its model and warm-up added (VmRSS after minus before);
//! 2. time to first token of turns 1 and 10 of an agent-style conversation (constrained tool calls,
//!    as `agent run` does) with the prefix cache on and off, and with it on, of every turn's prompt
//!    (the same token ids) through llama.cpp reusing its KV cache as its server's `cache_prompt` does.
//!
//! Run: `cargo bench --profile dev --bench model_speed` (dependencies are optimised in the dev profile;
//! a release build would recompile mistral.rs). `AGENT_BENCH_THREADS` (default 2) and `AGENT_MODEL`
//! choose the threads and the GGUF; `AGENT_BENCH_PROMPT_REPEAT` (default 1) repeats the user message
//! that many times, for prompt speed at agent-turn lengths (12 repeats: ~450 tokens);
//! `AGENT_BENCH_PARTS` (default `speed,conversation`) picks the
//! parts: `speed` takes about two minutes, `conversation` about fifteen (most of it with the prefix
//! cache off), `conversation-cached` only the prefix-cache-on half, `load` (not in the default) the
//! load time alone, median of five loads of each engine.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use agent::model::embedded::EmbeddedModel;
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
    const KNOWN: [&str; 4] = ["speed", "conversation", "conversation-cached", "load"];
    if let Some(unknown) = parts.iter().find(|p| !KNOWN.contains(p)) {
        panic!("AGENT_BENCH_PARTS: unknown part {unknown:?} (known: {KNOWN:?})");
    }
    if parts.contains(&"speed") {
        engine_speeds(&model, threads, &user);
    }
    if parts.contains(&"load") {
        load_times(&model, threads);
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

/// Part 3: model load time alone, median of RUNS loads after one that fills the page cache: the
/// engine (mistral.rs's builder, as `mistralrs_speed` times it), the agent's backend
/// (`EmbeddedModel::load`: the engine plus the constrained decoder's set-up), and llama.cpp's `Llama()`.
fn load_times(model: &Path, threads: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine_load = || {
        let start = Instant::now();
        let engine = load_engine(&runtime, model);
        let took = start.elapsed().as_secs_f64();
        drop(engine);
        took
    };
    let options = ModelOptions {
        threads: Some(threads),
        ..ModelOptions::default()
    };
    let backend_load = || {
        let start = Instant::now();
        let backend = EmbeddedModel::load(&ModelSpec::Gguf(model.to_path_buf()), &options).unwrap();
        let took = start.elapsed().as_secs_f64();
        drop(backend);
        took
    };
    // The first load in a process is what `agent run` pays; later ones reuse memory the process
    // already has, so both are reported.
    let measure = |load: &dyn Fn() -> f64| (load(), median((0..RUNS).map(|_| load()).collect()));
    let (backend_first, backend) = measure(&backend_load);
    println!("agent       load {backend_first:5.2} s first in the process, {backend:5.2} s after (EmbeddedModel::load, median of {RUNS})");
    let (_, engine) = measure(&engine_load);
    println!("mistral.rs  load {engine:5.2} s (engine alone, median of {RUNS} after the first)");
    match llama_cpp_load(model, threads) {
        Ok(llama) => println!(
            "llama.cpp   load {:5.2} s first in the process, {:5.2} s after (median of {RUNS})\nratio load time agent/llama.cpp: first {:.2}, after {:.2}; engine alone {:.2}",
            llama.0,
            llama.1,
            backend_first / llama.0,
            backend / llama.1,
            engine / llama.1
        ),
        Err(e) => println!("llama.cpp   not measured: {e}"),
    }
}

/// llama.cpp's `Llama()` constructor: the first load in the process and the median of RUNS after it.
fn llama_cpp_load(model: &Path, threads: usize) -> Result<(f64, f64), String> {
    let script = r#"
import sys, time
from llama_cpp import Llama
model, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load():
    t = time.perf_counter()
    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=4096, verbose=False)
    took = time.perf_counter() - t
    llm.close()
    return took
first = load()
print(first, sorted(load() for _ in range(runs))[runs // 2])
"#;
    let out = Command::new(llama_python()?)
        .arg("-c")
        .arg(script)
        .arg(model)
        .arg(threads.to_string())
        .arg(RUNS.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e}: {text}"))?;
    match numbers[..] {
        [first, after] => Ok((first, after)),
        _ => Err(format!("unexpected output: {text}")),
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

/// Part 2: time to first token in an agent conversation, prefix cache on and off; with it on, the
/// same prompts (the very token ids) through llama.cpp, which keeps its KV cache from one prompt to
/// the next and computes only what follows the longest common prefix, as its server does with
/// `cache_prompt`.
fn conversations(model: &Path, threads: usize, prefix_cache: &[bool]) {
    for &prefix_cache in prefix_cache {
        let turns = conversation_ttft(model, threads, prefix_cache);
        let (first, tenth) = (&turns[0], &turns[9]);
        println!(
            "agent conversation, prefix cache {}: turn 1 first token {} ms ({} prompt tokens), turn 10 first token {} ms ({} prompt tokens)",
            if prefix_cache { "on " } else { "off" },
            first.ttft_ms,
            first.ids.len(),
            tenth.ttft_ms,
            tenth.ids.len()
        );
        if !prefix_cache {
            continue;
        }
        let prompts: Vec<&[u32]> = turns.iter().map(|t| t.ids.as_slice()).collect();
        match llama_cpp_ttft(model, threads, &prompts) {
            Ok(llama) => {
                for (n, (ours, theirs)) in turns.iter().zip(&llama).enumerate() {
                    println!(
                        "turn {:>2}: {:>5} prompt tokens, first token mistral.rs {:>6} ms, llama.cpp {:>6.0} ms",
                        n + 1,
                        ours.ids.len(),
                        ours.ttft_ms,
                        theirs
                    );
                }
                println!(
                    "ratio llama.cpp/mistral.rs time to first token (above 1: mistral.rs faster): turn 1 {:.2}, turn 10 {:.2}",
                    llama[0] / first.ttft_ms as f64,
                    llama[9] / tenth.ttft_ms as f64
                );
            }
            Err(e) => println!("llama.cpp   not measured: {e}"),
        }
    }
}

/// mistral.rs's engine for the GGUF file at `model`, on the CPU, without a prefix cache.
fn load_engine(runtime: &tokio::runtime::Runtime, model: &Path) -> mistralrs::Model {
    let dir = model.parent().unwrap().to_string_lossy().into_owned();
    let file = model.file_name().unwrap().to_string_lossy().into_owned();
    runtime
        .block_on(
            GgufModelBuilder::new(dir, vec![file])
                .with_token_source(TokenSource::None)
                .with_prefix_cache_n(None)
                .with_force_cpu()
                .build(),
        )
        .unwrap()
}

/// Prompt and decode tok/s for one plain generation, as mistral.rs reports them; the load time, and
/// the resident memory the loaded model and one warm-up generation added to this process.
fn mistralrs_speed(model: &Path, user: &str) -> Speed {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rss_before = rss_mib();
    let start = Instant::now();
    let engine = load_engine(&runtime, model);
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
    let python = llama_python()?;
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

/// One turn of the conversation: the prompt's token ids and mistral.rs's time to its first token.
struct Turn {
    ids: Vec<u32>,
    ttft_ms: u64,
}

/// Ten turns of a growing agent conversation through the embedded backend as `agent run` uses it.
fn conversation_ttft(model: &Path, threads: usize, prefix_cache: bool) -> Vec<Turn> {
    let options = ModelOptions {
        threads: Some(threads),
        prefix_cache,
        ..ModelOptions::default()
    };
    let started = Instant::now();
    let mut backend = EmbeddedModel::load(&ModelSpec::Gguf(model.to_path_buf()), &options).unwrap();
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
        let ids = backend.prompt_ids(&messages, &specs).unwrap();
        let reply = backend.complete(&messages, &specs).unwrap();
        assert_eq!(
            ids.len(),
            reply.usage.prompt_tokens,
            "the ids handed to llama.cpp must be the prompt mistral.rs computed"
        );
        out.push(Turn {
            ids,
            ttft_ms: reply.usage.ttft_ms,
        });
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

/// llama.cpp's time to first token (ms) for each prompt in turn, one context kept throughout: each
/// prompt reuses the KV cache of the longest prefix it shares with the previous one (llama-cpp-python's
/// `generate`, the same reuse as the server's `cache_prompt`); time from the call to the first sampled
/// token, greedy, no grammar.
fn llama_cpp_ttft(model: &Path, threads: usize, prompts: &[&[u32]]) -> Result<Vec<f64>, String> {
    let python = llama_python()?;
    let script = r#"
import json, sys, time
from llama_cpp import Llama
model, threads = sys.argv[1], int(sys.argv[2])
prompts = json.load(sys.stdin)
n_ctx = max(len(p) for p in prompts) + 64
llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, n_batch=512, verbose=False)
times = []
for ids in prompts:
    t = time.perf_counter()
    next(llm.generate(ids, temp=0.0))
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps(times))
"#;
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(model)
        .arg(threads.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let input = serde_json::to_vec(prompts).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input)
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {out:?}"))
}

/// The Python that has llama-cpp-python (scripts/setup.sh installs it).
fn llama_python() -> Result<std::path::PathBuf, String> {
    let python = agent::dirs::cache_dir().join("llama-venv/bin/python");
    if python.is_file() {
        Ok(python)
    } else {
        Err(format!(
            "{} missing; run scripts/setup.sh",
            python.display()
        ))
    }
}
