//! Whole-stack test harness: the App Service and the Storage Service on loopback,
//! either in this process (each on its own port, real HTTP between them) or as real
//! child processes of the `vitrine` binary.
#![allow(dead_code)]

pub mod import;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use service_kit::Env;
use sha2::{Digest, Sha256};
use shared_signing::{KeyId, KeyRing};
use tokio::task::JoinHandle;

/// Where both services keep their rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// SQLite files: the embedded default.
    Embedded,
    /// A real PostgreSQL server (one fresh database per service per test).
    Postgres,
}

pub const ISSUER: &str = "vitrine-dev";
pub const AUDIENCE: &str = "vitrine";
pub const DEV_KID: &str = "dev";

pub fn ring(kid: &str) -> KeyRing {
    KeyRing::generate(KeyId::new(kid).expect("key id"))
}

pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A port that was free a moment ago (for child processes that bind themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A small valid PNG of `len` bytes.
pub fn png(len: usize) -> Vec<u8> {
    storage_service::inspect::synthetic::png(64, 48, len)
}

/// A small valid JPEG of `len` bytes.
pub fn jpeg(len: usize) -> Vec<u8> {
    storage_service::inspect::synthetic::jpeg(64, 48, len)
}

/// Claims of a seller token, ready to tweak for bad-token tests.
pub fn claims(seller: &str) -> Value {
    let now = shared_signing::unix_now();
    json!({
        "sub": seller,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    })
}

/// An HS256 token over `claims` with `secret` (base64) and key id `kid`.
pub fn hs256_token(secret_b64: &str, kid: Option<&str>, claims: &Value) -> String {
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret_b64)
        .expect("secret");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .expect("encode")
}

/// An HTTP client for tests (no proxies, short timeouts).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Sends `request` and returns the status, headers and JSON body (Null if empty).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, headers, body)
}

/// Asserts an error answer: status and stable code.
#[track_caller]
pub fn assert_error(answer: &(u16, reqwest::header::HeaderMap, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "status; body: {}", answer.2);
    assert_eq!(
        answer.2["error"]["code"], code,
        "error code; body: {}",
        answer.2
    );
    assert!(
        answer.2["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message; body: {}",
        answer.2
    );
}

// ---------------------------------------------------------------- in-process stack

/// Both services in this process, each served on its own loopback port.
pub struct Stack {
    pub app_url: String,
    pub storage_url: String,
    pub jwt_secret: String,
    pub app: app_service::state::AppState,
    pub storage: storage_service::state::AppState,
    pub http: reqwest::Client,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The Storage Service in this process, on its own loopback port, blobs under `dir`.
pub struct StorageServer {
    pub url: String,
    pub state: storage_service::state::AppState,
    pub task: JoinHandle<()>,
    pub blobs: PathBuf,
}

impl StorageServer {
    pub async fn start(
        dir: &Path,
        database_url: String,
        app_keys: &KeyRing,
        import_keys: &KeyRing,
    ) -> StorageServer {
        // Its public URL (in upload and download URLs) is where it listens.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let blobs = dir.join("blobs");
        let env = Env::from_pairs([
            ("APP_STORAGE_KEYS", app_keys.to_env_value()),
            ("IMPORT_STORAGE_KEYS", import_keys.to_env_value()),
            ("URL_SIGNING_KEYS", ring("url1").to_env_value()),
            ("STORAGE_PUBLIC_URL", url.clone()),
            ("BLOB_STORE", format!("file://{}", blobs.display())),
            ("STORAGE_DATABASE_URL", database_url),
        ]);
        let config =
            storage_service::config::StorageConfig::from_env(&env).expect("storage config");
        let state = storage_service::build_state(config)
            .await
            .expect("storage state");
        let router = storage_service::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        StorageServer {
            url,
            state,
            task,
            blobs,
        }
    }
}

async fn serve(router: axum::Router) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, task)
}

impl Stack {
    /// `None` (after printing why) when the database backend is not configured.
    pub async fn start(db: Db, test: &str) -> Option<Stack> {
        Self::start_with(db, test, &[]).await
    }

    /// Starts with extra App Service variables (e.g. a lower rate limit, a JWKS URL).
    pub async fn start_with(db: Db, test: &str, app_extra: &[(&str, String)]) -> Option<Stack> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (storage_db, app_db) = match db {
            Db::Embedded => (
                format!("sqlite://{}", dir.path().join("storage.db").display()),
                format!("sqlite://{}", dir.path().join("app.db").display()),
            ),
            Db::Postgres => {
                let admin = service_kit::testing::backend_env(
                    service_kit::testing::TEST_POSTGRES_URL,
                    test,
                )?;
                (
                    service_kit::testing::fresh_postgres_database(&admin).await,
                    service_kit::testing::fresh_postgres_database(&admin).await,
                )
            }
        };
        let app_keys = ring("app1");
        let jwt_secret = random_secret();

        // Storage first: the app needs its URL.
        let storage = StorageServer::start(dir.path(), storage_db, &app_keys, &ring("imp1")).await;
        let (storage_url, storage_task) = (storage.url.clone(), storage.task);
        let storage = storage.state;

        let mut app_vars: Vec<(String, String)> = vec![
            ("APP_STORAGE_KEYS".into(), app_keys.to_env_value()),
            ("STORAGE_URL".into(), storage_url.clone()),
            ("APP_DATABASE_URL".into(), app_db),
            ("JWT_HS256_SECRET".into(), jwt_secret.clone()),
            ("AUTH_DEV_LOGIN".into(), "true".into()),
        ];
        for (k, v) in app_extra {
            app_vars.retain(|(existing, _)| existing != k);
            app_vars.push(((*k).to_owned(), v.clone()));
        }
        let app_config = app_service::config::AppConfig::from_env(&Env::from_pairs(app_vars))
            .expect("app config");
        let app = app_service::build_state(app_config)
            .await
            .expect("app state");
        let (app_url, app_task) = serve(app_service::router(app.clone())).await;

        Some(Stack {
            app_url,
            storage_url,
            jwt_secret,
            app,
            storage,
            http: http_client(),
            tasks: vec![storage_task, app_task],
            _dir: dir,
        })
    }

    /// A valid seller token.
    pub fn token(&self, seller: &str) -> String {
        hs256_token(&self.jwt_secret, Some(DEV_KID), &claims(seller))
    }

    pub fn app(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.app_url))
    }

    /// `POST /uploads` for `bytes`, as `seller`.
    pub async fn ask_upload(
        &self,
        token: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        send(
            self.app(reqwest::Method::POST, "/uploads")
                .bearer_auth(token)
                .json(&json!({
                    "filename": filename,
                    "content_type": content_type,
                    "size": bytes.len(),
                    "sha256": sha256_hex(bytes),
                })),
        )
        .await
    }

    /// The whole upload: URL from the app, bytes to storage. Returns the image id.
    pub async fn upload_image(&self, seller: &str) -> String {
        let bytes = png(2048);
        let token = self.token(seller);
        let ticket = self
            .ask_upload(&token, "shoe.png", "image/png", &bytes)
            .await;
        assert_eq!(ticket.0, 201, "{}", ticket.2);
        let put = put_upload(&self.http, &ticket.2, bytes).await;
        assert_eq!(put.0, 201, "{}", put.2);
        put.2["image_id"].as_str().expect("image_id").to_owned()
    }

    /// Pending uploads storage has recorded for `seller`.
    pub async fn pending_uploads(&self, seller: &str) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM pending_uploads WHERE owner_id = $1")
            .bind(seller)
            .fetch_one(self.storage.repo.pool())
            .await
            .expect("count")
            .try_get("n")
            .expect("n")
    }

    /// Products the app has for `seller`.
    pub async fn products(&self, seller: &str) -> i64 {
        self.app.products.count(seller).await.expect("count")
    }

    /// Asserts that neither service recorded anything for `seller`.
    pub async fn assert_nothing_created(&self, seller: &str) {
        assert_eq!(self.products(seller).await, 0, "a product was created");
        assert_eq!(
            self.pending_uploads(seller).await,
            0,
            "storage recorded a pending upload"
        );
    }
}

/// `PUT` the bytes to the URL in a `POST /uploads` answer, with its headers.
pub async fn put_upload(
    http: &reqwest::Client,
    ticket: &Value,
    bytes: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = ticket["upload_url"].as_str().expect("upload_url");
    let mut request = http.put(url).body(bytes);
    for (name, value) in ticket["headers"].as_object().expect("headers") {
        request = request.header(name.as_str(), value.as_str().expect("header value"));
    }
    send(request).await
}

// ---------------------------------------------------------------- real processes

/// The `vitrine` binary built for these tests.
pub fn vitrine_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vitrine"))
}

/// Makes the child die with this test process, even if the test process is killed.
pub fn stop_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// One service running as a child process; killed when dropped.
pub struct ServiceProcess {
    pub name: &'static str,
    pub url: String,
    child: Child,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `vitrine serve <name>` with `env` and waits until `/readyz` answers 200.
    pub async fn start(
        name: &'static str,
        bind_var: &str,
        env: &[(String, String)],
        logs: &Path,
    ) -> ServiceProcess {
        let bind = format!("127.0.0.1:{}", free_port());
        Self::start_at(name, bind_var, &bind, env, logs).await
    }

    /// [`ServiceProcess::start`] on a given address (e.g. to start a killed service again
    /// where its clients expect it).
    pub async fn start_at(
        name: &'static str,
        bind_var: &str,
        bind: &str,
        env: &[(String, String)],
        logs: &Path,
    ) -> ServiceProcess {
        let mut command = Command::new(vitrine_bin());
        command
            .args(["serve", name])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(bind_var, bind)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        Self::spawn(name, command, bind, logs).await
    }

    /// Runs `command` (its environment already set, `bind` being where it serves
    /// `/readyz`), output to `<logs>/<name>.log`, and waits until it is ready.
    pub async fn spawn(
        name: &'static str,
        mut command: Command,
        bind: &str,
        logs: &Path,
    ) -> ServiceProcess {
        let log = logs.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        stop_with_parent(&mut command);
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut process = ServiceProcess {
            name,
            url: format!("http://{bind}"),
            child,
            log,
        };
        process.wait_ready().await;
        process
    }

    async fn wait_ready(&mut self) {
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before it was ready; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.url)).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{} was not ready within 60 s; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The script's tools; missing ones skip the test (or fail it where CI requires them).
pub fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = ["curl", "jq", "sha256sum"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if service_kit::testing::backends_required() {
        panic!("{test}: {missing:?} not installed, and VITRINE_REQUIRE_BACKENDS=1 requires them");
    }
    eprintln!("SKIPPED {test}: install {missing:?} to run it");
    false
}

/// Every address `vitrine up [--demo]` binds.
pub const LAUNCHER_BIND_VARS: [&str; 7] = [
    "WEB_BIND",
    "AUDIT_BIND",
    "APP_BIND",
    "STORAGE_BIND",
    "IMPORT_BIND",
    "IMPORT_WORKER_METRICS_BIND",
    "DEMO_PROVIDERS_BIND",
];

impl Launcher {
    /// `vitrine <args>` with its data in `data`, every address of [`LAUNCHER_BIND_VARS`] on
    /// a port that was free a moment ago (so a stack already running on the default ports
    /// is never hit), `env` set and `unset` removed, stdout to `data/launcher.log`.
    /// Returns the launcher, its addresses by variable, and the log's path.
    pub fn start(
        args: &[&str],
        data: &Path,
        env: &[(&str, &str)],
        unset: &[&str],
    ) -> (
        Launcher,
        std::collections::BTreeMap<&'static str, String>,
        PathBuf,
    ) {
        let binds: std::collections::BTreeMap<&'static str, String> = LAUNCHER_BIND_VARS
            .into_iter()
            .map(|var| (var, format!("127.0.0.1:{}", free_port())))
            .collect();
        let log = data.join("launcher.log");
        let mut command = Command::new(vitrine_bin());
        stop_with_parent(&mut command);
        command
            .args(args)
            .env("VITRINE_DATA_DIR", data)
            .env("RUST_LOG", "warn")
            .envs(&binds)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"));
        // The launcher's own messages (a child restarted, a port in use) go to stderr:
        // into the same log, so that tests can read them and failures show them.
        command.stderr(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("log"),
        );
        for var in unset {
            command.env_remove(var);
        }
        let child = command.spawn().expect("spawn vitrine");
        (Launcher { child }, binds, log)
    }
}

/// The key rings `vitrine up` generated into `<data>/keys.env`, by variable.
pub fn launcher_keys(data: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(data.join("keys.env"))
        .expect("keys.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `vitrine token <args>` (`--seller ID`, `--audit`) with the stack's data dir.
pub fn vitrine_token(data: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(vitrine_bin())
        .arg("token")
        .args(args)
        .env("VITRINE_DATA_DIR", data)
        .env_remove("AUDIT_ADMIN_KEYS")
        .output()
        .expect("vitrine token");
    assert!(out.status.success(), "vitrine token {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Runs `vitrine up`; SIGTERM (then SIGKILL) when dropped.
pub struct Launcher {
    pub child: std::process::Child,
}

/// Banner lines of `vitrine up --demo` (src/launcher.rs) with the demo folder's URLs.
pub const DEMO_FOLDER_LINE: &str = "Demo folder (paste into the import): ";
pub const DEMO_DROPBOX_LINE: &str = "Demo Dropbox link (the same folder): ";

/// The value of the banner line starting with `prefix` in the launcher's log, once printed.
pub fn banner_value(log: &Path, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix(prefix.trim_start()))
        .map(|v| v.trim().to_owned())
}

impl Launcher {
    /// `vitrine up --demo` as [`Launcher::start`] runs it, with the provider settings
    /// coming from the launcher (the emulator), not from this test's environment.
    pub fn start_demo(
        data: &Path,
    ) -> (
        Launcher,
        std::collections::BTreeMap<&'static str, String>,
        PathBuf,
    ) {
        Launcher::start_demo_with(data, &[])
    }

    /// [`Launcher::start_demo`] with `env` set (e.g. `DEMO_IMAGES`). The provider, URL,
    /// CORS and audit settings all come from the launcher, not from this test's environment.
    pub fn start_demo_with(
        data: &Path,
        env: &[(&str, &str)],
    ) -> (
        Launcher,
        std::collections::BTreeMap<&'static str, String>,
        PathBuf,
    ) {
        let unset: Vec<&str> = [
            "GOOGLE_DRIVE_API_BASE",
            "DROPBOX_API_BASE",
            "DROPBOX_CONTENT_BASE",
            "GOOGLE_API_KEY",
            "DROPBOX_ACCESS_TOKEN",
            "CORS_ALLOWED_ORIGINS",
            "STORAGE_PUBLIC_URL",
            "WEB_APP_API_URL",
            "WEB_IMPORT_API_URL",
            "WEB_STORAGE_PUBLIC_URL",
            "AUDIT_URL",
            "AUDIT_KEYS",
            "AUDIT_ADMIN_KEYS",
            "DEMO_IMAGES",
        ]
        .into_iter()
        .filter(|var| !env.iter().any(|(set, _)| set == var))
        .collect();
        Launcher::start(&["up", "--demo"], data, env, &unset)
    }

    /// Waits (up to 60 s) for the banner line starting with `prefix` (the banner comes once
    /// every service is ready) and returns its value; panics with the log if the launcher
    /// exits first.
    pub async fn banner(&mut self, log: &Path, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "vitrine exited with {status}; output:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Some(value) = banner_value(log, prefix) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "no `{prefix}` in the banner after 60 s; output:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Launcher {
    /// Waits until `http://{bind}/readyz` answers 200, failing early (with the launcher's
    /// output from `log`) if the launcher exits or 90 s pass.
    pub async fn wait_ready(&mut self, bind: &str, log: &Path) {
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "vitrine up exited with {status}; output:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            let ready = client
                .get(format!("http://{bind}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{bind} was not ready in 90 s; output:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `vitrine up` (see [`Launcher::start`]) with its import services pointed at
/// `fake-providers` serving `folder` over both Google Drive and Dropbox, which want
/// `drive_key` and `dropbox_token`. Returns the emulator too.
pub async fn launch_with_fake_folder(
    folder: fake_providers::Folder,
    drive_key: &str,
    dropbox_token: &str,
    data: &Path,
) -> (
    fake_providers::RunningFake,
    Launcher,
    std::collections::BTreeMap<&'static str, String>,
    PathBuf,
) {
    let fake = fake_providers::FakeProviders::builder()
        .drive_folder(folder.clone())
        .dropbox_folder(folder)
        .drive_api_key(drive_key)
        .dropbox_token(dropbox_token)
        .build()
        .expect("fake folders")
        .serve_on_loopback()
        .await
        .expect("fake providers");
    let (launcher, binds, log) = Launcher::start(
        &["up"],
        data,
        &fake_provider_env(&fake.base_url, drive_key, dropbox_token),
        &[],
    );
    (fake, launcher, binds, log)
}

/// The import services' provider settings for a `fake-providers` at `base_url` that
/// wants `drive_key` and `dropbox_token` (for [`Launcher::start`]'s `env`).
pub fn fake_provider_env<'a>(
    base_url: &'a str,
    drive_key: &'a str,
    dropbox_token: &'a str,
) -> [(&'a str, &'a str); 5] {
    [
        ("GOOGLE_DRIVE_API_BASE", base_url),
        ("GOOGLE_API_KEY", drive_key),
        ("DROPBOX_API_BASE", base_url),
        ("DROPBOX_CONTENT_BASE", base_url),
        ("DROPBOX_ACCESS_TOKEN", dropbox_token),
    ]
}
