//! Basic requests against a real nginx: GET over HTTP and HTTPS, HEAD, responses without a body
//! (204, 304), an error status with a body, and IPv6 loopback. Each test also checks, from
//! nginx's access log, that the connection was kept after the response.

mod support;

use ferry::{Session, StatusCode};
use support::{LogLine, Nginx, NginxOptions};

/// The body of `hello.txt`.
const HELLO: &[u8] = b"hello from nginx\n";
/// Cap for reading small bodies.
const LIMIT: u64 = 1 << 20;

/// A session that trusts the test CA (on top of the webpki roots).
fn session(nginx: &Nginx) -> Session {
    let pki = nginx.pki();
    Session::builder()
        .add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .build()
        .expect("session with the test CA")
}

fn nginx() -> Nginx {
    Nginx::start(NginxOptions::new().file("hello.txt", HELLO))
}

/// Asserts that `log` lines are all on one connection, numbered 1, 2, ... on it.
fn assert_one_connection(log: &[LogLine]) {
    for (i, l) in log.iter().enumerate() {
        assert_eq!(
            (l.connection, l.connection_requests),
            (log[0].connection, i as u64 + 1),
            "request {i} was not on the first connection: {log:#?}"
        );
    }
}

#[test]
fn get_over_http_returns_the_file() {
    let nginx = nginx();
    let s = session(&nginx);
    let url = nginx.http_url("hello.txt");
    let mut resp = s.get(&url).unwrap().send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), ferry::Version::HTTP_11);
    assert_eq!(resp.url().as_str(), url);
    assert_eq!(resp.redirect_count(), 0);
    assert_eq!(resp.connect_count(), 1);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .map(|v| v.as_bytes().to_vec()),
        Some(HELLO.len().to_string().into_bytes())
    );
    assert_eq!(resp.read_to_vec(LIMIT).unwrap(), HELLO);

    let log = nginx.wait_log_lines(1);
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].method.as_str(), log[0].uri.as_str()),
        ("GET", "/hello.txt")
    );
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].protocol, "HTTP/1.1");
    assert_eq!(log[0].ssl_protocol, "");
    assert_eq!(log[0].host, format!("127.0.0.1:{}", nginx.port()));
    assert!(
        log[0].user_agent.starts_with("ferry/"),
        "default User-Agent: {:?}",
        log[0].user_agent
    );
}

#[test]
fn get_over_https_returns_the_file() {
    let nginx = nginx();
    let s = session(&nginx);
    let url = nginx.https_url("hello.txt");
    let mut resp = s.get(&url).unwrap().send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.url().as_str(), url);
    assert_eq!(resp.read_to_vec(LIMIT).unwrap(), HELLO);
    // A second request over the same TLS connection.
    let mut again = s.get(&url).unwrap().send().unwrap();
    assert_eq!(
        again.connect_count(),
        0,
        "the TLS connection was not reused"
    );
    assert_eq!(
        String::from_utf8(again.read_to_vec(LIMIT).unwrap())
            .unwrap()
            .as_bytes(),
        HELLO
    );

    let log = nginx.wait_log_lines(2);
    assert_eq!(log.len(), 2);
    assert_one_connection(&log);
    assert!(log.iter().all(|l| l.server_port == nginx.tls_port()));
    assert!(log[0].ssl_protocol.starts_with("TLSv1."), "{log:#?}");
    assert_eq!(log[0].host, format!("localhost:{}", nginx.tls_port()));
}

#[test]
fn head_has_no_body_and_keeps_the_connection() {
    let nginx = nginx();
    let s = session(&nginx);
    let url = nginx.http_url("hello.txt");
    let mut head = s.head(&url).unwrap().send().unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    // HEAD announces the length of the GET body but sends none (RFC 9110 §9.3.2).
    assert_eq!(
        head.headers().get("content-length").unwrap().as_bytes(),
        HELLO.len().to_string().as_bytes()
    );
    assert_eq!(head.read_to_vec(LIMIT).unwrap(), b"");
    drop(head);
    let mut get = s.get(&url).unwrap().send().unwrap();
    assert_eq!(
        get.connect_count(),
        0,
        "the connection was not reused after HEAD"
    );
    assert_eq!(get.read_to_vec(LIMIT).unwrap(), HELLO);

    // HEAD of a chunked resource: the head says chunked, but no chunk follows.
    let mut head = s.head(&nginx.http_url("chunked")).unwrap().send().unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.read_to_vec(LIMIT).unwrap(), b"");
    drop(head);
    let mut get = s.get(&url).unwrap().send().unwrap();
    assert_eq!(
        get.connect_count(),
        0,
        "the connection was not reused after HEAD"
    );
    assert_eq!(get.read_to_vec(LIMIT).unwrap(), HELLO);

    let log = nginx.wait_log_lines(4);
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].method, "HEAD");
    assert_eq!(log[2].method, "HEAD");
    assert_eq!(log[0].bytes, 0);
    assert_eq!(log[1].method, "GET");
    assert_one_connection(&log);
}

#[test]
fn no_content_then_reuse() {
    let nginx = nginx();
    let s = session(&nginx);
    let mut resp = s
        .get(&nginx.http_url("status/204"))
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.read_to_vec(LIMIT).unwrap(), b"");
    drop(resp);
    // The 204 ended without a body, so the connection is idle in the pool before any read.
    assert_eq!(s.idle_connections(), 1);
    let mut next = s.get(&nginx.http_url("hello.txt")).unwrap().send().unwrap();
    assert_eq!(next.connect_count(), 0);
    assert_eq!(next.read_to_vec(LIMIT).unwrap(), HELLO);

    let log = nginx.wait_log_lines(2);
    assert_eq!((log[0].status, log[1].status), (204, 200));
    assert_one_connection(&log);
}

#[test]
fn conditional_get_gives_304_then_reuse() {
    let nginx = nginx();
    let s = session(&nginx);
    let url = nginx.http_url("hello.txt");
    let mut first = s.get(&url).unwrap().send().unwrap();
    let etag = first
        .headers()
        .get("etag")
        .expect("nginx sends an ETag for a static file")
        .clone();
    assert_eq!(first.read_to_vec(LIMIT).unwrap(), HELLO);

    let mut cond = s
        .get(&url)
        .unwrap()
        .header("if-none-match", etag)
        .send()
        .unwrap();
    assert_eq!(cond.status(), StatusCode::NOT_MODIFIED);
    // A 304 never has a body, whatever Content-Length it might carry (RFC 9112 §6.3 rule 1).
    assert_eq!(cond.read_to_vec(LIMIT).unwrap(), b"");
    drop(cond);

    let mut third = s
        .get(&url)
        .unwrap()
        .header("if-none-match", "\"not-the-etag\"")
        .send()
        .unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(third.connect_count(), 0);
    assert_eq!(third.read_to_vec(LIMIT).unwrap(), HELLO);

    let log = nginx.wait_log_lines(3);
    assert_eq!(
        log.iter().map(|l| l.status).collect::<Vec<_>>(),
        [200, 304, 200]
    );
    assert_one_connection(&log);
}

#[test]
fn not_found_body_is_read_and_the_connection_kept() {
    let nginx = nginx();
    let s = session(&nginx);
    for scheme_url in [nginx.http_url("status/404"), nginx.https_url("status/404")] {
        let mut resp = s.get(&scheme_url).unwrap().send().unwrap();
        // An error status is a response, not an `Err`.
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            String::from_utf8(resp.read_to_vec(LIMIT).unwrap()).unwrap(),
            "status 404\n"
        );
    }
    // nginx's own 404 page for a missing file: HTML, length-delimited.
    let mut missing = s
        .get(&nginx.http_url("no/such/file"))
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let page = String::from_utf8(missing.read_to_vec(LIMIT).unwrap()).unwrap();
    assert!(page.contains("404 Not Found"), "{page:?}");
    drop(missing);

    let log = nginx.wait_log_lines(3);
    assert!(log.iter().all(|l| l.status == 404), "{log:#?}");
    // The HTTP requests (first and third) shared one connection.
    let http: Vec<_> = log
        .iter()
        .filter(|l| l.server_port == nginx.port())
        .cloned()
        .collect();
    assert_eq!(http.len(), 2);
    assert_one_connection(&http);
}

#[test]
fn ipv6_loopback_when_available() {
    let nginx = nginx();
    let s = session(&nginx);
    // IPv4 is always checked, so this test asserts something on every machine.
    let mut v4 = s.get(&nginx.http_url("hello.txt")).unwrap().send().unwrap();
    assert_eq!(v4.read_to_vec(LIMIT).unwrap(), HELLO);

    let available = support::ipv6_loopback_available();
    assert_eq!(
        nginx.has_ipv6(),
        available,
        "nginx listens on [::1] exactly when the machine has IPv6 loopback"
    );
    if !available {
        eprintln!("no IPv6 loopback on this machine: only IPv4 was checked");
        return;
    }
    let url = nginx.http_url_v6("hello.txt");
    let mut v6 = s.get(&url).unwrap().send().unwrap();
    assert_eq!(v6.status(), StatusCode::OK);
    assert_eq!(v6.url().host_str(), Some("[::1]"));
    assert_eq!(
        v6.connect_count(),
        1,
        "[::1] is a different pool key from 127.0.0.1"
    );
    assert_eq!(v6.read_to_vec(LIMIT).unwrap(), HELLO);
    drop(v6);
    // The leaf has an IP SAN for ::1, so HTTPS by address verifies too.
    let tls_url = format!("https://[::1]:{}/hello.txt", nginx.tls_port());
    let mut v6s = s.get(&tls_url).unwrap().send().unwrap();
    assert_eq!(v6s.read_to_vec(LIMIT).unwrap(), HELLO);
    drop(v6s);
    let mut again = s.get(&url).unwrap().send().unwrap();
    assert_eq!(
        again.connect_count(),
        0,
        "the [::1] connection was not reused"
    );
    assert_eq!(again.read_to_vec(LIMIT).unwrap(), HELLO);

    let log = nginx.wait_log_lines(4);
    assert_eq!(log[1].host, format!("[::1]:{}", nginx.port()));
    assert_eq!(log[2].host, format!("[::1]:{}", nginx.tls_port()));
    assert!(log[2].ssl_protocol.starts_with("TLSv1."));
    assert_eq!(log[3].connection, log[1].connection);
    assert_eq!(log[3].connection_requests, 2);
    assert_ne!(log[1].connection, log[0].connection);
}

#[test]
fn request_headers_arrive_as_sent() {
    let nginx = nginx();
    let s = session(&nginx);
    let mut r = s
        .get(&nginx.http_url("echo/head?q=1"))
        .unwrap()
        .header("x-test", "one")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .header("user-agent", "custom-agent/1")
        .send()
        .unwrap();
    let head = String::from_utf8(r.read_to_vec(LIMIT).unwrap()).unwrap();
    assert!(
        head.starts_with("GET /echo/head?q=1 HTTP/1.1\r\n"),
        "{head:?}"
    );
    assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    let lines: Vec<&str> = head.trim_end().split("\r\n").skip(1).collect();
    let count = |name: &str| {
        lines
            .iter()
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .count()
    };
    // Exactly one Host and one User-Agent (the caller's replaces the default).
    assert_eq!(count("host"), 1, "{head:?}");
    assert_eq!(count("user-agent"), 1, "{head:?}");
    assert_eq!(count("x-multi"), 2, "{head:?}");
    assert_eq!(count("content-length"), 0, "a GET without body: {head:?}");
    let log = nginx.wait_log_lines(1);
    assert_eq!(log[0].user_agent, "custom-agent/1");
    assert_eq!(log[0].x_test, "one");
    assert_eq!(log[0].host, format!("127.0.0.1:{}", nginx.port()));
}
