//! Test harness: a Storage Service on a chosen backend, and a helper per kind of caller
//! (the App Service, an import worker, a browser with a pre-signed URL).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use service_kit::Env;
use sha2::{Digest, Sha256};
use shared_signing::{BodyDigest, KeyId, KeyRing, Purpose};
use storage_service::blobs::{BlobStore, S3Settings};
use storage_service::config::StorageConfig;
use storage_service::db::Repo;
use storage_service::state::AppState;
use tower::ServiceExt;

/// Where the service keeps its rows and bytes in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + local disk: the embedded default.
    Embedded,
    /// PostgreSQL (real server) + local disk.
    Postgres,
    /// SQLite + S3-compatible server (real).
    S3,
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub app_keys: KeyRing,
    pub import_keys: KeyRing,
    pub url_keys: KeyRing,
    pub blob_root: Option<PathBuf>,
    /// For the S3 backend: a direct client and the test's prefix, to list what is stored.
    pub s3_listing: Option<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)>,
    _dir: tempfile::TempDir,
}

pub fn ring(kid: &str) -> KeyRing {
    KeyRing::generate(KeyId::new(kid).expect("key id"))
}

impl TestApp {
    /// `None` (after printing why) when the backend is not configured.
    pub async fn start(backend: Backend, test: &str) -> Option<TestApp> {
        Self::start_with(backend, test, &[]).await
    }

    pub async fn start_with(
        backend: Backend,
        test: &str,
        extra: &[(&str, &str)],
    ) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("tempdir");
        let app_keys = ring("app1");
        let import_keys = ring("imp1");
        let url_keys = ring("url1");
        let blob_root = dir.path().join("blobs");
        let mut vars: Vec<(String, String)> = vec![
            ("APP_STORAGE_KEYS".into(), app_keys.to_env_value()),
            ("IMPORT_STORAGE_KEYS".into(), import_keys.to_env_value()),
            ("URL_SIGNING_KEYS".into(), url_keys.to_env_value()),
            ("STORAGE_PUBLIC_URL".into(), "http://storage.test".into()),
            (
                "BLOB_STORE".into(),
                format!("file://{}", blob_root.display()),
            ),
            (
                "STORAGE_DATABASE_URL".into(),
                format!("sqlite://{}", dir.path().join("storage.db").display()),
            ),
        ];
        let mut s3: Option<S3Settings> = None;
        match backend {
            Backend::Embedded => {}
            Backend::Postgres => {
                let admin = service_kit::testing::backend_env(
                    service_kit::testing::TEST_POSTGRES_URL,
                    test,
                )?;
                let url = service_kit::testing::fresh_postgres_database(&admin).await;
                vars.push(("STORAGE_DATABASE_URL".into(), url));
            }
            Backend::S3 => {
                let endpoint = service_kit::testing::backend_env(
                    service_kit::testing::TEST_S3_ENDPOINT,
                    test,
                )?;
                let env = |v: &str| std::env::var(v).unwrap_or_default();
                let bucket = env(service_kit::testing::TEST_S3_BUCKET);
                let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
                vars.push(("BLOB_STORE".into(), format!("s3://{bucket}/{prefix}")));
                s3 = Some(S3Settings {
                    bucket,
                    prefix: Some(prefix),
                    endpoint: Some(endpoint),
                    region: env(service_kit::testing::TEST_S3_REGION),
                    access_key_id: Some(env(service_kit::testing::TEST_S3_ACCESS_KEY_ID)),
                    secret_access_key: Some(env(service_kit::testing::TEST_S3_SECRET_ACCESS_KEY)),
                    allow_http: true,
                    virtual_hosted_style: false,
                });
            }
        }
        for (k, v) in extra {
            vars.push(((*k).into(), (*v).into()));
        }
        let mut config = StorageConfig::from_env(&Env::from_pairs(vars)).expect("config");
        if let Some(s3) = &s3 {
            // `S3_ENDPOINT` in `extra` points the service (not the listing client below)
            // elsewhere, e.g. at a proxy in front of the real server.
            let endpoint = extra
                .iter()
                .find(|(k, _)| *k == "S3_ENDPOINT")
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| s3.endpoint.clone());
            config.s3 = Some(S3Settings {
                endpoint,
                ..s3.clone()
            });
        }
        let s3_listing = s3.as_ref().map(|s| {
            let store = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&s.bucket)
                .with_region(&s.region)
                .with_endpoint(s.endpoint.clone().unwrap_or_default())
                .with_access_key_id(s.access_key_id.clone().unwrap_or_default())
                .with_secret_access_key(s.secret_access_key.clone().unwrap_or_default())
                .with_allow_http(true)
                .build()
                .expect("s3 client");
            let prefix = object_store::path::Path::from(s.prefix.clone().unwrap_or_default());
            (
                Arc::new(store) as Arc<dyn object_store::ObjectStore>,
                prefix,
            )
        });
        let state = storage_service::build_state(config).await.expect("state");
        let router = storage_service::router(state.clone());
        Some(TestApp {
            router,
            state,
            app_keys,
            import_keys,
            url_keys,
            blob_root: (backend != Backend::S3).then_some(blob_root),
            s3_listing,
            _dir: dir,
        })
    }

    pub fn repo(&self) -> &Repo {
        &self.state.repo
    }

    pub fn blobs(&self) -> Arc<dyn BlobStore> {
        self.state.blobs.clone()
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible")
    }

    // ---- the App Service ----

    pub fn metadata_token(&self, meta: &Value) -> String {
        self.app_keys
            .mint_json(
                Purpose::UPLOAD_METADATA,
                meta,
                shared_signing::unix_now(),
                std::time::Duration::from_secs(60),
            )
            .expect("mint")
    }

    /// A request signed with `keys`, with a JSON body (or none).
    pub fn signed(
        &self,
        keys: &KeyRing,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Request<Body> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("json"))
            .unwrap_or_default();
        let digest = BodyDigest::of(&bytes);
        let content_type = body.map(|_| "application/json");
        signed_raw(
            keys,
            method,
            path_and_query,
            content_type,
            bytes,
            digest,
            shared_signing::unix_now(),
        )
    }

    pub async fn presign_meta(&self, meta: &Value) -> Response<Body> {
        let body = json!({ "metadata_token": self.metadata_token(meta) });
        self.send(self.signed(
            &self.app_keys,
            Method::POST,
            "/internal/presign",
            Some(&body),
        ))
        .await
    }

    /// Presigns `bytes` as `content_type` for `seller`; returns (upload id, upload URL path+query).
    pub async fn presign(
        &self,
        seller: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> (String, String) {
        let meta = json!({
            "seller_id": seller,
            "filename": filename,
            "content_type": content_type,
            "size": bytes.len(),
            "sha256": sha256_hex(bytes),
        });
        let response = self.presign_meta(&meta).await;
        let (status, json) = json_of(response).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        let url = json["upload_url"].as_str().expect("upload_url");
        let path = url
            .strip_prefix("http://storage.test")
            .expect("public url prefix");
        (
            json["upload_id"].as_str().expect("id").to_owned(),
            path.to_owned(),
        )
    }

    pub async fn image_record(&self, image_id: &str) -> (StatusCode, Value) {
        let req = self.signed(
            &self.app_keys,
            Method::GET,
            &format!("/internal/images/{image_id}"),
            None,
        );
        json_of(self.send(req).await).await
    }

    // ---- the browser ----

    pub async fn put(
        &self,
        path_and_query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response<Body> {
        let len = body.len();
        let req = Request::builder()
            .method(Method::PUT)
            .uri(path_and_query)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, len)
            .body(Body::from(body))
            .expect("request");
        self.send(req).await
    }

    /// Presign + PUT; returns the 201 JSON.
    pub async fn upload(&self, seller: &str, content_type: &str, bytes: &[u8]) -> Value {
        let (_, path) = self.presign(seller, "photo", content_type, bytes).await;
        let (status, json) = json_of(self.put(&path, content_type, bytes.to_vec()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json
    }

    // ---- what is stored ----

    pub async fn image_count(&self) -> i64 {
        self.repo().count_images().await.expect("count")
    }

    /// Files under the blob root (final objects and temp files), for local disk.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let Some(root) = &self.blob_root else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }

    /// Asserts that nothing was stored: no image row, no object, no temp file.
    pub async fn assert_nothing_stored(&self) {
        assert_eq!(self.image_count().await, 0, "an image row was stored");
        let files = self.stored_files();
        assert!(files.is_empty(), "files left in the blob store: {files:?}");
        let objects = self.stored_objects().await;
        assert!(objects.is_empty(), "objects left in S3: {objects:?}");
    }

    /// Objects under this test's S3 prefix (empty for other backends).
    pub async fn stored_objects(&self) -> Vec<String> {
        use futures::TryStreamExt;
        let Some((store, prefix)) = &self.s3_listing else {
            return Vec::new();
        };
        let listed: Vec<object_store::ObjectMeta> = store
            .list(Some(prefix))
            .try_collect()
            .await
            .expect("list S3 objects");
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }

    pub async fn pending_state(&self, upload_id: &str) -> String {
        self.repo()
            .pending(upload_id)
            .await
            .expect("db")
            .expect("pending row")
            .state
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub async fn json_of(response: Response<Body>) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, json)
}

/// Asserts an error envelope with `status` and `code`.
pub async fn assert_error(response: Response<Body>, status: StatusCode, code: &str) -> Value {
    let (actual, json) = json_of(response).await;
    assert_eq!(actual, status, "{json}");
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    json
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A request signed with `keys` at time `now`, with any body and declared digest.
pub fn signed_raw(
    keys: &KeyRing,
    method: Method,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    digest: BodyDigest,
    now: i64,
) -> Request<Body> {
    let uri: http::Uri = path_and_query.parse().expect("uri");
    let headers = shared_signing::sign_request(keys, &method, &uri, digest, now);
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers.iter() {
        builder = builder.header(name, value);
    }
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    builder.body(Body::from(body)).expect("request")
}
