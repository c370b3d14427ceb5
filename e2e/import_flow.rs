//! Flow 2 end to end: a seller imports a public Google Drive or Dropbox folder (served
//! by `fake-providers`), workers list it page by page and stream every file into the
//! Storage Service, and `GET /images` lists the result.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::import::{seller, ImportOptions, ImportStack};
use fake_providers::{FakeProviders, Folder, Generate};
use serde_json::Value;

const FINISH: Duration = Duration::from_secs(120);

/// Asserts that a finished import brought in `expected` images exactly once each: as
/// items, in the catalog, and in storage.
async fn assert_imported_once(stack: &ImportStack, seller: &str, job: &Value, expected: i64) {
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["counts"]["imported"], expected, "{job}");
    assert_eq!(job["counts"]["in_progress"], 0, "{job}");
    let images = stack.images(seller, None).await;
    assert_eq!(images.len() as i64, expected);
    let ids: HashSet<&str> = images
        .iter()
        .map(|i| i["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), images.len(), "an image is listed twice");
    let sources: HashSet<&str> = images
        .iter()
        .map(|i| i["source_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources.len(),
        images.len(),
        "a source file was imported twice"
    );
    assert_eq!(
        stack.stored_images(seller).await,
        expected,
        "storage holds a different count"
    );
}

#[tokio::test]
async fn drive_folder_with_subfolders_docs_and_shortcuts_is_imported() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(60)
                .subfolders(2)
                .docs(3)
                .shortcuts(2)
                .non_images(2),
        ))
        .build()
        .unwrap();
    let stack = ImportStack::start(fake, ImportOptions::default(), "drive_import")
        .await
        .expect("embedded stack");
    let s = seller();
    let url = stack.fake.drive_folders()[0].url.clone();
    let id = stack.import_ok(&s, "google-drive", &url).await;
    let job = stack.wait_finished(&s, &id, FINISH).await;
    let imported = job["counts"]["imported"].as_i64().unwrap();
    assert!(imported >= 60, "{job}");
    assert_imported_once(&stack, &s, &job, imported).await;
    assert_eq!(job["counts"]["failed"], 0, "{job}");
    // Docs and non-images are skipped with their reasons.
    let skipped = stack.items(&s, &id, Some("skipped")).await;
    let reasons: HashSet<&str> = skipped
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains("google-native"), "{reasons:?}");
    assert!(reasons.contains("not-an-image"), "{reasons:?}");

    // Every listed image has the Drive id, a path in storage and a URL that works.
    let images = stack.images(&s, Some("google_drive")).await;
    for image in &images {
        assert_eq!(image["source"], "google_drive");
        assert_eq!(image["google_drive_id"], image["source_id"]);
        assert!(image["storage_path"]
            .as_str()
            .unwrap()
            .starts_with("file://"));
        assert!(image["mime_type"].as_str().unwrap().starts_with("image/"));
    }
    let first = &images[0];
    let answer = stack
        .http
        .get(first["url"].as_str().expect("signed url"))
        .send()
        .await
        .unwrap();
    let cache_control = answer.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cache_control.ends_with(", immutable"), "{cache_control}");
    let bytes = answer.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, first["size"].as_i64().unwrap());
    // Listed again, the images keep their URLs, so the bytes a browser cached stay valid.
    let urls = |images: &[serde_json::Value]| -> Vec<String> {
        images.iter().map(|i| i["url"].to_string()).collect()
    };
    let again = stack.images(&s, Some("google_drive")).await;
    assert_eq!(urls(&again), urls(&images));
    assert!(stack.images(&s, Some("dropbox")).await.is_empty());

    // Importing the same folder again skips everything as already imported.
    let again = stack.import_ok(&s, "google-drive", &url).await;
    let job2 = stack.wait_finished(&s, &again, FINISH).await;
    assert_eq!(job2["counts"]["imported"], 0, "{job2}");
    let already = stack.items(&s, &again, Some("skipped")).await;
    assert_eq!(
        already
            .iter()
            .filter(|i| i["reason"] == "already-imported")
            .count() as i64,
        imported
    );
    assert_eq!(stack.stored_images(&s).await, imported);
}

#[tokio::test]
async fn dropbox_folder_is_imported() {
    let fake = FakeProviders::builder()
        .dropbox_folder(Folder::generated(Generate::images(40).subfolders(1)))
        .build()
        .unwrap();
    let stack = ImportStack::start(fake, ImportOptions::default(), "dropbox_import")
        .await
        .expect("embedded stack");
    let s = seller();
    let url = stack.fake.dropbox_links()[0].url.clone();
    let id = stack.import_ok(&s, "dropbox", &url).await;
    let job = stack.wait_finished(&s, &id, FINISH).await;
    let imported = job["counts"]["imported"].as_i64().unwrap();
    assert!(imported >= 40, "{job}");
    assert_imported_once(&stack, &s, &job, imported).await;
    for image in stack.images(&s, Some("dropbox")).await {
        assert_eq!(image["source"], "dropbox");
        assert!(image["google_drive_id"].is_null());
    }
}
