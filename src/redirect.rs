//! Redirect policy and the rules for following one hop (RFC 9110 §15.4).
use http::{header, HeaderMap, Method, StatusCode};
use url::Url;

/// When to follow redirects (WinHTTP's `WINHTTP_OPTION_REDIRECT_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectPolicy {
    /// Follow every redirect, including https → http.
    Always,
    /// Never follow; the 3xx response is returned.
    Never,
    /// Follow, except from https to http, where the 3xx response is returned (default).
    #[default]
    NoHttpsToHttp,
}

/// Default maximum number of redirects followed for one request (WinHTTP and ureq use 10).
pub const MAX_REDIRECTS: u32 = 10;

/// What to do with the method and body on a redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// Keep the method and send the body again (307, 308, and 301/302 for non-POST).
    Keep,
    /// Switch to GET (or keep HEAD) without a body (303; 301/302 after POST).
    ToGet,
}

/// Whether `status` is a redirect we follow, and how it rewrites the request.
pub(crate) fn rewrite_for(status: StatusCode, method: &Method) -> Option<Rewrite> {
    match status.as_u16() {
        301 | 302 if *method == Method::POST => Some(Rewrite::ToGet),
        301 | 302 | 307 | 308 => Some(Rewrite::Keep),
        303 if *method == Method::HEAD => Some(Rewrite::Keep),
        303 => Some(Rewrite::ToGet),
        _ => None,
    }
}

/// Resolves a `Location` value against the current URL. Non-UTF-8 bytes are percent-encoded by
/// the URL parser after a lossy conversion. The fragment is inherited when the target has none
/// (RFC 9110 §10.2.2).
pub(crate) fn resolve_location(base: &Url, location: &[u8]) -> Option<Url> {
    let text = String::from_utf8_lossy(location);
    let mut next = base.join(text.trim()).ok()?;
    if next.fragment().is_none() {
        next.set_fragment(base.fragment());
    }
    Some(next)
}

/// Whether two URLs have the same origin (scheme, host, port).
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Headers that carry credentials or state for one origin and must not follow a redirect to
/// another. Once dropped they are never restored, even if a later hop returns to the origin.
pub(crate) fn strip_cross_origin(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::COOKIE);
    headers.remove(header::PROXY_AUTHORIZATION);
}

/// Headers that describe a body, dropped when a redirect turns the request into a GET.
pub(crate) fn strip_body_headers(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::EXPECT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_rewrites() {
        let post = Method::POST;
        let put = Method::PUT;
        let head = Method::HEAD;
        let s = StatusCode::from_u16;
        assert_eq!(rewrite_for(s(301).unwrap(), &post), Some(Rewrite::ToGet));
        assert_eq!(rewrite_for(s(302).unwrap(), &post), Some(Rewrite::ToGet));
        assert_eq!(rewrite_for(s(302).unwrap(), &put), Some(Rewrite::Keep));
        assert_eq!(rewrite_for(s(303).unwrap(), &put), Some(Rewrite::ToGet));
        assert_eq!(rewrite_for(s(303).unwrap(), &head), Some(Rewrite::Keep));
        assert_eq!(rewrite_for(s(307).unwrap(), &post), Some(Rewrite::Keep));
        assert_eq!(rewrite_for(s(308).unwrap(), &post), Some(Rewrite::Keep));
        assert_eq!(rewrite_for(s(304).unwrap(), &post), None);
        assert_eq!(rewrite_for(s(300).unwrap(), &post), None);
    }

    #[test]
    fn locations() {
        let base = Url::parse("http://a.example:8080/x/y?q#frag").unwrap();
        let n = resolve_location(&base, b"/z").unwrap();
        assert_eq!(n.as_str(), "http://a.example:8080/z#frag");
        let n = resolve_location(&base, b"https://b.example/p#f2").unwrap();
        assert_eq!(n.as_str(), "https://b.example/p#f2");
        let n = resolve_location(&base, b"rel").unwrap();
        assert_eq!(n.as_str(), "http://a.example:8080/x/rel#frag");
        assert!(resolve_location(&base, b"http://[bad").is_none());
    }

    #[test]
    fn origins() {
        let a = Url::parse("http://h/").unwrap();
        assert!(same_origin(&a, &Url::parse("http://h:80/other").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://h/").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://h:81/").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://g/").unwrap()));
    }
}
