//! `vitrine`: the one-command local stack.
//!
//! # Layout
//! - `main.rs`: command-line entry (`vitrine [up [--demo]]`, `vitrine serve <service>`,
//!   `vitrine token --seller ID`, `vitrine keys`).
//! - [`launcher`]: starts each service as its own child process on loopback (self-exec
//!   `vitrine serve <service>`), prefixes its log lines, waits for readiness, restarts a
//!   crashed child with backoff, and stops everything on Ctrl-C. With `--demo` it also
//!   runs the provider emulator in-process with a sample folder.
//!   The web UI (crate `web`) is one of those services; its URL is printed first.
//! - [`demo`]: the in-process provider emulator and sample folder of `vitrine up --demo`.
//! - [`local_keys`]: the keys the embedded stack generates on first run and keeps in `./data`.

mod demo;
mod launcher;
mod local_keys;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

const USAGE: &str = "\
vitrine — run the Vitrine stack locally

USAGE:
    vitrine [up]                 start every service on loopback with embedded defaults
    vitrine up --demo            the same, plus the Drive/Dropbox emulator with a sample
                                 folder (nested images, non-images, a broken file) and
                                 its URL to paste into the import: try it offline
                                 (DEMO_PROVIDERS_BIND, default 127.0.0.1:9900)
                                 (DEMO_IMAGES sets how many images, default 300)
    vitrine serve <service>      run one service in this process (audit, storage, app,
                                 import-api, import-worker, web)
    vitrine token --seller ID    print a seller token (JWT) for the local stack's dev issuer
    vitrine token --audit        print an operator token for GET /audit (1 hour), signed
                                 with AUDIT_ADMIN_KEYS (environment, else ./data/keys.env)
    vitrine keys                 print fresh signing keys and a seller-token secret as
                                 .env lines (APP_STORAGE_KEYS, IMPORT_STORAGE_KEYS,
                                 URL_SIGNING_KEYS, AUDIT_KEYS, AUDIT_ADMIN_KEYS,
                                 JWT_HS256_SECRET) for a deployment
                                 (docker compose, Kubernetes: docs/deploy.md)
    vitrine help                 this text

Data (SQLite files, blobs, generated keys) lives in ./data (VITRINE_DATA_DIR).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["up"] => launcher::up(false),
        ["up", "--demo"] => launcher::up(true),
        ["serve", service] => serve(service),
        ["token", "--seller", seller] => token(seller),
        ["token", "--audit"] => audit_token(),
        ["keys"] => keys(),
        ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs one service in this process with configuration from the environment.
fn serve(service: &str) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = service_kit::Env::process();
    let logs;
    let result = match service {
        "storage" => {
            logs = service_kit::telemetry::init_tracing(storage_service::SERVICE_NAME);
            match storage_service::config::StorageConfig::from_env(&env) {
                Ok(config) => runtime.block_on(storage_service::run(config)),
                Err(e) => Err(e.into()),
            }
        }
        "app" => {
            logs = service_kit::telemetry::init_tracing(app_service::SERVICE_NAME);
            match app_service::config::AppConfig::from_env(&env) {
                Ok(config) => runtime.block_on(app_service::run(config)),
                Err(e) => Err(e.into()),
            }
        }
        "import-api" => {
            logs = service_kit::telemetry::init_tracing(import_service::API_SERVICE_NAME);
            match import_service::config::ImportConfig::from_env(&env) {
                Ok(config) => runtime.block_on(import_service::run_api(config)),
                Err(e) => Err(e.into()),
            }
        }
        "import-worker" => {
            logs = service_kit::telemetry::init_tracing(import_service::WORKER_SERVICE_NAME);
            match import_service::config::ImportConfig::from_env(&env) {
                Ok(config) => runtime.block_on(import_service::run_worker(
                    config,
                    service_kit::http::shutdown_signal(),
                )),
                Err(e) => Err(e.into()),
            }
        }
        "audit" => {
            logs = service_kit::telemetry::init_tracing(audit_service::SERVICE_NAME);
            match audit_service::config::AuditConfig::from_env(&env) {
                Ok(config) => runtime.block_on(audit_service::run(config)),
                Err(e) => Err(e.into()),
            }
        }
        "web" => {
            logs = service_kit::telemetry::init_tracing(web::SERVICE_NAME);
            match web::WebConfig::from_env(&env) {
                Ok(config) => runtime.block_on(web::run(config)),
                Err(e) => Err(e.into()),
            }
        }
        other => {
            eprintln!(
                "unknown service `{other}`; known: audit, storage, app, import-api, import-worker, web"
            );
            return ExitCode::from(2);
        }
    };
    // The runtime's last tasks first, then the log writer writes out what they logged.
    drop(runtime);
    drop(logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `vitrine keys`: fresh keys as `VAR=value` lines, for a deployment's `.env` or
/// Secret. Nothing is read or written: the local stack keeps its own in `<data>/keys.env`.
fn keys() -> ExitCode {
    match local_keys::generate() {
        Ok(keys) => {
            println!("# Generated by `vitrine keys`. Keep private; every service that holds a key needs the same value.");
            for (var, value) in keys {
                println!("{var}={value}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vitrine keys: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `vitrine token --seller ID`: a seller token signed with the local stack's dev key
/// (`<data>/keys.env`, generated on first use), honouring `JWT_ISSUER`, `JWT_AUDIENCE`,
/// `JWT_HS256_KEY_ID` and `AUTH_DEV_TOKEN_TTL_SECS` like the services do.
fn token(seller: &str) -> ExitCode {
    let seller = match service_kit::auth::SellerId::parse(seller) {
        Ok(seller) => seller,
        Err(e) => {
            eprintln!("vitrine token: {e}");
            return ExitCode::from(2);
        }
    };
    let data_dir = std::path::PathBuf::from(
        std::env::var("VITRINE_DATA_DIR").unwrap_or_else(|_| "data".into()),
    );
    let keys = match local_keys::load_or_generate(&data_dir) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!(
                "vitrine token: cannot read or create {}/keys.env: {e:#}",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    // The process environment wins, as it does for the services.
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if std::env::var_os(local_keys::JWT_SECRET_VAR).is_none() {
        if let Some(secret) = keys.get(local_keys::JWT_SECRET_VAR) {
            vars.push((local_keys::JWT_SECRET_VAR.to_owned(), secret.clone()));
        }
    }
    let config = match service_kit::auth::AuthConfig::from_env(&service_kit::Env::from_pairs(vars))
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("vitrine token: {e}");
            return ExitCode::from(2);
        }
    };
    match service_kit::auth::DevIssuer::from_config(&config) {
        Some(issuer) => {
            println!("{}", issuer.mint(&seller).access_token);
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "vitrine token: no {} is configured",
                local_keys::JWT_SECRET_VAR
            );
            ExitCode::FAILURE
        }
    }
}

/// `vitrine token --audit`: an operator token for the audit service's `GET /audit`,
/// valid one hour, signed with `AUDIT_ADMIN_KEYS` (the environment's, else the local
/// stack's in `<data>/keys.env`).
fn audit_token() -> ExitCode {
    const VAR: &str = "AUDIT_ADMIN_KEYS";
    let raw = match std::env::var(VAR) {
        Ok(raw) if !raw.trim().is_empty() => raw,
        _ => {
            let data_dir = std::path::PathBuf::from(
                std::env::var("VITRINE_DATA_DIR").unwrap_or_else(|_| "data".into()),
            );
            match local_keys::load_or_generate(&data_dir) {
                Ok(keys) => keys.get(VAR).cloned().unwrap_or_default(),
                Err(e) => {
                    eprintln!(
                        "vitrine token: cannot read or create {}/keys.env: {e:#}",
                        data_dir.display()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let keys = match shared_signing::KeyRing::parse(&raw) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("vitrine token: {VAR}: {e}");
            return ExitCode::from(2);
        }
    };
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    match audit_service::query::mint_admin_token(
        &keys,
        &operator,
        std::time::Duration::from_secs(3600),
    ) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vitrine token: {e}");
            ExitCode::FAILURE
        }
    }
}
