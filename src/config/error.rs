//! What a config error says: the file, variable or key at fault, and never
//! a value, which may be a secret.

use std::path::PathBuf;

use crate::config_env;

/// A setting that could not be used, with the place it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<config_env::InvalidVar> for ConfigError {
    fn from(e: config_env::InvalidVar) -> Self {
        Self::Env {
            var: e.var,
            reason: e.reason,
        }
    }
}

/// A TOML error as `line L, column C: what`, without the source line or
/// any quoted value, either of which may be a secret.
pub(super) fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let place = error.span().map(|span| {
        let start = span.start.min(text.len());
        let before = text.get(..start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
        // The key the line sets, when it reads `key = ...`: a name, never
        // a value.
        let line_text = text.lines().nth(line - 1).unwrap_or_default();
        let key = line_text
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            });
        match key {
            Some(key) => format!("line {line}, column {column}, key `{key}`: "),
            None => format!("line {line}, column {column}: "),
        }
    });
    format!(
        "{}{}",
        place.unwrap_or_default(),
        without_quoted_values(error.message().trim_end())
    )
    .replace('\n', " ")
}

/// `text` with every double-quoted part replaced by `"…"`: serde names
/// keys in backquotes and values in double quotes.
fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// A deserializer's complaint on one line.
pub(super) fn deserialize_reason(error: &toml::de::Error) -> String {
    error.to_string().trim_end().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn a_broken_config_file_is_reported_without_its_text() {
        for text in [
            "client_secret = \"S3cret-S3cret-S3cret-S3cret-S3cret\n",
            "publish_keys = [\"S3cret-key-0123456\" \"x\"]\n",
            "publish_keys = \"S3cret-key-0123456\"\n",
        ] {
            let err = Config::from_toml(text, Path::new("bad.toml"))
                .unwrap_err()
                .to_string();
            assert!(!err.contains("S3cret"), "{err}");
            assert!(err.contains("line 1"), "{err}");
        }
    }
}
