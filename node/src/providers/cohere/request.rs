//! OpenAI chat request → Cohere v2 chat request (`POST /v2/chat`): messages by role
//! (system/developer → `system`, `user` with text and `image_url` parts, `assistant` with
//! `tool_calls`, `tool` with `tool_call_id`), tools and `tool_choice`, and the sampling
//! parameters under Cohere's names (`top_p` → `p`, `stop` → `stop_sequences`, ...).
//!
//! Tools are translated in [`super::tools`].
//!
//! Pure: no I/O. What Cohere cannot carry (audio or file parts, `n > 1`, the deprecated
//! `function` role) is refused with a [`CohereError`] naming the field, never dropped
//! silently; fields with no effect on Cohere's answer (`user`, `metadata`, `store`,
//! `stream_options`, `parallel_tool_calls`, `logprobs`, a message's `name`) are left out.

use serde_json::{Map, Value, json};

use super::error::CohereError;
use super::tools::{apply_tool_choice, tool_call, translate_tool};

/// Parameters copied under the same name (OpenAI and Cohere agree).
const SAME_NAME: &[&str] = &[
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
];

/// Cohere-native fields a client may send through the OpenAI shape.
const NATIVE: &[&str] = &[
    "documents",
    "citation_options",
    "safety_mode",
    "thinking",
    "priority",
    "strict_tools",
];

/// Translates an OpenAI chat body for `model`; `cap` is the target's `max_tokens` (sent
/// when the client gives none, and the most a client may ask for).
pub fn chat_request(
    body: &Map<String, Value>,
    model: &str,
    cap: Option<u64>,
    stream: bool,
) -> Result<Map<String, Value>, CohereError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_owned()));
    out.insert("stream".into(), Value::Bool(stream));

    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| CohereError::invalid("messages", "must be an array"))?;
    let messages = messages
        .iter()
        .enumerate()
        .map(|(index, message)| translate_message(index, message))
        .collect::<Result<Vec<_>, _>>()?;
    out.insert("messages".into(), Value::Array(messages));

    for name in NATIVE {
        if let Some(value) = body.get(*name).filter(|v| !v.is_null()) {
            out.insert((*name).into(), value.clone());
        }
    }
    let mut tools = match body.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools
            .iter()
            .enumerate()
            .map(|(index, tool)| translate_tool(index, tool, &mut out))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(CohereError::invalid("tools", "must be an array")),
    };
    apply_tool_choice(body.get("tool_choice"), &mut tools, &mut out)?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }

    for name in SAME_NAME {
        if let Some(value) = body.get(*name).filter(|v| !v.is_null()) {
            out.insert((*name).into(), value.clone());
        }
    }
    let given = |name: &str| body.get(name).filter(|v| !v.is_null());
    if let Some(p) = given("top_p").or_else(|| given("p")) {
        out.insert("p".into(), p.clone());
    }
    if let Some(k) = given("top_k").or_else(|| given("k")) {
        out.insert("k".into(), k.clone());
    }
    match given("stop").or_else(|| given("stop_sequences")) {
        None | Some(Value::Null) => {}
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        Some(_) => {
            return Err(CohereError::invalid(
                "stop",
                "must be a string or an array of strings",
            ));
        }
    }
    if let Some(max) = max_tokens(body, cap)? {
        out.insert("max_tokens".into(), Value::from(max));
    }
    if let Some(format) = body.get("response_format").filter(|v| !v.is_null()) {
        out.insert("response_format".into(), response_format(format)?);
    }
    match body.get("n").and_then(Value::as_u64) {
        None | Some(1) => {}
        Some(_) => {
            return Err(CohereError::unsupported(
                "n",
                "Cohere returns one choice per request",
            ));
        }
    }
    Ok(out)
}

fn translate_message(index: usize, message: &Value) -> Result<Value, CohereError> {
    let field = |name: &str| format!("messages[{index}].{name}");
    let object = message
        .as_object()
        .ok_or_else(|| CohereError::invalid(format!("messages[{index}]"), "must be an object"))?;
    let role = object
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| CohereError::invalid(field("role"), "must be a string"))?;
    let content = object.get("content").filter(|v| !v.is_null());
    match role {
        "system" | "developer" => {
            let content = text_content(content, &field("content"))?
                .ok_or_else(|| CohereError::invalid(field("content"), "is required"))?;
            Ok(json!({"role": "system", "content": content}))
        }
        "user" => {
            let content = user_content(content, &field("content"))?
                .ok_or_else(|| CohereError::invalid(field("content"), "is required"))?;
            Ok(json!({"role": "user", "content": content}))
        }
        "assistant" => assistant_message(object, &field),
        "tool" => {
            let id = object
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| CohereError::invalid(field("tool_call_id"), "is required"))?;
            let content = text_content(content, &field("content"))?.unwrap_or_else(|| json!(""));
            Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
        }
        "function" => Err(CohereError::unsupported(
            field("role"),
            "the deprecated `function` role is not supported; use `tool` messages",
        )),
        other => Err(CohereError::invalid(
            field("role"),
            format!("unknown role `{other}`"),
        )),
    }
}

/// An assistant turn. With tool calls, its text is the turn's `tool_plan` (Cohere's place
/// for what the model says before calling tools); without, it is the content.
fn assistant_message(
    object: &Map<String, Value>,
    field: &dyn Fn(&str) -> String,
) -> Result<Value, CohereError> {
    let mut out = Map::new();
    out.insert("role".into(), json!("assistant"));
    let content = text_content(object.get("content"), &field("content"))?;
    let calls = match object.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .enumerate()
            .map(|(i, call)| tool_call(call, &field(&format!("tool_calls[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(CohereError::invalid(
                field("tool_calls"),
                "must be an array",
            ));
        }
    };
    if calls.is_empty() {
        out.insert("content".into(), content.unwrap_or_else(|| json!("")));
    } else {
        if let Some(plan) = content.as_ref().map(plain_text).filter(|t| !t.is_empty()) {
            out.insert("tool_plan".into(), Value::String(plan));
        }
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(Value::Object(out))
}

/// Text-only content (system, assistant, tool): a string, or text (and refusal) parts
/// kept as Cohere `text` blocks.
fn text_content(content: Option<&Value>, field: &str) -> Result<Option<Value>, CohereError> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(Value::String(text.clone()))),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| text_block(part, &format!("{field}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(|blocks| Some(Value::Array(blocks))),
        Some(_) => Err(CohereError::invalid(field, "must be a string or an array")),
    }
}

/// One text (or refusal) part as a Cohere `text` block.
fn text_block(part: &Value, at: &str) -> Result<Value, CohereError> {
    let text = match part.get("type").and_then(Value::as_str) {
        Some("text") => part.get("text"),
        Some("refusal") => part.get("refusal"),
        Some(other) => {
            return Err(CohereError::unsupported(
                at,
                format!("`{other}` parts cannot be sent here"),
            ));
        }
        None => return Err(CohereError::invalid(at, "a part needs a `type`")),
    };
    let text = text
        .and_then(Value::as_str)
        .ok_or_else(|| CohereError::invalid(at, "the part has no text"))?;
    Ok(json!({"type": "text", "text": text}))
}

/// User content: a string, or text and `image_url` parts.
fn user_content(content: Option<&Value>, field: &str) -> Result<Option<Value>, CohereError> {
    let Some(Value::Array(parts)) = content else {
        return text_content(content, field);
    };
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let at = format!("{field}[{i}]");
            if part.get("type").and_then(Value::as_str) != Some("image_url") {
                return text_block(part, &at);
            }
            let image = match part.get("image_url") {
                Some(Value::String(url)) => json!({"url": url}),
                Some(Value::Object(image)) if image.get("url").is_some_and(Value::is_string) => {
                    let mut out = Map::new();
                    out.insert("url".into(), image["url"].clone());
                    if let Some(detail) = image.get("detail").filter(|d| d.is_string()) {
                        out.insert("detail".into(), detail.clone());
                    }
                    Value::Object(out)
                }
                _ => {
                    return Err(CohereError::invalid(
                        format!("{at}.image_url"),
                        "needs a `url` (a web URL or a data URI)",
                    ));
                }
            };
            Ok(json!({"type": "image_url", "image_url": image}))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|blocks| Some(Value::Array(blocks)))
}

/// The text of a string or of text blocks.
fn plain_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// `max_completion_tokens` (or `max_tokens`), capped by the target's `max_tokens`.
fn max_tokens(body: &Map<String, Value>, cap: Option<u64>) -> Result<Option<u64>, CohereError> {
    let asked =
        match body
            .get("max_completion_tokens")
            .filter(|v| !v.is_null())
            .or_else(|| body.get("max_tokens").filter(|v| !v.is_null()))
        {
            None => None,
            Some(value) => Some(value.as_u64().ok_or_else(|| {
                CohereError::invalid("max_tokens", "must be a non-negative integer")
            })?),
        };
    Ok(match (asked, cap) {
        (Some(asked), Some(cap)) => Some(asked.min(cap)),
        (asked, cap) => asked.or(cap),
    })
}

/// `text` → `text`; `json_object` → `json_object`; `json_schema` → `json_object` with the
/// schema as Cohere's `json_schema`.
fn response_format(format: &Value) -> Result<Value, CohereError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text"})),
        Some("json_object") => Ok(json!({"type": "json_object"})),
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    CohereError::invalid("response_format.json_schema.schema", "is required")
                })?;
            Ok(json!({"type": "json_object", "json_schema": schema}))
        }
        _ => Err(CohereError::invalid(
            "response_format.type",
            "must be text, json_object or json_schema",
        )),
    }
}
