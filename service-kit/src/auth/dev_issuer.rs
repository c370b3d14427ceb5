//! Development tokens: HS256, signed with the configured secret.
//!
//! Services expose a dev login with it when `AUTH_DEV_LOGIN=true`; the launcher's
//! `vitrine token --seller ID` builds one from the secret in its key file with
//! [`DevIssuer::new`]. Tokens carry `kid` = the HS256 key id and
//! `iss`/`aud`/`sub`/`iat`/`nbf`/`exp`/`jti`, so they pass the same verification as
//! any other token.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::config::{AuthConfig, HmacSecret};
use super::seller::SellerId;

/// Mints HS256 seller tokens.
#[derive(Clone)]
pub struct DevIssuer {
    key_id: String,
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// A minted token, in the shape of an OAuth 2 token response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// The JWT; send it as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until it expires.
    #[schema(example = 3600)]
    pub expires_in: u64,
    /// When it expires, Unix seconds.
    pub expires_at: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"***")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Serialize)]
struct DevClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

impl DevIssuer {
    pub fn new(
        secret: &HmacSecret,
        key_id: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        DevIssuer {
            key_id: key_id.into(),
            key: EncodingKey::from_secret(secret.expose()),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl,
        }
    }

    /// The issuer for `config`'s HS256 key, issuer, audience and dev-token lifetime;
    /// `None` without an HS256 key. Ignores `dev_login` (the launcher's CLI uses this
    /// whatever the flag says; services go through
    /// [`SellerAuth::dev_issuer`](super::SellerAuth::dev_issuer), which honours it).
    pub fn from_config(config: &AuthConfig) -> Option<Self> {
        let hs = config.hs256.as_ref()?;
        Some(DevIssuer::new(
            &hs.secret,
            hs.key_id.clone(),
            config.issuer.clone(),
            config.audience.clone(),
            config.dev_token_ttl,
        ))
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `seller`, valid from now for [`ttl`](Self::ttl).
    pub fn mint(&self, seller: &SellerId) -> IssuedToken {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expires_in = self.ttl.as_secs();
        let claims = DevClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: seller.as_str(),
            iat: now,
            nbf: now,
            exp: now + expires_in,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.key_id.clone());
        // HS256 accepts a key of any length and these claims always serialize, so
        // encoding cannot fail.
        let access_token = jsonwebtoken::encode(&header, &claims, &self.key)
            .expect("HS256 encoding of plain claims cannot fail");
        IssuedToken {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in,
            expires_at: claims.exp,
        }
    }
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}
