//! RabbitMQ backend (lapin 3, on tokio).
//!
//! # Topology (per queue `q`; names starting `tq.` are reserved for it)
//! - `q`: durable classic queue, `x-dead-letter-exchange = tq.dead` (so a broker-side
//!   reject also lands in the dead letters).
//! - `tq.dead` (durable direct exchange) → `tq.dead.q` (durable queue, bound with key `q`):
//!   the dead letters, each with its reason in header `x-tq-reason`.
//! - `tq.delay.q.<ms>`: durable retry queues, one per delay bucket, with
//!   `x-message-ttl = ms` and dead-lettering back to `q` through the default exchange. No
//!   plugin needed; one TTL per queue, so no head-of-line blocking. Each expires
//!   (`x-expires`) a minute after its last use.
//!
//! # Delivery
//! Messages are persistent, published with `mandatory` on a confirm-mode channel; enqueue
//! returns only after every message is confirmed. Consumers use manual acks and
//! `basic.qos` prefetch. Header `x-tq-attempt` carries the attempt number. A message the
//! broker redelivers (its consumer died, or the broker restarted) is republished with
//! attempt + 1 and the old copy acked, so crash loops are counted too and end in the dead
//! letters after `max_attempts`.
//!
//! # Reconnection
//! One connection per [`AmqpQueue`], re-made on demand (with backoff, for up to
//! `reconnect_timeout`) when the broker closes it; consumers re-subscribe. Unconfirmed
//! publishes are re-sent on the new connection (so a message may be stored twice:
//! at-least-once), and acks on a dead channel fail: the broker redelivers those tasks.

mod consumer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use crate::error::{QueueError, Result};
use crate::queue::{BackendKind, TaskQueue};
use crate::task::{
    now_ms, ConsumeOptions, Consumer, EnqueueReport, NewTask, QueueName, QueueStats,
};

pub(crate) const DEAD_EXCHANGE: &str = "tq.dead";
pub(crate) const H_ATTEMPT: &str = "x-tq-attempt";
pub(crate) const H_DEDUP: &str = "x-tq-dedup";
pub(crate) const H_REASON: &str = "x-tq-reason";
pub(crate) const H_ENQUEUED: &str = "x-tq-enqueued-at";
/// Confirms awaited at once during a batch publish.
const PUBLISH_WINDOW: usize = 1024;

/// RabbitMQ backend settings.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// A task delivered more than this many times is dead-lettered (default 25).
    pub max_attempts: u32,
    /// How long an operation keeps trying to reconnect before it fails (default 60 s).
    pub reconnect_timeout: Duration,
    /// Shown in the broker's connection list.
    pub connection_name: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            max_attempts: 25,
            reconnect_timeout: Duration::from_secs(60),
            connection_name: "vitrine-task-queue".to_owned(),
        }
    }
}

/// The RabbitMQ task queue. Cheap to clone.
#[derive(Clone)]
pub struct AmqpQueue {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    url: String,
    pub(crate) config: AmqpConfig,
    link: Mutex<Option<Link>>,
    declared: RwLock<HashSet<QueueName>>,
    closed: AtomicBool,
}

/// The current connection and its confirm-mode publishing channel.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) conn: Arc<Connection>,
    publisher: Channel,
}

impl Link {
    fn usable(&self) -> bool {
        self.conn.status().connected() && self.publisher.status().connected()
    }
}

/// One message to publish (kept so that it can be re-sent after a reconnect).
pub(crate) struct Outgoing {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

impl AmqpQueue {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`); fails if the broker cannot
    /// be reached within `reconnect_timeout`.
    pub async fn connect(url: &str, config: AmqpConfig) -> Result<AmqpQueue> {
        let queue = AmqpQueue {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                config,
                link: Mutex::new(None),
                declared: RwLock::new(HashSet::new()),
                closed: AtomicBool::new(false),
            }),
        };
        queue.link().await?;
        Ok(queue)
    }

    /// The live connection, re-made if the broker closed it.
    pub(crate) async fn link(&self) -> Result<Link> {
        let mut slot = self.inner.link.lock().await;
        if let Some(link) = slot.as_ref() {
            if link.usable() {
                return Ok(link.clone());
            }
            tracing::warn!("task queue: broker connection lost; reconnecting");
        }
        *slot = None;
        let deadline = Instant::now() + self.inner.config.reconnect_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.inner.closed.load(Ordering::Relaxed) {
                return Err(QueueError::Closed);
            }
            match self.open_link().await {
                Ok(link) => {
                    *slot = Some(link.clone());
                    return Ok(link);
                }
                Err(e) if Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "task queue: broker not reachable yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn open_link(&self) -> Result<Link> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.inner.config.connection_name.clone()))
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let conn = Connection::connect(&self.inner.url, props).await?;
        let publisher = conn.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        publisher
            .exchange_declare(
                DEAD_EXCHANGE,
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Link {
            conn: Arc::new(conn),
            publisher,
        })
    }

    /// Drops the current connection if it is still `link` (so the next call reconnects).
    async fn forget_link(&self, link: &Link) {
        let mut slot = self.inner.link.lock().await;
        if slot
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.conn, &link.conn))
        {
            *slot = None;
        }
    }

    /// Publishes every message, waits for every confirm, re-sends what failed on a new
    /// connection until `reconnect_timeout`.
    pub(crate) async fn publish_all(&self, messages: &[Outgoing]) -> Result<()> {
        let deadline = Instant::now() + self.inner.config.reconnect_timeout;
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        loop {
            let link = self.link().await?;
            let mut failed = Vec::new();
            let mut last_error = None;
            for window in pending.chunks(PUBLISH_WINDOW) {
                let mut confirms: Vec<(usize, Option<PublisherConfirm>)> =
                    Vec::with_capacity(window.len());
                for &i in window {
                    let m = &messages[i];
                    let sent = link
                        .publisher
                        .basic_publish(
                            &m.exchange,
                            &m.routing_key,
                            BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            },
                            &m.payload,
                            m.properties.clone(),
                        )
                        .await;
                    match sent {
                        Ok(confirm) => confirms.push((i, Some(confirm))),
                        Err(e) => {
                            last_error = Some(QueueError::Amqp(e));
                            confirms.push((i, None));
                        }
                    }
                }
                for (i, confirm) in confirms {
                    let outcome = match confirm {
                        None => Err(None),
                        Some(c) => match c.await {
                            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
                            Ok(Confirmation::Ack(Some(returned))) => {
                                Err(Some(QueueError::NotConfirmed(format!(
                                    "no queue for routing key `{}` (reply: {})",
                                    messages[i].routing_key, returned.reply_text
                                ))))
                            }
                            Ok(Confirmation::Nack(_)) => Err(Some(QueueError::NotConfirmed(
                                "the broker nacked the message".to_owned(),
                            ))),
                            Err(e) => Err(Some(QueueError::Amqp(e))),
                        },
                    };
                    if let Err(e) = outcome {
                        // A returned (unroutable) message will not get better by retrying.
                        if let Some(QueueError::NotConfirmed(msg)) = &e {
                            if msg.starts_with("no queue") {
                                return Err(QueueError::NotConfirmed(msg.clone()));
                            }
                        }
                        if let Some(e) = e {
                            last_error = Some(e);
                        }
                        failed.push(i);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            self.forget_link(&link).await;
            if Instant::now() >= deadline {
                return Err(last_error.unwrap_or(QueueError::NotConfirmed(format!(
                    "{} messages not confirmed",
                    failed.len()
                ))));
            }
            tracing::warn!(
                unconfirmed = failed.len(),
                error = ?last_error.as_ref().map(ToString::to_string),
                "task queue: re-sending unconfirmed messages on a new connection"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            pending = failed;
        }
    }

    /// Where a message for `queue` goes to wait `delay` first (declared on demand).
    pub(crate) async fn delay_route(&self, queue: &QueueName, delay: Duration) -> Result<String> {
        let ms = delay_bucket_ms(delay);
        let name = format!("tq.delay.{queue}.{ms}");
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.as_str().into()),
        );
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms + 60_000));
        self.with_channel(|ch| {
            let name = name.clone();
            let args = args.clone();
            async move {
                ch.queue_declare(&name, durable(), args).await?;
                Ok(())
            }
        })
        .await?;
        Ok(name)
    }

    /// Runs `f` on a short-lived channel (a failed declare closes its channel, not ours).
    async fn with_channel<F, Fut, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let link = self.link().await?;
        let ch = link.conn.create_channel().await?;
        let out = f(ch.clone()).await;
        if ch.status().connected() {
            let _ = ch.close(200, "done").await;
        }
        out
    }

    async fn check_declared(&self, queues: &[&QueueName]) -> Result<()> {
        let missing: Vec<QueueName> = {
            let declared = self
                .inner
                .declared
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let mut m: Vec<QueueName> = queues
                .iter()
                .filter(|q| !declared.contains(**q))
                .map(|q| (*q).clone())
                .collect();
            m.sort();
            m.dedup();
            m
        };
        for queue in missing {
            // Declared by another process counts: a passive declare tells.
            let exists = self
                .with_channel(|ch| {
                    let queue = queue.clone();
                    async move {
                        match ch
                            .queue_declare(queue.as_str(), passive(), FieldTable::default())
                            .await
                        {
                            Ok(_) => Ok(true),
                            Err(e) if is_not_found(&e) => Ok(false),
                            Err(e) => Err(QueueError::Amqp(e)),
                        }
                    }
                })
                .await?;
            if !exists {
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

    /// Deletes `queue`, its dead letters and nothing else (tests, operators).
    pub async fn delete_queue(&self, queue: &QueueName) -> Result<()> {
        self.with_channel(|ch| {
            let queue = queue.clone();
            async move {
                let opts = lapin::options::QueueDeleteOptions::default();
                ch.queue_delete(queue.as_str(), opts).await?;
                ch.queue_delete(&format!("{DEAD_EXCHANGE}.{queue}"), opts)
                    .await?;
                Ok(())
            }
        })
        .await?;
        self.inner
            .declared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
        Ok(())
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }
}

pub(crate) fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    e.to_string().contains("NOT_FOUND") || e.to_string().contains("404")
}

/// Delays are rounded up to 100 ms below 1 s, to 1 s below 1 min, to 1 min above, so
/// that a few retry queues serve every delay (never earlier than asked).
pub(crate) fn delay_bucket_ms(delay: Duration) -> i64 {
    let ms = i64::try_from(delay.as_millis())
        .unwrap_or(i64::MAX / 2)
        .max(1);
    let step = if ms <= 1_000 {
        100
    } else if ms <= 60_000 {
        1_000
    } else {
        60_000
    };
    (ms + step - 1) / step * step
}

/// Properties of a task message: persistent, JSON, attempt number, dedup key.
pub(crate) fn properties(
    message_id: &str,
    attempt: u32,
    dedup_key: Option<&str>,
    extra: &[(&str, AMQPValue)],
    enqueued_at: i64,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(H_ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    headers.insert(H_ENQUEUED.into(), AMQPValue::LongLongInt(enqueued_at));
    if let Some(key) = dedup_key {
        headers.insert(H_DEDUP.into(), AMQPValue::LongString(key.into()));
    }
    for (k, v) in extra {
        headers.insert(ShortString::from(*k), v.clone());
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_headers(headers)
}

pub(crate) fn header_i64(props: &BasicProperties, name: &str) -> Option<i64> {
    let value = props.headers().as_ref()?.inner().get(name)?;
    match value {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

pub(crate) fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let value = props.headers().as_ref()?.inner().get(name)?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[async_trait]
impl TaskQueue for AmqpQueue {
    fn kind(&self) -> BackendKind {
        BackendKind::Amqp
    }

    async fn declare(&self, queue: &QueueName) -> Result<()> {
        self.check_open()?;
        self.with_channel(|ch| {
            let queue = queue.clone();
            async move {
                let dead = format!("{DEAD_EXCHANGE}.{queue}");
                ch.queue_declare(&dead, durable(), FieldTable::default())
                    .await?;
                ch.queue_bind(
                    &dead,
                    DEAD_EXCHANGE,
                    queue.as_str(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
                let mut args = FieldTable::default();
                args.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(DEAD_EXCHANGE.into()),
                );
                ch.queue_declare(queue.as_str(), durable(), args).await?;
                Ok(())
            }
        })
        .await?;
        self.remember(queue);
        Ok(())
    }

    async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Result<EnqueueReport> {
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(EnqueueReport::default());
        }
        let queues: Vec<&QueueName> = tasks.iter().map(|t| &t.queue).collect();
        self.check_declared(&queues).await?;
        // Dedup keys are enforced within the batch only (see the crate docs).
        let mut seen: HashSet<(&QueueName, &str)> = HashSet::new();
        let mut routes: HashMap<(QueueName, i64), String> = HashMap::new();
        let now = now_ms();
        let mut out = Vec::with_capacity(tasks.len());
        let mut duplicates = 0;
        for t in &tasks {
            if let Some(key) = t.dedup_key.as_deref() {
                if !seen.insert((&t.queue, key)) {
                    duplicates += 1;
                    continue;
                }
            }
            let delay_ms = t.not_before.map(crate::task::epoch_ms).unwrap_or(now) - now;
            let routing_key = if delay_ms > 0 {
                let delay = Duration::from_millis(delay_ms as u64);
                let bucket = (t.queue.clone(), delay_bucket_ms(delay));
                match routes.get(&bucket) {
                    Some(r) => r.clone(),
                    None => {
                        let r = self.delay_route(&t.queue, delay).await?;
                        routes.insert(bucket, r.clone());
                        r
                    }
                }
            } else {
                t.queue.as_str().to_owned()
            };
            let id = uuid::Uuid::now_v7().to_string();
            out.push(Outgoing {
                exchange: String::new(),
                routing_key,
                payload: t.payload.clone(),
                properties: properties(&id, 1, t.dedup_key.as_deref(), &[], now),
            });
        }
        self.publish_all(&out).await?;
        Ok(EnqueueReport {
            enqueued: out.len() as u64,
            duplicates,
        })
    }

    async fn consume(
        &self,
        queue: &QueueName,
        options: ConsumeOptions,
    ) -> Result<Box<dyn Consumer>> {
        self.check_open()?;
        self.check_declared(&[queue]).await?;
        Ok(Box::new(consumer::AmqpConsumer::new(
            self.clone(),
            queue.clone(),
            options,
        )))
    }

    async fn stats(&self, queue: &QueueName) -> Result<QueueStats> {
        self.check_declared(&[queue]).await?;
        self.with_channel(|ch| {
            let queue = queue.clone();
            async move {
                let ready = ch
                    .queue_declare(queue.as_str(), passive(), FieldTable::default())
                    .await?
                    .message_count();
                let dead = ch
                    .queue_declare(
                        &format!("{DEAD_EXCHANGE}.{queue}"),
                        passive(),
                        FieldTable::default(),
                    )
                    .await?
                    .message_count();
                Ok(QueueStats {
                    ready: u64::from(ready),
                    scheduled: None,
                    in_flight: None,
                    dead: u64::from(dead),
                })
            }
        })
        .await
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        if let Some(link) = self.inner.link.lock().await.take() {
            let _ = link.conn.close(200, "task queue closed").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_a_few_buckets() {
        assert_eq!(delay_bucket_ms(Duration::from_millis(1)), 100);
        assert_eq!(delay_bucket_ms(Duration::from_millis(250)), 300);
        assert_eq!(delay_bucket_ms(Duration::from_millis(1_000)), 1_000);
        assert_eq!(delay_bucket_ms(Duration::from_millis(1_001)), 2_000);
        assert_eq!(delay_bucket_ms(Duration::from_secs(61)), 120_000);
    }
}
