//! The SQL backend's own migration runner (see the crate docs for why not `sqlx::migrate!`).

use std::time::Duration;

use service_kit::db::Dialect;
use sqlx::AnyPool;

use crate::error::{QueueError, Result};
use crate::task::now_ms;

/// `(version, description, SQL)` per dialect, applied in order, each once.
const SQLITE: &[(i64, &str, &str)] = &[(
    1,
    "tasks and queues",
    include_str!("../../migrations/sqlite/0001_tasks.sql"),
)];
const POSTGRES: &[(i64, &str, &str)] = &[(
    1,
    "tasks and queues",
    include_str!("../../migrations/postgres/0001_tasks.sql"),
)];

/// Creates or upgrades the `tq_*` tables. Safe to run from several processes at once:
/// PostgreSQL takes an advisory lock; SQLite serialises writers and we retry when busy.
pub(crate) async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<()> {
    let mut last = None;
    for attempt in 0..6u64 {
        match try_migrate(pool, dialect).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, attempt, "task queue migration attempt failed");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
        }
    }
    Err(QueueError::Migrate(
        last.map(|e| e.to_string()).unwrap_or_default(),
    ))
}

async fn try_migrate(pool: &AnyPool, dialect: Dialect) -> std::result::Result<(), sqlx::Error> {
    let migrations = match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    };
    let mut tx = pool.begin().await?;
    if dialect == Dialect::Postgres {
        // Any constant works; it only has to be the same for every process.
        sqlx::query(
            "SELECT CAST(1 AS BIGINT) FROM (SELECT pg_advisory_xact_lock(7461636851)) AS l",
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS tq_schema_migrations (\
         version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM tq_schema_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for (version, description, sql) in migrations {
        if applied.contains(version) {
            continue;
        }
        // A plain `&str` runs unprepared, so a file of several statements works (and,
        // unlike `raw_sql`, the future stays `Send` for callers that spawn it).
        sqlx::Executor::execute(&mut *tx, *sql).await?;
        sqlx::query(
            "INSERT INTO tq_schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(*version)
        .bind(*description)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tracing::info!(version, description, "task queue: applied migration");
    }
    tx.commit().await
}
