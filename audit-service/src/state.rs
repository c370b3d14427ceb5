//! [`AuditState`]: the one handle every handler gets.

use std::ops::Deref;
use std::sync::Arc;

use shared_signing::RequestVerifier;

use crate::config::AuditConfig;
use crate::store::Store;

pub struct AuditApp {
    pub config: AuditConfig,
    pub store: Store,
    /// Verifies signed deliveries (`AUDIT_KEYS`), when they are accepted.
    pub ingest: Option<RequestVerifier>,
}

#[derive(Clone)]
pub struct AuditState(pub Arc<AuditApp>);

impl Deref for AuditState {
    type Target = AuditApp;
    fn deref(&self) -> &AuditApp {
        &self.0
    }
}
