//! Google service-account authentication for Vertex AI: a signed JWT (RS256) exchanged at
//! the key's `token_uri` for an OAuth2 access token, cached until shortly before it
//! expires. A cached token is read without a lock; only a refresh is serialised, so one
//! request refreshes while the others keep the token they have or wait for the new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::providers::{ProviderError, TimeoutPhase, UpstreamError};
use crate::secret::Secret;

/// The OAuth2 scope Vertex AI needs.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, when the key names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for the signed assertion.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Refresh this long before the token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a service-account key file that matter here.
#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Token {
    value: Secret,
    refresh_after: Instant,
}

/// Access tokens for one service account.
pub struct TokenSource {
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    signing_key: jsonwebtoken::EncodingKey,
    cached: ArcSwap<Option<Token>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

fn auth_error(message: impl Into<String>) -> ProviderError {
    ProviderError::Status(Box::new(UpstreamError {
        status: http::StatusCode::UNAUTHORIZED,
        message: message.into(),
        error_type: Some("UNAUTHENTICATED".into()),
        code: None,
        param: None,
        retry_after: None,
    }))
}

impl TokenSource {
    /// Parses a service-account key (the JSON document).
    pub fn new(key: &Secret) -> Result<Self, ProviderError> {
        let file: KeyFile = serde_json::from_str(key.expose())
            .map_err(|_| auth_error("the Vertex service-account key is not valid JSON"))?;
        let signing_key = jsonwebtoken::EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|_| {
                auth_error("the Vertex service-account private key is not an RSA PEM key")
            })?;
        Ok(Self {
            client_email: file.client_email,
            key_id: file.private_key_id,
            token_uri: file
                .token_uri
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            signing_key,
            cached: ArcSwap::from_pointee(None),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Option<String> {
        let cached = self.cached.load();
        cached
            .as_ref()
            .as_ref()
            .filter(|token| Instant::now() < token.refresh_after)
            .map(|token| token.value.expose().to_owned())
    }

    /// A valid access token, fetching a new one when the cached one is about to expire.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<String, ProviderError> {
        if let Some(token) = self.current() {
            return Ok(token);
        }
        let _refreshing = self.refresh.lock().await;
        if let Some(token) = self.current() {
            return Ok(token);
        }
        let fetched = self.fetch(http, timeout).await?;
        let value = fetched.value.expose().to_owned();
        self.cached.store(Arc::new(Some(fetched)));
        Ok(value)
    }

    fn assertion(&self) -> Result<String, ProviderError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|_| auth_error("signing the Vertex token request failed"))
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Token, ProviderError> {
        let assertion = self.assertion()?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let started = Instant::now();
        let response = http
            .post(&self.token_uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::FirstByte))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::Total))?;
        if !status.is_success() {
            // Google's token errors are `{"error": "...", "error_description": "..."}`.
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    let error = v.get("error")?.as_str()?.to_owned();
                    let description = v
                        .get("error_description")
                        .and_then(|d| d.as_str())
                        .unwrap_or("");
                    Some(format!("{error}: {description}"))
                })
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(auth_error(format!(
                "the Vertex service account could not get an access token ({detail})"
            )));
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|_| ProviderError::InvalidResponse {
                detail: "the token endpoint answered without an access_token".into(),
            })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        Ok(Token {
            value: Secret::new(parsed.access_token),
            refresh_after: started + lifetime.saturating_sub(REFRESH_MARGIN),
        })
    }
}

/// Token sources by service account, created on first use. Reads are a lock-free load;
/// a new account is added copy-on-write.
#[derive(Debug, Default)]
pub struct TokenSources {
    sources: ArcSwap<HashMap<String, Arc<TokenSource>>>,
}

impl TokenSources {
    /// The source for `key` (the JSON key document).
    pub fn get(&self, key: &Secret) -> Result<Arc<TokenSource>, ProviderError> {
        if let Some(source) = self.sources.load().get(key.expose()) {
            return Ok(source.clone());
        }
        let source = Arc::new(TokenSource::new(key)?);
        self.sources.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.entry(key.expose().to_owned())
                .or_insert_with(|| source.clone());
            next
        });
        Ok(self
            .sources
            .load()
            .get(key.expose())
            .cloned()
            .unwrap_or(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str = include_str!("../../../tests/fixtures/vertex/test-key.pem");
    const TEST_PUBLIC_KEY: &str = include_str!("../../../tests/fixtures/vertex/test-key.pub.pem");

    fn key_json(token_uri: &str) -> Secret {
        Secret::new(
            serde_json::json!({
                "type": "service_account",
                "client_email": "gateway@test-project.iam.gserviceaccount.com",
                "private_key": TEST_KEY,
                "private_key_id": "key-1",
                "token_uri": token_uri,
            })
            .to_string(),
        )
    }

    #[test]
    fn the_assertion_is_a_valid_rs256_jwt_for_the_token_uri() {
        let source = TokenSource::new(&key_json("https://oauth2.example/token")).unwrap();
        let jwt = source.assertion().unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://oauth2.example/token"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation).unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some("key-1"));
        assert_eq!(
            decoded.claims["iss"],
            "gateway@test-project.iam.gserviceaccount.com"
        );
        assert_eq!(decoded.claims["scope"], SCOPE);
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let error = TokenSource::new(&Secret::new("{not json")).unwrap_err();
        assert!(!error.to_string().contains("{not json"));
        let bad_pem = Secret::new(
            serde_json::json!({"client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"})
                .to_string(),
        );
        let error = TokenSource::new(&bad_pem).unwrap_err();
        assert!(!error.to_string().contains("nope"));
    }

    #[test]
    fn one_source_per_account() {
        let sources = TokenSources::default();
        let key = key_json("https://oauth2.example/token");
        let a = sources.get(&key).unwrap();
        let b = sources.get(&key).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
