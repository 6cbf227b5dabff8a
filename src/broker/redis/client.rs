//! The Redis client a node connects with, built from `[broker]` as the
//! config checked it ([`BrokerConfig::redis_target`]: the URL parsed, for
//! `rediss://` the TLS files read).
//!
//! TLS is rustls (with the ring crypto provider). Without `ca_file` the
//! server's certificate is checked against the Mozilla roots compiled into
//! herald (webpki-roots), which cover the managed Redis services; with it,
//! against the certificates of that file only (a private CA).

use crate::config::{BrokerConfig, InvalidSetting};

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
    let target = config.redis_target()?;
    let built = match target.tls {
        None => redis::Client::open(target.info),
        Some(certificates) => {
            install_crypto_provider();
            redis::Client::build_with_tls(target.info, certificates)
        }
    };
    built.map_err(|e| InvalidSetting {
        key: "broker.url",
        reason: e.to_string(),
    })
}

/// What to check when a TLS connection failed with `error` (as rustls
/// words it), for the two failures a setting can fix; empty otherwise.
pub fn tls_hint(error: &str, config: &BrokerConfig) -> String {
    if error.contains("CaUsedAsEndEntity") {
        " (TLS: Redis presents a CA certificate as its own; give Redis a \
         certificate signed by that CA, or a self-signed one with \
         basicConstraints CA:FALSE)"
            .into()
    } else if error.contains("invalid peer certificate") {
        format!(
            " (TLS: Redis's certificate is not signed by {}, or does not name the host \
             of broker.url in its subjectAltName; a private CA goes in broker.ca_file)",
            trusted_roots(config)
        )
    } else if error.contains("CertificateRequired")
        || error.contains("BadCertificate")
        || error.contains("UnknownCA")
    {
        " (TLS: Redis refused this node's client certificate, or requires one: \
         broker.client_cert_file and broker.client_key_file)"
            .into()
    } else {
        String::new()
    }
}

/// rustls needs one process-wide crypto provider; herald's is ring.
/// Installing it again (or after another part of the process did) is
/// harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
