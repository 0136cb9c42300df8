//! The Hermes tool-call format, the one Qwen2.5, Qwen3 and many other chat templates teach their
//! models: an optional line of text, then
//!
//! ```text
//! <tool_call>
//! {"name": "read_file", "arguments": {"path": "src/lib.rs"}}
//! </tool_call>
//! ```
//!
//! A tool whose spec names a body (`write_file`'s content, `apply_patch`'s patch) takes it after the
//! call's JSON line, inside the same `<tool_call>`, as a fenced block of plain text: code is written as
//! code, not escaped inside a JSON string (models write worse code that way):
//!
//! ````text
//! <tool_call>
//! {"name": "write_file", "arguments": {"path": "calc.py"}}
//! ```python
//! def add(a, b):
//!     return a + b
//! ```
//! </tool_call>
//! ````
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

/// The fence around a body.
const FENCE: &str = "```";

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

/// The tools as this format offers them. With `bodies`, a tool that names a body has that argument
/// taken out of its JSON schema, and its description says where the text goes instead; without, every
/// argument stays in the JSON (and no spec names a body).
pub fn offered(tools: &[ToolSpec], bodies: bool) -> Vec<ToolSpec> {
    tools
        .iter()
        .map(|tool| {
            let mut tool = tool.clone();
            let Some(field) = tool.body.clone().filter(|_| bodies) else {
                tool.body = None;
                return tool;
            };
            if let Some(props) = tool
                .parameters
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                props.remove(&field);
            }
            if let Some(required) = tool
                .parameters
                .get_mut("required")
                .and_then(Value::as_array_mut)
            {
                required.retain(|name| name != field.as_str());
            }
            tool.description = format!(
                "{} The `{field}` is not a JSON argument: write it after the call's JSON line, inside the \
                 same <tool_call>, as a fenced block (a line {FENCE}, the text exactly as it is, a line \
                 {FENCE}), no escaping.",
                tool.description
            );
            tool
        })
        .collect()
}

/// The Lark grammar of one turn: at most one line of text without `<` (the model's short reason), then
/// one call of one of `tools`, offered as [`offered`] offers them with `bodies`, its JSON within
/// `squeeze` tokens when given (see [`call_schema_within`]), and for a tool with a body, the body's
/// fenced block (not empty where the body argument's schema has a `minLength`, as a patch's has). The
/// line may not start with a backtick or a brace: Qwen2.5-Coder-1.5B otherwise opens a Markdown fence
/// there (` ```json `) on every turn, or writes the call it means as bare JSON there and then, forced
/// into the marker, some other call.
pub fn grammar(
    markers: &Markers,
    tools: &[ToolSpec],
    bodies: bool,
    squeeze: Option<usize>,
) -> String {
    let needs_text = |tool: &ToolSpec| {
        tool.body.as_ref().is_some_and(|field| {
            tool.parameters["properties"][field]["minLength"]
                .as_u64()
                .is_some_and(|n| n > 0)
        })
    };
    let shown = offered(tools, bodies);
    let mut plain = Vec::new();
    let mut may_be_empty = Vec::new();
    let mut with_text = Vec::new();
    // Tools whose body must open a certain way, each in a group of its own.
    let mut opened = Vec::new();
    for (tool, shown) in tools.iter().zip(shown) {
        match (&shown.body, &shown.body_opens) {
            (None, _) => plain.push(shown),
            (Some(_), Some(opens)) => {
                let opens = opens.clone();
                opened.push((vec![shown], opens));
            }
            (Some(_), None) if needs_text(tool) => with_text.push(shown),
            (Some(_), None) => may_be_empty.push(shown),
        }
    }
    let schema_of = |tools: &[ToolSpec]| match squeeze {
        Some(fit) => call_schema_within(tools, fit),
        None => schema::hermes_call_schema(tools),
    };
    let mut calls = Vec::new();
    let mut rules = String::new();
    let no_bodies = may_be_empty.is_empty() && with_text.is_empty() && opened.is_empty();
    if !plain.is_empty() || no_bodies {
        calls.push(format!("call \"\\n\" {}", markers.close));
        rules.push_str(&format!("call: %json {}\n", schema_of(&plain)));
    }
    // The block's language tag is free. The body ends at its first line that starts with the fence;
    // the fence must then stand alone on its line, and only the closing marker follows (after line
    // breaks or none). A model that closed its block cannot go on writing into it: Qwen2.5-Coder-1.5B
    // did, to its token budget, when the body could hold fence lines and only the marker ended it;
    // and when a line break was forced after the fence, it wanted another (or none) and opened
    // ```python block after block. The price: a file holding a line that starts with ``` (Markdown
    // with code blocks) cannot be written whole this way; a patch can carry it (its lines start with
    // `+`, `-` or a space), and `--code-in-json` takes it as JSON. A body that must hold text has a
    // character other than white space (the same model sent empty patches).
    let fence = serde_json::to_string(FENCE).expect("a string serialises");
    let mut groups = vec![
        (
            "body_call".to_string(),
            may_be_empty,
            "/(?s:(.*\\n)?)/".to_string(),
        ),
        // Its first character other than white space does not begin a fence.
        (
            "text_call".to_string(),
            with_text,
            "/(?s:\\s*([^\\s`]|`[^`]|``[^`]).*\\n)/".to_string(),
        ),
    ];
    // A body that must open a certain way (a patch as a patch does: Qwen2.5-Coder-1.5B otherwise
    // sends Python such as `obj['patch']` or the whole file as "patches"), after any blank space.
    for (n, (group, opens)) in opened.into_iter().enumerate() {
        groups.push((
            format!("opened{n}_call"),
            group,
            format!("/(?s:\\s*({opens}).*\\n)/"),
        ));
    }
    let with_bodies = groups.iter().any(|(_, group, _)| !group.is_empty());
    for (name, group, body) in &groups {
        if group.is_empty() {
            continue;
        }
        calls.push(format!(
            "{name} \"\\n{FENCE}\" LANG? \"\\n\" {name}_body FENCE_END {}",
            markers.close
        ));
        rules.push_str(&format!(
            "{name}: %json {}\n{name}_body[suffix={fence}]: {body}\n",
            schema_of(group)
        ));
    }
    if with_bodies {
        rules.push_str("LANG: /[A-Za-z0-9_+.#-]{1,24}/\nFENCE_END: /[ \\t]*\\n{0,2}/\n");
    }
    format!(
        "start: thought? {open} \"\\n\" turn\n\
         turn: {calls}\n\
         thought: THOUGHT \"\\n\"\n\
         THOUGHT: /[^<`{{\\n][^<\\n]{{0,{thought_tail}}}/\n\
         {rules}",
        open = markers.open,
        calls = calls.join(" | "),
        thought_tail = MAX_THOUGHT_CHARS - 1,
    )
}

/// Tokens a turn can take beside its call: the thought (a token per character, the worst case that
/// [`schema::max_reply_tokens`] assumes) and the markers.
const OVERHEAD_TOKENS: usize = MAX_THOUGHT_CHARS as usize + 8;

/// Tokens the longest turn the grammar admits can take (a body not counted: it is bounded by the
/// request's token budget only).
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
/// Python's `json.dumps` spaces it (as the grammar has the model write it), a body after its JSON line
/// when `tools` (as [`offered`] made them) give the tool one; so that the conversation shows the model
/// its own tokens.
pub fn render_turn(thought: &str, calls: &[ToolCall], tools: &[ToolSpec]) -> String {
    let mut text = thought.trim().to_string();
    for call in calls {
        let mut arguments = call.arguments.clone();
        let body = body_field(tools, &call.name).and_then(|field| {
            arguments
                .as_object_mut()
                .and_then(|a| a.remove(field))
                .map(|v| (field, v.as_str().unwrap_or_default().to_string()))
        });
        let value = serde_json::json!({"name": call.name, "arguments": arguments});
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(OPEN);
        text.push('\n');
        text.push_str(&python_spaced(&value));
        text.push('\n');
        if let Some((field, body)) = body {
            text.push_str(FENCE);
            text.push_str(fence_language(field, &arguments));
            text.push('\n');
            text.push_str(&body);
            if !body.is_empty() && !body.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(FENCE);
            text.push('\n');
        }
        text.push_str(CLOSE);
    }
    text
}

fn body_field<'a>(tools: &'a [ToolSpec], name: &str) -> Option<&'a str> {
    tools
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.body.as_deref())
}

/// The language tag a model most likely puts on the block, so that a rendered turn matches its tokens.
fn fence_language(field: &str, arguments: &Value) -> &'static str {
    if field == "patch" {
        return "diff";
    }
    let path = arguments.get("path").and_then(Value::as_str).unwrap_or("");
    let extension = path.rsplit_once('.').map_or("", |(_, e)| e);
    match extension {
        "py" => "python",
        "rs" => "rust",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" => "typescript",
        "go" => "go",
        "c" | "h" => "c",
        "cc" | "cpp" | "hpp" => "cpp",
        "java" => "java",
        "sh" => "bash",
        "toml" => "toml",
        "json" => "json",
        "md" => "markdown",
        "yml" | "yaml" => "yaml",
        _ => "",
    }
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

/// The turn a Hermes-format reply makes, `tools` as [`offered`] made them: the text before the call
/// is its thought, and a body after the call's JSON line goes into the tool's body argument. The
/// markers may be missing from `text` when the decoder dropped them as special tokens; the call is then
/// the line that starts with `{` (the thought has no line break, by the grammar).
pub fn parse_reply(text: &str, tools: &[ToolSpec], cut_off: bool, usage: Usage) -> AssistantTurn {
    let (thought, rest) = match text.split_once(OPEN) {
        Some((thought, rest)) => (thought, rest),
        None => match text.find("\n{") {
            Some(at) if !text.trim_start().starts_with('{') => text.split_at(at),
            _ => ("", text),
        },
    };
    let rest = rest.trim_start_matches(['\n', '\r', ' ']);
    let read = read_call(rest, tools).map(|call| (thought.trim().to_string(), call));
    schema::reply_turn(text, read, cut_off, usage)
}

/// The call in `rest` (what follows the opening marker): its JSON line, then the body if it has one.
fn read_call(rest: &str, tools: &[ToolSpec]) -> Result<ToolCall, String> {
    let (json, after) = rest.split_once('\n').unwrap_or((rest, ""));
    let json = json.split(CLOSE).next().unwrap_or(json);
    let value = schema::read_call_object(json)?;
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .ok_or("the call has no \"name\" field naming the tool")?;
    let mut arguments = value
        .get("arguments")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(field) = body_field(tools, name) {
        let body =
            read_body(after).map_err(|problem| format!("the {field} of {name}: {problem}"))?;
        match arguments.as_object_mut() {
            Some(map) => {
                map.insert(field.to_string(), Value::String(body));
            }
            None => return Err(format!("the arguments of {name} are not a JSON object")),
        }
    }
    Ok(ToolCall {
        id: String::new(),
        name: name.to_string(),
        arguments,
    })
}

/// The text of a fenced block: the lines between the opening fence line and the first line that
/// starts with the fence, which must be the fence alone; only the closing marker may follow it.
fn read_body(block: &str) -> Result<String, String> {
    let Some(inside) = block
        .strip_prefix(FENCE)
        .and_then(|b| b.split_once('\n'))
        .map(|(_, inside)| inside)
    else {
        return Err(format!(
            "no fenced block after the call (a line {FENCE}, the text, a line {FENCE})"
        ));
    };
    let mut at = 0;
    for line in inside.split_inclusive('\n') {
        if let Some(after) = line.strip_prefix(FENCE) {
            let after = after.trim();
            if !(after.is_empty() || after == CLOSE) {
                return Err(format!(
                    "a line in the block starts with {FENCE} but is not a closing {FENCE} alone (the \
                     block ends at its first such line)"
                ));
            }
            let rest = inside[at + line.len()..].trim();
            let rest = rest.strip_prefix(CLOSE).unwrap_or(rest).trim();
            if !rest.is_empty() {
                return Err(format!(
                    "text after the block's closing line {FENCE} (a block ends at its first such line)"
                ));
            }
            return Ok(inside[..at].to_string());
        }
        at += line.len();
    }
    if inside
        .trim_end()
        .trim_end_matches(CLOSE)
        .trim_end()
        .ends_with(FENCE)
    {
        Err(format!("the closing {FENCE} is not on a line of its own"))
    } else {
        Err(format!(
            "the block is not closed by a line {FENCE} (cut off, or the marker came first)"
        ))
    }
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
            body: None,
            withheld: false,
            body_opens: None,
        }
    }

    #[test]
    fn a_reply_with_and_without_its_markers_reads_as_the_same_call() {
        let call = "{\"name\": \"read_file\", \"arguments\": {\"path\": \"src/lib.rs\"}}";
        for text in [
            format!("I will look at the code.\n<tool_call>\n{call}\n</tool_call>"),
            format!("I will look at the code.\n\n{call}\n"),
        ] {
            let turn = parse_reply(&text, &[], false, Usage::default());
            assert_eq!(turn.content, "I will look at the code.", "{text}");
            assert_eq!(turn.tool_calls.len(), 1, "{text}");
            assert_eq!(turn.tool_calls[0].name, "read_file");
            assert_eq!(turn.tool_calls[0].arguments, json!({"path": "src/lib.rs"}));
        }
        let bare = parse_reply(
            &format!("<tool_call>\n{call}\n</tool_call>"),
            &[],
            false,
            Usage::default(),
        );
        assert_eq!((bare.content.as_str(), bare.tool_calls.len()), ("", 1));
        let bare = parse_reply(&format!("\n{call}\n"), &[], false, Usage::default());
        assert_eq!((bare.content.as_str(), bare.tool_calls.len()), ("", 1));
    }

    #[test]
    fn a_turn_renders_back_as_the_model_wrote_it() {
        let text = "Read it first.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a, b: c.py\", \"lines\": [1, 2]}}\n</tool_call>";
        let turn = parse_reply(text, &[], false, Usage::default());
        assert_eq!(render_turn(&turn.content, &turn.tool_calls, &[]), text);
        let bare = "<tool_call>\n{\"name\": \"finish\", \"arguments\": {}}\n</tool_call>";
        let turn = parse_reply(bare, &[], false, Usage::default());
        assert_eq!(render_turn(&turn.content, &turn.tool_calls, &[]), bare);
    }

    #[test]
    fn a_broken_reply_is_reported_not_guessed() {
        let turn = parse_reply(
            "<tool_call>\n{\"name\": \"read_file\", \"argum",
            &[],
            true,
            Usage::default(),
        );
        assert!(turn.tool_calls.is_empty());
        assert!(turn.content.contains("[unparsed:"), "{}", turn.content);
        assert!(turn.content.contains("cut off"), "{}", turn.content);
        let nameless = parse_reply(
            "<tool_call>\n{\"arguments\": {}}\n</tool_call>",
            &[],
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
        let by_id = grammar(
            &Markers::new(Some(151657), Some(151658)),
            &[read_file()],
            true,
            None,
        );
        assert!(
            by_id.starts_with(
                "start: thought? <[151657]> \"\\n\" turn\nturn: call \"\\n\" <[151658]>\n"
            ),
            "{by_id}"
        );
        assert!(
            by_id.contains("THOUGHT: /[^<`{\\n][^<\\n]{0,239}/\n"),
            "{by_id}"
        );
        let by_text = grammar(&Markers::new(None, None), &[read_file()], true, None);
        assert!(
            by_text.contains("\"<tool_call>\" \"\\n\" turn\nturn: call \"\\n\" \"</tool_call>\""),
            "{by_text}"
        );
        // The schema goes in whole, spaced as the template shows calls.
        let json_part = by_id.split_once("call: %json ").unwrap().1.trim();
        assert!(!by_id.contains("body"), "{by_id}");
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

    fn write_file() -> ToolSpec {
        ToolSpec {
            name: "write_file".into(),
            description: "Write a file.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "maxLength": 300},
                    "content": {"type": "string", "maxLength": 8000},
                },
                "required": ["path", "content"],
            }),
            body: Some("content".into()),
            withheld: false,
            body_opens: None,
        }
    }

    fn apply_patch() -> ToolSpec {
        ToolSpec {
            name: "apply_patch".into(),
            description: "Apply a patch.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"patch": {"type": "string", "minLength": 1, "maxLength": 8000}},
                "required": ["patch"],
            }),
            body: Some("patch".into()),
            withheld: false,
            body_opens: None,
        }
    }

    #[test]
    fn a_body_leaves_the_json_and_its_description_says_where_it_went() {
        let tools = offered(&[read_file(), write_file()], true);
        assert_eq!(tools[0], read_file());
        assert_eq!(
            tools[1].parameters["properties"],
            json!({"path": {"type": "string", "maxLength": 300}})
        );
        assert_eq!(tools[1].parameters["required"], json!(["path"]));
        assert!(
            tools[1].description.contains("fenced block"),
            "{}",
            tools[1].description
        );
        // Without bodies everything stays in the JSON, and no spec names a body.
        let json_only = offered(&[write_file()], false);
        assert_eq!(json_only[0].parameters, write_file().parameters);
        assert_eq!(json_only[0].body, None);
    }

    #[test]
    fn code_after_the_call_is_read_as_it_was_written_and_renders_back_the_same() {
        let tools = offered(&[read_file(), write_file()], true);
        let code = "def greet(name):\n    print(f\"hi {name}\\n\")  # \"quoted\" \\ back\n";
        let text = format!(
            "Write it.\n<tool_call>\n{{\"name\": \"write_file\", \"arguments\": {{\"path\": \"a.py\"}}}}\n```python\n{code}```\n</tool_call>"
        );
        let turn = parse_reply(&text, &tools, false, Usage::default());
        assert_eq!(turn.content, "Write it.");
        assert_eq!(
            turn.tool_calls[0].arguments,
            json!({"path": "a.py", "content": code})
        );
        assert_eq!(render_turn(&turn.content, &turn.tool_calls, &tools), text);
        // With the markers dropped by the decoder, the same call.
        let dropped = text.replace(OPEN, "").replace(CLOSE, "");
        let again = parse_reply(&dropped, &tools, false, Usage::default());
        assert_eq!(again.tool_calls, turn.tool_calls, "{}", again.content);
        // The closing marker right after the fence, or after a blank line, closes it as well.
        for close in ["```</tool_call>", "```\n\n</tool_call>"] {
            let text = format!(
                "<tool_call>\n{{\"name\": \"write_file\", \"arguments\": {{\"path\": \"a.py\"}}}}\n```python\n{code}{close}"
            );
            let turn = parse_reply(&text, &tools, false, Usage::default());
            assert_eq!(turn.tool_calls[0].arguments["content"], code, "{close}");
        }
        // An empty file.
        let text = "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"e\"}}\n```\n```\n</tool_call>";
        let turn = parse_reply(text, &tools, false, Usage::default());
        assert_eq!(turn.tool_calls[0].arguments["content"], "");
        assert_eq!(render_turn("", &turn.tool_calls, &tools), text);
    }

    #[test]
    fn a_body_that_is_missing_or_unclosed_is_reported_not_guessed() {
        let tools = offered(&[write_file()], true);
        let head = "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\"}}\n";
        for (tail, expected) in [
            ("</tool_call>", "no fenced block"),
            ("```python\nx = 1\n", "not closed"),
            (
                "```python\nx = 1```\n</tool_call>",
                "not on a line of its own",
            ),
            (
                "```python\nx = 1\n```\ny = 2\n```\n</tool_call>",
                "text after the block",
            ),
            (
                "```markdown\n```sh\nrun\n```\n</tool_call>",
                "not a closing ``` alone",
            ),
        ] {
            let turn = parse_reply(&format!("{head}{tail}"), &tools, true, Usage::default());
            assert!(turn.tool_calls.is_empty(), "{tail}");
            assert!(turn.content.contains(expected), "{}", turn.content);
            assert!(
                turn.content.contains("content of write_file"),
                "{}",
                turn.content
            );
        }
    }

    #[test]
    fn a_patch_body_must_open_as_a_patch_does() {
        // The real tool, with the opening its spec declares.
        let tools: Vec<ToolSpec> = crate::tools::specs()
            .into_iter()
            .filter(|t| t.name == "apply_patch" || t.name == "read_file")
            .collect();
        assert!(tools.iter().any(|t| t.body_opens.is_some()), "{tools:?}");
        let g = grammar(
            &Markers::new(Some(OPEN_ID), Some(CLOSE_ID)),
            &tools,
            true,
            None,
        );
        let call = "Fix it.\n<tool_call>\n{\"name\": \"apply_patch\", \"arguments\": {}}\n";
        for good in [
            "```diff\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n```\n</tool_call>",
            "```\n*** Begin Patch\n*** Update File: calc.py\n@@\n-x\n+y\n*** End Patch\n```\n</tool_call>",
            "```\ncalc.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```\n</tool_call>",
            "```\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```\n</tool_call>",
            "```diff\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n```\n</tool_call>",
            "```\n\n@@ -1 +1 @@\n-a\n+b\n```\n</tool_call>",
            "```\n-    return a - b\n+    return a + b\n```\n</tool_call>",
        ] {
            admits(&g, &format!("{call}{good}"), true).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "```python\nobj['patch']\n```\n</tool_call>",
            "```python\ndef add(a, b):\n    return a + b\n```\n</tool_call>",
            "```\n    return a + b\n```\n</tool_call>",
            "```\n```\n</tool_call>",
        ] {
            assert!(admits(&g, &format!("{call}{bad}"), true).is_err(), "{bad}");
        }
        // The other tool is untouched.
        admits(
            &g,
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.py\"}}\n</tool_call>",
            true,
        )
        .unwrap();
    }

    /// Token ids of the test vocabulary: one per byte, then the two markers and end of sequence.
    const OPEN_ID: u32 = 256;
    const CLOSE_ID: u32 = 257;
    const EOS_ID: u32 = 258;

    /// Whether `grammar` admits `text` whole, as llguidance (what mistral.rs decodes with) reads the
    /// grammar; with `marker_tokens`, the markers in `text` are written as their one-token ids.
    fn admits(grammar: &str, text: &str, marker_tokens: bool) -> Result<(), String> {
        use llguidance::toktrie::{ApproximateTokEnv, InferenceCapabilities, TokRxInfo, TokTrie};
        use llguidance::{api::TopLevelGrammar, Matcher, ParserFactory};
        let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for special in [OPEN, CLOSE, "<eos>"] {
            words.push([&[TokTrie::SPECIAL_TOKEN_MARKER], special.as_bytes()].concat());
        }
        let info = TokRxInfo::new(words.len() as u32, EOS_ID);
        let env: llguidance::toktrie::TokEnv =
            std::sync::Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
        let factory = ParserFactory::new(&env, InferenceCapabilities::default(), &[])
            .map_err(|e| e.to_string())?;
        let mut matcher =
            Matcher::new(factory.create_parser(TopLevelGrammar::from_lark(grammar.to_string())));
        if let Some(error) = matcher.get_error() {
            return Err(format!("the grammar does not compile: {error}"));
        }
        let mut tokens = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let marker = [(OPEN, OPEN_ID), (CLOSE, CLOSE_ID)]
                .into_iter()
                .find(|(m, _)| marker_tokens && rest.starts_with(m));
            match marker {
                Some((m, id)) => {
                    tokens.push(id);
                    rest = &rest[m.len()..];
                }
                None => {
                    let c = rest.chars().next().expect("not empty");
                    tokens.extend(c.to_string().bytes().map(u32::from));
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        for (at, token) in tokens.iter().enumerate() {
            if let Err(error) = matcher.consume_token(*token) {
                return Err(format!(
                    "refused at token {at} of {}: {error}",
                    tokens.len()
                ));
            }
        }
        match matcher.is_accepting() {
            Ok(true) => Ok(()),
            Ok(false) => Err("the text ends before the grammar does".into()),
            Err(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn the_grammar_takes_a_body_after_the_json_of_a_tool_that_has_one() {
        let originals = [read_file(), write_file(), apply_patch()];
        let tools = offered(&originals, true);
        let by_id = grammar(
            &Markers::new(Some(OPEN_ID), Some(CLOSE_ID)),
            &originals,
            true,
            None,
        );
        let by_text = grammar(&Markers::new(None, None), &originals, true, None);
        let plain: Value = serde_json::from_str(
            by_id
                .split_once("\ncall: %json ")
                .unwrap()
                .1
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(plain, schema::hermes_call_schema(&tools[..1]));
        let with_body: Value = serde_json::from_str(
            by_id
                .split_once("body_call: %json ")
                .unwrap()
                .1
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(with_body, schema::hermes_call_schema(&tools[1..2]));

        let head = "I fix it.\n<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\"}}\n";
        let read = "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.py\"}}\n</tool_call>";
        for (markers_as_tokens, grammar) in [(true, &by_id), (false, &by_text)] {
            let admits = |text: &str| admits(grammar, text, markers_as_tokens);
            admits(read).unwrap();
            for good in [
                "```python\ndef add(a, b):\n    return a + b  # `x` ``\n```\n</tool_call>",
                "```\n```\n</tool_call>",
                "```python\nx = 1\n```</tool_call>",
                "```python\nx = 1\n```\n\n</tool_call>",
                "```python\nx = 1\n``y``\n```\n</tool_call>",
            ] {
                admits(&format!("{head}{good}")).unwrap_or_else(|e| panic!("{good}: {e}"));
            }
            for (bad, why) in [
                // Once the block is closed, only the marker: no prose, no second block.
                (
                    "```python\nx = 1\n```\nThis change fixes it.\n</tool_call>",
                    "prose after",
                ),
                ("```python\nx = 1\n```\n```\n</tool_call>", "a second fence"),
                (
                    "```python\nx = 1\n```python\n```\n</tool_call>",
                    "a block opened in the block",
                ),
                (
                    "```markdown\n```sh\nrun\n```\n</tool_call>",
                    "a fence line inside",
                ),
                (
                    "```python\nx = 1\n```\nIt works.\n```\n</tool_call>",
                    "prose, fenced",
                ),
                ("```python\nx = 1```\n</tool_call>", "a fence inside a line"),
                ("x = 1\n</tool_call>", "no block"),
                ("```python\nx = 1\n", "unclosed"),
            ] {
                assert!(admits(&format!("{head}{bad}")).is_err(), "{why}: {bad}");
            }
        }
        // A patch must hold text (its schema has a minLength); a file may be empty.
        let patch = "<tool_call>\n{\"name\": \"apply_patch\", \"arguments\": {}}\n";
        admits(
            &by_id,
            &format!("{patch}```diff\n-a\n+b\n```\n</tool_call>"),
            true,
        )
        .unwrap();
        for empty in [
            "```\n```\n</tool_call>",
            "```diff\n\n  \n```\n</tool_call>",
            "```diff\n```\n```\n</tool_call>",
        ] {
            assert!(
                admits(&by_id, &format!("{patch}{empty}"), true).is_err(),
                "{empty}"
            );
        }
        // The grammar with its markers as token ids is refused the marker's text, and the reverse.
        assert!(admits(&by_id, read, false).is_err());
        assert!(admits(&by_text, read, true).is_err());
        // Bodies off: every argument in the JSON, no block.
        let json_only = grammar(
            &Markers::new(Some(OPEN_ID), Some(CLOSE_ID)),
            &originals,
            false,
            None,
        );
        assert!(!json_only.contains("FENCE_END"), "{json_only}");
        admits(&json_only, "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a\", \"content\": \"x\"}}\n</tool_call>", true).unwrap();

        // Only tools with a body: no plain alternative.
        let only = grammar(
            &Markers::new(Some(OPEN_ID), Some(CLOSE_ID)),
            &originals[1..2],
            true,
            None,
        );
        assert!(only.contains("turn: body_call"), "{only}");
        assert!(!only.contains("\ncall:"), "{only}");
        assert!(admits(&only, read, true).is_err());
    }
}
