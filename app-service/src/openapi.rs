//! The App Service's OpenAPI document (paths come from the handlers' annotations).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vitrine App Service",
        description = "Seller-facing API: ask for pre-signed upload URLs and create products from uploaded images.\n\n\
            Authenticate with a seller JWT (`Authorization: Bearer …`). Locally, `POST /auth/token` \
            (dev login) or `vitrine token --seller ID` issues one.\n\n\
            Every error is `{\"error\":{\"code\":\"stable-slug\",\"message\":\"…\"}}`.",
        version = "1.0.0",
        license(name = "MIT")
    ),
    tags(
        (name = "auth", description = "Dev login (development only)"),
        (name = "uploads", description = "Pre-signed upload URLs"),
        (name = "products", description = "Products of the signed-in seller"),
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
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
