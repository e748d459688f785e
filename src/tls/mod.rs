//! TLS material for the HTTPS and AMQPS listeners: a user-provided PEM certificate and key, or a
//! local CA and a server certificate generated at first start, and the rustls server
//! configuration built from them.
//!
//! Why: the Azure SDKs' administration clients (Python, JavaScript) always build
//! `https://{host[:port]}` from the connection string, and SDKs without an emulator mode speak
//! only AMQPS, so they need a TLS endpoint whose certificate the user can trust (issue 17). Like
//! the Cosmos DB emulator and Azurite's `--cert/--key`, we generate a local CA once and let the
//! user trust that one file (`localzure tls ca` prints it).
//!
//! Files in [`TlsSettings::dir`] (generated mode):
//! - `ca.pem`, `ca-key.pem` (0600): the local CA; kept so the server certificate can be
//!   re-issued by the same CA, which the user has already trusted;
//! - `cert.pem`, `key.pem` (0600): the server certificate and its key.
//!
//! On every start the existing server certificate is checked against the CA and the configured
//! names (a real webpki verification for each name); when a name is missing, the certificate
//! is expired or close to expiry, or the files do not match, only the server certificate is
//! re-issued. The CA is regenerated only when it is missing or unreadable.

mod cert;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

pub use cert::{default_names, CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE};

/// The ALPN protocol we serve over TLS: hyper is built with HTTP/1 only. AMQP clients send no
/// ALPN (the Python SDK's `SSLTransport` wraps a plain socket), so a handshake without ALPN is
/// accepted too; see [`TlsMaterial::accept`].
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Bound on a TLS handshake, so a client that connects and stalls does not hold a task forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate comes from: the user's PEM files, or generated into `dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `LOCALZURE_TLS_CERT`: PEM certificate, leaf first, chain allowed. With `key`, it wins
    /// over generation.
    pub cert: Option<PathBuf>,
    /// `LOCALZURE_TLS_KEY`: PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// `LOCALZURE_TLS_DIR`: where the generated CA and server certificate are kept
    /// (default `{data dir}/tls`).
    pub dir: PathBuf,
    /// `LOCALZURE_TLS_NAMES`: extra DNS names or IP addresses for the generated certificate
    /// (e.g. the compose service name), on top of [`default_names`].
    pub names: Vec<String>,
}

impl TlsSettings {
    /// Generated material kept in `dir`, with no extra names.
    pub fn generated(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Parses `LOCALZURE_TLS_NAMES`: comma-separated, blanks ignored.
    pub fn parse_names(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// What [`load_or_create`] did, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The user's `cert`/`key` files.
    Provided,
    /// A new CA and server certificate were generated.
    Created,
    /// The files in `dir` were valid for every name and reused as they are.
    Reused,
    /// The server certificate was re-issued by the existing CA; `reason` says why.
    Reissued { reason: String },
}

/// The generated local CA, which clients must trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCa {
    /// `{dir}/ca.pem`, named in the start-up log.
    pub path: PathBuf,
    /// The CA certificate (PEM), printed by `localzure tls ca`.
    pub pem: String,
}

/// A ready TLS configuration for the listeners.
#[derive(Clone)]
pub struct TlsMaterial {
    /// Offers ALPN `http/1.1`; usable with a plain [`tokio_rustls::TlsAcceptor`]. Clients that
    /// send no ALPN are accepted by rustls with it too.
    pub server_config: Arc<ServerConfig>,
    /// The same certificate without ALPN, for clients offering only protocols we do not speak
    /// (rustls would otherwise fail their handshake with `no_application_protocol`).
    pub server_config_no_alpn: Arc<ServerConfig>,
    /// The generated CA; `None` when the user provided the certificate.
    pub ca: Option<LocalCa>,
    /// The server certificate file in use.
    pub cert_path: PathBuf,
    /// What [`load_or_create`] did.
    pub origin: Origin,
    /// The names the certificate was checked or issued for (empty for a provided one).
    pub names: Vec<String>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca.as_ref().map(|ca| &ca.path))
            .field("cert_path", &self.cert_path)
            .field("origin", &self.origin)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Runs the server side of a TLS handshake on `io`, bounded by [`HANDSHAKE_TIMEOUT`].
    ///
    /// Reads the ClientHello first and picks the configuration: `http/1.1` when the client
    /// offers it (the SDK admin clients' HTTPS stacks do), no ALPN otherwise (AMQP clients, and
    /// clients offering e.g. only `h2`, which then fall back or fail on their own terms rather
    /// than with a handshake alert).
    pub async fn accept<IO>(&self, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_within(io, HANDSHAKE_TIMEOUT).await
    }

    /// [`Self::accept`] with another bound on the handshake.
    pub async fn accept_within<IO>(&self, io: IO, timeout: Duration) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = async {
            let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
            let offers_http11 = start
                .client_hello()
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == ALPN_HTTP11));
            let config = if offers_http11 {
                self.server_config.clone()
            } else {
                self.server_config_no_alpn.clone()
            };
            start.into_stream(config).await
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }

    /// The CA certificate (PEM) clients should trust: the generated CA, or `None` for a
    /// provided certificate (its issuer is the user's business).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|ca| ca.pem.as_str())
    }
}

/// Why TLS material could not be loaded or created. Start-up fails with it: a TLS listener
/// that silently falls back to plain text would defeat the clients' verification.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not valid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{0}: no certificate in the PEM file")]
    NoCertificate(PathBuf),
    #[error("LOCALZURE_TLS_CERT and LOCALZURE_TLS_KEY must be given together")]
    Incomplete,
    #[error("not a DNS name or IP address for the certificate: {0:?}")]
    InvalidName(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Loads the user's certificate, or reuses / creates / re-issues the generated one in
/// `settings.dir`, and builds the rustls configuration. Called once at start-up (and by
/// `localzure tls ca`, which needs the CA to exist).
pub fn load_or_create(settings: &TlsSettings) -> Result<TlsMaterial, TlsError> {
    match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => load_provided(cert, key),
        (None, None) => cert::load_or_generate(settings),
        _ => Err(TlsError::Incomplete),
    }
}

fn load_provided(cert_path: &Path, key_path: &Path) -> Result<TlsMaterial, TlsError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain = parse_chain(cert_path, &cert_pem)?;
    let key = parse_key(key_path, &key_pem)?;
    let (server_config, server_config_no_alpn) = server_configs(chain, key)?;
    Ok(TlsMaterial {
        server_config,
        server_config_no_alpn,
        ca: None,
        cert_path: cert_path.to_path_buf(),
        origin: Origin::Provided,
        names: Vec::new(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::io(path, e))
}

fn parse_chain(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// rustls with the ring provider, chosen explicitly so nothing depends on a process-wide
/// default provider being installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The `http/1.1` configuration and the no-ALPN one, from one certificate chain and key.
/// rustls checks that the key matches the leaf certificate.
fn server_configs(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), TlsError> {
    let no_alpn = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let mut http11 = no_alpn.clone();
    http11.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok((Arc::new(http11), Arc::new(no_alpn)))
}

#[cfg(test)]
mod tests;
