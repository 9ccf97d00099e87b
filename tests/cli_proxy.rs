//! The `ferry` command with proxies: `-x` (forward, `-p` tunnels, https through CONNECT),
//! `-U/--proxy-user` against squid's Basic authentication, `--noproxy`, the environment
//! (`http_proxy` honoured, `HTTP_PROXY` ignored, httpoxy), and `ferry proxy explain`. Each run of
//! the binary is bounded (20 s, then killed and the test fails) and gets a clean environment: no
//! proxy variable and no `REQUEST_METHOD` unless the test sets it.

mod support;

use std::time::Duration;
use support::{cli, pki, show_bytes, Nginx, NginxOptions, Squid, SquidOptions};

/// Longest a single run of the binary may take before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// A proxy URL nobody listens on: a request that used it would fail to connect (exit 7).
const DEAD_PROXY: &str = "http://127.0.0.1:1";

#[derive(Debug)]
struct Run {
    args: Vec<String>,
    env: Vec<(String, String)>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "ferry {:?} with {:?}\nexit: {}\nstdout: {}\nstderr:\n{}",
            self.args,
            self.env,
            self.code,
            show_bytes(self.stdout.as_bytes(), 2000),
            self.stderr
        )
    }

    /// Asserts exit 0 and a silent stderr.
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{}", self.describe());
        assert!(self.stderr.is_empty(), "{}", self.describe());
        self
    }

    /// Asserts exit `code` and exactly one stderr line, `ferry: (CODE) ...`.
    fn fails_with(self, code: i32) -> Run {
        assert_eq!(self.code, code, "{}", self.describe());
        let prefix = format!("ferry: ({code}) ");
        assert!(
            self.stderr.starts_with(&prefix)
                && self.stderr.ends_with('\n')
                && self.stderr.lines().count() == 1,
            "stderr must be exactly one line starting {prefix:?}\n{}",
            self.describe()
        );
        self
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs the binary with `args` and, besides a clean proxy environment, `env`.
fn ferry_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let run = cli::run(env!("CARGO_BIN_EXE_ferry"), None, args, env, RUN_LIMIT);
    Run {
        args: run.args,
        env: run.env,
        code: run.code,
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        stderr: run.stderr,
    }
}

fn ferry(args: &[&str]) -> Run {
    ferry_env(args, &[])
}

fn ca() -> String {
    pki().ca_pem.display().to_string()
}

fn hello() -> Nginx {
    Nginx::start(NginxOptions::new().file("hello.txt", "hi\n"))
}

// --- Requests through squid ------------------------------------------------------------------------

#[test]
fn x_forwards_http_and_p_tunnels_it() {
    let squid = Squid::start(SquidOptions::new());
    let nginx = hello();
    let url = nginx.http_url("/hello.txt");
    let run = ferry(&["-x", &squid.url(), &url]).ok();
    assert_eq!(run.stdout, "hi\n");
    let run = ferry(&["-p", "-x", &squid.url(), &url]).ok();
    assert_eq!(run.stdout, "hi\n");

    let log = squid.wait_log_lines(2);
    assert_eq!(
        (log[0].method.as_str(), log[0].url.as_str()),
        ("GET", url.as_str())
    );
    assert_eq!(log[1].method, "CONNECT", "{log:#?}");
    assert_eq!(log[1].url, format!("127.0.0.1:{}", nginx.port()));
    assert_eq!(nginx.wait_log_lines(2).len(), 2);
}

#[test]
fn https_goes_through_a_tunnel_with_cacert() {
    let squid = Squid::start(SquidOptions::new());
    let nginx = hello();
    let run = ferry(&[
        "-x",
        &squid.url(),
        "--cacert",
        &ca(),
        &nginx.https_url("/hello.txt"),
    ])
    .ok();
    assert_eq!(run.stdout, "hi\n");
    let log = squid.wait_log_lines(1);
    assert_eq!(log[0].method, "CONNECT");
    assert_eq!(log[0].url, format!("localhost:{}", nginx.tls_port()));
    assert_eq!(log[0].status, 200);
    assert!(!nginx.wait_log_lines(1)[0].ssl_protocol.is_empty());
}

#[test]
fn proxy_user_with_squid_basic() {
    let squid = Squid::start(SquidOptions::basic(&[("alice", "s3cret")]));
    let nginx = hello();
    for url in [nginx.http_url("/hello.txt"), nginx.https_url("/hello.txt")] {
        let run = ferry(&[
            "-x",
            &squid.url(),
            "-U",
            "alice:s3cret",
            "--cacert",
            &ca(),
            &url,
        ])
        .ok();
        assert_eq!(run.stdout, "hi\n");
    }
    // --proxy-user, --proxy-anyauth: the challenge is answered.
    let run = ferry(&[
        "-x",
        &squid.url(),
        "--proxy-user",
        "alice:s3cret",
        "--proxy-anyauth",
        &nginx.http_url("/hello.txt"),
    ])
    .ok();
    assert_eq!(run.stdout, "hi\n");

    let log = squid.wait_log_lines(4);
    let seen: Vec<_> = log
        .iter()
        .map(|l| (l.method.as_str(), l.status, l.user.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", 200, Some("alice")),
            ("CONNECT", 200, Some("alice")),
            ("GET", 407, None),
            ("GET", 200, Some("alice")),
        ],
        "{log:#?}"
    );
    assert!(nginx
        .wait_log_lines(3)
        .iter()
        .all(|l| l.proxy_authorization.is_empty()));
}

#[test]
fn wrong_proxy_user_https_is_exit_56_http_is_the_407() {
    let squid = Squid::start(SquidOptions::basic(&[("alice", "s3cret")]));
    let nginx = hello();
    let run = ferry(&[
        "-x",
        &squid.url(),
        "-U",
        "alice:wrong",
        "--cacert",
        &ca(),
        &nginx.https_url("/hello.txt"),
    ])
    .fails_with(56);
    assert!(run.stdout.is_empty(), "{}", run.describe());
    assert!(!run.stderr.contains("wrong"), "{}", run.describe());
    // Without credentials too.
    ferry(&["-x", &squid.url(), "--cacert", &ca(), &nginx.https_url("/")]).fails_with(56);
    // Forward: the proxy's 407 is the response (as curl without -f), exit 0.
    let run = ferry(&[
        "-x",
        &squid.url(),
        "-U",
        "alice:wrong",
        "-w",
        "%{http_code}",
        &nginx.http_url("/hello.txt"),
    ]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert!(run.stdout.ends_with("407"), "{}", run.describe());
    assert!(nginx.access_log().is_empty());
}

// --- --noproxy and the environment -----------------------------------------------------------------

#[test]
fn noproxy_star_goes_direct() {
    let nginx = hello();
    let run = ferry(&[
        "-x",
        DEAD_PROXY,
        "--noproxy",
        "*",
        &nginx.http_url("/hello.txt"),
    ])
    .ok();
    assert_eq!(run.stdout, "hi\n");
    // And from the environment's proxy, over the environment's bypass list.
    let run = ferry_env(
        &["--noproxy", "127.0.0.1", &nginx.http_url("/hello.txt")],
        &[("http_proxy", DEAD_PROXY), ("no_proxy", "other.example")],
    )
    .ok();
    assert_eq!(run.stdout, "hi\n");
    // The control: without the bypass, the dead proxy is used (couldn't connect).
    ferry(&["-x", DEAD_PROXY, &nginx.http_url("/hello.txt")]).fails_with(7);
}

#[test]
fn environment_http_proxy_honoured_uppercase_ignored() {
    let squid = Squid::start(SquidOptions::new());
    let nginx = hello();
    let url = nginx.http_url("/hello.txt");
    let run = ferry_env(&[&url], &[("http_proxy", &squid.url())]).ok();
    assert_eq!(run.stdout, "hi\n");
    let log = squid.wait_log_lines(1);
    assert_eq!(log[0].url, url);

    // HTTP_PROXY (settable by a CGI client's `Proxy:` header) is never read.
    let run = ferry_env(&[&url], &[("HTTP_PROXY", DEAD_PROXY)]).ok();
    assert_eq!(run.stdout, "hi\n");
    // https_proxy and NO_PROXY from the environment.
    let run = ferry_env(
        &["--cacert", &ca(), &nginx.https_url("/hello.txt")],
        &[("HTTPS_PROXY", &squid.url())],
    )
    .ok();
    assert_eq!(run.stdout, "hi\n");
    let run = ferry_env(
        &[&url],
        &[("http_proxy", DEAD_PROXY), ("NO_PROXY", "127.0.0.0/8")],
    )
    .ok();
    assert_eq!(run.stdout, "hi\n");
    std::thread::sleep(Duration::from_millis(100));
    let log = squid.wait_log_lines(2);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(log[1].method, "CONNECT");
}

#[test]
fn request_method_ignores_environment_proxies_but_not_x() {
    let squid = Squid::start(SquidOptions::new());
    let nginx = hello();
    let url = nginx.http_url("/hello.txt");
    let cgi = [
        ("REQUEST_METHOD", "GET"),
        ("http_proxy", DEAD_PROXY),
        ("HTTP_PROXY", DEAD_PROXY),
        ("https_proxy", DEAD_PROXY),
        ("all_proxy", DEAD_PROXY),
    ];
    let run = ferry_env(&[&url], &cgi).ok();
    assert_eq!(run.stdout, "hi\n");
    let run = ferry_env(&["--cacert", &ca(), &nginx.https_url("/hello.txt")], &cgi).ok();
    assert_eq!(run.stdout, "hi\n");
    // An explicit -x is the caller's choice, not the environment's.
    let run = ferry_env(&["-x", &squid.url(), &url], &cgi).ok();
    assert_eq!(run.stdout, "hi\n");
    assert_eq!(squid.wait_log_lines(1)[0].url, url);
}

#[test]
fn empty_x_disables_the_environment_proxy_and_x_keeps_no_proxy() {
    let squid = Squid::start(SquidOptions::new());
    let nginx = hello();
    let url = nginx.http_url("/hello.txt");
    // `-x ""`: no proxy at all, whatever the environment says (as curl).
    let run = ferry_env(&["-x", "", &url], &[("http_proxy", DEAD_PROXY)]).ok();
    assert_eq!(run.stdout, "hi\n");
    // `-x` still honours the environment's NO_PROXY (as curl).
    let run = ferry_env(&["-x", DEAD_PROXY, &url], &[("NO_PROXY", "127.0.0.1")]).ok();
    assert_eq!(run.stdout, "hi\n");
    // WinHTTP's per-scheme list: http through squid, https (no proxy for it) direct.
    let list = format!("http=127.0.0.1:{}", squid.port());
    let run = ferry(&["-x", &list, &url]).ok();
    assert_eq!(run.stdout, "hi\n");
    let run = ferry(&[
        "-x",
        &list,
        "--cacert",
        &ca(),
        &nginx.https_url("/hello.txt"),
    ])
    .ok();
    assert_eq!(run.stdout, "hi\n");
    std::thread::sleep(Duration::from_millis(100));
    let log = squid.wait_log_lines(1);
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].url.as_str()),
        ("GET", url.as_str())
    );
}

// --- ferry proxy explain -------------------------------------------------------------------------

#[test]
fn explain_direct_without_proxy() {
    let run = ferry(&["proxy", "explain", "https://example.com/"]).ok();
    let lines = run.lines();
    assert_eq!(lines[0], "DIRECT", "{}", run.describe());
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.contains("no proxy configured for https")),
        "{}",
        run.describe()
    );
}

#[test]
fn explain_explicit_proxy() {
    let run = ferry(&[
        "proxy",
        "explain",
        "-x",
        "http://proxy.example:3128",
        "https://example.com/",
    ])
    .ok();
    assert_eq!(
        run.lines()[0],
        "PROXY proxy.example:3128",
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("CONNECT example.com:443"),
        "{}",
        run.describe()
    );
    // -p for an http URL: a tunnel too.
    let run = ferry(&[
        "proxy",
        "explain",
        "-p",
        "-x",
        "proxy.example:3128",
        "http://example.com/",
    ])
    .ok();
    assert_eq!(run.lines()[0], "PROXY proxy.example:3128");
    assert!(run.stdout.contains("--proxytunnel"), "{}", run.describe());
}

#[test]
fn explain_tls_proxy_is_https() {
    let run = ferry(&[
        "proxy",
        "explain",
        "-x",
        "https://tls.example:8443",
        "http://example.com/",
    ])
    .ok();
    assert_eq!(
        run.lines()[0],
        "HTTPS tls.example:8443",
        "{}",
        run.describe()
    );
    let run = ferry(&[
        "proxy",
        "explain",
        "-x",
        "https://tls.example",
        "https://example.com/",
    ])
    .ok();
    assert_eq!(
        run.lines()[0],
        "HTTPS tls.example:443",
        "{}",
        run.describe()
    );
}

#[test]
fn explain_environment_proxy_and_its_source() {
    let run = ferry_env(
        &["proxy", "explain", "http://example.com/"],
        &[("http_proxy", "http://envproxy:8080")],
    )
    .ok();
    assert_eq!(run.lines()[0], "PROXY envproxy:8080", "{}", run.describe());
    assert!(
        run.lines()[1..].iter().any(|l| l.contains("http_proxy")),
        "{}",
        run.describe()
    );
    // HTTP_PROXY is never a source; REQUEST_METHOD silences every variable, and says so.
    let run = ferry_env(
        &["proxy", "explain", "http://example.com/"],
        &[("HTTP_PROXY", "http://evil:80")],
    )
    .ok();
    assert_eq!(run.lines()[0], "DIRECT", "{}", run.describe());
    let run = ferry_env(
        &["proxy", "explain", "http://example.com/"],
        &[
            ("REQUEST_METHOD", "GET"),
            ("http_proxy", "http://envproxy:8080"),
        ],
    )
    .ok();
    assert_eq!(run.lines()[0], "DIRECT", "{}", run.describe());
    assert!(run.stdout.contains("httpoxy"), "{}", run.describe());
}

#[test]
fn explain_bypassed_host_names_the_rule() {
    let run = ferry_env(
        &["proxy", "explain", "http://www.example.com/"],
        &[
            ("http_proxy", "http://envproxy:8080"),
            ("NO_PROXY", "example.com"),
        ],
    )
    .ok();
    let lines = run.lines();
    assert_eq!(lines[0], "DIRECT", "{}", run.describe());
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.contains("NO_PROXY rule \"example.com\" matched host \"www.example.com\"")),
        "{}",
        run.describe()
    );
    let run = ferry(&[
        "proxy",
        "explain",
        "-x",
        "proxy.example:3128",
        "--noproxy",
        "localhost,.corp.example",
        "https://wiki.corp.example/",
    ])
    .ok();
    assert_eq!(run.lines()[0], "DIRECT", "{}", run.describe());
    assert!(
        run.stdout
            .contains("--noproxy rule \".corp.example\" matched host \"wiki.corp.example\""),
        "{}",
        run.describe()
    );
    // --noproxy replaces the environment's list.
    let run = ferry_env(
        &[
            "proxy",
            "explain",
            "--noproxy",
            "other.example",
            "http://www.example.com/",
        ],
        &[("http_proxy", "http://envproxy:8080"), ("no_proxy", "*")],
    )
    .ok();
    assert_eq!(run.lines()[0], "PROXY envproxy:8080", "{}", run.describe());
}

#[test]
fn explain_never_prints_a_password() {
    let runs = [
        ferry(&[
            "proxy",
            "explain",
            "-x",
            "http://u:secret@h:1",
            "-U",
            "u:secret",
            "-u",
            "srv:secret",
            "https://example.com/",
        ]),
        ferry(&[
            "proxy",
            "explain",
            "-x",
            "http://u:secret@h:1",
            "http://example.com/",
        ]),
        ferry_env(
            &["proxy", "explain", "-U", "u:secret", "http://example.com/"],
            &[("http_proxy", "http://u:secret@envproxy:8080")],
        ),
    ];
    for run in &runs {
        assert_eq!(run.code, 0, "{}", run.describe());
        assert!(
            !run.stdout.contains("secret") && !run.stderr.contains("secret"),
            "{}",
            run.describe()
        );
        assert!(
            run.stdout
                .contains("Proxy-Authorization is sent only to proxy"),
            "{}",
            run.describe()
        );
    }
    assert_eq!(runs[0].lines()[0], "PROXY h:1");
    assert_eq!(runs[2].lines()[0], "PROXY envproxy:8080");
    // A bad proxy is an error that hides the userinfo too.
    let run = ferry(&[
        "proxy",
        "explain",
        "-x",
        "http://u:secret@h:0",
        "http://example.com/",
    ])
    .fails_with(5);
    assert!(!run.stderr.contains("secret"), "{}", run.describe());
    let run = ferry(&["-x", "http://u:secret@h:99999", "http://127.0.0.1:1/"]).fails_with(5);
    assert!(!run.stderr.contains("secret"), "{}", run.describe());
}
