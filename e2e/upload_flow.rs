//! The pre-signed upload flow end to end, with the App Service and the Storage Service
//! as real processes (`vitrine serve app|storage`) on loopback and a real HTTP client:
//! token → upload URL → PUT the bytes → product → list; storage's rejections seen
//! through the whole flow; storage going away.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Storage and app as child processes sharing a temp data dir.
struct Processes {
    storage: ServiceProcess,
    app: ServiceProcess,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Processes {
    let dir = tempfile::tempdir().expect("tempdir");
    let app_keys = ring("app1").to_env_value();
    let storage_env = vec![
        ("APP_STORAGE_KEYS".to_owned(), app_keys.clone()),
        (
            "IMPORT_STORAGE_KEYS".to_owned(),
            ring("imp1").to_env_value(),
        ),
        ("URL_SIGNING_KEYS".to_owned(), ring("url1").to_env_value()),
        (
            "STORAGE_DATABASE_URL".to_owned(),
            format!("sqlite://{}", dir.path().join("storage.db").display()),
        ),
        (
            "BLOB_STORE".to_owned(),
            format!("file://{}", dir.path().join("blobs").display()),
        ),
    ];
    let storage = ServiceProcess::start("storage", "STORAGE_BIND", &storage_env, dir.path()).await;
    let app_env = vec![
        ("APP_STORAGE_KEYS".to_owned(), app_keys),
        ("STORAGE_URL".to_owned(), storage.url.clone()),
        (
            "APP_DATABASE_URL".to_owned(),
            format!("sqlite://{}", dir.path().join("app.db").display()),
        ),
        ("JWT_HS256_SECRET".to_owned(), random_secret()),
        ("AUTH_DEV_LOGIN".to_owned(), "true".to_owned()),
    ];
    let app = ServiceProcess::start("app", "APP_BIND", &app_env, dir.path()).await;
    Processes {
        storage,
        app,
        http: http_client(),
        _dir: dir,
    }
}

impl Processes {
    fn app(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.app.url))
    }

    /// A seller token from the dev issuer, over HTTP.
    async fn login(&self, seller: &str) -> String {
        let answer = send(
            self.app(Method::POST, "/auth/token")
                .json(&json!({ "seller_id": seller })),
        )
        .await;
        assert_eq!(answer.0, 201, "{}", answer.2);
        assert_eq!(answer.2["token_type"], "Bearer");
        answer.2["access_token"].as_str().expect("token").to_owned()
    }

    async fn ask_upload(&self, token: &str, content_type: &str, bytes: &[u8]) -> Value {
        let answer = send(
            self.app(Method::POST, "/uploads")
                .bearer_auth(token)
                .json(&json!({
                    "filename": "photo",
                    "content_type": content_type,
                    "size": bytes.len(),
                    "sha256": sha256_hex(bytes),
                })),
        )
        .await;
        assert_eq!(answer.0, 201, "{}", answer.2);
        answer.2
    }
}

#[tokio::test]
async fn seller_uploads_an_image_and_creates_a_product() {
    let stack = start().await;
    let token = stack.login("seller-e2e").await;
    let bytes = png(64 * 1024);

    let ticket = stack.ask_upload(&token, "image/png", &bytes).await;
    assert_eq!(ticket["method"], "PUT");
    assert!(
        ticket["upload_url"]
            .as_str()
            .unwrap()
            .starts_with(&stack.storage.url),
        "the URL points at storage: {ticket}"
    );

    let put = put_upload(&stack.http, &ticket, bytes.clone()).await;
    assert_eq!(put.0, 201, "{}", put.2);
    let image_id = put.2["image_id"].as_str().expect("image_id").to_owned();

    let create = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(&token)
            .header("Idempotency-Key", "e2e-1")
            .json(&json!({
                "name": "Red shoe",
                "description": "Size 42",
                "price_minor": 4999,
                "currency": "EUR",
                "image_id": image_id,
            })),
    )
    .await;
    assert_eq!(create.0, 201, "{}", create.2);
    let product_id = create.2["id"].as_str().expect("id").to_owned();
    assert_eq!(
        create.1["location"].to_str().unwrap(),
        format!("/products/{product_id}")
    );

    let list = send(stack.app(Method::GET, "/products").bearer_auth(&token)).await;
    assert_eq!(list.0, 200, "{}", list.2);
    let items = list.2["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], product_id.as_str());
    assert_eq!(items[0]["image_id"], image_id.as_str());
    assert_eq!(items[0]["price_minor"], 4999);

    // The image URL in the listing serves exactly the uploaded bytes.
    let image_url = items[0]["image_url"].as_str().expect("image_url");
    let downloaded = stack.http.get(image_url).send().await.expect("download");
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // The product read again keeps its image URL (the browser's cached copy stays valid).
    let one = send(
        stack
            .app(Method::GET, &format!("/products/{product_id}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(one.2["image_url"].as_str(), Some(image_url));

    // Another seller sees none of it.
    let other = stack.login("someone-else").await;
    let foreign = send(
        stack
            .app(Method::GET, &format!("/products/{product_id}"))
            .bearer_auth(&other),
    )
    .await;
    assert_error(&foreign, 404, "product-not-found");
}

#[tokio::test]
async fn storage_rejections_reach_the_seller_through_the_flow() {
    let stack = start().await;
    let token = stack.login("seller-rejections").await;

    // Wrong hash: the URL was signed for other bytes of the same length.
    let declared = png(4096);
    let mut sent = declared.clone();
    let last = sent.len() - 20;
    sent[last] ^= 0xff;
    let ticket = stack.ask_upload(&token, "image/png", &declared).await;
    let put = put_upload(&stack.http, &ticket, sent).await;
    assert_error(&put, 422, "sha256-mismatch");

    // Wrong type: declared PNG, the bytes are a JPEG.
    let jpeg_bytes = jpeg(4096);
    let ticket = stack.ask_upload(&token, "image/png", &jpeg_bytes).await;
    let put = put_upload(&stack.http, &ticket, jpeg_bytes).await;
    assert_error(&put, 415, "content-type-mismatch");

    // Replayed URL: it works once.
    let bytes = png(4096);
    let ticket = stack.ask_upload(&token, "image/png", &bytes).await;
    let first = put_upload(&stack.http, &ticket, bytes.clone()).await;
    assert_eq!(first.0, 201, "{}", first.2);
    let again = put_upload(&stack.http, &ticket, bytes).await;
    assert_error(&again, 409, "upload-already-completed");

    // An upload id is not an image id, and a failed upload has no image.
    let create = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(&token)
            .json(&json!({
                "name": "x", "price_minor": 1, "currency": "EUR",
                "image_id": ticket["upload_id"],
            })),
    )
    .await;
    assert_error(&create, 422, "image-not-found");
    let list = send(stack.app(Method::GET, "/products").bearer_auth(&token)).await;
    assert_eq!(list.2["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn storage_down_is_a_503_not_a_500() {
    let mut stack = start().await;
    let token = stack.login("seller-outage").await;
    stack.storage.kill();

    let bytes = png(1024);
    let answer = send(
        stack
            .app(Method::POST, "/uploads")
            .bearer_auth(&token)
            .json(&json!({
                "filename": "a.png", "content_type": "image/png",
                "size": bytes.len(), "sha256": sha256_hex(&bytes),
            })),
    )
    .await;
    assert_error(&answer, 503, "storage-unavailable");
    assert!(answer.1.contains_key("retry-after"));

    let create = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(&token)
            .json(&json!({
                "name": "x", "price_minor": 1, "currency": "EUR",
                "image_id": "01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f80",
            })),
    )
    .await;
    assert_error(&create, 503, "storage-unavailable");

    // The app itself stays healthy (storage is not its readiness dependency).
    let health = send(stack.app(Method::GET, "/healthz")).await;
    assert_eq!(health.0, 200);
    assert!(
        stack.app.log_text().contains("storage"),
        "the outage is logged"
    );
}
