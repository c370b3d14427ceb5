//! `vitrine`: the one-command local stack.
//!
//! # Layout
//! - `main.rs`: command-line entry (`vitrine [up]`, `vitrine serve <service>`).
//! - [`launcher`]: starts each service as its own child process on loopback (self-exec
//!   `vitrine serve <service>`), prefixes its log lines, waits for readiness, restarts a
//!   crashed child with backoff, and stops everything on Ctrl-C.
//! - [`local_keys`]: the keys the embedded stack generates on first run and keeps in `./data`.

mod launcher;
mod local_keys;

use std::process::ExitCode;

const USAGE: &str = "\
vitrine — run the Vitrine stack locally

USAGE:
    vitrine [up]                 start every service on loopback with embedded defaults
    vitrine serve <service>      run one service in this process (storage)
    vitrine help                 this text

Data (SQLite files, blobs, generated keys) lives in ./data (VITRINE_DATA_DIR).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["up"] => launcher::up(),
        ["serve", service] => serve(service),
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
    let result = match service {
        "storage" => {
            service_kit::telemetry::init_tracing(storage_service::SERVICE_NAME);
            match storage_service::config::StorageConfig::from_env(&env) {
                Ok(config) => runtime.block_on(storage_service::run(config)),
                Err(e) => Err(e.into()),
            }
        }
        other => {
            eprintln!("unknown service `{other}`; known: storage");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
