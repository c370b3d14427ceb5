//! The App Service's OpenAPI document (paths come from the handlers' annotations).

use service_kit::auth::BearerSecurity;
use utoipa::OpenApi;

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
    modifiers(&BearerSecurity)
)]
pub struct ApiDoc;
