//! OpenAI chat request → Gemini `GenerateContentRequest` JSON. Pure translation, no I/O, no
//! URL and no credentials, so Vertex AI (same JSON, other URL and auth) can reuse it.
//!
//! * `system`/`developer` messages → `systemInstruction.parts`;
//! * `user` → role `user`; text, images (`data:` URLs → `inlineData`, other URLs →
//!   `fileData`), `input_audio` and `file` parts;
//! * `assistant` → role `model`; text and `tool_calls` → `functionCall` parts;
//! * `tool` (and legacy `function`) → `functionResponse` parts in a `user` turn, named after
//!   the matching tool call; consecutive tool answers share one turn, as Gemini expects for
//!   parallel calls;
//! * `tools`, `tool_choice` and sampling parameters → see [`super::params`].
//!
//! A message, part or tool that cannot be carried is refused with a [`TranslateError`] naming
//! the message and field, never dropped silently. OpenAI request options with no Gemini
//! counterpart (`user`, `metadata`, `store`, `logit_bias`, `parallel_tool_calls`,
//! `service_tier`, `reasoning_effort`, `stream_options`) are not sent.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::params;
use crate::providers::ProviderError;

/// Thought signature Google documents for replayed function calls whose real signature is
/// unknown (history from another model, or from a client that keeps only OpenAI fields).
/// Gemini 3 and later refuse a replayed `functionCall` part without one.
pub(crate) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Why an OpenAI-shaped request cannot be sent to Gemini.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TranslateError {
    /// A required field is missing or has the wrong JSON type.
    #[error("`{field}` {expected}")]
    Field {
        /// The field path.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A message has a role Gemini has no counterpart for.
    #[error("messages[{index}]: role `{role}` is not supported by Gemini")]
    Role {
        /// Message index.
        index: usize,
        /// The role given.
        role: String,
    },
    /// A content part of a type Gemini cannot take.
    #[error("messages[{index}]: content part type `{kind}` is not supported by Gemini")]
    Part {
        /// Message index.
        index: usize,
        /// The part's `type`.
        kind: String,
    },
    /// An image or file URL that is neither a base64 `data:` URL nor a URI.
    #[error("messages[{index}]: `{url}` is not a base64 data: URL or an http(s)/gs URI")]
    MediaUrl {
        /// Message index.
        index: usize,
        /// The URL, shortened.
        url: String,
    },
    /// Tool-call arguments that are not a JSON object.
    #[error("messages[{index}]: arguments of tool call `{name}` are not a JSON object")]
    Arguments {
        /// Message index.
        index: usize,
        /// Function name.
        name: String,
    },
    /// A tool answer whose call is not in the conversation.
    #[error("messages[{index}]: no earlier assistant tool call has id `{id}`")]
    UnknownToolCall {
        /// Message index.
        index: usize,
        /// The `tool_call_id`.
        id: String,
    },
    /// A tool of a type other than `function`.
    #[error("tools[{index}]: tool type `{kind}` is not supported by Gemini")]
    Tool {
        /// Tool index.
        index: usize,
        /// The tool's `type`.
        kind: String,
    },
    /// Token-array input (embeddings), which Gemini cannot take.
    #[error("`input` must be text: Gemini does not accept token arrays")]
    TokenInput,
}

impl From<TranslateError> for ProviderError {
    fn from(err: TranslateError) -> Self {
        match err {
            // Malformed input: no other target would take it either.
            TranslateError::Field { .. }
            | TranslateError::Arguments { .. }
            | TranslateError::UnknownToolCall { .. }
            | TranslateError::MediaUrl { .. } => ProviderError::InvalidRequest(err.to_string()),
            // Something Gemini lacks: another target may serve it.
            TranslateError::Role { .. }
            | TranslateError::Part { .. }
            | TranslateError::Tool { .. }
            | TranslateError::TokenInput => ProviderError::Unsupported(err.to_string()),
        }
    }
}

/// What the translation needs from the target rather than the body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChatOptions<'a> {
    /// The provider model (decides whether replayed calls need a thought signature).
    pub model: &'a str,
    /// The target's `max_tokens`: the default and the cap for `maxOutputTokens`.
    pub max_tokens: Option<u64>,
}

/// Translates an OpenAI chat body into a Gemini `generateContent` body.
pub(crate) fn chat_request(
    body: &Map<String, Value>,
    options: ChatOptions<'_>,
) -> Result<Map<String, Value>, TranslateError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| field("messages", "must be an array"))?;
    let signature = needs_signature(options.model);
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (index, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| field(format!("messages[{index}].role"), "must be a string"))?;
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.extend(text_parts(index, content)?),
            "user" => push(&mut contents, "user", user_parts(index, content)?),
            "assistant" => {
                let parts = assistant_parts(index, message, &mut call_names, signature)?;
                push(&mut contents, "model", parts);
            }
            "tool" | "function" => {
                let part = function_response(index, message, role, &call_names)?;
                push_response(&mut contents, part);
            }
            other => {
                return Err(TranslateError::Role {
                    index,
                    role: other.to_owned(),
                });
            }
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = params::tools(body)? {
        out.insert("tools".into(), tools);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        out.insert("toolConfig".into(), params::tool_config(choice)?);
    }
    let config = params::generation_config(body, options.max_tokens)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(out)
}

pub(super) fn field(name: impl Into<String>, expected: &'static str) -> TranslateError {
    TranslateError::Field {
        field: name.into(),
        expected,
    }
}

/// Whether replayed `functionCall` parts must carry a thought signature: Gemini 3 and later.
pub(crate) fn needs_signature(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let Some(version) = name.strip_prefix("gemini-") else {
        return false;
    };
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|major| major >= 3)
}

/// Appends a turn; a turn with no parts carries nothing and is left out (Gemini refuses
/// empty `parts`).
fn push(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if !parts.is_empty() {
        contents.push(json!({ "role": role, "parts": parts }));
    }
}

/// Appends a `functionResponse` part, sharing the previous turn when it holds only function
/// responses (the answers to one set of parallel calls form one turn).
fn push_response(contents: &mut Vec<Value>, part: Value) {
    let previous = contents.last_mut().and_then(|c| {
        let parts = c.get_mut("parts")?.as_array_mut()?;
        parts
            .iter()
            .all(|p| p.get("functionResponse").is_some())
            .then_some(parts)
    });
    match previous {
        Some(parts) => parts.push(part),
        None => contents.push(json!({ "role": "user", "parts": [part] })),
    }
}

/// The text of a content: a string, or the `text` of each text part.
fn texts(index: usize, content: &Value) -> Result<Vec<String>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part_type(part) {
                "text" | "refusal" => Ok(part
                    .get("text")
                    .or_else(|| part.get("refusal"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()),
                kind => Err(TranslateError::Part {
                    index,
                    kind: kind.to_owned(),
                }),
            })
            .collect(),
        _ => Err(field(
            format!("messages[{index}].content"),
            "must be a string or an array of parts",
        )),
    }
}

fn part_type(part: &Value) -> &str {
    part.get("type").and_then(Value::as_str).unwrap_or("")
}

fn text_parts(index: usize, content: &Value) -> Result<Vec<Value>, TranslateError> {
    Ok(texts(index, content)?
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|text| json!({ "text": text }))
        .collect())
}

fn user_parts(index: usize, content: &Value) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return text_parts(index, content);
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part_type(part) {
            "text" => {
                let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    out.push(json!({ "text": text }));
                }
            }
            "image_url" => {
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        field(format!("messages[{index}].image_url.url"), "is required")
                    })?;
                out.push(super::media::media_part(index, url, None)?);
            }
            "input_audio" => {
                let audio = part.get("input_audio").unwrap_or(&Value::Null);
                let data = audio.get("data").and_then(Value::as_str).ok_or_else(|| {
                    field(format!("messages[{index}].input_audio.data"), "is required")
                })?;
                let format = audio.get("format").and_then(Value::as_str).unwrap_or("wav");
                out.push(json!({ "inlineData": { "mimeType": format!("audio/{format}"), "data": data } }));
            }
            "file" => {
                let file = part.get("file").unwrap_or(&Value::Null);
                let data = file
                    .get("file_data")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        field(
                            format!("messages[{index}].file.file_data"),
                            "is required (file ids cannot be sent to Gemini)",
                        )
                    })?;
                let name = file.get("filename").and_then(Value::as_str);
                out.push(super::media::media_part(index, data, name)?);
            }
            kind => {
                return Err(TranslateError::Part {
                    index,
                    kind: kind.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

fn assistant_parts(
    index: usize,
    message: &Value,
    call_names: &mut HashMap<String, String>,
    signature: bool,
) -> Result<Vec<Value>, TranslateError> {
    let mut parts = text_parts(index, message.get("content").unwrap_or(&Value::Null))?;
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (position, call) in calls.iter().enumerate() {
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                field(
                    format!("messages[{index}].tool_calls[{position}].function.name"),
                    "is required",
                )
            })?
            .to_owned();
        let args = match function.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(text)) if text.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(text)) => serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| TranslateError::Arguments {
                    index,
                    name: name.clone(),
                })?,
            Some(object @ Value::Object(_)) => object.clone(),
            Some(_) => return Err(TranslateError::Arguments { index, name }),
        };
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            call_names.insert(id.to_owned(), name.clone());
        }
        let mut part = json!({ "functionCall": { "name": name, "args": args } });
        if signature && position == 0 {
            // Parallel calls carry one signature, on the first call of the turn.
            part["thoughtSignature"] = json!(SKIP_SIGNATURE);
        }
        parts.push(part);
    }
    Ok(parts)
}

fn function_response(
    index: usize,
    message: &Value,
    role: &str,
    call_names: &HashMap<String, String>,
) -> Result<Value, TranslateError> {
    let given_name = message.get("name").and_then(Value::as_str);
    let name = match (role, message.get("tool_call_id").and_then(Value::as_str)) {
        ("tool", Some(id)) => call_names
            .get(id)
            .map(String::as_str)
            .or(given_name)
            .ok_or_else(|| TranslateError::UnknownToolCall {
                index,
                id: id.to_owned(),
            })?,
        _ => given_name.ok_or_else(|| {
            field(
                format!("messages[{index}].tool_call_id"),
                "is required for a tool message",
            )
        })?,
    };
    let text = texts(index, message.get("content").unwrap_or(&Value::Null))?.join("");
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "output": text }),
    };
    Ok(json!({ "functionResponse": { "name": name, "response": response } }))
}
