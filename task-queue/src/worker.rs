//! The typed consume loop: decode, handle with bounded concurrency, settle by outcome,
//! stop gracefully.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::task::{ConsumeOptions, Delivery, QueueName, SharedQueue};

/// What a handler decided about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The work is committed: acknowledge.
    Done,
    /// The work is committed, and the task was acked in the same transaction
    /// ([`crate::sql::SqlLease::ack_in`] with [`TaskInfo::sql_lease`]): nothing to settle.
    Acked,
    /// A transient failure: deliver again after `after` (attempt + 1).
    Retry { after: Duration, error: String },
    /// A permanent failure: dead-letter with `reason`.
    Failed { reason: String },
}

/// What a handler knows about the delivery besides its payload.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub id: String,
    pub queue: QueueName,
    /// 1 on the first delivery.
    pub attempt: u32,
    pub dedup_key: Option<String>,
    /// On the SQL backend, the lease to ack the task with inside the handler's own
    /// transaction (then return [`Outcome::Acked`]); `None` on AMQP.
    pub sql_lease: Option<crate::sql::SqlLease>,
}

/// Counts of what a [`Worker::run`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub done: u64,
    pub retried: u64,
    pub dead: u64,
    /// Settles the queue refused (e.g. a lost lease, or a broken connection): the task
    /// is delivered again, so its work must be idempotent.
    pub settle_errors: u64,
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    settle_errors: AtomicU64,
}

/// Consumes one queue with a typed handler.
///
/// ```no_run
/// # async fn demo(queue: task_queue::SharedQueue) -> task_queue::Result<()> {
/// use task_queue::{Outcome, QueueName, Worker};
/// let name = QueueName::new("import.file")?;
/// let stop = tokio_util::sync::CancellationToken::new();
/// Worker::new(queue, name).concurrency(8)
///     .run(stop, |file_id: u64, _info| async move { let _ = file_id; Outcome::Done })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    queue: SharedQueue,
    name: QueueName,
    concurrency: usize,
    prefetch: u16,
}

impl Worker {
    pub fn new(queue: SharedQueue, name: QueueName) -> Worker {
        Worker {
            queue,
            name,
            concurrency: 4,
            prefetch: 8,
        }
    }

    /// Tasks handled at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Worker {
        self.concurrency = n.max(1);
        self
    }

    /// Tasks held beyond those in hand (default 8); see [`ConsumeOptions::prefetch`].
    pub fn prefetch(mut self, n: u16) -> Worker {
        self.prefetch = n.max(1);
        self
    }

    /// Runs until `shutdown` is cancelled, then stops taking tasks, gives back those not
    /// started, waits for those in hand to finish and be settled, and returns.
    ///
    /// A payload that does not deserialize as `T` is dead-lettered with the decode error
    /// (retrying cannot fix it).
    pub async fn run<T, F, Fut>(
        self,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<WorkerReport>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T, TaskInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let options = ConsumeOptions {
            prefetch: self.prefetch,
            shutdown: shutdown.clone(),
        };
        let mut consumer = self.queue.consume(&self.name, options).await?;
        let handler = Arc::new(handler);
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let counters = Arc::new(Counters::default());
        let mut running = JoinSet::new();
        let mut backoff = Duration::from_millis(100);

        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            while let Some(joined) = running.try_join_next() {
                log_panic(joined);
            }
            let delivery = match consumer.next().await {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(queue = %self.name, error = %e, "task queue: cannot take tasks; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let handler = handler.clone();
            let counters = counters.clone();
            running.spawn(async move {
                let _permit = permit;
                handle_one(delivery, handler.as_ref(), &counters).await;
            });
        }

        if let Err(e) = consumer.close().await {
            tracing::warn!(queue = %self.name, error = %e, "task queue: closing the consumer failed; unstarted tasks come back after their lease");
        }
        while let Some(joined) = running.join_next().await {
            log_panic(joined);
        }
        Ok(WorkerReport {
            done: counters.done.load(Ordering::Relaxed),
            retried: counters.retried.load(Ordering::Relaxed),
            dead: counters.dead.load(Ordering::Relaxed),
            settle_errors: counters.settle_errors.load(Ordering::Relaxed),
        })
    }
}

fn log_panic(joined: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        tracing::error!(error = %e, "task queue: a handler panicked; its task will be delivered again");
    }
}

async fn handle_one<T, F, Fut>(delivery: Delivery, handler: &F, counters: &Counters)
where
    T: DeserializeOwned,
    F: Fn(T, TaskInfo) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let info = TaskInfo {
        id: delivery.id().to_owned(),
        queue: delivery.queue().clone(),
        attempt: delivery.attempt(),
        dedup_key: delivery.dedup_key().map(str::to_owned),
        sql_lease: delivery.sql_lease(),
    };
    let (outcome, counter) = match delivery.json::<T>() {
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(task = %info.id, queue = %info.queue, %reason, "task queue: undecodable payload, dead-lettering");
            (delivery.dead_letter(&reason).await, &counters.dead)
        }
        Ok(payload) => match handler(payload, info.clone()).await {
            Outcome::Done => (delivery.ack().await, &counters.done),
            Outcome::Acked => (delivery.acked_in_transaction().await, &counters.done),
            Outcome::Retry { after, error } => {
                (delivery.retry(after, &error).await, &counters.retried)
            }
            Outcome::Failed { reason } => (delivery.dead_letter(&reason).await, &counters.dead),
        },
    };
    match outcome {
        Ok(()) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            counters.settle_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(task = %info.id, queue = %info.queue, error = %e, "task queue: settle failed; the task will be delivered again");
        }
    }
}
