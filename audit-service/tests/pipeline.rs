//! The outbox → relay → audit service → store path in one process, on SQLite always and
//! on PostgreSQL when `VITRINE_TEST_POSTGRES_URL` is set: the publisher's outbox and the
//! audit service's own database on the same engine.

use std::time::{Duration, Instant};

use audit_events::{Audit, AuditEvent, AuditSettings, AuditSink, CancellationToken, EventType};
use audit_service::store::{Filter, Store};
use service_kit::db::{Database, PoolSettings};
use service_kit::Env;
use shared_signing::{KeyId, KeyRing};

fn ring(kid: &str) -> KeyRing {
    KeyRing::generate(KeyId::new(kid).expect("kid"))
}

/// A database URL of the engine under test, fresh for each call.
async fn fresh_url(engine: &str, dir: &std::path::Path, name: &str) -> Option<String> {
    match engine {
        "sqlite" => Some(format!(
            "sqlite://{}",
            dir.join(format!("{name}.db")).display()
        )),
        _ => {
            let admin = service_kit::testing::backend_env(
                service_kit::testing::TEST_POSTGRES_URL,
                "audit pipeline on PostgreSQL",
            )?;
            Some(service_kit::testing::fresh_postgres_database(&admin).await)
        }
    }
}

/// Starts the audit service in this process on a loopback port (HTTP ingest only).
async fn serve_audit(database_url: String, keys: &KeyRing) -> (String, Store) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let env = Env::from_pairs([
        ("AUDIT_BIND", addr.to_string()),
        ("AUDIT_DATABASE_URL", database_url),
        ("AUDIT_KEYS", keys.to_env_value()),
        ("AUDIT_ADMIN_KEYS", ring("admin1").to_env_value()),
    ]);
    let config = audit_service::config::AuditConfig::from_env(&env).expect("config");
    let state = audit_service::build_state(config).await.expect("state");
    let store = state.store.clone();
    let router = audit_service::router(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), store)
}

async fn wait_stored(store: &Store, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.count().await.expect("count") < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} events stored after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox_to_store(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(service_db) = fresh_url(engine, dir.path(), "service").await else {
        return;
    };
    let audit_db = fresh_url(engine, dir.path(), "audit").await.expect("url");
    let keys = ring("audit1");
    let (url, store) = serve_audit(audit_db, &keys).await;

    // A publisher with its outbox in "its own" database.
    let db = Database::connect(
        "SERVICE_DATABASE_URL",
        &service_db,
        audit_service::store::migrations(),
        &PoolSettings::default(),
    )
    .await
    .expect("service db");
    let settings = AuditSettings {
        sink: AuditSink::Http(url.parse().expect("url")),
        keys: Some(keys),
    };
    let audit = Audit::open("test-service", settings, &db.pool)
        .await
        .expect("open");
    // Opening twice (a second replica) is fine.
    Audit::open("test-service", audit.settings().clone(), &db.pool)
        .await
        .expect("open again");

    // Recorded before the relay runs: they wait.
    for i in 0..150 {
        audit
            .record(
                audit
                    .event(EventType::UploadAccepted)
                    .seller(if i % 2 == 0 { "even" } else { "odd" })
                    .subject(format!("upload-{i}")),
            )
            .await;
    }
    // In a transaction that rolls back: never sent.
    let mut tx = db.pool.begin().await.expect("tx");
    audit
        .record_in(
            &mut tx,
            &audit.event(EventType::ProductCreated).seller("even"),
        )
        .await
        .expect("in tx");
    tx.rollback().await.expect("rollback");
    // In one that commits: sent.
    let mut tx = db.pool.begin().await.expect("tx");
    let committed = audit
        .event(EventType::ProductCreated)
        .seller("even")
        .subject("p1");
    audit.record_in(&mut tx, &committed).await.expect("in tx");
    tx.commit().await.expect("commit");
    // More than one multi-row INSERT's worth at once: all of them, in one transaction.
    let batch: Vec<AuditEvent> = (0..450)
        .map(|i| {
            audit
                .event(EventType::DownloadUrlIssued)
                .seller("batch")
                .detail("n", i.to_string())
        })
        .collect();
    audit.record_all(batch).await;
    assert_eq!(audit.pending().await.expect("pending"), 601);

    let stop = CancellationToken::new();
    let relay = audit.spawn_relay(stop.clone()).expect("a relay");
    wait_stored(&store, 601).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while audit.pending().await.expect("pending") > 0 {
        assert!(Instant::now() < deadline, "the outbox did not empty");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    relay.await.expect("relay stops");

    // The store: filters, order, paging, and ids stored once.
    let even = store
        .query(&Filter {
            seller_id: Some("even".into()),
            limit: 1000,
            ..Filter::default()
        })
        .await
        .expect("query");
    assert_eq!(even.len(), 76);
    let products = store
        .query(&Filter {
            kind: Some("product.created".into()),
            limit: 1000,
            ..Filter::default()
        })
        .await
        .expect("query");
    assert_eq!(products.len(), 1);
    assert_eq!(products[0].1, committed);
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let page = store
            .query(&Filter {
                after: after.clone(),
                limit: 40,
                ..Filter::default()
            })
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        let (time, last) = page.last().expect("last");
        after = Some((*time, last.id.to_string()));
        paged.extend(page.into_iter().map(|(_, e)| e.id));
    }
    assert_eq!(paged.len(), 601);
    let mut sorted = paged.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 601, "a page repeated an event");
    let since = store
        .query(&Filter {
            since_ms: Some(chrono::Utc::now().timestamp_millis() + 60_000),
            limit: 10,
            ..Filter::default()
        })
        .await
        .expect("query");
    assert!(since.is_empty());
    let again: Vec<AuditEvent> = products.into_iter().map(|(_, e)| e).collect();
    assert!(store.insert(&again).await.expect("insert").is_empty());
    assert_eq!(store.count().await.expect("count"), 601);
}

#[tokio::test]
async fn outbox_relay_and_store_on_sqlite() {
    outbox_to_store("sqlite").await;
}

#[tokio::test]
async fn outbox_relay_and_store_on_postgres() {
    outbox_to_store("postgres").await;
}
