//! The `herald` binary: flags, config, logging, then the app (or a
//! command) from the library.

use std::process::ExitCode;

use herald::cli::{herald_env, run_command, Cli, EXIT_CONFIG};
use herald::Application;

/// Every allocation of the server process goes through mimalloc
/// (Cargo.toml says why).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::from_process();
    let config = match herald_env().and_then(|env| cli.config(env)) {
        Ok(config) => config,
        Err(e) => {
            // Written whatever RUST_LOG filters: herald does not start.
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    herald::logging::init(config.log_format);
    if let Some(command) = &cli.command {
        let code = run_command(command, &config);
        herald::logging::flush();
        return code;
    }

    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        app.run_until_signal()
            .await
            .map_err(herald::app::StartError::Serve)
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    };
    herald::logging::flush();
    code
}
