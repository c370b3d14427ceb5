//! The local outbox: table `audit_outbox` in the publishing service's own database.
//!
//! An event is one row (id, time, JSON body), inserted with the action it records (in
//! the same transaction where there is one). The relay reads rows in id order (UUIDv7:
//! time order), delivers them, and deletes what was delivered. Portable SQL: one
//! statement set for SQLite and PostgreSQL.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::event::AuditEvent;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS audit_outbox (\
     id TEXT PRIMARY KEY, created_ms BIGINT NOT NULL, body TEXT NOT NULL)";

/// Creates the table if it is missing (idempotent; safe from several processes).
pub async fn create_table(pool: &AnyPool) -> Result<(), sqlx::Error> {
    match sqlx::query(CREATE).execute(pool).await {
        Ok(_) => Ok(()),
        // Two PostgreSQL sessions creating it at once: one loses the race on the
        // catalog's unique index, and the table exists.
        Err(e) if table_exists(pool).await => {
            tracing::debug!(error = %e, "audit_outbox created concurrently");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn table_exists(pool: &AnyPool) -> bool {
    sqlx::query("SELECT COUNT(*) AS n FROM audit_outbox")
        .fetch_one(pool)
        .await
        .is_ok()
}

/// Inserts `event` on `conn` (a pooled connection or an open transaction).
pub async fn insert(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), sqlx::Error> {
    let body = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO audit_outbox (id, created_ms, body) VALUES ($1, $2, $3)")
        .bind(event.id.to_string())
        .bind(event.time.timestamp_millis())
        .bind(body)
        .execute(conn)
        .await?;
    Ok(())
}

/// The oldest `limit` events. A row that does not parse is returned as an id alone
/// (`None`) so that the relay can drop it instead of stalling behind it.
pub async fn oldest(
    pool: &AnyPool,
    limit: i64,
) -> Result<Vec<(String, Option<AuditEvent>)>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, body FROM audit_outbox ORDER BY id LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let body: String = row.try_get("body")?;
            Ok((id, serde_json::from_str(&body).ok()))
        })
        .collect()
}

/// Deletes delivered events.
pub async fn delete(pool: &AnyPool, ids: &[String]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for id in ids {
        sqlx::query("DELETE FROM audit_outbox WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Events waiting.
pub async fn len(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM audit_outbox")
        .fetch_one(pool)
        .await?
        .try_get("n")
}
