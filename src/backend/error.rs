//! The one error type of the backends, with the classification the retry loop needs.
//!
//! Messages carry what a user needs to act (the provider's own words, the variable to set) and
//! never an API key: keys are only ever placed in request headers, and provider text is passed
//! through [`redact`] before it is stored here.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend `{backend}`: environment variable {var} is not set or empty; it must hold the API key"
    )]
    MissingKey { backend: String, var: String },

    #[error("invalid backend configuration: {0}")]
    Config(String),

    /// The provider answered with an error status; `message` is the provider's own text.
    #[error("HTTP {status}: {message}")]
    Api {
        status: u16,
        message: String,
        /// How long the provider asked us to wait, from `Retry-After` or its reset headers.
        retry_after: Option<Duration>,
    },

    /// Could not connect, or the connection broke before any answer text arrived.
    #[error("connection failed: {0}")]
    Connection(String),

    #[error("no data from the server for {} s", .0.as_secs_f64())]
    Timeout(Duration),

    /// The answer stopped before its end marker; the text received so far is kept.
    #[error("response truncated after {} characters: {reason}", .partial_text.chars().count())]
    Truncated {
        partial_text: String,
        reason: String,
    },

    /// The server answered, but not in the provider's format (wrong content type, bad JSON).
    #[error("unexpected response: {0}")]
    Protocol(String),

    #[error("cache: {0}")]
    Cache(String),
}

impl BackendError {
    /// Whether another attempt may succeed. Only called for failures before any answer text.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Api { status, .. } => {
                matches!(status, 408 | 409 | 429 | 500 | 502 | 503 | 504 | 529)
            }
            BackendError::Connection(_) | BackendError::Timeout(_) => true,
            // A stream that ended with nothing in it is a dropped connection in practice.
            BackendError::Truncated { partial_text, .. } => partial_text.is_empty(),
            _ => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            BackendError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Removes every occurrence of `secret` from provider-supplied text: some gateways echo request
/// headers in their error pages, as they are or encoded (a URL-encoded copy of the request, a
/// base64 dump of the `Authorization` header), so each of those forms is replaced too.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 => {
            let mut out = text.to_string();
            for form in secret_forms(s) {
                if out.contains(&form) {
                    out = out.replace(&form, "[redacted]");
                }
            }
            out
        }
        _ => text.to_string(),
    }
}

/// Shortest encoded form searched for: shorter runs of base64 could match unrelated text.
const MIN_FORM_CHARS: usize = 8;

/// The ways `secret` can appear in text: as it is, percent-encoded (upper- and lower-case hex),
/// and in base64 (standard and URL-safe alphabets) at each of the three byte alignments it can
/// have inside a longer encoded value such as `Bearer KEY`, keeping only the characters that
/// depend on the secret alone.
pub(crate) fn secret_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let mut push = |form: String| {
        if form.len() >= MIN_FORM_CHARS && !forms.contains(&form) {
            forms.push(form);
        }
    };
    push(percent_encode(secret, false));
    push(percent_encode(secret, true));
    for offset in 0..3 {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret.as_bytes());
        let encoded = base64_standard(&bytes);
        // Character i covers bits 6i..6i+6; keep those entirely inside the secret's bits.
        let first = (8 * offset).div_ceil(6);
        let end = (8 * (offset + secret.len())) / 6;
        if let Some(core) = encoded.get(first..end) {
            push(core.replace('+', "-").replace('/', "_"));
            push(core.to_string());
        }
    }
    forms
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, with upper- or
/// lower-case hex digits (both are valid and both are in use).
fn percent_encode(text: &str, lower: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else if lower {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Base64 with the standard alphabet and no padding (only ever searched for, never decoded).
fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| chunk.get(i).copied().unwrap_or(0);
        let b = [byte(0), byte(1), byte(2)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Describes a transport error without its URL (which may carry configured query values).
pub(crate) fn describe_reqwest(err: reqwest::Error) -> String {
    use std::error::Error as _;
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live+Key/123=";

    #[test]
    fn redacts_the_raw_and_the_encoded_forms() {
        assert_eq!(
            redact(&format!("bad key {KEY}!"), Some(KEY)),
            "bad key [redacted]!"
        );
        assert_eq!(
            redact("url key=sk-live%2BKey%2F123%3D&x", Some(KEY)),
            "url key=[redacted]&x"
        );
        assert_eq!(
            redact("url key=sk-live%2bKey%2f123%3d", Some(KEY)),
            "url key=[redacted]"
        );
        // base64("Bearer sk-live+Key/123=") and base64("x:" + key), as headers are dumped.
        for dumped in [
            "QmVhcmVyIHNrLWxpdmUrS2V5LzEyMz0=",
            "eDpzay1saXZlK0tleS8xMjM9",
            "c2stbGl2ZStLZXkvMTIzPQ",
        ] {
            let out = redact(&format!("header: {dumped}"), Some(KEY));
            assert!(out.contains("[redacted]"), "{dumped}: {out}");
            for form in secret_forms(KEY) {
                assert!(!out.contains(&form), "{out} still holds {form}");
            }
        }
        assert_eq!(redact("nothing here", Some(KEY)), "nothing here");
        assert_eq!(redact("abc", Some("ab")), "abc");
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64_standard(b""), "");
        assert_eq!(base64_standard(b"f"), "Zg");
        assert_eq!(base64_standard(b"fo"), "Zm8");
        assert_eq!(base64_standard(b"foo"), "Zm9v");
        assert_eq!(base64_standard(b"foobar"), "Zm9vYmFy");
    }
}
