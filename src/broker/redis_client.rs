//! The Redis client a node connects with, from `[broker]`: the URL, and for
//! `rediss://` the TLS settings. Built once by config validation, so that a
//! bad URL or an unreadable or invalid PEM file stops herald at startup
//! (exit 2, naming the key), and again when the broker connects.
//!
//! TLS is rustls (with the ring crypto provider). Without `ca_file` the
//! server's certificate is checked against the Mozilla roots compiled into
//! herald (webpki-roots), which cover the managed Redis services; with it,
//! against the certificates of that file only (a private CA). The host name
//! of the URL must match the certificate; `#insecure` (no check) is
//! refused. `client_cert_file` and `client_key_file` present a client
//! certificate, for a Redis that requires one (`tls-auth-clients`).

use std::path::Path;

use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::BrokerConfig;

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

/// Which certificates a TLS connection trusts, for the startup log.
pub fn trusted_roots(config: &BrokerConfig) -> String {
    if config.ca_file.as_os_str().is_empty() {
        "the built-in web PKI roots".into()
    } else {
        format!("the CA in {}", config.ca_file.display())
    }
}

/// The client for `config`, or the first setting at fault. Reads the PEM
/// files; connects to nothing. Errors never repeat the URL (it may hold a
/// password) or a file's contents.
pub fn client(config: &BrokerConfig) -> Result<redis::Client, InvalidSetting> {
    let info = config.url.as_str().into_connection_info().map_err(|e| {
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
            ("broker.ca_file", &config.ca_file),
            ("broker.client_cert_file", &config.client_cert_file),
            ("broker.client_key_file", &config.client_key_file),
        ] {
            if set(path) {
                return Err(invalid(
                    key,
                    "applies to TLS only: use a rediss:// URL in broker.url",
                ));
            }
        }
        return redis::Client::open(info).map_err(|e| invalid("broker.url", e.to_string()));
    }
    let root_cert = if set(&config.ca_file) {
        Some(read_certificates("broker.ca_file", &config.ca_file, true)?)
    } else {
        None
    };
    let client_tls = match (set(&config.client_cert_file), set(&config.client_key_file)) {
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
        (true, true) => Some(client_pair(config)?),
    };
    install_crypto_provider();
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| invalid("broker.url", e.to_string()))
}

/// rustls needs one process-wide crypto provider; herald's is ring.
/// Installing it again (or after another part of the process did) is
/// harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// The client certificate and its key, once rustls takes them as a pair:
/// a key of a kind it can sign with, matching the certificate's public key.
/// Checked here, as rustls would check them when the first connection is
/// made, so that a mismatch is a setting error (exit 2, also from
/// `check-config`) rather than a failure to connect.
fn client_pair(config: &BrokerConfig) -> Result<ClientTlsConfig, InvalidSetting> {
    let (cert_key, cert_path) = ("broker.client_cert_file", &config.client_cert_file);
    let client_cert = read_certificates(cert_key, cert_path, false)?;
    let (client_key, private) = read_private_key(&config.client_key_file)?;
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
                config.client_key_file.display(),
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
                config.client_key_file.display()
            ),
        ),
    })?;
    Ok(ClientTlsConfig {
        client_cert,
        client_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> BrokerConfig {
        BrokerConfig {
            url: url.into(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn urls_are_parsed_and_bad_ones_named_without_their_password() {
        assert!(client(&config("redis://:pw@10.0.0.5:6379/2")).is_ok());
        assert!(client(&config("rediss://:pw@redis.example.com:6380")).is_ok());
        for bad in [
            "redis://:hunter2@host:notaport",
            "rediss://:hunter2@",
            "redis://:hunter2@host:6379/notadb",
            "rediss://:hunter2@host:6380/#insecure",
        ] {
            let e = client(&config(bad)).unwrap_err();
            assert_eq!(e.key, "broker.url", "{bad}");
            assert!(!e.reason.contains("hunter2"), "{bad}: {e:?}");
        }
    }

    #[test]
    fn pem_files_are_checked_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let missing = dir.path().join("missing.pem");
        let tls = |f: &dyn Fn(&mut BrokerConfig)| {
            let mut c = config("rediss://redis.example.com:6380");
            f(&mut c);
            client(&c).unwrap_err()
        };
        let e = tls(&|c| c.ca_file = missing.clone());
        assert_eq!(e.key, "broker.ca_file");
        assert!(e.reason.contains("cannot read"), "{e:?}");
        let e = tls(&|c| c.ca_file = not_pem.clone());
        assert_eq!(e.key, "broker.ca_file");
        assert!(e.reason.contains("no certificate"), "{e:?}");
        let e = tls(&|c| c.client_cert_file = not_pem.clone());
        assert_eq!(e.key, "broker.client_key_file");
        let e = tls(&|c| {
            c.client_cert_file = not_pem.clone();
            c.client_key_file = not_pem.clone();
        });
        assert_eq!(e.key, "broker.client_cert_file");
        // TLS files on a plain URL are a mistake, not silently ignored.
        let mut plain = config("redis://127.0.0.1:6379");
        plain.ca_file = not_pem.clone();
        assert_eq!(client(&plain).unwrap_err().key, "broker.ca_file");
    }
}
