//! The RabbitMQ side: the durable topic exchange `audit` (routing key = event type),
//! the durable queue `audit.store` the audit service consumes, bound to it with `#`,
//! and the confirmed publisher the relay uses.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::event::AuditEvent;

/// The topic exchange every service publishes to.
pub const EXCHANGE: &str = "audit";
/// The queue the audit service stores from (every routing key).
pub const STORE_QUEUE: &str = "audit.store";

/// Opens a connection named `name` on the tokio runtime.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(name.to_owned()))
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Connection::connect(url, props).await
}

/// Declares the exchange and the store queue and binds them (idempotent). Publishers
/// declare them too, so an event is kept by the broker even before the audit service
/// ever started.
pub async fn declare(channel: &Channel) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            EXCHANGE,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            STORE_QUEUE,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            STORE_QUEUE,
            EXCHANGE,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// A connection with a confirming channel, opened on first use and dropped on any
/// error (the next delivery reconnects).
pub struct Publisher {
    url: String,
    name: String,
    link: Option<(Connection, Channel)>,
}

impl Publisher {
    pub fn new(url: String, name: String) -> Self {
        Publisher {
            url,
            name,
            link: None,
        }
    }

    async fn channel(&mut self) -> Result<&Channel, lapin::Error> {
        let usable = self
            .link
            .as_ref()
            .is_some_and(|(conn, ch)| conn.status().connected() && ch.status().connected());
        if !usable {
            self.link = None;
            let conn = connect(&self.url, &self.name).await?;
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            declare(&channel).await?;
            self.link = Some((conn, channel));
        }
        Ok(&self.link.as_ref().expect("link just set").1)
    }

    /// Publishes every event (persistent, mandatory) and waits for every confirm.
    pub async fn publish(&mut self, events: &[AuditEvent]) -> Result<(), String> {
        let result = self.publish_inner(events).await;
        if result.is_err() {
            if let Some((conn, _)) = self.link.take() {
                let _ = conn.close(0, "audit publisher reset").await;
            }
        }
        result
    }

    async fn publish_inner(&mut self, events: &[AuditEvent]) -> Result<(), String> {
        let channel = self.channel().await.map_err(|e| e.to_string())?;
        let mut confirms = Vec::with_capacity(events.len());
        for event in events {
            let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(event.id.to_string().into())
                .with_type(event.kind.as_str().into())
                .with_timestamp(event.time.timestamp().max(0) as u64);
            let confirm = channel
                .basic_publish(
                    EXCHANGE,
                    event.kind.as_str(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    props,
                )
                .await
                .map_err(|e| e.to_string())?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await.map_err(|e| e.to_string())? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => {
                    return Err("the broker returned an event: no queue bound to `audit`".into())
                }
                Confirmation::Nack(_) => return Err("the broker nacked an event".into()),
                Confirmation::NotRequested => {
                    return Err("publisher confirms are off on this channel".into())
                }
            }
        }
        Ok(())
    }
}
