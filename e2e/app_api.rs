//! The App Service's API against a real Storage Service (both in this process, each on
//! its own loopback port), on SQLite and on PostgreSQL.
//!
//! Every bad input the issue names is a test here: it asserts the status, the stable
//! error code, and that nothing was created (no product, no pending upload).
//! Seller-token verification itself is tested in depth in `service-kit/tests/auth.rs`;
//! here each bad token is shown to be refused by the real endpoints.

mod common;

use std::path::PathBuf;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Runs a scenario on every database backend (PostgreSQL skips when not configured,
/// and fails instead under `VITRINE_REQUIRE_BACKENDS=1`).
macro_rules! on_every_db {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(super::Db::Embedded, concat!(stringify!($name), "::embedded")).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Db::Postgres, concat!(stringify!($name), "::postgres")).await;
            }
        }
    )*};
}

const UUID_NOBODY: &str = "01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f80";

fn product_body(image_id: &str) -> Value {
    json!({
        "name": "Red shoe",
        "description": "Size 42",
        "price_minor": 4999,
        "currency": "EUR",
        "image_id": image_id,
    })
}

fn upload_body(bytes: &[u8]) -> Value {
    json!({
        "filename": "shoe.png",
        "content_type": "image/png",
        "size": bytes.len(),
        "sha256": sha256_hex(bytes),
    })
}

// ------------------------------------------------------------------ seller tokens

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("service-kit/tests/fixtures/jwt")
        .join(name)
}

/// Serves the test identity provider's JWKS (the RSA and EC test keys) on loopback.
async fn serve_jwks() -> (String, tokio::task::JoinHandle<()>) {
    let rsa: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("rsa-1.jwk.json")).unwrap()).unwrap();
    let ec: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("ec-1.jwk.json")).unwrap()).unwrap();
    let jwks = json!({ "keys": [rsa, ec] });
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, task)
}

fn rsa_kid() -> String {
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("rsa-1.jwk.json")).unwrap()).unwrap();
    jwk["kid"].as_str().unwrap().to_owned()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The bad tokens, each with the code the API must answer.
fn bad_token(case: &str, stack: &Stack, seller: &str) -> (Option<String>, &'static str) {
    let secret = &stack.jwt_secret;
    let with = |change: Value| {
        let mut c = claims(seller);
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let now = shared_signing::unix_now();
    match case {
        "no_token" => (None, "missing-token"),
        "malformed" => (Some("not.a-jwt".into()), "malformed-token"),
        "alg_none" => {
            let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
            let payload = b64url(claims(seller).to_string().as_bytes());
            (
                Some(format!("{header}.{payload}.")),
                "unsupported-algorithm",
            )
        }
        "algorithm_confusion" => {
            // HS256 "signed" with the RSA public key as the HMAC secret, claiming the
            // RSA key's kid: the classic confusion attack.
            let public_pem = std::fs::read(fixture("rsa-public.pem")).unwrap();
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(rsa_kid());
            let token = jsonwebtoken::encode(
                &header,
                &claims(seller),
                &jsonwebtoken::EncodingKey::from_secret(&public_pem),
            )
            .unwrap();
            (Some(token), "unsupported-algorithm")
        }
        "wrong_audience" => (
            Some(hs256_token(
                secret,
                Some(DEV_KID),
                &with(json!({"aud": "someone-else"})),
            )),
            "invalid-audience",
        ),
        "no_audience" => (
            Some(hs256_token(
                secret,
                Some(DEV_KID),
                &with(json!({"aud": null})),
            )),
            "invalid-audience",
        ),
        "wrong_issuer" => (
            Some(hs256_token(
                secret,
                Some(DEV_KID),
                &with(json!({"iss": "https://evil.example"})),
            )),
            "invalid-issuer",
        ),
        "expired" => (
            Some(hs256_token(
                secret,
                Some(DEV_KID),
                &with(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
            )),
            "token-expired",
        ),
        "not_yet_valid" => (
            Some(hs256_token(
                secret,
                Some(DEV_KID),
                &with(json!({"nbf": now + 3600})),
            )),
            "token-not-yet-valid",
        ),
        "tampered" => {
            let token = stack.token(seller);
            let parts: Vec<&str> = token.split('.').collect();
            let payload = b64url(
                with(json!({"sub": "another-seller"}))
                    .to_string()
                    .as_bytes(),
            );
            (
                Some(format!("{}.{payload}.{}", parts[0], parts[2])),
                "invalid-signature",
            )
        }
        "unknown_kid" => (
            Some(hs256_token(secret, Some("no-such-key"), &claims(seller))),
            "unknown-key",
        ),
        other => panic!("unknown case {other}"),
    }
}

/// A bad token is refused by every seller endpoint, and nothing is created.
async fn token_refused(db: Db, test: &str, case: &str) {
    let (jwks_url, _jwks) = serve_jwks().await;
    let Some(stack) = Stack::start_with(db, test, &[("JWT_JWKS_URL", jwks_url)]).await else {
        return;
    };
    let seller = "seller-token";
    let image_id = stack.upload_image(seller).await;
    let pending_before = stack.pending_uploads(seller).await;
    let (token, code) = bad_token(case, &stack, seller);
    let bytes = png(1024);
    let requests = [
        stack
            .app(Method::POST, "/uploads")
            .json(&upload_body(&bytes)),
        stack
            .app(Method::POST, "/product")
            .json(&product_body(&image_id)),
        stack.app(Method::GET, "/products"),
    ];
    for request in requests {
        let request = match &token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let answer = send(request).await;
        assert_error(&answer, 401, code);
        let challenge = answer.1["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    assert_eq!(stack.products(seller).await, 0);
    assert_eq!(stack.pending_uploads(seller).await, pending_before);
}

macro_rules! bad_tokens {
    ($($case:ident),* $(,)?) => {$(
        async fn $case(db: Db, test: &str) {
            token_refused(db, test, stringify!($case)).await;
        }
    )*
    on_every_db!($($case),*);
    };
}

bad_tokens!(
    no_token,
    malformed,
    alg_none,
    algorithm_confusion,
    wrong_audience,
    no_audience,
    wrong_issuer,
    expired,
    not_yet_valid,
    tampered,
    unknown_kid,
);

/// Tokens from the identity provider's JWKS (RS256 and ES256) are accepted.
async fn identity_provider_tokens_accepted(db: Db, test: &str) {
    let (jwks_url, _jwks) = serve_jwks().await;
    let Some(stack) = Stack::start_with(db, test, &[("JWT_JWKS_URL", jwks_url)]).await else {
        return;
    };
    let rsa_jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("rsa-1.jwk.json")).unwrap()).unwrap();
    let ec_jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("ec-1.jwk.json")).unwrap()).unwrap();
    let cases = [
        (
            jsonwebtoken::Algorithm::RS256,
            rsa_jwk["kid"].as_str().unwrap().to_owned(),
            jsonwebtoken::EncodingKey::from_rsa_pem(
                &std::fs::read(fixture("rsa-private.pem")).unwrap(),
            )
            .unwrap(),
        ),
        (
            jsonwebtoken::Algorithm::ES256,
            ec_jwk["kid"].as_str().unwrap().to_owned(),
            jsonwebtoken::EncodingKey::from_ec_pem(
                &std::fs::read(fixture("ec-private.pem")).unwrap(),
            )
            .unwrap(),
        ),
    ];
    for (alg, kid, key) in cases {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(kid);
        let token = jsonwebtoken::encode(&header, &claims("idp-seller"), &key).unwrap();
        let answer = send(stack.app(Method::GET, "/products").bearer_auth(&token)).await;
        assert_eq!(answer.0, 200, "{alg:?}: {}", answer.2);
    }
}

// ------------------------------------------------------------------ POST /uploads

/// `POST /uploads` with `body` (as JSON) is refused with `status`/`code`, and storage
/// recorded no pending upload.
async fn upload_refused(stack: &Stack, body: Value, status: u16, code: &str) {
    let seller = "seller-uploads";
    let answer = send(
        stack
            .app(Method::POST, "/uploads")
            .bearer_auth(stack.token(seller))
            .json(&body),
    )
    .await;
    assert_error(&answer, status, code);
    stack.assert_nothing_created(seller).await;
}

async fn upload_bad_fields(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let bytes = png(1024);
    let valid = upload_body(&bytes);
    let with = |k: &str, v: Value| {
        let mut b = valid.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = valid.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = [
        (
            "content type not an image",
            with("content_type", json!("application/pdf")),
            422,
            "unsupported-content-type",
        ),
        (
            "svg is not accepted",
            with("content_type", json!("image/svg+xml")),
            422,
            "unsupported-content-type",
        ),
        ("size 0", with("size", json!(0)), 422, "invalid-size"),
        (
            "size over the cap",
            with("size", json!(50u64 * 1024 * 1024 + 1)),
            422,
            "size-limit-exceeded",
        ),
        (
            "negative size",
            with("size", json!(-1)),
            422,
            "invalid-request-body",
        ),
        (
            "sha256 too short",
            with("sha256", json!("abc123")),
            422,
            "invalid-sha256",
        ),
        (
            "sha256 not hex",
            with("sha256", json!("z".repeat(64))),
            422,
            "invalid-sha256",
        ),
        (
            "filename with a path",
            with("filename", json!("../../etc/passwd")),
            422,
            "invalid-filename",
        ),
        (
            "filename too long",
            with("filename", json!("a".repeat(256))),
            422,
            "invalid-filename",
        ),
        (
            "empty filename",
            with("filename", json!("")),
            422,
            "invalid-filename",
        ),
        (
            "missing sha256",
            without("sha256"),
            422,
            "invalid-request-body",
        ),
        ("missing size", without("size"), 422, "invalid-request-body"),
        (
            "unknown field",
            with("owner", json!("someone-else")),
            422,
            "invalid-request-body",
        ),
    ];
    for (what, body, status, code) in cases {
        eprintln!("case: {what}");
        upload_refused(&stack, body, status, code).await;
    }
}

async fn upload_wrong_content_type_and_bad_json(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let seller = "seller-uploads";
    let token = stack.token(seller);
    let body = upload_body(&png(1024)).to_string();
    let form = send(
        stack
            .app(Method::POST, "/uploads")
            .bearer_auth(&token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await;
    assert_error(&form, 415, "json-content-type-required");
    let broken = send(
        stack
            .app(Method::POST, "/uploads")
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{\"filename\": "),
    )
    .await;
    assert_error(&broken, 400, "invalid-json");
    let huge = json!({ "filename": "a".repeat(200 * 1024), "content_type": "image/png", "size": 1, "sha256": "a".repeat(64) });
    let too_big = send(
        stack
            .app(Method::POST, "/uploads")
            .bearer_auth(&token)
            .json(&huge),
    )
    .await;
    assert_error(&too_big, 413, "body-too-large");
    stack.assert_nothing_created(seller).await;
}

async fn upload_url_issued(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let bytes = png(1024);
    let answer = stack
        .ask_upload(&stack.token("seller-ok"), "shoe.png", "image/png", &bytes)
        .await;
    assert_eq!(answer.0, 201, "{}", answer.2);
    let ticket = &answer.2;
    assert_eq!(ticket["method"], "PUT");
    assert_eq!(ticket["headers"]["Content-Type"], "image/png");
    assert!(ticket["upload_url"]
        .as_str()
        .unwrap()
        .starts_with(&stack.storage_url));
    assert!(ticket["expires_at"].is_string());
    assert_eq!(stack.pending_uploads("seller-ok").await, 1);
}

async fn upload_rate_limited(db: Db, test: &str) {
    let extra = [
        ("UPLOADS_PER_MINUTE", "1".to_owned()),
        ("UPLOADS_BURST", "2".to_owned()),
    ];
    let Some(stack) = Stack::start_with(db, test, &extra).await else {
        return;
    };
    let bytes = png(1024);
    let token = stack.token("seller-busy");
    for _ in 0..2 {
        let ok = stack.ask_upload(&token, "a.png", "image/png", &bytes).await;
        assert_eq!(ok.0, 201, "{}", ok.2);
    }
    let limited = stack.ask_upload(&token, "a.png", "image/png", &bytes).await;
    assert_error(&limited, 429, "rate-limited");
    let retry_after: u64 = limited.1["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(stack.pending_uploads("seller-busy").await, 2);
    // Another seller is not affected.
    let other = stack
        .ask_upload(&stack.token("seller-calm"), "a.png", "image/png", &bytes)
        .await;
    assert_eq!(other.0, 201, "{}", other.2);
}

/// Concurrent requests are coalesced into batch calls to storage; each still gets its
/// own URL for its own metadata.
async fn concurrent_upload_requests(db: Db, test: &str) {
    let extra = [("UPLOADS_BURST", "1000".to_owned())];
    let Some(stack) = Stack::start_with(db, test, &extra).await else {
        return;
    };
    let token = stack.token("seller-many");
    let requests: Vec<_> = (0..60)
        .map(|i| {
            let bytes = png(1000 + i);
            let body = json!({
                "filename": format!("f{i}.png"), "content_type": "image/png",
                "size": bytes.len(), "sha256": sha256_hex(&bytes),
            });
            send(
                stack
                    .app(Method::POST, "/uploads")
                    .bearer_auth(&token)
                    .json(&body),
            )
        })
        .collect();
    let answers = futures::future::join_all(requests).await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in &answers {
        assert_eq!(answer.0, 201, "{}", answer.2);
        ids.insert(answer.2["upload_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 60);
    assert_eq!(stack.pending_uploads("seller-many").await, 60);
    // Each URL takes exactly the bytes its request described.
    let ticket = &answers[7].2;
    let put = put_upload(&stack.http, ticket, png(1007)).await;
    assert_eq!(put.0, 201, "{}", put.2);
}

async fn storage_unreachable(db: Db, test: &str) {
    // A port nothing listens on.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let Some(stack) = Stack::start_with(db, test, &[("STORAGE_URL", closed)]).await else {
        return;
    };
    let bytes = png(1024);
    let answer = stack
        .ask_upload(&stack.token("seller-x"), "a.png", "image/png", &bytes)
        .await;
    assert_error(&answer, 503, "storage-unavailable");
    assert_eq!(answer.1["retry-after"], "5");
    let create = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(stack.token("seller-x"))
            .json(&product_body(UUID_NOBODY)),
    )
    .await;
    assert_error(&create, 503, "storage-unavailable");
    assert_eq!(stack.products("seller-x").await, 0);
}

// ------------------------------------------------------------------ POST /product

/// `POST /product` with `body` is refused with `status`/`code`; no product exists.
async fn product_refused(stack: &Stack, seller: &str, body: Value, status: u16, code: &str) {
    let answer = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(stack.token(seller))
            .json(&body),
    )
    .await;
    assert_error(&answer, status, code);
    assert_eq!(stack.products(seller).await, 0, "a product was created");
}

async fn product_bad_fields(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let seller = "seller-products";
    let image_id = stack.upload_image(seller).await;
    let valid = product_body(&image_id);
    let with = |k: &str, v: Value| {
        let mut b = valid.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = valid.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = [
        (
            "negative price",
            with("price_minor", json!(-1)),
            "invalid-price",
        ),
        (
            "overflowing price",
            with("price_minor", json!(u64::MAX)),
            "invalid-price",
        ),
        (
            "price over the maximum",
            with("price_minor", json!(1_000_000_000_000_000_i64)),
            "invalid-price",
        ),
        (
            "fractional price",
            with("price_minor", json!(49.99)),
            "invalid-price",
        ),
        (
            "price as a string",
            with("price_minor", json!("4999")),
            "invalid-price",
        ),
        (
            "unknown currency",
            with("currency", json!("ABC")),
            "unknown-currency",
        ),
        (
            "currency not a code",
            with("currency", json!("euro")),
            "unknown-currency",
        ),
        (
            "201-character name",
            with("name", json!("n".repeat(201))),
            "invalid-name",
        ),
        ("empty name", with("name", json!("  ")), "invalid-name"),
        (
            "5001-character description",
            with("description", json!("d".repeat(5001))),
            "invalid-description",
        ),
        (
            "malformed image UUID",
            with("image_id", json!("not-a-uuid")),
            "invalid-image-id",
        ),
        ("missing name", without("name"), "invalid-request-body"),
        (
            "missing price",
            without("price_minor"),
            "invalid-request-body",
        ),
        (
            "missing currency",
            without("currency"),
            "invalid-request-body",
        ),
        (
            "missing image id",
            without("image_id"),
            "invalid-request-body",
        ),
        (
            "unknown field",
            with("seller_id", json!("someone-else")),
            "invalid-request-body",
        ),
    ];
    for (what, body, code) in cases {
        eprintln!("case: {what}");
        product_refused(&stack, seller, body, 422, code).await;
    }
}

async fn product_raw_overflow_and_transport(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let seller = "seller-raw";
    let image_id = stack.upload_image(seller).await;
    let token = stack.token(seller);
    // A number no integer type holds, as raw JSON text.
    let raw = format!(
        r#"{{"name":"x","price_minor":123456789012345678901234567890,"currency":"EUR","image_id":"{image_id}"}}"#
    );
    let overflow = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(raw.clone()),
    )
    .await;
    assert_error(&overflow, 422, "invalid-price");
    let wrong_type = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(raw),
    )
    .await;
    assert_error(&wrong_type, 415, "json-content-type-required");
    let mut huge = product_body(&image_id);
    huge["description"] = json!("d".repeat(100 * 1024));
    let too_big = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(&token)
            .json(&huge),
    )
    .await;
    assert_error(&too_big, 413, "body-too-large");
    assert_eq!(stack.products(seller).await, 0);
}

async fn product_image_checks(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let seller = "seller-images";
    let others_image = stack.upload_image("another-seller").await;
    product_refused(
        &stack,
        seller,
        product_body(&others_image),
        422,
        "image-not-found",
    )
    .await;
    product_refused(
        &stack,
        seller,
        product_body(UUID_NOBODY),
        422,
        "image-not-found",
    )
    .await;

    // An upload that never completed: a URL was issued, no bytes were sent.
    let bytes = png(1024);
    let ticket = stack
        .ask_upload(&stack.token(seller), "a.png", "image/png", &bytes)
        .await;
    assert_eq!(ticket.0, 201);
    let upload_id = ticket.2["upload_id"].as_str().unwrap();
    product_refused(
        &stack,
        seller,
        product_body(upload_id),
        422,
        "image-not-found",
    )
    .await;
}

async fn product_created_and_listed(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let seller = "seller-list";
    let image_id = stack.upload_image(seller).await;
    let token = stack.token(seller);
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = product_body(&image_id);
        body["name"] = json!(format!("Product {i}"));
        body["currency"] = json!("jpy");
        body["price_minor"] = json!(1000 + i);
        let created = send(
            stack
                .app(Method::POST, "/product")
                .bearer_auth(&token)
                .json(&body),
        )
        .await;
        assert_eq!(created.0, 201, "{}", created.2);
        assert_eq!(created.2["currency"], "JPY");
        assert_eq!(created.2["seller_id"], seller);
        assert!(created.2["image_url"].is_string(), "{}", created.2);
        ids.push(created.2["id"].as_str().unwrap().to_owned());
    }
    // Keyset pages of 2, newest first, covering all five exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/products?limit=2&cursor={c}"),
            None => "/products?limit=2".to_owned(),
        };
        let page = send(stack.app(Method::GET, &path).bearer_auth(&token)).await;
        assert_eq!(page.0, 200, "{}", page.2);
        for item in page.2["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.2["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let one = send(
        stack
            .app(Method::GET, &format!("/products/{}", ids[0]))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(one.0, 200, "{}", one.2);
    assert_eq!(one.2["name"], "Product 0");

    // Another seller's product is a 404, as is a missing one; bad ids are 400.
    let other = stack.token("seller-other");
    let foreign = send(
        stack
            .app(Method::GET, &format!("/products/{}", ids[0]))
            .bearer_auth(&other),
    )
    .await;
    assert_error(&foreign, 404, "product-not-found");
    let missing = send(
        stack
            .app(Method::GET, &format!("/products/{UUID_NOBODY}"))
            .bearer_auth(&token),
    )
    .await;
    assert_error(&missing, 404, "product-not-found");
    let malformed = send(stack.app(Method::GET, "/products/42").bearer_auth(&token)).await;
    assert_error(&malformed, 400, "invalid-product-id");
    let others_list = send(stack.app(Method::GET, "/products").bearer_auth(&other)).await;
    assert_eq!(others_list.2["items"], json!([]));
    for (query, code) in [
        ("limit=0", "invalid-limit"),
        ("limit=101", "invalid-limit"),
        ("limit=ten", "invalid-limit"),
        ("cursor=abc", "invalid-cursor"),
    ] {
        let bad = send(
            stack
                .app(Method::GET, &format!("/products?{query}"))
                .bearer_auth(&token),
        )
        .await;
        assert_error(&bad, 400, code);
    }
}

async fn idempotency_key(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let seller = "seller-idem";
    let image_id = stack.upload_image(seller).await;
    let token = stack.token(seller);
    let create = |body: Value, key: &str| {
        stack
            .app(Method::POST, "/product")
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&body)
    };
    let first = send(create(product_body(&image_id), "key-1")).await;
    assert_eq!(first.0, 201, "{}", first.2);
    assert!(first.1.get("idempotent-replayed").is_none());
    let again = send(create(product_body(&image_id), "key-1")).await;
    assert_eq!(again.0, 201, "{}", again.2);
    assert_eq!(again.2["id"], first.2["id"]);
    assert_eq!(again.1["idempotent-replayed"], "true");
    assert_eq!(stack.products(seller).await, 1);

    let mut changed = product_body(&image_id);
    changed["price_minor"] = json!(1);
    let reused = send(create(changed, "key-1")).await;
    assert_error(&reused, 422, "idempotency-key-reused");
    assert_eq!(stack.products(seller).await, 1);

    // Keys are per seller: another seller's same key is a different request.
    let other_image = stack.upload_image("seller-idem-2").await;
    let other = send(
        stack
            .app(Method::POST, "/product")
            .bearer_auth(stack.token("seller-idem-2"))
            .header("Idempotency-Key", "key-1")
            .json(&product_body(&other_image)),
    )
    .await;
    assert_eq!(other.0, 201, "{}", other.2);
    assert_ne!(other.2["id"], first.2["id"]);

    let bad_key = send(create(product_body(&image_id), "")).await;
    assert_error(&bad_key, 400, "invalid-idempotency-key");
    let long_key = send(create(product_body(&image_id), &"k".repeat(256))).await;
    assert_error(&long_key, 400, "invalid-idempotency-key");

    // Concurrent requests with one new key create one product.
    let racers: Vec<_> = (0..8)
        .map(|_| send(create(product_body(&image_id), "key-race")))
        .collect();
    let answers = futures::future::join_all(racers).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.0, 201, "{}", a.2);
            a.2["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one product for one key");
    assert_eq!(stack.products(seller).await, 2);
}

async fn dev_login(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let issued = send(
        stack
            .app(Method::POST, "/auth/token")
            .json(&json!({"seller_id": "seller-dev"})),
    )
    .await;
    assert_eq!(issued.0, 201, "{}", issued.2);
    let token = issued.2["access_token"].as_str().unwrap();
    let list = send(stack.app(Method::GET, "/products").bearer_auth(token)).await;
    assert_eq!(list.0, 200, "{}", list.2);
    let bad = send(
        stack
            .app(Method::POST, "/auth/token")
            .json(&json!({"seller_id": "no spaces/allowed"})),
    )
    .await;
    assert_error(&bad, 422, "invalid-seller-id");

    // Off unless AUTH_DEV_LOGIN=true.
    let Some(production) = Stack::start_with(db, test, &[("AUTH_DEV_LOGIN", "false".into())]).await
    else {
        return;
    };
    let refused = send(
        production
            .app(Method::POST, "/auth/token")
            .json(&json!({"seller_id": "seller-dev"})),
    )
    .await;
    assert_error(&refused, 404, "dev-login-disabled");
}

async fn openapi_and_swagger(db: Db, test: &str) {
    let Some(stack) = Stack::start(db, test).await else {
        return;
    };
    let spec = send(stack.app(Method::GET, "/openapi.json")).await;
    assert_eq!(spec.0, 200);
    for path in [
        "/uploads",
        "/product",
        "/products",
        "/products/{product_id}",
        "/auth/token",
    ] {
        assert!(spec.2["paths"][path].is_object(), "{path} documented");
    }
    assert_eq!(
        spec.2["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let docs = stack
        .http
        .get(format!("{}/docs/", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
}

on_every_db!(
    identity_provider_tokens_accepted,
    upload_bad_fields,
    upload_wrong_content_type_and_bad_json,
    upload_url_issued,
    upload_rate_limited,
    concurrent_upload_requests,
    storage_unreachable,
    product_bad_fields,
    product_raw_overflow_and_transport,
    product_image_checks,
    product_created_and_listed,
    idempotency_key,
    dev_login,
    openapi_and_swagger,
);
