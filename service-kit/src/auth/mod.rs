//! Seller authentication: verifying seller JWTs (and, in development, minting them).
//!
//! The App Service and the Import Service accept the same seller tokens, so the
//! verification lives here once.
//!
//! # Layout
//! - [`config`]: [`AuthConfig`] from `JWT_*` / `AUTH_DEV_*` variables, the
//!   [`HmacSecret`] type, [`AuthConfig::generate_dev_secret`].
//! - `verify` (private): header checks, key selection, signature and claim validation.
//! - `jwks` (private): the identity provider's JWKS, cached, refetched on an unknown
//!   `kid` at most once per [`AuthConfig::jwks_min_refetch_interval`], single-flight.
//! - [`dev_issuer`]: [`DevIssuer`], which mints HS256 tokens for local development and
//!   the launcher's `vitrine token` command.
//! - [`extractor`]: the [`Seller`] axum extractor and [`bearer_token`].
//! - [`error`]: [`AuthError`], one stable code per reason, converting into
//!   [`ApiError`](crate::ApiError) (401 + `WWW-Authenticate`, or 503).
//! - [`seller`]: [`SellerId`] and [`SellerClaims`].
//!
//! # Security choices (RFC 8725)
//! - **The algorithm is pinned per key**, never taken from the token: the HS256 secret
//!   verifies only HS256; a JWKS key verifies only its own algorithm (RS256 or ES256).
//!   A token whose `alg` differs from its key's is refused before any cryptography,
//!   which defeats algorithm confusion (an HS256 token "signed" with an RSA public key).
//! - `alg: none` and every algorithm other than HS256, RS256 and ES256 are refused.
//! - `exp`, `iss`, `aud` and `sub` are required; `nbf` is checked when present; clock
//!   leeway is at most 30 s.
//! - Keys come only from configuration: the `jku`, `jwk`, `x5u` and `x5c` headers are
//!   ignored, and symmetric (`oct`) keys in a JWKS are never accepted.
//! - Error messages never echo the token.

pub mod config;
pub mod dev_issuer;
pub mod error;
pub mod extractor;
mod jwks;
pub mod seller;
mod verify;

use std::sync::Arc;

use http::HeaderMap;

pub use config::{AuthConfig, HmacSecret, Hs256Key, SecretError};
pub use dev_issuer::{DevIssuer, IssuedToken};
pub use error::AuthError;
pub use extractor::{bearer_token, BearerSecurity, Seller};
pub use seller::{InvalidSellerId, SellerClaims, SellerId};

/// Name of the counter incremented once per refused request, labelled by `code`.
pub const REJECTIONS_METRIC: &str = "auth_rejections_total";

/// Verifies seller tokens; optionally mints development ones.
///
/// A cheap handle (one `Arc`): put it in the service state and let the [`Seller`]
/// extractor find it through `FromRef`.
#[derive(Clone)]
pub struct SellerAuth {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: verify::Verifier,
    dev_issuer: Option<DevIssuer>,
}

impl SellerAuth {
    /// Builds the verifier. `http` fetches the JWKS (when `config.jwks_url` is set);
    /// nothing is fetched until a token needs a JWKS key.
    ///
    /// A leeway above [`config::MAX_LEEWAY`] is lowered to it. The dev issuer exists
    /// only when `config.dev_login` is true and an HS256 secret is configured.
    pub fn new(config: AuthConfig, http: reqwest::Client) -> Self {
        let dev_issuer = if config.dev_login {
            let issuer = DevIssuer::from_config(&config);
            if issuer.is_none() {
                tracing::warn!(
                    "dev login is enabled but no HS256 secret is configured; it stays off"
                );
            }
            issuer
        } else {
            None
        };
        SellerAuth {
            inner: Arc::new(Inner {
                verifier: verify::Verifier::new(&config, http),
                dev_issuer,
            }),
        }
    }

    /// Verifies a bare token (without the `Bearer ` prefix) and returns its claims.
    ///
    /// Every refusal increments [`REJECTIONS_METRIC`] with its code.
    pub async fn verify(&self, bearer_token: &str) -> Result<SellerClaims, AuthError> {
        let result = self.inner.verifier.verify(bearer_token).await;
        if let Err(err) = &result {
            record_rejection(err);
        }
        result
    }

    /// Reads `Authorization: Bearer …` from `headers` and verifies the token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<SellerClaims, AuthError> {
        match bearer_token(headers) {
            Ok(token) => self.verify(token).await,
            Err(err) => {
                record_rejection(&err);
                Err(err)
            }
        }
    }

    /// The development token issuer, when `AUTH_DEV_LOGIN` is on.
    pub fn dev_issuer(&self) -> Option<&DevIssuer> {
        self.inner.dev_issuer.as_ref()
    }
}

impl std::fmt::Debug for SellerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SellerAuth")
            .field("verifier", &self.inner.verifier)
            .field("dev_login", &self.inner.dev_issuer.is_some())
            .finish()
    }
}

fn record_rejection(err: &AuthError) {
    let code = err.code();
    metrics::counter!(REJECTIONS_METRIC, "code" => code).increment(1);
    tracing::debug!(code, "seller token refused");
}
