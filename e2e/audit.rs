//! The audit trail end to end, with real processes on loopback.
//!
//! - `vitrine up --demo` (the embedded stack): every event type comes out of a real
//!   flow and can be read at `GET /audit`; every bad input to `GET /audit` gets its
//!   JSON error.
//! - The embedded transport (outbox → signed HTTP): with the audit service down, uploads
//!   still succeed and their events wait in the outbox; once it is back they arrive,
//!   each once.
//! - RabbitMQ (`VITRINE_TEST_AMQP_URL` + `VITRINE_TEST_AMQP_CTL`, in a fresh vhost of
//!   its own): the services reach the broker through a TCP proxy this test cuts and
//!   restores, so the shared broker itself is never stopped. Uploads succeed while it is
//!   cut; their events arrive once it is restored; a restarted consumer stores no
//!   event twice, even one the broker delivers again.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use shared_signing::{KeyRing, Purpose};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- helpers

fn admin_token(keys: &KeyRing, issued_at: i64, ttl: u64) -> String {
    keys.mint_json(
        Purpose::new("audit-read"),
        &json!({ "sub": "e2e" }),
        issued_at,
        Duration::from_secs(ttl),
    )
    .expect("mint")
}

/// `GET /audit?{query}` with `token`, all pages; panics on an error answer.
async fn audit_events(
    client: &reqwest::Client,
    audit: &str,
    token: &str,
    query: &str,
) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{audit}/audit?limit=1000");
        if !query.is_empty() {
            url = format!("{url}&{query}");
        }
        if let Some(c) = &cursor {
            url = format!("{url}&cursor={c}");
        }
        let (status, _, body) = send(client.get(url).bearer_auth(token)).await;
        assert_eq!(status, 200, "GET /audit: {body}");
        events.extend(body["events"].as_array().expect("events").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return events,
        }
    }
}

/// Polls `GET /audit?{query}` until `done` holds (60 s at most: a safety net, not a
/// timing assertion), and returns the events.
async fn wait_for_events(
    client: &reqwest::Client,
    audit: &str,
    token: &str,
    query: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = audit_events(client, audit, token, query).await;
        if done(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not there after 60 s; GET /audit?{query} has {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn subjects(events: &[Value], kind: &str) -> BTreeSet<String> {
    of_type(events, kind)
        .iter()
        .filter_map(|e| e["subject_id"].as_str().map(str::to_owned))
        .collect()
}

/// Asserts that no event id appears twice.
#[track_caller]
fn assert_unique_ids(events: &[Value]) {
    let mut seen = BTreeSet::new();
    for event in events {
        let id = event["id"].as_str().expect("id");
        assert!(
            seen.insert(id.to_owned()),
            "event {id} stored twice: {event}"
        );
    }
}

/// `POST /uploads` then `PUT` of `bytes` (declared as `declared`, so a different
/// `declared` makes storage refuse the PUT). Returns the upload id and the PUT's answer.
async fn upload(
    client: &reqwest::Client,
    app: &str,
    token: &str,
    request_id: &str,
    declared: &[u8],
    bytes: Vec<u8>,
) -> (String, (u16, reqwest::header::HeaderMap, Value)) {
    let (status, _, ticket) = send(
        client
            .post(format!("{app}/uploads"))
            .bearer_auth(token)
            .header("x-request-id", request_id)
            .json(&json!({
                "filename": "shoe.png",
                "content_type": "image/png",
                "size": declared.len(),
                "sha256": sha256_hex(declared),
            })),
    )
    .await;
    assert_eq!(status, 201, "POST /uploads: {ticket}");
    let upload_id = ticket["upload_id"].as_str().expect("upload_id").to_owned();
    let put = put_upload(client, &ticket, bytes).await;
    (upload_id, put)
}

/// `POST /internal/events` with `body`, signed with `keys`.
async fn deliver(
    audit: &str,
    keys: KeyRing,
    body: Vec<u8>,
) -> service_kit::internal_client::Answer {
    service_kit::internal_client::SignedClient::new(
        audit.parse().expect("url"),
        keys,
        http_client(),
    )
    .call(
        "deliver",
        reqwest::Method::POST,
        "/internal/events",
        Some(body),
    )
    .await
    .expect("an answer")
}

/// `vitrine serve audit` on `bind` with `env` (and nothing else), ready.
async fn start_audit(bind: &str, env: &[(String, String)], dir: &Path) -> ServiceProcess {
    let mut command = Command::new(vitrine_bin());
    command
        .args(["serve", "audit"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AUDIT_BIND", bind)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    ServiceProcess::spawn("audit", command, bind, dir).await
}

// ---------------------------------------------------------------- embedded stack

#[tokio::test]
async fn every_event_type_comes_from_a_real_flow_on_the_embedded_stack() {
    // Arrange: `vitrine up --demo` with a small sample folder.
    let data = tempfile::tempdir().expect("tempdir");
    let (mut launcher, binds, log) =
        Launcher::start_demo_with(data.path(), &[("DEMO_IMAGES", "3")]);
    let folder_url = launcher.banner(&log, DEMO_FOLDER_LINE).await;
    let (app, import, audit) = (
        format!("http://{}", binds["APP_BIND"]),
        format!("http://{}", binds["IMPORT_BIND"]),
        format!("http://{}", binds["AUDIT_BIND"]),
    );
    let client = http_client();
    let seller = format!("audit-{}", uuid::Uuid::new_v4().simple());
    let token = vitrine_token(data.path(), &["--seller", &seller]);
    let operator = vitrine_token(data.path(), &["--audit"]);

    // Act: a refused token, an accepted and a rejected upload, a product (its answer
    // carries a download URL), and an import of the demo folder (its broken file fails).
    let refused = send(
        client
            .get(format!("{app}/products"))
            .bearer_auth("not-a-jwt")
            .header("x-request-id", "rid-auth"),
    )
    .await;
    assert_error(&refused, 401, "malformed-token");
    let bytes = png(2048);
    let (accepted_id, put) =
        upload(&client, &app, &token, "rid-up-ok", &bytes, bytes.clone()).await;
    assert_eq!(put.0, 201, "{}", put.2);
    let image_id = put.2["image_id"].as_str().expect("image_id").to_owned();
    let other = png(3000);
    let (rejected_id, put) = upload(
        &client,
        &app,
        &token,
        "rid-up-bad",
        &bytes,
        other[..2048].to_vec(),
    )
    .await;
    assert_error(&put, 422, "sha256-mismatch");
    let (status, _, product) = send(
        client
            .post(format!("{app}/product"))
            .bearer_auth(&token)
            .header("x-request-id", "rid-product")
            .json(&json!({"name": "Shoe", "price_minor": 1999, "currency": "EUR", "image_id": image_id})),
    )
    .await;
    assert_eq!(status, 201, "{product}");
    let product_id = product["id"].as_str().expect("product id").to_owned();
    let (status, _, job) = send(
        client
            .post(format!("{import}/import/google-drive"))
            .bearer_auth(&token)
            .header("x-request-id", "rid-import")
            .json(&json!({ "folder_url": folder_url })),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().expect("job id").to_owned();

    // Assert: every type arrives for this seller, with its subject and request id.
    let query = format!("seller_id={seller}");
    let events = wait_for_events(
        &client,
        &audit,
        &operator,
        &query,
        "every seller event",
        |events| {
            [
                "upload.url_issued",
                "upload.accepted",
                "upload.rejected",
                "download.url_issued",
                "product.created",
                "import.started",
                "import.finished",
                "import.item_failed",
            ]
            .iter()
            .all(|kind| !of_type(events, kind).is_empty())
        },
    )
    .await;
    assert_unique_ids(&events);
    let one = |kind: &str, subject: &str| -> Value {
        of_type(&events, kind)
            .into_iter()
            .find(|e| e["subject_id"] == subject)
            .unwrap_or_else(|| panic!("no {kind} for {subject} in {events:#?}"))
            .clone()
    };
    let issued = one("upload.url_issued", &accepted_id);
    assert_eq!(issued["service"], "app-service");
    assert_eq!(issued["request_id"], "rid-up-ok");
    assert_eq!(
        subjects(&events, "upload.url_issued"),
        BTreeSet::from([accepted_id.clone(), rejected_id.clone()])
    );
    let accepted = one("upload.accepted", &accepted_id);
    assert_eq!(accepted["service"], "storage-service");
    assert_eq!(accepted["details"]["image_id"], image_id.as_str());
    let rejected = one("upload.rejected", &rejected_id);
    assert_eq!(rejected["reason"], "sha256-mismatch");
    assert_eq!(rejected["seller_id"], seller.as_str());
    let created = one("product.created", &product_id);
    assert_eq!(created["request_id"], "rid-product");
    assert_eq!(created["details"]["image_id"], image_id.as_str());
    let download = one("download.url_issued", &image_id);
    assert_eq!(download["service"], "storage-service");
    assert_eq!(
        download["request_id"], "rid-product",
        "the app forwards its request id"
    );
    let started = one("import.started", &job_id);
    assert_eq!(started["service"], "import-service");
    assert_eq!(started["request_id"], "rid-import");
    let finished = one("import.finished", &job_id);
    assert_eq!(finished["reason"], "completed");
    let failed = of_type(&events, "import.item_failed");
    assert_eq!(
        failed.len(),
        1,
        "the demo folder has one broken file: {failed:#?}"
    );
    assert_eq!(failed[0]["details"]["job_id"], job_id.as_str());
    assert!(failed[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    for event in &events {
        assert_eq!(event["seller_id"], seller.as_str());
        assert!(event["time"].as_str().is_some());
        let text = event.to_string();
        assert!(!text.contains(&token), "a seller token leaked into {text}");
        assert!(!text.contains("token="), "a URL token leaked into {text}");
    }

    // A gallery page is one `download.url_issued` event naming every image on it.
    let (status, _, page) = send(
        client
            .get(format!("{import}/images"))
            .bearer_auth(&token)
            .header("x-request-id", "rid-gallery"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let listed: BTreeSet<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["image_id"].as_str().expect("image_id").to_owned())
        .collect();
    assert!(
        listed.len() >= 2,
        "the demo import stored its images: {page}"
    );
    let issued = wait_for_events(
        &client,
        &audit,
        &operator,
        &format!("{query}&type=download.url_issued"),
        "the gallery's download.url_issued",
        |events| events.iter().any(|e| e["request_id"] == "rid-gallery"),
    )
    .await;
    let gallery: Vec<&Value> = issued
        .iter()
        .filter(|e| e["request_id"] == "rid-gallery")
        .collect();
    assert_eq!(gallery.len(), 1, "one event per page: {gallery:#?}");
    let details = &gallery[0]["details"];
    assert_eq!(details["caller"], "import-service");
    assert_eq!(details["count"], listed.len().to_string().as_str());
    let named: BTreeSet<String> = details["image_ids"]
        .as_str()
        .expect("image_ids")
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(named, listed);
    assert!(gallery[0]["subject_id"].is_null(), "{gallery:#?}");

    let auth = wait_for_events(
        &client,
        &audit,
        &operator,
        "type=auth.failed",
        "auth.failed",
        |events| events.iter().any(|e| e["request_id"] == "rid-auth"),
    )
    .await;
    let auth = auth
        .iter()
        .find(|e| e["request_id"] == "rid-auth")
        .expect("auth event");
    assert_eq!(auth["service"], "app-service");
    assert_eq!(auth["reason"], "malformed-token");
    assert_eq!(auth["details"]["path"], "/products");
    assert!(auth["seller_id"].is_null());
    assert!(!auth.to_string().contains("not-a-jwt"));

    // The filters narrow: by type, and `since` after everything is empty.
    let only = audit_events(
        &client,
        &audit,
        &operator,
        &format!("{query}&type=upload.accepted"),
    )
    .await;
    assert!(!only.is_empty() && only.iter().all(|e| e["type"] == "upload.accepted"));
    let future = audit_events(
        &client,
        &audit,
        &operator,
        &format!("{query}&since=2999-01-01T00:00:00Z"),
    )
    .await;
    assert!(future.is_empty(), "{future:#?}");
    let page = send(
        client
            .get(format!("{audit}/audit?{query}&limit=2"))
            .bearer_auth(&operator),
    )
    .await;
    assert_eq!(page.2["events"].as_array().map(Vec::len), Some(2));
    let cursor = page.2["next_cursor"].as_str().expect("a next page");
    let next = send(
        client
            .get(format!("{audit}/audit?{query}&limit=2&cursor={cursor}"))
            .bearer_auth(&operator),
    )
    .await;
    assert_eq!(next.0, 200);
    assert_ne!(next.2["events"][0]["id"], page.2["events"][0]["id"]);

    // Bad inputs to GET /audit: each its JSON error; refused tokens are audited too.
    let admin_keys = KeyRing::parse(&launcher_keys(data.path())["AUDIT_ADMIN_KEYS"]).expect("ring");
    let now = shared_signing::unix_now();
    let stranger = ring("admin1");
    let cases: Vec<(Option<String>, &str, u16, &str)> = vec![
        (None, "", 401, "missing-token"),
        (Some("garbage".into()), "", 401, "token-malformed"),
        (
            Some(admin_token(&admin_keys, now - 7200, 3600)),
            "",
            401,
            "token-expired",
        ),
        (
            Some(admin_token(&stranger, now, 600)),
            "",
            401,
            "token-invalid-signature",
        ),
        (
            Some(admin_token(&ring("other"), now, 600)),
            "",
            401,
            "token-unknown-key",
        ),
        (
            // A token of the same key for another purpose.
            Some(
                admin_keys
                    .mint_json(
                        Purpose::DOWNLOAD_URL,
                        &json!({"sub": "x"}),
                        now,
                        Duration::from_secs(60),
                    )
                    .expect("mint"),
            ),
            "",
            401,
            "token-invalid-signature",
        ),
        (Some(operator.clone()), "type=upload", 400, "invalid-type"),
        (
            Some(operator.clone()),
            "seller_id=a%20b",
            400,
            "invalid-seller-id",
        ),
        (
            Some(operator.clone()),
            "since=yesterday",
            400,
            "invalid-since",
        ),
        (Some(operator.clone()), "limit=0", 400, "invalid-limit"),
        (Some(operator.clone()), "limit=abc", 400, "invalid-limit"),
        (Some(operator.clone()), "cursor=nope", 400, "invalid-cursor"),
        (Some(operator.clone()), "seller=x", 400, "unknown-parameter"),
        (
            Some(operator.clone()),
            "limit=1&limit=2",
            400,
            "repeated-parameter",
        ),
    ];
    for (token, query, status, code) in &cases {
        let mut request = client.get(format!("{audit}/audit?{query}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = send(request.header("x-request-id", format!("rid-bad-{code}"))).await;
        assert_error(&answer, *status, code);
    }
    let refusals = audit_events(&client, &audit, &operator, "type=auth.failed").await;
    let expired = refusals
        .iter()
        .find(|e| e["request_id"] == "rid-bad-token-expired")
        .expect("the refused operator token is audited");
    assert_eq!(expired["service"], "audit");
    assert_eq!(expired["reason"], "token-expired");
}

// ---------------------------------------------------------------- embedded transport

/// Storage + app delivering over signed HTTP to an audit service on a fixed address.
struct HttpStack {
    dir: tempfile::TempDir,
    /// The services deliver through it: it counts their failed attempts.
    proxy: Proxy,
    audit_bind: String,
    audit_env: Vec<(String, String)>,
    admin_keys: KeyRing,
    storage: ServiceProcess,
    app: ServiceProcess,
}

impl HttpStack {
    fn audit_keys(&self) -> KeyRing {
        KeyRing::parse(&self.audit_env[0].1).expect("ring")
    }

    async fn start() -> HttpStack {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit_keys = ring("audit1").to_env_value();
        let admin_keys = ring("admin1");
        let audit_bind = format!("127.0.0.1:{}", free_port());
        let audit_env = vec![
            ("AUDIT_KEYS".to_owned(), audit_keys.clone()),
            ("AUDIT_ADMIN_KEYS".to_owned(), admin_keys.to_env_value()),
            (
                "AUDIT_DATABASE_URL".to_owned(),
                format!("sqlite://{}", dir.path().join("audit.db").display()),
            ),
        ];
        let proxy = Proxy::start(audit_bind.clone()).await;
        let publish = [
            (
                "AUDIT_URL".to_owned(),
                format!("http://127.0.0.1:{}", proxy.port),
            ),
            ("AUDIT_KEYS".to_owned(), audit_keys),
        ];
        let (storage, app) = start_storage_and_app(dir.path(), &publish).await;
        HttpStack {
            dir,
            proxy,
            audit_bind,
            audit_env,
            admin_keys,
            storage,
            app,
        }
    }

    async fn start_audit(&self) -> ServiceProcess {
        start_audit(&self.audit_bind, &self.audit_env, self.dir.path()).await
    }
}

/// Storage and app as processes, publishing audit events as `publish` says.
async fn start_storage_and_app(
    dir: &Path,
    publish: &[(String, String)],
) -> (ServiceProcess, ServiceProcess) {
    let app_keys = ring("app1").to_env_value();
    let mut storage_env = vec![
        ("APP_STORAGE_KEYS".to_owned(), app_keys.clone()),
        (
            "IMPORT_STORAGE_KEYS".to_owned(),
            ring("imp1").to_env_value(),
        ),
        ("URL_SIGNING_KEYS".to_owned(), ring("url1").to_env_value()),
        (
            "STORAGE_DATABASE_URL".to_owned(),
            format!("sqlite://{}", dir.join("storage.db").display()),
        ),
        (
            "BLOB_STORE".to_owned(),
            format!("file://{}", dir.join("blobs").display()),
        ),
    ];
    storage_env.extend(publish.iter().cloned());
    let storage = ServiceProcess::start("storage", "STORAGE_BIND", &storage_env, dir).await;
    let mut app_env = vec![
        ("APP_STORAGE_KEYS".to_owned(), app_keys),
        ("STORAGE_URL".to_owned(), storage.url.clone()),
        (
            "APP_DATABASE_URL".to_owned(),
            format!("sqlite://{}", dir.join("app.db").display()),
        ),
        ("JWT_HS256_SECRET".to_owned(), random_secret()),
        ("AUTH_DEV_LOGIN".to_owned(), "true".to_owned()),
    ];
    app_env.extend(publish.iter().cloned());
    let app = ServiceProcess::start("app", "APP_BIND", &app_env, dir).await;
    (storage, app)
}

/// A seller token from the app's dev login.
async fn dev_token(client: &reqwest::Client, app: &str, seller: &str) -> String {
    let (status, _, body) = send(
        client
            .post(format!("{app}/auth/token"))
            .json(&json!({ "seller_id": seller })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Rows waiting in a service's outbox (its SQLite file).
async fn outbox_len(db: &Path) -> i64 {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query("SELECT COUNT(*) AS n FROM audit_outbox")
        .fetch_one(&mut conn)
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

/// `n` good uploads; returns their upload ids.
async fn good_uploads(client: &reqwest::Client, app: &str, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let bytes = png(1500 + i);
        let (id, put) = upload(
            client,
            app,
            token,
            &format!("rid-{i}"),
            &bytes,
            bytes.clone(),
        )
        .await;
        assert_eq!(
            put.0, 201,
            "the upload must succeed whatever the audit trail does: {}",
            put.2
        );
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn with_the_audit_service_down_uploads_succeed_and_their_events_arrive_once_it_is_back() {
    // Arrange: the services run, the audit service does not (yet).
    let stack = HttpStack::start().await;
    let client = http_client();
    let seller = "outbox-seller";
    let token = dev_token(&client, &stack.app.url, seller).await;

    // Act: uploads while nobody takes the events.
    let ids = good_uploads(&client, &stack.app.url, &token, 3).await;

    // Assert: after several failed delivery attempts, they still wait in the outboxes
    // (issued in app, accepted in storage).
    stack.proxy.wait_refused(0, 6).await;
    assert_eq!(outbox_len(&stack.dir.path().join("app.db")).await, 3);
    assert_eq!(outbox_len(&stack.dir.path().join("storage.db")).await, 3);

    // Act: the audit service starts; then is killed and started again, with more uploads
    // in between.
    let mut audit = stack.start_audit().await;
    let operator = admin_token(&stack.admin_keys, shared_signing::unix_now(), 3600);
    let query = format!("seller_id={seller}");
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    let events = wait_for_events(
        &client,
        &audit.url,
        &operator,
        &query,
        "the waiting events",
        |events| {
            subjects(events, "upload.url_issued") == expected
                && subjects(events, "upload.accepted") == expected
        },
    )
    .await;
    assert_eq!(events.len(), 6, "{events:#?}");
    let before = stack.proxy.refused();
    audit.kill();
    let more = good_uploads(&client, &stack.app.url, &token, 2).await;
    stack.proxy.wait_refused(before, 4).await;
    assert_eq!(outbox_len(&stack.dir.path().join("app.db")).await, 2);
    assert_eq!(outbox_len(&stack.dir.path().join("storage.db")).await, 2);
    let audit = stack.start_audit().await;
    let expected: BTreeSet<String> = ids.iter().chain(&more).cloned().collect();
    wait_for_events(
        &client,
        &audit.url,
        &operator,
        &query,
        "events after the restart",
        |events| subjects(events, "upload.accepted") == expected,
    )
    .await;

    // Assert: each event once, and the same batch delivered again stores nothing new.
    let events = wait_for_events(
        &client,
        &audit.url,
        &operator,
        &query,
        "every issued URL",
        |events| subjects(events, "upload.url_issued") == expected,
    )
    .await;
    assert_eq!(events.len(), 10, "{events:#?}");
    assert_unique_ids(&events);
    let batch = serde_json::to_vec(&json!({ "events": events })).expect("json");
    let answer = deliver(&audit.url, stack.audit_keys(), batch).await;
    assert_eq!(answer.status, 200);
    let stored: Value = answer.json().expect("json");
    assert_eq!(stored, json!({"received": 10, "stored": 0}));
    assert_eq!(
        audit_events(&client, &audit.url, &operator, &query)
            .await
            .len(),
        10
    );
    assert_eq!(outbox_len(&stack.dir.path().join("app.db")).await, 0);
    drop((stack.storage, stack.app));
}

#[tokio::test]
async fn deliveries_need_a_valid_signature() {
    let stack = HttpStack::start().await;
    let audit = stack.start_audit().await;
    let client = http_client();
    let body = json!({ "events": [] });
    // Unsigned.
    let answer = send(
        client
            .post(format!("{}/internal/events", audit.url))
            .json(&body),
    )
    .await;
    assert_error(&answer, 401, "signature-missing");
    // Signed with a key the audit service does not hold.
    let answer = deliver(&audit.url, ring("intruder"), body.to_string().into_bytes()).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code().0, "signature-unknown-key");
    // Signed, but not a batch of events.
    let answer = deliver(&audit.url, stack.audit_keys(), b"{\"events\": 3}".to_vec()).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_code().0, "invalid-request-body");
}

// ---------------------------------------------------------------- RabbitMQ

/// A TCP proxy this test can cut (every connection closed, new ones refused) and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// Connections dropped because the proxy was cut or nothing listened upstream.
    refused: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, refused2, conns2) = (up.clone(), refused.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    refused2.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let (upstream, refused) = (upstream.clone(), refused2.clone());
                let task = tokio::spawn(async move {
                    match tokio::net::TcpStream::connect(&upstream).await {
                        Ok(mut outbound) => {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
                conns2.lock().expect("conns").push(task);
            }
        });
        Proxy {
            port,
            up,
            refused,
            conns,
            accept,
        }
    }

    /// Waits until `more` connections beyond the `since` count were refused: each is a
    /// delivery attempt that failed (60 s at most, a safety net).
    async fn wait_refused(&self, since: usize, more: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.refused.load(Ordering::SeqCst) < since + more {
            assert!(
                Instant::now() < deadline,
                "fewer than {more} delivery attempts in 60 s: are events still waiting to be sent?"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().expect("conns").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A vhost of this test's own on the shared broker, deleted when dropped.
struct Vhost {
    ctl: String,
    name: String,
}

impl Vhost {
    fn create(ctl: &str, user: &str) -> Vhost {
        let name = format!("vitrine-audit-{}", uuid::Uuid::new_v4().simple());
        let run = |args: &[&str]| {
            let out = Command::new(ctl).args(args).output().expect("rabbitmqctl");
            assert!(out.status.success(), "{ctl} {args:?}: {out:?}");
        };
        run(&["add_vhost", &name]);
        run(&["set_permissions", "-p", &name, user, ".*", ".*", ".*"]);
        Vhost {
            ctl: ctl.to_owned(),
            name,
        }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new(&self.ctl)
            .args(["delete_vhost", &self.name])
            .output();
    }
}

#[tokio::test]
async fn over_rabbitmq_a_cut_broker_loses_no_event_and_a_restarted_consumer_stores_none_twice() {
    let test =
        "over_rabbitmq_a_cut_broker_loses_no_event_and_a_restarted_consumer_stores_none_twice";
    let Some(amqp) = service_kit::testing::backend_env("VITRINE_TEST_AMQP_URL", test) else {
        return;
    };
    let Some(ctl) = service_kit::testing::backend_env("VITRINE_TEST_AMQP_CTL", test) else {
        return;
    };
    // Arrange: a vhost of our own, reached through a proxy we control.
    let url = url::Url::parse(&amqp).expect("amqp url");
    let host = url.host_str().expect("host");
    assert!(
        host == "127.0.0.1" || host == "localhost",
        "loopback only: {amqp}"
    );
    let upstream = format!("{host}:{}", url.port().unwrap_or(5672));
    let user = if url.username().is_empty() {
        "guest"
    } else {
        url.username()
    };
    let vhost = Vhost::create(&ctl, user);
    // One proxy for the publishers (it counts their failed attempts), one for the consumer.
    let proxy = Proxy::start(upstream.clone()).await;
    let consumer_proxy = Proxy::start(upstream).await;
    let credentials = format!("{}:{}", user, url.password().unwrap_or("guest"));
    let via_proxy = format!(
        "amqp://{credentials}@127.0.0.1:{}/{}",
        proxy.port, vhost.name
    );
    let consumer_url = format!(
        "amqp://{credentials}@127.0.0.1:{}/{}",
        consumer_proxy.port, vhost.name
    );
    let direct = format!(
        "amqp://{credentials}@{host}:{}/{}",
        url.port().unwrap_or(5672),
        vhost.name
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let admin_keys = ring("admin1");
    let audit_bind = format!("127.0.0.1:{}", free_port());
    let audit_env = vec![
        ("AUDIT_AMQP_URL".to_owned(), consumer_url),
        ("AUDIT_ADMIN_KEYS".to_owned(), admin_keys.to_env_value()),
        (
            "AUDIT_DATABASE_URL".to_owned(),
            format!("sqlite://{}", dir.path().join("audit.db").display()),
        ),
    ];
    let mut audit = start_audit(&audit_bind, &audit_env, dir.path()).await;
    let (storage, app) =
        start_storage_and_app(dir.path(), &[("AUDIT_URL".to_owned(), via_proxy.clone())]).await;
    let client = http_client();
    let seller = "amqp-seller";
    let token = dev_token(&client, &app.url, seller).await;
    let operator = admin_token(&admin_keys, shared_signing::unix_now(), 3600);
    let query = format!("seller_id={seller}");

    // The broker path works.
    let first = good_uploads(&client, &app.url, &token, 1).await;
    wait_for_events(
        &client,
        &audit.url,
        &operator,
        &query,
        "the first upload's events",
        |e| {
            let first: BTreeSet<String> = first.iter().cloned().collect();
            // Both outboxes empty before the cut: the app's event and storage's.
            subjects(e, "upload.url_issued") == first && subjects(e, "upload.accepted") == first
        },
    )
    .await;

    // Act: cut the broker off; uploads go on.
    proxy.cut();
    consumer_proxy.cut();
    let during = good_uploads(&client, &app.url, &token, 3).await;

    // Assert: after several failed attempts to reach the broker, the events still wait
    // in the outboxes.
    proxy.wait_refused(0, 6).await;
    assert_eq!(outbox_len(&dir.path().join("app.db")).await, 3);
    assert_eq!(outbox_len(&dir.path().join("storage.db")).await, 3);

    // Act: restore it; the events arrive.
    proxy.restore();
    consumer_proxy.restore();
    let all: BTreeSet<String> = first.iter().chain(&during).cloned().collect();
    wait_for_events(
        &client,
        &audit.url,
        &operator,
        &query,
        "the events held while the broker was cut",
        |e| subjects(e, "upload.accepted") == all && subjects(e, "upload.url_issued") == all,
    )
    .await;

    // Act: the consumer dies; events pile up in its queue; the broker also delivers
    // two already-stored events again (as it does after a consumer dies before its
    // ack); then the consumer comes back.
    audit.kill();
    let after = good_uploads(&client, &app.url, &token, 2).await;
    let stored = audit_events_direct(dir.path()).await;
    let again: Vec<Value> = stored.iter().take(2).cloned().collect();
    publish_raw(&direct, &again).await;
    let audit = start_audit(&audit_bind, &audit_env, dir.path()).await;

    // Assert: everything arrives, once.
    let all: BTreeSet<String> = all.iter().chain(&after).cloned().collect();
    let events = wait_for_events(
        &client,
        &audit.url,
        &operator,
        &query,
        "events after the consumer restart",
        |e| subjects(e, "upload.accepted") == all && subjects(e, "upload.url_issued") == all,
    )
    .await;
    assert_eq!(events.len(), 12, "{events:#?}");
    assert_unique_ids(&events);
    drop((storage, app, proxy, consumer_proxy, vhost));
}

/// The events stored in the audit service's SQLite file (read directly, while it is down).
async fn audit_events_direct(dir: &Path) -> Vec<Value> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn =
        sqlx::AnyConnection::connect(&format!("sqlite://{}", dir.join("audit.db").display()))
            .await
            .expect("open");
    sqlx::query("SELECT body FROM audit_events ORDER BY time_ms, id")
        .fetch_all(&mut conn)
        .await
        .expect("rows")
        .iter()
        .map(|row| {
            serde_json::from_str(&row.try_get::<String, _>("body").expect("body")).expect("json")
        })
        .collect()
}

/// Publishes `events` to the `audit` exchange as they are (persistent, confirmed).
async fn publish_raw(url: &str, events: &[Value]) {
    let events: Vec<audit_events::AuditEvent> = events
        .iter()
        .map(|e| serde_json::from_value(e.clone()).expect("event"))
        .collect();
    let mut publisher = audit_events::amqp::Publisher::new(url.to_owned(), "e2e".to_owned());
    publisher.publish(&events).await.expect("publish");
}
