//! Environment references in config strings: `$VAR` and `${VAR}` anywhere in a string value
//! are replaced at load time; `$$` is a literal `$`. The substituted values are remembered so
//! that later error messages can be scrubbed of them (they are often secrets).

use serde_json::Value;

use super::ConfigError;

/// Looks environment variables up; tests pass a map instead of mutating the process env.
pub trait Env {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Replaces environment references in every string of `value`, in place. Returns the values
/// that were substituted, for scrubbing error messages.
pub fn interpolate(value: &mut Value, env: &dyn Env) -> Result<Vec<String>, ConfigError> {
    let mut substituted = Vec::new();
    walk(value, &mut String::new(), env, &mut substituted)?;
    Ok(substituted)
}

fn walk(
    value: &mut Value,
    path: &mut String,
    env: &dyn Env,
    substituted: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains('$') => {
            *text = expand(text, path, env, substituted)?;
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                walk(item, path, env, substituted)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(item, path, env, substituted)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(
    text: &str,
    path: &str,
    env: &dyn Env,
    substituted: &mut Vec<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| ConfigError::Field {
                path: path.to_owned(),
                message: "unclosed `${` in environment reference".to_owned(),
            })?;
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            // Not a reference (`$5`, a lone `$`): keep it literally.
            out.push('$');
            rest = after;
            continue;
        }
        let found = env.get(name).ok_or_else(|| ConfigError::Field {
            path: path.to_owned(),
            message: format!("environment variable `{name}` is not set"),
        })?;
        if !found.is_empty() {
            substituted.push(found.clone());
        }
        out.push_str(&found);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("KEY".to_owned(), "sk-secret".to_owned()),
            ("HOST".to_owned(), "example.com".to_owned()),
        ])
    }

    #[test]
    fn expands_both_forms_and_escapes() {
        let mut value = json!({"a": "$KEY", "b": ["https://${HOST}/v1"], "c": "$$KEY costs $5"});
        let seen = interpolate(&mut value, &env()).expect("expands");
        assert_eq!(
            value,
            json!({"a": "sk-secret", "b": ["https://example.com/v1"], "c": "$KEY costs $5"})
        );
        assert_eq!(seen, vec!["sk-secret".to_owned(), "example.com".to_owned()]);
    }

    #[test]
    fn missing_variable_names_the_field() {
        let mut value = json!({"endpoints": [{"targets": [{"api_key": "${NOPE}"}]}]});
        let err = interpolate(&mut value, &env()).expect_err("missing var");
        assert_eq!(
            err.to_string(),
            "endpoints[0].targets[0].api_key: environment variable `NOPE` is not set"
        );
    }
}
