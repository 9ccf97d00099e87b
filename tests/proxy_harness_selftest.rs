//! Self-tests of the proxy test servers, driven by the curl CLI: Squid (forwarding, CONNECT,
//! Basic and fake-NTLM proxy authentication), the recording origin, and the pyspnego NTLM proxy.
//! If these fail, the servers and not ferry are wrong.

mod support;

use std::process::Command;
use support::squid::{ntlm_fake_auth_available, squid_version};
use support::{
    pki, run_tool, Nginx, NginxOptions, NtlmProxy, RecordingOrigin, Squid, SquidOptions, TempDir,
};

/// One transfer of a curl run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transfer {
    /// Final HTTP status (0 when there was none, e.g. a refused tunnel).
    status: u16,
    /// Status of the last CONNECT response (0 without a tunnel).
    connect_status: u16,
    body: String,
}

/// A curl run: its transfers (as many as curl reported), exit success, stderr and every
/// response header block (CONNECT responses included) it received.
#[derive(Debug)]
struct Run {
    ok: bool,
    transfers: Vec<Transfer>,
    stderr: String,
    headers: String,
}

const MARK: &str = "\n@@ferry-status=";

/// Runs curl (no `.curlrc`, no proxy environment, 10 s limit) with `args` and the `urls` in one
/// command line, so curl reuses its connection to the proxy.
fn curl(args: &[&str], urls: &[String]) -> Run {
    let dir = TempDir::new("curl");
    let mut cmd = Command::new("curl");
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["-q", "-sS", "--max-time", "10"])
        .args(args)
        .arg("-D")
        .arg(dir.join("headers"))
        .arg("-w")
        .arg(format!("{MARK}%{{http_code}} %{{http_connect}}@@\n"))
        .args(urls);
    let out = run_tool(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut transfers = Vec::new();
    let mut rest = stdout.as_str();
    while let Some((body, after)) = rest.split_once(MARK) {
        let (codes, after) = after
            .split_once("@@\n")
            .unwrap_or_else(|| panic!("curl output: bad marker: {stdout:?}"));
        let (code, connect) = codes.split_once(' ').expect("two codes");
        transfers.push(Transfer {
            status: code.parse().expect("curl http_code"),
            connect_status: connect.parse().expect("curl http_connect"),
            body: body.to_owned(),
        });
        rest = after;
    }
    Run {
        ok: out.status.success(),
        transfers,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        headers: std::fs::read_to_string(dir.join("headers")).unwrap_or_default(),
    }
}

/// A curl run that must succeed with one transfer per URL.
fn curl_ok(args: &[&str], urls: &[String]) -> Vec<Transfer> {
    let run = curl(args, urls);
    assert!(
        run.ok && run.transfers.len() == urls.len(),
        "curl {args:?} {urls:?} failed: {}\n{run:#?}",
        run.stderr
    );
    run.transfers
}

fn ca() -> String {
    pki().ca_pem.display().to_string()
}

// --- Squid --------------------------------------------------------------------------------------

#[test]
fn squid_forwards_http_to_the_recording_origin_on_one_client_connection() {
    let squid = Squid::start(SquidOptions::new());
    let origin = RecordingOrigin::start(None);
    let t = curl_ok(
        &["-x", &squid.url(), "-H", "X-Test: one"],
        &[origin.http_url("/a?x=1"), origin.http_url("/b")],
    );
    assert_eq!((t[0].status, t[0].body.as_str()), (200, "ok"), "{t:?}");
    assert_eq!((t[1].status, t[1].body.as_str()), (200, "ok"), "{t:?}");

    let reqs = origin.wait_requests(2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/a?x=1");
    assert_eq!(reqs[1].path, "/b");
    assert!(!reqs[0].tls);
    assert_eq!(reqs[0].header("x-test"), Some("one"), "{reqs:#?}");
    assert!(
        reqs[0]
            .header("via")
            .is_some_and(|v| v.contains("ferry-test")),
        "squid adds Via: {reqs:#?}"
    );

    let log = squid.wait_log_lines(2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].url, origin.http_url("/a?x=1"));
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].user, None);
    assert_eq!(log[0].client_addr, "127.0.0.1");
    assert_eq!(
        log[0].client_port, log[1].client_port,
        "curl kept its proxy connection: {log:#?}"
    );
    eprintln!("{}", squid_version());
}

#[test]
fn squid_forwards_to_an_nginx_origin() {
    let squid = Squid::start(SquidOptions::new());
    let nginx = Nginx::start(NginxOptions::new().file("hello.txt", "hi\n"));
    let t = curl_ok(&["-x", &squid.url()], &[nginx.http_url("/hello.txt")]);
    assert_eq!((t[0].status, t[0].body.as_str()), (200, "hi\n"));
    let log = nginx.wait_log_lines(1);
    assert_eq!(log[0].uri, "/hello.txt");
    assert_eq!(log[0].proxy_authorization, "");
    assert_eq!(squid.wait_log_lines(1)[0].status, 200);
}

#[test]
fn squid_tunnels_connect_to_the_https_recording_origin() {
    let squid = Squid::start(SquidOptions::new());
    let origin = RecordingOrigin::start(Some(pki()));
    let t = curl_ok(
        &["-p", "-x", &squid.url(), "--cacert", &ca()],
        &[origin.https_url("/secure")],
    );
    assert_eq!((t[0].status, t[0].body.as_str()), (200, "ok"), "{t:?}");
    assert_eq!(t[0].connect_status, 200);

    let reqs = origin.wait_requests(1);
    assert!(reqs[0].tls);
    assert_eq!(reqs[0].port, origin.tls_port());
    assert_eq!(reqs[0].path, "/secure");
    assert!(
        reqs[0].header("via").is_none(),
        "a tunnel is opaque: {reqs:#?}"
    );

    // Logged when the tunnel closed (curl has exited).
    let log = squid.wait_log_lines(1);
    assert_eq!(log[0].method, "CONNECT");
    assert_eq!(log[0].url, format!("localhost:{}", origin.tls_port()));
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].squid_status, "TCP_TUNNEL");
}

#[test]
fn squid_basic_proxy_auth_right_password_passes_and_is_logged() {
    let squid = Squid::start(SquidOptions::basic(&[("alice", "s3cret pw"), ("bob", "x")]));
    let origin = RecordingOrigin::start(Some(pki()));
    let t = curl_ok(
        &["-x", &squid.url(), "--proxy-user", "alice:s3cret pw"],
        &[origin.http_url("/basic")],
    );
    assert_eq!((t[0].status, t[0].body.as_str()), (200, "ok"), "{t:?}");
    let log = squid.wait_log_lines(1);
    assert_eq!(log[0].user.as_deref(), Some("alice"));
    assert_eq!(log[0].status, 200);
    assert!(log[0].proxy_authorization.starts_with("Basic "), "{log:#?}");
    assert_eq!(log[0].authorization, "");

    // Through a tunnel too; the origin never sees Proxy-Authorization either way.
    let t = curl_ok(
        &[
            "-p",
            "-x",
            &squid.url(),
            "--proxy-user",
            "alice:s3cret pw",
            "--cacert",
            &ca(),
        ],
        &[origin.https_url("/tunnel")],
    );
    assert_eq!((t[0].status, t[0].body.as_str()), (200, "ok"), "{t:?}");
    let reqs = origin.wait_requests(2);
    for r in &reqs {
        assert!(r.header("proxy-authorization").is_none(), "{reqs:#?}");
    }
    let log = squid.wait_log_lines(2);
    assert_eq!(log[1].method, "CONNECT");
    assert_eq!(log[1].user.as_deref(), Some("alice"));
}

#[test]
fn squid_basic_proxy_auth_wrong_or_missing_password_is_407() {
    let squid = Squid::start(SquidOptions::basic(&[("alice", "secret")]).realm("ferry realm"));
    let origin = RecordingOrigin::start(Some(pki()));
    let run = curl(
        &["-x", &squid.url(), "--proxy-user", "alice:wrong"],
        &[origin.http_url("/x")],
    );
    assert_eq!(run.transfers[0].status, 407, "{run:#?}");
    assert!(
        run.headers
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"ferry realm\""),
        "{run:#?}"
    );
    let run = curl(&["-x", &squid.url()], &[origin.http_url("/y")]);
    assert_eq!(run.transfers[0].status, 407, "{run:#?}");

    // CONNECT without credentials: curl fails on the 407 tunnel answer.
    let run = curl(
        &["-p", "-x", &squid.url(), "--cacert", &ca()],
        &[origin.https_url("/z")],
    );
    assert!(!run.ok, "{run:#?}");
    assert_eq!(
        run.transfers.first().map(|t| t.connect_status),
        Some(407),
        "{run:#?}"
    );

    let log = squid.wait_log_lines(3);
    assert!(log.iter().all(|l| l.status == 407), "{log:#?}");
    assert_eq!(log[2].method, "CONNECT");
    assert!(origin.requests().is_empty());
}

#[test]
fn squid_ntlm_fake_helper_lets_curl_proxy_ntlm_through() {
    assert!(
        ntlm_fake_auth_available(),
        "squid's ntlm_fake_auth helper is missing: {}",
        support::squid::SQUID_HINT
    );
    let squid = Squid::start(SquidOptions::ntlm());
    let origin = RecordingOrigin::start(Some(pki()));
    let t = curl_ok(
        &[
            "-x",
            &squid.url(),
            "--proxy-ntlm",
            "--proxy-user",
            "CORP\\bob:anything",
        ],
        &[origin.http_url("/n1"), origin.http_url("/n2")],
    );
    assert_eq!((t[0].status, t[0].body.as_str()), (200, "ok"), "{t:?}");
    assert_eq!((t[1].status, t[1].body.as_str()), (200, "ok"), "{t:?}");
    // NTLM challenge (407), then the authenticated request, all on one connection.
    let log = squid.wait_log_lines(3);
    assert_eq!(log[0].status, 407, "{log:#?}");
    assert!(log[0].proxy_authorization.starts_with("NTLM "), "{log:#?}");
    assert_eq!(log[1].status, 200, "{log:#?}");
    // ntlm_fake_auth (squid 5.7) mangles the name it reports (`CORPb\bobw` for CORP\bob):
    // check only that there is one.
    assert!(log[1].user.is_some(), "{log:#?}");
    assert!(
        log.iter().all(|l| l.client_port == log[0].client_port),
        "{log:#?}"
    );

    // CONNECT with NTLM.
    let t = curl_ok(
        &[
            "-p",
            "-x",
            &squid.url(),
            "--proxy-ntlm",
            "--proxy-user",
            "CORP\\bob:anything",
            "--cacert",
            &ca(),
        ],
        &[origin.https_url("/n3")],
    );
    assert_eq!((t[0].status, t[0].connect_status), (200, 200), "{t:?}");
    let reqs = origin.wait_requests(3);
    for r in &reqs {
        assert!(r.header("proxy-authorization").is_none(), "{reqs:#?}");
    }
}

#[test]
fn squid_refuses_non_loopback_destinations() {
    let squid = Squid::start(SquidOptions::new());
    let run = curl(
        &["-x", &squid.url()],
        &["http://example.invalid/".to_owned()],
    );
    assert_eq!(run.transfers[0].status, 403, "{run:#?}");
}

// --- NTLM proxy (pyspnego) ----------------------------------------------------------------------

fn ntlm_proxy() -> NtlmProxy {
    NtlmProxy::start(&[
        ("CORP", "alice", "Secret1"),
        ("", "carol", "pw with spaces"),
    ])
}

#[test]
fn ntlm_proxy_authenticates_curl_for_forwarded_requests_per_connection() {
    let proxy = ntlm_proxy();
    let origin = RecordingOrigin::start(None);
    let t = curl_ok(
        &[
            "-x",
            &proxy.url(),
            "--proxy-ntlm",
            "--proxy-user",
            "corp\\ALICE:Secret1",
        ],
        &[origin.http_url("/one"), origin.http_url("/two?q=1")],
    );
    assert_eq!(
        (t[0].status, t[0].body.as_str()),
        (200, "ok"),
        "{t:?}\n{}",
        proxy.stderr()
    );
    assert_eq!((t[1].status, t[1].body.as_str()), (200, "ok"), "{t:?}");

    let log = proxy.wait_log_lines(3);
    assert_eq!(log.len(), 3, "{log:#?}");
    assert!(log.iter().all(|l| l.conn == log[0].conn), "{log:#?}");
    assert_eq!(
        (log[0].status, log[0].auth.as_str(), log[0].user.as_deref()),
        (407, "type1", None)
    );
    assert_eq!(
        (log[1].status, log[1].auth.as_str(), log[1].user.as_deref()),
        (200, "type3", Some("CORP\\alice"))
    );
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].target, origin.http_url("/one"));
    // curl sends no Proxy-Authorization on the authenticated connection's next request.
    assert_eq!(log[2].user.as_deref(), Some("CORP\\alice"), "{log:#?}");
    assert_eq!(log[2].target, origin.http_url("/two?q=1"));

    let reqs = origin.wait_requests(2);
    assert_eq!(reqs[0].path, "/one");
    assert_eq!(reqs[1].path, "/two?q=1");
    for r in &reqs {
        assert!(r.header("proxy-authorization").is_none(), "{reqs:#?}");
        assert!(r.header("proxy-connection").is_none(), "{reqs:#?}");
    }
}

#[test]
fn ntlm_proxy_authenticates_curl_for_connect_tunnels() {
    let proxy = ntlm_proxy();
    let origin = RecordingOrigin::start(Some(pki()));
    let t = curl_ok(
        &[
            "-p",
            "-x",
            &proxy.url(),
            "--proxy-ntlm",
            "--proxy-user",
            "carol:pw with spaces",
            "--cacert",
            &ca(),
        ],
        &[origin.https_url("/tunnelled")],
    );
    assert_eq!(
        (t[0].status, t[0].body.as_str()),
        (200, "ok"),
        "{t:?}\n{}",
        proxy.stderr()
    );
    assert_eq!(t[0].connect_status, 200);

    let log = proxy.wait_log_lines(2);
    assert_eq!(log[0].method, "CONNECT");
    assert_eq!(log[0].target, format!("localhost:{}", origin.tls_port()));
    assert_eq!((log[0].status, log[0].auth.as_str()), (407, "type1"));
    assert_eq!(
        (log[1].status, log[1].auth.as_str(), log[1].user.as_deref()),
        (200, "type3", Some("carol"))
    );
    assert_eq!(log[0].conn, log[1].conn);

    let reqs = origin.wait_requests(1);
    assert!(reqs[0].tls);
    assert!(reqs[0].header("proxy-authorization").is_none());
}

#[test]
fn ntlm_proxy_rejects_a_wrong_password_and_no_credentials_with_407() {
    let proxy = ntlm_proxy();
    let origin = RecordingOrigin::start(Some(pki()));
    let run = curl(
        &[
            "-x",
            &proxy.url(),
            "--proxy-ntlm",
            "--proxy-user",
            "CORP\\alice:wrong",
        ],
        &[origin.http_url("/x")],
    );
    assert_eq!(run.transfers[0].status, 407, "{run:#?}");
    let run = curl(&["-x", &proxy.url()], &[origin.http_url("/y")]);
    assert_eq!(run.transfers[0].status, 407, "{run:#?}");
    assert!(
        run.headers.contains("Proxy-Authenticate: NTLM\r\n"),
        "{run:#?}"
    );
    let run = curl(
        &[
            "-p",
            "-x",
            &proxy.url(),
            "--proxy-ntlm",
            "--proxy-user",
            "CORP\\alice:wrong",
            "--cacert",
            &ca(),
        ],
        &[origin.https_url("/z")],
    );
    assert!(!run.ok, "{run:#?}");

    let log = proxy.wait_log_lines(5);
    assert_eq!(
        (log[0].status, log[0].auth.as_str()),
        (407, "type1"),
        "{log:#?}"
    );
    assert_eq!(
        (log[1].status, log[1].auth.as_str(), log[1].user.as_deref()),
        (407, "type3", None),
        "{log:#?}"
    );
    assert_eq!(
        (log[2].status, log[2].auth.as_str()),
        (407, "none"),
        "{log:#?}"
    );
    assert_eq!(log[3].method, "CONNECT");
    assert!(
        log.iter().all(|l| l.status == 407 && l.user.is_none()),
        "{log:#?}"
    );
    assert!(origin.requests().is_empty());
}

#[test]
fn squid_can_offer_ntlm_and_basic_together() {
    let squid = Squid::start(SquidOptions::basic(&[("alice", "secret")]).with_ntlm());
    let origin = RecordingOrigin::start(None);
    let run = curl(&["-x", &squid.url()], &[origin.http_url("/none")]);
    assert_eq!(run.transfers[0].status, 407, "{run:#?}");
    let lower = run.headers.to_ascii_lowercase();
    assert!(lower.contains("proxy-authenticate: ntlm\r\n"), "{run:#?}");
    assert!(
        lower.contains("proxy-authenticate: basic realm="),
        "{run:#?}"
    );

    let t = curl_ok(
        &[
            "-x",
            &squid.url(),
            "--proxy-basic",
            "--proxy-user",
            "alice:secret",
        ],
        &[origin.http_url("/basic")],
    );
    assert_eq!(t[0].status, 200, "{t:?}");
    let t = curl_ok(
        &[
            "-x",
            &squid.url(),
            "--proxy-ntlm",
            "--proxy-user",
            "CORP\\bob:x",
        ],
        &[origin.http_url("/ntlm")],
    );
    assert_eq!(t[0].status, 200, "{t:?}");
    let reqs = origin.wait_requests(2);
    assert_eq!(reqs[0].path, "/basic");
    assert_eq!(reqs[1].path, "/ntlm");
}

// --- Recording origin ---------------------------------------------------------------------------

#[test]
fn recording_origin_answers_redirects_and_statuses_and_records_headers_in_order() {
    let origin = RecordingOrigin::start(Some(pki()));
    let target = origin.https_url("/after");
    let redirect = format!(
        "/redirect?to={}",
        target.replace(':', "%3A").replace('/', "%2F")
    );
    let run = curl(
        &["--noproxy", "*", "-H", "X-B: 2", "-H", "X-A: 1"],
        &[origin.http_url(&redirect), origin.http_url("/status/204")],
    );
    assert!(run.ok, "{run:#?}");
    assert_eq!(run.transfers[0].status, 302);
    assert!(
        run.headers.contains(&format!("Location: {target}\r\n")),
        "{run:#?}"
    );
    assert_eq!(run.transfers[1].status, 204);
    let t = curl_ok(
        &["--noproxy", "*", "--cacert", &ca()],
        &[origin.https_url("/tls")],
    );
    assert_eq!((t[0].status, t[0].body.as_str()), (200, "ok"));

    let reqs = origin.wait_requests(3);
    assert_eq!(reqs[0].conn, reqs[1].conn, "keep-alive: {reqs:#?}");
    assert_ne!(reqs[0].conn, reqs[2].conn);
    let names: Vec<&str> = reqs[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    let b = names
        .iter()
        .position(|n| *n == "X-B")
        .expect("X-B recorded");
    let a = names
        .iter()
        .position(|n| *n == "X-A")
        .expect("X-A recorded");
    assert!(b < a, "header order kept: {names:?}");
    assert_eq!(
        reqs[0].header("host"),
        Some(&*format!("127.0.0.1:{}", origin.port()))
    );
    assert!(reqs[2].tls);
    assert_eq!(
        reqs[2].header("host"),
        Some(&*format!("localhost:{}", origin.tls_port()))
    );
}
