//! `upload-url-throughput`: requests per second and latency of the App Service's
//! `POST /uploads` under a real load generator (`wrk`), next to a trivial axum handler
//! served the same way in the same run.
//!
//! One `POST /uploads` is the whole round trip a seller waits for: the seller's JWT is
//! verified, the per-seller rate limiter takes a token, the request is validated, the
//! upload metadata is signed, a signed `POST /internal/presign` goes over loopback HTTP
//! to a real Storage Service, which checks the request signature (a nonce row), checks
//! the metadata token, writes the pending-upload row and mints the upload URL. Both
//! services run on SQLite (WAL) in a fresh work directory. See `bench/README.md`.
//!
//! # Layout (one file)
//! - `main`, [`run`]: the sequence — start the stack, check one real upload, then per
//!   run: warm up and measure the baseline and `POST /uploads`, interleaved; report.
//! - [`Options`]: flags and defaults.
//! - [`Stack`]: Storage Service, App Service and the trivial baseline, in this process,
//!   each on its own loopback port, behind `service_kit::http::{standard_layers, serve}`.
//! - [`wrk`]: the load generator as a child process and what it reports.
//! - [`Cpu`]: CPU time of this process, of `wrk`, and of the whole machine.
//! - [`Report`]: medians, the ratio, the checks, the target, and the Markdown.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::{middleware, Json, Router};
use service_kit::auth::{AuthConfig, DevIssuer, SellerId};
use service_kit::Env;
use sha2::{Digest, Sha256};
use shared_signing::{KeyId, KeyRing};
use tokio::task::JoinHandle;
use vitrine_bench::{command_line, load_average, machine_cpu, median, write_output, Host};

/// Target from issue 3: `POST /uploads` at ≥ 35 % of the trivial handler's requests/s.
const TARGET_PERCENT: f64 = 35.0;
/// The seller every request is made for (one rate-limiter key, like one busy seller).
const SELLER: &str = "bench-seller";
/// Size of the synthetic PNG the requests announce (and the check uploads for real).
const PNG_BYTES: usize = 2048;
/// The rate limit is configured this high so that it runs on every request but never
/// refuses one during a run (default: 60 per minute, bursts of 20).
const UPLOADS_PER_MINUTE: u32 = 100_000_000;
const UPLOADS_BURST: u32 = 10_000_000;
/// The wrk script (`bench/wrk/post-json.lua`); written into the work directory.
const WRK_SCRIPT: &str = include_str!("../../wrk/post-json.lua");

const USAGE: &str = "\
upload-url-throughput — POST /uploads (App Service → Storage Service) under wrk,
next to a trivial axum handler served the same way

USAGE:
    upload-url-throughput [OPTIONS]

OPTIONS:
    --duration SECS      length of each measured wrk run (default: 15)
    --warmup SECS        unrecorded wrk run before each measured one (default: 5)
    --connections N      wrk connections, i.e. requests in flight (default: 32)
    --threads N          wrk threads (default: 1; wrk shares the cores with the services)
    --runs N             measured runs per endpoint, interleaved (default: 3)
    --log MODE           file (default): the services log JSON at `info` (or RUST_LOG), as
                         in production, into services.log in the work directory;
                         off: no subscriber
    --wrk PATH           the wrk binary (default: wrk from PATH; `apt-get install wrk`)
    --work-dir DIR       databases, blobs and the log go in a fresh subdirectory of DIR
                         (default: target/bench-work)
    --output FILE        also write the Markdown report to FILE
    --append             append to --output instead of replacing it
    --keep               keep the work directory
    -h, --help           this text

Build and run: cargo run --release -p vitrine-bench --bin upload-url-throughput";

/// The services' own allocator: they run in this process.
#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let options = match Options::parse(&argv[1..]) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("upload-url-throughput: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&options, &command_line(&argv)) {
        Ok(true) => ExitCode::SUCCESS,
        // The report is printed, but a check failed: the figures are not valid.
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("upload-url-throughput: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogMode {
    File,
    Off,
}

#[derive(Debug, Clone)]
struct Options {
    duration: u64,
    warmup: u64,
    connections: u32,
    threads: u32,
    runs: usize,
    log: LogMode,
    wrk: PathBuf,
    work_dir: PathBuf,
    output: Option<PathBuf>,
    append: bool,
    keep: bool,
}

impl Options {
    /// `None` when help was asked for.
    fn parse(args: &[String]) -> Result<Option<Options>> {
        let mut options = Options {
            duration: 15,
            warmup: 5,
            connections: 32,
            threads: 1,
            runs: 3,
            log: LogMode::File,
            wrk: PathBuf::from("wrk"),
            work_dir: default_work_dir(),
            output: None,
            append: false,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--duration" => options.duration = positive(flag, value()?)?,
                "--warmup" => {
                    let raw = value()?;
                    options.warmup = raw
                        .parse()
                        .with_context(|| format!("--warmup: `{raw}` is not a number"))?;
                }
                "--connections" => options.connections = positive(flag, value()?)?,
                "--threads" => options.threads = positive(flag, value()?)?,
                "--runs" => options.runs = positive(flag, value()?)?,
                "--log" => {
                    options.log = match value()?.as_str() {
                        "file" => LogMode::File,
                        "off" => LogMode::Off,
                        other => bail!("--log: `{other}` is not file or off"),
                    }
                }
                "--wrk" => options.wrk = PathBuf::from(value()?),
                "--work-dir" => options.work_dir = PathBuf::from(value()?),
                "--output" => options.output = Some(PathBuf::from(value()?)),
                "--append" => options.append = true,
                "--keep" => options.keep = true,
                other => bail!("unknown argument `{other}`\n\n{USAGE}"),
            }
        }
        ensure!(
            options.connections >= options.threads,
            "wrk needs at least as many connections as threads"
        );
        Ok(Some(options))
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(flag: &str, raw: &str) -> Result<T> {
    raw.parse::<T>()
        .ok()
        .filter(|n| *n > T::default())
        .with_context(|| format!("{flag}: `{raw}` is not a positive number"))
}

/// `bench-work` in the cargo target directory this binary was built into, else
/// `target/bench-work` under the current directory.
fn default_work_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .filter(|dir| {
            dir.file_name()
                .is_some_and(|n| n == "release" || n == "debug")
        })
        .and_then(|dir| dir.parent().map(|target| target.join("bench-work")))
        .unwrap_or_else(|| PathBuf::from("target/bench-work"))
}

// ---------------------------------------------------------------- the sequence

/// Ok(false): the report was made but a check failed (the figures are not valid).
fn run(options: &Options, command: &str) -> Result<bool> {
    let wrk_version = wrk::version(&options.wrk)?;
    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("creating {}", options.work_dir.display()))?;
    // A subdirectory of our own, so that cleaning up never touches anything else.
    let work = options
        .work_dir
        .join(format!("upload-url-throughput-{}", std::process::id()));
    std::fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    let work = std::fs::canonicalize(&work)?;

    let outcome = measure(options, &work, command, wrk_version);

    if options.keep {
        eprintln!("kept {}", work.display());
    } else {
        if let Err(e) = std::fs::remove_dir_all(&work) {
            eprintln!("could not remove {}: {e}", work.display());
        }
        // Only if nothing else is in it.
        let _ = std::fs::remove_dir(&options.work_dir);
    }

    let report = outcome?;
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(path) = &options.output {
        write_output(path, &markdown, options.append)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(report.valid())
}

fn measure(options: &Options, work: &Path, command: &str, wrk_version: String) -> Result<Report> {
    let load_before = load_average();
    let log_file = work.join("services.log");
    let logs = match options.log {
        LogMode::File => Some(init_tracing(&log_file)?),
        LogMode::Off => None,
    };
    // Production installs the Prometheus recorder when `/metrics` is first scraped;
    // install it now so every request updates real metrics, as it would there.
    let _ = service_kit::metrics::prometheus();

    // The runtime `#[tokio::main]` gives the services: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stack = runtime.block_on(Stack::start(work))?;
    eprintln!(
        "storage {} · app {} · trivial {} · work dir {}",
        stack.storage_url,
        stack.app_url,
        stack.trivial_url,
        work.display()
    );
    runtime.block_on(stack.check_one_upload())?;

    let script = work.join("post-json.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let load = |target: Target, secs: u64| wrk::Load {
        wrk: &options.wrk,
        script: &script,
        url: stack.url(target),
        body: &stack.request_body,
        token: &stack.token,
        threads: options.threads,
        connections: options.connections,
        duration_secs: secs,
    };

    let mut runs = Vec::new();
    for i in 1..=options.runs {
        // Alternate which endpoint goes first, so that neither always follows the other.
        let order = if i % 2 == 1 {
            [Target::Trivial, Target::Uploads]
        } else {
            [Target::Uploads, Target::Trivial]
        };
        for target in order {
            if options.warmup > 0 {
                let warm = wrk::run(&load(target, options.warmup))?;
                eprintln!(
                    "{} warm-up: {:.0} req/s, {} non-2xx",
                    target.label(),
                    warm.rps(),
                    warm.status_errors
                );
            }
            // Requests cut off when the warm-up stopped may still finish server-side.
            std::thread::sleep(Duration::from_millis(300));
            let rows_before = runtime.block_on(stack.pending_rows())?;
            let cpu_before = Cpu::now();
            let result = wrk::run(&load(target, options.duration))?;
            let cpu = Cpu::now().since(&cpu_before);
            // Likewise for the measured run.
            std::thread::sleep(Duration::from_millis(300));
            let rows_after = runtime.block_on(stack.pending_rows())?;
            let measured = Measured {
                target,
                run: i,
                rows_created: rows_after - rows_before,
                cpu,
                load_after: load_average(),
                wrk: result,
            };
            eprintln!("{}", measured.summary_line(options.connections));
            runs.push(measured);
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    // Writes out what the log writer still holds before the file is measured.
    drop(logs);
    let log_bytes = std::fs::metadata(&log_file).map(|m| m.len()).ok();

    Ok(Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: command.to_owned(),
        machine: Host::describe(),
        load_before,
        load_after: load_average(),
        wrk_version,
        options: options.clone(),
        log_bytes,
        runs,
    })
}

/// The services' logging as in production (`service_kit::telemetry::init_tracing`:
/// JSON, `RUST_LOG` or `info`, written by the non-blocking log writer), into `path`
/// instead of stdout, which carries the report.
fn init_tracing(path: &Path) -> Result<service_kit::telemetry::LogGuard> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(service_kit::telemetry::init_tracing_into(
        "upload-url-throughput",
        file,
        service_kit::telemetry::LogFormat::Json,
    ))
}

// ---------------------------------------------------------------- the stack

/// What wrk is pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `POST /trivial`: the baseline.
    Trivial,
    /// `POST /uploads` on the App Service.
    Uploads,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Trivial => "POST /trivial",
            Target::Uploads => "POST /uploads",
        }
    }
}

/// Storage Service, App Service and the baseline, in this process, on loopback ports.
struct Stack {
    storage_url: String,
    app_url: String,
    trivial_url: String,
    /// Storage's database, to count the pending uploads the requests created.
    storage_db: sqlx::AnyPool,
    /// A seller token (HS256, as the dev issuer mints them).
    token: String,
    /// The `POST /uploads` body every request sends (the baseline gets the same).
    request_body: String,
    png: Vec<u8>,
    http: reqwest::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Stack {
    async fn start(work: &Path) -> Result<Stack> {
        let ring = |kid: &str| -> Result<KeyRing> { Ok(KeyRing::generate(KeyId::new(kid)?)) };
        let app_keys = ring("app1")?;
        let jwt_secret = AuthConfig::generate_dev_secret();
        let mut tasks = Vec::new();

        // Storage first: the app needs its URL. Its public URL is where it listens.
        let storage_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let storage_addr = storage_listener.local_addr()?;
        let storage_url = format!("http://{storage_addr}");
        let storage_config = storage_service::config::StorageConfig::from_env(&Env::from_pairs([
            ("STORAGE_BIND", storage_addr.to_string()),
            ("APP_STORAGE_KEYS", app_keys.to_env_value()),
            ("IMPORT_STORAGE_KEYS", ring("imp1")?.to_env_value()),
            ("URL_SIGNING_KEYS", ring("url1")?.to_env_value()),
            ("STORAGE_PUBLIC_URL", storage_url.clone()),
            (
                "BLOB_STORE",
                format!("file://{}", work.join("blobs").display()),
            ),
            (
                "STORAGE_DATABASE_URL",
                format!("sqlite://{}", work.join("storage.db").display()),
            ),
        ]))?;
        let storage = storage_service::build_state(storage_config).await?;
        // As `storage_service::run`: one sweep now, then every minute.
        storage_service::sweeper::sweep_once(&storage).await?;
        tasks.push(tokio::spawn(storage_service::sweeper::run(
            storage.clone(),
            Duration::from_secs(60),
        )));
        let storage_db = storage.repo.pool().clone();
        tasks.push(serve(
            storage_listener,
            storage_service::router(storage),
            "storage",
        ));

        let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let app_addr = app_listener.local_addr()?;
        let app_config = app_service::config::AppConfig::from_env(&Env::from_pairs([
            ("APP_BIND", app_addr.to_string()),
            ("APP_STORAGE_KEYS", app_keys.to_env_value()),
            ("STORAGE_URL", storage_url.clone()),
            (
                "APP_DATABASE_URL",
                format!("sqlite://{}", work.join("app.db").display()),
            ),
            ("JWT_HS256_SECRET", jwt_secret),
            ("UPLOADS_PER_MINUTE", UPLOADS_PER_MINUTE.to_string()),
            ("UPLOADS_BURST", UPLOADS_BURST.to_string()),
            // Long enough for any run; dev login itself stays off, as in production.
            ("AUTH_DEV_TOKEN_TTL_SECS", "86400".to_owned()),
        ]))?;
        let issuer = DevIssuer::from_config(&app_config.auth)
            .context("the app config has no HS256 key to mint a seller token with")?;
        let seller = SellerId::parse(SELLER).map_err(|_| anyhow::anyhow!("bad seller id"))?;
        let token = issuer.mint(&seller).access_token;
        let http_settings = app_config.http.clone();
        let max_json_bytes = app_config.max_json_bytes;
        let app = app_service::build_state(app_config).await?;
        // As `app_service::run`: the rate limiter's housekeeping.
        tasks.push(tokio::spawn(
            app.upload_limiter
                .clone()
                .run_housekeeping(Duration::from_secs(60)),
        ));
        tasks.push(serve(app_listener, app_service::router(app), "app"));

        // The baseline: the app's own HTTP settings, body limit and timeout middleware
        // (as on every App Service JSON route) and the same standard layers.
        let trivial_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let trivial_url = format!("http://{}", trivial_listener.local_addr()?);
        let timeout = http_settings.request_timeout;
        let trivial_routes = Router::new()
            .route("/trivial", post(trivial))
            .layer(DefaultBodyLimit::max(max_json_bytes))
            .layer(middleware::from_fn(move |req, next| {
                service_kit::http::timeout(timeout, req, next)
            }));
        let trivial_router =
            service_kit::http::standard_layers(trivial_routes, "bench-trivial", &http_settings);
        tasks.push(serve(trivial_listener, trivial_router, "trivial"));

        let png = storage_service::inspect::synthetic::png(64, 48, PNG_BYTES);
        let request_body = serde_json::json!({
            "filename": "bench.png",
            "content_type": "image/png",
            "size": png.len(),
            "sha256": hex::encode(Sha256::digest(&png)),
        })
        .to_string();
        let stack = Stack {
            storage_url,
            app_url: format!("http://{app_addr}"),
            trivial_url,
            storage_db,
            token,
            request_body,
            png,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()?,
            tasks,
        };
        for url in [&stack.storage_url, &stack.app_url] {
            stack.wait_ready(url).await?;
        }
        Ok(stack)
    }

    fn url(&self, target: Target) -> String {
        match target {
            Target::Trivial => format!("{}/trivial", self.trivial_url),
            Target::Uploads => format!("{}/uploads", self.app_url),
        }
    }

    async fn wait_ready(&self, base: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.http.get(format!("{base}/readyz")).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            ensure!(Instant::now() < deadline, "{base} not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The request wrk will send gets a `201` and a working upload URL (the PNG is
    /// then uploaded to it), and the baseline answers `200`.
    async fn check_one_upload(&self) -> Result<()> {
        let response = self
            .http
            .post(self.url(Target::Uploads))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(self.request_body.clone())
            .send()
            .await?;
        let status = response.status();
        let ticket: serde_json::Value = response.json().await?;
        ensure!(status == 201, "POST /uploads answered {status}: {ticket}");
        let url = ticket["upload_url"]
            .as_str()
            .context("no upload_url in the answer")?;
        let put = self
            .http
            .put(url)
            .header("content-type", "image/png")
            .body(self.png.clone())
            .send()
            .await?;
        let status = put.status();
        ensure!(
            status == 201,
            "PUT to the upload URL answered {status}: {}",
            put.text().await.unwrap_or_default()
        );
        let trivial = self
            .http
            .post(self.url(Target::Trivial))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(self.request_body.clone())
            .send()
            .await?;
        ensure!(
            trivial.status() == 200,
            "POST /trivial answered {}",
            trivial.status()
        );
        Ok(())
    }

    /// Rows in storage's `pending_uploads` (each `POST /uploads` adds one).
    async fn pending_rows(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pending_uploads")
                .fetch_one(&self.storage_db)
                .await?,
        )
    }
}

/// The baseline handler: takes the body, answers a small JSON object.
async fn trivial(body: Bytes) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true, "received": body.len() }))
}

/// Serves like the services' `run` does: `service_kit::http::serve` (connect info,
/// graceful shutdown), here until the runtime is dropped.
fn serve(listener: tokio::net::TcpListener, router: Router, name: &'static str) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) =
            service_kit::http::serve(listener, router, std::future::pending::<()>()).await
        {
            eprintln!("{name} server stopped: {e}");
        }
    })
}

// ---------------------------------------------------------------- wrk

mod wrk {
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use anyhow::{bail, Context, Result};

    /// One wrk invocation.
    pub struct Load<'a> {
        pub wrk: &'a Path,
        pub script: &'a Path,
        pub url: String,
        pub body: &'a str,
        pub token: &'a str,
        pub threads: u32,
        pub connections: u32,
        pub duration_secs: u64,
    }

    impl Load<'_> {
        /// The arguments, as a person would type them (without the environment).
        pub fn args(&self) -> Vec<String> {
            vec![
                format!("-t{}", self.threads),
                format!("-c{}", self.connections),
                format!("-d{}s", self.duration_secs),
                "--timeout".into(),
                "10s".into(),
                "--latency".into(),
                "-s".into(),
                self.script.display().to_string(),
                self.url.clone(),
            ]
        }
    }

    /// What wrk reported (its `done` hook's `WRK_RESULT` line).
    #[derive(Debug, Clone, Default)]
    pub struct WrkResult {
        pub requests: u64,
        pub duration: Duration,
        /// Answers outside 2xx/3xx.
        pub status_errors: u64,
        /// Connect, read and write errors and timeouts.
        pub socket_errors: u64,
        pub p50_us: u64,
        pub p90_us: u64,
        pub p99_us: u64,
        pub p999_us: u64,
        pub max_us: u64,
        /// wrk's own report.
        pub text: String,
    }

    impl WrkResult {
        pub fn rps(&self) -> f64 {
            self.requests as f64 / self.duration.as_secs_f64()
        }
    }

    /// `wrk -v`'s first line; a clear error when wrk is not installed.
    pub fn version(wrk: &Path) -> Result<String> {
        let out = match Command::new(wrk).arg("-v").output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "`{}` not found: this benchmark needs the wrk load generator \
                 (Debian/Ubuntu: `apt-get install -y wrk`), or pass --wrk PATH",
                wrk.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("running {}", wrk.display())),
        };
        // `wrk -v` prints its version and usage, and exits with 1.
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let first = text.lines().next().unwrap_or("wrk (unknown version)");
        Ok(first
            .split(" Copyright")
            .next()
            .unwrap_or(first)
            .trim()
            .to_owned())
    }

    pub fn run(load: &Load) -> Result<WrkResult> {
        let out = Command::new(load.wrk)
            .args(load.args())
            .env("WRK_BODY", load.body)
            .env("WRK_TOKEN", load.token)
            .output()
            .with_context(|| format!("running {}", load.wrk.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "wrk failed ({}):\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("WRK_RESULT "))
            .with_context(|| format!("no WRK_RESULT line in wrk's output:\n{stdout}"))?;
        let field = |name: &str| -> Result<f64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| format!("no {name} in `{line}`"))
        };
        let int = |name: &str| field(name).map(|v| v as u64);
        let result = WrkResult {
            requests: int("requests")?,
            duration: Duration::from_micros(int("duration_us")?),
            status_errors: int("status_errors")?,
            socket_errors: int("connect_errors")?
                + int("read_errors")?
                + int("write_errors")?
                + int("timeouts")?,
            p50_us: int("p50_us")?,
            p90_us: int("p90_us")?,
            p99_us: int("p99_us")?,
            p999_us: int("p999_us")?,
            max_us: int("max_us")?,
            text: stdout
                .lines()
                .filter(|l| !l.starts_with("WRK_RESULT"))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        if result.requests == 0 {
            bail!("wrk completed no request:\n{stdout}");
        }
        Ok(result)
    }
}

// ---------------------------------------------------------------- CPU accounting

/// CPU time of this process (the servers), of waited-for children (wrk), and of the
/// whole machine (busy = everything but idle and iowait, from `/proc/stat`).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    wall: Duration,
    server: Duration,
    wrk: Duration,
    machine_busy: Duration,
    machine_total: Duration,
    /// Voluntary + involuntary context switches of this process's threads.
    server_switches: u64,
}

impl Cpu {
    fn now() -> Cpu {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        let (machine_busy, machine_total) = machine_cpu();
        let (server, server_switches) = rusage(libc::RUSAGE_SELF);
        Cpu {
            wall: start.elapsed(),
            server,
            wrk: rusage(libc::RUSAGE_CHILDREN).0,
            machine_busy,
            machine_total,
            server_switches,
        }
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            wall: self.wall.saturating_sub(before.wall),
            server: self.server.saturating_sub(before.server),
            wrk: self.wrk.saturating_sub(before.wrk),
            machine_busy: self.machine_busy.saturating_sub(before.machine_busy),
            machine_total: self.machine_total.saturating_sub(before.machine_total),
            server_switches: self.server_switches.saturating_sub(before.server_switches),
        }
    }

    /// Busy share of all cores, in %.
    fn machine_busy_percent(&self) -> f64 {
        100.0 * self.machine_busy.as_secs_f64() / self.machine_total.as_secs_f64().max(1e-9)
    }

    /// CPU used by neither this process nor wrk, in cores (other processes, the kernel
    /// outside both).
    fn others_cores(&self) -> f64 {
        let ours = self.server + self.wrk;
        self.machine_busy.saturating_sub(ours).as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// (user + system CPU time, voluntary + involuntary context switches).
fn rusage(who: libc::c_int) -> (Duration, u64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return (Duration::ZERO, 0);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        tv(usage.ru_utime) + tv(usage.ru_stime),
        (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
    )
}

// ---------------------------------------------------------------- report

/// One measured wrk run.
struct Measured {
    target: Target,
    run: usize,
    wrk: wrk::WrkResult,
    /// Pending-upload rows storage gained during the run.
    rows_created: i64,
    cpu: Cpu,
    load_after: String,
}

impl Measured {
    fn summary_line(&self, connections: u32) -> String {
        let w = &self.wrk;
        format!(
            "{} run {}: {:.0} req/s, p50 {} p99 {}; {} requests, {} non-2xx, {} socket errors, {} rows{}; CPU µs/request: server {:.0}, wrk {:.0}; machine {:.0}% busy",
            self.target.label(),
            self.run,
            w.rps(),
            ms(w.p50_us),
            ms(w.p99_us),
            w.requests,
            w.status_errors,
            w.socket_errors,
            self.rows_created,
            self.check_failure(connections)
                .map(|why| format!(" — INVALID: {why}"))
                .unwrap_or_default(),
            self.cpu_us_per_request(self.cpu.server),
            self.cpu_us_per_request(self.cpu.wrk),
            self.cpu.machine_busy_percent(),
        )
    }

    fn cpu_us_per_request(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.wrk.requests.max(1) as f64
    }

    /// Why this run's figures do not count, if they do not.
    fn check_failure(&self, connections: u32) -> Option<String> {
        let w = &self.wrk;
        if w.status_errors > 0 {
            return Some(format!("{} answers outside 2xx/3xx", w.status_errors));
        }
        if w.socket_errors > 0 {
            return Some(format!("{} socket errors or timeouts", w.socket_errors));
        }
        if self.target == Target::Uploads {
            let answered = w.requests as i64;
            // Every 2xx is a row; requests cut off when wrk stopped may add up to one
            // row per connection without being counted as answered.
            if self.rows_created < answered || self.rows_created > answered + connections as i64 {
                return Some(format!(
                    "{} pending-upload rows for {answered} answers",
                    self.rows_created
                ));
            }
        } else if self.rows_created != 0 {
            return Some(format!(
                "{} pending-upload rows during the baseline",
                self.rows_created
            ));
        }
        None
    }
}

struct Report {
    date: String,
    command: String,
    machine: Host,
    load_before: String,
    load_after: String,
    wrk_version: String,
    options: Options,
    log_bytes: Option<u64>,
    runs: Vec<Measured>,
}

/// Medians over the runs of one endpoint.
struct Summary {
    runs: usize,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    server_us: f64,
    wrk_us: f64,
}

impl Report {
    fn of(&self, target: Target) -> impl Iterator<Item = &Measured> {
        self.runs.iter().filter(move |m| m.target == target)
    }

    fn summary(&self, target: Target) -> Summary {
        let pick = |f: &dyn Fn(&Measured) -> f64| median(self.of(target).map(f).collect());
        Summary {
            runs: self.of(target).count(),
            rps: pick(&|m| m.wrk.rps()),
            p50_us: pick(&|m| m.wrk.p50_us as f64),
            p99_us: pick(&|m| m.wrk.p99_us as f64),
            server_us: pick(&|m| m.cpu_us_per_request(m.cpu.server)),
            wrk_us: pick(&|m| m.cpu_us_per_request(m.cpu.wrk)),
        }
    }

    /// Ratio of each run's uploads rps to the baseline of the same run, in %.
    fn pair_ratios(&self) -> Vec<f64> {
        self.of(Target::Uploads)
            .filter_map(|u| {
                self.of(Target::Trivial)
                    .find(|t| t.run == u.run)
                    .map(|t| 100.0 * u.wrk.rps() / t.wrk.rps())
            })
            .collect()
    }

    fn invalid_runs(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter_map(|m| {
                m.check_failure(self.options.connections)
                    .map(|why| format!("{} run {}: {why}", m.target.label(), m.run))
            })
            .collect()
    }

    fn valid(&self) -> bool {
        self.invalid_runs().is_empty()
    }

    fn markdown(&self) -> String {
        let o = &self.options;
        let trivial = self.summary(Target::Trivial);
        let uploads = self.summary(Target::Uploads);
        let ratio = 100.0 * uploads.rps / trivial.rps;
        let pairs = self.pair_ratios();
        let (pair_min, pair_max) = pairs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });

        let mut md = String::new();
        let _ = writeln!(md, "#### Run of {}\n", self.date);
        md.push_str(
            "| Endpoint | Runs | Requests/s (median) | p50 ms | p99 ms | % of trivial | server CPU µs/request | wrk CPU µs/request |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (label, s, pct) in [
            ("`POST /trivial` (baseline)", &trivial, 100.0),
            ("`POST /uploads`", &uploads, ratio),
        ] {
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {:.2} | {:.2} | {pct:.0}% | {:.0} | {:.0} |",
                s.runs,
                thousands(s.rps),
                s.p50_us / 1000.0,
                s.p99_us / 1000.0,
                s.server_us,
                s.wrk_us,
            );
        }
        let met = if ratio >= TARGET_PERCENT {
            "met"
        } else {
            "not met"
        };
        let _ = writeln!(
            md,
            "\nTarget: `POST /uploads` at ≥ {TARGET_PERCENT:.0}% of the trivial handler's \
             requests per second: **{met}** ({ratio:.0}% of the medians; {pair_min:.0}–{pair_max:.0}% \
             run by run).\n"
        );
        // With the cores saturated and nothing else running, requests/s ≈ cores / CPU per
        // request (servers + wrk): a ratio that other processes' load disturbs less.
        let cpu_ratio =
            100.0 * (trivial.server_us + trivial.wrk_us) / (uploads.server_us + uploads.wrk_us);
        let _ = writeln!(
            md,
            "CPU-bound estimate of the same ratio, from CPU time per request (servers + wrk, \
             medians): {cpu_ratio:.0}%. It is what the ratio tends to when the two cores are \
             saturated by these processes alone.\n"
        );
        let invalid = self.invalid_runs();
        if invalid.is_empty() {
            let answered: u64 = self.of(Target::Uploads).map(|m| m.wrk.requests).sum();
            let rows: i64 = self.of(Target::Uploads).map(|m| m.rows_created).sum();
            let _ = writeln!(
                md,
                "Checks: **passed**. No answer outside 2xx and no socket error in any run; the \
                 measured `POST /uploads` runs got {answered} answers and storage gained {rows} \
                 pending-upload rows (rows may exceed answers by requests in flight when wrk \
                 stopped, at most one per connection).\n"
            );
        } else {
            md.push_str("Checks: **FAILED** — these figures are not valid:\n\n");
            for line in &invalid {
                let _ = writeln!(md, "- {line}");
            }
            md.push('\n');
        }

        md.push_str(
            "Requests/s = answers counted by wrk / its run time. Latencies are wrk's (from \
             sending a request to its full answer, per connection; a closed loop, so queueing \
             shows up in the latency, not as lost requests). *Server CPU* is this process's \
             CPU time (all services and the baseline share it) per request; *wrk CPU* the load \
             generator's.\n\n",
        );

        md.push_str("<details><summary>Every run</summary>\n\n");
        md.push_str(
            "| Endpoint | Run | Requests | Requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | non-2xx | socket errors | rows created | server CPU µs/req | server context switches/req | wrk CPU µs/req | other CPU, cores | machine busy | load after |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for m in &self.runs {
            let w = &m.wrk;
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.0} | {:.2} | {:.0}% | {} |",
                m.target.label(),
                m.run,
                w.requests,
                thousands(w.rps()),
                ms(w.p50_us),
                ms(w.p90_us),
                ms(w.p99_us),
                ms(w.p999_us),
                ms(w.max_us),
                w.status_errors,
                w.socket_errors,
                m.rows_created,
                m.cpu_us_per_request(m.cpu.server),
                m.cpu.server_switches as f64 / w.requests.max(1) as f64,
                m.cpu_us_per_request(m.cpu.wrk),
                m.cpu.others_cores(),
                m.cpu.machine_busy_percent(),
                m.load_after,
            );
        }
        md.push_str(
            "\n*Server context switches*: voluntary + involuntary, all threads of this process \
             (`getrusage`), per request. *Other CPU*: machine busy time (`/proc/stat`) minus this process and wrk, per \
             second of the run: what other processes took from the two cores.\n\n",
        );
        if let Some(last) = self.runs.last() {
            let _ = writeln!(
                md,
                "wrk's own report of the last run ({}):\n\n```\n{}\n```\n",
                last.target.label(),
                last.wrk.text.trim_end()
            );
        }
        md.push_str("</details>\n\n");

        let m = &self.machine;
        md.push_str("Setup:\n\n");
        let _ = writeln!(md, "- CPU: {} ({} logical cores)", m.cpu, m.cores);
        let _ = writeln!(
            md,
            "- Memory: {}; OS / kernel: {} / {}",
            m.memory, m.os, m.kernel
        );
        let _ = writeln!(
            md,
            "- Load average (1/5/15 min): {} before, {} after",
            self.load_before, self.load_after
        );
        let _ = writeln!(
            md,
            "- Load generator: {}, `-t{} -c{} -d{}s --timeout 10s --latency -s bench/wrk/post-json.lua`, \
             after a {} s warm-up run per measured run; the same script, body and `Authorization` \
             header for both endpoints; wrk runs on the same machine and its CPU comes out of \
             the same two cores",
            self.wrk_version, o.threads, o.connections, o.duration, o.warmup
        );
        let _ = writeln!(
            md,
            "- Order: {} runs per endpoint, interleaved (odd runs baseline first, even runs \
             `POST /uploads` first)",
            o.runs
        );
        md.push_str(
            "- Servers: Storage Service, App Service and the baseline in one process (this \
             benchmark, release build), one multi-threaded tokio runtime with one worker per \
             core (what `#[tokio::main]` gives each service), each on its own loopback port, \
             served by `service_kit::http::serve` behind `service_kit::http::standard_layers`; \
             app → storage is real HTTP/1.1 over loopback (the app's pooled reqwest client)\n",
        );
        md.push_str(
            "- Baseline: `POST /trivial` reads the body and answers `{\"ok\":true,…}` (200), \
             with the App Service's body limit and per-route timeout middleware and the same \
             standard layers, on the same runtime\n",
        );
        let _ = writeln!(
            md,
            "- Rate limiter on: `UPLOADS_PER_MINUTE={UPLOADS_PER_MINUTE}`, \
             `UPLOADS_BURST={UPLOADS_BURST}` — every request goes through it for one seller, \
             none is refused"
        );
        md.push_str(
            "- Databases: SQLite files (WAL, `synchronous = NORMAL`; pools of 4 for reads, and \
             storage's writes on one connection of their own, `service_kit::db::Writer`) in \
             the work directory; storage's sweeper and the limiter's housekeeping run as in \
             `run()`\n",
        );
        match (o.log, self.log_bytes) {
            (LogMode::File, bytes) => {
                let _ = writeln!(
                    md,
                    "- Logging: JSON at `{}` as the services log in production (formatted on the \
                     request's thread, written by the non-blocking log writer), into a file \
                     ({} written); Prometheus recorder installed",
                    service_kit::telemetry::log_filter(),
                    bytes.map_or_else(
                        || "size unknown".to_owned(),
                        |b| format!("{:.0} MB", b as f64 / 1e6)
                    )
                );
            }
            (LogMode::Off, _) => md.push_str(
                "- Logging: off (`--log off`, no tracing subscriber); Prometheus recorder installed\n",
            ),
        }
        let _ = writeln!(md, "\nCommand: `{}`\n", self.command);
        md
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// `12,345`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
