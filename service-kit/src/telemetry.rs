//! Tracing set-up and trace-context propagation.
//!
//! Logs are pretty in a terminal and JSON otherwise (override with `LOG_FORMAT=json|pretty`),
//! filtered by `RUST_LOG` (default `info`), and written to stdout by a thread of their
//! own ([`init_tracing`] returns the [`LogGuard`] that keeps it running). Every request
//! carries an `x-request-id` (taken from the caller or generated) and a W3C
//! `traceparent`; [`outgoing_headers`] returns both for calls this request makes to
//! other services.

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

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, the current span's fields under `span`.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Keeps the log writer's thread running. Hold it until `main` returns: dropping it
/// writes out every line still queued, and lines logged after that are lost.
#[must_use = "dropping the guard stops the log writer; hold it until main returns"]
pub struct LogGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global subscriber, logging to standard output. Safe to call more than
/// once (later calls do nothing and return an inert guard).
pub fn init_tracing(service: &'static str) -> LogGuard {
    let format = match std::env::var(VARS[1]).as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("pretty") => LogFormat::Pretty,
        _ if std::io::stdout().is_terminal() => LogFormat::Pretty,
        _ => LogFormat::Json,
    };
    init_tracing_into(service, std::io::stdout(), format)
}

/// As [`init_tracing`], into `sink` (the benchmarks log into a file this way).
///
/// Lines are formatted on the thread that logs them and written by a thread of their
/// own (`tracing_appender::non_blocking`), which writes whatever has queued up with one
/// system call: a request never waits on the write, and under load many lines share
/// one. The queue holds up to 128,000 lines and is not lossy: when it is full, logging
/// waits. A process killed outright loses the lines still queued (normally none: the
/// writer catches up within microseconds).
pub fn init_tracing_into(
    service: &'static str,
    sink: impl std::io::Write + Send + 'static,
    format: LogFormat,
) -> LogGuard {
    let filter = EnvFilter::new(log_filter());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(LOG_BUFFER_BYTES, sink));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(writer),
            )
            .try_init(),
    };
    match result {
        Ok(()) => {
            tracing::debug!(service, "tracing initialised");
            LogGuard {
                _writer: Some(guard),
            }
        }
        // Already installed: this writer is not used; its thread stops with the guard.
        Err(_) => {
            drop(guard);
            LogGuard { _writer: None }
        }
    }
}

/// The filter [`init_tracing`] installs: `RUST_LOG` if it is a valid filter, else `info`.
pub fn log_filter() -> String {
    std::env::var(VARS[0])
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| "info".to_owned())
}

/// The log writer's buffer: what one system call writes at most.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

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

    /// A sink the test can read after the log writer is done with it.
    #[derive(Clone, Default)]
    struct SharedSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The only test in this crate that installs the global subscriber.
    #[test]
    fn every_line_is_written_by_the_time_the_guard_is_dropped() {
        let sink = SharedSink::default();
        let guard = init_tracing_into("telemetry-test", sink.clone(), LogFormat::Json);
        // A second installation does nothing: its sink never sees a line.
        let ignored = SharedSink::default();
        drop(init_tracing_into("again", ignored.clone(), LogFormat::Json));
        let span = tracing::info_span!("request", request_id = "req-42");
        let _entered = span.enter();
        for n in 0..5_000 {
            tracing::info!(target: "telemetry_test", n, "line");
        }
        drop(guard);

        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let ours: Vec<serde_json::Value> = written
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is one JSON object"))
            .filter(|line: &serde_json::Value| line["target"] == "telemetry_test")
            .collect();
        assert_eq!(ours.len(), 5_000, "lines were lost");
        for (n, line) in ours.iter().enumerate() {
            assert_eq!(line["n"], n, "lines out of order");
        }
        assert_eq!(ours[0]["span"]["request_id"], "req-42");
        assert!(ignored.0.lock().unwrap().is_empty());
    }

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
