//! I7 (nothing from the network hangs past the configured timeouts), end to end, plus the
//! request side of an exchange on the wire: stalls at each point of a response, the total
//! deadline against a slow drip, refused connects, resets, stale pooled connections,
//! `Expect: 100-continue`, chunked uploads and the exact bytes of a request head.
//!
//! Timing assertions use wide tolerances (a 300 ms timeout must fire within [250 ms, 1.5 s]) so
//! that a loaded machine does not fail them, while a timeout that is ignored (30 s default) or
//! fires at once still does.

mod support;

use ferry::{ErrorKind, Event, Session};
use ferry_http::proto::Violation;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::{ScriptServer, Step};

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";

/// A session whose receive timeout is 300 ms and whose other waits are bounded too.
fn session_300ms() -> Session {
    Session::builder()
        .receive_timeout(Duration::from_millis(300))
        .send_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("session")
}

fn assert_within(elapsed: Duration, low_ms: u64, high_ms: u64) {
    assert!(
        elapsed >= Duration::from_millis(low_ms) && elapsed <= Duration::from_millis(high_ms),
        "took {elapsed:?}, wanted {low_ms}..={high_ms} ms"
    );
}

/// Deterministic bytes for upload bodies.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Stalls.

#[test]
fn server_never_answers_receive_timeout() {
    let server = ScriptServer::start(vec![vec![Step::any_head(), Step::ReadToEof]]);
    let session = session_300ms();
    let start = Instant::now();
    let err = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .expect_err("no answer");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert_within(start.elapsed(), 250, 1500);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn half_a_head_then_stall() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 200 OK\r\nContent-Le"),
        Step::ReadToEof,
    ]]);
    let session = session_300ms();
    let start = Instant::now();
    let err = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .expect_err("half a head");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert_within(start.elapsed(), 250, 1500);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn stall_mid_body_bytes() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"),
        Step::ReadToEof,
    ]]);
    let session = session_300ms();
    let mut resp = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .expect("head arrives");
    let start = Instant::now();
    let err = resp.read_to_vec(1 << 20).expect_err("the body stalls");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert_within(start.elapsed(), 250, 1500);
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn stall_mid_body_read_trait() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
        Step::ReadToEof,
    ]]);
    let session = session_300ms();
    let mut resp = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .expect("head arrives");
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    let start = Instant::now();
    let err = loop {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "read never failed"
        );
        match std::io::Read::read(&mut resp, &mut buf) {
            Ok(0) => panic!("body ended without its last chunk"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"hello");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err:?}");
    assert_within(start.elapsed(), 250, 1500);
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

/// One byte every 100 ms: each read makes progress well within the 300 ms receive timeout,
/// so only the total deadline can end it.
fn drip(bytes: &[u8]) -> Step {
    Step::SendPaced {
        bytes: bytes.to_vec(),
        chunk: 1,
        pause: Duration::from_millis(100),
    }
}

#[test]
fn total_deadline_against_a_slow_head() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        drip(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\nhello"),
    ]]);
    let session = Session::builder()
        .receive_timeout(Duration::from_millis(300))
        .total_timeout(Some(Duration::from_millis(400)))
        .build()
        .expect("session");
    let start = Instant::now();
    let err = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .expect_err("the deadline passes");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert_within(start.elapsed(), 350, 1500);
    drop(session);
    // The server's next write after the client gave up may fail: that is expected.
    let _ = server.finish();
}

#[test]
fn total_deadline_against_a_slow_body() {
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
    let body = pattern(100);
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(&reply),
        drip(&body),
    ]]);
    reply.clear();
    let session = Session::builder()
        .receive_timeout(Duration::from_millis(300))
        .build()
        .expect("session");
    let start = Instant::now();
    let result = session
        .get(&server.url("/"))
        .expect("URL")
        .timeout(Duration::from_millis(400))
        .send()
        .and_then(|mut r| r.read_to_vec(1 << 20));
    let err = result.expect_err("the deadline passes");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert_within(start.elapsed(), 350, 1500);
    drop(session);
    let _ = server.finish();
}

// ---------------------------------------------------------------------------------------------
// Connect failures, resets and closes.

#[test]
fn connect_refused_on_a_closed_loopback_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let session = session_300ms();
    let start = Instant::now();
    let err = session
        .get(&format!("http://127.0.0.1:{port}/"))
        .expect("URL")
        .send()
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn close_mid_content_length_body() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"),
        Step::Close,
    ]]);
    let session = session_300ms();
    let mut resp = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .expect("head arrives");
    let err = resp.read_to_vec(1 << 20).expect_err("cut body");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:?}");
    assert_eq!(err.violation(), Some(Violation::IncompleteBody));
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn reset_mid_body() {
    // PeekHead leaves the request unread, so dropping the socket sends RST, not FIN.
    let server = ScriptServer::start(vec![vec![
        Step::peek_any_head(),
        Step::send("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly part"),
        Step::sleep_ms(100),
        Step::Reset,
    ]]);
    let session = session_300ms();
    let result = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .and_then(|mut r| r.read_to_vec(1 << 20));
    let err = result.expect_err("reset");
    // The RST may discard the bytes in flight, so the failure comes at the head or in the body;
    // either way it is a receive failure, not a hang and not a success.
    assert_eq!(err.kind(), ErrorKind::Receive, "{err:?}");
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn idle_pooled_connection_closed_by_server_is_replaced() {
    let server = ScriptServer::start(vec![
        vec![Step::any_head(), Step::send(HELLO), Step::Close],
        vec![Step::any_head(), Step::send(SECOND)],
    ]);
    let session = session_300ms();
    let mut first = session
        .get(&server.url("/a"))
        .expect("URL")
        .send()
        .expect("first");
    assert_eq!(first.read_to_vec(100).expect("body"), b"hello");
    drop(first);
    // Let the server's FIN arrive while the connection is idle in the pool.
    std::thread::sleep(Duration::from_millis(100));
    let mut second = session
        .get(&server.url("/b"))
        .expect("URL")
        .send()
        .expect("second");
    assert_eq!(second.read_to_vec(100).expect("body"), b"second");
    assert_eq!(second.connect_count(), 1);
    drop(second);
    assert_eq!(session.connections_opened(), 2);
    drop(session);
    assert_eq!(server.connections_accepted(), 2);
    server.finish().expect("server script");
}

/// Counts `Retrying` and `Reused` events.
fn session_counting_retries(retries: Arc<Mutex<(usize, usize)>>) -> Session {
    Session::builder()
        .receive_timeout(Duration::from_millis(1000))
        .on_event(Arc::new(move |e: &Event<'_>| {
            let mut r = retries.lock().unwrap();
            match e {
                Event::Retrying => r.0 += 1,
                Event::Reused { .. } => r.1 += 1,
                _ => {}
            }
        }))
        .build()
        .expect("session")
}

#[test]
fn pooled_connection_closed_after_the_request_is_retried() {
    // The server reads the second request and closes without a byte: the liveness check passed
    // (the connection was open), so only the retry can save the request.
    let server = ScriptServer::start(vec![
        vec![
            Step::any_head(),
            Step::send(HELLO),
            Step::head_starts_with("GET /b HTTP/1.1\r\n"),
            Step::Close,
        ],
        vec![
            Step::head_starts_with("GET /b HTTP/1.1\r\n"),
            Step::send(SECOND),
        ],
    ]);
    let counts = Arc::new(Mutex::new((0, 0)));
    let session = session_counting_retries(Arc::clone(&counts));
    let mut first = session
        .get(&server.url("/a"))
        .expect("URL")
        .send()
        .expect("first");
    assert_eq!(first.read_to_vec(100).expect("body"), b"hello");
    drop(first);
    let mut second = session
        .get(&server.url("/b"))
        .expect("URL")
        .send()
        .expect("retried");
    assert_eq!(second.read_to_vec(100).expect("body"), b"second");
    assert_eq!(second.connect_count(), 1);
    drop(second);
    assert_eq!(*counts.lock().unwrap(), (1, 1), "(retries, reuses)");
    drop(session);
    assert_eq!(server.connections_accepted(), 2);
    server.finish().expect("server script");
}

#[test]
fn one_shot_body_is_not_replayed_on_a_stale_connection() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(HELLO),
        Step::head_starts_with("POST /b HTTP/1.1\r\n"),
        Step::Close,
    ]]);
    let counts = Arc::new(Mutex::new((0, 0)));
    let session = session_counting_retries(Arc::clone(&counts));
    let mut first = session
        .get(&server.url("/a"))
        .expect("URL")
        .send()
        .expect("first");
    assert_eq!(first.read_to_vec(100).expect("body"), b"hello");
    drop(first);
    let err = session
        .post(&server.url("/b"))
        .expect("URL")
        .body_reader(std::io::Cursor::new(b"one-shot".to_vec()), 8)
        .send()
        .expect_err("a reader body cannot be sent twice");
    assert!(
        matches!(err.kind(), ErrorKind::EmptyReply | ErrorKind::Send),
        "{err:?}"
    );
    assert_eq!(counts.lock().unwrap().0, 0, "no retry");
    drop(session);
    assert_eq!(server.connections_accepted(), 1);
    server.finish().expect("server script");
}

#[test]
fn post_is_not_retried_on_a_stale_connection() {
    // RFC 9110 §9.2.2: the server may have acted on the POST before the connection died, so
    // even a replayable body is not sent again automatically.
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(HELLO),
        Step::head_starts_with("POST /b HTTP/1.1\r\n"),
        Step::Close,
    ]]);
    let counts = Arc::new(Mutex::new((0, 0)));
    let session = session_counting_retries(Arc::clone(&counts));
    let mut first = session
        .get(&server.url("/a"))
        .expect("URL")
        .send()
        .expect("first");
    assert_eq!(first.read_to_vec(100).expect("body"), b"hello");
    drop(first);
    let err = session
        .post(&server.url("/b"))
        .expect("URL")
        .body("replayable")
        .send()
        .expect_err("a POST is not retried");
    assert_eq!(err.kind(), ErrorKind::EmptyReply, "{err:?}");
    assert_eq!(counts.lock().unwrap().0, 0, "no retry");
    drop(session);
    assert_eq!(server.connections_accepted(), 1);
    server.finish().expect("server script");
}

#[test]
fn short_body_reader_fails_and_the_connection_is_dropped() {
    let server = ScriptServer::start(vec![
        vec![Step::any_head(), Step::ReadToEof],
        vec![Step::any_head(), Step::send(SECOND)],
    ]);
    let session = session_300ms();
    let err = session
        .post(&server.url("/up"))
        .expect("URL")
        .body_reader(std::io::Cursor::new(b"12345".to_vec()), 10)
        .send()
        .expect_err("the reader ends early");
    assert_eq!(err.kind(), ErrorKind::BodyRead, "{err:?}");
    let mut next = session
        .get(&server.url("/next"))
        .expect("URL")
        .send()
        .expect("next");
    assert_eq!(next.read_to_vec(100).expect("body"), b"second");
    assert_eq!(next.connect_count(), 1);
    drop(next);
    drop(session);
    server.finish().expect("server script");
}

// ---------------------------------------------------------------------------------------------
// Expect: 100-continue.

const BIG: usize = 2 * 1024 * 1024;

#[test]
fn expect_continue_big_body_after_100() {
    let body = pattern(BIG);
    let server = ScriptServer::start(vec![vec![
        Step::head_contains(&[
            "\r\nexpect: 100-continue\r\n",
            &format!("\r\nContent-Length: {BIG}\r\n"),
        ]),
        Step::send("HTTP/1.1 100 Continue\r\n\r\n"),
        Step::Expect(body.clone()),
        Step::send(HELLO),
    ]]);
    let session = Session::builder()
        .receive_timeout(Duration::from_secs(2))
        .build()
        .expect("session");
    let start = Instant::now();
    let mut resp = session
        .post(&server.url("/up"))
        .expect("URL")
        .body(body)
        .send()
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.read_to_vec(100).expect("body"), b"hello");
    // The body went right after the 100, without waiting for the 1 s expect timeout.
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn expect_continue_body_sent_anyway_after_a_second() {
    let body = pattern(BIG);
    let server = ScriptServer::start(vec![vec![
        Step::head_contains(&["\r\nexpect: 100-continue\r\n"]),
        Step::Expect(body.clone()),
        Step::send(HELLO),
    ]]);
    let session = Session::builder()
        .receive_timeout(Duration::from_secs(3))
        .build()
        .expect("session");
    let start = Instant::now();
    let mut resp = session
        .post(&server.url("/up"))
        .expect("URL")
        .body(body)
        .send()
        .expect("upload");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"hello");
    assert_within(start.elapsed(), 900, 3000);
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

fn final_without_continue(status_line: &str) {
    let reply = format!("{status_line}\r\nContent-Length: 0\r\n\r\n");
    let server = ScriptServer::start(vec![
        vec![
            Step::head_contains(&["\r\nexpect: 100-continue\r\n"]),
            Step::send(&reply),
            Step::ReadToEof,
        ],
        vec![
            Step::head_starts_with("GET /next HTTP/1.1\r\n"),
            Step::send(SECOND),
        ],
    ]);
    let session = Session::builder()
        .receive_timeout(Duration::from_secs(2))
        .build()
        .expect("session");
    let start = Instant::now();
    let mut resp = session
        .post(&server.url("/up"))
        .expect("URL")
        .body(pattern(BIG))
        .send()
        .expect("a final answer");
    assert_eq!(
        resp.status().as_u16(),
        status_line[9..12].parse::<u16>().unwrap()
    );
    assert_eq!(resp.read_to_vec(100).expect("body"), b"");
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    drop(resp);
    // The connection expects a body that never comes: it must not be reused.
    let mut next = session
        .get(&server.url("/next"))
        .expect("URL")
        .send()
        .expect("next");
    assert_eq!(next.read_to_vec(100).expect("body"), b"second");
    assert_eq!(next.connect_count(), 1);
    drop(next);
    // The first connection saw the head and nothing else (ReadToEof records everything the
    // client wrote before closing).
    let seen = support::poll(Duration::from_secs(2), Duration::from_millis(10), || {
        let r = server.received(0);
        r.ends_with(b"\r\n\r\n").then_some(r)
    })
    .expect("the request head arrived");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        server.received(0).len(),
        seen.len(),
        "no body byte was sent"
    );
    assert!(seen.len() < 1024);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn expect_continue_417_body_not_sent() {
    final_without_continue("HTTP/1.1 417 Expectation Failed");
}

#[test]
fn expect_continue_401_body_not_sent() {
    final_without_continue("HTTP/1.1 401 Unauthorized");
}

#[test]
fn small_body_has_no_expect() {
    let server = ScriptServer::start(vec![vec![
        Step::head(|h| {
            if h.to_ascii_lowercase().contains("expect:") {
                Err("small body with Expect".to_owned())
            } else {
                Ok(())
            }
        }),
        Step::expect("small"),
        Step::send(HELLO),
    ]]);
    let session = session_300ms();
    let mut resp = session
        .post(&server.url("/up"))
        .expect("URL")
        .body("small")
        .send()
        .expect("upload");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"hello");
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

// ---------------------------------------------------------------------------------------------
// Exact request bytes.

/// A reader that yields the given pieces, one per `read` call.
struct Pieces(std::collections::VecDeque<Vec<u8>>);

impl std::io::Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(mut piece) = self.0.pop_front() else {
            return Ok(0);
        };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        if n < piece.len() {
            self.0.push_front(piece.split_off(n));
        }
        Ok(n)
    }
}

/// A head check comparing the whole head with `expected`, which is filled in once the server's
/// port is known (the check runs only when a request arrives, after that).
fn exact_head(expected: &Arc<OnceLock<String>>) -> Step {
    let expected = Arc::clone(expected);
    Step::head(move |h| match expected.get() {
        Some(want) if want == h => Ok(()),
        Some(want) => Err(format!("head differs; wanted:\n{want}")),
        None => Err("expected head not set".to_owned()),
    })
}

const UA: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// The chunked encoding of the pieces `hello`, ` world!` and 300 × `x`, one chunk per read.
fn chunked_wire() -> Vec<u8> {
    let mut want = b"5\r\nhello\r\n7\r\n world!\r\n12c\r\n".to_vec();
    want.extend_from_slice(&[b'x'; 300]);
    want.extend_from_slice(b"\r\n0\r\n\r\n");
    want
}

fn chunked_upload(expect_continue: bool) {
    let head = Arc::new(OnceLock::new());
    let mut script = vec![exact_head(&head)];
    if expect_continue {
        script.push(Step::send("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    script.push(Step::Expect(chunked_wire()));
    script.push(Step::send(HELLO));
    let server = ScriptServer::start(vec![script]);
    let expect_line = if expect_continue {
        "expect: 100-continue\r\n"
    } else {
        ""
    };
    head.set(format!(
        "POST /up HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nuser-agent: {UA}\r\naccept: */*\r\n\
         {expect_line}Transfer-Encoding: chunked\r\n\r\n",
        server.port()
    ))
    .expect("set once");
    let mut builder = Session::builder().receive_timeout(Duration::from_secs(2));
    if !expect_continue {
        builder = builder.expect_continue_threshold(u64::MAX);
    }
    let session = builder.build().expect("session");
    let start = Instant::now();
    let mut resp = session
        .post(&server.url("/up"))
        .expect("URL")
        .body_chunked(Pieces(
            [&b"hello"[..], b" world!", &[b'x'; 300]]
                .iter()
                .map(|p| p.to_vec())
                .collect(),
        ))
        .send()
        .expect("upload");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"hello");
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn chunked_upload_exact_bytes() {
    chunked_upload(false);
}

#[test]
fn chunked_upload_exact_bytes_after_100_continue() {
    chunked_upload(true);
}

#[test]
fn get_head_exact_bytes() {
    let head = Arc::new(OnceLock::new());
    let server = ScriptServer::start(vec![vec![exact_head(&head), Step::send(HELLO)]]);
    head.set(format!(
        "GET /a/b?c=d&e HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nuser-agent: {UA}\r\naccept: */*\r\n\r\n",
        server.port()
    ))
    .expect("set once");
    let session = session_300ms();
    let mut resp = session
        .get(&server.url("/a/b?c=d&e#fragment"))
        .expect("URL")
        .send()
        .expect("sent");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"hello");
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn post_head_and_body_exact_bytes() {
    let head = Arc::new(OnceLock::new());
    let server = ScriptServer::start(vec![vec![
        exact_head(&head),
        Step::expect("hello"),
        Step::send(HELLO),
    ]]);
    head.set(format!(
        "POST /p HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nuser-agent: agent/1\r\naccept: text/plain\r\n\
         x-one: 1\r\nx-one: 2\r\nContent-Length: 5\r\n\r\n",
        server.port()
    ))
    .expect("set once");
    let session = session_300ms();
    let mut resp = session
        .post(&server.url("/p"))
        .expect("URL")
        .header("User-Agent", "agent/1")
        .header("Accept", "text/plain")
        .header("X-One", "1")
        .header("x-one", "2")
        .body("hello")
        .send()
        .expect("sent");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"hello");
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn empty_post_sends_content_length_zero() {
    let head = Arc::new(OnceLock::new());
    let server = ScriptServer::start(vec![vec![exact_head(&head), Step::send(HELLO)]]);
    head.set(format!(
        "POST /p HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nuser-agent: {UA}\r\naccept: */*\r\n\
         Content-Length: 0\r\n\r\n",
        server.port()
    ))
    .expect("set once");
    let session = session_300ms();
    let mut resp = session
        .post(&server.url("/p"))
        .expect("URL")
        .send()
        .expect("sent");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"hello");
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

#[test]
fn dropping_a_response_whose_body_drips_does_not_hang() {
    // Draining an unread body on drop is an optimisation; it must not turn into a wait of
    // drain-limit × receive-timeout against a server that sends one byte at a time.
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        drip(&pattern(1000)),
    ]]);
    let session = session_300ms();
    let resp = session
        .get(&server.url("/"))
        .expect("URL")
        .send()
        .expect("head arrives");
    let start = Instant::now();
    drop(resp);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        start.elapsed()
    );
    assert_eq!(session.idle_connections(), 0);
    drop(session);
    let _ = server.finish();
}

#[test]
fn send_timeout_when_the_server_stops_reading() {
    // The server reads the head and then nothing: once the socket buffers are full, a write
    // makes no progress and the send timeout ends the upload.
    let server = ScriptServer::start(vec![vec![Step::any_head(), Step::sleep_ms(1200)]]);
    let session = Session::builder()
        .send_timeout(Duration::from_millis(300))
        .receive_timeout(Duration::from_secs(2))
        .expect_continue_threshold(u64::MAX)
        .build()
        .expect("session");
    let len = 1u64 << 30;
    let start = Instant::now();
    let err = session
        .post(&server.url("/up"))
        .expect("URL")
        .body_reader(std::io::Read::take(std::io::repeat(b'u'), len), len)
        .send()
        .expect_err("the server stopped reading");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert_within(start.elapsed(), 250, 1500);
    drop(session);
    let _ = server.finish();
}

#[test]
fn total_deadline_during_the_expect_continue_wait() {
    let server = ScriptServer::start(vec![vec![Step::any_head(), Step::sleep_ms(800)]]);
    let session = Session::builder()
        .receive_timeout(Duration::from_secs(2))
        .total_timeout(Some(Duration::from_millis(300)))
        .expect_continue_timeout(Duration::from_secs(1))
        .build()
        .expect("session");
    let start = Instant::now();
    let err = session
        .post(&server.url("/up"))
        .expect("URL")
        .body(pattern(BIG))
        .send()
        .expect_err("the deadline passes while waiting for 100");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert_within(start.elapsed(), 250, 1200);
    drop(session);
    let _ = server.finish();
}
