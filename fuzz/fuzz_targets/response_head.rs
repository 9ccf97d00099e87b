//! Response head parsing and framing: never panics; consumed never exceeds the input.
#![no_main]
use ferry_http::proto::{body_framing, HeadParser, Limits, ParseConfig, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parser = HeadParser::new(ParseConfig::default(), Limits::default(), false);
    let mut input = data;
    while let Ok(Some((n, parsed))) = parser.try_parse(input) {
        assert!(n > 0 && n <= input.len());
        input = &input[n..];
        if let Parsed::Final(head) = parsed {
            let _ = body_framing(&http::Method::GET, &head, &ParseConfig::default());
            break;
        }
    }
});
