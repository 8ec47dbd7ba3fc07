//! `taskmaster`: read settings, install telemetry, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use taskmaster::cli::{self, Cli};
use taskmaster::Settings;

/// mimalloc instead of glibc malloc: the request path allocates from every worker thread, and
/// glibc's arena locks showed up as contention under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _telemetry = if cli::is_server(&cli.command) {
        match telemetry::init(&telemetry::TelemetryConfig {
            service_name: settings.service_name.clone(),
            log_format: settings.log_format,
            log_filter: settings.log_filter.clone(),
            otlp_endpoint: settings.otlp_endpoint.clone(),
        }) {
            Ok(guard) => Some(guard),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    match cli::run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
