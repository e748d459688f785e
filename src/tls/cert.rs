//! The generated local CA and server certificate (rcgen): names, reuse check, issue, files.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{Datelike, Days, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;

use super::{
    parse_chain, parse_key, provider, read, server_configs, LocalCa, Origin, TlsError, TlsMaterial,
    TlsSettings,
};

/// The CA certificate users trust (`localzure tls ca` prints it).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key, kept so a re-issued server certificate chains to the CA already trusted.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The server certificate the listeners present.
pub const SERVER_CERT_FILE: &str = "cert.pem";
/// The server certificate's key.
pub const SERVER_KEY_FILE: &str = "key.pem";

/// 397 days: within the 398-day limit Apple platforms and browsers put on server certificates.
const SERVER_VALIDITY_DAYS: u64 = 397;
/// Ten years: the CA is trusted once by hand, so it should outlive the installation.
const CA_VALIDITY_DAYS: u64 = 3650;
/// A server certificate expiring within this window is re-issued at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The names every generated certificate covers: `localhost`, `127.0.0.1`, `::1` and this
/// machine's host name (the container name under Docker), when it is a valid DNS name.
pub fn default_names() -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_ascii_lowercase());
    match host {
        Some(host) if !host.is_empty() && check_name(&host).is_ok() => names.push(host),
        Some(host) => tracing::debug!(%host, "host name left out of the TLS certificate"),
        None => {}
    }
    names
}

/// Default names plus the configured extra names, lower-cased, validated, de-duplicated.
fn wanted_names(extra: &[String]) -> Result<Vec<String>, TlsError> {
    let mut names = default_names();
    for name in extra {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        check_name(&name)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The name a client would verify for `name`: itself, or a label under a wildcard.
fn probe_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    let probe = match name.strip_prefix("*.") {
        Some(rest) => format!("wildcard-probe.{rest}"),
        None => name.to_string(),
    };
    ServerName::try_from(probe).map_err(|_| TlsError::InvalidName(name.to_string()))
}

fn check_name(name: &str) -> Result<(), TlsError> {
    probe_name(name).map(|_| ())
}

fn san(name: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let ia5 = name
        .try_into()
        .map_err(|_| TlsError::InvalidName(name.to_string()))?;
    Ok(SanType::DnsName(ia5))
}

/// The CA as read from (or just written to) the directory.
struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
}

pub(super) fn load_or_generate(settings: &TlsSettings) -> Result<TlsMaterial, TlsError> {
    let dir = settings.dir.as_path();
    let names = wanted_names(&settings.names)?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;

    let (ca, origin) = match load_ca(dir) {
        Ok(ca) => match check_server(dir, &ca, &names) {
            Ok(()) => (ca, Origin::Reused),
            Err(reason) => {
                issue_server(dir, &ca, &names)?;
                (ca, Origin::Reissued { reason })
            }
        },
        Err(reason) => {
            if dir.join(CA_CERT_FILE).exists() {
                tracing::warn!(dir = %dir.display(), %reason, "TLS: the local CA is unusable; \
                    generating a new one, which clients must trust again");
            }
            let ca = create_ca(dir)?;
            issue_server(dir, &ca, &names)?;
            (ca, Origin::Created)
        }
    };

    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    let chain = parse_chain(&cert_path, &read(&cert_path)?)?;
    let key = parse_key(&key_path, &read(&key_path)?)?;
    let (server_config, server_config_no_alpn) = server_configs(chain, key)?;
    Ok(TlsMaterial {
        server_config,
        server_config_no_alpn,
        ca: Some(LocalCa {
            path: dir.join(CA_CERT_FILE),
            pem: ca.pem,
        }),
        cert_path,
        origin,
        names,
    })
}

/// Reads the CA; `Err(reason)` when it is missing or unusable.
fn load_ca(dir: &Path) -> Result<Ca, String> {
    let pem = std::fs::read_to_string(dir.join(CA_CERT_FILE))
        .map_err(|e| format!("{CA_CERT_FILE}: {e}"))?;
    let key_pem = std::fs::read_to_string(dir.join(CA_KEY_FILE))
        .map_err(|e| format!("{CA_KEY_FILE}: {e}"))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{CA_KEY_FILE}: {e}"))?;
    let der = parse_chain(&dir.join(CA_CERT_FILE), pem.as_bytes())
        .map_err(|e| e.to_string())?
        .swap_remove(0);
    Ok(Ca { pem, der, key })
}

/// `Ok` when `cert.pem`/`key.pem` exist, match, chain to `ca` and are valid for every name
/// until [`RENEW_BEFORE`] from now; otherwise the reason to re-issue.
fn check_server(dir: &Path, ca: &Ca, names: &[String]) -> Result<(), String> {
    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    let chain = read(&cert_path)
        .and_then(|pem| parse_chain(&cert_path, &pem))
        .map_err(|e| e.to_string())?;
    let key = read(&key_path)
        .and_then(|pem| parse_key(&key_path, &pem))
        .map_err(|e| e.to_string())?;
    let leaf = chain[0].clone();
    server_configs(chain, key).map_err(|e| e.to_string())?;

    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).map_err(|e| e.to_string())?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let at = SystemTime::now() + RENEW_BEFORE;
    let at = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    for name in names {
        let probe = probe_name(name).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&leaf, &[], &probe, &[], at)
            .map_err(|e| format!("not valid for {name} 30 days from now: {e}"))?;
    }
    Ok(())
}

fn create_ca(dir: &Path) -> Result<Ca, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "LocalZure");
    // A distinct name per installation, so users can tell several trusted CAs apart.
    let id = uuid::Uuid::new_v4().simple().to_string();
    dn.push(
        DnType::CommonName,
        format!("LocalZure local CA {}", &id[..8]),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial());
    validity(&mut params, CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key)?;
    write_file(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes(), true)?;
    write_file(&dir.join(CA_CERT_FILE), cert.pem().as_bytes(), false)?;
    Ok(Ca {
        pem: cert.pem(),
        der: cert.der().clone(),
        key,
    })
}

fn issue_server(dir: &Path, ca: &Ca, names: &[String]) -> Result<(), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "LocalZure");
    dn.push(DnType::CommonName, "LocalZure Service Bus emulator");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // OpenSSL-based clients (Python, Node) build the chain by authority key identifier.
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    validity(&mut params, SERVER_VALIDITY_DAYS);
    let issuer = Issuer::from_ca_cert_der(&ca.der, &ca.key)?;
    let cert = params.signed_by(&key, &issuer)?;
    write_file(
        &dir.join(SERVER_KEY_FILE),
        key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(&dir.join(SERVER_CERT_FILE), cert.pem().as_bytes(), false)?;
    Ok(())
}

/// A random positive 128-bit serial: a re-issued certificate never repeats issuer + serial,
/// which Firefox and NSS reject.
fn serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// Valid from yesterday (clock skew between containers) for `days`.
fn validity(params: &mut CertificateParams, days: u64) {
    let today = Utc::now().date_naive();
    let from = today.checked_sub_days(Days::new(1)).unwrap_or(today);
    let until = today.checked_add_days(Days::new(days)).unwrap_or(today);
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    params.not_before = ymd(from);
    params.not_after = ymd(until);
}

/// Writes through a temporary file and a rename, so a crash or a concurrent reader never sees
/// half a PEM; keys are created with mode 0600.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let tmp = tmp_path(path);
    // A leftover temporary file (from a crash) would keep its old mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = options
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| TlsError::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
