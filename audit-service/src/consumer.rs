//! The RabbitMQ consumer: `audit.store` (bound to the `audit` exchange with `#`),
//! manual ack after the event is stored, reconnecting for as long as the service runs.

use std::time::Duration;

use audit_events::{amqp, AuditEvent};
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

const PREFETCH: u16 = 100;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Consumes until `stop` is cancelled.
pub async fn run(url: String, store: Store, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = tokio::select! {
            r = consume(&url, &store, &stop) => r,
            _ = stop.cancelled() => return,
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "audit consumer: broker connection lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn consume(url: &str, store: &Store, stop: &CancellationToken) -> Result<(), String> {
    let conn = amqp::connect(url, crate::SERVICE_NAME)
        .await
        .map_err(|e| e.to_string())?;
    let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
    amqp::declare(&channel).await.map_err(|e| e.to_string())?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut deliveries = channel
        .basic_consume(
            amqp::STORE_QUEUE,
            &format!("audit-{}", uuid::Uuid::new_v4().simple()),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(queue = amqp::STORE_QUEUE, "audit consumer subscribed");
    loop {
        let delivery = tokio::select! {
            d = deliveries.next() => d,
            _ = stop.cancelled() => {
                let _ = conn.close(0, "audit service stopping").await;
                return Ok(());
            }
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the broker ended the subscription".into()),
        };
        let event: AuditEvent = match serde_json::from_slice(&delivery.data) {
            Ok(event) => event,
            Err(e) => {
                // Not an audit event: keeping it would stall nothing but fill the queue.
                tracing::error!(error = %e, body = %String::from_utf8_lossy(&delivery.data), "dropping a message on audit.store that is not an audit event");
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
        };
        match store.insert(std::slice::from_ref(&event)).await {
            Ok(new) => {
                for event in &new {
                    audit_events::log_event(event);
                }
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => {
                tracing::warn!(error = %e, event = %event.id, "cannot store an audit event; it goes back to the queue");
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
