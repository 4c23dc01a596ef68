//! The `payload_capture:` section: whether usage events carry the request and response
//! bodies, how much of each, and the extra patterns redacted from them (secrets are always
//! redacted: see [`crate::edge::capture`]). Off unless said. An endpoint may override
//! `enabled` and `max_bytes` with its own `payload_capture:`.
//!
//! ```yaml
//! payload_capture:
//!   enabled: true
//!   max_bytes: 16384          # per body, after redaction
//!   redact:                   # regular expressions; a group named `secret` limits the
//!     - 'MRN-\d{6}'           # replacement to that group
//!     - 'ssn"\s*:\s*"(?P<secret>[^"]+)'
//! endpoints:
//!   - name: chat
//!     payload_capture: {enabled: false}
//! ```

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::validate::Problems;

/// Default cap of one captured body, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024;
/// Largest allowed cap: two bodies this size keep an event well under NATS's default
/// 1 MiB message limit.
pub const MAX_MAX_BYTES: usize = 256 * 1024;

/// The top-level `payload_capture:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPayloadCapture {
    /// Capture bodies (default false).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Cap of one captured body, in bytes.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Extra patterns to redact.
    #[serde(default)]
    pub redact: Vec<String>,
}

/// An endpoint's `payload_capture:` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaptureOverride {
    /// Capture this endpoint's bodies, whatever the top level says.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// This endpoint's cap, in bytes.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// Payload capture for the whole edge.
#[derive(Debug, Clone)]
pub struct PayloadCapture {
    /// Whether bodies are captured (endpoints may override).
    pub enabled: bool,
    /// Cap of one captured body, in bytes, after redaction.
    pub max_bytes: usize,
    /// Extra patterns redacted, besides the built-in secret shapes.
    pub redact: Vec<Regex>,
}

impl Default for PayloadCapture {
    fn default() -> Self {
        Self {
            enabled: false,
            max_bytes: DEFAULT_MAX_BYTES,
            redact: Vec::new(),
        }
    }
}

/// An endpoint's override of [`PayloadCapture`]; `None` fields follow the top level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureOverride {
    /// Capture on or off for this endpoint.
    pub enabled: Option<bool>,
    /// This endpoint's cap.
    pub max_bytes: Option<usize>,
}

fn max_bytes(value: Option<usize>, path: &str, problems: &mut Problems) -> Option<usize> {
    let value = value?;
    if value == 0 || value > MAX_MAX_BYTES {
        problems.add(
            format!("{path}.max_bytes"),
            format!("must be between 1 and {MAX_MAX_BYTES}"),
        );
    }
    Some(value)
}

/// Validates the top-level section.
pub(super) fn payload_capture(raw: RawPayloadCapture, problems: &mut Problems) -> PayloadCapture {
    let path = "payload_capture";
    let max_bytes = max_bytes(raw.max_bytes, path, problems).unwrap_or(DEFAULT_MAX_BYTES);
    let redact = raw
        .redact
        .iter()
        .enumerate()
        .filter_map(|(index, pattern)| {
            let field = format!("{path}.redact[{index}]");
            match Regex::new(pattern) {
                Ok(regex) if regex.is_match("") => {
                    problems.add(field, "matches the empty string");
                    None
                }
                Ok(regex) => Some(regex),
                Err(error) => {
                    problems.add(field, format!("not a valid regular expression: {error}"));
                    None
                }
            }
        })
        .collect();
    PayloadCapture {
        enabled: raw.enabled.unwrap_or(false),
        max_bytes,
        redact,
    }
}

/// Validates an endpoint's override (`path` is the endpoint's).
pub(super) fn capture_override(
    raw: Option<RawCaptureOverride>,
    path: &str,
    problems: &mut Problems,
) -> CaptureOverride {
    let Some(raw) = raw else {
        return CaptureOverride::default();
    };
    CaptureOverride {
        enabled: raw.enabled,
        max_bytes: max_bytes(raw.max_bytes, &format!("{path}.payload_capture"), problems),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use super::*;
    use crate::config::{Config, Mode, load_str};

    fn load(yaml: &str) -> Result<Config, String> {
        load_str(
            &format!("auth: none\n{yaml}"),
            Mode::Serve,
            &HashMap::<String, String>::new(),
        )
        .map_err(|e| e.to_string())
    }

    const ENDPOINT: &str = "endpoints:\n  - name: chat\n    kind: chat\n    targets: [{provider: mock, model: echo}]\n";

    #[test]
    fn off_by_default() {
        let config = load("").unwrap();
        assert!(!config.payload_capture.enabled);
        assert_eq!(config.payload_capture.max_bytes, DEFAULT_MAX_BYTES);
        assert!(config.payload_capture.redact.is_empty());
    }

    #[test]
    fn every_setting_and_an_endpoint_override() {
        let config = load(&format!(
            "payload_capture:\n  enabled: true\n  max_bytes: 100\n  redact: ['MRN-\\d+', 'x(?P<secret>y)']\n{ENDPOINT}    payload_capture: {{enabled: false, max_bytes: 10}}\n"
        ))
        .unwrap();
        assert!(config.payload_capture.enabled);
        assert_eq!(config.payload_capture.max_bytes, 100);
        assert_eq!(config.payload_capture.redact.len(), 2);
        assert_eq!(
            config.endpoints["chat"].payload_capture,
            CaptureOverride {
                enabled: Some(false),
                max_bytes: Some(10)
            }
        );
    }

    #[test]
    fn problems_name_their_field() {
        let error = load("payload_capture:\n  max_bytes: 0\n  redact: ['ok', '(unclosed', 'a*']\n")
            .unwrap_err();
        for expected in [
            "payload_capture.max_bytes: must be between",
            "payload_capture.redact[1]: not a valid regular expression",
            "payload_capture.redact[2]: matches the empty string",
        ] {
            assert!(error.contains(expected), "{expected} in {error}");
        }
        assert!(!error.contains("redact[0]"), "{error}");
        let error = load(&format!(
            "{ENDPOINT}    payload_capture: {{max_bytes: 999999999}}\n"
        ))
        .unwrap_err();
        assert!(
            error.contains("endpoints[0].payload_capture.max_bytes"),
            "{error}"
        );
        let error = load("payload_capture: {enable: true}\n").unwrap_err();
        assert!(error.contains("enable"), "{error}");
    }
}
