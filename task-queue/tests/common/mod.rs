//! Fixtures shared by the test files: one queue handle per backend, unique queue names.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use service_kit::testing::{
    backend_env, fresh_postgres_database, TEST_AMQP_URL, TEST_POSTGRES_URL,
};
use task_queue::amqp::{AmqpConfig, AmqpQueue};
use task_queue::sql::{SqlConfig, SqlQueue};
use task_queue::{QueueName, SharedQueue, TaskQueue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Amqp,
}

/// Lease used by SQL fixtures: short, so "killed consumer" tests take about a second.
pub const LEASE: Duration = Duration::from_millis(1000);
/// Max attempts used by every fixture.
pub const MAX_ATTEMPTS: u32 = 3;

pub struct Fixture {
    pub kind: Kind,
    pub queue: SharedQueue,
    pub sql: Option<SqlQueue>,
    pub amqp: Option<AmqpQueue>,
    /// Connection URL (for a child process).
    pub url: String,
    pub name: QueueName,
    pub _dir: Option<tempfile::TempDir>,
}

pub fn sql_config() -> SqlConfig {
    SqlConfig {
        lease: LEASE,
        poll_interval: Duration::from_millis(20),
        max_attempts: MAX_ATTEMPTS,
        ..SqlConfig::default()
    }
}

pub fn amqp_config() -> AmqpConfig {
    AmqpConfig {
        max_attempts: MAX_ATTEMPTS,
        reconnect_timeout: Duration::from_secs(30),
        connection_name: "task-queue-tests".to_owned(),
    }
}

pub fn unique_name(test: &str) -> QueueName {
    let short: String = test.chars().take(40).collect();
    QueueName::new(format!(
        "test.{}.{}",
        short.replace('_', "-"),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap()
}

impl Fixture {
    /// `None` (after printing a skip) when the backend is not configured.
    pub async fn open(kind: Kind, test: &str) -> Option<Fixture> {
        let name = unique_name(test);
        let fixture = match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("queue.db").display());
                let sql = SqlQueue::connect(&url, sql_config()).await.unwrap();
                Fixture {
                    kind,
                    queue: Arc::new(sql.clone()),
                    sql: Some(sql),
                    amqp: None,
                    url,
                    name,
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let admin = backend_env(TEST_POSTGRES_URL, test)?;
                let url = fresh_postgres_database(&admin).await;
                let sql = SqlQueue::connect(&url, sql_config()).await.unwrap();
                Fixture {
                    kind,
                    queue: Arc::new(sql.clone()),
                    sql: Some(sql),
                    amqp: None,
                    url,
                    name,
                    _dir: None,
                }
            }
            Kind::Amqp => {
                let url = backend_env(TEST_AMQP_URL, test)?;
                assert_loopback(&url);
                let amqp = AmqpQueue::connect(&url, amqp_config()).await.unwrap();
                Fixture {
                    kind,
                    queue: Arc::new(amqp.clone()),
                    sql: None,
                    amqp: Some(amqp),
                    url,
                    name,
                    _dir: None,
                }
            }
        };
        fixture.queue.declare(&fixture.name).await.unwrap();
        Some(fixture)
    }

    /// Another declared queue with a unique name (removed by `finish`).
    pub async fn another_queue(&self, label: &str) -> QueueName {
        let q = unique_name(label);
        self.queue.declare(&q).await.unwrap();
        q
    }

    /// Removes broker queues (SQL databases are throw-away).
    pub async fn finish(self) {
        if let Some(amqp) = &self.amqp {
            let _ = amqp.delete_queue(&self.name).await;
        }
        self.queue.close().await;
    }
}

/// Tests talk only to loopback.
pub fn assert_loopback(url: &str) {
    assert!(
        url.contains("@127.0.0.1:") || url.contains("://127.0.0.1:") || url.contains("@localhost:"),
        "test backends must be on loopback, got {url}"
    );
}

/// Polls `f` every 50 ms until it returns true, or panics after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn stats(queue: &dyn TaskQueue, name: &QueueName) -> task_queue::QueueStats {
    queue.stats(name).await.unwrap()
}
