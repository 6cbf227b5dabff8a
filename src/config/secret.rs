//! Secrets in the config (keys, the client secret, the Redis URL's
//! password): compared and used, never printed, in `Debug` or in
//! `print-config`, whose placeholder is refused as a value.

use serde::{Deserialize, Serialize};

use super::Config;

/// A secret from the config: compared and used, never printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// The placeholder `print-config` writes for a secret; refused as a value.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// The configuration as TOML herald reads back, with every secret
    /// replaced by [`REDACTED`] (and the password of the Redis URL).
    pub fn to_redacted_toml(&self) -> String {
        let mut redacted = self.clone();
        let hide = |secret: &mut Secret| {
            if !secret.is_empty() {
                *secret = Secret::new(REDACTED);
            }
        };
        redacted.publish_keys.iter_mut().for_each(hide);
        redacted.admin_keys.iter_mut().for_each(hide);
        hide(&mut redacted.client_secret);
        redacted.broker.url = redact_url_password(&redacted.broker.url);
        toml::to_string(&redacted).unwrap_or_default()
    }
}

/// A URL with its password replaced by [`REDACTED`], for logs and
/// printed configuration: the one between `:` and `@`, and a `pass` or
/// `password` query parameter (how `redis+unix://` URLs carry it).
pub fn redact_url_password(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = redact_userinfo_password(url);
    let Some(query) = query else {
        return base;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if ["pass", "password"].contains(&key.to_ascii_lowercase().as_str()) => {
                format!("{key}={REDACTED}")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

fn redact_userinfo_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url.rfind('@').filter(|&at| at > scheme_end) else {
        return url.to_owned();
    };
    let userinfo = &url[scheme_end..at];
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    if !userinfo.contains(':') && !userinfo.is_empty() {
        // `redis://secret@host`: the only part is the password.
        return format!("{}{REDACTED}{}", &url[..scheme_end], &url[at..]);
    }
    format!("{}{user}:{REDACTED}{}", &url[..scheme_end], &url[at..])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::tests::env;
    use crate::config::Overrides;

    #[test]
    fn secrets_come_from_the_environment_and_are_never_printed() {
        let overrides = Overrides::from_env(env(&[
            (
                "HERALD_PUBLISH_KEYS",
                "key-one-0123456789, key-two-0123456789",
            ),
            (
                "HERALD_CLIENT_SECRET",
                "a-client-secret-of-at-least-32-bytes",
            ),
        ]))
        .unwrap();
        let config = Config::load(&Overrides {
            config_path: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")),
            ..overrides
        })
        .unwrap();
        assert_eq!(config.publish_keys.len(), 2);
        assert_eq!(config.publish_keys[1].expose(), "key-two-0123456789");
        config.validate().unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("key-one"), "{printed}");
        assert!(!printed.contains("a-client-secret"), "{printed}");
        let printed = config.to_redacted_toml();
        assert!(!printed.contains("key-one"), "{printed}");
        assert!(!printed.contains("a-client-secret"), "{printed}");
        assert!(printed.contains(REDACTED), "{printed}");
    }

    #[test]
    fn passwords_in_any_part_of_a_redis_url_are_redacted() {
        for (url, shown) in [
            ("redis://u:pw1@h:1/0", "redis://u:<redacted>@h:1/0"),
            ("redis://pw2@h", "redis://<redacted>@h"),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=pw3",
                "redis+unix:///tmp/r.sock?db=1&pass=<redacted>",
            ),
            (
                "unix:///tmp/r.sock?Password=pw4",
                "unix:///tmp/r.sock?Password=<redacted>",
            ),
            ("redis://h:6379", "redis://h:6379"),
        ] {
            assert_eq!(redact_url_password(url), shown);
        }
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same() {
        let config = Config {
            port: 9100,
            allowed_origins: vec!["https://a.example".into()],
            ..Config::default()
        };
        let text = config.to_redacted_toml();
        let back = Config::from_toml(&text, Path::new("printed.toml")).unwrap();
        back.validate().unwrap();
        assert_eq!(format!("{back:?}"), format!("{config:?}"));
        let with_secret = Config {
            client_secret: Secret::new("a-client-secret-of-at-least-32-bytes"),
            ..Config::default()
        };
        let back = Config::from_toml(&with_secret.to_redacted_toml(), Path::new("p")).unwrap();
        let err = back.validate().unwrap_err().to_string();
        assert!(
            err.contains("client_secret") && err.contains("placeholder"),
            "{err}"
        );
    }
}
