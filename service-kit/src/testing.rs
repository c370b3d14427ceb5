//! Helpers for tests that need a real backend (PostgreSQL, S3, RabbitMQ).
//!
//! A test asks for its backend with [`backend_env`]. When the variable is unset the
//! test prints that it skipped and returns early; when `VITRINE_REQUIRE_BACKENDS=1`
//! (as CI sets it) a missing backend is a failure instead.

pub mod proxy;

pub use proxy::TcpProxy;

/// Variable that turns a skipped backend test into a failure.
pub const REQUIRE_BACKENDS: &str = "VITRINE_REQUIRE_BACKENDS";

/// PostgreSQL server URL whose user may create databases; each test makes its own.
pub const TEST_POSTGRES_URL: &str = "VITRINE_TEST_POSTGRES_URL";

/// RabbitMQ URL for tests (`amqp://guest:guest@127.0.0.1:55672/%2f`); tests use unique queue names.
pub const TEST_AMQP_URL: &str = "VITRINE_TEST_AMQP_URL";

/// S3-compatible endpoint for tests (`http://127.0.0.1:3900`), with the variables below.
pub const TEST_S3_ENDPOINT: &str = "VITRINE_TEST_S3_ENDPOINT";
pub const TEST_S3_BUCKET: &str = "VITRINE_TEST_S3_BUCKET";
pub const TEST_S3_ACCESS_KEY_ID: &str = "VITRINE_TEST_S3_ACCESS_KEY_ID";
pub const TEST_S3_SECRET_ACCESS_KEY: &str = "VITRINE_TEST_S3_SECRET_ACCESS_KEY";
pub const TEST_S3_REGION: &str = "VITRINE_TEST_S3_REGION";

/// Whether backend tests must run (CI) rather than skip.
pub fn backends_required() -> bool {
    matches!(
        std::env::var(REQUIRE_BACKENDS).as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// Returns the value of `var`, or `None` after printing a skip notice.
///
/// # Panics
/// When the variable is unset and [`backends_required`] is true.
pub fn backend_env(var: &str, test_name: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            if backends_required() {
                panic!(
                    "{test_name}: {var} is not set and {REQUIRE_BACKENDS}=1 requires this backend"
                );
            }
            eprintln!("SKIPPED {test_name}: set {var} to run it against a real server");
            None
        }
    }
}

/// Creates an empty PostgreSQL database for one test and returns its URL.
///
/// `admin_url` is a server URL whose user may `CREATE DATABASE` (see [`TEST_POSTGRES_URL`]).
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let name = format!("vitrine_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {TEST_POSTGRES_URL}: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = conn.close().await;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let server = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}
