//! The [`Seller`] extractor: `Authorization: Bearer <token>` → verified [`SellerId`].
//!
//! ```ignore
//! async fn list_products(Seller(seller): Seller) -> … { … }
//! // state: `impl FromRef<AppState> for SellerAuth`
//! ```
//!
//! `Option<Seller>` is `None` when the request has no `Authorization` header and a
//! rejection when it has a bad one. The verified [`SellerClaims`] are cached in the
//! request extensions, so several extractors verify the token once.

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use http::HeaderMap;

use super::error::AuthError;
use super::seller::{SellerClaims, SellerId};
use super::SellerAuth;

/// The authenticated seller. Rejects with [`AuthError`] (401, or 503 when the
/// identity provider is unreachable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seller(pub SellerId);

impl<S> FromRequestParts<S> for Seller
where
    SellerAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<SellerClaims>() {
            return Ok(Seller(claims.seller_id.clone()));
        }
        let auth = SellerAuth::from_ref(state);
        let claims = auth.authenticate(&parts.headers).await?;
        let seller = Seller(claims.seller_id.clone());
        parts.extensions.insert(claims);
        Ok(seller)
    }
}

impl<S> OptionalFromRequestParts<S> for Seller
where
    SellerAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if !parts.headers.contains_key(http::header::AUTHORIZATION) {
            return Ok(None);
        }
        <Seller as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
///
/// No header, a blank one, another scheme, or `Bearer` without a token is
/// `missing-token`; several `Authorization` headers or a non-ASCII one is
/// `malformed-token`. The scheme is case-insensitive (RFC 7235).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::MalformedToken(
            "send exactly one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::MalformedToken("the Authorization header is not ASCII"))?
        .trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// OpenAPI modifier: declares the `bearer` security scheme (a seller JWT) that the
/// seller-facing endpoints name in `security(("bearer" = []))`.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Seller token (JWT, `sub` = seller id)"))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def.ghi"])),
            Ok("abc.def.ghi")
        );
        assert_eq!(bearer_token(&headers(&["bearer  abc "])), Ok("abc"));
        for missing in [
            &[][..],
            &[""],
            &["   "],
            &["Bearer"],
            &["Bearer   "],
            &["Basic dXNlcjpwYXNz"],
            &["Token abc"],
        ] {
            assert_eq!(
                bearer_token(&headers(missing)),
                Err(AuthError::MissingToken),
                "{missing:?}"
            );
        }
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"]))
                .unwrap_err()
                .code(),
            "malformed-token"
        );
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(
            bearer_token(&non_ascii).unwrap_err().code(),
            "malformed-token"
        );
    }
}
