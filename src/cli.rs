//! The `herald` command line: run the server (the default), or check or
//! print the effective configuration, or mint a client token by hand.
//!
//! Every command reads the configuration the same way (defaults → file →
//! `HERALD_*` variables → flags); a configuration error exits 2 naming the
//! file, variable or key at fault.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, ConfigError, Overrides};
use crate::config_env;
use crate::ids::{ChannelName, ClientId};
use crate::token::TokenSigner;

/// Exit code for an unusable configuration or command line.
pub const EXIT_CONFIG: u8 = 2;

/// herald: a real-time notification server.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file (default: config.toml if present). Env: HERALD_CONFIG.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on. Env: HERALD_HOST.
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Port to listen on (0 = any free port). Env: HERALD_PORT.
    #[arg(long, global = true)]
    pub port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the effective configuration (file, environment, flags):
    /// exit 0, or 2 naming the key at fault.
    CheckConfig,
    /// Print the effective configuration as TOML, secrets redacted.
    PrintConfig,
    /// Print a client token signed with the configured client_secret.
    Token {
        /// The client id (`sub`).
        #[arg(long)]
        sub: String,
        /// Private channels the token lists, comma-separated.
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
        /// How long the token is valid: 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

impl Cli {
    /// Parses the process's arguments; `--help` lists every `HERALD_*`
    /// variable.
    pub fn from_process() -> Self {
        let variables = config_env::var_names(&Config::default_table()).join(", ");
        let help = format!(
            "Environment: every setting of the config file can be set as HERALD_<KEY>, \
             a key of a section as HERALD_<SECTION>__<KEY>, lists comma-separated; \
             above the file, below the flags. HERALD_CONFIG names the file.\n\
             Variables: {variables}"
        );
        let matches = Self::command().after_help(help).get_matches();
        match Self::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    }

    /// The configuration these flags and `env` (the `HERALD_*` variables)
    /// give.
    pub fn config(&self, env: Vec<(String, String)>) -> Result<Config, ConfigError> {
        let flags = Overrides {
            config_path: self.config.clone(),
            host: self.host.clone(),
            port: self.port,
            ..Overrides::default()
        };
        let overrides = Overrides::from_env(env)?.overridden_by(flags);
        Config::load(&overrides)
    }
}

/// The `HERALD_*` variables of this process; one that is not UTF-8 is an
/// error naming it.
pub fn herald_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(config_env::PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            reason: "is not valid UTF-8".into(),
        })?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

/// Runs `command` (not the server) against `config`; writes its output to
/// stdout, errors to the log.
pub fn run_command(command: &Command, config: &Config) -> ExitCode {
    match command {
        Command::CheckConfig => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Command::PrintConfig => {
            print!("{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Command::Token { sub, channels, ttl } => match mint(config, sub, channels, ttl) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

/// A token for `sub` listing `channels`, valid for `ttl`.
fn mint(config: &Config, sub: &str, channels: &[String], ttl: &str) -> Result<String, String> {
    if config.client_secret.is_empty() {
        return Err(
            "no client_secret is configured: set HERALD_CLIENT_SECRET (at least 32 bytes) \
             or client_secret in the config file"
                .into(),
        );
    }
    let id = ClientId::parse(sub).map_err(|e| format!("--sub: {e}"))?;
    let channels = channels
        .iter()
        .map(|c| ChannelName::parse(c.as_str()).map_err(|e| format!("--channels: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let ttl = humantime::parse_duration(ttl)
        .map_err(|e| format!("--ttl {ttl:?}: {e} (e.g. 90s, 30m, 1h, 7d)"))?;
    let signer = TokenSigner::new(&config.client_secret, &config.token_audience)?;
    signer.sign(&id, &channels, ttl)
}
