//! The `fake-providers` binary: starts, prints what to configure and paste, serves it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn prints_base_urls_and_folder_urls_and_serves_them() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_fake-providers"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--generate",
                "30",
                "--size",
                "2KiB",
                "--subfolders",
                "2",
                "--seed",
                "9",
                "--latency-ms",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("Admin:");
        lines.push(line);
        if done {
            break;
        }
    }
    let value = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {prefix} in {lines:#?}"))
    };
    let base = value("GOOGLE_DRIVE_API_BASE=");
    assert_eq!(value("DROPBOX_API_BASE="), base);
    assert_eq!(value("DROPBOX_CONTENT_BASE="), base);
    let drive_url = value("Google Drive:");
    let dropbox_url = value("Dropbox:");
    assert!(drive_url.starts_with("https://drive.google.com/drive/folders/"));
    assert!(
        dropbox_url.starts_with("https://www.dropbox.com/scl/fo/")
            && dropbox_url.contains("rlkey=")
    );

    let client = reqwest::Client::new();
    let folders: Value = client
        .get(format!("{base}/_fake/folders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(folders["google_drive"][0]["url"], drive_url.as_str());
    assert_eq!(folders["dropbox"][0]["url"], dropbox_url.as_str());
    let id = folders["google_drive"][0]["id"].as_str().unwrap();
    let q = format!("'{id}' in parents and trashed=false");
    let page: Value = client
        .get(format!("{base}/drive/v3/files"))
        .query(&[
            ("q", q.as_str()),
            ("key", "any"),
            ("fields", "files(id,size)"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // 30 images over the root and 2 subfolders: 10 here, plus "Folder 01".
    assert_eq!(page["files"].as_array().unwrap().len(), 11);
}

#[test]
fn bad_options_exit_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-providers"))
        .arg("--size")
        .arg("12 parsecs")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("USAGE"));
}
