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
    insert_all(conn, std::slice::from_ref(event)).await
}

/// Rows per multi-row `INSERT` (3 parameters each, well under both databases' limits).
pub const ROWS_PER_INSERT: usize = 200;

/// Inserts `events` on `conn` with one statement per [`ROWS_PER_INSERT`] events: a
/// statement per event would hold SQLite's write lock for one round trip to its worker
/// thread per event.
pub async fn insert_all(
    conn: &mut AnyConnection,
    events: &[AuditEvent],
) -> Result<(), sqlx::Error> {
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO audit_outbox (id, created_ms, body) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for event in chunk {
            let body =
                serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            query = query
                .bind(event.id.to_string())
                .bind(event.time.timestamp_millis())
                .bind(body);
        }
        query.execute(&mut *conn).await?;
    }
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
