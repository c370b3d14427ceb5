//! Signing of service-to-service HTTP requests.
//!
//! # Headers
//!
//! | header | value |
//! |---|---|
//! | `x-vitrine-key-id` | id of the signing key (`[A-Za-z0-9_-]{1,32}`) |
//! | `x-vitrine-timestamp` | unix seconds, canonical decimal (`0` or `[1-9][0-9]*`) |
//! | `x-vitrine-nonce` | 16 random bytes, base64url without padding (16..=64 chars of `[A-Za-z0-9_-]` accepted) |
//! | `x-vitrine-content-sha256` | SHA-256 of the body as 64 lowercase hex digits, or `UNSIGNED-PAYLOAD` |
//! | `x-vitrine-signature` | HMAC-SHA256 of the canonical request, base64url without padding |
//!
//! Each header must appear exactly once.
//!
//! # Canonical request
//!
//! Eight lines joined with `\n` (no trailing newline), UTF-8:
//!
//! ```text
//! vitrine-request-v1
//! <METHOD>            exactly as sent, e.g. POST (methods are case-sensitive)
//! <path>              the request-target path exactly as sent (percent-encoded form); "/" if empty
//! <canonical query>   see below; empty line if there is no query
//! <timestamp>         as in x-vitrine-timestamp
//! <key id>            as in x-vitrine-key-id
//! <nonce>             as in x-vitrine-nonce
//! <body digest>       as in x-vitrine-content-sha256
//! ```
//!
//! No field can contain `\n` (the HTTP method and URI grammars and the header
//! formats above exclude it), so the separators cannot collide.
//!
//! **Canonical query** (`application/x-www-form-urlencoded` semantics, the same
//! way servers such as axum's `Query` read it):
//!
//! 1. split the raw query on `&`, dropping empty segments;
//! 2. split each segment at the first `=` into key and value (no `=`: empty value);
//! 3. in key and value, replace `+` with a space, then percent-decode (`%XX`; a `%`
//!    not followed by two hex digits stays literal) to bytes;
//! 4. re-encode the bytes: `A-Z a-z 0-9 - . _ ~` stay as they are, every other
//!    byte becomes `%XX` with uppercase hex (so a space is `%20`);
//! 5. sort the pairs by encoded key, then encoded value (byte-wise), and join them
//!    as `key=value` with `&`.
//!
//! So `?b=2&a=x+y&a=%41` becomes `a=A&a=x%20y&b=2`.
//!
//! **Sign what you send**: the client signs the final URI (after its HTTP library
//! normalised it); the server verifies the URI it received before any prefix
//! stripping (with axum nested routers, use `OriginalUri`).
//!
//! # Verification order
//!
//! Missing header, malformed header, unknown key, timestamp outside the window
//! (`|now - timestamp| > window`, default and maximum 300 s), constant-time MAC
//! check, and only for an authentic request the nonce: it is remembered per key
//! until `timestamp + window`; a nonce seen before is a replay. The body is checked
//! last, by the handler, through [`VerifiedRequest::check_body`] (buffered bodies)
//! or the explicit [`VerifiedRequest::streamed_body_allowed`] (streamed bodies).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hmac::Mac;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::encoding::{b64url_decode, b64url_encode, is_b64url_char, parse_canonical_u63};
use crate::keys::{HmacSha256, Key, KeyId, KeyRing};

/// Name of the signing key id header.
pub const KEY_ID_HEADER: &str = "x-vitrine-key-id";
/// Name of the header with the unix seconds when the request was signed.
pub const TIMESTAMP_HEADER: &str = "x-vitrine-timestamp";
/// Name of the header with the random per-request value (replay protection).
pub const NONCE_HEADER: &str = "x-vitrine-nonce";
/// Name of the header with the body SHA-256 (lowercase hex) or [`UNSIGNED_PAYLOAD`].
pub const CONTENT_SHA256_HEADER: &str = "x-vitrine-content-sha256";
/// Name of the header with the base64url HMAC-SHA256 of the canonical request.
pub const SIGNATURE_HEADER: &str = "x-vitrine-signature";

/// [`KEY_ID_HEADER`] as a [`HeaderName`].
pub const HEADER_KEY_ID: HeaderName = HeaderName::from_static(KEY_ID_HEADER);
/// [`TIMESTAMP_HEADER`] as a [`HeaderName`].
pub const HEADER_TIMESTAMP: HeaderName = HeaderName::from_static(TIMESTAMP_HEADER);
/// [`NONCE_HEADER`] as a [`HeaderName`].
pub const HEADER_NONCE: HeaderName = HeaderName::from_static(NONCE_HEADER);
/// [`CONTENT_SHA256_HEADER`] as a [`HeaderName`].
pub const HEADER_CONTENT_SHA256: HeaderName = HeaderName::from_static(CONTENT_SHA256_HEADER);
/// [`SIGNATURE_HEADER`] as a [`HeaderName`].
pub const HEADER_SIGNATURE: HeaderName = HeaderName::from_static(SIGNATURE_HEADER);

/// All five signature headers, e.g. for `SetSensitiveHeaders` or CORS lists.
pub const SIGNATURE_HEADERS: [HeaderName; 5] = [
    HEADER_KEY_ID,
    HEADER_TIMESTAMP,
    HEADER_NONCE,
    HEADER_CONTENT_SHA256,
    HEADER_SIGNATURE,
];

/// `x-vitrine-content-sha256` value for a body that is not covered by the
/// signature (streamed uploads).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Default and maximum replay window (±300 s).
pub const MAX_WINDOW: Duration = Duration::from_secs(300);

const DOMAIN: &str = "vitrine-request-v1";
const NONCE_BYTES: usize = 16;
const NONCE_MIN_LEN: usize = 16;
const NONCE_MAX_LEN: usize = 64;

/// Bytes left as they are in the canonical query: RFC 3986 unreserved.
const QUERY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What the signature says about the body.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyDigest {
    /// SHA-256 of the exact body bytes.
    Sha256([u8; 32]),
    /// `UNSIGNED-PAYLOAD`: the body is not covered (streamed bodies only).
    Unsigned,
}

impl BodyDigest {
    /// SHA-256 of a buffered body.
    pub fn of(body: &[u8]) -> Self {
        Self::Sha256(Sha256::digest(body).into())
    }

    /// The header value: 64 lowercase hex digits or `UNSIGNED-PAYLOAD`.
    pub fn to_header_value(&self) -> String {
        match self {
            Self::Sha256(d) => hex::encode(d),
            Self::Unsigned => UNSIGNED_PAYLOAD.to_string(),
        }
    }

    /// Parses a header value; uppercase hex is rejected (one spelling per value).
    pub fn parse(value: &str) -> Option<Self> {
        if value == UNSIGNED_PAYLOAD {
            return Some(Self::Unsigned);
        }
        if value.len() != 64
            || !value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(value, &mut digest).ok()?;
        Some(Self::Sha256(digest))
    }
}

impl fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha256(d) => write!(f, "Sha256({})", hex::encode(d)),
            Self::Unsigned => f.write_str("Unsigned"),
        }
    }
}

impl fmt::Display for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header_value())
    }
}

/// Canonical form of a raw query string (without the `?`); see the module docs.
pub fn canonical_query(raw_query: Option<&str>) -> String {
    let Some(raw) = raw_query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            (canonical_component(key), canonical_component(value))
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw.len() + 8);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

fn canonical_component(raw: &str) -> String {
    let plus_as_space: Vec<u8> = raw
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    let decoded: Vec<u8> = percent_decode(&plus_as_space).collect();
    percent_encode(&decoded, QUERY_ENCODE_SET).to_string()
}

/// The canonical request string that is signed; see the module docs.
pub fn canonical_request(
    method: &Method,
    uri: &Uri,
    timestamp: i64,
    key_id: &str,
    nonce: &str,
    body: BodyDigest,
) -> String {
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    format!(
        "{DOMAIN}\n{}\n{path}\n{}\n{timestamp}\n{key_id}\n{nonce}\n{}",
        method.as_str(),
        canonical_query(uri.query()),
        body.to_header_value(),
    )
}

fn request_mac(
    key: &Key,
    method: &Method,
    uri: &Uri,
    timestamp: i64,
    nonce: &str,
    body: BodyDigest,
) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(
        canonical_request(method, uri, timestamp, key.id().as_str(), nonce, body).as_bytes(),
    );
    mac
}

fn header_value(text: String) -> HeaderValue {
    // Every value built here is visible ASCII (key id charset, digits, base64url,
    // hex), so this never falls back; an empty value would fail verification
    // rather than be accepted.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Signs a request with the ring's active key at time `now` (unix seconds) and a
/// fresh random nonce. Add the returned headers to the outgoing request.
pub fn sign_request(
    ring: &KeyRing,
    method: &Method,
    uri: &Uri,
    body: BodyDigest,
    now: i64,
) -> HeaderMap {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut nonce);
    sign_request_with_nonce(ring, method, uri, body, now, &b64url_encode(&nonce))
}

/// [`sign_request`] with a caller-chosen nonce (tests, interop vectors).
#[doc(hidden)]
pub fn sign_request_with_nonce(
    ring: &KeyRing,
    method: &Method,
    uri: &Uri,
    body: BodyDigest,
    now: i64,
    nonce: &str,
) -> HeaderMap {
    let key = ring.active_key();
    let tag = request_mac(key, method, uri, now, nonce, body)
        .finalize()
        .into_bytes();
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(HEADER_KEY_ID, header_value(key.id().to_string()));
    headers.insert(HEADER_TIMESTAMP, HeaderValue::from(now));
    headers.insert(HEADER_NONCE, header_value(nonce.to_string()));
    headers.insert(HEADER_CONTENT_SHA256, header_value(body.to_header_value()));
    headers.insert(HEADER_SIGNATURE, header_value(b64url_encode(&tag)));
    headers
}

/// The nonce store failed (e.g. its database is down). Verification fails closed.
#[derive(Debug, thiserror::Error)]
#[error("nonce store unavailable: {message}")]
pub struct NonceStoreError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl NonceStoreError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// Remembers nonces so a signed request is accepted once.
///
/// Implementations must be atomic per `(key_id, nonce)`: of two concurrent calls
/// with the same pair, exactly one returns `true` (e.g. SQL
/// `INSERT … ON CONFLICT DO NOTHING` and check the affected row count). Entries
/// may be forgotten once `expires_at` is in the past.
#[async_trait]
pub trait NonceStore: Send + Sync {
    /// Records `(key_id, nonce)` until `expires_at` (unix seconds). Returns `true`
    /// if it was not seen before, `false` for a replay.
    async fn remember(
        &self,
        key_id: &str,
        nonce: &str,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError>;
}

/// In-process [`NonceStore`] for a single replica (tests, embedded mode).
///
/// It needs no clock: every entry it is given expires at `timestamp + window`
/// for a request that passed the window check, so the largest `expires_at` seen
/// is at most `now + 2 × 300 s`; entries that expire more than 600 s before it
/// are certainly stale and are pruned. Pruning runs on insert, amortised (when
/// the map doubles), and the map is capped: past `max_entries` live entries it
/// fails closed with [`NonceStoreError`].
pub struct MemoryNonceStore {
    inner: Mutex<MemoryInner>,
    max_entries: usize,
}

struct MemoryInner {
    seen: HashMap<(String, String), i64>,
    high_water: i64,
    next_prune_at: usize,
}

const MIN_PRUNE_AT: usize = 1024;

impl Default for MemoryNonceStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryNonceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryNonceStore")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl MemoryNonceStore {
    /// Default cap: 250,000 live entries (≈ 400 requests/s sustained over the
    /// ±300 s window plus the pruning lag).
    pub const DEFAULT_MAX_ENTRIES: usize = 250_000;

    pub fn new() -> Self {
        Self::with_max_entries(Self::DEFAULT_MAX_ENTRIES)
    }

    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(MemoryInner {
                seen: HashMap::new(),
                high_water: i64::MIN,
                next_prune_at: MIN_PRUNE_AT,
            }),
            max_entries,
        }
    }

    /// Number of remembered entries (including stale ones not pruned yet).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // The map stays consistent even if a holder panicked mid-call.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn prune(inner: &mut MemoryInner) {
        let stale_before = inner
            .high_water
            .saturating_sub(2 * MAX_WINDOW.as_secs() as i64);
        inner
            .seen
            .retain(|_, expires_at| *expires_at >= stale_before);
        inner.next_prune_at = (inner.seen.len() * 2).max(MIN_PRUNE_AT);
    }
}

#[async_trait]
impl NonceStore for MemoryNonceStore {
    async fn remember(
        &self,
        key_id: &str,
        nonce: &str,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError> {
        let mut inner = self.lock();
        inner.high_water = inner.high_water.max(expires_at);
        let entry = (key_id.to_owned(), nonce.to_owned());
        if inner.seen.contains_key(&entry) {
            return Ok(false);
        }
        if inner.seen.len() >= inner.next_prune_at || inner.seen.len() >= self.max_entries {
            Self::prune(&mut inner);
        }
        if inner.seen.len() >= self.max_entries {
            return Err(NonceStoreError::new(format!(
                "in-memory nonce store is full ({} entries)",
                self.max_entries
            )));
        }
        inner.seen.insert(entry, expires_at);
        Ok(true)
    }
}

/// Why a signed request was rejected. [`RequestAuthError::code`] gives a stable
/// slug for API error envelopes.
#[derive(Debug, thiserror::Error)]
pub enum RequestAuthError {
    #[error("request signature header `{0}` is missing")]
    SignatureMissing(&'static str),
    #[error("request signature header `{0}` is malformed")]
    Malformed(&'static str),
    #[error("request was signed with an unknown key")]
    UnknownKey,
    #[error("request timestamp is outside the allowed window")]
    TimestampOutOfWindow,
    #[error("request signature is invalid")]
    InvalidSignature,
    #[error("request was already received (replay)")]
    Replayed,
    #[error("request body does not match its signed digest")]
    BodyDigestMismatch,
    #[error("request body is unsigned, which this endpoint does not allow")]
    UnsignedBodyNotAllowed,
    #[error(transparent)]
    NonceStoreUnavailable(#[from] NonceStoreError),
}

impl RequestAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::SignatureMissing(_) => "signature-missing",
            Self::Malformed(_) => "signature-malformed",
            Self::UnknownKey => "signature-unknown-key",
            Self::TimestampOutOfWindow => "signature-timestamp-out-of-window",
            Self::InvalidSignature => "signature-invalid",
            Self::Replayed => "signature-replayed",
            Self::BodyDigestMismatch => "body-digest-mismatch",
            Self::UnsignedBodyNotAllowed => "unsigned-body-not-allowed",
            Self::NonceStoreUnavailable(_) => "nonce-store-unavailable",
        }
    }
}

/// An authentic, fresh, first-seen request. The body is not checked yet: call
/// [`VerifiedRequest::check_body`] (buffered bodies) or, on endpoints that take
/// streamed bodies, [`VerifiedRequest::streamed_body_allowed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the body is not verified yet: call check_body or streamed_body_allowed"]
pub struct VerifiedRequest {
    key_id: KeyId,
    timestamp: i64,
    body: BodyDigest,
}

impl VerifiedRequest {
    /// Which key signed the request (tells the caller which service it is).
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// For buffered bodies: the body must match the signed SHA-256.
    /// An `UNSIGNED-PAYLOAD` request is rejected with
    /// [`RequestAuthError::UnsignedBodyNotAllowed`].
    pub fn check_body(&self, body: &[u8]) -> Result<(), RequestAuthError> {
        self.check_body_sha256(&Sha256::digest(body).into())
    }

    /// Like [`VerifiedRequest::check_body`], for a SHA-256 the caller computed
    /// while streaming the body.
    pub fn check_body_sha256(&self, computed: &[u8; 32]) -> Result<(), RequestAuthError> {
        match &self.body {
            BodyDigest::Sha256(signed) if bool::from(signed.ct_eq(computed)) => Ok(()),
            BodyDigest::Sha256(_) => Err(RequestAuthError::BodyDigestMismatch),
            BodyDigest::Unsigned => Err(RequestAuthError::UnsignedBodyNotAllowed),
        }
    }

    /// Explicit opt-in for endpoints that accept streamed bodies. Returns the
    /// signed digest: for [`BodyDigest::Sha256`] hash the stream and call
    /// [`VerifiedRequest::check_body_sha256`]; for [`BodyDigest::Unsigned`] the
    /// endpoint must bound and check the body itself (e.g. size and SHA-256 from
    /// a signed token or signed metadata).
    pub fn streamed_body_allowed(&self) -> BodyDigest {
        self.body
    }
}

/// Verifies signed requests against a key ring, a time window and a nonce store.
#[derive(Clone)]
pub struct RequestVerifier {
    ring: Arc<KeyRing>,
    nonces: Arc<dyn NonceStore>,
    window: Duration,
}

impl fmt::Debug for RequestVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestVerifier")
            .field("ring", &self.ring)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl RequestVerifier {
    /// Window ±300 s.
    pub fn new(ring: KeyRing, nonces: Arc<dyn NonceStore>) -> Self {
        Self {
            ring: Arc::new(ring),
            nonces,
            window: MAX_WINDOW,
        }
    }

    /// Narrows the accepted window to ±`window` (whole seconds), clamped to
    /// [`MAX_WINDOW`].
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = Duration::from_secs(window.as_secs()).min(MAX_WINDOW);
        self
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Verifies the signature headers of a request received at `now` (unix
    /// seconds). See the module docs for the order of checks.
    pub async fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<VerifiedRequest, RequestAuthError> {
        let raw_key_id = single_header(headers, KEY_ID_HEADER)?;
        let raw_timestamp = single_header(headers, TIMESTAMP_HEADER)?;
        let nonce = single_header(headers, NONCE_HEADER)?;
        let raw_digest = single_header(headers, CONTENT_SHA256_HEADER)?;
        let raw_signature = single_header(headers, SIGNATURE_HEADER)?;

        use RequestAuthError::Malformed;
        KeyId::new(raw_key_id).map_err(|_| Malformed(KEY_ID_HEADER))?;
        let timestamp = parse_canonical_u63(raw_timestamp).ok_or(Malformed(TIMESTAMP_HEADER))?;
        if !(NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len())
            || !nonce.bytes().all(is_b64url_char)
        {
            return Err(Malformed(NONCE_HEADER));
        }
        let body = BodyDigest::parse(raw_digest).ok_or(Malformed(CONTENT_SHA256_HEADER))?;
        let signature = b64url_decode(raw_signature)
            .filter(|s| s.len() == 32)
            .ok_or(Malformed(SIGNATURE_HEADER))?;

        let key = self
            .ring
            .get(raw_key_id)
            .ok_or(RequestAuthError::UnknownKey)?;

        let window = i128::from(self.window.as_secs());
        if (i128::from(now) - i128::from(timestamp)).abs() > window {
            return Err(RequestAuthError::TimestampOutOfWindow);
        }

        request_mac(key, method, uri, timestamp, nonce, body)
            .verify_slice(&signature)
            .map_err(|_| RequestAuthError::InvalidSignature)?;

        let expires_at = timestamp.saturating_add(self.window.as_secs() as i64);
        if !self.nonces.remember(raw_key_id, nonce, expires_at).await? {
            return Err(RequestAuthError::Replayed);
        }

        Ok(VerifiedRequest {
            key_id: key.id().clone(),
            timestamp,
            body,
        })
    }
}

fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<&'h str, RequestAuthError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or(RequestAuthError::SignatureMissing(name))?;
    if values.next().is_some() {
        return Err(RequestAuthError::Malformed(name));
    }
    value
        .to_str()
        .map_err(|_| RequestAuthError::Malformed(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const NOW: i64 = 1_700_000_000;

    fn ring(kid: &str) -> KeyRing {
        KeyRing::generate(KeyId::new(kid).expect("kid"))
    }

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    fn verifier(ring: &KeyRing) -> RequestVerifier {
        RequestVerifier::new(ring.clone(), Arc::new(MemoryNonceStore::new()))
    }

    fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
        headers.insert(name, HeaderValue::from_str(value).expect("header value"));
    }

    /// Counts calls; answers with `reply` (None = store failure).
    struct CountingStore {
        calls: AtomicUsize,
        reply: Option<bool>,
    }

    #[async_trait]
    impl NonceStore for CountingStore {
        async fn remember(&self, _: &str, _: &str, _: i64) -> Result<bool, NonceStoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.reply
                .ok_or_else(|| NonceStoreError::with_source("db down", std::io::Error::other("x")))
        }
    }

    #[tokio::test]
    async fn round_trip_with_body() {
        let r = ring("app");
        let v = verifier(&r);
        let u = uri("/internal/presign?x=1");
        let body = br#"{"a":1}"#;
        let headers = sign_request(&r, &Method::POST, &u, BodyDigest::of(body), NOW);
        assert_eq!(headers.len(), 5);
        for name in SIGNATURE_HEADERS {
            assert!(headers.contains_key(&name), "{name}");
        }
        let nonce = headers[NONCE_HEADER].to_str().expect("ascii");
        assert_eq!(nonce.len(), 22);
        let verified = v
            .verify(&Method::POST, &u, &headers, NOW)
            .await
            .expect("verify");
        assert_eq!(verified.key_id().as_str(), "app");
        assert_eq!(verified.timestamp(), NOW);
        assert!(verified.check_body(body).is_ok());
        let err = verified.check_body(b"{}").expect_err("other body");
        assert!(matches!(err, RequestAuthError::BodyDigestMismatch));
        assert_eq!(err.code(), "body-digest-mismatch");
        assert!(verified
            .check_body_sha256(&Sha256::digest(body).into())
            .is_ok());
        assert_eq!(verified.streamed_body_allowed(), BodyDigest::of(body));
    }

    #[tokio::test]
    async fn unsigned_body_needs_explicit_opt_in() {
        let r = ring("import");
        let u = uri("/internal/ingest");
        let headers = sign_request(&r, &Method::POST, &u, BodyDigest::Unsigned, NOW);
        assert_eq!(headers[CONTENT_SHA256_HEADER], UNSIGNED_PAYLOAD);
        let verified = verifier(&r)
            .verify(&Method::POST, &u, &headers, NOW)
            .await
            .expect("verify");
        for err in [
            verified.check_body(b""),
            verified.check_body(b"anything"),
            verified.check_body_sha256(&[0; 32]),
        ] {
            let err = err.expect_err("unsigned");
            assert!(matches!(err, RequestAuthError::UnsignedBodyNotAllowed));
            assert_eq!(err.code(), "unsigned-body-not-allowed");
        }
        assert_eq!(verified.streamed_body_allowed(), BodyDigest::Unsigned);
    }

    #[tokio::test]
    async fn missing_headers() {
        let r = ring("app");
        let u = uri("/x");
        let headers = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), NOW);
        for name in SIGNATURE_HEADERS {
            let mut h = headers.clone();
            h.remove(&name);
            let err = verifier(&r)
                .verify(&Method::GET, &u, &h, NOW)
                .await
                .expect_err("missing");
            assert!(
                matches!(err, RequestAuthError::SignatureMissing(n) if n == name.as_str()),
                "{err}"
            );
            assert_eq!(err.code(), "signature-missing");
            assert!(err.to_string().contains(name.as_str()));
        }
        let err = verifier(&r)
            .verify(&Method::GET, &u, &HeaderMap::new(), NOW)
            .await
            .expect_err("none");
        assert_eq!(err.code(), "signature-missing");
    }

    #[tokio::test]
    async fn malformed_headers() {
        let r = ring("app");
        let u = uri("/x");
        let good = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), NOW);
        let digest = BodyDigest::of(b"").to_header_value();
        let sig = good[SIGNATURE_HEADER].to_str().expect("ascii").to_string();
        let cases: Vec<(&'static str, String)> = vec![
            (KEY_ID_HEADER, "app.1".into()),
            (KEY_ID_HEADER, "a".repeat(33)),
            (TIMESTAMP_HEADER, format!("+{NOW}")),
            (TIMESTAMP_HEADER, format!("0{NOW}")),
            (TIMESTAMP_HEADER, format!("-{NOW}")),
            (TIMESTAMP_HEADER, "17e8".into()),
            (TIMESTAMP_HEADER, "".into()),
            (NONCE_HEADER, "short".into()),
            (NONCE_HEADER, "A".repeat(65)),
            (NONCE_HEADER, "AAAAAAAAAAAAAAAAAAAAA=".into()),
            (NONCE_HEADER, "AAAAAAAAAAAA+AAAAAAAAA".into()),
            (CONTENT_SHA256_HEADER, digest.to_uppercase()),
            (CONTENT_SHA256_HEADER, digest[..63].into()),
            (CONTENT_SHA256_HEADER, "unsigned-payload".into()),
            (CONTENT_SHA256_HEADER, format!("{digest}0")),
            (SIGNATURE_HEADER, format!("{sig}=")),
            (SIGNATURE_HEADER, sig[..42].into()),
            (SIGNATURE_HEADER, format!("{sig}AA")),
            // A character outside the URL-safe alphabet (the signature is random, so
            // put one in rather than hoping it has a '-' or '_' to swap).
            (SIGNATURE_HEADER, format!("+{}", &sig[1..])),
        ];
        for (name, value) in cases {
            let mut h = good.clone();
            set(&mut h, name, &value);
            let err = verifier(&r)
                .verify(&Method::GET, &u, &h, NOW)
                .await
                .expect_err(&value);
            assert!(
                matches!(err, RequestAuthError::Malformed(n) if n == name),
                "{name}: {value}: {err}"
            );
            assert_eq!(err.code(), "signature-malformed");
        }
        // nonce lengths at the limits are accepted
        for n in [16, 64] {
            let nonce = "N".repeat(n);
            let h =
                sign_request_with_nonce(&r, &Method::GET, &u, BodyDigest::Unsigned, NOW, &nonce);
            assert!(verifier(&r).verify(&Method::GET, &u, &h, NOW).await.is_ok());
        }
        // non-ASCII value
        let mut h = good.clone();
        h.insert(
            HEADER_NONCE,
            HeaderValue::from_bytes(b"\xffAAAAAAAAAAAAAAAAAAAAA").expect("opaque"),
        );
        let err = verifier(&r)
            .verify(&Method::GET, &u, &h, NOW)
            .await
            .expect_err("x");
        assert!(matches!(err, RequestAuthError::Malformed(NONCE_HEADER)));
        // duplicated header
        let mut h = good.clone();
        h.append(HEADER_TIMESTAMP, HeaderValue::from(NOW));
        let err = verifier(&r)
            .verify(&Method::GET, &u, &h, NOW)
            .await
            .expect_err("dup");
        assert!(matches!(err, RequestAuthError::Malformed(TIMESTAMP_HEADER)));
    }

    #[tokio::test]
    async fn unknown_key_and_rotation() {
        let old = ring("old");
        let new = ring("new");
        let u = uri("/x");
        let signed_old = sign_request(&old, &Method::GET, &u, BodyDigest::of(b""), NOW);
        let both = KeyRing::parse(&format!("{},{}", new.to_env_value(), old.to_env_value()))
            .expect("ring");
        let verified = verifier(&both)
            .verify(&Method::GET, &u, &signed_old, NOW)
            .await
            .expect("old key verifies while in the ring");
        assert_eq!(verified.key_id().as_str(), "old");
        let err = verifier(&new)
            .verify(&Method::GET, &u, &signed_old, NOW)
            .await
            .expect_err("removed");
        assert!(matches!(err, RequestAuthError::UnknownKey));
        assert_eq!(err.code(), "signature-unknown-key");
    }

    #[tokio::test]
    async fn timestamp_window_boundaries() {
        let r = ring("app");
        let u = uri("/x");
        let v = verifier(&r);
        for (signed_at, ok) in [
            (NOW - 300, true),
            (NOW + 300, true),
            (NOW - 301, false),
            (NOW + 301, false),
            (0, false),
        ] {
            let h = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), signed_at);
            let result = v.verify(&Method::GET, &u, &h, NOW).await;
            if ok {
                assert!(result.is_ok(), "{signed_at}");
            } else {
                let err = result.expect_err("out of window");
                assert!(matches!(err, RequestAuthError::TimestampOutOfWindow));
                assert_eq!(err.code(), "signature-timestamp-out-of-window");
            }
        }
        let narrow = verifier(&r).with_window(Duration::from_secs(60));
        assert_eq!(narrow.window(), Duration::from_secs(60));
        let h = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), NOW + 60);
        assert!(narrow.verify(&Method::GET, &u, &h, NOW).await.is_ok());
        let h = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), NOW - 61);
        assert!(matches!(
            narrow.verify(&Method::GET, &u, &h, NOW).await,
            Err(RequestAuthError::TimestampOutOfWindow)
        ));
        let wide = verifier(&r).with_window(Duration::from_secs(3600));
        assert_eq!(wide.window(), MAX_WINDOW);
    }

    #[tokio::test]
    async fn invalid_signature_and_nonce_only_after_mac() {
        let r = ring("app");
        let impostor = ring("app");
        let u = uri("/x");
        let store = Arc::new(CountingStore {
            calls: AtomicUsize::new(0),
            reply: Some(true),
        });
        let v = RequestVerifier::new(r.clone(), store.clone());
        let forged = sign_request(&impostor, &Method::GET, &u, BodyDigest::of(b""), NOW);
        let err = v
            .verify(&Method::GET, &u, &forged, NOW)
            .await
            .expect_err("forged");
        assert!(matches!(err, RequestAuthError::InvalidSignature));
        assert_eq!(err.code(), "signature-invalid");
        let stale = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), NOW - 1000);
        assert!(v.verify(&Method::GET, &u, &stale, NOW).await.is_err());
        assert_eq!(store.calls.load(Ordering::SeqCst), 0);
        let good = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), NOW);
        assert!(v.verify(&Method::GET, &u, &good, NOW).await.is_ok());
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn replay_rejected_but_forgery_does_not_burn_nonce() {
        let r = ring("app");
        let impostor = ring("app");
        let u = uri("/x?a=1");
        let v = verifier(&r);
        let nonce = "AAAAAAAAAAAAAAAAAAAAAA";
        let forged = sign_request_with_nonce(
            &impostor,
            &Method::GET,
            &u,
            BodyDigest::Unsigned,
            NOW,
            nonce,
        );
        assert!(v.verify(&Method::GET, &u, &forged, NOW).await.is_err());
        let good = sign_request_with_nonce(&r, &Method::GET, &u, BodyDigest::Unsigned, NOW, nonce);
        assert!(v.verify(&Method::GET, &u, &good, NOW).await.is_ok());
        let err = v
            .verify(&Method::GET, &u, &good, NOW + 10)
            .await
            .expect_err("replay");
        assert!(matches!(err, RequestAuthError::Replayed));
        assert_eq!(err.code(), "signature-replayed");
        // a clone of the verifier shares the store
        let err = v
            .clone()
            .verify(&Method::GET, &u, &good, NOW)
            .await
            .expect_err("replay");
        assert!(matches!(err, RequestAuthError::Replayed));
    }

    #[tokio::test]
    async fn nonce_store_failure_fails_closed() {
        let r = ring("app");
        let u = uri("/x");
        let store = Arc::new(CountingStore {
            calls: AtomicUsize::new(0),
            reply: None,
        });
        let v = RequestVerifier::new(r.clone(), store);
        let h = sign_request(&r, &Method::GET, &u, BodyDigest::of(b""), NOW);
        let err = v
            .verify(&Method::GET, &u, &h, NOW)
            .await
            .expect_err("store down");
        assert!(matches!(err, RequestAuthError::NonceStoreUnavailable(_)));
        assert_eq!(err.code(), "nonce-store-unavailable");
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.to_string().contains("db down"));
    }

    #[tokio::test]
    async fn memory_store_semantics() {
        let store = MemoryNonceStore::new();
        assert!(store.is_empty());
        assert_eq!(store.remember("a", "n1", NOW).await.ok(), Some(true));
        assert_eq!(store.remember("a", "n1", NOW).await.ok(), Some(false));
        assert_eq!(store.remember("b", "n1", NOW).await.ok(), Some(true));
        assert_eq!(store.remember("a", "n2", NOW).await.ok(), Some(true));
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn memory_store_prunes_and_is_bounded() {
        let store = MemoryNonceStore::with_max_entries(3000);
        for i in 0..2000 {
            let fresh = store.remember("k", &format!("old{i}"), NOW).await;
            assert_eq!(fresh.ok(), Some(true));
        }
        // Much later: everything above is stale and goes at the next prune.
        let later = NOW + 10_000;
        for i in 0..2000 {
            let fresh = store.remember("k", &format!("new{i}"), later).await;
            assert_eq!(fresh.ok(), Some(true));
        }
        assert!(store.len() <= 2001, "len {}", store.len());
        // Entries inside the retention horizon are kept: replays still caught.
        assert_eq!(store.remember("k", "new5", later).await.ok(), Some(false));

        // Full of live entries: fails closed instead of growing.
        let small = MemoryNonceStore::with_max_entries(10);
        for i in 0..10 {
            assert!(small.remember("k", &i.to_string(), NOW).await.is_ok());
        }
        assert!(small.remember("k", "overflow", NOW).await.is_err());
        assert_eq!(small.remember("k", "3", NOW).await.ok(), Some(false));
    }

    #[test]
    fn canonical_query_rules() {
        assert_eq!(canonical_query(None), "");
        assert_eq!(canonical_query(Some("")), "");
        assert_eq!(canonical_query(Some("b=2&a=x+y&a=%41")), "a=A&a=x%20y&b=2");
        // '+' and %20 are both a space; %2B is a literal plus
        assert_eq!(
            canonical_query(Some("q=a+b")),
            canonical_query(Some("q=a%20b"))
        );
        assert_ne!(
            canonical_query(Some("q=a+b")),
            canonical_query(Some("q=a%2Bb"))
        );
        assert_eq!(canonical_query(Some("q=a%2Bb")), "q=a%2Bb");
        // no '=' is an empty value; empty segments are dropped
        assert_eq!(canonical_query(Some("flag&&x=1&")), "flag=&x=1");
        assert_eq!(
            canonical_query(Some("flag")),
            canonical_query(Some("flag="))
        );
        // only the first '=' splits
        assert_eq!(canonical_query(Some("a==b")), "a=%3Db");
        // reserved and non-ASCII bytes encoded with uppercase hex
        assert_eq!(
            canonical_query(Some("k=%c3%a9/?:&t=~-._")),
            "k=%C3%A9%2F%3F%3A&t=~-._"
        );
        // malformed escapes stay literal, then get encoded
        assert_eq!(canonical_query(Some("p=100%&q=%zz")), "p=100%25&q=%25zz");
        // sorted by key then value, byte-wise on the encoded form
        assert_eq!(
            canonical_query(Some("b=1&a=2&a=10&B=0")),
            "B=0&a=10&a=2&b=1"
        );
        // separators inside values are escaped, so pairs cannot run together
        assert_ne!(
            canonical_query(Some("a=1%26b%3D2")),
            canonical_query(Some("a=1&b=2"))
        );
    }

    /// Known-answer vector computed independently (Python `hmac`) from the
    /// canonical request described in the module docs.
    #[test]
    fn known_answer_vector() {
        let r = KeyRing::parse("test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("ring");
        let u = uri("/internal/presign?b=2&a=x+y&a=%41");
        let nonce = "AAAAAAAAAAAAAAAAAAAAAA";
        let body = BodyDigest::of(b"{}");
        assert_eq!(
            canonical_request(&Method::POST, &u, NOW, "test", nonce, body),
            "vitrine-request-v1\nPOST\n/internal/presign\na=A&a=x%20y&b=2\n1700000000\ntest\n\
             AAAAAAAAAAAAAAAAAAAAAA\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let h = sign_request_with_nonce(&r, &Method::POST, &u, body, NOW, nonce);
        assert_eq!(
            h[SIGNATURE_HEADER],
            "0CWF7zuW3rLxDweOcXAlOMg3p5G8k_A8dM-6sc3W-18"
        );
        assert_eq!(h[TIMESTAMP_HEADER], "1700000000");
        assert_eq!(h[KEY_ID_HEADER], "test");
    }

    #[test]
    fn canonical_request_uses_path_as_sent() {
        let body = BodyDigest::Unsigned;
        let c = |u: &str| canonical_request(&Method::GET, &uri(u), 1, "k", "n", body);
        assert_ne!(c("/a%2Fb"), c("/a/b"));
        assert_ne!(c("/a/b"), c("/a/b/"));
        assert_eq!(c("http://storage:8082/a?x=1"), c("/a?x=1"));
        assert!(c("http://storage:8082").contains("\n/\n"));
    }

    #[test]
    fn body_digest_parse() {
        let d = BodyDigest::of(b"abc");
        assert_eq!(BodyDigest::parse(&d.to_header_value()), Some(d));
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            BodyDigest::parse(UNSIGNED_PAYLOAD),
            Some(BodyDigest::Unsigned)
        );
        assert_eq!(BodyDigest::parse(""), None);
        assert_eq!(BodyDigest::parse(&"g".repeat(64)), None);
    }
}
