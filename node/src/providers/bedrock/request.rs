//! OpenAI chat request → Bedrock Converse request (`POST /model/{modelId}/converse` and
//! `/converse-stream` take the same body).
//!
//! * `system`/`developer` messages → `system: [{"text"}]`;
//! * user content (a string, or `text` and `image_url` parts; images must be `data:` URLs,
//!   sent as `{"image":{"format","source":{"bytes"}}}`) → a `user` turn;
//! * assistant text and `tool_calls` → `text` and `toolUse` blocks of an `assistant` turn;
//! * `tool` messages → `toolResult` blocks in a `user` turn;
//! * consecutive turns of one role are merged (Converse requires alternating roles);
//! * `tools`/`tool_choice` → `toolConfig` (`auto`, `any` for `required`, `tool`);
//! * `max_tokens`/`max_completion_tokens` (capped by the target's `max_tokens`),
//!   `temperature`, `top_p`, `stop` → `inferenceConfig`.
//!
//! Pure: no I/O. What cannot be expressed in Converse is refused with a [`TranslateError`]
//! rather than dropped silently.

use base64::Engine;
use serde_json::{Map, Value, json};

/// A chat request Converse cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// One message is malformed or uses something Converse lacks.
    #[error("messages[{index}]: {reason}")]
    Message {
        /// Position in `messages`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A request field is malformed or unsupported on Bedrock.
    #[error("`{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn message_error(index: usize, reason: impl Into<String>) -> TranslateError {
    TranslateError::Message {
        index,
        reason: reason.into(),
    }
}

fn field_error(field: &'static str, reason: impl Into<String>) -> TranslateError {
    TranslateError::Field {
        field,
        reason: reason.into(),
    }
}

/// Builds the Converse body for an OpenAI chat body; `max_tokens_cap` is the target's
/// `max_tokens` (the default when the client gives none, and the ceiling otherwise).
pub fn converse_body(
    body: &Map<String, Value>,
    max_tokens_cap: Option<u64>,
) -> Result<Value, TranslateError> {
    check_unsupported(body)?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| field_error("messages", "must be an array"))?;
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content").unwrap_or(&Value::Null);
        let (turn_role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_only(content, index)?);
                continue;
            }
            "user" => ("user", user_blocks(content, index)?),
            "assistant" => ("assistant", assistant_blocks(message, index)?),
            "tool" => ("user", vec![tool_result(message, index)?]),
            other => return Err(message_error(index, format!("unknown role `{other}`"))),
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == turn_role => existing.extend(blocks),
            _ => turns.push((turn_role, blocks)),
        }
    }
    let uses_tools = turns
        .iter()
        .flat_map(|(_, blocks)| blocks)
        .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());

    let mut out = Map::new();
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(body, max_tokens_cap)?;
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tools) = tool_config(body, uses_tools)? {
        out.insert("toolConfig".into(), tools);
    }
    Ok(Value::Object(out))
}

/// Fields with no Converse equivalent that would change the answer if dropped.
fn check_unsupported(body: &Map<String, Value>) -> Result<(), TranslateError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(field_error("n", "Bedrock returns one choice per request"));
    }
    match body.get("response_format").and_then(|f| f.get("type")) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(kind)) if kind == "text" => Ok(()),
        Some(_) => Err(field_error(
            "response_format",
            "JSON output modes are not available through Bedrock Converse; describe the format in the prompt or use a tool",
        )),
    }
}

/// Text parts only (system and tool messages).
fn text_only(content: &Value, index: usize) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({ "text": text })]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => {
                    Ok(json!({"text": part.get("text").and_then(Value::as_str).unwrap_or("")}))
                }
                other => Err(message_error(
                    index,
                    format!(
                        "content part of type `{}` is only allowed in user messages",
                        other.unwrap_or("?")
                    ),
                )),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(message_error(
            index,
            "`content` must be a string or an array of parts",
        )),
    }
}

fn user_blocks(content: &Value, index: usize) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return match content {
            Value::String(text) => Ok(vec![json!({ "text": text })]),
            _ => Err(message_error(
                index,
                "`content` must be a string or an array of parts",
            )),
        };
    };
    parts
        .iter()
        .map(|part| match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                Ok(json!({"text": part.get("text").and_then(Value::as_str).unwrap_or("")}))
            }
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                image_block(url).map_err(|reason| message_error(index, reason))
            }
            other => Err(message_error(
                index,
                format!(
                    "content part of type `{}` is not supported on Bedrock",
                    other.unwrap_or("?")
                ),
            )),
        })
        .collect()
}

/// `data:image/png;base64,...` → a Converse image block with the bytes (base64, as the
/// JSON protocol carries blobs).
fn image_block(url: &str) -> Result<Value, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or("images must be `data:` URLs on Bedrock (it does not fetch image URLs)")?;
    let (meta, data) = rest
        .split_once(',')
        .ok_or("the image data URL has no `,`")?;
    let mime = meta
        .strip_suffix(";base64")
        .ok_or("the image data URL must be base64-encoded")?;
    let format = match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(format!(
                "image type `{other}` is not supported (png, jpeg, gif, webp)"
            ));
        }
    };
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| "the image data URL is not valid base64".to_owned())?;
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn assistant_blocks(message: &Value, index: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = text_only(message.get("content").unwrap_or(&Value::Null), index)?;
    blocks.retain(|b| {
        b.get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    });
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(message_error(index, "`tool_calls` must be an array")),
    };
    for call in calls {
        let id = call.get("id").and_then(Value::as_str).unwrap_or("");
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        if id.is_empty() || name.is_empty() {
            return Err(message_error(
                index,
                "every tool call needs an `id` and a `function.name`",
            ));
        }
        let input = match function.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(text)) if text.trim().is_empty() => json!({}),
            Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|_| {
                message_error(
                    index,
                    format!("the arguments of tool call `{id}` are not valid JSON"),
                )
            })?,
            Some(object @ Value::Object(_)) => object.clone(),
            Some(_) => {
                return Err(message_error(
                    index,
                    "tool call arguments must be a JSON string",
                ));
            }
        };
        blocks.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    Ok(blocks)
}

fn tool_result(message: &Value, index: usize) -> Result<Value, TranslateError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| message_error(index, "a tool message needs `tool_call_id`"))?;
    let mut content = text_only(message.get("content").unwrap_or(&Value::Null), index)?;
    if content.is_empty() {
        content.push(json!({"text": ""}));
    }
    Ok(json!({"toolResult": {"toolUseId": id, "content": content}}))
}

fn inference_config(
    body: &Map<String, Value>,
    cap: Option<u64>,
) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    let asked = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|key| body.get(*key).filter(|v| !v.is_null()).map(|v| (*key, v)));
    let max_tokens = match asked {
        Some((key, value)) => {
            let asked = value
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| field_error(key, "must be a positive integer"))?;
            Some(cap.map_or(asked, |cap| asked.min(cap)))
        }
        None => cap,
    };
    if let Some(max_tokens) = max_tokens {
        config.insert("maxTokens".into(), json!(max_tokens));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        match body.get(from) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                config.insert(to.into(), Value::Number(n.clone()));
            }
            Some(_) => return Err(field_error(from, "must be a number")),
        }
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(stop)) => {
            config.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            config.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        Some(_) => {
            return Err(field_error(
                "stop",
                "must be a string or an array of strings",
            ));
        }
    }
    Ok(config)
}

/// `tools`/`tool_choice` → `toolConfig`. `tool_choice: "none"` has no Converse equivalent:
/// the tools are left out, unless the conversation already holds tool blocks (Converse then
/// requires `toolConfig`), in which case they are sent with no `toolChoice`.
fn tool_config(
    body: &Map<String, Value>,
    uses_tools: bool,
) -> Result<Option<Value>, TranslateError> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) if tools.is_empty() => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(field_error("tools", "must be an array")),
    };
    let mut specs = Vec::with_capacity(tools.len());
    for tool in tools {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(field_error(
                "tools",
                "only `function` tools are supported on Bedrock",
            ));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| field_error("tools", "every function needs a `name`"))?;
        let schema = match function.get("parameters") {
            Some(schema @ Value::Object(_)) => schema.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        let mut spec = Map::new();
        spec.insert("name".into(), json!(name));
        if let Some(description) = function.get("description").and_then(Value::as_str) {
            spec.insert("description".into(), json!(description));
        }
        spec.insert("inputSchema".into(), json!({ "json": schema }));
        specs.push(json!({ "toolSpec": spec }));
    }
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" if uses_tools => None,
            "none" => return Ok(None),
            other => {
                return Err(field_error(
                    "tool_choice",
                    format!("unknown choice `{other}`"),
                ));
            }
        },
        Some(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| field_error("tool_choice", "must name a function"))?;
            Some(json!({"tool": {"name": name}}))
        }
    };
    let mut config = json!({ "tools": specs });
    if let (Some(choice), Some(map)) = (choice, config.as_object_mut()) {
        map.insert("toolChoice".into(), choice);
    }
    Ok(Some(config))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
