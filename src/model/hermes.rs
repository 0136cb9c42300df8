//! The Hermes tool-call format, the one Qwen2.5, Qwen3 and many other chat templates teach their
//! models: an optional line of text, then
//!
//! ```text
//! <tool_call>
//! {"name": "read_file", "arguments": {"path": "src/lib.rs"}}
//! </tool_call>
//! ```
//!
//! Here are the grammar that constrains decoding to exactly one such call of an offered tool (Lark, as
//! llguidance reads it, with the call's JSON schema inside) and the reading of a reply back into a
//! [`ToolCall`]. A model decoded in the format it was trained on keeps its tool-calling skill, and the
//! grammar still rules out a malformed call. Pure text and schema work: no backend lives here.

use serde_json::Value;

use super::schema::{self, MAX_THOUGHT_CHARS};
use super::{AssistantTurn, ToolCall, ToolSpec, Usage};

pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";

/// How the grammar names the two markers: a token id where the tokenizer has the marker as one
/// token (as Qwen's does), so the model writes the very token it was trained on; else the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    open: String,
    close: String,
}

impl Markers {
    /// `open_id`/`close_id`: the markers' token ids, when each is a single token.
    pub fn new(open_id: Option<u32>, close_id: Option<u32>) -> Self {
        let atom = |id: Option<u32>, text: &str| match id {
            Some(id) => format!("<[{id}]>"),
            None => serde_json::to_string(text).expect("a string serialises"),
        };
        Self {
            open: atom(open_id, OPEN),
            close: atom(close_id, CLOSE),
        }
    }
}

/// The Lark grammar of one turn: at most one line of text without `<` (the model's short reason), then
/// one call whose JSON is `call_schema` (see [`schema::hermes_call_schema`]). The line may not start
/// with a backtick or a brace: Qwen2.5-Coder-1.5B otherwise opens a Markdown fence there (` ```json `)
/// on every turn, or writes the call it means as bare JSON there and then, forced into the marker,
/// some other call.
pub fn grammar(markers: &Markers, call_schema: &Value) -> String {
    format!(
        "start: thought? {open} \"\\n\" call \"\\n\" {close}\n\
         thought: THOUGHT \"\\n\"\n\
         THOUGHT: /[^<`{{\\n][^<\\n]{{0,{thought_tail}}}/\n\
         call: %json {call_schema}\n",
        open = markers.open,
        close = markers.close,
        thought_tail = MAX_THOUGHT_CHARS - 1,
    )
}

/// Tokens a turn can take beside its call: the thought (a token per character, the worst case that
/// [`schema::max_reply_tokens`] assumes) and the markers.
const OVERHEAD_TOKENS: usize = MAX_THOUGHT_CHARS as usize + 8;

/// Tokens the longest turn the grammar admits can take.
pub fn max_reply_tokens(call_schema: &Value) -> usize {
    schema::max_reply_tokens(call_schema) + OVERHEAD_TOKENS
}

/// The call schema for `tools` with string bounds scaled so that the whole turn fits `budget` tokens.
pub fn call_schema_within(tools: &[ToolSpec], budget: usize) -> Value {
    schema::within_budget(
        &schema::hermes_call_schema(tools),
        budget.saturating_sub(OVERHEAD_TOKENS),
    )
}

/// An assistant turn as the model writes it in this format: its thought, then each call, spaced as
/// Python's `json.dumps` spaces it (as the grammar has the model write it), so that the conversation
/// shows the model its own tokens.
pub fn render_turn(thought: &str, calls: &[ToolCall]) -> String {
    let mut text = thought.trim().to_string();
    for call in calls {
        let value = serde_json::json!({"name": call.name, "arguments": call.arguments});
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(OPEN);
        text.push('\n');
        text.push_str(&python_spaced(&value));
        text.push('\n');
        text.push_str(CLOSE);
    }
    text
}

/// JSON with `", "` between items and `": "` after keys, as Python's `json.dumps` writes it.
fn python_spaced(value: &Value) -> String {
    struct Spaced;
    impl serde_json::ser::Formatter for Spaced {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                writer.write_all(b", ")
            }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            self.begin_array_value(writer, first)
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
        ) -> std::io::Result<()> {
            writer.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, Spaced);
    serde::Serialize::serialize(value, &mut serializer).expect("a JSON value serialises");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The turn a Hermes-format reply makes: the text before the call is its thought. The markers may be
/// missing from `text` when the decoder dropped them as special tokens; the call is then the line that
/// starts with `{` (the thought has no line break, by the grammar).
pub fn parse_reply(text: &str, cut_off: bool, usage: Usage) -> AssistantTurn {
    let (thought, call) = match text.split_once(OPEN) {
        Some((thought, rest)) => (thought, rest.split(CLOSE).next().unwrap_or(rest)),
        None => match text.find("\n{") {
            Some(at) if !text.trim_start().starts_with('{') => text.split_at(at),
            _ => ("", text),
        },
    };
    let read = schema::read_call_object(call).and_then(|value| {
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .ok_or("the call has no \"name\" field naming the tool")?;
        let call = ToolCall {
            id: String::new(),
            name: name.to_string(),
            arguments: value
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
        };
        Ok((thought.trim().to_string(), call))
    });
    schema::reply_turn(text, read, cut_off, usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_file() -> ToolSpec {
        ToolSpec {
            name: "read_file".into(),
            description: "Read a file".into(),
            parameters: json!({
                "type": "object",
                "properties": {"path": {"type": "string", "maxLength": 300}},
                "required": ["path"],
            }),
        }
    }

    #[test]
    fn a_reply_with_and_without_its_markers_reads_as_the_same_call() {
        let call = "{\"name\": \"read_file\", \"arguments\": {\"path\": \"src/lib.rs\"}}";
        for text in [
            format!("I will look at the code.\n<tool_call>\n{call}\n</tool_call>"),
            format!("I will look at the code.\n\n{call}\n"),
        ] {
            let turn = parse_reply(&text, false, Usage::default());
            assert_eq!(turn.content, "I will look at the code.", "{text}");
            assert_eq!(turn.tool_calls.len(), 1, "{text}");
            assert_eq!(turn.tool_calls[0].name, "read_file");
            assert_eq!(turn.tool_calls[0].arguments, json!({"path": "src/lib.rs"}));
        }
        let bare = parse_reply(
            &format!("<tool_call>\n{call}\n</tool_call>"),
            false,
            Usage::default(),
        );
        assert_eq!((bare.content.as_str(), bare.tool_calls.len()), ("", 1));
        let bare = parse_reply(&format!("\n{call}\n"), false, Usage::default());
        assert_eq!((bare.content.as_str(), bare.tool_calls.len()), ("", 1));
    }

    #[test]
    fn a_turn_renders_back_as_the_model_wrote_it() {
        let text = "Read it first.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a, b: c.py\", \"lines\": [1, 2]}}\n</tool_call>";
        let turn = parse_reply(text, false, Usage::default());
        assert_eq!(render_turn(&turn.content, &turn.tool_calls), text);
        let bare = "<tool_call>\n{\"name\": \"finish\", \"arguments\": {}}\n</tool_call>";
        let turn = parse_reply(bare, false, Usage::default());
        assert_eq!(render_turn(&turn.content, &turn.tool_calls), bare);
    }

    #[test]
    fn a_broken_reply_is_reported_not_guessed() {
        let turn = parse_reply(
            "<tool_call>\n{\"name\": \"read_file\", \"argum",
            true,
            Usage::default(),
        );
        assert!(turn.tool_calls.is_empty());
        assert!(turn.content.contains("[unparsed:"), "{}", turn.content);
        assert!(turn.content.contains("cut off"), "{}", turn.content);
        let nameless = parse_reply(
            "<tool_call>\n{\"arguments\": {}}\n</tool_call>",
            false,
            Usage::default(),
        );
        assert!(
            nameless.content.contains("no \"name\""),
            "{}",
            nameless.content
        );
    }

    #[test]
    fn the_grammar_names_single_token_markers_by_id_and_others_by_text() {
        let schema = schema::hermes_call_schema(&[read_file()]);
        let by_id = grammar(&Markers::new(Some(151657), Some(151658)), &schema);
        assert!(
            by_id.starts_with("start: thought? <[151657]> \"\\n\" call \"\\n\" <[151658]>\n"),
            "{by_id}"
        );
        assert!(
            by_id.contains("THOUGHT: /[^<`{\\n][^<\\n]{0,399}/\n"),
            "{by_id}"
        );
        let by_text = grammar(&Markers::new(None, None), &schema);
        assert!(
            by_text.contains("\"<tool_call>\" \"\\n\" call \"\\n\" \"</tool_call>\""),
            "{by_text}"
        );
        // The schema goes in whole, spaced as the template shows calls.
        let json_part = by_id.split_once("call: %json ").unwrap().1.trim();
        let inner: Value = serde_json::from_str(json_part).unwrap();
        assert_eq!(inner, schema);
        assert_eq!(inner["x-guidance"]["key_separator"], ": ");
        assert_eq!(
            inner["anyOf"][0]["properties"]["name"]["const"],
            "read_file"
        );
    }

    #[test]
    fn a_squeezed_call_schema_fits_its_budget() {
        let tool = ToolSpec {
            parameters: json!({"type": "object", "properties": {"content": {"type": "string"}}}),
            ..read_file()
        };
        let full = schema::hermes_call_schema(std::slice::from_ref(&tool));
        assert!(max_reply_tokens(&full) > 1000);
        let squeezed = call_schema_within(&[tool], 1000);
        assert!(
            max_reply_tokens(&squeezed) <= 1000,
            "{}",
            max_reply_tokens(&squeezed)
        );
    }
}
