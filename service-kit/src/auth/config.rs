//! Seller-auth configuration, read from the environment through [`Env`].
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `JWT_ISSUER` | `vitrine-dev` | required `iss` |
//! | `JWT_AUDIENCE` | `vitrine` | required `aud` |
//! | `JWT_HS256_SECRET` | — | HS256 key, base64 (standard or URL-safe) of ≥ 32 bytes |
//! | `JWT_HS256_KEY_ID` | `dev` | the `kid` the HS256 key answers to |
//! | `JWT_JWKS_URL` | — | identity provider's JWKS (`http`/`https`) for RS256/ES256 |
//! | `JWT_LEEWAY_SECS` | `30` | clock-skew allowance for `exp`/`nbf`, 0–30 |
//! | `AUTH_DEV_LOGIN` | `false` | enable the dev issuer (needs `JWT_HS256_SECRET`) |
//! | `AUTH_DEV_TOKEN_TTL_SECS` | `3600` | lifetime of dev tokens, 1 s – 7 days |
//!
//! At least one of `JWT_HS256_SECRET` and `JWT_JWKS_URL` must be set.

use std::fmt;
use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::RngCore;
use reqwest::Url;

use crate::config::{ConfigError, Env};

/// Environment variable names.
pub mod vars {
    pub const JWT_ISSUER: &str = "JWT_ISSUER";
    pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
    pub const JWT_HS256_SECRET: &str = "JWT_HS256_SECRET";
    pub const JWT_HS256_KEY_ID: &str = "JWT_HS256_KEY_ID";
    pub const JWT_JWKS_URL: &str = "JWT_JWKS_URL";
    pub const JWT_LEEWAY_SECS: &str = "JWT_LEEWAY_SECS";
    pub const AUTH_DEV_LOGIN: &str = "AUTH_DEV_LOGIN";
    pub const AUTH_DEV_TOKEN_TTL_SECS: &str = "AUTH_DEV_TOKEN_TTL_SECS";
}

pub const DEFAULT_ISSUER: &str = "vitrine-dev";
pub const DEFAULT_AUDIENCE: &str = "vitrine";
pub const DEFAULT_HS256_KEY_ID: &str = "dev";
/// Upper bound on clock-skew leeway (and its default).
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);
pub const MAX_DEV_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// HS256 secrets shorter than the hash output (256 bits) are refused (RFC 7518 §3.2).
pub const MIN_HS256_SECRET_LEN: usize = 32;
pub const DEFAULT_JWKS_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

const SECRET_HINT: &str =
    "base64 of at least 32 random bytes, e.g. `head -c 32 /dev/urandom | base64`";

const LENIENT_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_PADDING);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_PADDING);

/// An HS256 secret of at least [`MIN_HS256_SECRET_LEN`] bytes. Never printed.
#[derive(Clone)]
pub struct HmacSecret(Vec<u8>);

/// Why a secret was refused. Never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("is not base64 (standard or URL-safe); expected {SECRET_HINT}")]
    NotBase64,
    #[error(
        "decodes to {len} bytes; at least {MIN_HS256_SECRET_LEN} are required ({SECRET_HINT})"
    )]
    TooShort { len: usize },
}

impl HmacSecret {
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_HS256_SECRET_LEN {
            return Err(SecretError::TooShort { len: bytes.len() });
        }
        Ok(HmacSecret(bytes))
    }

    /// Standard or URL-safe base64, padding optional, surrounding whitespace ignored
    /// (so the content of a key file can be passed as is).
    pub fn from_base64(encoded: &str) -> Result<Self, SecretError> {
        let encoded = encoded.trim();
        let bytes = STANDARD_LENIENT
            .decode(encoded)
            .or_else(|_| URL_SAFE_LENIENT.decode(encoded))
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(bytes)
    }

    /// 32 fresh random bytes from the operating system.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; MIN_HS256_SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        HmacSecret(bytes)
    }

    /// The raw bytes. Named so that every use is easy to find in review.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Standard base64 of the secret (for writing a key file).
    pub fn expose_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSecret(***)")
    }
}

/// The HS256 key and the `kid` it answers to.
#[derive(Debug, Clone)]
pub struct Hs256Key {
    pub key_id: String,
    pub secret: HmacSecret,
}

/// Everything seller-token verification needs.
///
/// Fields are public for tests and embedders; [`AuthConfig::from_env`] is the
/// validated path. [`SellerAuth::new`](super::SellerAuth::new) caps `leeway` at
/// [`MAX_LEEWAY`].
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (the token's `aud` must be, or contain, this value).
    pub audience: String,
    /// HS256 key (the dev issuer's), accepted for tokens with this `kid` or none.
    pub hs256: Option<Hs256Key>,
    /// Identity provider JWKS with RS256/ES256 keys.
    pub jwks_url: Option<Url>,
    /// Clock-skew allowance for `exp` and `nbf`.
    pub leeway: Duration,
    /// Whether services expose the dev login (mint tokens with [`DevIssuer`](super::DevIssuer)).
    pub dev_login: bool,
    /// Lifetime of dev tokens.
    pub dev_token_ttl: Duration,
    /// A token with an unknown `kid` refetches the JWKS at most this often.
    pub jwks_min_refetch_interval: Duration,
    /// Cached JWKS keys older than this are refreshed on next use (so removed keys
    /// stop verifying); if the refresh fails, the cached keys keep working.
    pub jwks_max_age: Duration,
    /// Timeout of one JWKS request.
    pub jwks_fetch_timeout: Duration,
}

impl AuthConfig {
    /// A configuration with the given issuer and audience, no keys yet, and the
    /// defaults for everything else. Add keys with [`with_hs256_secret`](Self::with_hs256_secret)
    /// and/or [`with_jwks_url`](Self::with_jwks_url).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        AuthConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            hs256: None,
            jwks_url: None,
            leeway: MAX_LEEWAY,
            dev_login: false,
            dev_token_ttl: DEFAULT_DEV_TOKEN_TTL,
            jwks_min_refetch_interval: DEFAULT_JWKS_MIN_REFETCH_INTERVAL,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            jwks_fetch_timeout: DEFAULT_JWKS_FETCH_TIMEOUT,
        }
    }

    /// Adds the HS256 secret under key id [`DEFAULT_HS256_KEY_ID`].
    pub fn with_hs256_secret(mut self, secret: HmacSecret) -> Self {
        self.hs256 = Some(Hs256Key {
            key_id: DEFAULT_HS256_KEY_ID.to_owned(),
            secret,
        });
        self
    }

    pub fn with_jwks_url(mut self, url: Url) -> Self {
        self.jwks_url = Some(url);
        self
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        use vars::*;
        let issuer = env.string_or(JWT_ISSUER, DEFAULT_ISSUER);
        let audience = env.string_or(JWT_AUDIENCE, DEFAULT_AUDIENCE);

        let key_id = env.string_or(JWT_HS256_KEY_ID, DEFAULT_HS256_KEY_ID);
        check_key_id(&key_id).map_err(|m| ConfigError::new(JWT_HS256_KEY_ID, m))?;
        let hs256 = env
            .get(JWT_HS256_SECRET)
            .map(|raw| HmacSecret::from_base64(&raw))
            .transpose()
            .map_err(|e| ConfigError::new(JWT_HS256_SECRET, e.to_string()))?
            .map(|secret| Hs256Key { key_id, secret });

        let jwks_url = env
            .get(JWT_JWKS_URL)
            .map(|raw| parse_jwks_url(&raw))
            .transpose()
            .map_err(|m| ConfigError::new(JWT_JWKS_URL, m))?;

        if hs256.is_none() && jwks_url.is_none() {
            return Err(ConfigError::new(
                format!("{JWT_HS256_SECRET} / {JWT_JWKS_URL}"),
                format!(
                    "seller tokens cannot be verified without a key: set {JWT_HS256_SECRET} \
                     ({SECRET_HINT}) and/or {JWT_JWKS_URL} (the identity provider's JWKS URL)"
                ),
            ));
        }

        let leeway = env.seconds_or(JWT_LEEWAY_SECS, MAX_LEEWAY, Duration::ZERO, MAX_LEEWAY)?;

        let dev_login = env.bool_or(AUTH_DEV_LOGIN, false)?;
        if dev_login && hs256.is_none() {
            return Err(ConfigError::new(
                AUTH_DEV_LOGIN,
                format!("dev login signs tokens with the HS256 key: set {JWT_HS256_SECRET} too"),
            ));
        }
        let dev_token_ttl = env.seconds_or(
            AUTH_DEV_TOKEN_TTL_SECS,
            DEFAULT_DEV_TOKEN_TTL,
            Duration::from_secs(1),
            MAX_DEV_TOKEN_TTL,
        )?;

        Ok(AuthConfig {
            hs256,
            jwks_url,
            leeway,
            dev_login,
            dev_token_ttl,
            ..AuthConfig::new(issuer, audience)
        })
    }

    /// A fresh secret for `JWT_HS256_SECRET` (the launcher's key file): standard
    /// base64 of 32 random bytes.
    pub fn generate_dev_secret() -> String {
        HmacSecret::generate().expose_base64()
    }
}

fn check_key_id(key_id: &str) -> Result<(), String> {
    let ok = !key_id.is_empty()
        && key_id.len() <= 64
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("must be 1–64 characters of letters, digits and . _ -".to_owned())
    }
}

fn parse_jwks_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!(
            "`{raw}` must be an http(s) URL, e.g. https://idp.example.com/.well-known/jwks.json"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

    #[test]
    fn defaults_with_a_secret() {
        let config =
            AuthConfig::from_env(&Env::from_pairs([(vars::JWT_HS256_SECRET, SECRET_B64)])).unwrap();
        assert_eq!(config.issuer, DEFAULT_ISSUER);
        assert_eq!(config.audience, DEFAULT_AUDIENCE);
        assert_eq!(config.leeway, Duration::from_secs(30));
        assert!(!config.dev_login);
        assert_eq!(config.dev_token_ttl, Duration::from_secs(3600));
        let hs = config.hs256.unwrap();
        assert_eq!(hs.key_id, "dev");
        assert_eq!(hs.secret.expose(), b"0123456789abcdef0123456789abcdef");
        assert!(!format!("{hs:?}").contains("0123"));
    }

    #[test]
    fn a_key_is_required_and_the_error_names_both_variables() {
        let err = AuthConfig::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("JWT_HS256_SECRET") && text.contains("JWT_JWKS_URL"),
            "{text}"
        );
    }

    #[test]
    fn jwks_alone_is_enough() {
        let config = AuthConfig::from_env(&Env::from_pairs([(
            vars::JWT_JWKS_URL,
            "https://idp.example.com/.well-known/jwks.json",
        )]))
        .unwrap();
        assert!(config.hs256.is_none());
        assert!(config.jwks_url.is_some());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(vars::JWT_HS256_SECRET, "c2hvcnQ=")],
                vars::JWT_HS256_SECRET,
            ),
            (
                &[(vars::JWT_HS256_SECRET, "not base64 !!")],
                vars::JWT_HS256_SECRET,
            ),
            (
                &[(vars::JWT_JWKS_URL, "ftp://idp/jwks")],
                vars::JWT_JWKS_URL,
            ),
            (&[(vars::JWT_JWKS_URL, "not a url")], vars::JWT_JWKS_URL),
            (
                &[
                    (vars::JWT_HS256_SECRET, SECRET_B64),
                    (vars::JWT_LEEWAY_SECS, "31"),
                ],
                vars::JWT_LEEWAY_SECS,
            ),
            (
                &[
                    (vars::JWT_HS256_SECRET, SECRET_B64),
                    (vars::JWT_HS256_KEY_ID, "a b"),
                ],
                vars::JWT_HS256_KEY_ID,
            ),
            (
                &[
                    (vars::JWT_JWKS_URL, "https://idp/jwks"),
                    (vars::AUTH_DEV_LOGIN, "true"),
                ],
                vars::AUTH_DEV_LOGIN,
            ),
            (
                &[
                    (vars::JWT_HS256_SECRET, SECRET_B64),
                    (vars::AUTH_DEV_TOKEN_TTL_SECS, "604801"),
                ],
                vars::AUTH_DEV_TOKEN_TTL_SECS,
            ),
        ];
        for (pairs, var) in cases {
            let err = AuthConfig::from_env(&Env::from_pairs(pairs.iter().copied())).unwrap_err();
            assert_eq!(err.var, *var, "{err}");
            assert!(!err.to_string().contains("c2hvcnQ"), "secret echoed: {err}");
        }
    }

    #[test]
    fn url_safe_secrets_and_generated_secrets() {
        let url_safe = URL_SAFE_LENIENT.encode([0xfb_u8; 32]);
        assert!(url_safe.contains('-') || url_safe.contains('_'));
        assert_eq!(
            HmacSecret::from_base64(&url_safe).unwrap().expose(),
            &[0xfb; 32]
        );

        let generated = AuthConfig::generate_dev_secret();
        let secret = HmacSecret::from_base64(&generated).unwrap();
        assert_eq!(secret.expose().len(), 32);
        assert_ne!(generated, AuthConfig::generate_dev_secret());
        assert_eq!(format!("{secret:?}"), "HmacSecret(***)");
    }
}
