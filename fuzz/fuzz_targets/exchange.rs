//! A whole response exchange: fuzzer bytes are the server's byte stream, delivered in
//! fuzzer-chosen segments (one segment per socket read), and driven through the sans-IO core
//! exactly as the blocking driver composes it: `Conn::read_head` (head parser over a read
//! buffer, 1xx skipped as in `session/exchange.rs`), `body_framing`, `Conn::read_body` (pending
//! data ranges, the passthrough direct read for large caller buffers, `on_eof`), and the reuse
//! decision of `BodyReader::finish` in `src/response.rs`. The transport is a mirror of
//! `http/src/io/conn.rs` (which needs a socket); the parser, framing and decoder are the real
//! ones.
//!
//! Input: `[mode, out, splits, len × (splits % 8), stream…]`. `mode` picks the method, the
//! leniencies, whether an upgrade was requested and whether the request said
//! `Connection: close`; `out` the caller's buffer size; `splits` the number of segment lengths
//! (cycled through; bit 7 selects tiny limits, bit 6 allows Transfer-Encoding in HTTP/1.0).
//!
//! Asserts:
//! - no panic;
//! - the head parser consumes `0 < n <= input` and asks for more only within `max_head_bytes`;
//! - every decode consumes at most its input, its data lies within what it consumed, and it
//!   consumes everything it was given unless it returned data, finished, or failed: buffered
//!   bytes stay bounded (I7) and a driver can never spin on the same bytes;
//! - a passthrough decode in place returns exactly its input as data (the driver's
//!   `debug_assert`);
//! - `Transfer-Encoding` in an HTTP/1.0 response is an error unless that leniency is on (I5);
//! - any error (head, framing or body) leaves the connection marked closed with
//!   `CloseReason::Error`, and a reusable connection ended exactly at a complete message;
//! - the outcome (head, body bytes, trailers, error, close reason) does not depend on where
//!   the stream was split: it equals the outcome with the stream in one piece.
#![no_main]
use ferry_http::proto::{
    body_framing, BodyDecoder, BodyFraming, CloseReason, Error, HeadParser, Limits, ParseConfig,
    Parsed,
};
use http::{HeaderMap, Method, StatusCode, Version};
use libfuzzer_sys::fuzz_target;
use std::ops::Range;

/// `conn.rs`: the read buffer size and the caller-buffer size above which bodies bypass it.
const READ_BUF_SIZE: usize = 64 * 1024;
const DIRECT_READ_MIN: usize = 8 * 1024;

/// The server: a byte stream cut into segments; one read returns at most one segment's rest.
struct Peer<'a> {
    data: &'a [u8],
    pos: usize,
    lens: &'a [u8],
    seg: usize,
    /// Bytes left in the current segment.
    left: usize,
}

impl Peer<'_> {
    fn read(&mut self, out: &mut [u8]) -> usize {
        if self.pos == self.data.len() || out.is_empty() {
            return 0;
        }
        if self.left == 0 {
            self.left = match self.lens.get(self.seg % self.lens.len().max(1)) {
                Some(&l) => usize::from(l).max(1),
                None => self.data.len(),
            };
            self.seg += 1;
        }
        let n = self.left.min(out.len()).min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n;
        n
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// `TransportError::Closed` before any byte of the head.
    Closed,
    Protocol(Error),
}

/// Mirror of `ferry_http::io::Conn` over a [`Peer`].
struct Conn<'a> {
    peer: Peer<'a>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pending: Range<usize>,
    limits: Limits,
}

impl Conn<'_> {
    fn read_head(&mut self, parser: &mut HeadParser) -> Result<Parsed, Failure> {
        let mut received_any = self.start != self.end;
        loop {
            if self.start != self.end {
                let input = &self.buf[self.start..self.end];
                match parser.try_parse(input).map_err(Failure::Protocol)? {
                    Some((n, parsed)) => {
                        assert!(
                            n > 0 && n <= input.len(),
                            "head consumed {n} of {}",
                            input.len()
                        );
                        self.consume(n);
                        return Ok(parsed);
                    }
                    None => assert!(
                        input.len() <= self.limits.max_head_bytes,
                        "head parser waits with {} bytes buffered",
                        input.len()
                    ),
                }
            }
            match self.fill() {
                0 if received_any => {
                    return Err(Failure::Protocol(Error::Remote(
                        ferry_http::proto::Violation::IncompleteHead,
                    )))
                }
                0 => return Err(Failure::Closed),
                _ => received_any = true,
            }
        }
    }

    fn read_body(&mut self, decoder: &mut BodyDecoder, out: &mut [u8]) -> Result<usize, Error> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(out.len());
                let from = self.pending.start;
                out[..n].copy_from_slice(&self.buf[from..from + n]);
                self.pending.start += n;
                return Ok(n);
            }
            if decoder.is_done() {
                return Ok(0);
            }
            if self.start != self.end {
                let input_len = self.end - self.start;
                let d = checked_decode(decoder, &self.buf[self.start..self.end])?;
                let base = self.start;
                self.start += d.consumed;
                if !d.data.is_empty() {
                    self.pending = base + d.data.start..base + d.data.end;
                    continue;
                }
                assert!(
                    d.consumed == input_len || decoder.is_done(),
                    "decoder kept {} of {input_len} bytes without data, end or error",
                    input_len - d.consumed
                );
                if d.consumed > 0 {
                    continue;
                }
            }
            if decoder.is_passthrough() && out.len() >= DIRECT_READ_MIN {
                let want = match decoder.remaining_length() {
                    Some(r) => out.len().min(usize::try_from(r).unwrap_or(usize::MAX)),
                    None => out.len(),
                };
                let n = self.peer.read(&mut out[..want]);
                if n == 0 {
                    decoder.on_eof()?;
                    return Ok(0);
                }
                let d = checked_decode(decoder, &out[..n])?;
                assert_eq!(d.data, 0..n, "passthrough decoders return their input");
                return Ok(d.data.len());
            }
            if self.fill() == 0 {
                decoder.on_eof()?;
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end && self.pending.is_empty() {
            self.start = 0;
            self.end = 0;
        }
    }

    fn fill(&mut self) -> usize {
        if self.buf.is_empty() {
            self.buf.resize(READ_BUF_SIZE, 0);
        }
        if self.pending.is_empty() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grow = self.buf.len();
            self.buf.resize(self.buf.len() + grow, 0);
        }
        let end = self.end;
        let n = self.peer.read(&mut self.buf[end..]);
        self.end += n;
        n
    }
}

/// One decode, with the decoder's contract checked.
fn checked_decode(
    decoder: &mut BodyDecoder,
    input: &[u8],
) -> Result<ferry_http::proto::Decoded, Error> {
    let d = decoder.decode(input)?;
    assert!(
        d.consumed <= input.len(),
        "consumed {} of {}",
        d.consumed,
        input.len()
    );
    assert!(
        d.data.start <= d.data.end && d.data.end <= d.consumed,
        "{d:?}"
    );
    assert!(
        d.consumed > 0 || input.is_empty() || decoder.is_done(),
        "no progress on {input:?}"
    );
    Ok(d)
}

#[derive(Debug, PartialEq)]
struct Outcome {
    head: Option<(Version, StatusCode, String, HeaderMap)>,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
    error: Option<Failure>,
    /// The close reason before the "bytes left over" check (which depends on timing).
    close: Option<CloseReason>,
}

struct Setup {
    method: Method,
    config: ParseConfig,
    limits: Limits,
    upgrade: bool,
    requested_close: bool,
    out_len: usize,
}

fn run(setup: &Setup, stream: &[u8], lens: &[u8]) -> Outcome {
    let mut conn = Conn {
        peer: Peer {
            data: stream,
            pos: 0,
            lens,
            seg: 0,
            left: 0,
        },
        buf: Vec::new(),
        start: 0,
        end: 0,
        pending: 0..0,
        limits: setup.limits,
    };
    let mut outcome = Outcome {
        head: None,
        body: Vec::new(),
        trailers: None,
        error: None,
        close: None,
    };
    // session/exchange.rs: interim responses are skipped, then the framing decides.
    let mut parser = HeadParser::new(setup.config, setup.limits, setup.upgrade);
    let mut interim = 0;
    let head = loop {
        match conn.read_head(&mut parser) {
            Ok(Parsed::Interim(status)) => {
                assert!(status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS);
                interim += 1;
                assert!(interim <= setup.limits.max_interim_responses);
            }
            Ok(Parsed::Final(head)) => break head,
            Err(e) => {
                outcome.error = Some(e);
                outcome.close = Some(CloseReason::Error);
                return outcome;
            }
        }
    };
    assert!(!head.status.is_informational() || head.status == StatusCode::SWITCHING_PROTOCOLS);
    assert!(head.status != StatusCode::SWITCHING_PROTOCOLS || setup.upgrade);
    outcome.head = Some((
        head.version,
        head.status,
        head.reason.clone(),
        head.headers.clone(),
    ));
    let framing = match body_framing(&setup.method, &head, &setup.config) {
        Ok(f) => f,
        Err(e) => {
            outcome.error = Some(Failure::Protocol(e));
            outcome.close = Some(CloseReason::Error);
            return outcome;
        }
    };
    // I5: `Transfer-Encoding` in an HTTP/1.0 response (with a body) is an error unless the
    // leniency is on.
    if head.version == Version::HTTP_10
        && head.headers.contains_key(http::header::TRANSFER_ENCODING)
        && framing.body != BodyFraming::None
    {
        assert!(
            setup.config.allow_transfer_encoding_in_http10,
            "{framing:?}"
        );
    }
    if framing.body == BodyFraming::Close {
        // A close-delimited body never leaves the connection reusable.
        assert!(
            matches!(
                framing.close,
                Some(CloseReason::CloseDelimited | CloseReason::TransferEncodingAndLength)
            ),
            "{framing:?}"
        );
    }
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        assert_eq!(framing.close, Some(CloseReason::Upgraded));
    }
    let mut close = framing.close;
    if close.is_none() && setup.requested_close {
        close = Some(CloseReason::RequestedClose);
    }
    let mut decoder = BodyDecoder::new(framing.body, setup.config, setup.limits);
    assert!(framing.body != BodyFraming::None || decoder.is_done());

    // src/response.rs: read until 0 or an error; an error closes the connection.
    let mut out = vec![0u8; setup.out_len];
    loop {
        match conn.read_body(&mut decoder, &mut out) {
            Ok(0) => break,
            Ok(n) => {
                assert!(n <= out.len());
                outcome.body.extend_from_slice(&out[..n]);
            }
            Err(e) => {
                close = Some(CloseReason::Error);
                outcome.error = Some(Failure::Protocol(e));
                break;
            }
        }
    }
    if let BodyFraming::Length(n) = framing.body {
        if outcome.error.is_none() {
            assert_eq!(outcome.body.len() as u64, n, "length-delimited body");
        }
    }
    // BodyReader::finish.
    let why = close.or((!decoder.is_done()).then_some(CloseReason::UnreadBody));
    outcome.close = why;
    outcome.trailers = decoder.trailers().cloned();
    if outcome.error.is_some() {
        assert_eq!(
            why,
            Some(CloseReason::Error),
            "an error must close the connection"
        );
    }
    let leftover = conn.end - conn.start;
    if why.is_none() && leftover == 0 {
        // Reusable: one complete message, the body whole, nothing unread.
        assert!(decoder.is_done() && conn.pending.is_empty() && outcome.error.is_none());
        assert!(framing.close.is_none() && framing.body != BodyFraming::Close);
    }
    outcome
}

fuzz_target!(|data: &[u8]| {
    let [mode, out, splits, rest @ ..] = data else {
        return;
    };
    let k = usize::from(splits % 8).min(rest.len());
    let (lens, stream) = rest.split_at(k);
    let method = match mode & 3 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        _ => Method::CONNECT,
    };
    let config = ParseConfig {
        allow_bare_lf_in_chunked: mode & 4 != 0,
        allow_obsolete_multiline_headers: mode & 8 != 0,
        allow_spaces_after_header_name: mode & 16 != 0,
        allow_content_length_list: mode & 32 != 0,
        allow_transfer_encoding_in_http10: splits & 0x40 != 0,
    };
    let limits = if splits & 0x80 != 0 {
        Limits {
            max_head_bytes: 200,
            max_headers: 6,
            max_interim_responses: 2,
            max_chunk_ext_bytes: 12,
            max_trailer_bytes: 40,
        }
    } else {
        Limits::default()
    };
    let setup = Setup {
        method,
        config,
        limits,
        upgrade: mode & 64 != 0,
        requested_close: mode & 128 != 0,
        out_len: if out & 0x80 != 0 {
            DIRECT_READ_MIN + usize::from(out & 0x7f)
        } else {
            usize::from(*out) + 1
        },
    };
    let split = run(&setup, stream, lens);
    let whole = run(&setup, stream, &[]);
    assert_eq!(
        split, whole,
        "the outcome depends on where the stream was split"
    );
});
