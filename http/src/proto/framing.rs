//! Body framing of a response, per RFC 9112 §6.3.
//!
//! The rules, in the RFC's order (the first that applies decides the body):
//! 1. A response to HEAD, and every 1xx, 204 and 304 response, has no body.
//! 2. A 2xx response to CONNECT has no body: the connection becomes a tunnel.
//! 3. Transfer-Encoding with Content-Length: Transfer-Encoding wins, and the connection closes
//!    after the response (such a message may be a smuggling attempt).
//! 4. Transfer-Encoding with `chunked` as the final coding: chunked. Any other
//!    Transfer-Encoding on a response: read until close.
//! 5. A valid Content-Length: that many bytes. An invalid one: an error (never a guess).
//! 6. Otherwise: read until close.
//!
//! Whether the connection may be reused is decided alongside. When several reasons apply, the
//! one reported is, in this order: the framing reason (`TransferEncodingAndLength`,
//! `CloseDelimited`), `Upgraded`, `ConnectionClose`, `Http10`.
use crate::proto::abnf::{is_token, list_elements, trim_ows};
use crate::proto::close::CloseReason;
use crate::proto::config::ParseConfig;
use crate::proto::error::{Error, Violation};
use crate::proto::head::ResponseHead;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version};

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Transfer-Encoding` with `chunked` as the final coding.
    Chunked,
    /// Read until the server closes the connection.
    Close,
    /// Exactly this many bytes.
    Length(u64),
    /// No body (HEAD, 1xx, 204, 304, or CONNECT 2xx).
    None,
}

/// The framing decision plus whether the connection may be reused after the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// How to read the body.
    pub body: BodyFraming,
    /// Why the connection must close after this response, if it must.
    pub close: Option<CloseReason>,
}

/// Decides the body framing of `head`, a response to a `method` request.
pub fn body_framing(
    method: &Method,
    head: &ResponseHead,
    config: &ParseConfig,
) -> Result<Framing, Error> {
    let connection_close = connection_close(&head.headers, head.version);
    let status = head.status;

    // 1. HEAD responses and 1xx, 204, 304 have no body, whatever their headers say.
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        // A 101 (only ever handed over when the request asked to upgrade) leaves HTTP/1.1 on
        // this connection for good.
        let close = if status == StatusCode::SWITCHING_PROTOCOLS {
            Some(CloseReason::Upgraded)
        } else {
            connection_close
        };
        return Ok(Framing {
            body: BodyFraming::None,
            close,
        });
    }

    // 2. A 2xx to CONNECT: no body; the connection is now a tunnel, which the caller owns (the
    // tunnel is the "reuse"), so no close reason.
    if *method == Method::CONNECT && status.is_success() {
        return Ok(Framing {
            body: BodyFraming::None,
            close: None,
        });
    }

    let has_length = head.headers.contains_key(CONTENT_LENGTH);
    if head.headers.contains_key(TRANSFER_ENCODING) {
        let chunked_last = chunked_is_final(&head.headers)?;
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing, even
        // with a Content-Length. Strict: an error (reading "as best it can" hands the caller
        // the coded stream as if it were the entity). Lenient: read until close.
        if head.version == Version::HTTP_10 {
            if !config.allow_transfer_encoding_in_http10 {
                return Err(Error::Remote(Violation::BadTransferEncoding));
            }
            return Ok(Framing {
                body: BodyFraming::Close,
                close: Some(CloseReason::CloseDelimited),
            });
        }
        // 4. chunked last: chunked. Any other coding last (or chunked applied twice, which a
        // sender MUST NOT do): the length is unknowable except by reading until close.
        let body = if chunked_last {
            BodyFraming::Chunked
        } else {
            BodyFraming::Close
        };
        let close = if has_length {
            // 3. Transfer-Encoding overrides Content-Length; close after this response.
            Some(CloseReason::TransferEncodingAndLength)
        } else if body == BodyFraming::Close {
            Some(CloseReason::CloseDelimited)
        } else {
            connection_close
        };
        return Ok(Framing { body, close });
    }

    // 5. Content-Length.
    if has_length {
        let n = content_length(&head.headers, config)?;
        return Ok(Framing {
            body: BodyFraming::Length(n),
            close: connection_close,
        });
    }

    // 6. Otherwise the body runs until the server closes the connection.
    Ok(Framing {
        body: BodyFraming::Close,
        close: Some(CloseReason::CloseDelimited),
    })
}

/// Whether the connection-level fields say to close: `Connection: close` (RFC 9112 §9.6), or
/// an HTTP/1.0 response without `Connection: keep-alive` (RFC 9112 §9.3).
fn connection_close(headers: &HeaderMap, version: Version) -> Option<CloseReason> {
    let mut close = false;
    let mut keep_alive = false;
    for value in headers.get_all(CONNECTION) {
        for option in list_elements(value.as_bytes()) {
            close |= option.eq_ignore_ascii_case(b"close");
            keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    if close {
        Some(CloseReason::ConnectionClose)
    } else if version == Version::HTTP_10 && !keep_alive {
        Some(CloseReason::Http10)
    } else {
        None
    }
}

/// Whether `chunked` is the final transfer coding, and the only `chunked` (RFC 9112 §6.1,
/// §7). The codings are the comma-separated elements of all Transfer-Encoding fields in
/// order, compared case-insensitively; each is a token, optionally with `;` parameters.
fn chunked_is_final(headers: &HeaderMap) -> Result<bool, Error> {
    let bad = Error::Remote(Violation::BadTransferEncoding);
    let mut codings = 0usize;
    let mut chunked_seen = 0usize;
    let mut last_is_chunked = false;
    for value in headers.get_all(TRANSFER_ENCODING) {
        for element in list_elements(value.as_bytes()) {
            // transfer-coding = token *( OWS ";" OWS transfer-parameter )
            let name = match element.iter().position(|&b| b == b';') {
                Some(i) => trim_ows(&element[..i]),
                None => element,
            };
            if !is_token(name) {
                return Err(bad);
            }
            codings += 1;
            last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if last_is_chunked {
                chunked_seen += 1;
            }
        }
    }
    if codings == 0 {
        return Err(bad);
    }
    Ok(last_is_chunked && chunked_seen == 1)
}

/// The message's Content-Length (RFC 9110 §8.6, RFC 9112 §6.3 step 5): `1*DIGIT`, no sign, no
/// whitespace inside, no overflow. Several fields with one value fold; a list within one
/// field folds only under [`ParseConfig::allow_content_length_list`].
fn content_length(headers: &HeaderMap, config: &ParseConfig) -> Result<u64, Error> {
    let bad = Error::Remote(Violation::BadContentLength);
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let bytes = value.as_bytes();
        let mut fold = |n: u64| match length {
            Some(m) if m != n => Err(bad),
            _ => {
                length = Some(n);
                Ok(())
            }
        };
        if bytes.contains(&b',') {
            if !config.allow_content_length_list {
                return Err(bad);
            }
            // Every element must be a valid length, including empty ones (`5,,5` is not a
            // list of identical values).
            for element in bytes.split(|&b| b == b',') {
                fold(parse_digits(trim_ows(element)).ok_or(bad)?)?;
            }
        } else {
            fold(parse_digits(bytes).ok_or(bad)?)?;
        }
    }
    length.ok_or(bad)
}

/// `1*DIGIT` as a u64; `None` when empty, holding anything else, or overflowing.
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, StatusCode};

    fn head(version: Version, status: u16, fields: &[(&str, &str)]) -> ResponseHead {
        let mut headers = HeaderMap::new();
        for (n, v) in fields {
            headers.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        ResponseHead {
            version,
            status: StatusCode::from_u16(status).expect("status"),
            reason: String::new(),
            headers,
        }
    }

    fn framing(method: Method, head: &ResponseHead) -> Result<Framing, Error> {
        body_framing(&method, head, &ParseConfig::default())
    }

    #[test]
    fn close_reason_precedence() {
        use CloseReason::*;
        let h = head(
            Version::HTTP_10,
            200,
            &[
                ("connection", "close"),
                ("transfer-encoding", "chunked"),
                ("content-length", "2"),
            ],
        );
        // Strict: Transfer-Encoding in HTTP/1.0 is refused; lenient reads to the close.
        assert_eq!(
            framing(Method::GET, &h),
            Err(crate::proto::error::Error::Remote(
                Violation::BadTransferEncoding
            ))
        );
        let lenient = ParseConfig {
            allow_transfer_encoding_in_http10: true,
            ..ParseConfig::default()
        };
        assert_eq!(
            body_framing(&Method::GET, &h, &lenient),
            Ok(Framing {
                body: BodyFraming::Close,
                close: Some(CloseDelimited)
            })
        );
        let h = head(
            Version::HTTP_11,
            200,
            &[
                ("connection", "close"),
                ("transfer-encoding", "chunked"),
                ("content-length", "2"),
            ],
        );
        assert_eq!(
            framing(Method::GET, &h),
            Ok(Framing {
                body: BodyFraming::Chunked,
                close: Some(TransferEncodingAndLength)
            })
        );
        let h = head(
            Version::HTTP_10,
            200,
            &[("connection", "close"), ("content-length", "2")],
        );
        assert_eq!(
            framing(Method::GET, &h),
            Ok(Framing {
                body: BodyFraming::Length(2),
                close: Some(ConnectionClose)
            })
        );
        let h = head(Version::HTTP_10, 204, &[]);
        assert_eq!(
            framing(Method::GET, &h),
            Ok(Framing {
                body: BodyFraming::None,
                close: Some(Http10)
            })
        );
        let h = head(
            Version::HTTP_10,
            200,
            &[("connection", "keep-alive, close"), ("content-length", "0")],
        );
        assert_eq!(
            framing(Method::GET, &h).map(|f| f.close),
            Ok(Some(ConnectionClose))
        );
    }

    #[test]
    fn connect() {
        let h = head(
            Version::HTTP_11,
            200,
            &[("connection", "close"), ("content-length", "10")],
        );
        assert_eq!(
            framing(Method::CONNECT, &h),
            Ok(Framing {
                body: BodyFraming::None,
                close: None
            })
        );
        let h = head(Version::HTTP_11, 403, &[("content-length", "10")]);
        assert_eq!(
            framing(Method::CONNECT, &h).map(|f| f.body),
            Ok(BodyFraming::Length(10))
        );
        let h = head(Version::HTTP_11, 407, &[]);
        assert_eq!(
            framing(Method::CONNECT, &h).map(|f| f.body),
            Ok(BodyFraming::Close)
        );
    }

    #[test]
    fn no_body_statuses_ignore_bad_framing_fields() {
        for status in [100, 101, 103, 204, 304] {
            let h = head(
                Version::HTTP_11,
                status,
                &[("content-length", "nope"), ("transfer-encoding", "")],
            );
            assert_eq!(
                framing(Method::GET, &h).map(|f| f.body),
                Ok(BodyFraming::None),
                "{status}"
            );
        }
        let h = head(Version::HTTP_11, 200, &[("content-length", "nope")]);
        assert_eq!(
            framing(Method::HEAD, &h).map(|f| f.body),
            Ok(BodyFraming::None)
        );
        let h = head(Version::HTTP_11, 101, &[]);
        assert_eq!(
            framing(Method::GET, &h).map(|f| f.close),
            Ok(Some(CloseReason::Upgraded))
        );
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits(b"0"), Some(0));
        assert_eq!(parse_digits(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"99999999999999999999999",
            b"+1",
            b"1 ",
            b"1_0",
            b"\xd9\xa1",
        ] {
            assert_eq!(parse_digits(bad), None, "{bad:?}");
        }
    }
}
