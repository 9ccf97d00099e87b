//! curl-style NO_PROXY parsing and matching on a fuzzer-split input (`list \n host \n host…`):
//! never panics, and a match is always an entry of the list as given.
#![no_main]
use ferry_proxy::NoProxy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let list = lines.next().unwrap_or_default();
    let parsed = NoProxy::parse(list);
    for host in lines {
        if let Some(rule) = parsed.matches(host) {
            assert!(!rule.is_empty() && list.contains(rule));
        }
    }
});
