//! TLS settings (rustls with the ring provider) for the SIP `tls` listener (RFC 3261 §26.2.1)
//! and for MSRP over TLS (RFC 4975 §14.2): the server's certificate chain and private key from
//! PEM files, and the trust anchors used when we connect out as a TLS client.
//!
//! Both are built once by the binary and shared (`Arc`) by every listener and connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Building a TLS configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM file could not be read or holds no usable section of that kind.
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate in the file", .0.display())]
    NoCertificate(PathBuf),
    /// rustls refused the certificate, key or trust anchor.
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The ring provider, chosen explicitly so the process never depends on a process-wide
/// default being installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn certificates_from_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn private_key_from_pem(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    })
}

/// A server configuration presenting `chain` (leaf first) with `key`; no client certificates
/// are asked for (SIP trust comes from `trusted_proxies`, not from TLS client auth).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// [`server_config`] from a certificate chain file and a key file, both PEM.
pub fn server_config_from_pem(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(certificates_from_pem(cert)?, private_key_from_pem(key)?)
}

/// A client configuration trusting exactly `anchors` (the peer's name must match its
/// certificate, RFC 4975 §14.2).
pub fn client_config(anchors: Vec<CertificateDer<'static>>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for anchor in anchors {
        roots.add(anchor)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`client_config`] trusting every certificate in a PEM file.
pub fn client_config_from_pem(anchors: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    client_config(certificates_from_pem(anchors)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
        let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn loads_a_generated_pair_and_trusts_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let server = server_config_from_pem(&cert, &key).unwrap();
        assert!(server.alpn_protocols.is_empty());
        assert_eq!(certificates_from_pem(&cert).unwrap().len(), 1);
        let client = client_config_from_pem(&cert).unwrap();
        assert!(client.enable_sni);
    }

    #[test]
    fn missing_or_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let missing = dir.path().join("nope.pem");
        let e = server_config_from_pem(&missing, &key).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        // A key file holds no certificate.
        let e = certificates_from_pem(&key).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate(_)), "{e}");
        // A certificate file holds no key.
        let e = private_key_from_pem(&cert).unwrap_err();
        assert!(matches!(e, TlsError::Pem { .. }), "{e}");
    }
}
