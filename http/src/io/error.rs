//! Transport errors: what failed and in which phase.
use std::fmt;
use std::io;
use std::net::SocketAddr;

/// The phase of a request in which a transport error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect.
    Connect,
    /// Reading the response.
    Receive,
    /// Name resolution.
    Resolve,
    /// Writing the request.
    Send,
    /// The TLS handshake.
    Tls,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Receive => "receive",
            Phase::Resolve => "resolve",
            Phase::Send => "send",
            Phase::Tls => "TLS handshake",
        })
    }
}

/// A transport failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// The extra CA bundle could not be read or held no certificate.
    BadCaBundle(String),
    /// Every resolved address refused or failed; the last error is kept.
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The server's certificate was rejected.
    Certificate(rustls::Error),
    /// The peer closed the connection (EOF) in the middle of an operation.
    Closed(Phase),
    /// An I/O error while sending or receiving.
    Io {
        /// When it happened.
        phase: Phase,
        /// The error.
        source: io::Error,
    },
    /// The name could not be resolved.
    Resolve {
        /// The name.
        host: String,
        /// Why (None: no addresses).
        source: Option<io::Error>,
    },
    /// A timeout (per operation, or the total deadline) expired.
    Timeout(Phase),
    /// The TLS handshake failed for a reason other than the certificate.
    Tls(rustls::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::BadCaBundle(why) => write!(f, "CA bundle: {why}"),
            TransportError::Connect { addr, source } => {
                write!(f, "failed to connect to {addr}: {source}")
            }
            TransportError::Certificate(e) => write!(f, "server certificate rejected: {e}"),
            TransportError::Closed(p) => write!(f, "connection closed by peer during {p}"),
            TransportError::Io { phase, source } => write!(f, "{phase} failed: {source}"),
            TransportError::Resolve {
                host,
                source: Some(e),
            } => {
                write!(f, "could not resolve host {host}: {e}")
            }
            TransportError::Resolve { host, source: None } => {
                write!(f, "could not resolve host {host}: no addresses")
            }
            TransportError::Timeout(p) => write!(f, "{p} timed out"),
            TransportError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Connect { source, .. } | TransportError::Io { source, .. } => {
                Some(source)
            }
            TransportError::Certificate(e) | TransportError::Tls(e) => Some(e),
            TransportError::Resolve {
                source: Some(e), ..
            } => Some(e),
            _ => None,
        }
    }
}

impl TransportError {
    /// Classifies an I/O error of `phase`: timeouts and resets get their own variants, and a
    /// rustls error carried inside an `io::Error` is unwrapped.
    pub fn from_io(phase: Phase, e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout(phase),
            io::ErrorKind::UnexpectedEof => TransportError::Closed(phase),
            _ => {
                if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                    let inner = e
                        .into_inner()
                        .and_then(|b| b.downcast::<rustls::Error>().ok());
                    if let Some(tls) = inner {
                        return TransportError::from_tls(*tls);
                    }
                    return TransportError::Closed(phase);
                }
                TransportError::Io { phase, source: e }
            }
        }
    }

    /// Classifies a rustls error: certificate problems apart from other handshake failures.
    pub fn from_tls(e: rustls::Error) -> Self {
        match e {
            rustls::Error::InvalidCertificate(_) => TransportError::Certificate(e),
            other => TransportError::Tls(other),
        }
    }
}
