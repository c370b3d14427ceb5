//! Stored events: table `audit_events` (SQLite or PostgreSQL, portable SQL), one row
//! per event id.

use audit_events::AuditEvent;
use sqlx::{AnyPool, Row};

pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub fn migrations() -> service_kit::db::Migrations {
    service_kit::db::Migrations {
        sqlite: &SQLITE_MIGRATIONS,
        postgres: &POSTGRES_MIGRATIONS,
    }
}

/// What `GET /audit` asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub seller_id: Option<String>,
    pub kind: Option<String>,
    /// Events at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Events after this `(time_ms, id)` (the previous page's last).
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    pub fn new(pool: AnyPool) -> Self {
        Store { pool }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Stores every event whose id is new, in one transaction; returns those (an id
    /// seen before is skipped: deliveries are at least once).
    pub async fn insert(&self, events: &[AuditEvent]) -> Result<Vec<AuditEvent>, sqlx::Error> {
        let received = chrono::Utc::now().timestamp_millis();
        let mut tx = self.pool.begin().await?;
        let mut new = Vec::new();
        for event in events {
            let body =
                serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            let done = sqlx::query(
                "INSERT INTO audit_events (id, type, time_ms, service, seller_id, request_id, \
                 subject_id, reason, body, received_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(event.id.to_string())
            .bind(event.kind.as_str())
            .bind(event.time.timestamp_millis())
            .bind(&event.service)
            .bind(&event.seller_id)
            .bind(&event.request_id)
            .bind(&event.subject_id)
            .bind(&event.reason)
            .bind(body)
            .bind(received)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                new.push(event.clone());
            }
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Events matching `filter`, oldest first, with their `(time_ms, id)` for paging.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<(i64, AuditEvent)>, sqlx::Error> {
        let mut sql = String::from("SELECT id, time_ms, body FROM audit_events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.seller_id.is_some() {
            sql += &format!(" AND seller_id = {}", next());
        }
        if filter.kind.is_some() {
            sql += &format!(" AND type = {}", next());
        }
        if filter.since_ms.is_some() {
            sql += &format!(" AND time_ms >= {}", next());
        }
        if filter.after.is_some() {
            let (t1, t2, id) = (next(), next(), next());
            sql += &format!(" AND (time_ms > {t1} OR (time_ms = {t2} AND id > {id}))");
        }
        sql += &format!(" ORDER BY time_ms, id LIMIT {}", next());
        let mut query = sqlx::query(&sql);
        if let Some(seller) = &filter.seller_id {
            query = query.bind(seller);
        }
        if let Some(kind) = &filter.kind {
            query = query.bind(kind);
        }
        if let Some(since) = filter.since_ms {
            query = query.bind(since);
        }
        if let Some((time, id)) = &filter.after {
            query = query.bind(*time).bind(*time).bind(id);
        }
        let rows = query.bind(filter.limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                let event = serde_json::from_str(&body).map_err(|e| sqlx::Error::ColumnDecode {
                    index: "body".into(),
                    source: Box::new(e),
                })?;
                Ok((row.try_get("time_ms")?, event))
            })
            .collect()
    }

    /// Rows stored with this id (0 or 1): for tests and checks.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM audit_events")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")
    }
}
