//! OpenAI `messages` → Anthropic `system` and alternating `messages`: system and developer
//! messages are hoisted into `system`; consecutive messages of one Anthropic role merge into
//! one turn (a `tool` message is a user turn of `tool_result` blocks); image parts become
//! `image` blocks with a `url` or `base64` source; assistant `tool_calls` become `tool_use`
//! blocks. A turn that is a single plain text block is written as a string.

use serde_json::{Map, Value, json};

use super::request::{TranslateError, invalid, unsupported};

/// One Anthropic turn being assembled.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// Splits OpenAI messages into the Anthropic `system` and alternating `messages`.
pub fn translate(messages: Option<&Value>) -> Result<(Option<Value>, Vec<Value>), TranslateError> {
    let messages = messages
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages", "must be an array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&field, "missing `role`"))?;
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(content, &format!("{field}.content"))?);
                continue;
            }
            "user" => ("user", user_blocks(content, &format!("{field}.content"))?),
            "assistant" => ("assistant", assistant_blocks(message, &field)?),
            "tool" => ("user", vec![tool_result(message, &field)?]),
            "function" => {
                return Err(unsupported(
                    format!("{field}.role"),
                    "legacy `function` messages carry no call id; send `tool` messages",
                ));
            }
            other => {
                return Err(invalid(
                    format!("{field}.role"),
                    format!("unknown role `{other}`"),
                ));
            }
        };
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    let system = match system.len() {
        0 => None,
        1 if is_plain_text(&system[0]) => system[0].get("text").cloned(),
        _ => Some(Value::Array(system)),
    };
    let messages = turns
        .into_iter()
        .map(|turn| {
            let content = match turn.blocks.as_slice() {
                [only] if is_plain_text(only) => only.get("text").cloned().unwrap_or_default(),
                _ => Value::Array(turn.blocks),
            };
            json!({"role": turn.role, "content": content})
        })
        .collect();
    Ok((system, messages))
}

/// A text block with nothing but its text (so it can be written as a plain string).
fn is_plain_text(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("text")
        && block.as_object().is_some_and(|b| b.len() == 2)
}

fn text_block(text: &str, part: Option<&Value>) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), Value::String("text".into()));
    block.insert("text".into(), Value::String(text.to_owned()));
    if let Some(cache) = part.and_then(|p| p.get("cache_control")) {
        block.insert("cache_control".into(), cache.clone());
    }
    Value::Object(block)
}

/// Text-only content (system messages, tool results): a string or text parts.
fn text_blocks(content: &Value, field: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::String(text) => Ok(vec![text_block(text, None)]),
        Value::Null => Ok(Vec::new()),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| match part.get("text").and_then(Value::as_str) {
                Some(text) => Ok(text_block(text, Some(part))),
                None => Err(invalid(
                    format!("{field}[{i}]"),
                    "only text parts are allowed here",
                )),
            })
            .collect(),
        _ => Err(invalid(field, "must be a string or an array of parts")),
    }
}

fn user_blocks(content: &Value, field: &str) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return text_blocks(content, field);
    };
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let field = format!("{field}[{i}]");
            match part.get("type").and_then(Value::as_str) {
                Some("text") => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|text| text_block(text, Some(part)))
                    .ok_or_else(|| invalid(&field, "a text part needs `text`")),
                Some("image_url") => {
                    let url = part
                        .get("image_url")
                        .and_then(|i| i.get("url").or(Some(i)))
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(&field, "an image part needs `image_url.url`"))?;
                    image_block(url, &field)
                }
                Some(other) => Err(unsupported(
                    field,
                    format!("content parts of type `{other}` have no Anthropic equivalent"),
                )),
                None => Err(invalid(field, "a content part needs `type`")),
            }
        })
        .collect()
}

/// An image part: `data:<media type>;base64,<data>` becomes a base64 source, anything else
/// a URL source.
pub fn image_block(url: &str, field: &str) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid(field, "a data URL needs a `,` before its data"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| invalid(field, "only base64 data URLs can be sent"))?;
        if media_type.is_empty() {
            return Err(invalid(field, "the data URL names no media type"));
        }
        return Ok(json!({"type": "image", "source": {
            "type": "base64", "media_type": media_type, "data": data,
        }}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(invalid(
        field,
        "an image URL must be http(s) or a base64 data URL",
    ))
}

fn assistant_blocks(message: &Value, field: &str) -> Result<Vec<Value>, TranslateError> {
    let content = message.get("content").unwrap_or(&Value::Null);
    let mut blocks = match content {
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(i, part)| {
                let text = part
                    .get("text")
                    .or_else(|| part.get("refusal"))
                    .and_then(Value::as_str);
                match text {
                    Some("") => None,
                    Some(text) => Some(Ok(text_block(text, Some(part)))),
                    None => Some(Err(invalid(
                        format!("{field}.content[{i}]"),
                        "assistant content parts must be text",
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        // An empty assistant text block is refused upstream; a tool-calling turn often has
        // `content: ""`.
        Value::String(text) if text.is_empty() => Vec::new(),
        other => text_blocks(other, &format!("{field}.content"))?,
    };
    let calls = message.get("tool_calls").filter(|v| !v.is_null());
    if let Some(calls) = calls {
        let calls = calls
            .as_array()
            .ok_or_else(|| invalid(format!("{field}.tool_calls"), "must be an array"))?;
        for (i, call) in calls.iter().enumerate() {
            blocks.push(tool_use(call, &format!("{field}.tool_calls[{i}]"))?);
        }
    }
    Ok(blocks)
}

fn tool_use(call: &Value, field: &str) -> Result<Value, TranslateError> {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(field, "missing `id`"))?;
    let function = call
        .get("function")
        .ok_or_else(|| invalid(field, "missing `function`"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(field, "missing `function.name`"))?;
    let input = match function.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                invalid(
                    format!("{field}.function.arguments"),
                    "must be a JSON object encoded as a string",
                )
            })?,
        Some(object @ Value::Object(_)) => object.clone(),
        Some(_) => {
            return Err(invalid(
                format!("{field}.function.arguments"),
                "must be a JSON object encoded as a string",
            ));
        }
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_result(message: &Value, field: &str) -> Result<Value, TranslateError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(field, "a tool message needs `tool_call_id`"))?;
    let content = match message.get("content").unwrap_or(&Value::Null) {
        Value::String(text) => Value::String(text.clone()),
        Value::Null => Value::String(String::new()),
        other => Value::Array(text_blocks(other, &format!("{field}.content"))?),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urls_become_url_or_base64_sources() {
        assert_eq!(
            image_block("https://x.test/a.png", "f"),
            Ok(json!({"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}))
        );
        assert_eq!(
            image_block("data:image/png;base64,iVBOR", "f"),
            Ok(
                json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}})
            )
        );
        assert!(image_block("data:image/png,raw", "f").is_err());
        assert!(image_block("ftp://x", "f").is_err());
    }
}
