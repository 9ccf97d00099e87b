//! Location and redirect resolution: a chain of redirects, each hop handled with the session's
//! own (crate-private) functions, composed as the redirect loop of `Session` in `src/session.rs`
//! composes them, through the root crate's hidden `fuzzing` module.
//!
//! Input: `[flags, base URL \n hop \n hop…]`; a hop is one status selector byte then the raw
//! `Location` bytes. `flags`: method (bits 0–1), policy (2–3), `--location-trusted` (4), a
//! replayable body (5).
//!
//! Asserts, for every hop followed:
//! - the target is `http` or `https` with a non-empty host, and serialises without spaces or
//!   control bytes (I6); resolving it again against itself gives itself;
//! - without a fragment in `Location`, the current fragment is inherited (RFC 9110 §10.2.2);
//! - the default policy never follows https → http; `Never` follows nothing;
//! - the two notions of origin agree (`same_origin` for header stripping, `auth::origin` for
//!   explicit credentials);
//! - once any hop changes the origin, `Authorization`, `Cookie` and `Proxy-Authorization` are
//!   gone for good, even if a later hop returns (README: not restored), and explicit
//!   credentials are no longer allowed (I2) unless the location is trusted;
//! - a rewrite to GET drops the body and its headers; a non-replayable body is never resent.
#![no_main]
use ferry::fuzzing::{
    auth_origin, parse_url, resolve_location, rewrite_for, same_origin, strip_body_headers,
    strip_cross_origin, Rewrite,
};
use ferry::{HeaderMap, HeaderValue, Method, RedirectPolicy, StatusCode};
use ferry_auth::policy::may_send_credentials;
use http::header;
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [301, 302, 303, 307, 308, 300, 304, 200];

/// `session.rs`'s `check_url`, which each hop passes at the top of the loop (private there).
fn check_url(url: &url::Url) -> bool {
    matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.port_or_known_default() != Some(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let Some(Ok(base)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let Some(mut url) = parse_url(base) else {
        return;
    };
    // The session refuses a first URL with credentials in it.
    if !url.username().is_empty() || url.password().is_some() {
        return;
    }
    let mut method = match flags & 3 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::HEAD,
        _ => Method::PUT,
    };
    let policy = match flags >> 2 & 3 {
        0 => RedirectPolicy::Always,
        1 => RedirectPolicy::Never,
        _ => RedirectPolicy::NoHttpsToHttp,
    };
    let location_trusted = flags & 16 != 0;
    let mut has_body = flags & 32 != 0;
    let replayable = has_body;

    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::AUTHORIZATION, "Basic YTpi"),
        (header::COOKIE, "s=1"),
        (header::PROXY_AUTHORIZATION, "Basic cDpx"),
        (header::CONTENT_TYPE, "text/plain"),
        (header::ACCEPT, "*/*"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let given_for = auth_origin(&url);
    let mut left_origin = false;
    let mut crossed = false;

    for hop in lines {
        if !check_url(&url) {
            return;
        }
        let Some((&sel, location)) = hop.split_first() else {
            return;
        };
        let status = StatusCode::from_u16(STATUSES[usize::from(sel % 8)]).expect("valid");
        let Some(rewrite) = rewrite_for(status, &method) else {
            assert!(!matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308));
            return;
        };
        if policy == RedirectPolicy::Never {
            return;
        }
        // The value arrived in a header field: a valid field value, and not empty.
        if HeaderValue::from_bytes(location).is_err() || location.trim_ascii().is_empty() {
            return;
        }
        let Some(next) = resolve_location(&url, location) else {
            return;
        };
        if !matches!(next.scheme(), "http" | "https") {
            return;
        }
        if policy == RedirectPolicy::NoHttpsToHttp
            && url.scheme() == "https"
            && next.scheme() == "http"
        {
            return;
        }
        // Followed from here on.
        let s = next.as_str();
        assert!(!s.bytes().any(|b| b <= b' ' || b == 0x7f), "{s:?}");
        assert!(next.host_str().is_some_and(|h| !h.is_empty()), "{s:?}");
        assert_eq!(resolve_location(&next, s.as_bytes()).as_ref(), Some(&next));
        if !String::from_utf8_lossy(location).contains('#') {
            assert_eq!(next.fragment(), url.fragment(), "{s:?}");
        }
        let same = same_origin(&url, &next);
        assert_eq!(
            same,
            auth_origin(&url) == auth_origin(&next),
            "{url} -> {next}"
        );

        match rewrite {
            Rewrite::ToGet => {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                has_body = false;
                strip_body_headers(&mut headers);
            }
            Rewrite::Keep if has_body && !replayable => return,
            Rewrite::Keep => {}
        }
        if !same {
            strip_cross_origin(&mut headers);
        }
        if !left_origin && !location_trusted && auth_origin(&next) != given_for {
            left_origin = true;
        }
        url = next;
        crossed |= !same;

        if rewrite == Rewrite::ToGet {
            assert!(method == Method::GET || method == Method::HEAD);
            assert!(!has_body && !headers.contains_key(header::CONTENT_TYPE));
        }
        if crossed {
            for h in [
                header::AUTHORIZATION,
                header::COOKIE,
                header::PROXY_AUTHORIZATION,
            ] {
                assert!(!headers.contains_key(&h), "{h} kept across origins");
            }
        }
        if !location_trusted && !may_send_credentials(&given_for, &auth_origin(&url), false) {
            assert!(left_origin, "explicit credentials would follow to {url}");
        }
        if left_origin {
            assert!(crossed, "credentials dropped without an origin change");
        }
        assert!(headers.contains_key(header::ACCEPT));
    }
});
