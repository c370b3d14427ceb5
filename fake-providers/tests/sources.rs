//! Folder sources: a local directory tree, and the deterministic generator.

mod common;

use common::*;
use fake_providers::content::Content;
use fake_providers::{FakeProviders, Folder, Generate};
use serde_json::Value;

fn write_tree(dir: &std::path::Path) {
    std::fs::write(
        dir.join("a.png"),
        service_kit::media::synthetic::png(10, 20, 5_000),
    )
    .unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("sub").join("b.JPG"),
        service_kit::media::synthetic::jpeg(30, 40, 7_000),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an image").unwrap();
    std::fs::write(dir.join(".hidden"), b"skipped").unwrap();
}

#[tokio::test]
async fn a_directory_is_served_over_both_providers() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path());
    let build = || {
        FakeProviders::builder()
            .drive_folder(Folder::directory(dir.path()))
            .dropbox_folder(Folder::directory(dir.path()))
            .build()
            .unwrap()
    };
    let fake = build();
    // Ids derive from paths: a second build gives the same ones.
    assert_eq!(build().drive_folders()[0].id, fake.drive_folders()[0].id);
    assert_eq!(
        build()
            .nodes()
            .iter()
            .map(|n| n.drive_id.clone())
            .collect::<Vec<_>>(),
        fake.nodes()
            .iter()
            .map(|n| n.drive_id.clone())
            .collect::<Vec<_>>()
    );
    let running = fake.serve_on_loopback().await.unwrap();
    let base = &running.base_url;
    let client = client();

    let files = drive_list_all(
        &client,
        base,
        &fake.drive_folders()[0].id,
        "id,name,mimeType,size,md5Checksum",
    )
    .await;
    let summary: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["mimeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a.png".to_owned(), "image/png".to_owned()),
            ("notes.txt".to_owned(), "text/plain".to_owned()),
            (
                "sub".to_owned(),
                "application/vnd.google-apps.folder".to_owned()
            ),
        ]
    );
    let on_disk = std::fs::read(dir.path().join("a.png")).unwrap();
    let bytes = drive_download(&client, base, files[0]["id"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes, on_disk);
    assert_eq!(files[0]["md5Checksum"].as_str().unwrap(), md5_hex(&on_disk));
    assert_eq!(
        files[0]["size"].as_str().unwrap(),
        on_disk.len().to_string()
    );
    let sub = drive_list_all(
        &client,
        base,
        files[2]["id"].as_str().unwrap(),
        "name,mimeType",
    )
    .await;
    assert_eq!(sub[0]["name"], "b.JPG");
    assert_eq!(sub[0]["mimeType"], "image/jpeg");

    let url = &fake.dropbox_links()[0].url;
    let (entries, _) = dropbox_list_all(&client, base, url, "/sub", 100).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["path_display"], "/sub/b.JPG");
    let on_disk = std::fs::read(dir.path().join("sub").join("b.JPG")).unwrap();
    assert_eq!(
        entries[0]["content_hash"].as_str().unwrap(),
        reference_content_hash(&on_disk)
    );
    let bytes = dropbox_download(&client, base, url, "/sub/b.jpg")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes, on_disk);
}

fn generated(seed: u64) -> FakeProviders {
    FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(20)
                .size_range(2_000, 60_000)
                .subfolders(3)
                .seed(seed),
        ))
        .build()
        .unwrap()
}

fn contents(fake: &FakeProviders) -> Vec<(String, Vec<u8>)> {
    fake.nodes()
        .iter()
        .filter_map(|n| Some((n.drive_id.clone(), n.content()?.bytes().unwrap())))
        .collect()
}

#[test]
fn the_generator_is_deterministic() {
    let a = contents(&generated(42));
    let b = contents(&generated(42));
    assert_eq!(a.len(), 20);
    assert_eq!(a, b);
    // Another seed: other bytes.
    let c = contents(&generated(43));
    assert!(a.iter().zip(&c).all(|((_, x), (_, y))| x != y));
    // Every file has its own bytes.
    let mut hashes: Vec<String> = a.iter().map(|(_, bytes)| sha256_hex(bytes)).collect();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 20);
}

#[test]
fn generated_images_are_complete_and_have_their_dimensions() {
    let fake = generated(7);
    for node in fake.nodes() {
        let Some(content) = node.content() else {
            continue;
        };
        let bytes = content.bytes().unwrap();
        let (w, h) = node.dimensions.unwrap();
        let size = imagesize::blob_size(&bytes).unwrap();
        assert_eq!((size.width as u32, size.height as u32), (w, h));
        match content {
            Content::Png { .. } => {
                assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
                assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
                assert_eq!(Some(bytes.len() as u64), content.known_size());
            }
            Content::Jpeg { .. } => {
                assert!(bytes.starts_with(&[0xFF, 0xD8]));
                assert!(bytes.ends_with(&[0xFF, 0xD9]));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The cached digests agree with the bytes.
        let digests = node.digests().unwrap().unwrap();
        assert_eq!(digests.size, bytes.len() as u64);
        assert_eq!(digests.sha256, sha256_hex(&bytes));
    }
}

#[tokio::test]
async fn the_drive_listing_is_stable_across_builds() {
    let list = |fake: FakeProviders| async move {
        let running = fake.serve_on_loopback().await.unwrap();
        let files = drive_list_all(
            &client(),
            &running.base_url,
            &fake.drive_folders()[0].id,
            "id,name,md5Checksum",
        )
        .await;
        running.shutdown().await;
        files
    };
    let a: Vec<Value> = list(generated(5)).await;
    let b: Vec<Value> = list(generated(5)).await;
    assert_eq!(a, b);
}
