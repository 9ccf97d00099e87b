//! Proxy URLs, WinHTTP per-scheme proxy lists and WinHTTP bypass lists (`input \n host…`): never
//! panic; a parsed proxy has a port and a lowercase host; errors never echo a userinfo.
#![no_main]
use ferry_proxy::{ProxyConfig, ProxyError, WinHttpBypass};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, hosts) = text.split_once('\n').unwrap_or((&text, ""));
    for result in [
        ProxyConfig::explicit(first),
        ProxyConfig::per_scheme_list(first),
    ] {
        match result {
            Ok(c) => {
                for (e, _) in c.http.iter().chain(c.https.iter()) {
                    assert!(
                        e.port != 0 && !e.host.is_empty() && e.host == e.host.to_ascii_lowercase()
                    );
                }
            }
            Err(ProxyError::BadProxy { given, .. }) => {
                assert!(!given.contains('@') || given.contains("***@"))
            }
            Err(_) => {}
        }
    }
    let bypass = WinHttpBypass::parse(first);
    hosts
        .split('\n')
        .for_each(|h| assert!(bypass.matches(h).is_none_or(|r| first.contains(r))));
});
