//! Where the settings come from, each source overriding the one before:
//! built-in defaults → the config file → `HERALD_*` variables → flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use super::error::{deserialize_reason, toml_error};
use super::{Config, ConfigError};
use crate::config_env;

/// The config file read when none is named. Its absence is not an error.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

/// Values given outside the config file, by environment or flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Config file to read instead of `config.toml`; it must exist.
    pub config_path: Option<PathBuf>,
    /// Settings from `HERALD_*` variables, shaped like the file
    /// ([`crate::config_env`]).
    pub env: Table,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
}

impl Overrides {
    /// Reads `HERALD_CONFIG` and every `HERALD_<KEY>` from `vars` (the
    /// process environment in production, pairs in tests).
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let config_path = vars
            .iter()
            .find(|(name, _)| name == config_env::CONFIG_PATH_VAR)
            .map(|(_, path)| PathBuf::from(path));
        let env = config_env::settings_table(vars, &Config::default_table())?;
        Ok(Self {
            config_path,
            env,
            host: None,
            port: None,
        })
    }

    /// `self` with every value that `over` sets replaced by it.
    pub fn overridden_by(self, over: Overrides) -> Self {
        let mut env = self.env;
        config_env::merge(&mut env, over.env);
        Self {
            config_path: over.config_path.or(self.config_path),
            env,
            host: over.host.or(self.host),
            port: over.port.or(self.port),
        }
    }
}

impl Config {
    /// Builds the configuration: defaults, then the file named in
    /// `overrides` (or `config.toml` if it exists), then `HERALD_*`
    /// variables, then flags; then validates.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let (mut table, path) = match &overrides.config_path {
            Some(path) => (Self::read_table(path)?, path.clone()),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => (
                Self::read_table(Path::new(DEFAULT_CONFIG_PATH))?,
                PathBuf::from(DEFAULT_CONFIG_PATH),
            ),
            None => (Table::new(), PathBuf::from("(no config file)")),
        };
        // Each variable alone first, so that a value of the wrong kind is
        // reported against its variable rather than the file.
        for (key, value) in &overrides.env {
            let single = Table::from_iter([(key.clone(), value.clone())]);
            if let Err(e) = Self::deserialize(Value::Table(single)) {
                let var = match value {
                    Value::Table(section) => section
                        .keys()
                        .next()
                        .map(|k| config_env::var_name(&format!("{key}.{k}")))
                        .unwrap_or_else(|| config_env::var_name(key)),
                    _ => config_env::var_name(key),
                };
                return Err(ConfigError::Env {
                    var,
                    reason: deserialize_reason(&e),
                });
            }
        }
        config_env::merge(&mut table, overrides.env.clone());
        if let Some(host) = &overrides.host {
            table.insert("host".into(), Value::String(host.clone()));
        }
        if let Some(port) = overrides.port {
            table.insert("port".into(), Value::Integer(i64::from(port)));
        }
        let config = Self::deserialize(Value::Table(table)).map_err(|e| ConfigError::Parse {
            path,
            message: deserialize_reason(&e),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// A config file as a table, before defaults; errors name the file.
    fn read_table(path: &Path) -> Result<Table, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error(&text, &e),
        })
    }

    /// Reads a TOML config file; keys it omits keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error(text, &e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;
    use crate::config::BrokerKind;

    #[test]
    fn a_file_overrides_only_the_keys_it_sets() {
        let config = Config::from_toml("port = 9000\n", Path::new("x.toml")).unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.host, "127.0.0.1");
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_file_and_key() {
        let err = Config::from_toml("prot = 9000\n", Path::new("my.toml")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("my.toml"), "{text}");
        assert!(text.contains("prot"), "{text}");
    }

    #[test]
    fn a_mistyped_value_is_an_error_naming_the_key() {
        let err = Config::from_toml("port = \"high\"\n", Path::new("my.toml")).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn env_then_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "host = \"0.0.0.0\"\nport = 7000\nworkers = 3\n").unwrap();

        let from_env = Overrides::from_env(env(&[
            ("HERALD_CONFIG", path.to_str().unwrap()),
            ("HERALD_PORT", "7100"),
        ]))
        .unwrap();
        let config = Config::load(&from_env).unwrap();
        assert_eq!(
            (config.host.as_str(), config.port, config.workers),
            ("0.0.0.0", 7100, 3)
        );

        let flags = Overrides {
            host: Some("127.0.0.2".into()),
            port: Some(7200),
            ..Overrides::default()
        };
        let config = Config::load(&from_env.overridden_by(flags)).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.2", 7200));
    }

    #[test]
    fn every_key_comes_from_its_variable_above_the_file_and_below_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "port = 7000
max_connections = 5
[broker]
prefix = \"p\"\n",
        )
        .unwrap();
        let env = Overrides::from_env(env(&[
            ("HERALD_CONFIG", path.to_str().unwrap()),
            ("HERALD_MAX_CONNECTIONS", "77"),
            (
                "HERALD_ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("HERALD_ECHO_ROUTE", "true"),
            ("HERALD_BROKER__KIND", "redis"),
            (
                "HERALD_BROKER__URL",
                "redis://:hunter2-hunter2@10.0.0.1:6379",
            ),
        ]))
        .unwrap();
        let flags = Overrides {
            port: Some(7300),
            ..Overrides::default()
        };
        let config = Config::load(&env.overridden_by(flags)).unwrap();
        assert_eq!(config.port, 7300);
        assert_eq!(config.max_connections, 77);
        assert_eq!(config.allowed_origins.len(), 2);
        assert!(config.echo_route);
        assert_eq!(config.broker.kind, BrokerKind::Redis);
        assert_eq!(
            config.broker.prefix, "p",
            "the file's other [broker] keys stay"
        );
        let printed = config.to_redacted_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("redis://:<redacted>@10.0.0.1:6379"),
            "{printed}"
        );
    }

    #[test]
    fn a_variable_of_the_wrong_kind_names_the_variable() {
        for (var, value) in [
            ("HERALD_PORT", "70000"),
            ("HERALD_BROKER__KIND", "postgres"),
            ("HERALD_WORKERS", "-1"),
        ] {
            let overrides = Overrides::from_env(env(&[(var, value)])).unwrap();
            let err = Config::load(&overrides).unwrap_err().to_string();
            assert!(err.contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn a_bad_env_port_names_the_variable() {
        let err = Overrides::from_env(env(&[("HERALD_PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_PORT"), "{err}");
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let overrides = Overrides {
            config_path: Some("/nonexistent/herald.toml".into()),
            ..Overrides::default()
        };
        let err = Config::load(&overrides).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/herald.toml"),
            "{err}"
        );
    }
}
