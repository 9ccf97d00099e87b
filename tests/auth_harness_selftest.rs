//! Self-tests of the authentication test servers, driven by the curl CLI (and, for NTLMv1, by
//! pyspnego's own client): the NTLM server (`tests/servers/ntlm_server.py`), Apache with
//! `mod_auth_digest`, and nginx's Basic-auth locations. If these fail, the servers and not ferry
//! are wrong.

mod support;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::process::Command;
use support::apache::md5_hex;
use support::ntlm::{python_binary, server_script};
use support::{
    run_tool, Apache, ApacheLogLine, ApacheOptions, Nginx, NginxOptions, NtlmLogLine, NtlmServer,
};

/// One transfer of a curl run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transfer {
    status: u16,
    body: String,
    /// Response headers of the whole run (every response, final or not, in order).
    headers: String,
}

const MARK: &str = "\n@@ferry-status=";

/// Runs curl on loopback (no proxies, no `.curlrc`, 10 s limit) with `args` and the `urls` (one
/// command line, so curl reuses its connection), and returns one [`Transfer`] per URL.
fn curl(args: &[&str], urls: &[String]) -> Vec<Transfer> {
    let dir = support::TempDir::new("curl");
    let mut cmd = Command::new("curl");
    cmd.args(["-q", "-sS", "--noproxy", "*", "--max-time", "10"])
        .args(args)
        .arg("-D")
        .arg(dir.join("headers"))
        .arg("-w")
        .arg(format!("{MARK}%{{http_code}}@@\n"))
        .args(urls);
    let out = run_tool(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} {urls:?} failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = std::fs::read_to_string(dir.join("headers")).unwrap_or_default();
    let mut transfers = Vec::new();
    let mut rest = stdout.as_str();
    for i in 0..urls.len() {
        let (body, after) = rest
            .split_once(MARK)
            .unwrap_or_else(|| panic!("curl output lacks transfer {i}: {stdout:?}"));
        let (code, after) = after
            .split_once("@@\n")
            .unwrap_or_else(|| panic!("curl output: bad marker: {stdout:?}"));
        transfers.push(Transfer {
            status: code.parse().expect("curl http_code"),
            body: body.to_owned(),
            headers: headers.clone(),
        });
        rest = after;
    }
    transfers
}

fn curl_one(args: &[&str], url: String) -> Transfer {
    curl(args, &[url]).remove(0)
}

// --- NTLM (pyspnego) ---------------------------------------------------------------------------

fn ntlm_server() -> NtlmServer {
    NtlmServer::start(&[
        ("CORP", "alice", "Secret1"),
        ("CORP", "bob", "Hunter2!"),
        ("", "carol", "pw with spaces"),
    ])
}

#[test]
fn ntlm_right_password_authenticates_the_connection_for_later_requests() {
    let server = ntlm_server();
    let t = curl(
        &["--ntlm", "-u", "CORP\\alice:Secret1"],
        &[server.url("/first"), server.url("/second?q=1")],
    );
    assert_eq!(t[0].status, 200, "{t:?}\n{}", server.stderr());
    assert_eq!(t[0].body, "hello CORP\\alice");
    assert_eq!(t[1].status, 200, "{t:?}");
    assert_eq!(t[1].body, "hello CORP\\alice");

    let log = server.wait_log_lines(3);
    assert_eq!(log.len(), 3, "{log:#?}");
    let conn = log[0].conn;
    assert!(
        log.iter().all(|l| l.conn == conn),
        "one connection: {log:#?}"
    );
    assert_eq!(
        (log[0].status, log[0].auth.as_str(), log[0].user.as_deref()),
        (401, "type1", None)
    );
    assert_eq!(
        (log[1].status, log[1].auth.as_str(), log[1].user.as_deref()),
        (200, "type3", Some("CORP\\alice"))
    );
    assert_eq!(log[1].path, "/first");
    // The second request carried no Authorization: the connection itself is authenticated.
    assert_eq!(
        (log[2].status, log[2].auth.as_str(), log[2].user.as_deref()),
        (200, "none", Some("CORP\\alice"))
    );
    assert_eq!(log[2].path, "/second", "the query is not logged");
}

#[test]
fn ntlm_user_and_domain_match_case_insensitively_and_an_empty_domain_works() {
    let server = ntlm_server();
    let t = curl_one(&["--ntlm", "-u", "corp\\ALICE:Secret1"], server.url("/x"));
    assert_eq!((t.status, t.body.as_str()), (200, "hello CORP\\alice"));
    let t = curl_one(&["--ntlm", "-u", "carol:pw with spaces"], server.url("/x"));
    assert_eq!((t.status, t.body.as_str()), (200, "hello carol"));
}

#[test]
fn ntlm_wrong_password_unknown_user_and_wrong_domain_get_401() {
    let server = ntlm_server();
    for creds in [
        "CORP\\alice:wrong",
        "CORP\\mallory:Secret1",
        "OTHER\\alice:Secret1",
    ] {
        let t = curl_one(&["--ntlm", "-u", creds], server.url("/x"));
        assert_eq!(t.status, 401, "{creds}: {t:?}");
        assert!(
            t.headers.contains("WWW-Authenticate: NTLM\r\n"),
            "{creds}: a bare NTLM challenge after a failure: {}",
            t.headers
        );
    }
    let log = server.wait_log_lines(6);
    let type3: Vec<&NtlmLogLine> = log.iter().filter(|l| l.auth == "type3").collect();
    assert_eq!(type3.len(), 3, "{log:#?}");
    assert!(
        type3.iter().all(|l| l.status == 401 && l.user.is_none()),
        "{log:#?}"
    );
}

#[test]
fn ntlm_two_users_on_two_connections() {
    let server = ntlm_server();
    let a = curl_one(&["--ntlm", "-u", "CORP\\alice:Secret1"], server.url("/a"));
    let b = curl_one(&["--ntlm", "-u", "CORP\\bob:Hunter2!"], server.url("/b"));
    assert_eq!((a.status, a.body.as_str()), (200, "hello CORP\\alice"));
    assert_eq!((b.status, b.body.as_str()), (200, "hello CORP\\bob"));
    let log = server.wait_log_lines(4);
    let ok: Vec<&NtlmLogLine> = log.iter().filter(|l| l.status == 200).collect();
    assert_eq!(ok.len(), 2, "{log:#?}");
    assert_ne!(ok[0].conn, ok[1].conn, "two curl runs, two connections");
    assert_eq!(ok[0].user.as_deref(), Some("CORP\\alice"));
    assert_eq!(ok[1].user.as_deref(), Some("CORP\\bob"));
    let conns: BTreeSet<u64> = log.iter().map(|l| l.conn).collect();
    assert_eq!(conns.len(), 2, "{log:#?}");
}

#[test]
fn ntlm_anon_needs_no_auth_and_other_paths_challenge() {
    let server = ntlm_server();
    let t = curl_one(&[], server.url("/anon?x=1"));
    assert_eq!((t.status, t.body.as_str()), (200, "anonymous"));
    let t = curl_one(&[], server.url("/private"));
    assert_eq!(t.status, 401);
    assert!(
        t.headers.contains("WWW-Authenticate: NTLM\r\n"),
        "{}",
        t.headers
    );
    assert!(t.headers.contains("Content-Length: "), "{}", t.headers);
    let t = curl_one(&["-u", "alice:Secret1"], server.url("/private"));
    assert_eq!(t.status, 401, "Basic is not accepted");
    let log = server.wait_log_lines(3);
    assert_eq!(
        log.iter()
            .map(|l| (l.path.as_str(), l.status, l.auth.as_str(), l.user.is_some()))
            .collect::<Vec<_>>(),
        vec![
            ("/anon", 200, "none", false),
            ("/private", 401, "none", false),
            ("/private", 401, "other", false)
        ]
    );
}

/// Runs `tests/servers/ntlm_client.py` (pyspnego's client) and returns its output lines.
fn pyspnego_client(
    server: &NtlmServer,
    user: &str,
    password: &str,
    level: u8,
    then: &[&str],
) -> Vec<String> {
    let mut cmd = Command::new(python_binary());
    cmd.arg(server_script("ntlm_client.py"))
        .args(["--port", &server.port().to_string()])
        .args(["--user", user, "--password", password])
        .args(["--lm-compat-level", &level.to_string(), "--path", "/p"]);
    for spec in then {
        cmd.args(["--then", spec]);
    }
    let out = run_tool(&mut cmd);
    assert!(
        out.status.success(),
        "ntlm_client.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn ntlm_v1_and_lm_responses_are_rejected_and_v2_accepted() {
    let server = ntlm_server();
    // LM_COMPAT_LEVEL 0-2: LM / NTLMv1 (2: NTLMv1 only); 3: NTLMv2.
    for level in [0, 1, 2] {
        let out = pyspnego_client(&server, "CORP\\alice", "Secret1", level, &[]);
        assert_eq!(out, ["401 unauthorized"], "level {level}");
    }
    let out = pyspnego_client(&server, "CORP\\alice", "Secret1", 3, &[]);
    assert_eq!(out, ["200 hello CORP\\alice"]);
    assert!(
        server.stderr().contains("reject NTv1"),
        "{}",
        server.stderr()
    );
}

#[test]
fn ntlm_failed_authorization_resets_an_authenticated_connection() {
    let server = ntlm_server();
    let out = pyspnego_client(
        &server,
        "CORP\\bob",
        "Hunter2!",
        3,
        &["/still", "/bad|NTLM bm90IG50bG0=", "/after", "/anon"],
    );
    assert_eq!(
        out,
        [
            "200 hello CORP\\bob",
            "200 hello CORP\\bob",
            "401 unauthorized",
            "401 unauthorized",
            "200 anonymous"
        ]
    );
    let log = server.wait_log_lines(6);
    assert!(log.iter().all(|l| l.conn == log[0].conn), "{log:#?}");
    assert_eq!(log[3].auth, "other", "{log:#?}");
}

#[test]
fn ntlm_log_line_parsing() {
    let l = NtlmLogLine::parse("conn=12 user=CORP\\John Smith status=200 path=/a/b auth=type3")
        .unwrap();
    assert_eq!(
        l,
        NtlmLogLine {
            conn: 12,
            user: Some("CORP\\John Smith".into()),
            status: 200,
            path: "/a/b".into(),
            auth: "type3".into()
        }
    );
    let l = NtlmLogLine::parse("conn=1 user=- status=401 path=/ auth=none").unwrap();
    assert_eq!(l.user, None);
    assert!(NtlmLogLine::parse("conn=x user=- status=401 path=/ auth=none").is_err());
    assert!(NtlmLogLine::parse("garbage").is_err());
}

#[test]
fn ntlm_server_stops_on_drop() {
    let server = ntlm_server();
    let port = server.port();
    let dir = server.dir().to_path_buf();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(server);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "NTLM server port still open"
    );
    assert!(!dir.exists(), "temp dir not removed");
}

// --- Apache Digest -----------------------------------------------------------------------------

fn apache() -> Apache {
    Apache::start(ApacheOptions::digest(
        "ferry realm",
        &[("alice", "Secret1"), ("bob", "pw:with:colons")],
    ))
}

#[test]
fn md5_hex_matches_rfc_1321() {
    assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
}

#[test]
fn apache_digest_right_password() {
    let apache = apache();
    let t = curl_one(
        &["--digest", "-u", "alice:Secret1"],
        apache.url("/digest/secret.txt"),
    );
    assert_eq!(
        (t.status, t.body.as_str()),
        (200, "digest secret\n"),
        "{}",
        apache.error_log()
    );
    let t = curl_one(
        &["--digest", "-u", "bob:pw:with:colons"],
        apache.url("/digest/secret.txt"),
    );
    assert_eq!(t.status, 200, "a password may hold colons");

    let log = apache.wait_log_lines(4);
    let (challenge, ok) = (&log[0], &log[1]);
    assert_eq!((challenge.status, challenge.user.as_deref()), (401, None));
    assert_eq!(challenge.authorization, "");
    assert_eq!((ok.status, ok.user.as_deref()), (200, Some("alice")));
    assert_eq!(ok.request_line, "GET /digest/secret.txt HTTP/1.1");
    assert_eq!(ok.path(), "/digest/secret.txt");
    assert!(
        ok.authorization.starts_with("Digest ") && ok.authorization.contains("username=\"alice\""),
        "{ok:?}"
    );
    assert!(ok.authorization.contains("qop=auth"), "{ok:?}");
    assert_eq!(
        (
            challenge.client_port,
            challenge.keepalive_count,
            ok.keepalive_count
        ),
        (ok.client_port, 0, 1),
        "curl answers the challenge on the same connection"
    );
    assert_eq!(log[3].user.as_deref(), Some("bob"));
}

#[test]
fn apache_digest_challenge_and_wrong_password() {
    let apache = apache();
    let t = curl_one(&[], apache.url("/digest/secret.txt"));
    assert_eq!(t.status, 401);
    assert!(
        t.headers
            .contains("WWW-Authenticate: Digest realm=\"ferry realm\""),
        "{}",
        t.headers
    );
    assert!(t.headers.contains("algorithm=MD5"), "{}", t.headers);
    assert!(t.headers.contains("qop=\"auth\""), "{}", t.headers);
    for creds in ["alice:wrong", "mallory:Secret1"] {
        let t = curl_one(&["--digest", "-u", creds], apache.url("/digest/secret.txt"));
        assert_eq!(t.status, 401, "{creds}");
    }
    let log = apache.wait_log_lines(5);
    assert!(log.iter().all(|l| l.status == 401), "{log:#?}");
    // %u is the name the client sent, even when the password was wrong.
    assert_eq!(log[2].user.as_deref(), Some("alice"), "{log:#?}");
}

#[test]
fn apache_keep_alive_is_visible_in_the_log() {
    let apache = apache();
    let t = curl(
        &["--digest", "-u", "alice:Secret1"],
        &[
            apache.url("/digest/secret.txt"),
            apache.url("/digest/secret.txt?again"),
            apache.url("/open/hello.txt"),
        ],
    );
    assert_eq!(
        t.iter().map(|t| t.status).collect::<Vec<_>>(),
        [200, 200, 200],
        "{t:?}"
    );
    assert_eq!(t[2].body, "open hello\n");
    let log = apache.wait_log_lines(4);
    let port = log[0].client_port;
    assert!(
        log.iter().all(|l| l.client_port == port),
        "one connection: {log:#?}"
    );
    let counts: Vec<u32> = log.iter().map(|l| l.keepalive_count).collect();
    assert_eq!(
        counts,
        (0..log.len() as u32).collect::<Vec<_>>(),
        "{log:#?}"
    );
    assert_eq!(log.last().unwrap().path(), "/open/hello.txt");

    // A second curl run is a second connection.
    curl_one(&[], apache.url("/open/hello.txt"));
    let log2 = apache.wait_log_lines(log.len() + 1);
    let last = log2.last().unwrap();
    assert_ne!(last.client_port, port);
    assert_eq!((last.keepalive_count, last.user.as_deref()), (0, None));
}

#[test]
fn apache_refuses_digest_algorithms_other_than_md5() {
    for algorithm in ["MD5-sess", "SHA-256"] {
        let result = std::panic::catch_unwind(|| {
            Apache::start(ApacheOptions {
                algorithm: algorithm.into(),
                ..ApacheOptions::digest("r", &[("u", "p")])
            })
        });
        let err = result.expect_err("Apache 2.4 implements MD5 only");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("Apache exited during start"), "{msg}");
        assert!(msg.contains("Unsupported algorithm"), "{msg}");
    }
}

#[test]
fn apache_log_line_parsing() {
    let l = ApacheLogLine::parse(
        "51234\t2\tal\\\"ice\tGET /digest/a?b HTTP/1.1\t200\tDigest username=\\\"al\\\\\\\"ice\\\"",
    )
    .unwrap();
    assert_eq!(l.client_port, 51234);
    assert_eq!(l.keepalive_count, 2);
    assert_eq!(l.user.as_deref(), Some("al\"ice"));
    assert_eq!(l.path(), "/digest/a?b");
    assert_eq!(l.status, 200);
    assert_eq!(l.authorization, "Digest username=\"al\\\"ice\"");
    let l = ApacheLogLine::parse("1\t0\t-\tGET / HTTP/1.1\t401\t-").unwrap();
    assert_eq!((l.user, l.authorization.as_str()), (None, ""));
    assert!(ApacheLogLine::parse("1\t0\t-").is_err());
}

#[test]
fn apache_stops_on_drop() {
    let apache = apache();
    let port = apache.port();
    let dir = apache.dir().to_path_buf();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(apache);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "Apache port still open"
    );
    assert!(!dir.exists(), "temp dir not removed");
}

// --- nginx Basic -------------------------------------------------------------------------------

fn nginx_basic() -> Nginx {
    Nginx::start(
        NginxOptions::new()
            .file("basic/file.txt", "basic file\n")
            .file("public.txt", "public\n")
            .basic_auth(
                "/basic/",
                "ferry basic",
                &[("alice", "Secret1"), ("bob", "p:w -x")],
            ),
    )
}

#[test]
fn nginx_basic_right_password_and_remote_user_logged() {
    let nginx = nginx_basic();
    let t = curl_one(&["-u", "alice:Secret1"], nginx.http_url("/basic/echo"));
    assert_eq!((t.status, t.body.as_str()), (200, "alice"));
    let t = curl_one(&["-u", "bob:p:w -x"], nginx.http_url("/basic/file.txt"));
    assert_eq!((t.status, t.body.as_str()), (200, "basic file\n"));
    let t = curl_one(
        &["-k", "-u", "alice:Secret1"],
        nginx.https_url("/basic/echo"),
    );
    assert_eq!((t.status, t.body.as_str()), (200, "alice"), "HTTPS too");
    let log = nginx.wait_log_lines(3);
    assert_eq!(
        log.iter()
            .map(|l| (l.uri.as_str(), l.status, l.remote_user.as_str()))
            .collect::<Vec<_>>(),
        [
            ("/basic/echo", 200, "alice"),
            ("/basic/file.txt", 200, "bob"),
            ("/basic/echo", 200, "alice")
        ]
    );
    assert!(log[0].authorization.starts_with("Basic "));
}

#[test]
fn nginx_basic_wrong_password_and_no_credentials_get_401() {
    let nginx = nginx_basic();
    let t = curl_one(&[], nginx.http_url("/basic/file.txt"));
    assert_eq!(t.status, 401);
    assert!(
        t.headers
            .contains("WWW-Authenticate: Basic realm=\"ferry basic\""),
        "{}",
        t.headers
    );
    let t = curl_one(&["-u", "alice:wrong"], nginx.http_url("/basic/echo"));
    assert_eq!(t.status, 401);
    let t = curl_one(&["-u", "mallory:Secret1"], nginx.http_url("/basic/echo"));
    assert_eq!(t.status, 401);
    let t = curl_one(&[], nginx.http_url("/public.txt"));
    assert_eq!(
        (t.status, t.body.as_str()),
        (200, "public\n"),
        "outside the prefix: open"
    );
    let log = nginx.wait_log_lines(4);
    assert_eq!(
        log.iter()
            .map(|l| (l.status, l.remote_user.as_str()))
            .collect::<Vec<_>>(),
        [(401, ""), (401, "alice"), (401, "mallory"), (200, "")],
        "$remote_user is the name sent, right password or not"
    );
}
