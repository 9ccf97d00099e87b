//! The sans-IO HTTP/1.1 client core: bytes in, events out; no sockets, no clock.
//!
//! ```text
//!  encode::write_request_head ──► (caller writes bytes, then the body)
//!                                      │
//!  head::HeadParser::try_parse ◄── bytes from the peer
//!        │ Interim(1xx) ─► skipped (100 reported to the caller, for Expect: 100-continue)
//!        ▼ Final(ResponseHead)
//!  framing::body_framing ──► BodyFraming + CloseReason?
//!        ▼
//!  body::BodyDecoder::decode ◄── bytes from the peer  ──► body data ranges, trailers
//!        ▼ done
//!  close::Reuse ──► back to the pool, or close
//! ```
mod abnf;
pub mod body;
pub mod chunked;
pub mod close;
pub mod config;
pub mod encode;
pub mod error;
pub mod framing;
pub mod head;

pub use body::{BodyDecoder, Decoded};
pub use close::CloseReason;
pub use config::{Limits, ParseConfig};
pub use encode::{write_request_head, BodyLength, RequestHead, TargetForm};
pub use error::{Error, Misuse, Violation};
pub use framing::{body_framing, BodyFraming, Framing};
pub use head::{HeadParser, Parsed, ResponseHead};
