//! The Import Service's OpenAPI document (paths come from the handlers' annotations).

use service_kit::auth::BearerSecurity;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vitrine Import Service",
        description = "Import every image of a public Google Drive or Dropbox folder into storage, \
            follow the import, retry what failed, and list the imported images.\n\n\
            Authenticate with a seller JWT (`Authorization: Bearer …`), as for the App Service.\n\n\
            Every error is `{\"error\":{\"code\":\"stable-slug\",\"message\":\"…\"}}`.",
        version = "1.0.0",
        license(name = "MIT")
    ),
    tags(
        (name = "imports", description = "Folder imports of the signed-in seller"),
        (name = "images", description = "Images the seller imported"),
    ),
    modifiers(&BearerSecurity)
)]
pub struct ApiDoc;
