//! SQL backend: SQLite (embedded default) and PostgreSQL, one `tq_tasks` table.
//!
//! - **Claim**: one `UPDATE … RETURNING` marks up to `prefetch` ready tasks `leased` with this
//!   consumer's lease token and an expiry, and counts the attempt. PostgreSQL picks rows with
//!   `FOR UPDATE SKIP LOCKED`, so concurrent consumers never wait for or take the same row;
//!   SQLite runs one writer at a time (WAL, busy timeout), so the statement is exclusive.
//! - **Lease**: a consumer's heartbeat extends the leases of the tasks it holds every
//!   `lease / 3`. A process that dies stops heartbeating; the **reaper** (run by every
//!   consumer every `lease / 2`, or [`SqlQueue::reap`]) returns expired leases to `ready`.
//! - **Settle** statements are fenced by `(id, lease token, attempts)`: a consumer whose
//!   lease expired and whose task was claimed again cannot ack it ([`QueueError::LeaseLost`]),
//!   so two consumers never both complete one task.
//! - **Enqueue** inserts in one transaction, or inside the caller's ([`SqlQueue::enqueue_in`]).
//! - **Ack** runs on its own, or inside the handler's transaction ([`SqlLease::ack_in`],
//!   then [`crate::Outcome::Acked`]): the work and its ack commit together.

mod consumer;
mod schema;

pub use consumer::SqlLease;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use service_kit::db::{Database, Dialect, Migrations, PoolSettings};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::Notify;

use crate::error::{QueueError, Result};
use crate::queue::{BackendKind, TaskQueue};
use crate::task::{
    duration_ms, epoch_ms, now_ms, ConsumeOptions, Consumer, EnqueueReport, NewTask, QueueName,
    QueueStats,
};

/// SQL backend settings.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// How long a claimed task stays leased without a heartbeat (default 30 s). A killed
    /// consumer's tasks come back this long after its last heartbeat.
    pub lease: Duration,
    /// How often an idle consumer looks for new tasks (default 200 ms). Enqueues through
    /// the same handle wake local consumers at once.
    pub poll_interval: Duration,
    /// A task delivered more than this many times is dead-lettered (default 25).
    pub max_attempts: u32,
    /// How long an acked task's dedup key is remembered (default 24 h).
    pub dedup_retention: Duration,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            max_attempts: 25,
            dedup_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Rows per `INSERT` (5 parameters each; well under SQLite's and PostgreSQL's limits).
const INSERT_CHUNK: usize = 1000;

/// The SQL task queue. Cheap to clone.
#[derive(Clone)]
pub struct SqlQueue {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    pub(crate) config: SqlConfig,
    declared: RwLock<HashSet<QueueName>>,
    pub(crate) wake: Notify,
    last_reap_ms: AtomicI64,
    closed: AtomicBool,
}

/// No `sqlx` migrations of our own: see the crate docs.
static NO_SQLX_MIGRATIONS: Migrator = Migrator {
    migrations: std::borrow::Cow::Borrowed(&[]),
    ignore_missing: true,
    locking: false,
    no_tx: false,
};

impl SqlQueue {
    /// Uses a service's database (its pool and dialect) and creates the `tq_*` tables.
    pub async fn new(db: &Database, config: SqlConfig) -> Result<SqlQueue> {
        if config.lease < Duration::from_millis(200) {
            return Err(QueueError::Config(service_kit::ConfigError::new(
                "QUEUE_LEASE_SECS",
                "the lease must be at least 200 ms",
            )));
        }
        schema::migrate(&db.pool, db.dialect).await?;
        Ok(SqlQueue {
            inner: Arc::new(Inner {
                pool: db.pool.clone(),
                dialect: db.dialect,
                config,
                declared: RwLock::new(HashSet::new()),
                wake: Notify::new(),
                last_reap_ms: AtomicI64::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Opens its own pool on `url` (`sqlite://path` or `postgres://…`) with service-kit's
    /// settings (SQLite: WAL, busy timeout, so several processes can share the file).
    pub async fn connect(url: &str, config: SqlConfig) -> Result<SqlQueue> {
        let db = Database::connect(
            "QUEUE_DATABASE_URL",
            url,
            Migrations {
                sqlite: &NO_SQLX_MIGRATIONS,
                postgres: &NO_SQLX_MIGRATIONS,
            },
            &PoolSettings::default(),
        )
        .await?;
        SqlQueue::new(&db, config).await
    }

    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub fn config(&self) -> &SqlConfig {
        &self.inner.config
    }

    /// Enqueues `tasks` on `conn`, which may be inside the caller's transaction: they
    /// commit or roll back with it. Queues must have been declared (checked on a separate
    /// connection first, so the caller's transaction only ever writes).
    pub async fn enqueue_in(
        &self,
        conn: &mut AnyConnection,
        tasks: &[NewTask],
    ) -> Result<EnqueueReport> {
        self.check_declared(tasks).await?;
        insert(conn, self.inner.dialect, tasks).await
    }

    /// Returns expired leases to `ready` and forgets old dedup keys; returns how many
    /// leases it returned. Consumers run it on their own every `lease / 2`.
    pub async fn reap(&self) -> Result<u64> {
        let now = now_ms();
        self.inner.last_reap_ms.store(now, Ordering::Relaxed);
        let returned = sqlx::query(
            "UPDATE tq_tasks SET state = 'ready', lease_token = NULL, lease_expires_at = NULL, \
             last_error = 'lease expired: the consumer died or stalled' \
             WHERE state = 'leased' AND lease_expires_at < $1",
        )
        .bind(now)
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM tq_tasks WHERE state = 'done' AND finished_at < $1")
            .bind(now - duration_ms(self.inner.config.dedup_retention))
            .execute(&self.inner.pool)
            .await?;
        if returned > 0 {
            tracing::info!(returned, "task queue: returned expired leases");
            self.inner.wake.notify_waiters();
        }
        Ok(returned)
    }

    /// Reaps if the last reap (by any consumer of this handle) is older than `lease / 2`.
    pub(crate) async fn maybe_reap(&self) -> Result<()> {
        let half = duration_ms(self.inner.config.lease) / 2;
        if now_ms() - self.inner.last_reap_ms.load(Ordering::Relaxed) >= half {
            self.reap().await?;
        }
        Ok(())
    }

    /// Puts the dead letters of `queue` back to `ready` with a fresh attempt count.
    pub async fn requeue_dead(&self, queue: &QueueName) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE tq_tasks SET state = 'ready', attempts = 0, available_at = $2, finished_at = NULL \
             WHERE queue = $1 AND state = 'dead'",
        )
        .bind(queue.as_str())
        .bind(now_ms())
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
        self.inner.wake.notify_waiters();
        Ok(n)
    }

    /// The dead letters of `queue`: `(task id, reason)`, oldest first, at most `limit`.
    pub async fn dead_letters(&self, queue: &QueueName, limit: u32) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT id, last_error FROM tq_tasks WHERE queue = $1 AND state = 'dead' ORDER BY id LIMIT $2",
        )
        .bind(queue.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>(0)?,
                    r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
                ))
            })
            .collect()
    }

    async fn check_declared(&self, tasks: &[NewTask]) -> Result<()> {
        self.check_open()?;
        let missing: Vec<QueueName> = {
            let declared = self
                .inner
                .declared
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let mut missing: Vec<QueueName> = tasks
                .iter()
                .map(|t| &t.queue)
                .filter(|q| !declared.contains(*q))
                .cloned()
                .collect();
            missing.sort();
            missing.dedup();
            missing
        };
        for queue in missing {
            // Declared by another process (e.g. the worker) counts.
            let found: Option<String> =
                sqlx::query_scalar("SELECT name FROM tq_queues WHERE name = $1")
                    .bind(queue.as_str())
                    .fetch_optional(&self.inner.pool)
                    .await?;
            if found.is_none() {
                return Err(QueueError::UnknownQueue(queue.to_string()));
            }
            self.remember(&queue);
        }
        Ok(())
    }

    fn remember(&self, queue: &QueueName) {
        self.inner
            .declared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.clone());
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }
}

/// Multi-row inserts; duplicates of a dedup key (already present, or twice in the batch)
/// are skipped and counted.
async fn insert(
    conn: &mut AnyConnection,
    dialect: Dialect,
    tasks: &[NewTask],
) -> Result<EnqueueReport> {
    let now = now_ms();
    let mut enqueued = 0u64;
    for chunk in tasks.chunks(INSERT_CHUNK) {
        let mut sql = String::with_capacity(64 + chunk.len() * 40);
        sql.push_str(
            "INSERT INTO tq_tasks (queue, payload, dedup_key, state, attempts, available_at, enqueued_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 5;
            if i > 0 {
                sql.push(',');
            }
            let p = |k| dialect.placeholder(b + k);
            sql.push_str(&format!(
                "({}, {}, {}, 'ready', 0, {}, {})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            ));
        }
        sql.push_str(" ON CONFLICT (queue, dedup_key) DO NOTHING");
        let mut query = sqlx::query(&sql);
        for t in chunk {
            query = query
                .bind(t.queue.as_str())
                .bind(t.payload.as_slice())
                .bind(t.dedup_key.as_deref())
                .bind(t.not_before.map(epoch_ms).unwrap_or(now))
                .bind(now);
        }
        enqueued += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(EnqueueReport {
        enqueued,
        duplicates: tasks.len() as u64 - enqueued,
    })
}

#[async_trait]
impl TaskQueue for SqlQueue {
    fn kind(&self) -> BackendKind {
        match self.inner.dialect {
            Dialect::Sqlite => BackendKind::Sqlite,
            Dialect::Postgres => BackendKind::Postgres,
        }
    }

    async fn declare(&self, queue: &QueueName) -> Result<()> {
        self.check_open()?;
        sqlx::query("INSERT INTO tq_queues (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(queue.as_str())
            .bind(now_ms())
            .execute(&self.inner.pool)
            .await?;
        self.remember(queue);
        Ok(())
    }

    async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Result<EnqueueReport> {
        if tasks.is_empty() {
            return Ok(EnqueueReport::default());
        }
        self.check_declared(&tasks).await?;
        let mut tx = self.inner.pool.begin().await?;
        let report = insert(&mut tx, self.inner.dialect, &tasks).await?;
        tx.commit().await?;
        self.inner.wake.notify_waiters();
        Ok(report)
    }

    async fn consume(
        &self,
        queue: &QueueName,
        options: ConsumeOptions,
    ) -> Result<Box<dyn Consumer>> {
        self.check_open()?;
        let probe = NewTask {
            queue: queue.clone(),
            payload: Vec::new(),
            dedup_key: None,
            not_before: None,
        };
        self.check_declared(std::slice::from_ref(&probe)).await?;
        Ok(Box::new(consumer::SqlConsumer::start(
            self.clone(),
            queue.clone(),
            options,
        )))
    }

    async fn stats(&self, queue: &QueueName) -> Result<QueueStats> {
        let rows = sqlx::query(
            "SELECT state, CAST(CASE WHEN available_at > $2 THEN 1 ELSE 0 END AS BIGINT) AS later, \
             CAST(COUNT(*) AS BIGINT) AS n FROM tq_tasks WHERE queue = $1 GROUP BY state, later",
        )
        .bind(queue.as_str())
        .bind(now_ms())
        .fetch_all(&self.inner.pool)
        .await?;
        let mut stats = QueueStats {
            scheduled: Some(0),
            in_flight: Some(0),
            ..QueueStats::default()
        };
        for row in rows {
            let state: String = row.try_get(0)?;
            let later: i64 = row.try_get(1)?;
            let n = u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0);
            match (state.as_str(), later) {
                ("ready", 0) => stats.ready += n,
                ("ready", _) => *stats.scheduled.get_or_insert(0) += n,
                ("leased", _) => *stats.in_flight.get_or_insert(0) += n,
                ("dead", _) => stats.dead += n,
                _ => {}
            }
        }
        Ok(stats)
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.wake.notify_waiters();
    }
}
