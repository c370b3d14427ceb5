//! The service's state: one cheap handle shared by every handler.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use shared_signing::{RequestVerifier, TokenPolicy};

use crate::blobs::BlobStore;
use crate::config::StorageConfig;
use crate::db::Repo;

/// Everything a handler needs.
pub struct App {
    pub audit: audit_events::Audit,
    pub config: StorageConfig,
    pub repo: Repo,
    pub blobs: Arc<dyn BlobStore>,
    /// Verifies requests signed with the app↔storage key ring.
    pub app_requests: RequestVerifier,
    /// Verifies requests signed with the import↔storage key ring.
    pub import_requests: RequestVerifier,
}

impl App {
    /// Lifetime cap for upload URL tokens.
    pub fn upload_token_policy(&self) -> TokenPolicy {
        TokenPolicy::new(self.config.upload_url_ttl)
    }

    /// Lifetime cap for download URL tokens (callers may ask for up to 24 h).
    pub fn download_token_policy(&self) -> TokenPolicy {
        TokenPolicy::new(MAX_DOWNLOAD_TTL)
    }

    /// Upload metadata signed by the App Service is consumed at once: short lifetime.
    pub fn metadata_token_policy(&self) -> TokenPolicy {
        TokenPolicy::new(MAX_METADATA_TTL)
    }
}

/// Callers may ask for download URLs valid up to this long.
pub const MAX_DOWNLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// The App Service signs upload metadata for at most this long.
pub const MAX_METADATA_TTL: Duration = Duration::from_secs(300);

/// `AppState(Arc<App>)`: cloned per request.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}
