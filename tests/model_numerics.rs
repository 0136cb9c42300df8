//! The embedded engine computes the right thing, not just something. vendor/ patches mistral.rs's CPU
//! attention and dtype and candle's Q4_1 kernel for speed (vendor/README.md); a wrong kernel would still
//! decode schema-valid tool calls under the grammar, so the tool-call tests cannot catch it. Here the real
//! SmolLM2 GGUF answers a question whose answer is only in an earlier turn: a broken causal mask, a KV
//! cache read at the wrong offset after a prefix-cache hit, or a wrong dot product shows up as a wrong
//! answer, or as the cached and uncached runs disagreeing. The same model as a safetensors folder
//! (scripts/gguf-to-hf-folder.py) goes through mistral.rs's other pipeline, plain and with in-situ
//! quantisation, and must recall the word too.
#![cfg(feature = "embedded")]

mod common;

use common::{installed_model, installed_model_folder};
use mistralrs::{
    GgufModelBuilder, IsqType, Model, RequestBuilder, TextMessageRole, TextModelBuilder,
    TokenSource,
};

const SYSTEM: &str = "You are a helpful assistant.";
const NEEDLE: &str = "The secret code word is PELICAN. Please remember it.";
const QUESTION: &str = "What is the secret code word? Answer with the word only.";

struct Engine {
    runtime: tokio::runtime::Runtime,
    model: Model,
}

impl Engine {
    fn load(prefix_cache: bool) -> Self {
        let path = installed_model();
        std::env::set_var("RAYON_NUM_THREADS", "2");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = path.parent().unwrap().to_string_lossy().into_owned();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let model = runtime
            .block_on(
                GgufModelBuilder::new(dir, vec![file])
                    .with_token_source(TokenSource::None)
                    .with_prefix_cache_n(prefix_cache.then_some(16))
                    .with_force_cpu()
                    .build(),
            )
            .unwrap();
        Self { runtime, model }
    }

    /// The safetensors folder made from the same GGUF by scripts/setup.sh, optionally quantised
    /// in place at load.
    fn load_folder(isq: Option<IsqType>) -> Self {
        let dir = installed_model_folder();
        std::env::set_var("RAYON_NUM_THREADS", "2");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut builder = TextModelBuilder::new(dir.to_string_lossy())
            .with_token_source(TokenSource::None)
            .with_prefix_cache_n(None)
            .with_force_cpu();
        if let Some(isq) = isq {
            builder = builder.with_isq(isq);
        }
        let model = runtime.block_on(builder.build()).unwrap();
        Self { runtime, model }
    }

    /// Greedy reply to `messages`, at most 24 tokens.
    fn ask(&self, messages: &[(TextMessageRole, String)]) -> String {
        let request = messages.iter().fold(
            RequestBuilder::new()
                .set_deterministic_sampler()
                .set_sampler_max_len(24),
            |request, (role, text)| request.add_message(role.clone(), text),
        );
        let response = self
            .runtime
            .block_on(self.model.send_chat_request(request))
            .unwrap();
        response.choices[0]
            .message
            .content
            .clone()
            .unwrap_or_default()
    }
}

/// Turn 1 plants the needle; turn 2 sends `filler` and the question. With the prefix cache on, turn 2
/// reuses turn 1's KV cache and only the new tokens are processed, against the cached ones.
fn conversation(engine: &Engine, filler: &str) -> (String, String) {
    let mut messages = vec![
        (TextMessageRole::System, SYSTEM.to_string()),
        (TextMessageRole::User, NEEDLE.to_string()),
    ];
    let first = engine.ask(&messages);
    messages.push((TextMessageRole::Assistant, first.clone()));
    messages.push((TextMessageRole::User, format!("{filler}{QUESTION}")));
    (first, engine.ask(&messages))
}

fn check(filler: &str) {
    let cached = conversation(&Engine::load(true), filler);
    let uncached = conversation(&Engine::load(false), filler);
    println!("prefix cache on:  {cached:?}\nprefix cache off: {uncached:?}");
    for (label, (_, answer)) in [("on", &cached), ("off", &uncached)] {
        assert!(
            answer.to_uppercase().contains("PELICAN"),
            "prefix cache {label}: the model did not recall the code word from turn 1: {answer:?}"
        );
    }
    assert_eq!(
        cached, uncached,
        "the same greedy conversation differs with and without the prefix cache"
    );
}

#[test]
fn recalls_a_word_from_an_earlier_turn_with_and_without_the_prefix_cache() {
    check("");
}

/// More than 1,024 new tokens: the prompt is processed in query chunks, each attending to the cached turn.
#[test]
fn recalls_it_across_a_long_new_turn_processed_in_chunks() {
    let filler: String = (1..=110)
        .map(|i| format!("Note {i}: the weather was mild today.\n"))
        .collect();
    check(&format!("Here are my notes.\n{filler}\n"));
}

/// The safetensors pipeline (plain, and quantised to Q8_0 and Q4K at load) on the same weights: a wrong
/// tensor name, layout or tokenizer in the folder, or a broken load path, shows up as a wrong answer.
#[test]
fn the_model_as_a_safetensors_folder_recalls_it_too() {
    for isq in [None, Some(IsqType::Q8_0), Some(IsqType::Q4K)] {
        let (_, answer) = conversation(&Engine::load_folder(isq), "");
        println!("folder, isq {isq:?}: {answer:?}");
        assert!(
            answer.to_uppercase().contains("PELICAN"),
            "folder model, isq {isq:?}: the model did not recall the code word: {answer:?}"
        );
    }
}
