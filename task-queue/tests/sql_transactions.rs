//! SQL backend only: enqueueing and acking inside the caller's transaction, and the reaper.

mod common;

use std::time::Duration;

use common::{sql_config, unique_name};
use service_kit::db::{Database, Dialect};
use service_kit::testing::{backend_env, fresh_postgres_database, TEST_POSTGRES_URL};
use sqlx::Row;
use task_queue::sql::SqlQueue;
use task_queue::{ConsumeOptions, NewTask, QueueError, TaskQueue};

async fn databases(test: &str) -> Vec<(tempfile::TempDir, Database)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let queue = SqlQueue::connect(&url, sql_config()).await.unwrap();
    out.push((
        dir,
        Database {
            pool: queue.pool().clone(),
            dialect: Dialect::Sqlite,
        },
    ));
    if let Some(admin) = backend_env(TEST_POSTGRES_URL, test) {
        let url = fresh_postgres_database(&admin).await;
        let queue = SqlQueue::connect(&url, sql_config()).await.unwrap();
        out.push((
            tempfile::tempdir().unwrap(),
            Database {
                pool: queue.pool().clone(),
                dialect: Dialect::Postgres,
            },
        ));
    }
    out
}

/// A job row and its first task commit together, or neither does.
#[tokio::test]
async fn enqueue_commits_and_rolls_back_with_the_callers_transaction() {
    for (_dir, db) in databases("enqueue_commits_and_rolls_back_with_the_callers_transaction").await
    {
        // The service's own table, in the same database as the queue.
        sqlx::query("CREATE TABLE jobs (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
            .execute(&db.pool)
            .await
            .unwrap();
        let queue = SqlQueue::new(&db, sql_config()).await.unwrap();
        let name = unique_name("in-tx");
        queue.declare(&name).await.unwrap();

        // Rolled back: no job, no task.
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO jobs (id, name) VALUES ($1, $2)")
            .bind(1_i64)
            .bind("rolled back")
            .execute(&mut *tx)
            .await
            .unwrap();
        let report = queue
            .enqueue_in(&mut tx, &[NewTask::new(&name, &1_i64).unwrap()])
            .await
            .unwrap();
        assert_eq!(report.enqueued, 1);
        tx.rollback().await.unwrap();
        assert_eq!(
            queue.stats(&name).await.unwrap().depth(),
            0,
            "{:?}",
            db.dialect
        );

        // Committed: both.
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO jobs (id, name) VALUES ($1, $2)")
            .bind(2_i64)
            .bind("committed")
            .execute(&mut *tx)
            .await
            .unwrap();
        queue
            .enqueue_in(&mut tx, &[NewTask::new(&name, &2_i64).unwrap()])
            .await
            .unwrap();
        let jobs_before: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(jobs_before, 0, "uncommitted job visible");
        tx.commit().await.unwrap();
        assert_eq!(queue.stats(&name).await.unwrap().ready, 1);

        let mut c = queue
            .consume(&name, ConsumeOptions::default())
            .await
            .unwrap();
        let d = c.next().await.unwrap().unwrap();
        assert_eq!(d.json::<i64>().unwrap(), 2);
        d.ack().await.unwrap();

        // An unknown queue fails before anything is written in the caller's transaction.
        let mut tx = db.pool.begin().await.unwrap();
        let err = queue
            .enqueue_in(
                &mut tx,
                &[NewTask::new(&unique_name("nope"), &3_i64).unwrap()],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::UnknownQueue(_)), "{err}");
        tx.commit().await.unwrap();
    }
}

/// A task acked inside the handler's transaction is settled when, and only when, that
/// transaction commits; a dedup key stays taken after it.
#[tokio::test]
async fn ack_commits_and_rolls_back_with_the_handlers_transaction() {
    for (_dir, db) in databases("ack_commits_and_rolls_back_with_the_handlers_transaction").await {
        sqlx::query("CREATE TABLE done_work (id BIGINT PRIMARY KEY)")
            .execute(&db.pool)
            .await
            .unwrap();
        let queue = SqlQueue::new(&db, sql_config()).await.unwrap();
        let name = unique_name("ack-in-tx");
        queue.declare(&name).await.unwrap();
        let task = || {
            NewTask::new(&name, &7_i64)
                .unwrap()
                .dedup_key("seven")
                .unwrap()
        };
        queue.enqueue(task()).await.unwrap();
        let mut c = queue
            .consume(&name, ConsumeOptions::default())
            .await
            .unwrap();
        let d = c.next().await.unwrap().unwrap();
        let lease = d.sql_lease().expect("a SQL delivery has a lease");

        // Rolled back: the task is still in hand, and can be acked later.
        let mut tx = db.pool.begin().await.unwrap();
        assert!(lease.ack_in(&mut tx).await.unwrap(), "{:?}", db.dialect);
        tx.rollback().await.unwrap();
        assert_eq!(queue.stats(&name).await.unwrap().in_flight, Some(1));

        // Committed with the work: settled; the delivery only lets go of it.
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO done_work (id) VALUES ($1)")
            .bind(7_i64)
            .execute(&mut *tx)
            .await
            .unwrap();
        assert!(lease.ack_in(&mut tx).await.unwrap());
        tx.commit().await.unwrap();
        d.acked_in_transaction().await.unwrap();
        let s = queue.stats(&name).await.unwrap();
        assert_eq!((s.depth(), s.dead), (0, 0), "{s:?}");

        // Acked twice (a second delivery's handler with a stale lease): refused.
        let mut tx = db.pool.begin().await.unwrap();
        assert!(!lease.ack_in(&mut tx).await.unwrap());
        tx.commit().await.unwrap();

        // The dedup key stays taken.
        let again = queue.enqueue(task()).await.unwrap();
        assert_eq!((again.enqueued, again.duplicates), (0, 1));
    }
}

/// Two handles on one SQLite file (as an API process and a worker process would have):
/// what one enqueues the other consumes; the queue declared by one is known to the other.
#[tokio::test]
async fn two_handles_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let api = SqlQueue::connect(&url, sql_config()).await.unwrap();
    let worker = SqlQueue::connect(&url, sql_config()).await.unwrap();
    let name = unique_name("shared");
    worker.declare(&name).await.unwrap();
    let batch: Vec<NewTask> = (0..50).map(|n| NewTask::new(&name, &n).unwrap()).collect();
    api.enqueue_batch(batch).await.unwrap();
    let mut c = worker
        .consume(&name, ConsumeOptions::default())
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 50 {
        let d = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.insert(d.json::<u32>().unwrap());
        d.ack().await.unwrap();
    }
    assert_eq!(api.stats(&name).await.unwrap().depth(), 0);
}

/// The reaper returns an expired lease even when no consumer is running.
#[tokio::test]
async fn the_reaper_returns_expired_leases() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("reap.db").display());
    let queue = SqlQueue::connect(&url, sql_config()).await.unwrap();
    let name = unique_name("reap");
    queue.declare(&name).await.unwrap();
    queue
        .enqueue(NewTask::new(&name, &1).unwrap())
        .await
        .unwrap();
    let mut c = queue
        .consume(&name, ConsumeOptions::default())
        .await
        .unwrap();
    std::mem::forget(c.next().await.unwrap().unwrap());
    drop(c);
    assert_eq!(queue.stats(&name).await.unwrap().in_flight, Some(1));
    assert_eq!(queue.reap().await.unwrap(), 0, "reaped a live lease");
    tokio::time::sleep(common::LEASE + Duration::from_millis(100)).await;
    assert_eq!(queue.reap().await.unwrap(), 1);
    let s = queue.stats(&name).await.unwrap();
    assert_eq!((s.ready, s.in_flight), (1, Some(0)));
}
