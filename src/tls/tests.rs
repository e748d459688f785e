//! Generation, reuse, re-issue, provided PEM files, and real handshakes against the local CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A TLS client that trusts only `ca_pem`, offering `alpn`.
fn client(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Serves one TLS connection with `material` on loopback (echoing 5 bytes), connects with a
/// client trusting `ca_pem`, verifying `name`. Returns the negotiated ALPN or the client error.
async fn handshake(
    material: &TlsMaterial,
    ca_pem: &str,
    name: &str,
    alpn: &[&[u8]],
) -> std::io::Result<Option<Vec<u8>>> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_material = material.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = server_material.accept(tcp).await?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let result = async {
        let mut tls = client(ca_pem, alpn).connect(name, tcp).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        tls.write_all(b"hello").await?;
        let mut echo = [0u8; 5];
        tls.read_exact(&mut echo).await?;
        assert_eq!(&echo, b"hello");
        Ok(alpn)
    }
    .await;
    if result.is_ok() {
        server.await.unwrap().unwrap();
    } else {
        server.abort();
    }
    result
}

#[test]
fn generates_into_the_directory_then_reuses_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let first = load_or_create(&TlsSettings::generated(&dir)).unwrap();
    assert_eq!(first.origin, Origin::Created);
    for name in [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE] {
        assert!(dir.join(name).is_file(), "{name}");
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join(SERVER_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);
    }
    let ca = first.ca.clone().unwrap();
    assert_eq!(ca.path, dir.join(CA_CERT_FILE));
    assert_eq!(ca.pem.as_bytes(), file(&dir, CA_CERT_FILE));
    assert_eq!(first.ca_pem(), Some(ca.pem.as_str()));
    assert_eq!(first.cert_path, dir.join(SERVER_CERT_FILE));
    for name in ["localhost", "127.0.0.1", "::1"] {
        assert!(first.names.iter().any(|n| n == name), "{name}");
    }

    let cert = file(&dir, SERVER_CERT_FILE);
    let key = file(&dir, SERVER_KEY_FILE);
    let second = load_or_create(&TlsSettings::generated(&dir)).unwrap();
    assert_eq!(second.origin, Origin::Reused);
    assert_eq!(file(&dir, SERVER_CERT_FILE), cert);
    assert_eq!(file(&dir, SERVER_KEY_FILE), key);
    assert_eq!(second.ca.unwrap().pem, ca.pem);
}

#[tokio::test]
async fn a_new_name_reissues_the_server_certificate_with_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let first = load_or_create(&TlsSettings::generated(tmp.path())).unwrap();
    let ca_pem = first.ca_pem().unwrap().to_string();
    let ca_key = file(tmp.path(), CA_KEY_FILE);
    let cert = file(tmp.path(), SERVER_CERT_FILE);
    assert!(handshake(&first, &ca_pem, "servicebus", &[]).await.is_err());

    let settings = TlsSettings {
        names: TlsSettings::parse_names(" servicebus, 10.1.2.3 ,,*.local.test"),
        ..TlsSettings::generated(tmp.path())
    };
    let second = load_or_create(&settings).unwrap();
    assert!(
        matches!(&second.origin, Origin::Reissued { reason } if reason.contains("servicebus")),
        "{:?}",
        second.origin
    );
    assert_eq!(second.ca_pem(), Some(ca_pem.as_str()));
    assert_eq!(file(tmp.path(), CA_KEY_FILE), ca_key);
    assert_ne!(file(tmp.path(), SERVER_CERT_FILE), cert);
    for name in [
        "servicebus",
        "10.1.2.3",
        "a.local.test",
        "localhost",
        "127.0.0.1",
    ] {
        handshake(&second, &ca_pem, name, &[]).await.unwrap();
    }

    let third = load_or_create(&settings).unwrap();
    assert_eq!(third.origin, Origin::Reused);
}

#[test]
fn unusable_server_files_are_reissued_and_a_missing_ca_regenerates_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let first = load_or_create(&TlsSettings::generated(tmp.path())).unwrap();
    std::fs::write(tmp.path().join(SERVER_CERT_FILE), "garbage").unwrap();
    let second = load_or_create(&TlsSettings::generated(tmp.path())).unwrap();
    assert!(matches!(second.origin, Origin::Reissued { .. }));
    assert_eq!(second.ca_pem(), first.ca_pem());

    std::fs::remove_file(tmp.path().join(CA_KEY_FILE)).unwrap();
    let third = load_or_create(&TlsSettings::generated(tmp.path())).unwrap();
    assert_eq!(third.origin, Origin::Created);
    assert_ne!(third.ca_pem(), first.ca_pem());
}

#[test]
fn invalid_names_and_half_configured_files_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = TlsSettings {
        names: vec!["not a name".to_string()],
        ..TlsSettings::generated(tmp.path())
    };
    assert!(matches!(
        load_or_create(&settings),
        Err(TlsError::InvalidName(n)) if n == "not a name"
    ));
    let settings = TlsSettings {
        cert: Some(tmp.path().join("cert.pem")),
        ..TlsSettings::generated(tmp.path())
    };
    assert!(matches!(
        load_or_create(&settings),
        Err(TlsError::Incomplete)
    ));
}

#[tokio::test]
async fn user_provided_pem_files_are_used_as_they_are() {
    // The "user's" certificate: one generated elsewhere, given as a chain (leaf + CA).
    let tmp = tempfile::tempdir().unwrap();
    let theirs = tmp.path().join("theirs");
    let generated = load_or_create(&TlsSettings::generated(&theirs)).unwrap();
    let ca_pem = generated.ca_pem().unwrap().to_string();
    let chain = tmp.path().join("chain.pem");
    let mut pem = file(&theirs, SERVER_CERT_FILE);
    pem.extend(file(&theirs, CA_CERT_FILE));
    std::fs::write(&chain, pem).unwrap();

    let ours = tmp.path().join("ours");
    let settings = TlsSettings {
        cert: Some(chain.clone()),
        key: Some(theirs.join(SERVER_KEY_FILE)),
        ..TlsSettings::generated(&ours)
    };
    let provided = load_or_create(&settings).unwrap();
    assert_eq!(provided.origin, Origin::Provided);
    assert!(provided.ca.is_none());
    assert_eq!(provided.cert_path, chain);
    assert!(
        !ours.exists(),
        "nothing is generated for a provided certificate"
    );
    handshake(&provided, &ca_pem, "localhost", &[])
        .await
        .unwrap();

    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "no pem here").unwrap();
    let settings = TlsSettings {
        cert: Some(garbage.clone()),
        key: Some(theirs.join(SERVER_KEY_FILE)),
        ..TlsSettings::generated(&ours)
    };
    assert!(matches!(
        load_or_create(&settings),
        Err(TlsError::NoCertificate(p)) if p == garbage
    ));
    let settings = TlsSettings {
        cert: Some(tmp.path().join("missing.pem")),
        key: Some(theirs.join(SERVER_KEY_FILE)),
        ..TlsSettings::generated(&ours)
    };
    assert!(matches!(
        load_or_create(&settings),
        Err(TlsError::Io { .. })
    ));
    // A key that does not match the certificate is refused by rustls.
    let other = load_or_create(&TlsSettings::generated(tmp.path().join("other"))).unwrap();
    let settings = TlsSettings {
        cert: Some(chain),
        key: Some(tmp.path().join("other").join(SERVER_KEY_FILE)),
        ..TlsSettings::generated(&ours)
    };
    assert!(other.ca.is_some());
    assert!(matches!(
        load_or_create(&settings),
        Err(TlsError::Rustls(_))
    ));
}

#[tokio::test]
async fn handshake_verifies_against_only_the_generated_ca_and_negotiates_alpn() {
    let tmp = tempfile::tempdir().unwrap();
    let material = load_or_create(&TlsSettings::generated(tmp.path().join("a"))).unwrap();
    let ca_pem = material.ca_pem().unwrap().to_string();

    // No ALPN (AMQP clients): accepted, nothing negotiated.
    let alpn = handshake(&material, &ca_pem, "localhost", &[])
        .await
        .unwrap();
    assert_eq!(alpn, None);
    // HTTPS clients offering http/1.1 (with h2 first) get http/1.1.
    let alpn = handshake(&material, &ca_pem, "localhost", &[b"h2", ALPN_HTTP11])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(ALPN_HTTP11));
    // A client offering only a protocol we do not speak still completes the handshake.
    let alpn = handshake(&material, &ca_pem, "localhost", &[b"amqp"])
        .await
        .unwrap();
    assert_eq!(alpn, None);
    handshake(&material, &ca_pem, "127.0.0.1", &[])
        .await
        .unwrap();

    // A client trusting another CA refuses the certificate.
    let other = load_or_create(&TlsSettings::generated(tmp.path().join("b"))).unwrap();
    let err = handshake(&material, other.ca_pem().unwrap(), "localhost", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // And a name the certificate does not cover is refused too.
    let err = handshake(&material, &ca_pem, "example.com", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn a_client_that_never_says_hello_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let material = load_or_create(&TlsSettings::generated(tmp.path())).unwrap();
    let (_client, server) = tokio::io::duplex(64);
    let err = material
        .accept_within(server, std::time::Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}
