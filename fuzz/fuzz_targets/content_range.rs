//! Content-Range parsing: never panics; a parsed range is consistent (start ≤ end < length).
#![no_main]
use ferry_transfer::range::ContentRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = ContentRange::parse(s) {
            let _ = (r.complete(), r.len(), r.is_empty());
        }
        let _ = ferry_transfer::range::ByteRange::parse_list(s);
    }
});
