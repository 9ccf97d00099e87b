//! Body decoding for each framing: counts a length, dechunks, or reads to close.
use crate::proto::chunked::Dechunker;
use crate::proto::config::{Limits, ParseConfig};
use crate::proto::error::Error;
use crate::proto::framing::BodyFraming;
use http::HeaderMap;
use std::ops::Range;

/// The result of one [`BodyDecoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of `input` consumed (framing and data), never more than `input.len()`.
    pub consumed: usize,
    /// The body data found, as a range of `input` (empty if none). Always within
    /// `0..consumed`.
    pub data: Range<usize>,
}

/// Decodes one response body.
#[derive(Debug)]
pub struct BodyDecoder {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Length { remaining: u64 },
    Chunked(Box<Dechunker>),
    Close { eof: bool },
    Done,
}

impl BodyDecoder {
    /// A decoder for `framing`.
    pub fn new(framing: BodyFraming, config: ParseConfig, limits: Limits) -> Self {
        let kind = match framing {
            BodyFraming::Chunked => Kind::Chunked(Box::new(Dechunker::new(config, limits))),
            BodyFraming::Close => Kind::Close { eof: false },
            BodyFraming::Length(0) | BodyFraming::None => Kind::Done,
            BodyFraming::Length(n) => Kind::Length { remaining: n },
        };
        BodyDecoder { kind }
    }

    /// Decodes from `input`. Call repeatedly: one call returns at most one contiguous data
    /// range. Returns `consumed == 0` only when `input` is empty or the body is done.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, Error> {
        let _ = input;
        todo!("body")
    }

    /// Tells the decoder the peer closed the connection. Returns an error if the body was
    /// not complete ([`crate::proto::Violation::IncompleteBody`]); for close-delimited bodies
    /// this completes the body.
    pub fn on_eof(&mut self) -> Result<(), Error> {
        todo!("eof")
    }

    /// Whether the whole body (and trailers) has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// For a length-delimited body, the bytes still expected (lets a driver read straight into
    /// a caller's buffer). `None` for other framings.
    pub fn remaining_length(&self) -> Option<u64> {
        match self.kind {
            Kind::Length { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// Whether the decoder passes bytes through unchanged (length or close delimited), so a
    /// driver may read into the caller's buffer and decode in place.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.kind, Kind::Length { .. } | Kind::Close { .. })
    }

    /// The trailer fields, once a chunked body is done (empty otherwise).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        todo!("trailers")
    }
}
