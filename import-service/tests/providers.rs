//! The Drive and Dropbox clients against `fake-providers` (the emulator of both APIs'
//! wire formats) on loopback: folders walked completely, checksums matching the bytes,
//! and every injected fault classified as the import pipeline needs it.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use fake_providers::faults::{Fault, RateLimitReason, Route, RouteMatch, Rule};
use fake_providers::{FakeProviders, Folder, Generate, RunningFake};
use futures::TryStreamExt;
use import_service::providers::dropbox::{Dropbox, DropboxAuth, DropboxSettings};
use import_service::providers::google_drive::{DriveSettings, GoogleDrive};
use import_service::providers::{
    folder_url, Entry, FolderRef, ListingPosition, ProviderClient, ProviderError, RemoteFile,
    Retry, SkipReason,
};
use sha2::{Digest, Sha256};

fn drive(fake: &RunningFake) -> GoogleDrive {
    drive_paced(fake, NonZeroU32::MAX)
}

/// A Drive client that makes at most `requests_per_second`.
fn drive_paced(fake: &RunningFake, requests_per_second: NonZeroU32) -> GoogleDrive {
    GoogleDrive::new(DriveSettings {
        api_base: fake.base_url.parse().unwrap(),
        api_key: "test-key".into(),
        page_size: 1000,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(10),
        requests_per_second,
    })
    .unwrap()
}

fn dropbox(fake: &RunningFake) -> Dropbox {
    Dropbox::new(DropboxSettings {
        api_base: fake.base_url.parse().unwrap(),
        content_base: fake.base_url.parse().unwrap(),
        auth: DropboxAuth::AccessToken("test-token".into()),
        page_size: 500,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(10),
        requests_per_second: NonZeroU32::MAX,
    })
    .unwrap()
}

/// Lists a whole folder tree the way the workers will: page by page, subfolders too.
async fn walk(
    client: &dyn ProviderClient,
    folder: &FolderRef,
) -> Result<(Vec<RemoteFile>, Vec<(String, SkipReason)>, usize), ProviderError> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut pages = 0;
    let mut todo = vec![ListingPosition::root(folder)];
    while let Some(position) = todo.pop() {
        let page = client.list_page(folder, &position).await?;
        pages += 1;
        for entry in page.entries {
            match entry {
                Entry::File(file) => files.push(file),
                Entry::Folder(sub) => todo.push(sub),
                Entry::Skipped { name, reason, .. } => skipped.push((name, reason)),
            }
        }
        todo.extend(page.next);
    }
    Ok((files, skipped, pages))
}

async fn download(
    client: &dyn ProviderClient,
    folder: &FolderRef,
    file: &RemoteFile,
) -> Result<Vec<u8>, ProviderError> {
    let download = client.download(folder, file).await?;
    let chunks: Vec<bytes::Bytes> = download.bytes.try_collect().await?;
    Ok(chunks.concat())
}

#[tokio::test]
async fn drive_folder_is_walked_completely_and_checksums_match() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(2_500)
                .size(600)
                .subfolders(3)
                .docs(2)
                .shortcuts(2)
                .non_images(2)
                .seed(11),
        ))
        .build()
        .unwrap()
        .serve_on_loopback()
        .await
        .unwrap();
    let folder = folder_url::parse(&fake.drive_folders()[0].url).unwrap();
    let client = drive(&fake);
    let info = client.open_folder(&folder).await.unwrap();
    assert!(!info.name.is_empty());

    let (files, skipped, pages) = walk(&client, &folder).await.unwrap();
    // 2,500 images plus 2 shortcuts resolved to images.
    assert_eq!(files.len(), 2_502, "skipped: {skipped:?}");
    assert!(
        pages >= 3,
        "a 2,500-file folder needs several pages, got {pages}"
    );
    let ids: std::collections::BTreeSet<&str> =
        files.iter().map(|f| f.source_id.as_str()).collect();
    assert_eq!(ids.len(), files.len(), "every entry once");
    let reasons: BTreeMap<SkipReason, usize> =
        skipped.iter().fold(BTreeMap::new(), |mut m, (_, r)| {
            *m.entry(*r).or_default() += 1;
            m
        });
    assert_eq!(
        reasons.get(&SkipReason::GoogleNative),
        Some(&2),
        "{skipped:?}"
    );
    assert_eq!(
        reasons.get(&SkipReason::NotAnImage),
        Some(&2),
        "{skipped:?}"
    );

    // Shortcuts download their target; sizes and checksums match the bytes.
    let shortcuts: Vec<&RemoteFile> = files
        .iter()
        .filter(|f| f.source_id != f.download_ref)
        .collect();
    assert_eq!(shortcuts.len(), 2);
    for file in files.iter().take(5).chain(shortcuts) {
        let bytes = download(&client, &folder, file).await.unwrap();
        assert_eq!(Some(bytes.len() as u64), file.size, "{}", file.name);
        assert_eq!(
            file.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&bytes)).as_str())
        );
        assert!(file.md5.is_some());
    }
}

#[tokio::test]
async fn dropbox_folder_is_walked_completely_and_hashes_match() {
    let fake = FakeProviders::builder()
        .dropbox_folder(
            Folder::generated(
                Generate::images(1_200)
                    .size(700)
                    .subfolders(2)
                    .non_images(3)
                    .seed(5),
            )
            .name("Summer shoes"),
        )
        .build()
        .unwrap()
        .serve_on_loopback()
        .await
        .unwrap();
    let folder = folder_url::parse(&fake.dropbox_links()[0].url).unwrap();
    let client = dropbox(&fake);
    let info = client.open_folder(&folder).await.unwrap();
    assert_eq!(info.name, "Summer shoes");
    let (files, skipped, pages) = walk(&client, &folder).await.unwrap();
    assert_eq!(files.len(), 1_200, "skipped: {skipped:?}");
    assert!(pages >= 3, "{pages}");
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    for file in files.iter().step_by(400) {
        let bytes = download(&client, &folder, file).await.unwrap();
        assert_eq!(Some(bytes.len() as u64), file.size);
        assert_eq!(
            file.content_hash.as_deref(),
            Some(dropbox_content_hash(&bytes).as_str())
        );
    }
}

/// Dropbox's content hash: SHA-256 over the SHA-256 of each 4 MiB block.
fn dropbox_content_hash(bytes: &[u8]) -> String {
    let mut outer = Sha256::new();
    for block in bytes.chunks(4 << 20) {
        outer.update(Sha256::digest(block));
    }
    hex::encode(outer.finalize())
}

#[tokio::test]
async fn private_folders_are_errors_not_empty_imports() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(Generate::images(3)).private())
        .dropbox_folder(Folder::generated(Generate::images(3)).private())
        .build()
        .unwrap()
        .serve_on_loopback()
        .await
        .unwrap();
    let drive_folder = folder_url::parse(&fake.drive_folders()[0].url).unwrap();
    let e = drive(&fake).open_folder(&drive_folder).await.unwrap_err();
    assert_eq!((e.reason, e.retry), ("not-public", Retry::Permanent), "{e}");
    let dropbox_folder = folder_url::parse(&fake.dropbox_links()[0].url).unwrap();
    let e = dropbox(&fake)
        .open_folder(&dropbox_folder)
        .await
        .unwrap_err();
    assert_eq!((e.reason, e.retry), ("not-public", Retry::Permanent), "{e}");
}

#[tokio::test]
async fn resource_keys_travel_in_their_header() {
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(Generate::images(4)).with_resource_key())
        .build()
        .unwrap()
        .serve_on_loopback()
        .await
        .unwrap();
    let url = &fake.drive_folders()[0].url;
    let folder = folder_url::parse(url).unwrap();
    assert!(
        matches!(
            &folder,
            FolderRef::GoogleDrive {
                resource_key: Some(_),
                ..
            }
        ),
        "{url}"
    );
    let client = drive(&fake);
    client.open_folder(&folder).await.unwrap();
    let (files, _, _) = walk(&client, &folder).await.unwrap();
    assert_eq!(files.len(), 4);
    // The same folder without its key is not visible.
    let FolderRef::GoogleDrive { folder_id, .. } = &folder else {
        unreachable!()
    };
    let keyless = FolderRef::GoogleDrive {
        folder_id: folder_id.clone(),
        resource_key: None,
    };
    let e = client.open_folder(&keyless).await.unwrap_err();
    assert_eq!(e.reason, "not-public", "{e}");
}

/// One file of a one-image folder, and its client, for fault tests.
async fn one_file(provider: &str) -> (RunningFake, Box<dyn ProviderClient>, FolderRef, RemoteFile) {
    let builder = FakeProviders::builder();
    let builder = if provider == "drive" {
        builder.drive_folder(Folder::generated(Generate::images(1).size(5_000)))
    } else {
        builder.dropbox_folder(Folder::generated(Generate::images(1).size(5_000)))
    };
    let fake = builder.build().unwrap().serve_on_loopback().await.unwrap();
    let (client, url): (Box<dyn ProviderClient>, String) = if provider == "drive" {
        (Box::new(drive(&fake)), fake.drive_folders()[0].url.clone())
    } else {
        (
            Box::new(dropbox(&fake)),
            fake.dropbox_links()[0].url.clone(),
        )
    };
    let folder = folder_url::parse(&url).unwrap();
    let (files, _, _) = walk(client.as_ref(), &folder).await.unwrap();
    let file = files.into_iter().next().unwrap();
    (fake, client, folder, file)
}

#[tokio::test]
async fn every_injected_fault_is_classified() {
    let transient = |after: Option<u64>| Retry::Transient {
        after: after.map(Duration::from_secs),
    };
    for provider in ["drive", "dropbox"] {
        let cases: Vec<(RouteMatch, Fault, &str, Retry)> = vec![
            (
                RouteMatch::Download,
                Fault::RateLimited {
                    status: 403,
                    reason: RateLimitReason::RateLimitExceeded,
                    retry_after: Some(2),
                },
                "rate-limited",
                transient(Some(2)),
            ),
            (
                RouteMatch::Download,
                Fault::RateLimited {
                    status: 429,
                    reason: RateLimitReason::UserRateLimitExceeded,
                    retry_after: None,
                },
                "rate-limited",
                transient(None),
            ),
            (
                RouteMatch::Download,
                Fault::Html429 {
                    retry_after: Some(1),
                },
                "rate-limited",
                transient(Some(1)),
            ),
            (
                RouteMatch::Download,
                Fault::ServerError { status: 503 },
                "provider-unavailable",
                transient(None),
            ),
            (
                RouteMatch::Download,
                Fault::ServerError { status: 500 },
                "provider-unavailable",
                transient(None),
            ),
            (
                RouteMatch::Download,
                Fault::ConnectionReset,
                "connection-failed",
                transient(None),
            ),
            (
                RouteMatch::Download,
                Fault::TruncatedBody { after_bytes: 1_000 },
                "stream-cut",
                transient(None),
            ),
            (
                RouteMatch::Download,
                Fault::DownloadQuotaExceeded,
                if provider == "drive" {
                    "download-quota-exceeded"
                } else {
                    "not-public"
                }, // Dropbox: shared_link_access_denied
                Retry::Permanent,
            ),
            (
                RouteMatch::Download,
                Fault::NotFound,
                "not-found",
                Retry::Permanent,
            ),
            (
                RouteMatch::Listing,
                Fault::ServerError { status: 503 },
                "provider-unavailable",
                transient(None),
            ),
            (
                RouteMatch::Listing,
                Fault::RateLimited {
                    status: 429,
                    reason: RateLimitReason::RateLimitExceeded,
                    retry_after: Some(3),
                },
                "rate-limited",
                transient(Some(3)),
            ),
            (
                RouteMatch::Listing,
                Fault::ConnectionReset,
                "connection-failed",
                transient(None),
            ),
        ];
        let (fake, client, folder, file) = one_file(provider).await;
        for (route, fault, reason, retry) in cases {
            let shown = format!("{provider} {route:?} {fault:?}");
            fake.faults().clear();
            fake.faults().add(Rule::new(route, fault).first(1));
            let result = match route {
                RouteMatch::Listing => client
                    .list_page(&folder, &ListingPosition::root(&folder))
                    .await
                    .map(|_| ()),
                _ => download(client.as_ref(), &folder, &file).await.map(|_| ()),
            };
            let e = result.expect_err(&shown);
            assert_eq!((e.reason, e.retry), (reason, retry), "{shown}: {e}");
            // The fault fired once; the next attempt succeeds.
            let again = match route {
                RouteMatch::Listing => client
                    .list_page(&folder, &ListingPosition::root(&folder))
                    .await
                    .map(|_| ()),
                _ => download(client.as_ref(), &folder, &file).await.map(|_| ()),
            };
            assert!(again.is_ok(), "{shown}: retry failed: {again:?}");
        }
    }
}

#[tokio::test]
async fn an_empty_listing_is_just_empty() {
    let (fake, client, folder, _) = one_file("drive").await;
    fake.faults()
        .add(Rule::new(RouteMatch::Listing, Fault::EmptyListing).first(1));
    let page = client
        .list_page(&folder, &ListingPosition::root(&folder))
        .await
        .unwrap();
    assert!(page.entries.is_empty() && page.next.is_none());
}

#[tokio::test]
async fn shortcut_lookups_inside_a_page_keep_to_the_request_budget() {
    // One listing call and one `files.get` per shortcut: 21 requests. At 10 a second
    // (a burst of 10, then one every 100 ms) they cannot take less than about 1.1 s;
    // unpaced, they take a few milliseconds on loopback.
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(20).size(500).shortcuts(20),
        ))
        .build()
        .unwrap()
        .serve_on_loopback()
        .await
        .unwrap();
    let folder = folder_url::parse(&fake.drive_folders()[0].url).unwrap();
    let client = drive_paced(&fake, NonZeroU32::new(10).unwrap());
    let requests = || {
        let stats = fake.stats();
        stats.route(Route::DriveList) + stats.route(Route::DriveGet)
    };
    let before = requests();

    let started = Instant::now();
    let page = client
        .list_page(&folder, &ListingPosition::root(&folder))
        .await
        .unwrap();
    let took = started.elapsed();

    let shortcuts = page
        .entries
        .iter()
        .filter(|e| matches!(e, Entry::File(f) if f.source_id != f.download_ref))
        .count();
    assert_eq!(shortcuts, 20, "{:?}", page.entries);
    assert_eq!(requests() - before, 21);
    assert!(took >= Duration::from_millis(1_000), "{took:?}");
}
