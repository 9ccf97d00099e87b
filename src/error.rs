//! The facade's error: wraps each crate's error, says what kind of failure it was, gives the
//! CLI a one-line hint, and maps to a WinHTTP error code in one place.
use ferry_http::io::{ConnError, Phase, TransportError};
use ferry_http::proto::{Misuse, Violation};
use std::fmt;

/// What kind of failure an [`Error`] is. Tests compare kinds, never messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Authentication could not proceed (hostile or unusable challenge, refused by policy).
    Auth,
    /// The proxy refused the tunnel (a non-2xx reply to CONNECT, including a final 407).
    Proxy,
    /// The proxy configuration is unusable.
    ProxyConfig,
    /// The request body could not be read, or ended before its declared length.
    BodyRead,
    /// A response body exceeded the caller's size cap.
    BodyTooLarge,
    /// A redirect would need the body again, but it was a one-shot reader.
    BodyNotReplayable,
    /// The server certificate was rejected.
    Certificate,
    /// TCP connect failed.
    Connect,
    /// The connection closed before any response byte (curl: "empty reply").
    EmptyReply,
    /// The caller's input cannot be sent (CR/LF/NUL, bad header name, bad method).
    InvalidInput,
    /// The URL is malformed, unsupported, or lacks a host.
    InvalidUrl,
    /// A named limit was exceeded.
    Limit,
    /// The pool had no connection slot before the deadline.
    PoolExhausted,
    /// The server broke HTTP/1.1.
    Protocol,
    /// Receiving failed (reset, or the connection closed mid-response).
    Receive,
    /// A redirect could not be followed (bad Location).
    Redirect,
    /// Name resolution failed.
    Resolve,
    /// Sending failed.
    Send,
    /// A timeout expired.
    Timeout,
    /// The TLS handshake failed for a reason other than the certificate.
    Tls,
    /// More redirects than allowed.
    TooManyRedirects,
}

/// An error from a ferry session.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Authentication failed locally (the server's 401 is returned as a response instead).
    Auth(ferry_auth::AuthError),
    /// The proxy answered CONNECT with this status (not 2xx); its body was not read as the
    /// origin's.
    Proxy {
        /// The proxy's status.
        status: u16,
    },
    /// The proxy configuration is unusable.
    ProxyConfig(ferry_proxy::ProxyError),
    /// The HTTP/1.1 codec refused the peer's bytes or the caller's input.
    Http(ferry_http::Error),
    /// The transport failed.
    Transport(TransportError),
    /// The connection pool.
    Pool(ferry_pool::PoolError),
    /// The URL cannot be used: why.
    Url(&'static str),
    /// The method cannot be used: why.
    Method(&'static str),
    /// The request body reader failed.
    BodyRead(std::io::Error),
    /// The response body was larger than the cap.
    BodyTooLarge {
        /// The cap.
        limit: u64,
    },
    /// A 307/308 redirect needs the body again, but it was a one-shot reader.
    BodyNotReplayable,
    /// The Location of a redirect could not be resolved.
    BadLocation,
    /// More redirects than allowed.
    TooManyRedirects {
        /// The limit.
        max: u32,
    },
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Http(ferry_http::Error::Remote(_)) => ErrorKind::Protocol,
            Error::Http(ferry_http::Error::Local(Misuse::BadTarget)) => ErrorKind::InvalidUrl,
            Error::Http(ferry_http::Error::Local(_)) => ErrorKind::InvalidInput,
            Error::Http(ferry_http::Error::Limit { .. }) => ErrorKind::Limit,
            Error::Http(_) => ErrorKind::Protocol,
            Error::Transport(t) => match t {
                TransportError::BadCaBundle(_) => ErrorKind::Certificate,
                TransportError::Connect { .. } => ErrorKind::Connect,
                TransportError::Certificate(_) => ErrorKind::Certificate,
                TransportError::Closed(Phase::Receive) => ErrorKind::EmptyReply,
                TransportError::Closed(Phase::Send) => ErrorKind::Send,
                TransportError::Closed(Phase::Tls) => ErrorKind::Tls,
                TransportError::Closed(_) => ErrorKind::Connect,
                TransportError::Io {
                    phase: Phase::Send, ..
                } => ErrorKind::Send,
                TransportError::Io {
                    phase: Phase::Tls, ..
                } => ErrorKind::Tls,
                TransportError::Io {
                    phase: Phase::Connect,
                    ..
                } => ErrorKind::Connect,
                TransportError::Io { .. } => ErrorKind::Receive,
                TransportError::Resolve { .. } => ErrorKind::Resolve,
                TransportError::Timeout(_) => ErrorKind::Timeout,
                TransportError::Tls(_) => ErrorKind::Tls,
                _ => ErrorKind::Receive,
            },
            Error::Pool(_) => ErrorKind::PoolExhausted,
            Error::Auth(_) => ErrorKind::Auth,
            Error::Proxy { .. } => ErrorKind::Proxy,
            Error::ProxyConfig(_) => ErrorKind::ProxyConfig,
            Error::Url(_) => ErrorKind::InvalidUrl,
            Error::Method(_) => ErrorKind::InvalidInput,
            Error::BodyRead(_) => ErrorKind::BodyRead,
            Error::BodyTooLarge { .. } => ErrorKind::BodyTooLarge,
            Error::BodyNotReplayable => ErrorKind::BodyNotReplayable,
            Error::BadLocation => ErrorKind::Redirect,
            Error::TooManyRedirects { .. } => ErrorKind::TooManyRedirects,
        }
    }

    /// A short suggestion for the person at the terminal, if there is a useful one.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.kind() {
            ErrorKind::Certificate => {
                "pass the issuing CA with --cacert FILE (or -k to skip verification, unsafe)"
            }
            ErrorKind::Connect => "is the server running and the port right?",
            ErrorKind::Resolve => "check the host name and the resolver (/etc/resolv.conf)",
            ErrorKind::Timeout => "raise the limit with --max-time or --connect-timeout",
            ErrorKind::TooManyRedirects => "raise the limit with --max-redirs",
            ErrorKind::InvalidUrl => "URLs look like http://host[:port]/path or https://…",
            ErrorKind::InvalidInput => "header names are tokens; values cannot hold CR, LF or NUL",
            ErrorKind::Protocol => "the server's response is not valid HTTP/1.1",
            ErrorKind::EmptyReply => "the server closed the connection without answering",
            ErrorKind::Auth => {
                "check the credentials, the scheme (--basic/--digest/--ntlm) and the policy"
            }
            _ => return None,
        })
    }

    /// The WinHTTP error code for the same condition (`ERROR_WINHTTP_*`), for callers porting
    /// code from WinHTTP.
    pub fn winhttp_code(&self) -> u32 {
        match self.kind() {
            ErrorKind::Timeout => 12002,    // ERROR_WINHTTP_TIMEOUT
            ErrorKind::InvalidUrl => 12005, // ERROR_WINHTTP_INVALID_URL
            ErrorKind::Resolve => 12007,    // ERROR_WINHTTP_NAME_NOT_RESOLVED
            ErrorKind::Connect => 12029,    // ERROR_WINHTTP_CANNOT_CONNECT
            ErrorKind::Certificate | ErrorKind::Tls => 12175, // ERROR_WINHTTP_SECURE_FAILURE
            ErrorKind::TooManyRedirects | ErrorKind::Redirect => 12156, // REDIRECT_FAILED
            ErrorKind::Protocol | ErrorKind::Limit => 12152, // INVALID_SERVER_RESPONSE
            ErrorKind::InvalidInput => 12004, // ERROR_WINHTTP_INTERNAL_ERROR
            ErrorKind::Auth => 12015,       // ERROR_WINHTTP_LOGIN_FAILURE
            _ => 12030,                     // ERROR_WINHTTP_CONNECTION_ERROR
        }
    }

    /// The protocol violation, if the server broke HTTP/1.1.
    pub fn violation(&self) -> Option<Violation> {
        match self {
            Error::Http(ferry_http::Error::Remote(v)) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Http(e) => e.fmt(f),
            Error::Transport(e) => e.fmt(f),
            Error::Pool(e) => e.fmt(f),
            Error::Auth(e) => e.fmt(f),
            Error::Proxy { status } => write!(f, "the proxy answered CONNECT with {status}"),
            Error::ProxyConfig(e) => e.fmt(f),
            Error::Url(why) => write!(f, "bad URL: {why}"),
            Error::Method(why) => write!(f, "bad method: {why}"),
            Error::BodyRead(e) => write!(f, "reading the request body failed: {e}"),
            Error::BodyTooLarge { limit } => {
                write!(f, "response body larger than the {limit}-byte limit")
            }
            Error::BodyNotReplayable => {
                f.write_str("redirect needs the request body again, but it cannot be replayed")
            }
            Error::BadLocation => f.write_str("redirect Location cannot be resolved to a URL"),
            Error::TooManyRedirects { max } => write!(f, "more than {max} redirects"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Http(e) => Some(e),
            Error::Transport(e) => Some(e),
            Error::Pool(e) => Some(e),
            Error::Auth(e) => Some(e),
            Error::BodyRead(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ferry_http::Error> for Error {
    fn from(e: ferry_http::Error) -> Self {
        Error::Http(e)
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Transport(e)
    }
}

impl From<ConnError> for Error {
    fn from(e: ConnError) -> Self {
        match e {
            ConnError::Protocol(p) => Error::Http(p),
            ConnError::Transport(t) => Error::Transport(t),
            // ConnError is non_exhaustive; a new variant is a receive failure until mapped.
            #[allow(unreachable_patterns)]
            other => Error::Transport(TransportError::Io {
                phase: Phase::Receive,
                source: std::io::Error::other(other.to_string()),
            }),
        }
    }
}

impl From<ferry_auth::AuthError> for Error {
    fn from(e: ferry_auth::AuthError) -> Self {
        Error::Auth(e)
    }
}

impl From<ferry_pool::PoolError> for Error {
    fn from(e: ferry_pool::PoolError) -> Self {
        Error::Pool(e)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            ErrorKind::Protocol | ErrorKind::Limit => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
