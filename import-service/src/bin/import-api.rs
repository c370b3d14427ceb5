//! `import-api` binary: loads configuration and serves the Import Service's HTTP API.

use service_kit::Env;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _logs = service_kit::telemetry::init_tracing(import_service::API_SERVICE_NAME);
    let config = match import_service::config::ImportConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("import-api: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match import_service::run_api(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "import-api failed");
            eprintln!("import-api: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
