//! App Service configuration, read once from the environment at start-up.
//!
//! Every variable is listed with its default in `.env.example`. Seller-token settings
//! (`JWT_*`, `AUTH_DEV_LOGIN`) are shared with the Import Service and documented in
//! [`service_kit::auth`].

use std::num::NonZeroU32;
use std::time::Duration;

use service_kit::auth::AuthConfig;
use service_kit::config::{ConfigError, Env};
use service_kit::http::HttpSettings;
use shared_signing::KeyRing;

/// Environment variable names (one place, used in errors and docs).
pub mod vars {
    pub const BIND: &str = "APP_BIND";
    pub const DATABASE_URL: &str = "APP_DATABASE_URL";
    pub const STORAGE_URL: &str = "STORAGE_URL";
    pub const APP_STORAGE_KEYS: &str = "APP_STORAGE_KEYS";
    pub const MAX_UPLOAD_BYTES: &str = "MAX_UPLOAD_BYTES";
    pub const UPLOAD_METADATA_TTL_SECS: &str = "UPLOAD_METADATA_TTL_SECS";
    pub const UPLOADS_PER_MINUTE: &str = "UPLOADS_PER_MINUTE";
    pub const UPLOADS_BURST: &str = "UPLOADS_BURST";
    pub const STORAGE_CONNECT_TIMEOUT_SECS: &str = "STORAGE_CONNECT_TIMEOUT_SECS";
    pub const STORAGE_TIMEOUT_SECS: &str = "STORAGE_TIMEOUT_SECS";
    pub const MAX_JSON_BYTES: &str = "MAX_JSON_BYTES";
}

/// Everything the App Service needs to run.
#[derive(Clone)]
pub struct AppConfig {
    pub http: HttpSettings,
    pub database_url: String,
    /// Base URL of the Storage Service's internal API, e.g. `http://127.0.0.1:8082`.
    pub storage_url: url::Url,
    /// Signs upload metadata and internal requests to storage (shared with storage only).
    pub storage_keys: KeyRing,
    pub auth: AuthConfig,
    /// Largest upload a seller may announce (storage enforces its own cap too).
    pub max_upload_bytes: u64,
    /// How long the signed upload metadata stays valid on its way to storage.
    pub upload_metadata_ttl: Duration,
    /// Per-seller rate of `POST /uploads`.
    pub uploads_per_minute: NonZeroU32,
    pub uploads_burst: NonZeroU32,
    pub storage_connect_timeout: Duration,
    /// Whole-call timeout for one request to storage.
    pub storage_timeout: Duration,
    /// Largest JSON request body accepted.
    pub max_json_bytes: usize,
    /// Where audit events go (`AUDIT_URL`, `AUDIT_KEYS`).
    pub audit: audit_events::AuditSettings,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("bind", &self.http.bind)
            .field("storage_url", &self.storage_url.as_str())
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("uploads_per_minute", &self.uploads_per_minute)
            .finish_non_exhaustive()
    }
}

const KEY_HINT: &str = "the same key ring the Storage Service has in APP_STORAGE_KEYS, like `app1:<base64 of 32+ random bytes>`";

fn non_zero(env: &Env, var: &str, default: u32) -> Result<NonZeroU32, ConfigError> {
    let value: u32 = env.parse_or(var, default)?;
    NonZeroU32::new(value).ok_or_else(|| ConfigError::new(var, "must be at least 1"))
}

impl AppConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let http = HttpSettings::from_env(env, vars::BIND, "127.0.0.1:8081")?;
        let storage_url = env.http_url_or(vars::STORAGE_URL, "http://127.0.0.1:8082")?;
        let storage_keys = KeyRing::parse(&env.required(vars::APP_STORAGE_KEYS, KEY_HINT)?)
            .map_err(|e| ConfigError::new(vars::APP_STORAGE_KEYS, e.to_string()))?;
        let max_upload_bytes = env.bytes_or(vars::MAX_UPLOAD_BYTES, 50 << 20)?;
        if max_upload_bytes == 0 {
            return Err(ConfigError::new(vars::MAX_UPLOAD_BYTES, "must be positive"));
        }
        let max_json_bytes = env.bytes_or(vars::MAX_JSON_BYTES, 64 << 10)?;
        if !(1024..=(16 << 20)).contains(&max_json_bytes) {
            return Err(ConfigError::new(
                vars::MAX_JSON_BYTES,
                "must be between 1KiB and 16MiB",
            ));
        }
        Ok(AppConfig {
            database_url: env.string_or(vars::DATABASE_URL, "sqlite://data/app.db"),
            storage_url,
            storage_keys,
            auth: AuthConfig::from_env(env)?,
            max_upload_bytes,
            upload_metadata_ttl: env.seconds_or(
                vars::UPLOAD_METADATA_TTL_SECS,
                Duration::from_secs(60),
                Duration::from_secs(5),
                Duration::from_secs(600),
            )?,
            uploads_per_minute: non_zero(env, vars::UPLOADS_PER_MINUTE, 60)?,
            uploads_burst: non_zero(env, vars::UPLOADS_BURST, 20)?,
            storage_connect_timeout: env.seconds_or(
                vars::STORAGE_CONNECT_TIMEOUT_SECS,
                Duration::from_secs(2),
                Duration::from_secs(1),
                Duration::from_secs(60),
            )?,
            storage_timeout: env.seconds_or(
                vars::STORAGE_TIMEOUT_SECS,
                Duration::from_secs(10),
                Duration::from_secs(1),
                Duration::from_secs(300),
            )?,
            max_json_bytes: max_json_bytes as usize,
            audit: audit_events::AuditSettings::from_env(env)?,
            http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, String)> {
        vec![
            (
                vars::APP_STORAGE_KEYS,
                KeyRing::generate(shared_signing::KeyId::new("app1").unwrap()).to_env_value(),
            ),
            ("JWT_HS256_SECRET", AuthConfig::generate_dev_secret()),
        ]
    }

    #[test]
    fn defaults_are_the_embedded_stack() {
        let config = AppConfig::from_env(&Env::from_pairs(base())).unwrap();
        assert_eq!(config.database_url, "sqlite://data/app.db");
        assert_eq!(config.storage_url.as_str(), "http://127.0.0.1:8082/");
        assert_eq!(config.http.bind.to_string(), "127.0.0.1:8081");
        assert_eq!(config.max_upload_bytes, 50 << 20);
        assert_eq!(config.uploads_per_minute.get(), 60);
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            (vars::STORAGE_URL, "ftp://storage"),
            (vars::STORAGE_URL, "not a url"),
            (vars::APP_STORAGE_KEYS, "app1:c2hvcnQ="),
            (vars::MAX_UPLOAD_BYTES, "0"),
            (vars::UPLOADS_PER_MINUTE, "0"),
            (vars::MAX_JSON_BYTES, "1"),
            (vars::BIND, "localhost"),
        ] {
            let mut pairs = base();
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value.to_owned()));
            let err = AppConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.var, var, "{value}: {err}");
        }
    }

    #[test]
    fn storage_keys_are_required() {
        let pairs: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != vars::APP_STORAGE_KEYS)
            .collect();
        let err = AppConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
        assert_eq!(err.var, vars::APP_STORAGE_KEYS);
    }
}
