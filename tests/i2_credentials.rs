//! Invariant I2: server credentials go only to the origin (scheme, host, port) they were given
//! for. Redirects between real nginx servers with Basic authentication on both for the same
//! account: credentials given for A never reach B, another port, another host name for the same
//! server, or plain HTTP after HTTPS; once a request has left A's origin they are not restored on
//! a hop back to A; only `location_trusted` lets them follow. Each server's access log shows what
//! arrived (`$http_authorization`, `$remote_user`).
//!
//! Server B is started first; server A's redirects point at B. For hops back from B to A, B has a
//! `/bounce?to=URL` location that redirects to its query (as in `test_05_redirects.rs`).

mod support;

use ferry::{Credentials, RedirectPolicy, SchemeSet, Session, StatusCode};
use support::{LogLine, Nginx, NginxOptions};

const LIMIT: u64 = 1 << 20;
const USER: &str = "alice";
const PASSWORD: &str = "Wonder-land";
/// What nginx logs for alice's preemptive Basic header.
const ALICE_BASIC: &str = "Basic YWxpY2U6V29uZGVyLWxhbmQ=";

/// Redirects to the `to` query argument, as given.
const BOUNCE_CONF: &str = "location = /bounce { return 302 $arg_to; }";

fn session() -> Session {
    session_with(Session::builder())
}

fn session_with(b: ferry::SessionBuilder) -> Session {
    let pki = support::pki();
    b.add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .build()
        .unwrap()
}

fn protected() -> NginxOptions {
    NginxOptions::new().basic_auth("/basic/", "ferry", &[(USER, PASSWORD)])
}

/// Server B: Basic on `/basic/` for the same account, and `/bounce`.
fn server_b() -> Nginx {
    Nginx::start(protected().server_conf(BOUNCE_CONF))
}

/// Server A: Basic on `/basic/`, and redirects:
/// - `/to-b`: B by IP (same host, another port); `/to-b-name`: B as `localhost`;
/// - `/to-self`: A's own `/basic/echo` (same origin); `/to-self-name`: A as `localhost`;
/// - `/to-b-and-back`: B's `/bounce`, which sends the client back to A's `/basic/echo`;
/// - `/down` (on HTTPS): `http://localhost:PORT/basic/echo` (same host name, plain HTTP).
fn server_a(b: &Nginx) -> Nginx {
    let back = "http://127.0.0.1:@PORT@/basic/echo";
    Nginx::start(
        protected()
            .redirect("/to-b", 302, &b.http_url("/basic/echo"))
            .redirect(
                "/to-b-name",
                302,
                &format!("http://localhost:{}/basic/echo", b.port()),
            )
            .redirect("/to-self", 302, "@HTTP@/basic/echo")
            .redirect("/to-self-name", 302, "http://localhost:@PORT@/basic/echo")
            .redirect(
                "/to-b-and-back",
                302,
                &format!("{}?to={back}", b.http_url("/bounce")),
            )
            .redirect("/down", 302, "http://localhost:@PORT@/basic/echo"),
    )
}

/// The log lines for `uri`.
fn lines_for<'a>(log: &'a [LogLine], uri: &str) -> Vec<&'a LogLine> {
    log.iter().filter(|l| l.uri == uri).collect()
}

fn assert_no_credentials(l: &LogLine) {
    assert_eq!(
        (l.authorization.as_str(), l.remote_user.as_str(), l.status),
        ("", "", 401),
        "credentials crossed an origin: {l:#?}"
    );
}

fn assert_alice(l: &LogLine) {
    assert_eq!(
        (l.authorization.as_str(), l.remote_user.as_str(), l.status),
        (ALICE_BASIC, USER, 200),
        "{l:#?}"
    );
}

/// GETs `url` as alice with `schemes`, following redirects (`trusted`: with `location_trusted`,
/// otherwise the session's setting); returns status, final URL, body.
fn get_as_alice(
    s: &Session,
    url: &str,
    schemes: SchemeSet,
    trusted: bool,
) -> (StatusCode, String, String) {
    let mut req = s
        .get(url)
        .unwrap()
        .credentials(Credentials::new(USER, PASSWORD), schemes);
    if trusted {
        req = req.location_trusted(true);
    }
    let r = req.send().unwrap();
    let status = r.status();
    let url = r.url().to_string();
    (status, url, r.text(LIMIT).unwrap())
}

#[test]
fn same_origin_redirect_keeps_the_credentials() {
    let b = server_b();
    let a = server_a(&b);
    let s = session();
    let (status, url, body) = get_as_alice(&s, &a.http_url("/to-self"), SchemeSet::BASIC, false);
    assert_eq!((status, body.as_str()), (StatusCode::OK, USER));
    assert_eq!(url, a.http_url("/basic/echo"));
    let log = a.wait_log_lines(2);
    assert_eq!(log[0].authorization, ALICE_BASIC, "{log:#?}");
    assert_alice(lines_for(&log, "/basic/echo")[0]);
}

#[test]
fn credentials_do_not_follow_to_another_port_or_host() {
    let b = server_b();
    let a = server_a(&b);
    let s = session();
    // Preemptive Basic and challenge-driven (--anyauth): B's 401 challenge is not answered.
    let cases = [
        ("/to-b", SchemeSet::BASIC),
        ("/to-b", SchemeSet::ANY),
        ("/to-b-name", SchemeSet::BASIC),
        ("/to-b-name", SchemeSet::ANY),
    ];
    for (i, (path, schemes)) in cases.into_iter().enumerate() {
        let (status, url, _) = get_as_alice(&s, &a.http_url(path), schemes, false);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {schemes:?}");
        assert!(url.ends_with(&format!(":{}/basic/echo", b.port())), "{url}");
        let log_b = b.wait_log_lines(i + 1);
        assert_eq!(log_b.len(), i + 1, "one request per case at B: {log_b:#?}");
        assert_no_credentials(&log_b[i]);
    }
    // A (whose redirect locations are open) got them preemptively from the two Basic cases and
    // never challenged the --anyauth ones.
    let log_a = a.wait_log_lines(4);
    let sent: Vec<&str> = log_a.iter().map(|l| l.authorization.as_str()).collect();
    assert_eq!(sent, [ALICE_BASIC, "", ALICE_BASIC, ""], "{log_a:#?}");
}

#[test]
fn credentials_do_not_follow_to_another_host_name_for_the_same_server() {
    // 127.0.0.1:PORT and localhost:PORT are the same nginx but different origins.
    let b = server_b();
    let a = server_a(&b);
    let s = session();
    let (status, url, _) = get_as_alice(&s, &a.http_url("/to-self-name"), SchemeSet::BASIC, false);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(url, format!("http://localhost:{}/basic/echo", a.port()));
    let log = a.wait_log_lines(2);
    assert_eq!(log[0].authorization, ALICE_BASIC, "{log:#?}");
    assert_no_credentials(lines_for(&log, "/basic/echo")[0]);
}

#[test]
fn credentials_are_not_restored_when_a_redirect_returns_to_their_origin() {
    let b = server_b();
    let a = server_a(&b);
    let s = session();
    for schemes in [SchemeSet::BASIC, SchemeSet::ANY] {
        let (status, url, _) = get_as_alice(&s, &a.http_url("/to-b-and-back"), schemes, false);
        assert_eq!(url, a.http_url("/basic/echo"), "{schemes:?}");
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{schemes:?}: credentials were restored on the return to their origin"
        );
    }
    let log_b = b.wait_log_lines(2);
    for l in &log_b {
        assert!(l.uri.starts_with("/bounce?"), "{l:#?}");
        assert_eq!(l.authorization, "", "{l:#?}");
    }
    // A bearer token neither.
    let r = s
        .get(&a.http_url("/to-b-and-back"))
        .unwrap()
        .bearer_auth("tok-123")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let log_a = a.wait_log_lines(6);
    let first: Vec<&str> = lines_for(&log_a, "/to-b-and-back")
        .iter()
        .map(|l| l.authorization.as_str())
        .collect();
    assert_eq!(first, [ALICE_BASIC, "", "Bearer tok-123"], "{log_a:#?}");
    let back = lines_for(&log_a, "/basic/echo");
    assert_eq!(back.len(), 3, "{log_a:#?}");
    for l in back {
        assert_no_credentials(l);
    }
}

#[test]
fn https_to_http_redirect_does_not_carry_credentials() {
    let b = server_b();
    let a = server_a(&b);
    let s = session_with(Session::builder().redirect_policy(RedirectPolicy::Always));
    let (status, url, _) = get_as_alice(&s, &a.https_url("/down"), SchemeSet::BASIC, false);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(url, format!("http://localhost:{}/basic/echo", a.port()));
    let log = a.wait_log_lines(2);
    assert_eq!(
        (
            log[0].authorization.as_str(),
            log[0].ssl_protocol.is_empty()
        ),
        (ALICE_BASIC, false),
        "the HTTPS hop had them: {log:#?}"
    );
    let plain = lines_for(&log, "/basic/echo")[0];
    assert!(plain.ssl_protocol.is_empty(), "{plain:#?}");
    assert_no_credentials(plain);

    // The default policy does not follow the downgrade at all.
    let (status, url, _) = get_as_alice(&session(), &a.https_url("/down"), SchemeSet::BASIC, false);
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(url, a.https_url("/down"));
}

#[test]
fn session_credentials_stay_with_the_origin_of_each_request() {
    let b = server_b();
    let a = server_a(&b);
    let s = session_with(
        Session::builder().credentials(Credentials::new(USER, PASSWORD), SchemeSet::BASIC),
    );
    let r = s.get(&a.http_url("/to-b")).unwrap().send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_no_credentials(&b.wait_log_lines(1)[0]);
    // A request whose first URL is B's gets them at B: they are the session's, per request.
    let r = s.get(&b.http_url("/basic/echo")).unwrap().send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_alice(&b.wait_log_lines(2)[1]);
}

#[test]
fn bearer_token_does_not_follow_to_another_origin() {
    let b = server_b();
    let a = server_a(&b);
    let s = session();
    let r = s
        .get(&a.http_url("/to-b"))
        .unwrap()
        .bearer_auth("tok-123")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(a.wait_log_lines(1)[0].authorization, "Bearer tok-123");
    assert_eq!(b.wait_log_lines(1)[0].authorization, "");
}

#[test]
fn location_trusted_lets_credentials_follow() {
    let b = server_b();
    let a = server_a(&b);
    let s = session();
    for path in ["/to-b", "/to-b-name"] {
        let (status, url, body) = get_as_alice(&s, &a.http_url(path), SchemeSet::BASIC, true);
        assert_eq!((status, body.as_str()), (StatusCode::OK, USER), "{path}");
        assert!(url.ends_with(&format!(":{}/basic/echo", b.port())), "{url}");
    }
    for l in b.wait_log_lines(2) {
        assert_alice(&l);
    }
    // A → B → A: trusted credentials go everywhere, the return included.
    let (status, _, body) = get_as_alice(&s, &a.http_url("/to-b-and-back"), SchemeSet::BASIC, true);
    assert_eq!((status, body.as_str()), (StatusCode::OK, USER));
    let log_b = b.wait_log_lines(3);
    assert_eq!(log_b[2].authorization, ALICE_BASIC, "{log_b:#?}");
    // Session-wide trust works too.
    let s = session_with(Session::builder().location_trusted(true));
    let (status, _, body) = get_as_alice(&s, &a.http_url("/to-b"), SchemeSet::ANY, false);
    assert_eq!((status, body.as_str()), (StatusCode::OK, USER));
}
