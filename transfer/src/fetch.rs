//! How the transfer engine asks for bytes: the [`Fetch`] trait, which the root crate implements
//! over its `Session` and tests implement with scripted responses.
//!
//! A fetch returns any HTTP response (a 503 is a response, not an error); the engine classifies
//! statuses with [`classify_status`]. A [`FetchError`] is for failures with no response:
//! connection refused, timeouts, certificates, refused credentials.
//!
//! Classification (issue 5): connection failures, timeouts, 408, 429 and 503 (both honouring
//! `Retry-After`, as seconds or an HTTP-date) and other 5xx are [`ErrorClass::Transient`] and
//! retried after a delay; other 4xx, certificate failures and refused credentials are
//! [`ErrorClass::Final`].

use http::HeaderMap;
use std::fmt;
use std::io::Read;
use std::time::{Duration, SystemTime};
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
            .and_then(|v| {
                let date = headers.get("date").and_then(|d| d.to_str().ok());
                retry_after_delay(v, date, SystemTime::now())
            }),
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

/// Parses `Retry-After` (RFC 9110 §10.2.3) as a delay from now: delay-seconds, or an
/// IMF-fixdate measured against the wall clock. Capped at [`MAX_RETRY_AFTER`]; a date in the
/// past is no delay. See [`retry_after_delay`] for the form that uses the response's `Date`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    retry_after_delay(value, None, SystemTime::now())
}

/// The delay a `Retry-After` value asks for, capped at [`MAX_RETRY_AFTER`]; `None` when it is
/// neither delay-seconds nor an IMF-fixdate (the caller's own delay then applies).
///
/// An HTTP-date is measured against `date`, the response's own `Date` field, when that is a
/// valid IMF-fixdate: both times then come from the server's clock, so a client whose clock is
/// off waits what the server meant. Only without a usable `Date` is `now` (the wall clock, the
/// one place the engine reads it) the reference. A date at or before the reference is no delay.
pub fn retry_after_delay(value: &str, date: Option<&str>, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        if v.len() > 20 {
            return None;
        }
        let secs: u64 = v.parse().ok()?;
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(v)?;
    let reference = date.and_then(parse_http_date).unwrap_or_else(|| {
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    Some(Duration::from_secs(at.saturating_sub(reference)).min(MAX_RETRY_AFTER))
}

/// Parses an HTTP-date (RFC 9110 §5.6.7) into seconds since the Unix epoch: the IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) and, as a recipient must, the obsolete RFC 850 and asctime
/// forms. Dates before 1970 give `None`.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
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
        // An HTTP-date is measured against the response's own Date: 90 s on the server's clock.
        let e = classify_status(
            503,
            &h(&[
                ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ("date", "Wed, 21 Oct 2015 07:26:30 GMT"),
            ]),
        );
        assert_eq!(e.unwrap().retry_after, Some(Duration::from_secs(90)));
        // Without a Date, against the wall clock: a date long past is no delay at all.
        let e = classify_status(503, &h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]));
        assert_eq!(e.unwrap().retry_after, Some(Duration::ZERO));
        // Only 429 and 503 carry a meaningful Retry-After.
        let e = classify_status(500, &h(&[("retry-after", "7")])).unwrap();
        assert_eq!(e.retry_after, None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("99999999999999999999999"), None);
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        // RFC 9110 §5.6.7's example in its three forms, and the epoch.
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(784_111_777), "{form}");
        }
        assert_eq!(parse_http_date(" Thu, 01 Jan 1970 00:00:00 GMT "), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400)
        );
        for bad in [
            "",
            "Mon, 29 Feb 2100 00:00:00 GMT", // 2100 is not a leap year
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT", // November has 30 days
            "Sun, 06 Nov 1994 08:49:37 GMT+",
            "Wed, 31 Dec 1969 23:59:59 GMT", // before the epoch
            "Sün, 6 Nov 1994 08:49:37 GMT",
            "120",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_dates_are_delays_from_the_reference() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT"; // 784111777
                                                    // Against the wall clock when no Date is given.
        assert_eq!(
            retry_after_delay(date, None, at(784_111_770)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after_delay(date, None, at(784_111_777)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after_delay(date, None, at(900_000_000)),
            Some(Duration::ZERO)
        );
        // The response's Date wins over the wall clock (which may be skewed).
        assert_eq!(
            retry_after_delay(date, Some("Sun, 06 Nov 1994 08:49:30 GMT"), at(0)),
            Some(Duration::from_secs(7))
        );
        // An unusable Date falls back to the wall clock.
        assert_eq!(
            retry_after_delay(date, Some("yesterday"), at(784_111_775)),
            Some(Duration::from_secs(2))
        );
        // Capped like delay-seconds.
        assert_eq!(
            retry_after_delay("Fri, 31 Dec 9999 23:59:59 GMT", None, at(0)),
            Some(MAX_RETRY_AFTER)
        );
        // Neither form: ignored.
        assert_eq!(retry_after_delay("soon", None, at(0)), None);
        assert_eq!(retry_after_delay("1.5", None, at(0)), None);
        // The wall-clock form agrees for delay-seconds.
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
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
