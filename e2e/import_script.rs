//! `scripts/import-flow.sh` (the curl walk-through of a bulk import) against the embedded
//! stack exactly as users start it (`vitrine up`: storage, app, import-api and
//! import-worker as child processes, SQLite, local disk, the SQL queue, generated keys)
//! in a temp data dir on free ports, with Google Drive and Dropbox served by
//! `fake-providers` in this process. Nothing leaves loopback: every provider base URL
//! points at the fake.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use fake_providers::{Folder, Generate};
use serde_json::Value;

const IMAGES: usize = 30;
const DRIVE_KEY: &str = "e2e-drive-key";
const DROPBOX_TOKEN: &str = "e2e-dropbox-token";

/// Runs the script for one folder; returns its stdout after asserting it succeeded.
async fn run_script(
    provider: &str,
    folder_url: &str,
    app_bind: &str,
    import_bind: &str,
    seller: &str,
) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/import-flow.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(folder_url)
        .env("PROVIDER", provider)
        .env("APP_URL", format!("http://{app_bind}"))
        .env("IMPORT_URL", format!("http://{import_bind}"))
        .env("SELLER_ID", seller)
        .env("POLL_SECS", "0.2")
        .env("TIMEOUT_SECS", "120")
        .output()
        .await
        .expect("run the script");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/import-flow.sh ({provider}) failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("as the catalog says"),
        "one image came back intact: {stdout}"
    );
    stdout
}

/// Every image of `GET /images?source=…` (all pages).
async fn all_images(import_bind: &str, token: &str, source: &str) -> Vec<Value> {
    let client = http_client();
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, _, body) = send(
            client
                .get(format!(
                    "http://{import_bind}/images?source={source}&limit=7&cursor={cursor}"
                ))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        all.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return all,
        }
    }
}

#[tokio::test]
async fn import_script_runs_the_whole_flow_on_the_embedded_stack() {
    let test = "import_script_runs_the_whole_flow_on_the_embedded_stack";
    if !tools_present(test) {
        return;
    }
    // One generated folder, shared over both providers: images in the root and two
    // subfolders, a Google Doc (Drive only) and a PDF, which are skipped.
    let folder = Folder::generated(
        Generate::images(IMAGES)
            .size(20 * 1024)
            .subfolders(2)
            .docs(1)
            .non_images(1)
            .seed(11),
    )
    .name("e2e shop");
    let data = tempfile::tempdir().expect("tempdir");
    let (fake, mut launcher, binds, log) =
        launch_with_fake_folder(folder, DRIVE_KEY, DROPBOX_TOKEN, data.path()).await;
    let (app_bind, import_bind, worker_bind) = (
        binds["APP_BIND"].clone(),
        binds["IMPORT_BIND"].clone(),
        binds["IMPORT_WORKER_METRICS_BIND"].clone(),
    );
    // The launcher starts the services one after the other; the worker comes last.
    for bind in [&app_bind, &import_bind, &worker_bind] {
        launcher.wait_ready(bind, &log).await;
    }

    // Google Drive: 30 images imported; the Doc and the PDF skipped.
    let seller = "script-seller";
    let drive_url = fake.drive_folders()[0].url.clone();
    let stdout = run_script("google-drive", &drive_url, &app_bind, &import_bind, seller).await;
    assert!(
        stdout.contains(&format!(
            "completed: {IMAGES} imported, 2 skipped, 0 failed"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("google-native: 1"), "{stdout}");
    assert!(stdout.contains("not-an-image: 1"), "{stdout}");
    assert!(stdout.contains("event: done"), "the SSE stream: {stdout}");

    // Dropbox, the same folder: 30 more images (another source), the PDF skipped.
    let dropbox_url = fake.dropbox_links()[0].url.clone();
    let stdout = run_script("dropbox", &dropbox_url, &app_bind, &import_bind, seller).await;
    assert!(
        stdout.contains(&format!(
            "completed: {IMAGES} imported, 1 skipped, 0 failed"
        )),
        "{stdout}"
    );

    // The images exist: each source's catalog holds every file once, each with a URL
    // that serves it, and the fake saw every file downloaded exactly once.
    let token = Command::new(vitrine_bin())
        .args(["token", "--seller", seller])
        .env("VITRINE_DATA_DIR", data.path())
        .output()
        .expect("vitrine token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let client = http_client();
    for source in ["google_drive", "dropbox"] {
        let images = all_images(&import_bind, &token, source).await;
        assert_eq!(images.len(), IMAGES, "{source}: {images:?}");
        let ids: HashSet<&str> = images
            .iter()
            .filter_map(|i| i["image_id"].as_str())
            .collect();
        let files: HashSet<&str> = images
            .iter()
            .filter_map(|i| i["source_id"].as_str())
            .collect();
        assert_eq!(
            (ids.len(), files.len()),
            (IMAGES, IMAGES),
            "{source}: duplicates"
        );
        for image in &images {
            assert_eq!(image["source"], source);
            assert!(image["storage_path"]
                .as_str()
                .is_some_and(|p| !p.is_empty()));
            assert!(image["width"].as_i64().is_some_and(|w| w > 0), "{image}");
            if source == "google_drive" {
                assert_eq!(image["google_drive_id"], image["source_id"]);
            }
        }
        let last = &images[IMAGES - 1];
        let bytes = client
            .get(last["url"].as_str().expect("url"))
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(bytes.len() as i64, last["size"].as_i64().expect("size"));
        assert_eq!(sha256_hex(&bytes), last["sha256"].as_str().expect("sha256"));
    }
    let stats = fake.stats();
    assert!(
        stats.completed_downloads.values().all(|n| *n == 1),
        "a file was downloaded more than once: {:?}",
        stats.completed_downloads
    );
    assert_eq!(stats.completed_downloads.len(), 2 * IMAGES);

    // The worker's /metrics shows the finished items.
    let metrics = client
        .get(format!("http://{worker_bind}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("import_items_finished_total{state=\"imported\"} 60"),
        "{metrics}"
    );

    // Ctrl-C (SIGTERM) stops the whole stack, the worker included.
    drop(launcher);
    for bind in [&import_bind, &worker_bind] {
        let after = client
            .get(format!("http://{bind}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        assert!(
            after.is_err(),
            "{bind} still answers after the launcher stopped"
        );
    }
}
