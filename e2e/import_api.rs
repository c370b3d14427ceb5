//! The Import API's edges, over real HTTP with `fake-providers` behind it: every folder
//! URL form users paste is accepted (against the emulator's real folder ids), every other
//! URL and every bad token, body, id, filter, limit or cursor gets a JSON error with a
//! stable code and leaves nothing behind (no job, listing, item or queued task, and no
//! request to a provider), one seller never sees another's imports or images, keyset
//! pagination has no gaps or repeats, and the OpenAPI document and Swagger UI are served.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use common::import::{seller, ImportOptions, ImportStack};
use common::{assert_error, claims, hs256_token, random_secret, send, DEV_KID};
use fake_providers::{FakeProviders, Folder, Generate, Route};
use reqwest::Method;
use serde_json::{json, Value};

const FINISH: Duration = Duration::from_secs(60);

type Answer = (u16, reqwest::header::HeaderMap, Value);

// ------------------------------------------------------------------- harness

/// Drive: a public folder (3 images, named), one that needs its resource key, a private
/// one. Dropbox: a public link (2 images, named), a private one.
fn fake() -> FakeProviders {
    FakeProviders::builder()
        .drive_folder(Folder::generated(Generate::images(3).size(8 * 1024)).name("Spring catalog"))
        .drive_folder(
            Folder::generated(Generate::images(2).size(8 * 1024).seed(2))
                .name("Keyed folder")
                .with_resource_key(),
        )
        .drive_folder(Folder::generated(Generate::images(2).size(8 * 1024).seed(3)).private())
        .dropbox_folder(Folder::generated(Generate::images(2).size(8 * 1024)).name("Lookbook 2026"))
        .dropbox_folder(Folder::generated(Generate::images(2).size(8 * 1024).seed(4)).private())
        .build()
        .expect("fake providers")
}

/// The embedded stack; `workers` in-process workers (0: jobs are created, never run).
async fn start(fake: FakeProviders, workers: usize, test: &str) -> ImportStack {
    start_with(fake, workers, &[], test).await
}

async fn start_with(
    fake: FakeProviders,
    workers: usize,
    extra: &[(&str, &str)],
    test: &str,
) -> ImportStack {
    let options = ImportOptions {
        in_process_workers: workers,
        extra: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ImportOptions::default()
    };
    ImportStack::start(fake, options, test)
        .await
        .expect("the embedded stack needs no backend")
}

/// Rows in one of the import database's tables.
async fn rows(stack: &ImportStack, table: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(stack.api.repo.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

/// Nothing was created anywhere: no job, listing, item or queued task, no image in
/// storage, and the providers were never asked.
async fn assert_nothing_stored(stack: &ImportStack, provider_requests: u64) {
    for table in [
        "import_jobs",
        "import_listings",
        "import_items",
        "images",
        "tq_tasks",
    ] {
        assert_eq!(rows(stack, table).await, 0, "rows in {table}");
    }
    assert_eq!(stack.storage_rows().await, 0, "image rows in storage");
    assert_eq!(
        stack.fake.stats().total,
        provider_requests,
        "requests to the providers: {:?}",
        stack.fake.stats()
    );
}

async fn post_json(stack: &ImportStack, path: &str, seller: &str, body: Value) -> Answer {
    send(stack.request(Method::POST, path, seller).json(&body)).await
}

/// The error message must not echo scripts or markup back.
#[track_caller]
fn assert_plain_message(answer: &Answer) {
    let message = answer.2["error"]["message"].as_str().unwrap_or_default();
    for bad in ["<script", "alert("] {
        assert!(!message.contains(bad), "message echoes `{bad}`: {message}");
    }
}

/// Every page of a list endpoint at `limit` per page: the items and the page sizes.
async fn walk(
    stack: &ImportStack,
    seller: &str,
    path: &str,
    limit: u32,
) -> (Vec<Value>, Vec<usize>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, _, page) = stack.get(&url, seller).await;
        assert_eq!(status, 200, "{url}: {page}");
        let batch = page["items"].as_array().expect("items").clone();
        assert!(
            batch.len() <= limit as usize,
            "{url}: {} items",
            batch.len()
        );
        sizes.push(batch.len());
        items.extend(batch);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, sizes),
        }
        assert!(sizes.len() < 100, "{path}: the cursor never ends");
    }
}

fn field(items: &[Value], name: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[name].as_str().expect(name).to_owned())
        .collect()
}

#[track_caller]
fn assert_strictly_descending(ids: &[String]) {
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first without repeats: {ids:?}"
    );
}

// ------------------------------------------------------------- folder URLs

#[tokio::test]
async fn every_folder_url_form_users_paste_is_accepted() {
    // No workers: every accepted import stays running, so lift the per-seller limit.
    let stack = start_with(
        fake(),
        0,
        &[("IMPORT_MAX_RUNNING_PER_SELLER", "100")],
        "api_url_forms",
    )
    .await;
    let s = seller();
    let drive = &stack.fake.drive_folders()[0];
    let keyed = &stack.fake.drive_folders()[1];
    let (id, kid) = (drive.id.clone(), keyed.id.clone());
    let key = keyed.resource_key.clone().expect("resource key");
    let mut accepted = Vec::new();

    let drive_forms = [
        drive.url.clone(),
        format!("https://drive.google.com/drive/folders/{id}"),
        format!("https://drive.google.com/drive/folders/{id}?usp=sharing"),
        format!("https://drive.google.com/drive/folders/{id}?usp=drive_link"),
        format!("https://drive.google.com/drive/folders/{id}/"),
        format!("https://drive.google.com/drive/u/0/folders/{id}"),
        format!("https://drive.google.com/drive/u/2/folders/{id}?usp=sharing"),
        format!("https://drive.google.com/drive/mobile/folders/{id}"),
        format!("https://drive.google.com/open?id={id}"),
        format!("https://drive.google.com/open?id={id}&usp=sharing"),
        format!("https://drive.google.com/folderview?id={id}"),
        format!("http://drive.google.com/drive/folders/{id}"),
        format!("  https://DRIVE.google.com/drive/folders/{id}  "),
    ];
    for url in &drive_forms {
        let answer = stack.start_import(&s, "google-drive", url).await;
        assert_eq!(answer.0, 202, "{url}: {}", answer.2);
        assert_eq!(answer.2["provider"], "google_drive", "{url}");
        assert_eq!(answer.2["folder_url"], url.trim(), "{url}");
        // The API asked Drive about the folder the link names.
        assert_eq!(
            answer.2["folder_name"], "Spring catalog",
            "{url}: {}",
            answer.2
        );
        assert_eq!(answer.2["state"], "listing", "{url}: {}", answer.2);
        accepted.push(answer.2["id"].as_str().unwrap().to_owned());
    }

    // The emulator hides this folder without its resource key: these prove the key in
    // the link reaches Drive.
    let keyed_forms = [
        keyed.url.clone(),
        format!("https://drive.google.com/drive/folders/{kid}?resourcekey={key}"),
        format!("https://drive.google.com/drive/u/1/folders/{kid}?usp=sharing&resourcekey={key}"),
        format!("https://drive.google.com/open?id={kid}&resourcekey={key}"),
    ];
    for url in &keyed_forms {
        let answer = stack.start_import(&s, "google-drive", url).await;
        assert_eq!(answer.0, 202, "{url}: {}", answer.2);
        assert_eq!(
            answer.2["folder_name"], "Keyed folder",
            "{url}: {}",
            answer.2
        );
        accepted.push(answer.2["id"].as_str().unwrap().to_owned());
    }

    let link = &stack.fake.dropbox_links()[0];
    let (lid, rlkey) = (link.link_id.clone(), link.rlkey.clone());
    let dropbox_forms = [
        link.url.clone(),
        format!("https://www.dropbox.com/scl/fo/{lid}/h?rlkey={rlkey}"),
        format!("https://www.dropbox.com/scl/fo/{lid}/h?rlkey={rlkey}&st=q1w2e3r4&dl=1"),
        format!("https://dropbox.com/scl/fo/{lid}/h?dl=0&rlkey={rlkey}"),
        format!("https://www.dropbox.com/scl/fo/{lid}?rlkey={rlkey}"),
    ];
    for url in &dropbox_forms {
        let before = stack.fake.stats().route(Route::DropboxList);
        let answer = stack.start_import(&s, "dropbox", url).await;
        assert_eq!(answer.0, 202, "{url}: {}", answer.2);
        assert_eq!(answer.2["provider"], "dropbox", "{url}");
        assert_eq!(answer.2["folder_url"], url.as_str(), "{url}");
        // The API asked Dropbox what the link is: the folder's own name, not the link id.
        assert_eq!(
            answer.2["folder_name"], "Lookbook 2026",
            "{url}: {}",
            answer.2
        );
        assert_eq!(
            stack.fake.stats().route(Route::DropboxList),
            before + 1,
            "{url}"
        );
        accepted.push(answer.2["id"].as_str().unwrap().to_owned());
    }

    // Legacy `/sh/ID/KEY` links parse (they are not `invalid-folder-url`) and go to
    // Dropbox's check; the emulator serves no `/sh/` links, so Dropbox answers
    // `shared_link_not_found`, as it does for a link that was unshared.
    let before = stack.fake.stats().route(Route::DropboxList);
    let legacy = stack
        .start_import(
            &s,
            "dropbox",
            "https://www.dropbox.com/sh/a1b2c3d4e5f6g7h/AAB_cd-EF.gh?dl=0",
        )
        .await;
    assert_error(&legacy, 422, "folder-not-public");
    assert_eq!(stack.fake.stats().route(Route::DropboxList), before + 1);

    // Every accepted link made exactly one job, each with its first listing task.
    let (jobs, _) = walk(&stack, &s, "/imports", 500).await;
    let listed: BTreeSet<String> = field(&jobs, "id").into_iter().collect();
    let made: BTreeSet<String> = accepted.iter().cloned().collect();
    assert_eq!(made.len(), accepted.len());
    assert_eq!(listed, made);
    assert_eq!(rows(&stack, "import_jobs").await, accepted.len() as i64);
    assert_eq!(rows(&stack, "import_listings").await, accepted.len() as i64);
    assert_eq!(rows(&stack, "tq_tasks").await, accepted.len() as i64);
}

#[tokio::test]
async fn every_other_url_is_refused_as_invalid_folder_url_and_nothing_is_stored() {
    let stack = start(fake(), 1, "api_bad_urls").await;
    let s = seller();
    let id = stack.fake.drive_folders()[0].id.clone();
    let file_id = stack
        .fake
        .nodes()
        .iter()
        .find(|n| n.content().is_some())
        .expect("a file")
        .drive_id
        .clone();
    let link = stack.fake.dropbox_links()[0].clone();
    let (lid, rlkey) = (link.link_id.clone(), link.rlkey.clone());
    let fake_base = stack.fake.base_url.clone();
    let drive_bad = [
        String::new(),
        "   ".to_owned(),
        id.clone(),
        format!("drive.google.com/drive/folders/{id}"),
        format!("https://example.com/drive/folders/{id}"),
        format!("https://evil.example/drive.google.com/drive/folders/{id}"),
        format!("https://drive.google.com.evil.example/drive/folders/{id}"),
        format!("https://drive.google.com@evil.example/drive/folders/{id}"),
        format!("https://user:pass@drive.google.com/drive/folders/{id}"),
        format!("https://drive.google.com:8443/drive/folders/{id}"),
        format!("https://docs.google.com/drive/folders/{id}"),
        format!("https://google.com/drive/folders/{id}"),
        format!("https://drive.google.com/file/d/{file_id}/view?usp=sharing"),
        format!("https://drive.google.com/file/d/{file_id}"),
        format!("https://drive.google.com/uc?id={file_id}&export=download"),
        "https://drive.google.com/drive/my-drive".to_owned(),
        "https://drive.google.com/drive/folders/".to_owned(),
        "https://drive.google.com/open?id=".to_owned(),
        format!("https://drive.google.com/drive/u/x/folders/{id}"),
        format!("https://drive.google.com/drive/folders/{id}%2F..%2Fx"),
        format!("https://drive.google.com/drive/folders/{id}?resourcekey=bad%20key"),
        format!("https://142.250.185.78/drive/folders/{id}"),
        format!("https://[::1]/drive/folders/{id}"),
        format!("http://127.0.0.1/drive/folders/{id}"),
        // The emulator itself: a loopback URL must never be fetched.
        format!("{fake_base}/drive/v3/files/{id}?alt=media"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("javascript:alert(document.cookie)//drive.google.com/drive/folders/{id}"),
        "javascript:alert(1)".to_owned(),
        "file:///etc/passwd".to_owned(),
        "data:text/html,<script>alert(1)</script>".to_owned(),
        format!("ftp://drive.google.com/drive/folders/{id}"),
        format!(
            "https://drive.google.com/drive/folders/{}",
            "a".repeat(3000)
        ),
        // A Dropbox link to the Drive import.
        link.url.clone(),
    ];
    let dropbox_bad = [
        // A Drive link to the Dropbox import.
        stack.fake.drive_folders()[0].url.clone(),
        "https://www.dropbox.com/s/abc123/photo.jpg?dl=0".to_owned(),
        format!("https://www.dropbox.com/scl/fi/{lid}/photo.jpg?rlkey={rlkey}&dl=0"),
        format!("https://www.dropbox.com/scl/fo/{lid}/h"),
        format!("https://www.dropbox.com/scl/fo/{lid}/h?rlkey="),
        format!("https://www.dropbox.com/scl/fo/{lid}/h/extra?rlkey={rlkey}"),
        "https://www.dropbox.com/home/Photos".to_owned(),
        "https://www.dropbox.com/sh/onlyid".to_owned(),
        "https://dl.dropboxusercontent.com/s/abc/photo.jpg".to_owned(),
        format!("https://www.dropbox.com.evil.example/scl/fo/{lid}/h?rlkey={rlkey}"),
        format!("https://www.dropbox.com:444/scl/fo/{lid}/h?rlkey={rlkey}"),
        format!("http://127.0.0.1/scl/fo/{lid}/h?rlkey={rlkey}"),
        format!("{fake_base}/scl/fo/{lid}/h?rlkey={rlkey}"),
        "javascript:alert(1)".to_owned(),
        String::new(),
    ];
    let cases = drive_bad
        .iter()
        .map(|u| ("google-drive", u))
        .chain(dropbox_bad.iter().map(|u| ("dropbox", u)));
    for (provider, url) in cases {
        let answer = stack.start_import(&s, provider, url).await;
        assert_eq!(
            (answer.0, answer.2["error"]["code"].as_str()),
            (422, Some("invalid-folder-url")),
            "{provider} {url}: {}",
            answer.2
        );
        assert_error(&answer, 422, "invalid-folder-url");
        assert_plain_message(&answer);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_nothing_stored(&stack, 0).await;
    let (_, _, page) = stack.get("/imports", &s).await;
    assert_eq!(page["items"], json!([]), "{page}");
}

#[tokio::test]
async fn the_folder_check_refuses_private_missing_and_keyless_folders() {
    let stack = start(fake(), 1, "api_folder_check").await;
    let s = seller();
    let keyed = stack.fake.drive_folders()[1].id.clone();
    let private_drive = stack.fake.drive_folders()[2].url.clone();
    let private_dropbox = stack.fake.dropbox_links()[1].url.clone();
    let link = &stack.fake.dropbox_links()[0];
    let cases = [
        ("google-drive", private_drive),
        // Well-formed, but no such folder: Drive answers 404 as for a private one.
        (
            "google-drive",
            "https://drive.google.com/drive/folders/1NoSuchFolderAtAllxxxxxxxxxxxxxxx".to_owned(),
        ),
        // The keyed folder, without its resource key.
        (
            "google-drive",
            format!("https://drive.google.com/drive/folders/{keyed}?usp=sharing"),
        ),
        ("dropbox", private_dropbox),
        // A real link id with the wrong rlkey.
        (
            "dropbox",
            format!(
                "https://www.dropbox.com/scl/fo/{}/h?rlkey=wrongkey",
                link.link_id
            ),
        ),
    ];
    let mut asked = 0;
    for (provider, url) in &cases {
        let answer = stack.start_import(&s, provider, url).await;
        // Neither provider tells private from missing: both clients say "not public".
        assert_error(&answer, 422, "folder-not-public");
        asked += 1;
        assert_eq!(
            stack.fake.stats().total,
            asked,
            "one check per request: {url}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_nothing_stored(&stack, asked).await;
    let (status, _, page) = stack.get("/imports", &s).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([]), "{page}");
}

/// `/drive/folders/<id of a file>` is a link users make by hand; Drive answers with the
/// file's metadata, and the folder check must refuse it like any other bad folder.
#[tokio::test]
async fn a_drive_folder_link_to_a_file_is_refused_with_422() {
    let stack = start(fake(), 1, "api_file_as_folder").await;
    let s = seller();
    let root = stack.fake.drive_folders()[0].root;
    let file_id = stack
        .fake
        .nodes()
        .iter()
        .find(|n| n.parent == Some(root) && n.content().is_some())
        .expect("an image in the folder")
        .drive_id
        .clone();
    let answer = stack
        .start_import(
            &s,
            "google-drive",
            &format!("https://drive.google.com/drive/folders/{file_id}"),
        )
        .await;
    assert_eq!(
        answer.0, 422,
        "a link to a file is the seller's mistake, not a provider failure: {}",
        answer.2
    );
    let code = answer.2["error"]["code"].as_str().unwrap_or_default();
    assert!(
        matches!(code, "folder-not-found" | "invalid-folder-url"),
        "{}",
        answer.2
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_nothing_stored(&stack, 1).await;
}

#[tokio::test]
async fn a_seller_with_too_many_running_imports_is_told_to_wait() {
    let mut stack = start_with(
        fake(),
        0,
        &[("IMPORT_MAX_RUNNING_PER_SELLER", "2")],
        "api_running_limit",
    )
    .await;
    let (s, other) = (seller(), seller());
    let url = stack.fake.drive_folders()[0].url.clone();
    let first = stack.import_ok(&s, "google-drive", &url).await;
    let second = stack
        .import_ok(&s, "dropbox", &stack.fake.dropbox_links()[0].url)
        .await;
    let asked = stack.fake.stats().total;
    let refused = stack.start_import(&s, "google-drive", &url).await;
    assert_error(&refused, 429, "too-many-imports");
    // Refused before the provider is asked or anything is written.
    assert_eq!(stack.fake.stats().total, asked);
    assert_eq!(rows(&stack, "import_jobs").await, 2);
    assert_eq!(rows(&stack, "tq_tasks").await, 2);
    // The limit is per seller.
    stack.import_ok(&other, "google-drive", &url).await;
    // Once the imports finish, the seller may start another.
    stack.start_worker();
    for id in [&first, &second] {
        stack.wait_finished(&s, id, FINISH).await;
    }
    stack.import_ok(&s, "google-drive", &url).await;
}

// ------------------------------------------------------------------- tokens

#[tokio::test]
async fn every_endpoint_wants_a_valid_seller_token() {
    let stack = start(fake(), 1, "api_tokens").await;
    let s = seller();
    let secret = stack
        .worker_env
        .iter()
        .find(|(k, _)| k == "JWT_HS256_SECRET")
        .map(|(_, v)| v.clone())
        .expect("JWT secret");
    let url = stack.fake.drive_folders()[0].url.clone();
    let some_id = uuid::Uuid::now_v7();
    let endpoints = [
        (Method::POST, "/import/google-drive".to_owned()),
        (Method::POST, "/import/dropbox".to_owned()),
        (Method::GET, "/imports".to_owned()),
        (Method::GET, format!("/imports/{some_id}")),
        (Method::GET, format!("/imports/{some_id}/items")),
        (Method::GET, format!("/imports/{some_id}/events")),
        (Method::POST, format!("/imports/{some_id}/retry")),
        (Method::GET, "/images".to_owned()),
        (Method::GET, format!("/images/{some_id}")),
    ];
    let with = |change: Value| {
        let mut c = claims(&s);
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = shared_signing::unix_now();
    let good = stack.token(&s);
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(with(json!({"sub": "another-seller"}))
            .to_string()
            .as_bytes()),
        parts[2]
    );
    let tokens: Vec<(Option<String>, &str)> = vec![
        (None, "missing-token"),
        (Some("Basic dXNlcjpwYXNz".into()), "missing-token"),
        (Some("Bearer".into()), "missing-token"),
        (Some("Bearer not.a-jwt".into()), "malformed-token"),
        (
            Some(format!(
                "Bearer {}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(claims(&s).to_string().as_bytes())
            )),
            "unsupported-algorithm",
        ),
        (
            Some(format!(
                "Bearer {}",
                hs256_token(&random_secret(), Some(DEV_KID), &claims(&s))
            )),
            "invalid-signature",
        ),
        (Some(format!("Bearer {tampered}")), "invalid-signature"),
        (
            Some(format!(
                "Bearer {}",
                hs256_token(
                    &secret,
                    Some(DEV_KID),
                    &with(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}))
                )
            )),
            "token-expired",
        ),
        (
            Some(format!(
                "Bearer {}",
                hs256_token(&secret, Some(DEV_KID), &with(json!({"nbf": now + 3600})))
            )),
            "token-not-yet-valid",
        ),
        (
            Some(format!(
                "Bearer {}",
                hs256_token(
                    &secret,
                    Some(DEV_KID),
                    &with(json!({"aud": "someone-else"}))
                )
            )),
            "invalid-audience",
        ),
        (
            Some(format!(
                "Bearer {}",
                hs256_token(
                    &secret,
                    Some(DEV_KID),
                    &with(json!({"iss": "https://evil.example"}))
                )
            )),
            "invalid-issuer",
        ),
        (
            Some(format!(
                "Bearer {}",
                hs256_token(&secret, Some("no-such-key"), &claims(&s))
            )),
            "unknown-key",
        ),
    ];
    for (method, path) in &endpoints {
        for (header, code) in &tokens {
            let mut request = stack
                .http
                .request(method.clone(), format!("{}{path}", stack.import_url));
            if let Some(h) = header {
                request = request.header("authorization", h);
            }
            if *method == Method::POST {
                request = request.json(&json!({ "folder_url": url }));
            }
            let answer = send(request).await;
            assert_eq!(
                answer.0, 401,
                "{method} {path} with {header:?}: {}",
                answer.2
            );
            assert_error(&answer, 401, code);
            assert!(
                answer.1.get("www-authenticate").is_some(),
                "{method} {path}: no WWW-Authenticate"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_nothing_stored(&stack, 0).await;
}

// ------------------------------------------------------------------- bodies

#[tokio::test]
async fn bad_bodies_get_json_errors_and_nothing_is_stored() {
    let stack = start(fake(), 1, "api_bodies").await;
    let s = seller();
    let url = stack.fake.drive_folders()[0].url.clone();
    for path in ["/import/google-drive", "/import/dropbox"] {
        assert_error(
            &post_json(&stack, path, &s, json!({})).await,
            422,
            "invalid-request-body",
        );
        assert_error(
            &post_json(&stack, path, &s, json!({ "folder_url": 42 })).await,
            422,
            "invalid-request-body",
        );
        assert_error(
            &post_json(&stack, path, &s, json!({ "folder_url": null })).await,
            422,
            "invalid-request-body",
        );
        let text = send(
            stack
                .request(Method::POST, path, &s)
                .header("content-type", "text/plain")
                .body(json!({ "folder_url": url }).to_string()),
        )
        .await;
        assert_error(&text, 415, "json-content-type-required");
        let form = send(
            stack
                .request(Method::POST, path, &s)
                .form(&[("folder_url", url.as_str())]),
        )
        .await;
        assert_error(&form, 415, "json-content-type-required");
        let bare = send(
            stack
                .request(Method::POST, path, &s)
                .body(json!({ "folder_url": url }).to_string()),
        )
        .await;
        assert_error(&bare, 415, "json-content-type-required");
        for broken in ["{\"folder_url\": ", "{folder_url: 'x'}", "not json", ""] {
            let answer = send(
                stack
                    .request(Method::POST, path, &s)
                    .header("content-type", "application/json")
                    .body(broken),
            )
            .await;
            // An empty body is not JSON either.
            assert_error(&answer, 400, "invalid-json");
        }
        let huge = json!({ "folder_url": url, "padding": "x".repeat(100 * 1024) });
        assert_error(
            &post_json(&stack, path, &s, huge).await,
            413,
            "body-too-large",
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_nothing_stored(&stack, 0).await;
}

/// serde's derived `Deserialize` also reads a struct from a JSON array (`["…"]` as
/// `{"folder_url": "…"}`); the API documents an object and must refuse anything else.
#[tokio::test]
async fn a_json_array_is_not_an_import_request() {
    let stack = start(fake(), 1, "api_array_body").await;
    let s = seller();
    let url = stack.fake.drive_folders()[0].url.clone();
    for path in ["/import/google-drive", "/import/dropbox"] {
        let answer = post_json(&stack, path, &s, json!([url])).await;
        assert_error(&answer, 422, "invalid-request-body");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_nothing_stored(&stack, 0).await;
}

// ------------------------------------------------------- ids, filters, sellers

#[tokio::test]
async fn another_sellers_imports_and_images_do_not_exist_and_bad_ids_are_400() {
    let stack = start(fake(), 1, "api_other_seller").await;
    let (alice, bob) = (seller(), seller());
    let job = stack
        .import_ok(&alice, "google-drive", &stack.fake.drive_folders()[0].url)
        .await;
    let done = stack.wait_finished(&alice, &job, FINISH).await;
    assert_eq!(done["counts"]["imported"], 3, "{done}");
    let images = stack.images(&alice, None).await;
    assert_eq!(images.len(), 3);
    let image = images[0]["image_id"].as_str().unwrap().to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();

    let calls = |id: &str| {
        [
            (Method::GET, format!("/imports/{id}")),
            (Method::GET, format!("/imports/{id}/items")),
            (Method::GET, format!("/imports/{id}/events")),
            (Method::POST, format!("/imports/{id}/retry")),
        ]
    };
    for id in [job.as_str(), unknown.as_str()] {
        for (method, path) in calls(id) {
            let answer = send(stack.request(method.clone(), &path, &bob)).await;
            assert_error(&answer, 404, "import-not-found");
            // Not a hint that someone else's import exists.
            assert!(!answer.2.to_string().contains(&alice), "{}", answer.2);
        }
    }
    for bad in ["not-a-uuid", "123", "01a209f4-cdb5-74fb-8c0d", "%20"] {
        for (method, path) in calls(bad) {
            let answer = send(stack.request(method.clone(), &path, &alice)).await;
            assert_error(&answer, 400, "invalid-import-id");
        }
        assert_error(
            &stack.get(&format!("/images/{bad}"), &alice).await,
            400,
            "invalid-image-id",
        );
    }
    // Bob's retry did nothing to Alice's import.
    let (_, _, after) = stack.get(&format!("/imports/{job}"), &alice).await;
    assert_eq!(after["state"], "completed", "{after}");
    assert_eq!(after["counts"], done["counts"]);

    // Bob sees none of Alice's imports or images.
    let (_, _, page) = stack.get("/imports", &bob).await;
    assert_eq!(page["items"], json!([]), "{page}");
    assert!(stack.images(&bob, None).await.is_empty());
    assert_error(
        &stack.get(&format!("/images/{image}"), &bob).await,
        404,
        "image-not-found",
    );
    assert_error(
        &stack.get(&format!("/images/{unknown}"), &alice).await,
        404,
        "image-not-found",
    );
    let (status, _, mine) = stack.get(&format!("/images/{image}"), &alice).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["image_id"], image.as_str());
    assert_eq!(mine["source"], "google_drive");
    assert_eq!(mine["import_id"], job.as_str());
    assert!(mine["url"].is_string(), "{mine}");
    for key in [
        "name",
        "google_drive_id",
        "size",
        "mime_type",
        "storage_path",
    ] {
        assert!(!mine[key].is_null(), "{key} missing: {mine}");
    }

    // Filters, limits and cursors.
    let items = format!("/imports/{job}/items");
    for status in ["bogus", "FAILED", "done"] {
        assert_error(
            &stack.get(&format!("{items}?status={status}"), &alice).await,
            400,
            "invalid-status",
        );
    }
    for source in ["ftp", "google-drive", "Dropbox", "s3"] {
        assert_error(
            &stack.get(&format!("/images?source={source}"), &alice).await,
            400,
            "invalid-source",
        );
    }
    for list in ["/imports", "/images", items.as_str()] {
        for limit in ["0", "501", "-1", "ten", "1.5"] {
            assert_error(
                &stack.get(&format!("{list}?limit={limit}"), &alice).await,
                400,
                "invalid-limit",
            );
        }
        for cursor in ["bogus", "123", "%27%20OR%201%3D1"] {
            assert_error(
                &stack.get(&format!("{list}?cursor={cursor}"), &alice).await,
                400,
                "invalid-cursor",
            );
        }
        let (status, _, page) = stack.get(&format!("{list}?limit=500"), &alice).await;
        assert_eq!(status, 200, "{list}: {page}");
    }
    let (_, _, drive_only) = stack.get("/images?source=google_drive", &alice).await;
    assert_eq!(drive_only["items"].as_array().unwrap().len(), 3);
    let (_, _, dropbox_only) = stack.get("/images?source=dropbox", &alice).await;
    assert_eq!(dropbox_only["items"], json!([]));
}

// -------------------------------------------------------------- pagination

#[tokio::test]
async fn keyset_pagination_has_no_gaps_and_no_repeats() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(7).size(8 * 1024).subfolders(1),
        ))
        .dropbox_folder(Folder::generated(Generate::images(4).size(8 * 1024)))
        .build()
        .expect("fake");
    let stack = start(fake, 1, "api_pagination").await;
    let (s, other) = (seller(), seller());
    let drive_url = stack.fake.drive_folders()[0].url.clone();
    let dropbox_url = stack.fake.dropbox_links()[0].url.clone();
    let mut jobs = Vec::new();
    for url in [&drive_url, &dropbox_url] {
        let provider = if url == &drive_url {
            "google-drive"
        } else {
            "dropbox"
        };
        let id = stack.import_ok(&s, provider, url).await;
        stack.wait_finished(&s, &id, FINISH).await;
        jobs.push(id);
    }
    // Three more of the same folder (all skipped as already imported), and one of
    // another seller's, which must not show up.
    for _ in 0..3 {
        jobs.push(stack.import_ok(&s, "google-drive", &drive_url).await);
    }
    let foreign = stack.import_ok(&other, "google-drive", &drive_url).await;
    for id in &jobs[2..] {
        stack.wait_finished(&s, id, FINISH).await;
    }
    stack.wait_finished(&other, &foreign, FINISH).await;

    // /imports, newest first.
    let (all_jobs, sizes) = walk(&stack, &s, "/imports", 2).await;
    assert_eq!(sizes, [2, 2, 1], "page sizes");
    let ids = field(&all_jobs, "id");
    assert_strictly_descending(&ids);
    let mut expected = jobs.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(ids, expected);

    // /images, newest first, all sources and one.
    let (images, sizes) = walk(&stack, &s, "/images", 3).await;
    assert_eq!(sizes, [3, 3, 3, 2], "page sizes");
    let image_ids = field(&images, "image_id");
    assert_strictly_descending(&image_ids);
    let sources: BTreeSet<String> = field(&images, "source_id").into_iter().collect();
    assert_eq!(sources.len(), 11);
    let (one_page, _) = walk(&stack, &s, "/images", 500).await;
    assert_eq!(field(&one_page, "image_id"), image_ids);
    let (drive_images, sizes) = walk(&stack, &s, "/images?source=google_drive", 2).await;
    assert_eq!(sizes, [2, 2, 2, 1]);
    assert!(drive_images.iter().all(|i| i["source"] == "google_drive"));
    assert_strictly_descending(&field(&drive_images, "image_id"));
    let (dropbox_images, _) = walk(&stack, &s, "/images?source=dropbox", 1).await;
    assert_eq!(dropbox_images.len(), 4);
    assert!(dropbox_images.iter().all(|i| i["source"] == "dropbox"));

    // The last id as a cursor: an empty last page.
    let last = image_ids.last().unwrap();
    let (status, _, tail) = stack.get(&format!("/images?cursor={last}"), &s).await;
    assert_eq!(status, 200);
    assert_eq!(tail["items"], json!([]));
    assert!(tail["next_cursor"].is_null(), "{tail}");

    // An import's items, in discovery order.
    let items = format!("/imports/{}/items", jobs[0]);
    let (paged, _) = walk(&stack, &s, &items, 2).await;
    let (whole, sizes) = walk(&stack, &s, &items, 500).await;
    assert_eq!(sizes, [7]);
    let item_ids = field(&paged, "id");
    assert!(item_ids.windows(2).all(|w| w[0] < w[1]), "{item_ids:?}");
    assert_eq!(item_ids, field(&whole, "id"));
    let (imported, _) = walk(&stack, &s, &format!("{items}?status=imported"), 3).await;
    assert_eq!(imported.len(), 7);
}

// ----------------------------------------------------------------- docs

#[tokio::test]
async fn openapi_lists_every_path_and_the_docs_are_served() {
    let stack = start(fake(), 0, "api_openapi").await;
    let response = stack
        .http
        .get(format!("{}/openapi.json", stack.import_url))
        .send()
        .await
        .expect("openapi");
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("openapi JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/import/google-drive", "post"),
        ("/import/dropbox", "post"),
        ("/imports", "get"),
        ("/imports/{id}", "get"),
        ("/imports/{id}/events", "get"),
        ("/imports/{id}/items", "get"),
        ("/imports/{id}/retry", "post"),
        ("/images", "get"),
        ("/images/{id}", "get"),
    ] {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()))[method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
        assert!(
            op["security"].is_array(),
            "{method} {path} is not marked as needing a token"
        );
    }
    assert!(
        doc["components"]["securitySchemes"].is_object(),
        "no security scheme"
    );

    let docs = stack
        .http
        .get(format!("{}/docs/", stack.import_url))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.to_ascii_lowercase().contains("swagger"), "{html}");
}
