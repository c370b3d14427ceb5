//! Strict encodings shared by tokens and request signatures.
//!
//! Every decoder here accepts exactly one spelling per value, so a signed value
//! cannot be re-spelled without failing verification.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// base64url without padding.
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url without padding: rejects `=`, `+`, `/`, whitespace and
/// non-zero trailing bits (so every byte string has one accepted spelling).
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// `[A-Za-z0-9_-]`
pub(crate) fn is_b64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Canonical non-negative decimal: `0` or `[1-9][0-9]*`, fitting in an `i64`.
/// Rejects signs, leading zeros, whitespace and empty input.
pub(crate) fn parse_canonical_u63(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    text.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_decimal() {
        assert_eq!(parse_canonical_u63("0"), Some(0));
        assert_eq!(parse_canonical_u63("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_canonical_u63("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.0",
            "9223372036854775808",
            "99999999999999999999",
            "1e3",
        ] {
            assert_eq!(parse_canonical_u63(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn strict_base64url() {
        assert_eq!(b64url_decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(b64url_decode(""), Some(Vec::new()));
        // padding, standard alphabet and non-canonical trailing bits are rejected
        assert_eq!(b64url_decode("aGk="), None);
        assert_eq!(b64url_decode("a+8"), None);
        assert_eq!(b64url_decode("aGl"), None);
        assert_eq!(b64url_encode(b"hi"), "aGk");
    }
}
