//! Body framing of a response, per RFC 9112 §6.3.
use crate::proto::close::CloseReason;
use crate::proto::config::ParseConfig;
use crate::proto::error::Error;
use crate::proto::head::ResponseHead;
use http::Method;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Transfer-Encoding` with `chunked` as the final coding.
    Chunked,
    /// Read until the server closes the connection.
    Close,
    /// Exactly this many bytes.
    Length(u64),
    /// No body (HEAD, 1xx, 204, 304, or CONNECT 2xx).
    None,
}

/// The framing decision plus whether the connection may be reused after the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// How to read the body.
    pub body: BodyFraming,
    /// Why the connection must close after this response, if it must.
    pub close: Option<CloseReason>,
}

/// Decides the body framing of `head`, a response to a `method` request.
pub fn body_framing(
    method: &Method,
    head: &ResponseHead,
    config: &ParseConfig,
) -> Result<Framing, Error> {
    let _ = (method, head, config);
    todo!("framing")
}
