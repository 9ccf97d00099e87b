//! Authentication through the `ferry` command: `-u` (Basic, preemptive), `--digest`, `--ntlm`,
//! `--anyauth`, `--oauth2-bearer`, `-v` masking, `--next` groups with different users,
//! `--location-trusted`, and `--default-credentials` with `--autologon`, against nginx (Basic),
//! Apache (Digest) and the pyspnego NTLM server, all on loopback. Each run of the binary is
//! bounded (20 s, then killed and the test fails).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use support::cli::{self, Run};
use support::{Apache, ApacheOptions, Nginx, NginxOptions, NtlmServer, TempDir};

/// Longest a single run of the binary may take before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(20);

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit 0.
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{}", self.describe());
        self
    }

    fn describe(&self) -> String {
        format!(
            "ferry {:?}\nexit: {}\nstdout: {}\nstderr:\n{}",
            self.args,
            self.code,
            support::show_bytes(&self.stdout, 2000),
            self.stderr
        )
    }
}

/// Runs the binary with `args`, stdin empty, no proxy variables, bounded by [`RUN_LIMIT`].
fn ferry(args: &[&str]) -> Run {
    cli::run(env!("CARGO_BIN_EXE_ferry"), None, args, &[], RUN_LIMIT)
}

const ALICE_BASIC: &str = "Basic YWxpY2U6V29uZGVyLWxhbmQ=";

fn nginx_basic() -> Nginx {
    Nginx::start(NginxOptions::new().basic_auth("/basic/", "ferry", &[("alice", "Wonder-land")]))
}

fn ntlm_server() -> NtlmServer {
    NtlmServer::start(&[("CORP", "alice", "Secret1"), ("CORP", "bob", "Hunter2!")])
}

#[test]
fn user_sends_basic_preemptively() {
    let nginx = nginx_basic();
    let run = ferry(&["-u", "alice:Wonder-land", &nginx.http_url("/basic/echo")]).ok();
    assert_eq!(run.out(), "alice");
    let log = nginx.wait_log_lines(1);
    assert_eq!(log.len(), 1, "one request: {log:#?}");
    assert_eq!(
        (log[0].authorization.as_str(), log[0].status),
        (ALICE_BASIC, 200)
    );
    // Wrong password: the 401 page, exit 0 (as curl without -f), one request.
    let run = ferry(&["-u", "alice:nope", &nginx.http_url("/basic/echo")]).ok();
    assert!(run.out().contains("401"), "{}", run.describe());
    assert_eq!(nginx.wait_log_lines(2).len(), 2);
}

#[test]
fn credentials_in_the_url_act_as_user_and_never_reach_the_request_line() {
    let nginx = nginx_basic();
    let url = nginx
        .http_url("/basic/echo")
        .replace("http://", "http://alice:Wonder%2Dland@");
    let run = ferry(&[&url]).ok();
    assert_eq!(run.out(), "alice", "{}", run.describe());
    let log = nginx.wait_log_lines(1);
    assert_eq!(log[0].authorization, ALICE_BASIC);
    assert_eq!(log[0].uri, "/basic/echo");
    // -u wins over the URL's.
    let url = url.replace("Wonder%2Dland", "wrong");
    let run = ferry(&["-u", "alice:Wonder-land", &url]).ok();
    assert_eq!(run.out(), "alice", "{}", run.describe());
}

#[test]
fn the_library_refuses_connect_and_url_credentials() {
    let session = ferry::Session::builder().build().unwrap();
    let e = session
        .request(ferry::Method::CONNECT, "http://127.0.0.1:9/")
        .unwrap()
        .send()
        .unwrap_err();
    assert_eq!(e.kind(), ferry::ErrorKind::InvalidInput, "{e}");
    let e = session
        .get("http://u:p@127.0.0.1:9/")
        .unwrap()
        .send()
        .unwrap_err();
    assert_eq!(e.kind(), ferry::ErrorKind::InvalidUrl, "{e}");
    // `ferry -X CONNECT` says so in one line (exit 2 class: bad input), nothing is sent.
    let run = ferry(&["-X", "CONNECT", "http://127.0.0.1:9/"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("CONNECT"), "{}", run.stderr);
}

#[test]
fn digest_answers_apache() {
    let apache = Apache::start(ApacheOptions::digest(
        "ferry digest",
        &[("alice", "Secret1")],
    ));
    let run = ferry(&[
        "--digest",
        "-u",
        "alice:Secret1",
        &apache.url("/digest/secret.txt"),
    ])
    .ok();
    assert_eq!(run.out(), "digest secret\n");
    let log = apache.wait_log_lines(2);
    assert_eq!(
        log.iter()
            .map(|l| (l.status, l.user.as_deref()))
            .collect::<Vec<_>>(),
        [(401, None), (200, Some("alice"))]
    );
}

#[test]
fn digest_answers_a_second_realm_on_the_same_origin() {
    let conf = "<Location \"/other/\">\n    AuthType Digest\n    AuthName \"other realm\"\n    \
                AuthDigestDomain \"/other/\"\n    AuthDigestProvider file\n    \
                AuthUserFile @DIR@/htdigest-other\n    Require valid-user\n</Location>";
    let apache = Apache::start(
        ApacheOptions::digest("ferry digest", &[("alice", "Secret1")])
            .file("other/x.txt", "other secret\n")
            .conf(conf),
    );
    // mod_authn_file reads the file per request, so it may appear after the start.
    let ha1 = support::apache::md5_hex("alice:other realm:Secret1");
    std::fs::write(
        apache.dir().join("htdigest-other"),
        format!("alice:other realm:{ha1}\n"),
    )
    .unwrap();
    // One invocation, one session: realm A first, then a path of realm B on the same origin.
    let run = ferry(&[
        "--digest",
        "-u",
        "alice:Secret1",
        &apache.url("/digest/secret.txt"),
        &apache.url("/other/x.txt"),
    ])
    .ok();
    assert_eq!(
        run.out(),
        "digest secret\nother secret\n",
        "{}",
        run.describe()
    );
    let statuses: Vec<u16> = apache.wait_log_lines(4).iter().map(|l| l.status).collect();
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
}

#[test]
fn ntlm_authenticates_against_pyspnego() {
    let server = ntlm_server();
    let run = ferry(&["--ntlm", "-u", "CORP\\alice:Secret1", &server.url("/x")]).ok();
    assert_eq!(run.out(), "hello CORP\\alice", "{}", server.stderr());
    let log = server.wait_log_lines(2);
    assert_eq!(log[0].conn, log[1].conn, "{log:#?}");
    assert_eq!(log[1].user.as_deref(), Some("CORP\\alice"));
}

#[test]
fn anyauth_picks_what_each_server_offers() {
    let nginx = nginx_basic();
    let run = ferry(&[
        "--anyauth",
        "-u",
        "alice:Wonder-land",
        &nginx.http_url("/basic/echo"),
    ])
    .ok();
    assert_eq!(run.out(), "alice");
    let log = nginx.wait_log_lines(2);
    assert_eq!(
        log.iter()
            .map(|l| (l.status, l.authorization.as_str()))
            .collect::<Vec<_>>(),
        [(401, ""), (200, ALICE_BASIC)]
    );

    let apache = Apache::start(ApacheOptions::digest(
        "ferry digest",
        &[("alice", "Secret1")],
    ));
    let run = ferry(&[
        "--anyauth",
        "-u",
        "alice:Secret1",
        &apache.url("/digest/secret.txt"),
    ])
    .ok();
    assert_eq!(run.out(), "digest secret\n");

    let server = ntlm_server();
    let run = ferry(&["--anyauth", "-u", "CORP\\bob:Hunter2!", &server.url("/y")]).ok();
    assert_eq!(run.out(), "hello CORP\\bob");
}

#[test]
fn oauth2_bearer_is_sent() {
    let nginx = Nginx::start(NginxOptions::new().file("t.txt", "t\n"));
    ferry(&["--oauth2-bearer", "tok-4711", &nginx.http_url("/t.txt")]).ok();
    assert_eq!(nginx.wait_log_lines(1)[0].authorization, "Bearer tok-4711");
}

#[test]
fn verbose_masks_credentials() {
    let nginx = nginx_basic();
    let run = ferry(&[
        "-v",
        "-u",
        "alice:Wonder-land",
        &nginx.http_url("/basic/echo"),
    ])
    .ok();
    let err = run.stderr.to_ascii_lowercase();
    assert!(
        err.contains("> authorization: basic ***"),
        "{}",
        run.describe()
    );
    for secret in ["Wonder-land", "YWxpY2U6V29uZGVyLWxhbmQ", "alice:"] {
        assert!(!run.stderr.contains(secret), "{secret}: {}", run.describe());
    }

    let run = ferry(&[
        "-v",
        "--oauth2-bearer",
        "sekrit-4711",
        &nginx.http_url("/basic/echo"),
    ]);
    assert!(!run.stderr.contains("sekrit-4711"), "{}", run.describe());
    assert!(run
        .stderr
        .to_ascii_lowercase()
        .contains("authorization: bearer ***"));

    // NTLM: neither the type-1 nor the type-3 (which holds the user name) is printed.
    let server = ntlm_server();
    let run = ferry(&[
        "-v",
        "--ntlm",
        "-u",
        "CORP\\alice:Secret1",
        &server.url("/v"),
    ])
    .ok();
    assert_eq!(run.out(), "hello CORP\\alice");
    let masked = run
        .stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("> authorization:"))
        .collect::<Vec<_>>();
    assert_eq!(masked.len(), 2, "{}", run.describe());
    assert!(masked.iter().all(|l| l.ends_with("NTLM ***")), "{masked:?}");
    assert!(!run.stderr.contains("Secret1"), "{}", run.describe());
}

#[test]
fn next_groups_with_different_users_use_different_connections() {
    let server = ntlm_server();
    let run = ferry(&[
        "--ntlm",
        "-u",
        "CORP\\alice:Secret1",
        &server.url("/a"),
        "--next",
        "--ntlm",
        "-u",
        "CORP\\bob:Hunter2!",
        &server.url("/b"),
        "--next",
        &server.url("/nobody"),
        "--next",
        "--ntlm",
        "-u",
        "CORP\\alice:Secret1",
        &server.url("/a"),
    ])
    .ok();
    let out = run.out();
    assert!(
        out.starts_with("hello CORP\\alicehello CORP\\bob") && out.ends_with("hello CORP\\alice"),
        "{}",
        run.describe()
    );
    // alice: type1 + type3; bob: the same; nobody: one 401; alice again on her connection.
    let log = server.wait_log_lines(6);
    assert_eq!(log.len(), 6, "{log:#?}");
    let mut per_conn: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for l in &log {
        per_conn.entry(l.conn).or_default().insert(format!(
            "{}:{}",
            l.path,
            l.user.as_deref().unwrap_or("-")
        ));
    }
    assert_eq!(per_conn.len(), 3, "{log:#?}");
    let users: BTreeSet<&str> = log.iter().filter_map(|l| l.user.as_deref()).collect();
    assert_eq!(users, BTreeSet::from(["CORP\\alice", "CORP\\bob"]));
    for (conn, seen) in &per_conn {
        let paths: BTreeSet<&str> = seen.iter().map(|s| s.split(':').next().unwrap()).collect();
        assert_eq!(paths.len(), 1, "connection {conn} served {seen:?}");
    }
    let nobody = log.iter().find(|l| l.path == "/nobody").unwrap();
    assert_eq!((nobody.status, nobody.user.as_deref()), (401, None));
    assert_eq!(
        log[5].conn, log[0].conn,
        "alice's connection reused: {log:#?}"
    );
}

#[test]
fn location_trusted_lets_credentials_follow_a_redirect() {
    let b = nginx_basic();
    let a = Nginx::start(NginxOptions::new().redirect("/go", 302, &b.http_url("/basic/echo")));
    let run = ferry(&["-L", "-u", "alice:Wonder-land", &a.http_url("/go")]).ok();
    assert!(run.out().contains("401"), "{}", run.describe());
    assert_eq!(b.wait_log_lines(1)[0].authorization, "");
    let run = ferry(&[
        "-L",
        "--location-trusted",
        "-u",
        "alice:Wonder-land",
        &a.http_url("/go"),
    ])
    .ok();
    assert_eq!(run.out(), "alice");
    assert_eq!(b.wait_log_lines(2)[1].authorization, ALICE_BASIC);
}

fn write_credentials(dir: &TempDir, name: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, "CORP\\alice:Secret1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path_str(&path)
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn default_credentials_file_must_be_private() {
    let server = ntlm_server();
    let dir = TempDir::new("cli-creds");
    let url = format!("http://localhost:{}/ambient", server.port());
    for mode in [0o644, 0o640, 0o660, 0o604] {
        let file = write_credentials(&dir, &format!("creds-{mode:o}"), mode);
        let run = ferry(&["--default-credentials", &file, &url]);
        assert_ne!(run.code, 0, "mode {mode:o}: {}", run.describe());
        assert!(
            run.stderr.starts_with("ferry: (") && run.stderr.lines().count() == 1,
            "one error line: {}",
            run.describe()
        );
        assert!(run.stdout.is_empty(), "{}", run.describe());
    }
    assert!(
        server.log().is_empty(),
        "nothing was sent: {:?}",
        server.log()
    );
}

#[test]
fn default_credentials_follow_the_autologon_level() {
    let server = ntlm_server();
    let dir = TempDir::new("cli-creds");
    let file = write_credentials(&dir, "creds", 0o600);
    let intranet = format!("http://localhost:{}/ambient", server.port());
    let run = ferry(&[
        "--default-credentials",
        &file,
        "--autologon",
        "medium",
        &intranet,
    ])
    .ok();
    assert_eq!(run.out(), "hello CORP\\alice", "{}", server.stderr());
    // The default level is medium.
    let run = ferry(&["--default-credentials", &file, &intranet]).ok();
    assert_eq!(run.out(), "hello CORP\\alice");
    // Each ambient run: the challenge, then type 1 and type 3 on one connection.
    let before = 6;
    assert_eq!(server.wait_log_lines(before).len(), before);
    // Not to an IP address at medium, nowhere at high.
    let by_ip = server.url("/ambient-ip");
    for (level, url) in [("medium", by_ip.as_str()), ("high", intranet.as_str())] {
        let run = ferry(&["--default-credentials", &file, "--autologon", level, url]).ok();
        assert!(!run.out().contains("hello"), "{level}: {}", run.describe());
    }
    // Low: anywhere.
    let run = ferry(&["--default-credentials", &file, "--autologon", "low", &by_ip]).ok();
    assert_eq!(run.out(), "hello CORP\\alice");
    let log = server.wait_log_lines(before + 2);
    let refused = &log[before..before + 2];
    assert!(
        refused.iter().all(|l| l.auth == "none" && l.status == 401),
        "no NTLM message where the level forbids it: {log:#?}"
    );
    // An unknown level is a usage error.
    let run = ferry(&[
        "--default-credentials",
        &file,
        "--autologon",
        "maybe",
        &intranet,
    ]);
    assert_eq!(run.code, 2, "{}", run.describe());
}
