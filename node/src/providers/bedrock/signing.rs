//! Authenticating Bedrock requests: AWS Signature Version 4 with AWS's own signer
//! (`aws-sigv4`, service `bedrock`, the target's region, the session token sent and signed
//! as `x-amz-security-token`), or a Bedrock API key sent as `Authorization: Bearer`. Also the
//! one path encoding AWS requires for model ids (`:` and `/` in a path segment).
//!
//! Owns no I/O and logs nothing: the secret key and session token go only into the signer
//! and the headers it returns.

use std::time::SystemTime;

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};

use crate::secret::Secret;

/// The signing name of Bedrock Runtime.
pub const SERVICE: &str = "bedrock";

/// Static AWS credentials of one target.
#[derive(Debug, Clone, Copy)]
pub struct AwsKeys<'a> {
    /// Access key id (not secret; part of the signature's scope).
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret_access_key: &'a Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<&'a Secret>,
}

/// Why a request could not be signed. Never carries a credential.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    /// The request has a body that is not in memory (streams are never signed here).
    #[error("the request body is not buffered, so it cannot be signed")]
    UnbufferedBody,
    /// The signer refused the request or the credentials (for example a header value or
    /// session token that is not a valid header value).
    #[error("the AWS signer refused the request: {0}")]
    Signer(&'static str),
}

/// Signs `request` in place with SigV4: adds `x-amz-date`, `authorization` and, with
/// temporary credentials, `x-amz-security-token`. Every header already on the request is
/// signed, as is the body's SHA-256.
pub fn sign_request(
    request: &mut reqwest::Request,
    keys: AwsKeys<'_>,
    region: &str,
    time: SystemTime,
) -> Result<(), SigningError> {
    let body: &[u8] = match request.body() {
        None => &[],
        Some(body) => body.as_bytes().ok_or(SigningError::UnbufferedBody)?,
    };
    let mut headers = Vec::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        let value = value
            .to_str()
            .map_err(|_| SigningError::Signer("a header value is not visible ASCII"))?;
        headers.push((name.as_str(), value));
    }
    let identity: Identity = AwsCredentials::new(
        keys.access_key_id,
        keys.secret_access_key.expose(),
        keys.session_token.map(|t| t.expose().to_owned()),
        None,
        "floodgate-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| SigningError::Signer("incomplete signing parameters"))?
        .into();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| SigningError::Signer("the request URL or headers cannot be signed"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|_| SigningError::Signer("the credentials or headers cannot be signed"))?
        .into_parts();
    let (signed_headers, _params) = instructions.into_parts();
    for header in signed_headers {
        let name = HeaderName::from_static(header.name());
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| SigningError::Signer("a signed header is not a valid header value"))?;
        value.set_sensitive(header.sensitive() || name == http::header::AUTHORIZATION);
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

/// Adds a Bedrock API key as `Authorization: Bearer`, marked sensitive.
pub fn bearer(request: &mut reqwest::Request, key: &str) -> Result<(), SigningError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| SigningError::Signer("the API key is not a valid header value"))?;
    value.set_sensitive(true);
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, value);
    Ok(())
}

/// Percent-encodes one URL path segment as AWS does for `@httpLabel` members: every byte
/// but the RFC 3986 unreserved characters, so `anthropic.claude-v2:1` becomes
/// `anthropic.claude-v2%3A1` and an ARN's `/` becomes `%2F`. (The signer then encodes the
/// path once more for the canonical request, as SigV4 requires for every service but S3.)
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 8);
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(secret: &'a Secret, token: Option<&'a Secret>) -> AwsKeys<'a> {
        AwsKeys {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: secret,
            session_token: token,
        }
    }

    fn request(url: &str) -> reqwest::Request {
        crate::http_client::install_crypto_provider();
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"messages":[]}"#)
            .build()
            .unwrap()
    }

    #[test]
    fn model_ids_are_encoded_as_one_segment() {
        assert_eq!(
            encode_segment("anthropic.claude-3-5-sonnet-20240620-v1:0"),
            "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
        );
        assert_eq!(
            encode_segment("arn:aws:bedrock:us-east-1:1:inference-profile/us.x"),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x"
        );
        assert_eq!(encode_segment("a b~"), "a%20b~");
    }

    #[test]
    fn signing_adds_date_scope_and_signature() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let mut req =
            request("https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse");
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        sign_request(&mut req, keys(&secret, None), "us-east-1", time).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert!(req.headers()["authorization"].is_sensitive());
        assert_eq!(req.headers()["x-amz-date"], "20231114T221320Z");
        assert!(!req.headers().contains_key("x-amz-security-token"));
        assert!(!auth.contains(secret.expose()));
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let token = Secret::new("FwoGZXIvYXdzEXAMPLETOKEN");
        let mut req = request("https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse");
        sign_request(
            &mut req,
            keys(&secret, Some(&token)),
            "eu-west-1",
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(req.headers()["x-amz-security-token"], token.expose());
        assert!(req.headers()["x-amz-security-token"].is_sensitive());
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.contains("/eu-west-1/bedrock/aws4_request"));
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
    }

    #[test]
    fn the_signature_covers_the_body() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse";
        let mut a = request(url);
        sign_request(&mut a, keys(&secret, None), "us-east-1", time).unwrap();
        let mut b = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"messages":[1]}"#)
            .build()
            .unwrap();
        sign_request(&mut b, keys(&secret, None), "us-east-1", time).unwrap();
        assert_ne!(a.headers()["authorization"], b.headers()["authorization"]);
    }

    /// Signs with a session token under a `trace` subscriber and returns what it logged.
    fn signing_logs(filter: tracing_subscriber::EnvFilter) -> String {
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || SharedWriter(sink.clone()))
            .finish();
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let token = Secret::new("FwoGZXIvYXdzEXAMPLETOKEN");
        tracing::subscriber::with_default(subscriber, || {
            // Other tests' subscribers may have cached this callsite's interest as "never":
            // re-evaluate it now that this thread's subscriber is in place.
            tracing::callsite::rebuild_interest_cache();
            let mut req =
                request("https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse");
            sign_request(
                &mut req,
                keys(&secret, Some(&token)),
                "us-east-1",
                SystemTime::now(),
            )
            .unwrap();
        });
        String::from_utf8(logs.lock().unwrap().clone()).unwrap()
    }

    struct SharedWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_session_token_never_reaches_the_logs() {
        // Precondition: the signer traces the token when nothing stops it. Other tests'
        // subscribers on other threads can race tracing's callsite cache, so allow a few
        // tries before concluding the signer no longer logs it.
        let signer_traces_token = (0..20).any(|_| {
            signing_logs(tracing_subscriber::EnvFilter::new("trace"))
                .contains("FwoGZXIvYXdzEXAMPLETOKEN")
        });
        assert!(
            signer_traces_token,
            "the signer is expected to trace the token; this test guards against it"
        );
        let quiet = signing_logs(crate::telemetry::quiet_secrets(
            tracing_subscriber::EnvFilter::new("trace,aws_sigv4=trace"),
        ));
        assert!(!quiet.contains("FwoGZXIvYXdzEXAMPLETOKEN"), "{quiet}");
    }

    #[test]
    fn bearer_keys_are_sensitive() {
        let mut req = request("https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse");
        bearer(&mut req, "ABSKexample").unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer ABSKexample");
        assert!(req.headers()["authorization"].is_sensitive());
    }
}
