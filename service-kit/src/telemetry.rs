//! Tracing set-up and trace-context propagation.
//!
//! Logs are pretty in a terminal and JSON otherwise (override with `LOG_FORMAT=json|pretty`),
//! filtered by `RUST_LOG` (default `info`). Every request carries an `x-request-id`
//! (taken from the caller or generated) and a W3C `traceparent`; [`outgoing_headers`]
//! returns both for calls this request makes to other services.

use std::io::IsTerminal;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The variables [`init_tracing`] reads from the process environment (not through
/// [`crate::Env`]): the filter and the format.
pub const VARS: [&str; 2] = ["RUST_LOG", "LOG_FORMAT"];

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init_tracing(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var(VARS[1]).as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "tracing initialised");
    }
}

/// Trace context of the request being served.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub request_id: String,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// This service's span for the request: 16 lowercase hex digits.
    pub span_id: String,
    pub sampled: bool,
}

impl TraceContext {
    /// Parses an incoming `traceparent` or starts a new trace.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let request_id = headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let parsed = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let (trace_id, sampled) = parsed.unwrap_or_else(|| (random_hex(16), true));
        TraceContext {
            request_id,
            trace_id,
            span_id: random_hex(8),
            sampled,
        }
    }

    /// The `traceparent` to send downstream (this span as the parent).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids are invalid.
fn parse_traceparent(value: &str) -> Option<(String, bool)> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
        return None;
    }
    let is_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(parts[0], 2)
        || !is_hex(parts[1], 32)
        || !is_hex(parts[2], 16)
        || !is_hex(parts[3], 2)
    {
        return None;
    }
    if parts[1].bytes().all(|b| b == b'0') || parts[2].bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(parts[3], 16).ok()?;
    Some((parts[1].to_owned(), flags & 1 == 1))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::thread_rng(), buf.as_mut_slice());
    hex::encode(buf)
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Middleware: establishes the [`TraceContext`] for the request (extension + task-local)
/// and records it on the current span.
pub async fn trace_context(mut request: Request, next: Next) -> Response {
    let ctx = TraceContext::from_headers(request.headers());
    tracing::Span::current().record("trace_id", ctx.trace_id.as_str());
    request.extensions_mut().insert(ctx.clone());
    CURRENT.scope(ctx, next.run(request)).await
}

/// The current request's trace context, if called while serving one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Headers to add to an outgoing call: `x-request-id` and `traceparent`.
pub fn outgoing_headers() -> Vec<(HeaderName, HeaderValue)> {
    let Some(ctx) = current() else {
        return Vec::new();
    };
    let mut headers = Vec::with_capacity(2);
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        headers.push((REQUEST_ID, v));
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.traceparent()) {
        headers.push((TRACEPARENT, v));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_callers_trace_id() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert(REQUEST_ID, HeaderValue::from_static("req-1"));
        let ctx = TraceContext::from_headers(&headers);
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.request_id, "req-1");
        assert_ne!(ctx.span_id, "00f067aa0ba902b7");
        assert!(ctx
            .traceparent()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn rejects_malformed_traceparent() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
