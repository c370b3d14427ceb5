//! `import-throughput`: a whole Google Drive import (Flow 2) through real processes, next
//! to the two limits it cannot beat, measured in the same run. See `bench/README.md`.
//!
//! The stack: `vitrine serve storage`, `vitrine serve import-api` and `--workers`
//! × `vitrine serve import-worker` as child processes (the release launcher next to this
//! binary), and the Drive emulator (`fake-providers`, in this process) sharing a folder of
//! `--images` generated images with `--latency-ms` added to every emulated request.
//! Either on the embedded defaults (SQLite, the SQL queue, `file://` blobs) or on servers
//! (fresh PostgreSQL databases, RabbitMQ, S3 on Garage) from `VITRINE_TEST_*`.
//!
//! Per run, two phases, alternating which goes first:
//! - **import**: a fresh seller `POST /import/google-drive`s the folder; `GET /imports/{id}`
//!   is polled until `completed`. Wall time from the POST to the poll that sees it done.
//!   The emulator counts the provider requests it served: the **latency bound** is
//!   requests × latency ÷ (workers × `IMPORT_WORKER_CONCURRENCY`).
//! - **data bound**: the same files (same bytes, generated the same way, same digests in
//!   the query) pushed by this process straight into storage's `POST /internal/ingest`,
//!   signed with the import key ([`StorageClient`], as the workers do), as another seller
//!   (so nothing is deduplicated), with as many in flight as the workers have together.
//!
//! Meanwhile: each worker's `VmRSS` every 10 ms, its `VmRSS`/`VmHWM` when 10 %, 50 % and
//! 100 % of the images are in, CPU time of every process (the shared servers' too), and
//! of the whole machine.
//!
//! # Layout (one file)
//! - `main`, [`run`]: backends, emulator, stack; runs; report; clean-up.
//! - [`Options`]: flags and defaults.
//! - [`Backends`], [`ServerResources`]: where the services keep their data.
//! - [`Service`]: one `vitrine serve …` child process.
//! - [`import_phase`], [`data_phase`]: the two measurements.
//! - [`CpuSnapshot`]: CPU time per process and for the machine.
//! - [`Report`]: the Markdown.

#[path = "../rss.rs"]
mod rss;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use fake_providers::{FakeProviders, FaultConfig, Folder, Generate, RunningFake};
use futures::StreamExt;
use import_service::storage_client::{IngestRequest, StorageClient};
use serde_json::Value;
use service_kit::auth::{AuthConfig, DevIssuer, SellerId};
use service_kit::Env;
use shared_signing::{KeyId, KeyRing};
use vitrine_bench::{command_line, load_average, machine_cpu, median, write_output, Host};

use crate::rss::{status_kib, RssSampler};

/// Issue 5: the import's wall time within this factor of the larger limit.
const TARGET_FACTOR: f64 = 1.5;
/// Issue 5: each worker's peak RSS under this, however many images.
const TARGET_RSS_MIB: f64 = 100.0;
/// Set so high that the per-worker provider rate limiter never waits (it still runs).
const PROVIDER_REQUESTS_PER_SECOND: u32 = 100_000;
/// How often `GET /imports/{id}` is polled (the wall time's resolution).
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Pause after each phase: the machine settles, and PostgreSQL backends flush their
/// statistics (an idle backend does so within 10 s) before `pg_stat_database` is read.
const SETTLE_EMBEDDED: Duration = Duration::from_secs(3);
const SETTLE_SERVERS: Duration = Duration::from_secs(11);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Fractions of the images at which worker memory is read.
const CHECKPOINTS: [f64; 3] = [0.1, 0.5, 1.0];

const USAGE: &str = "\
import-throughput: a whole Google Drive import through real processes, next to its
latency bound and its data bound (the same bytes straight into storage), same run

USAGE: import-throughput [OPTIONS]

  --images N          images in the emulated Drive folder (default 10000)
  --size-kib K        size of each image in KiB (default 50; PNG and JPEG in turn)
  --latency-ms MS     added to every emulated provider request (default 20)
  --workers N         import-worker processes (default 2)
  --concurrency C     IMPORT_WORKER_CONCURRENCY: file tasks per worker (default 16)
  --backends B        embedded (SQLite, SQL queue, file:// blobs; the default) or
                      servers (PostgreSQL + RabbitMQ + S3 from VITRINE_TEST_*)
  --runs N            runs, each an import and a data-bound push, alternating which
                      goes first (default 1)
  --log LEVEL         RUST_LOG of the services, JSON into files in the work dir
                      (default info, as in production)
  --timeout SECS      give up on an import after this long (default 900)
  --vitrine PATH      the launcher binary (default: `vitrine` next to this binary)
  --work-dir DIR      default target/bench-work/import-throughput-<pid>
  --keep              keep the work dir, databases, queues and objects
  --output FILE       also write the Markdown report to FILE (--append to add to it)
  -h, --help          this text

Build first: cargo build --release -p vitrine -p vitrine-bench. For --backends servers:
bash scripts/backends.sh start all && eval \"$(bash scripts/backends.sh env)\".";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backends {
    Embedded,
    Servers,
}

impl Backends {
    fn describe(self) -> &'static str {
        match self {
            Backends::Embedded => {
                "embedded: SQLite (storage and import databases, WAL), the SQL task queue in \
                 the import database, `file://` blobs on the local disk"
            }
            Backends::Servers => {
                "servers: PostgreSQL 15 (a fresh database each for storage and import), \
                 RabbitMQ 3.10 (task queue), S3 on Garage 2.5 (single node, blobs); all on \
                 loopback, on this machine"
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    images: usize,
    size_kib: usize,
    latency_ms: u64,
    workers: usize,
    concurrency: usize,
    backends: Backends,
    runs: usize,
    log: String,
    timeout: Duration,
    vitrine: PathBuf,
    work_dir: PathBuf,
    keep: bool,
    output: Option<PathBuf>,
    append: bool,
}

impl Options {
    fn in_flight(&self) -> usize {
        self.workers * self.concurrency
    }
}

fn parse(argv: &[String]) -> Result<Option<Options>> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut o = Options {
        images: 10_000,
        size_kib: 50,
        latency_ms: 20,
        workers: 2,
        concurrency: 16,
        backends: Backends::Embedded,
        runs: 1,
        log: "info".into(),
        timeout: Duration::from_secs(900),
        vitrine: exe_dir.join("vitrine"),
        work_dir: PathBuf::from(format!(
            "target/bench-work/import-throughput-{}",
            std::process::id()
        )),
        keep: false,
        output: None,
        append: false,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--keep" => {
                o.keep = true;
                continue;
            }
            "--append" => {
                o.append = true;
                continue;
            }
            _ => {}
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
            "--images" => o.images = number()? as usize,
            "--size-kib" => o.size_kib = number()? as usize,
            "--latency-ms" => {
                o.latency_ms = value
                    .parse()
                    .with_context(|| format!("--latency-ms: `{value}` is not a number"))?
            }
            "--workers" => o.workers = number()? as usize,
            "--concurrency" => o.concurrency = number()? as usize,
            "--backends" => {
                o.backends = match value.as_str() {
                    "embedded" => Backends::Embedded,
                    "servers" => Backends::Servers,
                    other => bail!("--backends: `{other}` is neither embedded nor servers"),
                }
            }
            "--runs" => o.runs = number()? as usize,
            "--log" => o.log = value.clone(),
            "--timeout" => o.timeout = Duration::from_secs(number()?),
            "--vitrine" => o.vitrine = value.into(),
            "--work-dir" => o.work_dir = value.into(),
            "--output" => o.output = Some(value.into()),
            other => bail!("unknown option `{other}` (see --help)"),
        }
    }
    ensure!(
        o.concurrency <= 1024,
        "--concurrency: IMPORT_WORKER_CONCURRENCY is at most 1024"
    );
    Ok(Some(o))
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
            eprintln!("import-throughput: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("import-throughput: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&options, &command_line(&argv))) {
        Ok(report) => {
            let markdown = report.markdown();
            println!("{markdown}");
            if let Some(path) = &options.output {
                if let Err(e) = write_output(path, &markdown, options.append) {
                    eprintln!("import-throughput: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("import-throughput: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------- backends

/// What `--backends servers` created, to be removed at the end.
#[derive(Default)]
struct ServerResources {
    admin_url: String,
    databases: Vec<String>,
    amqp_url: Option<String>,
    queue_prefix: String,
    s3: Option<S3Target>,
}

#[derive(Clone)]
struct S3Target {
    endpoint: String,
    bucket: String,
    prefix: String,
    region: String,
    key_id: String,
    secret: String,
}

/// `VITRINE_TEST_<name>`, required.
fn test_env(name: &str) -> Result<String> {
    let var = format!("VITRINE_TEST_{name}");
    std::env::var(&var)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| {
            format!(
                "--backends servers needs {var}: bash scripts/backends.sh start all && \
             eval \"$(bash scripts/backends.sh env)\""
            )
        })
}

/// The database name at the end of a PostgreSQL URL.
fn database_name(url: &str) -> &str {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or(base)
}

/// Storage and import variables for the chosen backends.
struct Placement {
    storage: Vec<(String, String)>,
    import: Vec<(String, String)>,
    servers: Option<ServerResources>,
}

async fn place(o: &Options, work: &Path, tag: &str) -> Result<Placement> {
    let queue_prefix = format!("bench{tag}");
    match o.backends {
        Backends::Embedded => Ok(Placement {
            storage: vec![
                (
                    "STORAGE_DATABASE_URL".into(),
                    format!("sqlite://{}", work.join("storage.db").display()),
                ),
                (
                    "BLOB_STORE".into(),
                    format!("file://{}", work.join("blobs").display()),
                ),
            ],
            import: vec![
                (
                    "IMPORT_DATABASE_URL".into(),
                    format!("sqlite://{}", work.join("import.db").display()),
                ),
                ("QUEUE_URL".into(), "sql".into()),
                ("IMPORT_QUEUE_PREFIX".into(), queue_prefix),
            ],
            servers: None,
        }),
        Backends::Servers => {
            let admin_url = test_env("POSTGRES_URL")?;
            let amqp_url = test_env("AMQP_URL")?;
            let s3 = S3Target {
                endpoint: test_env("S3_ENDPOINT")?,
                bucket: test_env("S3_BUCKET")?,
                prefix: format!("bench-import-{tag}"),
                region: test_env("S3_REGION").unwrap_or_else(|_| "garage".into()),
                key_id: test_env("S3_ACCESS_KEY_ID")?,
                secret: test_env("S3_SECRET_ACCESS_KEY")?,
            };
            let storage_db = service_kit::testing::fresh_postgres_database(&admin_url).await;
            let import_db = service_kit::testing::fresh_postgres_database(&admin_url).await;
            let servers = ServerResources {
                admin_url,
                databases: vec![
                    database_name(&storage_db).to_owned(),
                    database_name(&import_db).to_owned(),
                ],
                amqp_url: Some(amqp_url.clone()),
                queue_prefix: queue_prefix.clone(),
                s3: Some(s3.clone()),
            };
            Ok(Placement {
                storage: vec![
                    ("STORAGE_DATABASE_URL".into(), storage_db),
                    (
                        "BLOB_STORE".into(),
                        format!("s3://{}/{}", s3.bucket, s3.prefix),
                    ),
                    ("S3_ENDPOINT".into(), s3.endpoint),
                    ("S3_REGION".into(), s3.region),
                    ("AWS_ACCESS_KEY_ID".into(), s3.key_id),
                    ("AWS_SECRET_ACCESS_KEY".into(), s3.secret),
                    ("S3_ALLOW_HTTP".into(), "true".into()),
                ],
                import: vec![
                    ("IMPORT_DATABASE_URL".into(), import_db),
                    ("QUEUE_URL".into(), amqp_url),
                    ("IMPORT_QUEUE_PREFIX".into(), queue_prefix),
                ],
                servers: Some(servers),
            })
        }
    }
}

impl ServerResources {
    /// Drops the databases, deletes the queues and the objects under the prefix.
    async fn remove(&self) -> Result<()> {
        use sqlx::{Connection, Executor};
        if let Some(url) = &self.amqp_url {
            let queue = task_queue::amqp::AmqpQueue::connect(url, Default::default()).await?;
            let names = import_service::tasks::QueueNames::new(&self.queue_prefix)?;
            for name in names.both() {
                queue.delete_queue(&name).await?;
            }
        }
        if let Some(s3) = &self.s3 {
            use object_store::ObjectStore;
            let store = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_endpoint(&s3.endpoint)
                .with_access_key_id(&s3.key_id)
                .with_secret_access_key(&s3.secret)
                .with_allow_http(true)
                .build()?;
            let prefix = object_store::path::Path::from(s3.prefix.as_str());
            let locations = store.list(Some(&prefix)).map(|m| m.map(|m| m.location));
            let deleted: Vec<_> = store.delete_stream(locations.boxed()).collect().await;
            if let Some(Err(e)) = deleted.into_iter().find(Result::is_err) {
                bail!("deleting s3://{}/{}: {e}", s3.bucket, s3.prefix);
            }
        }
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&self.admin_url).await?;
        for db in &self.databases {
            admin
                .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
                .await?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------- services

fn free_loopback_addr() -> Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One `vitrine serve <service>` child process.
struct Service {
    label: String,
    child: std::process::Child,
    url: String,
    log: PathBuf,
}

impl Service {
    /// Starts it with `env` (nothing else from this process's environment but `PATH`),
    /// listening on `bind` (passed in `bind_var`).
    fn start(
        o: &Options,
        service: &str,
        label: &str,
        bind_var: &str,
        bind: std::net::SocketAddr,
        env: &[(String, String)],
        work: &Path,
    ) -> Result<Service> {
        ensure!(
            o.vitrine.is_file(),
            "no launcher at {} (cargo build --release -p vitrine, or pass --vitrine)",
            o.vitrine.display()
        );
        let log = work.join(format!("{}.log", label.replace(' ', "-")));
        let log_file = File::create(&log)?;
        let mut command = Command::new(&o.vitrine);
        command.env_clear();
        // The allocator the launcher would give this service.
        if let Some(choice) = service_kit::allocator::choice_for_service(service) {
            command.env(service_kit::allocator::ALLOCATOR_VAR, choice);
        }
        let child = command
            .args(["serve", service])
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(bind_var, bind.to_string())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", &o.log)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} serve {service}", o.vitrine.display()))?;
        Ok(Service {
            label: label.to_owned(),
            child,
            url: format!("http://{bind}"),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `GET /readyz` until it answers 200.
    async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.label,
                    self.log_tail()
                );
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {READY_TIMEOUT:?}:\n{}",
                    self.label,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.label, self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then SIGKILL if it has not stopped in time.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it",
            self.label
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Storage, import-api and the workers, plus what talking to them takes.
struct Stack {
    storage: Service,
    api: Service,
    workers: Vec<Service>,
    storage_client: StorageClient,
    issuer: DevIssuer,
    http: reqwest::Client,
}

impl Stack {
    async fn start(
        o: &Options,
        work: &Path,
        placement: &Placement,
        fake_base: &str,
    ) -> Result<Stack> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let import_keys = KeyRing::generate(KeyId::new("benchimport")?);
        let jwt_secret =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());

        let storage_bind = free_loopback_addr()?;
        let storage_url = format!("http://{storage_bind}");
        let mut storage_env: Vec<(String, String)> = vec![
            ("STORAGE_PUBLIC_URL".into(), storage_url.clone()),
            (
                "APP_STORAGE_KEYS".into(),
                KeyRing::generate(KeyId::new("benchapp")?).to_env_value(),
            ),
            ("IMPORT_STORAGE_KEYS".into(), import_keys.to_env_value()),
            (
                "URL_SIGNING_KEYS".into(),
                KeyRing::generate(KeyId::new("benchurl")?).to_env_value(),
            ),
        ];
        storage_env.extend(placement.storage.iter().cloned());
        let mut storage = Service::start(
            o,
            "storage",
            "storage",
            "STORAGE_BIND",
            storage_bind,
            &storage_env,
            work,
        )?;
        storage.wait_ready(&http).await?;

        let mut import_env: Vec<(String, String)> = vec![
            ("STORAGE_URL".into(), storage_url.clone()),
            ("IMPORT_STORAGE_KEYS".into(), import_keys.to_env_value()),
            ("JWT_HS256_SECRET".into(), jwt_secret.clone()),
            ("GOOGLE_API_KEY".into(), "bench-key".into()),
            ("GOOGLE_DRIVE_API_BASE".into(), fake_base.to_owned()),
            ("DROPBOX_ACCESS_TOKEN".into(), "bench-token".into()),
            ("DROPBOX_API_BASE".into(), fake_base.to_owned()),
            ("DROPBOX_CONTENT_BASE".into(), fake_base.to_owned()),
            (
                "IMPORT_WORKER_CONCURRENCY".into(),
                o.concurrency.to_string(),
            ),
            (
                "PROVIDER_REQUESTS_PER_SECOND".into(),
                PROVIDER_REQUESTS_PER_SECOND.to_string(),
            ),
        ];
        import_env.extend(placement.import.iter().cloned());
        // The API migrates the import database before any worker opens it.
        let mut api = Service::start(
            o,
            "import-api",
            "import-api",
            "IMPORT_BIND",
            free_loopback_addr()?,
            &import_env,
            work,
        )?;
        api.wait_ready(&http).await?;
        let mut workers = Vec::new();
        for i in 1..=o.workers {
            let mut worker = Service::start(
                o,
                "import-worker",
                &format!("worker {i}"),
                "IMPORT_WORKER_METRICS_BIND",
                free_loopback_addr()?,
                &import_env,
                work,
            )?;
            worker.wait_ready(&http).await?;
            workers.push(worker);
        }

        let auth = AuthConfig::from_env(&Env::from_pairs([("JWT_HS256_SECRET", jwt_secret)]))?;
        let issuer = DevIssuer::from_config(&auth).context("no HS256 issuer")?;
        let storage_client = StorageClient::new(
            url::Url::parse(&storage_url)?,
            import_keys,
            Duration::from_secs(2),
            Duration::from_secs(60),
        )?;
        Ok(Stack {
            storage,
            api,
            workers,
            storage_client,
            issuer,
            http,
        })
    }

    fn token(&self, seller: &str) -> Result<String> {
        Ok(self.issuer.mint(&SellerId::parse(seller)?).access_token)
    }

    fn check_alive(&mut self) -> Result<()> {
        self.storage.check_alive()?;
        self.api.check_alive()?;
        for w in &mut self.workers {
            w.check_alive()?;
        }
        Ok(())
    }

    /// `(label, pid)` of every child.
    fn processes(&self) -> Vec<(String, u32)> {
        let mut all = vec![
            (self.storage.label.clone(), self.storage.pid()),
            (self.api.label.clone(), self.api.pid()),
        ];
        all.extend(self.workers.iter().map(|w| (w.label.clone(), w.pid())));
        all
    }

    fn stop(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
        self.api.stop();
        self.storage.stop();
    }
}

// ------------------------------------------------------------------- CPU time

const TRACKED_SERVERS: [&str; 3] = ["postgres", "beam.smp", "garage"];

/// CPU time (user + system) of our processes, of the servers' processes, and of the
/// whole machine, at one instant.
#[derive(Clone)]
struct CpuSnapshot {
    at: Instant,
    /// Our children by label, plus `bench` (this process: the emulator and the client).
    ours: BTreeMap<String, Duration>,
    /// Server processes by pid: (group, CPU time).
    servers: HashMap<u32, (String, Duration)>,
    machine_busy: Duration,
    machine_total: Duration,
}

/// The CPU a phase used, in seconds per group.
struct CpuUse {
    wall: f64,
    groups: Vec<(String, f64)>,
    machine_busy: f64,
    machine_total: f64,
}

fn proc_stat_ticks(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

impl CpuSnapshot {
    /// `databases`: PostgreSQL backends serving these databases count as ours; `None`:
    /// the servers are not ours (embedded backends) and are left out.
    fn take(children: &[(String, u32)], databases: Option<&[String]>) -> CpuSnapshot {
        let hz = clock_ticks();
        let dur = |ticks: u64| Duration::from_secs_f64(ticks as f64 / hz);
        let mut ours = BTreeMap::new();
        for (label, pid) in children {
            if let Some(t) = rss::cpu_time(&pid.to_string()) {
                ours.insert(label.clone(), t);
            }
        }
        ours.insert("bench".into(), rss::cpu_time("self").unwrap_or_default());
        let mut servers = HashMap::new();
        let entries = match databases {
            Some(_) => std::fs::read_dir("/proc").ok(),
            None => None,
        };
        let databases = databases.unwrap_or_default();
        if let Some(entries) = entries {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let Some((comm, ticks)) = proc_stat_ticks(&pid.to_string()) else {
                    continue;
                };
                if !TRACKED_SERVERS.contains(&comm.as_str()) {
                    continue;
                }
                let group = if comm == "postgres" {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmdline = String::from_utf8_lossy(&cmdline);
                    if databases.iter().any(|db| cmdline.contains(db.as_str())) {
                        "postgres (these databases)"
                    } else {
                        "postgres (other)"
                    }
                } else if comm == "beam.smp" {
                    "rabbitmq"
                } else {
                    "garage"
                };
                servers.insert(pid, (group.to_owned(), dur(ticks)));
            }
        }
        let (machine_busy, machine_total) = machine_cpu();
        CpuSnapshot {
            at: Instant::now(),
            ours,
            servers,
            machine_busy,
            machine_total,
        }
    }

    fn since(&self, before: &CpuSnapshot) -> CpuUse {
        let mut groups: Vec<(String, f64)> = self
            .ours
            .iter()
            .map(|(label, t)| {
                let start = before.ours.get(label).copied().unwrap_or_default();
                (label.clone(), t.saturating_sub(start).as_secs_f64())
            })
            .collect();
        let mut servers: BTreeMap<String, f64> = BTreeMap::new();
        for (pid, (group, t)) in &self.servers {
            let start = before.servers.get(pid).map(|(_, t)| *t).unwrap_or_default();
            *servers.entry(group.clone()).or_default() += t.saturating_sub(start).as_secs_f64();
        }
        groups.extend(servers);
        CpuUse {
            wall: self.at.duration_since(before.at).as_secs_f64(),
            groups,
            machine_busy: self
                .machine_busy
                .saturating_sub(before.machine_busy)
                .as_secs_f64(),
            machine_total: self
                .machine_total
                .saturating_sub(before.machine_total)
                .as_secs_f64(),
        }
    }
}

impl CpuUse {
    fn get(&self, group: &str) -> f64 {
        self.groups
            .iter()
            .find(|(g, _)| g == group)
            .map_or(0.0, |(_, s)| *s)
    }

    /// CPU-seconds of the stack: our processes and, on servers, what they used of the
    /// shared servers (not `postgres (other)`: other databases, background writers).
    fn stack(&self) -> f64 {
        self.groups
            .iter()
            .filter(|(g, _)| g != "postgres (other)")
            .fold(0.0, |sum, (_, s)| sum + s)
    }

    /// Busy CPU-seconds no measured process accounts for (other processes, the kernel).
    fn other(&self) -> f64 {
        (self.machine_busy - self.groups.iter().map(|(_, s)| s).sum::<f64>()).max(0.0)
    }
}

// ------------------------------------------------------------------- phases

/// One file of the emulated folder, as the data-bound phase sends it.
struct FileSpec {
    node: usize,
    drive_id: String,
    name: String,
    mime: String,
    size: u64,
    sha256: String,
    md5: String,
}

fn folder_files(fake: &FakeProviders) -> Result<Vec<FileSpec>> {
    let mut files = Vec::new();
    for (i, node) in fake.nodes().iter().enumerate() {
        if node.content().is_none() {
            continue;
        }
        let d = node
            .cached_digests()
            .context("digests not computed (prewarm)")?;
        files.push(FileSpec {
            node: i,
            drive_id: node.drive_id.clone(),
            name: node.name.clone(),
            mime: node.mime().to_owned(),
            size: d.size,
            sha256: d.sha256.clone(),
            md5: d.md5.clone(),
        });
    }
    Ok(files)
}

/// Worker memory at one moment.
#[derive(Clone)]
struct MemoryPoint {
    imported: i64,
    at_secs: f64,
    /// Per worker: (VmRSS, VmHWM) in KiB.
    workers: Vec<(u64, u64)>,
}

fn worker_memory(stack: &Stack) -> Vec<(u64, u64)> {
    stack
        .workers
        .iter()
        .map(|w| {
            (
                status_kib(w.pid(), "VmRSS").unwrap_or(0),
                status_kib(w.pid(), "VmHWM").unwrap_or(0),
            )
        })
        .collect()
}

struct ImportResult {
    wall: f64,
    /// `finished_at − created_at` as the import service recorded them.
    server_wall: Option<f64>,
    /// Emulated requests during the import, per route, and in all.
    routes: BTreeMap<String, u64>,
    requests: u64,
    downloads_completed: u64,
    checkpoints: Vec<MemoryPoint>,
    /// Peak sampled VmRSS per worker (KiB) and the number of samples.
    peaks: Vec<(u64, u64)>,
    cpu: CpuUse,
    /// (seconds, imported) from every poll.
    progress: Vec<(f64, i64)>,
}

async fn import_phase(
    o: &Options,
    stack: &mut Stack,
    fake: &RunningFake,
    folder_url: &str,
    seller: &str,
    databases: Option<&[String]>,
) -> Result<ImportResult> {
    let token = stack.token(seller)?;
    let samplers: Vec<RssSampler> = stack
        .workers
        .iter()
        .map(|w| RssSampler::start(w.pid()))
        .collect();
    let stats_before = fake.stats();
    let cpu_before = CpuSnapshot::take(&stack.processes(), databases);
    let started = Instant::now();
    let response = stack
        .http
        .post(format!("{}/import/google-drive", stack.api.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "folder_url": folder_url }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    ensure!(
        status.as_u16() == 202,
        "POST /import/google-drive answered {status}: {body}"
    );
    let id = body["id"].as_str().context("no job id")?.to_owned();

    let mut checkpoints = Vec::new();
    let mut next_checkpoint = 0;
    let mut progress = Vec::new();
    let job = loop {
        tokio::time::sleep(POLL_EVERY).await;
        let r = stack
            .http
            .get(format!("{}/imports/{id}", stack.api.url))
            .bearer_auth(&token)
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "GET /imports/{id} answered {}",
            r.status()
        );
        let job: Value = r.json().await?;
        let at = started.elapsed().as_secs_f64();
        let imported = job["counts"]["imported"].as_i64().unwrap_or(0);
        progress.push((at, imported));
        while next_checkpoint < CHECKPOINTS.len()
            && imported as f64 >= CHECKPOINTS[next_checkpoint] * o.images as f64
        {
            checkpoints.push(MemoryPoint {
                imported,
                at_secs: at,
                workers: worker_memory(stack),
            });
            next_checkpoint += 1;
        }
        match job["state"].as_str() {
            Some("completed") | Some("failed") => break job,
            _ => {}
        }
        if started.elapsed() > o.timeout {
            bail!(
                "the import did not finish within {:?}; last: {job}",
                o.timeout
            );
        }
        stack.check_alive()?;
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = CpuSnapshot::take(&stack.processes(), databases).since(&cpu_before);
    let peaks = samplers
        .into_iter()
        .map(|s| {
            let p = s.stop();
            (p.peak_kib, p.samples)
        })
        .collect();
    let stats = fake.stats();
    ensure!(
        job["state"] == "completed",
        "the import ended {}: {job}",
        job["state"]
    );
    let counts = job["counts"].clone();
    ensure!(
        counts["imported"].as_i64() == Some(o.images as i64)
            && counts["failed"].as_i64() == Some(0),
        "expected {} imported and none failed: {counts}",
        o.images
    );
    let routes: BTreeMap<String, u64> = stats
        .routes
        .iter()
        .map(|(r, n)| {
            (
                r.clone(),
                n - stats_before.routes.get(r).copied().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let downloads_completed = stats.completed_downloads.values().sum::<u64>()
        - stats_before.completed_downloads.values().sum::<u64>();
    let time = |field: &str| {
        job[field]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let server_wall = match (time("created_at"), time("finished_at")) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    Ok(ImportResult {
        wall,
        server_wall,
        requests: stats.total - stats_before.total,
        routes,
        downloads_completed,
        checkpoints,
        peaks,
        cpu,
        progress,
    })
}

struct DataResult {
    wall: f64,
    cpu: CpuUse,
}

/// The same files straight into `POST /internal/ingest`, `in_flight` at a time.
async fn data_phase(
    o: &Options,
    stack: &Stack,
    fake: &RunningFake,
    files: &Arc<Vec<FileSpec>>,
    owner: &str,
    databases: Option<&[String]>,
) -> Result<DataResult> {
    let cpu_before = CpuSnapshot::take(&stack.processes(), databases);
    let started = Instant::now();
    let results: Vec<Result<bool>> = futures::stream::iter(0..files.len())
        .map(|i| {
            let files = files.clone();
            let client = stack.storage_client.clone();
            let fake = fake.fake().clone();
            let owner = owner.to_owned();
            async move {
                let f = &files[i];
                let content = fake.nodes()[f.node]
                    .content()
                    .context("not a file")?
                    .clone();
                let stream = content.stream_range(0, f.size).await?;
                let key = format!("bench-data:{}", f.drive_id);
                let request = IngestRequest {
                    owner_id: &owner,
                    content_type: &f.mime,
                    size: f.size,
                    sha256: Some(&f.sha256),
                    md5: Some(&f.md5),
                    filename: &f.name,
                    source: "google-drive",
                    source_ref: Some(&f.drive_id),
                    idempotency_key: &key,
                };
                let image = client
                    .ingest(&request, reqwest::Body::wrap_stream(stream))
                    .await
                    .with_context(|| format!("ingest of {}", f.name))?;
                Ok(image.newly_stored)
            }
        })
        .buffer_unordered(o.in_flight())
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = CpuSnapshot::take(&stack.processes(), databases).since(&cpu_before);
    let mut new = 0;
    for r in results {
        if r? {
            new += 1;
        }
    }
    ensure!(
        new == files.len(),
        "data bound: {new} of {} ingests stored a new image",
        files.len()
    );
    Ok(DataResult { wall, cpu })
}

// ------------------------------------------------------------------- the run

struct Run {
    import_first: bool,
    import: ImportResult,
    data: DataResult,
    /// `--backends servers`: what each phase did in each database.
    import_db: Option<PgUse>,
    data_db: Option<PgUse>,
}

/// `pg_stat_database` counters, by database role (`storage`, `import`).
type PgUse = BTreeMap<&'static str, PgCounters>;

const PG_COUNTERS: [&str; 6] = [
    "xact_commit",
    "xact_rollback",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "tup_fetched",
];

#[derive(Clone, Copy, Default)]
struct PgCounters([i64; 6]);

impl PgCounters {
    fn minus(self, before: PgCounters) -> PgCounters {
        let mut out = self;
        for (o, b) in out.0.iter_mut().zip(before.0) {
            *o -= b;
        }
        out
    }
}

/// `pg_stat_database` for the storage and import databases (`None` on embedded backends).
async fn pg_counters(servers: Option<&ServerResources>) -> Result<Option<PgUse>> {
    use sqlx::{Connection, Row};
    let Some(servers) = servers else {
        return Ok(None);
    };
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&servers.admin_url).await?;
    let mut out = PgUse::new();
    for (role, db) in ["storage", "import"].into_iter().zip(&servers.databases) {
        let sql = format!(
            "SELECT {} FROM pg_stat_database WHERE datname = $1",
            PG_COUNTERS.join(", ")
        );
        let row = sqlx::query(&sql).bind(db).fetch_one(&mut admin).await?;
        let mut c = PgCounters::default();
        for (i, v) in c.0.iter_mut().enumerate() {
            *v = row.try_get::<i64, _>(i)?;
        }
        out.insert(role, c);
    }
    let _ = admin.close().await;
    Ok(Some(out))
}

fn pg_use(before: Option<PgUse>, after: Option<PgUse>) -> Option<PgUse> {
    let (before, after) = (before?, after?);
    Some(
        after
            .into_iter()
            .map(|(role, a)| (role, a.minus(before.get(role).copied().unwrap_or_default())))
            .collect(),
    )
}

impl Run {
    fn latency_bound(&self, o: &Options) -> f64 {
        self.import.requests as f64 * o.latency_ms as f64 / 1000.0 / o.in_flight() as f64
    }

    fn limit(&self, o: &Options) -> f64 {
        self.latency_bound(o).max(self.data.wall)
    }

    fn ratio(&self, o: &Options) -> f64 {
        self.import.wall / self.limit(o)
    }

    /// The import's CPU time over the data bound's: the wall-time ratio a machine
    /// saturated by this stack alone would show (other load moves it much less).
    fn cpu_ratio(&self) -> f64 {
        self.import.cpu.stack() / self.data.cpu.stack()
    }
}

struct Report {
    options: Options,
    command: String,
    date: String,
    host: Host,
    load_before: String,
    load_after: String,
    total_bytes: u64,
    prewarm_secs: f64,
    /// Per worker: (VmRSS, VmHWM) in KiB after start, before any work.
    idle: Vec<(u64, u64)>,
    /// Per worker: VmHWM at the end, KiB.
    final_hwm: Vec<u64>,
    runs: Vec<Run>,
}

async fn run(o: &Options, command: &str) -> Result<Report> {
    let load_before = load_average();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    std::fs::create_dir_all(&o.work_dir)
        .with_context(|| format!("creating {}", o.work_dir.display()))?;
    let work = o.work_dir.canonicalize()?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();

    eprintln!(
        "emulator: {} images of {} KiB, {} ms per request; computing checksums…",
        o.images, o.size_kib, o.latency_ms
    );
    let fake = FakeProviders::builder()
        .drive_folder(
            Folder::generated(Generate::images(o.images).size(o.size_kib * 1024))
                .name(format!("{} generated images", o.images)),
        )
        .faults(FaultConfig::default().latency(o.latency_ms))
        .build()?;
    let prewarm_started = Instant::now();
    fake.prewarm().await?;
    let prewarm_secs = prewarm_started.elapsed().as_secs_f64();
    let running = fake.serve_on_loopback().await?;
    let folder_url = running.drive_folders()[0].url.clone();
    let files = Arc::new(folder_files(&fake)?);
    ensure!(
        files.len() == o.images,
        "the emulator has {} files",
        files.len()
    );
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();

    let placement = place(o, &work, &tag).await?;
    let databases = placement.servers.as_ref().map(|s| s.databases.as_slice());
    if let Some(dbs) = databases {
        eprintln!(
            "PostgreSQL databases: storage {}, import {}",
            dbs[0], dbs[1]
        );
    }
    eprintln!(
        "starting storage, import-api and {} workers ({:?})…",
        o.workers, o.backends
    );
    let result = async {
        let mut stack = Stack::start(o, &work, &placement, &running.base_url).await?;
        // Let start-up settle (and its database statistics land) before reading idle
        // memory and starting.
        tokio::time::sleep(match o.backends {
            Backends::Embedded => SETTLE_EMBEDDED,
            Backends::Servers => SETTLE_SERVERS,
        })
        .await;
        let idle = worker_memory(&stack);
        let mut runs = Vec::new();
        for r in 0..o.runs {
            let import_first = r % 2 == 1;
            let seller = format!("bench-seller-{tag}-{r}");
            let owner = format!("bench-direct-{tag}-{r}");
            let mut import = None;
            let mut data = None;
            let (mut import_db, mut data_db) = (None, None);
            for phase in 0..2 {
                let db_before = pg_counters(placement.servers.as_ref()).await?;
                let is_import = (phase == 0) == import_first;
                if is_import {
                    eprintln!("run {}: import of {} images…", r + 1, o.images);
                    let result =
                        import_phase(o, &mut stack, &running, &folder_url, &seller, databases)
                            .await?;
                    eprintln!(
                        "run {}: import {:.2} s ({} provider requests)",
                        r + 1,
                        result.wall,
                        result.requests
                    );
                    import = Some(result);
                } else {
                    eprintln!(
                        "run {}: data bound ({} ingests, {} in flight)…",
                        r + 1,
                        o.images,
                        o.in_flight()
                    );
                    let result = data_phase(o, &stack, &running, &files, &owner, databases).await?;
                    eprintln!("run {}: data bound {:.2} s", r + 1, result.wall);
                    data = Some(result);
                }
                tokio::time::sleep(match o.backends {
                    Backends::Embedded => SETTLE_EMBEDDED,
                    Backends::Servers => SETTLE_SERVERS,
                })
                .await;
                let used = pg_use(db_before, pg_counters(placement.servers.as_ref()).await?);
                if is_import {
                    import_db = used;
                } else {
                    data_db = used;
                }
            }
            runs.push(Run {
                import_first,
                import: import.context("no import")?,
                data: data.context("no data phase")?,
                import_db,
                data_db,
            });
        }
        let final_hwm = worker_memory(&stack)
            .into_iter()
            .map(|(_, hwm)| hwm)
            .collect();
        stack.stop();
        Ok::<_, anyhow::Error>((idle, final_hwm, runs))
    }
    .await;
    running.shutdown().await;
    if !o.keep {
        if let Some(servers) = &placement.servers {
            if let Err(e) = servers.remove().await {
                eprintln!("import-throughput: cleaning up the servers: {e:#}");
            }
        }
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("kept {}", work.display());
    }
    let (idle, final_hwm, runs) = result?;
    Ok(Report {
        options: o.clone(),
        command: command.to_owned(),
        date,
        host: Host::describe(),
        load_before,
        load_after: load_average(),
        total_bytes,
        prewarm_secs,
        idle,
        final_hwm,
        runs,
    })
}

// ------------------------------------------------------------------- report

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

impl Report {
    fn markdown(&self) -> String {
        let o = &self.options;
        let n = o.images as f64;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "#### import-throughput, {} ({:?} backends)\n",
            self.date, o.backends
        );
        let _ = writeln!(md, "Command: `{}`\n", self.command);
        let h = &self.host;
        let _ = writeln!(
            md,
            "- Machine: {} ({} cores{}), {}, {}, kernel {}. Load average before {}, after {}.",
            h.cpu,
            h.cores,
            if h.sha_ni { ", sha_ni" } else { "" },
            h.memory,
            h.os,
            h.kernel,
            self.load_before,
            self.load_after
        );
        let _ = writeln!(md, "- Backends: {}.", o.backends.describe());
        let _ = writeln!(
            md,
            "- Emulated folder: {} images of ~{} KiB (PNG and JPEG in turn), {:.1} MB in all; \
             {} ms added to every emulated request; checksums computed before the runs ({:.1} s). \
             The emulator runs in this process (`bench`).",
            thousands(o.images as u64),
            o.size_kib,
            self.total_bytes as f64 / 1e6,
            o.latency_ms,
            self.prewarm_secs
        );
        let _ = writeln!(
            md,
            "- Workers: {} processes × `IMPORT_WORKER_CONCURRENCY={}` = {} files in flight; \
             `IMPORT_LISTING_CONCURRENCY` default (4); `PROVIDER_REQUESTS_PER_SECOND={}` per \
             worker, so the rate limiter never waits. Services log JSON at `{}` into files.",
            o.workers,
            o.concurrency,
            o.in_flight(),
            PROVIDER_REQUESTS_PER_SECOND,
            o.log
        );
        let _ = writeln!(
            md,
            "- Latency bound = provider requests × {} ms ÷ {}. Data bound = the same {} files \
             pushed by this process straight into storage `POST /internal/ingest` ({} in \
             flight, signed with the import key), measured in the same run. Target: import \
             wall ≤ {TARGET_FACTOR} × the larger.\n",
            o.latency_ms,
            o.in_flight(),
            thousands(o.images as u64),
            o.in_flight()
        );

        let _ = writeln!(md, "| run | first | import wall s | images/s | MB/s | latency bound s | data bound s | wall ÷ larger limit | CPU s ÷ data bound's |");
        let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for (i, r) in self.runs.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2}{} | {:.0} | {:.1} | {:.2} | {:.2} | **{:.2}×** | {:.2}× |",
                i + 1,
                if r.import_first { "import" } else { "data" },
                r.import.wall,
                r.import
                    .server_wall
                    .map(|s| format!(" ({s:.2})"))
                    .unwrap_or_default(),
                n / r.import.wall,
                self.total_bytes as f64 / 1e6 / r.import.wall,
                r.latency_bound(o),
                r.data.wall,
                r.ratio(o),
                r.cpu_ratio()
            );
        }
        let ratio = median(self.runs.iter().map(|r| r.ratio(o)).collect());
        let _ = writeln!(
            md,
            "\n*Import wall*: from the `POST` to the poll ({} ms apart) that saw `completed`; in \
             brackets, `finished_at − created_at` as the service recorded them. Data bound: \
             {:.0} images/s. *CPU s ÷ data bound's*: CPU time of the stack (our processes, and \
             on servers their share of PostgreSQL, RabbitMQ and Garage) during the import over \
             the same during the data bound: what the wall ratio would be with the cores \
             saturated by this stack alone.\n",
            POLL_EVERY.as_millis(),
            median(self.runs.iter().map(|r| n / r.data.wall).collect())
        );

        let _ = writeln!(
            md,
            "Provider requests served by the emulator during each import:\n"
        );
        let _ = writeln!(md, "| run | per route | total | downloads completed |");
        let _ = writeln!(md, "|---:|---|---:|---:|");
        for (i, r) in self.runs.iter().enumerate() {
            let routes: Vec<String> = r
                .import
                .routes
                .iter()
                .map(|(k, v)| format!("{k} {}", thousands(*v)))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                i + 1,
                routes.join(", "),
                thousands(r.import.requests),
                thousands(r.import.downloads_completed)
            );
        }

        let _ = writeln!(md, "\nProgress (`counts.imported` from the polls):\n");
        let _ = writeln!(
            md,
            "| run | s to 10 % | s to 50 % | s to 100 % | images/s 0–10 % | 10–50 % | 50–100 % |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
        for (i, r) in self.runs.iter().enumerate() {
            let at = |f: f64| {
                r.import
                    .progress
                    .iter()
                    .find(|(_, done)| *done as f64 >= f * n)
                    .map_or(f64::NAN, |(t, _)| *t)
            };
            let (t10, t50, t100) = (at(0.1), at(0.5), at(1.0));
            let _ = writeln!(
                md,
                "| {} | {t10:.2} | {t50:.2} | {t100:.2} | {:.0} | {:.0} | {:.0} |",
                i + 1,
                0.1 * n / t10,
                0.4 * n / (t50 - t10),
                0.5 * n / (t100 - t50)
            );
        }

        let _ = writeln!(
            md,
            "\nWorker memory, MiB (`VmRSS`; `VmHWM` = the process's peak so far):\n"
        );
        let mut header = "| worker | idle |".to_owned();
        let mut rule = "|---|---:|".to_owned();
        for r in 0..self.runs.len() {
            for c in CHECKPOINTS {
                let _ = write!(
                    header,
                    " run {} at {} |",
                    r + 1,
                    thousands((c * n).ceil() as u64)
                );
                rule.push_str("---:|");
            }
            let _ = write!(header, " run {} peak sampled |", r + 1);
            rule.push_str("---:|");
        }
        header.push_str(" VmHWM at end |");
        rule.push_str("---:|");
        let _ = writeln!(md, "{header}\n{rule}");
        for w in 0..o.workers {
            let mut row = format!(
                "| {} | {:.1} |",
                w + 1,
                mib(self.idle.get(w).map_or(0, |m| m.0))
            );
            for r in &self.runs {
                for c in 0..CHECKPOINTS.len() {
                    let cell = r
                        .import
                        .checkpoints
                        .get(c)
                        .and_then(|p| p.workers.get(w))
                        .map_or("n/a".to_owned(), |(rss, hwm)| {
                            format!("{:.1} (HWM {:.1})", mib(*rss), mib(*hwm))
                        });
                    let _ = write!(row, " {cell} |");
                }
                let (peak, samples) = r.import.peaks.get(w).copied().unwrap_or((0, 0));
                let _ = write!(row, " {:.1} ({} samples) |", mib(peak), thousands(samples));
            }
            let _ = write!(
                row,
                " {:.1} |",
                mib(self.final_hwm.get(w).copied().unwrap_or(0))
            );
            let _ = writeln!(md, "{row}");
        }
        let _ = writeln!(md);
        for (i, r) in self.runs.iter().enumerate() {
            let marks: Vec<String> = r
                .import
                .checkpoints
                .iter()
                .map(|p| format!("{} at {:.2} s", thousands(p.imported as u64), p.at_secs))
                .collect();
            let _ = writeln!(md, "Run {} memory read at: {}.", i + 1, marks.join(", "));
        }

        let _ = writeln!(
            md,
            "\nCPU time per phase, seconds (user + system from `/proc`; cores = CPU s ÷ wall s; \
             *bench* is this process: the emulator during an import, the ingest client during \
             the data bound; *other* = machine busy time no listed process accounts for):\n"
        );
        let mut groups: Vec<String> = Vec::new();
        for r in &self.runs {
            for cpu in [&r.import.cpu, &r.data.cpu] {
                for (g, _) in &cpu.groups {
                    if !groups.contains(g) {
                        groups.push(g.clone());
                    }
                }
            }
        }
        let _ = write!(md, "| run | phase | wall s |");
        for g in &groups {
            let _ = write!(md, " {g} |");
        }
        let _ = writeln!(md, " other | machine busy (cores) |");
        let _ = write!(md, "|---:|---|---:|");
        for _ in &groups {
            md.push_str("---:|");
        }
        let _ = writeln!(md, "---:|---:|");
        for (i, r) in self.runs.iter().enumerate() {
            for (phase, cpu) in [("import", &r.import.cpu), ("data bound", &r.data.cpu)] {
                let _ = write!(md, "| {} | {phase} | {:.2} |", i + 1, cpu.wall);
                for g in &groups {
                    let _ = write!(md, " {:.2} |", cpu.get(g));
                }
                let _ = writeln!(
                    md,
                    " {:.2} | {:.2} of {:.0} |",
                    cpu.other(),
                    cpu.machine_busy / cpu.wall,
                    cpu.machine_total / cpu.wall
                );
            }
        }
        let _ = writeln!(md, "\nCPU milliseconds per image:\n");
        let _ = writeln!(
            md,
            "| run | phase | storage | import-api | workers | bench | servers | all busy |"
        );
        let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for (i, r) in self.runs.iter().enumerate() {
            for (phase, cpu) in [("import", &r.import.cpu), ("data bound", &r.data.cpu)] {
                let per = |s: f64| s * 1000.0 / n;
                let workers: f64 = cpu
                    .groups
                    .iter()
                    .filter(|(g, _)| g.starts_with("worker"))
                    .map(|(_, s)| s)
                    .sum();
                let servers: f64 = cpu
                    .groups
                    .iter()
                    .filter(|(g, _)| {
                        g.starts_with("postgres (these") || g == "rabbitmq" || g == "garage"
                    })
                    .fold(0.0, |sum, (_, s)| sum + s);
                let servers = match o.backends {
                    Backends::Embedded => "n/a".to_owned(),
                    Backends::Servers => format!("{:.2}", per(servers)),
                };
                let _ = writeln!(
                    md,
                    "| {} | {phase} | {:.2} | {:.2} | {:.2} | {:.2} | {servers} | {:.2} |",
                    i + 1,
                    per(cpu.get("storage")),
                    per(cpu.get("import-api")),
                    per(workers),
                    per(cpu.get("bench")),
                    per(cpu.machine_busy)
                );
            }
        }

        if self.runs.iter().any(|r| r.import_db.is_some()) {
            let _ = writeln!(
                md,
                "\nPostgreSQL work per image (`pg_stat_database` of each database, read {} s \
                 after each phase):\n",
                SETTLE_SERVERS.as_secs()
            );
            let _ = writeln!(
                md,
                "| run | phase | database | {} |",
                PG_COUNTERS.join(" | ")
            );
            let _ = writeln!(md, "|---:|---|---|{}", "---:|".repeat(PG_COUNTERS.len()));
            for (i, r) in self.runs.iter().enumerate() {
                for (phase, used) in [("import", &r.import_db), ("data bound", &r.data_db)] {
                    for (role, c) in used.iter().flatten() {
                        let cells: Vec<String> =
                            c.0.iter()
                                .map(|v| format!("{:.2}", *v as f64 / n))
                                .collect();
                        let _ = writeln!(
                            md,
                            "| {} | {phase} | {role} | {} |",
                            i + 1,
                            cells.join(" | ")
                        );
                    }
                }
            }
        }

        let peak_rss = self
            .runs
            .iter()
            .flat_map(|r| r.import.peaks.iter().map(|(p, _)| *p))
            .chain(self.final_hwm.iter().copied())
            .max()
            .unwrap_or(0);
        let _ = writeln!(md, "\n**Targets**\n");
        let _ = writeln!(
            md,
            "- Import wall ≤ {TARGET_FACTOR} × the larger limit: {} ({:.2}×{}).",
            met(ratio <= TARGET_FACTOR),
            ratio,
            if self.runs.len() > 1 {
                ", median of the runs"
            } else {
                ""
            }
        );
        let _ = writeln!(
            md,
            "- Worker RSS under {TARGET_RSS_MIB} MiB: {} (highest `VmHWM`/sampled `VmRSS` of any \
             worker: {:.1} MiB).",
            met(mib(peak_rss) < TARGET_RSS_MIB),
            mib(peak_rss)
        );
        let growth: Vec<String> = self
            .runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let first = r.import.checkpoints.first()?;
                let last = r.import.checkpoints.last()?;
                let deltas: Vec<String> = first
                    .workers
                    .iter()
                    .zip(&last.workers)
                    .map(|(a, b)| format!("{:+.1}", mib(b.0) - mib(a.0)))
                    .collect();
                Some(format!(
                    "run {}: {} MiB from {} to {} images",
                    i + 1,
                    deltas.join(" / "),
                    thousands(first.imported as u64),
                    thousands(last.imported as u64)
                ))
            })
            .collect();
        let _ = writeln!(
            md,
            "- Worker `VmRSS` growth per worker: {}.",
            growth.join("; ")
        );
        md
    }
}
