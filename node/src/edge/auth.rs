//! Gateway key authentication: `Authorization: Bearer`, `x-api-key` (Anthropic SDK style),
//! `x-goog-api-key` (Gemini clients) or the HTTP Basic password. Keys are compared by SHA-256, never kept or logged.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ErrorCode};
use crate::config::{Auth, KeyInfo};

/// The key presented by the client, from whichever header carries it.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(token.trim().to_owned());
        }
        if let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (_, password) = text.split_once(':')?;
            return Some(password.to_owned());
        }
    }
    ["x-api-key", "x-goog-api-key"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// Authenticates a request: `Ok(None)` when auth is off, the key's info when valid and not
/// expired.
pub fn authenticate(auth: &Auth, headers: &HeaderMap) -> Result<Option<Arc<KeyInfo>>, ApiError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    authenticate_at(auth, headers, now_ms)
}

/// [`authenticate`] at `now_ms` (Unix milliseconds).
fn authenticate_at(
    auth: &Auth,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<Option<Arc<KeyInfo>>, ApiError> {
    let Auth::Keys(keys) = auth else {
        return Ok(None);
    };
    let Some(key) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::MissingApiKey,
            "No gateway key provided. Send it as `Authorization: Bearer <key>`, `x-api-key`, or the HTTP Basic password.",
        ));
    };
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let Some(info) = keys.find(&hash) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey,
            "Invalid gateway key.",
        ));
    };
    if info.expires_at.is_some_and(|expiry| now_ms >= expiry) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::ExpiredApiKey,
            "This gateway key has expired. Ask an administrator for a new one.",
        ));
    }
    Ok(Some(Arc::clone(info)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayKeys;

    fn auth_with(key: &str) -> Auth {
        auth_expiring(key, None)
    }

    fn auth_expiring(key: &str, expires_at: Option<u64>) -> Auth {
        let mut keys = GatewayKeys::default();
        keys.insert(
            Sha256::digest(key.as_bytes()).into(),
            KeyInfo {
                id: "team-a".into(),
                endpoints: vec![],
                team: None,
                user: None,
                expires_at,
            },
        );
        Auth::Keys(keys)
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
        map
    }

    #[test]
    fn accepts_bearer_x_api_key_and_basic() {
        let auth = auth_with("fg-secret-1");
        let basic = base64::engine::general_purpose::STANDARD.encode("user:fg-secret-1");
        for map in [
            headers("authorization", "Bearer fg-secret-1"),
            headers("x-api-key", "fg-secret-1"),
            headers("authorization", &format!("Basic {basic}")),
        ] {
            let info = authenticate_at(&auth, &map, 0)
                .expect("accepted")
                .expect("key");
            assert_eq!(info.id, "team-a");
        }
    }

    #[test]
    fn rejects_missing_and_wrong_keys_without_echoing_them() {
        let auth = auth_with("fg-secret-1");
        let missing = authenticate_at(&auth, &HeaderMap::new(), 0).expect_err("missing");
        assert_eq!(missing.code, ErrorCode::MissingApiKey);
        let wrong = authenticate_at(&auth, &headers("authorization", "Bearer fg-wrong-key"), 0)
            .expect_err("wrong");
        assert_eq!(wrong.code, ErrorCode::InvalidApiKey);
        assert!(!wrong.body().to_string().contains("fg-wrong-key"));
    }

    #[test]
    fn refuses_a_key_from_its_expiry_on() {
        let auth = auth_expiring("fg-secret-1", Some(5_000));
        let map = headers("authorization", "Bearer fg-secret-1");
        let info = authenticate_at(&auth, &map, 4_999).expect("before expiry");
        assert_eq!(info.expect("key").id, "team-a");
        for now in [5_000, 9_000] {
            let err = authenticate_at(&auth, &map, now).expect_err("expired");
            assert_eq!(err.code, ErrorCode::ExpiredApiKey);
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
            assert!(!err.body().to_string().contains("fg-secret-1"));
        }
    }
}
