//! `queue-throughput`: enqueue + consume + ack of empty tasks on each task-queue backend,
//! next to a bare in-memory channel measured in the same run. See `bench/README.md`.
//!
//! Per run and backend: a fresh queue (SQLite file under `target/bench-work/`, a fresh
//! PostgreSQL database, a uniquely named RabbitMQ queue); one producer enqueues `--tasks`
//! empty tasks in batches of `--batch` while `--consumers` consumers (each: `next`, `ack`,
//! one at a time, `--prefetch` held) drain them. Timed from the first enqueue to the last
//! ack. Runs are interleaved (run 1 of every backend, then run 2 …) so that machine load
//! hits every backend alike.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use task_queue::amqp::{AmqpConfig, AmqpQueue};
use task_queue::sql::{SqlConfig, SqlQueue};
use task_queue::{ConsumeOptions, NewTask, QueueName, SharedQueue};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
queue-throughput: enqueue + consume + ack throughput of the task-queue backends

USAGE: queue-throughput [OPTIONS]

  --tasks N          tasks per run (default 100000)
  --consumers N      concurrent consumers (default 8)
  --prefetch N       tasks each consumer holds (default 64)
  --batch N          tasks per enqueue_batch call (default 1000)
  --runs N           runs per backend, interleaved (default 3)
  --backends LIST    comma separated: channel,sqlite,postgres,amqp (default: all four)
  --postgres-url URL server whose user may CREATE DATABASE (default: $VITRINE_TEST_POSTGRES_URL)
  --amqp-url URL     RabbitMQ (default: $VITRINE_TEST_AMQP_URL)
  --work-dir DIR     where SQLite files go (default target/bench-work/queue-throughput-<pid>)
  --output FILE      also write the Markdown report to FILE
  -h, --help         this text

Start PostgreSQL and RabbitMQ with `bash scripts/backends.sh start postgres amqp` and load
their URLs with `eval \"$(bash scripts/backends.sh env)\"`. A backend whose URL is missing
is an error, not a skip: name the backends you want with --backends.";

struct Options {
    tasks: u64,
    consumers: usize,
    prefetch: u16,
    batch: usize,
    runs: usize,
    backends: Vec<String>,
    postgres_url: Option<String>,
    amqp_url: Option<String>,
    work_dir: std::path::PathBuf,
    output: Option<String>,
}

fn parse(argv: &[String]) -> Result<Option<Options>> {
    let mut o = Options {
        tasks: 100_000,
        consumers: 8,
        prefetch: 64,
        batch: 1000,
        runs: 3,
        backends: vec![
            "channel".into(),
            "sqlite".into(),
            "postgres".into(),
            "amqp".into(),
        ],
        postgres_url: std::env::var("VITRINE_TEST_POSTGRES_URL")
            .ok()
            .filter(|s| !s.is_empty()),
        amqp_url: std::env::var("VITRINE_TEST_AMQP_URL")
            .ok()
            .filter(|s| !s.is_empty()),
        work_dir: std::path::PathBuf::from(format!(
            "target/bench-work/queue-throughput-{}",
            std::process::id()
        )),
        output: None,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value (see --help)"))?;
        let number = || -> Result<u64> {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{flag}: `{value}` is not a positive number"))
        };
        match flag.as_str() {
            "--tasks" => o.tasks = number()?,
            "--consumers" => o.consumers = number()? as usize,
            "--prefetch" => {
                o.prefetch = u16::try_from(number()?).context("--prefetch: at most 65535")?
            }
            "--batch" => o.batch = number()? as usize,
            "--runs" => o.runs = number()? as usize,
            "--backends" => {
                o.backends = value.split(',').map(|s| s.trim().to_owned()).collect();
                for b in &o.backends {
                    if !["channel", "sqlite", "postgres", "amqp"].contains(&b.as_str()) {
                        bail!(
                            "--backends: unknown backend `{b}` (channel, sqlite, postgres, amqp)"
                        );
                    }
                }
            }
            "--postgres-url" => o.postgres_url = Some(value.clone()),
            "--amqp-url" => o.amqp_url = Some(value.clone()),
            "--work-dir" => o.work_dir = value.into(),
            "--output" => o.output = Some(value.clone()),
            other => bail!("unknown option `{other}` (see --help)"),
        }
    }
    if o.backends.iter().any(|b| b == "postgres") && o.postgres_url.is_none() {
        bail!("postgres: set VITRINE_TEST_POSTGRES_URL or --postgres-url (or leave postgres out of --backends)");
    }
    if o.backends.iter().any(|b| b == "amqp") && o.amqp_url.is_none() {
        bail!("amqp: set VITRINE_TEST_AMQP_URL or --amqp-url (or leave amqp out of --backends)");
    }
    Ok(Some(o))
}

struct RunResult {
    backend: String,
    total: Duration,
    enqueue: Duration,
}

impl RunResult {
    fn rate(&self, tasks: u64) -> f64 {
        tasks as f64 / self.total.as_secs_f64()
    }
}

/// The reference: a bounded tokio channel shared by the consumers, "ack" = a counter.
async fn run_channel(o: &Options) -> Result<RunResult> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(o.batch.max(1024));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut consumers = Vec::new();
    for _ in 0..o.consumers {
        let (rx, acked) = (rx.clone(), acked.clone());
        consumers.push(tokio::spawn(async move {
            loop {
                let item = rx.lock().await.recv().await;
                match item {
                    Some(payload) => {
                        std::hint::black_box(payload);
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    None => break,
                }
            }
        }));
    }
    let payload = serde_json::to_vec(&()).expect("unit serializes");
    for _ in 0..o.tasks {
        tx.send(payload.clone()).await.context("channel closed")?;
    }
    let enqueue = started.elapsed();
    drop(tx);
    for c in consumers {
        c.await?;
    }
    let total = started.elapsed();
    if acked.load(Ordering::Relaxed) != o.tasks {
        bail!(
            "channel: acked {} of {}",
            acked.load(Ordering::Relaxed),
            o.tasks
        );
    }
    Ok(RunResult {
        backend: "channel".into(),
        total,
        enqueue,
    })
}

async fn open(o: &Options, backend: &str, run: usize) -> Result<(SharedQueue, Option<AmqpQueue>)> {
    Ok(match backend {
        "sqlite" => {
            std::fs::create_dir_all(&o.work_dir)?;
            let path = o.work_dir.join(format!("run-{run}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let url = format!("sqlite://{}", path.display());
            (
                Arc::new(SqlQueue::connect(&url, SqlConfig::default()).await?),
                None,
            )
        }
        "postgres" => {
            let admin = o.postgres_url.as_deref().context("no PostgreSQL URL")?;
            let url = service_kit::testing::fresh_postgres_database(admin).await;
            (
                Arc::new(SqlQueue::connect(&url, SqlConfig::default()).await?),
                None,
            )
        }
        "amqp" => {
            let url = o.amqp_url.as_deref().context("no AMQP URL")?;
            let q = AmqpQueue::connect(url, AmqpConfig::default()).await?;
            (Arc::new(q.clone()), Some(q))
        }
        other => bail!("unknown backend {other}"),
    })
}

async fn run_queue(o: &Options, backend: &str, run: usize) -> Result<RunResult> {
    let (queue, amqp) = open(o, backend, run).await?;
    let name = QueueName::new(format!(
        "bench.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))?;
    queue.declare(&name).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut consumers = Vec::new();
    for _ in 0..o.consumers {
        let mut c = queue
            .consume(
                &name,
                ConsumeOptions {
                    prefetch: o.prefetch,
                    shutdown: stop.clone(),
                },
            )
            .await?;
        let acked = acked.clone();
        consumers.push(tokio::spawn(async move {
            while let Some(d) = c.next().await? {
                d.ack().await?;
                acked.fetch_add(1, Ordering::Relaxed);
            }
            c.close().await?;
            Ok::<(), task_queue::QueueError>(())
        }));
    }
    let producer = {
        let (queue, name) = (queue.clone(), name.clone());
        let (tasks, batch) = (o.tasks, o.batch as u64);
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < tasks {
                let n = batch.min(tasks - sent);
                let tasks: Vec<NewTask> = (0..n)
                    .map(|_| NewTask::new(&name, &()))
                    .collect::<task_queue::Result<_>>()?;
                queue.enqueue_batch(tasks).await?;
                sent += n;
            }
            Ok::<Duration, task_queue::QueueError>(started.elapsed())
        })
    };
    let enqueue = producer.await??;
    let deadline = Instant::now() + Duration::from_secs(600);
    while acked.load(Ordering::Relaxed) < o.tasks {
        if Instant::now() > deadline {
            bail!(
                "{backend}: only {} of {} acked after 10 minutes",
                acked.load(Ordering::Relaxed),
                o.tasks
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = started.elapsed();
    stop.cancel();
    for c in consumers {
        c.await??;
    }
    let left = queue.stats(&name).await?;
    if left.depth() != 0 || left.dead != 0 {
        bail!("{backend}: queue not empty after the run: {left:?}");
    }
    if let Some(amqp) = amqp {
        amqp.delete_queue(&name).await?;
    }
    queue.close().await;
    Ok(RunResult {
        backend: backend.to_owned(),
        total,
        enqueue,
    })
}

/// CPU, cores and kernel, one line.
fn machine() -> String {
    let host = vitrine_bench::Host::describe();
    format!(
        "{}, {} logical cores, kernel {}",
        host.cpu, host.cores, host.kernel
    )
}

async fn run(o: Options) -> Result<String> {
    let load_before = vitrine_bench::load_average();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let mut results: Vec<RunResult> = Vec::new();
    for run in 1..=o.runs {
        for backend in &o.backends {
            let r = if backend == "channel" {
                run_channel(&o).await?
            } else {
                run_queue(&o, backend, run).await?
            };
            eprintln!(
                "run {run} {:<8} {:>9.0} tasks/s  (total {:.2} s, producer done at {:.2} s)",
                r.backend,
                r.rate(o.tasks),
                r.total.as_secs_f64(),
                r.enqueue.as_secs_f64()
            );
            results.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&o.work_dir);
    let mut md = String::new();
    md.push_str(&format!(
        "#### queue-throughput, {date}\n\n{} empty tasks per run, {} consumers (prefetch {}), batches of {}, {} runs per backend, interleaved.\n\n",
        o.tasks, o.consumers, o.prefetch, o.batch, o.runs
    ));
    md.push_str("| Backend | Median tasks/s | Min | Max | Median total s | Median producer s | ≥ 2,000/s |\n|---|---:|---:|---:|---:|---:|---|\n");
    for backend in &o.backends {
        let mine: Vec<&RunResult> = results.iter().filter(|r| &r.backend == backend).collect();
        let rates: Vec<f64> = mine.iter().map(|r| r.rate(o.tasks)).collect();
        let med = vitrine_bench::median(rates.clone());
        let min = rates.iter().copied().fold(f64::MAX, f64::min);
        let max = rates.iter().copied().fold(0.0, f64::max);
        let total = vitrine_bench::median(mine.iter().map(|r| r.total.as_secs_f64()).collect());
        let enq = vitrine_bench::median(mine.iter().map(|r| r.enqueue.as_secs_f64()).collect());
        let target = if backend == "channel" {
            "(reference)".to_owned()
        } else if med >= 2000.0 {
            "met".to_owned()
        } else {
            "**not met**".to_owned()
        };
        md.push_str(&format!(
            "| {backend} | {med:.0} | {min:.0} | {max:.0} | {total:.2} | {enq:.2} | {target} |\n"
        ));
    }
    md.push_str(&format!(
        "\nMachine: {}. Load average (1, 5, 15 min) before: {load_before}; after: {}.\n\nEvery run: {}\n",
        machine(),
        vitrine_bench::load_average(),
        results
            .iter()
            .map(|r| format!("{} {:.0}/s", r.backend, r.rate(o.tasks)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(md)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let options = match parse(&argv[1..]) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("queue-throughput: {e:#}");
            return ExitCode::from(2);
        }
    };
    let output = options.output.clone();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("queue-throughput: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(md) => {
            println!("{md}");
            if let Some(path) = output {
                if let Err(e) = std::fs::write(&path, &md) {
                    eprintln!("queue-throughput: cannot write {path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("queue-throughput: {e:#}");
            ExitCode::FAILURE
        }
    }
}
