//! The AMQP consumer: manual acks, prefetch, attempt counting, re-subscription after a
//! reconnect.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::acker::Acker;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;

use super::{header_i64, header_str, properties, AmqpQueue, Outgoing, DEAD_EXCHANGE, H_REASON};
use crate::error::{QueueError, Result};
use crate::task::{now_ms, ConsumeOptions, Consumer, Delivery, QueueName, Settle};

struct Subscription {
    channel: Channel,
    stream: lapin::Consumer,
    tag: String,
}

pub(crate) struct AmqpConsumer {
    queue: AmqpQueue,
    name: QueueName,
    prefetch: u16,
    shutdown: CancellationToken,
    current: Option<Subscription>,
}

impl AmqpConsumer {
    pub(crate) fn new(queue: AmqpQueue, name: QueueName, options: ConsumeOptions) -> Self {
        AmqpConsumer {
            queue,
            name,
            prefetch: options.prefetch.max(1),
            shutdown: options.shutdown,
            current: None,
        }
    }

    async fn subscribe(&mut self) -> Result<()> {
        let link = self.queue.link().await?;
        let channel = link.conn.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("tq-{}", uuid::Uuid::new_v4().simple());
        let stream = channel
            .basic_consume(
                self.name.as_str(),
                &tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.current = Some(Subscription {
            channel,
            stream,
            tag,
        });
        Ok(())
    }

    /// Turns a broker delivery into ours, or handles it here (redelivery, crash loop).
    async fn accept(&self, d: lapin::message::Delivery) -> Result<Option<Delivery>> {
        let header_attempt = header_i64(&d.properties, super::H_ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1)
            .max(1);
        let id = d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| format!("tag-{}", d.delivery_tag));
        let dedup_key = header_str(&d.properties, super::H_DEDUP);
        if d.redelivered {
            // Its previous delivery ended without a settle (consumer died, channel closed,
            // broker restarted): count that as an attempt by republishing the next one.
            let next = header_attempt.saturating_add(1);
            let enqueued = header_i64(&d.properties, super::H_ENQUEUED).unwrap_or_else(now_ms);
            let msg = Outgoing {
                exchange: String::new(),
                routing_key: self.name.as_str().to_owned(),
                payload: d.data.clone(),
                properties: properties(&id, next, dedup_key.as_deref(), &[], enqueued),
            };
            self.queue.publish_all(std::slice::from_ref(&msg)).await?;
            d.acker.ack(BasicAckOptions::default()).await?;
            return Ok(None);
        }
        let max = self.queue.inner.config.max_attempts;
        if header_attempt > max {
            let reason = format!(
                "gave up: delivered {header_attempt} times without success (max_attempts = {max})"
            );
            tracing::warn!(task = %id, queue = %self.name, %reason, "task queue: dead-lettering");
            dead_letter(&self.queue, &self.name, &d.properties, &d.data, &reason).await?;
            d.acker.ack(BasicAckOptions::default()).await?;
            return Ok(None);
        }
        let settle = AmqpSettle {
            queue: self.queue.clone(),
            acker: d.acker,
            properties: d.properties,
        };
        Ok(Some(Delivery {
            id,
            queue: self.name.clone(),
            attempt: header_attempt,
            payload: d.data,
            dedup_key,
            handle: Some(Box::new(settle)),
        }))
    }
}

async fn dead_letter(
    queue: &AmqpQueue,
    name: &QueueName,
    props: &BasicProperties,
    payload: &[u8],
    reason: &str,
) -> Result<()> {
    let id = props
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let attempt = header_i64(props, super::H_ATTEMPT)
        .and_then(|a| u32::try_from(a).ok())
        .unwrap_or(1);
    let dedup = header_str(props, super::H_DEDUP);
    let enqueued = header_i64(props, super::H_ENQUEUED).unwrap_or_else(now_ms);
    let msg = Outgoing {
        exchange: DEAD_EXCHANGE.to_owned(),
        routing_key: name.as_str().to_owned(),
        payload: payload.to_vec(),
        properties: properties(
            &id,
            attempt,
            dedup.as_deref(),
            &[(H_REASON, AMQPValue::LongString(reason.into()))],
            enqueued,
        ),
    };
    queue.publish_all(std::slice::from_ref(&msg)).await
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        // Like a killed process: closing the channel makes the broker requeue its unacked
        // messages.
        if let Some(sub) = self.current.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = sub.channel.close(200, "consumer dropped").await;
                });
            }
        }
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(None);
            }
            self.queue.check_open()?;
            if self.current.is_none() {
                self.subscribe().await?;
            }
            let Some(sub) = self.current.as_mut() else {
                continue;
            };
            let item = tokio::select! {
                item = sub.stream.next() => item,
                _ = self.shutdown.cancelled() => return Ok(None),
            };
            match item {
                Some(Ok(d)) => match self.accept(d).await {
                    Ok(Some(delivery)) => return Ok(Some(delivery)),
                    Ok(None) => continue,
                    Err(e) => {
                        // The message stays unacked and comes back when the channel closes.
                        self.current = None;
                        return Err(e);
                    }
                },
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.name, error = %e, "task queue: consumer channel failed; re-subscribing");
                    self.current = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    tracing::warn!(queue = %self.name, "task queue: consumer cancelled by the broker; re-subscribing");
                    self.current = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        if let Some(sub) = self.current.as_mut() {
            // Stop deliveries; give back the prefetched ones we never handed out. The
            // channel stays open so that deliveries in hand can still be acked.
            if sub.channel.status().connected() {
                sub.channel
                    .basic_cancel(&sub.tag, BasicCancelOptions::default())
                    .await?;
                while let Ok(Some(Ok(d))) =
                    tokio::time::timeout(Duration::from_millis(50), sub.stream.next()).await
                {
                    d.acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await?;
                }
            }
        }
        Ok(())
    }
}

struct AmqpSettle {
    queue: AmqpQueue,
    acker: Acker,
    properties: BasicProperties,
}

impl AmqpSettle {
    async fn ack_original(&self) -> Result<()> {
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(&self, _d: &Delivery) -> Result<()> {
        self.ack_original().await
    }

    async fn retry(&self, d: &Delivery, after: Duration, error: &str) -> Result<()> {
        let routing_key = if after.is_zero() {
            d.queue.as_str().to_owned()
        } else {
            self.queue.delay_route(&d.queue, after).await?
        };
        let enqueued = header_i64(&self.properties, super::H_ENQUEUED).unwrap_or_else(now_ms);
        let msg = Outgoing {
            exchange: String::new(),
            routing_key,
            payload: d.payload.clone(),
            properties: properties(
                &d.id,
                d.attempt.saturating_add(1),
                d.dedup_key.as_deref(),
                &[("x-tq-last-error", AMQPValue::LongString(error.into()))],
                enqueued,
            ),
        };
        // Confirmed first, then acked: a crash in between leaves a duplicate, never a loss.
        self.queue.publish_all(std::slice::from_ref(&msg)).await?;
        self.ack_original().await
    }

    async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<()> {
        dead_letter(&self.queue, &d.queue, &self.properties, &d.payload, reason).await?;
        self.ack_original().await
    }

    async fn release(&self, _d: &Delivery) -> Result<()> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .map_err(QueueError::Amqp)?;
        Ok(())
    }

    fn abandon(&self, _id: &str) {
        let acker = self.acker.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
            });
        }
    }
}
