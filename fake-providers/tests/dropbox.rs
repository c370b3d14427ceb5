//! Dropbox v2 wire format, against the emulator on 127.0.0.1:0 with reqwest.

mod common;

use std::collections::HashSet;

use common::*;
use fake_providers::{dropbox_content_hash, FakeProviders, Folder, Generate, ImageKind};
use serde_json::{json, Value};

#[tokio::test]
async fn list_folder_pages_with_cursor_and_has_more() {
    let fake = FakeProviders::builder()
        .dropbox_folder(Folder::generated(
            Generate::images(250).size(400).subfolders(2),
        ))
        .dropbox_token(TOKEN)
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, url) = (&running.base_url, &fake.dropbox_links()[0].url);
    assert!(url.starts_with("https://www.dropbox.com/scl/fo/"));
    assert!(url.contains("?rlkey="));
    let client = client();

    let first: Value = dropbox_rpc(
        &client,
        base,
        "files/list_folder",
        json!({"path": "", "shared_link": {"url": url}, "limit": 40}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(first["entries"].as_array().unwrap().len(), 40);
    assert_eq!(first["has_more"], true);
    assert!(first["cursor"].is_string());

    let (root, pages) = dropbox_list_all(&client, base, url, "", 40).await;
    // 250 images over root + 2 subfolders: 84 in the root, plus the one
    // subfolder that sits directly in the root.
    assert_eq!(root.len(), 85);
    assert_eq!(pages, 3);
    let folder = root.iter().find(|e| e[".tag"] == "folder").unwrap();
    assert_eq!(folder["name"], "Folder 01");
    assert!(folder["id"].as_str().unwrap().starts_with("id:"));
    for e in root.iter().filter(|e| e[".tag"] == "file") {
        for field in [
            "name",
            "id",
            "size",
            "content_hash",
            "server_modified",
            "client_modified",
            "rev",
            "path_display",
        ] {
            assert!(e.get(field).is_some(), "{field} in {e}");
        }
        assert!(e["size"].is_u64());
        assert!(e["server_modified"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            e["path_display"],
            format!("/{}", e["name"].as_str().unwrap())
        );
    }

    // Subfolders by path, nested ones too; every image exactly once overall.
    let (sub1, _) = dropbox_list_all(&client, base, url, "/Folder 01", 1000).await;
    let (sub2, _) = dropbox_list_all(&client, base, url, "/folder 01/Folder 02", 1000).await;
    let mut ids = HashSet::new();
    for e in root
        .iter()
        .chain(&sub1)
        .chain(&sub2)
        .filter(|e| e[".tag"] == "file")
    {
        assert!(ids.insert(e["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(ids.len(), 250);
    assert!(sub2[0]["path_display"]
        .as_str()
        .unwrap()
        .starts_with("/Folder 01/Folder 02/"));
}

#[tokio::test]
async fn get_shared_link_file_returns_bytes_and_result_header() {
    let fake = FakeProviders::builder()
        .dropbox_folder(Folder::generated(
            Generate::images(4).size_range(1000, 30_000),
        ))
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, url) = (&running.base_url, &fake.dropbox_links()[0].url);
    let client = client();

    let (entries, _) = dropbox_list_all(&client, base, url, "", 100).await;
    assert_eq!(entries.len(), 4);
    for e in &entries {
        let path = e["path_display"].as_str().unwrap();
        let response = dropbox_download(&client, base, url, path).await.unwrap();
        assert_eq!(response.status(), 200);
        let result: Value =
            serde_json::from_str(response.headers()["dropbox-api-result"].to_str().unwrap())
                .unwrap();
        assert_eq!(result[".tag"], "file");
        assert_eq!(result["id"], e["id"]);
        assert_eq!(result["name"], e["name"]);
        assert_eq!(result["size"], e["size"]);
        assert_eq!(result["rev"], e["rev"]);
        assert_eq!(result["url"], json!(url));
        assert_eq!(
            response.headers()["content-length"].to_str().unwrap(),
            e["size"].to_string()
        );
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, e["size"].as_u64().unwrap());
        assert_eq!(
            reference_content_hash(&bytes),
            e["content_hash"].as_str().unwrap()
        );
        assert_eq!(
            dropbox_content_hash(&bytes),
            e["content_hash"].as_str().unwrap()
        );
    }

    // Paths are case-insensitive; Range works on the content route.
    let name = entries[0]["name"].as_str().unwrap().to_uppercase();
    let response = client
        .post(format!("{base}/2/sharing/get_shared_link_file"))
        .bearer_auth(TOKEN)
        .header(
            "Dropbox-API-Arg",
            json!({"url": url, "path": format!("/{name}")}).to_string(),
        )
        .header("Range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap().len(), 8);
}

#[tokio::test]
async fn content_hash_uses_4_mib_blocks() {
    // 9 MiB: two full blocks and a partial one.
    let fake = FakeProviders::builder()
        .dropbox_folder(Folder::generated(
            Generate::images(1)
                .size(9 * 1024 * 1024)
                .types(&[ImageKind::Png]),
        ))
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, url) = (&running.base_url, &fake.dropbox_links()[0].url);
    let client = client();
    let (entries, _) = dropbox_list_all(&client, base, url, "", 10).await;
    let path = entries[0]["path_display"].as_str().unwrap();
    let bytes = dropbox_download(&client, base, url, path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len(), 9 * 1024 * 1024);
    let expected = reference_content_hash(&bytes);
    assert_eq!(entries[0]["content_hash"], json!(expected));
    // Not the plain SHA-256 of the bytes.
    assert_ne!(expected, sha256_hex(&bytes));
}

#[tokio::test]
async fn route_errors_are_409_with_error_summary() {
    let fake = FakeProviders::builder()
        .dropbox_folder(Folder::generated(
            Generate::images(2).size(500).subfolders(1),
        ))
        .dropbox_folder(Folder::generated(Generate::images(2).size(500)).private())
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, url) = (&running.base_url, &fake.dropbox_links()[0].url);
    let client = client();

    let list = |body: Value| dropbox_rpc(&client, base, "files/list_folder", body);
    let wrong_key = url.replace("rlkey=", "rlkey=x");
    for link in [
        wrong_key.as_str(),
        fake.dropbox_links()[1].url.as_str(),
        "https://www.dropbox.com/scl/fo/zzz/h?rlkey=q",
    ] {
        let response = list(json!({"path": "", "shared_link": {"url": link}})).await;
        assert_eq!(response.status(), 409);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error_summary": "shared_link_not_found/..", "error": {".tag": "shared_link_not_found"}})
        );
    }
    let response = list(json!({"path": "/nope", "shared_link": {"url": url}})).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error_summary": "path/not_found/..", "error": {".tag": "path", "path": {".tag": "not_found"}}})
    );

    let response = dropbox_download(&client, base, url, "/missing.jpg")
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"][".tag"], "shared_link_not_found");
    let response = dropbox_download(&client, base, url, "/Folder 01")
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_summary"], "shared_link_is_directory/..");

    // Malformed calls are 400 with Dropbox's plain-text message.
    let response = client
        .post(format!("{base}/2/files/list_folder"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().starts_with(
        "Error in call to API function \"files/list_folder\": Bad HTTP \"Content-Type\""
    ));
    let response = dropbox_rpc(
        &client,
        base,
        "files/list_folder/continue",
        json!({"cursor": "garbage"}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = client
        .post(format!("{base}/2/sharing/get_shared_link_file"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn bearer_token_is_required() {
    let fake = FakeProviders::builder()
        .dropbox_folder(Folder::generated(Generate::images(1).size(500)))
        .dropbox_token(TOKEN)
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, url) = (&running.base_url, &fake.dropbox_links()[0].url);
    let client = client();
    let body = json!({"path": "", "shared_link": {"url": url}});
    let expected = json!({"error_summary": "invalid_access_token/..", "error": {".tag": "invalid_access_token"}});

    let none = client
        .post(format!("{base}/2/files/list_folder"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.json::<Value>().await.unwrap(), expected);
    let wrong = client
        .post(format!("{base}/2/files/list_folder"))
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let download = client
        .post(format!("{base}/2/sharing/get_shared_link_file"))
        .header(
            "Dropbox-API-Arg",
            json!({"url": url, "path": "/IMG_00000.png"}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 401);
    assert_eq!(download.json::<Value>().await.unwrap(), expected);
    let ok = dropbox_download(&client, base, url, "/IMG_00000.png")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn get_shared_link_metadata_names_the_linked_folder() {
    let fake = FakeProviders::builder()
        .dropbox_folder(Folder::generated(Generate::images(2).size(500)).name("Spring catalog"))
        .dropbox_folder(Folder::generated(Generate::images(2).size(500)).private())
        .dropbox_token(TOKEN)
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, url) = (&running.base_url, &fake.dropbox_links()[0].url);
    let client = client();
    let metadata =
        |body: Value| dropbox_rpc(&client, base, "sharing/get_shared_link_metadata", body);

    let response = metadata(json!({"url": url})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body[".tag"], "folder");
    assert_eq!(body["name"], "Spring catalog");
    assert_eq!(body["url"], url.as_str());
    assert!(body["id"].as_str().unwrap().starts_with("id:"), "{body}");
    assert_eq!(
        body["link_permissions"]["resolved_visibility"][".tag"],
        "public"
    );

    // A private link, a wrong key and an unknown link are all "not found".
    let wrong_key = url.replace("rlkey=", "rlkey=x");
    for link in [
        fake.dropbox_links()[1].url.as_str(),
        wrong_key.as_str(),
        "https://www.dropbox.com/scl/fo/zzz/h?rlkey=q",
    ] {
        let response = metadata(json!({"url": link})).await;
        assert_eq!(response.status(), 409, "{link}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error_summary": "shared_link_not_found/..", "error": {".tag": "shared_link_not_found"}})
        );
    }

    // Malformed calls are 400 in plain text; without the token, 401.
    for body in [json!({}), json!({"url": url, "path": "/IMG_00000.png"})] {
        let response = metadata(body).await;
        assert_eq!(response.status(), 400);
        assert!(response
            .text()
            .await
            .unwrap()
            .starts_with("Error in call to API function \"sharing/get_shared_link_metadata\""));
    }
    let response = client
        .post(format!("{base}/2/sharing/get_shared_link_metadata"))
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
