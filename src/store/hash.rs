//! Content addressing of versions: the canonical encoding of a unit and its
//! sha256 id, plus the shortest-unique-prefix helper used for short ids.

use sha2::{Digest, Sha256};

use super::model::UnitFiles;

/// Length of a full version id (lowercase hex sha256).
pub const VERSION_ID_LEN: usize = 64;
/// Minimum length of a displayed short version id.
pub const MIN_SHORT_VERSION: usize = 7;

/// The bytes hashed into a version id.
///
/// The prompt name comes first, then every file in path order (the `BTreeMap`
/// is already sorted bytewise). Each field is prefixed by its length as a
/// big-endian u64, so the encoding is injective: no two different
/// (prompt, file set) pairs produce the same bytes. The prompt is included so
/// that two prompts that happen to share identical files never share a
/// version (a version belongs to exactly one prompt).
pub fn canonical_encoding(unit: &UnitFiles) -> Vec<u8> {
    let size: usize = unit.prompt.len()
        + 8
        + unit
            .files
            .iter()
            .map(|(p, c)| p.len() + c.len() + 16)
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    push_field(&mut out, unit.prompt.as_bytes());
    for (path, content) in &unit.files {
        push_field(&mut out, path.as_bytes());
        push_field(&mut out, content.as_bytes());
    }
    out
}

fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The version id of a unit: lowercase hex sha256 of [`canonical_encoding`].
pub fn version_id(unit: &UnitFiles) -> String {
    let digest = Sha256::digest(canonical_encoding(unit));
    let mut s = String::with_capacity(VERSION_ID_LEN);
    for b in digest {
        s.push(hex_digit(b >> 4));
        s.push(hex_digit(b & 0x0f));
    }
    s
}

fn hex_digit(n: u8) -> char {
    // n < 16 by construction in the callers.
    char::from(b"0123456789abcdef"[usize::from(n & 0x0f)])
}

/// True for a full, well-formed version id.
pub fn is_version_id(s: &str) -> bool {
    s.len() == VERSION_ID_LEN && is_lower_hex(s)
}

/// True when `s` is non-empty and only lowercase hex digits.
pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Shortest prefix of `id` (at least `min` chars) that no neighbour shares.
///
/// `prev`/`next` are the ids sorted immediately before and after `id`; in a
/// sorted set the longest common prefix with any other id is attained by a
/// neighbour, so checking those two is enough.
pub fn shortest_unique_prefix(
    id: &str,
    prev: Option<&str>,
    next: Option<&str>,
    min: usize,
) -> String {
    let lcp = |other: Option<&str>| {
        other.map_or(0, |o| {
            id.bytes()
                .zip(o.bytes())
                .take_while(|(a, b)| a == b)
                .count()
        })
    };
    let len = (lcp(prev).max(lcp(next)) + 1).max(min).min(id.len());
    // ids are ASCII hex, so any byte index is a char boundary; `get` keeps
    // this panic-free even if a caller passes something else.
    id.get(..len).unwrap_or(id).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn unit(prompt: &str, files: &[(&str, &str)]) -> UnitFiles {
        UnitFiles {
            prompt: prompt.into(),
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), c.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn id_is_stable_lowercase_hex() {
        let a = version_id(&unit("p", &[("p.prompt", "hi")]));
        assert!(is_version_id(&a));
        assert_eq!(a, version_id(&unit("p", &[("p.prompt", "hi")])));
    }

    #[test]
    fn boundaries_between_fields_matter() {
        // Same concatenated bytes, different split: must differ.
        let a = version_id(&unit("p", &[("ab", "c")]));
        let b = version_id(&unit("p", &[("a", "bc")]));
        assert_ne!(a, b);
        let c = version_id(&unit("p", &[("a", ""), ("b", "")]));
        let d = version_id(&unit("p", &[("a", "b")]));
        assert_ne!(c, d);
        assert_ne!(
            version_id(&unit("p", &[("x", "1")])),
            version_id(&unit("q", &[("x", "1")]))
        );
    }

    #[test]
    fn known_vector() {
        // Fixed expectation guards against accidental encoding changes, which
        // would silently fork every existing version id.
        let enc = canonical_encoding(&unit("p", &[("a", "b")]));
        assert_eq!(
            enc,
            [
                &1u64.to_be_bytes()[..],
                b"p",
                &1u64.to_be_bytes()[..],
                b"a",
                &1u64.to_be_bytes()[..],
                b"b"
            ]
            .concat()
        );
    }

    #[test]
    fn shortest_prefix() {
        assert_eq!(
            shortest_unique_prefix("abcdef0123", None, None, 7),
            "abcdef0"
        );
        assert_eq!(
            shortest_unique_prefix("abcdef0123", Some("abcdef0100"), None, 7),
            "abcdef012"
        );
        assert_eq!(
            shortest_unique_prefix("abcdef0123", None, Some("abcdef0123ff"), 7),
            "abcdef0123"
        );
        assert_eq!(shortest_unique_prefix("abc", None, None, 7), "abc");
    }
}
