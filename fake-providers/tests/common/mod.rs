//! Helpers shared by the integration tests: a client and small request wrappers.
#![allow(dead_code)]

use md5::Md5;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const KEY: &str = "test-key";
pub const TOKEN: &str = "test-token";

/// A client that never retries and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Dropbox's content hash, written independently of the crate's.
pub fn reference_content_hash(bytes: &[u8]) -> String {
    let mut all = Vec::new();
    for block in bytes.chunks(4 * 1024 * 1024) {
        all.extend_from_slice(&Sha256::digest(block));
    }
    hex::encode(Sha256::digest(&all))
}

/// `GET /drive/v3/files` for a folder, with extra query pairs.
pub async fn drive_list(
    client: &reqwest::Client,
    base: &str,
    folder: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let q = format!("'{folder}' in parents and trashed=false");
    let mut query: Vec<(&str, &str)> = vec![("q", &q), ("key", KEY)];
    query.extend_from_slice(extra);
    client
        .get(format!("{base}/drive/v3/files"))
        .query(&query)
        .send()
        .await
        .unwrap()
}

/// Every file of a Drive folder (all pages), with the given `fields` for files.
pub async fn drive_list_all(
    client: &reqwest::Client,
    base: &str,
    folder: &str,
    file_fields: &str,
) -> Vec<Value> {
    let fields = format!("nextPageToken,files({file_fields})");
    let mut token = String::new();
    let mut out = Vec::new();
    loop {
        let mut extra = vec![("fields", fields.as_str()), ("pageSize", "1000")];
        if !token.is_empty() {
            extra.push(("pageToken", token.as_str()));
        }
        let response = drive_list(client, base, folder, &extra).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        out.extend(page["files"].as_array().unwrap().iter().cloned());
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_owned(),
            None => return out,
        }
    }
}

pub async fn drive_download(
    client: &reqwest::Client,
    base: &str,
    id: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .get(format!("{base}/drive/v3/files/{id}"))
        .query(&[("alt", "media"), ("key", KEY)])
        .send()
        .await
}

pub async fn dropbox_rpc(
    client: &reqwest::Client,
    base: &str,
    route: &str,
    body: Value,
) -> reqwest::Response {
    client
        .post(format!("{base}/2/{route}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn dropbox_download(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    path: &str,
) -> reqwest::Result<reqwest::Response> {
    let arg = serde_json::json!({"url": url, "path": path}).to_string();
    client
        .post(format!("{base}/2/sharing/get_shared_link_file"))
        .bearer_auth(TOKEN)
        .header("Dropbox-API-Arg", arg)
        .send()
        .await
}

/// Every entry of a shared-link folder (all pages).
pub async fn dropbox_list_all(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    path: &str,
    limit: usize,
) -> (Vec<Value>, usize) {
    let mut page: Value = dropbox_rpc(
        client,
        base,
        "files/list_folder",
        serde_json::json!({"path": path, "shared_link": {"url": url}, "limit": limit}),
    )
    .await
    .json()
    .await
    .unwrap();
    let mut entries = Vec::new();
    let mut pages = 1;
    loop {
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        if !page["has_more"].as_bool().unwrap() {
            return (entries, pages);
        }
        let cursor = page["cursor"].as_str().unwrap().to_owned();
        page = dropbox_rpc(
            client,
            base,
            "files/list_folder/continue",
            serde_json::json!({"cursor": cursor}),
        )
        .await
        .json()
        .await
        .unwrap();
        pages += 1;
    }
}
