//! Secret strings (provider API keys, gateway keys) that never print themselves.
//!
//! A [`Secret`] has no `Display`, and its `Debug` shows only the masked form, so a secret
//! that slips into a log line, an error or a trace shows up as `sk-…abcd`, never whole.

use std::fmt;

/// A string that must never appear in a response, a log line, a trace or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (an upstream header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked form safe to show: the first three and last four characters of a long
    /// secret (`sk-…abcd`), or only `…` for a short one.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 12 {
            return "…".to_owned();
        }
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_long_and_short_secrets() {
        let long = Secret::new("sk-proj-1234567890abcd");
        assert_eq!(long.masked(), "sk-…abcd");
        assert_eq!(format!("{long:?}"), "Secret(sk-…abcd)");
        assert_eq!(Secret::new("short").masked(), "…");
    }
}
