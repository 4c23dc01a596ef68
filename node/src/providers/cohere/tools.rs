//! OpenAI tools → Cohere v2 tools: function definitions (`strict` becomes Cohere's
//! request-wide `strict_tools`), `tool_choice` (`none` → `NONE`, `required` → `REQUIRED`, a
//! named function → `REQUIRED` with only that tool offered), and the tool calls of
//! assistant turns, which have the same shape on both sides.
//!
//! Pure: no I/O.

use serde_json::{Map, Value, json};

use super::error::CohereError;

/// One assistant tool call, `{id, type: function, function: {name, arguments}}`, with
/// `arguments` as a string.
pub fn tool_call(call: &Value, field: &str) -> Result<Value, CohereError> {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| CohereError::invalid(format!("{field}.id"), "is required"))?;
    let name = call
        .pointer("/function/name")
        .and_then(Value::as_str)
        .ok_or_else(|| CohereError::invalid(format!("{field}.function.name"), "is required"))?;
    let arguments = match call.pointer("/function/arguments") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    Ok(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
}

/// One OpenAI tool → Cohere's identical `{type: function, function: {...}}`; `strict`
/// becomes Cohere's request-wide `strict_tools`.
pub fn translate_tool(
    index: usize,
    tool: &Value,
    out: &mut Map<String, Value>,
) -> Result<Value, CohereError> {
    let at = format!("tools[{index}]");
    if let Some(kind) = tool.get("type").and_then(Value::as_str)
        && kind != "function"
    {
        return Err(CohereError::unsupported(
            format!("{at}.type"),
            format!("`{kind}` tools are not supported; only functions"),
        ));
    }
    let function = tool
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| CohereError::invalid(format!("{at}.function"), "is required"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CohereError::invalid(format!("{at}.function.name"), "is required"))?;
    let mut translated = Map::new();
    translated.insert("name".into(), json!(name));
    if let Some(description) = function.get("description").filter(|d| d.is_string()) {
        translated.insert("description".into(), description.clone());
    }
    let parameters = function
        .get("parameters")
        .filter(|p| p.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    translated.insert("parameters".into(), parameters);
    if function.get("strict").and_then(Value::as_bool) == Some(true) {
        out.insert("strict_tools".into(), Value::Bool(true));
    }
    Ok(json!({"type": "function", "function": translated}))
}

/// `none` → `NONE`, `required` → `REQUIRED`, `auto` → Cohere's default; a named function
/// → `REQUIRED` with only that tool offered (Cohere cannot name one tool).
pub fn apply_tool_choice(
    choice: Option<&Value>,
    tools: &mut Vec<Value>,
    out: &mut Map<String, Value>,
) -> Result<(), CohereError> {
    match choice {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Ok(()),
            "none" => {
                out.insert("tool_choice".into(), json!("NONE"));
                Ok(())
            }
            "required" => {
                out.insert("tool_choice".into(), json!("REQUIRED"));
                Ok(())
            }
            other => Err(CohereError::invalid(
                "tool_choice",
                format!("unknown mode `{other}`"),
            )),
        },
        Some(choice) => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| CohereError::invalid("tool_choice", "needs `function.name`"))?;
            tools.retain(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name));
            if tools.is_empty() {
                return Err(CohereError::invalid(
                    "tool_choice",
                    format!("names `{name}`, which is not in `tools`"),
                ));
            }
            out.insert("tool_choice".into(), json!("REQUIRED"));
            Ok(())
        }
    }
}
