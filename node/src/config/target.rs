//! Validation of one target: provider, base URL, credentials and the provider-specific
//! fields (Azure deployment, cloud region and project, `max_tokens`, price override).

use super::model::{AzureTarget, Credentials, Target, Timeouts};
use super::raw::{RawCredentials, RawTarget};
use super::validate::{Problems, timeouts};
use crate::pricing;
use crate::providers::ProviderKind;
use crate::secret::Secret;

/// Validates a raw target; `None` when it cannot be used at all. Its timeouts are its own
/// overrides over `defaults` (the endpoint's).
pub(super) fn target(
    raw: RawTarget,
    path: &str,
    defaults: Timeouts,
    problems: &mut Problems,
) -> Option<Target> {
    let Some(provider) = ProviderKind::from_name(&raw.provider) else {
        problems.add(
            format!("{path}.provider"),
            format!(
                "unknown provider `{}` (expected one of: {})",
                raw.provider,
                ProviderKind::NAMES.join(", ")
            ),
        );
        return None;
    };
    if raw.model.trim().is_empty() {
        problems.add(format!("{path}.model"), "must not be empty");
    }
    let region = nonempty(raw.region);
    let project = nonempty(raw.project);
    match provider {
        ProviderKind::Bedrock if region.is_none() => {
            problems.add(
                format!("{path}.region"),
                "is required for provider `bedrock`",
            );
        }
        ProviderKind::Vertex => {
            if region.is_none() {
                problems.add(
                    format!("{path}.region"),
                    "is required for provider `vertex`",
                );
            }
            if project.is_none() {
                problems.add(
                    format!("{path}.project"),
                    "is required for provider `vertex`",
                );
            }
        }
        _ => {}
    }
    let api_base = api_base(
        raw.api_base.as_deref(),
        provider,
        region.as_deref(),
        path,
        problems,
    );
    let credentials = credentials(raw.credentials, provider, path, problems);
    let weight = raw.weight.unwrap_or(1);
    if weight == 0 {
        problems.add(format!("{path}.weight"), "must be greater than 0");
    }
    if raw.max_tokens == Some(0) {
        problems.add(format!("{path}.max_tokens"), "must be greater than 0");
    }
    let price = raw.price.and_then(|p| {
        let usd = pricing::UsdPrice {
            input: p.input,
            cached_input: p.cached_input,
            cache_write: p.cache_write,
            cache_write_1h: p.cache_write_1h,
            output: p.output,
        };
        usd.to_model_price()
            .map_err(|e| problems.add(format!("{path}.price"), e.to_string()))
            .ok()
    });
    let azure = match (provider, raw.azure) {
        (ProviderKind::AzureOpenAi, Some(azure)) => {
            if azure.api_version.trim().is_empty() {
                problems.add(format!("{path}.azure.api_version"), "must not be empty");
            }
            let bearer = match azure.auth.as_deref() {
                None | Some("api_key") => false,
                Some("bearer") => true,
                Some(other) => {
                    problems.add(
                        format!("{path}.azure.auth"),
                        format!("`{other}` must be api_key or bearer"),
                    );
                    false
                }
            };
            Some(AzureTarget {
                deployment: azure.deployment.unwrap_or_else(|| raw.model.clone()),
                api_version: azure.api_version,
                bearer,
            })
        }
        (ProviderKind::AzureOpenAi, None) => {
            problems.add(
                format!("{path}.azure"),
                "is required for provider `azure` (api_version, deployment)",
            );
            None
        }
        (_, Some(_)) => {
            problems.add(
                format!("{path}.azure"),
                "is only valid with provider `azure`",
            );
            None
        }
        (_, None) => None,
    };
    Some(Target {
        provider,
        model: raw.model,
        api_base,
        credentials,
        weight: weight.max(1),
        azure,
        organization: raw.organization,
        region,
        project,
        max_tokens: raw.max_tokens,
        price,
        timeouts: match raw.timeouts {
            Some(own) => timeouts(&own, defaults, &format!("{path}.timeouts"), problems),
            None => defaults,
        },
    })
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// The base URL: the configured one (validated), the provider's default, or one derived
/// from the region (Bedrock, Vertex).
fn api_base(
    configured: Option<&str>,
    provider: ProviderKind,
    region: Option<&str>,
    path: &str,
    problems: &mut Problems,
) -> String {
    if let Some(base) = configured.filter(|_| provider != ProviderKind::Mock) {
        return match url::Url::parse(base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                base.trim_end_matches('/').to_owned()
            }
            _ => {
                problems.add(
                    format!("{path}.api_base"),
                    "must be an absolute http:// or https:// URL",
                );
                String::new()
            }
        };
    }
    if let Some(default) = provider.default_api_base() {
        return default.to_owned();
    }
    match (provider, region) {
        (ProviderKind::Bedrock, Some(region)) => {
            format!("https://bedrock-runtime.{region}.amazonaws.com")
        }
        (ProviderKind::Vertex, Some("global")) => "https://aiplatform.googleapis.com".to_owned(),
        (ProviderKind::Vertex, Some(region)) => {
            format!("https://{region}-aiplatform.googleapis.com")
        }
        (ProviderKind::Bedrock | ProviderKind::Vertex, None) => String::new(),
        _ => {
            problems.add(
                format!("{path}.api_base"),
                format!("is required for provider `{provider}`"),
            );
            String::new()
        }
    }
}

fn credentials(
    raw: RawCredentials,
    provider: ProviderKind,
    path: &str,
    problems: &mut Problems,
) -> Credentials {
    let path = format!("{path}.credentials");
    let aws = raw.aws_access_key_id.is_some()
        || raw.aws_secret_access_key.is_some()
        || raw.aws_session_token.is_some();
    let service_account = raw.service_account.is_some() || raw.service_account_file.is_some();
    let given = [
        raw.api_key.is_some(),
        raw.from_header.is_some(),
        aws,
        service_account,
    ]
    .into_iter()
    .filter(|given| *given)
    .count();
    if given > 1 {
        problems.add(
            &path,
            "give one kind of credential: `api_key`, `from_header`, the `aws_*` keys, or `service_account`/`service_account_file`",
        );
        return Credentials::None;
    }
    if let Some(key) = raw.api_key.filter(|k| !k.is_empty()) {
        return Credentials::ApiKey(Secret::new(key));
    }
    if let Some(header) = raw.from_header {
        return match http::HeaderName::from_bytes(header.as_bytes()) {
            Ok(name) => Credentials::FromClientHeader(name),
            Err(_) => {
                problems.add(
                    format!("{path}.from_header"),
                    format!("`{header}` is not a valid header name"),
                );
                Credentials::None
            }
        };
    }
    if aws {
        if provider != ProviderKind::Bedrock {
            problems.add(&path, "`aws_*` keys are only valid with provider `bedrock`");
            return Credentials::None;
        }
        return match (raw.aws_access_key_id, raw.aws_secret_access_key) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Credentials::Aws {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: raw
                    .aws_session_token
                    .filter(|t| !t.is_empty())
                    .map(Secret::new),
            },
            _ => {
                problems.add(
                    &path,
                    "`aws_access_key_id` and `aws_secret_access_key` are both required",
                );
                Credentials::None
            }
        };
    }
    if service_account {
        if provider != ProviderKind::Vertex {
            problems.add(
                &path,
                "a service account is only valid with provider `vertex`",
            );
            return Credentials::None;
        }
        let json = match (raw.service_account, raw.service_account_file) {
            (Some(json), _) => json,
            (None, Some(file)) => match std::fs::read_to_string(&file) {
                Ok(json) => json,
                Err(e) => {
                    problems.add(
                        format!("{path}.service_account_file"),
                        format!("cannot read `{file}`: {e}"),
                    );
                    return Credentials::None;
                }
            },
            (None, None) => return Credentials::None,
        };
        let parsed: Option<serde_json::Value> = serde_json::from_str(&json).ok();
        let complete = parsed.as_ref().is_some_and(|v| {
            ["client_email", "private_key"]
                .iter()
                .all(|field| v.get(*field).and_then(serde_json::Value::as_str).is_some())
        });
        if !complete {
            problems.add(
                &path,
                "the service account must be a JSON key with `client_email` and `private_key`",
            );
            return Credentials::None;
        }
        return Credentials::ServiceAccount(Secret::new(json));
    }
    let required = match provider {
        _ if provider.key_optional() => None,
        ProviderKind::Bedrock => Some("`api_key` or `aws_access_key_id`/`aws_secret_access_key`"),
        ProviderKind::Vertex => Some("`service_account` or `service_account_file`"),
        _ => Some("`api_key`"),
    };
    if let Some(what) = required {
        let field = if what == "`api_key`" {
            format!("{path}.api_key")
        } else {
            path.clone()
        };
        problems.add(
            field,
            format!("{what} is required for provider `{provider}`"),
        );
    }
    Credentials::None
}
