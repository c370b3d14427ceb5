//! [`AppState`]: the one handle every handler gets.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use service_kit::auth::SellerAuth;
use service_kit::download_urls::ReusedUrls;

use crate::config::AppConfig;
use crate::products::repo::ProductRepo;
use crate::rate_limit::UploadRateLimiter;
use crate::storage_client::StorageClient;

pub struct App {
    pub audit: audit_events::Audit,
    pub config: AppConfig,
    pub auth: SellerAuth,
    pub storage: StorageClient,
    /// Product images' download URLs, reused while fresh.
    pub image_urls: ReusedUrls,
    pub products: ProductRepo,
    pub upload_limiter: Arc<UploadRateLimiter>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl FromRef<AppState> for SellerAuth {
    fn from_ref(state: &AppState) -> SellerAuth {
        state.auth.clone()
    }
}
