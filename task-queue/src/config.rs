//! Configuration from the environment, and [`open`], which picks the backend.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `QUEUE_URL` | `sql` | `sql` (tables in the service's database) or `amqp://user:pass@host:port/vhost` |
//! | `QUEUE_LEASE_SECS` | 30 | SQL: a claimed task's lease without heartbeat (1–3600) |
//! | `QUEUE_POLL_INTERVAL_MS` | 200 | SQL: how often an idle consumer polls (10–10000) |
//! | `QUEUE_DEDUP_RETENTION_SECS` | 86400 | SQL: how long an acked task's dedup key is kept (0–31536000) |
//! | `QUEUE_MAX_ATTEMPTS` | 25 | both: deliveries before a task is dead-lettered by the queue (1–1000) |
//! | `QUEUE_RECONNECT_TIMEOUT_SECS` | 60 | AMQP: how long an operation retries a lost broker (1–3600) |

use std::sync::Arc;
use std::time::Duration;

use service_kit::db::Database;
use service_kit::{ConfigError, Env};

use crate::amqp::{AmqpConfig, AmqpQueue};
use crate::error::{QueueError, Result};
use crate::sql::{SqlConfig, SqlQueue};
use crate::task::SharedQueue;

/// Which backend `QUEUE_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueUrl {
    /// Tables in the service's own database.
    Sql,
    /// A RabbitMQ broker.
    Amqp(String),
}

/// Everything [`open`] needs.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub url: QueueUrl,
    pub sql: SqlConfig,
    pub amqp: AmqpConfig,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            url: QueueUrl::Sql,
            sql: SqlConfig::default(),
            amqp: AmqpConfig::default(),
        }
    }
}

fn bounded(env: &Env, var: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    let v: u64 = env.parse_or(var, default)?;
    if v < min || v > max {
        return Err(ConfigError::new(
            var,
            format!("{v} is out of range ({min} to {max})"),
        ));
    }
    Ok(v)
}

impl QueueSettings {
    pub fn from_env(env: &Env) -> Result<QueueSettings, ConfigError> {
        let raw = env.string_or("QUEUE_URL", "sql");
        let url = if raw == "sql" {
            QueueUrl::Sql
        } else if raw.starts_with("amqp://") {
            QueueUrl::Amqp(raw)
        } else if raw.starts_with("amqps://") {
            return Err(ConfigError::new(
                "QUEUE_URL",
                "amqps:// (TLS) is not built in; use amqp:// on a private network or a TLS sidecar",
            ));
        } else {
            return Err(ConfigError::new(
                "QUEUE_URL",
                "must be `sql` (the service's database) or amqp://user:pass@host:port/vhost",
            ));
        };
        let max_attempts = bounded(env, "QUEUE_MAX_ATTEMPTS", 25, 1, 1000)? as u32;
        Ok(QueueSettings {
            url,
            sql: SqlConfig {
                lease: Duration::from_secs(bounded(env, "QUEUE_LEASE_SECS", 30, 1, 3600)?),
                poll_interval: Duration::from_millis(bounded(
                    env,
                    "QUEUE_POLL_INTERVAL_MS",
                    200,
                    10,
                    10_000,
                )?),
                max_attempts,
                dedup_retention: Duration::from_secs(bounded(
                    env,
                    "QUEUE_DEDUP_RETENTION_SECS",
                    86_400,
                    0,
                    31_536_000,
                )?),
            },
            amqp: AmqpConfig {
                max_attempts,
                reconnect_timeout: Duration::from_secs(bounded(
                    env,
                    "QUEUE_RECONNECT_TIMEOUT_SECS",
                    60,
                    1,
                    3600,
                )?),
                ..AmqpConfig::default()
            },
        })
    }
}

/// Opens the configured backend. `database` is the service's own database, used when
/// `QUEUE_URL=sql` (the queue's `tq_*` tables are created in it).
pub async fn open(settings: &QueueSettings, database: Option<&Database>) -> Result<SharedQueue> {
    match &settings.url {
        QueueUrl::Sql => {
            let db = database.ok_or_else(|| {
                QueueError::Config(ConfigError::new(
                    "QUEUE_URL",
                    "is `sql`, which needs the service's database, and this process has none",
                ))
            })?;
            Ok(Arc::new(SqlQueue::new(db, settings.sql.clone()).await?))
        }
        QueueUrl::Amqp(url) => Ok(Arc::new(
            AmqpQueue::connect(url, settings.amqp.clone()).await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sql() {
        let s = QueueSettings::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert_eq!(s.url, QueueUrl::Sql);
        assert_eq!(s.sql.lease, Duration::from_secs(30));
        assert_eq!(s.amqp.max_attempts, 25);
    }

    #[test]
    fn errors_name_the_variable() {
        let err =
            QueueSettings::from_env(&Env::from_pairs([("QUEUE_URL", "redis://x")])).unwrap_err();
        assert_eq!(err.var, "QUEUE_URL");
        let err = QueueSettings::from_env(&Env::from_pairs([("QUEUE_URL", "amqps://h/%2f")]))
            .unwrap_err();
        assert!(err.message.contains("TLS"), "{err}");
        let err =
            QueueSettings::from_env(&Env::from_pairs([("QUEUE_LEASE_SECS", "0")])).unwrap_err();
        assert_eq!(err.var, "QUEUE_LEASE_SECS");
        let ok = QueueSettings::from_env(&Env::from_pairs([
            ("QUEUE_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("QUEUE_MAX_ATTEMPTS", "3"),
        ]))
        .unwrap();
        assert!(matches!(ok.url, QueueUrl::Amqp(_)));
        assert_eq!(ok.sql.max_attempts, 3);
    }
}
