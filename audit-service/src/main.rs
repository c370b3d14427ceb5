//! `audit` binary: loads configuration and runs the service.

use service_kit::Env;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _logs = service_kit::telemetry::init_tracing(audit_service::SERVICE_NAME);
    let config = match audit_service::config::AuditConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("audit: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match audit_service::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "audit failed");
            eprintln!("audit: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
