//! Events a session reports while it works, for verbose output and tracing. Handlers see
//! request heads as encoded, so they are responsible for masking credentials they print.
use std::net::SocketAddr;
use std::sync::Arc;

/// Something that happened on the way to a response.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A new TCP connection is being opened to `addr`.
    Connecting {
        /// The host name.
        host: &'a str,
        /// The address tried.
        addr: SocketAddr,
    },
    /// A TCP connection was established.
    Connected {
        /// The peer.
        peer: SocketAddr,
        /// Sequence number of the connection within the session (curl's `#N`).
        id: u64,
    },
    /// TLS was negotiated.
    TlsEstablished {
        /// Protocol version.
        version: &'a str,
        /// Cipher suite.
        cipher: &'a str,
    },
    /// An idle connection was reused.
    Reused {
        /// The peer.
        peer: SocketAddr,
        /// Sequence number of the connection.
        id: u64,
    },
    /// The request head bytes, as sent.
    RequestHead(&'a [u8]),
    /// A response head arrived (interim or final).
    ResponseHead {
        /// The status line's version, status and reason, then the fields.
        version: http::Version,
        /// The status.
        status: http::StatusCode,
        /// The reason phrase.
        reason: &'a str,
        /// The fields (empty for interim responses).
        headers: &'a http::HeaderMap,
    },
    /// A redirect is being followed.
    Redirect {
        /// The target.
        to: &'a url::Url,
    },
    /// A redirect was not followed, and why.
    RedirectRefused {
        /// The target.
        to: &'a url::Url,
        /// Why.
        why: &'a str,
    },
    /// The connection was kept for reuse.
    Kept {
        /// Sequence number of the connection.
        id: u64,
    },
    /// The connection was closed, and why.
    Closed {
        /// Sequence number of the connection.
        id: u64,
        /// Why.
        why: &'a str,
    },
    /// A stale pooled connection failed before any response byte; the request is retried on a
    /// new connection.
    Retrying,
}

/// A callback receiving events.
pub type EventHandler = Arc<dyn Fn(&Event<'_>) + Send + Sync>;
