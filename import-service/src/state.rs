//! [`ApiState`]: the one handle every `import-api` handler gets.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use service_kit::auth::SellerAuth;
use service_kit::download_urls::ReusedUrls;
use task_queue::sql::SqlQueue;
use task_queue::SharedQueue;

use crate::config::ImportConfig;
use crate::db::ImportRepo;
use crate::pipeline::Providers;
use crate::storage_client::StorageClient;

pub struct ImportApi {
    pub config: ImportConfig,
    pub auth: SellerAuth,
    pub repo: ImportRepo,
    pub queue: SharedQueue,
    /// The same queue when it is the SQL one: a new job's first task then commits in
    /// the job's own transaction.
    pub sql_queue: Option<Arc<SqlQueue>>,
    pub providers: Providers,
    pub storage: StorageClient,
    /// Listed images' download URLs, reused while fresh.
    pub image_urls: ReusedUrls,
}

#[derive(Clone)]
pub struct ApiState(pub Arc<ImportApi>);

impl Deref for ApiState {
    type Target = ImportApi;
    fn deref(&self) -> &ImportApi {
        &self.0
    }
}

impl FromRef<ApiState> for SellerAuth {
    fn from_ref(state: &ApiState) -> SellerAuth {
        state.auth.clone()
    }
}
