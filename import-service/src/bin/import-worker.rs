//! `import-worker` binary: loads configuration and works the import queues until
//! Ctrl-C or SIGTERM (tasks in hand are finished first).

use service_kit::Env;

// A worker keeps its memory low with the system allocator; see `service_kit::allocator`.
#[global_allocator]
static ALLOCATOR: std::alloc::System = std::alloc::System;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _logs = service_kit::telemetry::init_tracing(import_service::WORKER_SERVICE_NAME);
    let config = match import_service::config::ImportConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("import-worker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match import_service::run_worker(config, service_kit::http::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "import-worker failed");
            eprintln!("import-worker: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
