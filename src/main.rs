//! The `herald` binary: flags, logging, config, then the app from the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald::config::{Config, Overrides};
use herald::Application;

/// herald: a real-time notification server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (default: config.toml if present). Env: HERALD_CONFIG.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address to listen on. Env: HERALD_HOST.
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (0 = any free port). Env: HERALD_PORT.
    #[arg(long)]
    port: Option<u16>,
}

/// Exit code for an unusable configuration.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let flags = Overrides {
        config_path: cli.config,
        host: cli.host,
        port: cli.port,
        ..Overrides::default()
    };
    let config = Overrides::from_env(|name| std::env::var(name).ok())
        .map(|env| env.overridden_by(flags))
        .and_then(|overrides| Config::load(&overrides));
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        app.run_until_signal()
            .await
            .map_err(herald::app::StartError::Serve)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
