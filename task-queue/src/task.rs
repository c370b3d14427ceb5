//! The values that cross the trait: queue names, tasks to enqueue, deliveries, outcomes
//! and statistics.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{QueueError, Result};

/// Longest accepted dedup key, in bytes.
pub const MAX_DEDUP_KEY_BYTES: usize = 200;
/// Longest accepted reason or error text stored with a task (longer text is cut).
pub const MAX_REASON_BYTES: usize = 2000;

/// A queue name: 1–100 characters of `a-z 0-9 . _ -`, not starting with `tq.`
/// (reserved for the broker topology this crate creates).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

impl QueueName {
    pub fn new(name: impl Into<String>) -> Result<QueueName> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 100 {
            Some("it is longer than 100 characters")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            Some("use only a-z, 0-9, '.', '_' and '-'")
        } else if name.starts_with("tq.") {
            Some("the prefix `tq.` is reserved")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(QueueError::InvalidQueueName { name, reason }),
            None => Ok(QueueName(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for QueueName {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<QueueName> {
        QueueName::new(s)
    }
}

/// A task to enqueue: a JSON payload for one queue, with an optional dedup key and an
/// optional earliest delivery time.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub(crate) queue: QueueName,
    pub(crate) payload: Vec<u8>,
    pub(crate) dedup_key: Option<String>,
    pub(crate) not_before: Option<SystemTime>,
}

impl NewTask {
    /// A task whose payload is `payload` serialized as JSON.
    pub fn new<T: Serialize + ?Sized>(queue: &QueueName, payload: &T) -> Result<NewTask> {
        Ok(NewTask {
            queue: queue.clone(),
            payload: serde_json::to_vec(payload).map_err(QueueError::Encode)?,
            dedup_key: None,
            not_before: None,
        })
    }

    /// At most one task with this key exists per queue (see the crate docs for how long
    /// each backend remembers a key). Checked: 1–200 bytes.
    pub fn dedup_key(mut self, key: impl Into<String>) -> Result<NewTask> {
        let key = key.into();
        if key.is_empty() || key.len() > MAX_DEDUP_KEY_BYTES {
            return Err(QueueError::InvalidTask(format!(
                "dedup key must be 1 to {MAX_DEDUP_KEY_BYTES} bytes, got {}",
                key.len()
            )));
        }
        self.dedup_key = Some(key);
        Ok(self)
    }

    /// Not delivered before `at`.
    pub fn not_before(mut self, at: SystemTime) -> NewTask {
        self.not_before = Some(at);
        self
    }

    /// Not delivered before `delay` from now.
    pub fn delay(self, delay: Duration) -> NewTask {
        self.not_before(SystemTime::now() + delay)
    }

    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    pub fn payload_bytes(&self) -> &[u8] {
        &self.payload
    }
}

/// What a batch enqueue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Tasks written (and confirmed by the broker).
    pub enqueued: u64,
    /// Tasks skipped because their dedup key was already present.
    pub duplicates: u64,
}

/// How to consume.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// How many tasks a consumer holds at once beyond those in hand (SQL: claimed per
    /// query; AMQP: `basic.qos` prefetch count, which also bounds the unacked ones).
    pub prefetch: u16,
    /// Cancelled = stop taking new tasks: [`Consumer::next`] returns `None`.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            prefetch: 16,
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// Queue depth and dead-letter count, for `/metrics` and autoscaling. A field is `None`
/// when the backend cannot know it (see the crate docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Deliverable now.
    pub ready: u64,
    /// Waiting for their not-before time or retry delay.
    pub scheduled: Option<u64>,
    /// Handed to a consumer and not settled.
    pub in_flight: Option<u64>,
    /// Dead-lettered.
    pub dead: u64,
}

impl QueueStats {
    /// Tasks still to do: ready + scheduled + in flight (unknown parts count as 0).
    pub fn depth(&self) -> u64 {
        self.ready + self.scheduled.unwrap_or(0) + self.in_flight.unwrap_or(0)
    }
}

/// A task in a consumer's hand. Settle it with exactly one of [`Delivery::ack`],
/// [`Delivery::retry`], [`Delivery::dead_letter`] or [`Delivery::release`]. Dropping it
/// unsettled gives it back for redelivery (counted as an attempt).
pub struct Delivery {
    pub(crate) id: String,
    pub(crate) queue: QueueName,
    pub(crate) attempt: u32,
    pub(crate) payload: Vec<u8>,
    pub(crate) dedup_key: Option<String>,
    pub(crate) handle: Option<Box<dyn Settle>>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("queue", &self.queue)
            .field("attempt", &self.attempt)
            .field("payload_bytes", &self.payload.len())
            .field("dedup_key", &self.dedup_key)
            .finish()
    }
}

impl Delivery {
    /// Backend-specific task id (SQL row id, or the AMQP message id).
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }
    /// 1 on the first delivery; +1 for every retry and every redelivery after a consumer
    /// died or released it.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    pub fn dedup_key(&self) -> Option<&str> {
        self.dedup_key.as_deref()
    }
    pub fn payload_bytes(&self) -> &[u8] {
        &self.payload
    }

    /// The SQL lease this delivery is held under (`None` on AMQP), for acking it in the
    /// handler's own transaction ([`crate::sql::SqlLease::ack_in`]).
    pub fn sql_lease(&self) -> Option<crate::sql::SqlLease> {
        self.handle.as_ref().and_then(|h| h.sql_lease())
    }

    /// The payload as `T`; a clear error (with the task id and type) when it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|source| QueueError::Decode {
            task: self.id.clone(),
            expected: std::any::type_name::<T>(),
            source,
        })
    }

    fn take(&mut self) -> Box<dyn Settle> {
        self.handle.take().expect("a delivery is settled once")
    }

    /// Done: the task is removed (call only after the work is committed).
    pub async fn ack(mut self) -> Result<()> {
        let h = self.take();
        h.ack(&self).await
    }

    /// Deliver again after `after`, with `attempt + 1`; `error` is recorded (SQL).
    pub async fn retry(mut self, after: Duration, error: &str) -> Result<()> {
        let h = self.take();
        h.retry(&self, after, truncate(error)).await
    }

    /// Give up: the task moves to the dead letters with `reason`.
    pub async fn dead_letter(mut self, reason: &str) -> Result<()> {
        let h = self.take();
        h.dead_letter(&self, truncate(reason)).await
    }

    /// The handler already acked it in its own committed transaction
    /// ([`crate::sql::SqlLease::ack_in`]): only stop holding it. A delivery without a SQL
    /// lease is acked here.
    pub async fn acked_in_transaction(mut self) -> Result<()> {
        let h = self.take();
        h.acked_in_transaction(&self).await
    }

    /// Give the task back untouched for another consumer (graceful shutdown). SQL does not
    /// count it as an attempt; AMQP does (the broker marks it redelivered).
    pub async fn release(mut self) -> Result<()> {
        let h = self.take();
        h.release(&self).await
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abandon(&self.id);
        }
    }
}

/// How a backend settles one delivery.
#[async_trait]
pub(crate) trait Settle: Send + Sync {
    async fn ack(&self, d: &Delivery) -> Result<()>;
    async fn retry(&self, d: &Delivery, after: Duration, error: &str) -> Result<()>;
    async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<()>;
    async fn release(&self, d: &Delivery) -> Result<()>;
    /// See [`Delivery::acked_in_transaction`]; backends without SQL leases ack.
    async fn acked_in_transaction(&self, d: &Delivery) -> Result<()> {
        self.ack(d).await
    }
    /// See [`Delivery::sql_lease`].
    fn sql_lease(&self) -> Option<crate::sql::SqlLease> {
        None
    }
    /// Dropped unsettled: must not block; the task must come back eventually.
    fn abandon(&self, id: &str);
}

/// A consumer of one queue. Not `Sync`: one task drives it; deliveries can be handled
/// concurrently (see [`crate::worker`]).
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery, waiting for one. `Ok(None)` once the shutdown token is
    /// cancelled (prefer that to dropping the future). Dropping the future loses no task,
    /// but a SQL claim cut off mid-query leaves its tasks leased until the lease expires.
    async fn next(&mut self) -> Result<Option<Delivery>>;
    /// Stop taking tasks and give back those taken but not yet handed out. Deliveries
    /// already handed out stay valid and should still be settled.
    async fn close(&mut self) -> Result<()>;
}

pub(crate) fn truncate(s: &str) -> &str {
    if s.len() <= MAX_REASON_BYTES {
        return s;
    }
    let mut end = MAX_REASON_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

pub(crate) fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Shared handle type used by the typed helpers.
pub type SharedQueue = Arc<dyn crate::TaskQueue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_checked() {
        assert!(QueueName::new("import.list-1_a").is_ok());
        for bad in ["", "Upper", "white space", "tq.reserved", &"x".repeat(101)] {
            let err = QueueName::new(bad).unwrap_err();
            assert!(err.to_string().contains("invalid queue name"), "{err}");
        }
    }

    #[test]
    fn dedup_keys_are_bounded() {
        let q = QueueName::new("q").unwrap();
        assert!(NewTask::new(&q, &1).unwrap().dedup_key("").is_err());
        assert!(NewTask::new(&q, &1)
            .unwrap()
            .dedup_key("k".repeat(201))
            .is_err());
        assert!(NewTask::new(&q, &1)
            .unwrap()
            .dedup_key("job-1/file-9")
            .is_ok());
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_REASON_BYTES);
        let t = truncate(&s);
        assert!(t.len() <= MAX_REASON_BYTES);
        assert!(s.starts_with(t));
    }
}
