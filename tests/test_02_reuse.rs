//! Connection reuse, checked from nginx's access log (`$connection`, `$connection_requests`),
//! not from ferry's own counters alone: keep-alive over HTTP and HTTPS, one pool per session,
//! TLS settings as part of the pool key (curl CVE-2022-27782), the drain limit for unread
//! bodies, server-side closes, and several threads sharing one session.

mod support;

use ferry::{ErrorKind, PoolConfig, Session, StatusCode, TlsSettings};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{LogLine, Nginx, NginxOptions};

const LIMIT: u64 = 64 << 20;
const SMALL: &[u8] = b"small file\n";

fn ca_pem() -> Vec<u8> {
    let pki = support::pki();
    pki.read(&pki.ca_pem)
}

/// A session that trusts the test CA.
fn session() -> Session {
    Session::builder()
        .add_root_certificates_pem(&ca_pem())
        .build()
        .expect("session with the test CA")
}

fn get(s: &Session, url: &str) -> ferry::Response {
    s.get(url)
        .unwrap()
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e} ({:?})", e.kind()))
}

/// Reads exactly `buf.len()` body bytes. (`std::io::Read` is not imported in this file: its
/// by-value `bytes()` would shadow [`ferry::Response::bytes`].)
fn read_exact(r: &mut ferry::Response, buf: &mut [u8]) {
    std::io::Read::read_exact(r, buf).unwrap();
}

/// Per connection (nginx's serial number), its `$connection_requests` values in log order.
fn by_connection(log: &[LogLine]) -> BTreeMap<u64, Vec<u64>> {
    let mut m: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for l in log {
        m.entry(l.connection)
            .or_default()
            .push(l.connection_requests);
    }
    m
}

/// The log line for `uri` (exactly one expected).
fn line_for<'a>(log: &'a [LogLine], uri: &str) -> &'a LogLine {
    let found: Vec<_> = log.iter().filter(|l| l.uri == uri).collect();
    assert_eq!(found.len(), 1, "one request for {uri} expected: {log:#?}");
    found[0]
}

fn twenty_on_one_connection(https: bool) {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    let s = session();
    for i in 0..20 {
        let path = format!("a.txt?i={i}");
        let url = if https {
            nginx.https_url(&path)
        } else {
            nginx.http_url(&path)
        };
        let mut r = get(&s, &url);
        assert_eq!(r.connect_count(), u32::from(i == 0), "request {i}");
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    }
    assert_eq!(s.connections_opened(), 1);
    let log = nginx.wait_log_lines(20);
    assert_eq!(log.len(), 20);
    for (i, l) in log.iter().enumerate() {
        assert_eq!(l.uri, format!("/a.txt?i={i}"));
        assert_eq!(l.connection, log[0].connection, "{log:#?}");
        assert_eq!(l.connection_requests, i as u64 + 1, "{log:#?}");
        assert_eq!(!l.ssl_protocol.is_empty(), https);
    }
}

#[test]
fn twenty_gets_share_one_connection_over_http() {
    twenty_on_one_connection(false);
}

#[test]
fn twenty_gets_share_one_connection_over_https() {
    twenty_on_one_connection(true);
}

#[test]
fn two_sessions_use_two_connections() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    let (s1, s2) = (session(), session());
    for i in 0..3 {
        for (name, s) in [("s1", &s1), ("s2", &s2)] {
            let mut r = get(s, &nginx.http_url(&format!("a.txt?{name}={i}")));
            assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
        }
    }
    // A clone shares its session's pool.
    let s1b = s1.clone();
    let mut r = get(&s1b, &nginx.http_url("a.txt?s1=clone"));
    assert_eq!(r.connect_count(), 0, "a clone must share the pool");
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);

    let log = nginx.wait_log_lines(7);
    let conn_of = |tag: &str| -> BTreeSet<u64> {
        log.iter()
            .filter(|l| l.uri.contains(tag))
            .map(|l| l.connection)
            .collect()
    };
    let (c1, c2) = (conn_of("s1="), conn_of("s2="));
    assert_eq!(c1.len(), 1, "{log:#?}");
    assert_eq!(c2.len(), 1, "{log:#?}");
    assert!(
        c1.is_disjoint(&c2),
        "two sessions shared a connection: {log:#?}"
    );
    let counts = by_connection(&log);
    assert_eq!(counts.len(), 2);
    let mut lens: Vec<_> = counts.values().map(Vec::len).collect();
    lens.sort();
    assert_eq!(lens, [3, 4]);
}

fn insecure() -> TlsSettings {
    TlsSettings {
        danger_accept_invalid_certs: true,
        ..TlsSettings::default()
    }
}

#[test]
fn different_tls_settings_never_share_a_connection() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    let s = session();
    let url = |tag: &str| nginx.https_url(&format!("a.txt?{tag}"));
    // verified, insecure, verified, insecure: two connections, each used twice.
    let mut r = get(&s, &url("v1"));
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let mut r = s.get(&url("i1")).unwrap().tls(insecure()).send().unwrap();
    assert_eq!(
        r.connect_count(),
        1,
        "insecure request reused a verified connection"
    );
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let mut r = get(&s, &url("v2"));
    assert_eq!(r.connect_count(), 0);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let mut r = s.get(&url("i2")).unwrap().tls(insecure()).send().unwrap();
    assert_eq!(r.connect_count(), 0);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);

    let log = nginx.wait_log_lines(4);
    let (v1, i1, v2, i2) = (
        line_for(&log, "/a.txt?v1"),
        line_for(&log, "/a.txt?i1"),
        line_for(&log, "/a.txt?v2"),
        line_for(&log, "/a.txt?i2"),
    );
    assert_ne!(v1.connection, i1.connection, "{log:#?}");
    assert_eq!((v2.connection, v2.connection_requests), (v1.connection, 2));
    assert_eq!((i2.connection, i2.connection_requests), (i1.connection, 2));
}

/// curl CVE-2022-27782: a connection made with verification off must not serve a later request
/// that wants verification. Here the server's CA is unknown to the session, so the verified
/// request can only succeed by wrongly reusing the insecure connection.
#[test]
fn verified_request_after_insecure_one_still_verifies() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    // Webpki roots only: the test CA is unknown.
    let s = Session::builder().build().unwrap();
    let url = nginx.https_url("a.txt");
    let mut r = s.get(&url).unwrap().tls(insecure()).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    assert_eq!(
        s.idle_connections(),
        1,
        "the insecure connection is idle in the pool"
    );

    let err = s
        .get(&url)
        .unwrap()
        .send()
        .expect_err("the unknown CA must be rejected");
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    // Also when the per-request settings are spelled out as the defaults.
    let err = s
        .get(&url)
        .unwrap()
        .tls(TlsSettings::default())
        .send()
        .expect_err("the unknown CA must be rejected");
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");

    // The insecure connection is still there for insecure requests.
    let mut r = s.get(&url).unwrap().tls(insecure()).send().unwrap();
    assert_eq!(r.connect_count(), 0);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let log = nginx.wait_log_lines(2);
    assert_eq!(
        log.len(),
        2,
        "the rejected handshakes must send no request: {log:#?}"
    );
    assert_eq!(log[1].connection, log[0].connection);

    // And the reverse: an insecure session's connection is not used for a request that adds
    // verification with the right CA (a new, verified connection is made).
    let verified = TlsSettings {
        extra_ca_pem: Some(ca_pem()),
        ..TlsSettings::default()
    };
    let s = Session::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let mut r = get(&s, &url);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let mut r = s.get(&url).unwrap().tls(verified).send().unwrap();
    assert_eq!(r.connect_count(), 1);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let log = nginx.wait_log_lines(4);
    assert_ne!(log[3].connection, log[2].connection, "{log:#?}");
}

#[test]
fn small_unread_body_is_drained_and_the_connection_reused() {
    // Under the drain limit (1 MiB): dropping the response reads the rest and keeps the
    // connection.
    let size = ferry::DRAIN_LIMIT - 4096;
    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file("half.bin", size)
            .file("a.txt", SMALL),
    );
    for https in [false, true] {
        let s = session();
        let (big, small) = if https {
            (nginx.https_url("half.bin"), nginx.https_url("a.txt"))
        } else {
            (nginx.http_url("half.bin"), nginx.http_url("a.txt"))
        };
        let mut r = get(&s, &big);
        let mut first = [0u8; 10];
        read_exact(&mut r, &mut first);
        assert_eq!(first[..], support::large_file_bytes("half.bin", 0, 10)[..]);
        drop(r);
        assert_eq!(
            s.idle_connections(),
            1,
            "drained connection back in the pool"
        );
        let mut r = get(&s, &small);
        assert_eq!(r.connect_count(), 0, "https={https}");
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
        // Never read at all: drained too.
        drop(get(&s, &big));
        let mut r = get(&s, &small);
        assert_eq!(r.connect_count(), 0, "https={https}");
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
        assert_eq!(s.connections_opened(), 1);
    }
    let log = nginx.wait_log_lines(8);
    let counts = by_connection(&log);
    assert_eq!(counts.len(), 2, "{log:#?}");
    for reqs in counts.values() {
        assert_eq!(reqs, &[1, 2, 3, 4]);
    }
    // The drained bodies were sent whole.
    for l in log.iter().filter(|l| l.uri == "/half.bin") {
        assert_eq!(l.bytes, size);
    }
}

#[test]
fn large_unread_body_closes_the_connection() {
    let size = 16 * ferry::DRAIN_LIMIT;
    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file("big.bin", size)
            .file("a.txt", SMALL),
    );
    for https in [false, true] {
        let s = session();
        let (big, small) = if https {
            (nginx.https_url("big.bin"), nginx.https_url("a.txt"))
        } else {
            (nginx.http_url("big.bin"), nginx.http_url("a.txt"))
        };
        let mut r = get(&s, &big);
        let mut first = [0u8; 4096];
        read_exact(&mut r, &mut first);
        drop(r);
        assert_eq!(s.idle_connections(), 0, "https={https}");
        let mut r = get(&s, &small);
        assert_eq!(r.connect_count(), 1, "https={https}");
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
        assert_eq!(s.connections_opened(), 2);
    }
    let log = nginx.wait_log_lines(4);
    for port in [nginx.port(), nginx.tls_port()] {
        let on_port: Vec<_> = log.iter().filter(|l| l.server_port == port).collect();
        let big = on_port.iter().find(|l| l.uri == "/big.bin").unwrap();
        let small = on_port.iter().find(|l| l.uri == "/a.txt").unwrap();
        assert_ne!(big.connection, small.connection, "{log:#?}");
        assert_eq!(small.connection_requests, 1);
        assert!(big.bytes < size, "nginx sent the whole body: {big:?}");
    }
}

#[test]
fn server_close_means_a_new_connection() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    let s = session();
    for url in [nginx.http_url("close"), nginx.https_url("close")] {
        let mut r = get(&s, &url);
        assert_eq!(
            r.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        assert_eq!(
            String::from_utf8(r.read_to_vec(LIMIT).unwrap()).unwrap(),
            "closing\n"
        );
        drop(r);
        assert_eq!(s.idle_connections(), 0);
    }
    let mut r = get(&s, &nginx.http_url("a.txt"));
    assert_eq!(r.connect_count(), 1);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let log = nginx.wait_log_lines(3);
    let conns: BTreeSet<_> = log.iter().map(|l| l.connection).collect();
    assert_eq!(conns.len(), 3, "{log:#?}");
}

#[test]
fn caller_connection_close_is_honoured() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    let s = session();
    let mut r = s
        .get(&nginx.http_url("a.txt?close"))
        .unwrap()
        .header("connection", "close")
        .send()
        .unwrap();
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    drop(r);
    assert_eq!(s.idle_connections(), 0);
    let mut r = get(&s, &nginx.http_url("a.txt?next"));
    assert_eq!(r.connect_count(), 1);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    let log = nginx.wait_log_lines(2);
    assert_ne!(log[0].connection, log[1].connection);
}

#[test]
fn keepalive_requests_limit_is_followed_by_a_new_connection() {
    // nginx closes after the 3rd request on a connection (with `Connection: close`).
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("a.txt", SMALL)
            .server_conf("keepalive_requests 3;"),
    );
    let s = session();
    for i in 0..7 {
        let mut r = get(&s, &nginx.http_url(&format!("a.txt?{i}")));
        assert_eq!(r.connect_count(), u32::from(i % 3 == 0), "request {i}");
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    }
    let log = nginx.wait_log_lines(7);
    let counts = by_connection(&log);
    let mut seqs: Vec<_> = counts.values().cloned().collect();
    seqs.sort();
    assert_eq!(seqs, [vec![1], vec![1, 2, 3], vec![1, 2, 3]], "{log:#?}");
}

#[test]
fn connection_closed_by_the_server_while_idle_is_replaced() {
    // nginx drops idle keep-alive connections after 1 s; the pooled one is then dead.
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("a.txt", SMALL)
            .server_conf("keepalive_timeout 1s;"),
    );
    let s = session();
    for url in [nginx.http_url("a.txt"), nginx.https_url("a.txt")] {
        let mut r = get(&s, &url);
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
        std::thread::sleep(Duration::from_millis(1600));
        let mut r = get(&s, &url);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.connect_count(),
            1,
            "{url}: the dead connection was not replaced"
        );
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), SMALL);
    }
    let log = nginx.wait_log_lines(4);
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(log.iter().all(|l| l.connection_requests == 1), "{log:#?}");
}

fn run_threads(s: &Session, urls: Vec<String>, threads: usize, per_thread: usize) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = s.clone();
            let urls = urls.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let url = format!("{}?t{t}-{i}", urls[i % urls.len()]);
                    let mut r = s
                        .get(&url)
                        .unwrap()
                        .send()
                        .unwrap_or_else(|e| panic!("thread {t} request {i}: {e}"));
                    assert_eq!(r.status(), StatusCode::OK);
                    assert_eq!(
                        r.read_to_vec(LIMIT).unwrap(),
                        SMALL,
                        "thread {t} request {i}"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a request thread panicked");
    }
}

#[test]
fn four_threads_share_a_session() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 24;
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    let s = session();
    let urls = vec![nginx.http_url("a.txt"), nginx.https_url("a.txt")];
    run_threads(&s, urls, THREADS, PER_THREAD);

    let log = nginx.wait_log_lines(THREADS * PER_THREAD);
    assert_eq!(log.len(), THREADS * PER_THREAD);
    assert!(log.iter().all(|l| l.status == 200));
    for port in [nginx.port(), nginx.tls_port()] {
        let lines: Vec<_> = log
            .iter()
            .filter(|l| l.server_port == port)
            .cloned()
            .collect();
        assert_eq!(lines.len(), THREADS * PER_THREAD / 2);
        let counts = by_connection(&lines);
        // At most one request per thread is in flight, and no connection is closed, so no more
        // connections than threads (and never more than the pool's per-key cap).
        assert!(
            !counts.is_empty() && counts.len() <= THREADS,
            "port {port}: {} connections: {counts:?}",
            counts.len()
        );
        for reqs in counts.values() {
            let want: Vec<u64> = (1..=reqs.len() as u64).collect();
            assert_eq!(reqs, &want, "port {port}: {counts:?}");
        }
    }
    assert!(s.connections_opened() <= 2 * THREADS as u64);
}

#[test]
fn per_key_cap_bounds_connections_across_threads() {
    const THREADS: usize = 6;
    const PER_THREAD: usize = 10;
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", SMALL));
    let s = Session::builder()
        .pool(PoolConfig {
            max_per_key: 2,
            ..PoolConfig::default()
        })
        .total_timeout(Some(Duration::from_secs(20)))
        .build()
        .unwrap();
    run_threads(&s, vec![nginx.http_url("a.txt")], THREADS, PER_THREAD);
    let log = nginx.wait_log_lines(THREADS * PER_THREAD);
    let counts = by_connection(&log);
    assert!(counts.len() <= 2, "{counts:?}");
    assert!(s.connections_opened() <= 2);
}
