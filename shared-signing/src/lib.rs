//! # Layout
//!
//! - [`keys`]: [`Secret`] (never prints), [`KeyId`], and the [`KeyRing`] (first key
//!   signs, every key verifies; parsed from `kid1:BASE64,kid2:BASE64`).
//! - [`token`]: purpose-bound HMAC-SHA256 tokens
//!   (`v1.<kid>.<iat>.<exp>.<payload>.<mac>`), [`TokenPolicy`] (lifetime cap,
//!   bounded clock skew, length cap) and [`TokenError`] with stable codes.
//! - [`request`]: signing of service-to-service HTTP requests (method, path,
//!   canonical query, timestamp, key id, nonce, body digest), the
//!   [`RequestVerifier`] with its replay window, and the [`NonceStore`] port with
//!   an in-memory implementation.
//! - `encoding` (private): strict base64url and canonical decimal helpers shared
//!   by the formats above.
//!
//! All times are unix seconds (`i64`) passed in by the caller, so verification is
//! deterministic in tests; [`unix_now`] reads the system clock for production use.
//!
//! Rust 2021, no axum dependency: HTTP types come from the `http` crate.

mod encoding;
pub mod keys;
pub mod request;
pub mod token;

pub use keys::{Key, KeyId, KeyIdError, KeyRing, KeyRingError, Secret, MIN_SECRET_LEN};
pub use request::{
    canonical_query, canonical_request, sign_request, BodyDigest, MemoryNonceStore, NonceStore,
    NonceStoreError, RequestAuthError, RequestVerifier, VerifiedRequest,
};
pub use token::{Purpose, TokenError, TokenPolicy, VerifiedJson, VerifiedToken};

/// Current unix time in whole seconds (0 if the system clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
