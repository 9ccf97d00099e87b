//! Why a connection cannot go back to the pool.
use std::fmt;

/// The reason a connection must be closed rather than reused. `None` where this type is
/// optional means "may be reused".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The body is delimited by the close of the connection.
    CloseDelimited,
    /// The server sent `Connection: close`.
    ConnectionClose,
    /// A framing or protocol error happened; the stream position is unknown.
    Error,
    /// HTTP/1.0 response without `Connection: keep-alive`.
    Http10,
    /// The request said `Connection: close`.
    RequestedClose,
    /// Both Transfer-Encoding and Content-Length were sent (RFC 9112 §6.3 step 3).
    TransferEncodingAndLength,
    /// The body was not read to its end (and draining was not possible within bounds).
    UnreadBody,
    /// The connection switched protocols (101) or became a tunnel.
    Upgraded,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            CloseReason::CloseDelimited => "body delimited by connection close",
            CloseReason::ConnectionClose => "server sent Connection: close",
            CloseReason::Error => "protocol error",
            CloseReason::Http10 => "HTTP/1.0 without keep-alive",
            CloseReason::RequestedClose => "request sent Connection: close",
            CloseReason::TransferEncodingAndLength => "Transfer-Encoding with Content-Length",
            CloseReason::UnreadBody => "body not read to its end",
            CloseReason::Upgraded => "protocol switched",
        };
        f.write_str(s)
    }
}
