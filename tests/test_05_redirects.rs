//! Redirects between two real nginx servers on different ports (so different origins): which
//! headers follow a hop (checked in each server's access log), method rewriting, the redirect
//! policies, the hop limit, loops, and the https → http downgrade.
//!
//! Server B is started first; server A's redirects point at B's URLs. For hops back from B to A,
//! B has a `/bounce?to=URL` location that redirects to its query (written here with
//! `server_conf`; the harness has no such location).

mod support;

use ferry::{ErrorKind, Method, RedirectPolicy, Session, StatusCode};
use support::{LogLine, Nginx, NginxOptions};

const LIMIT: u64 = 1 << 20;
const FINAL: &[u8] = b"final\n";

/// Redirects to the `to` query argument, as given (nginx does not decode `$arg_*`).
const BOUNCE_CONF: &str = "location = /bounce { return 302 $arg_to; }";

fn session() -> Session {
    let pki = support::pki();
    Session::builder()
        .add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .build()
        .unwrap()
}

/// Server B: the far side of cross-origin hops.
fn server_b() -> Nginx {
    Nginx::start(
        NginxOptions::new()
            .file("final.txt", FINAL)
            .server_conf(BOUNCE_CONF),
    )
}

fn with_credentials(req: ferry::RequestBuilder) -> ferry::RequestBuilder {
    req.header("authorization", "Basic dXNlcjpwYXNz")
        .header("cookie", "session=abc")
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("x-test", "kept")
}

fn assert_credentials(l: &LogLine, present: bool) {
    let got = (
        l.authorization.as_str(),
        l.cookie.as_str(),
        l.proxy_authorization.as_str(),
    );
    if present {
        // A caller's Proxy-Authorization never reaches an origin (I3), even the first one.
        assert_eq!(got, ("Basic dXNlcjpwYXNz", "session=abc", ""), "{l:#?}");
    } else {
        assert_eq!(got, ("", "", ""), "credentials crossed origins: {l:#?}");
    }
    assert_eq!(l.x_test, "kept", "a custom header was lost: {l:#?}");
}

#[test]
fn cross_origin_redirect_drops_credentials_but_keeps_other_headers() {
    let b = server_b();
    let a = Nginx::start(NginxOptions::new().redirect("/go", 302, &b.http_url("final.txt")));
    let s = session();
    let mut r = with_credentials(s.get(&a.http_url("go")).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.url().as_str(), b.http_url("final.txt"));
    assert_eq!(r.redirect_count(), 1);
    assert_eq!(r.connect_count(), 2);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);

    let la = a.wait_log_lines(1);
    assert_eq!((la[0].uri.as_str(), la[0].status), ("/go", 302));
    assert_credentials(&la[0], true);
    let lb = b.wait_log_lines(1);
    assert_eq!((lb[0].uri.as_str(), lb[0].status), ("/final.txt", 200));
    assert_credentials(&lb[0], false);
    assert_eq!(lb[0].host, format!("127.0.0.1:{}", b.port()));
}

#[test]
fn same_origin_redirect_keeps_credentials_and_the_connection() {
    let a = Nginx::start(
        NginxOptions::new()
            .file("final.txt", FINAL)
            .redirect("/abs", 302, "@HTTP@/final.txt")
            .redirect("/rel", 301, "/final.txt")
            .server_conf("absolute_redirect off;"),
    );
    let s = session();
    for from in ["abs", "rel"] {
        let mut r = with_credentials(s.get(&a.http_url(from)).unwrap())
            .send()
            .unwrap();
        assert_eq!(r.url().as_str(), a.http_url("final.txt"), "{from}");
        assert_eq!(r.redirect_count(), 1);
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);
    }
    let log = a.wait_log_lines(4);
    assert_eq!(
        log.iter().map(|l| l.status).collect::<Vec<_>>(),
        [302, 200, 301, 200]
    );
    for l in &log {
        assert_credentials(l, true);
        // The 3xx bodies were drained: every hop on one connection.
        assert_eq!(l.connection, log[0].connection, "{log:#?}");
    }
    assert_eq!(s.connections_opened(), 1);
}

#[test]
fn credentials_are_not_restored_when_a_chain_returns_to_the_origin() {
    let b = server_b();
    let back = format!("{}?to=@HTTP@/final.txt", b.http_url("bounce"));
    let a = Nginx::start(
        NginxOptions::new()
            .file("final.txt", FINAL)
            .redirect("/start", 302, &back),
    );
    let s = session();
    let mut r = with_credentials(s.get(&a.http_url("start")).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.url().as_str(), a.http_url("final.txt"));
    assert_eq!(r.redirect_count(), 2);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);

    let la = a.wait_log_lines(2);
    assert_eq!(la[0].uri, "/start");
    assert_credentials(&la[0], true);
    assert_eq!(la[1].uri, "/final.txt");
    assert_credentials(&la[1], false);
    let lb = b.wait_log_lines(1);
    assert_eq!(lb[0].status, 302);
    assert_credentials(&lb[0], false);
}

#[test]
fn post_becomes_get_on_301_302_303_and_stays_post_on_307_308() {
    let b = server_b();
    let mut opts = NginxOptions::new().file("final.txt", FINAL);
    for code in [301, 302, 303] {
        opts = opts.redirect(&format!("/p{code}"), code, "@HTTP@/final.txt");
    }
    for code in [307, 308] {
        opts = opts.redirect(&format!("/p{code}"), code, "@HTTP@/echo/body");
    }
    // And one 307 to the other origin: the body follows, the credentials do not.
    opts = opts.redirect("/p307x", 307, &b.http_url("echo/body"));
    let a = Nginx::start(opts);
    let s = session();
    let body = b"form=data&x=1".to_vec();
    for code in [301, 302, 303] {
        let mut r = s
            .post(&a.http_url(&format!("p{code}")))
            .unwrap()
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{code}");
        assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL, "{code}");
    }
    for code in [307, 308] {
        let mut r = s
            .post(&a.http_url(&format!("p{code}")))
            .unwrap()
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{code}");
        assert_eq!(
            r.read_to_vec(LIMIT).unwrap(),
            body,
            "{code}: body not resent"
        );
    }
    let mut r = with_credentials(s.post(&a.http_url("p307x")).unwrap())
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), body);
    // 303 turns PUT into GET too.
    let mut r = s
        .put(&a.http_url("p303"))
        .unwrap()
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);

    let log = a.wait_log_lines(13);
    let hops: Vec<(&str, &str, u16, &str)> = log
        .iter()
        .map(|l| {
            (
                l.method.as_str(),
                l.uri.as_str(),
                l.status,
                l.content_length.as_str(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("POST", "/p301", 301, "13"),
            ("GET", "/final.txt", 200, ""),
            ("POST", "/p302", 302, "13"),
            ("GET", "/final.txt", 200, ""),
            ("POST", "/p303", 303, "13"),
            ("GET", "/final.txt", 200, ""),
            ("POST", "/p307", 307, "13"),
            ("POST", "/echo/body", 200, "13"),
            ("POST", "/p308", 308, "13"),
            ("POST", "/echo/body", 200, "13"),
            ("POST", "/p307x", 307, "13"),
            ("PUT", "/p303", 303, "13"),
            ("GET", "/final.txt", 200, ""),
        ]
    );
    let lb = b.wait_log_lines(1);
    assert_eq!(
        (lb[0].method.as_str(), lb[0].content_length.as_str()),
        ("POST", "13")
    );
    assert_credentials(&lb[0], false);
}

#[test]
fn head_stays_head_through_303() {
    let a = Nginx::start(NginxOptions::new().file("final.txt", FINAL).redirect(
        "/h",
        303,
        "@HTTP@/final.txt",
    ));
    let s = session();
    let mut r = s.head(&a.http_url("h")).unwrap().send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), b"");
    let log = a.wait_log_lines(2);
    assert_eq!(log[1].method, "HEAD");
}

#[test]
fn a_one_shot_body_cannot_follow_a_307() {
    let a = Nginx::start(NginxOptions::new().redirect("/p307", 307, "@HTTP@/echo/body"));
    let s = session();
    let err = s
        .post(&a.http_url("p307"))
        .unwrap()
        .body_reader(std::io::Cursor::new(b"once".to_vec()), 4)
        .send()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyNotReplayable, "{err}");
    // Under RedirectPolicy::Never the 307 itself is the answer.
    let r = s
        .post(&a.http_url("p307"))
        .unwrap()
        .body_reader(std::io::Cursor::new(b"once".to_vec()), 4)
        .redirect_policy(RedirectPolicy::Never)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let log = a.wait_log_lines(2);
    assert!(log.iter().all(|l| l.uri == "/p307"), "{log:#?}");
}

#[test]
fn never_policy_returns_the_redirect() {
    let b = server_b();
    let target = b.http_url("final.txt");
    let a = Nginx::start(NginxOptions::new().redirect("/go", 302, &target));
    // Per session.
    let s = Session::builder()
        .redirect_policy(RedirectPolicy::Never)
        .build()
        .unwrap();
    let mut r = s.get(&a.http_url("go")).unwrap().send().unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers().get("location").unwrap().as_bytes(),
        target.as_bytes()
    );
    assert_eq!(r.url().as_str(), a.http_url("go"));
    assert_eq!(r.redirect_count(), 0);
    let _ = r.read_to_vec(LIMIT).unwrap();
    // Per request, on a following session.
    let s = session();
    let r = s
        .get(&a.http_url("go"))
        .unwrap()
        .redirect_policy(RedirectPolicy::Never)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    drop(r);
    // A 3xx with an empty Location (nginx's `return 302;` at /status/302) is returned as is,
    // not followed to the same URL until the hop limit.
    let r = s.get(&a.http_url("status/302")).unwrap().send().unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.redirect_count(), 0);
    assert_eq!(a.wait_log_lines(3).len(), 3);
    assert!(
        b.access_log().is_empty(),
        "B was contacted: {:#?}",
        b.access_log()
    );
}

#[test]
fn max_redirects_caps_a_chain() {
    let a = Nginx::start(
        NginxOptions::new()
            .file("final.txt", FINAL)
            .redirect("/h1", 302, "@HTTP@/h2")
            .redirect("/h2", 307, "@HTTP@/h3")
            .redirect("/h3", 301, "@HTTP@/final.txt"),
    );
    let s = Session::builder().max_redirects(2).build().unwrap();
    let err = s.get(&a.http_url("h1")).unwrap().send().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects, "{err}");
    // Three hops requested, the third 3xx answered but not followed.
    let log = a.wait_log_lines(3);
    assert_eq!(
        log.iter().map(|l| l.uri.as_str()).collect::<Vec<_>>(),
        ["/h1", "/h2", "/h3"]
    );
    // Per request, the limit can be raised to exactly the chain's length.
    let mut r = s
        .get(&a.http_url("h1"))
        .unwrap()
        .max_redirects(3)
        .send()
        .unwrap();
    assert_eq!(r.redirect_count(), 3);
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);
    // Zero: the first redirect is already too many.
    let err = s
        .get(&a.http_url("h1"))
        .unwrap()
        .max_redirects(0)
        .send()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects);
}

#[test]
fn a_redirect_loop_stops_after_the_default_limit() {
    let a = Nginx::start(NginxOptions::new().redirect("/loop", 302, "@HTTP@/loop"));
    let s = session();
    let err = s.get(&a.http_url("loop")).unwrap().send().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects, "{err}");
    // The first request plus ferry::MAX_REDIRECTS (10) followed hops, all on one connection.
    let want = ferry::MAX_REDIRECTS as usize + 1;
    let log = a.wait_log_lines(want);
    assert_eq!(log.len(), want, "{log:#?}");
    assert!(log.iter().all(|l| l.uri == "/loop" && l.status == 302));
    assert!(log.iter().all(|l| l.connection == log[0].connection));
    // The loop's connection is still fine for the next request.
    let r = s
        .get(&a.http_url("loop"))
        .unwrap()
        .redirect_policy(RedirectPolicy::Never)
        .send()
        .unwrap();
    assert_eq!(r.connect_count(), 0);
}

#[test]
fn https_to_http_is_refused_by_default_and_followed_with_always() {
    let a = Nginx::start(
        NginxOptions::new()
            .file("final.txt", FINAL)
            .redirect("/down", 302, "@HTTP@/final.txt")
            .redirect("/up", 302, "@HTTPS@/final.txt"),
    );
    let s = session();
    let mut r = s.get(&a.https_url("down")).unwrap().send().unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.url().as_str(), a.https_url("down"));
    assert_eq!(r.redirect_count(), 0);
    let _ = r.read_to_vec(LIMIT).unwrap();
    drop(r);
    // Per request.
    let mut r = s
        .get(&a.https_url("down"))
        .unwrap()
        .redirect_policy(RedirectPolicy::Always)
        .send()
        .unwrap();
    assert_eq!(r.url().as_str(), a.http_url("final.txt"));
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);
    // Per session.
    let pki = support::pki();
    let always = Session::builder()
        .add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .redirect_policy(RedirectPolicy::Always)
        .build()
        .unwrap();
    let mut r = always.get(&a.https_url("down")).unwrap().send().unwrap();
    assert_eq!(r.url().scheme(), "http");
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);
    // The upgrade is followed by default.
    let mut r = s.get(&a.http_url("up")).unwrap().send().unwrap();
    assert_eq!(r.url().as_str(), a.https_url("final.txt"));
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);

    let log = a.wait_log_lines(7);
    let seen: Vec<(u16, &str)> = log
        .iter()
        .map(|l| (l.server_port, l.uri.as_str()))
        .collect();
    let (p, tp) = (a.port(), a.tls_port());
    assert_eq!(
        seen,
        [
            (tp, "/down"),
            (tp, "/down"),
            (p, "/final.txt"),
            (tp, "/down"),
            (p, "/final.txt"),
            (p, "/up"),
            (tp, "/final.txt"),
        ]
    );
}

#[test]
fn credentials_are_dropped_on_an_http_to_https_hop_to_another_host() {
    // http://127.0.0.1:P → https://localhost:TP: scheme, host and port all differ.
    let a = Nginx::start(NginxOptions::new().file("final.txt", FINAL).redirect(
        "/up",
        302,
        "@HTTPS@/final.txt",
    ));
    let s = session();
    let mut r = with_credentials(s.request(Method::GET, &a.http_url("up")).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), FINAL);
    let log = a.wait_log_lines(2);
    assert_credentials(&log[0], true);
    assert_credentials(&log[1], false);
    assert_eq!(log[1].ssl_protocol, "TLSv1.3");
}
