//! `vitrine up --demo` as a user runs it: the launcher starts the provider emulator
//! in-process with its sample folder and prints the folder URL; pasting that URL into
//! an import brings in every image, skips the Docs and PDFs, and fails the broken file
//! with storage's reason. Offline: nothing leaves loopback.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// What `vitrine up --demo` shares (src/demo.rs): 300 images, 3 PDFs, 2 Google Docs,
/// one broken `.jpg`.
const IMAGES: i64 = 300;
const NON_IMAGES: usize = 3;
const DOCS: usize = 2;

#[tokio::test]
async fn demo_folder_url_from_the_banner_imports_offline() {
    // Arrange: `vitrine up --demo` in a temp data dir, every address on a free port.
    let data = tempfile::tempdir().expect("tempdir");
    let (mut launcher, binds, log) = Launcher::start_demo(data.path());

    // The banner comes once every service is ready.
    let folder_url = launcher.banner(&log, DEMO_FOLDER_LINE).await;
    assert!(
        folder_url.starts_with("https://drive.google.com/drive/folders/"),
        "{folder_url}"
    );
    let dropbox_url = banner_value(&log, DEMO_DROPBOX_LINE).expect("the Dropbox link");
    assert!(
        dropbox_url.starts_with("https://www.dropbox.com/scl/fo/"),
        "{dropbox_url}"
    );

    let seller = "demo-seller";
    let token = Command::new(vitrine_bin())
        .args(["token", "--seller", seller])
        .env("VITRINE_DATA_DIR", data.path())
        .output()
        .expect("vitrine token");
    assert!(token.status.success(), "vitrine token: {token:?}");
    let token = String::from_utf8(token.stdout).expect("utf-8");
    let token = token.trim();
    let import = format!("http://{}", binds["IMPORT_BIND"]);
    let client = http_client();

    // Act: paste the folder URL into an import.
    let (status, _, body) = send(
        client
            .post(format!("{import}/import/google-drive"))
            .bearer_auth(token)
            .json(&json!({ "folder_url": folder_url })),
    )
    .await;
    assert_eq!(status, 202, "import not accepted: {body}");
    let job_id = body["id"].as_str().expect("job id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let (status, _, job) = send(
            client
                .get(format!("{import}/imports/{job_id}"))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(status, 200, "{job}");
        if matches!(job["state"].as_str(), Some("completed" | "failed")) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the demo import did not finish in 60 s: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Assert: every image imported, the Docs and PDFs skipped, the broken file failed.
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["counts"]["imported"], IMAGES, "{job}");
    assert_eq!(job["counts"]["failed"], 1, "{job}");
    assert_eq!(
        job["counts"]["skipped"],
        (NON_IMAGES + DOCS) as i64,
        "{job}"
    );

    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{import}/imports/{job_id}/items?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, _, page) = send(client.get(url).bearer_auth(token)).await;
        assert_eq!(status, 200, "{page}");
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let with =
        |status: &str| -> Vec<&Value> { items.iter().filter(|i| i["status"] == status).collect() };

    let failed = with("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["name"], "broken-001.jpg", "{failed:?}");
    assert_eq!(failed[0]["mime_type"], "image/jpeg", "{failed:?}");
    assert_eq!(failed[0]["reason"], "not-an-image", "{failed:?}");

    let mut skipped: Vec<(String, String)> = with("skipped")
        .iter()
        .map(|i| {
            (
                i["reason"].as_str().unwrap_or_default().to_owned(),
                i["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    skipped.sort();
    let docs = skipped.iter().filter(|(r, _)| r == "google-native").count();
    let pdfs = skipped
        .iter()
        .filter(|(r, n)| r == "not-an-image" && n.ends_with(".pdf"))
        .count();
    assert_eq!((docs, pdfs), (DOCS, NON_IMAGES), "{skipped:?}");

    // The images came from the root and every nested folder, two levels down too.
    let imported = with("imported");
    assert_eq!(imported.len() as i64, IMAGES);
    let folders: std::collections::BTreeSet<&str> =
        imported.iter().filter_map(|i| i["path"].as_str()).collect();
    assert_eq!(folders.len(), 1 + 3 + 9, "{folders:?}");
    assert!(
        folders
            .iter()
            .any(|p| p.split('/').filter(|s| !s.is_empty()).count() == 2),
        "no image two folders down: {folders:?}"
    );
    drop(launcher);
}
