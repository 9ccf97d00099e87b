//! Chunked body decoding, fed in fuzzer-chosen pieces: never panics, consumed never exceeds
//! the input, and data ranges lie within what was consumed.
#![no_main]
use ferry_http::proto::{BodyDecoder, BodyFraming, Limits, ParseConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, ParseConfig::default(), Limits::default());
    let mut buf: Vec<u8> = Vec::new();
    for piece in body.chunks(usize::from(split).max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&buf) {
                Ok(d) => {
                    assert!(d.consumed <= buf.len() && d.data.end <= d.consumed);
                    buf.drain(..d.consumed);
                    if d.consumed == 0 {
                        break;
                    }
                }
                Err(_) => return,
            }
        }
    }
    let _ = dec.on_eof();
});
