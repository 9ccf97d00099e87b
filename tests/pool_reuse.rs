//! Connection reuse over real loopback sockets: sequential requests share a connection, an
//! unread body is drained when that is cheap and closes the connection when it is not, and one
//! session's connections are never used by another session.
//!
//! Reuse is observed on both sides: `Response::connect_count` and `Session::connections_opened`
//! on the client, `ScriptServer::connections_accepted` and the per-connection scripts on the
//! server (a script that answers two requests on one connection fails if the second request
//! arrives elsewhere).

mod support;

use ferry::{Session, DRAIN_LIMIT};
use std::time::Duration;
use support::{ScriptServer, Step};

const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";

fn session() -> Session {
    Session::builder()
        .receive_timeout(Duration::from_secs(2))
        .total_timeout(Some(Duration::from_secs(4)))
        .build()
        .expect("session")
}

/// GETs `path` and returns the body and the response's connect count.
fn get(session: &Session, server: &ScriptServer, path: &str) -> (Vec<u8>, u32) {
    let mut resp = session
        .get(&server.url(path))
        .expect("URL")
        .send()
        .expect("response");
    let body = resp.read_to_vec(16 << 20).expect("body");
    (body, resp.connect_count())
}

fn length_response(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn sequential_gets_share_one_connection() {
    let server = ScriptServer::start(vec![vec![
        Step::head_starts_with("GET /a HTTP/1.1\r\n"),
        Step::send(length_response(b"first")),
        Step::head_starts_with("GET /b HTTP/1.1\r\n"),
        Step::send(length_response(b"second")),
        Step::head_starts_with("GET /c HTTP/1.1\r\n"),
        Step::send(length_response(b"third")),
    ]]);
    let s = session();
    assert_eq!(get(&s, &server, "/a"), (b"first".to_vec(), 1));
    assert_eq!(s.idle_connections(), 1);
    assert_eq!(get(&s, &server, "/b"), (b"second".to_vec(), 0));
    assert_eq!(get(&s, &server, "/c"), (b"third".to_vec(), 0));
    assert_eq!(s.connections_opened(), 1);
    drop(s);
    assert_eq!(server.connections_accepted(), 1);
    server.finish().expect("server script");
}

#[test]
fn chunked_and_empty_bodies_keep_the_connection() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        Step::any_head(),
        Step::send("HTTP/1.1 204 No Content\r\n\r\n"),
        Step::any_head(),
        Step::send(SECOND),
    ]]);
    let s = session();
    assert_eq!(get(&s, &server, "/a"), (b"abc".to_vec(), 1));
    assert_eq!(get(&s, &server, "/b"), (b"".to_vec(), 0));
    assert_eq!(get(&s, &server, "/c"), (b"second".to_vec(), 0));
    drop(s);
    server.finish().expect("server script");
}

#[test]
fn dropped_response_with_small_unread_body_is_drained_and_reused() {
    let body = vec![b'a'; 100 * 1024];
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(length_response(&body)),
        Step::head_starts_with("GET /b HTTP/1.1\r\n"),
        Step::send(SECOND),
    ]]);
    let s = session();
    let resp = s
        .get(&server.url("/a"))
        .expect("URL")
        .send()
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    assert_eq!(s.idle_connections(), 1, "drained back to the pool");
    assert_eq!(get(&s, &server, "/b"), (b"second".to_vec(), 0));
    drop(s);
    assert_eq!(server.connections_accepted(), 1);
    server.finish().expect("server script");
}

#[test]
fn dropped_response_with_partly_read_body_is_drained_and_reused() {
    let body = vec![b'b'; 300 * 1024];
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(length_response(&body)),
        Step::any_head(),
        Step::send(SECOND),
    ]]);
    let s = session();
    let mut resp = s
        .get(&server.url("/a"))
        .expect("URL")
        .send()
        .expect("response");
    let mut buf = [0u8; 1000];
    std::io::Read::read_exact(&mut resp, &mut buf).expect("first bytes");
    drop(resp);
    assert_eq!(get(&s, &server, "/b"), (b"second".to_vec(), 0));
    drop(s);
    server.finish().expect("server script");
}

#[test]
fn dropped_response_with_small_unread_chunked_body_is_drained_and_reused() {
    let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        reply.extend_from_slice(b"400\r\n");
        reply.extend_from_slice(&[b'c'; 0x400]);
        reply.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(reply),
        Step::any_head(),
        Step::send(SECOND),
    ]]);
    let s = session();
    drop(
        s.get(&server.url("/a"))
            .expect("URL")
            .send()
            .expect("response"),
    );
    assert_eq!(get(&s, &server, "/b"), (b"second".to_vec(), 0));
    drop(s);
    server.finish().expect("server script");
}

#[test]
fn dropped_response_with_large_unread_body_closes_the_connection() {
    let announced = 4 * 1024 * 1024;
    assert!(announced > DRAIN_LIMIT);
    // Only the head is sent: the client must decide from Content-Length alone, without
    // reading (or waiting for) 4 MiB.
    let server = ScriptServer::start(vec![
        vec![
            Step::any_head(),
            Step::send(format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n"
            )),
            Step::ReadToEof,
        ],
        vec![
            Step::head_starts_with("GET /b HTTP/1.1\r\n"),
            Step::send(SECOND),
        ],
    ]);
    let s = session();
    let start = std::time::Instant::now();
    drop(
        s.get(&server.url("/a"))
            .expect("URL")
            .send()
            .expect("response"),
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "dropping did not wait for the body"
    );
    assert_eq!(s.idle_connections(), 0);
    assert_eq!(get(&s, &server, "/b"), (b"second".to_vec(), 1));
    assert_eq!(s.connections_opened(), 2);
    drop(s);
    assert_eq!(server.connections_accepted(), 2);
    server.finish().expect("server script");
}

#[test]
fn dropped_close_delimited_response_closes_the_connection() {
    let server = ScriptServer::start(vec![
        vec![
            Step::any_head(),
            Step::send("HTTP/1.1 200 OK\r\n\r\nuntil the close"),
            Step::ReadToEof,
        ],
        vec![Step::any_head(), Step::send(SECOND)],
    ]);
    let s = session();
    drop(
        s.get(&server.url("/a"))
            .expect("URL")
            .send()
            .expect("response"),
    );
    assert_eq!(get(&s, &server, "/b"), (b"second".to_vec(), 1));
    drop(s);
    server.finish().expect("server script");
}

#[test]
fn sessions_do_not_share_connections() {
    let server = ScriptServer::start(vec![
        // Session A's connection: A's first and third requests.
        vec![
            Step::head_starts_with("GET /a1 HTTP/1.1\r\n"),
            Step::send(length_response(b"a1")),
            Step::head_starts_with("GET /a2 HTTP/1.1\r\n"),
            Step::send(length_response(b"a2")),
        ],
        // Session B's own connection, although A's sits idle for the same origin.
        vec![
            Step::head_starts_with("GET /b1 HTTP/1.1\r\n"),
            Step::send(length_response(b"b1")),
            Step::head_starts_with("GET /b2 HTTP/1.1\r\n"),
            Step::send(length_response(b"b2")),
        ],
    ]);
    let a = session();
    let b = session();
    assert_eq!(get(&a, &server, "/a1"), (b"a1".to_vec(), 1));
    assert_eq!(a.idle_connections(), 1);
    assert_eq!(b.idle_connections(), 0);
    assert_eq!(get(&b, &server, "/b1"), (b"b1".to_vec(), 1));
    assert_eq!(get(&a, &server, "/a2"), (b"a2".to_vec(), 0));
    assert_eq!(get(&b, &server, "/b2"), (b"b2".to_vec(), 0));
    assert_eq!(a.connections_opened(), 1);
    assert_eq!(b.connections_opened(), 1);
    drop(a);
    drop(b);
    assert_eq!(server.connections_accepted(), 2);
    server.finish().expect("server script");
}

#[test]
fn session_clones_share_the_pool() {
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(length_response(b"one")),
        Step::any_head(),
        Step::send(length_response(b"two")),
    ]]);
    let s = session();
    let clone = s.clone();
    assert_eq!(get(&s, &server, "/1"), (b"one".to_vec(), 1));
    assert_eq!(get(&clone, &server, "/2"), (b"two".to_vec(), 0));
    drop(s);
    drop(clone);
    server.finish().expect("server script");
}

#[test]
fn close_idle_empties_the_pool() {
    let server = ScriptServer::start(vec![
        vec![Step::any_head(), Step::send(length_response(b"one"))],
        vec![Step::any_head(), Step::send(length_response(b"two"))],
    ]);
    let s = session();
    assert_eq!(get(&s, &server, "/1"), (b"one".to_vec(), 1));
    assert_eq!(s.idle_connections(), 1);
    s.close_idle();
    assert_eq!(s.idle_connections(), 0);
    assert_eq!(get(&s, &server, "/2"), (b"two".to_vec(), 1));
    drop(s);
    server.finish().expect("server script");
}

#[test]
fn requested_connection_close_is_not_reused() {
    let server = ScriptServer::start(vec![
        vec![
            Step::head_contains(&["\r\nconnection: close\r\n"]),
            Step::send(length_response(b"one")),
            Step::ReadToEof,
        ],
        vec![Step::any_head(), Step::send(length_response(b"two"))],
    ]);
    let s = session();
    let mut resp = s
        .get(&server.url("/1"))
        .expect("URL")
        .header("Connection", "close")
        .send()
        .expect("response");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"one");
    drop(resp);
    assert_eq!(s.idle_connections(), 0);
    assert_eq!(get(&s, &server, "/2"), (b"two".to_vec(), 1));
    drop(s);
    server.finish().expect("server script");
}

#[test]
fn unsolicited_bytes_on_an_idle_connection_prevent_reuse() {
    // The bytes arrive after the response was complete and the connection went back to the
    // pool: the liveness check at checkout must see them.
    let server = ScriptServer::start(vec![
        vec![
            Step::any_head(),
            Step::send(length_response(b"one")),
            Step::sleep_ms(50),
            Step::send("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle"),
            Step::sleep_ms(400),
        ],
        vec![Step::any_head(), Step::send(length_response(b"two"))],
    ]);
    let s = session();
    assert_eq!(get(&s, &server, "/1"), (b"one".to_vec(), 1));
    assert_eq!(s.idle_connections(), 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&s, &server, "/2"), (b"two".to_vec(), 1));
    drop(s);
    assert_eq!(server.connections_accepted(), 2);
    server.finish().expect("server script");
}
