//! The SQL consumer: claims in batches, heartbeats its leases, settles with fenced updates.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use service_kit::db::Dialect;
use sqlx::{AnyConnection, Row};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SqlQueue;
use crate::error::{QueueError, Result};
use crate::task::{duration_ms, now_ms, ConsumeOptions, Consumer, Delivery, QueueName, Settle};

/// Task id → attempt number, for every task this consumer holds (prefetched or in hand).
type Held = Arc<Mutex<HashMap<i64, i64>>>;

struct Claimed {
    id: i64,
    payload: Vec<u8>,
    attempts: i64,
    dedup_key: Option<String>,
}

pub(crate) struct SqlConsumer {
    queue: SqlQueue,
    name: QueueName,
    token: Arc<str>,
    prefetch: u16,
    shutdown: CancellationToken,
    buffer: VecDeque<Claimed>,
    held: Held,
    heartbeat: JoinHandle<()>,
}

impl SqlConsumer {
    pub(crate) fn start(queue: SqlQueue, name: QueueName, options: ConsumeOptions) -> SqlConsumer {
        let token: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let held: Held = Arc::default();
        let heartbeat = tokio::spawn(heartbeat(queue.clone(), token.clone(), held.clone()));
        SqlConsumer {
            queue,
            name,
            token,
            prefetch: options.prefetch.max(1),
            shutdown: options.shutdown,
            buffer: VecDeque::new(),
            held,
            heartbeat,
        }
    }

    async fn claim(&mut self) -> Result<()> {
        let inner = &self.queue.inner;
        let now = now_ms();
        let pick = match inner.dialect {
            Dialect::Postgres => {
                "SELECT id FROM tq_tasks WHERE queue = $3 AND state = 'ready' AND available_at <= $4 \
                 ORDER BY available_at, id LIMIT $5 FOR UPDATE SKIP LOCKED"
            }
            Dialect::Sqlite => {
                "SELECT id FROM tq_tasks WHERE queue = $3 AND state = 'ready' AND available_at <= $4 \
                 ORDER BY available_at, id LIMIT $5"
            }
        };
        let sql = format!(
            "UPDATE tq_tasks SET state = 'leased', lease_token = $1, lease_expires_at = $2, \
             attempts = attempts + 1 WHERE id IN ({pick}) \
             RETURNING id, payload, attempts, dedup_key"
        );
        let rows = sqlx::query(&sql)
            .bind(&*self.token)
            .bind(now + duration_ms(inner.config.lease))
            .bind(self.name.as_str())
            .bind(now)
            .bind(i64::from(self.prefetch))
            .fetch_all(&inner.pool)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            claimed.push(Claimed {
                id: row.try_get(0)?,
                payload: row.try_get(1)?,
                attempts: row.try_get(2)?,
                dedup_key: row.try_get(3)?,
            });
        }
        claimed.sort_by_key(|c| c.id);
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            for c in &claimed {
                held.insert(c.id, c.attempts);
            }
        }
        let max = i64::from(inner.config.max_attempts);
        for c in claimed {
            if c.attempts > max {
                let reason = format!(
                    "gave up: delivered {} times without success (max_attempts = {max})",
                    c.attempts
                );
                tracing::warn!(task = c.id, queue = %self.name, %reason, "task queue: dead-lettering");
                let settle = self.settler(c.id, c.attempts, c.dedup_key.is_some());
                settle.fenced_dead(&reason).await?;
                settle.forget();
            } else {
                self.buffer.push_back(c);
            }
        }
        Ok(())
    }

    fn settler(&self, id: i64, attempts: i64, keep_row: bool) -> SqlSettle {
        SqlSettle {
            queue: self.queue.clone(),
            lease: SqlLease {
                row: id,
                token: self.token.clone(),
                attempts,
                keep_row,
            },
            held: self.held.clone(),
        }
    }

    fn deliver(&self, c: Claimed) -> Delivery {
        let settle = self.settler(c.id, c.attempts, c.dedup_key.is_some());
        Delivery {
            id: c.id.to_string(),
            queue: self.name.clone(),
            attempt: u32::try_from(c.attempts).unwrap_or(u32::MAX),
            payload: c.payload,
            dedup_key: c.dedup_key,
            handle: Some(Box::new(settle)),
        }
    }
}

impl Drop for SqlConsumer {
    fn drop(&mut self) {
        // Like a killed process: no more heartbeats; the leases expire and are reaped.
        self.heartbeat.abort();
    }
}

#[async_trait]
impl Consumer for SqlConsumer {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(None);
            }
            if let Some(c) = self.buffer.pop_front() {
                return Ok(Some(self.deliver(c)));
            }
            self.queue.check_open()?;
            self.queue.maybe_reap().await?;
            self.claim().await?;
            if !self.buffer.is_empty() {
                continue;
            }
            let inner = &self.queue.inner;
            let woken = inner.wake.notified();
            tokio::select! {
                _ = tokio::time::sleep(inner.config.poll_interval) => {}
                _ = woken => {}
                _ = self.shutdown.cancelled() => return Ok(None),
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(c) = self.buffer.pop_front() {
            let settle = self.settler(c.id, c.attempts, c.dedup_key.is_some());
            if let Err(e) = settle.fenced_release().await {
                first_error.get_or_insert(e);
            }
            settle.forget();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Extends the leases of held tasks every `lease / 3` until the consumer is dropped.
async fn heartbeat(queue: SqlQueue, token: Arc<str>, held: Held) {
    let lease = queue.inner.config.lease;
    let every = (lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<i64> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for chunk in ids.chunks(500) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "UPDATE tq_tasks SET lease_expires_at = $1 WHERE state = 'leased' AND lease_token = $2 \
                 AND id IN ({})",
                list.join(",")
            );
            let mut q = sqlx::query(&sql)
                .bind(now_ms() + duration_ms(lease))
                .bind(&*token);
            for id in chunk {
                q = q.bind(*id);
            }
            if let Err(e) = q.execute(&queue.inner.pool).await {
                tracing::warn!(error = %e, "task queue: lease heartbeat failed");
            }
        }
    }
}

/// The lease a SQL delivery is held under: what fences its settle statements. A handler
/// gets it in [`crate::TaskInfo::sql_lease`] to ack the task inside its own transaction.
#[derive(Debug, Clone)]
pub struct SqlLease {
    row: i64,
    token: Arc<str>,
    attempts: i64,
    /// Acked tasks with a dedup key keep their row (without payload), so that the key
    /// stays taken; the others are deleted.
    keep_row: bool,
}

impl SqlLease {
    /// Acks the task on `conn`, inside the caller's transaction: the ack commits or rolls
    /// back with the caller's work (which must be in the queue's database). Returns
    /// `false` when the lease was lost (the task is delivered again). After a commit,
    /// the handler returns [`crate::Outcome::Acked`].
    pub async fn ack_in(&self, conn: &mut AnyConnection) -> std::result::Result<bool, sqlx::Error> {
        let (set, extra) = self.ack_statement();
        let sql = fenced_sql(set);
        let done = bind_fenced(sqlx::query(&sql), self, &extra)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        Ok(done > 0)
    }

    fn ack_statement(&self) -> (&'static str, Vec<Extra<'static>>) {
        if self.keep_row {
            (
                "UPDATE tq_tasks SET state = 'done', lease_token = NULL, lease_expires_at = NULL, \
                 finished_at = $4",
                vec![Extra::Int(now_ms())],
            )
        } else {
            ("DELETE FROM tq_tasks", Vec::new())
        }
    }
}

/// `set` fenced by `(id, lease token, attempts)`: `$1`–`$3`; extra parameters from `$4`.
fn fenced_sql(set: &str) -> String {
    format!("{set} WHERE id = $1 AND lease_token = $2 AND attempts = $3 AND state = 'leased'")
}

fn bind_fenced<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    lease: &'q SqlLease,
    extra: &[Extra<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = query
        .bind(lease.row)
        .bind(&*lease.token)
        .bind(lease.attempts);
    for e in extra {
        q = match e {
            Extra::Int(v) => q.bind(*v),
            Extra::Text(v) => q.bind(*v),
        };
    }
    q
}

struct SqlSettle {
    queue: SqlQueue,
    lease: SqlLease,
    held: Held,
}

impl SqlSettle {
    fn forget(&self) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.lease.row);
    }

    /// Runs `set` on the row if this consumer still holds its lease for this attempt.
    async fn fenced(&self, set: &str, extra: &[Extra<'_>]) -> Result<()> {
        let sql = fenced_sql(set);
        let done = bind_fenced(sqlx::query(&sql), &self.lease, extra)
            .execute(&self.queue.inner.pool)
            .await?
            .rows_affected();
        self.forget();
        if done == 0 {
            return Err(QueueError::LeaseLost(self.lease.row.to_string()));
        }
        Ok(())
    }

    async fn fenced_dead(&self, reason: &str) -> Result<()> {
        self.fenced(
            "UPDATE tq_tasks SET state = 'dead', lease_token = NULL, lease_expires_at = NULL, \
             last_error = $4, finished_at = $5",
            &[Extra::Text(reason), Extra::Int(now_ms())],
        )
        .await
    }

    async fn fenced_release(&self) -> Result<()> {
        self.fenced(
            "UPDATE tq_tasks SET state = 'ready', attempts = attempts - 1, lease_token = NULL, \
             lease_expires_at = NULL",
            &[],
        )
        .await?;
        self.queue.inner.wake.notify_waiters();
        Ok(())
    }
}

enum Extra<'a> {
    Int(i64),
    Text(&'a str),
}

#[async_trait]
impl Settle for SqlSettle {
    async fn ack(&self, _d: &Delivery) -> Result<()> {
        let (set, extra) = self.lease.ack_statement();
        self.fenced(set, &extra).await
    }

    async fn acked_in_transaction(&self, _d: &Delivery) -> Result<()> {
        self.forget();
        Ok(())
    }

    fn sql_lease(&self) -> Option<SqlLease> {
        Some(self.lease.clone())
    }

    async fn retry(&self, _d: &Delivery, after: Duration, error: &str) -> Result<()> {
        self.fenced(
            "UPDATE tq_tasks SET state = 'ready', available_at = $4, lease_token = NULL, \
             lease_expires_at = NULL, last_error = $5",
            &[
                Extra::Int(now_ms() + duration_ms(after)),
                Extra::Text(error),
            ],
        )
        .await?;
        if after.is_zero() {
            self.queue.inner.wake.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letter(&self, _d: &Delivery, reason: &str) -> Result<()> {
        self.fenced_dead(reason).await
    }

    async fn release(&self, _d: &Delivery) -> Result<()> {
        self.fenced_release().await
    }

    fn abandon(&self, _id: &str) {
        // Stop heartbeating it: the lease expires and the reaper returns it.
        self.forget();
    }
}
