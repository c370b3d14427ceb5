//! Runs every service as its own child process on loopback.
//!
//! Each child is this same binary (`vitrine serve <service>`) with the embedded
//! defaults in its environment: SQLite files and blobs under the data directory, keys
//! generated on first run. Variables already set in the environment win, so any
//! default can be overridden. A child that exits is restarted with exponential backoff;
//! Ctrl-C (or SIGTERM) stops them all gracefully. With `--demo`, the provider emulator
//! runs in this process first (see [`crate::demo`]) and the import services point at it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One service the launcher runs.
struct ServiceSpec {
    /// Name used in log prefixes and `vitrine serve <name>`.
    name: &'static str,
    /// Variable holding its bind address, and the default.
    bind_var: &'static str,
    default_bind: &'static str,
    /// The generated keys (from `<data>/keys.env`) this service holds; no other key
    /// reaches it.
    keys: &'static [&'static str],
    /// Variables (beyond keys) with their embedded defaults.
    defaults: Vec<(&'static str, String)>,
}

impl ServiceSpec {
    fn bind(&self) -> String {
        bind_of(self.bind_var, self.default_bind)
    }
}

fn bind_of(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

const STORAGE_BIND: (&str, &str) = ("STORAGE_BIND", "127.0.0.1:8082");
const APP_BIND: (&str, &str) = ("APP_BIND", "127.0.0.1:8081");
const IMPORT_BIND: (&str, &str) = ("IMPORT_BIND", "127.0.0.1:8083");
/// The worker serves only `/healthz`, `/readyz` and `/metrics`.
const IMPORT_WORKER_BIND: (&str, &str) = ("IMPORT_WORKER_METRICS_BIND", "127.0.0.1:8084");
const WEB_BIND: (&str, &str) = ("WEB_BIND", "127.0.0.1:8080");
const AUDIT_BIND: (&str, &str) = ("AUDIT_BIND", "127.0.0.1:8085");

/// The origins a browser may load the web UI from: its address, and `localhost` for the
/// same port when it listens on 127.0.0.1. The APIs allow exactly these (CORS).
fn web_origins() -> String {
    let bind = bind_of(WEB_BIND.0, WEB_BIND.1);
    let mut origins = vec![format!("http://{bind}")];
    if let Some(port) = bind.strip_prefix("127.0.0.1:") {
        origins.push(format!("http://localhost:{port}"));
    }
    origins.join(",")
}

/// `demo_base`: the in-process emulator's URL (`vitrine up --demo`), given to the
/// import services as their provider endpoints.
fn services(data_dir: &Path, demo_base: Option<&str>) -> Vec<ServiceSpec> {
    let data = data_dir.display();
    let storage_url = format!("http://{}", bind_of(STORAGE_BIND.0, STORAGE_BIND.1));
    let cors = ("CORS_ALLOWED_ORIGINS", web_origins());
    let demo_env = demo_base.map(crate::demo::import_env).unwrap_or_default();
    // Every service's outbox is relayed to the audit service over signed HTTP.
    let audit_url = (
        "AUDIT_URL",
        format!("http://{}", bind_of(AUDIT_BIND.0, AUDIT_BIND.1)),
    );
    vec![
        // First: the others deliver their audit events to it.
        ServiceSpec {
            name: "audit",
            bind_var: AUDIT_BIND.0,
            default_bind: AUDIT_BIND.1,
            keys: &["AUDIT_KEYS", "AUDIT_ADMIN_KEYS"],
            defaults: vec![("AUDIT_DATABASE_URL", format!("sqlite://{data}/audit.db"))],
        },
        ServiceSpec {
            name: "storage",
            bind_var: STORAGE_BIND.0,
            default_bind: STORAGE_BIND.1,
            keys: &[
                "APP_STORAGE_KEYS",
                "IMPORT_STORAGE_KEYS",
                "URL_SIGNING_KEYS",
                "AUDIT_KEYS",
            ],
            defaults: vec![
                (
                    "STORAGE_DATABASE_URL",
                    format!("sqlite://{data}/storage.db"),
                ),
                ("BLOB_STORE", format!("file://{data}/blobs")),
                cors.clone(),
                audit_url.clone(),
            ],
        },
        ServiceSpec {
            name: "app",
            bind_var: APP_BIND.0,
            default_bind: APP_BIND.1,
            keys: &[
                "APP_STORAGE_KEYS",
                crate::local_keys::JWT_SECRET_VAR,
                "AUDIT_KEYS",
            ],
            defaults: vec![
                ("APP_DATABASE_URL", format!("sqlite://{data}/app.db")),
                ("STORAGE_URL", storage_url.clone()),
                // The embedded stack is for development: dev login on.
                ("AUTH_DEV_LOGIN", "true".to_owned()),
                cors.clone(),
                audit_url.clone(),
            ],
        },
        ServiceSpec {
            name: "import-api",
            bind_var: IMPORT_BIND.0,
            default_bind: IMPORT_BIND.1,
            keys: &[
                "IMPORT_STORAGE_KEYS",
                crate::local_keys::JWT_SECRET_VAR,
                "AUDIT_KEYS",
            ],
            defaults: [
                ("IMPORT_DATABASE_URL", format!("sqlite://{data}/import.db")),
                ("STORAGE_URL", storage_url.clone()),
                cors,
                audit_url.clone(),
            ]
            .into_iter()
            .chain(demo_env.iter().cloned())
            .collect(),
        },
        ServiceSpec {
            name: "import-worker",
            bind_var: IMPORT_WORKER_BIND.0,
            default_bind: IMPORT_WORKER_BIND.1,
            // The worker verifies no seller tokens: it gets no JWT secret.
            keys: &["IMPORT_STORAGE_KEYS", "AUDIT_KEYS"],
            defaults: [
                ("IMPORT_DATABASE_URL", format!("sqlite://{data}/import.db")),
                ("STORAGE_URL", storage_url.clone()),
                audit_url,
            ]
            .into_iter()
            .chain(demo_env)
            .collect(),
        },
        ServiceSpec {
            name: "web",
            bind_var: WEB_BIND.0,
            default_bind: WEB_BIND.1,
            keys: &[],
            defaults: vec![
                (
                    "WEB_APP_API_URL",
                    format!("http://{}", bind_of(APP_BIND.0, APP_BIND.1)),
                ),
                (
                    "WEB_IMPORT_API_URL",
                    format!("http://{}", bind_of(IMPORT_BIND.0, IMPORT_BIND.1)),
                ),
                (
                    "WEB_STORAGE_PUBLIC_URL",
                    std::env::var("STORAGE_PUBLIC_URL").unwrap_or(storage_url),
                ),
            ],
        },
    ]
}

/// `vitrine up [--demo]`.
pub fn up(demo: bool) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(demo)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vitrine: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(demo: bool) -> anyhow::Result<ExitCode> {
    let data_dir =
        PathBuf::from(std::env::var("VITRINE_DATA_DIR").unwrap_or_else(|_| "data".into()));
    std::fs::create_dir_all(&data_dir)?;
    let keys = crate::local_keys::load_or_generate(&data_dir)?;
    // The demo emulator's port is taken first: its address goes into the import
    // services' environment.
    let demo_listener = if demo {
        let (var, default) = crate::demo::DEMO_BIND;
        match crate::demo::bind(&bind_of(var, default))? {
            Ok(listener) => Some(listener),
            Err(message) => {
                eprintln!("{message}");
                return Ok(ExitCode::from(2));
            }
        }
    } else {
        None
    };
    let demo_base = match &demo_listener {
        Some(listener) => Some(format!("http://{}", listener.local_addr()?)),
        None => None,
    };
    let specs = services(&data_dir, demo_base.as_deref());

    // A port in use is a clear error naming the variable, before anything starts.
    for spec in &specs {
        let bind = spec.bind();
        let addr: SocketAddr = bind
            .parse()
            .map_err(|e| anyhow::anyhow!("{}=`{bind}` is not an address: {e}", spec.bind_var))?;
        if let Err(e) = std::net::TcpListener::bind(addr) {
            eprintln!(
                "vitrine: cannot use {addr} for {} ({e}). Stop the program using it, or set {}=127.0.0.1:<free port>.",
                spec.name, spec.bind_var
            );
            return Ok(ExitCode::from(2));
        }
    }

    // Before the services: the import worker may resume a job at once.
    let demo = demo_listener.map(crate::demo::start).transpose()?;

    let exe = std::env::current_exe()?;
    let stopping = Arc::new(AtomicBool::new(false));
    let mut supervisors = Vec::new();
    for spec in specs.iter() {
        let mut env: BTreeMap<String, String> = keys
            .iter()
            .filter(|(var, _)| spec.keys.contains(&var.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (var, value) in &spec.defaults {
            env.insert((*var).to_owned(), value.clone());
        }
        env.insert(spec.bind_var.to_owned(), spec.bind());
        // Variables the user set win over the embedded defaults.
        env.retain(|k, _| std::env::var_os(k).is_none());
        env.entry("LOG_FORMAT".into())
            .or_insert_with(|| "pretty".into());
        supervisors.push(tokio::spawn(supervise(
            exe.clone(),
            spec.name,
            env,
            stopping.clone(),
        )));
        // One at a time: a service's dependencies are listed before it, and the import
        // API migrates the import database before the worker opens it.
        wait_ready(spec.name, &spec.bind(), Duration::from_secs(60)).await;
    }
    print_banner(&specs, &data_dir, demo.as_ref());

    service_kit::http::shutdown_signal().await;
    stopping.store(true, Ordering::SeqCst);
    for supervisor in supervisors {
        let _ = supervisor.await;
    }
    if let Some(demo) = demo {
        demo.shutdown().await;
    }
    eprintln!("vitrine: all services stopped");
    Ok(ExitCode::SUCCESS)
}

fn print_banner(
    specs: &[ServiceSpec],
    data_dir: &Path,
    demo: Option<&fake_providers::RunningFake>,
) {
    println!();
    println!("  Vitrine is running (data in {}):", data_dir.display());
    println!();
    println!(
        "  Open the web UI:  http://{}",
        bind_of(WEB_BIND.0, WEB_BIND.1)
    );
    println!();
    for spec in specs {
        let bind = spec.bind();
        if spec.name == "web" {
            continue;
        }
        if spec.name == "import-worker" {
            println!("    {:<13} http://{bind}/metrics", spec.name);
        } else {
            println!(
                "    {:<13} http://{bind}   Swagger UI: http://{bind}/docs",
                spec.name
            );
        }
    }
    println!("  Seller token: `cargo run --release -- token --seller <id>`, or POST /auth/token on the app.");
    println!("  Audit trail: GET http://{}/audit with `cargo run --release -- token --audit` as bearer token (docs/audit.md)", bind_of(AUDIT_BIND.0, AUDIT_BIND.1));
    println!("  Try the upload flow: bash scripts/upload-flow.sh");
    println!("  Try an import: bash scripts/import-flow.sh <public Drive or Dropbox folder URL> (README: \"Try the import flow\")");
    if let Some(demo) = demo {
        println!(
            "  Demo providers (Google Drive + Dropbox emulator): {}",
            demo.base_url
        );
        for folder in demo.drive_folders() {
            println!("  Demo folder (paste into the import): {}", folder.url);
        }
        for link in demo.dropbox_links() {
            println!("  Demo Dropbox link (the same folder): {}", link.url);
        }
    }
    println!("  Press Ctrl-C to stop.");
    println!();
}

/// Polls `/readyz` until it answers 200.
async fn wait_ready(name: &str, bind: &str, limit: Duration) {
    let url = format!("http://{bind}/readyz");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(response) = client.get(&url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "vitrine: {name} is not ready after {} s; see its log lines above",
        limit.as_secs()
    );
}

/// Runs one child, restarting it with backoff until the launcher stops.
async fn supervise(
    exe: PathBuf,
    name: &'static str,
    env: BTreeMap<String, String>,
    stopping: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let mut child = match spawn_child(&exe, name, &env) {
            Ok(child) => child,
            Err(e) => {
                eprintln!("[{name}] could not start: {e}");
                return;
            }
        };
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if stopping.load(Ordering::SeqCst) {
                        stop_child(&mut child, name).await;
                        return;
                    }
                }
            }
        };
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        let how = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        eprintln!(
            "[{name}] exited ({how}); restarting in {:.1} s",
            backoff.as_secs_f64()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn spawn_child(
    exe: &Path,
    name: &'static str,
    env: &BTreeMap<String, String>,
) -> std::io::Result<Child> {
    let mut command = Command::new(exe);
    command
        .args(["serve", name])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Workers run on the system allocator (lower RSS) unless told otherwise.
    let allocator = service_kit::allocator::ALLOCATOR_VAR;
    if let Some(choice) = service_kit::allocator::choice_for_service(name) {
        if std::env::var_os(allocator).is_none() {
            command.env(allocator, choice);
        }
    }
    // If the launcher itself is killed (SIGKILL gives it no chance to stop its
    // children), the kernel stops them: no orphaned services holding the ports.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(name, out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(name, err));
    }
    Ok(child)
}

async fn prefix_lines(name: &'static str, stream: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("[{name}] {line}");
    }
}

/// SIGTERM, then SIGKILL after 10 s.
async fn stop_child(child: &mut Child, name: &str) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // SAFETY: sending a signal to our own child process id.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            eprintln!("[{name}] did not stop within 10 s; killing it");
            let _ = child.kill().await;
        }
    }
}
