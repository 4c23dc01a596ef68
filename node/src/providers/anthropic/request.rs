//! OpenAI chat request → Anthropic Messages request: the conversation (translated by
//! [`messages`](super::messages)), sampling parameters, stop sequences, `user`, tools and
//! `tool_choice`. `max_tokens`, which Anthropic requires, falls back to the target's
//! `max_tokens` and then to [`DEFAULT_MAX_TOKENS`]; what Anthropic cannot do (`n > 1`, JSON
//! response formats, audio) is refused rather than silently dropped. Nothing here does I/O.

use serde_json::{Map, Value, json};

use super::messages;
use crate::config::Target;

/// `max_tokens` sent when neither the client nor the target gives one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Why an OpenAI request cannot be expressed as an Anthropic one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// A field holds a value of the wrong shape.
    #[error("`{field}` is not valid for an Anthropic model: {detail}")]
    Invalid {
        /// The field, as a path (`messages[2].content[1]`).
        field: String,
        /// What was expected.
        detail: String,
    },
    /// A feature Anthropic's Messages API does not offer.
    #[error("`{field}` is not supported by Anthropic models: {detail}")]
    Unsupported {
        /// The field.
        field: String,
        /// Why.
        detail: String,
    },
}

pub(super) fn invalid(field: impl Into<String>, detail: impl Into<String>) -> TranslateError {
    TranslateError::Invalid {
        field: field.into(),
        detail: detail.into(),
    }
}

pub(super) fn unsupported(field: impl Into<String>, detail: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported {
        field: field.into(),
        detail: detail.into(),
    }
}

/// Translates an OpenAI chat body (with `model` already the target's model) into an
/// Anthropic Messages body. `stream` is set by the caller.
pub fn to_anthropic(
    body: &Map<String, Value>,
    target: &Target,
) -> Result<Map<String, Value>, TranslateError> {
    let mut out = Map::new();
    out.insert(
        "model".into(),
        body.get("model")
            .cloned()
            .unwrap_or_else(|| Value::String(target.model.clone())),
    );
    let (system, messages) = messages::translate(body.get("messages"))?;
    if let Some(system) = system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), Value::Array(messages));
    out.insert(
        "max_tokens".into(),
        Value::from(max_tokens(body, target.max_tokens)?),
    );
    for key in ["temperature", "top_p", "top_k"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(value @ Value::Number(_)) => {
                out.insert(key.into(), value.clone());
            }
            Some(_) => return Err(invalid(key, "must be a number")),
        }
    }
    if let Some(stop) = stop_sequences(body.get("stop"))? {
        out.insert("stop_sequences".into(), stop);
    }
    match body.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) => {
            out.insert("metadata".into(), json!({ "user_id": user }));
        }
        Some(_) => return Err(invalid("user", "must be a string")),
    }
    if let Some(tools) = tools(body)? {
        out.insert("tools".into(), tools);
    }
    if let Some(choice) = tool_choice(body)? {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(thinking) = body.get("thinking").filter(|v| v.is_object()) {
        // Anthropic's own extended-thinking switch, passed by clients that know the target.
        out.insert("thinking".into(), thinking.clone());
    }
    check_unsupported(body)?;
    Ok(out)
}

/// Refuses what cannot be honoured rather than silently answering something else.
fn check_unsupported(body: &Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(n) = body.get("n").and_then(Value::as_u64)
        && n != 1
    {
        return Err(unsupported("n", "Anthropic returns exactly one choice"));
    }
    if let Some(format) = body.get("response_format").filter(|v| !v.is_null()) {
        let kind = format.get("type").and_then(Value::as_str);
        if kind != Some("text") {
            return Err(unsupported(
                "response_format",
                "only `{\"type\": \"text\"}` can be translated; describe the JSON you want in \
                 the prompt, or use a tool with an input schema",
            ));
        }
    }
    if body.get("audio").is_some_and(|v| !v.is_null()) {
        return Err(unsupported("audio", "audio output is not available"));
    }
    // Every other OpenAI-only field (penalties, `seed`, `logprobs`, `store`, ...) only tunes
    // OpenAI's side and is left out of the translated body.
    Ok(())
}

/// The client's `max_completion_tokens` or `max_tokens`, capped by the target's; the
/// target's, or [`DEFAULT_MAX_TOKENS`], when the client gives none.
pub fn max_tokens(body: &Map<String, Value>, cap: Option<u64>) -> Result<u64, TranslateError> {
    let mut asked = None;
    for key in ["max_completion_tokens", "max_tokens"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(value) => match value.as_u64() {
                Some(n) if n > 0 => {
                    asked = Some(n);
                    break;
                }
                _ => return Err(invalid(key, "must be a positive integer")),
            },
        }
    }
    Ok(match (asked, cap) {
        (Some(n), Some(cap)) => n.min(cap),
        (Some(n), None) => n,
        (None, Some(cap)) => cap,
        (None, None) => DEFAULT_MAX_TOKENS,
    })
}

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    match stop {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!([s]))),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok((!items.is_empty()).then(|| Value::Array(items.clone())))
        }
        Some(_) => Err(invalid("stop", "must be a string or an array of strings")),
    }
}

/// `tools` (and the legacy `functions`) → Anthropic tools with `input_schema`.
fn tools(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let mut out = Vec::new();
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        let tools = tools
            .as_array()
            .ok_or_else(|| invalid("tools", "must be an array"))?;
        for (i, tool) in tools.iter().enumerate() {
            let field = format!("tools[{i}]");
            match tool.get("type").and_then(Value::as_str) {
                Some("function") | None => {}
                Some(other) => {
                    return Err(unsupported(
                        field,
                        format!("tool type `{other}` has no Anthropic equivalent"),
                    ));
                }
            }
            let function = tool
                .get("function")
                .ok_or_else(|| invalid(&field, "missing `function`"))?;
            out.push(function_tool(function, &format!("{field}.function"))?);
        }
    }
    if let Some(functions) = body.get("functions").filter(|v| !v.is_null()) {
        let functions = functions
            .as_array()
            .ok_or_else(|| invalid("functions", "must be an array"))?;
        for (i, function) in functions.iter().enumerate() {
            out.push(function_tool(function, &format!("functions[{i}]"))?);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn function_tool(function: &Value, field: &str) -> Result<Value, TranslateError> {
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(field, "missing `name`"))?;
    let mut tool = Map::new();
    tool.insert("name".into(), Value::String(name.to_owned()));
    if let Some(description) = function.get("description").and_then(Value::as_str) {
        tool.insert("description".into(), Value::String(description.to_owned()));
    }
    let schema = match function.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(_) => return Err(invalid(format!("{field}.parameters"), "must be an object")),
    };
    tool.insert("input_schema".into(), schema);
    Ok(Value::Object(tool))
}

/// `tool_choice` (or legacy `function_call`) and `parallel_tool_calls` → Anthropic's
/// `tool_choice`.
fn tool_choice(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let given = body
        .get("tool_choice")
        .filter(|v| !v.is_null())
        .map(|v| ("tool_choice", v))
        .or_else(|| {
            body.get("function_call")
                .filter(|v| !v.is_null())
                .map(|v| ("function_call", v))
        });
    let mut choice = match given {
        None => None,
        Some((field, Value::String(mode))) => Some(match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" | "any" => json!({"type": "any"}),
            other => return Err(invalid(field, format!("unknown mode `{other}`"))),
        }),
        Some((field, Value::Object(object))) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| object.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(field, "a named choice needs `function.name`"))?;
            Some(json!({"type": "tool", "name": name}))
        }
        Some((field, _)) => return Err(invalid(field, "must be a string or an object")),
    };
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let target = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if target.get("type").and_then(Value::as_str) != Some("none")
            && let Some(object) = target.as_object_mut()
        {
            object.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn max_tokens_prefers_the_client_then_the_target_then_the_default() {
        let none = object(json!({}));
        assert_eq!(max_tokens(&none, None), Ok(DEFAULT_MAX_TOKENS));
        assert_eq!(max_tokens(&none, Some(100)), Ok(100));
        let asked = object(json!({"max_tokens": 50}));
        assert_eq!(max_tokens(&asked, None), Ok(50));
        assert_eq!(max_tokens(&asked, Some(20)), Ok(20));
        let newer = object(json!({"max_completion_tokens": 70, "max_tokens": 5}));
        assert_eq!(max_tokens(&newer, None), Ok(70));
        assert!(max_tokens(&object(json!({"max_tokens": 0})), None).is_err());
    }

    #[test]
    fn unsupported_requests_are_refused() {
        let n = object(json!({"messages": [], "n": 2}));
        assert!(matches!(
            check_unsupported(&n),
            Err(TranslateError::Unsupported { .. })
        ));
        let json_mode = object(json!({"response_format": {"type": "json_object"}}));
        assert!(check_unsupported(&json_mode).is_err());
        let text = object(json!({"response_format": {"type": "text"}, "seed": 3}));
        assert!(check_unsupported(&text).is_ok());
    }
}
