//! Google's error JSON (`{"error":{"code","message","errors":[…],"status"}}`)
//! and how each injected fault looks on Drive.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::faults::{Fault, RateLimitReason};
use crate::respond;

#[derive(Serialize)]
struct ErrorDoc {
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    code: u16,
    pub(super) message: String,
    errors: Vec<ErrorItem>,
    pub(super) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) details: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorItem {
    pub(super) message: String,
    pub(super) domain: &'static str,
    pub(super) reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) location: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location_type: Option<&'static str>,
}

/// Google's error JSON: `{"error":{"code","message","errors":[…],"status"}}`.
pub(super) struct GoogleError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    pub(super) domain: &'static str,
    pub(super) reason: &'static str,
    pub(super) location: Option<&'static str>,
    pub(super) details: Option<Value>,
    pub(super) retry_after: Option<u64>,
}

impl GoogleError {
    pub(super) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        GoogleError {
            status,
            message: message.into(),
            domain: "global",
            reason,
            location: None,
            details: None,
            retry_after: None,
        }
    }

    pub(super) fn at(mut self, location: &'static str) -> Self {
        self.location = Some(location);
        self
    }

    pub(super) fn domain(mut self, domain: &'static str) -> Self {
        self.domain = domain;
        self
    }

    pub(super) fn not_found(id: &str) -> Self {
        GoogleError::new(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("File not found: {id}."),
        )
        .at("fileId")
    }

    pub(super) fn invalid(location: &'static str, message: impl Into<String>) -> Self {
        GoogleError::new(StatusCode::BAD_REQUEST, "invalid", message).at(location)
    }
}

fn status_text(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        416 => "OUT_OF_RANGE",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let doc = ErrorDoc {
            error: ErrorBody {
                code: self.status.as_u16(),
                message: self.message.clone(),
                errors: vec![ErrorItem {
                    message: self.message,
                    domain: self.domain,
                    reason: self.reason,
                    location: self.location,
                    location_type: self.location.map(|_| "parameter"),
                }],
                status: status_text(self.status),
                details: self.details,
            },
        };
        let mut response = (self.status, axum::Json(doc)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// How Drive (or Google's front end) shows an injected fault.
pub(super) fn fault_response(fault: Fault, id: &str) -> Response {
    match fault {
        Fault::RateLimited {
            status,
            reason,
            retry_after,
        } => {
            let (reason, message) = match reason {
                RateLimitReason::RateLimitExceeded => ("rateLimitExceeded", "Rate Limit Exceeded"),
                RateLimitReason::UserRateLimitExceeded => {
                    ("userRateLimitExceeded", "User Rate Limit Exceeded")
                }
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            let mut e = GoogleError::new(status, reason, message).domain("usageLimits");
            e.retry_after = retry_after;
            e.into_response()
        }
        Fault::Html429 { retry_after } => {
            respond::html_error(StatusCode::TOO_MANY_REQUESTS, retry_after)
        }
        Fault::ServerError { status: 500 } => GoogleError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internalError",
            "Internal Error",
        )
        .into_response(),
        Fault::ServerError { status: 503 } => GoogleError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backendError",
            "Backend Error",
        )
        .into_response(),
        Fault::ServerError { status } => respond::html_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            None,
        ),
        Fault::DownloadQuotaExceeded => GoogleError::new(
            StatusCode::FORBIDDEN,
            "downloadQuotaExceeded",
            "The download quota for this file has been exceeded.",
        )
        .into_response(),
        Fault::PrivateFolder | Fault::NotFound => GoogleError::not_found(id).into_response(),
        Fault::ConnectionReset => respond::broken_response(),
        // Handled by `admit`; never rendered.
        Fault::Delay { .. } | Fault::TruncatedBody { .. } | Fault::EmptyListing => {
            StatusCode::OK.into_response()
        }
    }
}
