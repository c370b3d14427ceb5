//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vitrine Storage Service",
        description = "Verified image storage: pre-signed uploads, imports from providers, signed download URLs.\n\n\
Internal endpoints (`/internal/*`) take requests signed by the App Service or an import worker \
(headers `x-vitrine-key-id`, `x-vitrine-timestamp`, `x-vitrine-nonce`, `x-vitrine-content-sha256`, \
`x-vitrine-signature`; see docs/security.md). Public endpoints take a signed token in the URL.",
        version = env!("CARGO_PKG_VERSION"),
    ),
    modifiers(&SecurityAddon),
    tags(
        (name = "uploads", description = "Pre-signed uploads from the browser"),
        (name = "images", description = "Image bytes behind signed URLs"),
        (name = "internal", description = "Service-to-service calls (signed requests)"),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "service_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-vitrine-signature",
                "HMAC-SHA256 request signature of a Vitrine service (with the other x-vitrine-* headers)",
            ))),
        );
    }
}
