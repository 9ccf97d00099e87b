//! How the transfer engine asks for bytes: the [`Fetch`] trait, which the root crate implements
//! over its `Session` and tests implement with scripted responses.
//!
//! A fetch returns any HTTP response (a 503 is a response, not an error); the engine classifies
//! statuses with [`classify_status`]. A [`FetchError`] is for failures with no response:
//! connection refused, timeouts, certificates, refused credentials.
//!
//! Classification (issue 5): connection failures, timeouts, 408, 429 (honouring
//! `Retry-After`) and 5xx are [`ErrorClass::Transient`] and retried after a delay; other 4xx,
//! certificate failures and refused credentials are [`ErrorClass::Final`].

use http::HeaderMap;
use std::fmt;
use std::io::Read;
use std::time::Duration;
use url::Url;

/// The longest `Retry-After` honoured (a day); larger values are capped, so a hostile server
/// cannot park a job for years.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One request the engine wants made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest<'a> {
    /// The URL.
    pub url: &'a Url,
    /// `Some((start, end))` sends `Range: bytes=start-end` (`end` inclusive) or `bytes=start-`.
    pub range: Option<(u64, Option<u64>)>,
    /// The `If-Range` value (a strong ETag or an HTTP-date), with `range` only.
    pub if_range: Option<String>,
    /// Extra header fields (custom job headers).
    pub headers: Vec<(String, String)>,
    /// Send `HEAD` instead of `GET` (re-validation and the segment preflight).
    pub head: bool,
}

impl<'a> FetchRequest<'a> {
    /// A plain `GET` of `url`.
    pub fn get(url: &'a Url) -> FetchRequest<'a> {
        FetchRequest {
            url,
            range: None,
            if_range: None,
            headers: Vec::new(),
            head: false,
        }
    }

    /// The `Range` header value this request sends, if any.
    pub fn range_header(&self) -> Option<String> {
        self.range
            .map(|(start, end)| crate::range::range_header(start, end))
    }
}

/// The head of a response.
#[derive(Debug, Clone)]
pub struct FetchHead {
    /// The status code.
    pub status: u16,
    /// The header fields.
    pub headers: HeaderMap,
    /// The URL that answered, after redirects.
    pub final_url: Url,
}

impl FetchHead {
    /// The first value of header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Whether a failure is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry after the delay (network, timeouts, 408, 429, 5xx).
    Transient,
    /// Give up (other 4xx, certificates, refused credentials, bad input).
    Final,
}

/// A failure of one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// Transient or final.
    pub kind: ErrorClass,
    /// What happened, for a person.
    pub message: String,
    /// The HTTP status, when a response caused it.
    pub status: Option<u16>,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl FetchError {
    /// A transient failure with this message.
    pub fn transient(message: impl Into<String>) -> FetchError {
        FetchError {
            kind: ErrorClass::Transient,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// A final failure with this message.
    pub fn fatal(message: impl Into<String>) -> FetchError {
        FetchError {
            kind: ErrorClass::Final,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// Whether the failure may go away by itself.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorClass::Transient
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

/// Makes HTTP requests for the engine.
pub trait Fetch {
    /// The response body.
    type Body: Read;

    /// Sends `req` and returns the response head and its body, whatever the status.
    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, Self::Body), FetchError>;
}

impl<F: Fetch + ?Sized> Fetch for &F {
    type Body = F::Body;

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, Self::Body), FetchError> {
        (**self).fetch(req)
    }
}

/// The error a status stands for, or `None` for statuses the engine handles itself (2xx, 416).
///
/// 3xx reaching the engine means the redirect was not followed (policy): final.
pub fn classify_status(status: u16, headers: &HeaderMap) -> Option<FetchError> {
    let kind = match status {
        200..=299 | 416 => return None,
        408 | 429 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Final,
    };
    let retry_after = match status {
        429 | 503 => headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after),
        _ => None,
    };
    let what = match status {
        300..=399 => "the server redirected and the redirect was not followed",
        401 => "the server refused the credentials (401)",
        403 => "the server refused access (403)",
        404 => "the server has no such file (404)",
        407 => "the proxy refused the credentials (407)",
        408 => "the server timed out waiting for the request (408)",
        429 => "the server asks to slow down (429)",
        500..=599 => "the server failed",
        _ => "the server refused the request",
    };
    Some(FetchError {
        kind,
        message: format!("{what}: HTTP {status}"),
        status: Some(status),
        retry_after,
    })
}

/// Parses `Retry-After` as delay-seconds (RFC 9110 §10.2.3), capped at [`MAX_RETRY_AFTER`].
/// The HTTP-date form would need the wall clock, which the engine never reads: it is ignored,
/// and the engine's own delay applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = v.parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderMap::new();
        for s in [200, 206, 204, 416] {
            assert!(classify_status(s, &none).is_none(), "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(
                classify_status(s, &none).unwrap().kind,
                ErrorClass::Transient
            );
        }
        for s in [301, 400, 401, 403, 404, 407, 410, 451, 100, 0, 999] {
            let e = classify_status(s, &none).unwrap();
            assert_eq!(e.kind, ErrorClass::Final, "{s}");
            assert_eq!(e.status, Some(s));
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let e = classify_status(503, &h(&[("retry-after", "7")])).unwrap();
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = classify_status(429, &h(&[("retry-after", "99999999999")])).unwrap();
        assert_eq!(e.retry_after, Some(MAX_RETRY_AFTER));
        let e = classify_status(503, &h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]));
        assert_eq!(e.unwrap().retry_after, None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("99999999999999999999999"), None);
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
    }

    #[test]
    fn range_header_of_request() {
        let u = Url::parse("http://h/").unwrap();
        let mut r = FetchRequest::get(&u);
        assert_eq!(r.range_header(), None);
        r.range = Some((5, Some(9)));
        assert_eq!(r.range_header().as_deref(), Some("bytes=5-9"));
    }
}
