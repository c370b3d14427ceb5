//! `storage-service` binary: loads configuration and runs the service.

use service_kit::Env;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _logs = service_kit::telemetry::init_tracing(storage_service::SERVICE_NAME);
    let config = match storage_service::config::StorageConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("storage-service: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match storage_service::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "storage-service failed");
            eprintln!("storage-service: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
