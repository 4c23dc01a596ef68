//! Payload capture: the request and response bodies a usage event carries when
//! `payload_capture` is on, redacted ([`redact`]) before they leave the edge and capped.
//!
//! [`Capturer`] is built once per config generation (in the [`Runtime`](super::runtime)
//! snapshot), and only when some endpoint captures: with capture off everywhere a request
//! copies nothing. A request's [`Capture`], held by its usage record, keeps the first bytes
//! of each body (the cap plus a look-ahead, never more, however long the body or stream)
//! and the secrets the request itself presented; the redaction and the cut run once, when
//! the record closes.
//!
//! What is captured: the request body as received; the response body as sent — the JSON
//! answer, a provider error's JSON, or for a streamed answer the SSE bytes as the client
//! received them (frames included). The raw proxy's bodies are captured as text (invalid
//! UTF-8 shown as U+FFFD); a compressed proxied answer is not captured.

pub mod redact;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use http::{HeaderMap, HeaderName};

use self::redact::{LOOKAHEAD, MIN_SECRET_LEN, Redactor, Window};
use crate::config::{Config, Credentials};
use crate::usage::Payload;

/// Request headers whose values are credentials, always redacted from bodies.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "x-goog-api-key", "api-key"];

/// Whether and how much one endpoint captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    enabled: bool,
    max_bytes: usize,
}

/// One config generation's capture settings and redactor.
#[derive(Debug)]
pub struct Capturer {
    default: Policy,
    endpoints: HashMap<String, Policy>,
    redactor: Redactor,
    /// Client headers that carry a provider key (`credentials.from_header`).
    forwarded_credentials: Vec<HeaderName>,
    /// The longest cap of any endpoint.
    largest_cap: usize,
}

impl Capturer {
    /// The capturer of `config`, or `None` when no endpoint captures.
    pub fn for_config(config: &Config) -> Option<Arc<Self>> {
        let settings = &config.payload_capture;
        let default = Policy {
            enabled: settings.enabled,
            max_bytes: settings.max_bytes,
        };
        let endpoints: HashMap<String, Policy> = config
            .endpoints
            .values()
            .map(|endpoint| {
                let over = endpoint.payload_capture;
                let policy = Policy {
                    enabled: over.enabled.unwrap_or(default.enabled),
                    max_bytes: over.max_bytes.unwrap_or(default.max_bytes),
                };
                (endpoint.name.clone(), policy)
            })
            .collect();
        if !default.enabled && !endpoints.values().any(|p| p.enabled) {
            return None;
        }
        let mut secrets = Vec::new();
        let mut forwarded_credentials = Vec::new();
        for target in config.endpoints.values().flat_map(|e| e.candidates()) {
            match &target.credentials {
                Credentials::None | Credentials::ServiceAccount(_) => {}
                Credentials::ApiKey(key) => secrets.push(key.expose().to_owned()),
                Credentials::FromClientHeader(name) => forwarded_credentials.push(name.clone()),
                Credentials::Aws {
                    access_key_id,
                    secret_access_key,
                    session_token,
                } => {
                    secrets.push(access_key_id.clone());
                    secrets.push(secret_access_key.expose().to_owned());
                    secrets.extend(session_token.iter().map(|t| t.expose().to_owned()));
                }
            }
        }
        let largest_cap = endpoints
            .values()
            .map(|p| p.max_bytes)
            .chain([default.max_bytes])
            .max()
            .unwrap_or(default.max_bytes);
        Some(Arc::new(Self {
            default,
            endpoints,
            redactor: Redactor::new(settings.redact.clone(), secrets),
            forwarded_credentials,
            largest_cap,
        }))
    }

    fn policy(&self, endpoint: Option<&str>) -> Policy {
        endpoint
            .and_then(|name| self.endpoints.get(name))
            .copied()
            .unwrap_or(self.default)
    }
}

/// One request's capture: the first bytes of its bodies and its own secrets.
#[derive(Debug)]
pub struct Capture {
    capturer: Arc<Capturer>,
    /// Secrets the request presented (its gateway key, a forwarded provider key).
    secrets: Vec<String>,
    lookahead: usize,
    request: Option<Window>,
    response: Option<Window>,
}

impl Capture {
    /// A capture under `capturer`'s settings.
    pub fn new(capturer: Arc<Capturer>) -> Self {
        let lookahead = LOOKAHEAD.max(capturer.redactor.longest_secret());
        let window = capturer.largest_cap + lookahead;
        Self {
            capturer,
            secrets: Vec::new(),
            lookahead,
            request: None,
            response: Some(Window::new(window)),
        }
    }

    /// Keeps the first bytes of the request `body` and the credentials in `headers`.
    pub fn request(&mut self, headers: &HeaderMap, body: &[u8]) {
        self.secrets = presented_secrets(headers, &self.capturer.forwarded_credentials);
        let longest = self.secrets.iter().map(String::len).max().unwrap_or(0);
        self.lookahead = self.lookahead.max(longest);
        let limit = self.capturer.largest_cap + self.lookahead;
        let mut window = Window::new(limit);
        window.push(body);
        self.request = Some(window);
        if let Some(response) = &mut self.response
            && response.is_empty()
        {
            *response = Window::new(limit);
        }
    }

    /// Adds a piece of the response body as the client receives it.
    pub fn response(&mut self, chunk: &[u8]) {
        if let Some(window) = &mut self.response {
            window.push(chunk);
        }
    }

    /// Leaves the response out (a body that is not text, like a compressed one).
    pub fn skip_response(&mut self) {
        self.response = None;
    }

    /// The redacted, capped bodies (request, response), if `endpoint` captures; a body
    /// never seen (a request refused before it was read, an answer never begun) is `None`.
    pub fn finish(self, endpoint: Option<&str>) -> (Option<Payload>, Option<Payload>) {
        let policy = self.capturer.policy(endpoint);
        if !policy.enabled {
            return (None, None);
        }
        let one = |window: Option<&Window>| {
            window.filter(|w| !w.is_empty()).map(|window| {
                redact::payload(
                    window,
                    &self.capturer.redactor,
                    &self.secrets,
                    policy.max_bytes,
                    self.lookahead,
                )
            })
        };
        (one(self.request.as_ref()), one(self.response.as_ref()))
    }
}

/// The credentials a request presented: the `Authorization` value (a bearer token, a
/// Basic blob and its password), `x-api-key`, `x-goog-api-key`, `api-key` and the
/// headers that forward a provider key.
fn presented_secrets(headers: &HeaderMap, forwarded: &[HeaderName]) -> Vec<String> {
    let mut out = Vec::new();
    let names = CREDENTIAL_HEADERS
        .iter()
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .chain(forwarded.iter().cloned());
    for name in names {
        for value in headers.get_all(&name) {
            let Ok(value) = value.to_str() else { continue };
            let value = value.trim();
            out.push(value.to_owned());
            if let Some((scheme, rest)) = value.split_once(' ') {
                let rest = rest.trim();
                out.push(rest.to_owned());
                if scheme.eq_ignore_ascii_case("basic")
                    && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest)
                    && let Ok(text) = String::from_utf8(decoded)
                    && let Some((_, password)) = text.split_once(':')
                {
                    out.push(password.to_owned());
                }
            }
        }
    }
    out.retain(|s| s.len() >= MIN_SECRET_LEN);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap as Env;

    use super::*;
    use crate::config::{Mode, load_str};

    fn capturer(yaml: &str) -> Option<Arc<Capturer>> {
        let env: Env<String, String> = [(
            "PROVIDER_KEY".to_owned(),
            "prov-key-abcdef123456".to_owned(),
        )]
        .into();
        let config = load_str(
            &format!(
                "auth: none\n{yaml}endpoints:
  - name: chat
    kind: chat
    targets: [{{provider: openai, model: m, credentials: {{api_key: $PROVIDER_KEY}}}}]
  - name: quiet
    kind: chat
    targets: [{{provider: openai, model: m, credentials: {{from_header: x-provider-key}}}}]
    payload_capture: {{enabled: false}}
"
            ),
            Mode::Serve,
            &env,
        )
        .unwrap();
        Capturer::for_config(&config)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn off_everywhere_means_no_capturer() {
        assert!(capturer("").is_none());
        assert!(capturer("payload_capture: {enabled: false}\n").is_none());
    }

    #[test]
    fn a_non_streamed_exchange_is_captured_redacted() {
        let capturer = capturer("payload_capture: {enabled: true, max_bytes: 64}\n").unwrap();
        let mut capture = Capture::new(capturer);
        capture.request(
            &headers(&[("authorization", "Bearer gw-key-0123456789")]),
            br#"{"messages":"my key is gw-key-0123456789 and prov-key-abcdef123456"}"#,
        );
        capture.response(br#"{"choices":[{"text":"ok"}]}"#);
        let (request, response) = capture.finish(Some("chat"));
        let request = request.unwrap();
        assert_eq!(
            request.body,
            r#"{"messages":"my key is [REDACTED] and [REDACTED]"}"#
        );
        assert!(!request.truncated);
        let response = response.unwrap();
        assert_eq!(response.body, r#"{"choices":[{"text":"ok"}]}"#);
        assert!(!response.truncated);
    }

    #[test]
    fn a_stream_is_captured_to_the_cap_however_long() {
        let capturer = capturer("payload_capture: {enabled: true, max_bytes: 100}\n").unwrap();
        let mut capture = Capture::new(capturer);
        capture.request(&HeaderMap::new(), b"{}");
        let frame = b"data: {\"choices\":[{\"delta\":{\"content\":\"word \"}}]}\n\n";
        for _ in 0..10_000 {
            capture.response(frame);
        }
        let (_, response) = capture.finish(Some("chat"));
        let response = response.unwrap();
        assert!(response.truncated);
        assert!(response.body.len() <= 100);
        assert!(response.body.starts_with("data: {\"choices\""));
    }

    #[test]
    fn an_endpoint_override_turns_capture_off() {
        let capturer = capturer("payload_capture: {enabled: true}\n").unwrap();
        let mut capture = Capture::new(capturer);
        capture.request(&HeaderMap::new(), b"{}");
        assert_eq!(capture.finish(Some("quiet")), (None, None));
    }

    #[test]
    fn presented_credentials_are_collected() {
        let basic = base64::engine::general_purpose::STANDARD.encode("user:basic-password-1");
        let found = presented_secrets(
            &headers(&[
                ("authorization", &format!("Basic {basic}")),
                ("x-api-key", "x-api-key-value-1"),
                ("x-provider-key", "forwarded-key-123"),
                ("api-key", "short"),
            ]),
            &[HeaderName::from_static("x-provider-key")],
        );
        for expected in [
            basic.as_str(),
            "basic-password-1",
            "x-api-key-value-1",
            "forwarded-key-123",
        ] {
            assert!(
                found.iter().any(|s| s == expected),
                "{expected} in {found:?}"
            );
        }
        assert!(!found.iter().any(|s| s == "short"));
    }
}
