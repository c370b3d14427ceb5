//! `auth.failed` from answers: a layer that records every `401` carrying the
//! `WWW-Authenticate: Bearer` challenge (a refused seller token, see
//! `service_kit::auth`), with the error code of its JSON body as the reason.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::StatusCode;

use crate::event::{request_id, EventType};
use crate::Audit;

/// Error bodies are small; a larger 401 body is passed on without a reason.
const MAX_ERROR_BODY: usize = 64 << 10;

/// `axum::middleware::from_fn_with_state(audit, record_auth_failures)`.
pub async fn record_auth_failures(
    State(audit): State<Audit>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = request_id(request.headers());
    let path = request.uri().path().to_owned();
    let method = request.method().to_string();
    let response = next.run(request).await;
    let bearer_challenge = response
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer"));
    if response.status() != StatusCode::UNAUTHORIZED || !bearer_challenge {
        return response;
    }
    let (parts, body) = response.into_parts();
    let (bytes, code) = match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
        Ok(bytes) => {
            let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            (bytes, code)
        }
        Err(_) => (Default::default(), None),
    };
    let event = audit
        .event(EventType::AuthFailed)
        .request(request_id)
        .reason(code.unwrap_or_else(|| "unauthorized".to_owned()))
        .detail("method", method)
        .detail("path", path);
    audit.record(event).await;
    Response::from_parts(parts, Body::from(bytes))
}
