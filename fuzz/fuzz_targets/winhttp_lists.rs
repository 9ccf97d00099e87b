//! WinHTTP's per-scheme proxy list and bypass list (`proxy list \n bypass list \n host…`).
//!
//! Asserts, beyond "never panics":
//! - bypass: the matching entry is one of the list's entries as written, and the first one an
//!   independent model of the documented rules matches (`<local>` is the intranet-name test;
//!   otherwise lowercase, scheme prefix and brackets and one trailing dot dropped, then a glob
//!   where `*` is any run, checked here by dynamic programming rather than the crate's
//!   backtracking matcher); matching ignores ASCII case and one trailing dot of the host;
//! - per-scheme list: every endpoint has a non-empty lowercase host without blanks or controls
//!   and a non-zero port, and its URL (`scheme://host:port`) parses back, as a list of its own,
//!   to the same endpoint (unless IDNA put a `;` in the host, see `check_endpoint`);
//!   `http=`/`https=` items win over general ones; errors never echo user information.
#![no_main]
use ferry_auth::policy::is_intranet_host;
use ferry_proxy::{ProxyConfig, ProxyEndpoint, ProxyError, WinHttpBypass};
use libfuzzer_sys::fuzz_target;

/// `*` matches any run of bytes, everything else itself: O(p × t) dynamic programming.
fn glob(p: &[u8], t: &[u8]) -> bool {
    // m[j]: the pattern prefix seen so far matches t[..j].
    let mut m = vec![false; t.len() + 1];
    m[0] = true;
    for &c in p {
        if c == b'*' {
            for j in 1..=t.len() {
                m[j] = m[j] || m[j - 1];
            }
        } else {
            for j in (1..=t.len()).rev() {
                m[j] = m[j - 1] && t[j - 1] == c;
            }
            m[0] = false;
        }
    }
    m[t.len()]
}

/// The documented rules, written independently of `bypass.rs`.
fn model(entries: &[&str], host: &str) -> Option<usize> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    if bare.is_empty() || bare.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let host = bare.to_ascii_lowercase();
    entries.iter().position(|raw| {
        if raw.eq_ignore_ascii_case("<local>") {
            return is_intranet_host(&host);
        }
        let e = raw.to_ascii_lowercase();
        let e = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .unwrap_or(&e);
        let e = e
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(e);
        let e = e.strip_suffix('.').unwrap_or(e);
        glob(e.as_bytes(), host.as_bytes())
    })
}

fn check_endpoint(e: &ProxyEndpoint) {
    assert!(e.port != 0 && !e.host.is_empty(), "{e:?}");
    assert_eq!(e.host, e.host.to_ascii_lowercase());
    assert!(
        !e.host.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{e:?}"
    );
    // IDNA mapping can put a list separator into a host (U+037E GREEK QUESTION MARK becomes
    // `;`): such a host cannot be written back into a list (and is no DNS name; found by this
    // target, reported rather than changed here).
    if e.host.contains(';') {
        return;
    }
    let again = ProxyConfig::per_scheme_list(&e.url())
        .unwrap_or_else(|err| panic!("{} does not parse back: {err}", e.url()));
    let (back, _) = again.http.expect("a general item sets http");
    assert_eq!(
        (back.scheme, &back.host, back.port),
        (e.scheme, &e.host, e.port),
        "{}",
        e.url()
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let list = lines.next().unwrap_or_default();
    let bypass_text = lines.next().unwrap_or_default();

    match ProxyConfig::per_scheme_list(list) {
        Ok(c) => {
            for (e, _) in c.http.iter().chain(c.https.iter()) {
                check_endpoint(e);
            }
            let items: Vec<&str> = list
                .split(|c: char| c == ';' || c.is_whitespace())
                .filter(|i| !i.is_empty())
                .collect();
            // A scheme's own item wins over a general one: with an `http=` item and no general
            // item before it, the http proxy comes from a keyed item.
            let keyed = |k: &str| {
                items.iter().any(|i| {
                    i.split_once('=').is_some_and(|(key, _)| {
                        key.eq_ignore_ascii_case(k)
                            && key.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
                })
            };
            let general = items.iter().any(|i| {
                i.split_once('=')
                    .is_none_or(|(k, _)| !k.bytes().all(|b| b.is_ascii_alphanumeric()))
            });
            if general {
                assert!(c.http.is_some() && c.https.is_some(), "{list:?}");
            }
            if !keyed("http") && !keyed("https") {
                // Only general items: both schemes get the first one.
                assert_eq!(
                    c.http.as_ref().map(|p| &p.0),
                    c.https.as_ref().map(|p| &p.0)
                );
            }
        }
        Err(ProxyError::BadProxy { given, .. }) => {
            assert!(!given.contains('@') || given.contains("***@"), "{given:?}");
        }
        Err(_) => {}
    }

    let bypass = WinHttpBypass::parse(bypass_text);
    let entries: Vec<&str> = bypass_text
        .split(|c: char| c == ';' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(bypass.is_empty(), entries.is_empty());
    for host in lines {
        let got = bypass.matches(host);
        let want = model(&entries, host).map(|i| entries[i]);
        assert_eq!(got, want, "host {host:?} against {entries:?}");
        assert_eq!(bypass.matches(&host.to_ascii_uppercase()), got);
        if !host.is_empty() && !host.ends_with('.') && !host.ends_with(']') {
            assert_eq!(bypass.matches(&format!("{host}.")), got, "{host:?}.");
        }
    }
});
