//! A pinned server certificate: the receiver must present one of the
//! endpoint's pinned certificates, compared by the SHA-256 of its DER
//! bytes. Its chain and names are not looked at (the pin is stricter than
//! either); the handshake's signatures are verified as always, so only
//! the holder of the pinned certificate's key can complete it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::connection::{Connection, ConnectionError};

/// The server presented a certificate other than the pinned ones. Its
/// `Debug` is its message: rustls shows it that way in the error.
#[derive(thiserror::Error)]
#[error("the server's certificate (sha256 {0}) is not a pinned one")]
struct NotPinned(String);

impl std::fmt::Debug for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[derive(Debug)]
struct PinnedVerifier {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if self.pins.contains(&seen) {
            return Ok(ServerCertVerified::assertion());
        }
        let hex: String = seen.iter().map(|b| format!("{b:02x}")).collect();
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(NotPinned(hex))),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS settings of a connection with pinned certificates: the pins,
/// and the client certificate if there is one. ALPN offers HTTP/2 and
/// HTTP/1.1, as the client's own settings do.
pub(crate) fn client_config(connection: &Connection) -> Result<rustls::ClientConfig, ConnectionError> {
    let fail = |e: rustls::Error| ConnectionError {
        setting: "pinned_certificates",
        reason: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedVerifier {
        pins: connection.pins(),
        provider: provider.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(fail)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match connection.identity()? {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| ConnectionError {
            setting: "client_key",
            reason: e.to_string(),
        })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
