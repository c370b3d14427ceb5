//! One upload as the App Service and a browser do it: `POST /internal/presign`
//! (signed), then `PUT` the file to the pre-signed URL, streamed from disk.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use http::Method;
use serde_json::{json, Value};
use shared_signing::{BodyDigest, KeyRing, Purpose};
use tokio_util::io::ReaderStream;

/// A pre-signed upload URL and the headers it must carry.
pub struct Presigned {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Asks the service for an upload URL for `size` bytes of PNG with digest `sha256`.
pub async fn presign(
    client: &reqwest::Client,
    base_url: &str,
    app_keys: &KeyRing,
    size: u64,
    sha256: &str,
) -> Result<Presigned> {
    let now = shared_signing::unix_now();
    let meta = json!({
        "seller_id": "bench-seller",
        "filename": "bench.png",
        "content_type": "image/png",
        "size": size,
        "sha256": sha256,
    });
    let token = app_keys.mint_json(
        Purpose::UPLOAD_METADATA,
        &meta,
        now,
        Duration::from_secs(60),
    )?;
    let body = serde_json::to_vec(&json!({ "metadata_token": token }))?;
    let path = "/internal/presign";
    let headers = shared_signing::sign_request(
        app_keys,
        &Method::POST,
        &http::Uri::from_static(path),
        BodyDigest::of(&body),
        now,
    );
    let response = client
        .post(format!("{base_url}{path}"))
        .headers(headers)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("POST /internal/presign")?;
    let status = response.status();
    let json: Value = response.json().await.context("presign response")?;
    if status != reqwest::StatusCode::CREATED {
        bail!("presign answered {status}: {json}");
    }
    let url = json["upload_url"]
        .as_str()
        .context("presign response has no upload_url")?
        .to_owned();
    let headers = json["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Presigned { url, headers })
}

/// Timings of one PUT, as the client sees them.
#[derive(Debug, Clone, Copy)]
pub struct PutTiming {
    /// First body byte read from the file → `201` received.
    pub total: Duration,
    /// First → last body byte handed to the HTTP client. The rest of `total` is the
    /// service finishing: the bytes still in socket buffers, then flush, `fsync`,
    /// rename, directory `fsync` and the database commit.
    pub body: Duration,
}

/// PUTs `path` (`size` bytes) to the pre-signed URL, streamed in `read_chunk` reads.
/// Checks the answer's size and SHA-256.
pub async fn put(
    client: &reqwest::Client,
    presigned: &Presigned,
    path: &Path,
    size: u64,
    sha256: &str,
    read_chunk: usize,
) -> Result<PutTiming> {
    let file = tokio::fs::File::open(path).await?;
    let first_byte: Arc<OnceLock<Instant>> = Arc::default();
    let last_byte: Arc<OnceLock<Instant>> = Arc::default();
    let stream = {
        let (first_byte, last_byte) = (first_byte.clone(), last_byte.clone());
        let mut read = 0u64;
        // With a Content-Length, hyper stops polling once it has that many bytes: the
        // last byte is the one that completes the count, not the end of the stream.
        ReaderStream::with_capacity(file, read_chunk).inspect(move |chunk| {
            first_byte.get_or_init(Instant::now);
            read += chunk.as_ref().map_or(0, |c| c.len() as u64);
            if read >= size {
                last_byte.get_or_init(Instant::now);
            }
        })
    };
    let mut request = client
        .put(&presigned.url)
        .header(http::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(stream));
    for (name, value) in &presigned.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.context("PUT upload")?;
    let answered = Instant::now();
    let status = response.status();
    let json: Value = response.json().await.context("PUT response")?;
    if status != reqwest::StatusCode::CREATED {
        bail!("PUT answered {status}: {json}");
    }
    if json["size"].as_u64() != Some(size) || json["sha256"].as_str() != Some(sha256) {
        bail!("PUT stored something else: {json}");
    }
    let start = first_byte
        .get()
        .copied()
        .context("the body stream was never read")?;
    let end = last_byte
        .get()
        .copied()
        .context("the body stream was never read to its end")?;
    Ok(PutTiming {
        total: answered.duration_since(start),
        body: end.duration_since(start),
    })
}
