//! I6 (caller input cannot inject), end to end: CR, LF or NUL in a method, header name, header
//! value or URL is an error before a byte is sent. Each refusal is checked on both sides: the
//! client's error kind, no `Connecting` / `RequestHead` event, and a scripted loopback server
//! that saw no connection. The same session then sends a valid request to the same server, which
//! shows that the server was there to receive the bytes had any been sent.
//!
//! Input that the URL parser or the `http` types turn into something harmless (percent-encoding,
//! a caller `Host` the encoder replaces) is checked on the wire instead: the server must see
//! exactly one request line and one `Host`, and no injected field.

mod support;

use ferry::{ErrorKind, Event, HeaderMap, HeaderValue, Method, Session, Url};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{ScriptServer, Step};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// What reached the wire, seen from the client: connects attempted and request heads sent.
#[derive(Default)]
struct Wire {
    connecting: usize,
    heads: Vec<Vec<u8>>,
}

fn session_with_wire() -> (Session, Arc<Mutex<Wire>>) {
    let wire = Arc::new(Mutex::new(Wire::default()));
    let sink = Arc::clone(&wire);
    let session = Session::builder()
        .receive_timeout(Duration::from_secs(2))
        .total_timeout(Some(Duration::from_secs(4)))
        .on_event(Arc::new(move |e: &Event<'_>| {
            let mut w = sink.lock().unwrap();
            match e {
                Event::Connecting { .. } => w.connecting += 1,
                Event::RequestHead(h) => w.heads.push(h.to_vec()),
                _ => {}
            }
        }))
        .build()
        .expect("session");
    (session, wire)
}

/// Runs `attempt` (which must fail with `kind` without sending anything) against a server that
/// then receives one valid request from the same session.
fn refused_before_sending(
    kind: ErrorKind,
    attempt: impl FnOnce(&Session, &ScriptServer) -> Result<ferry::Response, ferry::Error>,
) {
    let server = ScriptServer::start(vec![vec![
        Step::head_starts_with("GET /valid HTTP/1.1\r\n"),
        Step::send(OK),
    ]]);
    let (session, wire) = session_with_wire();
    match attempt(&session, &server) {
        Ok(resp) => panic!("the request was sent: {resp:?}"),
        Err(e) => assert_eq!(e.kind(), kind, "{e:?}"),
    }
    // A connection would have been accepted by now; give the acceptor a moment to count it.
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(server.connections_accepted(), 0, "no connection is made");
    {
        let w = wire.lock().unwrap();
        assert_eq!(w.connecting, 0, "no connect attempt");
        assert!(w.heads.is_empty(), "no request head");
    }
    assert_eq!(server.received(0), b"", "the server received no byte");

    let mut resp = session
        .get(&server.url("/valid"))
        .expect("valid URL")
        .send()
        .expect("the valid request goes through");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"ok");
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

/// Sends one request and returns the head the server received (with the body, if any).
fn received_head(
    send: impl FnOnce(&Session, &ScriptServer) -> Result<ferry::Response, ferry::Error>,
) -> String {
    let server = ScriptServer::start(vec![vec![Step::any_head(), Step::send(OK)]]);
    let (session, _) = session_with_wire();
    let mut resp = send(&session, &server).expect("the request is sent");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"ok");
    drop(resp);
    drop(session);
    let head = String::from_utf8_lossy(&server.received(0)).into_owned();
    server.finish().expect("server script");
    head
}

/// The head's lines up to the blank line.
fn lines(head: &str) -> Vec<&str> {
    head.split("\r\n").take_while(|l| !l.is_empty()).collect()
}

fn count_lines_starting(head: &str, prefix: &str) -> usize {
    lines(head)
        .iter()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        })
        .count()
}

const BAD_BYTES: [(&str, &str); 5] = [
    ("cr", "\r"),
    ("lf", "\n"),
    ("crlf", "\r\n"),
    ("nul", "\0"),
    ("crlf_field", "\r\nX-Injected: yes"),
];

// ---------------------------------------------------------------------------------------------
// Methods.

#[test]
fn method_with_cr_lf_nul_cannot_be_built() {
    for (what, bad) in BAD_BYTES {
        for m in [
            format!("GET{bad}"),
            format!("G{bad}ET"),
            format!("{bad}GET"),
            format!("GET / HTTP/1.1{bad}"),
        ] {
            assert!(
                Method::from_bytes(m.as_bytes()).is_err(),
                "{what}: {m:?} became a method"
            );
        }
    }
    for m in ["GET /x", "GET\t", "", "G:T", "GET\x7f"] {
        assert!(Method::from_bytes(m.as_bytes()).is_err(), "{m:?}");
    }
}

#[test]
fn extension_method_is_sent_as_is() {
    let method = Method::from_bytes(b"PURGE").expect("a token");
    let head = received_head(|s, srv| s.request(method, &srv.url("/p"))?.send());
    assert!(head.starts_with("PURGE /p HTTP/1.1\r\n"), "{head}");
}

#[test]
fn method_of_every_tchar_is_sent_as_is() {
    let token = "!#$%&'*+-.^_`|~09AZaz";
    let method = Method::from_bytes(token.as_bytes()).expect("a token");
    let head = received_head(|s, srv| s.request(method, &srv.url("/"))?.send());
    assert!(
        head.starts_with(&format!("{token} / HTTP/1.1\r\n")),
        "{head}"
    );
}

// ---------------------------------------------------------------------------------------------
// Header names and values.

#[test]
fn header_name_with_cr_lf_nul_is_refused() {
    for (_, bad) in BAD_BYTES {
        for name in [format!("X-A{bad}"), format!("X{bad}A"), format!("{bad}X-A")] {
            refused_before_sending(ErrorKind::InvalidInput, |s, srv| {
                s.get(&srv.url("/h"))?.header(name.as_str(), "v").send()
            });
        }
    }
}

#[test]
fn header_name_not_a_token_is_refused() {
    for name in ["X A", "X:A", "", "X\tA", "X(A)", "X\u{e9}"] {
        refused_before_sending(ErrorKind::InvalidInput, |s, srv| {
            s.get(&srv.url("/h"))?.header(name, "v").send()
        });
    }
}

#[test]
fn header_value_with_cr_lf_nul_is_refused() {
    for (_, bad) in BAD_BYTES {
        for value in [format!("v{bad}"), format!("a{bad}b"), format!("{bad}v")] {
            refused_before_sending(ErrorKind::InvalidInput, |s, srv| {
                s.get(&srv.url("/h"))?.header("X-A", value.as_str()).send()
            });
            // The same bytes through `HeaderValue::from_bytes`.
            refused_before_sending(ErrorKind::InvalidInput, |s, srv| {
                s.get(&srv.url("/h"))?
                    .header("X-A", value.as_bytes())
                    .send()
            });
        }
    }
}

#[test]
fn header_value_with_other_controls_is_refused() {
    for value in ["a\x01b", "a\x1bb", "a\x7fb", "\x0b"] {
        refused_before_sending(ErrorKind::InvalidInput, |s, srv| {
            s.get(&srv.url("/h"))?.header("X-A", value).send()
        });
    }
}

#[test]
fn invalid_header_among_valid_ones_is_refused() {
    refused_before_sending(ErrorKind::InvalidInput, |s, srv| {
        s.get(&srv.url("/h"))?
            .header("X-Ok", "1")
            .header("X-Bad", "a\r\nX-Injected: yes")
            .header("X-Ok-Too", "2")
            .send()
    });
}

#[test]
fn header_value_types_cannot_hold_cr_lf_nul() {
    for (_, bad) in BAD_BYTES {
        assert!(HeaderValue::from_str(&format!("a{bad}b")).is_err());
        assert!(HeaderValue::from_bytes(format!("a{bad}b").as_bytes()).is_err());
    }
}

#[test]
fn user_agent_with_crlf_fails_at_build() {
    for (_, bad) in BAD_BYTES {
        let err = Session::builder()
            .user_agent(format!("agent{bad}X-Injected: yes"))
            .build()
            .expect_err("a user agent with control bytes");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn tab_and_obs_text_in_values_are_sent_as_is() {
    let head = received_head(|s, srv| {
        s.get(&srv.url("/"))?
            .header("X-Tab", "a\tb")
            .header("X-Obs", &b"caf\xe9"[..])
            .send()
    });
    assert!(head.contains("\r\nx-tab: a\tb\r\n"), "{head}");
    assert!(head.contains("\r\nx-obs: caf\u{fffd}\r\n"), "{head}");
    assert_eq!(lines(&head).len(), 6, "{head}");
}

// ---------------------------------------------------------------------------------------------
// Host and framing fields the caller may not set.

#[test]
fn host_override_with_crlf_is_refused() {
    for (_, bad) in BAD_BYTES {
        refused_before_sending(ErrorKind::InvalidInput, |s, srv| {
            s.get(&srv.url("/h"))?
                .header("Host", format!("evil.example{bad}X-Injected: yes").as_str())
                .send()
        });
    }
}

#[test]
fn host_override_is_replaced_by_the_url_authority() {
    let mut port = 0;
    let head = received_head(|s, srv| {
        port = srv.port();
        s.get(&srv.url("/h"))?
            .header("Host", "evil.example")
            .header("host", "evil2.example:81")
            .send()
    });
    assert_eq!(count_lines_starting(&head, "host:"), 1, "{head}");
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
    assert!(!head.contains("evil"), "{head}");
}

#[test]
fn host_override_through_headers_map_is_replaced() {
    let mut map = HeaderMap::new();
    map.insert("host", HeaderValue::from_static("evil.example"));
    let mut port = 0;
    let head = received_head(|s, srv| {
        port = srv.port();
        s.get(&srv.url("/h"))?.headers(map).send()
    });
    assert_eq!(count_lines_starting(&head, "host:"), 1, "{head}");
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
}

#[test]
fn caller_framing_fields_cannot_smuggle_a_body() {
    // A caller's Content-Length / Transfer-Encoding would desynchronise the server from the
    // bytes actually sent; the encoder writes framing from the body alone.
    let server = ScriptServer::start(vec![vec![
        Step::head(|h| {
            let framing = count_lines_starting(h, "content-length:")
                + count_lines_starting(h, "transfer-encoding:");
            if framing == 1 && h.contains("\r\nContent-Length: 5\r\n") {
                Ok(())
            } else {
                Err("framing not from the body".to_owned())
            }
        }),
        Step::expect("hello"),
        Step::send(OK),
    ]]);
    let (session, _) = session_with_wire();
    let mut resp = session
        .post(&server.url("/p"))
        .expect("URL")
        .header("Content-Length", "100")
        .header("Transfer-Encoding", "chunked")
        .body("hello")
        .send()
        .expect("sent");
    assert_eq!(resp.read_to_vec(100).expect("body"), b"ok");
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}

// ---------------------------------------------------------------------------------------------
// URLs.

#[test]
fn url_with_cr_lf_nul_in_path_is_refused() {
    for (_, bad) in BAD_BYTES {
        refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
            s.get(&format!("{}{bad}", srv.url("/a")))?.send()
        });
        refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
            s.get(&srv.url(&format!("/a{bad}b")))?.send()
        });
    }
}

#[test]
fn url_with_crlf_then_field_is_refused() {
    refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
        s.get(&format!("http://127.0.0.1:{}/a\r\nX: y", srv.port()))?
            .send()
    });
    refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
        s.get(&format!(
            "http://127.0.0.1:{}/a HTTP/1.1\r\nHost: evil\r\n\r\nGET /b",
            srv.port()
        ))?
        .send()
    });
}

#[test]
fn url_with_cr_lf_nul_in_query_fragment_host_is_refused() {
    for (_, bad) in BAD_BYTES {
        refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
            s.get(&format!("{}?q={bad}", srv.url("/a")))?.send()
        });
        refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
            s.get(&format!("{}#f{bad}", srv.url("/a")))?.send()
        });
        refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
            s.get(&format!("http://127.0.0.1{bad}:{}/", srv.port()))?
                .send()
        });
        refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
            s.get(&format!("http://127.0.0.1:{}{bad}/", srv.port()))?
                .send()
        });
    }
}

#[test]
fn url_with_tab_is_refused_not_stripped() {
    // The URL standard strips tabs and newlines silently; ferry refuses them instead.
    refused_before_sending(ErrorKind::InvalidUrl, |s, srv| {
        s.get(&srv.url("/a\tb"))?.send()
    });
}

#[test]
fn url_odd_forms_are_refused() {
    refused_before_sending(ErrorKind::InvalidUrl, |s, _| s.get("http://h/\0")?.send());
    refused_before_sending(ErrorKind::InvalidUrl, |s, _| {
        s.get("file:///etc/passwd")?.send()
    });
    refused_before_sending(ErrorKind::InvalidUrl, |s, _| {
        s.get("http://a%0d%0ab/")?.send()
    });
}

#[test]
fn percent_encoded_crlf_stays_encoded() {
    let head = received_head(|s, srv| {
        s.get(&srv.url("/a%0d%0aX-Injected:%20yes?q=%0D%0A%00"))?
            .send()
    });
    assert!(
        head.starts_with("GET /a%0d%0aX-Injected:%20yes?q=%0D%0A%00 HTTP/1.1\r\n"),
        "{head}"
    );
    assert_eq!(count_lines_starting(&head, "x-injected"), 0, "{head}");
}

#[test]
fn space_and_non_ascii_in_url_are_percent_encoded() {
    let head = received_head(|s, srv| s.get(&srv.url("/a b/\u{e9}?q=x y"))?.send());
    assert!(
        head.starts_with("GET /a%20b/%C3%A9?q=x%20y HTTP/1.1\r\n"),
        "{head}"
    );
}

#[test]
fn parsed_url_cannot_carry_raw_control_bytes() {
    // `request_url` takes a `Url` the caller parsed: the URL parser strips CR, LF and tab and
    // percent-encodes NUL, so nothing raw reaches the request line.
    let head = received_head(|s, srv| {
        let url = Url::parse(&format!("{}\r\nX-Injected: yes\0", srv.url("/a"))).expect("parses");
        s.request_url(Method::GET, url).send()
    });
    let first = lines(&head)[0].to_owned();
    assert!(first.starts_with("GET /a"), "{head}");
    assert!(first.ends_with(" HTTP/1.1"), "{head}");
    assert!(
        first
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) || b == b' '),
        "{first:?}"
    );
    assert_eq!(count_lines_starting(&head, "x-injected"), 0, "{head}");
}

#[test]
fn userinfo_never_reaches_the_wire() {
    // User information in a URL is refused before anything is sent (it would otherwise be
    // dropped silently); encoded CR/LF in it changes nothing.
    let server = ScriptServer::start(vec![]);
    let (session, _) = session_with_wire();
    let e = session
        .get(&format!(
            "http://user:pa%0d%0ass@127.0.0.1:{}/",
            server.port()
        ))
        .unwrap()
        .send()
        .unwrap_err();
    assert_eq!(e.kind(), ferry::ErrorKind::InvalidUrl, "{e}");
    drop(session);
    server.finish().expect("no connection was made");
}

// ---------------------------------------------------------------------------------------------
// Server-supplied input: a redirect target cannot inject either.

#[test]
fn redirect_location_with_encoded_crlf_stays_encoded() {
    let server = ScriptServer::start(vec![vec![
        Step::head_starts_with("GET /from HTTP/1.1\r\n"),
        Step::send(
            "HTTP/1.1 302 Found\r\nLocation: /to%0d%0aX-Injected:%20yes\r\nContent-Length: 0\r\n\r\n",
        ),
        Step::head(|h| {
            if h.starts_with("GET /to%0d%0aX-Injected:%20yes HTTP/1.1\r\n")
                && !h.to_lowercase().contains("\r\nx-injected")
            {
                Ok(())
            } else {
                Err("redirect target not sent encoded".to_owned())
            }
        }),
        Step::send(OK),
    ]]);
    let (session, _) = session_with_wire();
    let mut resp = session
        .get(&server.url("/from"))
        .expect("URL")
        .send()
        .expect("redirect followed");
    assert_eq!(resp.redirect_count(), 1);
    assert_eq!(resp.read_to_vec(100).expect("body"), b"ok");
    drop(resp);
    drop(session);
    server.finish().expect("server script");
}
