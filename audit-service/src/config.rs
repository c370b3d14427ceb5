//! Audit service configuration, read once from the environment at start-up.

use service_kit::config::{ConfigError, Env};
use service_kit::http::HttpSettings;
use shared_signing::KeyRing;

pub mod vars {
    pub const BIND: &str = "AUDIT_BIND";
    pub const DATABASE_URL: &str = "AUDIT_DATABASE_URL";
    /// Consume the `audit.store` queue of this broker (unset: no broker).
    pub const AMQP_URL: &str = "AUDIT_AMQP_URL";
    /// Accept signed `POST /internal/events` from holders of this ring (unset: refused).
    pub const KEYS: &str = "AUDIT_KEYS";
    /// Verifies operators' tokens for `GET /audit`.
    pub const ADMIN_KEYS: &str = "AUDIT_ADMIN_KEYS";
}

#[derive(Clone)]
pub struct AuditConfig {
    pub http: HttpSettings,
    pub database_url: String,
    pub amqp_url: Option<String>,
    pub ingest_keys: Option<KeyRing>,
    pub admin_keys: KeyRing,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("bind", &self.http.bind)
            .field("amqp", &self.amqp_url.is_some())
            .field("http_ingest", &self.ingest_keys.is_some())
            .finish_non_exhaustive()
    }
}

fn ring(var: &str, raw: String) -> Result<KeyRing, ConfigError> {
    KeyRing::parse(&raw).map_err(|e| ConfigError::new(var, e.to_string()))
}

impl AuditConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let http = HttpSettings::from_env(env, vars::BIND, "127.0.0.1:8085")?;
        let amqp_url = match env.get(vars::AMQP_URL) {
            Some(raw) if raw.starts_with("amqp://") => Some(raw),
            Some(_) => {
                return Err(ConfigError::new(
                    vars::AMQP_URL,
                    "must be an amqp://user:pass@host:port/vhost URL",
                ))
            }
            None => None,
        };
        let ingest_keys = match env.get(vars::KEYS) {
            Some(raw) => Some(ring(vars::KEYS, raw)?),
            None => None,
        };
        let admin_keys = ring(
            vars::ADMIN_KEYS,
            env.required(
                vars::ADMIN_KEYS,
                "the key ring operators' GET /audit tokens are signed with, like `admin1:<base64 of 32+ random bytes>` (`vitrine keys` prints one)",
            )?,
        )?;
        if amqp_url.is_none() && ingest_keys.is_none() {
            return Err(ConfigError::new(
                vars::AMQP_URL,
                format!("set it, or {} for signed HTTP deliveries, or both: otherwise no event can arrive", vars::KEYS),
            ));
        }
        Ok(AuditConfig {
            database_url: env.string_or(vars::DATABASE_URL, "sqlite://data/audit.db"),
            http,
            amqp_url,
            ingest_keys,
            admin_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_signing::KeyId;

    fn key(kid: &str) -> String {
        KeyRing::generate(KeyId::new(kid).unwrap()).to_env_value()
    }

    #[test]
    fn defaults_and_required() {
        let config = AuditConfig::from_env(&Env::from_pairs([
            (vars::ADMIN_KEYS, key("admin1")),
            (vars::KEYS, key("audit1")),
        ]))
        .unwrap();
        assert_eq!(config.database_url, "sqlite://data/audit.db");
        assert_eq!(config.http.bind.to_string(), "127.0.0.1:8085");
        assert!(config.amqp_url.is_none());

        let no_admin = AuditConfig::from_env(&Env::from_pairs([(vars::KEYS, key("audit1"))]));
        assert!(no_admin
            .err()
            .unwrap()
            .to_string()
            .contains(vars::ADMIN_KEYS));
        let no_source = AuditConfig::from_env(&Env::from_pairs([(vars::ADMIN_KEYS, key("a"))]));
        assert!(no_source.is_err());
        let bad_amqp = AuditConfig::from_env(&Env::from_pairs([
            (vars::ADMIN_KEYS, key("a")),
            (vars::AMQP_URL, "http://x".to_owned()),
        ]));
        assert!(bad_amqp.err().unwrap().to_string().contains(vars::AMQP_URL));
    }
}
