//! Request-head encoding. Every caller-supplied byte is validated before any byte is written:
//! CR, LF or NUL in a method, header name, header value or URL is an error (invariant I6).
use crate::proto::abnf::{is_field_value_byte, is_token};
use crate::proto::error::{Error, Misuse};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use url::Url;

/// The form of the request target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `absolute-form` (`http://host/path?q`), for requests through a forward proxy.
    Absolute,
    /// `authority-form` (`host:port`), for CONNECT.
    Authority,
    /// `origin-form` (`/path?q`), for requests to the origin.
    Origin,
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n` (0 writes `Content-Length: 0` only for methods that carry a body).
    Known(u64),
    /// No body, no framing header.
    None,
}

/// What is needed to encode one request head.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URL; `Host` is derived from it.
    pub url: &'a Url,
    /// Which target form to write.
    pub target: TargetForm,
    /// Headers to write after `Host`, in order. A caller-supplied `Host`, `Content-Length` or
    /// `Transfer-Encoding` is skipped: the encoder writes those from `url` and `body`.
    pub headers: &'a HeaderMap,
    /// The body's framing.
    pub body: BodyLength,
}

/// Appends the encoded request head (request line, headers, blank line) to `out`.
///
/// The head is validated whole before anything is written, then written with one `reserve`.
/// On error nothing is appended.
///
/// ```
/// use ferry_http::proto::{write_request_head, BodyLength, RequestHead, TargetForm};
/// let url = url::Url::parse("http://example.com:8080/a?b#frag").unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("*/*"));
/// let head = RequestHead {
///     method: &http::Method::GET,
///     url: &url,
///     target: TargetForm::Origin,
///     headers: &headers,
///     body: BodyLength::None,
/// };
/// let mut out = Vec::new();
/// write_request_head(&head, &mut out).unwrap();
/// assert_eq!(out, b"GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\naccept: */*\r\n\r\n");
/// ```
pub fn write_request_head(head: &RequestHead<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    // Validate and measure first: nothing touches `out` until every caller byte has passed.
    let method = head.method.as_str().as_bytes();
    if !is_token(method) {
        return Err(Error::Local(Misuse::BadMethod));
    }
    let url = head.url;
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.as_bytes(),
        _ => return Err(Error::Local(Misuse::BadTarget)),
    };
    check_target(host)?;

    // `Url::port` is `None` when the port is the scheme's default (for http, https, ws, wss,
    // ftp), so a present port is one that must be written.
    let mut port_buf = [0u8; 5];
    let explicit_port: &[u8] = match url.port() {
        Some(p) => format_u64(u64::from(p), &mut port_buf),
        None => b"",
    };
    let mut always_port_buf = [0u8; 5];

    // The request target as at most eight slices (RFC 9112 §3.2).
    let mut target: [&[u8]; 8] = [b""; 8];
    let mut host_port: [&[u8]; 3] = [host, b"", b""];
    if !explicit_port.is_empty() {
        host_port[1] = b":";
        host_port[2] = explicit_port;
    }
    match head.target {
        TargetForm::Origin => {
            // origin-form = absolute-path [ "?" query ]; never the fragment.
            let [path, q, query] = path_and_query(url)?;
            target[0] = path;
            target[1] = q;
            target[2] = query;
        }
        TargetForm::Absolute => {
            // absolute-form = absolute-URI, without userinfo (RFC 9110 §4.2.4) or fragment.
            let scheme = url.scheme().as_bytes();
            check_target(scheme)?;
            let [path, q, query] = path_and_query(url)?;
            target = [
                scheme,
                b"://",
                host_port[0],
                host_port[1],
                host_port[2],
                path,
                q,
                query,
            ];
        }
        TargetForm::Authority => {
            // authority-form = uri-host ":" port, the port always written (RFC 9112 §3.2.3).
            let port = url
                .port_or_known_default()
                .ok_or(Error::Local(Misuse::BadTarget))?;
            let port = format_u64(u64::from(port), &mut always_port_buf);
            target[0] = host;
            target[1] = b":";
            target[2] = port;
            // The Host field of a CONNECT names the same authority (RFC 9110 §9.3.6 example).
            host_port = [host, b":", port];
        }
    }

    let mut len = method.len() + 1 + 1 + b"HTTP/1.1\r\n".len();
    len += target.iter().map(|s| s.len()).sum::<usize>();
    len += b"Host: \r\n".len() + host_port.iter().map(|s| s.len()).sum::<usize>();
    for (name, value) in head.headers {
        if is_framed_by_encoder(name) {
            continue;
        }
        check_header(name, value)?;
        len += name.as_str().len() + 2 + value.len() + 2;
    }
    let mut len_buf = [0u8; 20];
    let framing: &[&[u8]] = match head.body {
        BodyLength::Chunked => &[b"Transfer-Encoding: chunked\r\n"],
        BodyLength::Known(0) if !method_implies_body(head.method) => &[],
        BodyLength::Known(n) => &[b"Content-Length: ", format_u64(n, &mut len_buf), b"\r\n"],
        BodyLength::None => &[],
    };
    len += framing.iter().map(|s| s.len()).sum::<usize>() + 2;

    // Write: every byte below was validated above.
    out.reserve(len);
    out.extend_from_slice(method);
    out.push(b' ');
    for part in target {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    for part in host_port {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in head.headers {
        if is_framed_by_encoder(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for part in framing {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Fields the encoder writes itself from the URL and the body length.
fn is_framed_by_encoder(name: &HeaderName) -> bool {
    name == HOST || name == CONTENT_LENGTH || name == TRANSFER_ENCODING
}

/// Methods whose requests carry a body, so `Content-Length: 0` is meaningful (RFC 9110 §8.6:
/// a user agent SHOULD send it for such methods when there is no body).
fn method_implies_body(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PUT || *method == Method::PATCH
}

/// The origin-form pieces of `url`: path (`/` when empty), `?` and the query (both empty
/// when the URL has none).
fn path_and_query(url: &Url) -> Result<[&[u8]; 3], Error> {
    let path = match url.path().as_bytes() {
        b"" => b"/",
        p if p[0] == b'/' => p,
        // A cannot-be-a-base URL (`mailto:x`) has no absolute path to send.
        _ => return Err(Error::Local(Misuse::BadTarget)),
    };
    check_target(path)?;
    match url.query() {
        Some(q) => {
            check_target(q.as_bytes())?;
            Ok([path, b"?", q.as_bytes()])
        }
        None => Ok([path, b"", b""]),
    }
}

/// Rejects a request-target piece holding anything but visible US-ASCII: CR, LF, NUL, SP,
/// other controls, DEL and non-ASCII can never appear in a request-target (RFC 9112 §3.2).
/// `url::Url` percent-encodes these already; this is the check that does not trust it.
pub(crate) fn check_target(bytes: &[u8]) -> Result<(), Error> {
    if bytes.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(Error::Local(Misuse::BadTarget))
    }
}

/// Checks a caller's header field. `http` validates both on construction, but a value can be
/// built unchecked, so both are checked again here (invariant I6).
fn check_header(name: &HeaderName, value: &HeaderValue) -> Result<(), Error> {
    if !is_token(name.as_str().as_bytes()) {
        return Err(Error::Local(Misuse::BadHeaderName));
    }
    check_header_value(value.as_bytes())
}

/// Rejects CR, LF, NUL and every other control byte but HTAB in a field value.
pub(crate) fn check_header_value(bytes: &[u8]) -> Result<(), Error> {
    if bytes.iter().all(|&b| is_field_value_byte(b)) {
        Ok(())
    } else {
        Err(Error::Local(Misuse::BadHeaderValue))
    }
}

/// Formats `n` in decimal into the end of `buf` and returns the digits.
fn format_u64<const N: usize>(mut n: u64, buf: &mut [u8; N]) -> &[u8] {
    let mut i = N;
    // `N` is 5 for u16 ports and 20 for u64 lengths, enough for every value's digits, so `i`
    // never runs out first; `checked_sub` keeps that a non-panicking truth.
    while let Some(j) = i.checked_sub(1) {
        i = j;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::error::Misuse;
    use http::header::{ACCEPT, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, USER_AGENT};

    fn encode(
        method: &Method,
        url: &str,
        target: TargetForm,
        headers: &HeaderMap,
        body: BodyLength,
    ) -> Result<Vec<u8>, Error> {
        let url = Url::parse(url).expect("test URL");
        let mut out = b"previous".to_vec();
        let head = RequestHead {
            method,
            url: &url,
            target,
            headers,
            body,
        };
        match write_request_head(&head, &mut out) {
            Ok(()) => Ok(out.split_off(b"previous".len())),
            Err(e) => {
                assert_eq!(out, b"previous", "out changed on error");
                Err(e)
            }
        }
    }

    fn get(url: &str, target: TargetForm) -> String {
        let bytes = encode(
            &Method::GET,
            url,
            target,
            &HeaderMap::new(),
            BodyLength::None,
        )
        .expect("encodes");
        String::from_utf8(bytes).expect("ASCII")
    }

    #[test]
    fn origin_form() {
        assert_eq!(
            get("http://example.com/a/b?x=1&y#frag", TargetForm::Origin),
            "GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        assert_eq!(
            get("http://example.com", TargetForm::Origin),
            "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        assert_eq!(
            get("http://example.com/p?", TargetForm::Origin),
            "GET /p? HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        // A non-special scheme with a host may have an empty path: sent as `/`.
        assert_eq!(
            get("foo://example.com", TargetForm::Origin),
            "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
    }

    #[test]
    fn default_ports_omitted() {
        assert_eq!(
            get("http://example.com:80/", TargetForm::Origin),
            "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        assert_eq!(
            get("https://example.com:443/", TargetForm::Origin),
            "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        assert_eq!(
            get("https://example.com:80/", TargetForm::Origin),
            "GET / HTTP/1.1\r\nHost: example.com:80\r\n\r\n"
        );
        assert_eq!(
            get("http://example.com:8080/", TargetForm::Origin),
            "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_host() {
        assert_eq!(
            get("http://[::1]/", TargetForm::Origin),
            "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"
        );
        assert_eq!(
            get("http://[2001:db8::1]:8080/x", TargetForm::Origin),
            "GET /x HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"
        );
        assert_eq!(
            get("http://[::1]:8080/x?q#f", TargetForm::Absolute),
            "GET http://[::1]:8080/x?q HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_drops_userinfo_and_fragment() {
        assert_eq!(
            get(
                "http://user:secret@example.com:8080/p?q=1#frag",
                TargetForm::Absolute
            ),
            "GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"
        );
        assert_eq!(
            get("http://example.com", TargetForm::Absolute),
            "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
    }

    #[test]
    fn authority_form_always_has_port() {
        let connect = |url| {
            String::from_utf8(
                encode(
                    &Method::CONNECT,
                    url,
                    TargetForm::Authority,
                    &HeaderMap::new(),
                    BodyLength::None,
                )
                .expect("encodes"),
            )
            .expect("ASCII")
        };
        assert_eq!(
            connect("https://example.com/ignored?x"),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        assert_eq!(
            connect("http://example.com:8080/"),
            "CONNECT example.com:8080 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"
        );
        assert_eq!(
            connect("https://[::1]/"),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"
        );
        // No known default port and none given: no authority to send.
        assert_eq!(
            encode(
                &Method::CONNECT,
                "foo://example.com/",
                TargetForm::Authority,
                &HeaderMap::new(),
                BodyLength::None
            ),
            Err(Error::Local(Misuse::BadTarget))
        );
    }

    #[test]
    fn headers_in_order_and_framing_fields_replaced() {
        let mut h = HeaderMap::new();
        h.insert(USER_AGENT, HeaderValue::from_static("ferry/0.1"));
        h.insert(HOST, HeaderValue::from_static("evil.example"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        h.append(ACCEPT, HeaderValue::from_static("text/html"));
        h.append(ACCEPT, HeaderValue::from_static("*/*\tq=0.1"));
        let out = encode(
            &Method::PUT,
            "http://example.com/up",
            TargetForm::Origin,
            &h,
            BodyLength::Known(12),
        )
        .expect("encodes");
        assert_eq!(
            out,
            b"PUT /up HTTP/1.1\r\nHost: example.com\r\nuser-agent: ferry/0.1\r\naccept: text/html\r\n\
              accept: */*\tq=0.1\r\nContent-Length: 12\r\n\r\n"
        );
    }

    #[test]
    fn body_framing_fields() {
        let h = HeaderMap::new();
        let enc = |m: &Method, body| {
            encode(m, "http://e.com/", TargetForm::Origin, &h, body).expect("encodes")
        };
        for m in [Method::POST, Method::PUT, Method::PATCH] {
            let expect = format!("{m} / HTTP/1.1\r\nHost: e.com\r\nContent-Length: 0\r\n\r\n");
            assert_eq!(enc(&m, BodyLength::Known(0)), expect.as_bytes());
        }
        for m in [Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS] {
            let expect = format!("{m} / HTTP/1.1\r\nHost: e.com\r\n\r\n");
            assert_eq!(enc(&m, BodyLength::Known(0)), expect.as_bytes());
            assert_eq!(enc(&m, BodyLength::None), expect.as_bytes());
        }
        assert_eq!(
            enc(&Method::GET, BodyLength::Known(5)),
            b"GET / HTTP/1.1\r\nHost: e.com\r\nContent-Length: 5\r\n\r\n"
        );
        assert_eq!(
            enc(&Method::POST, BodyLength::Known(u64::MAX)),
            b"POST / HTTP/1.1\r\nHost: e.com\r\nContent-Length: 18446744073709551615\r\n\r\n"
        );
        assert_eq!(
            enc(&Method::POST, BodyLength::Chunked),
            b"POST / HTTP/1.1\r\nHost: e.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let purge = Method::from_bytes(b"PURGE").expect("token");
        assert_eq!(
            enc(&purge, BodyLength::None),
            b"PURGE / HTTP/1.1\r\nHost: e.com\r\n\r\n"
        );
    }

    #[test]
    fn url_without_host_is_refused() {
        for url in [
            "data:text/plain,hi",
            "mailto:a@example.com",
            "unix:/run/x.sock",
            "file:///etc/passwd",
        ] {
            for target in [
                TargetForm::Origin,
                TargetForm::Absolute,
                TargetForm::Authority,
            ] {
                assert_eq!(
                    encode(
                        &Method::GET,
                        url,
                        target,
                        &HeaderMap::new(),
                        BodyLength::None
                    ),
                    Err(Error::Local(Misuse::BadTarget)),
                    "{url}"
                );
            }
        }
    }

    /// `url::Url` strips CR, LF and TAB and percent-encodes space and controls, so injection
    /// through a parsed URL ends up as inert bytes in the target.
    #[test]
    fn url_injection_is_neutralised() {
        let out = get(
            "http://example.com/a b\r\nX-Injected: 1\0?q=\r\n#\r\n",
            TargetForm::Origin,
        );
        assert_eq!(
            out,
            "GET /a%20bX-Injected:%201%00?q= HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
    }

    #[test]
    fn target_check_refuses_injection() {
        for bad in [
            &b"/a\r\nb"[..],
            b"/a\rb",
            b"/a\nb",
            b"/a\0b",
            b"/a b",
            b"/a\tb",
            b"/\x7f",
            b"/\x01",
            b"/\xc3\xa9",
        ] {
            assert_eq!(
                check_target(bad),
                Err(Error::Local(Misuse::BadTarget)),
                "{bad:?}"
            );
        }
        assert_eq!(check_target(b"/a/b?c=d&e=%20!$'()*+,;=:@~"), Ok(()));
    }

    /// `HeaderValue::from_maybe_shared_unchecked` is `unsafe` in `http` 1.x and the crate forbids
    /// unsafe code, so the re-check that guards against such values is tested directly.
    #[test]
    fn header_value_check_refuses_injection() {
        for bad in [
            &b"a\r\nX-Injected: 1"[..],
            b"a\rb",
            b"a\nb",
            b"a\0b",
            b"a\x7fb",
            b"\x1b[31m",
            b"\x0b",
        ] {
            assert_eq!(
                check_header_value(bad),
                Err(Error::Local(Misuse::BadHeaderValue)),
                "{bad:?}"
            );
        }
        for good in [
            &b""[..],
            b"a\tb",
            b"text/html; q=0.9",
            b"\xc3\xa9",
            b" padded ",
        ] {
            assert_eq!(check_header_value(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn method_and_header_names_are_tokens() {
        use crate::proto::abnf::is_token;
        for bad in [&b"GE T"[..], b"GET\r\n", b"G\0", b"", b"GET/", b"\xc3\xa9"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        // `http` refuses such methods and names at construction as well.
        assert!(Method::from_bytes(b"GE\r\nT").is_err());
        assert!(HeaderName::from_bytes(b"x-a\r\nb").is_err());
        assert!(HeaderName::from_bytes(b"x-a\0").is_err());
        assert!(HeaderValue::from_bytes(b"a\r\nb").is_err());
    }

    #[test]
    fn format_u64_digits() {
        let mut buf = [0u8; 20];
        assert_eq!(format_u64(0, &mut buf), b"0");
        assert_eq!(format_u64(10, &mut buf), b"10");
        assert_eq!(format_u64(u64::MAX, &mut buf), b"18446744073709551615");
        let mut small = [0u8; 5];
        assert_eq!(format_u64(65535, &mut small), b"65535");
    }
}
