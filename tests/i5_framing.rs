//! I5 (framing is never ambiguous) and I7 (no network input panics or hangs), end to end: each
//! case is a response that a scripted loopback server sends to a real `Session`, valid or not.
//!
//! Every case runs three ways (h11's `tr`, hyper's "shotgun"), as three named tests:
//! - `whole`: the response in one write;
//! - `split`: one byte per write (`Step::send_split(bytes, 1)`);
//! - `trailing`: the response followed by bytes nobody asked for (a whole second response, the
//!   classic smuggling shape). The first request's result must be the same as `whole`, and the
//!   connection must not be reused. Where the server's close is part of the case (a
//!   close-delimited body, a connection cut mid-message) nothing can follow the response: a
//!   close-delimited body then simply grows by those bytes, and a cut message is sent as is.
//!
//! After the first request, a second request on the same session shows whether the connection
//! was reused: the case says whether it must be. Reuse is observed from the client side (the
//! session's `Reused` event and `Response::connect_count`) and from the server side
//! (`ScriptServer::connections_accepted`). A connection that must not be reused is held open by
//! the server for a while, so that a wrongly pooled connection would still look alive and be
//! picked.
//!
//! Errors are compared by [`ErrorKind`], [`Error::violation`] and limit name, never by text.

mod support;

use ferry::{Error, ErrorKind, Event, Method, ParseConfig, Session};
use ferry_http::proto::Violation;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{ScriptServer, Step};

/// The answer to the second request of every case.
const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";
/// Bytes appended after the response in the `trailing` runs: a smuggled second response.
const TRAILING: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle";
/// How long the server keeps a connection that must not be reused open after its response.
const HOLD_MS: u64 = 250;

/// How the server ends the first connection, which also says whether it may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The server answers the second request on the same connection: it must be reused.
    Reuse,
    /// The server keeps the connection open (for `HOLD_MS`) but the client must not reuse it.
    Hold,
    /// The server closes the connection right after the response (part of the case).
    Close,
}

/// What the first request must produce.
#[derive(Debug, Clone)]
enum Outcome {
    /// A response; its body read to the end.
    Ok {
        status: u16,
        body: Vec<u8>,
        /// `Some` for a chunked body: the trailer fields, in order.
        trailers: Option<Vec<(&'static str, &'static str)>>,
        /// Header fields the response must carry (name, value).
        headers: Vec<(&'static str, &'static str)>,
    },
    /// A failure, at `send` or while reading the body.
    Err {
        kind: ErrorKind,
        violation: Option<Violation>,
        /// For `ErrorKind::Limit`: the limit's name.
        limit: Option<&'static str>,
    },
}

#[derive(Debug, Clone)]
struct Want {
    outcome: Outcome,
    after: After,
}

impl Want {
    fn hold(mut self) -> Want {
        self.after = After::Hold;
        self
    }
    fn closes(mut self) -> Want {
        self.after = After::Close;
        self
    }
    fn trailers(mut self, t: &[(&'static str, &'static str)]) -> Want {
        if let Outcome::Ok { trailers, .. } = &mut self.outcome {
            *trailers = Some(t.to_vec());
        }
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Want {
        if let Outcome::Ok { headers, .. } = &mut self.outcome {
            headers.push((name, value));
        }
        self
    }
}

/// A response with this status and body; the connection is reused.
fn ok(status: u16, body: &[u8]) -> Want {
    Want {
        outcome: Outcome::Ok {
            status,
            body: body.to_vec(),
            trailers: None,
            headers: Vec::new(),
        },
        after: After::Reuse,
    }
}

/// A protocol violation; the connection is not reused.
fn violation(v: Violation) -> Want {
    Want {
        outcome: Outcome::Err {
            kind: ErrorKind::Protocol,
            violation: Some(v),
            limit: None,
        },
        after: After::Hold,
    }
}

/// A named limit exceeded; the connection is not reused.
fn limit(name: &'static str) -> Want {
    Want {
        outcome: Outcome::Err {
            kind: ErrorKind::Limit,
            violation: None,
            limit: Some(name),
        },
        after: After::Hold,
    }
}

/// Another failure kind; the connection is not reused.
fn failure(kind: ErrorKind) -> Want {
    Want {
        outcome: Outcome::Err {
            kind,
            violation: None,
            limit: None,
        },
        after: After::Hold,
    }
}

/// One case: the request method, the parser configuration, the server's response bytes and what
/// the client must make of them.
struct Case {
    method: Method,
    parse: ParseConfig,
    reply: Vec<u8>,
    want: Want,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            method: Method::GET,
            parse: ParseConfig::default(),
            reply: Vec::new(),
            want: ok(200, b""),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Split,
    Trailing,
}

/// Defines a case as a module with three tests: `whole`, `split` and `trailing`.
macro_rules! case {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $value:expr),* $(,)? }) => {
        $(#[$doc])*
        mod $name {
            use super::*;

            fn case() -> Case {
                Case { $($field: $value,)* ..Case::default() }
            }

            #[test]
            fn whole() {
                run(case(), Mode::Whole);
            }

            #[test]
            fn split() {
                run(case(), Mode::Split);
            }

            #[test]
            fn trailing() {
                run(case(), Mode::Trailing);
            }
        }
    };
}

/// What the first request produced, in comparable form.
#[derive(Debug)]
struct Got {
    status: u16,
    body: Vec<u8>,
    trailers: Option<Vec<(String, String)>>,
    headers: ferry::HeaderMap,
    connect_count: u32,
}

fn fields(map: &ferry::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn limit_name(e: &Error) -> Option<&'static str> {
    match e {
        Error::Http(ferry_http::Error::Limit { name, .. }) => Some(name),
        _ => None,
    }
}

/// Counts the session's `Reused` and `Retrying` events.
#[derive(Default)]
struct Events {
    reused: Vec<u64>,
    retried: usize,
}

fn run(case: Case, mode: Mode) {
    let Case {
        method,
        parse,
        reply,
        want,
    } = case;
    let Want {
        mut outcome,
        mut after,
    } = want;

    // The bytes of the first response, as this mode sends them.
    let mut bytes = reply;
    if mode == Mode::Trailing {
        match (&mut outcome, after) {
            // A close-delimited body takes everything up to the close.
            (Outcome::Ok { body, .. }, After::Close) => {
                bytes.extend_from_slice(TRAILING);
                body.extend_from_slice(TRAILING);
            }
            // A cut message: the cut is the end, nothing can follow it.
            (Outcome::Err { .. }, After::Close) => {}
            // Leftover bytes: the response is the same, the connection is not reused.
            (_, After::Reuse | After::Hold) => {
                bytes.extend_from_slice(TRAILING);
                after = After::Hold;
            }
        }
    }
    let send = match mode {
        Mode::Split => Step::send_split(&bytes, 1),
        Mode::Whole | Mode::Trailing => Step::send(&bytes),
    };
    let second = vec![Step::any_head(), Step::send(SECOND)];
    let scripts = match after {
        After::Reuse => vec![vec![
            Step::head_starts_with(&format!("{method} /first HTTP/1.1\r\n")),
            send,
            Step::head_starts_with("GET /second HTTP/1.1\r\n"),
            Step::send(SECOND),
        ]],
        After::Hold => vec![
            vec![Step::any_head(), send, Step::sleep_ms(HOLD_MS)],
            second,
        ],
        After::Close => vec![vec![Step::any_head(), send], second],
    };
    let server = ScriptServer::start(scripts);

    let events = Arc::new(Mutex::new(Events::default()));
    let sink = Arc::clone(&events);
    let session = Session::builder()
        .receive_timeout(Duration::from_secs(2))
        .total_timeout(Some(Duration::from_secs(4)))
        .parse_config(parse)
        .on_event(Arc::new(move |e: &Event<'_>| {
            let mut ev = sink.lock().unwrap();
            match e {
                Event::Reused { id, .. } => ev.reused.push(*id),
                Event::Retrying => ev.retried += 1,
                _ => {}
            }
        }))
        .build()
        .expect("session");

    // First request: send, read the whole body (the response is dropped at the closure's end).
    let first = session
        .request(method.clone(), &server.url("/first"))
        .expect("valid request")
        .send()
        .and_then(|mut r| {
            let body = r.read_to_vec(1 << 20)?;
            Ok(Got {
                status: r.status().as_u16(),
                body,
                trailers: r.trailers().map(fields),
                headers: r.headers().clone(),
                connect_count: r.connect_count(),
            })
        });

    let failed = match (&outcome, &first) {
        (
            Outcome::Ok {
                status,
                body,
                trailers,
                headers,
            },
            Ok(got),
        ) => {
            assert_eq!(got.status, *status, "status");
            assert_eq!(
                support::show_bytes(&got.body, 200),
                support::show_bytes(body, 200),
                "body"
            );
            let want_trailers = trailers.as_ref().map(|t| {
                t.iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got.trailers, want_trailers, "trailers");
            for (name, value) in headers {
                let values: Vec<&[u8]> = got
                    .headers
                    .get_all(*name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                assert_eq!(values, vec![value.as_bytes()], "header {name}");
            }
            assert_eq!(
                got.connect_count, 1,
                "the first request opens one connection"
            );
            false
        }
        (
            Outcome::Err {
                kind,
                violation,
                limit,
            },
            Err(e),
        ) => {
            assert_eq!(e.kind(), *kind, "error kind of {e:?}");
            assert_eq!(e.violation(), *violation, "violation of {e:?}");
            assert_eq!(limit_name(e), *limit, "limit of {e:?}");
            true
        }
        (want, got) => panic!("wanted {want:?}, got {got:?}"),
    };

    // Second request: reused only when the case says so.
    let mut second = session
        .get(&server.url("/second"))
        .expect("valid request")
        .send()
        .expect("the second request succeeds");
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(second.read_to_vec(1 << 20).expect("second body"), b"second");
    let reused = after == After::Reuse;
    assert_eq!(
        second.connect_count(),
        u32::from(!reused),
        "second request connect count (reuse expected: {reused})"
    );
    drop(second);
    {
        let ev = events.lock().unwrap();
        assert_eq!(ev.reused.len(), usize::from(reused), "Reused events");
        assert_eq!(ev.retried, 0, "no retry on a stale connection");
    }
    assert_eq!(session.connections_opened(), if reused { 1 } else { 2 });
    drop(session);

    let accepted = server.connections_accepted();
    let result = server.finish();
    assert_eq!(accepted, if reused { 1 } else { 2 }, "connections accepted");
    // A client that gives up mid-response may close with bytes unread (an RST) or before the
    // server has written everything: the server's complaints are then expected.
    if !(failed && mode == Mode::Split) {
        result.expect("server scripts");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers for building responses.

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `HTTP/1.1 200 OK` with these header lines (each without CRLF) and this body.
fn resp(headers: &[&str], body: &[u8]) -> Vec<u8> {
    resp_status("HTTP/1.1 200 OK", headers, body)
}

fn resp_status(status_line: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(status_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn chunked(body: &[u8]) -> Vec<u8> {
    resp(&["Transfer-Encoding: chunked"], body)
}

/// A head of exactly `len` bytes (status line, one padding field, blank line), complete.
fn head_of_len(len: usize) -> Vec<u8> {
    let fixed = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Pad: \r\n\r\n".len();
    let pad = "a".repeat(len - fixed);
    let mut out =
        format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Pad: {pad}\r\n\r\n").into_bytes();
    assert_eq!(out.len(), len);
    out.extend_from_slice(b"hello");
    out
}

/// `n` distinct header fields plus `Content-Length: 5`, and the body `hello`.
fn many_headers(n: usize) -> Vec<u8> {
    let mut fields: Vec<String> = (1..n).map(|i| format!("X-H{i}: {i}")).collect();
    fields.push("Content-Length: 5".to_owned());
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    resp(&refs, b"hello")
}

fn interims(n: usize, then: &[u8]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(n);
    out.extend_from_slice(then);
    out
}

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

// ---------------------------------------------------------------------------------------------
// Content-Length.

case!(cl_exact {
    reply: HELLO.to_vec(),
    want: ok(200, b"hello"),
});

case!(cl_zero {
    reply: resp(&["Content-Length: 0"], b""),
    want: ok(200, b""),
});

case!(cl_leading_zeros {
    reply: resp(&["Content-Length: 0005"], b"hello"),
    want: ok(200, b"hello"),
});

case!(
    /// Fewer bytes than announced, then the server closes.
    cl_short {
        reply: resp(&["Content-Length: 10"], b"hello"),
        want: violation(Violation::IncompleteBody).closes(),
    }
);

case!(
    /// More bytes than announced: the body is the announced length, the rest is leftover and
    /// the connection is out of step.
    cl_long {
        reply: resp(&["Content-Length: 3"], b"hello"),
        want: ok(200, b"hel").hold(),
    }
);

case!(cl_duplicate_equal {
    reply: resp(&["Content-Length: 5", "Content-Length: 5"], b"hello"),
    want: ok(200, b"hello"),
});

case!(cl_duplicate_differing {
    reply: resp(&["Content-Length: 5", "Content-Length: 6"], b"hello!"),
    want: violation(Violation::BadContentLength),
});

case!(cl_plus_sign {
    reply: resp(&["Content-Length: +5"], b"hello"),
    want: violation(Violation::BadContentLength),
});

case!(cl_minus_sign {
    reply: resp(&["Content-Length: -5"], b"hello"),
    want: violation(Violation::BadContentLength),
});

case!(cl_list_differing {
    reply: resp(&["Content-Length: 5,6"], b"hello!"),
    want: violation(Violation::BadContentLength),
});

case!(
    /// A list of equal values is folded only under the opt-in leniency.
    cl_list_equal_strict {
        reply: resp(&["Content-Length: 5, 5"], b"hello"),
        want: violation(Violation::BadContentLength),
    }
);

case!(cl_list_equal_lenient {
    parse: ParseConfig {
        allow_content_length_list: true,
        ..ParseConfig::default()
    },
    reply: resp(&["Content-Length: 5, 5"], b"hello"),
    want: ok(200, b"hello"),
});

case!(cl_hex {
    reply: resp(&["Content-Length: 0x5"], b"hello"),
    want: violation(Violation::BadContentLength),
});

case!(cl_empty {
    reply: resp(&["Content-Length: "], b"hello"),
    want: violation(Violation::BadContentLength),
});

case!(cl_inner_space {
    reply: resp(&["Content-Length: 1 0"], b"helloworld"),
    want: violation(Violation::BadContentLength),
});

case!(cl_overflow {
    reply: resp(&["Content-Length: 99999999999999999999999"], b"hello"),
    want: violation(Violation::BadContentLength),
});

case!(
    /// The largest valid length is not an error; the caller's cap is.
    cl_max_u64_over_cap {
        reply: resp(&["Content-Length: 18446744073709551615"], b"hello"),
        want: failure(ErrorKind::BodyTooLarge),
    }
);

case!(
    /// Bytes after a complete response, as part of the response itself.
    garbage_after_response {
        reply: cat(&[HELLO, b"GARBAGE"]),
        want: ok(200, b"hello").hold(),
    }
);

// ---------------------------------------------------------------------------------------------
// Chunked.

case!(chunked_simple {
    reply: chunked(b"5\r\nhello\r\n0\r\n\r\n"),
    want: ok(200, b"hello").trailers(&[]),
});

case!(chunked_many_chunks_upper_hex {
    reply: chunked(b"1\r\na\r\nA\r\n0123456789\r\n3\r\nxyz\r\n0\r\n\r\n"),
    want: ok(200, b"a0123456789xyz").trailers(&[]),
});

case!(chunked_leading_zeros {
    reply: chunked(b"0005\r\nhello\r\n000\r\n\r\n"),
    want: ok(200, b"hello").trailers(&[]),
});

case!(chunked_empty_body {
    reply: chunked(b"0\r\n\r\n"),
    want: ok(200, b"").trailers(&[]),
});

case!(chunked_extensions {
    reply: chunked(b"5;name=value\r\nhello\r\n6 ; a=\"b c\";flag\r\n world\r\n0;last\r\n\r\n"),
    want: ok(200, b"hello world").trailers(&[]),
});

case!(chunked_trailers {
    reply: chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"),
    want: ok(200, b"hello").trailers(&[("x-checksum", "abc"), ("x-other", "1")]),
});

case!(chunked_te_case_insensitive {
    reply: resp(&["Transfer-Encoding: CHUNKED"], b"5\r\nhello\r\n0\r\n\r\n"),
    want: ok(200, b"hello").trailers(&[]),
});

case!(
    /// `gzip, chunked`: framed by chunked; the coded bytes are handed over as they are.
    chunked_after_gzip {
        reply: resp(&["Transfer-Encoding: gzip, chunked"], b"4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n"),
        want: ok(200, b"\x1f\x8b\x08\x00").trailers(&[]),
    }
);

case!(chunked_bad_hex {
    reply: chunked(b"g\r\nhello\r\n0\r\n\r\n"),
    want: violation(Violation::BadChunkSize),
});

case!(chunked_0x_prefix {
    reply: chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
    want: violation(Violation::BadChunkSize),
});

case!(chunked_negative_size {
    reply: chunked(b"-5\r\nhello\r\n0\r\n\r\n"),
    want: violation(Violation::BadChunkSize),
});

case!(chunked_empty_size {
    reply: chunked(b"\r\nhello\r\n0\r\n\r\n"),
    want: violation(Violation::BadChunkSize),
});

case!(
    /// Whitespace after the size is allowed only before `;` (BWS of chunk-ext).
    chunked_space_then_crlf {
        reply: chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
        want: violation(Violation::BadChunkSize),
    }
);

case!(
    /// 17 hex digits do not fit in a u64.
    chunked_size_overflow {
        reply: chunked(b"10000000000000000\r\nhello\r\n0\r\n\r\n"),
        want: violation(Violation::BadChunkSize),
    }
);

case!(chunked_missing_crlf_after_data {
    reply: chunked(b"5\r\nhelloX\r\n0\r\n\r\n"),
    want: violation(Violation::BadChunkTerminator),
});

case!(chunked_bare_lf_size_line {
    reply: chunked(b"5\nhello\r\n0\r\n\r\n"),
    want: violation(Violation::BareLineEnding),
});

case!(chunked_bare_lf_after_data {
    reply: chunked(b"5\r\nhello\n0\r\n\r\n"),
    want: violation(Violation::BareLineEnding),
});

case!(chunked_bare_lf_last_line {
    reply: chunked(b"5\r\nhello\r\n0\r\n\n"),
    want: violation(Violation::BareLineEnding),
});

case!(
    /// The same bare LFs, accepted under the opt-in leniency.
    chunked_bare_lf_lenient {
        parse: ParseConfig {
            allow_bare_lf_in_chunked: true,
            ..ParseConfig::default()
        },
        reply: chunked(b"5\nhello\n0\nX-T: 1\n\n"),
        want: ok(200, b"hello").trailers(&[("x-t", "1")]),
    }
);

case!(chunked_bare_cr_size_line {
    reply: chunked(b"5\rhello\r\n0\r\n\r\n"),
    want: violation(Violation::BareLineEnding),
});

case!(chunked_ext_too_long {
    reply: chunked(&cat(&[
        b"5;",
        "a".repeat(5000).as_bytes(),
        b"\r\nhello\r\n0\r\n\r\n"
    ])),
    want: limit("max_chunk_ext_bytes"),
});

case!(chunked_ext_control_byte {
    reply: chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n"),
    want: violation(Violation::BadChunkSize),
});

case!(chunked_trailer_too_long {
    reply: chunked(&cat(&[
        b"0\r\nX-Big: ",
        "a".repeat(17 * 1024).as_bytes(),
        b"\r\n\r\n"
    ])),
    want: limit("max_trailer_bytes"),
});

case!(chunked_too_many_trailers {
    reply: chunked(&cat(&[
        b"0\r\n",
        "X-T: 1\r\n".repeat(101).as_bytes(),
        b"\r\n"
    ])),
    want: limit("max_headers"),
});

case!(chunked_trailer_malformed {
    reply: chunked(b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n"),
    want: violation(Violation::BadTrailer),
});

case!(chunked_cut_in_data {
    reply: chunked(b"5\r\nhel"),
    want: violation(Violation::IncompleteBody).closes(),
});

case!(chunked_cut_before_last_chunk {
    reply: chunked(b"5\r\nhello\r\n"),
    want: violation(Violation::IncompleteBody).closes(),
});

case!(chunked_cut_in_trailers {
    reply: chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n"),
    want: violation(Violation::IncompleteBody).closes(),
});

// ---------------------------------------------------------------------------------------------
// Transfer-Encoding with and without chunked.

case!(
    /// Transfer-Encoding and Content-Length: chunked frames it, and the connection closes
    /// after it (RFC 9112 §6.3 step 3).
    te_and_cl {
        reply: resp(
            &["Content-Length: 100", "Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        want: ok(200, b"hello").trailers(&[]).hold(),
    }
);

case!(te_and_cl_after {
    reply: resp(
        &["Transfer-Encoding: chunked", "Content-Length: 3"],
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    want: ok(200, b"hello").trailers(&[]).hold(),
});

case!(
    /// Not chunked last: the body runs to the close, undecoded.
    te_gzip_only {
        reply: resp(&["Transfer-Encoding: gzip"], b"\x1f\x8b\x08\x00raw"),
        want: ok(200, b"\x1f\x8b\x08\x00raw").closes(),
    }
);

case!(te_chunked_then_gzip {
    reply: resp(
        &["Transfer-Encoding: chunked, gzip"],
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    want: ok(200, b"5\r\nhello\r\n0\r\n\r\n").closes(),
});

case!(
    /// `chunked` twice is not a chunked body a sender may produce: read to the close.
    te_chunked_twice {
        reply: resp(
            &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        want: ok(200, b"5\r\nhello\r\n0\r\n\r\n").closes(),
    }
);

case!(te_empty {
    reply: resp(&["Transfer-Encoding: "], b"hello"),
    want: violation(Violation::BadTransferEncoding),
});

case!(te_not_a_token {
    reply: resp(&["Transfer-Encoding: chu nked"], b"5\r\nhello\r\n0\r\n\r\n"),
    want: violation(Violation::BadTransferEncoding),
});

case!(
    /// HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 §6.1); strict refuses it
    /// rather than hand over the coded stream as the body.
    te_chunked_in_http10_strict {
        reply: resp_status(
            "HTTP/1.0 200 OK",
            &["Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        want: violation(Violation::BadTransferEncoding),
    }
);

case!(
    /// The lenient switch reads it to the close, as RFC 9112 §6.1 describes.
    te_chunked_in_http10_lenient {
        parse: ParseConfig {
            allow_transfer_encoding_in_http10: true,
            ..ParseConfig::default()
        },
        reply: resp_status(
            "HTTP/1.0 200 OK",
            &["Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        want: ok(200, b"5\r\nhello\r\n0\r\n\r\n").closes(),
    }
);

// ---------------------------------------------------------------------------------------------
// Responses without a body.

case!(
    /// A HEAD response announces the length of the GET body but carries none.
    head_with_content_length {
        method: Method::HEAD,
        reply: resp(&["Content-Length: 100"], b""),
        want: ok(200, b"").header("content-length", "100"),
    }
);

case!(head_with_chunked {
    method: Method::HEAD,
    reply: resp(&["Transfer-Encoding: chunked"], b""),
    want: ok(200, b""),
});

case!(status_204_with_content_length {
    reply: resp_status("HTTP/1.1 204 No Content", &["Content-Length: 5"], b""),
    want: ok(204, b""),
});

case!(status_204_with_bad_framing_fields {
    reply: resp_status(
        "HTTP/1.1 204 No Content",
        &["Content-Length: nope", "Transfer-Encoding: chunked"],
        b"",
    ),
    want: ok(204, b""),
});

case!(status_304_with_content_length {
    reply: resp_status("HTTP/1.1 304 Not Modified", &["Content-Length: 5"], b""),
    want: ok(304, b""),
});

// ---------------------------------------------------------------------------------------------
// Interim responses.

case!(continue_then_200 {
    reply: interims(1, HELLO),
    want: ok(200, b"hello"),
});

case!(early_hints_then_200 {
    reply: cat(&[
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        HELLO
    ]),
    want: ok(200, b"hello"),
});

case!(ten_interims_then_200 {
    reply: interims(10, HELLO),
    want: ok(200, b"hello"),
});

case!(eleven_interims {
    reply: interims(11, HELLO),
    want: limit("max_interim_responses"),
});

case!(switching_protocols_unrequested {
    reply: resp_status(
        "HTTP/1.1 101 Switching Protocols",
        &["Upgrade: websocket", "Connection: Upgrade"],
        b"",
    ),
    want: violation(Violation::UnexpectedUpgrade),
});

// ---------------------------------------------------------------------------------------------
// Versions and connection management.

case!(http10_close_delimited {
    reply: resp_status("HTTP/1.0 200 OK", &[], b"hello"),
    want: ok(200, b"hello").closes(),
});

case!(http10_with_length_closes {
    reply: resp_status("HTTP/1.0 200 OK", &["Content-Length: 5"], b"hello"),
    want: ok(200, b"hello").hold(),
});

case!(http10_keep_alive {
    reply: resp_status(
        "HTTP/1.0 200 OK",
        &["Connection: keep-alive", "Content-Length: 5"],
        b"hello",
    ),
    want: ok(200, b"hello"),
});

case!(http11_close_delimited {
    reply: resp(&[], b"hello"),
    want: ok(200, b"hello").closes(),
});

case!(connection_close {
    reply: resp(&["Connection: close", "Content-Length: 5"], b"hello"),
    want: ok(200, b"hello").hold(),
});

case!(connection_close_in_list {
    reply: resp(
        &["Connection: keep-alive, CLOSE", "Content-Length: 5"],
        b"hello"
    ),
    want: ok(200, b"hello").hold(),
});

case!(http2_status_line {
    reply: resp_status("HTTP/2.0 200 OK", &["Content-Length: 5"], b"hello"),
    want: violation(Violation::UnsupportedVersion),
});

case!(http09_style_reply {
    reply: b"<html>hello</html>\r\n\r\n".to_vec(),
    want: violation(Violation::BadHead),
});

case!(lowercase_http_name {
    reply: resp_status("http/1.1 200 OK", &["Content-Length: 5"], b"hello"),
    want: violation(Violation::BadHead),
});

case!(status_not_digits {
    reply: resp_status("HTTP/1.1 2x0 OK", &["Content-Length: 5"], b"hello"),
    want: violation(Violation::BadHead),
});

case!(reason_with_obs_text {
    reply: resp_status("HTTP/1.1 200 Caf\u{e9}", &["Content-Length: 5"], b"hello"),
    want: ok(200, b"hello"),
});

// ---------------------------------------------------------------------------------------------
// Head syntax and limits.

case!(head_exactly_at_limit {
    reply: head_of_len(64 * 1024),
    want: ok(200, b"hello"),
});

case!(
    /// One byte over `max_head_bytes`, with no end of head in sight.
    head_over_limit {
        reply: head_of_len(64 * 1024 + 1),
        want: limit("max_head_bytes"),
    }
);

case!(hundred_headers {
    reply: many_headers(100),
    want: ok(200, b"hello").header("x-h99", "99"),
});

case!(hundred_and_one_headers {
    reply: many_headers(101),
    want: limit("max_headers"),
});

case!(
    /// Empty lines before the status line are skipped, but not without bound.
    endless_empty_lines {
        reply: b"\r\n".repeat(40 * 1024),
        want: limit("max_head_bytes"),
    }
);

case!(
    /// httparse accepts a bare LF as the line ending of a head (RFC 9112 §2.2 allows a
    /// recipient to); the framing is still unambiguous.
    bare_lf_line_endings_in_head {
        reply: b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello".to_vec(),
        want: ok(200, b"hello"),
    }
);

case!(status_without_reason {
    reply: b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    want: ok(200, b"hello"),
});

case!(spaces_before_colon_lenient {
    parse: ParseConfig {
        allow_spaces_after_header_name: true,
        ..ParseConfig::default()
    },
    reply: resp(&["Content-Length : 5"], b"hello"),
    want: ok(200, b"hello"),
});

case!(nul_in_header_value {
    reply: resp(&["X-A: a\0b", "Content-Length: 5"], b"hello"),
    want: violation(Violation::BadHead),
});

case!(nul_in_header_name {
    reply: resp(&["X-\0A: b", "Content-Length: 5"], b"hello"),
    want: violation(Violation::BadHead),
});

case!(bare_cr_in_header_value {
    reply: resp(&["X-A: a\rb", "Content-Length: 5"], b"hello"),
    want: violation(Violation::BadHead),
});

case!(bare_cr_line_ending {
    reply: b"HTTP/1.1 200 OK\rContent-Length: 5\r\n\r\nhello".to_vec(),
    want: violation(Violation::BadHead),
});

case!(obs_fold_strict {
    reply: resp(&["X-Folded: a", " b", "Content-Length: 5"], b"hello"),
    want: violation(Violation::BadHead),
});

case!(obs_fold_lenient {
    parse: ParseConfig {
        allow_obsolete_multiline_headers: true,
        ..ParseConfig::default()
    },
    reply: resp(&["X-Folded: a", " b", "Content-Length: 5"], b"hello"),
    want: ok(200, b"hello").header("x-folded", "a   b"),
});

case!(space_before_colon_strict {
    reply: resp(&["Content-Length : 5"], b"hello"),
    want: violation(Violation::BadHead),
});

case!(
    /// A CR-LF before the status line is skipped (RFC 9112 §2.2).
    empty_line_before_status {
        reply: cat(&[b"\r\n", HELLO]),
        want: ok(200, b"hello"),
    }
);

// ---------------------------------------------------------------------------------------------
// Connections cut short.

case!(
    /// The server closes before sending any byte.
    empty_reply {
        reply: Vec::new(),
        want: failure(ErrorKind::EmptyReply).closes(),
    }
);

case!(close_mid_status_line {
    reply: b"HTTP/1.1 20".to_vec(),
    want: violation(Violation::IncompleteHead).closes(),
});

case!(close_mid_head {
    reply: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n".to_vec(),
    want: violation(Violation::IncompleteHead).closes(),
});

case!(close_mid_body {
    reply: resp(&["Content-Length: 100"], b"only part of it"),
    want: violation(Violation::IncompleteBody).closes(),
});
