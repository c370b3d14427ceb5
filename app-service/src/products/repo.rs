//! Products in SQL (SQLite or PostgreSQL through `sqlx::AnyPool`, portable SQL).

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use uuid::Uuid;

use audit_events::{Audit, EventType};

use super::model::{NewProduct, Product};

pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub fn migrations() -> service_kit::db::Migrations {
    service_kit::db::Migrations {
        sqlite: &SQLITE_MIGRATIONS,
        postgres: &POSTGRES_MIGRATIONS,
    }
}

const COLUMNS: &str =
    "id, seller_id, name, description, price_minor, currency, image_id, request_hash, created_at";

/// A product row and the digest of the request that created it.
#[derive(Debug, Clone)]
pub struct StoredProduct {
    pub product: Product,
    pub request_hash: Option<String>,
}

fn from_row(row: &AnyRow) -> Result<StoredProduct, sqlx::Error> {
    let decode = |column: &str, e: String| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.into(),
    };
    let id: String = row.try_get("id")?;
    let image_id: String = row.try_get("image_id")?;
    let created_ms: i64 = row.try_get("created_at")?;
    Ok(StoredProduct {
        product: Product {
            id: Uuid::parse_str(&id).map_err(|e| decode("id", e.to_string()))?,
            seller_id: row.try_get("seller_id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            price_minor: row.try_get("price_minor")?,
            currency: row.try_get("currency")?,
            image_id: Uuid::parse_str(&image_id).map_err(|e| decode("image_id", e.to_string()))?,
            image_url: None,
            created_at: DateTime::<Utc>::from_timestamp_millis(created_ms)
                .ok_or_else(|| decode("created_at", format!("{created_ms} is out of range")))?,
        },
        request_hash: row.try_get("request_hash")?,
    })
}

#[derive(Clone, Debug)]
pub struct ProductRepo {
    pool: AnyPool,
}

impl ProductRepo {
    pub fn new(pool: AnyPool) -> Self {
        ProductRepo { pool }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Inserts a product. A second product with the same seller and idempotency key
    /// fails with a unique violation (see [`service_kit::db::is_unique_violation`]).
    pub async fn insert(
        &self,
        seller_id: &str,
        new: &NewProduct,
        idempotency_key: Option<&str>,
        audit: &Audit,
        request_id: Option<String>,
    ) -> Result<Product, sqlx::Error> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let created_ms = now.timestamp_millis();
        let request_hash = idempotency_key.map(|_| new.request_hash());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO products (id, seller_id, name, description, price_minor, currency, \
             image_id, idempotency_key, request_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.to_string())
        .bind(seller_id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.price_minor)
        .bind(&new.currency)
        .bind(new.image_id.to_string())
        .bind(idempotency_key)
        .bind(request_hash)
        .bind(created_ms)
        .execute(&mut *tx)
        .await?;
        // The product and its audit event commit together.
        let event = audit
            .event(EventType::ProductCreated)
            .seller(seller_id)
            .request(request_id)
            .subject(id.to_string())
            .detail("image_id", new.image_id.to_string());
        audit.record_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(Product {
            id,
            seller_id: seller_id.to_owned(),
            name: new.name.clone(),
            description: new.description.clone(),
            price_minor: new.price_minor,
            currency: new.currency.clone(),
            image_id: new.image_id,
            image_url: None,
            created_at: DateTime::<Utc>::from_timestamp_millis(created_ms).unwrap_or(now),
        })
    }

    /// The product a seller created with `idempotency_key`, if any.
    pub async fn by_idempotency_key(
        &self,
        seller_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<StoredProduct>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM products WHERE seller_id = $1 AND idempotency_key = $2"
        ))
        .bind(seller_id)
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
    }

    /// One of the seller's products (another seller's is `None`).
    pub async fn get(&self, seller_id: &str, id: Uuid) -> Result<Option<Product>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM products WHERE seller_id = $1 AND id = $2"
        ))
        .bind(seller_id)
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(|row| from_row(row).map(|s| s.product))
        .transpose()
    }

    /// Up to `limit` of the seller's products, newest first, older than `before`.
    pub async fn list(
        &self,
        seller_id: &str,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Product>, sqlx::Error> {
        let rows = match before {
            Some(before) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM products WHERE seller_id = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind(seller_id)
                .bind(before.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM products WHERE seller_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(seller_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| from_row(r).map(|s| s.product))
            .collect()
    }

    /// How many products a seller has (tests and metrics).
    pub async fn count(&self, seller_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM products WHERE seller_id = $1")
            .bind(seller_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")
    }
}
