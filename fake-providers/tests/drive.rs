//! Drive v3 wire format, against the emulator on 127.0.0.1:0 with reqwest.

mod common;

use std::collections::HashSet;

use common::*;
use fake_providers::{FakeProviders, Folder, Generate, ImageKind};
use serde_json::{json, Value};

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn lists_2500_files_in_three_pages_of_1000() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(Generate::images(2500).size(300)))
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, folder) = (&running.base_url, &fake.drive_folders()[0].id);
    let client = client();

    let fields = "nextPageToken,files(id,name,mimeType,size)";
    let mut token: Option<String> = None;
    let mut sizes = Vec::new();
    let mut ids = HashSet::new();
    for page_no in 0..3 {
        let mut extra = vec![("pageSize", "1000"), ("fields", fields)];
        if let Some(t) = &token {
            extra.push(("pageToken", t));
        }
        let page: Value = drive_list(&client, base, folder, &extra)
            .await
            .json()
            .await
            .unwrap();
        let files = page["files"].as_array().unwrap();
        sizes.push(files.len());
        for f in files {
            assert!(ids.insert(f["id"].as_str().unwrap().to_owned()));
            assert!(f["size"].is_string(), "size is a string: {f}");
            assert!(f["mimeType"].as_str().unwrap().starts_with("image/"));
        }
        token = page["nextPageToken"].as_str().map(str::to_owned);
        assert_eq!(token.is_some(), page_no < 2, "page {page_no}");
        assert_eq!(keys(&page).len(), if page_no < 2 { 2 } else { 1 });
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(ids.len(), 2500);

    // Default page size is 100; a page size over 1000 is refused.
    let page: Value = drive_list(&client, base, folder, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["files"].as_array().unwrap().len(), 100);
    let response = drive_list(&client, base, folder, &[("pageSize", "1001")]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["location"], "pageSize");
    // A page token from another folder is refused.
    let bad = drive_list(&client, base, folder, &[("pageToken", "bm9wZQ")]).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn default_fields_and_partial_responses() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(Generate::images(3).size(500)))
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, folder) = (&running.base_url, &fake.drive_folders()[0].id);
    let client = client();

    let page: Value = drive_list(&client, base, folder, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&page), ["files", "incompleteSearch", "kind"]);
    assert_eq!(page["kind"], "drive#fileList");
    assert_eq!(page["incompleteSearch"], false);
    for f in page["files"].as_array().unwrap() {
        assert_eq!(keys(f), ["id", "kind", "mimeType", "name"]);
        assert_eq!(f["kind"], "drive#file");
    }

    let fields = "nextPageToken,files(id,name,mimeType,size,md5Checksum,sha256Checksum,resourceKey,shortcutDetails)";
    let page: Value = drive_list(&client, base, folder, &[("fields", fields)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&page), ["files"]);
    for f in page["files"].as_array().unwrap() {
        assert_eq!(
            keys(f),
            [
                "id",
                "md5Checksum",
                "mimeType",
                "name",
                "sha256Checksum",
                "size"
            ]
        );
    }

    // Slash syntax and `*`.
    let page: Value = drive_list(&client, base, folder, &[("fields", "files/id")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&page["files"][0]), ["id"]);
    let page: Value = drive_list(&client, base, folder, &[("fields", "files(*)")])
        .await
        .json()
        .await
        .unwrap();
    assert!(page["files"][0]["md5Checksum"].is_string());
    assert!(page["files"][0]["parents"][0] == json!(folder));

    // files.get: default subset, then chosen fields.
    let id = page["files"][0]["id"].as_str().unwrap();
    let meta: Value = client
        .get(format!("{base}/drive/v3/files/{id}"))
        .query(&[("key", KEY)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&meta), ["id", "kind", "mimeType", "name"]);
    let meta: Value = client
        .get(format!("{base}/drive/v3/files/{id}"))
        .query(&[
            ("key", KEY),
            ("fields", "id,size,imageMediaMetadata(width)"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&meta), ["id", "imageMediaMetadata", "size"]);
    assert_eq!(keys(&meta["imageMediaMetadata"]), ["width"]);

    // An unknown field is a 400 invalidParameter, as on Drive.
    let response = drive_list(&client, base, folder, &[("fields", "files(id,bogus)")]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "invalidParameter");
    assert_eq!(body["error"]["message"], "Invalid field selection bogus");
}

#[tokio::test]
async fn folders_subfolders_shortcuts_docs_and_non_images() {
    let generate = Generate::images(6)
        .size(800)
        .subfolders(2)
        .docs(1)
        .shortcuts(1)
        .non_images(1);
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(generate))
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, folder) = (&running.base_url, &fake.drive_folders()[0].id);
    let client = client();

    let fields = "id,name,mimeType,size,md5Checksum,shortcutDetails";
    let files = drive_list_all(&client, base, folder, fields).await;
    let by_mime = |m: &str| files.iter().filter(|f| f["mimeType"] == m).count();
    assert_eq!(
        by_mime("application/vnd.google-apps.folder"),
        1,
        "{files:#?}"
    );
    assert_eq!(by_mime("application/vnd.google-apps.document"), 1);
    assert_eq!(by_mime("application/vnd.google-apps.shortcut"), 1);
    assert_eq!(by_mime("application/pdf"), 1);
    assert_eq!(by_mime("image/png") + by_mime("image/jpeg"), 2);
    for f in &files {
        let native = f["mimeType"]
            .as_str()
            .unwrap()
            .starts_with("application/vnd.google-apps");
        assert_eq!(f.get("size").is_none(), native, "{f}");
        assert_eq!(f.get("md5Checksum").is_none(), native, "{f}");
    }

    // The shortcut points at an image that lives outside the folder.
    let shortcut = files
        .iter()
        .find(|f| f["mimeType"] == "application/vnd.google-apps.shortcut")
        .unwrap();
    let target = shortcut["shortcutDetails"]["targetId"].as_str().unwrap();
    assert!(shortcut["shortcutDetails"]["targetMimeType"]
        .as_str()
        .unwrap()
        .starts_with("image/"));
    let meta = client
        .get(format!("{base}/drive/v3/files/{target}"))
        .query(&[("key", KEY), ("fields", "id,mimeType,size,parents")])
        .send()
        .await
        .unwrap();
    assert_eq!(meta.status(), 200);
    let meta: Value = meta.json().await.unwrap();
    assert!(meta.get("parents").is_none());
    let bytes = drive_download(&client, base, target)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len().to_string(), meta["size"].as_str().unwrap());

    // Subfolders: "Folder 01" under the root, "Folder 02" nested in it.
    let sub = files
        .iter()
        .find(|f| f["mimeType"] == "application/vnd.google-apps.folder")
        .unwrap();
    let inner = drive_list_all(&client, base, sub["id"].as_str().unwrap(), fields).await;
    assert!(inner.iter().any(|f| f["name"] == "Folder 02"));
    assert!(inner
        .iter()
        .any(|f| f["mimeType"] == "image/png" || f["mimeType"] == "image/jpeg"));

    // Folders only, via a mimeType term.
    let q = format!("'{folder}' in parents and mimeType = 'application/vnd.google-apps.folder' and trashed = false");
    let page: Value = client
        .get(format!("{base}/drive/v3/files"))
        .query(&[("q", q.as_str()), ("key", KEY)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["files"].as_array().unwrap().len(), 1);

    // A Google Doc cannot be downloaded.
    let doc = files
        .iter()
        .find(|f| f["mimeType"] == "application/vnd.google-apps.document")
        .unwrap();
    let response = drive_download(&client, base, doc["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "fileNotDownloadable");
    assert_eq!(body["error"]["code"], 403);
}

#[tokio::test]
async fn checksums_match_downloaded_bytes_and_images_are_complete() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(6).size_range(3_000, 40_000).seed(11),
        ))
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let (base, folder) = (&running.base_url, &fake.drive_folders()[0].id);
    let client = client();

    let files = drive_list_all(
        &client,
        base,
        folder,
        "id,name,mimeType,size,md5Checksum,sha256Checksum,imageMediaMetadata",
    )
    .await;
    assert_eq!(files.len(), 6);
    for f in &files {
        let response = drive_download(&client, base, f["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            f["mimeType"].as_str().unwrap()
        );
        let length = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = response.bytes().await.unwrap();
        assert_eq!(length, f["size"].as_str().unwrap());
        assert_eq!(bytes.len().to_string(), length);
        assert_eq!(md5_hex(&bytes), f["md5Checksum"].as_str().unwrap());
        assert_eq!(sha256_hex(&bytes), f["sha256Checksum"].as_str().unwrap());
        // A real image of the type announced, with the dimensions announced, complete.
        let kind = infer::get(&bytes).unwrap();
        assert_eq!(kind.mime_type(), f["mimeType"].as_str().unwrap());
        let dims = imagesize::blob_size(&bytes).unwrap();
        assert_eq!(
            dims.width as u64,
            f["imageMediaMetadata"]["width"].as_u64().unwrap()
        );
        assert_eq!(
            dims.height as u64,
            f["imageMediaMetadata"]["height"].as_u64().unwrap()
        );
        if kind.mime_type() == "image/png" {
            assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
        } else {
            assert_eq!(&bytes[bytes.len() - 2..], [0xFF, 0xD9]);
        }
    }

    // Range: a 206 with the right slice.
    let id = files[0]["id"].as_str().unwrap();
    let whole = drive_download(&client, base, id)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let response = client
        .get(format!("{base}/drive/v3/files/{id}"))
        .query(&[("alt", "media"), ("key", KEY)])
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"].to_str().unwrap(),
        format!("bytes 100-199/{}", whole.len())
    );
    assert_eq!(response.bytes().await.unwrap(), whole[100..200]);
}

#[tokio::test]
async fn errors_have_googles_shape() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(Generate::images(1).size(500)))
        .drive_api_key(KEY)
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let base = &running.base_url;
    let client = client();

    let response = client
        .get(format!("{base}/drive/v3/files/nope123"))
        .query(&[("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": 404, "message": "File not found: nope123.", "errors": [{
            "message": "File not found: nope123.", "domain": "global", "reason": "notFound",
            "location": "fileId", "locationType": "parameter"}], "status": "NOT_FOUND"}})
    );

    // No key: 403 forbidden; a wrong key: 400 badRequest (API_KEY_INVALID).
    let response = client
        .get(format!("{base}/drive/v3/files"))
        .query(&[("q", "'x' in parents")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "forbidden");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    let response = client
        .get(format!("{base}/drive/v3/files/x"))
        .query(&[("key", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "badRequest");
    assert_eq!(
        body["error"]["message"],
        "API key not valid. Please pass a valid API key."
    );
    assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID");

    // An unsupported query is a 400 on `q`; listing an unknown folder a 404.
    let response = client
        .get(format!("{base}/drive/v3/files"))
        .query(&[("q", "name contains 'x'"), ("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["location"], "q");
    let response = drive_list(&client, base, "unknownfolder", &[]).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
}

#[tokio::test]
async fn resource_key_and_private_folders() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(Generate::images(2).size(500)).with_resource_key())
        .drive_folder(Folder::generated(Generate::images(2).size(500)).private())
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let base = &running.base_url;
    let client = client();
    let keyed = &fake.drive_folders()[0];
    let key = keyed.resource_key.clone().unwrap();
    assert!(keyed.url.contains(&format!("resourcekey={key}")));
    assert!(keyed.url.starts_with(&format!(
        "https://drive.google.com/drive/folders/{}",
        keyed.id
    )));

    let get = |header: Option<String>| {
        let mut request = client
            .get(format!("{base}/drive/v3/files/{}", keyed.id))
            .query(&[("key", KEY), ("fields", "id,mimeType,resourceKey")]);
        if let Some(h) = header {
            request = request.header("X-Goog-Drive-Resource-Keys", h);
        }
        request.send()
    };
    assert_eq!(get(None).await.unwrap().status(), 404);
    assert_eq!(
        get(Some(format!("{}/wrong", keyed.id)))
            .await
            .unwrap()
            .status(),
        404
    );
    let ok = get(Some(format!("other/x,{}/{key}", keyed.id)))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let meta: Value = ok.json().await.unwrap();
    assert_eq!(meta["resourceKey"], json!(key));

    assert_eq!(
        drive_list(&client, base, &keyed.id, &[]).await.status(),
        404
    );
    let q = format!("'{}' in parents", keyed.id);
    let listed = client
        .get(format!("{base}/drive/v3/files"))
        .query(&[("q", q.as_str()), ("key", KEY)])
        .header("X-Goog-Drive-Resource-Keys", format!("{}/{key}", keyed.id))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let page: Value = listed.json().await.unwrap();
    assert_eq!(page["files"].as_array().unwrap().len(), 2);

    // A private folder (and what is in it) is 404 notFound.
    let private = &fake.drive_folders()[1];
    let response = drive_list(&client, base, &private.id, &[]).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
    let inside = fake
        .nodes()
        .iter()
        .find(|n| {
            n.parent
                .is_some_and(|p| fake.nodes()[p].drive_id == private.id)
        })
        .unwrap();
    let response = drive_download(&client, base, &inside.drive_id)
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn types_can_be_chosen() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(4).size(2000).types(&[ImageKind::Jpeg]),
        ))
        .build()
        .unwrap();
    let running = fake.serve_on_loopback().await.unwrap();
    let files = drive_list_all(
        &client(),
        &running.base_url,
        &fake.drive_folders()[0].id,
        "name,mimeType",
    )
    .await;
    assert!(files.iter().all(|f| f["mimeType"] == "image/jpeg"));
    assert!(files
        .iter()
        .all(|f| f["name"].as_str().unwrap().ends_with(".jpg")));
}
