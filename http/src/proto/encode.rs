//! Request-head encoding. Every caller-supplied byte is validated before any byte is written:
//! CR, LF or NUL in a method, header name, header value or URL is an error (invariant I6).
use crate::proto::error::Error;
use http::{HeaderMap, Method};
use url::Url;

/// The form of the request target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `absolute-form` (`http://host/path?q`), for requests through a forward proxy.
    Absolute,
    /// `authority-form` (`host:port`), for CONNECT.
    Authority,
    /// `origin-form` (`/path?q`), for requests to the origin.
    Origin,
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n` (0 writes `Content-Length: 0` only for methods that carry a body).
    Known(u64),
    /// No body, no framing header.
    None,
}

/// What is needed to encode one request head.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URL; `Host` is derived from it.
    pub url: &'a Url,
    /// Which target form to write.
    pub target: TargetForm,
    /// Headers to write after `Host`, in order. A caller-supplied `Host`, `Content-Length` or
    /// `Transfer-Encoding` is skipped: the encoder writes those from `url` and `body`.
    pub headers: &'a HeaderMap,
    /// The body's framing.
    pub body: BodyLength,
}

/// Appends the encoded request head (request line, headers, blank line) to `out`.
///
/// On error nothing is appended.
pub fn write_request_head(head: &RequestHead<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    let _ = (head, out);
    todo!("encode")
}
