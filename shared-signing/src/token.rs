//! Purpose-bound HMAC-SHA256 tokens.
//!
//! # Format
//!
//! ```text
//! v1.<kid>.<iat>.<exp>.<payload>.<mac>
//! ```
//!
//! - `kid`: the signing key's id (`[A-Za-z0-9_-]{1,32}`).
//! - `iat`, `exp`: issue and expiry time, unix seconds, canonical decimal (`0` or
//!   `[1-9][0-9]*`, no sign), `exp > iat`.
//! - `payload`: the payload bytes, base64url without padding.
//! - `mac`: HMAC-SHA256 (32 bytes), base64url without padding, over
//!
//!   ```text
//!   F("vitrine-token-v1") || F(purpose) || F(kid) || F(iat) || F(exp) || F(payload)
//!   F(x) = len(x) as 8-byte big-endian || x
//!   ```
//!
//!   where `iat` and `exp` are their decimal text exactly as in the token and
//!   `payload` is the decoded bytes.
//!
//! The purpose (e.g. `upload-url`) is never written into the token: it only enters
//! the MAC, so a token minted for one purpose fails verification for another with
//! [`TokenError::InvalidSignature`].
//!
//! # Verification order
//!
//! Length cap, then parsing (any non-canonical spelling is
//! [`TokenError::Malformed`]), then key lookup, then the constant-time MAC check,
//! and only for an authentic token the time checks: not yet valid, expired,
//! lifetime above the policy's cap.

use std::time::Duration;

use hmac::Mac;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::encoding::{b64url_decode, b64url_encode, parse_canonical_u63};
use crate::keys::{HmacSha256, Key, KeyId, KeyRing};

const VERSION: &str = "v1";
const DOMAIN: &str = "vitrine-token-v1";

/// What a token is for. Only enters the MAC (domain separation), never the token
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purpose(&'static str);

impl Purpose {
    /// App → storage: the seller's validated upload metadata.
    pub const UPLOAD_METADATA: Purpose = Purpose("upload-metadata");
    /// Storage → seller: the pre-signed upload URL.
    pub const UPLOAD_URL: Purpose = Purpose("upload-url");
    /// Storage → anyone holding the link: a short-lived download URL.
    pub const DOWNLOAD_URL: Purpose = Purpose("download-url");

    /// A purpose of your own. Use a fixed, distinct string per use.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Largest clock skew a [`TokenPolicy`] accepts (5 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Default [`TokenPolicy::clock_skew`] (30 s).
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Default [`TokenPolicy::max_lifetime`] (24 h).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Default [`TokenPolicy::max_token_len`] (4096 bytes).
pub const DEFAULT_MAX_TOKEN_LEN: usize = 4096;

/// Verification limits.
///
/// Defaults: `max_lifetime` 24 h (an upper bound for download links; set a
/// tighter cap per purpose, e.g. 15 min for upload URLs), `clock_skew` 30 s,
/// `max_token_len` 4096 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    max_lifetime: Duration,
    clock_skew: Duration,
    max_token_len: usize,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            max_lifetime: DEFAULT_MAX_LIFETIME,
            clock_skew: DEFAULT_CLOCK_SKEW,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }
}

impl TokenPolicy {
    /// Default skew and length cap with the given lifetime cap.
    pub fn new(max_lifetime: Duration) -> Self {
        Self {
            max_lifetime,
            ..Self::default()
        }
    }

    /// Sets the tolerated clock skew, clamped to [`MAX_CLOCK_SKEW`].
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew.min(MAX_CLOCK_SKEW);
        self
    }

    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }

    pub fn with_max_token_len(mut self, max_token_len: usize) -> Self {
        self.max_token_len = max_token_len;
        self
    }

    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    pub fn clock_skew(&self) -> Duration {
        self.clock_skew
    }

    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }
}

/// A token whose MAC and times checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub key_id: KeyId,
    pub issued_at: i64,
    pub expires_at: i64,
    pub payload: Vec<u8>,
}

/// A verified token whose payload decoded as JSON into `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJson<T> {
    pub key_id: KeyId,
    pub issued_at: i64,
    pub expires_at: i64,
    pub claims: T,
}

/// Why minting or verifying a token failed. [`TokenError::code`] gives a stable
/// slug for API error envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is too long")]
    TooLong,
    #[error("token version is not supported")]
    UnsupportedVersion,
    #[error("token was signed with an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    InvalidSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token lifetime is longer than allowed")]
    LifetimeTooLong,
    #[error("token payload is invalid")]
    PayloadInvalid,
    /// Minting only: `expires_at` must be after `issued_at`, and `issued_at >= 0`.
    #[error("token expiry must be after its issue time")]
    InvalidValidity,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "token-malformed",
            Self::TooLong => "token-too-long",
            Self::UnsupportedVersion => "token-unsupported-version",
            Self::UnknownKey => "token-unknown-key",
            Self::InvalidSignature => "token-invalid-signature",
            Self::Expired => "token-expired",
            Self::NotYetValid => "token-not-yet-valid",
            Self::LifetimeTooLong => "token-lifetime-too-long",
            Self::PayloadInvalid => "token-payload-invalid",
            Self::InvalidValidity => "token-invalid-validity",
        }
    }
}

fn token_mac(
    key: &Key,
    purpose: Purpose,
    kid: &str,
    iat: &str,
    exp: &str,
    payload: &[u8],
) -> HmacSha256 {
    let mut mac = key.mac();
    for field in [
        DOMAIN.as_bytes(),
        purpose.as_str().as_bytes(),
        kid.as_bytes(),
        iat.as_bytes(),
        exp.as_bytes(),
        payload,
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac
}

struct ParsedToken<'a> {
    kid: &'a str,
    iat_text: &'a str,
    exp_text: &'a str,
    iat: i64,
    exp: i64,
    payload: Vec<u8>,
    mac: Vec<u8>,
}

fn parse_token(token: &str) -> Result<ParsedToken<'_>, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let version = parts.first().copied().unwrap_or_default();
    if version != VERSION {
        let looks_like_version = version.len() > 1
            && version.starts_with('v')
            && version[1..].bytes().all(|b| b.is_ascii_digit());
        return Err(if looks_like_version {
            TokenError::UnsupportedVersion
        } else {
            TokenError::Malformed
        });
    }
    let [_, kid, iat_text, exp_text, payload, mac] = parts[..] else {
        return Err(TokenError::Malformed);
    };
    KeyId::new(kid).map_err(|_| TokenError::Malformed)?;
    let iat = parse_canonical_u63(iat_text).ok_or(TokenError::Malformed)?;
    let exp = parse_canonical_u63(exp_text).ok_or(TokenError::Malformed)?;
    if exp <= iat {
        return Err(TokenError::Malformed);
    }
    let payload = b64url_decode(payload).ok_or(TokenError::Malformed)?;
    let mac = b64url_decode(mac).ok_or(TokenError::Malformed)?;
    if mac.len() != 32 {
        return Err(TokenError::Malformed);
    }
    Ok(ParsedToken {
        kid,
        iat_text,
        exp_text,
        iat,
        exp,
        payload,
        mac,
    })
}

impl KeyRing {
    /// Mints a token with the active key. `expires_at` must be after `issued_at`
    /// and `issued_at` must not be negative ([`TokenError::InvalidValidity`]).
    pub fn mint(
        &self,
        purpose: Purpose,
        payload: &[u8],
        issued_at: i64,
        expires_at: i64,
    ) -> Result<String, TokenError> {
        if issued_at < 0 || expires_at <= issued_at {
            return Err(TokenError::InvalidValidity);
        }
        let key = self.active_key();
        let kid = key.id().as_str();
        let iat = issued_at.to_string();
        let exp = expires_at.to_string();
        let tag = token_mac(key, purpose, kid, &iat, &exp, payload)
            .finalize()
            .into_bytes();
        Ok(format!(
            "{VERSION}.{kid}.{iat}.{exp}.{}.{}",
            b64url_encode(payload),
            b64url_encode(&tag)
        ))
    }

    /// Mints a token whose payload is `claims` as JSON, valid for `ttl` (whole
    /// seconds; a `ttl` under one second is [`TokenError::InvalidValidity`]).
    pub fn mint_json<T: Serialize + ?Sized>(
        &self,
        purpose: Purpose,
        claims: &T,
        issued_at: i64,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let ttl = i64::try_from(ttl.as_secs()).map_err(|_| TokenError::InvalidValidity)?;
        let expires_at = issued_at
            .checked_add(ttl)
            .ok_or(TokenError::InvalidValidity)?;
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::PayloadInvalid)?;
        self.mint(purpose, &payload, issued_at, expires_at)
    }

    /// Verifies a token for `purpose` at time `now` (unix seconds).
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        now: i64,
        policy: &TokenPolicy,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > policy.max_token_len {
            return Err(TokenError::TooLong);
        }
        let parsed = parse_token(token)?;
        let key = self.get(parsed.kid).ok_or(TokenError::UnknownKey)?;
        token_mac(
            key,
            purpose,
            parsed.kid,
            parsed.iat_text,
            parsed.exp_text,
            &parsed.payload,
        )
        .verify_slice(&parsed.mac)
        .map_err(|_| TokenError::InvalidSignature)?;

        let now = i128::from(now);
        let skew = i128::from(policy.clock_skew.as_secs());
        let (iat, exp) = (i128::from(parsed.iat), i128::from(parsed.exp));
        if iat > now + skew {
            return Err(TokenError::NotYetValid);
        }
        if exp <= now - skew {
            return Err(TokenError::Expired);
        }
        if exp - iat > i128::from(policy.max_lifetime.as_secs()) {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(VerifiedToken {
            key_id: key.id().clone(),
            issued_at: parsed.iat,
            expires_at: parsed.exp,
            payload: parsed.payload,
        })
    }

    /// [`KeyRing::verify`], then decodes the payload as JSON
    /// ([`TokenError::PayloadInvalid`] if it does not fit `T`).
    pub fn verify_json<T: DeserializeOwned>(
        &self,
        purpose: Purpose,
        token: &str,
        now: i64,
        policy: &TokenPolicy,
    ) -> Result<VerifiedJson<T>, TokenError> {
        let verified = self.verify(purpose, token, now, policy)?;
        let claims =
            serde_json::from_slice(&verified.payload).map_err(|_| TokenError::PayloadInvalid)?;
        Ok(VerifiedJson {
            key_id: verified.key_id,
            issued_at: verified.issued_at,
            expires_at: verified.expires_at,
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const NOW: i64 = 1_700_000_000;
    const P: Purpose = Purpose::UPLOAD_URL;

    fn ring(kid: &str) -> KeyRing {
        KeyRing::generate(KeyId::new(kid).expect("kid"))
    }

    fn policy() -> TokenPolicy {
        TokenPolicy::default()
    }

    /// Builds a token from raw parts with a valid MAC over exactly those parts.
    fn forge(ring: &KeyRing, version: &str, iat: &str, exp: &str, payload_b64: &str) -> String {
        let key = ring.active_key();
        let kid = key.id().as_str();
        let payload = b64url_decode(payload_b64).unwrap_or_else(|| payload_b64.as_bytes().to_vec());
        let tag = token_mac(key, P, kid, iat, exp, &payload)
            .finalize()
            .into_bytes();
        format!(
            "{version}.{kid}.{iat}.{exp}.{payload_b64}.{}",
            b64url_encode(&tag)
        )
    }

    #[test]
    fn round_trip() {
        let r = ring("k1");
        let token = r.mint(P, b"hello", NOW, NOW + 60).expect("mint");
        assert!(token.starts_with("v1.k1.1700000000.1700000060.aGVsbG8."));
        let v = r.verify(P, &token, NOW, &policy()).expect("verify");
        assert_eq!(
            v,
            VerifiedToken {
                key_id: KeyId::new("k1").expect("kid"),
                issued_at: NOW,
                expires_at: NOW + 60,
                payload: b"hello".to_vec(),
            }
        );
        // empty payload is allowed
        let token = r.mint(P, b"", NOW, NOW + 1).expect("mint");
        assert_eq!(
            r.verify(P, &token, NOW, &policy()).map(|v| v.payload),
            Ok(vec![])
        );
    }

    /// Known-answer vector computed independently (Python `hmac`) from the
    /// format described in the module docs.
    #[test]
    fn known_answer_vector() {
        let r = KeyRing::parse("test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("ring");
        let expected = "v1.test.1700000000.1700000900.eyJ1cGxvYWRfaWQiOiJ1MSJ9.\
                        eWP6Sba3GgJES1WAABdZziuoOtx0k7K--9SvkDijhco";
        let token = r
            .mint(
                Purpose::UPLOAD_URL,
                br#"{"upload_id":"u1"}"#,
                NOW,
                NOW + 900,
            )
            .expect("mint");
        assert_eq!(token, expected);
        assert!(r
            .verify(Purpose::UPLOAD_URL, expected, NOW, &policy())
            .is_ok());
    }

    #[test]
    fn json_round_trip_and_payload_error() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct Claims {
            upload_id: String,
            size: u64,
        }
        let r = ring("k1");
        let claims = Claims {
            upload_id: "u-1".into(),
            size: 42,
        };
        let token = r
            .mint_json(P, &claims, NOW, Duration::from_secs(900))
            .expect("mint");
        let v: VerifiedJson<Claims> = r.verify_json(P, &token, NOW, &policy()).expect("verify");
        assert_eq!(v.claims, claims);
        assert_eq!(v.expires_at, NOW + 900);
        assert_eq!(v.key_id.as_str(), "k1");

        let token = r.mint(P, b"not json", NOW, NOW + 60).expect("mint");
        let err = r
            .verify_json::<Claims>(P, &token, NOW, &policy())
            .expect_err("not json");
        assert_eq!(err, TokenError::PayloadInvalid);
        assert_eq!(err.code(), "token-payload-invalid");
    }

    #[test]
    fn mint_rejects_bad_validity() {
        let r = ring("k1");
        for (iat, exp) in [(NOW, NOW), (NOW, NOW - 1), (-1, 10)] {
            let err = r.mint(P, b"x", iat, exp).expect_err("bad validity");
            assert_eq!(err, TokenError::InvalidValidity);
            assert_eq!(err.code(), "token-invalid-validity");
        }
        assert_eq!(
            r.mint_json(P, &1, NOW, Duration::from_millis(999)),
            Err(TokenError::InvalidValidity)
        );
        assert_eq!(
            r.mint_json(P, &1, i64::MAX - 5, Duration::from_secs(10)),
            Err(TokenError::InvalidValidity)
        );
        assert_eq!(
            r.mint_json(P, &1, NOW, Duration::from_secs(u64::MAX)),
            Err(TokenError::InvalidValidity)
        );
    }

    #[test]
    fn mint_json_rejects_unserializable() {
        use std::collections::HashMap;
        let mut map = HashMap::new();
        map.insert((1, 2), 3); // tuple keys are not JSON object keys
        assert_eq!(
            ring("k1").mint_json(P, &map, NOW, Duration::from_secs(60)),
            Err(TokenError::PayloadInvalid)
        );
    }

    #[test]
    fn purpose_separation() {
        let r = ring("k1");
        let token = r
            .mint(Purpose::UPLOAD_URL, b"x", NOW, NOW + 60)
            .expect("mint");
        assert!(!token.contains("upload"));
        for other in [
            Purpose::UPLOAD_METADATA,
            Purpose::DOWNLOAD_URL,
            Purpose::new("upload-ur"),
            Purpose::new(""),
        ] {
            assert_eq!(
                r.verify(other, &token, NOW, &policy()),
                Err(TokenError::InvalidSignature),
                "{other}"
            );
        }
        assert!(r
            .verify(Purpose::UPLOAD_URL, &token, NOW, &policy())
            .is_ok());
        assert_eq!(Purpose::UPLOAD_METADATA.as_str(), "upload-metadata");
        assert_eq!(Purpose::UPLOAD_URL.as_str(), "upload-url");
        assert_eq!(Purpose::DOWNLOAD_URL.as_str(), "download-url");
    }

    #[test]
    fn rotation() {
        let old = ring("old");
        let new = ring("new");
        let old_token = old.mint(P, b"x", NOW, NOW + 60).expect("mint");

        let rotated = KeyRing::parse(&format!("{},{}", new.to_env_value(), old.to_env_value()))
            .expect("ring");
        assert_eq!(rotated.active_key_id().as_str(), "new");
        let v = rotated
            .verify(P, &old_token, NOW, &policy())
            .expect("old key still verifies");
        assert_eq!(v.key_id.as_str(), "old");
        let new_token = rotated.mint(P, b"x", NOW, NOW + 60).expect("mint");
        assert!(new_token.starts_with("v1.new."));
        assert!(rotated.verify(P, &new_token, NOW, &policy()).is_ok());
        assert_eq!(
            old.verify(P, &new_token, NOW, &policy()),
            Err(TokenError::UnknownKey)
        );

        let retired = KeyRing::parse(&new.to_env_value()).expect("ring");
        let err = retired
            .verify(P, &old_token, NOW, &policy())
            .expect_err("old key removed");
        assert_eq!(err, TokenError::UnknownKey);
        assert_eq!(err.code(), "token-unknown-key");
    }

    #[test]
    fn same_kid_other_secret_is_invalid_signature() {
        let a = ring("k1");
        let b = ring("k1");
        let token = a.mint(P, b"x", NOW, NOW + 60).expect("mint");
        let err = b
            .verify(P, &token, NOW, &policy())
            .expect_err("other secret");
        assert_eq!(err, TokenError::InvalidSignature);
        assert_eq!(err.code(), "token-invalid-signature");
    }

    #[test]
    fn expiry_boundaries_with_skew() {
        let r = ring("k1");
        let pol = policy(); // 30 s skew
        let token = r.mint(P, b"x", NOW, NOW + 100).expect("mint");
        // exp <= now - skew  => expired; exp == now - skew + 1 => still valid
        assert!(r.verify(P, &token, NOW + 100 + 29, &pol).is_ok());
        let err = r
            .verify(P, &token, NOW + 100 + 30, &pol)
            .expect_err("expired");
        assert_eq!(err, TokenError::Expired);
        assert_eq!(err.code(), "token-expired");
        // zero skew: valid until the second before exp
        let strict = pol.with_clock_skew(Duration::ZERO);
        assert!(r.verify(P, &token, NOW + 99, &strict).is_ok());
        assert_eq!(
            r.verify(P, &token, NOW + 100, &strict),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn not_yet_valid_boundaries_with_skew() {
        let r = ring("k1");
        let pol = policy();
        let token = r.mint(P, b"x", NOW, NOW + 100).expect("mint");
        // iat > now + skew => not yet valid; iat == now + skew => ok
        assert!(r.verify(P, &token, NOW - 30, &pol).is_ok());
        let err = r.verify(P, &token, NOW - 31, &pol).expect_err("future");
        assert_eq!(err, TokenError::NotYetValid);
        assert_eq!(err.code(), "token-not-yet-valid");
        // far future
        let future = r.mint(P, b"x", NOW + 86_400, NOW + 86_460).expect("mint");
        assert_eq!(
            r.verify(P, &future, NOW, &pol),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn skew_is_clamped() {
        let pol = TokenPolicy::default().with_clock_skew(Duration::from_secs(3600));
        assert_eq!(pol.clock_skew(), MAX_CLOCK_SKEW);
        let pol = TokenPolicy::default().with_clock_skew(Duration::from_secs(10));
        assert_eq!(pol.clock_skew(), Duration::from_secs(10));
        let d = TokenPolicy::default();
        assert_eq!(d.clock_skew(), Duration::from_secs(30));
        assert_eq!(d.max_lifetime(), Duration::from_secs(86_400));
        assert_eq!(d.max_token_len(), 4096);
        assert_eq!(
            TokenPolicy::new(Duration::from_secs(60)).max_lifetime(),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn lifetime_cap() {
        let r = ring("k1");
        let pol = TokenPolicy::new(Duration::from_secs(900));
        let at_cap = r.mint(P, b"x", NOW, NOW + 900).expect("mint");
        assert!(r.verify(P, &at_cap, NOW, &pol).is_ok());
        let over = r.mint(P, b"x", NOW, NOW + 901).expect("mint");
        let err = r.verify(P, &over, NOW, &pol).expect_err("too long");
        assert_eq!(err, TokenError::LifetimeTooLong);
        assert_eq!(err.code(), "token-lifetime-too-long");
    }

    #[test]
    fn time_checks_only_after_mac() {
        let r = ring("k1");
        let other = ring("k1");
        let expired = other.mint(P, b"x", 10, 20).expect("mint");
        assert_eq!(
            r.verify(P, &expired, NOW, &policy()),
            Err(TokenError::InvalidSignature)
        );
    }

    #[test]
    fn length_cap() {
        let r = ring("k1");
        let token = r.mint(P, &[7u8; 300], NOW, NOW + 60).expect("mint");
        let exact = policy().with_max_token_len(token.len());
        assert!(r.verify(P, &token, NOW, &exact).is_ok());
        let short = policy().with_max_token_len(token.len() - 1);
        let err = r.verify(P, &token, NOW, &short).expect_err("too long");
        assert_eq!(err, TokenError::TooLong);
        assert_eq!(err.code(), "token-too-long");
        // the cap applies before parsing
        let junk = "x".repeat(5000);
        assert_eq!(r.verify(P, &junk, NOW, &policy()), Err(TokenError::TooLong));
    }

    #[test]
    fn unsupported_version() {
        let r = ring("k1");
        let token = r.mint(P, b"x", NOW, NOW + 60).expect("mint");
        let v2 = token.replacen("v1.", "v2.", 1);
        let err = r.verify(P, &v2, NOW, &policy()).expect_err("v2");
        assert_eq!(err, TokenError::UnsupportedVersion);
        assert_eq!(err.code(), "token-unsupported-version");
        assert_eq!(
            r.verify(P, "v10.a.b", NOW, &policy()),
            Err(TokenError::UnsupportedVersion)
        );
        for bad in ["V1.x", "v.x", "x1.x", ""] {
            assert_eq!(r.verify(P, bad, NOW, &policy()), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn malformed_structure() {
        let r = ring("k1");
        let token = r.mint(P, b"x", NOW, NOW + 60).expect("mint");
        let mut cases = vec![
            format!("{token}."),
            format!("{token}.extra"),
            token
                .rsplit_once('.')
                .map(|(t, _)| t.to_string())
                .unwrap_or_default(),
            token.replacen(".k1.", ".k!.", 1),
            token.replacen(".k1.", "..", 1),
            format!("{token}="),
            format!("{}A", token),
            "v1".to_string(),
            "v1.....".to_string(),
            " ".to_string() + &token,
            token.clone() + " ",
        ];
        // MAC of the wrong length
        let (head, _) = token.rsplit_once('.').unwrap_or_default();
        cases.push(format!("{head}.{}", b64url_encode(&[0u8; 31])));
        cases.push(format!("{head}.{}", b64url_encode(&[0u8; 33])));
        for case in cases {
            let err = r.verify(P, &case, NOW, &policy()).expect_err(&case);
            assert_eq!(err, TokenError::Malformed, "{case}");
            assert_eq!(err.code(), "token-malformed");
        }
    }

    #[test]
    fn non_canonical_encodings_are_malformed_even_with_valid_mac() {
        let r = ring("k1");
        let iat = NOW.to_string();
        let exp = (NOW + 60).to_string();
        // control: forge() produces a valid token for canonical parts
        let ok = forge(&r, "v1", &iat, &exp, "aGk");
        assert!(r.verify(P, &ok, NOW, &policy()).is_ok());

        let cases = [
            forge(&r, "v1", &format!("0{iat}"), &exp, "aGk"),
            forge(&r, "v1", &iat, &format!("0{exp}"), "aGk"),
            forge(&r, "v1", &format!("+{iat}"), &exp, "aGk"),
            forge(&r, "v1", &format!("-{iat}"), &exp, "aGk"),
            forge(&r, "v1", &format!("{iat}.0"), &exp, "aGk"),
            forge(&r, "v1", &format!(" {iat}"), &exp, "aGk"),
            forge(&r, "v1", "99999999999999999999", &exp, "aGk"),
            // exp <= iat
            forge(&r, "v1", &iat, &iat, "aGk"),
            forge(&r, "v1", &exp, &iat, "aGk"),
            // base64: padding, standard alphabet, non-zero trailing bits
            forge(&r, "v1", &iat, &exp, "aGk="),
            forge(&r, "v1", &iat, &exp, "a+8"),
            forge(&r, "v1", &iat, &exp, "a/8"),
            forge(&r, "v1", &iat, &exp, "aGl"),
        ];
        for case in cases {
            assert_eq!(
                r.verify(P, &case, NOW, &policy()),
                Err(TokenError::Malformed),
                "{case}"
            );
        }
        // padding on the MAC
        let padded_mac = format!("{ok}=");
        assert_eq!(
            r.verify(P, &padded_mac, NOW, &policy()),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn error_messages_are_short() {
        for e in [
            TokenError::Malformed,
            TokenError::TooLong,
            TokenError::UnsupportedVersion,
            TokenError::UnknownKey,
            TokenError::InvalidSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::LifetimeTooLong,
            TokenError::PayloadInvalid,
            TokenError::InvalidValidity,
        ] {
            let msg = e.to_string();
            assert!(msg.len() < 60 && msg.starts_with("token"), "{msg}");
            assert!(e.code().starts_with("token-"));
        }
    }
}
