//! OpenAI embeddings ↔ Gemini `embedContent` (one input) and `batchEmbedContents` (several).
//! `dimensions` → `outputDimensionality`; `encoding_format: base64` is honoured (little-endian
//! `f32`, as OpenAI encodes it, and as the OpenAI SDKs ask by default).
//!
//! Token usage: Gemini's embedding answers carry no token counts. When an answer has a
//! `usageMetadata.promptTokenCount` it is used; otherwise input tokens are *estimated* as
//! `ceil(chars / 4)` per input (Google's rule of thumb of about four characters a token), so
//! cost is recorded close to the bill rather than as zero. Pure translation, no I/O.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::request::TranslateError;
use crate::providers::ProviderError;
use crate::usage::Usage;

/// Which Gemini method serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmbedMethod {
    /// `:embedContent`, one input.
    Single,
    /// `:batchEmbedContents`, several inputs.
    Batch,
}

impl EmbedMethod {
    /// The method name in the URL.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Single => "embedContent",
            Self::Batch => "batchEmbedContents",
        }
    }
}

/// A translated embeddings request.
#[derive(Debug, Clone)]
pub(crate) struct EmbedRequest {
    /// Method to call.
    pub method: EmbedMethod,
    /// Gemini body.
    pub body: Map<String, Value>,
    /// The input texts, in order.
    pub inputs: Vec<String>,
    /// Whether the client asked for base64 vectors.
    pub base64: bool,
}

/// The `models/{model}` resource name Gemini expects (tuned models keep their own prefix).
pub(crate) fn resource(model: &str) -> String {
    if model.contains('/') {
        model.to_owned()
    } else {
        format!("models/{model}")
    }
}

/// Translates an OpenAI embeddings body.
pub(crate) fn embed_request(
    body: &Map<String, Value>,
    model: &str,
) -> Result<EmbedRequest, TranslateError> {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(_)) => return Err(TranslateError::TokenInput),
        _ => {
            return Err(TranslateError::Field {
                field: "input".into(),
                expected: "must be a string or an array of strings",
            });
        }
    };
    if inputs.is_empty() {
        return Err(TranslateError::Field {
            field: "input".into(),
            expected: "must not be empty",
        });
    }
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| TranslateError::Field {
            field: "dimensions".into(),
            expected: "must be a positive integer",
        })?),
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(TranslateError::Field {
                field: "encoding_format".into(),
                expected: "must be float or base64",
            });
        }
    };
    let one = |text: &str, with_model: bool| {
        let mut request = json!({ "content": { "parts": [{ "text": text }] } });
        if with_model {
            request["model"] = json!(resource(model));
        }
        if let Some(dimensions) = dimensions {
            request["outputDimensionality"] = json!(dimensions);
        }
        request
    };
    let (method, body) = if inputs.len() == 1 {
        (EmbedMethod::Single, one(&inputs[0], false))
    } else {
        let requests: Vec<Value> = inputs.iter().map(|t| one(t, true)).collect();
        (EmbedMethod::Batch, json!({ "requests": requests }))
    };
    let Value::Object(body) = body else {
        return Err(TranslateError::Field {
            field: "input".into(),
            expected: "could not be translated",
        });
    };
    Ok(EmbedRequest {
        method,
        body,
        inputs,
        base64,
    })
}

/// Estimated tokens of the inputs: `ceil(chars / 4)` each.
pub(crate) fn estimate_tokens(inputs: &[String]) -> u64 {
    inputs
        .iter()
        .map(|text| (text.chars().count() as u64).div_ceil(4))
        .sum()
}

/// Translates a Gemini embeddings answer into an OpenAI `list` and its usage.
pub(crate) fn embed_response(
    answer: &Value,
    request: &EmbedRequest,
    model: &str,
) -> Result<(Map<String, Value>, Usage), ProviderError> {
    let vectors: Vec<&Value> = match request.method {
        EmbedMethod::Single => answer.get("embedding").into_iter().collect(),
        EmbedMethod::Batch => answer
            .get("embeddings")
            .and_then(Value::as_array)
            .map(|items| items.iter().collect())
            .unwrap_or_default(),
    };
    if vectors.len() != request.inputs.len() {
        return Err(ProviderError::InvalidResponse {
            detail: format!(
                "{} embeddings for {} inputs",
                vectors.len(),
                request.inputs.len()
            ),
        });
    }
    let mut data = Vec::with_capacity(vectors.len());
    for (index, vector) in vectors.into_iter().enumerate() {
        let values = vector
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::InvalidResponse {
                detail: format!("embedding {index} has no values"),
            })?;
        let embedding = if request.base64 {
            let mut bytes = Vec::with_capacity(values.len() * 4);
            for value in values {
                let number = value.as_f64().unwrap_or(0.0) as f32;
                bytes.extend_from_slice(&number.to_le_bytes());
            }
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            Value::Array(values.clone())
        };
        data.push(json!({ "object": "embedding", "index": index, "embedding": embedding }));
    }
    let tokens = answer
        .pointer("/usageMetadata/promptTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| estimate_tokens(&request.inputs));
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    });
    let Value::Object(body) = body else {
        return Err(ProviderError::InvalidResponse {
            detail: "translation built a non-object".into(),
        });
    };
    let usage = Usage {
        input_tokens: tokens,
        output_tokens: 0,
        ..Usage::default()
    };
    Ok((body, usage))
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
    fn one_input_uses_embed_content_and_several_use_the_batch() {
        let single = embed_request(
            &object(json!({"input": "hi", "dimensions": 8})),
            "gemini-embedding-001",
        )
        .expect("valid");
        assert_eq!(single.method, EmbedMethod::Single);
        assert_eq!(
            Value::Object(single.body),
            json!({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 8})
        );
        let batch = embed_request(
            &object(json!({"input": ["a", "b"]})),
            "gemini-embedding-001",
        )
        .expect("valid");
        assert_eq!(batch.method, EmbedMethod::Batch);
        assert_eq!(
            batch.body["requests"][1]["model"],
            "models/gemini-embedding-001"
        );
        assert_eq!(
            batch.body["requests"][1]["content"]["parts"][0]["text"],
            "b"
        );
        assert_eq!(
            embed_request(&object(json!({"input": [[1, 2]]})), "m").err(),
            Some(TranslateError::TokenInput)
        );
    }

    #[test]
    fn base64_vectors_are_little_endian_f32() {
        let request = embed_request(
            &object(json!({"input": "x", "encoding_format": "base64"})),
            "m",
        )
        .expect("valid");
        let (body, usage) = embed_response(
            &json!({"embedding": {"values": [1.0, -2.0]}}),
            &request,
            "m",
        )
        .expect("valid");
        let encoded = body["data"][0]["embedding"].as_str().expect("a string");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        assert_eq!(usage.input_tokens, 1, "estimated from one character");
    }
}
