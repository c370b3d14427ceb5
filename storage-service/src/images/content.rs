//! `GET /images/{id}/content?token=…`: the bytes, behind a short-lived signed URL.
//!
//! Served with the exact stored `Content-Type`, a strong `ETag` (the SHA-256),
//! `Cache-Control: private, immutable` for the token's remaining life,
//! `X-Content-Type-Options: nosniff`, `Content-Security-Policy: default-src 'none'`,
//! an ASCII-safe `Content-Disposition`, and single `Range` requests.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use service_kit::AppQuery;
use shared_signing::Purpose;
use utoipa::IntoParams;

use super::download_urls::DownloadUrlClaims;
use crate::blobs::BlobKey;
use crate::domain::unix_now;
use crate::error::{StorageError, StorageResult};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
pub struct ContentQuery {
    /// The token from the download URL.
    pub token: Option<String>,
}

/// `inline; filename="<ascii>"; filename*=UTF-8''<percent-encoded>`.
pub fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = utf8_percent_encode(filename, NON_ALPHANUMERIC);
    format!("inline; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Streams an image's bytes.
#[utoipa::path(
    get,
    path = "/images/{image_id}/content",
    tag = "images",
    params(("image_id" = String, Path, description = "Image id"), ContentQuery),
    responses(
        (status = 200, description = "The image", content_type = "image/*"),
        (status = 206, description = "A byte range of the image", content_type = "image/*"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "A repeated `token` (`invalid-query`)", body = service_kit::ErrorEnvelope),
        (status = 403, description = "Token invalid, expired, or for another image", body = service_kit::ErrorEnvelope),
        (status = 404, description = "No such image", body = service_kit::ErrorEnvelope),
        (status = 416, description = "Range not satisfiable", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn get_content(
    State(state): State<AppState>,
    Path(image_id): Path<String>,
    AppQuery(query): AppQuery<ContentQuery>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let now = unix_now();
    let token = query.token.ok_or(StorageError::UrlToken(
        shared_signing::TokenError::Malformed,
    ))?;
    let verified = state
        .config
        .url_keys
        .verify_json::<DownloadUrlClaims>(
            Purpose::DOWNLOAD_URL,
            &token,
            now,
            &state.download_token_policy(),
        )
        .map_err(StorageError::UrlToken)?;
    if verified.claims.i != image_id {
        return Err(StorageError::TokenImageMismatch);
    }
    let row = state
        .repo
        .image(&image_id)
        .await?
        .filter(|r| r.state == "complete")
        .ok_or(StorageError::ImageNotFound)?;
    let size = row.size.max(0) as u64;
    let etag = format!("\"{}\"", row.sha256);
    let max_age = (verified.expires_at - now).max(0);

    let mut response_headers = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            response_headers.insert(name, v);
        }
    };
    put(header::CONTENT_TYPE, &row.content_type);
    put(header::ETAG, &etag);
    put(
        header::CACHE_CONTROL,
        &format!("private, max-age={max_age}, immutable"),
    );
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox",
    );
    put(
        header::CONTENT_DISPOSITION,
        &content_disposition(&row.filename),
    );
    put(header::ACCEPT_RANGES, "bytes");

    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        .unwrap_or(false);
    if if_none_match {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }

    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        // Syntactically invalid ranges are ignored (RFC 9110 §14.2).
        Some(raw) => match http_range_header::parse_range_header(raw) {
            Err(_) => None,
            Ok(parsed) => match parsed.validate(size) {
                Err(_) => return Err(StorageError::RangeNotSatisfiable { size }),
                // One range is served as 206; several are answered with the whole body.
                Ok(ranges) if ranges.len() == 1 => Some(ranges[0].clone()),
                Ok(_) => None,
            },
        },
    };

    let key = BlobKey::new(row.storage_key.clone())
        .map_err(|e| StorageError::Internal(format!("stored key invalid: {e}")))?;
    let (status, byte_range) = match range {
        Some(r) => {
            put(
                header::CONTENT_RANGE,
                &format!("bytes {}-{}/{size}", r.start(), r.end()),
            );
            (StatusCode::PARTIAL_CONTENT, Some(*r.start()..*r.end() + 1))
        }
        None => (StatusCode::OK, None),
    };
    let length = byte_range.as_ref().map(|r| r.end - r.start).unwrap_or(size);
    put(header::CONTENT_LENGTH, &length.to_string());
    let stream = state.blobs.read(&key, byte_range).await?;
    Ok((status, response_headers, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_is_ascii_safe() {
        let d = content_disposition("naïve \"photo\".png");
        assert!(d.is_ascii());
        assert!(
            d.starts_with("inline; filename=\"na_ve _photo_.png\""),
            "{d}"
        );
        assert!(
            d.contains("filename*=UTF-8''na%C3%AFve%20%22photo%22%2Epng"),
            "{d}"
        );
    }
}
