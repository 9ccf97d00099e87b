//! Response decoding end to end through the public sans-IO API: head parsing, body framing and
//! body decoding, each case fed through [`shotgun`] (whole, split at every index, one byte at a
//! time, and with trailing bytes), which asserts that every way of feeding it gives the same
//! outcome.
use ferry_http::proto::{
    body_framing, BodyDecoder, BodyFraming, CloseReason, Error, Framing, HeadParser, Limits,
    ParseConfig, Parsed, Violation,
};
use http::Method;
use BodyFraming::{Chunked, Close, Length};

/// Header or trailer fields as (lowercase name, value) pairs.
type Fields = Vec<(String, Vec<u8>)>;

/// Everything observable about decoding one response.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    interim: Vec<u16>,
    status: Option<u16>,
    reason: Option<String>,
    headers: Fields,
    framing: Option<Framing>,
    body: Vec<u8>,
    trailers: Option<Fields>,
    error: Option<Error>,
    /// Whether the error (if any) came from the end of input rather than from the bytes.
    error_at_eof: bool,
    /// Bytes left unconsumed after the response ended.
    leftover: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Case {
    input: Vec<u8>,
    method: Method,
    config: ParseConfig,
    limits: Limits,
    upgrade: bool,
    // Expectations; `None` means "not checked".
    status: Option<u16>,
    framing: Option<Framing>,
    body: Option<Vec<u8>>,
    error: Option<Option<Error>>,
    interim: Option<Vec<u16>>,
    trailers: Option<Option<Fields>>,
    headers: Fields,
    reason: Option<String>,
}

fn resp(input: impl AsRef<[u8]>) -> Case {
    Case {
        input: input.as_ref().to_vec(),
        method: Method::GET,
        config: ParseConfig::default(),
        limits: Limits::default(),
        upgrade: false,
        status: None,
        framing: None,
        body: None,
        error: None,
        interim: None,
        trailers: None,
        headers: Vec::new(),
        reason: None,
    }
}

/// A 200 with the given extra head lines (each without CRLF) and the raw body bytes.
fn ok_with(lines: &[&str], body: &[u8]) -> Case {
    let mut s = b"HTTP/1.1 200 OK\r\n".to_vec();
    for l in lines {
        s.extend_from_slice(l.as_bytes());
        s.extend_from_slice(b"\r\n");
    }
    s.extend_from_slice(b"\r\n");
    s.extend_from_slice(body);
    resp(s)
}

fn chunked(body: &[u8]) -> Case {
    ok_with(&["Transfer-Encoding: chunked"], body)
}

impl Case {
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn config(mut self, f: impl FnOnce(&mut ParseConfig)) -> Self {
        f(&mut self.config);
        self
    }
    fn limits(mut self, f: impl FnOnce(&mut Limits)) -> Self {
        f(&mut self.limits);
        self
    }
    fn upgrade(mut self) -> Self {
        self.upgrade = true;
        self
    }
    /// A successful response.
    fn ok(
        mut self,
        status: u16,
        body: BodyFraming,
        close: Option<CloseReason>,
        data: &[u8],
    ) -> Self {
        self.status = Some(status);
        self.framing = Some(Framing { body, close });
        self.body = Some(data.to_vec());
        self.error = Some(None);
        self
    }
    /// A response that fails with `e` (after any body bytes given to [`Case::body`]).
    fn err(mut self, e: Error) -> Self {
        self.error = Some(Some(e));
        self
    }
    fn body(mut self, data: &[u8]) -> Self {
        self.body = Some(data.to_vec());
        self
    }
    fn interim(mut self, codes: &[u16]) -> Self {
        self.interim = Some(codes.to_vec());
        self
    }
    fn trailers(mut self, fields: &[(&str, &str)]) -> Self {
        self.trailers = Some(Some(
            fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        ));
        self
    }
    fn no_trailers(mut self) -> Self {
        self.trailers = Some(None);
        self
    }
    fn header(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.push((name.to_string(), value.to_vec()));
        self
    }
    fn reason(mut self, r: &str) -> Self {
        self.reason = Some(r.to_string());
        self
    }

    fn check(self) {
        let out = shotgun(&self);
        if let Some(e) = &self.error {
            assert_eq!(&out.error, e, "error; outcome {out:#?}");
        }
        if let Some(s) = self.status {
            assert_eq!(out.status, Some(s), "status; outcome {out:#?}");
        }
        if let Some(f) = self.framing {
            assert_eq!(out.framing, Some(f), "framing; outcome {out:#?}");
        }
        if let Some(b) = &self.body {
            assert_eq!(&out.body, b, "body; outcome {out:#?}");
        }
        if let Some(i) = &self.interim {
            assert_eq!(&out.interim, i, "interim; outcome {out:#?}");
        }
        if let Some(t) = &self.trailers {
            assert_eq!(&out.trailers, t, "trailers; outcome {out:#?}");
        }
        for (name, value) in &self.headers {
            assert!(
                out.headers.iter().any(|(n, v)| n == name && v == value),
                "header {name}; outcome {out:#?}"
            );
        }
        if let Some(r) = &self.reason {
            assert_eq!(out.reason.as_ref(), Some(r), "reason; outcome {out:#?}");
        }
    }
}

enum Phase {
    Head(HeadParser),
    Body(BodyDecoder),
    Done,
}

/// Decodes `pieces` in order as a driver would (keeping unconsumed bytes and appending the
/// next piece), then signals end of input.
fn run<'a>(case: &Case, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut out = Outcome {
        interim: Vec::new(),
        status: None,
        reason: None,
        headers: Vec::new(),
        framing: None,
        body: Vec::new(),
        trailers: None,
        error: None,
        error_at_eof: false,
        leftover: Vec::new(),
    };
    let mut phase = Phase::Head(HeadParser::new(case.config, case.limits, case.upgrade));
    let mut buf: Vec<u8> = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if let Err(e) = progress(case, &mut phase, &mut buf, &mut out) {
            out.error = Some(e);
            return out;
        }
    }
    // End of input.
    let eof = match &mut phase {
        Phase::Head(_) => Err(Error::Remote(Violation::IncompleteHead)),
        Phase::Body(d) => d.on_eof().map(|()| {
            out.trailers = d.trailers().map(fields);
        }),
        Phase::Done => Ok(()),
    };
    if let Err(e) = eof {
        out.error = Some(e);
        out.error_at_eof = true;
    }
    out.leftover = buf;
    out
}

fn fields(map: &http::HeaderMap) -> Fields {
    map.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn progress(
    case: &Case,
    phase: &mut Phase,
    buf: &mut Vec<u8>,
    out: &mut Outcome,
) -> Result<(), Error> {
    loop {
        match phase {
            Phase::Head(parser) => match parser.try_parse(buf)? {
                None => return Ok(()),
                Some((n, parsed)) => {
                    assert!(n > 0 && n <= buf.len());
                    buf.drain(..n);
                    match parsed {
                        Parsed::Interim(s) => out.interim.push(s.as_u16()),
                        Parsed::Final(head) => {
                            out.status = Some(head.status.as_u16());
                            out.reason = Some(head.reason.clone());
                            out.headers = fields(&head.headers);
                            let framing = body_framing(&case.method, &head, &case.config)?;
                            out.framing = Some(framing);
                            *phase = Phase::Body(BodyDecoder::new(
                                framing.body,
                                case.config,
                                case.limits,
                            ));
                        }
                    }
                }
            },
            Phase::Body(decoder) => {
                if decoder.is_done() {
                    out.trailers = decoder.trailers().map(fields);
                    *phase = Phase::Done;
                    continue;
                }
                if buf.is_empty() {
                    return Ok(());
                }
                let d = decoder.decode(buf)?;
                assert!(d.consumed <= buf.len(), "consumed past input");
                assert!(
                    d.data.start <= d.data.end && d.data.end <= d.consumed,
                    "data outside consumed"
                );
                assert!(
                    d.consumed > 0 || decoder.is_done(),
                    "no progress on non-empty input"
                );
                out.body.extend_from_slice(&buf[d.data.clone()]);
                buf.drain(..d.consumed);
            }
            Phase::Done => return Ok(()),
        }
    }
}

const TRAILING: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// Feeds `case.input` every way and asserts that the outcomes agree; returns the outcome.
fn shotgun(case: &Case) -> Outcome {
    let input = &case.input[..];
    let whole = run(case, [input]);

    let small = input.len() <= 4096;
    let stride = if small { 1 } else { 997 };
    for i in (1..input.len()).step_by(stride) {
        let split = run(case, [&input[..i], &input[i..]]);
        assert_eq!(split, whole, "split at {i} differs from whole input");
    }
    for size in if small {
        vec![1, 2, 3, 7]
    } else {
        vec![1000, 4093]
    } {
        let pieces = run(case, input.chunks(size));
        assert_eq!(pieces, whole, "pieces of {size} differ from whole input");
    }

    // With trailing bytes: a self-delimited response must leave them alone, and an error
    // found in the bytes must be found again.
    let self_delimited =
        whole.error.is_none() && !matches!(whole.framing, Some(Framing { body: Close, .. }));
    let byte_error = whole.error.is_some() && !whole.error_at_eof;
    if self_delimited || byte_error {
        let mut with_trailing = input.to_vec();
        with_trailing.extend_from_slice(TRAILING);
        let mut expected = whole.clone();
        if self_delimited {
            expected.leftover.extend_from_slice(TRAILING);
        }
        let a = run(case, [&with_trailing[..]]);
        let b = run(case, with_trailing.chunks(if small { 1 } else { 1000 }));
        if byte_error {
            // Leftover differs by where the error stopped; the rest must match.
            assert_eq!(
                Outcome {
                    leftover: Vec::new(),
                    ..a
                },
                Outcome {
                    leftover: Vec::new(),
                    ..expected.clone()
                }
            );
            assert_eq!(
                Outcome {
                    leftover: Vec::new(),
                    ..b
                },
                Outcome {
                    leftover: Vec::new(),
                    ..expected
                }
            );
        } else {
            assert_eq!(a, expected, "whole with trailing bytes");
            assert_eq!(b, expected, "pieces with trailing bytes");
        }
    }
    whole
}

macro_rules! case {
    ($name:ident, $case:expr) => {
        #[test]
        fn $name() {
            $case.check();
        }
    };
}

fn remote(v: Violation) -> Error {
    Error::Remote(v)
}

fn limit(name: &'static str, max: u64) -> Error {
    Error::Limit { name, max }
}

use CloseReason::{CloseDelimited, ConnectionClose, Http10, TransferEncodingAndLength, Upgraded};
use Violation::*;

// ---- Content-Length (RFC 9112 §6.3 step 5, RFC 9110 §8.6) ----
case!(
    cl_basic,
    ok_with(&["Content-Length: 5"], b"hello").ok(200, Length(5), None, b"hello")
);
case!(
    cl_zero,
    ok_with(&["Content-Length: 0"], b"").ok(200, Length(0), None, b"")
);
case!(
    cl_leading_zeros,
    ok_with(&["Content-Length: 007"], b"1234567").ok(200, Length(7), None, b"1234567")
);
case!(
    cl_ows_trimmed,
    ok_with(&["Content-Length:  5 "], b"hello").ok(200, Length(5), None, b"hello")
);
case!(
    cl_dup_equal,
    ok_with(&["Content-Length: 5", "Content-Length: 5"], b"hello").ok(
        200,
        Length(5),
        None,
        b"hello"
    )
);
case!(
    cl_dup_differ,
    ok_with(&["Content-Length: 5", "Content-Length: 6"], b"hello!").err(remote(BadContentLength))
);
case!(
    cl_plus,
    ok_with(&["Content-Length: +5"], b"hello").err(remote(BadContentLength))
);
case!(
    cl_minus,
    ok_with(&["Content-Length: -1"], b"").err(remote(BadContentLength))
);
case!(
    cl_list_differ,
    ok_with(&["Content-Length: 5,6"], b"hello").err(remote(BadContentLength))
);
case!(
    cl_list_same_strict,
    ok_with(&["Content-Length: 5, 5"], b"hello").err(remote(BadContentLength))
);
case!(
    cl_list_same_lenient,
    ok_with(&["Content-Length: 5, 5", "Content-Length: 5"], b"hello")
        .config(|c| c.allow_content_length_list = true)
        .ok(200, Length(5), None, b"hello")
);
case!(
    cl_list_differ_lenient,
    ok_with(&["Content-Length: 5, 6"], b"hello")
        .config(|c| c.allow_content_length_list = true)
        .err(remote(BadContentLength))
);
case!(
    cl_list_empty_element_lenient,
    ok_with(&["Content-Length: 5,,5"], b"hello")
        .config(|c| c.allow_content_length_list = true)
        .err(remote(BadContentLength))
);
case!(
    cl_hex,
    ok_with(&["Content-Length: 0x5"], b"hello").err(remote(BadContentLength))
);
case!(
    cl_empty,
    ok_with(&["Content-Length:"], b"hello").err(remote(BadContentLength))
);
case!(
    cl_inner_space,
    ok_with(&["Content-Length: 5 5"], b"hello").err(remote(BadContentLength))
);
case!(
    cl_overflow,
    ok_with(&["Content-Length: 18446744073709551616"], b"x").err(remote(BadContentLength))
);
case!(
    cl_u64_max_then_eof,
    ok_with(&["Content-Length: 18446744073709551615"], b"abc")
        .body(b"abc")
        .err(remote(IncompleteBody))
);
case!(
    cl_short_eof,
    ok_with(&["Content-Length: 10"], b"hello")
        .body(b"hello")
        .err(remote(IncompleteBody))
);

// ---- chunked (RFC 9112 §7.1) ----
case!(
    chunked_basic,
    chunked(b"5\r\nhello\r\n0\r\n\r\n")
        .ok(200, Chunked, None, b"hello")
        .trailers(&[])
);
case!(
    chunked_multi,
    chunked(b"3\r\nabc\r\n4\r\ndefg\r\n1\r\nh\r\n0\r\n\r\n").ok(200, Chunked, None, b"abcdefgh")
);
case!(
    chunked_only_last,
    chunked(b"0\r\n\r\n")
        .ok(200, Chunked, None, b"")
        .trailers(&[])
);
case!(
    chunked_extensions,
    chunked(b"5;name=value;flag\r\nhello\r\n0;last=\"yes; really\"\r\n\r\n")
        .ok(200, Chunked, None, b"hello")
);
case!(
    chunked_bws_before_ext,
    chunked(b"5 \t;a=b\r\nhello\r\n0\r\n\r\n").ok(200, Chunked, None, b"hello")
);
case!(
    chunked_ws_without_ext,
    chunked(b"5 \r\nhello\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_trailers,
    chunked(b"5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-Other:  1 \r\n\r\n")
        .ok(200, Chunked, None, b"hello")
        .trailers(&[("x-sum", "abc"), ("x-other", "1")])
);
case!(
    chunked_upper_hex,
    chunked(b"A\r\n0123456789\r\n0\r\n\r\n").ok(200, Chunked, None, b"0123456789")
);
case!(
    chunked_lower_hex,
    chunked(b"a\r\n0123456789\r\n0\r\n\r\n").ok(200, Chunked, None, b"0123456789")
);
case!(
    chunked_leading_zeros,
    chunked(b"0005\r\nhello\r\n000\r\n\r\n").ok(200, Chunked, None, b"hello")
);
case!(
    chunked_bad_hex,
    chunked(b"G\r\nhello\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_0x_prefix,
    chunked(b"0x5\r\nhello\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_negative,
    chunked(b"-5\r\nhello\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_empty_size,
    chunked(b"\r\nhello\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_ext_without_size,
    chunked(b";a\r\nhello\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_overflow,
    chunked(b"10000000000000000\r\nx\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_u64_max_then_eof,
    chunked(b"FFFFFFFFFFFFFFFF\r\nabc")
        .body(b"abc")
        .err(remote(IncompleteBody))
);
case!(
    chunked_missing_crlf_after_data,
    chunked(b"5\r\nhelloX\r\n0\r\n\r\n")
        .body(b"hello")
        .err(remote(BadChunkTerminator))
);
case!(
    chunked_cr_without_lf_after_data,
    chunked(b"5\r\nhello\rX0\r\n\r\n")
        .body(b"hello")
        .err(remote(BadChunkTerminator))
);
case!(
    chunked_data_longer_than_size,
    chunked(b"3\r\nhello\r\n0\r\n\r\n")
        .body(b"hel")
        .err(remote(BadChunkTerminator))
);
case!(
    chunked_bare_lf_strict,
    chunked(b"5\nhello\n0\n\n").err(remote(BareLineEnding))
);
case!(
    chunked_bare_lf_lenient,
    chunked(b"5\nhello\n0\nA: b\n\n")
        .config(|c| c.allow_bare_lf_in_chunked = true)
        .ok(200, Chunked, None, b"hello")
        .trailers(&[("a", "b")])
);
case!(
    chunked_bare_lf_after_data_strict,
    chunked(b"5\r\nhello\n0\r\n\r\n")
        .body(b"hello")
        .err(remote(BareLineEnding))
);
case!(
    chunked_bare_cr_size_line,
    chunked(b"5\rhello\r\n0\r\n\r\n").err(remote(BareLineEnding))
);
case!(
    chunked_bare_cr_size_line_lenient,
    chunked(b"5\rhello\r\n0\r\n\r\n")
        .config(|c| c.allow_bare_lf_in_chunked = true)
        .err(remote(BareLineEnding))
);
case!(
    chunked_bare_cr_end,
    chunked(b"5\r\nhello\r\n0\r\n\rX")
        .body(b"hello")
        .err(remote(BareLineEnding))
);
case!(
    chunked_nul_in_ext,
    chunked(b"5;a\0b\r\nhello\r\n0\r\n\r\n").err(remote(BadChunkSize))
);
case!(
    chunked_eof_mid_data,
    chunked(b"5\r\nhel")
        .body(b"hel")
        .err(remote(IncompleteBody))
);
case!(
    chunked_eof_before_trailer_end,
    chunked(b"5\r\nhello\r\n0\r\n")
        .body(b"hello")
        .err(remote(IncompleteBody))
);
case!(
    chunked_eof_no_body,
    chunked(b"").body(b"").err(remote(IncompleteBody))
);
case!(
    chunked_ext_limit,
    chunked(&[&b"5;"[..], &[b'a'; 5000], b"\r\nhello\r\n0\r\n\r\n"].concat())
        .err(limit("max_chunk_ext_bytes", 4096))
);
case!(
    chunked_ext_at_limit,
    chunked(&[&b"5;"[..], &[b'a'; 4095], b"\r\nhello\r\n0\r\n\r\n"].concat())
        .ok(200, Chunked, None, b"hello")
);
case!(
    chunked_trailer_limit,
    chunked(&[&b"0\r\nX-Big: "[..], &[b'a'; 20000], b"\r\n\r\n"].concat())
        .err(limit("max_trailer_bytes", 16384))
);
case!(
    chunked_bad_trailer,
    chunked(b"5\r\nhello\r\n0\r\nbad line\r\n\r\n")
        .body(b"hello")
        .err(remote(BadTrailer))
);
case!(
    chunked_trailer_obs_fold,
    chunked(b"0\r\nA: b\r\n c\r\n\r\n").err(remote(BadTrailer))
);
case!(
    chunked_trailer_nul,
    chunked(b"0\r\nA: b\0c\r\n\r\n").err(remote(BadTrailer))
);

// ---- Transfer-Encoding (RFC 9112 §6.1, §6.3 steps 3 and 4) ----
case!(
    te_case_insensitive,
    ok_with(&["Transfer-Encoding: Chunked"], b"2\r\nhi\r\n0\r\n\r\n").ok(200, Chunked, None, b"hi")
);
case!(
    te_and_cl,
    ok_with(
        &["Content-Length: 100", "Transfer-Encoding: chunked"],
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    .ok(200, Chunked, Some(TransferEncodingAndLength), b"hi")
);
case!(
    te_and_bad_cl,
    ok_with(
        &["Transfer-Encoding: chunked", "Content-Length: nope"],
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    .ok(200, Chunked, Some(TransferEncodingAndLength), b"hi")
);
case!(
    te_gzip_only,
    ok_with(&["Transfer-Encoding: gzip"], b"\x1f\x8b raw").ok(
        200,
        Close,
        Some(CloseDelimited),
        b"\x1f\x8b raw"
    )
);
case!(
    te_chunked_then_gzip,
    ok_with(
        &["Transfer-Encoding: chunked, gzip"],
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    .ok(200, Close, Some(CloseDelimited), b"2\r\nhi\r\n0\r\n\r\n")
);
case!(
    te_gzip_then_chunked,
    ok_with(
        &["Transfer-Encoding: gzip , chunked"],
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    .ok(200, Chunked, None, b"hi")
);
case!(
    te_split_fields,
    ok_with(
        &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    .ok(200, Chunked, None, b"hi")
);
case!(
    te_chunked_twice,
    ok_with(&["Transfer-Encoding: chunked, chunked"], b"0\r\n\r\n").ok(
        200,
        Close,
        Some(CloseDelimited),
        b"0\r\n\r\n"
    )
);
case!(
    te_empty,
    ok_with(&["Transfer-Encoding:"], b"").err(remote(BadTransferEncoding))
);
case!(
    te_only_commas,
    ok_with(&["Transfer-Encoding: , ,"], b"").err(remote(BadTransferEncoding))
);
case!(
    te_not_token,
    ok_with(&["Transfer-Encoding: chun ked"], b"").err(remote(BadTransferEncoding))
);
case!(
    te_with_params,
    ok_with(
        &["Transfer-Encoding: gzip;q=1, chunked"],
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    .ok(200, Chunked, None, b"hi")
);
case!(
    te_in_http10_strict,
    resp(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        .err(remote(BadTransferEncoding))
);
case!(
    te_in_http10_lenient,
    resp(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        .config(|c| c.allow_transfer_encoding_in_http10 = true)
        .ok(200, Close, Some(CloseDelimited), b"2\r\nhi\r\n0\r\n\r\n")
);

// ---- responses without a body (RFC 9112 §6.3 steps 1 and 2) ----
case!(
    head_with_cl,
    ok_with(&["Content-Length: 5"], b"")
        .method(Method::HEAD)
        .ok(200, BodyFraming::None, None, b"")
);
case!(
    head_with_chunked,
    ok_with(&["Transfer-Encoding: chunked"], b"")
        .method(Method::HEAD)
        .ok(200, BodyFraming::None, None, b"")
);
case!(
    status_204_with_cl,
    resp(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n").ok(
        204,
        BodyFraming::None,
        None,
        b""
    )
);
case!(
    status_304,
    resp(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n").ok(304, BodyFraming::None, None, b"")
);
case!(
    status_304_connection_close,
    resp(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n").ok(
        304,
        BodyFraming::None,
        Some(ConnectionClose),
        b""
    )
);
case!(
    connect_200,
    resp(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .method(Method::CONNECT)
        .ok(200, BodyFraming::None, None, b"")
);
case!(
    connect_407,
    resp(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno")
        .method(Method::CONNECT)
        .ok(407, Length(2), None, b"no")
);

// ---- interim responses ----
case!(
    continue_then_200,
    resp(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        .ok(200, Length(2), None, b"hi")
        .interim(&[100])
);
case!(
    early_hints_then_200,
    resp(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .ok(200, Length(0), None, b"")
        .interim(&[103])
);
case!(
    ten_interims,
    resp(
        [
            &b"HTTP/1.1 102 Processing\r\n\r\n".repeat(10)[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        ]
        .concat()
    )
    .ok(200, Length(0), None, b"")
    .interim(&[102; 10])
);
case!(
    eleven_interims,
    resp(
        [
            &b"HTTP/1.1 100 Continue\r\n\r\n".repeat(11)[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        ]
        .concat()
    )
    .err(limit("max_interim_responses", 10))
    .interim(&[100; 10])
);
case!(
    unrequested_101,
    resp(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        .err(remote(UnexpectedUpgrade))
);
case!(
    requested_101,
    resp(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        .upgrade()
        .ok(101, BodyFraming::None, Some(Upgraded), b"")
        .no_trailers()
);

// ---- connection reuse (RFC 9112 §9.3, §9.6) ----
case!(
    http10_close_delimited,
    resp(b"HTTP/1.0 200 OK\r\n\r\nall of it").ok(200, Close, Some(CloseDelimited), b"all of it")
);
case!(
    http10_keep_alive_cl,
    resp(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi").ok(
        200,
        Length(2),
        None,
        b"hi"
    )
);
case!(
    http10_cl,
    resp(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi").ok(200, Length(2), Some(Http10), b"hi")
);
case!(
    connection_close,
    ok_with(&["Connection: close", "Content-Length: 2"], b"hi").ok(
        200,
        Length(2),
        Some(ConnectionClose),
        b"hi"
    )
);
case!(
    connection_close_in_list,
    ok_with(
        &["Connection: keep-alive, Close", "Content-Length: 2"],
        b"hi"
    )
    .ok(200, Length(2), Some(ConnectionClose), b"hi")
);
case!(
    connection_close_chunked,
    ok_with(
        &["Connection: close", "Transfer-Encoding: chunked"],
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    .ok(200, Chunked, Some(ConnectionClose), b"hi")
);
case!(
    close_delimited_wins_over_connection_close,
    ok_with(&["Connection: close"], b"hi").ok(200, Close, Some(CloseDelimited), b"hi")
);
case!(
    http11_no_framing,
    ok_with(&[], b"to the end").ok(200, Close, Some(CloseDelimited), b"to the end")
);
case!(
    http11_no_framing_empty,
    ok_with(&[], b"").ok(200, Close, Some(CloseDelimited), b"")
);

// ---- the head (RFC 9112 §2–5) ----
case!(
    obs_fold_strict,
    ok_with(&["X-A: one", " two", "Content-Length: 0"], b"").err(remote(BadHead))
);
case!(
    obs_fold_lenient,
    ok_with(&["X-A: one", " two", "Content-Length: 0"], b"")
        .config(|c| c.allow_obsolete_multiline_headers = true)
        .ok(200, Length(0), None, b"")
        .header("x-a", b"one   two")
);
case!(
    space_before_colon_strict,
    ok_with(&["Content-Length : 2"], b"hi").err(remote(BadHead))
);
case!(
    space_before_colon_lenient,
    ok_with(&["Content-Length : 2"], b"hi")
        .config(|c| c.allow_spaces_after_header_name = true)
        .ok(200, Length(2), None, b"hi")
);
case!(
    head_over_limit,
    ok_with(
        &[
            &format!("X-Big: {}", "a".repeat(70_000)),
            "Content-Length: 0"
        ],
        b""
    )
    .err(limit("max_head_bytes", 65536))
);
case!(
    head_within_limit,
    ok_with(
        &[
            &format!("X-Big: {}", "a".repeat(60_000)),
            "Content-Length: 0"
        ],
        b""
    )
    .ok(200, Length(0), None, b"")
);
case!(
    head_limit_small,
    ok_with(&["Content-Length: 0"], b"")
        .limits(|l| l.max_head_bytes = 20)
        .err(limit("max_head_bytes", 20))
);
case!(
    headers_101,
    ok_with(
        &(0..101)
            .map(|i| format!("X-{i}: v"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        b""
    )
    .err(limit("max_headers", 100))
);
case!(
    headers_100,
    ok_with(
        &(0..100)
            .map(|i| format!("X-{i}: v"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        b""
    )
    .ok(200, Close, Some(CloseDelimited), b"")
);
case!(
    headers_over_stack_limit,
    ok_with(
        &(0..150)
            .map(|i| format!("X-{i}: v"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        b""
    )
    .limits(|l| l.max_headers = 200)
    .ok(200, Close, Some(CloseDelimited), b"")
);
case!(
    nul_in_header_value,
    ok_with(&["X-A: a\0b", "Content-Length: 0"], b"").err(remote(BadHead))
);
case!(
    bad_header_name,
    ok_with(&["Bad Name: x"], b"").err(remote(BadHead))
);
case!(
    bare_cr_in_header,
    resp(b"HTTP/1.1 200 OK\r\nA: b\rC: d\r\n\r\n").err(remote(BadHead))
);
case!(
    bare_cr_end_of_head,
    resp(b"HTTP/1.1 200 OK\r\nA: b\r\n\rX").err(remote(BareLineEnding))
);
case!(
    bare_lf_head,
    resp(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi").ok(200, Length(2), None, b"hi")
);
case!(
    leading_empty_line,
    resp(b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").ok(200, Length(0), None, b"")
);
case!(
    http2_version,
    resp(b"HTTP/2.0 200 OK\r\n\r\n").err(remote(UnsupportedVersion))
);
case!(
    http12_version,
    resp(b"HTTP/1.2 200 OK\r\n\r\n").err(remote(UnsupportedVersion))
);
case!(
    http2_no_minor,
    resp(b"HTTP/2 200 OK\r\n\r\n").err(remote(BadHead))
);
case!(
    version_suffix,
    resp(b"HTTP/1.1x 200 OK\r\n\r\n").err(remote(BadHead))
);
case!(
    not_http,
    resp(b"SSH-2.0-OpenSSH_9.6\r\n").err(remote(BadHead))
);
case!(
    status_two_digits,
    resp(b"HTTP/1.1 20 OK\r\n\r\n").err(remote(BadHead))
);
case!(
    status_below_100,
    resp(b"HTTP/1.1 099 Odd\r\n\r\n").err(remote(BadHead))
);
case!(empty_reply, resp(b"").err(remote(IncompleteHead)));
case!(
    truncated_head,
    resp(b"HTTP/1.1 200 OK\r\nContent-Len").err(remote(IncompleteHead))
);
case!(
    no_reason,
    resp(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
        .ok(200, Length(0), None, b"")
        .reason("")
);
case!(
    reason_obs_text,
    resp(b"HTTP/1.1 200 \xc3\xa9t\xe9\r\nContent-Length: 0\r\n\r\n")
        .ok(200, Length(0), None, b"")
        .reason("\u{e9}t\u{fffd}")
);
case!(
    header_values_kept,
    ok_with(
        &[
            "Content-Length: 0",
            "Set-Cookie: a=1",
            "set-cookie: b=2",
            "X-Obs: \u{e9}"
        ],
        b""
    )
    .ok(200, Length(0), None, b"")
    .header("set-cookie", b"a=1")
    .header("set-cookie", b"b=2")
    .header("x-obs", "\u{e9}".as_bytes())
);

/// Mutations of valid responses (byte flips, insertions, deletions, truncations) never panic
/// and never break the decoding invariants checked in `progress`, however they are split.
#[test]
fn mutations_never_panic() {
    let seeds: [&[u8]; 6] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    ];
    let alphabet = b"\r\n \t:;,0123456789abcdefABCDEF\0\x7f\xffHTP/.-";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: deterministic, so a failure reproduces.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for round in 0..3000 {
        let mut input = seeds[round % seeds.len()].to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % (input.len() + 1);
            let byte = alphabet[(next() as usize) % alphabet.len()];
            match next() % 4 {
                0 if at < input.len() => input[at] = byte,
                1 => input.insert(at, byte),
                2 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.truncate(at),
            }
        }
        let mut case = resp(&input);
        case.upgrade = round % 2 == 0;
        case.config = ParseConfig {
            allow_bare_lf_in_chunked: round % 3 == 0,
            allow_obsolete_multiline_headers: round % 5 == 0,
            allow_spaces_after_header_name: round % 7 == 0,
            allow_content_length_list: round % 11 == 0,
            allow_transfer_encoding_in_http10: round % 17 == 0,
        };
        if round % 13 == 0 {
            case.method = Method::HEAD;
        }
        shotgun(&case);
    }
}
