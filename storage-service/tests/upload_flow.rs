//! The pre-signed upload flow and every bad input it must refuse, on every backend:
//! embedded (SQLite + local disk), PostgreSQL, and S3. Each rejection checks the status,
//! the error code, and that nothing was stored.

mod common;

use common::{assert_error, fixture, json_of, sha256_hex, Backend, TestApp};
use http::{Method, StatusCode};
use serde_json::json;
use shared_signing::Purpose;
use storage_service::inspect::synthetic;
use storage_service::uploads::UploadUrlClaims;

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::scenarios::$name(super::Backend::Embedded, concat!("embedded::", stringify!($name))).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::scenarios::$name(super::Backend::Postgres, concat!("postgres::", stringify!($name))).await } )*
        }
        mod s3 {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::scenarios::$name(super::Backend::S3, concat!("s3::", stringify!($name))).await } )*
        }
    };
}

on_every_backend!(
    every_image_type_round_trips,
    tampered_token_is_refused,
    unknown_key_id_is_refused,
    expired_token_is_refused,
    token_not_yet_valid_is_refused,
    token_for_another_purpose_is_refused,
    token_for_another_upload_is_refused,
    missing_token_is_refused,
    replay_after_success_is_refused,
    concurrent_double_use_stores_once,
    body_longer_than_declared_is_refused,
    streamed_body_longer_than_declared_stops_reading,
    body_shorter_than_declared_is_refused,
    empty_body_is_refused,
    sha256_mismatch_is_refused,
    content_type_header_mismatch_is_refused,
    html_sent_as_png_is_refused,
    png_declared_as_jpeg_is_refused,
    huge_dimensions_in_tiny_file_are_refused,
    truncated_image_is_refused,
    failed_upload_can_be_retried,
    hostile_file_names_are_sanitised,
    large_multipart_upload_round_trips,
);

mod scenarios {
    use super::*;

    async fn app(b: Backend, test: &str) -> Option<TestApp> {
        TestApp::start_with(b, test, &[("MAX_UPLOAD_BYTES", "64MiB")]).await
    }

    pub async fn every_image_type_round_trips(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        for (file, mime, w, h) in [
            ("tiny.png", "image/png", 0, 0),
            ("tiny.jpg", "image/jpeg", 0, 0),
            ("tiny.gif", "image/gif", 0, 0),
            ("tiny.webp", "image/webp", 0, 0),
            ("tiny.avif", "image/avif", 0, 0),
        ] {
            let _ = (w, h);
            let bytes = fixture(file);
            let stored = app.upload("seller-1", mime, &bytes).await;
            assert_eq!(stored["content_type"], mime);
            assert_eq!(stored["size"], bytes.len());
            assert_eq!(stored["sha256"], sha256_hex(&bytes));
            assert!(stored["width"].as_u64().unwrap() > 0);
            let id = stored["image_id"].as_str().unwrap();
            let (status, record) = app.image_record(id).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(record["owner_id"], "seller-1");
            assert_eq!(record["state"], "complete");
            assert_eq!(record["source"], "upload");

            // The bytes come back through a download URL, exactly.
            let req = app.signed(
                &app.app_keys,
                Method::POST,
                "/internal/download-urls",
                Some(&json!({"image_ids": [id]})),
            );
            let (status, urls) = json_of(app.send(req).await).await;
            assert_eq!(status, StatusCode::OK, "{urls}");
            let url = urls["urls"][0]["url"]
                .as_str()
                .unwrap()
                .strip_prefix("http://storage.test")
                .unwrap()
                .to_owned();
            let response = app
                .send(
                    http::Request::get(&url)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], mime);
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(body.as_ref(), bytes.as_slice());
        }
        assert_eq!(app.image_count().await, 5);
        // Exactly five objects exist (files on disk, or objects under the S3 prefix).
        let stored = app.stored_files().len() + app.stored_objects().await.len();
        assert_eq!(stored, 5);
    }

    pub async fn tampered_token_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (_, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let (base, token) = path.split_once("?token=").unwrap();
        // Change one byte in every part of the token: version, key id, times, payload, MAC.
        let positions = [0usize, 3, 8, token.len() / 2, token.len() - 1];
        for pos in positions {
            let mut chars: Vec<char> = token.chars().collect();
            chars[pos] = if chars[pos] == 'A' { 'B' } else { 'A' };
            let tampered: String = chars.into_iter().collect();
            let response = app
                .put(
                    &format!("{base}?token={tampered}"),
                    "image/png",
                    bytes.clone(),
                )
                .await;
            let (status, json) = json_of(response).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "pos {pos}: {json}");
            let code = json["error"]["code"].as_str().unwrap();
            assert!(code.starts_with("token-"), "pos {pos}: {code}");
        }
        app.assert_nothing_stored().await;
    }

    fn mint(
        app: &TestApp,
        keys: &shared_signing::KeyRing,
        purpose: Purpose,
        claims: &UploadUrlClaims,
        iat: i64,
        exp: i64,
    ) -> String {
        keys.mint(purpose, &serde_json::to_vec(claims).unwrap(), iat, exp)
            .unwrap_or_else(|e| panic!("{e} {}", app.url_keys.len()))
    }

    async fn presigned_claims(app: &TestApp, bytes: &[u8]) -> (String, UploadUrlClaims) {
        let (upload_id, _) = app.presign("seller-1", "a.png", "image/png", bytes).await;
        let claims = UploadUrlClaims {
            u: upload_id.clone(),
            o: "seller-1".into(),
            s: bytes.len() as u64,
            h: sha256_hex(bytes),
            t: "image/png".into(),
        };
        (upload_id, claims)
    }

    pub async fn unknown_key_id_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, claims) = presigned_claims(&app, &bytes).await;
        let now = shared_signing::unix_now();
        let token = mint(
            &app,
            &common::ring("other"),
            Purpose::UPLOAD_URL,
            &claims,
            now,
            now + 60,
        );
        let response = app
            .put(&format!("/uploads/{id}?token={token}"), "image/png", bytes)
            .await;
        assert_error(response, StatusCode::FORBIDDEN, "token-unknown-key").await;
        app.assert_nothing_stored().await;
    }

    pub async fn expired_token_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, claims) = presigned_claims(&app, &bytes).await;
        let now = shared_signing::unix_now();
        let token = mint(
            &app,
            &app.url_keys,
            Purpose::UPLOAD_URL,
            &claims,
            now - 1000,
            now - 100,
        );
        let response = app
            .put(&format!("/uploads/{id}?token={token}"), "image/png", bytes)
            .await;
        assert_error(response, StatusCode::FORBIDDEN, "token-expired").await;
        app.assert_nothing_stored().await;
    }

    pub async fn token_not_yet_valid_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, claims) = presigned_claims(&app, &bytes).await;
        let now = shared_signing::unix_now();
        let token = mint(
            &app,
            &app.url_keys,
            Purpose::UPLOAD_URL,
            &claims,
            now + 600,
            now + 900,
        );
        let response = app
            .put(&format!("/uploads/{id}?token={token}"), "image/png", bytes)
            .await;
        assert_error(response, StatusCode::FORBIDDEN, "token-not-yet-valid").await;
        app.assert_nothing_stored().await;
    }

    pub async fn token_for_another_purpose_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, claims) = presigned_claims(&app, &bytes).await;
        let now = shared_signing::unix_now();
        let token = mint(
            &app,
            &app.url_keys,
            Purpose::DOWNLOAD_URL,
            &claims,
            now,
            now + 60,
        );
        let response = app
            .put(&format!("/uploads/{id}?token={token}"), "image/png", bytes)
            .await;
        assert_error(response, StatusCode::FORBIDDEN, "token-invalid-signature").await;
        app.assert_nothing_stored().await;
    }

    pub async fn token_for_another_upload_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (first_id, _) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let (_, second_path) = app.presign("seller-1", "b.png", "image/png", &bytes).await;
        let token = second_path.split_once("?token=").unwrap().1;
        let response = app
            .put(
                &format!("/uploads/{first_id}?token={token}"),
                "image/png",
                bytes,
            )
            .await;
        assert_error(response, StatusCode::FORBIDDEN, "token-upload-mismatch").await;
        app.assert_nothing_stored().await;
        assert_eq!(app.pending_state(&first_id).await, "pending");
    }

    pub async fn missing_token_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, _) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let response = app.put(&format!("/uploads/{id}"), "image/png", bytes).await;
        assert_error(response, StatusCode::FORBIDDEN, "token-malformed").await;
        app.assert_nothing_stored().await;
    }

    pub async fn replay_after_success_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let (status, _) = json_of(app.put(&path, "image/png", bytes.clone()).await).await;
        assert_eq!(status, StatusCode::CREATED);
        let response = app.put(&path, "image/png", bytes).await;
        assert_error(response, StatusCode::CONFLICT, "upload-already-completed").await;
        assert_eq!(
            app.image_count().await,
            1,
            "the replay stored a second image"
        );
        assert_eq!(app.pending_state(&id).await, "completed");
    }

    pub async fn concurrent_double_use_stores_once(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = synthetic::png(64, 64, 256 * 1024);
        let (upload_id, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        // The first PUT sends half its body and waits; the second arrives meanwhile.
        let (mut tx, stream) =
            futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
        let first = http::Request::put(&path)
            .header("content-type", "image/png")
            .header("content-length", bytes.len())
            .body(axum::body::Body::from_stream(stream))
            .unwrap();
        let router = app.router.clone();
        let first =
            tokio::spawn(async move { tower::ServiceExt::oneshot(router, first).await.unwrap() });
        let half = bytes.len() / 2;
        futures::SinkExt::send(&mut tx, Ok(bytes::Bytes::copy_from_slice(&bytes[..half])))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while app.pending_state(&upload_id).await != "receiving" {
            assert!(
                std::time::Instant::now() < deadline,
                "the first PUT never took the upload"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let second = app.put(&path, "image/png", bytes.clone()).await;
        assert_error(second, StatusCode::CONFLICT, "upload-in-progress").await;
        futures::SinkExt::send(&mut tx, Ok(bytes::Bytes::copy_from_slice(&bytes[half..])))
            .await
            .unwrap();
        drop(tx);
        let (status, json) = json_of(first.await.unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        let third = app.put(&path, "image/png", bytes).await;
        assert_error(third, StatusCode::CONFLICT, "upload-already-completed").await;
        assert_eq!(app.image_count().await, 1);
        // And a true race: many PUTs at once, exactly one wins.
        let bytes = fixture("tiny.png");
        let (_, path) = app.presign("seller-1", "b.png", "image/png", &bytes).await;
        let attempts = (0..8).map(|_| {
            let router = app.router.clone();
            let req = http::Request::put(&path)
                .header("content-type", "image/png")
                .body(axum::body::Body::from(bytes.clone()))
                .unwrap();
            tokio::spawn(async move {
                tower::ServiceExt::oneshot(router, req)
                    .await
                    .unwrap()
                    .status()
            })
        });
        let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == StatusCode::CREATED)
                .count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
            "{statuses:?}"
        );
        assert_eq!(app.image_count().await, 2);
    }

    pub async fn body_longer_than_declared_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"trailing");
        let response = app.put(&path, "image/png", longer).await;
        assert_error(
            response,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-larger-than-declared",
        )
        .await;
        app.assert_nothing_stored().await;
        assert_eq!(app.pending_state(&id).await, "pending");
    }

    pub async fn streamed_body_longer_than_declared_stops_reading(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (_, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        // No Content-Length: the limit is enforced while streaming, and an endless body
        // is not read past the declared size + 1 byte.
        let chunk = bytes::Bytes::from(vec![0u8; 64 * 1024]);
        let endless = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()))
            .take(100_000);
        let req = http::Request::put(&path)
            .header("content-type", "image/png")
            .body(axum::body::Body::from_stream(futures::StreamExt::chain(
                futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
                    bytes.clone(),
                ))]),
                endless,
            )))
            .unwrap();
        let started = std::time::Instant::now();
        let response = app.send(req).await;
        assert_error(
            response,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-larger-than-declared",
        )
        .await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "it read the endless body"
        );
        app.assert_nothing_stored().await;
    }
    use futures::StreamExt as _;

    pub async fn body_shorter_than_declared_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (_, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let response = app
            .put(&path, "image/png", bytes[..bytes.len() - 10].to_vec())
            .await;
        assert_error(
            response,
            StatusCode::BAD_REQUEST,
            "body-shorter-than-declared",
        )
        .await;
        // Without Content-Length the stream's end is the judge.
        let req = http::Request::put(&path)
            .header("content-type", "image/png")
            .body(axum::body::Body::from_stream(futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from(bytes[..bytes.len() - 10].to_vec())),
            ])))
            .unwrap();
        assert_error(
            app.send(req).await,
            StatusCode::BAD_REQUEST,
            "body-shorter-than-declared",
        )
        .await;
        app.assert_nothing_stored().await;
    }

    pub async fn empty_body_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (_, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let response = app.put(&path, "image/png", Vec::new()).await;
        assert_error(response, StatusCode::BAD_REQUEST, "empty-body").await;
        app.assert_nothing_stored().await;
    }

    pub async fn sha256_mismatch_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = synthetic::png(16, 16, 4096);
        let (id, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let mut other = bytes.clone();
        let last_idat_byte = other.len() - 20;
        other[last_idat_byte] ^= 0xff;
        let response = app.put(&path, "image/png", other).await;
        assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "sha256-mismatch",
        )
        .await;
        app.assert_nothing_stored().await;
        assert_eq!(app.pending_state(&id).await, "pending");
    }

    pub async fn content_type_header_mismatch_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (_, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let response = app.put(&path, "image/jpeg", bytes.clone()).await;
        assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type-header-mismatch",
        )
        .await;
        let response = app.put(&path, "text/html", bytes).await;
        assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type-header-mismatch",
        )
        .await;
        app.assert_nothing_stored().await;
    }

    pub async fn html_sent_as_png_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>".to_vec();
        let (_, path) = app
            .presign("seller-1", "evil.png", "image/png", &html)
            .await;
        let response = app.put(&path, "image/png", html).await;
        assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-an-image").await;
        app.assert_nothing_stored().await;
    }

    pub async fn png_declared_as_jpeg_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let png = fixture("tiny.png");
        let (_, path) = app.presign("seller-1", "a.jpg", "image/jpeg", &png).await;
        let response = app.put(&path, "image/jpeg", png).await;
        assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type-mismatch",
        )
        .await;
        app.assert_nothing_stored().await;
    }

    pub async fn huge_dimensions_in_tiny_file_are_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bomb = synthetic::png(60000, 60000, 2048);
        let (_, path) = app
            .presign("seller-1", "bomb.png", "image/png", &bomb)
            .await;
        let response = app.put(&path, "image/png", bomb).await;
        assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "image-too-many-pixels",
        )
        .await;
        app.assert_nothing_stored().await;
    }

    pub async fn truncated_image_is_refused(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        for (file, mime) in [
            ("tiny.png", "image/png"),
            ("tiny.jpg", "image/jpeg"),
            ("tiny.webp", "image/webp"),
            ("tiny.gif", "image/gif"),
            ("tiny.avif", "image/avif"),
        ] {
            let full = fixture(file);
            let cut = full[..full.len() * 3 / 4].to_vec();
            let (_, path) = app.presign("seller-1", file, mime, &cut).await;
            let response = app.put(&path, mime, cut).await;
            assert_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "image-truncated",
            )
            .await;
        }
        app.assert_nothing_stored().await;
    }

    pub async fn failed_upload_can_be_retried(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let (id, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
        let response = app.put(&path, "image/png", bytes[..10].to_vec()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(app.pending_state(&id).await, "pending");
        let (status, _) = json_of(app.put(&path, "image/png", bytes).await).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(app.image_count().await, 1);
    }

    pub async fn hostile_file_names_are_sanitised(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        let bytes = fixture("tiny.png");
        let long = "x".repeat(300) + ".png";
        for (raw, expected) in [
            ("../../etc/passwd", "passwd".to_owned()),
            ("evil\0name.png", "evilname.png".to_owned()),
            (long.as_str(), "x".repeat(200)),
        ] {
            let (_, path) = app.presign("seller-1", raw, "image/png", &bytes).await;
            let (status, stored) = json_of(app.put(&path, "image/png", bytes.clone()).await).await;
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(stored["filename"], expected.as_str());
            let (_, record) = app.image_record(stored["image_id"].as_str().unwrap()).await;
            assert_eq!(record["filename"], expected.as_str());
            // The object key is a random id, never the file name.
            let storage_path = record["storage_path"].as_str().unwrap();
            assert!(
                !storage_path.contains("passwd")
                    && !storage_path.contains("evil")
                    && !storage_path.contains("xxx")
            );
        }
        // Nothing was written outside the blob root.
        for file in app.stored_files() {
            assert!(file.starts_with(app.blob_root.as_ref().unwrap()));
        }
    }

    pub async fn large_multipart_upload_round_trips(b: Backend, t: &str) {
        let Some(app) = app(b, t).await else { return };
        // 20 MiB: more than one multipart part on S3.
        let bytes = synthetic::png(1000, 1000, 20 * 1024 * 1024 + 123);
        let stored = app.upload("seller-1", "image/png", &bytes).await;
        assert_eq!(stored["size"], bytes.len());
        let id = stored["image_id"].as_str().unwrap();
        let req = app.signed(
            &app.app_keys,
            Method::POST,
            "/internal/download-urls",
            Some(&json!({"image_ids": [id]})),
        );
        let (_, urls) = json_of(app.send(req).await).await;
        let url = urls["urls"][0]["url"]
            .as_str()
            .unwrap()
            .strip_prefix("http://storage.test")
            .unwrap()
            .to_owned();
        let response = app
            .send(
                http::Request::get(&url)
                    .header("range", "bytes=1000-1999")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body.as_ref(), &bytes[1000..2000]);
    }
}
