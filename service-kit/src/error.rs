//! The one JSON error envelope every service answers with:
//! `{"error":{"code":"stable-slug","message":"…"}}`.
//!
//! Each service keeps its own error enum and converts it into [`ApiError`]. Internal
//! errors carry their detail in a response extension ([`InternalErrorDetail`]) so it
//! is logged once, by [`log_internal_errors`], and never sent to the client.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The error itself: a stable machine-readable code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable slug, e.g. `sha256-mismatch`. Clients branch on this.
    #[schema(example = "sha256-mismatch")]
    pub code: String,
    /// Human-readable explanation; may change between versions.
    pub message: String,
}

/// An HTTP error ready to be sent.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra headers, e.g. `Retry-After`.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    internal_detail: Option<String>,
}

/// Internal error detail attached to a 5xx response for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalErrorDetail(pub String);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            internal_detail: None,
        }
    }

    /// A 500 whose message is opaque to the client; `detail` is logged.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let mut err = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "an internal error occurred; it has been logged",
        );
        err.internal_detail = Some(detail.to_string());
        err
    }

    /// A 503 for a dependency that is down; `detail` is logged, not sent.
    pub fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        detail: impl std::fmt::Display,
    ) -> Self {
        let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        err.internal_detail = Some(detail.to_string());
        err.headers.push((
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("5"),
        ));
        err
    }

    pub fn with_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(self.envelope());
        let mut response = (self.status, body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if let Some(detail) = self.internal_detail {
            response
                .extensions_mut()
                .insert(InternalErrorDetail(detail));
        }
        response
    }
}

/// Middleware: logs the detail of internal errors once, with the request's span.
pub async fn log_internal_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(InternalErrorDetail(detail)) = response.extensions().get::<InternalErrorDetail>() {
        tracing::error!(%method, %path, status = response.status().as_u16(), error = %detail, "request failed");
    }
    response
}

/// Fallback for unknown routes, in the envelope.
pub async fn not_found_fallback() -> ApiError {
    ApiError::not_found("route-not-found", "no such endpoint")
}

/// `axum::Json` whose rejection is an [`ApiError`] in the envelope, and which takes
/// only a JSON object (serde would otherwise read a struct from an array too).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

/// `application/json`, or any `application/…+json`, as `axum::Json` accepts.
fn is_json_content_type(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json-content-type-required",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(status, "body-too-large", "the request body is too large")
                } else {
                    ApiError::bad_request("body-unreadable", e.body_text())
                }
            })?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request-body",
                "the body must be a JSON object, not an array",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejection (a repeated parameter such as `?limit=1&limit=2`,
/// or one that does not parse) is a `400 invalid-query` in the envelope rather than
/// axum's plain-text answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for AppQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(AppQuery(value)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid-query",
                format!("the query string is not valid: {}", rejection.body_text()),
            )),
        }
    }
}

/// Maps axum's JSON rejections to stable codes.
pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json-content-type-required",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "invalid-json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request-body",
            e.body_text(),
        ),
        JsonRejection::BytesRejection(e) => {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "body-too-large", "the request body is too large")
            } else {
                ApiError::bad_request("body-unreadable", e.body_text())
            }
        }
        other => ApiError::bad_request("invalid-request-body", other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn envelope_shape_and_opaque_internal_errors() {
        let response = ApiError::internal("db password is hunter2").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.extensions().get::<InternalErrorDetail>().is_some());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"]["code"], "internal-error");
        assert!(!String::from_utf8_lossy(&bytes).contains("hunter2"));
    }

    #[tokio::test]
    async fn a_bad_query_is_an_enveloped_400() {
        #[derive(serde::Deserialize)]
        struct Params {
            #[allow(dead_code)]
            limit: Option<String>,
        }
        async fn handler(AppQuery(_): AppQuery<Params>) -> &'static str {
            "ok"
        }
        let router = axum::Router::new().route("/", axum::routing::get(handler));
        let call = |uri: &'static str| {
            let router = router.clone();
            async move {
                use tower::ServiceExt;
                let request = Request::builder().uri(uri).body(axum::body::Body::empty());
                router.oneshot(request.unwrap()).await.unwrap()
            }
        };
        assert_eq!(call("/?limit=5").await.status(), StatusCode::OK);
        // A repeated parameter: axum's Query answers in plain text.
        let response = call("/?limit=1&limit=2").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"]["code"], "invalid-query");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("duplicate field")));
    }
}
