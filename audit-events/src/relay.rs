//! The relay: delivers the outbox, oldest first, in batches, and deletes what the sink
//! took. A failed delivery is retried with backoff (200 ms doubling to 10 s) for as
//! long as it takes; the events stay in the outbox meanwhile.

use std::time::Duration;

use reqwest::Method;
use service_kit::internal_client::SignedClient;
use sqlx::AnyPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::amqp::Publisher;
use crate::config::{AuditSettings, AuditSink};
use crate::event::AuditEvent;
use crate::outbox;
use crate::{EventBatch, INGEST_PATH};

/// Events per delivery.
pub const BATCH: i64 = 100;
/// An idle relay looks at the outbox this often (events written by another process
/// sharing the database, or committed after the wake-up).
pub const POLL: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// After a wake-up, the relay waits this long before reading the outbox, so that the
/// events of the requests running at that moment go in the same delivery. Without it,
/// under load every request's event was its own read, signed HTTP call (or publish),
/// audit-service transaction and delete (measured with `GET /images` in
/// `docs/reliability.md`). Events are asynchronous anyway; this adds at most 50 ms.
pub const GATHER: Duration = Duration::from_millis(50);
/// At shutdown, what is waiting gets this long to go.
const LAST_DRAIN: Duration = Duration::from_secs(5);

/// Where the relay delivers.
pub enum Sink {
    Http(SignedClient),
    /// Boxed: a publisher holds a whole connection.
    Amqp(Box<Publisher>),
}

impl Sink {
    pub fn new(service: &str, settings: &AuditSettings) -> Result<Sink, String> {
        match &settings.sink {
            AuditSink::Log => Err("AUDIT_URL=log has no outbox to relay".into()),
            AuditSink::Http(url) => {
                let keys = settings
                    .keys
                    .clone()
                    .ok_or("an http:// AUDIT_URL needs AUDIT_KEYS")?;
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(Sink::Http(SignedClient::new(url.clone(), keys, http)))
            }
            AuditSink::Amqp(url) => Ok(Sink::Amqp(Box::new(Publisher::new(
                url.clone(),
                format!("{service} audit relay"),
            )))),
        }
    }

    async fn deliver(&mut self, events: &[AuditEvent]) -> Result<(), String> {
        match self {
            Sink::Http(client) => {
                let body = serde_json::to_vec(&EventBatch {
                    events: events.to_vec(),
                })
                .map_err(|e| e.to_string())?;
                let answer = client
                    .call("audit-events", Method::POST, INGEST_PATH, Some(body))
                    .await
                    .map_err(|e| e.to_string())?;
                if answer.status.is_success() {
                    Ok(())
                } else {
                    let (code, message) = answer.error_code();
                    Err(format!(
                        "the audit service answered {}: {code}: {message}",
                        answer.status
                    ))
                }
            }
            Sink::Amqp(publisher) => publisher.publish(events).await,
        }
    }
}

/// Delivers one batch. `Ok(n)`: `n` events left the outbox.
async fn deliver_batch(pool: &AnyPool, sink: &mut Sink) -> Result<usize, String> {
    let rows = outbox::oldest(pool, BATCH)
        .await
        .map_err(|e| format!("reading the outbox: {e}"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let (mut events, mut ids) = (Vec::with_capacity(rows.len()), Vec::new());
    for (id, event) in rows {
        match event {
            Some(event) => events.push(event),
            None => tracing::error!(%id, "dropping an audit outbox row that does not parse"),
        }
        ids.push(id);
    }
    if !events.is_empty() {
        sink.deliver(&events).await?;
    }
    outbox::delete(pool, &ids)
        .await
        .map_err(|e| format!("deleting delivered events (they will be sent again): {e}"))?;
    Ok(ids.len())
}

/// The relay loop; see the module docs.
pub async fn run(pool: AnyPool, mut sink: Sink, wake: &Notify, stop: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        match deliver_batch(&pool, &mut sink).await {
            Ok(n) => {
                if failing {
                    tracing::info!("audit events are being delivered again");
                    failing = false;
                }
                backoff = FIRST_BACKOFF;
                if n as i64 == BATCH {
                    continue;
                }
                tokio::select! {
                    _ = wake.notified() => {
                        tokio::select! {
                            _ = tokio::time::sleep(GATHER) => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled() => break,
                }
            }
            Err(e) => {
                if failing {
                    tracing::debug!(error = %e, "audit delivery still failing");
                } else {
                    tracing::warn!(error = %e, "audit delivery failed; events wait in the outbox and are retried");
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // Shutting down: whatever can go in a few seconds goes; the rest waits for the next start.
    let _ = tokio::time::timeout(LAST_DRAIN, async {
        while let Ok(n) = deliver_batch(&pool, &mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
