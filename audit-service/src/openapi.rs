//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vitrine Audit Service",
        description = "Stores security-relevant events of every Vitrine service once each, and lists them for operators.\n\n\
`GET /audit` takes an operator token (`Authorization: Bearer …`): a shared-signing token with purpose `audit-read` \
signed with a key of `AUDIT_ADMIN_KEYS` (`vitrine token --audit`). `POST /internal/events` takes deliveries signed \
by a service holding `AUDIT_KEYS` (see docs/audit.md).",
        version = env!("CARGO_PKG_VERSION"),
    ),
    modifiers(&SecurityAddon),
    tags(
        (name = "audit", description = "Reading the audit trail (operators)"),
        (name = "internal", description = "Deliveries from the services' outboxes (signed requests)"),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Operator token: shared-signing, purpose `audit-read`, key ring AUDIT_ADMIN_KEYS"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "service_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-vitrine-signature",
                "HMAC-SHA256 request signature of a Vitrine service (with the other x-vitrine-* headers)",
            ))),
        );
    }
}
