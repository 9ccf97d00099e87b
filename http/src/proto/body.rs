//! Body decoding for each framing: counts a length, dechunks, or reads to close.
use crate::proto::chunked::Dechunker;
use crate::proto::config::{Limits, ParseConfig};
use crate::proto::error::{Error, Violation};
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
    /// The trailer section of a finished chunked body.
    trailers: Option<HeaderMap>,
}

#[derive(Debug)]
enum Kind {
    Length { remaining: u64 },
    Chunked(Box<Dechunker>),
    Close,
    Done,
}

impl BodyDecoder {
    /// A decoder for `framing`.
    pub fn new(framing: BodyFraming, config: ParseConfig, limits: Limits) -> Self {
        let kind = match framing {
            BodyFraming::Chunked => Kind::Chunked(Box::new(Dechunker::new(config, limits))),
            BodyFraming::Close => Kind::Close,
            BodyFraming::Length(0) | BodyFraming::None => Kind::Done,
            BodyFraming::Length(n) => Kind::Length { remaining: n },
        };
        BodyDecoder {
            kind,
            trailers: None,
        }
    }

    /// Decodes from `input`. Call repeatedly: one call returns at most one contiguous data
    /// range. Returns `consumed == 0` only when `input` is empty or the body is done.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, Error> {
        match &mut self.kind {
            Kind::Length { remaining } => {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                // `n <= remaining` by construction.
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.kind = Kind::Done;
                }
                Ok(Decoded {
                    consumed: n,
                    data: 0..n,
                })
            }
            Kind::Chunked(dechunker) => {
                let decoded = dechunker.decode(input)?;
                if dechunker.is_done() {
                    self.trailers = dechunker.take_trailers();
                    self.kind = Kind::Done;
                }
                Ok(decoded)
            }
            Kind::Close => Ok(Decoded {
                consumed: input.len(),
                data: 0..input.len(),
            }),
            Kind::Done => Ok(Decoded {
                consumed: 0,
                data: 0..0,
            }),
        }
    }

    /// Tells the decoder the peer closed the connection. Returns an error if the body was
    /// not complete ([`crate::proto::Violation::IncompleteBody`]); for close-delimited bodies
    /// this completes the body.
    pub fn on_eof(&mut self) -> Result<(), Error> {
        match self.kind {
            Kind::Length { .. } | Kind::Chunked(_) => Err(Error::Remote(Violation::IncompleteBody)),
            Kind::Close => {
                self.kind = Kind::Done;
                Ok(())
            }
            Kind::Done => Ok(()),
        }
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
        matches!(self.kind, Kind::Length { .. } | Kind::Close)
    }

    /// The trailer fields, once a chunked body is done (an empty map when it had none);
    /// `None` before that and for other framings.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(framing: BodyFraming) -> BodyDecoder {
        BodyDecoder::new(framing, ParseConfig::default(), Limits::default())
    }

    #[test]
    fn length_counts_down_and_leaves_the_rest() {
        let mut d = decoder(BodyFraming::Length(5));
        assert!(d.is_passthrough());
        assert_eq!(d.remaining_length(), Some(5));
        assert_eq!(
            d.decode(b"he"),
            Ok(Decoded {
                consumed: 2,
                data: 0..2
            })
        );
        assert_eq!(d.remaining_length(), Some(3));
        assert_eq!(
            d.decode(b""),
            Ok(Decoded {
                consumed: 0,
                data: 0..0
            })
        );
        assert_eq!(
            d.decode(b"lloHTTP/1.1"),
            Ok(Decoded {
                consumed: 3,
                data: 0..3
            })
        );
        assert!(d.is_done());
        assert_eq!(
            d.decode(b"HTTP/1.1"),
            Ok(Decoded {
                consumed: 0,
                data: 0..0
            })
        );
        assert_eq!(d.on_eof(), Ok(()));
        assert_eq!(d.trailers(), None);
    }

    /// A driver that read `n` bytes straight into its caller's buffer decodes `&buf[..n]` in
    /// place: the data range is exactly the bytes that belong to the body.
    #[test]
    fn passthrough_in_place() {
        let mut d = decoder(BodyFraming::Length(6));
        let mut caller_buf = [0u8; 8];
        caller_buf[..4].copy_from_slice(b"abcd");
        let r = d.decode(&caller_buf[..4]).expect("ok");
        assert_eq!(
            r,
            Decoded {
                consumed: 4,
                data: 0..4
            }
        );
        caller_buf[..8].copy_from_slice(b"efNEXTRE");
        let r = d.decode(&caller_buf[..8]).expect("ok");
        assert_eq!(
            r,
            Decoded {
                consumed: 2,
                data: 0..2
            },
            "only the body's bytes are data"
        );
        assert!(d.is_done());

        let mut d = decoder(BodyFraming::Close);
        assert!(d.is_passthrough());
        assert_eq!(d.remaining_length(), None);
        assert_eq!(
            d.decode(&caller_buf),
            Ok(Decoded {
                consumed: 8,
                data: 0..8
            })
        );
        assert!(!d.is_done());
        assert_eq!(d.on_eof(), Ok(()));
        assert!(d.is_done());
        assert_eq!(d.trailers(), None);
    }

    #[test]
    fn eof_before_the_end_is_an_error() {
        let mut d = decoder(BodyFraming::Length(5));
        assert_eq!(d.decode(b"abc").map(|r| r.consumed), Ok(3));
        assert_eq!(d.on_eof(), Err(Error::Remote(Violation::IncompleteBody)));
        let mut d = decoder(BodyFraming::Chunked);
        assert_eq!(d.decode(b"3\r\nabc\r\n").map(|r| r.data), Ok(3..6));
        assert_eq!(d.on_eof(), Err(Error::Remote(Violation::IncompleteBody)));
        assert_eq!(d.trailers(), None);
    }

    #[test]
    fn no_body_is_done_at_once() {
        for framing in [BodyFraming::None, BodyFraming::Length(0)] {
            let mut d = decoder(framing);
            assert!(d.is_done());
            assert_eq!(
                d.decode(b"HTTP/1.1 200 OK"),
                Ok(Decoded {
                    consumed: 0,
                    data: 0..0
                })
            );
            assert_eq!(d.on_eof(), Ok(()));
        }
    }

    #[test]
    fn chunked_trailers_exposed_once_done() {
        let mut d = decoder(BodyFraming::Chunked);
        assert!(!d.is_passthrough());
        let input = b"1\r\nx\r\n0\r\nX-Checksum: 42\r\n\r\nnext";
        let r = d.decode(input).expect("ok");
        assert_eq!(r.data, 3..4);
        assert_eq!(r.consumed, input.len() - 4);
        assert!(d.is_done());
        let trailers = d.trailers().expect("done");
        assert_eq!(
            trailers.get("x-checksum").map(|v| v.as_bytes()),
            Some(&b"42"[..])
        );
        assert_eq!(d.on_eof(), Ok(()));

        let mut d = decoder(BodyFraming::Chunked);
        assert_eq!(d.decode(b"0\r\n\r\n").map(|r| r.consumed), Ok(5));
        assert_eq!(d.trailers().map(HeaderMap::len), Some(0));
    }

    #[test]
    fn decoder_stays_small() {
        // The chunked state is boxed so the common length/close decoders stay small.
        assert!(
            std::mem::size_of::<BodyDecoder>() <= 128,
            "{}",
            std::mem::size_of::<BodyDecoder>()
        );
    }
}
