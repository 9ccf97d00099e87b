//! Chunked body decoding, fed in fuzzer-chosen pieces: never panics, consumed never exceeds
//! the input, data ranges lie within what was consumed, everything handed in is consumed
//! unless data, the end or an error stops the call (bounded buffering), and the data, the
//! trailers, the end position and any error are the same as with the input in one piece.
#![no_main]
use ferry_http::proto::{BodyDecoder, BodyFraming, Error, Limits, ParseConfig};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Outcome {
    data: Vec<u8>,
    /// Bytes of the input consumed in total (the body's end when done; 0 after an error).
    consumed: usize,
    done: bool,
    trailers: Option<http::HeaderMap>,
    error: Option<Error>,
}

fn run(body: &[u8], piece: usize, config: ParseConfig, limits: Limits) -> Outcome {
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, config, limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Outcome {
        data: Vec::new(),
        consumed: 0,
        done: false,
        trailers: None,
        error: None,
    };
    'feed: for p in body.chunks(piece) {
        buf.extend_from_slice(p);
        loop {
            match dec.decode(&buf) {
                Ok(d) => {
                    assert!(d.consumed <= buf.len() && d.data.start <= d.data.end);
                    assert!(d.data.end <= d.consumed);
                    assert!(
                        !d.data.is_empty() || dec.is_done() || d.consumed == buf.len(),
                        "kept {} bytes without data, end or error",
                        buf.len() - d.consumed
                    );
                    out.data.extend_from_slice(&buf[d.data.clone()]);
                    out.consumed += d.consumed;
                    buf.drain(..d.consumed);
                    if dec.is_done() {
                        break 'feed;
                    }
                    if d.consumed == 0 {
                        break;
                    }
                }
                Err(e) => {
                    // After an error the stream position means nothing: only data and the error
                    // are compared.
                    out.consumed = 0;
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out.done = dec.is_done();
    out.trailers = dec.trailers().cloned();
    if let Err(e) = dec.on_eof() {
        assert!(!out.done);
        out.error = Some(e);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let config = ParseConfig {
        allow_bare_lf_in_chunked: split & 0x80 != 0,
        ..ParseConfig::default()
    };
    let limits = if split & 0x40 != 0 {
        Limits {
            max_chunk_ext_bytes: 8,
            max_trailer_bytes: 32,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let piece = usize::from(split & 0x3f).max(1);
    let pieces = run(body, piece, config, limits);
    let whole = run(body, body.len().max(1), config, limits);
    assert_eq!(
        pieces, whole,
        "the outcome depends on where the input was split"
    );
});
