//! Redaction of a captured body, then its cut to the cap: pure text work, no I/O.
//!
//! Everything that looks like a secret is found first — well-known key shapes
//! ([`BUILTIN`]), the configured patterns and literal secrets (the client's gateway key,
//! provider credentials) — and each match is replaced whole by [`MARKER`]. Only then is the
//! text cut, so a secret that straddles the cap is never half shown: its match began before
//! the cap and was replaced as a whole.
//!
//! The body is read through a window of the cap plus [`LOOKAHEAD`] bytes (more when a
//! literal secret is longer). When the body goes on past the window, nothing from the
//! window's last `lookahead` bytes is shown: a secret crossing the window's end could be
//! recognised there only in part.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use crate::usage::Payload;

/// What a redacted secret is replaced with.
pub const MARKER: &str = "[REDACTED]";

/// Bytes read past the cap so a secret that starts before the cap is seen whole.
pub const LOOKAHEAD: usize = 4096;

/// Literal secrets shorter than this are not redacted (they would match ordinary text);
/// gateway keys are at least 8 characters.
pub const MIN_SECRET_LEN: usize = 8;

/// Well-known secret shapes, always redacted. A group named `secret` limits the
/// replacement to that group (the field name stays readable).
pub const BUILTIN: &[&str] = &[
    // OpenAI and Anthropic keys (`sk-...`, `sk-proj-...`, `sk-ant-...`).
    r"sk-[A-Za-z0-9_-]{16,}",
    // Floodgate gateway keys.
    r"fg-[A-Za-z0-9_-]{43}",
    // Bearer tokens, wherever they appear.
    r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
    // AWS access key ids.
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    // AWS secret keys and session tokens written as a field.
    r#"(?i)aws_(?:secret_access_key|session_token)["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+=]{16,})"#,
    // API-key fields and headers (`x-api-key: ...`, `"api_key": "..."`, `apiKey=...`).
    r#"(?i)(?:x-api-key|x-goog-api-key|api[-_]?key)["']?\s*[:=]\s*["']?(?P<secret>[^\s"',;&}]{8,})"#,
    // Google API keys.
    r"AIza[0-9A-Za-z_-]{35}",
    // GitHub tokens.
    r"\bgh[pousr]_[A-Za-z0-9]{36,}",
    // PEM private keys, to their end or, when it is not in sight, to the end of the text.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|[\s\S]*)",
];

static BUILTIN_PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    // Each pattern is a constant checked by `every_builtin_pattern_compiles`.
    BUILTIN.iter().filter_map(|p| Regex::new(p).ok()).collect()
});

/// The patterns and literal secrets one config redacts.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// The configured patterns (the built-in ones are shared by every redactor).
    patterns: Vec<Regex>,
    /// Literal secrets from the config (provider credentials).
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for the built-in shapes, `patterns` and the literal `secrets`.
    pub fn new(patterns: Vec<Regex>, secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort();
        secrets.dedup();
        Self { patterns, secrets }
    }

    /// The longest literal secret of the config, in bytes.
    pub fn longest_secret(&self) -> usize {
        self.secrets.iter().map(String::len).max().unwrap_or(0)
    }

    /// Where `text` holds a secret: built-in shapes, configured patterns, the config's
    /// literal secrets and `extra` (the request's own); sorted, merged, never empty.
    pub fn find(&self, text: &str, extra: &[String]) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        for regex in BUILTIN_PATTERNS.iter().chain(&self.patterns) {
            matches(regex, text, &mut found);
        }
        for secret in self.secrets.iter().chain(extra) {
            if secret.len() >= MIN_SECRET_LEN {
                found.extend(
                    text.match_indices(secret.as_str())
                        .map(|(at, s)| at..at + s.len()),
                );
            }
        }
        merge(found)
    }
}

/// Every match of `regex` in `text`, or of its `secret` group when it has one.
fn matches(regex: &Regex, text: &str, out: &mut Vec<Range<usize>>) {
    let has_group = regex.capture_names().any(|name| name == Some("secret"));
    if has_group {
        out.extend(
            regex
                .captures_iter(text)
                .filter_map(|c| c.name("secret").or_else(|| c.get(0)))
                .map(|m| m.range()),
        );
    } else {
        out.extend(regex.find_iter(text).map(|m| m.range()));
    }
}

/// Sorts ranges and merges the ones that overlap or touch; drops empty ones.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// The largest char boundary of `text` at or below `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The first bytes of a body, as captured: at most the window's length, and the body's
/// whole length.
#[derive(Debug, Clone, Default)]
pub struct Window {
    bytes: Vec<u8>,
    total: usize,
    limit: usize,
}

impl Window {
    /// An empty window keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            total: 0,
            limit,
        }
    }

    /// Keeps what still fits of `chunk` and counts all of it.
    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..room.min(chunk.len())]);
        self.total = self.total.saturating_add(chunk.len());
    }

    /// Whether no byte was seen.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Whether the body went on past the window.
    fn partial(&self) -> bool {
        self.total > self.bytes.len()
    }

    /// The window as text: invalid UTF-8 becomes U+FFFD; a character cut by a partial
    /// window's end is dropped.
    fn text(&self) -> String {
        let bytes = if self.partial() {
            match std::str::from_utf8(&self.bytes) {
                Err(e) if e.error_len().is_none() => &self.bytes[..e.valid_up_to()],
                _ => &self.bytes[..],
            }
        } else {
            &self.bytes[..]
        };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// The captured body: the window redacted by `redactor` (with the request's `extra`
/// secrets), then cut to `max_bytes` on a character boundary, never inside [`MARKER`].
/// `lookahead`: the margin the window was read with past the cap.
pub fn payload(
    window: &Window,
    redactor: &Redactor,
    extra: &[String],
    max_bytes: usize,
    lookahead: usize,
) -> Payload {
    let text = window.text();
    let found = redactor.find(&text, extra);
    // Text past this point is never shown: with a partial window, a secret crossing the
    // window's end may be matched only in part there.
    let shown_until = if window.partial() {
        floor_boundary(&text, text.len().saturating_sub(lookahead))
    } else {
        text.len()
    };
    let mut body = String::with_capacity(max_bytes.min(text.len()));
    // How far into `text` the body accounts for, and whether it stopped at the cap.
    let mut covered = 0;
    let mut capped = false;
    for range in found {
        if range.start >= shown_until {
            break;
        }
        if !push_capped(&mut body, &text[covered..range.start], max_bytes)
            || body.len() + MARKER.len() > max_bytes
        {
            capped = true;
            break;
        }
        body.push_str(MARKER);
        covered = range.end;
    }
    if !capped && covered < shown_until {
        capped = !push_capped(&mut body, &text[covered..shown_until], max_bytes);
        covered = shown_until;
    }
    Payload {
        body,
        truncated: window.partial() || capped || covered < text.len(),
    }
}

/// Appends as much of `piece` as fits in `max_bytes`, on a character boundary; false when
/// some of it did not fit.
fn push_capped(body: &mut String, piece: &str, max_bytes: usize) -> bool {
    let room = max_bytes.saturating_sub(body.len());
    let take = floor_boundary(piece, room);
    body.push_str(&piece[..take]);
    take == piece.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn window(text: &str, limit: usize) -> Window {
        let mut window = Window::new(limit);
        window.push(text.as_bytes());
        window
    }

    fn redact(text: &str, max: usize, patterns: &[&str], extra: &[&str]) -> Payload {
        let redactor = Redactor::new(
            patterns.iter().map(|p| Regex::new(p).unwrap()).collect(),
            ["provider-secret-0123456789".to_owned()],
        );
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        payload(
            &window(text, max + LOOKAHEAD),
            &redactor,
            &extra,
            max,
            LOOKAHEAD,
        )
    }

    #[test]
    fn every_builtin_pattern_compiles() {
        assert_eq!(BUILTIN_PATTERNS.len(), BUILTIN.len());
    }

    #[test]
    fn well_known_secret_shapes_are_redacted() {
        let cases = [
            (
                "key sk-proj-abcdefghijklmnop1234 here",
                "key [REDACTED] here",
            ),
            ("sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAA", "[REDACTED]"),
            (
                "Authorization: Bearer eyJhbGciOi.payload.sig",
                "Authorization: Bearer [REDACTED]",
            ),
            ("id AKIAIOSFODNN7EXAMPLE ok", "id [REDACTED] ok"),
            (
                r#"{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#,
                r#"{"aws_secret_access_key": "[REDACTED]"}"#,
            ),
            (
                r#"{"x-api-key": "abcdefgh12345678", "n": 1}"#,
                r#"{"x-api-key": "[REDACTED]", "n": 1}"#,
            ),
            ("api_key=abcdefgh1234&x=1", "api_key=[REDACTED]&x=1"),
            ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "[REDACTED]"),
            (
                "tok ghp_abcdefghijklmnopqrstuvwxyz0123456789 end",
                "tok [REDACTED] end",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- after",
                "[REDACTED] after",
            ),
            (
                "x -----BEGIN RSA PRIVATE KEY-----\\nMIIE never ends",
                "x [REDACTED]",
            ),
            (
                "fg-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
                "[REDACTED]",
            ),
        ];
        for (input, expected) in cases {
            let out = redact(input, 1000, &[], &[]);
            assert_eq!(out.body, expected, "{input}");
            assert!(!out.truncated);
        }
    }

    #[test]
    fn literal_and_configured_secrets_are_redacted() {
        let out = redact(
            "key my-gateway-key-1 and provider-secret-0123456789, MRN-123456; ssn: 123-45-6789",
            1000,
            &[r"MRN-\d+", r"ssn: (?P<secret>[\d-]+)"],
            &["my-gateway-key-1", "short"],
        );
        assert_eq!(
            out.body,
            "key [REDACTED] and [REDACTED], [REDACTED]; ssn: [REDACTED]"
        );
    }

    #[test]
    fn overlapping_and_adjacent_matches_make_one_marker() {
        let out = redact("aaaaBBBBcccc", 100, &["aaaaBBBB", "BBBBcccc"], &[]);
        assert_eq!(out.body, "[REDACTED]");
    }

    #[test]
    fn short_bodies_are_whole_and_long_ones_truncated_to_the_cap() {
        let out = redact("hello", 5, &[], &[]);
        assert_eq!((out.body.as_str(), out.truncated), ("hello", false));
        let out = redact("hello world", 5, &[], &[]);
        assert_eq!((out.body.as_str(), out.truncated), ("hello", true));
    }

    #[test]
    fn a_secret_cut_by_the_cap_leaks_no_prefix() {
        let secret = "my-gateway-key-0123456789";
        let text = format!("0123456789{secret} tail");
        // The cap falls inside the secret (or past it): the secret shows as the marker or
        // not at all, never in part.
        let whole = "0123456789[REDACTED] tail";
        for max in 1..text.len() {
            let out = redact(&text, max, &[], &[secret]);
            let expected = match max {
                ..10 => &whole[..max],
                10..20 => "0123456789",
                _ => &whole[..max.min(whole.len())],
            };
            assert_eq!(out.body, expected, "max {max}");
            assert_eq!(out.truncated, max < whole.len(), "max {max}");
        }
        // The same with a built-in shape.
        let text = "ab sk-abcdefghijklmnopqrstuvwxyz0123456789";
        for max in 4..text.len() {
            let out = redact(text, max, &[], &[]);
            assert!(!out.body.contains("sk-"), "max {max}: {}", out.body);
        }
    }

    #[test]
    fn the_cut_lands_on_a_utf8_boundary() {
        let text = "ééééé"; // 2 bytes each
        for max in 1..10 {
            let out = redact(text, max, &[], &[]);
            assert_eq!(out.body.len(), max / 2 * 2, "max {max}");
            assert!(out.truncated);
        }
        let out = redact("日本語", 4, &[], &[]);
        assert_eq!((out.body.as_str(), out.truncated), ("日", true));
    }

    #[test]
    fn a_partial_window_shows_nothing_of_its_lookahead() {
        // The body goes on past the window: only the first `max` bytes may show, even
        // when redaction made room.
        let secret = "provider-secret-0123456789";
        let body = format!("{secret}{}", "x".repeat(100));
        let mut window = Window::new(10 + 20);
        window.push(body.as_bytes());
        let redactor = Redactor::new(Vec::new(), [secret.to_owned()]);
        let out = payload(&window, &redactor, &[], 100, 20);
        assert_eq!(out.body, "[REDACTED]");
        assert!(out.truncated);
    }

    #[test]
    fn a_window_keeps_at_most_its_limit_and_counts_the_rest() {
        let mut window = Window::new(10);
        for _ in 0..1000 {
            window.push(b"0123456");
        }
        assert_eq!((window.bytes.len(), window.total), (10, 7000));
        assert!(window.partial());
    }

    #[test]
    fn a_window_cut_inside_a_character_drops_it() {
        let mut window = Window::new(3);
        window.push("aé€".as_bytes());
        assert_eq!(window.text(), "aé");
        let mut whole = Window::new(100);
        whole.push(b"a\xffb");
        assert_eq!(whole.text(), "a\u{fffd}b");
    }
}
