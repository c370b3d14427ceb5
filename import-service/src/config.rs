//! Import Service configuration, read once from the environment at start-up.
//!
//! `import-api` and `import-worker` read the same variables (each uses what it needs);
//! every one is listed with its default in `.env.example`. Seller-token settings
//! (`JWT_*`, `AUTH_DEV_LOGIN`) are documented in [`service_kit::auth`]; the queue's
//! (`QUEUE_URL`, `QUEUE_*`) in `task_queue::config`.

use std::num::NonZeroU32;
use std::time::Duration;

use service_kit::auth::AuthConfig;
use service_kit::config::{ConfigError, Env};
use service_kit::http::HttpSettings;
use shared_signing::KeyRing;
use task_queue::QueueSettings;

use crate::tasks::{QueueNames, DEFAULT_QUEUE_PREFIX};

use crate::providers::dropbox::{DropboxAuth, DropboxSettings};
use crate::providers::google_drive::DriveSettings;

/// Environment variable names (one place, used in errors and docs).
pub mod vars {
    pub const BIND: &str = "IMPORT_BIND";
    pub const WORKER_METRICS_BIND: &str = "IMPORT_WORKER_METRICS_BIND";
    pub const DATABASE_URL: &str = "IMPORT_DATABASE_URL";
    pub const STORAGE_URL: &str = "STORAGE_URL";
    pub const IMPORT_STORAGE_KEYS: &str = "IMPORT_STORAGE_KEYS";
    pub const STORAGE_CONNECT_TIMEOUT_SECS: &str = "STORAGE_CONNECT_TIMEOUT_SECS";
    pub const STORAGE_READ_TIMEOUT_SECS: &str = "STORAGE_READ_TIMEOUT_SECS";
    pub const GOOGLE_API_KEY: &str = "GOOGLE_API_KEY";
    pub const GOOGLE_DRIVE_API_BASE: &str = "GOOGLE_DRIVE_API_BASE";
    pub const DROPBOX_ACCESS_TOKEN: &str = "DROPBOX_ACCESS_TOKEN";
    pub const DROPBOX_APP_KEY: &str = "DROPBOX_APP_KEY";
    pub const DROPBOX_APP_SECRET: &str = "DROPBOX_APP_SECRET";
    pub const DROPBOX_API_BASE: &str = "DROPBOX_API_BASE";
    pub const DROPBOX_CONTENT_BASE: &str = "DROPBOX_CONTENT_BASE";
    pub const PROVIDER_TIMEOUT_SECS: &str = "PROVIDER_TIMEOUT_SECS";
    pub const PROVIDER_REQUESTS_PER_SECOND: &str = "PROVIDER_REQUESTS_PER_SECOND";
    pub const IMPORT_WORKER_CONCURRENCY: &str = "IMPORT_WORKER_CONCURRENCY";
    pub const IMPORT_LISTING_CONCURRENCY: &str = "IMPORT_LISTING_CONCURRENCY";
    pub const IMPORT_MAX_ATTEMPTS: &str = "IMPORT_MAX_ATTEMPTS";
    pub const IMPORT_RETRY_BASE_MS: &str = "IMPORT_RETRY_BASE_MS";
    pub const IMPORT_RETRY_MAX_SECS: &str = "IMPORT_RETRY_MAX_SECS";
    pub const IMPORT_MAX_FILE_BYTES: &str = "IMPORT_MAX_FILE_BYTES";
    pub const IMAGE_URL_TTL_SECS: &str = "IMAGE_URL_TTL_SECS";
    pub const IMPORT_QUEUE_PREFIX: &str = "IMPORT_QUEUE_PREFIX";
    pub const IMPORT_MAX_RUNNING_PER_SELLER: &str = "IMPORT_MAX_RUNNING_PER_SELLER";
    pub const MAX_JSON_BYTES: &str = "MAX_JSON_BYTES";
}

/// What both binaries need: the database, storage, the providers, the queue.
#[derive(Clone)]
pub struct ImportConfig {
    /// Where audit events go (`AUDIT_URL`, `AUDIT_KEYS`).
    pub audit: audit_events::AuditSettings,
    /// `import-api`'s listener (and CORS, request timeout).
    pub http: HttpSettings,
    /// Where `import-worker` serves `/metrics` and `/health/*`; `None` = not served.
    pub worker_metrics_bind: Option<std::net::SocketAddr>,
    pub database_url: String,
    pub queue: QueueSettings,
    /// `<IMPORT_QUEUE_PREFIX>.listing` and `.file`.
    pub queues: QueueNames,
    /// Base URL of the Storage Service's internal API.
    pub storage_url: url::Url,
    /// Signs internal requests to storage (shared with storage's `IMPORT_STORAGE_KEYS`).
    pub storage_keys: KeyRing,
    pub storage_connect_timeout: Duration,
    /// An ingest whose answer does not come for this long is abandoned.
    pub storage_read_timeout: Duration,
    pub drive: DriveSettings,
    pub dropbox: DropboxSettings,
    /// Seller-token settings: required by `import-api`, unused by `import-worker`
    /// (`None` when no `JWT_HS256_SECRET` / `JWT_JWKS_URL` is set).
    pub auth: Option<AuthConfig>,
    pub pipeline: PipelineSettings,
    /// Imports one seller may have running at once (more: 429 `too-many-imports`).
    pub max_running_imports: u32,
    /// Lifetime of the signed `url` in `GET /images`.
    pub image_url_ttl: Duration,
    pub max_json_bytes: usize,
}

/// How the worker paces, retries and sizes its work.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// File tasks one worker process handles at once.
    pub file_concurrency: usize,
    /// Listing tasks one worker process handles at once.
    pub listing_concurrency: usize,
    /// Attempts per file (and per listing page) before it is recorded as failed.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with full jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A listed file larger than this fails as `file-too-large` without a download.
    pub max_file_bytes: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            file_concurrency: 16,
            listing_concurrency: 4,
            max_attempts: 6,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_file_bytes: 50 << 20,
        }
    }
}

impl std::fmt::Debug for ImportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportConfig")
            .field("bind", &self.http.bind)
            .field("storage_url", &self.storage_url.as_str())
            .field("drive_api", &self.drive.api_base.as_str())
            .field("dropbox_api", &self.dropbox.api_base.as_str())
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

const KEY_HINT: &str = "the same key ring the Storage Service has in IMPORT_STORAGE_KEYS, like `imp1:<base64 of 32+ random bytes>`";

fn bounded_u32(env: &Env, var: &str, default: u32, min: u32, max: u32) -> Result<u32, ConfigError> {
    let value: u32 = env.parse_or(var, default)?;
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(
            var,
            format!("{value} is out of range ({min} to {max})"),
        ));
    }
    Ok(value)
}

fn dropbox_auth(env: &Env) -> Result<DropboxAuth, ConfigError> {
    let token = env
        .get(vars::DROPBOX_ACCESS_TOKEN)
        .filter(|t| !t.is_empty());
    let key = env.get(vars::DROPBOX_APP_KEY).filter(|t| !t.is_empty());
    let secret = env.get(vars::DROPBOX_APP_SECRET).filter(|t| !t.is_empty());
    match (token, key, secret) {
        (Some(token), None, None) => Ok(DropboxAuth::AccessToken(token)),
        (None, Some(key), Some(secret)) => Ok(DropboxAuth::App { key, secret }),
        (Some(_), _, _) => Err(ConfigError::new(
            vars::DROPBOX_ACCESS_TOKEN,
            "set either DROPBOX_ACCESS_TOKEN or DROPBOX_APP_KEY + DROPBOX_APP_SECRET, not both",
        )),
        (None, Some(_), None) | (None, None, Some(_)) => Err(ConfigError::new(
            vars::DROPBOX_APP_SECRET,
            "DROPBOX_APP_KEY and DROPBOX_APP_SECRET go together",
        )),
        // Without credentials Dropbox answers 401, and an import fails with
        // `provider-auth-failed`, which names the variables.
        (None, None, None) => Ok(DropboxAuth::AccessToken(String::new())),
    }
}

impl ImportConfig {
    /// Seller-token settings, or the error `import-api` starts with when there are none.
    pub fn require_auth(&self) -> Result<&AuthConfig, ConfigError> {
        self.auth.as_ref().ok_or_else(|| {
            ConfigError::new(
                "JWT_HS256_SECRET / JWT_JWKS_URL",
                "import-api verifies seller tokens: set JWT_HS256_SECRET and/or JWT_JWKS_URL as for the App Service",
            )
        })
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let http = HttpSettings::from_env(env, vars::BIND, "127.0.0.1:8083")?;
        let worker_metrics_bind = match env.get(vars::WORKER_METRICS_BIND) {
            None => None,
            Some(raw) if raw.is_empty() || raw == "off" => None,
            Some(raw) => Some(raw.parse().map_err(|e| {
                ConfigError::new(
                    vars::WORKER_METRICS_BIND,
                    format!("`{raw}` is not an address like 127.0.0.1:9093 ({e})"),
                )
            })?),
        };
        let storage_url = env.http_url_or(vars::STORAGE_URL, "http://127.0.0.1:8082")?;
        let storage_keys = KeyRing::parse(&env.required(vars::IMPORT_STORAGE_KEYS, KEY_HINT)?)
            .map_err(|e| ConfigError::new(vars::IMPORT_STORAGE_KEYS, e.to_string()))?;
        let provider_timeout = env.seconds_or(
            vars::PROVIDER_TIMEOUT_SECS,
            Duration::from_secs(30),
            Duration::from_secs(1),
            Duration::from_secs(600),
        )?;
        let connect_timeout = Duration::from_secs(10).min(provider_timeout);
        let requests_per_second = NonZeroU32::new(bounded_u32(
            env,
            vars::PROVIDER_REQUESTS_PER_SECOND,
            100,
            1,
            100_000,
        )?)
        .expect("bounded to at least 1");
        let drive = DriveSettings {
            api_base: env.http_url_or(vars::GOOGLE_DRIVE_API_BASE, "https://www.googleapis.com")?,
            api_key: env.string_or(vars::GOOGLE_API_KEY, ""),
            page_size: 1000,
            connect_timeout,
            request_timeout: provider_timeout,
            read_timeout: provider_timeout,
            requests_per_second,
        };
        let dropbox = DropboxSettings {
            api_base: env.http_url_or(vars::DROPBOX_API_BASE, "https://api.dropboxapi.com")?,
            content_base: env
                .http_url_or(vars::DROPBOX_CONTENT_BASE, "https://content.dropboxapi.com")?,
            auth: dropbox_auth(env)?,
            page_size: 2000,
            connect_timeout,
            request_timeout: provider_timeout,
            read_timeout: provider_timeout,
            requests_per_second,
        };
        let defaults = PipelineSettings::default();
        let retry_base_ms = bounded_u32(env, vars::IMPORT_RETRY_BASE_MS, 1000, 1, 600_000)?;
        let pipeline = PipelineSettings {
            file_concurrency: bounded_u32(env, vars::IMPORT_WORKER_CONCURRENCY, 16, 1, 1024)?
                as usize,
            listing_concurrency: bounded_u32(env, vars::IMPORT_LISTING_CONCURRENCY, 4, 1, 64)?
                as usize,
            max_attempts: bounded_u32(
                env,
                vars::IMPORT_MAX_ATTEMPTS,
                defaults.max_attempts,
                1,
                50,
            )?,
            retry_base: Duration::from_millis(u64::from(retry_base_ms)),
            retry_max: env.seconds_or(
                vars::IMPORT_RETRY_MAX_SECS,
                defaults.retry_max,
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )?,
            max_file_bytes: env.bytes_or(vars::IMPORT_MAX_FILE_BYTES, defaults.max_file_bytes)?,
        };
        if pipeline.max_file_bytes == 0 {
            return Err(ConfigError::new(
                vars::IMPORT_MAX_FILE_BYTES,
                "must be positive",
            ));
        }
        let max_json_bytes = env.bytes_or(vars::MAX_JSON_BYTES, 64 << 10)?;
        if !(1024..=(16 << 20)).contains(&max_json_bytes) {
            return Err(ConfigError::new(
                vars::MAX_JSON_BYTES,
                "must be between 1KiB and 16MiB",
            ));
        }
        Ok(ImportConfig {
            audit: audit_events::AuditSettings::from_env(env)?,
            http,
            worker_metrics_bind,
            database_url: env.string_or(vars::DATABASE_URL, "sqlite://data/import.db"),
            queue: QueueSettings::from_env(env)?,
            queues: {
                let prefix = env.string_or(vars::IMPORT_QUEUE_PREFIX, DEFAULT_QUEUE_PREFIX);
                QueueNames::new(&prefix)
                    .map_err(|e| ConfigError::new(vars::IMPORT_QUEUE_PREFIX, e.to_string()))?
            },
            storage_url,
            storage_keys,
            storage_connect_timeout: env.seconds_or(
                vars::STORAGE_CONNECT_TIMEOUT_SECS,
                Duration::from_secs(2),
                Duration::from_secs(1),
                Duration::from_secs(60),
            )?,
            storage_read_timeout: env.seconds_or(
                vars::STORAGE_READ_TIMEOUT_SECS,
                Duration::from_secs(60),
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )?,
            drive,
            dropbox,
            auth: match AuthConfig::from_env(env) {
                Ok(auth) => Some(auth),
                Err(_)
                    if env.get("JWT_HS256_SECRET").is_none()
                        && env.get("JWT_JWKS_URL").is_none() =>
                {
                    None
                }
                Err(e) => return Err(e),
            },
            pipeline,
            max_running_imports: bounded_u32(env, vars::IMPORT_MAX_RUNNING_PER_SELLER, 5, 1, 1000)?,
            image_url_ttl: env.seconds_or(
                vars::IMAGE_URL_TTL_SECS,
                Duration::from_secs(300),
                Duration::from_secs(10),
                Duration::from_secs(3600),
            )?,
            max_json_bytes: max_json_bytes as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut all = vec![(
            vars::IMPORT_STORAGE_KEYS,
            "imp1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )];
        all.extend_from_slice(pairs);
        Env::from_pairs(all)
    }

    #[test]
    fn defaults() {
        let c = ImportConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.http.bind.port(), 8083);
        assert_eq!(c.drive.api_base.as_str(), "https://www.googleapis.com/");
        assert_eq!(
            c.dropbox.content_base.as_str(),
            "https://content.dropboxapi.com/"
        );
        assert_eq!(c.pipeline.max_attempts, 6);
        assert!(c.worker_metrics_bind.is_none());
        assert_eq!(c.database_url, "sqlite://data/import.db");
        // The worker needs no seller-token key; the API says which one it needs.
        assert!(c.auth.is_none());
        assert!(c
            .require_auth()
            .unwrap_err()
            .message
            .contains("JWT_HS256_SECRET"));
        let bad = ImportConfig::from_env(&env(&[("JWT_HS256_SECRET", "short")])).unwrap_err();
        assert!(bad.var.contains("JWT_HS256_SECRET"), "{bad}");
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            (vars::GOOGLE_DRIVE_API_BASE, "ftp://x"),
            (vars::IMPORT_WORKER_CONCURRENCY, "0"),
            (vars::IMPORT_MAX_ATTEMPTS, "many"),
            (vars::WORKER_METRICS_BIND, "nowhere"),
            (vars::DROPBOX_APP_KEY, "k"),
        ] {
            let err = ImportConfig::from_env(&env(&[(var, value)])).unwrap_err();
            let expected = if var == vars::DROPBOX_APP_KEY {
                vars::DROPBOX_APP_SECRET
            } else {
                var
            };
            assert_eq!(err.var, expected, "{var}={value}: {err}");
        }
        let err = ImportConfig::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap_err();
        assert_eq!(err.var, vars::IMPORT_STORAGE_KEYS);
    }

    #[test]
    fn dropbox_credentials() {
        let c = ImportConfig::from_env(&env(&[(vars::DROPBOX_ACCESS_TOKEN, "tok")])).unwrap();
        assert!(matches!(c.dropbox.auth, DropboxAuth::AccessToken(ref t) if t == "tok"));
        let c = ImportConfig::from_env(&env(&[
            (vars::DROPBOX_APP_KEY, "k"),
            (vars::DROPBOX_APP_SECRET, "s"),
        ]))
        .unwrap();
        assert!(matches!(c.dropbox.auth, DropboxAuth::App { .. }));
    }
}
