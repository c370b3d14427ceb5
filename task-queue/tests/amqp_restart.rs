//! RabbitMQ only: the broker restarts in the middle of a run and nothing is lost.
//!
//! Its own test binary, so that it never runs while other tests of this crate use the
//! broker (cargo runs test binaries one after another). Needs `VITRINE_TEST_AMQP_URL` and
//! `VITRINE_TEST_AMQP_CTL` (rabbitmqctl for the test node; `scripts/backends.sh start amqp`
//! sets both).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{amqp_config, assert_loopback, eventually, unique_name};
use service_kit::testing::{backend_env, TEST_AMQP_URL};
use task_queue::amqp::AmqpQueue;
use task_queue::{NewTask, Outcome, TaskQueue, Worker};
use tokio_util::sync::CancellationToken;

const TOTAL: u32 = 3000;

async fn ctl(ctl: &str, command: &str) {
    let status = tokio::process::Command::new(ctl)
        .arg(command)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success(), "{ctl} {command} failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_run_loses_nothing() {
    let Some(url) = backend_env(TEST_AMQP_URL, "a_broker_restart_mid_run_loses_nothing") else {
        return;
    };
    let Some(ctl_path) = backend_env(
        "VITRINE_TEST_AMQP_CTL",
        "a_broker_restart_mid_run_loses_nothing",
    ) else {
        return;
    };
    assert_loopback(&url);
    let mut config = amqp_config();
    config.max_attempts = 100; // a restart redelivers: that must not dead-letter anything
    let queue = Arc::new(AmqpQueue::connect(&url, config).await.unwrap());
    let name = unique_name("restart");
    queue.declare(&name).await.unwrap();

    // Consumers run throughout, slower than the producer, so that a backlog exists and
    // tasks are in hand (their acks then fail) when the broker stops.
    let seen: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (seen, handled) = (seen.clone(), handled.clone());
        let w = Worker::new(queue.clone(), name.clone())
            .concurrency(4)
            .prefetch(16);
        workers.push(tokio::spawn(w.run(stop.clone(), move |n: u32, _| {
            let (seen, handled) = (seen.clone(), handled.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                seen.lock().unwrap().insert(n);
                handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Outcome::Done
            }
        })));
    }

    // A producer enqueues in batches of 100 before, during and after the restart.
    let producer = {
        let (queue, name) = (queue.clone(), name.clone());
        tokio::spawn(async move {
            for start in (0..TOTAL).step_by(100) {
                let batch: Vec<NewTask> = (start..start + 100)
                    .map(|n| NewTask::new(&name, &n).unwrap())
                    .collect();
                // Ok means confirmed by the broker: it must then survive the restart.
                queue.enqueue_batch(batch).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let s = seen.clone();
    eventually(
        "some work done before the restart",
        Duration::from_secs(30),
        || {
            let n = s.lock().unwrap().len();
            async move { n >= 300 }
        },
    )
    .await;
    assert!(
        !producer.is_finished(),
        "the restart must come while tasks are still being enqueued"
    );
    let t0 = Instant::now();
    ctl(&ctl_path, "stop_app").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctl(&ctl_path, "start_app").await;
    eprintln!("broker restarted in {:?}", t0.elapsed());

    tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .expect("producer stuck")
        .unwrap();
    let s = seen.clone();
    eventually(
        "every task handled after the restart",
        Duration::from_secs(60),
        || {
            let n = s.lock().unwrap().len();
            async move { n >= TOTAL as usize }
        },
    )
    .await;
    // Tasks whose ack the restart lost come back as redeliveries, and some may still be
    // queued or prefetched when the last distinct task is seen. Stopping the workers
    // then would leave them queued, so wait until the queue is empty and no handling
    // has happened for a while (a prefetched task takes about 10 ms).
    let (q, n, h) = (queue.clone(), name.clone(), handled.clone());
    let mut last = (u64::MAX, Instant::now());
    eventually("redeliveries handled", Duration::from_secs(30), move || {
        let now = h.load(std::sync::atomic::Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        let quiet = last.1.elapsed() >= Duration::from_millis(500);
        let (q, n) = (q.clone(), n.clone());
        async move { quiet && q.stats(&n).await.unwrap().ready == 0 }
    })
    .await;
    stop.cancel();
    for w in workers {
        let report = w.await.unwrap().unwrap();
        assert_eq!(report.dead, 0, "{report:?}");
    }
    let missing: Vec<u32> = (0..TOTAL)
        .filter(|n| !seen.lock().unwrap().contains(n))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let handled = handled.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{TOTAL} tasks, {handled} handlings ({} redone after the restart)",
        handled - u64::from(TOTAL)
    );
    let q = queue.clone();
    let n = name.clone();
    eventually("queue empty", Duration::from_secs(20), || {
        let (q, n) = (q.clone(), n.clone());
        async move {
            let s = q.stats(&n).await.unwrap();
            s.ready == 0 && s.dead == 0
        }
    })
    .await;
    queue.delete_queue(&name).await.unwrap();
    queue.close().await;
}
