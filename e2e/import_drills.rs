//! Issue 9: fault drills during a Google Drive import on the real backends: PostgreSQL,
//! RabbitMQ and S3 (Garage in CI).
//!
//! Every service is a real process (`vitrine serve storage | import-api | import-worker`,
//! two workers); `fake-providers` plays Google Drive in this process. PostgreSQL and
//! RabbitMQ are shared servers (other tests, other people), so they are never stopped:
//! every service reaches them through a [`TcpProxy`] this test owns, and "restarting" one
//! means cutting its proxy (listener closed, every connection closed) for the outage and
//! restoring it. Storage really is SIGKILLed and started again on the same address after
//! 10 s; a worker really is SIGKILLed, and a replacement started (what the launcher's or
//! the orchestrator's restart does).
//!
//! One drill per fault, each its own stack and import, the fault injected once a fifth
//! of the folder is imported:
//!
//! | drill | fault |
//! |---|---|
//! | `storage_killed_for_10_s` | storage SIGKILLed, back 10 s later |
//! | `postgres_outage` | every PostgreSQL connection cut, none possible for 10 s |
//! | `rabbitmq_outage` | every AMQP connection cut, none possible for 10 s |
//! | `worker_sigkilled` | one of the two workers SIGKILLed, a replacement started |
//! | `provider_429_503` | from the start, ~20 % of listing and download requests answer 429 or 503 |
//!
//! After each, with no service restarted by hand (beyond the killed process itself): the
//! job `completed` with every file `imported` once (`in_progress` 0, nothing failed), the
//! catalog (`GET /images`) lists each once, storage holds exactly those images, all
//! `complete`, no image row in another state, and the S3 prefix holds exactly one object
//! per image (no orphan); the services that were not killed are still ready.
//!
//! Size: `VITRINE_DRILL_IMAGES` (default 500, what CI runs); `VITRINE_DRILL_IMAGES=5000`
//! is the on-demand version (docs/reliability.md has its figures). Needs
//! `VITRINE_TEST_POSTGRES_URL`, `VITRINE_TEST_AMQP_URL` and `VITRINE_TEST_S3_*`; without
//! them each drill prints `SKIPPED`, and fails under `VITRINE_REQUIRE_BACKENDS=1`.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::import::seller;
use common::*;
use fake_providers::{
    FakeProviders, Fault, FaultConfig, Folder, Generate, RateLimitReason, RouteMatch, Rule,
};
use serde_json::json;
use service_kit::testing::{backend_env, TcpProxy};

/// How long storage, PostgreSQL or RabbitMQ stay away.
const OUTAGE: Duration = Duration::from_secs(10);
/// Only stops a drill that hangs; the import itself takes a minute or two.
const DEADLINE: Duration = Duration::from_secs(1200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drill {
    StorageKilled,
    PostgresOutage,
    RabbitmqOutage,
    WorkerKilled,
    ProviderErrors,
}

fn images() -> usize {
    std::env::var("VITRINE_DRILL_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// `scheme://user@host:port/rest` with `host:port` replaced by `addr`.
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (userinfo, hostpath) = match rest.split_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let path = hostpath.find('/').map(|i| &hostpath[i..]).unwrap_or("");
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// `host:port` of a URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    host.split('/').next().unwrap_or(host).to_owned()
}

/// Starts `vitrine serve <name>` listening on `bind`, logs in `logs/<name>.log`.
async fn serve_at(
    name: &'static str,
    bind_var: &str,
    bind: &str,
    env: &[(String, String)],
    logs: &Path,
) -> ServiceProcess {
    std::fs::create_dir_all(logs).expect("log dir");
    ServiceProcess::start_at(name, bind_var, bind, env, logs).await
}

/// `vitrine serve import-worker` on a free port, logs in `logs/import-worker.log`.
async fn start_worker(env: &[(String, String)], logs: &Path) -> ServiceProcess {
    std::fs::create_dir_all(logs).expect("log dir");
    ServiceProcess::start("import-worker", "IMPORT_WORKER_METRICS_BIND", env, logs).await
}

struct S3 {
    endpoint: String,
    bucket: String,
    region: String,
    key: String,
    secret: String,
}

impl S3 {
    fn from_env(test: &str) -> Option<S3> {
        let endpoint = backend_env(service_kit::testing::TEST_S3_ENDPOINT, test)?;
        let var = |v: &str| std::env::var(v).unwrap_or_default();
        Some(S3 {
            endpoint,
            bucket: var(service_kit::testing::TEST_S3_BUCKET),
            region: var(service_kit::testing::TEST_S3_REGION),
            key: var(service_kit::testing::TEST_S3_ACCESS_KEY_ID),
            secret: var(service_kit::testing::TEST_S3_SECRET_ACCESS_KEY),
        })
    }

    /// Objects under `prefix`, straight from the server.
    async fn objects(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_endpoint(&self.endpoint)
            .with_access_key_id(&self.key)
            .with_secret_access_key(&self.secret)
            .with_allow_http(true)
            .build()
            .expect("s3 client");
        let listed: Vec<object_store::ObjectMeta> = store
            .list(Some(&object_store::path::Path::from(prefix)))
            .try_collect()
            .await
            .expect("list objects");
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }
}

async fn drill(kind: Drill, test: &str) {
    // Arrange: the backends (skip or fail when absent), proxies, processes, the folder.
    let Some(pg_admin) = backend_env(service_kit::testing::TEST_POSTGRES_URL, test) else {
        return;
    };
    let Some(amqp) = backend_env(service_kit::testing::TEST_AMQP_URL, test) else {
        return;
    };
    let Some(s3) = S3::from_env(test) else {
        return;
    };
    let started = Instant::now();
    let n = images();
    let pg_proxy = TcpProxy::start(&authority(&pg_admin))
        .await
        .expect("pg proxy");
    let mq_proxy = TcpProxy::start(&authority(&amqp))
        .await
        .expect("amqp proxy");
    let storage_db = service_kit::testing::fresh_postgres_database(&pg_admin).await;
    let import_db = service_kit::testing::fresh_postgres_database(&pg_admin).await;
    let prefix = format!("drill-{}", uuid::Uuid::new_v4().simple());

    let mut faults = FaultConfig::default();
    if kind == Drill::ProviderErrors {
        // Four rules of 5.6 % each on listings and downloads: about 20 % of them fail.
        for (i, route) in [RouteMatch::Listing, RouteMatch::Download]
            .into_iter()
            .enumerate()
        {
            let seed = 90 + 2 * i as u64;
            faults = faults
                .rule(
                    Rule::new(
                        route,
                        Fault::RateLimited {
                            status: 429,
                            reason: RateLimitReason::RateLimitExceeded,
                            retry_after: Some(1),
                        },
                    )
                    .random(0.112, seed),
                )
                .rule(Rule::new(route, Fault::ServerError { status: 503 }).random(0.1, seed + 1));
        }
    }
    let fake = FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(n).size(4 * 1024).subfolders(2).seed(9),
        ))
        .faults(faults)
        .build()
        .expect("fake providers")
        .serve_on_loopback()
        .await
        .expect("fake providers");
    let expected: BTreeSet<String> = fake
        .nodes()
        .iter()
        .filter(|node| node.content().is_some())
        .map(|node| node.drive_id.clone())
        .collect();
    assert_eq!(expected.len(), n);

    let dir = tempfile::tempdir().expect("tempdir");
    let import_keys = ring("imp1");
    let jwt_secret = random_secret();
    let storage_bind = format!("127.0.0.1:{}", free_port());
    let storage_url = format!("http://{storage_bind}");
    let storage_env: Vec<(String, String)> = [
        ("STORAGE_DATABASE_URL", via(&storage_db, pg_proxy.addr())),
        ("BLOB_STORE", format!("s3://{}/{prefix}", s3.bucket)),
        ("S3_ENDPOINT", s3.endpoint.clone()),
        ("S3_REGION", s3.region.clone()),
        ("AWS_ACCESS_KEY_ID", s3.key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret.clone()),
        ("S3_ALLOW_HTTP", "true".into()),
        ("APP_STORAGE_KEYS", ring("app1").to_env_value()),
        ("IMPORT_STORAGE_KEYS", import_keys.to_env_value()),
        ("URL_SIGNING_KEYS", ring("url1").to_env_value()),
        ("STORAGE_PUBLIC_URL", storage_url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // The import's defaults for retries (1 s doubling, 6 attempts), but more attempts
    // where a fifth of the provider's answers fail (0.2^6 per file is ~1 in 16,000).
    let attempts = if kind == Drill::ProviderErrors {
        "10"
    } else {
        "6"
    };
    let import_env: Vec<(String, String)> = [
        ("IMPORT_DATABASE_URL", via(&import_db, pg_proxy.addr())),
        ("QUEUE_URL", via(&amqp, mq_proxy.addr())),
        (
            "IMPORT_QUEUE_PREFIX",
            format!("d{}", uuid::Uuid::new_v4().simple()),
        ),
        ("STORAGE_URL", storage_url.clone()),
        ("IMPORT_STORAGE_KEYS", import_keys.to_env_value()),
        ("JWT_HS256_SECRET", jwt_secret.clone()),
        ("GOOGLE_API_KEY", "test-key".into()),
        ("GOOGLE_DRIVE_API_BASE", fake.base_url.clone()),
        ("DROPBOX_ACCESS_TOKEN", "test-token".into()),
        ("DROPBOX_API_BASE", fake.base_url.clone()),
        ("DROPBOX_CONTENT_BASE", fake.base_url.clone()),
        ("IMPORT_MAX_ATTEMPTS", attempts.into()),
        ("QUEUE_LEASE_SECS", "10".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let logs = dir.path().join("logs");
    let mut storage = serve_at(
        "storage",
        "STORAGE_BIND",
        &storage_bind,
        &storage_env,
        &logs.join("storage-0"),
    )
    .await;
    let api_bind = format!("127.0.0.1:{}", free_port());
    let api = serve_at(
        "import-api",
        "IMPORT_BIND",
        &api_bind,
        &import_env,
        &logs.join("api"),
    )
    .await;
    let mut workers = Vec::new();
    for w in 0..2 {
        workers.push(start_worker(&import_env, &logs.join(format!("worker-{w}"))).await);
    }
    let http = http_client();
    let s = seller();
    let token = hs256_token(&jwt_secret, Some(DEV_KID), &claims(&s));
    let get = |path: String| {
        let request = http
            .get(format!("http://{api_bind}{path}"))
            .bearer_auth(&token);
        async move { send(request).await }
    };

    // Act: the import, and the fault once a fifth of it is in.
    let (status, _, job) = send(
        http.post(format!("http://{api_bind}/import/google-drive"))
            .bearer_auth(&token)
            .json(&json!({ "folder_url": fake.drive_folders()[0].url })),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().expect("job id").to_owned();
    let deadline = Instant::now() + DEADLINE;
    let job_now = |path: String| {
        let get = &get;
        async move {
            let (status, _, job) = get(path).await;
            assert_eq!(status, 200, "{job}");
            job
        }
    };
    loop {
        let job = job_now(format!("/imports/{job_id}")).await;
        if job["counts"]["imported"].as_u64().unwrap_or(0) >= (n / 5) as u64 {
            break;
        }
        assert_ne!(job["state"], "completed", "done before the fault: {job}");
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fault_at = started.elapsed();
    let mut replacement = None;
    match kind {
        Drill::StorageKilled => {
            storage.kill();
            tokio::time::sleep(OUTAGE).await;
            storage = serve_at(
                "storage",
                "STORAGE_BIND",
                &storage_bind,
                &storage_env,
                &logs.join("storage-1"),
            )
            .await;
        }
        Drill::PostgresOutage => {
            pg_proxy.cut();
            tokio::time::sleep(OUTAGE).await;
            pg_proxy.restore().await.expect("restore");
        }
        Drill::RabbitmqOutage => {
            mq_proxy.cut();
            tokio::time::sleep(OUTAGE).await;
            mq_proxy.restore().await.expect("restore");
        }
        Drill::WorkerKilled => {
            workers[0].kill();
            replacement = Some(start_worker(&import_env, &logs.join("worker-2")).await);
        }
        Drill::ProviderErrors => {}
    }
    let restored_at = started.elapsed();
    let job = loop {
        let job = job_now(format!("/imports/{job_id}")).await;
        if matches!(job["state"].as_str(), Some("completed" | "failed")) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the import is stuck: {job}; worker log:\n{}",
            workers[1].log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let finished_at = started.elapsed();

    // Assert: every file imported once, nothing failed, nothing in flight.
    let (_, _, failed) = get(format!("/imports/{job_id}/items?status=failed&limit=20")).await;
    assert_eq!(job["counts"]["failed"], 0, "{job}; failed items: {failed}");
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["counts"]["imported"], n, "{job}");
    assert_eq!(job["counts"]["in_progress"], 0, "{job}");
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, _, page) =
            get(format!("/imports/{job_id}/items?limit=500&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(items.len(), n, "items");
    assert!(items.iter().all(|i| i["status"] == "imported"));
    let sources: BTreeSet<String> = items
        .iter()
        .map(|i| i["source_id"].as_str().expect("source_id").to_owned())
        .collect();
    assert_eq!(sources, expected, "imported files differ from the folder's");
    let item_images: HashSet<String> = items
        .iter()
        .map(|i| i["image_id"].as_str().expect("image_id").to_owned())
        .collect();
    assert_eq!(item_images.len(), n, "two items share an image");
    let retried = items
        .iter()
        .filter(|i| i["attempts"].as_i64().unwrap_or(0) > 1)
        .count();

    // The catalog lists each image once.
    let mut listed = HashSet::new();
    let mut cursor = String::new();
    loop {
        let (status, _, page) = get(format!("/images?limit=500&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        for image in page["items"].as_array().expect("items") {
            assert!(
                listed.insert(image["image_id"].as_str().expect("id").to_owned()),
                "listed twice: {image}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(listed, item_images, "GET /images differs from the items");

    // Storage: exactly those images, complete; one object each in S3, no orphan. A task
    // redelivered mid-write may still be streaming a duplicate (storage discards it).
    let pool = sqlx::PgPool::connect(&storage_db)
        .await
        .expect("storage db");
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, state FROM images")
        .fetch_all(&pool)
        .await
        .expect("images");
    let complete: HashSet<String> = rows
        .iter()
        .filter(|(_, state)| state == "complete")
        .map(|(id, _)| id.clone())
        .collect();
    let other: Vec<&(String, String)> = rows.iter().filter(|(_, s)| s != "complete").collect();
    assert!(other.is_empty(), "image rows not complete: {other:?}");
    assert_eq!(
        complete, item_images,
        "storage's images differ from the catalog's"
    );
    let settle = Instant::now() + Duration::from_secs(10);
    let objects = loop {
        let objects = s3.objects(&prefix).await;
        if objects.len() == n || Instant::now() > settle {
            break objects;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(objects.len(), n, "objects in S3 (orphans?)");

    // Recovered on their own: what was not killed is the same process, still ready.
    let mut alive: Vec<&ServiceProcess> = vec![&storage, &api, &workers[1]];
    if kind != Drill::WorkerKilled {
        alive.push(&workers[0]);
    }
    alive.extend(replacement.as_ref());
    for process in alive {
        let ready = http
            .get(format!("{}/readyz", process.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        assert!(
            ready,
            "{} is not ready:\n{}",
            process.name,
            process.log_text()
        );
    }
    let stats = fake.stats();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "{test}: {n} images on PostgreSQL + RabbitMQ + S3; fault at {fault_at:.1?}, over at \
         {restored_at:.1?}, completed at {finished_at:.1?} ({:.1?} after the fault ended); \
         {retried} items imported on a later attempt; {} provider requests ({} faulted), {} \
         downloads; load average {}",
        finished_at - restored_at,
        stats.total,
        stats.faults.values().sum::<u64>(),
        stats.completed_downloads.values().sum::<u64>(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_killed_for_10_s() {
    drill(Drill::StorageKilled, "drill_storage_killed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage() {
    drill(Drill::PostgresOutage, "drill_postgres_outage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_outage() {
    drill(Drill::RabbitmqOutage, "drill_rabbitmq_outage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkilled() {
    drill(Drill::WorkerKilled, "drill_worker_sigkilled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_429_503() {
    drill(Drill::ProviderErrors, "drill_provider_429_503").await;
}
