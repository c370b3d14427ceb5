//! `docs/api.md` is generated here, from real answers of the real stack: `vitrine up`
//! (audit, storage, app, import-api, import-worker as child processes on the embedded defaults, in
//! a temp data dir on free ports) with Google Drive and Dropbox played by `fake-providers`
//! in this process. Every sample request of the page is sent, and its answer written down
//! with the values that change from run to run (ids, times, tokens, signatures, ports)
//! replaced by fixed placeholders.
//!
//! - `cargo test --test e2e_api_docs` fails when `docs/api.md` differs from what this run
//!   produced (a changed status, field, header or code shows up as a diff);
//! - `UPDATE_API_DOCS=1 cargo test --test e2e_api_docs` rewrites it.
//!
//! It also fails when a path of a service's live `/openapi.json` has no sample here.
//! Internal endpoints are signed with the keys the launcher generated (`keys.env`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;
use fake_providers::{Fault, Folder, Generate, Rule};
use reqwest::Method;
use serde_json::{json, Value};
use shared_signing::{BodyDigest, KeyRing, Purpose};

const DRIVE_KEY: &str = "docs-drive-key";
const DROPBOX_TOKEN: &str = "docs-dropbox-token";
const SELLER: &str = "seller-42";
const OTHER_SELLER: &str = "seller-7";

const SERVICES: [Service; 4] = [
    Service::App,
    Service::Storage,
    Service::Import,
    Service::Audit,
];

/// Which service a sample is sent to; its real address is shown as the launcher's default.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Service {
    App,
    Storage,
    Import,
    Audit,
}

impl Service {
    fn bind_var(self) -> &'static str {
        match self {
            Service::App => "APP_BIND",
            Service::Storage => "STORAGE_BIND",
            Service::Import => "IMPORT_BIND",
            Service::Audit => "AUDIT_BIND",
        }
    }

    fn default_bind(self) -> &'static str {
        match self {
            Service::App => "127.0.0.1:8081",
            Service::Storage => "127.0.0.1:8082",
            Service::Import => "127.0.0.1:8083",
            Service::Audit => "127.0.0.1:8085",
        }
    }
}

enum Body {
    None,
    Json(Value),
    /// Raw bytes, shown as a description.
    Bytes(Vec<u8>, String),
}

/// How an internal request is signed (`shared-signing` request signatures).
enum Signing {
    None,
    /// Buffered JSON body, digest-signed.
    Buffered(KeyRing),
    /// Streamed body, `UNSIGNED-PAYLOAD`.
    Streamed(KeyRing),
}

struct Call {
    service: Service,
    method: Method,
    /// The route as the OpenAPI document names it, e.g. `/products/{id}`.
    route: &'static str,
    /// Path and query actually sent.
    path: String,
    headers: Vec<(String, String)>,
    body: Body,
    signing: Signing,
    /// What the `id` field of this answer's objects is called in placeholders.
    id_name: &'static str,
}

impl Call {
    fn new(service: Service, method: Method, route: &'static str, path: impl Into<String>) -> Self {
        Call {
            service,
            method,
            route,
            path: path.into(),
            headers: Vec::new(),
            body: Body::None,
            signing: Signing::None,
            id_name: "id",
        }
    }

    fn bearer(mut self, token: &str) -> Self {
        self.headers
            .push(("Authorization".into(), format!("Bearer {token}")));
        self
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    fn bytes(mut self, bytes: Vec<u8>, description: &str) -> Self {
        self.body = Body::Bytes(bytes, description.into());
        self
    }

    fn signed(mut self, signing: Signing) -> Self {
        self.signing = signing;
        self
    }

    fn ids(mut self, name: &'static str) -> Self {
        self.id_name = name;
        self
    }
}

struct Answer {
    status: u16,
    json: Value,
}

/// Response headers worth showing (others, like `date` or `x-request-id`, change every run).
const SHOWN_HEADERS: [&str; 12] = [
    "content-type",
    "location",
    "retry-after",
    "idempotent-replayed",
    "www-authenticate",
    "etag",
    "cache-control",
    "content-security-policy",
    "x-content-type-options",
    "content-disposition",
    "accept-ranges",
    "content-length",
];

/// The page being written, and the run's volatile values with their placeholders.
struct Doc {
    out: String,
    http: reqwest::Client,
    binds: BTreeMap<Service, String>,
    /// The launcher's data directory (it appears in local-disk storage paths).
    data_dir: String,
    /// Real value → placeholder, applied to the whole page at the end.
    names: Vec<(String, String)>,
    used: BTreeSet<String>,
    /// (service, method, route) of every sample, to compare with the OpenAPI documents.
    covered: BTreeSet<(Service, String, String)>,
}

impl Doc {
    fn text(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Gives `value` the placeholder `<name>` (`<name-2>`… when taken).
    fn name(&mut self, value: &str, name: &str) {
        if value.is_empty() || self.names.iter().any(|(v, _)| v == value) {
            return;
        }
        let mut placeholder = format!("<{name}>");
        let mut n = 2;
        while self.used.contains(&placeholder) {
            placeholder = format!("<{name}-{n}>");
            n += 1;
        }
        self.used.insert(placeholder.clone());
        self.names.push((value.to_owned(), placeholder));
    }

    /// Names every UUID, cursor and token in an answer by the key it appears under.
    fn name_values(&mut self, value: &Value, id_name: &str) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if let Value::String(s) = v {
                        let name = match key.as_str() {
                            "id" => Some(id_name),
                            "next_cursor" => Some("cursor"),
                            "access_token" => Some("seller-jwt"),
                            "upload_id" | "image_id" => Some(key.as_str()),
                            k if is_uuid(s) => Some(k),
                            _ => None,
                        };
                        if let Some(name) = name {
                            self.name(s, name);
                        }
                    }
                    self.name_values(v, id_name);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.name_values(item, id_name);
                }
            }
            _ => {}
        }
    }

    fn url(&self, service: Service, path: &str) -> String {
        format!("http://{}{path}", self.binds[&service])
    }

    /// Sends `call`, writes the request and its answer, and returns the answer.
    async fn exchange(&mut self, title: &str, about: &str, call: Call) -> Answer {
        self.covered.insert((
            call.service,
            call.method.as_str().to_lowercase(),
            call.route.to_owned(),
        ));
        let url = self.url(call.service, &call.path);
        let mut request = self.http.request(call.method.clone(), &url);
        let mut shown: Vec<(String, String)> = call.headers.clone();
        for (name, value) in &call.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let body_bytes: Option<Vec<u8>> = match &call.body {
            Body::None => None,
            Body::Json(v) => Some(serde_json::to_vec(v).expect("json")),
            Body::Bytes(b, _) => Some(b.clone()),
        };
        if let Body::Json(_) = &call.body {
            request = request.header("Content-Type", "application/json");
            shown.push(("Content-Type".into(), "application/json".into()));
        }
        let digest = match &call.signing {
            Signing::None => None,
            Signing::Buffered(ring) => Some((
                ring,
                BodyDigest::of(body_bytes.as_deref().unwrap_or_default()),
            )),
            Signing::Streamed(ring) => Some((ring, BodyDigest::Unsigned)),
        };
        if let Some((ring, digest)) = digest {
            let uri: axum::http::Uri = call.path.parse().expect("uri");
            let headers = shared_signing::sign_request(
                ring,
                &call.method,
                &uri,
                digest,
                shared_signing::unix_now(),
            );
            for (name, value) in &headers {
                let value = value.to_str().expect("ascii");
                request = request.header(name.as_str(), value);
                let placeholder = match name.as_str() {
                    shared_signing::request::TIMESTAMP_HEADER => "<unix seconds>".to_owned(),
                    shared_signing::request::NONCE_HEADER => "<random nonce>".to_owned(),
                    shared_signing::request::SIGNATURE_HEADER => "<HMAC-SHA256>".to_owned(),
                    shared_signing::request::CONTENT_SHA256_HEADER
                        if value != shared_signing::request::UNSIGNED_PAYLOAD
                            && !matches!(call.body, Body::None) =>
                    {
                        "<SHA-256 of the body, hex>".to_owned()
                    }
                    _ => value.to_owned(),
                };
                shown.push((name.as_str().to_owned(), placeholder));
            }
        }
        if let Some(bytes) = body_bytes {
            request = request.body(bytes);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let json: Value = if content_type.starts_with("application/json") {
            serde_json::from_slice(&bytes).expect("JSON answer")
        } else {
            Value::Null
        };
        self.name_values(&json, call.id_name);

        // The request.
        let mut md = String::new();
        writeln!(md, "### {title}\n").ok();
        if !about.is_empty() {
            writeln!(md, "{about}\n").ok();
        }
        writeln!(md, "```http").ok();
        writeln!(md, "{} {} HTTP/1.1", call.method, call.path).ok();
        writeln!(md, "Host: {}", self.binds[&call.service]).ok();
        for (name, value) in &shown {
            writeln!(md, "{name}: {value}").ok();
        }
        match &call.body {
            Body::None => {}
            Body::Json(v) => {
                writeln!(md, "\n{}", serde_json::to_string_pretty(v).expect("json")).ok();
            }
            Body::Bytes(b, description) => {
                writeln!(md, "\n<{} bytes: {description}>", b.len()).ok();
            }
        }
        writeln!(md, "```\n").ok();

        // The answer.
        writeln!(md, "```http").ok();
        writeln!(
            md,
            "HTTP/1.1 {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .ok();
        for name in SHOWN_HEADERS {
            // A JSON body's length changes with its ids; a binary one's does not.
            if name == "content-length" && (json != Value::Null || bytes.is_empty()) {
                continue;
            }
            for value in headers.get_all(name) {
                writeln!(md, "{name}: {}", value.to_str().unwrap_or("<binary>")).ok();
            }
        }
        if json != Value::Null {
            writeln!(
                md,
                "\n{}",
                serde_json::to_string_pretty(&json).expect("json")
            )
            .ok();
        } else if content_type.starts_with("text/") {
            writeln!(md, "\n{}", String::from_utf8_lossy(&bytes).trim_end()).ok();
        } else if !bytes.is_empty() {
            writeln!(md, "\n<{} bytes of {content_type}>", bytes.len()).ok();
        }
        writeln!(md, "```\n").ok();
        self.out.push_str(&md);
        Answer {
            status: status.as_u16(),
            json,
        }
    }

    /// The finished page: every volatile value replaced by its placeholder.
    fn render(&self) -> String {
        let mut text = self.out.clone();
        for service in SERVICES {
            text = text.replace(&self.binds[&service], service.default_bind());
        }
        // Longest first, so that a value inside another is not replaced half-way.
        let mut names = self.names.clone();
        names.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        for (value, placeholder) in &names {
            text = text.replace(value.as_str(), placeholder);
        }
        let text = text.replace(&self.data_dir, "<data dir>");
        let text = replace_shards(&text);
        let text = replace_tokens(&text);
        let text = replace_url_lifetimes(&text);
        let text = replace_timestamps(&text);
        replace_uuids(&text)
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `blobs/images/3f/<image_id>` → `blobs/images/<shard>/<image_id>` (the shard comes
/// from the id).
fn replace_shards(text: &str) -> String {
    let marker = "blobs/images/";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = &rest[at + marker.len()..];
        out.push_str(&rest[..at + marker.len()]);
        let shard = after.len() > 3
            && after.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit)
            && after.as_bytes()[2] == b'/';
        if shard {
            out.push_str("<shard>");
            rest = &after[2..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `token=<…>` for the URL tokens storage mints (upload and download URLs).
fn replace_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("token=v1.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "token=".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(after.len());
        out.push_str("token=<url-token>");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `Cache-Control: private, max-age=300` → `max-age=<seconds the URL has left>`: storage
/// caches an image for what is left of its download URL's lifetime, one second less when
/// a second boundary falls between signing the URL and fetching it.
fn replace_url_lifetimes(text: &str) -> String {
    const MARKER: &str = "cache-control: private, max-age=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARKER) {
        out.push_str(&rest[..at + MARKER.len()]);
        let after = &rest[at + MARKER.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(if digits > 0 {
            "<seconds the URL has left>"
        } else {
            ""
        });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// RFC 3339 times (`2026-12-03T07:10:04.123Z`, `+00:00`) → `<timestamp>`.
fn replace_timestamps(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 19 <= b.len() {
        let shape = b"dddd-dd-ddTdd:dd:dd";
        let matches = shape.iter().enumerate().all(|(k, s)| match s {
            b'd' => b[i + k].is_ascii_digit(),
            c => b[i + k] == *c,
        });
        if !matches {
            i += 1;
            continue;
        }
        let mut end = i + 19;
        if end < b.len() && b[end] == b'.' {
            end += 1;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
        }
        if end < b.len() && b[end] == b'Z' {
            end += 1;
        } else if end + 6 <= b.len() && (b[end] == b'+' || b[end] == b'-') {
            end += 6;
        }
        out.push_str(&text[copied..i]);
        out.push_str("<timestamp>");
        copied = end;
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Any UUID not named by a sample → `<uuid-N>` in order of appearance.
fn replace_uuids(text: &str) -> String {
    let mut seen: Vec<String> = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 36 <= text.len() {
        if text.is_char_boundary(i) && text.is_char_boundary(i + 36) && is_uuid(&text[i..i + 36]) {
            let uuid = text[i..i + 36].to_owned();
            let n = match seen.iter().position(|s| *s == uuid) {
                Some(n) => n + 1,
                None => {
                    seen.push(uuid);
                    seen.len()
                }
            };
            out.push_str(&text[copied..i]);
            write!(out, "<uuid-{n}>").ok();
            i += 36;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Polls `GET /imports/{id}` (not written down) until the job is finished.
async fn wait_finished(doc: &Doc, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _, job) = send(
            doc.http
                .get(doc.url(Service::Import, &format!("/imports/{id}")))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(status, 200, "{job}");
        if job["state"] == "completed" || job["state"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "import not finished: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const INTRO: &str = "\
# API by example

Sample requests and the answers the services give, for every endpoint of the App
Service, the Storage Service (public and internal) and the Import Service. The field-by-field
reference is the OpenAPI documents ([app](openapi/app-service.json),
[storage](openapi/storage-service.json), [import](openapi/import-service.json); Swagger UI at
`/docs` on each service); every error code is listed there, and in
[security.md](security.md) and [import.md](import.md).

**This page is generated, not written.** `e2e/api_docs.rs` starts `vitrine up` (embedded
defaults) with Google Drive and Dropbox played by `fake-providers`, sends every request
below in this order, and writes down what came back. `cargo test --test e2e_api_docs` fails
when the page differs from a fresh run, and when a service's `/openapi.json` has a route
without a sample here; `UPDATE_API_DOCS=1 cargo test --test e2e_api_docs` rewrites it.
Values that change from run to run are shown as placeholders: `<seller-jwt>`, `<upload_id>`,
`<image_id>`, `<timestamp>` (RFC 3339, UTC), `token=<url-token>` (storage's signed URL
tokens), `<cursor>` and so on; the same placeholder is the same value throughout the page.
Addresses are the launcher's defaults. Response headers are limited to the ones that
matter to a client (no `date`, `x-request-id`, or JSON `content-length`).

Common to every service:

- Errors are always `{\"error\":{\"code\":\"stable-slug\",\"message\":\"…\"}}` with a status
  that fits; clients branch on `code`, never on `message`.
- Seller endpoints take `Authorization: Bearer <JWT>` (see [security.md](security.md#seller-tokens-service-kitsrcauth));
  another seller's resource is a `404`, exactly like a missing one.
- Lists are newest first (an import's items: in discovery order), keyset-paginated:
  `cursor` = the previous page's `next_cursor`; `limit` 1–100, default 20, for products
  (`next_cursor` absent on the last page), 1–500, default 50, for the Import Service
  (`next_cursor: null` on the last page).
- Every answer carries an `x-request-id` (the caller's, or a new UUID).
";

#[tokio::test]
async fn api_docs_match_the_running_services() {
    // One folder for both providers: an image, a Google Doc (Drive only), a PDF and a
    // broken .jpg. One image each, so lists come back in a fixed order.
    let folder = Folder::generated(
        Generate::images(1)
            .size(4096)
            .docs(1)
            .non_images(1)
            .broken(1)
            .seed(42),
    )
    .name("Spring catalogue");
    let data = tempfile::tempdir().expect("tempdir");
    let (fake, mut launcher, binds, log) =
        launch_with_fake_folder(folder, DRIVE_KEY, DROPBOX_TOKEN, data.path()).await;
    for var in [
        "APP_BIND",
        "IMPORT_BIND",
        "IMPORT_WORKER_METRICS_BIND",
        "AUDIT_BIND",
    ] {
        launcher.wait_ready(&binds[var], &log).await;
    }
    let keys = launcher_keys(data.path());
    let app_keys = KeyRing::parse(&keys["APP_STORAGE_KEYS"]).expect("app ring");
    let import_keys = KeyRing::parse(&keys["IMPORT_STORAGE_KEYS"]).expect("import ring");

    let mut doc = Doc {
        out: String::new(),
        http: http_client(),
        binds: SERVICES
            .into_iter()
            .map(|s| (s, binds[s.bind_var()].clone()))
            .collect(),
        data_dir: data.path().display().to_string(),
        names: Vec::new(),
        used: BTreeSet::new(),
        covered: BTreeSet::new(),
    };
    doc.text(INTRO);

    // ------------------------------------------------------------------ App Service
    doc.text(
        "## App Service (`app-service`, :8081)\n\n\
         Seller auth, upload URLs, products. Flow 1 of [architecture.md](architecture.md).\n",
    );
    let issued = doc
        .exchange(
            "`POST /auth/token`: a dev seller token",
            "The dev issuer: only with `AUTH_DEV_LOGIN=true` (the embedded stack turns it on; \
             production leaves it off and uses an identity provider). `vitrine token --seller ID` \
             prints the same kind of token.",
            Call::new(Service::App, Method::POST, "/auth/token", "/auth/token")
                .json(json!({ "seller_id": SELLER })),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.json);
    let token = issued.json["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, _, other) = send(
        doc.http
            .post(doc.url(Service::App, "/auth/token"))
            .json(&json!({ "seller_id": OTHER_SELLER })),
    )
    .await;
    let other_token = other["access_token"].as_str().expect("token").to_owned();
    doc.name(&other_token, "other-seller-jwt");

    let image = png(2048);
    let sha = sha256_hex(&image);
    let ticket = doc
        .exchange(
            "`POST /uploads`: ask for an upload URL",
            "The browser computes the SHA-256 first. The answer says where and how to send the \
             bytes; the URL is single-use and expires at `expires_at` (`UPLOAD_URL_TTL_SECS`).",
            Call::new(Service::App, Method::POST, "/uploads", "/uploads")
                .bearer(&token)
                .json(json!({
                    "filename": "red-shoe.png",
                    "content_type": "image/png",
                    "size": image.len(),
                    "sha256": sha,
                })),
        )
        .await;
    assert_eq!(ticket.status, 201, "{}", ticket.json);
    doc.exchange(
        "`POST /uploads` without a token",
        "Every seller endpoint answers the same way.",
        Call::new(Service::App, Method::POST, "/uploads", "/uploads").json(json!({
            "filename": "red-shoe.png",
            "content_type": "image/png",
            "size": image.len(),
            "sha256": sha,
        })),
    )
    .await;
    doc.exchange(
        "`POST /uploads` with a type storage does not take",
        "Checked with storage's own rules before anything is signed.",
        Call::new(Service::App, Method::POST, "/uploads", "/uploads")
            .bearer(&token)
            .json(json!({
                "filename": "logo.svg",
                "content_type": "image/svg+xml",
                "size": 1200,
                "sha256": sha,
            })),
    )
    .await;

    // The PUT goes to storage: shown in the storage section, sent now.
    let upload_url = ticket.json["upload_url"].as_str().expect("url").to_owned();
    let upload_path = upload_url
        .strip_prefix(&format!("http://{}", binds["STORAGE_BIND"]))
        .expect("storage URL")
        .to_owned();
    let mut put = Call::new(
        Service::Storage,
        Method::PUT,
        "/uploads/{upload_id}",
        upload_path.clone(),
    )
    .bytes(image.clone(), "the PNG");
    for (name, value) in ticket.json["headers"].as_object().expect("headers") {
        put = put.header(name, value.as_str().expect("header"));
    }
    let mut storage_doc = std::mem::take(&mut doc.out);
    let uploaded = doc
        .exchange(
            "`PUT /uploads/{upload_id}?token=…`: the pre-signed upload",
            "Straight from the browser to storage, with the headers `POST /uploads` returned. \
             The token in the URL is the only credential. Storage streams the body through its \
             checks (size, SHA-256, magic bytes, image header, complete structure) and commits \
             only if all pass.",
            put,
        )
        .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.json);
    let image_id = uploaded.json["image_id"].as_str().expect("id").to_owned();
    let mut put_again = Call::new(
        Service::Storage,
        Method::PUT,
        "/uploads/{upload_id}",
        upload_path,
    )
    .bytes(image.clone(), "the PNG");
    for (name, value) in ticket.json["headers"].as_object().expect("headers") {
        put_again = put_again.header(name, value.as_str().expect("header"));
    }
    doc.exchange(
        "The same URL again",
        "Single use: a second `PUT` (a replay, or a retry after success) stores nothing.",
        put_again,
    )
    .await;
    // A fresh URL, then the wrong bytes for it.
    let (status, _, second) = send(
        doc.http
            .post(doc.url(Service::App, "/uploads"))
            .bearer_auth(&token)
            .json(&json!({
                "filename": "blue-shoe.png",
                "content_type": "image/png",
                "size": image.len(),
                "sha256": sha,
            })),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    doc.name(second["upload_id"].as_str().expect("id"), "upload_id");
    let mut tampered = image.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 0xff;
    let second_path = second["upload_url"]
        .as_str()
        .expect("url")
        .strip_prefix(&format!("http://{}", binds["STORAGE_BIND"]))
        .expect("storage URL")
        .to_owned();
    doc.exchange(
        "Bytes that are not the ones announced",
        "Same size, one byte changed: the SHA-256 differs, nothing is stored, and the URL can \
         be used again with the right bytes until it expires.",
        Call::new(
            Service::Storage,
            Method::PUT,
            "/uploads/{upload_id}",
            second_path,
        )
        .header("content-type", "image/png")
        .bytes(tampered, "the PNG with one byte changed"),
    )
    .await;
    std::mem::swap(&mut doc.out, &mut storage_doc);

    let product_body = json!({
        "name": "Red running shoe",
        "description": "Lightweight, size 42.",
        "price_minor": 4999,
        "currency": "EUR",
        "image_id": image_id,
    });
    let product = doc
        .exchange(
            "`POST /product`: create a product with the uploaded image",
            "Storage is asked whether the image exists, is complete and belongs to this seller. \
             `Idempotency-Key` (optional) makes a retry safe.",
            Call::new(Service::App, Method::POST, "/product", "/product")
                .bearer(&token)
                .header("Idempotency-Key", "order-form-1")
                .json(product_body.clone())
                .ids("product_id"),
        )
        .await;
    assert_eq!(product.status, 201, "{}", product.json);
    let product_id = product.json["id"].as_str().expect("id").to_owned();
    doc.exchange(
        "`POST /product` retried with the same key and body",
        "The first product comes back, marked `Idempotent-Replayed`; nothing new is created.",
        Call::new(Service::App, Method::POST, "/product", "/product")
            .bearer(&token)
            .header("Idempotency-Key", "order-form-1")
            .json(product_body.clone()),
    )
    .await;
    let mut changed = product_body.clone();
    changed["price_minor"] = json!(3999);
    doc.exchange(
        "`POST /product`: the same key with another body",
        "",
        Call::new(Service::App, Method::POST, "/product", "/product")
            .bearer(&token)
            .header("Idempotency-Key", "order-form-1")
            .json(changed),
    )
    .await;
    doc.exchange(
        "`POST /product` with another seller's image",
        "Answered exactly like an image that does not exist, so ids cannot be probed.",
        Call::new(Service::App, Method::POST, "/product", "/product")
            .bearer(&other_token)
            .json(product_body.clone()),
    )
    .await;
    doc.exchange(
        "`GET /products`: your products",
        "Newest first, each with a short-lived signed `image_url` (storage's download URL).",
        Call::new(Service::App, Method::GET, "/products", "/products?limit=10").bearer(&token),
    )
    .await;
    doc.exchange(
        "`GET /products/{product_id}`",
        "",
        Call::new(
            Service::App,
            Method::GET,
            "/products/{product_id}",
            format!("/products/{product_id}"),
        )
        .bearer(&token),
    )
    .await;
    doc.exchange(
        "`GET /products/{product_id}` as another seller",
        "",
        Call::new(
            Service::App,
            Method::GET,
            "/products/{product_id}",
            format!("/products/{product_id}"),
        )
        .bearer(&other_token),
    )
    .await;

    // -------------------------------------------------------------- Storage Service
    doc.text(
        "## Storage Service (`storage-service`, :8082): public endpoints\n\n\
         No bearer token: the signed token in the URL is the credential.\n",
    );
    doc.out.push_str(&storage_doc);
    let (status, _, urls) = send_signed(
        &doc,
        &app_keys,
        "/internal/download-urls",
        &json!({ "image_ids": [image_id], "ttl_seconds": 300 }),
    )
    .await;
    assert_eq!(status, 200, "{urls}");
    let download_path = urls["urls"][0]["url"]
        .as_str()
        .expect("url")
        .strip_prefix(&format!("http://{}", binds["STORAGE_BIND"]))
        .expect("storage URL")
        .to_owned();
    doc.exchange(
        "`GET /images/{image_id}/content?token=…`: the bytes",
        "A download URL from `POST /internal/download-urls` (the `image_url` of a product, the \
         `url` of an imported image). Served with the stored type and headers that keep a \
         browser from reading it as anything else; `Range` requests are honoured.",
        Call::new(
            Service::Storage,
            Method::GET,
            "/images/{image_id}/content",
            download_path.clone(),
        ),
    )
    .await;
    doc.exchange(
        "A range of the bytes",
        "",
        Call::new(
            Service::Storage,
            Method::GET,
            "/images/{image_id}/content",
            download_path,
        )
        .header("Range", "bytes=0-7"),
    )
    .await;

    doc.text(
        "## Storage Service: internal endpoints (signed service requests)\n\n\
         Only the App Service (key ring `APP_STORAGE_KEYS`) and import workers \
         (`IMPORT_STORAGE_KEYS`) call these; each request is signed with \
         `shared-signing` (see [security.md](security.md#service-to-service-requests-shared-signingrequest)). \
         The samples below are signed with the keys `vitrine up` generated; placeholders stand \
         for the per-request timestamp, nonce and MAC. Which key id signed tells storage who \
         is calling.\n",
    );
    let now = shared_signing::unix_now();
    let metadata = |filename: &str| {
        app_keys
            .mint_json(
                Purpose::UPLOAD_METADATA,
                &json!({
                    "seller_id": SELLER,
                    "filename": filename,
                    "content_type": "image/png",
                    "size": image.len(),
                    "sha256": sha,
                }),
                now,
                Duration::from_secs(60),
            )
            .expect("metadata token")
    };
    let meta1 = metadata("green-shoe.png");
    doc.name(&meta1, "metadata-token");
    doc.exchange(
        "`POST /internal/presign` (app-service)",
        "`metadata_token` is the upload's metadata (`seller_id`, `filename`, `content_type`, \
         `size`, `sha256`) as a token minted by the app with purpose `upload-metadata` and the \
         app↔storage key, valid 60 s. This is what `POST /uploads` does for one upload.",
        Call::new(
            Service::Storage,
            Method::POST,
            "/internal/presign",
            "/internal/presign",
        )
        .signed(Signing::Buffered(app_keys.clone()))
        .json(json!({ "metadata_token": meta1 })),
    )
    .await;
    let meta2 = metadata("yellow-shoe.png");
    doc.name(&meta2, "metadata-token");
    doc.exchange(
        "`POST /internal/presign/batch` (app-service)",
        "Up to 100 uploads in one call and one write; each result is an `upload` or an \
         `error`, in request order. The app coalesces concurrent `POST /uploads` into these.",
        Call::new(
            Service::Storage,
            Method::POST,
            "/internal/presign/batch",
            "/internal/presign/batch",
        )
        .signed(Signing::Buffered(app_keys.clone()))
        .json(json!({ "metadata_tokens": [meta2, "v1.app1.0.1.e30.AAAA"] })),
    )
    .await;
    doc.exchange(
        "`POST /internal/presign` unsigned",
        "",
        Call::new(
            Service::Storage,
            Method::POST,
            "/internal/presign",
            "/internal/presign",
        )
        .json(json!({ "metadata_token": "v1.app1.0.1.e30.AAAA" })),
    )
    .await;
    doc.exchange(
        "`GET /internal/images/{image_id}` (app-service, import workers)",
        "What the app checks before it accepts an image for a product.",
        Call::new(
            Service::Storage,
            Method::GET,
            "/internal/images/{image_id}",
            format!("/internal/images/{image_id}"),
        )
        .signed(Signing::Buffered(app_keys.clone())),
    )
    .await;
    let missing = "0190f5c2-0000-7000-8000-000000000000";
    doc.name(missing, "unknown_image_id");
    doc.exchange(
        "`POST /internal/download-urls` (app-service, import workers)",
        "Short-lived signed URLs (purpose `download-url`, a key only storage holds), at most \
         1,000 ids per call and 24 h; ids without a complete image come back in `missing`.",
        Call::new(
            Service::Storage,
            Method::POST,
            "/internal/download-urls",
            "/internal/download-urls",
        )
        .signed(Signing::Buffered(app_keys.clone()))
        .json(json!({ "image_ids": [image_id, missing], "ttl_seconds": 300 })),
    )
    .await;
    let jpeg_bytes = jpeg(3000);
    let ingest_query = format!(
        "/internal/ingest?owner_id={SELLER}&content_type=image%2Fjpeg&size={}&sha256={}\
         &filename=beach.jpg&source=google-drive&source_ref=1AbCdEfGh&idempotency_key=google-drive%3A{}",
        jpeg_bytes.len(),
        sha256_hex(&jpeg_bytes),
        sha256_hex(b"docs sample"),
    );
    let ingest = Call::new(
        Service::Storage,
        Method::POST,
        "/internal/ingest",
        ingest_query.clone(),
    )
    .header("Content-Type", "image/jpeg")
    .signed(Signing::Streamed(import_keys.clone()))
    .bytes(jpeg_bytes.clone(), "the JPEG, streamed");
    let ingested = doc
        .exchange(
            "`POST /internal/ingest` (import workers)",
            "A worker streams one provider file. What the body must be travels in the signed \
             query (size, type, digests, owner, source, idempotency key); the body itself is \
             signed `UNSIGNED-PAYLOAD` and checked by the same write path as an upload.",
            ingest,
        )
        .await;
    assert_eq!(ingested.status, 201, "{}", ingested.json);
    doc.exchange(
        "`POST /internal/ingest` again with the same idempotency key",
        "A worker that died after storage committed sends the file again: the same image comes \
         back (`200`), nothing is stored twice.",
        Call::new(
            Service::Storage,
            Method::POST,
            "/internal/ingest",
            ingest_query,
        )
        .header("Content-Type", "image/jpeg")
        .signed(Signing::Streamed(import_keys.clone()))
        .bytes(jpeg_bytes, "the JPEG, streamed"),
    )
    .await;

    // --------------------------------------------------------------- Import Service
    doc.text(
        "## Import Service (`import-api`, :8083)\n\n\
         Flow 2 of [architecture.md](architecture.md); how an import runs, every failure \
         `reason`, and the limits: [import.md](import.md). The folder below holds one image, \
         one Google Doc, one PDF and one broken `.jpg` (a JPEG name and type, bytes that are \
         not an image).\n",
    );
    // Listings answer 5 s late until the import is finished, so that the `202` (counted
    // from the database after the commit) is read before any worker has listed the folder
    // (with 1.5 s the page once differed, on a machine at load average 12).
    let slow_listings = || {
        Rule::new(
            fake_providers::RouteMatch::Listing,
            Fault::Delay { ms: 5000 },
        )
    };
    fake.faults().add(slow_listings());
    let drive_url = fake.drive_folders()[0].url.clone();
    let dropbox_url = fake.dropbox_links()[0].url.clone();
    let started = doc
        .exchange(
            "`POST /import/google-drive`: import a public Drive folder",
            "The URL is parsed, never fetched; the provider's API is asked whether the folder \
             is public; then `202` with the job, and the work goes to the queue.",
            Call::new(
                Service::Import,
                Method::POST,
                "/import/google-drive",
                "/import/google-drive",
            )
            .bearer(&token)
            .json(json!({ "folder_url": drive_url }))
            .ids("import_id"),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.json);
    let drive_job = started.json["id"].as_str().expect("id").to_owned();
    doc.exchange(
        "`POST /import/google-drive` with a URL that is not a Drive folder",
        "Other hosts, look-alikes, IP addresses, file links and other schemes are refused before \
         anything is stored or sent.",
        Call::new(
            Service::Import,
            Method::POST,
            "/import/google-drive",
            "/import/google-drive",
        )
        .bearer(&token)
        .json(json!({ "folder_url": "http://169.254.169.254/latest/meta-data/" })),
    )
    .await;
    wait_finished(&doc, &token, &drive_job).await;
    fake.faults().clear();
    doc.exchange(
        "`GET /imports/{id}`: state and counts",
        "Polled here until `completed`. `in_progress` = files waiting or being copied.",
        Call::new(
            Service::Import,
            Method::GET,
            "/imports/{id}",
            format!("/imports/{drive_job}"),
        )
        .bearer(&token),
    )
    .await;
    doc.exchange(
        "`GET /imports/{id}/events`: progress as server-sent events",
        "A `progress` event with the job whenever it changes, then `done`, then the stream \
         ends (at once here: the import is finished). Browsers read it with `fetch`, since \
         `EventSource` cannot send the `Authorization` header.",
        Call::new(
            Service::Import,
            Method::GET,
            "/imports/{id}/events",
            format!("/imports/{drive_job}/events"),
        )
        .bearer(&token),
    )
    .await;
    doc.exchange(
        "`GET /imports/{id}/items?status=failed`: what went wrong",
        "`status` is one of `pending`, `importing`, `imported`, `skipped`, `failed`; without \
         it, every item.",
        Call::new(
            Service::Import,
            Method::GET,
            "/imports/{id}/items",
            format!("/imports/{drive_job}/items?status=failed"),
        )
        .bearer(&token)
        .ids("item_id"),
    )
    .await;
    doc.exchange(
        "`GET /imports/{id}/items?status=skipped`",
        "",
        Call::new(
            Service::Import,
            Method::GET,
            "/imports/{id}/items",
            format!("/imports/{drive_job}/items?status=skipped"),
        )
        .bearer(&token)
        .ids("item_id"),
    )
    .await;
    fake.faults().add(slow_listings());
    let dropbox = doc
        .exchange(
            "`POST /import/dropbox`: import a Dropbox shared folder",
            "The same folder shared over Dropbox (no Google Doc there).",
            Call::new(
                Service::Import,
                Method::POST,
                "/import/dropbox",
                "/import/dropbox",
            )
            .bearer(&token)
            .json(json!({ "folder_url": dropbox_url }))
            .ids("import_id"),
        )
        .await;
    assert_eq!(dropbox.status, 202, "{}", dropbox.json);
    let dropbox_job = dropbox.json["id"].as_str().expect("id").to_owned();
    wait_finished(&doc, &token, &dropbox_job).await;
    fake.faults().clear();
    doc.exchange(
        "`GET /imports`: your imports",
        "Newest first; `limit=1` to show the cursor.",
        Call::new(Service::Import, Method::GET, "/imports", "/imports?limit=1").bearer(&token),
    )
    .await;
    let images = doc
        .exchange(
            "`GET /images`: your imported images",
            "Newest first, both sources; `source=google_drive` or `source=dropbox` filters. Each \
             with a signed `url` valid `IMAGE_URL_TTL_SECS`.",
            Call::new(Service::Import, Method::GET, "/images", "/images?limit=1").bearer(&token),
        )
        .await;
    assert_eq!(images.status, 200, "{}", images.json);
    let drive_images = doc
        .exchange(
            "`GET /images?source=google_drive`",
            "Drive images carry `google_drive_id`.",
            Call::new(
                Service::Import,
                Method::GET,
                "/images",
                "/images?source=google_drive",
            )
            .bearer(&token),
        )
        .await;
    let drive_image = drive_images.json["items"][0]["image_id"]
        .as_str()
        .expect("image")
        .to_owned();
    doc.exchange(
        "`GET /images/{id}`",
        "",
        Call::new(
            Service::Import,
            Method::GET,
            "/images/{id}",
            format!("/images/{drive_image}"),
        )
        .bearer(&token),
    )
    .await;
    doc.exchange(
        "`GET /images/{id}` as another seller",
        "",
        Call::new(
            Service::Import,
            Method::GET,
            "/images/{id}",
            format!("/images/{drive_image}"),
        )
        .bearer(&other_token),
    )
    .await;
    // The broken file's next download answers 503 until the answer below is written,
    // so that the job is read while its file is still waiting, whatever the timing.
    fake.faults().add(
        Rule::new(
            fake_providers::RouteMatch::Download,
            Fault::ServerError { status: 503 },
        )
        .file("broken-001.jpg"),
    );
    doc.exchange(
        "`POST /imports/{id}/retry`: try the failed files again",
        "Every failed file (and listing page) goes back in line; the job is `importing` again. \
         Skipped entries are not retried. (This broken file will fail again.)",
        Call::new(
            Service::Import,
            Method::POST,
            "/imports/{id}/retry",
            format!("/imports/{drive_job}/retry"),
        )
        .bearer(&token),
    )
    .await;
    fake.faults().clear();

    // ----------------------------------------------------------------- Audit Service
    audit_samples(&mut doc, &keys).await;

    // ----------------------------------------------------------------- every service
    doc.text(
        "## Every service: health, metrics, API documents\n\n\
         `GET /healthz` (the process is up), `GET /readyz` (its database, and for storage the \
         blob store, answer; `503` otherwise), `GET /metrics` (Prometheus text), \
         `GET /openapi.json` and Swagger UI at `/docs`. The import worker serves only the \
         first three, on `IMPORT_WORKER_METRICS_BIND`.\n",
    );
    doc.exchange(
        "`GET /healthz`",
        "",
        Call::new(Service::Storage, Method::GET, "/healthz", "/healthz"),
    )
    .await;
    doc.exchange(
        "`GET /readyz`",
        "",
        Call::new(Service::Storage, Method::GET, "/readyz", "/readyz"),
    )
    .await;

    // Every route of every live OpenAPI document has a sample.
    let mut undocumented = Vec::new();
    for service in SERVICES {
        let (status, _, spec) = send(doc.http.get(doc.url(service, "/openapi.json"))).await;
        assert_eq!(status, 200);
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("item").keys() {
                let key = (service, method.clone(), path.clone());
                if !doc.covered.contains(&key) {
                    undocumented.push(format!("{service:?} {method} {path}"));
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "routes without a sample in docs/api.md (add one to e2e/api_docs.rs): {undocumented:?}"
    );

    let page = doc.render();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    if std::env::var_os("UPDATE_API_DOCS").is_some() {
        std::fs::write(&path, &page).expect("write docs/api.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != page {
        let diff = committed
            .lines()
            .zip(page.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(n, (a, b))| format!("line {}:\n  docs/api.md: {a}\n  the services: {b}", n + 1))
            .unwrap_or_else(|| "the pages differ in length".to_owned());
        panic!(
            "docs/api.md is stale: the services answer differently. First difference, {diff}\n\
             Regenerate with `UPDATE_API_DOCS=1 cargo test --test e2e_api_docs` and review the diff."
        );
    }
}

/// A signed JSON `POST` to storage, not written down.
async fn send_signed(
    doc: &Doc,
    ring: &KeyRing,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    let headers = shared_signing::sign_request(
        ring,
        &Method::POST,
        &path.parse().expect("uri"),
        BodyDigest::of(&bytes),
        shared_signing::unix_now(),
    );
    send(
        doc.http
            .post(doc.url(Service::Storage, path))
            .headers(headers)
            .header("content-type", "application/json")
            .body(bytes),
    )
    .await
}

/// The audit service: reading the trail, and a signed delivery.
async fn audit_samples(doc: &mut Doc, keys: &BTreeMap<String, String>) {
    doc.text(
        "## Audit Service (`audit`, :8085)\n\n\
         Security-relevant events of every service, stored once each ([audit.md](audit.md)). \
         Operators read them with a token from `vitrine token --audit` (purpose `audit-read`, \
         key ring `AUDIT_ADMIN_KEYS`).\n",
    );
    let admin = KeyRing::parse(&keys["AUDIT_ADMIN_KEYS"]).expect("admin ring");
    let operator = admin
        .mint_json(
            Purpose::new("audit-read"),
            &json!({ "sub": "ops" }),
            shared_signing::unix_now(),
            Duration::from_secs(3600),
        )
        .expect("operator token");
    doc.name(&operator, "operator-token");
    // Events arrive in the background: wait until the oldest product is there.
    let query = format!("/audit?seller_id={SELLER}&type=product.created&limit=1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, page) = send(
            doc.http
                .get(doc.url(Service::Audit, &query))
                .bearer_auth(&operator),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        if page["events"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no product.created event after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    doc.exchange(
        "`GET /audit`: read the trail",
        "Filters: `seller_id`, `type`, `since` (RFC 3339); `limit` 1–1000 (default 100), oldest \
         first; `next_cursor` is there when the page is full (pass it as `cursor`).",
        Call::new(Service::Audit, Method::GET, "/audit", query)
            .bearer(&operator)
            .ids("event-id"),
    )
    .await;
    doc.exchange(
        "`GET /audit` without a token",
        "A refused token is itself recorded (`auth.failed`, service `audit`).",
        Call::new(Service::Audit, Method::GET, "/audit", "/audit"),
    )
    .await;
    doc.exchange(
        "`GET /audit` with an unknown type",
        "",
        Call::new(Service::Audit, Method::GET, "/audit", "/audit?type=upload").bearer(&operator),
    )
    .await;
    let ring = KeyRing::parse(&keys["AUDIT_KEYS"]).expect("audit ring");
    let event = json!({
        "id": uuid::Uuid::now_v7(),
        "type": "auth.failed",
        "time": "2026-12-01T12:00:00.000Z",
        "service": "app-service",
        "seller_id": null,
        "request_id": "req-1",
        "subject_id": null,
        "reason": "token-expired",
        "details": { "method": "GET", "path": "/products" }
    });
    doc.exchange(
        "`POST /internal/events`: a service's outbox delivers",
        "What the relay of each service sends on the embedded stack (`AUDIT_URL=http://…`), \
         signed with `AUDIT_KEYS`. An id already stored is skipped (`stored` counts the new ones).",
        Call::new(
            Service::Audit,
            Method::POST,
            "/internal/events",
            "/internal/events",
        )
        .json(json!({ "events": [event] }))
        .signed(Signing::Buffered(ring)),
    )
    .await;
}
