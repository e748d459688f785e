//! `localzure tls …`: the TLS material of the HTTPS / AMQPS listeners (issue 17).

use crate::config::Config;

/// The `tls` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TlsCommand {
    /// Print the local CA certificate (PEM) that clients must trust, creating it (with the
    /// server certificate) in LOCALZURE_TLS_DIR when missing:
    /// `docker exec localzure localzure tls ca > localzure-ca.pem`.
    Ca,
}

/// Runs a `tls` subcommand; returns what to print on standard output.
pub fn run(config: &Config, command: &TlsCommand) -> Result<String, String> {
    match command {
        TlsCommand::Ca => ca_pem(config),
    }
}

/// The generated CA's PEM, as the server uses it (same directory and names, so running this
/// before the first start creates the files the server then reuses). A user-provided
/// certificate has no local CA: its issuer is the one to trust.
pub fn ca_pem(config: &Config) -> Result<String, String> {
    let settings = config.tls_settings();
    if settings.cert.is_some() || settings.key.is_some() {
        return Err(
            "LOCALZURE_TLS_CERT / LOCALZURE_TLS_KEY are set: the server presents that \
             certificate; trust its issuer (there is no local CA)"
                .to_string(),
        );
    }
    let material = crate::tls::load_or_create(&settings).map_err(|e| e.to_string())?;
    material
        .ca_pem()
        .map(str::to_string)
        .ok_or_else(|| "no local CA".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_generated_ca_and_refuses_with_a_provided_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.tls_dir = Some(dir.path().join("tls"));
        let pem = ca_pem(&config).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let on_disk = std::fs::read_to_string(dir.path().join("tls").join("ca.pem")).unwrap();
        assert_eq!(pem, on_disk);
        // Reused, not regenerated.
        assert_eq!(ca_pem(&config).unwrap(), pem);
        config.server.tls_cert = Some(dir.path().join("c.pem"));
        config.server.tls_key = Some(dir.path().join("k.pem"));
        assert!(ca_pem(&config).unwrap_err().contains("LOCALZURE_TLS_CERT"));
    }
}
