//! Token verification: header checks, key selection, signature, claims.
//!
//! Order matters: the header is read by hand first (so `alg: none` and unknown
//! algorithms are refused before anything else and never trigger a JWKS fetch),
//! then the key is chosen from the `kid` alone, then the header's `alg` must equal
//! the key's pinned algorithm, and only then does `jsonwebtoken` check the signature
//! and, after it, the claims. Claims of a token whose signature is wrong are never
//! looked at.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::config::{AuthConfig, MAX_LEEWAY};
use super::error::AuthError;
use super::jwks::{JwksCache, PinnedKey};
use super::seller::{SellerClaims, SellerId};

/// Longer tokens are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

pub(crate) struct Verifier {
    issuer: String,
    audience: String,
    leeway_secs: u64,
    /// What `jsonwebtoken` checks, one per accepted algorithm, built once: building one
    /// per request was about 2 % of `POST /uploads`' CPU (`docs/benchmarks.md`).
    validations: [Validation; 3],
    /// `(kid, key)` of the HS256 secret.
    hs256: Option<(String, Arc<PinnedKey>)>,
    jwks: Option<JwksCache>,
}

/// What we need from the header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

impl Verifier {
    pub(crate) fn new(config: &AuthConfig, http: reqwest::Client) -> Self {
        let leeway = if config.leeway > MAX_LEEWAY {
            tracing::warn!(
                leeway_secs = config.leeway.as_secs(),
                "JWT leeway capped at {} s",
                MAX_LEEWAY.as_secs()
            );
            MAX_LEEWAY
        } else {
            config.leeway
        };
        let hs256 = config.hs256.as_ref().map(|hs| {
            let key = PinnedKey {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(hs.secret.expose()),
            };
            (hs.key_id.clone(), Arc::new(key))
        });
        let jwks = config.jwks_url.as_ref().map(|url| {
            let loopback = url.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            if url.scheme() == "http" && !loopback {
                tracing::warn!(%url, "the JWKS URL is plain http: anyone on the path can substitute keys; use https");
            }
            JwksCache::new(
                url.clone(),
                http,
                config.jwks_min_refetch_interval,
                config.jwks_max_age,
                config.jwks_fetch_timeout,
                hs256.as_ref().map(|(kid, _)| kid.clone()),
            )
        });
        let validations = ACCEPTED_ALGORITHMS
            .map(|alg| validation(alg, &config.issuer, &config.audience, leeway.as_secs()));
        Verifier {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: leeway.as_secs(),
            validations,
            hs256,
            jwks,
        }
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<SellerClaims, AuthError> {
        let header = parse_header(token)?;
        let key = self.select_key(header.kid.as_deref()).await?;
        if key.alg != header.alg {
            return Err(AuthError::UnsupportedAlgorithm(
                "the token's `alg` is not the algorithm of the key it names",
            ));
        }
        let validation = self
            .validation(key.alg)
            .ok_or(AuthError::UnsupportedAlgorithm(
                "only HS256, RS256 and ES256 are accepted",
            ))?;
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key.key, validation)
            .map_err(map_jwt_error)?;
        self.claims(data.claims, header.kid)
    }

    /// `kid` present: the HS256 key if it has that id, else the JWKS. No `kid`: the
    /// HS256 key. Never a key named by the token itself (`jku`, `jwk`, `x5u`).
    async fn select_key(&self, kid: Option<&str>) -> Result<Arc<PinnedKey>, AuthError> {
        match (kid, &self.hs256) {
            (Some(kid), Some((hs_kid, key))) if kid == hs_kid => Ok(key.clone()),
            (Some(kid), _) => match &self.jwks {
                Some(jwks) => jwks.key(kid).await,
                None => Err(AuthError::UnknownKey),
            },
            (None, Some((_, key))) => Ok(key.clone()),
            (None, None) => Err(AuthError::UnknownKey),
        }
    }

    /// The checks for a key's pinned algorithm; `None` for one outside
    /// [`ACCEPTED_ALGORITHMS`], which no key is pinned to and the header parser refuses.
    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        let index = ACCEPTED_ALGORITHMS
            .iter()
            .position(|accepted| *accepted == alg)?;
        self.validations.get(index)
    }

    fn claims(&self, claims: TokenClaims, kid: Option<String>) -> Result<SellerClaims, AuthError> {
        // jsonwebtoken also accepts an array `iss` that contains ours; RFC 7519 says
        // `iss` is one string.
        if claims.iss.as_ref().and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(AuthError::InvalidIssuer(
                "`iss` must be a single string naming the trusted issuer",
            ));
        }
        let sub = claims
            .sub
            .as_ref()
            .and_then(Value::as_str)
            .ok_or(AuthError::InvalidSubject("`sub` must be a string"))?;
        let seller_id = SellerId::parse(sub).map_err(|_| {
            AuthError::InvalidSubject(
                "`sub` must be 1–128 characters of letters, digits and . _ : @ -",
            )
        })?;
        let expires_at =
            claims
                .exp
                .as_ref()
                .and_then(numeric_date)
                .ok_or(AuthError::MalformedToken(
                    "`exp` must be a number of seconds",
                ))?;
        Ok(SellerClaims {
            seller_id,
            issuer: self.issuer.clone(),
            expires_at,
            issued_at: claims.iat.as_ref().and_then(numeric_date),
            token_id: claims
                .jti
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_owned),
            key_id: kid,
        })
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("hs256_key_id", &self.hs256.as_ref().map(|(kid, _)| kid))
            .field("jwks_url", &self.jwks.as_ref().map(|j| j.url().as_str()))
            .finish()
    }
}

/// The algorithms a key may be pinned to, and so the only ones a token may name.
const ACCEPTED_ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256];

/// What `jsonwebtoken` checks before [`Verifier::claims`] looks at a token.
fn validation(alg: Algorithm, issuer: &str, audience: &str, leeway_secs: u64) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    // jsonwebtoken only requires `exp` by default; without this a token with no
    // `aud` or `iss` would pass.
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation
}

/// The claims [`Verifier::claims`] reads, each as whatever JSON the token holds (their
/// types are checked there); the rest are skipped rather than copied into a map.
/// `jsonwebtoken` has already checked `exp`, `nbf`, `iss` and `aud` by then.
#[derive(Deserialize)]
struct TokenClaims {
    iss: Option<Value>,
    sub: Option<Value>,
    exp: Option<Value>,
    iat: Option<Value>,
    jti: Option<Value>,
}

fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// The JOSE header members [`parse_header`] looks at; the rest are skipped.
#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    alg: Member,
    #[serde(default)]
    kid: Member,
    #[serde(default)]
    crit: Member,
}

/// A JSON member as found: `None` when absent, `Some(Value::Null)` when `null` (which
/// `Option<Value>` would not tell apart from absent).
#[derive(Default)]
struct Member(Option<Value>);

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Member(Some(value)))
    }
}

/// Reads the JOSE header without trusting it. Done by hand rather than with
/// `jsonwebtoken::decode_header`, which fails on `alg: none` with a generic error.
pub(crate) fn parse_header(token: &str) -> Result<TokenHeader, AuthError> {
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::MalformedToken("the token is too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(AuthError::MalformedToken(
            "a JWT has three base64url parts separated by dots",
        ));
    }
    let is_b64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !parts.iter().all(|part| is_b64url(part)) || parts[0].is_empty() || parts[1].is_empty() {
        return Err(AuthError::MalformedToken(
            "a part of the token is not base64url",
        ));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| AuthError::MalformedToken("the header is not base64url"))?;
    // A derived struct would also read a JSON array, field by field: refuse it first.
    // A member named twice fails the parse (RFC 7515 §4: reject, or take the last).
    let not_an_object = || AuthError::MalformedToken("the header is not a JSON object");
    if header_json.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_an_object());
    }
    let header: RawHeader = serde_json::from_slice(&header_json).map_err(|_| not_an_object())?;

    let alg = match &header.alg.0 {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(AuthError::MalformedToken("the header has no `alg`")),
    };
    let alg = match alg {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        none if none.eq_ignore_ascii_case("none") => {
            return Err(AuthError::UnsupportedAlgorithm(
                "unsigned tokens (`alg: none`) are never accepted",
            ))
        }
        _ => {
            return Err(AuthError::UnsupportedAlgorithm(
                "only HS256, RS256 and ES256 are accepted",
            ))
        }
    };
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we know none.
    if header.crit.0.is_some() {
        return Err(AuthError::MalformedToken(
            "critical header extensions (`crit`) are not supported",
        ));
    }
    let kid = match header.kid.0 {
        None => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(AuthError::MalformedToken("`kid` must be a string")),
    };
    Ok(TokenHeader { alg, kid })
}

/// Maps `jsonwebtoken`'s errors to our codes. A missing claim gets the code of that
/// claim (see the [`error`](super::error) module).
fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::TokenExpired,
        ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
        ErrorKind::InvalidAudience => {
            AuthError::InvalidAudience("`aud` does not name this service")
        }
        ErrorKind::InvalidIssuer => AuthError::InvalidIssuer("`iss` is not the trusted issuer"),
        ErrorKind::InvalidSubject => AuthError::InvalidSubject("`sub` is not accepted"),
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "aud" => AuthError::InvalidAudience("the token has no `aud` claim"),
            "iss" => AuthError::InvalidIssuer("the token has no `iss` claim"),
            "sub" => AuthError::InvalidSubject("the token has no `sub` claim"),
            _ => AuthError::MalformedToken("the token has no `exp` claim"),
        },
        ErrorKind::InvalidClaimFormat(_) => {
            AuthError::MalformedToken("`exp` and `nbf` must be numbers of seconds")
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => {
            AuthError::UnsupportedAlgorithm("the algorithm does not match the key")
        }
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => {
            tracing::warn!(error = %err, "a configured verification key is unusable");
            AuthError::InvalidSignature
        }
        _ => AuthError::MalformedToken("the token is not a well-formed signed JWT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with_header(header: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode("{}"),
            URL_SAFE_NO_PAD.encode("sig")
        )
    }

    #[test]
    fn headers() {
        let ok = parse_header(&token_with_header(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
        ))
        .unwrap();
        assert_eq!(
            ok,
            TokenHeader {
                alg: Algorithm::RS256,
                kid: Some("k1".into())
            }
        );
        let no_kid = parse_header(&token_with_header(r#"{"alg":"HS256"}"#)).unwrap();
        assert_eq!(no_kid.kid, None);

        let code = |header: &str| parse_header(&token_with_header(header)).unwrap_err().code();
        assert_eq!(code(r#"{"alg":"none"}"#), "unsupported-algorithm");
        assert_eq!(code(r#"{"alg":"NoNe"}"#), "unsupported-algorithm");
        assert_eq!(code(r#"{"alg":"HS512"}"#), "unsupported-algorithm");
        assert_eq!(code(r#"{"alg":"PS256"}"#), "unsupported-algorithm");
        assert_eq!(code(r#"{"alg":"EdDSA"}"#), "unsupported-algorithm");
        assert_eq!(code(r#"{"typ":"JWT"}"#), "malformed-token");
        assert_eq!(code(r#"{"alg":256}"#), "malformed-token");
        assert_eq!(code(r#"{"alg":"HS256","kid":7}"#), "malformed-token");
        assert_eq!(
            code(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#),
            "malformed-token"
        );
        assert_eq!(code(r#"["alg"]"#), "malformed-token");
        assert_eq!(code(r#"["HS256"]"#), "malformed-token");
        assert_eq!(code(r#" ["HS256", "k1"]"#), "malformed-token");
        // Present but null is not absent.
        assert_eq!(code(r#"{"alg":"HS256","kid":null}"#), "malformed-token");
        assert_eq!(code(r#"{"alg":"HS256","crit":null}"#), "malformed-token");
        assert_eq!(code(r#"{"alg":null}"#), "malformed-token");
        // A member named twice.
        assert_eq!(code(r#"{"alg":"HS256","alg":"none"}"#), "malformed-token");
        assert_eq!(
            code(r#"{"alg":"HS256","kid":"a","kid":"b"}"#),
            "malformed-token"
        );
        assert_eq!(code("not json"), "malformed-token");
    }

    #[test]
    fn shapes() {
        let code = |token: &str| parse_header(token).unwrap_err().code();
        assert_eq!(code(""), "missing-token");
        assert_eq!(code("garbage"), "malformed-token");
        assert_eq!(code("a.b"), "malformed-token");
        assert_eq!(code("a.b.c.d.e"), "malformed-token");
        assert_eq!(code("eyJ!.e30.c2ln"), "malformed-token");
        assert_eq!(code("eyJhbGciOiJIUzI1NiJ9=.e30.c2ln"), "malformed-token");
        assert_eq!(code(&"a".repeat(MAX_TOKEN_LEN + 1)), "malformed-token");
    }
}
