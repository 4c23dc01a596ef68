//! OpenAI embeddings ⇄ Cohere v2 embed (`POST /v2/embed`).
//!
//! `input` (a string or an array of strings) becomes `texts`; `input_type` is
//! `search_document` unless the OpenAI body carries its own `input_type` (Cohere's values:
//! `search_document`, `search_query`, `classification`, `clustering`); `dimensions`
//! becomes `output_dimension`, and Cohere's `truncate` and `max_tokens` pass through.
//! Float embeddings are always asked for (`embedding_types: ["float"]`); an OpenAI
//! `encoding_format: "base64"` is served by encoding them as OpenAI does (little-endian
//! f32, base64). Usage is `meta.billed_units.input_tokens`.
//!
//! Pure: no I/O.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::error::CohereError;
use super::response::count;
use crate::usage::Usage;

/// `input_type` when the request does not name one.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

/// Translates an OpenAI embeddings body for `model`.
pub fn embed_request(
    body: &Map<String, Value>,
    model: &str,
) -> Result<Map<String, Value>, CohereError> {
    let texts = match body.get("input") {
        Some(Value::String(text)) => vec![Value::String(text.clone())],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items.clone(),
        Some(Value::Array(_)) => {
            return Err(CohereError::unsupported(
                "input",
                "Cohere embeds text: token arrays cannot be sent",
            ));
        }
        _ => {
            return Err(CohereError::invalid(
                "input",
                "must be a string or an array of strings",
            ));
        }
    };
    let input_type = match body.get("input_type") {
        None | Some(Value::Null) => DEFAULT_INPUT_TYPE,
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(CohereError::invalid("input_type", "must be a string")),
    };
    match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float" | "base64") => {}
        Some(other) => {
            return Err(CohereError::unsupported(
                "encoding_format",
                format!("`{other}` is not an OpenAI encoding (float or base64)"),
            ));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("texts".into(), Value::Array(texts));
    out.insert("input_type".into(), json!(input_type));
    out.insert("embedding_types".into(), json!(["float"]));
    if let Some(dimensions) = body.get("dimensions").filter(|v| !v.is_null()) {
        out.insert("output_dimension".into(), dimensions.clone());
    }
    for name in ["truncate", "max_tokens", "priority"] {
        if let Some(value) = body.get(name).filter(|v| !v.is_null()) {
            out.insert(name.into(), value.clone());
        }
    }
    Ok(out)
}

/// Translates Cohere's embed answer into an OpenAI `list` of embeddings for `model`;
/// `base64` encodes each vector as OpenAI's `encoding_format: "base64"` does.
pub fn embed_response(
    answer: &Value,
    model: &str,
    base64: bool,
) -> Result<(Map<String, Value>, Usage), CohereError> {
    let vectors = answer
        .pointer("/embeddings/float")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            CohereError::InvalidAnswer("the embed answer has no `embeddings.float`".into())
        })?;
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let values = vector.as_array().ok_or_else(|| {
                CohereError::InvalidAnswer(format!("embedding {index} is not an array"))
            })?;
            let embedding = if base64 {
                Value::String(encode(values).ok_or_else(|| {
                    CohereError::InvalidAnswer(format!("embedding {index} holds a non-number"))
                })?)
            } else {
                Value::Array(values.clone())
            };
            Ok(json!({"object": "embedding", "index": index, "embedding": embedding}))
        })
        .collect::<Result<Vec<_>, CohereError>>()?;
    let input = answer
        .pointer("/meta/billed_units/input_tokens")
        .and_then(count)
        .unwrap_or(0);
    let usage = Usage {
        input_tokens: input,
        output_tokens: 0,
        ..Usage::default()
    };
    let mut out = Map::new();
    out.insert("object".into(), json!("list"));
    out.insert("data".into(), Value::Array(data));
    out.insert("model".into(), json!(model));
    out.insert(
        "usage".into(),
        json!({"prompt_tokens": input, "total_tokens": input}),
    );
    Ok((out, usage))
}

/// Little-endian f32s, base64-encoded (OpenAI's `encoding_format: "base64"`).
fn encode(values: &[Value]) -> Option<String> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for value in values {
        // f32 is the wire precision of OpenAI's base64 embeddings.
        #[allow(clippy::cast_possible_truncation)]
        let single = value.as_f64()? as f32;
        bytes.extend_from_slice(&single.to_le_bytes());
    }
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn input_type_defaults_and_can_be_overridden() {
        let plain = embed_request(&object(json!({"input": "hi"})), "embed-v4.0").unwrap();
        assert_eq!(plain["input_type"], "search_document");
        assert_eq!(plain["texts"], json!(["hi"]));
        assert_eq!(plain["embedding_types"], json!(["float"]));
        let query =
            object(json!({"input": ["a", "b"], "input_type": "search_query", "dimensions": 512}));
        let query = embed_request(&query, "embed-v4.0").unwrap();
        assert_eq!(query["input_type"], "search_query");
        assert_eq!(query["output_dimension"], 512);
    }

    #[test]
    fn token_arrays_are_refused() {
        let tokens = object(json!({"input": [[1, 2, 3]]}));
        assert!(matches!(
            embed_request(&tokens, "embed-v4.0"),
            Err(CohereError::Unsupported { .. })
        ));
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let answer = json!({"embeddings": {"float": [[1.0, -2.0]]},
                            "meta": {"billed_units": {"input_tokens": 3}}});
        let (body, usage) = embed_response(&answer, "embed-v4.0", true).unwrap();
        let text = body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        assert_eq!(usage.input_tokens, 3);
    }
}
