//! Import harness: the Storage Service and `import-api` in this process (real HTTP on
//! loopback), `fake-providers` for Google Drive and Dropbox, and workers either as
//! tasks of this process or as `vitrine serve import-worker` child processes (which a
//! test can SIGKILL).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_providers::{FakeProviders, RunningFake};
use serde_json::{json, Value};
use service_kit::Env;
use tokio::task::JoinHandle;

use super::{
    claims, hs256_token, http_client, random_secret, ring, send, Db, ServiceProcess, StorageServer,
    DEV_KID,
};

/// Which task queue the import runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// The SQL queue in the import database (the embedded default).
    Sql,
    /// A real RabbitMQ broker (`VITRINE_TEST_AMQP_URL`).
    Amqp,
}

/// How to build an [`ImportStack`].
pub struct ImportOptions {
    pub db: Db,
    pub queue: Queue,
    /// Workers run as tasks of the test process.
    pub in_process_workers: usize,
    /// Extra import variables (e.g. `IMPORT_MAX_ATTEMPTS`).
    pub extra: Vec<(String, String)>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            db: Db::Embedded,
            queue: Queue::Sql,
            in_process_workers: 1,
            extra: Vec::new(),
        }
    }
}

pub struct ImportStack {
    pub import_url: String,
    pub storage_url: String,
    pub storage: storage_service::state::AppState,
    pub api: import_service::state::ApiState,
    pub fake: RunningFake,
    pub http: reqwest::Client,
    jwt_secret: String,
    /// Everything a worker process needs (database, queue, storage, providers, keys).
    pub worker_env: Vec<(String, String)>,
    blobs: PathBuf,
    workers: Vec<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
    tasks: Vec<JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

impl Drop for ImportStack {
    fn drop(&mut self) {
        for (_, task) in &self.workers {
            task.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ImportStack {
    /// `None` (after printing why) when a backend the options ask for is not configured.
    pub async fn start(
        fake: FakeProviders,
        options: ImportOptions,
        test: &str,
    ) -> Option<ImportStack> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (storage_db, import_db) = match options.db {
            Db::Embedded => (
                format!("sqlite://{}", dir.path().join("storage.db").display()),
                format!("sqlite://{}", dir.path().join("import.db").display()),
            ),
            Db::Postgres => {
                let admin = service_kit::testing::backend_env(
                    service_kit::testing::TEST_POSTGRES_URL,
                    test,
                )?;
                (
                    service_kit::testing::fresh_postgres_database(&admin).await,
                    service_kit::testing::fresh_postgres_database(&admin).await,
                )
            }
        };
        let queue_url = match options.queue {
            Queue::Sql => "sql".to_owned(),
            Queue::Amqp => {
                service_kit::testing::backend_env(service_kit::testing::TEST_AMQP_URL, test)?
            }
        };
        let fake = fake.serve_on_loopback().await.expect("fake providers");
        let import_keys = ring("imp1");
        let jwt_secret = random_secret();
        let storage =
            StorageServer::start(dir.path(), storage_db, &ring("app1"), &import_keys).await;
        let (storage_url, blobs) = (storage.url.clone(), storage.blobs.clone());
        let storage_task = storage.task;
        let storage = storage.state;

        let mut worker_env: Vec<(String, String)> = vec![
            ("IMPORT_DATABASE_URL".into(), import_db),
            ("QUEUE_URL".into(), queue_url),
            (
                "IMPORT_QUEUE_PREFIX".into(),
                format!("t{}", uuid::Uuid::new_v4().simple()),
            ),
            ("STORAGE_URL".into(), storage_url.clone()),
            ("IMPORT_STORAGE_KEYS".into(), import_keys.to_env_value()),
            ("JWT_HS256_SECRET".into(), jwt_secret.clone()),
            ("GOOGLE_API_KEY".into(), "test-key".into()),
            ("GOOGLE_DRIVE_API_BASE".into(), fake.base_url.clone()),
            ("DROPBOX_ACCESS_TOKEN".into(), "test-token".into()),
            ("DROPBOX_API_BASE".into(), fake.base_url.clone()),
            ("DROPBOX_CONTENT_BASE".into(), fake.base_url.clone()),
            // Tests wait for retries: keep them short.
            ("IMPORT_RETRY_BASE_MS".into(), "20".into()),
            ("IMPORT_RETRY_MAX_SECS".into(), "1".into()),
            ("PROVIDER_TIMEOUT_SECS".into(), "5".into()),
            ("QUEUE_LEASE_SECS".into(), "3".into()),
            ("QUEUE_POLL_INTERVAL_MS".into(), "20".into()),
        ];
        for (k, v) in options.extra {
            worker_env.retain(|(existing, _)| *existing != k);
            worker_env.push((k, v));
        }
        let config =
            import_service::config::ImportConfig::from_env(&Env::from_pairs(worker_env.clone()))
                .expect("import config");
        let shared = import_service::connect(&config)
            .await
            .expect("import connect");
        let api = import_service::api_state(config.clone(), &shared).expect("api state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let import_url = format!("http://{}", listener.local_addr().expect("addr"));
        let router = import_service::api_router(api.clone());
        let api_task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });

        let mut stack = ImportStack {
            import_url,
            storage_url,
            storage,
            api,
            fake,
            http: http_client(),
            jwt_secret,
            worker_env,
            blobs,
            workers: Vec::new(),
            tasks: vec![storage_task, api_task],
            dir,
        };
        for _ in 0..options.in_process_workers {
            stack.start_worker();
        }
        Some(stack)
    }

    /// Starts one more worker in this process.
    pub fn start_worker(&mut self) {
        let config = import_service::config::ImportConfig::from_env(&Env::from_pairs(
            self.worker_env.clone(),
        ))
        .expect("import config");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = import_service::run_worker(config, shutdown).await {
                panic!("worker failed: {e:#}");
            }
        });
        self.workers.push((stop, task));
    }

    /// Stops every in-process worker gracefully (tasks in hand are finished).
    pub async fn stop_workers(&mut self) {
        for (stop, task) in self.workers.drain(..) {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// Starts `vitrine serve import-worker` as a child process.
    pub async fn spawn_worker_process(&self, logs: &std::path::Path) -> ServiceProcess {
        ServiceProcess::start(
            "import-worker",
            "IMPORT_WORKER_METRICS_BIND",
            &self.worker_env,
            logs,
        )
        .await
    }

    pub fn token(&self, seller: &str) -> String {
        hs256_token(&self.jwt_secret, Some(DEV_KID), &claims(seller))
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        seller: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.import_url))
            .bearer_auth(self.token(seller))
    }

    pub async fn get(&self, path: &str, seller: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        send(self.request(reqwest::Method::GET, path, seller)).await
    }

    /// `POST /import/<provider>` with `{folder_url}`.
    pub async fn start_import(
        &self,
        seller: &str,
        provider: &str,
        folder_url: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        send(
            self.request(
                reqwest::Method::POST,
                &format!("/import/{provider}"),
                seller,
            )
            .json(&json!({ "folder_url": folder_url })),
        )
        .await
    }

    /// Starts an import that must be accepted; returns its id.
    pub async fn import_ok(&self, seller: &str, provider: &str, folder_url: &str) -> String {
        let (status, headers, body) = self.start_import(seller, provider, folder_url).await;
        assert_eq!(status, 202, "import not accepted: {body}");
        let id = body["id"].as_str().expect("job id").to_owned();
        assert_eq!(
            headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("/imports/{id}").as_str())
        );
        id
    }

    /// Polls `GET /imports/{id}` until it is `completed` or `failed`.
    pub async fn wait_finished(&self, seller: &str, job_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, _, body) = self.get(&format!("/imports/{job_id}"), seller).await;
            assert_eq!(status, 200, "{body}");
            if matches!(body["state"].as_str(), Some("completed" | "failed")) {
                return body;
            }
            if Instant::now() > deadline {
                panic!("import {job_id} did not finish within {within:?}; last: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every entry of a paginated list: follows `next_cursor` from `path` (which must
    /// already have a query string).
    pub async fn all_pages(&self, seller: &str, path: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match &cursor {
                Some(c) => format!("{path}&cursor={c}"),
                None => path.to_owned(),
            };
            let (code, _, body) = self.get(&page, seller).await;
            assert_eq!(code, 200, "{page}: {body}");
            all.extend(body["items"].as_array().expect("items").iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
    }

    /// Every item of an import (all pages of `GET /imports/{id}/items`).
    pub async fn items(&self, seller: &str, job_id: &str, status: Option<&str>) -> Vec<Value> {
        let mut path = format!("/imports/{job_id}/items?limit=500");
        if let Some(s) = status {
            path.push_str(&format!("&status={s}"));
        }
        self.all_pages(seller, &path).await
    }

    /// Every image of `GET /images` for `seller`.
    pub async fn images(&self, seller: &str, source: Option<&str>) -> Vec<Value> {
        let mut path = "/images?limit=500".to_owned();
        if let Some(s) = source {
            path.push_str(&format!("&source={s}"));
        }
        self.all_pages(seller, &path).await
    }

    /// Complete images storage holds for `seller`.
    pub async fn stored_images(&self, seller: &str) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM images WHERE owner_id = $1 AND state = 'complete'")
            .bind(seller)
            .fetch_one(self.storage.repo.pool())
            .await
            .expect("count")
            .try_get("n")
            .expect("n")
    }

    /// Every image row storage has, in any state.
    pub async fn storage_rows(&self) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM images")
            .fetch_one(self.storage.repo.pool())
            .await
            .expect("count")
            .try_get("n")
            .expect("n")
    }

    /// Files in the blob directory (objects, and any temporary file left behind).
    pub fn blob_files(&self) -> usize {
        fn walk(dir: &std::path::Path) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path)
                    } else {
                        1
                    }
                })
                .sum()
        }
        walk(&self.blobs)
    }

    /// A seller token for tests that talk HTTP themselves.
    pub fn bearer(&self, seller: &str) -> String {
        format!("Bearer {}", self.token(seller))
    }
}

/// A fresh random seller id.
pub fn seller() -> String {
    format!(
        "seller-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
