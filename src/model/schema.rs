//! JSON schemas for constrained decoding: from the tools' argument schemas build one schema that admits
//! exactly one valid call of one offered tool, and parse the model's constrained output back into a
//! [`ToolCall`].
//!
//! Only schema plumbing lives here; no backend and no tool code.

use serde_json::{json, Map, Value};

use super::{ToolCall, ToolSpec};

/// Longest free-text `thought` the model may write before its call, in characters. Bounding it keeps a
/// call from being cut off by the token budget in the middle of a string.
pub const MAX_THOUGHT_CHARS: u64 = 400;

/// Remove the parts of a schemars schema that describe rather than constrain (`$schema`, `title`,
/// `format`), which grammar compilers reject or ignore.
pub fn sanitize(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let cleaned: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "$schema" | "title" | "format"))
                .map(|(k, v)| (k.clone(), sanitize(v)))
                .collect();
            Value::Object(cleaned)
        }
        Value::Array(items) => Value::Array(items.iter().map(sanitize).collect()),
        other => other.clone(),
    }
}

/// The same schema without length bounds, for servers whose grammar compilers expand `maxLength` into
/// one nested rule per character (llama.cpp's JSON-schema-to-GBNF fails to parse a few hundred levels).
/// There the token budget and the cut-off retry bound a call instead.
pub fn without_length_bounds(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "maxLength" | "minLength" | "x-guidance"))
                .map(|(k, v)| (k.clone(), without_length_bounds(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_length_bounds).collect()),
        other => other.clone(),
    }
}

/// The schema of one turn: `{"thought": "...", "tool": NAME, "arguments": ARGS}` for one of `tools`.
pub fn tool_call_schema(tools: &[ToolSpec]) -> Value {
    let variants: Vec<Value> = tools
        .iter()
        .map(|tool| {
            json!({
                "type": "object",
                "properties": {
                    "thought": {"type": "string", "maxLength": MAX_THOUGHT_CHARS},
                    "tool": {"const": tool.name},
                    "arguments": sanitize(&tool.parameters),
                },
                "required": ["thought", "tool", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    // Compact JSON only: with flexible whitespace a small model can pad a call with blanks until the
    // token budget runs out.
    json!({ "anyOf": variants, "x-guidance": {"whitespace_flexible": false} })
}

/// Parse a constrained turn. Returns the thought and the call, or a message saying what is wrong.
pub fn parse_tool_call_json(text: &str) -> Result<(String, ToolCall), String> {
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| {
        format!("the reply is not one JSON object ({e}); reply with exactly one tool call object")
    })?;
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
    fn schema_has_one_variant_per_tool_without_descriptive_keys() {
        let tools = vec![ToolSpec {
            name: "read_file".into(),
            description: "d".into(),
            parameters: json!({"$schema": "x", "title": "Args", "type": "object",
                "properties": {"n": {"type": "integer", "format": "uint32"}}}),
        }];
        let schema = tool_call_schema(&tools);
        let variant = &schema["anyOf"][0];
        assert_eq!(variant["properties"]["tool"]["const"], "read_file");
        let args = &variant["properties"]["arguments"];
        assert!(args.get("$schema").is_none() && args.get("title").is_none());
        assert!(args["properties"]["n"].get("format").is_none());
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
