//! Response and request bodies against a real nginx: a 64 MiB download streamed through
//! `Read` over HTTP and HTTPS (compared by FNV-1a, peak memory not measured here), size caps,
//! chunked responses, ranges, and uploads echoed back by nginx's echo module (bytes, streamed
//! readers, chunked, and `Expect: 100-continue`).

mod support;

use ferry::{ErrorKind, Session, StatusCode};
use std::time::{Duration, Instant};
use support::{large_file_bytes, large_file_fnv1a64, Nginx, NginxOptions};

const LIMIT: u64 = 64 << 20;
const BIG: &str = "big.bin";
const BIG_SIZE: u64 = 64 << 20;
const STEP: usize = 64 * 1024;

/// Echoes `Expect` and the body: `EXPECT|BODY`. (The harness's `/echo/body` does not show
/// whether `Expect` was sent.)
const ECHO_EXPECT_CONF: &str = "location = /echo/expect { default_type application/octet-stream; \
     echo_read_request_body; echo -n \"$http_expect|\"; echo_request_body; }";

fn session() -> Session {
    let pki = support::pki();
    Session::builder()
        .add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .build()
        .unwrap()
}

/// Reads `r` to its end in `STEP`-sized reads; returns (length, FNV-1a 64, reads).
fn stream_hash(r: &mut ferry::Response, max_len: u64) -> (u64, u64, u64) {
    let mut buf = vec![0u8; STEP];
    let (mut len, mut hash, mut reads) = (0u64, support::fnv1a64(b""), 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = std::io::Read::read(r, &mut buf).expect("body read");
        if n == 0 {
            return (len, hash, reads);
        }
        assert!(n <= STEP);
        len += n as u64;
        reads += 1;
        hash = support::pattern::fnv1a64_update(hash, &buf[..n]);
        assert!(len <= max_len, "more body than the file has");
        assert!(Instant::now() < deadline, "body still streaming after 60 s");
    }
}

#[test]
fn a_64_mib_body_streams_over_http_and_https() {
    let nginx = Nginx::start(NginxOptions::new().large_file(BIG, BIG_SIZE));
    let want = large_file_fnv1a64(BIG, BIG_SIZE);
    let s = session();
    for url in [nginx.http_url(BIG), nginx.https_url(BIG)] {
        let mut r = s.get(&url).unwrap().send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers().get("content-length").unwrap().as_bytes(),
            BIG_SIZE.to_string().as_bytes()
        );
        let (len, hash, reads) = stream_hash(&mut r, BIG_SIZE);
        assert_eq!(len, BIG_SIZE, "{url}");
        assert_eq!(hash, want, "{url}: body differs from the file");
        assert!(reads >= BIG_SIZE / STEP as u64, "{url}: {reads} reads");
        // Read to the end: the connection goes back to the pool.
        drop(r);
        assert_eq!(s.idle_connections(), 1);
        s.close_idle();
    }
    let log = nginx.wait_log_lines(2);
    assert!(log.iter().all(|l| l.bytes == BIG_SIZE), "{log:#?}");
}

#[test]
fn text_and_bytes_enforce_their_limit() {
    let body = b"0123456789abcdef".repeat(64); // 1 KiB
    let nginx = Nginx::start(NginxOptions::new().file("k.txt", body.clone()));
    let s = session();
    let url = nginx.http_url("k.txt");
    // Content-Length above the limit: refused before reading.
    let err = s.get(&url).unwrap().send().unwrap().text(1023).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge, "{err}");
    let err = s
        .get(&url)
        .unwrap()
        .send()
        .unwrap()
        .read_to_vec(10)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge, "{err}");
    // Exactly the limit is fine.
    let got = s
        .get(&url)
        .unwrap()
        .send()
        .unwrap()
        .read_to_vec(1024)
        .unwrap();
    assert_eq!(got, body);
    // Chunked (no length known up front): refused once the cap is passed.
    let err = s
        .get(&nginx.http_url("chunked"))
        .unwrap()
        .send()
        .unwrap()
        .text(12)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge, "{err}");
    let text = s
        .get(&nginx.http_url("chunked"))
        .unwrap()
        .send()
        .unwrap()
        .text(20)
        .unwrap();
    assert_eq!(text, "chunk one\nchunk two\n");
    // Small bodies left behind by the errors were drained: one connection throughout.
    let log = nginx.wait_log_lines(5);
    assert!(
        log.iter().all(|l| l.connection == log[0].connection),
        "{log:#?}"
    );
    assert_eq!(s.connections_opened(), 1);
}

#[test]
fn chunked_response_over_https_then_reuse() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", "a"));
    let s = session();
    let mut r = s.get(&nginx.https_url("chunked")).unwrap().send().unwrap();
    assert_eq!(
        r.headers().get("transfer-encoding").unwrap().as_bytes(),
        b"chunked"
    );
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"chunk one\nchunk two\n");
    assert_eq!(r.trailers().map(|t| t.len()), Some(0));
    drop(r);
    let mut r = s.get(&nginx.https_url("a.txt")).unwrap().send().unwrap();
    assert_eq!(r.connect_count(), 0);
    assert_eq!(
        String::from_utf8(r.read_to_vec(LIMIT).unwrap()).unwrap(),
        "a"
    );
}

#[test]
fn range_request_returns_the_slice() {
    const SIZE: u64 = 3 << 20;
    let nginx = Nginx::start(NginxOptions::new().large_file("r.bin", SIZE));
    let s = session();
    let (from, len) = (1_048_000u64, 100_000usize);
    let mut r = s
        .get(&nginx.https_url("r.bin"))
        .unwrap()
        .header("range", format!("bytes={from}-{}", from + len as u64 - 1))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers().get("content-range").unwrap().as_bytes(),
        format!("bytes {from}-{}/{SIZE}", from + len as u64 - 1).as_bytes()
    );
    let got = r.read_to_vec(LIMIT).unwrap();
    assert!(got == large_file_bytes("r.bin", from, len), "range differs");
    let log = nginx.wait_log_lines(1);
    assert_eq!(log[0].status, 206);
}

#[test]
fn post_and_put_bodies_are_echoed() {
    let nginx = Nginx::start(NginxOptions::new());
    let s = session();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for url in [nginx.http_url("echo/body"), nginx.https_url("echo/body")] {
        let mut r = s.post(&url).unwrap().body(body.clone()).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.read_to_vec(LIMIT).unwrap() == body,
            "{url}: POST echo differs"
        );
        let mut r = s.put(&url).unwrap().body("put body").send().unwrap();
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"put body");
        // An empty POST still says Content-Length: 0.
        let mut r = s.post(&url).unwrap().send().unwrap();
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"");
    }
    let log = nginx.wait_log_lines(6);
    let methods: Vec<_> = log.iter().map(|l| l.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PUT", "POST", "POST", "PUT", "POST"]);
    let lengths: Vec<_> = log.iter().map(|l| l.content_length.as_str()).collect();
    assert_eq!(lengths, ["100000", "8", "0", "100000", "8", "0"]);
    for l in &log {
        assert!(l.transfer_encoding.is_empty());
        assert!(l.request_length >= l.content_length.parse::<u64>().unwrap());
    }
    // Two connections (HTTP, HTTPS), three requests each.
    assert_eq!(log[2].connection, log[0].connection);
    assert_eq!(log[2].connection_requests, 3);
    assert_eq!(log[5].connection, log[3].connection);
    assert_eq!(log[5].connection_requests, 3);
}

/// A reader yielding `len` bytes of the large-file pattern for `name`, in odd-sized pieces.
struct PatternReader {
    name: &'static str,
    pos: u64,
    len: u64,
}

impl std::io::Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64).min(40_000) as usize;
        if n == 0 {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&large_file_bytes(self.name, self.pos, n));
        self.pos += n as u64;
        Ok(n)
    }
}

#[test]
fn streamed_and_chunked_uploads_are_echoed() {
    const SIZE: u64 = 3 << 20;
    let nginx = Nginx::start(NginxOptions::new());
    let s = session();
    let want = large_file_fnv1a64("up", SIZE);
    for url in [nginx.http_url("echo/body"), nginx.https_url("echo/body")] {
        let reader = PatternReader {
            name: "up",
            pos: 0,
            len: SIZE,
        };
        let mut r = s
            .put(&url)
            .unwrap()
            .body_reader(reader, SIZE)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (len, hash, _) = stream_hash(&mut r, SIZE);
        assert_eq!((len, hash), (SIZE, want), "{url}: body_reader echo differs");
        drop(r);
        let reader = PatternReader {
            name: "up",
            pos: 0,
            len: SIZE,
        };
        let mut r = s.post(&url).unwrap().body_chunked(reader).send().unwrap();
        let (len, hash, _) = stream_hash(&mut r, SIZE);
        assert_eq!((len, hash), (SIZE, want), "{url}: chunked echo differs");
    }
    let log = nginx.wait_log_lines(4);
    for pair in log.chunks(2) {
        assert_eq!(pair[0].content_length, SIZE.to_string());
        assert_eq!(pair[1].transfer_encoding, "chunked");
        assert_eq!(pair[1].content_length, "");
        // The echo is sent chunked, and `$body_bytes_sent` counts the chunk framing too.
        assert!(
            pair.iter().all(|l| l.status == 200 && l.bytes >= SIZE),
            "{log:#?}"
        );
    }
}

#[test]
fn a_2_mib_upload_uses_expect_100_continue() {
    const SIZE: usize = 2 << 20;
    let nginx = Nginx::start(NginxOptions::new().server_conf(ECHO_EXPECT_CONF));
    let pki = support::pki();
    // A long wait for 100 Continue: if the client ignored nginx's 100, each upload would take
    // 10 s and the elapsed-time check below would fail.
    let s = Session::builder()
        .add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .expect_continue_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let body = large_file_bytes("expect", 0, SIZE);
    for url in [
        nginx.http_url("echo/expect"),
        nginx.https_url("echo/expect"),
    ] {
        let t = Instant::now();
        let mut r = s.post(&url).unwrap().body(body.clone()).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let got = r.read_to_vec(LIMIT).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{url}: upload took {:?}, as if 100 Continue was not seen",
            t.elapsed()
        );
        let (prefix, echoed) = got.split_at(b"100-continue|".len().min(got.len()));
        assert_eq!(prefix, b"100-continue|", "{url}: Expect not sent");
        assert!(echoed == body, "{url}: echoed body differs");
        // A one-shot reader over the threshold too.
        let reader = PatternReader {
            name: "expect",
            pos: 0,
            len: SIZE as u64,
        };
        let mut r = s
            .post(&url)
            .unwrap()
            .body_reader(reader, SIZE as u64)
            .send()
            .unwrap();
        let got = r.read_to_vec(LIMIT).unwrap();
        assert!(got.starts_with(b"100-continue|"));
        assert!(
            got[b"100-continue|".len()..] == body[..],
            "{url}: reader echo differs"
        );
    }
    // Small bodies go without Expect.
    let mut r = s
        .post(&nginx.http_url("echo/expect"))
        .unwrap()
        .body("tiny")
        .send()
        .unwrap();
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"|tiny");
    let log = nginx.wait_log_lines(5);
    assert!(log.iter().all(|l| l.status == 200), "{log:#?}");
    assert_eq!(log[0].content_length, SIZE.to_string());
}

#[test]
fn expect_100_continue_refused_with_413_sends_no_body() {
    // nginx checks Content-Length against client_max_body_size before asking for the body, so
    // it answers 413 instead of 100 Continue. The client must take that answer at once (not
    // wait for 100 Continue, nor send the 2 MiB), and not reuse the connection.
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", "a").server_conf(
        "location = /small { client_max_body_size 1k; echo_read_request_body; \
                 echo_request_body; }",
    ));
    let pki = support::pki();
    let s = Session::builder()
        .add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .expect_continue_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for url in [nginx.http_url("small"), nginx.https_url("small")] {
        let t = Instant::now();
        let reader = PatternReader {
            name: "refused",
            pos: 0,
            len: 2 << 20,
        };
        let mut r = s
            .post(&url)
            .unwrap()
            .body_reader(reader, 2 << 20)
            .send()
            .unwrap_or_else(|e| panic!("{url}: {e} ({:?})", e.kind()));
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{url}");
        let _ = r.read_to_vec(LIMIT).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{url}: {:?}",
            t.elapsed()
        );
        drop(r);
        assert_eq!(s.idle_connections(), 0, "{url}: pooled with an unsent body");
        let mut r = s.get(&nginx.http_url("a.txt")).unwrap().send().unwrap();
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"a");
        s.close_idle();
    }
    let log = nginx.wait_log_lines(4);
    let refused: Vec<_> = log.iter().filter(|l| l.uri == "/small").collect();
    assert_eq!(refused.len(), 2);
    for l in refused {
        assert_eq!(l.status, 413);
        // Only the head reached nginx.
        assert!(l.request_length < 4096, "{l:?}");
    }
}

#[test]
fn upload_refused_by_the_server_gets_its_answer() {
    // `return 403` answers without reading the 2 MiB body; the client must show the 403,
    // not a send error, and the session must stay usable.
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", "a"));
    let s = session();
    let body = vec![b'x'; 2 << 20];
    for url in [nginx.http_url("status/403"), nginx.https_url("status/403")] {
        let mut r = s
            .post(&url)
            .unwrap()
            .body(body.clone())
            .send()
            .unwrap_or_else(|e| panic!("{url}: {e} ({:?})", e.kind()));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"status 403\n");
        drop(r);
        let mut r = s.get(&nginx.http_url("a.txt")).unwrap().send().unwrap();
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"a");
    }
}

#[test]
fn a_short_body_reader_fails_locally_and_the_connection_is_dropped() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", "a"));
    let s = session();
    // Declares 100 bytes, yields 50.
    let reader = std::io::Cursor::new(vec![b'y'; 50]);
    let err = s
        .put(&nginx.http_url("echo/body"))
        .unwrap()
        .body_reader(reader, 100)
        .send()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyRead, "{err}");
    assert_eq!(
        s.idle_connections(),
        0,
        "a half-sent request's connection was pooled"
    );
    let mut r = s.get(&nginx.http_url("a.txt")).unwrap().send().unwrap();
    assert_eq!(r.connect_count(), 1);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"a");
    // nginx never completed the PUT: the only request it answered 200 is the GET. (The PUT's
    // line, a 400 once nginx sees the close, may come before or after the GET's.)
    let log = support::poll(Duration::from_secs(2), Duration::from_millis(10), || {
        let log = nginx.access_log();
        log.iter().any(|l| l.uri == "/a.txt").then_some(log)
    })
    .expect("the GET is logged");
    let ok: Vec<_> = log.iter().filter(|l| l.status == 200).collect();
    assert_eq!(ok.len(), 1, "{log:#?}");
    assert_eq!(ok[0].uri, "/a.txt");
    assert!(log.iter().all(|l| l.uri == "/a.txt" || l.status != 200));
}

#[test]
fn a_stalled_body_hits_the_total_timeout() {
    // /slow sends its head and `start\n` at once, then pauses 2 s before `end\n`.
    let nginx = Nginx::start(NginxOptions::new());
    let s = Session::builder()
        .total_timeout(Some(Duration::from_millis(800)))
        .build()
        .unwrap();
    let t = Instant::now();
    let mut r = s.get(&nginx.http_url("slow")).unwrap().send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let err = r.read_to_vec(LIMIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1900),
        "timed out after {took:?}"
    );
    drop(r);
    assert_eq!(s.idle_connections(), 0, "a timed-out connection was pooled");
    // Per request, a longer deadline lets the same body finish.
    let mut r = s
        .get(&nginx.http_url("slow"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(
        String::from_utf8(r.read_to_vec(LIMIT).unwrap()).unwrap(),
        "start\nend\n"
    );
}
