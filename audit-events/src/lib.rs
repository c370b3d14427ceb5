//! Audit events: what every Vitrine service records about security-relevant actions,
//! and how the records reach the audit service without ever slowing or failing a
//! request, and without being lost.
//!
//! A service holds one [`Audit`] handle. [`Audit::record`] (or [`Audit::record_in`],
//! inside the transaction of the action it records) writes the event to the local
//! outbox, a table in the service's own database; the relay ([`Audit::spawn_relay`])
//! delivers the outbox in the background and deletes what was delivered. While the
//! audit service or the broker is down, events wait in the outbox; a failure to record
//! is logged and never becomes the user's error. Delivery is at least once: the audit
//! service stores each event id once.
//!
//! # Layout
//! - [`event`]: [`AuditEvent`] and [`EventType`] (also the AMQP routing keys).
//! - [`config`]: `AUDIT_URL` (`log`, `http://…` or `amqp://…`) and `AUDIT_KEYS`.
//! - [`outbox`]: the `audit_outbox` table (portable SQL).
//! - [`relay`]: the background delivery loop and its two sinks.
//! - [`amqp`]: the `audit` topic exchange, the `audit.store` queue, the confirmed publisher.
//! - [`middleware`]: records refused seller tokens (`auth.failed`) from 401 answers.

pub mod amqp;
pub mod config;
pub mod event;
pub mod middleware;
pub mod outbox;
pub mod relay;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::Notify;
pub use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

pub use config::{AuditSettings, AuditSink};
pub use event::{request_id, AuditEvent, EventType};

/// Where the HTTP sink delivers, on the audit service.
pub const INGEST_PATH: &str = "/internal/events";

/// Body of `POST /internal/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventBatch {
    pub events: Vec<AuditEvent>,
}

/// The one audit handle of a service (cheap to clone).
#[derive(Clone)]
pub struct Audit(Arc<Inner>);

struct Inner {
    service: String,
    settings: AuditSettings,
    /// The service's database (not with [`AuditSink::Log`]).
    pool: Option<AnyPool>,
    wake: Notify,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("service", &self.0.service)
            .field("settings", &self.0.settings)
            .finish()
    }
}

impl Audit {
    /// Events go to this service's log only.
    pub fn log_only(service: &str) -> Audit {
        Audit(Arc::new(Inner {
            service: service.to_owned(),
            settings: AuditSettings::log_only(),
            pool: None,
            wake: Notify::new(),
        }))
    }

    /// The handle for `settings`; with an outbox (HTTP or AMQP sink), creates the
    /// `audit_outbox` table in `pool` if it is missing.
    pub async fn open(
        service: &str,
        settings: AuditSettings,
        pool: &AnyPool,
    ) -> Result<Audit, sqlx::Error> {
        let pool = match settings.sink {
            AuditSink::Log => None,
            _ => {
                outbox::create_table(pool).await?;
                Some(pool.clone())
            }
        };
        Ok(Audit(Arc::new(Inner {
            service: service.to_owned(),
            settings,
            pool,
            wake: Notify::new(),
        })))
    }

    pub fn service(&self) -> &str {
        &self.0.service
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.0.settings
    }

    /// A new event of `kind` from this service, stamped now.
    pub fn event(&self, kind: EventType) -> AuditEvent {
        AuditEvent::new(&self.0.service, kind)
    }

    /// Records `event` on its own. Never fails: a database error is logged (with the
    /// event) and the caller carries on.
    pub async fn record(&self, event: AuditEvent) {
        let Some(pool) = &self.0.pool else {
            log_event(&event);
            return;
        };
        let stored = async {
            let mut conn = pool.acquire().await?;
            outbox::insert(&mut conn, &event).await
        }
        .await;
        match stored {
            Ok(()) => self.0.wake.notify_one(),
            Err(e) => {
                tracing::error!(error = %e, event = %to_json(&event), "could not write an audit event to the outbox");
            }
        }
    }

    /// Records several events in one transaction. Never fails, like [`Audit::record`].
    pub async fn record_all(&self, events: Vec<AuditEvent>) {
        if events.is_empty() {
            return;
        }
        let Some(pool) = &self.0.pool else {
            events.iter().for_each(log_event);
            return;
        };
        let stored = async {
            if events.len() <= outbox::ROWS_PER_INSERT {
                // One statement: atomic on its own.
                let mut conn = pool.acquire().await?;
                outbox::insert_all(&mut conn, &events).await
            } else {
                let mut tx = pool.begin().await?;
                outbox::insert_all(&mut tx, &events).await?;
                tx.commit().await
            }
        }
        .await;
        match stored {
            Ok(()) => self.0.wake.notify_one(),
            Err(e) => {
                for event in &events {
                    tracing::error!(error = %e, event = %to_json(event), "could not write an audit event to the outbox");
                }
            }
        }
    }

    /// Records `event` on `conn`, normally the transaction of the action it records, so
    /// that both commit or neither does. The caller decides what an error means.
    pub async fn record_in(
        &self,
        conn: &mut AnyConnection,
        event: &AuditEvent,
    ) -> Result<(), sqlx::Error> {
        if self.0.pool.is_none() {
            log_event(event);
            return Ok(());
        }
        outbox::insert(conn, event).await?;
        // The relay may look before the caller commits; it looks again within a second.
        self.0.wake.notify_one();
        Ok(())
    }

    /// Events waiting in the outbox (0 without one).
    pub async fn pending(&self) -> Result<i64, sqlx::Error> {
        match &self.0.pool {
            Some(pool) => outbox::len(pool).await,
            None => Ok(0),
        }
    }

    /// Starts the relay (nothing to do without an outbox). It stops when `stop` is
    /// cancelled, after one last attempt to deliver what is waiting.
    pub fn spawn_relay(&self, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let pool = self.0.pool.clone()?;
        let sink = match relay::Sink::new(&self.0.service, &self.0.settings) {
            Ok(sink) => sink,
            Err(e) => {
                tracing::error!(error = %e, "audit relay not started; events stay in the outbox");
                return None;
            }
        };
        let me = self.clone();
        Some(tokio::spawn(async move {
            relay::run(pool, sink, &me.0.wake, stop).await;
        }))
    }
}

fn to_json(event: &AuditEvent) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// One log line per event (target `audit`): its type, to filter on, and the whole event
/// as JSON in field `event`. The event's other fields are not repeated beside it: that
/// doubled the line and its formatting cost, once per upload (docs/benchmarks.md,
/// `POST /uploads`, *Fifth look*).
pub fn log_event(event: &AuditEvent) {
    tracing::info!(
        target: "audit",
        event_type = event.kind.as_str(),
        event = to_json(event).as_str(),
        "audit event"
    );
}
