//! herald on a Redis that speaks TLS only, as managed Redis services do:
//! `rediss://` with a password in the URL, the CA that signed Redis's
//! certificate in `[broker] ca_file`, and a client certificate, which this
//! Redis requires. The test makes its own CA and certificates (rcgen) and
//! starts `redis-server --port 0 --tls-port …`.

use std::path::{Path, PathBuf};

use herald::config::BrokerKind;
use herald::config::Config;
use herald::Application;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;

use crate::helpers::redis::{Redis, RedisTls};
use crate::helpers::TestApp;

/// The password of the test Redis, checked to appear in no error.
const PASSWORD: &str = "tls-test-password-6b1d";

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir`.
fn certificates(dir: &Path) -> RedisTls {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "herald test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");

    let issue = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca).expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = issue(vec![], ExtendedKeyUsagePurpose::ClientAuth);

    let write = |name: &str, pem: &str| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("a certificate file");
        path
    };
    RedisTls {
        ca: write("ca.pem", &ca.pem()),
        cert: write("server.pem", &server_cert),
        key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        password: PASSWORD.into(),
    }
}

/// Sets `config` for a node on `redis` with `tls`'s CA and client
/// certificate.
fn node_config(redis: &Redis, tls: &RedisTls, config: &mut Config) {
    config.broker.kind = BrokerKind::Redis;
    config.broker.url = redis.url();
    config.broker.ca_file = tls.ca.clone();
    config.broker.client_cert_file = tls.client_cert.clone();
    config.broker.client_key_file = tls.client_key.clone();
}

async fn node(redis: &Redis, tls: &RedisTls) -> TestApp {
    redis.node(|c| node_config(redis, tls, c)).await
}

/// What `Application::build` says when it cannot start.
async fn start_error(config: Config) -> String {
    match Application::build(config).await {
        Ok(_) => panic!("herald started"),
        Err(e) => e.to_string(),
    }
}

#[actix_web::test]
async fn two_nodes_share_a_redis_over_tls_and_refuse_one_they_cannot_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = certificates(dir.path());
    let Some(redis) = Redis::start_tls(files.clone()).await else {
        return;
    };
    assert!(redis.url().starts_with("rediss://:"), "{}", redis.url());

    // A publish on one node reaches a WebSocket client on the other.
    let a = node(&redis, &files).await;
    let b = node(&redis, &files).await;
    let mut on_b = b.ws_registered("63").await;
    let (status, body) = a
        .publish_form(&[("message", "over TLS"), ("id", "63")])
        .await;
    assert!(status.is_success(), "{body}");
    let frame = on_b.recv_json().await;
    assert_eq!(
        (&frame["data"], &frame["seq"]),
        (&json!("over TLS"), &body["seq"])
    );

    // Without the CA file, Redis's certificate is checked against the
    // built-in web PKI roots, which did not sign it: herald does not start,
    // says why, and does not show the password.
    let mut config = crate::helpers::test_config();
    node_config(&redis, &files, &mut config);
    config.broker.ca_file = PathBuf::new();
    let error = start_error(config).await;
    assert!(
        error.contains("certificate") && error.contains("broker.ca_file"),
        "{error}"
    );
    assert!(!error.contains(PASSWORD), "{error}");

    // This Redis requires a client certificate: without one, no start.
    let mut config = crate::helpers::test_config();
    node_config(&redis, &files, &mut config);
    config.broker.client_cert_file = PathBuf::new();
    config.broker.client_key_file = PathBuf::new();
    let error = start_error(config).await;
    assert!(error.contains("broker.client_cert_file"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
}

/// Runs the `herald` binary (no command: a real start) with `env`; returns
/// its exit code and standard error.
async fn herald_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    herald_exit_with(&[], env).await
}

/// [`herald_exit`] with `args` (a command such as `check-config`).
async fn herald_exit_with(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = crate::helpers::process::herald();
    cmd.args(args)
        .env("HERALD_PORT", "0")
        .env("HERALD_BROKER__KIND", "redis")
        .env(
            "HERALD_BROKER__URL",
            "rediss://:pw-53cr3t@redis.example.com:6380",
        );
    for (name, value) in env {
        cmd.env(name, value);
    }
    let output = crate::helpers::within("herald to refuse its settings", cmd.output())
        .await
        .expect("herald runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn a_bad_redis_url_or_tls_file_stops_herald_at_startup_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("a file");
    let not_pem = not_pem.to_str().expect("a UTF-8 path");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("a UTF-8 path");
    for (env, key) in [
        (
            &[("HERALD_BROKER__URL", "rediss://:pw-53cr3t@host:notaport")][..],
            "broker.url",
        ),
        (
            &[(
                "HERALD_BROKER__URL",
                "rediss://:pw-53cr3t@host:6380/#insecure",
            )],
            "broker.url",
        ),
        (&[("HERALD_BROKER__CA_FILE", missing)], "broker.ca_file"),
        (&[("HERALD_BROKER__CA_FILE", not_pem)], "broker.ca_file"),
        (
            &[("HERALD_BROKER__CLIENT_CERT_FILE", not_pem)],
            "broker.client_key_file",
        ),
        (
            &[
                ("HERALD_BROKER__URL", "redis://:pw-53cr3t@host:6379"),
                ("HERALD_BROKER__CA_FILE", not_pem),
            ],
            "broker.ca_file",
        ),
    ] {
        let (code, stderr) = herald_exit(env).await;
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(&format!("`{key}`")), "{env:?}: {stderr}");
        assert!(!stderr.contains("pw-53cr3t"), "{env:?}: {stderr}");
    }
}

#[actix_web::test]
async fn a_client_key_that_is_not_the_certificates_is_a_setting_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = certificates(dir.path());
    let path = |p: &PathBuf| p.to_str().expect("a UTF-8 path").to_owned();
    let (ca, cert) = (path(&files.ca), path(&files.client_cert));
    // The client's certificate with the server's key: both files are
    // valid PEM, but not a pair.
    let other_key = path(&files.key);
    let env = [
        ("HERALD_BROKER__CA_FILE", ca.as_str()),
        ("HERALD_BROKER__CLIENT_CERT_FILE", cert.as_str()),
        ("HERALD_BROKER__CLIENT_KEY_FILE", other_key.as_str()),
    ];
    for args in [&["check-config"][..], &[]] {
        let (code, stderr) = herald_exit_with(args, &env).await;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("`broker.client_key_file`")
                && stderr.contains("not the private key of the certificate"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("pw-53cr3t"), "{args:?}: {stderr}");
    }
    // The right key passes the same check.
    let key = path(&files.client_key);
    let (code, stderr) = herald_exit_with(
        &["check-config"],
        &[
            ("HERALD_BROKER__CA_FILE", ca.as_str()),
            ("HERALD_BROKER__CLIENT_CERT_FILE", cert.as_str()),
            ("HERALD_BROKER__CLIENT_KEY_FILE", key.as_str()),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
}
