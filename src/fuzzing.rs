//! Crate-private pieces of redirect handling, for the cargo-fuzz targets in `fuzz/` (their own
//! workspace, so they can only reach public items).
//!
//! Thin wrappers only: each function calls the private function the session uses, unchanged, so
//! the `redirect` target exercises the real code without the public API growing. Not part of
//! the API; no stability promise.
use http::{HeaderMap, Method, StatusCode};
use url::Url;

/// What a followed redirect does to the method and body (mirrors the private `Rewrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Keep the method and send the body again.
    Keep,
    /// Switch to GET (or keep HEAD) without a body.
    ToGet,
}

/// `redirect::rewrite_for`: whether `status` is a redirect that is followed, and how.
pub fn rewrite_for(status: StatusCode, method: &Method) -> Option<Rewrite> {
    crate::redirect::rewrite_for(status, method).map(|r| match r {
        crate::redirect::Rewrite::Keep => Rewrite::Keep,
        crate::redirect::Rewrite::ToGet => Rewrite::ToGet,
    })
}

/// `redirect::resolve_location`: a `Location` value resolved against the current URL.
pub fn resolve_location(base: &Url, location: &[u8]) -> Option<Url> {
    crate::redirect::resolve_location(base, location)
}

/// `redirect::same_origin`: the origin test that decides header stripping.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    crate::redirect::same_origin(a, b)
}

/// `redirect::strip_cross_origin`: drops the headers that must not cross origins.
pub fn strip_cross_origin(headers: &mut HeaderMap) {
    crate::redirect::strip_cross_origin(headers)
}

/// `redirect::strip_body_headers`: drops the body's headers when a redirect turns into GET.
pub fn strip_body_headers(headers: &mut HeaderMap) {
    crate::redirect::strip_body_headers(headers)
}

/// `auth::origin`: the origin explicit credentials are bound to (I2).
pub fn auth_origin(url: &Url) -> ferry_auth::Origin {
    crate::auth::origin(url)
}

/// `session::parse_url`: how a caller's URL string becomes the first hop's URL.
pub fn parse_url(s: &str) -> Option<Url> {
    crate::session::parse_url(s).ok()
}
