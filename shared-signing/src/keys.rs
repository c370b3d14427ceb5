//! Secrets, key ids and the key ring.
//!
//! A [`KeyRing`] is an ordered, non-empty list of `(KeyId, Secret)`. The **first**
//! key is the active one: it signs everything. **Every** key verifies. To rotate:
//!
//! 1. deploy `new:…,old:…` everywhere (verifiers first, then signers pick it up
//!    because the new key is first);
//! 2. once every token signed with `old` has expired (longest token lifetime plus
//!    clock skew), deploy `new:…` alone.
//!
//! The environment format is `kid1:BASE64,kid2:BASE64`: entries separated by `,`,
//! whitespace around entries and around `:` ignored, secrets in standard or
//! URL-safe base64 with optional padding. Secrets must be at least
//! [`MIN_SECRET_LEN`] bytes. Error messages name the entry and the problem but
//! never echo secret material.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Minimum secret length in bytes (256 bits, the HMAC-SHA256 output size).
pub const MIN_SECRET_LEN: usize = 32;

/// Maximum key id length in characters.
pub const MAX_KEY_ID_LEN: usize = 32;

const LENIENT_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_PADDING);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_PADDING);

/// Secret key material. `Debug` and `Display` print `Secret(***)`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The raw bytes. Named so that every use is easy to find in review.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Key identifier: 1..=32 characters of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

/// Why a key id was rejected. Never includes the rejected text (it may be a
/// misplaced secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIdError {
    #[error("key id is empty")]
    Empty,
    #[error("key id is {len} characters long, at most {MAX_KEY_ID_LEN} allowed")]
    TooLong { len: usize },
    #[error("key id has a character outside [A-Za-z0-9_-] at position {position}")]
    InvalidChar { position: usize },
}

impl KeyId {
    pub fn new(id: impl Into<String>) -> Result<Self, KeyIdError> {
        let id = id.into();
        Self::check(&id)?;
        Ok(Self(id))
    }

    fn check(id: &str) -> Result<(), KeyIdError> {
        if id.is_empty() {
            return Err(KeyIdError::Empty);
        }
        if let Some(position) = id.bytes().position(|b| !crate::encoding::is_b64url_char(b)) {
            return Err(KeyIdError::InvalidChar {
                position: position + 1,
            });
        }
        if id.len() > MAX_KEY_ID_LEN {
            return Err(KeyIdError::TooLong { len: id.len() });
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for KeyId {
    type Error = KeyIdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl PartialEq<str> for KeyId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for KeyId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// One key of a ring: its id, its secret, and the HMAC state keyed with it
/// (precomputed so signing does not re-derive the inner/outer pads).
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    secret: Secret,
    mac: HmacSha256,
}

impl Key {
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// A fresh HMAC-SHA256 instance keyed with this key's secret.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Why a key ring was rejected. Entry numbers are 1-based; no variant carries
/// secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("key ring is empty: expected `kid1:BASE64[,kid2:BASE64…]`")]
    Empty,
    #[error("key ring entry {entry} is empty (stray comma?)")]
    EmptyEntry { entry: usize },
    #[error("key ring entry {entry} has no `:`: expected `kid:BASE64`")]
    MissingSeparator { entry: usize },
    #[error("key ring entry {entry}: {reason}")]
    InvalidKeyId { entry: usize, reason: KeyIdError },
    #[error("key ring entry {entry} (key `{key_id}`): secret is not valid base64 (standard or URL-safe)")]
    InvalidBase64 { entry: usize, key_id: KeyId },
    #[error("key `{key_id}`: secret is {len} bytes, at least {MIN_SECRET_LEN} required")]
    SecretTooShort { key_id: KeyId, len: usize },
    #[error("key id `{key_id}` appears more than once in the key ring")]
    DuplicateKeyId { key_id: KeyId },
}

/// Ordered, non-empty set of keys: the first signs, all verify.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("keys", &self.keys).finish()
    }
}

impl KeyRing {
    /// Builds a ring from keys in priority order (the first one signs).
    pub fn new(keys: impl IntoIterator<Item = (KeyId, Secret)>) -> Result<Self, KeyRingError> {
        let mut ring: Vec<Key> = Vec::new();
        for (id, secret) in keys {
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyRingError::SecretTooShort {
                    key_id: id,
                    len: secret.len(),
                });
            }
            if ring.iter().any(|k| k.id == id) {
                return Err(KeyRingError::DuplicateKeyId { key_id: id });
            }
            // HMAC accepts keys of any length, so this cannot fail; map it anyway
            // rather than panic.
            let mac = HmacSha256::new_from_slice(secret.expose()).map_err(|_| {
                KeyRingError::SecretTooShort {
                    key_id: id.clone(),
                    len: secret.len(),
                }
            })?;
            ring.push(Key { id, secret, mac });
        }
        if ring.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(Self { keys: ring })
    }

    /// Parses the environment format `kid1:BASE64,kid2:BASE64`.
    pub fn parse(value: &str) -> Result<Self, KeyRingError> {
        if value.trim().is_empty() {
            return Err(KeyRingError::Empty);
        }
        let mut keys = Vec::new();
        for (index, raw) in value.split(',').enumerate() {
            let entry = index + 1;
            let raw = raw.trim();
            if raw.is_empty() {
                return Err(KeyRingError::EmptyEntry { entry });
            }
            let (id, b64) = raw
                .split_once(':')
                .ok_or(KeyRingError::MissingSeparator { entry })?;
            let key_id = KeyId::new(id.trim())
                .map_err(|reason| KeyRingError::InvalidKeyId { entry, reason })?;
            let secret = decode_secret(b64.trim()).ok_or_else(|| KeyRingError::InvalidBase64 {
                entry,
                key_id: key_id.clone(),
            })?;
            keys.push((key_id, Secret::new(secret)));
        }
        Self::new(keys)
    }

    /// A one-key ring with 32 random bytes from the OS, for development and tests.
    pub fn generate(key_id: KeyId) -> Self {
        let mut bytes = vec![0u8; MIN_SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        match Self::new([(key_id, Secret::new(bytes))]) {
            Ok(ring) => ring,
            // One key of exactly MIN_SECRET_LEN bytes: no check can fail.
            Err(_) => unreachable_generate(),
        }
    }

    /// The environment value for this ring (standard base64 with padding);
    /// [`KeyRing::parse`] reads it back. Contains the secrets: handle with care.
    pub fn to_env_value(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("{}:{}", k.id, STANDARD.encode(k.secret.expose())))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The key that signs.
    pub fn active_key(&self) -> &Key {
        // `new` guarantees at least one key; `generate` builds exactly one.
        &self.keys[0]
    }

    pub fn active_key_id(&self) -> &KeyId {
        &self.active_key().id
    }

    /// Looks a key up by id (any key in the ring, active or not).
    pub fn get(&self, key_id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id.as_str() == key_id)
    }

    pub fn contains(&self, key_id: &str) -> bool {
        self.get(key_id).is_some()
    }

    /// Keys in priority order (the first is the active key).
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Key> {
        self.keys.iter()
    }

    pub fn key_ids(&self) -> impl ExactSizeIterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromStr for KeyRing {
    type Err = KeyRingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cold]
fn unreachable_generate() -> ! {
    unreachable!("a single generated key of MIN_SECRET_LEN bytes is always a valid ring")
}

/// Standard or URL-safe alphabet, padding optional. Mixing alphabets is rejected.
fn decode_secret(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    STANDARD_LENIENT
        .decode(text)
        .or_else(|_| URL_SAFE_LENIENT.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn kid(s: &str) -> KeyId {
        KeyId::new(s).expect("valid key id")
    }

    fn parse_unit(value: &str) -> Result<(), KeyRingError> {
        KeyRing::parse(value).map(|_| ())
    }

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new(b"super secret bytes".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "Secret(***)");
        let ring = KeyRing::generate(kid("k1"));
        let debug = format!("{ring:?}");
        assert!(debug.contains("Secret(***)"), "{debug}");
        let env = ring.to_env_value();
        let secret_b64 = env.split_once(':').map(|(_, s)| s).unwrap_or_default();
        assert!(!debug.contains(secret_b64));
    }

    #[test]
    fn key_id_rules() {
        assert!(KeyId::new("a").is_ok());
        assert!(KeyId::new("Key_2024-01").is_ok());
        assert!(KeyId::new("a".repeat(32)).is_ok());
        assert_eq!(KeyId::new(""), Err(KeyIdError::Empty));
        assert_eq!(
            KeyId::new("a".repeat(33)),
            Err(KeyIdError::TooLong { len: 33 })
        );
        assert_eq!(
            KeyId::new("ab.c"),
            Err(KeyIdError::InvalidChar { position: 3 })
        );
        assert_eq!(
            KeyId::new("é"),
            Err(KeyIdError::InvalidChar { position: 1 })
        );
        assert!(KeyId::new("a b").is_err());
        assert!(KeyId::new("a+b").is_err());
        assert!(KeyId::new("a:b").is_err());
    }

    #[test]
    fn parse_single_and_multiple() {
        let a = [1u8; 32];
        let b = [2u8; 48];
        let ring =
            KeyRing::parse(&format!(" new:{} ,  old : {} ", b64(&a), b64(&b))).expect("valid ring");
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.active_key_id(), &kid("new"));
        assert_eq!(ring.get("old").map(|k| k.secret().expose()), Some(&b[..]));
        assert!(ring.contains("new"));
        assert!(!ring.contains("other"));
        let ids: Vec<_> = ring.key_ids().map(KeyId::as_str).collect();
        assert_eq!(ids, ["new", "old"]);
    }

    #[test]
    fn parse_accepts_url_safe_and_unpadded() {
        // 0xfb/0xff bytes produce '+' '/' in standard and '-' '_' in URL-safe.
        let secret = [0xfbu8; 34];
        let std_padded = STANDARD.encode(secret);
        assert!(std_padded.ends_with('='));
        assert!(std_padded.contains('+') || std_padded.contains('/'));
        let std_unpadded = std_padded.trim_end_matches('=');
        let url_unpadded = URL_SAFE_NO_PAD.encode(secret);
        let url_padded = base64::engine::general_purpose::URL_SAFE.encode(secret);
        for text in [
            std_padded.as_str(),
            std_unpadded,
            url_unpadded.as_str(),
            url_padded.as_str(),
        ] {
            let ring = KeyRing::parse(&format!("k:{text}")).expect(text);
            assert_eq!(ring.active_key().secret().expose(), &secret[..]);
        }
    }

    #[test]
    fn env_value_round_trips() {
        let ring = KeyRing::parse(&format!(
            "{},{}",
            KeyRing::generate(kid("k2")).to_env_value(),
            KeyRing::generate(kid("k1")).to_env_value()
        ))
        .expect("valid ring");
        let again = KeyRing::parse(&ring.to_env_value()).expect("round trip");
        assert_eq!(again.to_env_value(), ring.to_env_value());
        assert_eq!(again.active_key_id(), &kid("k2"));
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn generate_is_random() {
        let a = KeyRing::generate(kid("k"));
        let b = KeyRing::generate(kid("k"));
        assert_eq!(a.active_key().secret().len(), MIN_SECRET_LEN);
        assert_ne!(
            a.active_key().secret().expose(),
            b.active_key().secret().expose()
        );
    }

    #[test]
    fn parse_errors() {
        let good = b64(&[7u8; 32]);
        let short = b64(&[7u8; 31]);
        assert_eq!(parse_unit(""), Err(KeyRingError::Empty));
        assert_eq!(parse_unit("  \n "), Err(KeyRingError::Empty));
        assert_eq!(
            parse_unit(&format!("k1:{good},")),
            Err(KeyRingError::EmptyEntry { entry: 2 })
        );
        assert_eq!(
            parse_unit(&format!("k1:{good}, ,k2:{good}")),
            Err(KeyRingError::EmptyEntry { entry: 2 })
        );
        assert_eq!(
            parse_unit(&good),
            Err(KeyRingError::MissingSeparator { entry: 1 })
        );
        assert_eq!(
            parse_unit(&format!("k1:{good},k.2:{good}")),
            Err(KeyRingError::InvalidKeyId {
                entry: 2,
                reason: KeyIdError::InvalidChar { position: 2 }
            })
        );
        assert_eq!(
            parse_unit(&format!(":{good}")),
            Err(KeyRingError::InvalidKeyId {
                entry: 1,
                reason: KeyIdError::Empty
            })
        );
        assert_eq!(
            parse_unit("k1:not*base64!"),
            Err(KeyRingError::InvalidBase64 {
                entry: 1,
                key_id: kid("k1")
            })
        );
        assert_eq!(
            parse_unit("k1:"),
            Err(KeyRingError::InvalidBase64 {
                entry: 1,
                key_id: kid("k1")
            })
        );
        assert_eq!(
            parse_unit(&format!("k1:{short}")),
            Err(KeyRingError::SecretTooShort {
                key_id: kid("k1"),
                len: 31
            })
        );
        assert_eq!(
            parse_unit(&format!("k1:{good},k1:{good}")),
            Err(KeyRingError::DuplicateKeyId { key_id: kid("k1") })
        );
        // mixed alphabets in one secret are not base64 in either alphabet
        assert!(matches!(
            parse_unit(&format!("k1:{}+-", &good[..40])),
            Err(KeyRingError::InvalidBase64 { .. })
        ));
    }

    #[test]
    fn parse_error_messages_are_clear_and_secret_free() {
        let short = b64(b"0123456789abcdef");
        let err = KeyRing::parse(&format!("k1:{short}")).expect_err("short");
        let msg = err.to_string();
        assert!(msg.contains("k1") && msg.contains("16 bytes") && msg.contains("32"));
        assert!(!msg.contains(&short));

        // a secret pasted without a key id: nothing of it is echoed
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
        let msg = KeyRing::parse(secret).expect_err("no kid").to_string();
        assert!(msg.contains("entry 1") && !msg.contains("c2Vj"), "{msg}");

        // a secret in the key id position: not echoed either
        let msg = KeyRing::parse(&format!("{secret}:k1"))
            .expect_err("bad kid")
            .to_string();
        assert!(msg.contains("entry 1") && !msg.contains("c2Vj"), "{msg}");

        let msg = KeyRing::parse("k9:@@@@").expect_err("bad b64").to_string();
        assert!(msg.contains("k9") && msg.contains("base64") && !msg.contains("@@@@"));
    }

    #[test]
    fn new_rejects_empty() {
        assert_eq!(
            KeyRing::new(Vec::<(KeyId, Secret)>::new()).map(|_| ()),
            Err(KeyRingError::Empty)
        );
    }
}
