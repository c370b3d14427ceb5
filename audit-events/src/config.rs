//! Publisher settings, read from the environment: where a service's events go.

use service_kit::config::{ConfigError, Env};
use shared_signing::KeyRing;

/// Environment variable names.
pub mod vars {
    /// `log` (default), `http://audit-host:port`, or `amqp://user:pass@host:port/vhost`.
    pub const AUDIT_URL: &str = "AUDIT_URL";
    /// Key ring that signs `POST /internal/events` (with an `http://` `AUDIT_URL`).
    pub const AUDIT_KEYS: &str = "AUDIT_KEYS";
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// Only this service's log (one `audit event` line each); nothing is kept.
    Log,
    /// The audit service's `POST /internal/events`, signed with `AUDIT_KEYS`, through
    /// the local outbox.
    Http(url::Url),
    /// The RabbitMQ topic exchange `audit`, through the local outbox.
    Amqp(String),
}

/// Everything a publishing service needs.
#[derive(Clone)]
pub struct AuditSettings {
    pub sink: AuditSink,
    /// Signs HTTP deliveries (set when the sink is HTTP).
    pub keys: Option<KeyRing>,
}

impl std::fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match &self.sink {
            AuditSink::Log => "log".to_owned(),
            AuditSink::Http(url) => url.to_string(),
            // The URL may hold a password.
            AuditSink::Amqp(_) => "amqp://…".to_owned(),
        };
        f.debug_struct("AuditSettings")
            .field("sink", &sink)
            .finish_non_exhaustive()
    }
}

impl AuditSettings {
    /// Log only: the default, and what tests that do not look at audit events use.
    pub fn log_only() -> Self {
        AuditSettings {
            sink: AuditSink::Log,
            keys: None,
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let raw = env.string_or(vars::AUDIT_URL, "log");
        let raw = raw.trim();
        let sink = if raw == "log" {
            AuditSink::Log
        } else if raw.starts_with("amqp://") {
            url::Url::parse(raw).map_err(|e| ConfigError::new(vars::AUDIT_URL, e.to_string()))?;
            AuditSink::Amqp(raw.to_owned())
        } else if raw.starts_with("http://") || raw.starts_with("https://") {
            AuditSink::Http(env.http_url_or(vars::AUDIT_URL, raw)?)
        } else {
            return Err(ConfigError::new(
                vars::AUDIT_URL,
                "must be `log`, an http(s):// URL of the audit service, or an amqp:// URL",
            ));
        };
        let keys = match &sink {
            AuditSink::Http(_) => Some(
                KeyRing::parse(&env.required(
                    vars::AUDIT_KEYS,
                    "with an http:// AUDIT_URL: the key ring the audit service has in AUDIT_KEYS, like `audit1:<base64 of 32+ random bytes>`",
                )?)
                .map_err(|e| ConfigError::new(vars::AUDIT_KEYS, e.to_string()))?,
            ),
            _ => None,
        };
        Ok(AuditSettings { sink, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_signing::KeyId;

    #[test]
    fn default_is_log_only() {
        let settings = AuditSettings::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(settings.sink, AuditSink::Log);
    }

    #[test]
    fn http_needs_keys_and_amqp_does_not() {
        let err = AuditSettings::from_env(&Env::from_pairs([(
            vars::AUDIT_URL,
            "http://127.0.0.1:8085",
        )]))
        .err()
        .unwrap();
        assert!(err.to_string().contains(vars::AUDIT_KEYS), "{err}");
        let ring = KeyRing::generate(KeyId::new("audit1").unwrap()).to_env_value();
        let ok = AuditSettings::from_env(&Env::from_pairs([
            (vars::AUDIT_URL, "http://127.0.0.1:8085".to_owned()),
            (vars::AUDIT_KEYS, ring),
        ]))
        .unwrap();
        assert!(matches!(ok.sink, AuditSink::Http(_)));
        let amqp = AuditSettings::from_env(&Env::from_pairs([(
            vars::AUDIT_URL,
            "amqp://u:p@127.0.0.1:5672/%2f",
        )]))
        .unwrap();
        assert!(matches!(amqp.sink, AuditSink::Amqp(_)));
        assert!(!format!("{amqp:?}").contains("u:p"));
        let bad = AuditSettings::from_env(&Env::from_pairs([(vars::AUDIT_URL, "kafka://x")]));
        assert!(bad.is_err());
    }
}
