//! Errors of the codec, grouped by blame: the peer broke the protocol (`Remote`), the caller
//! asked for something that cannot be sent (`Local`), or a named limit was reached (`Limit`).
use std::fmt;

/// An error from the HTTP/1.1 codec or transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The server sent bytes that break HTTP/1.1.
    Remote(Violation),
    /// The caller's request cannot be encoded safely.
    Local(Misuse),
    /// A named limit was exceeded.
    Limit {
        /// The limit's name, as in [`crate::proto::Limits`].
        name: &'static str,
        /// The limit's value.
        max: u64,
    },
}

/// What the server did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A bare CR, or bare LF where CRLF is required.
    BareLineEnding,
    /// The chunk-size line is not hex digits (or overflows u64).
    BadChunkSize,
    /// The CRLF after a chunk's data is missing.
    BadChunkTerminator,
    /// A Content-Length value that is not digits only, or duplicates that differ.
    BadContentLength,
    /// The status line or a header line could not be parsed.
    BadHead,
    /// A trailer section that could not be parsed.
    BadTrailer,
    /// A Transfer-Encoding the client cannot frame.
    BadTransferEncoding,
    /// The body ended before its framing said it would (EOF mid-body).
    IncompleteBody,
    /// The connection closed before a whole response head arrived (0 bytes: empty reply).
    IncompleteHead,
    /// A 101 Switching Protocols that the request did not ask for.
    UnexpectedUpgrade,
    /// A response version other than HTTP/1.0 or HTTP/1.1.
    UnsupportedVersion,
}

/// What the caller asked for that cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// A header name that is not a token, or holds CR/LF/NUL.
    BadHeaderName,
    /// A header value holding CR, LF or NUL (or another control byte).
    BadHeaderValue,
    /// A method that is not a token.
    BadMethod,
    /// A URL or request target holding CR, LF, NUL, space or another control byte, or lacking a
    /// host.
    BadTarget,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote(v) => write!(f, "server broke HTTP/1.1: {v}"),
            Error::Local(m) => write!(f, "request cannot be sent: {m}"),
            Error::Limit { name, max } => write!(f, "limit {name} ({max}) exceeded"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Violation::BareLineEnding => "bare CR or LF where CRLF is required",
            Violation::BadChunkSize => "invalid chunk size",
            Violation::BadChunkTerminator => "missing CRLF after chunk data",
            Violation::BadContentLength => "invalid Content-Length",
            Violation::BadHead => "malformed response head",
            Violation::BadTrailer => "malformed trailer section",
            Violation::BadTransferEncoding => "unsupported Transfer-Encoding",
            Violation::IncompleteBody => "connection closed before the body was complete",
            Violation::IncompleteHead => "connection closed before the response head was complete",
            Violation::UnexpectedUpgrade => "101 Switching Protocols without an upgrade request",
            Violation::UnsupportedVersion => "unsupported HTTP version",
        };
        f.write_str(s)
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Misuse::BadHeaderName => "invalid header name",
            Misuse::BadHeaderValue => "header value contains CR, LF, NUL or a control byte",
            Misuse::BadMethod => "method is not a token",
            Misuse::BadTarget => {
                "URL contains CR, LF, NUL, space or a control byte, or has no host"
            }
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}
