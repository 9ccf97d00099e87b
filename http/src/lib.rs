//! ferry-http: the HTTP/1.1 machinery of ferry.
//!
//! Owns:
//! - the sans-IO client codec in [`proto`]: request-head encoding with input validation,
//!   response-head parsing (httparse), body framing per RFC 9112 §6.3, chunked decoding with
//!   trailers, named limits and leniencies, and the answer to "may this connection be reused?";
//! - the blocking transport in [`io`] (feature `io`, on by default): TCP through socket2, TLS
//!   through rustls with webpki roots, WinHTTP-style per-operation timeouts.
//!
//! Does not own: sessions, pooling, credentials, proxies, redirects. Those live in the crates
//! above this one; nothing here knows who a request is made as or which route it takes.
#![forbid(unsafe_code)]

pub mod proto;

#[cfg(feature = "io")]
pub mod io;

pub use proto::error::Error;
