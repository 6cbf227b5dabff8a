//! `[broker]` in the config: which broker, and for Redis the URL, the key
//! prefix and the TLS files. Checked with the rest of the config, so that
//! a bad URL, an unreadable or invalid PEM file, or a client key that is
//! not the client certificate's stops herald at startup (exit 2, naming the
//! key); the broker builds its Redis client from what
//! [`BrokerConfig::redis_target`] reads. With `kind = "memory"` the other
//! settings do nothing, and [`BrokerConfig::unused_settings`] names them
//! for a startup warning. `publish_timeout_ms` bounds how long a publish
//! waits for Redis (see `broker/redis/publish.rs`), and a PING
//! (`broker/redis/probe.rs`).
//!
//! For `rediss://` the host name of the URL must match the server's
//! certificate; `#insecure` (no check) is refused. `ca_file` names the CA
//! certificates to trust instead of the built-in roots (a private CA);
//! `client_cert_file` and `client_key_file` present a client certificate,
//! for a Redis that requires one (`tls-auth-clients`).

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// `[broker]` in the config.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// Redis URL, for `kind = "redis"`.
    pub url: String,
    /// Prefix of every Redis key and channel herald uses, so several
    /// clusters can share one Redis.
    pub prefix: String,
    /// For `rediss://`: a PEM file of the CA certificates to trust instead
    /// of the built-in web PKI roots (a private CA). Empty: the built-in
    /// roots.
    pub ca_file: PathBuf,
    /// For `rediss://`: a PEM client certificate (chain) to present, for a
    /// Redis that requires one; with `client_key_file`. Empty: none.
    pub client_cert_file: PathBuf,
    /// The private key of `client_cert_file` (PEM).
    pub client_key_file: PathBuf,
    /// The longest a publish waits for Redis, in ms: past it the publisher
    /// is answered 504 (the outcome unknown) and herald sends nothing more
    /// for it. Also how long the node waits for the answer to its PING
    /// before it takes Redis for unresponsive. Within
    /// [`PUBLISH_TIMEOUT_MS`].
    pub publish_timeout_ms: u64,
}

/// What `publish_timeout_ms` may be: long enough for a round trip to a
/// Redis in another zone, short enough that a publisher is not held past
/// what an HTTP client waits.
pub const PUBLISH_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 50..=30_000;

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Memory,
            url: "redis://127.0.0.1:6379".into(),
            prefix: "herald".into(),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            publish_timeout_ms: 1000,
        }
    }
}

impl BrokerConfig {
    /// Checks `publish_timeout_ms`, and for `kind = "redis"` what can be
    /// checked before connecting: the URL parses, and the TLS files are
    /// readable PEM of the right kind. Reads those files; connects to nothing.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if !PUBLISH_TIMEOUT_MS.contains(&self.publish_timeout_ms) {
            return Err(invalid(
                "broker.publish_timeout_ms",
                format!(
                    "must be between {} and {} (milliseconds a publish waits for Redis)",
                    PUBLISH_TIMEOUT_MS.start(),
                    PUBLISH_TIMEOUT_MS.end()
                ),
            ));
        }
        match self.kind {
            BrokerKind::Memory => Ok(()),
            BrokerKind::Redis => self.redis_target().map(|_| ()),
        }
    }

    /// What a Redis client is built from: the URL parsed and, for
    /// `rediss://`, the TLS files read and checked; or the first setting
    /// at fault. Reads the PEM files; connects to nothing. Errors never
    /// repeat the URL (it may hold a password) or a file's contents.
    pub fn redis_target(&self) -> Result<RedisTarget, InvalidSetting> {
        let info = self.url.as_str().into_connection_info().map_err(|e| {
            invalid(
                "broker.url",
                format!(
                    "is not a Redis URL such as redis://127.0.0.1:6379 or \
                     rediss://:password@host:6380 ({})",
                    e.detail().map_or_else(|| e.to_string(), str::to_owned)
                ),
            )
        })?;
        let tls = match &info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(invalid(
                    "broker.url",
                    "#insecure (no certificate check) is not supported: \
                     name the CA that signed Redis's certificate in broker.ca_file",
                ))
            }
            ConnectionAddr::TcpTls { .. } => true,
            _ => false,
        };
        let set = |path: &Path| !path.as_os_str().is_empty();
        if !tls {
            for (key, path) in [
                ("broker.ca_file", &self.ca_file),
                ("broker.client_cert_file", &self.client_cert_file),
                ("broker.client_key_file", &self.client_key_file),
            ] {
                if set(path) {
                    return Err(invalid(
                        key,
                        "applies to TLS only: use a rediss:// URL in broker.url",
                    ));
                }
            }
            return Ok(RedisTarget { info, tls: None });
        }
        let root_cert = if set(&self.ca_file) {
            Some(read_certificates("broker.ca_file", &self.ca_file, true)?)
        } else {
            None
        };
        let client_tls = match (set(&self.client_cert_file), set(&self.client_key_file)) {
            (false, false) => None,
            (true, false) => {
                return Err(invalid(
                    "broker.client_key_file",
                    "must be set with broker.client_cert_file (the certificate's private key)",
                ))
            }
            (false, true) => {
                return Err(invalid(
                    "broker.client_cert_file",
                    "must be set with broker.client_key_file (the key's certificate)",
                ))
            }
            (true, true) => Some(self.client_pair()?),
        };
        Ok(RedisTarget {
            info,
            tls: Some(TlsCertificates {
                client_tls,
                root_cert,
            }),
        })
    }

    /// The client certificate and its key, once rustls takes them as a
    /// pair: a key of a kind it can sign with, matching the certificate's
    /// public key. Checked here, as rustls would check them when the first
    /// connection is made, so that a mismatch is a setting error (exit 2,
    /// also from `check-config`) rather than a failure to connect.
    fn client_pair(&self) -> Result<ClientTlsConfig, InvalidSetting> {
        let (cert_key, cert_path) = ("broker.client_cert_file", &self.client_cert_file);
        let client_cert = read_certificates(cert_key, cert_path, false)?;
        let (client_key, private) = read_private_key(&self.client_key_file)?;
        // Read as certificates by `read_certificates` just now.
        let chain = CertificateDer::pem_slice_iter(&client_cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                invalid(
                    cert_key,
                    format!("{} is not valid PEM: {e}", cert_path.display()),
                )
            })?;
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => invalid(
                "broker.client_key_file",
                format!(
                    "{} is not the private key of the certificate in {} (broker.client_cert_file)",
                    self.client_key_file.display(),
                    cert_path.display()
                ),
            ),
            rustls::Error::InvalidCertificate(why) => invalid(
                cert_key,
                format!(
                    "{} holds an unusable certificate: {why:?}",
                    cert_path.display()
                ),
            ),
            other => invalid(
                "broker.client_key_file",
                format!(
                    "{} holds a key herald cannot sign with ({other})",
                    self.client_key_file.display()
                ),
            ),
        })?;
        Ok(ClientTlsConfig {
            client_cert,
            client_key,
        })
    }

    /// With `kind = "memory"`, the other `[broker]` settings that differ
    /// from their defaults: they do nothing there, so herald names them in
    /// a startup warning (a node meant for a cluster, started without
    /// `kind = "redis"`). Empty with `kind = "redis"`.
    pub fn unused_settings(&self) -> Vec<&'static str> {
        if self.kind != BrokerKind::Memory {
            return Vec::new();
        }
        let default = Self::default();
        [
            ("broker.url", self.url != default.url),
            ("broker.prefix", self.prefix != default.prefix),
            ("broker.ca_file", self.ca_file != default.ca_file),
            (
                "broker.client_cert_file",
                self.client_cert_file != default.client_cert_file,
            ),
            (
                "broker.client_key_file",
                self.client_key_file != default.client_key_file,
            ),
            (
                "broker.publish_timeout_ms",
                self.publish_timeout_ms != default.publish_timeout_ms,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// Where messages are numbered, kept and announced (`broker.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    Memory,
    Redis,
}

impl BrokerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// A Redis server as `[broker]` describes it, checked: what the broker
/// builds its client from.
pub struct RedisTarget {
    /// `broker.url`, parsed.
    pub info: ConnectionInfo,
    /// For `rediss://`: the certificates to trust (none: the built-in
    /// roots) and to present. `None` for a plain connection.
    pub tls: Option<TlsCertificates>,
}

/// A `[broker]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The key at fault, as in the config file (`broker.ca_file`).
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        key,
        reason: reason.into(),
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, InvalidSetting> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

/// The file's bytes, once they are known to hold PEM certificates (and,
/// for a CA file, ones rustls takes as trust anchors).
fn read_certificates(
    key: &'static str,
    path: &Path,
    anchors: bool,
) -> Result<Vec<u8>, InvalidSetting> {
    let pem = read(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{} is not valid PEM: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(invalid(
            key,
            format!(
                "{} holds no certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    if anchors {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in certificates {
            roots.add(certificate).map_err(|e| {
                invalid(
                    key,
                    format!("{} holds an unusable CA certificate: {e}", path.display()),
                )
            })?;
        }
    }
    Ok(pem)
}

/// The key file's bytes and the key, once they are known to hold a private
/// key. The parser's message is left out: it could quote the file.
fn read_private_key(path: &Path) -> Result<(Vec<u8>, PrivateKeyDer<'static>), InvalidSetting> {
    let key = "broker.client_key_file";
    let pem = read(key, path)?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        invalid(
            key,
            format!(
                "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ),
        )
    })?;
    Ok((pem, private))
}
