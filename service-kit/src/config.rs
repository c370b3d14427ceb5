//! Typed configuration from environment variables.
//!
//! Every service reads its settings through [`Env`], so a missing or malformed
//! variable stops start-up with one message that names the variable, what was
//! wrong, and what a valid value looks like.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            var: var.into(),
            message: message.into(),
        }
    }
}

/// A view of the environment. Tests build one from a map instead of mutating the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: Option<HashMap<String, String>>,
    /// Every variable asked for, set or not (see [`Env::recording`]).
    asked: Option<Arc<Mutex<BTreeSet<String>>>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Env::default()
    }

    /// A fixed set of variables (tests, the launcher).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            asked: None,
        }
    }

    /// Like [`Env::from_pairs`], and remembers the name of every variable a
    /// configuration asks for ([`Env::asked`]): how a test tells which of the variables
    /// it was given a service actually reads (e.g. those `docker-compose.yml` passes).
    pub fn recording<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            asked: Some(Arc::default()),
            ..Env::from_pairs(pairs)
        }
    }

    /// The variables asked for so far, when built with [`Env::recording`] (else empty).
    pub fn asked(&self) -> BTreeSet<String> {
        self.asked
            .as_ref()
            .map(|asked| asked.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The raw value, with empty strings treated as unset.
    pub fn get(&self, var: &str) -> Option<String> {
        if let Some(asked) = &self.asked {
            asked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(var.to_owned());
        }
        let value = match &self.overrides {
            Some(map) => map.get(var).cloned(),
            None => std::env::var(var).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// A variable that must be set.
    pub fn required(&self, var: &str, hint: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::new(var, format!("is required ({hint})")))
    }

    /// A string with a default.
    pub fn string_or(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// Any `FromStr` value with a default.
    pub fn parse_or<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<T>()
                .map_err(|e| ConfigError::new(var, format!("cannot parse `{raw}`: {e}"))),
        }
    }

    /// A boolean: `true/false`, `1/0`, `yes/no`, `on/off`.
    pub fn bool_or(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(
                    var,
                    format!("`{raw}` is not a boolean (use true or false)"),
                )),
            },
        }
    }

    /// A duration in whole seconds, bounded to `min..=max`.
    pub fn seconds_or(
        &self,
        var: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse_or(var, default.as_secs())?;
        let value = Duration::from_secs(secs);
        if value < min || value > max {
            return Err(ConfigError::new(
                var,
                format!(
                    "{secs} s is out of range ({} to {} s)",
                    min.as_secs(),
                    max.as_secs()
                ),
            ));
        }
        Ok(value)
    }

    /// A byte size: plain bytes or with a `KiB`/`MiB`/`GiB` suffix.
    pub fn bytes_or(&self, var: &str, default: u64) -> Result<u64, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => parse_byte_size(&raw).ok_or_else(|| {
                ConfigError::new(
                    var,
                    format!("`{raw}` is not a size (e.g. 1048576, 512KiB, 25MiB, 1GiB)"),
                )
            }),
        }
    }

    /// An `http(s)://host[:port][/path]` base URL, kept with a trailing slash so that
    /// relative joins stay under its path.
    pub fn http_url_or(&self, var: &str, default: &str) -> Result<url::Url, ConfigError> {
        let raw = self.string_or(var, default);
        let with_slash = format!("{}/", raw.trim_end_matches('/'));
        url::Url::parse(&with_slash)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::new(var, format!("`{raw}` is not an http(s) URL like {default}"))
            })
    }

    /// A comma-separated list (empty entries dropped).
    pub fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses `1048576`, `512KiB`, `25MiB`, `1GiB` (also `KB/MB/GB` as binary units).
pub fn parse_byte_size(raw: &str) -> Option<u64> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_env_names_every_variable_asked_for_set_or_not() {
        let env = Env::recording([("SET", "1"), ("NEVER_ASKED", "x"), ("BLANK", " ")]);
        assert_eq!(env.parse_or("SET", 0u32).unwrap(), 1);
        assert_eq!(env.string_or("UNSET", "d"), "d");
        assert!(env.bool_or("BLANK", true).unwrap());
        // Clones share the record: a config may pass the Env on to another reader.
        let _ = env.clone().list("VIA_CLONE");
        let asked: Vec<String> = env.asked().into_iter().collect();
        assert_eq!(asked, ["BLANK", "SET", "UNSET", "VIA_CLONE"]);
        assert!(Env::from_pairs([("A", "1")]).asked().is_empty());
    }

    #[test]
    fn parse_errors_name_the_variable() {
        let env = Env::from_pairs([("PORT", "eighty")]);
        let err = env.parse_or::<u16>("PORT", 1).unwrap_err();
        assert_eq!(err.var, "PORT");
        assert!(err.to_string().contains("PORT"), "{err}");
        assert!(err.to_string().contains("eighty"), "{err}");
    }

    #[test]
    fn defaults_apply_to_unset_and_empty() {
        let env = Env::from_pairs([("EMPTY", "  ")]);
        assert_eq!(env.parse_or("EMPTY", 7u32).unwrap(), 7);
        assert_eq!(env.parse_or("UNSET", 8u32).unwrap(), 8);
        assert!(env.required("EMPTY", "a value").is_err());
    }

    #[test]
    fn sizes_and_booleans() {
        assert_eq!(parse_byte_size("25MiB"), Some(25 << 20));
        assert_eq!(parse_byte_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_byte_size("12"), Some(12));
        assert_eq!(parse_byte_size("12 parsecs"), None);
        let env = Env::from_pairs([("A", "yes"), ("B", "maybe")]);
        assert!(env.bool_or("A", false).unwrap());
        assert!(env.bool_or("B", false).is_err());
    }

    #[test]
    fn seconds_are_bounded() {
        let env = Env::from_pairs([("TTL", "100000")]);
        let err = env
            .seconds_or(
                "TTL",
                Duration::from_secs(60),
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )
            .unwrap_err();
        assert!(err.message.contains("out of range"));
    }
}
