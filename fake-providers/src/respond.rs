//! Response plumbing shared by both providers: file bodies with `Range`,
//! bodies cut off mid-stream, and bodies that break the connection.

use std::io;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use http_body::Body as _;

/// A parsed single-range `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    Full,
    Partial { start: u64, len: u64 },
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` against `size`. Anything else
/// (several ranges, other units, garbage) is ignored, as RFC 9110 allows.
pub fn parse_range(headers: &HeaderMap, size: u64) -> ByteRange {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return ByteRange::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return ByteRange::Full;
        };
        if n == 0 {
            return ByteRange::Unsatisfiable;
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return ByteRange::Full;
        };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                _ => return ByteRange::Full,
            }
        };
        (start, end)
    };
    if start >= size {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Partial {
        start,
        len: end - start + 1,
    }
}

/// A `200`/`206` file response with `Content-Length` (and `Content-Range`).
pub fn file_response(
    status: StatusCode,
    content_type: &str,
    size: u64,
    range: ByteRange,
    body: BoxStream<'static, io::Result<Bytes>>,
) -> Response {
    let (status, len, content_range) = match range {
        ByteRange::Partial { start, len } => (
            StatusCode::PARTIAL_CONTENT,
            len,
            Some(format!("bytes {start}-{}/{size}", start + len - 1)),
        ),
        _ => (status, size, None),
    };
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_RANGE, cr);
    }
    response
}

/// Runs `on_complete` once the body has handed over as many bytes as its
/// `Content-Length` announces (not for a body cut short or failed).
pub fn track_completion(
    response: Response,
    on_complete: impl FnOnce() + Send + 'static,
) -> Response {
    let (parts, body) = response.into_parts();
    let Some(expected) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Response::from_parts(parts, body);
    };
    let mut on_complete = Some(on_complete);
    if expected == 0 {
        if let Some(f) = on_complete.take() {
            f();
        }
    }
    let mut sent = 0u64;
    let body = body.into_data_stream().map(move |chunk| {
        if let Ok(c) = &chunk {
            sent += c.len() as u64;
            if sent == expected {
                if let Some(f) = on_complete.take() {
                    f();
                }
            }
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// `416` for a range past the end.
pub fn unsatisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

/// Keeps status and headers (with the full `Content-Length`), sends the first
/// `after` bytes of the body, then fails the body so the server drops the
/// connection: the client sees fewer bytes than announced.
pub fn truncate(response: Response, after: u64) -> Response {
    let (mut parts, body) = response.into_parts();
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    if let Some(len) = announced {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let state = (body.into_data_stream(), after, false);
    let cut = stream::unfold(state, |(mut inner, remaining, done)| async move {
        if done {
            return None;
        }
        if remaining == 0 {
            // Let the connection flush what was sent before it is dropped.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let err = io::Error::new(io::ErrorKind::ConnectionAborted, "injected: body cut off");
            return Some((Err(err), (inner, 0, true)));
        }
        match inner.next().await {
            Some(Ok(chunk)) => {
                let take = (chunk.len() as u64).min(remaining) as usize;
                let rest = remaining - take as u64;
                Some((Ok(chunk.slice(..take)), (inner, rest, false)))
            }
            Some(Err(e)) => Some((Err(io::Error::other(e)), (inner, 0, true))),
            // The body was shorter than `after`: it goes out whole.
            None => None,
        }
    });
    Response::from_parts(parts, Body::from_stream(cut))
}

/// A `200` whose body fails before its first byte: the fallback for
/// [`crate::faults::Fault::ConnectionReset`] when the router is used without
/// [`crate::serve`] (e.g. `oneshot` in tests), where no connection can be killed.
pub fn broken_response() -> Response {
    let body = stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "injected: connection reset",
        ))
    });
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(1024u64));
    response
}

/// The HTML a front end answers a 429 (or a 502) with.
pub fn html_error(status: StatusCode, retry_after: Option<u64>) -> Response {
    let title = match status {
        StatusCode::TOO_MANY_REQUESTS => "429 Too Many Requests",
        StatusCode::BAD_GATEWAY => "502 Bad Gateway",
        _ => "Error",
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error {title}</title>\n\
         <p><b>{title}.</b> <ins>That's an error.</ins>\n\
         <p>We're sorry, but you have sent too many requests to us recently. Please try again later.\n\
         <ins>That's all we know.</ins>\n</html>\n"
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> ByteRange {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        parse_range(&headers, size)
    }

    #[test]
    fn ranges() {
        assert_eq!(
            range("bytes=0-9", 100),
            ByteRange::Partial { start: 0, len: 10 }
        );
        assert_eq!(
            range("bytes=90-", 100),
            ByteRange::Partial { start: 90, len: 10 }
        );
        assert_eq!(
            range("bytes=-5", 100),
            ByteRange::Partial { start: 95, len: 5 }
        );
        assert_eq!(
            range("bytes=50-500", 100),
            ByteRange::Partial { start: 50, len: 50 }
        );
        assert_eq!(range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=0-1,5-6", 100), ByteRange::Full);
        assert_eq!(range("items=0-1", 100), ByteRange::Full);
        assert_eq!(parse_range(&HeaderMap::new(), 100), ByteRange::Full);
    }
}
