//! Service-to-service calls: request signatures and every way to get them wrong,
//! ingest (idempotency, digests, callers), image records and download URLs.

mod common;

use common::{assert_error, fixture, json_of, sha256_hex, Backend, TestApp};
use http::{Method, Request, StatusCode};
use serde_json::json;
use shared_signing::BodyDigest;

async fn app(test: &str) -> TestApp {
    TestApp::start(Backend::Embedded, test)
        .await
        .expect("embedded backend")
}

fn presign_body(app: &TestApp, bytes: &[u8]) -> serde_json::Value {
    json!({ "metadata_token": app.metadata_token(&json!({
        "seller_id": "seller-1", "filename": "a.png", "content_type": "image/png",
        "size": bytes.len(), "sha256": sha256_hex(bytes),
    }))})
}

async fn pending_count(app: &TestApp) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM pending_uploads")
        .fetch_one(app.repo().pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

#[tokio::test]
async fn unsigned_internal_call_is_refused() {
    let app = app("unsigned_internal_call_is_refused").await;
    let body = presign_body(&app, &fixture("tiny.png"));
    let req = Request::post("/internal/presign")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    assert_error(
        app.send(req).await,
        StatusCode::UNAUTHORIZED,
        "signature-missing",
    )
    .await;
    assert_eq!(pending_count(&app).await, 0);
}

#[tokio::test]
async fn changed_path_is_refused() {
    let app = app("changed_path_is_refused").await;
    let stored = app
        .upload("seller-1", "image/png", &fixture("tiny.png"))
        .await;
    let id = stored["image_id"].as_str().unwrap();
    let mut req = app.signed(
        &app.app_keys,
        Method::GET,
        &format!("/internal/images/{id}"),
        None,
    );
    *req.uri_mut() = format!("/internal/images/{}", uuid::Uuid::now_v7())
        .parse()
        .unwrap();
    assert_error(
        app.send(req).await,
        StatusCode::UNAUTHORIZED,
        "signature-invalid",
    )
    .await;
}

#[tokio::test]
async fn changed_query_is_refused() {
    let app = app("changed_query_is_refused").await;
    let bytes = fixture("tiny.png");
    let query = ingest_query(&bytes, "job1:file1");
    let mut req = signed_ingest(&app, &app.import_keys, &query, &bytes);
    *req.uri_mut() = format!(
        "/internal/ingest?{}",
        query.replace("owner_id=seller-1", "owner_id=seller-2")
    )
    .parse()
    .unwrap();
    assert_error(
        app.send(req).await,
        StatusCode::UNAUTHORIZED,
        "signature-invalid",
    )
    .await;
    app.assert_nothing_stored().await;
}

#[tokio::test]
async fn changed_body_is_refused() {
    let app = app("changed_body_is_refused").await;
    let bytes = fixture("tiny.png");
    let req = app.signed(
        &app.app_keys,
        Method::POST,
        "/internal/presign",
        Some(&presign_body(&app, &bytes)),
    );
    let (parts, _) = req.into_parts();
    let other = serde_json::to_vec(&presign_body(&app, b"other bytes")).unwrap();
    let req = Request::from_parts(parts, axum::body::Body::from(other));
    assert_error(
        app.send(req).await,
        StatusCode::UNAUTHORIZED,
        "body-digest-mismatch",
    )
    .await;
    assert_eq!(pending_count(&app).await, 0);
}

#[tokio::test]
async fn timestamp_ten_minutes_off_is_refused() {
    let app = app("timestamp_ten_minutes_off_is_refused").await;
    let bytes = fixture("tiny.png");
    let body = serde_json::to_vec(&presign_body(&app, &bytes)).unwrap();
    for offset in [-600i64, 600] {
        let req = common::signed_raw(
            &app.app_keys,
            Method::POST,
            "/internal/presign",
            Some("application/json"),
            body.clone(),
            BodyDigest::of(&body),
            shared_signing::unix_now() + offset,
        );
        assert_error(
            app.send(req).await,
            StatusCode::UNAUTHORIZED,
            "signature-timestamp-out-of-window",
        )
        .await;
    }
    assert_eq!(pending_count(&app).await, 0);
}

#[tokio::test]
async fn replayed_nonce_is_refused() {
    let app = app("replayed_nonce_is_refused").await;
    let bytes = fixture("tiny.png");
    let req = app.signed(
        &app.app_keys,
        Method::POST,
        "/internal/presign",
        Some(&presign_body(&app, &bytes)),
    );
    let (parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    let first = Request::from_parts(parts.clone(), axum::body::Body::from(body.clone()));
    assert_eq!(app.send(first).await.status(), StatusCode::CREATED);
    let replay = Request::from_parts(parts, axum::body::Body::from(body));
    assert_error(
        app.send(replay).await,
        StatusCode::UNAUTHORIZED,
        "signature-replayed",
    )
    .await;
    assert_eq!(pending_count(&app).await, 1);
}

#[tokio::test]
async fn unknown_service_key_is_refused() {
    let app = app("unknown_service_key_is_refused").await;
    let req = app.signed(
        &common::ring("stranger"),
        Method::POST,
        "/internal/presign",
        Some(&presign_body(&app, b"x")),
    );
    assert_error(
        app.send(req).await,
        StatusCode::UNAUTHORIZED,
        "signature-unknown-key",
    )
    .await;
    assert_eq!(pending_count(&app).await, 0);
}

#[tokio::test]
async fn metadata_must_be_signed_by_the_app() {
    let app = app("metadata_must_be_signed_by_the_app").await;
    // Metadata signed with the import key (or any other) is refused even on a valid request.
    let meta = json!({"seller_id": "s", "filename": "a.png", "content_type": "image/png", "size": 10, "sha256": sha256_hex(b"x")});
    let token = app
        .import_keys
        .mint_json(
            shared_signing::Purpose::UPLOAD_METADATA,
            &meta,
            shared_signing::unix_now(),
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let req = app.signed(
        &app.app_keys,
        Method::POST,
        "/internal/presign",
        Some(&json!({"metadata_token": token})),
    );
    assert_error(
        app.send(req).await,
        StatusCode::UNAUTHORIZED,
        "metadata-token-invalid",
    )
    .await;
    // An import worker may not presign at all.
    let req = app.signed(
        &app.import_keys,
        Method::POST,
        "/internal/presign",
        Some(&presign_body(&app, b"x")),
    );
    assert_error(
        app.send(req).await,
        StatusCode::FORBIDDEN,
        "caller-not-allowed",
    )
    .await;
    assert_eq!(pending_count(&app).await, 0);
}

#[tokio::test]
async fn presign_validates_the_metadata() {
    let app = app("presign_validates_the_metadata").await;
    let sha = sha256_hex(b"x");
    for (meta, status, code) in [
        (
            json!({"seller_id": "s", "filename": "a", "content_type": "image/svg+xml", "size": 10, "sha256": sha}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-metadata",
        ),
        (
            json!({"seller_id": "s", "filename": "a", "content_type": "image/png", "size": 0, "sha256": sha}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-metadata",
        ),
        (
            json!({"seller_id": "s", "filename": "a", "content_type": "image/png", "size": 10, "sha256": "abc"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-metadata",
        ),
        (
            json!({"seller_id": "a/b", "filename": "a", "content_type": "image/png", "size": 10, "sha256": sha}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-metadata",
        ),
        (
            json!({"seller_id": "s", "filename": "a", "content_type": "image/png", "size": 1u64 << 40, "sha256": sha}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "size-limit-exceeded",
        ),
        (
            json!({"unexpected": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-metadata",
        ),
    ] {
        assert_error(app.presign_meta(&meta).await, status, code).await;
    }
    let req = app.signed(
        &app.app_keys,
        Method::POST,
        "/internal/presign",
        Some(&json!({"metadata_token": 5})),
    );
    assert_error(
        app.send(req).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-request-body",
    )
    .await;
    assert_eq!(pending_count(&app).await, 0);
}

fn ingest_query(bytes: &[u8], key: &str) -> String {
    format!(
        "owner_id=seller-1&content_type=image%2Fpng&size={}&sha256={}&filename=photo.png&source=google-drive&source_ref=drive-file-1&idempotency_key={}",
        bytes.len(),
        sha256_hex(bytes),
        key
    )
}

fn signed_ingest(
    app: &TestApp,
    keys: &shared_signing::KeyRing,
    query: &str,
    bytes: &[u8],
) -> Request<axum::body::Body> {
    let _ = app;
    common::signed_raw(
        keys,
        Method::POST,
        &format!("/internal/ingest?{query}"),
        Some("image/png"),
        bytes.to_vec(),
        BodyDigest::Unsigned,
        shared_signing::unix_now(),
    )
}

#[tokio::test]
async fn ingest_stores_once_per_idempotency_key() {
    let app = app("ingest_stores_once_per_idempotency_key").await;
    let bytes = fixture("tiny.png");
    let query = ingest_query(&bytes, "job1%3Afile1");
    let (status, first) = json_of(
        app.send(signed_ingest(&app, &app.import_keys, &query, &bytes))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = json_of(
        app.send(signed_ingest(&app, &app.import_keys, &query, &bytes))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(first["image_id"], again["image_id"]);
    assert_eq!(app.image_count().await, 1);
    let (_, record) = app.image_record(first["image_id"].as_str().unwrap()).await;
    assert_eq!(record["source"], "google-drive");
    assert_eq!(record["source_ref"], "drive-file-1");
    assert_eq!(app.stored_files().len(), 1);
}

#[tokio::test]
async fn ingest_checks_digests_type_and_caller() {
    let app = app("ingest_checks_digests_type_and_caller").await;
    let bytes = fixture("tiny.png");
    // Signed by the App Service's key: not an import worker.
    let req = signed_ingest(&app, &app.app_keys, &ingest_query(&bytes, "k1"), &bytes);
    assert_error(
        app.send(req).await,
        StatusCode::FORBIDDEN,
        "caller-not-allowed",
    )
    .await;
    // Wrong SHA-256.
    let query = ingest_query(&bytes, "k2").replace(&sha256_hex(&bytes), &sha256_hex(b"other"));
    assert_error(
        app.send(signed_ingest(&app, &app.import_keys, &query, &bytes))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sha256-mismatch",
    )
    .await;
    // Wrong MD5.
    let query = format!(
        "{}&md5=00000000000000000000000000000000",
        ingest_query(&bytes, "k3")
    );
    assert_error(
        app.send(signed_ingest(&app, &app.import_keys, &query, &bytes))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "md5-mismatch",
    )
    .await;
    // Not an image.
    let html = b"<html>hi</html>".to_vec();
    let query = ingest_query(&html, "k4");
    assert_error(
        app.send(signed_ingest(&app, &app.import_keys, &query, &html))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not-an-image",
    )
    .await;
    // Bad parameters.
    let query = ingest_query(&bytes, "k5").replace("source=google-drive", "source=ftp");
    assert_error(
        app.send(signed_ingest(&app, &app.import_keys, &query, &bytes))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-ingest-parameters",
    )
    .await;
    // A parameter that does not parse (found by schema fuzzing: it was a plain-text 400).
    let query = ingest_query(&bytes, "k5b").replace(&format!("size={}", bytes.len()), "size=-1");
    assert_error(
        app.send(signed_ingest(&app, &app.import_keys, &query, &bytes))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-ingest-parameters",
    )
    .await;
    // A digest-signed body is not how ingest works.
    let req = common::signed_raw(
        &app.import_keys,
        Method::POST,
        &format!("/internal/ingest?{}", ingest_query(&bytes, "k6")),
        Some("image/png"),
        bytes.clone(),
        BodyDigest::of(&bytes),
        shared_signing::unix_now(),
    );
    assert_eq!(app.send(req).await.status(), StatusCode::UNAUTHORIZED);
    app.assert_nothing_stored().await;
}

#[tokio::test]
async fn ingest_with_md5_is_accepted() {
    let app = app("ingest_with_md5_is_accepted").await;
    let bytes = fixture("tiny.jpg");
    let md5 = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(&bytes))
    };
    let query = format!(
        "owner_id=seller-1&content_type=image%2Fjpeg&size={}&md5={md5}&filename=p.jpg&source=dropbox&idempotency_key=x",
        bytes.len()
    );
    let req = common::signed_raw(
        &app.import_keys,
        Method::POST,
        &format!("/internal/ingest?{query}"),
        Some("image/jpeg"),
        bytes,
        BodyDigest::Unsigned,
        shared_signing::unix_now(),
    );
    let (status, json) = json_of(app.send(req).await).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
}

#[tokio::test]
async fn image_records_and_unknown_ids() {
    let app = app("image_records_and_unknown_ids").await;
    for id in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let req = app.signed(
            &app.app_keys,
            Method::GET,
            &format!("/internal/images/{id}"),
            None,
        );
        assert_error(
            app.send(req).await,
            StatusCode::NOT_FOUND,
            "image-not-found",
        )
        .await;
    }
    let req = app.signed(
        &app.app_keys,
        Method::POST,
        "/internal/download-urls",
        Some(&json!({"image_ids": ["nope"]})),
    );
    let (status, json) = json_of(app.send(req).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["missing"], json!(["nope"]));
    assert_eq!(json["urls"], json!([]));
}

#[tokio::test]
async fn content_headers_ranges_and_tokens() {
    let app = app("content_headers_ranges_and_tokens").await;
    let bytes = fixture("tiny.png");
    let (_, path) = app
        .presign("seller-1", "naïve \"x\".png", "image/png", &bytes)
        .await;
    let (_, stored) = json_of(app.put(&path, "image/png", bytes.clone()).await).await;
    let id = stored["image_id"].as_str().unwrap().to_owned();
    let req = app.signed(
        &app.app_keys,
        Method::POST,
        "/internal/download-urls",
        Some(&json!({"image_ids": [id], "ttl_seconds": 120})),
    );
    let (_, urls) = json_of(app.send(req).await).await;
    let url = urls["urls"][0]["url"]
        .as_str()
        .unwrap()
        .strip_prefix("http://storage.test")
        .unwrap()
        .to_owned();
    let get = |range: Option<&str>, inm: Option<&str>| {
        let mut b = Request::get(&url);
        if let Some(r) = range {
            b = b.header("range", r);
        }
        if let Some(e) = inm {
            b = b.header("if-none-match", e);
        }
        b.body(axum::body::Body::empty()).unwrap()
    };
    let full = app.send(get(None, None)).await;
    assert_eq!(full.status(), StatusCode::OK);
    let h = full.headers();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    assert_eq!(h["etag"], format!("\"{}\"", sha256_hex(&bytes)).as_str());
    // Cached for what is left of the URL's 120 s (a second or two may have passed).
    let max_age: u64 = h["cache-control"]
        .to_str()
        .unwrap()
        .strip_prefix("private, max-age=")
        .and_then(|rest| rest.strip_suffix(", immutable"))
        .and_then(|n| n.parse().ok())
        .expect("cache-control: private, max-age=<seconds>, immutable");
    assert!((118..=120).contains(&max_age), "max-age={max_age}");
    assert!(h["content-disposition"].to_str().unwrap().is_ascii());
    assert_eq!(h["content-length"], bytes.len().to_string().as_str());
    let etag = h["etag"].to_str().unwrap().to_owned();

    let partial = app.send(get(Some("bytes=0-7"), None)).await;
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        partial.headers()["content-range"],
        format!("bytes 0-7/{}", bytes.len()).as_str()
    );
    let body = http_body_util::BodyExt::collect(partial.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body.as_ref(), &bytes[..8]);

    let suffix = app.send(get(Some("bytes=-4"), None)).await;
    let body = http_body_util::BodyExt::collect(suffix.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body.as_ref(), &bytes[bytes.len() - 4..]);

    let unsatisfiable = app
        .send(get(Some(&format!("bytes={}-", bytes.len() + 10)), None))
        .await;
    assert_eq!(
        unsatisfiable.headers()["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );
    assert_error(
        unsatisfiable,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range-not-satisfiable",
    )
    .await;

    assert_eq!(
        app.send(get(None, Some(&etag))).await.status(),
        StatusCode::NOT_MODIFIED
    );

    // A download token for another image, an upload token, and a tampered one.
    let other = app
        .upload("seller-1", "image/gif", &fixture("tiny.gif"))
        .await;
    let other_url = url.replace(&id, other["image_id"].as_str().unwrap());
    assert_error(
        app.send(
            Request::get(&other_url)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await,
        StatusCode::FORBIDDEN,
        "token-image-mismatch",
    )
    .await;
    let upload_token = path.split_once("?token=").unwrap().1;
    let wrong_purpose = format!("/images/{id}/content?token={upload_token}");
    assert_error(
        app.send(
            Request::get(&wrong_purpose)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await,
        StatusCode::FORBIDDEN,
        "token-invalid-signature",
    )
    .await;
}

#[tokio::test]
async fn health_metrics_and_docs() {
    let app = app("health_metrics_and_docs").await;
    for (path, status) in [
        ("/healthz", StatusCode::OK),
        ("/readyz", StatusCode::OK),
        ("/metrics", StatusCode::OK),
        ("/openapi.json", StatusCode::OK),
        ("/docs/", StatusCode::OK),
    ] {
        let response = app
            .send(Request::get(path).body(axum::body::Body::empty()).unwrap())
            .await;
        assert_eq!(response.status(), status, "{path}");
    }
    let (status, ready) = json_of(
        app.send(
            Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["checks"].as_array().unwrap().len(), 2);
    let response = app
        .send(
            Request::get("/nope")
                .header("x-request-id", "abc-123")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_error(response, StatusCode::NOT_FOUND, "route-not-found").await;
}

#[tokio::test]
async fn readiness_fails_when_the_blob_store_is_gone() {
    let app = app("readiness_fails_when_the_blob_store_is_gone").await;
    let root = app.blob_root.clone().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let (status, ready) = json_of(
        app.send(
            Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["status"], "not-ready");
}

#[tokio::test]
async fn presign_batch_checks_each_upload_and_records_the_good_ones_at_once() {
    let app = app("presign_batch_checks_each_upload").await;
    let good = |n: usize| {
        app.metadata_token(&json!({
            "seller_id": format!("seller-{n}"), "filename": "a.png", "content_type": "image/png",
            "size": 10 + n, "sha256": sha256_hex(b"x"),
        }))
    };
    let svg = app.metadata_token(&json!({
        "seller_id": "s", "filename": "a", "content_type": "image/svg+xml", "size": 10, "sha256": sha256_hex(b"x"),
    }));
    let too_big = app.metadata_token(&json!({
        "seller_id": "s", "filename": "a", "content_type": "image/png", "size": 1u64 << 40, "sha256": sha256_hex(b"x"),
    }));
    let forged = common::ring("app1")
        .mint_json(
            shared_signing::Purpose::UPLOAD_METADATA,
            &json!({"seller_id": "s", "filename": "a", "content_type": "image/png", "size": 10, "sha256": sha256_hex(b"x")}),
            shared_signing::unix_now(),
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let tokens = vec![good(1), svg, good(2), too_big, forged, good(3)];
    let req = app.signed(
        &app.app_keys,
        Method::POST,
        "/internal/presign/batch",
        Some(&json!({ "metadata_tokens": tokens })),
    );
    let (status, body) = json_of(app.send(req).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    let outcome = |i: usize| {
        results[i]["error"]["code"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| "ok".to_owned())
    };
    assert_eq!(
        (0..6).map(outcome).collect::<Vec<_>>(),
        [
            "ok",
            "invalid-metadata",
            "ok",
            "size-limit-exceeded",
            "metadata-token-invalid",
            "ok"
        ]
    );
    assert_eq!(results[3]["error"]["status"], 413);
    for i in [0, 2, 5] {
        let upload = &results[i]["upload"];
        assert_eq!(upload["method"], "PUT");
        let id = upload["upload_id"].as_str().unwrap();
        assert!(upload["upload_url"].as_str().unwrap().contains(id));
        assert_eq!(app.pending_state(id).await, "pending");
    }
    assert_eq!(pending_count(&app).await, 3);

    // The batch itself: 1 to 100 tokens, and only from the App Service.
    for tokens in [vec![], vec![good(9); 101]] {
        let req = app.signed(
            &app.app_keys,
            Method::POST,
            "/internal/presign/batch",
            Some(&json!({ "metadata_tokens": tokens })),
        );
        assert_error(
            app.send(req).await,
            StatusCode::BAD_REQUEST,
            "invalid-request",
        )
        .await;
    }
    let req = app.signed(
        &app.import_keys,
        Method::POST,
        "/internal/presign/batch",
        Some(&json!({ "metadata_tokens": [good(7)] })),
    );
    assert_eq!(app.send(req).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(pending_count(&app).await, 3);
}

/// A 'committing' row of `key` (seller-1's), as a writer that died would leave it.
fn abandoned_row(key: &str, age_secs: i64) -> storage_service::db::ImageRow {
    let id = uuid::Uuid::now_v7().to_string();
    storage_service::db::ImageRow {
        id: id.clone(),
        owner_id: "seller-1".into(),
        state: "committing".into(),
        source: "google-drive".into(),
        source_ref: None,
        ingest_key: Some(key.into()),
        upload_id: None,
        filename: "photo.png".into(),
        content_type: "image/png".into(),
        size: 1,
        sha256: "0".repeat(64),
        md5: None,
        width: 1,
        height: 1,
        storage_key: format!("images/00/{id}"),
        created_at: shared_signing::unix_now() - age_secs,
        completed_at: None,
    }
}

#[tokio::test]
async fn an_ingest_abandoned_while_committing_is_taken_over() {
    let app = app("an_ingest_abandoned_while_committing_is_taken_over").await;
    let bytes = fixture("tiny.png");
    let takeover = storage_service::write_path::COMMIT_TAKEOVER_AFTER_SECS;

    // A recent 'committing' row of the key: a commit in progress; try again later.
    let recent = abandoned_row("job1:recent", 5);
    app.repo()
        .insert_committing(&recent)
        .await
        .unwrap()
        .unwrap();
    let query = ingest_query(&bytes, "job1%3Arecent");
    let response = app
        .send(signed_ingest(&app, &app.import_keys, &query, &bytes))
        .await;
    let retry_after: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=takeover - 5).contains(&retry_after), "{retry_after}");
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "ingest-in-progress",
    )
    .await;
    assert_eq!(
        app.repo().image(&recent.id).await.unwrap().unwrap().state,
        "committing"
    );

    // One older than the takeover age: its writer died; this ingest replaces it.
    let dead = abandoned_row("job1:dead", takeover + 1);
    app.repo().insert_committing(&dead).await.unwrap().unwrap();
    let query = ingest_query(&bytes, "job1%3Adead");
    let (status, stored) = json_of(
        app.send(signed_ingest(&app, &app.import_keys, &query, &bytes))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert!(app.repo().image(&dead.id).await.unwrap().is_none());
    let (status, record) = app.image_record(stored["image_id"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["state"], "complete", "{record}");
}
