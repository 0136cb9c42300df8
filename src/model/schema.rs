//! JSON schemas for constrained decoding: from the tools' argument schemas build one schema that admits
//! exactly one valid call of one offered tool, and parse the model's constrained output back into a
//! [`ToolCall`].
//!
//! Only schema plumbing lives here; no backend and no tool code.

use schemars::transform::{RecursiveTransform, Transform};
use schemars::Schema;
use serde_json::{json, Value};

use super::{AssistantTurn, Message, ToolCall, ToolSpec, Usage};

/// Longest free-text `thought` the model may write before its call, in characters. Bounding it keeps a
/// call from being cut off by the token budget in the middle of a string, and a turn short: at 400,
/// Qwen2.5-Coder-1.5B filled the whole bound on nearly every turn of an agent run (the same sentences
/// turn after turn, cut off mid-word), ~100 tokens or ~25 s a turn on one CPU thread.
pub const MAX_THOUGHT_CHARS: u64 = 240;

/// `schema` with `change` applied to it and to every subschema, walked by schemars (which knows that
/// the keys under `properties` are field names, not keywords). A value that is no schema is returned
/// as it is.
fn transformed(schema: &Value, change: impl FnMut(&mut Schema)) -> Value {
    let Ok(mut schema) = Schema::try_from(schema.clone()) else {
        return schema.clone();
    };
    RecursiveTransform(change).transform(&mut schema);
    schema.to_value()
}

/// Remove the parts of a schemars schema that describe rather than constrain (`$schema`, `title`,
/// `format`), which grammar compilers reject or ignore.
pub fn sanitize(schema: &Value) -> Value {
    transformed(schema, |s: &mut Schema| {
        for keyword in ["$schema", "title", "format"] {
            s.remove(keyword);
        }
    })
}

/// The same schema without length bounds, for servers whose grammar compilers expand `maxLength` into
/// one nested rule per character (llama.cpp's JSON-schema-to-GBNF fails to parse a few hundred levels).
/// There the token budget and the cut-off retry bound a call instead.
pub fn without_length_bounds(schema: &Value) -> Value {
    transformed(schema, |s: &mut Schema| {
        for keyword in ["maxLength", "minLength", "x-guidance"] {
            s.remove(keyword);
        }
    })
}

/// Tokens enough for the longest reply `schema` admits, so that a budget this size can never cut a call
/// off mid-string: every string counted at its `maxLength` (one token per character, the worst case),
/// plus keys and punctuation. Unbounded strings count as [`UNBOUNDED_STRING_CHARS`]; every free-text
/// field of the built-in tools is bounded. A fold of our own: schemars' transforms rewrite schemas, they
/// do not compute over them.
pub fn max_reply_tokens(schema: &Value) -> usize {
    let Some(map) = schema.as_object() else {
        return 8;
    };
    if let Some(Value::Array(variants)) = map.get("anyOf").or_else(|| map.get("oneOf")) {
        return variants.iter().map(max_reply_tokens).max().unwrap_or(8);
    }
    if let Some(value) = map.get("const") {
        return value.to_string().len() + 2;
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        return values
            .iter()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(0)
            + 2;
    }
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec!["object"],
    };
    types
        .iter()
        .map(|t| match *t {
            "string" => {
                map.get("maxLength")
                    .and_then(Value::as_u64)
                    .map_or(UNBOUNDED_STRING_CHARS, |n| n as usize)
                    + 2
            }
            "integer" | "number" => 24,
            "array" => {
                let items = map.get("items").map_or(8, max_reply_tokens) + 1;
                let count = map
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .map_or(16, |n| n as usize);
                items * count + 2
            }
            "object" => {
                map.get("properties")
                    .and_then(Value::as_object)
                    .map_or(0, |props| {
                        props
                            .iter()
                            .map(|(k, v)| k.len() + 4 + max_reply_tokens(v))
                            .sum()
                    })
                    + 2
            }
            _ => 8,
        })
        .max()
        .unwrap_or(8)
}

/// The one-call schema with every string bound scaled down until the longest valid call fits in
/// `budget` tokens. Used for the retry after a cut-off: the retry always completes as a valid call,
/// if with shorter free text (which the model then sees in the conversation).
pub fn tool_call_schema_within(tools: &[ToolSpec], budget: usize) -> Value {
    within_budget(&tool_call_schema(tools), budget)
}

/// `schema` with every string bound scaled down until its longest valid instance fits in `budget`
/// tokens.
pub fn within_budget(schema: &Value, budget: usize) -> Value {
    let mut scaled = schema.clone();
    let mut factor = 1.0;
    while max_reply_tokens(&scaled) > budget && factor > 0.001 {
        factor *= 0.8;
        scaled = scale_string_bounds(schema, factor);
    }
    scaled
}

fn scale_string_bounds(schema: &Value, factor: f64) -> Value {
    transformed(schema, |s: &mut Schema| {
        let is_string = match s.get("type") {
            Some(Value::String(t)) => t == "string",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
            _ => false,
        };
        if is_string {
            let bound = s
                .get("maxLength")
                .and_then(Value::as_u64)
                .unwrap_or(UNBOUNDED_STRING_CHARS as u64);
            let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let scaled = ((bound as f64 * factor) as u64).max(min).max(8);
            s.insert("maxLength".into(), json!(scaled));
        }
    })
}

/// What [`max_reply_tokens`] assumes for a string without `maxLength`.
pub const UNBOUNDED_STRING_CHARS: usize = 4096;

/// The schema of one turn: `{"thought": "...", "tool": NAME, "arguments": ARGS}` for one of `tools`.
pub fn tool_call_schema(tools: &[ToolSpec]) -> Value {
    // Compact JSON only: with flexible whitespace a small model can pad a call with blanks until the
    // token budget runs out.
    one_call_of(
        tools,
        |tool| {
            json!({
                "thought": {"type": "string", "maxLength": MAX_THOUGHT_CHARS},
                "tool": {"const": tool.name},
                "arguments": sanitize(&tool.parameters),
            })
        },
        json!({"whitespace_flexible": false}),
    )
}

/// The schema of one call in the Hermes format that Qwen2.5 and Qwen3 chat templates ask for:
/// `{"name": NAME, "arguments": ARGS}` for one of `tools`, spaced as Python's `json.dumps` spaces it,
/// which is how the template shows calls to the model.
pub fn hermes_call_schema(tools: &[ToolSpec]) -> Value {
    one_call_of(
        tools,
        |tool| json!({"name": {"const": tool.name}, "arguments": sanitize(&tool.parameters)}),
        json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
    )
}

/// `anyOf` one closed object per tool, with the `properties` given for it, all required in that
/// order, decoded with llguidance's `guidance` options.
fn one_call_of(
    tools: &[ToolSpec],
    properties: impl Fn(&ToolSpec) -> Value,
    guidance: Value,
) -> Value {
    let variants: Vec<Value> = tools
        .iter()
        .map(|tool| {
            let properties = properties(tool);
            let required: Vec<&String> = properties
                .as_object()
                .map(|p| p.keys().collect())
                .unwrap_or_default();
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        })
        .collect();
    json!({ "anyOf": variants, "x-guidance": guidance })
}

/// In the constrained format an assistant turn is shown to the model as the JSON it wrote (or its
/// plain text when it made no call).
pub fn render_assistant(message: &Message) -> String {
    match message.tool_calls.first() {
        Some(call) => json!({
            "thought": message.content, "tool": call.name, "arguments": call.arguments
        })
        .to_string(),
        None => message.content.clone(),
    }
}

/// In the constrained format there is no tool role: a result is a user message naming the tool.
pub fn render_tool_result(message: &Message) -> String {
    format!(
        "Result of {}:\n{}",
        message.tool_name.as_deref().unwrap_or("the tool"),
        message.content
    )
}

/// The turn a constrained reply makes: its call, or its text with what is wrong with it.
pub fn constrained_turn(text: &str, cut_off: bool, usage: Usage) -> AssistantTurn {
    reply_turn(text, parse_tool_call_json(text), cut_off, usage)
}

/// The turn a grammar-constrained reply makes, once read: its thought and call, or `text` with what
/// is wrong with it (the loop then asks again).
pub fn reply_turn(
    text: &str,
    read: Result<(String, ToolCall), String>,
    cut_off: bool,
    usage: Usage,
) -> AssistantTurn {
    match read {
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
    }
}

/// `text` with control characters inside JSON strings escaped (`\n` for a raw newline, ...); the rest
/// unchanged.
fn escape_raw_controls_in_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string && !escaped && c.is_control() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push_str(&format!("\\u{:04x}", c as u32)),
            }
            continue;
        }
        out.push(c);
        if escaped {
            escaped = false;
        } else if in_string && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_string = !in_string;
        }
    }
    out
}

/// One JSON object, as a grammar-constrained reply holds it.
pub fn read_call_object(text: &str) -> Result<Value, String> {
    // Some servers' JSON grammars let raw newlines and tabs into strings (llama-cpp-python's do):
    // the object is meant, only its escaping is off, so it is read with them escaped.
    serde_json::from_str(text.trim())
        .or_else(|e| {
            serde_json::from_str(&escape_raw_controls_in_strings(text.trim())).map_err(|_| e)
        })
        .map_err(|e| {
            format!(
                "the reply is not one JSON object ({e}); reply with exactly one tool call object"
            )
        })
}

/// Parse a constrained turn. Returns the thought and the call, or a message saying what is wrong.
pub fn parse_tool_call_json(text: &str) -> Result<(String, ToolCall), String> {
    let value = read_call_object(text)?;
    let tool = value
        .get("tool")
        .and_then(Value::as_str)
        .ok_or("the reply has no \"tool\" field naming the tool to call")?;
    let thought = value
        .get("thought")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let arguments = value.get("arguments").cloned().unwrap_or_else(|| json!({}));
    Ok((
        thought,
        ToolCall {
            id: String::new(),
            name: tool.to_string(),
            arguments,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_newlines_inside_strings_are_read_as_escaped() {
        let text = "{\"thought\": \"line one\nline\ttwo \\\"q\\\"\", \"tool\": \"plan\", \"arguments\": {\"a\": \"x\ny\"}}";
        let (thought, call) = parse_tool_call_json(text).unwrap();
        assert_eq!(thought, "line one\nline\ttwo \"q\"");
        assert_eq!(
            (call.name.as_str(), &call.arguments),
            ("plan", &json!({"a": "x\ny"}))
        );
        assert!(parse_tool_call_json("{\"tool\": \"plan\"\n, \"oops\"}").is_err());
    }

    #[test]
    fn walkers_reach_every_subschema_and_leave_field_names_alone() {
        let schema = json!({
            "title": "Args",
            "type": "object",
            "properties": {
                "title": {"type": "string", "title": "T", "maxLength": 100},
                "items": {"type": "array", "items": {"type": "string", "format": "uri", "minLength": 2}},
                "either": {"anyOf": [{"type": "string", "maxLength": 50}, {"type": "null"}]},
            },
            "required": ["title"],
        });
        let clean = sanitize(&schema);
        assert!(clean.get("title").is_none());
        assert_eq!(
            clean["properties"]["title"],
            json!({"type": "string", "maxLength": 100})
        );
        assert!(clean["properties"]["items"]["items"]
            .get("format")
            .is_none());
        let unbounded = without_length_bounds(&schema);
        assert!(!unbounded.to_string().contains("Length"), "{unbounded}");
        let halved = scale_string_bounds(&schema, 0.5);
        assert_eq!(halved["properties"]["title"]["maxLength"], 50);
        assert_eq!(halved["properties"]["either"]["anyOf"][0]["maxLength"], 25);
        assert_eq!(halved["properties"]["items"]["items"]["maxLength"], 2048);
    }

    #[test]
    fn schema_has_one_variant_per_tool_without_descriptive_keys() {
        let tools = vec![ToolSpec {
            name: "read_file".into(),
            description: "d".into(),
            parameters: json!({"$schema": "x", "title": "Args", "type": "object",
                "properties": {"n": {"type": "integer", "format": "uint32"}}}),
            body: None,
            withheld: false,
            body_opens: None,
        }];
        let schema = tool_call_schema(&tools);
        let variant = &schema["anyOf"][0];
        assert_eq!(variant["properties"]["tool"]["const"], "read_file");
        let args = &variant["properties"]["arguments"];
        assert!(args.get("$schema").is_none() && args.get("title").is_none());
        assert!(args["properties"]["n"].get("format").is_none());
    }

    #[test]
    fn the_reply_bound_covers_the_longest_variant() {
        let tools = vec![
            ToolSpec {
                name: "short".into(),
                description: "d".into(),
                parameters: json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
                body: None,
                withheld: false,
                body_opens: None,
            },
            ToolSpec {
                name: "long".into(),
                description: "d".into(),
                parameters: json!({"type": "object", "properties": {
                    "text": {"type": "string", "maxLength": 1000},
                    "maybe": {"type": ["string", "null"], "maxLength": 50}}}),
                body: None,
                withheld: false,
                body_opens: None,
            },
        ];
        let bound = max_reply_tokens(&tool_call_schema(&tools));
        let longest = MAX_THOUGHT_CHARS as usize + 1000 + 50;
        assert!(bound >= longest && bound < longest + 200, "{bound}");
        // Every built-in tool's free text is bounded, so the bound stays well under the fallback.
        let builtin = max_reply_tokens(&tool_call_schema(&crate::tools::specs()));
        assert!(builtin < 10_000, "{builtin}");
        // Squeezed for a retry: every variant fits, and the bounds stay usable.
        let squeezed = tool_call_schema_within(&crate::tools::specs(), 1024);
        assert!(max_reply_tokens(&squeezed) <= 1024);
        assert!(
            squeezed["anyOf"][0]["properties"]["thought"]["maxLength"]
                .as_u64()
                .unwrap()
                >= 8
        );
    }

    #[test]
    fn parses_a_call_and_explains_garbage() {
        let (thought, call) = parse_tool_call_json(
            r#" {"thought": "read it", "tool": "read_file", "arguments": {"path": "a"}} "#,
        )
        .unwrap();
        assert_eq!(thought, "read it");
        assert_eq!(call.name, "read_file");
        assert_eq!(call.arguments["path"], "a");
        assert!(parse_tool_call_json("I will read the file")
            .unwrap_err()
            .contains("not one JSON object"));
        assert!(parse_tool_call_json(r#"{"arguments": {}}"#)
            .unwrap_err()
            .contains("\"tool\""));
    }
}
