//! Storage Service configuration, read once from the environment at start-up.
//!
//! Every variable is listed with its default in `.env.example`.

use std::time::Duration;

use service_kit::config::{ConfigError, Env};
use service_kit::http::HttpSettings;
use shared_signing::KeyRing;

use crate::blobs::S3Settings;

/// Environment variable names (one place, used in errors and docs).
pub mod vars {
    pub const BIND: &str = "STORAGE_BIND";
    pub const PUBLIC_URL: &str = "STORAGE_PUBLIC_URL";
    pub const DATABASE_URL: &str = "STORAGE_DATABASE_URL";
    pub const BLOB_STORE: &str = "BLOB_STORE";
    pub const APP_STORAGE_KEYS: &str = "APP_STORAGE_KEYS";
    pub const IMPORT_STORAGE_KEYS: &str = "IMPORT_STORAGE_KEYS";
    pub const URL_SIGNING_KEYS: &str = "URL_SIGNING_KEYS";
    pub const MAX_UPLOAD_BYTES: &str = "MAX_UPLOAD_BYTES";
    pub const MAX_IMAGE_PIXELS: &str = "MAX_IMAGE_PIXELS";
    pub const UPLOAD_URL_TTL_SECS: &str = "UPLOAD_URL_TTL_SECS";
    pub const DOWNLOAD_URL_TTL_SECS: &str = "DOWNLOAD_URL_TTL_SECS";
    pub const BODY_IDLE_TIMEOUT_SECS: &str = "BODY_IDLE_TIMEOUT_SECS";
    pub const S3_ENDPOINT: &str = "S3_ENDPOINT";
    pub const S3_REGION: &str = "S3_REGION";
    pub const S3_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const S3_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    pub const S3_ALLOW_HTTP: &str = "S3_ALLOW_HTTP";
    pub const S3_VIRTUAL_HOSTED_STYLE: &str = "S3_VIRTUAL_HOSTED_STYLE";
}

/// Everything the Storage Service needs to run.
#[derive(Clone)]
pub struct StorageConfig {
    pub http: HttpSettings,
    /// Where audit events go (`AUDIT_URL`, `AUDIT_KEYS`).
    pub audit: audit_events::AuditSettings,
    /// Base URL the browser uses to reach this service (upload and download URLs).
    pub public_url: String,
    pub database_url: String,
    pub blob_store_url: String,
    pub s3: Option<S3Settings>,
    /// Verifies app-service requests and the upload metadata it signs.
    pub app_keys: KeyRing,
    /// Verifies import-worker requests.
    pub import_keys: KeyRing,
    /// Signs upload and download URL tokens; held by this service only.
    pub url_keys: KeyRing,
    pub max_upload_bytes: u64,
    pub max_image_pixels: u64,
    pub upload_url_ttl: Duration,
    pub download_url_ttl: Duration,
    /// A body that sends nothing for this long is abandoned.
    pub body_idle_timeout: Duration,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("bind", &self.http.bind)
            .field("public_url", &self.public_url)
            .field("blob_store_url", &self.blob_store_url)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_image_pixels", &self.max_image_pixels)
            .finish_non_exhaustive()
    }
}

const KEY_HINT: &str = "a key ring like `k1:<base64 of 32+ random bytes>`, e.g. k1:$(head -c 32 /dev/urandom | base64)";

fn key_ring(env: &Env, var: &str) -> Result<KeyRing, ConfigError> {
    let raw = env.required(var, KEY_HINT)?;
    KeyRing::parse(&raw).map_err(|e| ConfigError::new(var, e.to_string()))
}

impl StorageConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let http = HttpSettings::from_env(env, vars::BIND, "127.0.0.1:8082")?;
        let public_url = env
            .string_or(vars::PUBLIC_URL, &format!("http://{}", http.bind))
            .trim_end_matches('/')
            .to_owned();
        url::Url::parse(&public_url).map_err(|e| {
            ConfigError::new(
                vars::PUBLIC_URL,
                format!("`{public_url}` is not a URL: {e}"),
            )
        })?;
        let blob_store_url = env.string_or(vars::BLOB_STORE, "file://data/blobs");
        let s3 = if let Some(rest) = blob_store_url.strip_prefix("s3://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((b, p)) if !p.trim_matches('/').is_empty() => {
                    (b.to_owned(), Some(p.trim_matches('/').to_owned()))
                }
                Some((b, _)) => (b.to_owned(), None),
                None => (rest.to_owned(), None),
            };
            if bucket.is_empty() {
                return Err(ConfigError::new(
                    vars::BLOB_STORE,
                    "s3:// needs a bucket name",
                ));
            }
            Some(S3Settings {
                bucket,
                prefix,
                endpoint: env.get(vars::S3_ENDPOINT),
                region: env.string_or(vars::S3_REGION, "us-east-1"),
                access_key_id: env.get(vars::S3_ACCESS_KEY_ID),
                secret_access_key: env.get(vars::S3_SECRET_ACCESS_KEY),
                allow_http: env.bool_or(vars::S3_ALLOW_HTTP, false)?,
                virtual_hosted_style: env.bool_or(vars::S3_VIRTUAL_HOSTED_STYLE, false)?,
            })
        } else {
            None
        };
        let app_keys = key_ring(env, vars::APP_STORAGE_KEYS)?;
        let import_keys = key_ring(env, vars::IMPORT_STORAGE_KEYS)?;
        let url_keys = key_ring(env, vars::URL_SIGNING_KEYS)?;
        for kid in app_keys.key_ids() {
            if import_keys.key_ids().any(|other| other == kid) {
                return Err(ConfigError::new(
                    vars::IMPORT_STORAGE_KEYS,
                    format!("key id `{kid}` is also used in {}; key ids must differ so each caller is known by its key", vars::APP_STORAGE_KEYS),
                ));
            }
        }
        let max_upload_bytes = env.bytes_or(vars::MAX_UPLOAD_BYTES, 50 << 20)?;
        if max_upload_bytes == 0 {
            return Err(ConfigError::new(vars::MAX_UPLOAD_BYTES, "must be positive"));
        }
        let max_image_pixels = env.parse_or(vars::MAX_IMAGE_PIXELS, 100_000_000u64)?;
        Ok(StorageConfig {
            public_url,
            database_url: env.string_or(vars::DATABASE_URL, "sqlite://data/storage.db"),
            blob_store_url,
            s3,
            app_keys,
            import_keys,
            url_keys,
            max_upload_bytes,
            max_image_pixels,
            upload_url_ttl: env.seconds_or(
                vars::UPLOAD_URL_TTL_SECS,
                Duration::from_secs(900),
                Duration::from_secs(10),
                Duration::from_secs(6 * 3600),
            )?,
            download_url_ttl: env.seconds_or(
                vars::DOWNLOAD_URL_TTL_SECS,
                Duration::from_secs(300),
                Duration::from_secs(10),
                Duration::from_secs(6 * 3600),
            )?,
            body_idle_timeout: env.seconds_or(
                vars::BODY_IDLE_TIMEOUT_SECS,
                Duration::from_secs(30),
                Duration::from_secs(1),
                Duration::from_secs(600),
            )?,
            audit: audit_events::AuditSettings::from_env(env)?,
            http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(kid: &str) -> String {
        KeyRing::generate(shared_signing::KeyId::new(kid).unwrap()).to_env_value()
    }

    fn base() -> Vec<(&'static str, String)> {
        vec![
            (vars::APP_STORAGE_KEYS, ring("app1")),
            (vars::IMPORT_STORAGE_KEYS, ring("imp1")),
            (vars::URL_SIGNING_KEYS, ring("url1")),
        ]
    }

    #[test]
    fn defaults_are_the_embedded_stack() {
        let config = StorageConfig::from_env(&Env::from_pairs(base())).unwrap();
        assert_eq!(config.database_url, "sqlite://data/storage.db");
        assert_eq!(config.blob_store_url, "file://data/blobs");
        assert_eq!(config.public_url, "http://127.0.0.1:8082");
        assert_eq!(config.max_image_pixels, 100_000_000);
        assert!(config.s3.is_none());
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            (vars::APP_STORAGE_KEYS, "k1:c2hvcnQ="),
            (vars::URL_SIGNING_KEYS, ""),
            (vars::MAX_UPLOAD_BYTES, "lots"),
            (vars::BIND, "localhost"),
            (vars::UPLOAD_URL_TTL_SECS, "999999"),
            (vars::PUBLIC_URL, "not a url"),
            (vars::BLOB_STORE, "s3://"),
        ] {
            let mut pairs = base();
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value.to_owned()));
            let err = StorageConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            assert!(
                !err.to_string().contains("c2hvcnQ"),
                "secret material in {err}"
            );
        }
    }

    #[test]
    fn app_and_import_key_ids_must_differ() {
        let mut pairs = base();
        pairs.retain(|(k, _)| *k != vars::IMPORT_STORAGE_KEYS);
        pairs.push((vars::IMPORT_STORAGE_KEYS, ring("app1")));
        let err = StorageConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
        assert_eq!(err.var, vars::IMPORT_STORAGE_KEYS);
    }

    #[test]
    fn s3_urls_split_bucket_and_prefix() {
        let mut pairs = base();
        pairs.push((vars::BLOB_STORE, "s3://bucket/some/prefix/".into()));
        pairs.push((vars::S3_ENDPOINT, "http://127.0.0.1:3900".into()));
        let config = StorageConfig::from_env(&Env::from_pairs(pairs)).unwrap();
        let s3 = config.s3.unwrap();
        assert_eq!(s3.bucket, "bucket");
        assert_eq!(s3.prefix.as_deref(), Some("some/prefix"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
    }
}
