//! The identity provider's signing keys, fetched from its JWKS URL and cached.
//!
//! - Nothing is fetched until a token needs a JWKS key.
//! - A `kid` missing from the cache triggers a refetch, at most once per
//!   `min_refetch_interval` (and at most once per 5 s after a failed fetch), so a
//!   flood of tokens with made-up `kid`s cannot make us hammer the provider.
//! - Fetches are single-flight: concurrent misses wait for the one fetch in progress
//!   and then use its result instead of fetching again.
//! - Keys older than `max_age` are refreshed on next use; if that fails the cached
//!   keys keep working (an IdP outage does not lock every seller out).
//! - Each JWK is pinned to one algorithm: its `alg` if present (RS256 or ES256 only,
//!   and matching the key type), else RSA → RS256, EC P-256 → ES256. Any other key
//!   (symmetric `oct`, other curves, `use: enc`, no `kid`, RSA under 2048 bits) is
//!   skipped with a warning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use serde::Deserialize;

use super::error::AuthError;

/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// After a failed fetch, the next attempt waits at least this long.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
const MIN_RSA_BITS: usize = 2048;

/// A verification key and the one algorithm it accepts.
#[derive(Clone)]
pub(crate) struct PinnedKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

struct Snapshot {
    keys: HashMap<String, Arc<PinnedKey>>,
    fetched_at: Instant,
}

#[derive(Clone)]
struct Attempt {
    finished_at: Instant,
    /// The failure, for the log and the 503's detail.
    failure: Option<String>,
}

#[derive(Default)]
struct State {
    snapshot: Option<Arc<Snapshot>>,
    last_attempt: Option<Attempt>,
}

pub(crate) struct JwksCache {
    url: Url,
    http: reqwest::Client,
    min_refetch_interval: Duration,
    max_age: Duration,
    fetch_timeout: Duration,
    /// The HS256 key id: a JWKS key claiming it is skipped.
    reserved_kid: Option<String>,
    /// Short critical sections only; never held across an `.await`.
    state: Mutex<State>,
    /// Held for the duration of a fetch (single-flight).
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub(crate) fn new(
        url: Url,
        http: reqwest::Client,
        min_refetch_interval: Duration,
        max_age: Duration,
        fetch_timeout: Duration,
        reserved_kid: Option<String>,
    ) -> Self {
        JwksCache {
            url,
            http,
            min_refetch_interval,
            max_age,
            fetch_timeout,
            reserved_kid,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    fn current(&self) -> (Option<Arc<Snapshot>>, Option<Attempt>) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.snapshot.clone(), state.last_attempt.clone())
    }

    /// The key for `kid`, fetching the JWKS if needed (and allowed).
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<PinnedKey>, AuthError> {
        let started = Instant::now();
        let (snapshot, _) = self.current();
        let mut stale = None;
        if let Some(snapshot) = &snapshot {
            if let Some(key) = snapshot.keys.get(kid) {
                if snapshot.fetched_at.elapsed() < self.max_age {
                    return Ok(key.clone());
                }
                stale = Some(key.clone());
            }
        }

        let _fetching = match (self.fetching.try_lock(), stale) {
            (Ok(guard), _) => guard,
            // A refresh is already running: a known (if stale) key need not wait for it.
            (Err(_), Some(stale)) => return Ok(stale),
            (Err(_), None) => self.fetching.lock().await,
        };
        // Another task may have fetched while we waited for the lock.
        let (snapshot, last_attempt) = self.current();
        let cached = snapshot.as_ref().and_then(|s| s.keys.get(kid).cloned());
        if let (Some(snapshot), Some(key)) = (&snapshot, &cached) {
            if snapshot.fetched_at.elapsed() < self.max_age {
                return Ok(key.clone());
            }
        }
        if let Some(attempt) = &last_attempt {
            let backoff = match attempt.failure {
                Some(_) => self.min_refetch_interval.min(FAILURE_BACKOFF),
                None => self.min_refetch_interval,
            };
            let fetched_for_us = attempt.finished_at >= started;
            if fetched_for_us || attempt.finished_at.elapsed() < backoff {
                return match (cached, &attempt.failure) {
                    (Some(stale), _) => Ok(stale),
                    (None, Some(failure)) => Err(unavailable(failure.clone())),
                    (None, None) => Err(AuthError::UnknownKey),
                };
            }
        }

        let result = self.fetch().await;
        let finished_at = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the identity provider's JWKS");
                let snapshot = Arc::new(Snapshot {
                    keys,
                    fetched_at: finished_at,
                });
                state.snapshot = Some(snapshot.clone());
                state.last_attempt = Some(Attempt {
                    finished_at,
                    failure: None,
                });
                snapshot.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            Err(failure) => {
                tracing::warn!(url = %self.url, error = %failure, "cannot fetch the identity provider's JWKS");
                state.last_attempt = Some(Attempt {
                    finished_at,
                    failure: Some(failure.clone()),
                });
                match cached {
                    Some(stale) => Ok(stale),
                    None => Err(unavailable(failure)),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<PinnedKey>>, String> {
        let url = &self.url;
        let mut response = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .timeout(self.fetch_timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(format!(
                "GET {url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!(
                    "GET {url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body, self.reserved_kid.as_deref()).map_err(|e| format!("GET {url}: {e}"))
    }
}

fn unavailable(detail: String) -> AuthError {
    AuthError::IdentityProviderUnavailable { detail }
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

/// Parses a JWKS document, keeping the usable keys. Fails only when the document
/// itself is not a JWKS.
pub(crate) fn parse_jwks(
    body: &[u8],
    reserved_kid: Option<&str>,
) -> Result<HashMap<String, Arc<PinnedKey>>, String> {
    let set: RawJwkSet = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not a JWKS (`{{\"keys\": [...]}}`): {e}"))?;
    let mut keys = HashMap::new();
    for (index, raw) in set.keys.into_iter().enumerate() {
        let kid = raw.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        match pin_jwk(raw) {
            Ok((kid, _)) if Some(kid.as_str()) == reserved_kid => {
                tracing::warn!(%kid, "skipping JWKS key: its kid is the HS256 key id");
            }
            Ok((kid, _)) if keys.contains_key(&kid) => {
                tracing::warn!(%kid, "skipping JWKS key: duplicate kid");
            }
            Ok((kid, key)) => {
                keys.insert(kid, Arc::new(key));
            }
            Err(reason) => tracing::warn!(index, kid, reason, "skipping JWKS key"),
        }
    }
    Ok(keys)
}

/// Validates one JWK and pins it to its algorithm.
fn pin_jwk(raw: serde_json::Value) -> Result<(String, PinnedKey), String> {
    let jwk: Jwk = serde_json::from_value(raw).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = jwk
        .common
        .key_id
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or("no kid")?;
    if let Some(key_use) = &jwk.common.public_key_use {
        if *key_use != PublicKeyUse::Signature {
            return Err("`use` is not `sig`".to_owned());
        }
    }
    let declared = jwk.common.key_algorithm;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            match declared {
                None | Some(KeyAlgorithm::RS256) => {}
                Some(other) => {
                    return Err(format!(
                        "RSA key with `alg: {other}` (only RS256 is accepted)"
                    ))
                }
            }
            let n = URL_SAFE_NO_PAD
                .decode(params.n.trim_end_matches('='))
                .map_err(|_| "`n` is not base64url")?;
            let bits = n
                .iter()
                .position(|b| *b != 0)
                .map_or(0, |first| (n.len() - first) * 8);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA modulus of about {bits} bits (at least {MIN_RSA_BITS} required)"
                ));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(params) => {
            if params.curve != EllipticCurve::P256 {
                return Err(format!(
                    "EC curve {:?} (only P-256 is accepted)",
                    params.curve
                ));
            }
            match declared {
                None | Some(KeyAlgorithm::ES256) => {}
                Some(other) => {
                    return Err(format!(
                        "P-256 key with `alg: {other}` (only ES256 is accepted)"
                    ))
                }
            }
            for (name, coordinate) in [("x", &params.x), ("y", &params.y)] {
                let bytes = URL_SAFE_NO_PAD
                    .decode(coordinate.trim_end_matches('='))
                    .map_err(|_| format!("`{name}` is not base64url"))?;
                if bytes.len() != 32 {
                    return Err(format!("`{name}` is not a 32-byte P-256 coordinate"));
                }
            }
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (`oct`) keys are never accepted from a JWKS".to_owned())
        }
        _ => return Err("key type is not RSA or EC".to_owned()),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok((kid, PinnedKey { alg, key }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_n(bytes: usize) -> String {
        URL_SAFE_NO_PAD.encode(vec![0xc5u8; bytes])
    }

    fn ec_coord() -> String {
        URL_SAFE_NO_PAD.encode([7u8; 32])
    }

    #[test]
    fn keys_are_pinned_or_skipped() {
        let body = json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-alg", "alg": "RS256", "use": "sig", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": ec_coord(), "y": ec_coord()},
            // skipped:
            {"kty": "RSA", "kid": "small", "n": rsa_n(128), "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "RSA", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": ec_coord(), "y": ec_coord()},
            {"kty": "EC", "kid": "ec-rs", "alg": "RS256", "crv": "P-256", "x": ec_coord(), "y": ec_coord()},
            {"kty": "oct", "kid": "oct", "alg": "HS256", "k": ec_coord()},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": ec_coord()},
            {"kty": "RSA", "kid": "dev", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": rsa_n(256), "e": "AQAB"},
            "not an object"
        ]});
        let keys = parse_jwks(body.to_string().as_bytes(), Some("dev")).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["ec", "rsa", "rsa-alg"]);
        assert_eq!(keys["rsa"].alg, Algorithm::RS256);
        assert_eq!(keys["ec"].alg, Algorithm::ES256);
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_an_error() {
        assert!(parse_jwks(b"<html>", None).is_err());
        assert!(parse_jwks(br#"{"keys": 1}"#, None).is_err());
        assert!(parse_jwks(br#"{"keys": []}"#, None).unwrap().is_empty());
    }
}
