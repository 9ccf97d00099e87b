//! TLS through rustls 0.23 with the ring provider (its first random bytes are fast, which
//! matters for one-shot CLI requests), webpki roots plus an optional extra CA bundle, SNI and
//! ALPN `http/1.1`.
use super::error::{Phase, TransportError};
use super::wait_budget;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The TLS settings a session (or request) uses; two equal settings produce equivalent
/// configurations, so a connection made under one may serve the other.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// Extra trusted CA certificates (PEM), added to the webpki roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Use only `extra_ca_pem`, not the webpki roots.
    pub only_extra_roots: bool,
    /// Accept any server certificate. Dangerous: anyone on the path can read and change the
    /// traffic. For testing against servers with self-signed certificates only.
    pub danger_accept_invalid_certs: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(|p| p.len()))
            .field("only_extra_roots", &self.only_extra_roots)
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .finish()
    }
}

impl TlsSettings {
    /// Builds the rustls client configuration.
    pub fn build(&self) -> Result<Arc<ClientConfig>, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TransportError::Tls)?;
        let mut config = if self.danger_accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            if !self.only_extra_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            if let Some(pem) = &self.extra_ca_pem {
                let mut added = 0usize;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TransportError::BadCaBundle(e.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|e| TransportError::BadCaBundle(e.to_string()))?;
                    added += 1;
                }
                if added == 0 {
                    return Err(TransportError::BadCaBundle(
                        "no certificate in the bundle".into(),
                    ));
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Runs the TLS handshake on `tcp` for `host` (SNI unless `host` is an IP address), bounded by
/// `timeout` per read or write and by `deadline`.
pub fn connect_tls(
    mut tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
    deadline: Option<Instant>,
) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>, TransportError> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| TransportError::Tls(rustls::Error::General("invalid server name".into())))?;
    let mut conn = ClientConnection::new(config, name).map_err(TransportError::from_tls)?;
    while conn.is_handshaking() {
        let Some(budget) = wait_budget(timeout, deadline, Instant::now()) else {
            return Err(TransportError::Timeout(Phase::Tls));
        };
        tcp.set_read_timeout(Some(budget))
            .and_then(|_| tcp.set_write_timeout(Some(budget)))
            .map_err(|e| TransportError::from_io(Phase::Tls, e))?;
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(TransportError::Closed(Phase::Tls));
            }
            Ok(_) => {}
            Err(e) => return Err(TransportError::from_io(Phase::Tls, e)),
        }
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// The verifier behind `danger_accept_invalid_certs`: accepts any certificate chain but still
/// checks the handshake signatures, so the connection is at least consistent.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
