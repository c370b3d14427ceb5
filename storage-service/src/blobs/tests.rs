//! One conformance suite, run against every backend: `memory`, `local` (temp dir)
//! and `s3` (a real S3-compatible server, when `VITRINE_TEST_S3_ENDPOINT` and
//! friends are set; each test uses a fresh random prefix). Then backend-specific
//! tests: key rules, store URLs, local temp files, unreachable or failing S3.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

use super::object::{PARTS_IN_FLIGHT, PART_SIZE};
use super::*;
use service_kit::testing::backend_env;

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Backends under test
// ---------------------------------------------------------------------------

struct Backend {
    store: Arc<dyn BlobStore>,
    /// Local: the `.incoming` directory.
    incoming: Option<PathBuf>,
    /// Object stores: multipart bookkeeping, and the raw store to list and clean up.
    counts: Option<Arc<Counts>>,
    raw: Option<(Arc<dyn ObjectStore>, Option<ObjectPath>)>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// Temp files (local) or multipart uploads neither completed nor aborted (object).
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(incoming) = &self.incoming {
            for entry in std::fs::read_dir(incoming).expect("list .incoming") {
                found.push(entry.expect("entry").path().display().to_string());
            }
        }
        if let Some(counts) = &self.counts {
            let open = counts.open_uploads();
            if open > 0 {
                found.push(format!("{open} open multipart upload(s)"));
            }
        }
        found
    }

    /// Waits up to 10 s for leftovers to disappear (drop cleanup may be a spawned task).
    async fn assert_no_leftovers(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.leftovers();
            if found.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "leftovers: {found:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Keys visible in the raw object store under this test's prefix.
    async fn raw_keys(&self) -> Vec<String> {
        match &self.raw {
            Some((raw, prefix)) => raw
                .list(prefix.as_ref())
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
                .expect("list raw store"),
            None => Vec::new(),
        }
    }

    async fn cleanup(self) {
        if let Some((raw, prefix)) = &self.raw {
            if prefix.is_some() {
                let keys: Vec<ObjectMeta> = raw
                    .list(prefix.as_ref())
                    .try_collect()
                    .await
                    .unwrap_or_default();
                for meta in keys {
                    let _ = raw.delete(&meta.location).await;
                }
            }
        }
    }
}

async fn memory_backend(_test: &str) -> Option<Backend> {
    let (store, counts) = CountingStore::wrap(Arc::new(object_store::memory::InMemory::new()));
    let blob = ObjectBlobStore::from_store(store.clone(), None, "memory://").expect("store");
    Some(Backend {
        store: Arc::new(blob),
        incoming: None,
        counts: Some(counts),
        raw: Some((store, None)),
        _dir: None,
    })
}

async fn local_backend(_test: &str) -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalBlobStore::open(dir.path().join("blobs")).expect("open local store");
    Some(Backend {
        incoming: Some(store.root().join(".incoming")),
        store: Arc::new(store),
        counts: None,
        raw: None,
        _dir: Some(dir),
    })
}

/// S3 settings from `VITRINE_TEST_S3_*`, or `None` (skip) when no server is configured.
fn s3_test_settings(test: &str) -> Option<S3Settings> {
    let endpoint = backend_env("VITRINE_TEST_S3_ENDPOINT", test)?;
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{test}: VITRINE_TEST_S3_ENDPOINT is set but {name} is not"))
    };
    Some(S3Settings {
        bucket: var("VITRINE_TEST_S3_BUCKET"),
        prefix: Some(format!("vitrine-test-{}", uuid::Uuid::new_v4().simple())),
        allow_http: endpoint.starts_with("http://"),
        endpoint: Some(endpoint),
        region: std::env::var("VITRINE_TEST_S3_REGION").unwrap_or_else(|_| "garage".to_owned()),
        access_key_id: Some(var("VITRINE_TEST_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(var("VITRINE_TEST_S3_SECRET_ACCESS_KEY")),
        virtual_hosted_style: false,
    })
}

async fn s3_backend(test: &str) -> Option<Backend> {
    let settings = s3_test_settings(test)?;
    let prefix = settings.prefix.clone();
    // Build through the production path, then wrap its client to observe multipart uploads.
    let s3 = ObjectBlobStore::s3(settings).expect("S3 store");
    assert!(s3.describe().starts_with("s3://"));
    s3.check().await.expect("S3 readiness probe");
    let (store, counts) = CountingStore::wrap(s3.inner().clone());
    let blob = ObjectBlobStore::from_store(store, prefix.clone(), s3.describe()).expect("store");
    Some(Backend {
        store: Arc::new(blob),
        incoming: None,
        counts: Some(counts),
        raw: Some((s3.inner().clone(), prefix.map(ObjectPath::from))),
        _dir: None,
    })
}

macro_rules! conformance {
    ($backend:ident, $setup:path) => {
        conformance!(@cases $backend, $setup,
            roundtrip_small, roundtrip_exactly_one_part, roundtrip_multipart_odd_chunks,
            invisible_until_commit, abort_leaves_nothing, drop_leaves_nothing, range_reads,
            delete_is_idempotent, missing_object, commit_replaces, concurrent_writers,
            check_ok);
    };
    (@cases $backend:ident, $setup:path, $($case:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = concat!(module_path!(), "::", stringify!($case));
                    if let Some(backend) = $setup(test).await {
                        super::cases::$case(&backend).await;
                        backend.cleanup().await;
                    }
                }
            )*
        }
    };
}

conformance!(memory, super::memory_backend);
conformance!(local, super::local_backend);
conformance!(s3, super::s3_backend);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn new_key() -> BlobKey {
    let id = uuid::Uuid::new_v4().simple().to_string();
    BlobKey::new(format!("t/{}/{id}.bin", &id[..2])).expect("valid key")
}

/// Deterministic, position-dependent bytes (a misplaced part changes the content).
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes `data` in chunks whose sizes cycle through `sizes`.
async fn write_chunks(writer: &mut dyn BlobWriter, data: &[u8], sizes: &[usize]) {
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + size).min(data.len());
        writer
            .write(Bytes::copy_from_slice(&data[at..end]))
            .await
            .expect("write");
        at = end;
    }
}

async fn put(store: &dyn BlobStore, key: &BlobKey, data: &[u8], sizes: &[usize]) {
    let mut writer = store.begin_write(key).await.expect("begin_write");
    write_chunks(writer.as_mut(), data, sizes).await;
    writer.commit().await.expect("commit");
}

async fn read_all(
    store: &dyn BlobStore,
    key: &BlobKey,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, BlobError> {
    let mut stream = store.read(key, range).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn assert_absent(backend: &Backend, key: &BlobKey) {
    let store = backend.store.as_ref();
    assert_eq!(
        store.size(key).await.expect("size"),
        None,
        "{key} has a size"
    );
    assert!(
        matches!(read_all(store, key, None).await, Err(BlobError::NotFound)),
        "{key} is readable"
    );
    let raw = backend.raw_keys().await;
    assert!(
        !raw.iter().any(|k| k.ends_with(key.as_str())),
        "{key} listed: {raw:?}"
    );
}

fn assert_same(actual: &[u8], expected: &[u8]) {
    assert_eq!(actual.len(), expected.len(), "length differs");
    assert!(actual == expected, "content differs");
}

const ODD_CHUNKS: &[usize] = &[1, 65_537, 1_000_003, 7, 262_139, 999_983, 13, 4_194_319];

// ---------------------------------------------------------------------------
// The conformance cases
// ---------------------------------------------------------------------------

mod cases {
    use super::*;

    pub async fn roundtrip_small(b: &Backend) {
        for len in [0, 1, 1000, 100_000] {
            let key = new_key();
            let data = pattern(len);
            put(b.store.as_ref(), &key, &data, &[1, 64 * 1024, 7]).await;
            assert_eq!(b.store.size(&key).await.expect("size"), Some(len as u64));
            assert_same(
                &read_all(b.store.as_ref(), &key, None).await.expect("read"),
                &data,
            );
        }
        if let Some(counts) = &b.counts {
            assert_eq!(
                counts.started.load(Ordering::SeqCst),
                0,
                "small objects are one PUT"
            );
        }
        b.assert_no_leftovers().await;
    }

    pub async fn roundtrip_exactly_one_part(b: &Backend) {
        let key = new_key();
        let data = pattern(PART_SIZE);
        put(b.store.as_ref(), &key, &data, &[64 * 1024]).await;
        assert_eq!(
            b.store.size(&key).await.expect("size"),
            Some(PART_SIZE as u64)
        );
        assert_same(
            &read_all(b.store.as_ref(), &key, None).await.expect("read"),
            &data,
        );
        if let Some(counts) = &b.counts {
            assert_eq!(
                counts.started.load(Ordering::SeqCst),
                0,
                "8 MiB is still one PUT"
            );
        }
        b.assert_no_leftovers().await;
    }

    pub async fn roundtrip_multipart_odd_chunks(b: &Backend) {
        let key = new_key();
        let data = pattern(20 * MIB);
        put(b.store.as_ref(), &key, &data, ODD_CHUNKS).await;
        assert_eq!(
            b.store.size(&key).await.expect("size"),
            Some(data.len() as u64)
        );
        assert_same(
            &read_all(b.store.as_ref(), &key, None).await.expect("read"),
            &data,
        );
        if let Some(counts) = &b.counts {
            assert_eq!(counts.started.load(Ordering::SeqCst), 1);
            assert_eq!(counts.completed.load(Ordering::SeqCst), 1);
            assert_eq!(
                *counts.part_sizes.lock().expect("lock"),
                vec![PART_SIZE, PART_SIZE, 4 * MIB],
                "parts of exactly 8 MiB but the last"
            );
            assert!(counts.max_in_flight.load(Ordering::SeqCst) <= PARTS_IN_FLIGHT);
        }
        b.assert_no_leftovers().await;
    }

    pub async fn invisible_until_commit(b: &Backend) {
        // Below and above the single-PUT threshold (parts already uploaded).
        for len in [1000, PART_SIZE + MIB + 1] {
            let key = new_key();
            let data = pattern(len);
            let mut writer = b.store.begin_write(&key).await.expect("begin_write");
            write_chunks(writer.as_mut(), &data, &[MIB]).await;
            assert_absent(b, &key).await;
            writer.commit().await.expect("commit");
            assert_eq!(b.store.size(&key).await.expect("size"), Some(len as u64));
        }
        b.assert_no_leftovers().await;
    }

    pub async fn abort_leaves_nothing(b: &Backend) {
        for len in [0, 1000, 2 * PART_SIZE + 5] {
            let key = new_key();
            let mut writer = b.store.begin_write(&key).await.expect("begin_write");
            write_chunks(writer.as_mut(), &pattern(len), &[MIB]).await;
            writer.abort().await.expect("abort");
            assert_absent(b, &key).await;
            b.assert_no_leftovers().await;
        }
        if let Some(counts) = &b.counts {
            assert_eq!(counts.aborted.load(Ordering::SeqCst), 1);
        }
    }

    pub async fn drop_leaves_nothing(b: &Backend) {
        for len in [0, 1000, 2 * PART_SIZE + 5] {
            let key = new_key();
            let mut writer = b.store.begin_write(&key).await.expect("begin_write");
            write_chunks(writer.as_mut(), &pattern(len), &[MIB]).await;
            drop(writer); // e.g. the client went away and the request future was dropped
            b.assert_no_leftovers().await;
            assert_absent(b, &key).await;
        }
        if let Some(counts) = &b.counts {
            assert_eq!(counts.aborted.load(Ordering::SeqCst), 1);
        }
        // A dropped request future: the writer dies inside a cancelled task mid-write.
        let key = new_key();
        let store = b.store.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let mut writer = store.begin_write(&task_key).await.expect("begin_write");
            for _ in 0..12 {
                writer
                    .write(Bytes::from(vec![7u8; MIB]))
                    .await
                    .expect("write");
            }
            // The client stalls mid-upload (parts already sent) until the request dies.
            futures::future::pending::<()>().await;
            drop(writer);
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        task.abort();
        let _ = task.await;
        b.assert_no_leftovers().await;
        assert_absent(b, &key).await;
    }

    pub async fn range_reads(b: &Backend) {
        let key = new_key();
        let len = 3 * MIB + 12_345;
        let data = pattern(len);
        put(b.store.as_ref(), &key, &data, &[MIB]).await;
        let n = len as u64;
        let mid = n / 2;
        for range in [
            0..1,
            mid..mid + 200_001,
            n - 1..n,
            0..n,
            65_535..65_537,
            7..7,
        ] {
            let got = read_all(b.store.as_ref(), &key, Some(range.clone()))
                .await
                .unwrap_or_else(|e| panic!("read {range:?}: {e}"));
            assert_same(&got, &data[range.start as usize..range.end as usize]);
        }
    }

    pub async fn delete_is_idempotent(b: &Backend) {
        let key = new_key();
        b.store.delete(&key).await.expect("delete missing");
        put(b.store.as_ref(), &key, b"bytes", &[5]).await;
        b.store.delete(&key).await.expect("delete");
        assert_absent(b, &key).await;
        b.store.delete(&key).await.expect("delete again");
    }

    pub async fn missing_object(b: &Backend) {
        let key = new_key();
        assert_eq!(b.store.size(&key).await.expect("size"), None);
        assert!(matches!(
            b.store.read(&key, None).await.err(),
            Some(BlobError::NotFound)
        ));
        assert!(matches!(
            b.store.read(&key, Some(0..1)).await.err(),
            Some(BlobError::NotFound)
        ));
    }

    pub async fn commit_replaces(b: &Backend) {
        let key = new_key();
        put(b.store.as_ref(), &key, b"first version", &[3]).await;
        put(b.store.as_ref(), &key, b"second", &[3]).await;
        assert_eq!(
            read_all(b.store.as_ref(), &key, None).await.expect("read"),
            b"second"
        );
    }

    pub async fn concurrent_writers(b: &Backend) {
        let mut writers = Vec::new();
        for i in 0..4 {
            let key = new_key();
            let writer = b.store.begin_write(&key).await.expect("begin_write");
            writers.push((key, writer, pattern(100_000 + i)));
        }
        for (_, writer, data) in &mut writers {
            write_chunks(writer.as_mut(), data, &[10_000]).await;
        }
        let mut expected = Vec::new();
        for (key, writer, data) in writers {
            writer.commit().await.expect("commit");
            expected.push((key, data));
        }
        for (key, data) in expected {
            assert_same(
                &read_all(b.store.as_ref(), &key, None).await.expect("read"),
                &data,
            );
        }
        b.assert_no_leftovers().await;
    }

    pub async fn check_ok(b: &Backend) {
        b.store.check().await.expect("check");
        assert!(!b.store.describe().is_empty());
        b.assert_no_leftovers().await;
    }
}

// ---------------------------------------------------------------------------
// Keys and URLs
// ---------------------------------------------------------------------------

#[test]
fn valid_keys() {
    for key in [
        "a",
        "0f/3a/0f3a9c2e-1b.bin",
        "images/orig/abc_def.jpg",
        "x.y.z",
        &"a".repeat(255),
        &["b"; 256].join("/")[..511],
    ] {
        let parsed = BlobKey::new(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(parsed.as_str(), key);
        assert_eq!(parsed.to_string(), key);
    }
}

#[test]
fn invalid_keys() {
    let long = "a/".repeat(256) + "a"; // 513 bytes
    for key in [
        "",
        "../x",
        "a/../b",
        "./a",
        "a/.",
        ".",
        "..",
        "a//b",
        "/abs",
        "a/",
        "Upper",
        "a b",
        "a\0b",
        "a\\b",
        "é",
        ".incoming/x.part",
        ".hidden",
        "a?b",
        "a%2fb",
        &long,
        &"a".repeat(256),
    ] {
        match BlobKey::new(key) {
            Err(BlobError::InvalidKey(_)) => {}
            other => panic!("{key:?} accepted: {other:?}"),
        }
    }
}

#[test]
fn store_urls() {
    assert_eq!(
        parse_store_url("file://data/blobs").expect("relative"),
        StoreUrl::File(PathBuf::from("data/blobs"))
    );
    assert_eq!(
        parse_store_url("file:///srv/blobs").expect("absolute"),
        StoreUrl::File(PathBuf::from("/srv/blobs"))
    );
    assert_eq!(
        parse_store_url("memory://").expect("memory"),
        StoreUrl::Memory
    );
    assert_eq!(
        parse_store_url("s3://bucket/some/prefix/").expect("s3"),
        StoreUrl::S3 {
            bucket: "bucket".into(),
            prefix: Some("some/prefix".into())
        }
    );
    assert_eq!(
        parse_store_url("s3://bucket").expect("s3"),
        StoreUrl::S3 {
            bucket: "bucket".into(),
            prefix: None
        }
    );
    for bad in [
        "",
        "file://",
        "data/blobs",
        "ftp://x",
        "s3://",
        "s3://key:secret@bucket",
        "s3://bucket?x=1",
    ] {
        assert!(
            matches!(parse_store_url(bad), Err(BlobError::Config(_))),
            "{bad:?} accepted"
        );
    }
}

#[tokio::test]
async fn open_blob_store_picks_backends() {
    let memory = open_blob_store("memory://", None).expect("memory");
    assert_eq!(memory.describe(), "memory://");

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}/blobs", dir.path().display());
    let local = open_blob_store(&url, None).expect("local");
    let root = std::fs::canonicalize(dir.path())
        .expect("canonical")
        .join("blobs");
    assert_eq!(local.describe(), format!("file://{}", root.display()));
    assert!(root.join(".incoming").is_dir());

    assert!(matches!(
        open_blob_store("s3://bucket", None).err(),
        Some(BlobError::Config(_))
    ));
    let other_bucket = S3Settings {
        bucket: "other".into(),
        ..S3Settings::default()
    };
    assert!(matches!(
        open_blob_store("s3://bucket", Some(other_bucket)).err(),
        Some(BlobError::Config(_))
    ));
    let settings = S3Settings {
        endpoint: Some("http://user:pw@127.0.0.1:9".into()),
        allow_http: true,
        access_key_id: Some("GKtestid".into()),
        secret_access_key: Some("topsecret".into()),
        ..S3Settings::default()
    };
    let s3 = open_blob_store("s3://bucket/pre/fix", Some(settings.clone())).expect("s3");
    assert_eq!(s3.describe(), "s3://bucket/pre/fix at http://127.0.0.1:9");
    assert!(!format!("{settings:?}").contains("topsecret"));
    let half_credentials = S3Settings {
        secret_access_key: None,
        ..settings
    };
    assert!(matches!(
        open_blob_store("s3://bucket", Some(half_credentials)).err(),
        Some(BlobError::Config(_))
    ));
}

#[test]
fn io_errors_that_mean_unavailable() {
    // ENOSPC, EDQUOT, EROFS on Linux.
    for errno in [28, 122, 30] {
        let err = BlobError::from(std::io::Error::from_raw_os_error(errno));
        assert!(err.is_unavailable(), "errno {errno}: {err:?}");
    }
    for errno in [5, 13] {
        // EIO, EACCES: a broken or misconfigured disk is not "try again later".
        let err = BlobError::from(std::io::Error::from_raw_os_error(errno));
        assert!(!err.is_unavailable(), "errno {errno}: {err:?}");
    }
}

// ---------------------------------------------------------------------------
// Local disk specifics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn local_writes_go_through_incoming() {
    let b = local_backend("local_writes_go_through_incoming")
        .await
        .expect("local");
    let key = new_key();
    let mut writer = b.store.begin_write(&key).await.expect("begin_write");
    writer
        .write(Bytes::from_static(b"hello"))
        .await
        .expect("write");
    let temp = b.leftovers();
    assert_eq!(temp.len(), 1, "{temp:?}");
    assert!(temp[0].ends_with(".part"));
    writer.commit().await.expect("commit");
    assert!(b.leftovers().is_empty());
}

#[tokio::test]
async fn local_removes_only_stale_temp_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let incoming = dir.path().join(".incoming");
    std::fs::create_dir_all(&incoming).expect("mkdir");
    let stale = incoming.join("stale.part");
    let fresh = incoming.join("fresh.part");
    let other = incoming.join("notes.txt");
    for path in [&stale, &fresh, &other] {
        std::fs::write(path, b"x").expect("write");
    }
    let old = SystemTime::now() - Duration::from_secs(25 * 3600);
    for path in [&stale, &other] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
    }
    LocalBlobStore::open(dir.path()).expect("open");
    assert!(!stale.exists(), "a day-old temp file is removed");
    assert!(
        fresh.exists(),
        "a young temp file may belong to a live upload"
    );
    assert!(other.exists(), "only *.part files are touched");
}

#[tokio::test]
async fn local_key_under_a_file_is_missing() {
    let b = local_backend("local_key_under_a_file_is_missing")
        .await
        .expect("local");
    let file = BlobKey::new("a").expect("key");
    put(b.store.as_ref(), &file, b"x", &[1]).await;
    let below = BlobKey::new("a/b").expect("key");
    assert_eq!(b.store.size(&below).await.expect("size"), None);
    assert!(matches!(
        b.store.read(&below, None).await.err(),
        Some(BlobError::NotFound)
    ));
    b.store.delete(&below).await.expect("delete");
    let dir = BlobKey::new("t").expect("key");
    put(
        b.store.as_ref(),
        &BlobKey::new("t/x").expect("key"),
        b"x",
        &[1],
    )
    .await;
    assert_eq!(
        b.store.size(&dir).await.expect("size"),
        None,
        "a directory is no object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_part_is_never_completed() {
    let b = memory_backend("failed_part_is_never_completed")
        .await
        .expect("memory");
    let counts = b.counts.clone().expect("counts");
    counts.fail_part.store(2, Ordering::SeqCst);
    let key = new_key();
    let mut writer = b.store.begin_write(&key).await.expect("begin_write");
    // Enough parts that the failure surfaces in `write` (at most 2 parts in flight).
    let data = pattern(6 * PART_SIZE);
    let mut write_error = None;
    for chunk in data.chunks(MIB) {
        if let Err(e) = writer.write(Bytes::copy_from_slice(chunk)).await {
            write_error = Some(e);
            break;
        }
    }
    assert!(write_error.is_some(), "the lost part is reported by write");
    assert!(
        writer.write(Bytes::from_static(b"more")).await.is_err(),
        "writes after a failure keep failing"
    );
    assert!(
        writer.commit().await.is_err(),
        "an upload with a lost part is never completed"
    );
    assert_eq!(counts.completed.load(Ordering::SeqCst), 0);
    b.assert_no_leftovers().await;
    assert_absent(&b, &key).await;
}

// ---------------------------------------------------------------------------
// S3 failure modes (no server needed)
// ---------------------------------------------------------------------------

fn s3_at(endpoint: String) -> Arc<dyn BlobStore> {
    let settings = S3Settings {
        endpoint: Some(endpoint),
        region: "garage".into(),
        access_key_id: Some("GK0000".into()),
        secret_access_key: Some("secret".into()),
        allow_http: true,
        ..S3Settings::default()
    };
    open_blob_store("s3://bucket/prefix", Some(settings)).expect("s3 store")
}

async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_is_unavailable() {
    let store = s3_at(format!("http://127.0.0.1:{}", closed_port().await));
    let started = Instant::now();
    let key = new_key();

    let err = store.check().await.expect_err("check");
    assert!(err.is_unavailable(), "check: {err:?}");

    let err = store.size(&key).await.expect_err("size");
    assert!(err.is_unavailable(), "size: {err:?}");
    let err = store.read(&key, None).await.err().expect("read");
    assert!(err.is_unavailable(), "read: {err:?}");

    // Small object: nothing leaves the process until commit.
    let mut writer = store.begin_write(&key).await.expect("begin_write");
    writer
        .write(Bytes::from_static(b"abc"))
        .await
        .expect("buffered write");
    let err = writer.commit().await.expect_err("commit");
    assert!(err.is_unavailable(), "commit: {err:?}");

    // Large object: the multipart upload starts during `write`.
    let mut writer = store.begin_write(&key).await.expect("begin_write");
    let err = writer
        .write(Bytes::from(vec![0u8; PART_SIZE + 1]))
        .await
        .expect_err("write");
    assert!(err.is_unavailable(), "write: {err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "fails fast: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_missing_bucket_fails_check() {
    let Some(mut settings) = s3_test_settings("blobs::tests::s3_missing_bucket_fails_check") else {
        return;
    };
    settings.bucket = format!("missing-{}", uuid::Uuid::new_v4().simple());
    let store = ObjectBlobStore::s3(settings).expect("S3 store");
    let err = store.check().await.expect_err("check");
    assert!(
        !err.is_unavailable(),
        "a missing bucket is a configuration error: {err:?}"
    );
}

/// A server that answers every request with `status` and closes the connection.
async fn fake_server(status: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_errors_are_unavailable() {
    let (endpoint, hits) = fake_server("503 Service Unavailable").await;
    let store = s3_at(endpoint);
    let err = store.check().await.expect_err("check");
    assert!(err.is_unavailable(), "check: {err:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the readiness probe does not retry"
    );
    let err = store.size(&new_key()).await.expect_err("size");
    assert!(err.is_unavailable(), "size: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_access_denied_is_not_unavailable() {
    let (endpoint, _) = fake_server("403 Forbidden").await;
    let store = s3_at(endpoint);
    let err = store.check().await.expect_err("check");
    assert!(!err.is_unavailable(), "check: {err:?}");
    let err = store.size(&new_key()).await.expect_err("size");
    assert!(!err.is_unavailable(), "size: {err:?}");
}

// ---------------------------------------------------------------------------
// An ObjectStore wrapper that records multipart uploads
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counts {
    started: AtomicUsize,
    completed: AtomicUsize,
    aborted: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Makes the part with this 1-based number fail.
    fail_part: AtomicUsize,
    part_sizes: Mutex<Vec<usize>>,
}

impl Counts {
    fn open_uploads(&self) -> usize {
        self.started.load(Ordering::SeqCst)
            - self.completed.load(Ordering::SeqCst)
            - self.aborted.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<Counts>,
}

impl CountingStore {
    fn wrap(inner: Arc<dyn ObjectStore>) -> (Arc<dyn ObjectStore>, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        let store = Arc::new(Self {
            inner,
            counts: counts.clone(),
        });
        (store, counts)
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        self.counts.started.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(CountingUpload {
            inner,
            counts: self.counts.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &ObjectPath) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &ObjectPath, to: &ObjectPath) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
    ) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counts: Arc<Counts>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.counts
            .part_sizes
            .lock()
            .expect("lock")
            .push(data.content_length());
        let number = self.counts.part_sizes.lock().expect("lock").len();
        if number == self.counts.fail_part.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(object_store::Error::Generic {
                    store: "test",
                    source: "injected part failure".into(),
                })
            });
        }
        let part = self.inner.put_part(data);
        let counts = self.counts.clone();
        Box::pin(async move {
            let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            counts.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let result = part.await;
            counts.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        self.counts.completed.fetch_add(1, Ordering::SeqCst);
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await?;
        self.counts.aborted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
