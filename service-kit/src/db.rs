//! SQL pools for SQLite (embedded default) and PostgreSQL (scale-out), one code path.
//!
//! Services use `sqlx::AnyPool` with portable SQL (`$1` placeholders work on both) and
//! keep one migration directory per dialect. SQLite files get WAL, a busy timeout and
//! foreign keys, so several processes can share one file. A service's writes may go
//! through a [`Writer`]: on SQLite one connection of their own, on PostgreSQL the pool.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Executor};

use crate::config::ConfigError;
use crate::health::ReadinessCheck;

/// Which SQL engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn of_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    /// Placeholder `n` (1-based) of a statement whose parameters are bound in order:
    /// `$n` on PostgreSQL, a plain `?` on SQLite. To SQLite, `$n` is a *named* parameter,
    /// found by a linear scan when the statement is parsed and again when sqlx binds it
    /// (it asks every parameter's name), so a many-row `INSERT` written with `$n` costs
    /// time quadratic in its number of parameters.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => "?".to_owned(),
        }
    }
}

/// The migrations of one service, per dialect.
#[derive(Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// A connected, migrated database.
#[derive(Clone, Debug)]
pub struct Database {
    pub pool: AnyPool,
    pub dialect: Dialect,
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// PostgreSQL: connections per pool.
    pub max_connections: u32,
    /// SQLite: connections per pool. Each is a thread of its own, and each drops its
    /// page cache when another has written; with 16, `GET /images` at 500 pages/s had
    /// a p99 of 400–641 ms on a slow host, with 4 it had 28–143 ms, for the same CPU
    /// (`docs/reliability.md`, *Findings*). SQLite runs one writer at a time anyway.
    pub sqlite_max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite: `PRAGMA wal_autocheckpoint` of every connection, in pages (SQLite's
    /// default, 1000, is about 4 MiB of WAL). A commit that takes the WAL past it runs
    /// the checkpoint itself, fsyncs included. A service that checkpoints on its own
    /// (off its request path) raises it; 0 turns it off.
    pub sqlite_wal_autocheckpoint: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            sqlite_max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
            sqlite_wal_autocheckpoint: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the directory for the SQLite file {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Database {
    /// Connects to `url` (from variable `var`, named in errors) and runs the migrations.
    pub async fn connect(
        var: &str,
        url: &str,
        migrations: Migrations,
        settings: &PoolSettings,
    ) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url).ok_or_else(|| {
            ConfigError::new(
                var,
                "must start with sqlite:// (e.g. sqlite://data/app.db) or postgres://",
            )
        })?;
        let url = match dialect {
            Dialect::Sqlite => prepare_sqlite_url(url)?,
            Dialect::Postgres => url.to_owned(),
        };
        let options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()
            .map_err(|e| ConfigError::new(var, format!("invalid database URL: {e}")))?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let max_connections = match dialect {
            Dialect::Sqlite => settings.sqlite_max_connections,
            Dialect::Postgres => settings.max_connections,
        };
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.acquire_timeout);
        if dialect == Dialect::Sqlite {
            // A SQLite "connection" is a file handle on a worker thread: it cannot go
            // stale the way a network connection can, and sqlx's ping before every
            // acquire is one more round trip to that thread per query (measured in
            // docs/benchmarks.md, `POST /uploads`).
            pool_options = pool_options.test_before_acquire(false);
            let pragmas = format!(
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA wal_autocheckpoint = {};",
                settings.sqlite_wal_autocheckpoint
            );
            pool_options = pool_options.after_connect(move |conn, _meta| {
                let pragmas = pragmas.clone();
                Box::pin(async move {
                    conn.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        let migrator = match dialect {
            Dialect::Sqlite => migrations.sqlite,
            Dialect::Postgres => migrations.postgres,
        };
        migrator.run(&pool).await?;
        Ok(Database { pool, dialect })
    }
}

/// Where a service's writes go.
///
/// SQLite lets one connection write at a time. Writes from several pooled connections
/// queue inside SQLite: the losers sleep in its busy handler, each write finds the
/// others' changes and drops its page cache, and sqlx pings every connection on its
/// way back to the pool (one more round trip to the connection's thread; it cannot be
/// turned off). On SQLite a `Writer` is therefore one connection of its own, taken
/// out of the pool at start-up, that writes wait for in turn (a fair lock): its cache
/// stays warm and nothing pings it. Reads stay on the pool; in WAL mode they never
/// wait for the writer. On PostgreSQL, which runs writes concurrently, a `Writer`
/// hands out pooled connections.
///
/// Hold a [`WriteConnection`] for one statement or one transaction, not across other
/// awaits: every other write waits for it. A write abandoned half-way (its future
/// dropped) is safe: the connection runs its commands in order, and sqlx queues a
/// dropped transaction's rollback ahead of the next one.
#[derive(Clone, Debug)]
pub struct Writer {
    pool: AnyPool,
    sqlite: Option<Arc<tokio::sync::Mutex<AnyConnection>>>,
}

/// A connection to write with, from [`Writer::acquire`]; it derefs to the connection.
pub enum WriteConnection<'a> {
    /// SQLite: the writer's own connection, held until this is dropped.
    Sqlite(tokio::sync::MutexGuard<'a, AnyConnection>),
    /// PostgreSQL: a pooled connection.
    Pooled(PoolConnection<Any>),
}

impl Writer {
    /// On SQLite, takes one connection out of the database's pool for the writes (the
    /// pool opens another in its place); on PostgreSQL, writes use the pool.
    pub async fn open(db: &Database) -> Result<Writer, DbError> {
        let sqlite = match db.dialect {
            Dialect::Sqlite => {
                let conn = db.pool.acquire().await.map_err(DbError::Connect)?.detach();
                Some(Arc::new(tokio::sync::Mutex::new(conn)))
            }
            Dialect::Postgres => None,
        };
        Ok(Writer {
            pool: db.pool.clone(),
            sqlite,
        })
    }

    /// A connection to write with; on SQLite, waits for the writes before it.
    ///
    /// Waiting is bounded by the pool's acquire timeout on both engines, and ends in
    /// [`sqlx::Error::PoolTimedOut`] (which [`is_unavailable`]).
    pub async fn acquire(&self) -> Result<WriteConnection<'_>, sqlx::Error> {
        match &self.sqlite {
            Some(conn) => {
                let limit = self.pool.options().get_acquire_timeout();
                match tokio::time::timeout(limit, conn.lock()).await {
                    Ok(guard) => Ok(WriteConnection::Sqlite(guard)),
                    Err(_) => Err(sqlx::Error::PoolTimedOut),
                }
            }
            None => Ok(WriteConnection::Pooled(self.pool.acquire().await?)),
        }
    }
}

impl Deref for WriteConnection<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            WriteConnection::Sqlite(conn) => conn,
            WriteConnection::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for WriteConnection<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteConnection::Sqlite(conn) => conn,
            WriteConnection::Pooled(conn) => conn,
        }
    }
}

/// Adds `mode=rwc` (create if missing) and creates the parent directory.
fn prepare_sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| DbError::CreateDir {
                    path: path.to_owned(),
                    source,
                })?;
            }
        }
    }
    let mut out = format!("sqlite://{path}");
    match query {
        Some(q) if q.contains("mode=") => out.push_str(&format!("?{q}")),
        Some(q) => out.push_str(&format!("?{q}&mode=rwc")),
        None => out.push_str("?mode=rwc"),
    }
    Ok(out)
}

/// Readiness check: the database answers `SELECT 1`.
pub struct DatabaseCheck(pub AnyPool);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.0)
            .await
            .map(|_| ())
            .map_err(|e| format!("database unreachable: {}", short_error(&e)))
    }
}

/// A one-line description of a database error without connection details.
pub fn short_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_owned(),
        sqlx::Error::Io(io) => format!("i/o error: {}", io.kind()),
        sqlx::Error::Database(db) => format!("database error {}", db.code().unwrap_or_default()),
        other => other.to_string(),
    }
}

/// Whether a database error means "unavailable for now, retry": no connection could be
/// had (pool timeout or closed, I/O) or the database is [busy](is_busy). Services answer
/// these with a retryable `503 database-unavailable`, every other error with a 500.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    ) || is_busy(e)
}

/// Whether a database error is contention that passes: SQLite's write lock still held
/// when the busy timeout ran out (`SQLITE_BUSY`/`SQLITE_LOCKED` and their extended codes,
/// for example while a checkpoint's `fsync` waits on a saturated disk), or PostgreSQL's
/// lock timeout, deadlock or serialization failure. Callers answer these with a retryable
/// 503, not a 500.
pub fn is_busy(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        return matches!(primary, Some(5 | 6));
    }
    matches!(db.code().as_deref(), Some("55P03" | "40P01" | "40001"))
}

/// Whether a database error means "already exists" (unique or primary key violation).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
                || db.code().as_deref() == Some("23505")
                || db.code().as_deref() == Some("2067")
                || db.code().as_deref() == Some("1555")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/app.db");
        let url = prepare_sqlite_url(&format!("sqlite://{}", path.display())).unwrap();
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(path.parent().unwrap().is_dir());
        let keep = prepare_sqlite_url("sqlite://x.db?mode=ro").unwrap();
        assert_eq!(keep, "sqlite://x.db?mode=ro");
    }

    /// A write while another connection holds SQLite's write lock past the busy timeout
    /// is "busy"; other database errors are not.
    #[tokio::test]
    async fn a_held_sqlite_write_lock_is_busy() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display());
        let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&mut holder)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut other = sqlx::SqliteConnection::connect_with(
            &options.busy_timeout(std::time::Duration::from_millis(50)),
        )
        .await
        .unwrap();
        let blocked = sqlx::query("INSERT INTO t (id) VALUES (1)")
            .execute(&mut other)
            .await
            .unwrap_err();
        assert!(is_busy(&blocked), "{blocked}");
        assert!(is_unavailable(&blocked), "{blocked}");
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        let missing = sqlx::query("INSERT INTO nope (id) VALUES (1)")
            .execute(&mut other)
            .await
            .unwrap_err();
        assert!(!is_busy(&missing), "{missing}");
        assert!(!is_unavailable(&missing), "{missing}");
        assert!(!is_busy(&sqlx::Error::RowNotFound));
    }

    /// A SQLite database with no migrations, in `dir`, whose pool waits at most 200 ms.
    async fn scratch_sqlite(dir: &std::path::Path) -> Database {
        static NO_MIGRATIONS: Migrator = Migrator::DEFAULT;
        let settings = PoolSettings {
            acquire_timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        };
        let url = format!("sqlite://{}", dir.join("writer.db").display());
        let migrations = Migrations {
            sqlite: &NO_MIGRATIONS,
            postgres: &NO_MIGRATIONS,
        };
        Database::connect("TEST_DATABASE_URL", &url, migrations, &settings)
            .await
            .unwrap()
    }

    /// The ids in table `t`, read through the pool.
    async fn ids(db: &Database) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM t ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap()
    }

    /// Concurrent writes through a SQLite writer all land, one after another, and the
    /// pool reads them; a writer held past the acquire timeout makes the next write
    /// unavailable (a 503), not stuck.
    #[tokio::test]
    async fn sqlite_writes_take_turns_on_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_sqlite(dir.path()).await;
        let writer = Writer::open(&db).await.unwrap();
        let mut conn = writer.acquire().await.unwrap();
        assert!(matches!(conn, WriteConnection::Sqlite(_)));
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        drop(conn);
        let writes = (0..64).map(|id| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut conn = writer.acquire().await?;
                sqlx::query("INSERT INTO t (id) VALUES ($1)")
                    .bind(id)
                    .execute(&mut *conn)
                    .await
            })
        });
        for write in futures::future::join_all(writes).await {
            write.unwrap().unwrap();
        }
        assert_eq!(ids(&db).await, (0..64).collect::<Vec<i64>>());

        let held = writer.acquire().await.unwrap();
        let waited = writer.acquire().await.map(|_| ()).unwrap_err();
        assert!(matches!(waited, sqlx::Error::PoolTimedOut), "{waited}");
        assert!(is_unavailable(&waited));
        drop(held);
        writer.acquire().await.unwrap();
    }

    /// A write transaction dropped half-way leaves nothing behind, and the writer's next
    /// write is not inside it.
    #[tokio::test]
    async fn an_abandoned_write_transaction_is_rolled_back() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_sqlite(dir.path()).await;
        let writer = Writer::open(&db).await.unwrap();
        writer
            .acquire()
            .await
            .unwrap()
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        {
            let mut conn = writer.acquire().await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("INSERT INTO t (id) VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let mut conn = writer.acquire().await.unwrap();
        sqlx::query("INSERT INTO t (id) VALUES (2)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        assert_eq!(ids(&db).await, [2]);
    }

    #[test]
    fn placeholders() {
        assert_eq!(Dialect::Postgres.placeholder(12), "$12");
        assert_eq!(Dialect::Sqlite.placeholder(12), "?");
    }

    #[test]
    fn dialects() {
        assert_eq!(Dialect::of_url("sqlite://a.db"), Some(Dialect::Sqlite));
        assert_eq!(
            Dialect::of_url("postgres://u@h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::of_url("mysql://u@h/db"), None);
    }
}
