//! `load` (issue 9): the embedded stack under many clients at once, on demand.
//!
//! 1. **Uploads**: `--uploaders` (200) clients, each its own seller, each repeating the
//!    whole pre-signed flow for `--upload-secs` (60): `POST /uploads`, `PUT` of a
//!    `--size` (5 MiB) PNG to the upload URL, `POST /product`; `--upload-rounds` (2) times
//!    against the same processes. After each round: temp files left in storage's
//!    `.incoming/`, pending uploads not completed, and storage's RSS before, at its peak
//!    and after (stable: a later round peaks and settles no higher than the first).
//! 2. **Readers**: `--rows` (100,000) images seeded straight into the import database (and
//!    storage's, so that every listed image gets its signed URL) for one seller, then
//!    `--readers` (500) clients paging through `GET /images` (`limit=50`, following
//!    `next_cursor` for up to 20 pages, then from the start) for `--read-secs` (30), twice:
//!    - **paced**: each reader asks for its next page `--reader-interval-ms` (1000) after
//!      asking for the last one, the way a person scrolls a gallery: 500 readers offer
//!      500 pages/s. This is the latency a reader sees (the issue's p99 target);
//!    - **closed loop**: each reader asks again as soon as it has its answer, so 500
//!      requests are always outstanding. This gives the stack's throughput; its latency
//!      is queueing (Little's law: 500 ÷ pages per second).
//!
//!    Each phase also counts import-api's calls to storage for signed URLs (from its
//!    `/metrics`): a page's URLs are signed once and reused while fresh, so most pages
//!    after the first pass are answered from the import database alone.
//!
//! Every request's latency is recorded; the report gives count, errors, p50 and p99 per
//! endpoint, the machine and its load average. It runs the release `vitrine` next to
//! itself (or `--vitrine PATH`) as `vitrine up` on free loopback ports, in a temp data
//! dir under `target/bench-work/`, with the per-seller upload limit raised out of the way.
//!
//! ```sh
//! cargo build --release -p vitrine -p vitrine-bench --bin vitrine --bin load
//! target/release/load --output bench/results/load.md
//! ```

#[path = "../rss.rs"]
#[allow(dead_code)]
mod rss;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::Digest;
use vitrine_bench::{load_average, machine_cpu, Host};

struct Args {
    vitrine: PathBuf,
    uploaders: usize,
    upload_secs: u64,
    upload_rounds: u32,
    size: usize,
    readers: usize,
    read_secs: u64,
    reader_interval: Duration,
    rows: usize,
    output: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let exe = std::env::current_exe()?;
    let mut args = Args {
        vitrine: exe.with_file_name("vitrine"),
        uploaders: 200,
        upload_secs: 60,
        upload_rounds: 2,
        size: 5 << 20,
        readers: 500,
        read_secs: 30,
        reader_interval: Duration::from_millis(1000),
        rows: 100_000,
        output: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--vitrine" => args.vitrine = value()?.into(),
            "--uploaders" => args.uploaders = value()?.parse()?,
            "--upload-secs" => args.upload_secs = value()?.parse()?,
            "--upload-rounds" => args.upload_rounds = value()?.parse()?,
            "--size-mib" => args.size = value()?.parse::<usize>()? << 20,
            "--readers" => args.readers = value()?.parse()?,
            "--read-secs" => args.read_secs = value()?.parse()?,
            "--reader-interval-ms" => {
                args.reader_interval = Duration::from_millis(value()?.parse()?)
            }
            "--rows" => args.rows = value()?.parse()?,
            "--output" => args.output = Some(value()?.into()),
            "--help" | "-h" => {
                println!(
                    "load [--vitrine PATH] [--uploaders 200] [--upload-secs 60] [--upload-rounds 2] [--size-mib 5] \
                     [--readers 500] [--read-secs 30] [--reader-interval-ms 1000] [--rows 100000] [--output FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Latencies (µs) and errors per endpoint.
#[derive(Default)]
struct Stats {
    latencies: BTreeMap<&'static str, Vec<u64>>,
    errors: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Stats>>;

fn record(stats: &Shared, endpoint: &'static str, started: Instant, outcome: Result<(), String>) {
    let mut stats = stats.lock().expect("stats");
    stats
        .latencies
        .entry(endpoint)
        .or_default()
        .push(started.elapsed().as_micros() as u64);
    if let Err(e) = outcome {
        *stats.errors.entry(format!("{endpoint}: {e}")).or_default() += 1;
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn table(stats: &Stats, secs: u64) -> String {
    let mut out = String::from(
        "| endpoint | requests | per second | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n",
    );
    for (endpoint, values) in &stats.latencies {
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let errors: u64 = stats
            .errors
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{endpoint}:")))
            .map(|(_, n)| n)
            .sum();
        out.push_str(&format!(
            "| `{endpoint}` | {} | {:.1} | {errors} | {:.1} | {:.1} | {:.1} |\n",
            sorted.len(),
            sorted.len() as f64 / secs as f64,
            percentile(&sorted, 0.5) as f64 / 1000.0,
            percentile(&sorted, 0.99) as f64 / 1000.0,
            sorted.last().copied().unwrap_or(0) as f64 / 1000.0,
        ));
    }
    for (error, n) in &stats.errors {
        out.push_str(&format!("\nerror ×{n}: {error}"));
    }
    out
}

/// `status` and JSON of an answer; an error string unless `want`.
async fn answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Result<reqwest::Response>,
    want: u16,
) -> std::result::Result<T, String> {
    let response = response.map_err(|e| format!("transport: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{status}, body: {e}"))?;
    if status != want {
        let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Err(format!("{status} {}", error["error"]["code"]));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{status}, not the expected JSON: {e}"))
}

/// What a reader needs of a `GET /images` page (parsing only this keeps the client's CPU,
/// which shares the 2 cores with the stack, small).
#[derive(serde::Deserialize)]
struct ImagePage {
    items: Vec<serde::de::IgnoredAny>,
    next_cursor: Option<String>,
}

/// A seller token from the app's dev login (`POST /auth/token`).
async fn dev_token(
    http: &reqwest::Client,
    app: &str,
    seller: &str,
) -> std::result::Result<String, String> {
    let issued = answer::<Value>(
        http.post(format!("{app}/auth/token"))
            .json(&json!({ "seller_id": seller }))
            .send()
            .await,
        201,
    )
    .await?;
    Ok(issued["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn uploader(
    http: reqwest::Client,
    app: String,
    seller: String,
    bytes: bytes::Bytes,
    sha: String,
    until: Instant,
    stats: Shared,
) {
    let token = match dev_token(&http, &app, &seller).await {
        Ok(token) => token,
        Err(e) => {
            record(&stats, "POST /auth/token", Instant::now(), Err(e));
            return;
        }
    };
    while Instant::now() < until {
        let started = Instant::now();
        let ticket = answer::<Value>(
            http.post(format!("{app}/uploads"))
                .bearer_auth(&token)
                .json(&json!({
                    "filename": "load.png",
                    "content_type": "image/png",
                    "size": bytes.len(),
                    "sha256": sha,
                }))
                .send()
                .await,
            201,
        )
        .await;
        let ok = ticket.as_ref().map(|_| ()).map_err(Clone::clone);
        record(&stats, "POST /uploads", started, ok);
        let Ok(ticket) = ticket else { continue };
        let started = Instant::now();
        let mut put = http
            .put(ticket["upload_url"].as_str().unwrap_or_default())
            .body(bytes.clone());
        for (name, value) in ticket["headers"].as_object().into_iter().flatten() {
            put = put.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        let stored = answer::<Value>(put.send().await, 201).await;
        let ok = stored.as_ref().map(|_| ()).map_err(Clone::clone);
        record(&stats, "PUT /uploads/{id}", started, ok);
        let Ok(stored) = stored else { continue };
        let started = Instant::now();
        let product = answer::<Value>(
            http.post(format!("{app}/product"))
                .bearer_auth(&token)
                .json(&json!({
                    "name": "Load shoe",
                    "description": "",
                    "price_minor": 100,
                    "currency": "EUR",
                    "image_id": stored["image_id"],
                }))
                .send()
                .await,
            201,
        )
        .await;
        record(&stats, "POST /product", started, product.map(|_| ()));
    }
}

/// One reader: pages through `GET /images` until `until`. With a `pace`, it starts after
/// `pace.0` and asks for a page every `pace.1`; without, as soon as it has an answer.
async fn reader(
    http: reqwest::Client,
    import: String,
    token: String,
    until: Instant,
    pace: Option<(Duration, Duration)>,
    stats: Shared,
) {
    let mut cursor = String::new();
    let mut pages = 0;
    let mut next = Instant::now() + pace.map_or(Duration::ZERO, |(offset, _)| offset);
    while Instant::now() < until {
        if let Some((_, interval)) = pace {
            tokio::time::sleep_until(next.into()).await;
            next += interval;
        }
        let started = Instant::now();
        let page = answer::<ImagePage>(
            http.get(format!("{import}/images?limit=50&cursor={cursor}"))
                .bearer_auth(&token)
                .send()
                .await,
            200,
        )
        .await
        .and_then(|page| match page.items.len() {
            50 => Ok(page),
            n => Err(format!("a page of {n} images, not 50")),
        });
        let ok = page.as_ref().map(|_| ()).map_err(Clone::clone);
        record(&stats, "GET /images", started, ok);
        pages += 1;
        cursor = match page.ok().and_then(|p| p.next_cursor) {
            Some(next) if pages < 20 => next,
            _ => {
                pages = 0;
                String::new()
            }
        };
    }
}

/// How many `POST /internal/download-urls` calls import-api has made, from its `/metrics`.
async fn download_url_calls(http: &reqwest::Client, import: &str) -> Result<u64> {
    let text = http
        .get(format!("{import}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|line| {
            line.starts_with("import_storage_call_seconds_count")
                && line.contains(r#"call="download-urls""#)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Seeds `rows` images of `seller` into both databases; returns the import-side token.
async fn seed_rows(data: &Path, seller: &str, rows: usize) -> Result<()> {
    use sqlx::Connection;
    let mut import =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", data.join("import.db").display()))
            .await?;
    let mut storage =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", data.join("storage.db").display()))
            .await?;
    let now = chrono::Utc::now().timestamp();
    let mut tx_i = import.begin().await?;
    let mut tx_s = storage.begin().await?;
    for n in 0..rows {
        let id = uuid::Uuid::now_v7().to_string();
        let sha = format!("{:064x}", n);
        let key = format!("images/{}/{id}", &id[id.len() - 2..]);
        sqlx::query(
            "INSERT INTO images (image_id, seller_id, source, source_id, checksum, name, size, \
             mime_type, width, height, sha256, storage_path, job_id, item_id, imported_at) \
             VALUES (?, ?, 'google_drive', ?, ?, ?, 4096, 'image/png', 64, 48, ?, ?, 'seed', 'seed', ?)",
        )
        .bind(&id)
        .bind(seller)
        .bind(format!("file-{n}"))
        .bind(&sha)
        .bind(format!("IMG_{n:06}.png"))
        .bind(&sha)
        .bind(&key)
        .bind(now)
        .execute(&mut *tx_i)
        .await?;
        sqlx::query(
            "INSERT INTO images (id, owner_id, state, source, filename, content_type, size, sha256, \
             width, height, storage_key, created_at, completed_at) \
             VALUES (?, ?, 'complete', 'google-drive', ?, 'image/png', 4096, ?, 64, 48, ?, ?, ?)",
        )
        .bind(&id)
        .bind(seller)
        .bind(format!("IMG_{n:06}.png"))
        .bind(&sha)
        .bind(&key)
        .bind(now)
        .bind(now)
        .execute(&mut *tx_s)
        .await?;
    }
    tx_i.commit().await?;
    tx_s.commit().await?;
    Ok(())
}

/// The pid of `vitrine serve storage`, a child of `launcher`.
fn storage_pid(launcher: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == launcher && cmdline.ends_with(b"serve\0storage\0")).then_some(pid)
    })
}

/// Free space of the file system holding `path`, in GiB (0 if it cannot be read).
fn free_gib(path: &Path) -> f64 {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return 0.0;
    };
    // SAFETY: a valid C string and a zeroed out-parameter of the right type.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return 0.0;
    }
    (stat.f_bavail as f64 * stat.f_frsize as f64) / f64::from(1u32 << 30)
}

fn rss_mib(pid: u32) -> f64 {
    rss::status_kib(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0
}

struct Stack {
    child: Child,
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let root = std::env::current_dir()?;
    let data = root
        .join("target/bench-work")
        .join(format!("load-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let binds: BTreeMap<&str, String> = [
        "WEB_BIND",
        "APP_BIND",
        "STORAGE_BIND",
        "IMPORT_BIND",
        "IMPORT_WORKER_METRICS_BIND",
    ]
    .into_iter()
    .map(|v| (v, format!("127.0.0.1:{}", free_port())))
    .collect();
    let child = Command::new(&args.vitrine)
        .arg("up")
        .env("VITRINE_DATA_DIR", &data)
        .env("RUST_LOG", "warn")
        .env("UPLOADS_PER_MINUTE", "1000000")
        .env("UPLOADS_BURST", "1000000")
        .envs(&binds)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(data.join("launcher.log"))?)
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("run {}", args.vitrine.display()))?;
    let stack = Stack { child };
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1000)
        .timeout(Duration::from_secs(120))
        .build()?;
    let app = format!("http://{}", binds["APP_BIND"]);
    let import = format!("http://{}", binds["IMPORT_BIND"]);
    for url in [&app, &import] {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("{url} not ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let storage = storage_pid(stack.child.id()).context("storage process")?;
    let host = Host::describe();
    let mut report = format!(
        "# Load: {} uploaders × {} MiB for {} s × {} rounds, {} readers over {} rows for {} s\n\n\
         {} ({} cores, {}), {}, kernel {}; `{} up` with the embedded defaults (SQLite, \
         local disk, SQL queue), on loopback.\n\n",
        args.uploaders,
        args.size >> 20,
        args.upload_secs,
        args.upload_rounds,
        args.readers,
        args.rows,
        args.read_secs,
        host.cpu,
        host.cores,
        host.memory,
        host.os,
        host.kernel,
        args.vitrine.display()
    );

    // 1. Uploads, in rounds against the same storage process: RSS is stable when a later
    // round peaks no higher than the first and falls back as far after it.
    let bytes = bytes::Bytes::from(storage_service::inspect::synthetic::png(
        1024, 1024, args.size,
    ));
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    report.push_str("## Uploads (POST /uploads → PUT → POST /product)\n\n");
    let mut rss_rows = String::from(
        "| round | storage RSS before, MiB | peak, MiB | 2 s after, MiB | temp files after | pending uploads by state after |\n|---|---|---|---|---|---|\n",
    );
    for round in 1..=args.upload_rounds {
        // A round stores tens of GB (about 120 uploads/s × 5 MiB × 60 s here): the bytes
        // of the round before are deleted (this run's own data dir; nothing reads them
        // again), and a round does not start without room for 150 uploads/s.
        if round > 1 {
            let _ = std::fs::remove_dir_all(data.join("blobs/images"));
        }
        let needed = 150.0 * args.size as f64 * args.upload_secs as f64 / f64::from(1u32 << 30);
        let free = free_gib(&data);
        if args.uploaders > 0 && free < needed {
            bail!(
                "only {free:.0} GiB free under {}: an upload round may store {needed:.0} GiB \
                 (fewer --upload-secs or a smaller --size-mib need less)",
                data.display()
            );
        }
        let rss_before = rss_mib(storage);
        let load_before = load_average();
        let stats: Shared = Arc::default();
        let until = Instant::now() + Duration::from_secs(args.upload_secs);
        let peak = Arc::new(Mutex::new(rss_before));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    let now = rss_mib(storage);
                    {
                        let mut p = peak.lock().expect("peak");
                        *p = p.max(now);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let tasks: Vec<_> = (0..args.uploaders)
            .map(|i| {
                tokio::spawn(uploader(
                    http.clone(),
                    app.clone(),
                    format!("load-{i}"),
                    bytes.clone(),
                    sha.clone(),
                    until,
                    stats.clone(),
                ))
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        sampler.abort();
        let load_after = load_average();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_after = rss_mib(storage);
        let temp_files = std::fs::read_dir(data.join("blobs/.incoming"))
            .map(|d| d.count())
            .unwrap_or(0);
        let pending: Vec<(String, i64)> = {
            use sqlx::Connection;
            let mut db = sqlx::SqliteConnection::connect(&format!(
                "sqlite://{}",
                data.join("storage.db").display()
            ))
            .await?;
            sqlx::query_as("SELECT state, COUNT(*) FROM pending_uploads GROUP BY state")
                .fetch_all(&mut db)
                .await?
        };
        let stats = std::mem::take(&mut *stats.lock().expect("stats"));
        report.push_str(&format!(
            "### Round {round} of {}\n\n{}\n\n- load average before {load_before}, at the end {load_after}\n\n",
            args.upload_rounds,
            table(&stats, args.upload_secs),
        ));
        rss_rows.push_str(&format!(
            "| {round} | {rss_before:.0} | {:.0} | {rss_after:.0} | {temp_files} | {pending:?} |\n",
            *peak.lock().expect("peak"),
        ));
        eprint!("{report}");
    }
    report.push_str(&format!("### Storage memory and leftovers\n\n{rss_rows}\n"));

    // 2. Readers.
    let seller = "load-reader";
    let seeded = Instant::now();
    seed_rows(&data, seller, args.rows).await?;
    let seed_secs = seeded.elapsed().as_secs_f64();
    let token = dev_token(&http, &app, seller)
        .await
        .map_err(anyhow::Error::msg)?;
    report.push_str(&format!(
        "## Readers (GET /images?limit=50, keyset pages)\n\n\
         {} rows seeded into import.db and storage.db in {seed_secs:.1} s (not imported: an \
         import of 100,000 files takes minutes here).\n\n",
        args.rows
    ));
    let interval = args.reader_interval;
    let readers = args.readers.max(1) as u32;
    for (title, paced) in [
        (
            format!(
                "Paced: each reader asks for a page every {} ms",
                interval.as_millis()
            ),
            true,
        ),
        (
            "Closed loop: each reader asks again as soon as it has its answer".to_owned(),
            false,
        ),
    ] {
        let load_before = load_average();
        let cpu_before = machine_cpu();
        let url_calls_before = download_url_calls(&http, &import).await?;
        let stats: Shared = Arc::default();
        let until = Instant::now() + Duration::from_secs(args.read_secs);
        let tasks: Vec<_> = (0..readers)
            .map(|i| {
                let pace = paced.then(|| (interval * i / readers, interval));
                tokio::spawn(reader(
                    http.clone(),
                    import.clone(),
                    token.clone(),
                    until,
                    pace,
                    stats.clone(),
                ))
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let load_after = load_average();
        let cpu_after = machine_cpu();
        let url_calls = download_url_calls(&http, &import).await? - url_calls_before;
        let busy_cores = (cpu_after.0 - cpu_before.0).as_secs_f64()
            / (cpu_after.1 - cpu_before.1).as_secs_f64()
            * host.cores as f64;
        let stats = std::mem::take(&mut *stats.lock().expect("stats"));
        let pages = stats.latencies.get("GET /images").map_or(0, Vec::len);
        report.push_str(&format!(
            "### {title}\n\n{}\n\n- machine busy {busy_cores:.2} of {} cores (the stack, this \
             client and anything else running); load average before {load_before}, at the \
             end {load_after}\n\
             - calls from import-api to storage for signed URLs: {url_calls} for {pages} pages \
             (a page's URLs are reused while they have half their lifetime left)\n\n",
            table(&stats, args.read_secs),
            host.cores,
        ));
        eprint!("{report}");
    }
    println!("{report}");
    if let Some(path) = &args.output {
        vitrine_bench::write_output(path, &report, false)?;
    }
    drop(stack);
    // The services' log outlives the data dir (the images would not fit twice).
    let log = data.with_extension("log");
    let _ = std::fs::copy(data.join("launcher.log"), &log);
    eprintln!("services' log: {}", log.display());
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
