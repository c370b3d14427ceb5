//! `web` binary: loads configuration and serves the web UI.

use service_kit::Env;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _logs = service_kit::telemetry::init_tracing(web::SERVICE_NAME);
    let config = match web::WebConfig::from_env(&Env::process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("web: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match web::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "web failed");
            eprintln!("web: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
