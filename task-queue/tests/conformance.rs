//! One conformance suite, run against every backend: SQLite (always), PostgreSQL
//! (`VITRINE_TEST_POSTGRES_URL`) and RabbitMQ (`VITRINE_TEST_AMQP_URL`). Ordering is never
//! assumed. Each test uses its own queue (and, for SQL, its own database).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, stats, Fixture, Kind, MAX_ATTEMPTS};
use task_queue::{
    ConsumeOptions, Consumer, Delivery, NewTask, Outcome, QueueError, QueueName, SharedQueue,
    Worker, WorkerReport,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(f) = super::Fixture::open(super::Kind::Sqlite, stringify!($case)).await {
                    super::cases::$case(f).await;
                }
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(f) = super::Fixture::open(super::Kind::Postgres, stringify!($case)).await {
                    super::cases::$case(f).await;
                }
            })*
        }
        mod amqp {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(f) = super::Fixture::open(super::Kind::Amqp, stringify!($case)).await {
                    super::cases::$case(f).await;
                }
            })*
        }
    };
}

suite!(
    every_task_is_delivered_at_least_once,
    killed_consumer_tasks_are_redelivered,
    killed_child_process_tasks_are_redelivered,
    retry_honours_its_delay_and_counts_attempts,
    not_before_is_honoured,
    dead_letter_path_keeps_the_task_and_counts_it,
    crash_loops_end_in_the_dead_letters,
    a_stale_delivery_cannot_complete_a_redelivered_task,
    concurrent_consumers_complete_each_task_once,
    batch_enqueue_of_10000,
    dedup_keys_skip_duplicates,
    bad_input_is_refused_and_nothing_is_written,
    graceful_shutdown_finishes_in_hand_and_gives_back_the_rest,
);

fn task(q: &QueueName, n: u32) -> NewTask {
    NewTask::new(q, &n).unwrap()
}

async fn take(c: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(WAIT, c.next())
        .await
        .expect("no delivery in time")
        .expect("consumer error")
        .expect("consumer stopped")
}

fn opts(prefetch: u16) -> ConsumeOptions {
    ConsumeOptions {
        prefetch,
        ..ConsumeOptions::default()
    }
}

/// Runs `workers` workers until `distinct` different payloads were handled; returns
/// payload → highest attempt seen, handled count per payload, and the reports.
async fn drain(
    queue: SharedQueue,
    name: &QueueName,
    distinct: usize,
    workers: usize,
    concurrency: usize,
) -> (HashMap<u32, u32>, HashMap<u32, u32>, Vec<WorkerReport>) {
    let attempts: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let handled: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let stop = CancellationToken::new();
    let mut running = Vec::new();
    for _ in 0..workers {
        let (attempts, handled) = (attempts.clone(), handled.clone());
        let worker = Worker::new(queue.clone(), name.clone())
            .concurrency(concurrency)
            .prefetch(32);
        running.push(tokio::spawn(worker.run(
            stop.clone(),
            move |n: u32, info| {
                let (attempts, handled) = (attempts.clone(), handled.clone());
                async move {
                    let mut a = attempts.lock().unwrap();
                    let e = a.entry(n).or_insert(0);
                    *e = (*e).max(info.attempt);
                    *handled.lock().unwrap().entry(n).or_insert(0) += 1;
                    Outcome::Done
                }
            },
        )));
    }
    let seen = attempts.clone();
    eventually(
        &format!("{distinct} distinct tasks handled"),
        Duration::from_secs(60),
        || {
            let n = seen.lock().unwrap().len();
            async move { n >= distinct }
        },
    )
    .await;
    stop.cancel();
    let mut reports = Vec::new();
    for r in running {
        reports.push(r.await.unwrap().unwrap());
    }
    let a = attempts.lock().unwrap().clone();
    let h = handled.lock().unwrap().clone();
    (a, h, reports)
}

async fn assert_empty(f: &Fixture, dead: u64) {
    let (queue, name) = (f.queue.clone(), f.name.clone());
    eventually("queue drained", WAIT, || {
        let (queue, name) = (queue.clone(), name.clone());
        async move {
            let s = stats(queue.as_ref(), &name).await;
            s.ready == 0
                && s.dead == dead
                && s.in_flight.unwrap_or(0) == 0
                && s.scheduled.unwrap_or(0) == 0
        }
    })
    .await;
}

/// The child half of `killed_child_process_tasks_are_redelivered`: does nothing unless
/// started by that test (it is `#[ignore]`d so that a normal run skips it).
#[tokio::test]
#[ignore = "run only as a child process by killed_child_process_tasks_are_redelivered"]
async fn child_consumer_entry() {
    use std::io::Write;
    let (Ok(kind), Ok(url), Ok(queue)) = (
        std::env::var("TQ_CHILD_KIND"),
        std::env::var("TQ_CHILD_URL"),
        std::env::var("TQ_CHILD_QUEUE"),
    ) else {
        return;
    };
    let queue_name = QueueName::new(queue).unwrap();
    let queue: SharedQueue = if kind == "amqp" {
        Arc::new(
            task_queue::amqp::AmqpQueue::connect(&url, common::amqp_config())
                .await
                .unwrap(),
        )
    } else {
        Arc::new(
            task_queue::sql::SqlQueue::connect(&url, common::sql_config())
                .await
                .unwrap(),
        )
    };
    let mut c = queue.consume(&queue_name, opts(3)).await.unwrap();
    let mut taken = Vec::new();
    for _ in 0..3 {
        let d = take(&mut c).await;
        taken.push(d.json::<u32>().unwrap().to_string());
        std::mem::forget(d);
    }
    println!("\nTAKEN {}", taken.join(","));
    std::io::stdout().flush().unwrap();
    // Wait to be killed (SIGKILL): no destructor, no settle, no goodbye to the broker.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

mod cases {
    use super::*;

    pub async fn every_task_is_delivered_at_least_once(f: Fixture) {
        f.queue.enqueue(task(&f.name, 0)).await.unwrap();
        let batch: Vec<NewTask> = (1..200).map(|n| task(&f.name, n)).collect();
        let report = f.queue.enqueue_batch(batch).await.unwrap();
        assert_eq!(report.enqueued, 199);

        let (attempts, _, reports) = drain(f.queue.clone(), &f.name, 200, 2, 4).await;

        assert_eq!(attempts.len(), 200);
        assert!((0..200).all(|n| attempts.contains_key(&n)));
        assert!(reports.iter().all(|r| r.settle_errors == 0 && r.dead == 0));
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    /// A consumer that dies holding tasks (nothing settled, no destructor for its
    /// deliveries): they come back, with attempt 2.
    pub async fn killed_consumer_tasks_are_redelivered(f: Fixture) {
        let batch: Vec<NewTask> = (0..5).map(|n| task(&f.name, n)).collect();
        f.queue.enqueue_batch(batch).await.unwrap();
        let mut c = f.queue.consume(&f.name, opts(3)).await.unwrap();
        let mut taken = Vec::new();
        for _ in 0..3 {
            let d = take(&mut c).await;
            assert_eq!(d.attempt(), 1);
            taken.push(d.json::<u32>().unwrap());
            std::mem::forget(d);
        }
        drop(c); // SQL: heartbeats stop; AMQP: the channel closes

        let started = Instant::now();
        let (attempts, _, _) = drain(f.queue.clone(), &f.name, 5, 1, 2).await;
        for n in 0..5 {
            let expected = if taken.contains(&n) { 2 } else { 1 };
            assert_eq!(attempts[&n], expected, "task {n}");
        }
        if f.kind != Kind::Amqp {
            assert!(
                started.elapsed() >= common::LEASE / 2,
                "redelivered before the lease ran out"
            );
        }
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    /// The same with a real process, SIGKILLed while it holds three tasks.
    pub async fn killed_child_process_tasks_are_redelivered(f: Fixture) {
        use tokio::io::AsyncBufReadExt;
        let batch: Vec<NewTask> = (0..6).map(|n| task(&f.name, n)).collect();
        f.queue.enqueue_batch(batch).await.unwrap();

        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_consumer_entry",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "TQ_CHILD_KIND",
                if f.kind == Kind::Amqp { "amqp" } else { "sql" },
            )
            .env("TQ_CHILD_URL", &f.url)
            .env("TQ_CHILD_QUEUE", f.name.as_str())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let taken: Vec<u32> = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // libtest may print "test child_consumer_entry ... " on the same line.
                if let Some((_, ids)) = line.split_once("TAKEN ") {
                    return ids.split(',').map(|s| s.parse().unwrap()).collect();
                }
            }
            panic!("the child exited without taking tasks");
        })
        .await
        .expect("child did not take its tasks in time");
        child.kill().await.unwrap(); // SIGKILL
        assert_eq!(taken.len(), 3);

        let (attempts, _, _) = drain(f.queue.clone(), &f.name, 6, 1, 2).await;
        for n in 0..6 {
            let expected = if taken.contains(&n) { 2 } else { 1 };
            assert_eq!(attempts[&n], expected, "task {n}");
        }
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    pub async fn retry_honours_its_delay_and_counts_attempts(f: Fixture) {
        f.queue.enqueue(task(&f.name, 7)).await.unwrap();
        let mut c = f.queue.consume(&f.name, opts(1)).await.unwrap();
        let d = take(&mut c).await;
        assert_eq!(d.attempt(), 1);
        let retried_at = Instant::now();
        d.retry(Duration::from_millis(1200), "flaky upstream")
            .await
            .unwrap();

        let d = take(&mut c).await;
        let waited = retried_at.elapsed();
        assert!(
            waited >= Duration::from_millis(1190),
            "retried after {waited:?}"
        );
        assert!(waited < Duration::from_secs(8), "retried after {waited:?}");
        assert_eq!(d.attempt(), 2);
        assert_eq!(d.json::<u32>().unwrap(), 7);
        d.ack().await.unwrap();
        c.close().await.unwrap();
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    pub async fn not_before_is_honoured(f: Fixture) {
        let enqueued_at = Instant::now();
        f.queue
            .enqueue_batch(vec![
                task(&f.name, 1).delay(Duration::from_millis(1500)),
                task(&f.name, 2),
            ])
            .await
            .unwrap();
        let mut c = f.queue.consume(&f.name, opts(4)).await.unwrap();
        let first = take(&mut c).await;
        assert_eq!(
            first.json::<u32>().unwrap(),
            2,
            "the delayed task came first"
        );
        first.ack().await.unwrap();
        let later = take(&mut c).await;
        assert_eq!(later.json::<u32>().unwrap(), 1);
        assert!(enqueued_at.elapsed() >= Duration::from_millis(1490));
        later.ack().await.unwrap();
        c.close().await.unwrap();
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    pub async fn dead_letter_path_keeps_the_task_and_counts_it(f: Fixture) {
        f.queue.enqueue(task(&f.name, 1)).await.unwrap();
        let mut c = f.queue.consume(&f.name, opts(1)).await.unwrap();
        take(&mut c)
            .await
            .dead_letter("permanently bad input")
            .await
            .unwrap();
        c.close().await.unwrap();
        drop(c);
        assert_empty(&f, 1).await;

        // A payload that is not what the worker expects is dead-lettered, not retried.
        f.queue
            .enqueue(NewTask::new(&f.name, "not a number").unwrap())
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let worker = Worker::new(f.queue.clone(), f.name.clone());
        let run = tokio::spawn(worker.run(stop.clone(), |_n: u32, _| async { Outcome::Done }));
        assert_empty(&f, 2).await;
        stop.cancel();
        let report = run.await.unwrap().unwrap();
        assert_eq!((report.dead, report.done), (1, 0));

        if let Some(sql) = &f.sql {
            let dead = sql.dead_letters(&f.name, 10).await.unwrap();
            assert_eq!(dead.len(), 2);
            assert!(dead[0].1.contains("permanently bad input"), "{dead:?}");
            assert!(
                dead[1].1.contains("does not deserialize as u32"),
                "{dead:?}"
            );
            assert_eq!(sql.requeue_dead(&f.name).await.unwrap(), 2);
            assert_eq!(stats(f.queue.as_ref(), &f.name).await.ready, 2);
        }
        f.finish().await;
    }

    pub async fn crash_loops_end_in_the_dead_letters(f: Fixture) {
        f.queue.enqueue(task(&f.name, 3)).await.unwrap();
        let mut c = f.queue.consume(&f.name, opts(1)).await.unwrap();
        for attempt in 1..=MAX_ATTEMPTS {
            let d = take(&mut c).await;
            assert_eq!(d.attempt(), attempt);
            d.retry(Duration::ZERO, "still failing").await.unwrap();
        }
        // Attempt MAX_ATTEMPTS + 1 is dead-lettered by the queue, never handed out.
        let none = tokio::time::timeout(Duration::from_millis(700), c.next()).await;
        assert!(none.is_err(), "a task over max_attempts was delivered");
        assert_empty(&f, 1).await;
        f.finish().await;
    }

    /// A consumer that lost its task (SQL: lease expired; AMQP: channel closed) cannot
    /// settle it after another consumer took it over.
    pub async fn a_stale_delivery_cannot_complete_a_redelivered_task(f: Fixture) {
        f.queue.enqueue(task(&f.name, 9)).await.unwrap();
        let mut first = f.queue.consume(&f.name, opts(1)).await.unwrap();
        let stale = take(&mut first).await;
        drop(first); // stops heartbeats / closes the channel; the delivery lives on

        let mut second = f.queue.consume(&f.name, opts(1)).await.unwrap();
        let fresh = take(&mut second).await;
        assert_eq!(fresh.attempt(), 2);
        let err = stale.ack().await.unwrap_err();
        if f.kind != Kind::Amqp {
            assert!(matches!(err, QueueError::LeaseLost(_)), "{err}");
        }
        fresh.ack().await.unwrap();
        second.close().await.unwrap();
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    /// Several workers race on one queue: every task is completed exactly once.
    pub async fn concurrent_consumers_complete_each_task_once(f: Fixture) {
        let batch: Vec<NewTask> = (0..400).map(|n| task(&f.name, n)).collect();
        f.queue.enqueue_batch(batch).await.unwrap();
        let (_, handled, reports) = drain(f.queue.clone(), &f.name, 400, 4, 4).await;
        let done: u64 = reports.iter().map(|r| r.done).sum();
        assert_eq!(done, 400, "{reports:?}");
        assert!(reports.iter().all(|r| r.settle_errors == 0), "{reports:?}");
        let twice: Vec<_> = handled.iter().filter(|(_, c)| **c > 1).collect();
        assert!(twice.is_empty(), "handled more than once: {twice:?}");
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    pub async fn batch_enqueue_of_10000(f: Fixture) {
        let batch: Vec<NewTask> = (0..10_000).map(|n| task(&f.name, n)).collect();
        let started = Instant::now();
        let report = f.queue.enqueue_batch(batch).await.unwrap();
        eprintln!("{:?}: enqueued 10,000 in {:?}", f.kind, started.elapsed());
        assert_eq!(report.enqueued, 10_000);
        assert_eq!(stats(f.queue.as_ref(), &f.name).await.depth(), 10_000);
        let (attempts, _, _) = drain(f.queue.clone(), &f.name, 10_000, 2, 8).await;
        assert_eq!(attempts.len(), 10_000);
        eprintln!(
            "{:?}: enqueued and drained 10,000 in {:?}",
            f.kind,
            started.elapsed()
        );
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    pub async fn dedup_keys_skip_duplicates(f: Fixture) {
        let keyed = |n: u32, key: &str| task(&f.name, n).dedup_key(key).unwrap();
        let report = f
            .queue
            .enqueue_batch(vec![
                keyed(1, "file-1"),
                keyed(2, "file-1"),
                keyed(3, "file-2"),
                task(&f.name, 4),
            ])
            .await
            .unwrap();
        assert_eq!((report.enqueued, report.duplicates), (3, 1));
        let again = f.queue.enqueue(keyed(5, "file-2")).await.unwrap();
        match f.kind {
            // SQL remembers keys across calls (and after the ack, for dedup_retention).
            Kind::Sqlite | Kind::Postgres => assert_eq!((again.enqueued, again.duplicates), (0, 1)),
            // RabbitMQ has no dedup without a plugin: only within one batch (documented).
            Kind::Amqp => assert_eq!((again.enqueued, again.duplicates), (1, 0)),
        }
        let expected = if f.kind == Kind::Amqp { 4 } else { 3 };
        let (attempts, _, _) = drain(f.queue.clone(), &f.name, expected, 1, 2).await;
        assert!(attempts.contains_key(&1) && !attempts.contains_key(&2));
        if f.kind != Kind::Amqp {
            // Acked, but the key is still remembered.
            let after = f.queue.enqueue(keyed(6, "file-1")).await.unwrap();
            assert_eq!(after.enqueued, 0);
        }
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    pub async fn bad_input_is_refused_and_nothing_is_written(f: Fixture) {
        let unknown = common::unique_name("never-declared");
        let err = f.queue.enqueue(task(&unknown, 1)).await.unwrap_err();
        assert!(matches!(err, QueueError::UnknownQueue(_)), "{err}");
        assert!(err.to_string().contains("declare it first"), "{err}");

        // One bad task in a batch: the whole batch is refused, the good queue stays empty.
        let err = f
            .queue
            .enqueue_batch(vec![task(&f.name, 1), task(&unknown, 2)])
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::UnknownQueue(_)), "{err}");
        assert_eq!(stats(f.queue.as_ref(), &f.name).await.depth(), 0);

        let err = f.queue.consume(&unknown, opts(1)).await.err().unwrap();
        assert!(matches!(err, QueueError::UnknownQueue(_)), "{err}");
        assert!(matches!(
            QueueName::new("Bad Name"),
            Err(QueueError::InvalidQueueName { .. })
        ));

        // A payload of the wrong type: a clear error naming the task and the type.
        f.queue
            .enqueue(NewTask::new(&f.name, &"text").unwrap())
            .await
            .unwrap();
        let mut c = f.queue.consume(&f.name, opts(1)).await.unwrap();
        let d = take(&mut c).await;
        let err = d.json::<u64>().unwrap_err().to_string();
        assert!(err.contains(d.id()) && err.contains("u64"), "{err}");
        d.ack().await.unwrap();
        c.close().await.unwrap();
        assert_empty(&f, 0).await;
        f.finish().await;
    }

    pub async fn graceful_shutdown_finishes_in_hand_and_gives_back_the_rest(f: Fixture) {
        let batch: Vec<NewTask> = (0..12).map(|n| task(&f.name, n)).collect();
        f.queue.enqueue_batch(batch).await.unwrap();
        let started = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let worker = Worker::new(f.queue.clone(), f.name.clone())
            .concurrency(2)
            .prefetch(4);
        let (s, fin) = (started.clone(), finished.clone());
        let run = tokio::spawn(worker.run(stop.clone(), move |_n: u32, _| {
            let (s, fin) = (s.clone(), fin.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                fin.fetch_add(1, Ordering::SeqCst);
                Outcome::Done
            }
        }));
        let s = started.clone();
        eventually("a task started", WAIT, || {
            let n = s.load(Ordering::SeqCst);
            async move { n >= 1 }
        })
        .await;
        stop.cancel();
        let report = run.await.unwrap().unwrap();
        // Every task that started was finished and acked; none was cut off.
        assert_eq!(report.done, started.load(Ordering::SeqCst));
        assert_eq!(report.done, finished.load(Ordering::SeqCst));
        assert!(report.done < 12);
        let (queue, name, left) = (f.queue.clone(), f.name.clone(), 12 - report.done);
        eventually("the rest given back", WAIT, || {
            let (queue, name) = (queue.clone(), name.clone());
            async move {
                let s = stats(queue.as_ref(), &name).await;
                s.ready == left && s.in_flight.unwrap_or(0) == 0
            }
        })
        .await;
        f.finish().await;
    }
}
