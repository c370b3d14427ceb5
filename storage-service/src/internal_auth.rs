//! Authentication of service-to-service calls (`/internal/*`).
//!
//! Every internal request carries a signature made with its caller's key ring
//! (`shared-signing` request signing). The key id tells who is calling: a key of the
//! app↔storage ring is the App Service, a key of the import↔storage ring an import
//! worker. JSON endpoints take a buffered, digest-signed body ([`buffered`]); the
//! ingest endpoint streams an unsigned body whose size and hash it checks itself
//! ([`streamed`]).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use shared_signing::{RequestAuthError, VerifiedRequest};

use crate::error::StorageError;
use crate::state::AppState;

/// Who signed an internal request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    App,
    Import,
}

/// Largest JSON body an internal endpoint accepts.
pub const MAX_INTERNAL_JSON: usize = 1 << 20;

async fn verify_headers(
    state: &AppState,
    parts: &http::request::Parts,
) -> Result<(Caller, VerifiedRequest), StorageError> {
    let key_id = parts
        .headers
        .get(shared_signing::request::KEY_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (caller, verifier) = if state.import_requests.key_ring().contains(key_id) {
        (Caller::Import, &state.import_requests)
    } else {
        // Unknown and missing key ids are reported by the app verifier.
        (Caller::App, &state.app_requests)
    };
    let now = shared_signing::unix_now();
    let verified = verifier
        .verify(&parts.method, &parts.uri, &parts.headers, now)
        .await?;
    Ok((caller, verified))
}

/// Middleware for JSON endpoints: the body must match its signed SHA-256.
pub async fn buffered(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, StorageError> {
    let (mut parts, body) = request.into_parts();
    let (caller, verified) = verify_headers(&state, &parts).await?;
    let bytes = axum::body::to_bytes(body, MAX_INTERNAL_JSON)
        .await
        .map_err(|e| StorageError::BodyRead(e.to_string()))?;
    verified.check_body(&bytes)?;
    parts.extensions.insert(caller);
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// Middleware for streamed endpoints: the signature covers method, path and query (which
/// carry the expected size and digest); the body is checked by the write path.
pub async fn streamed(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, StorageError> {
    let (mut parts, body) = request.into_parts();
    let (caller, verified) = verify_headers(&state, &parts).await?;
    match verified.streamed_body_allowed() {
        shared_signing::BodyDigest::Unsigned => {}
        shared_signing::BodyDigest::Sha256(_) => {
            // A digest-signed body on a streamed endpoint would need buffering to check.
            return Err(StorageError::Signature(
                RequestAuthError::BodyDigestMismatch,
            ));
        }
    }
    parts.extensions.insert(caller);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

impl Caller {
    /// Refuses callers other than `allowed`.
    pub fn require(self, allowed: &[Caller]) -> Result<(), StorageError> {
        if allowed.contains(&self) {
            Ok(())
        } else {
            Err(StorageError::CallerNotAllowed)
        }
    }
}
