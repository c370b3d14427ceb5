//! `app-service` binary: loads configuration and runs the service.

use service_kit::Env;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _logs = service_kit::telemetry::init_tracing(app_service::SERVICE_NAME);
    let config = match app_service::config::AppConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("app-service: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match app_service::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "app-service failed");
            eprintln!("app-service: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
