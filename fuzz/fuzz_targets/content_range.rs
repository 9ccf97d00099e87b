//! Content-Range and byte-range list parsing: never panics; a parsed Content-Range is
//! consistent (first ≤ last < complete length, length ≥ 1) and its canonical form parses back
//! to the same value; a parsed byte range has start ≤ end and its `Display` parses back.
#![no_main]
use ferry_transfer::range::{ByteRange, ContentRange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ContentRange::parse(s) {
        let canonical = match r {
            ContentRange::Bytes {
                first,
                last,
                complete,
            } => {
                assert!(first <= last && complete.is_none_or(|c| last < c), "{r:?}");
                assert!(r.len().is_some_and(|n| n >= 1) && !r.is_empty());
                assert_eq!(r.complete(), complete);
                match complete {
                    Some(c) => format!("bytes {first}-{last}/{c}"),
                    None => format!("bytes {first}-{last}/*"),
                }
            }
            ContentRange::Unsatisfied { complete } => {
                assert!(r.len().is_none() && r.is_empty() && r.complete() == Some(complete));
                format!("bytes */{complete}")
            }
        };
        assert_eq!(ContentRange::parse(&canonical), Ok(r), "{canonical}");
    }
    if let Ok(list) = ByteRange::parse_list(s) {
        assert!(!list.is_empty());
        for r in list {
            assert!(r.end.is_none_or(|e| r.start <= e), "{r:?}");
            assert!(r.len().is_none_or(|n| n >= 1));
            assert_eq!(ByteRange::parse(&r.to_string()), Ok(r));
        }
    }
});
