//! Schema fuzzing (issue 9): schemathesis against each service's live `/openapi.json`, on
//! `vitrine up` (embedded defaults, temp data dir, free ports) with Google Drive and Dropbox
//! played by `fake-providers` in this process.
//!
//! Before fuzzing, the stack is given something to answer about: a product (upload + product
//! on the app) and a finished Drive import with an imported, a skipped and a failed file, so
//! lists and lookups return real rows and their responses are checked against the schema.
//!
//! Runs, each with a bounded number of examples per operation (`VITRINE_FUZZ_EXAMPLES`,
//! default 25) and a fixed seed (`VITRINE_FUZZ_SEED`, default 9), every phase (examples,
//! coverage, fuzzing, stateful), a 10 s per-request timeout (a request that hangs fails the
//! run) and a 10-minute deadline for the whole schemathesis process:
//!
//! - **app** with a dev seller token (`Authorization: Bearer …`);
//! - **import-api** with the same token;
//! - **storage, unsigned**: every route as a stranger sees it (internal ones must refuse
//!   unsigned requests, the public ones refuse made-up URL tokens);
//! - **storage, signed**: the internal routes through a proxy in this process that signs
//!   each request that carries the security scheme's header with the keys the launcher
//!   generated (`keys.env`: the import ring and an unsigned, streamed body for
//!   `/internal/ingest`, the app ring and the body's digest otherwise), so the fuzzer gets
//!   past the signature;
//! - **audit** with an operator token (`vitrine token --audit`): `GET /audit`, and
//!   `POST /internal/events` as a stranger with an operator's token sees it;
//! - **audit, signed**: `POST /internal/events` through the same kind of proxy, signing
//!   with the services' audit ring (`AUDIT_KEYS`).
//!
//! Checks: no 5xx (`not_a_server_error`), responses match their schema, status code,
//! content type and headers as documented, schema-invalid requests are refused, required
//! headers are required, unknown methods refused, and (token runs) missing auth refused.
//! Not checked: `positive_data_acceptance` (schema-valid requests can rightly be refused
//! for reasons a schema cannot say: an unknown image, a size over the configured cap), and
//! `object_level_authorization` (covered by the e2e tests with two sellers).
//!
//! Needs schemathesis (pinned in `.ci/run`, which installs it into
//! `target/fuzz-tools/venv`; or `VITRINE_SCHEMATHESIS=/path/to/st`); without it the test
//! prints `SKIPPED …`, and fails under `VITRINE_REQUIRE_BACKENDS=1`. Logs of each run in
//! `target/schemathesis/<run>.log`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use fake_providers::{Folder, Generate};
use serde_json::json;
use shared_signing::{BodyDigest, KeyRing};

const DRIVE_KEY: &str = "fuzz-drive-key";
const DROPBOX_TOKEN: &str = "fuzz-dropbox-token";
const SELLER: &str = "fuzz-seller";
/// Each schemathesis run finishes in well under a minute here; this only stops a hang.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
/// Largest body the signing proxy forwards (storage's upload cap is 50 MiB).
const PROXY_BODY_LIMIT: usize = 64 * 1024 * 1024;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The schemathesis CLI: `VITRINE_SCHEMATHESIS`, `.ci/run`'s venv, or `schemathesis` on
/// the PATH. `None` (after printing why) when there is none; a panic where CI requires it.
fn schemathesis() -> Option<PathBuf> {
    let candidates = std::env::var_os("VITRINE_SCHEMATHESIS")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            target_dir().join("fuzz-tools/venv/bin/st"),
            PathBuf::from("schemathesis"),
        ]);
    for candidate in candidates {
        let works = Command::new(&candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Some(candidate);
        }
    }
    let why = "schemathesis not found (bash .ci/run installs it into target/fuzz-tools/venv; \
               or set VITRINE_SCHEMATHESIS)";
    if service_kit::testing::backends_required() {
        panic!("schema fuzzing: {why}, and VITRINE_REQUIRE_BACKENDS=1 requires it");
    }
    eprintln!("SKIPPED schema fuzzing: {why}");
    None
}

/// One schemathesis run against `spec_url`, requests to `base_url`.
struct Run<'a> {
    name: &'a str,
    spec_url: String,
    base_url: String,
    headers: Vec<String>,
    /// Extra `--exclude-checks`.
    exclude_checks: &'a [&'a str],
    /// `--include-path-regex`, when only part of the API is meant.
    include_path: Option<&'a str>,
}

impl Run<'_> {
    /// Runs it; returns `Err(log)` if schemathesis found anything or did not finish.
    async fn run(&self, st: &Path) -> Result<(), String> {
        let examples = std::env::var("VITRINE_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
        let seed = std::env::var("VITRINE_FUZZ_SEED").unwrap_or_else(|_| "9".into());
        let logs = target_dir().join("schemathesis");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log_path = logs.join(format!("{}.log", self.name));
        let log = std::fs::File::create(&log_path).expect("log");
        let mut excluded = vec!["positive_data_acceptance", "object_level_authorization"];
        excluded.extend(self.exclude_checks);
        let mut command = Command::new(st);
        stop_with_parent(&mut command);
        command
            .args(["run", &self.spec_url, "--url", &self.base_url])
            .args(["--checks", "all", "--exclude-checks", &excluded.join(",")])
            .args(["--max-examples", &examples, "--seed", &seed])
            // One worker: with two, Hypothesis' lambda-source cache (not thread-safe) made a
            // run fail now and then with "AST constructor recursion depth mismatch".
            .args(["--request-timeout", "10", "--workers", "1"])
            .args(["--no-color", "--suppress-health-check", "all"])
            // No config file or report directory from the caller's cwd.
            .current_dir(&logs)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for header in &self.headers {
            command.args(["--header", header]);
        }
        if let Some(path) = self.include_path {
            command.args(["--include-path-regex", path]);
        }
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn schemathesis");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if started.elapsed() > RUN_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        eprintln!(
            "schemathesis {}: {:?} in {:.0?}; log {}\n{}",
            self.name,
            status,
            started.elapsed(),
            log_path.display(),
            summary(&output)
        );
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!(
                "schemathesis {} failed ({s}):\n{output}",
                self.name
            )),
            None => Err(format!(
                "schemathesis {} did not finish in {RUN_DEADLINE:?}:\n{output}",
                self.name
            )),
        }
    }
}

/// The end of schemathesis' output: from its summary on.
fn summary(output: &str) -> &str {
    output
        .rfind("SUMMARY")
        .map(|at| &output[output[..at].rfind('\n').unwrap_or(at)..])
        .unwrap_or(output)
}

#[derive(Clone)]
struct Signer {
    upstream: String,
    /// Signs the JSON endpoints (their body's SHA-256).
    json: KeyRing,
    /// Signs storage's `/internal/ingest` (a streamed body, unsigned).
    ingest: Option<KeyRing>,
    http: reqwest::Client,
}

/// Forwards a request to the upstream service. When it carries an `x-vitrine-signature` header (the
/// security scheme), the fuzzer's `x-vitrine-*` headers are replaced by a real signature
/// over exactly the path, query and body that are sent; without one, it goes unsigned.
async fn sign_and_forward(State(signer): State<Signer>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, PROXY_BODY_LIMIT).await {
        Ok(body) => body,
        Err(e) => {
            return Response::builder()
                .status(413)
                .body(Body::from(format!("signing proxy: {e}")))
                .expect("response")
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = reqwest::Url::parse(&format!("{}{path_and_query}", signer.upstream)).expect("url");
    // What reqwest sends is the URL's own path and query, so sign those.
    let sent: axum::http::Uri = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
    .parse()
    .expect("uri");
    // Ingest streams its body, unsigned (its query carries size and digest, checked by the
    // write path); the JSON endpoints sign their body's SHA-256.
    let (ring, digest) = match &signer.ingest {
        Some(ingest) if url.path() == "/internal/ingest" => (ingest, BodyDigest::Unsigned),
        _ => (&signer.json, BodyDigest::of(&body)),
    };
    // Signed only when the fuzzer sent the security scheme's header, so that requests
    // without it still show that the service refuses them.
    let signature = if parts
        .headers
        .contains_key(shared_signing::request::SIGNATURE_HEADER)
    {
        shared_signing::sign_request(
            ring,
            &parts.method,
            &sent,
            digest,
            shared_signing::unix_now(),
        )
    } else {
        axum::http::HeaderMap::new()
    };
    let mut upstream = signer.http.request(parts.method, url);
    for (name, value) in &parts.headers {
        let name = name.as_str();
        if name.starts_with("x-vitrine-") || name == "host" || name == "content-length" {
            continue;
        }
        upstream = upstream.header(name, value);
    }
    let answer = upstream.headers(signature).body(body).send().await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            // Not the service's answer: the run fails on it (502 is a server error).
            return Response::builder()
                .status(502)
                .body(Body::from(format!(
                    "signing proxy: {} unreachable: {e}",
                    signer.upstream
                )))
                .expect("response");
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).expect("response")
}

/// Starts a signing proxy in front of `upstream` that signs with the ring in `keys.env`
/// variable `json_ring` (and storage's ingest with `ingest_ring`); returns its URL.
async fn signing_proxy(
    upstream: &str,
    keys: &BTreeMap<String, String>,
    json_ring: &str,
    ingest_ring: Option<&str>,
) -> String {
    let ring = |var: &str| KeyRing::parse(&keys[var]).unwrap_or_else(|e| panic!("{var}: {e}"));
    let signer = Signer {
        upstream: upstream.to_owned(),
        json: ring(json_ring),
        ingest: ingest_ring.map(ring),
        http: reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    };
    let router = axum::Router::new()
        .fallback(sign_and_forward)
        .with_state(signer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

/// Something for the lists and lookups to return: a product, and a finished import.
async fn seed(app: &str, import: &str, token: &str, folder_url: &str) {
    let http = http_client();
    let bytes = png(4096);
    let (status, _, ticket) = send(http.post(format!("{app}/uploads")).bearer_auth(token).json(
        &json!({
            "filename": "seed.png",
            "content_type": "image/png",
            "size": bytes.len(),
            "sha256": sha256_hex(&bytes),
        }),
    ))
    .await;
    assert_eq!(status, 201, "{ticket}");
    let (status, _, put) = put_upload(&http, &ticket, bytes).await;
    assert_eq!(status, 201, "{put}");
    let (status, _, product) = send(http.post(format!("{app}/product")).bearer_auth(token).json(
        &json!({
            "name": "Seed shoe",
            "description": "for the fuzzer",
            "price_minor": 1999,
            "currency": "EUR",
            "image_id": put["image_id"],
        }),
    ))
    .await;
    assert_eq!(status, 201, "{product}");

    let (status, _, job) = send(
        http.post(format!("{import}/import/google-drive"))
            .bearer_auth(token)
            .json(&json!({ "folder_url": folder_url })),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("job id");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _, job) = send(
            http.get(format!("{import}/imports/{id}"))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(status, 200, "{job}");
        if job["state"] == "completed" {
            assert_eq!(job["counts"]["failed"], 1, "{job}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the seed import did not finish: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn every_service_survives_schema_fuzzing() {
    let Some(st) = schemathesis() else {
        return;
    };
    // Arrange: the stack, a seller token, and rows to find.
    let folder = Folder::generated(
        Generate::images(3)
            .size(4096)
            .docs(1)
            .non_images(1)
            .broken(1)
            .seed(9),
    )
    .name("fuzz shop");
    let data = tempfile::tempdir().expect("tempdir");
    let (fake, mut launcher, binds, log) =
        launch_with_fake_folder(folder, DRIVE_KEY, DROPBOX_TOKEN, data.path()).await;
    for var in [
        "STORAGE_BIND",
        "APP_BIND",
        "IMPORT_BIND",
        "IMPORT_WORKER_METRICS_BIND",
        "AUDIT_BIND",
    ] {
        launcher.wait_ready(&binds[var], &log).await;
    }
    let url = |var: &str| format!("http://{}", binds[var]);
    let (app, storage, import, audit) = (
        url("APP_BIND"),
        url("STORAGE_BIND"),
        url("IMPORT_BIND"),
        url("AUDIT_BIND"),
    );
    let (_, _, issued) = send(
        http_client()
            .post(format!("{app}/auth/token"))
            .json(&json!({ "seller_id": SELLER })),
    )
    .await;
    let token = issued["access_token"].as_str().expect("token").to_owned();
    seed(&app, &import, &token, &fake.drive_folders()[0].url).await;
    let keys = launcher_keys(data.path());
    let storage_proxy = signing_proxy(
        &storage,
        &keys,
        "APP_STORAGE_KEYS",
        Some("IMPORT_STORAGE_KEYS"),
    )
    .await;
    let audit_proxy = signing_proxy(&audit, &keys, "AUDIT_KEYS", None).await;
    let bearer = format!("Authorization: Bearer {token}");
    let operator = format!(
        "Authorization: Bearer {}",
        vitrine_token(data.path(), &["--audit"])
    );

    // Act: every run, even after one fails, so that one CI log shows all findings.
    let runs = [
        Run {
            name: "app",
            spec_url: format!("{app}/openapi.json"),
            base_url: app.clone(),
            headers: vec![bearer.clone()],
            exclude_checks: &[],
            include_path: None,
        },
        Run {
            name: "import-api",
            spec_url: format!("{import}/openapi.json"),
            base_url: import.clone(),
            headers: vec![bearer.clone()],
            exclude_checks: &[],
            include_path: None,
        },
        Run {
            name: "storage-unsigned",
            spec_url: format!("{storage}/openapi.json"),
            base_url: storage.clone(),
            headers: vec![],
            exclude_checks: &[],
            include_path: None,
        },
        Run {
            name: "storage-signed",
            spec_url: format!("{storage}/openapi.json"),
            base_url: storage_proxy,
            headers: vec![],
            // The proxy replaces whatever signature the fuzzer made up with a valid one, so
            // "a made-up signature is refused" cannot hold here (the unsigned run checks it;
            // a request without the header still goes unsigned and is checked here too).
            exclude_checks: &["ignored_auth"],
            include_path: Some("^/internal/"),
        },
        Run {
            name: "audit",
            spec_url: format!("{audit}/openapi.json"),
            base_url: audit.clone(),
            headers: vec![operator],
            exclude_checks: &[],
            include_path: None,
        },
        Run {
            name: "audit-signed",
            spec_url: format!("{audit}/openapi.json"),
            base_url: audit_proxy,
            headers: vec![],
            // As for storage-signed.
            exclude_checks: &["ignored_auth"],
            include_path: Some("^/internal/"),
        },
    ];
    let mut failures = Vec::new();
    for run in &runs {
        if let Err(report) = run.run(&st).await {
            failures.push(report);
        }
    }

    // Assert: nothing found, and the stack is still up and ready.
    let http = http_client();
    for var in ["STORAGE_BIND", "APP_BIND", "IMPORT_BIND", "AUDIT_BIND"] {
        let ready = http
            .get(format!("http://{}/readyz", binds[var]))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        assert!(ready, "{var} is not ready after fuzzing");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    drop(launcher);
}
