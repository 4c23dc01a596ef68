//! Scenario files: the mix of requests a run offers (`run --scenario FILE`), in YAML or JSON
//! (chosen by the file's extension, `.json` or anything else for YAML):
//!
//! ```yaml
//! requests:
//!   - { api: chat, model: chat, weight: 8, stream: 0.25, prompt_tokens: 64, max_tokens: 128 }
//!   - { api: messages, model: claude, weight: 1, stream: 1.0, key: "fg-..." }
//!   - { api: embeddings, model: embed, weight: 1, prompt_tokens: 512 }
//! ```
//!
//! Each entry is chosen with probability `weight / Σ weight`, and streamed with probability
//! `stream`. The choice is a pure function of the request's index, so a run's mix is
//! reproducible. Request bodies are built once here; the load generator only clones them.
//! Owns parsing and validation; no network I/O.

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Which wire format a request speaks, and so which path it is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI chat completions, `POST {base}/chat/completions`.
    #[default]
    Chat,
    /// OpenAI legacy completions, `POST {base}/completions`.
    Completions,
    /// OpenAI embeddings, `POST {base}/embeddings` (never streamed).
    Embeddings,
    /// Anthropic Messages, `POST {base}/messages`.
    Messages,
}

impl Api {
    /// The path under a base URL (which ends in `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/chat/completions",
            Api::Completions => "/completions",
            Api::Embeddings => "/embeddings",
            Api::Messages => "/messages",
        }
    }
}

/// Why a scenario could not be used. Every message names the file and, for a bad value,
/// the entry and field.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid YAML/JSON, or a field of the wrong shape (unknown fields included).
    #[error("scenario {origin}: {message}")]
    Syntax {
        /// The file (or `<inline>`).
        origin: String,
        /// The parser's message, with the location or path it gives.
        message: String,
    },
    /// The file lists no requests.
    #[error("scenario {origin}: `requests` is empty; list at least one request kind")]
    Empty {
        /// The file (or `<inline>`).
        origin: String,
    },
    /// A value is out of range.
    #[error("scenario {origin}: requests[{index}].{field}: {reason}")]
    Invalid {
        /// The file (or `<inline>`).
        origin: String,
        /// Index of the entry in `requests`.
        index: usize,
        /// The field.
        field: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    requests: Vec<RawRequest>,
}

fn one() -> u32 {
    1
}

fn default_prompt_tokens() -> u32 {
    8
}

/// One entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    api: Api,
    model: String,
    #[serde(default = "one")]
    weight: u32,
    /// Share of these requests that stream, in `[0, 1]`.
    #[serde(default)]
    stream: f64,
    #[serde(default = "default_prompt_tokens")]
    prompt_tokens: u32,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    key: Option<String>,
}

/// One kind of request, with its bodies prebuilt.
#[derive(Debug, Clone)]
pub struct RequestKind {
    /// Wire format.
    pub api: Api,
    /// The `model` field (the gateway endpoint).
    pub model: String,
    /// Relative weight in the mix.
    pub weight: u32,
    /// Share streamed.
    pub stream_share: f64,
    /// Gateway key sent as `authorization: Bearer`, if any.
    pub key: Option<String>,
    /// The body when not streaming.
    pub plain: Bytes,
    /// The body when streaming (empty for embeddings).
    pub streaming: Bytes,
}

/// A validated mix of request kinds.
#[derive(Debug, Clone)]
pub struct Scenario {
    kinds: Vec<RequestKind>,
    total_weight: u64,
}

/// SplitMix64: a cheap, well-mixed hash of the request index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Scenario {
    /// One kind: chat at `model`, streamed always or never (what `--model`/`--stream` ask).
    pub fn single(model: &str, stream: bool) -> Scenario {
        let raw = RawRequest {
            api: Api::Chat,
            model: model.to_owned(),
            weight: 1,
            stream: if stream { 1.0 } else { 0.0 },
            prompt_tokens: default_prompt_tokens(),
            max_tokens: None,
            key: None,
        };
        Scenario {
            kinds: vec![RequestKind::build(raw)],
            total_weight: 1,
        }
    }

    /// Reads and validates a scenario file (`.json` is JSON, anything else YAML).
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: origin.clone(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Scenario::parse(&text, json, &origin)
    }

    /// Parses and validates scenario text; `origin` names it in errors.
    pub fn parse(text: &str, json: bool, origin: &str) -> Result<Scenario, ScenarioError> {
        let syntax = |message: String| ScenarioError::Syntax {
            origin: origin.to_owned(),
            message,
        };
        let raw: RawScenario = if json {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de)
                .map_err(|e| syntax(format!("{}: {}", e.path(), e.inner())))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| syntax(e.to_string()))?
        };
        if raw.requests.is_empty() {
            return Err(ScenarioError::Empty {
                origin: origin.to_owned(),
            });
        }
        let invalid = |index, field, reason: String| ScenarioError::Invalid {
            origin: origin.to_owned(),
            index,
            field,
            reason,
        };
        let mut kinds = Vec::with_capacity(raw.requests.len());
        for (index, request) in raw.requests.into_iter().enumerate() {
            if request.model.trim().is_empty() {
                return Err(invalid(index, "model", "must not be empty".to_owned()));
            }
            if request.weight == 0 {
                return Err(invalid(index, "weight", "must be at least 1".to_owned()));
            }
            if !(0.0..=1.0).contains(&request.stream) {
                return Err(invalid(
                    index,
                    "stream",
                    format!("is a share in [0, 1], got {}", request.stream),
                ));
            }
            if request.api == Api::Embeddings && request.stream > 0.0 {
                return Err(invalid(
                    index,
                    "stream",
                    "embeddings are never streamed; use 0".to_owned(),
                ));
            }
            if request.max_tokens == Some(0) {
                return Err(invalid(
                    index,
                    "max_tokens",
                    "must be at least 1".to_owned(),
                ));
            }
            kinds.push(RequestKind::build(request));
        }
        let total_weight = kinds.iter().map(|k| u64::from(k.weight)).sum();
        Ok(Scenario {
            kinds,
            total_weight,
        })
    }

    /// The request kinds, in file order.
    pub fn kinds(&self) -> &[RequestKind] {
        &self.kinds
    }

    /// Whether any request may stream.
    pub fn streams(&self) -> bool {
        self.kinds.iter().any(|k| k.stream_share > 0.0)
    }

    /// The kind (by index into [`Scenario::kinds`]) and streaming choice of request `index`.
    pub fn pick(&self, index: u64) -> (usize, bool) {
        let h = mix(index);
        let mut slot = h % self.total_weight;
        let mut chosen = self.kinds.len() - 1;
        for (i, kind) in self.kinds.iter().enumerate() {
            if slot < u64::from(kind.weight) {
                chosen = i;
                break;
            }
            slot -= u64::from(kind.weight);
        }
        // 53 random bits as a fraction in [0, 1).
        let fraction = (mix(h) >> 11) as f64 / (1u64 << 53) as f64;
        (chosen, fraction < self.kinds[chosen].stream_share)
    }
}

impl RequestKind {
    fn build(raw: RawRequest) -> RequestKind {
        let prompt = "tok ".repeat(raw.prompt_tokens as usize);
        let mut plain = match raw.api {
            Api::Chat => serde_json::json!({
                "model": raw.model,
                "messages": [{"role": "user", "content": prompt}],
            }),
            Api::Completions => serde_json::json!({"model": raw.model, "prompt": prompt}),
            Api::Embeddings => serde_json::json!({"model": raw.model, "input": prompt}),
            Api::Messages => serde_json::json!({
                "model": raw.model,
                // Required by the Messages API.
                "max_tokens": raw.max_tokens.unwrap_or(256),
                "messages": [{"role": "user", "content": prompt}],
            }),
        };
        if let Some(max_tokens) = raw.max_tokens {
            plain["max_tokens"] = max_tokens.into();
        }
        let streaming = match raw.api {
            Api::Embeddings => Bytes::new(),
            Api::Messages => {
                let mut body = plain.clone();
                body["stream"] = true.into();
                Bytes::from(body.to_string())
            }
            Api::Chat | Api::Completions => {
                let mut body = plain.clone();
                body["stream"] = true.into();
                body["stream_options"] = serde_json::json!({"include_usage": true});
                Bytes::from(body.to_string())
            }
        };
        RequestKind {
            api: raw.api,
            model: raw.model,
            weight: raw.weight,
            stream_share: raw.stream,
            key: raw.key,
            plain: Bytes::from(plain.to_string()),
            streaming,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const YAML: &str = "
requests:
  - { api: chat, model: chat, weight: 3, stream: 0.5, prompt_tokens: 4, max_tokens: 16 }
  - { api: embeddings, model: embed }
  - { api: messages, model: claude, stream: 1.0, key: fg-test }
";

    #[test]
    fn parses_a_yaml_mix_and_picks_by_weight_and_stream_share() {
        let scenario = Scenario::parse(YAML, false, "mix.yaml").unwrap();
        let kinds = scenario.kinds();
        assert_eq!(kinds.len(), 3);
        assert_eq!(kinds[0].api, Api::Chat);
        let chat: serde_json::Value = serde_json::from_slice(&kinds[0].plain).unwrap();
        assert_eq!(chat["max_tokens"], 16);
        assert_eq!(chat["messages"][0]["content"], "tok tok tok tok ");
        let claude: serde_json::Value = serde_json::from_slice(&kinds[2].streaming).unwrap();
        assert_eq!(claude["stream"], true);
        assert_eq!(claude["max_tokens"], 256);
        assert_eq!(kinds[2].key.as_deref(), Some("fg-test"));

        let mut counts = [0u32; 3];
        let mut streamed = [0u32; 3];
        for index in 0..10_000 {
            let (kind, stream) = scenario.pick(index);
            counts[kind] += 1;
            streamed[kind] += u32::from(stream);
            assert_eq!(scenario.pick(index), (kind, stream), "deterministic");
        }
        // Weights 3:1:1 → 60%, 20%, 20%.
        assert!((5_700..6_300).contains(&counts[0]), "{counts:?}");
        assert!((1_800..2_200).contains(&counts[1]), "{counts:?}");
        assert_eq!(streamed[1], 0);
        assert_eq!(streamed[2], counts[2]);
        let half = f64::from(streamed[0]) / f64::from(counts[0]);
        assert!((0.45..0.55).contains(&half), "{half}");
    }

    #[test]
    fn the_shipped_example_scenario_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/mix.yaml");
        let scenario = Scenario::load(Path::new(path)).unwrap();
        assert_eq!(scenario.kinds().len(), 4);
        assert!(scenario.streams());
    }

    #[test]
    fn parses_json_and_names_the_bad_path() {
        let ok = r#"{"requests": [{"model": "chat", "stream": 1}]}"#;
        let scenario = Scenario::parse(ok, true, "a.json").unwrap();
        assert!(scenario.streams());

        let typo = r#"{"requests": [{"model": "chat", "weight": "heavy"}]}"#;
        let error = Scenario::parse(typo, true, "a.json")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("a.json") && error.contains("requests[0].weight"),
            "{error}"
        );
    }

    #[test]
    fn rejects_bad_scenarios_with_clear_messages() {
        let cases = [
            ("requests: []", "`requests` is empty"),
            (
                "requests: [{ model: chat, weight: 0 }]",
                "requests[0].weight: must be at least 1",
            ),
            (
                "requests: [{ model: chat, stream: 1.5 }]",
                "requests[0].stream: is a share in [0, 1], got 1.5",
            ),
            (
                "requests: [{ api: embeddings, model: e, stream: 0.1 }]",
                "embeddings are never streamed",
            ),
            (
                "requests: [{ model: '' }]",
                "requests[0].model: must not be empty",
            ),
            (
                "requests: [{ model: chat, max_tokens: 0 }]",
                "requests[0].max_tokens",
            ),
            ("requests: [{ model: chat, colour: red }]", "colour"),
            ("requests: [{ api: rerank, model: chat }]", "rerank"),
            ("requests: [{ weight: 2 }]", "model"),
        ];
        for (text, expected) in cases {
            let error = Scenario::parse(text, false, "bad.yaml")
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("scenario bad.yaml: "), "{error}");
            assert!(error.contains(expected), "{text} → {error}");
        }
        let missing = Scenario::load(Path::new("/nonexistent/scenario.yaml")).unwrap_err();
        assert!(matches!(missing, ScenarioError::Read { .. }), "{missing}");
    }
}
