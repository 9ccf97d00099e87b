//! End-to-end tests of the `ferry` command: the real binary against a private nginx and scripted
//! raw-socket servers, all on loopback. Each run of the binary is bounded (20 s, then killed and
//! the test fails).

mod support;

use std::path::Path;
use std::time::Duration;
use support::cli::{self, Run};
use support::{
    fnv1a64, large_file_bytes, large_file_fnv1a64, pki, show_bytes, Nginx, NginxOptions,
    ScriptServer, Step, TempDir,
};

/// Longest a single run of the binary may take before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(20);

impl Run {
    /// The stdout as text (lossy).
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
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
        assert_one_error_line(&self.stderr, code, &self.describe());
        self
    }

    fn describe(&self) -> String {
        format!(
            "ferry {:?}\nexit: {} after {:?}\nstdout: {}\nstderr:\n{}",
            self.args,
            self.code,
            self.elapsed,
            show_bytes(&self.stdout, 2000),
            self.stderr
        )
    }
}

fn assert_one_error_line(stderr: &str, code: i32, context: &str) {
    let prefix = format!("ferry: ({code}) ");
    assert!(
        stderr.starts_with(&prefix) && stderr.ends_with('\n') && stderr.lines().count() == 1,
        "stderr must be exactly one line starting {prefix:?}\n{context}"
    );
}

/// Runs the binary with `args` in `cwd` (or the test's cwd), stdin empty, bounded by
/// [`RUN_LIMIT`].
fn ferry_in(cwd: Option<&Path>, args: &[&str]) -> Run {
    cli::run(env!("CARGO_BIN_EXE_ferry"), cwd, args, &[], RUN_LIMIT)
}

fn ferry(args: &[&str]) -> Run {
    ferry_in(None, args)
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A `ScriptServer` step checking the request head case-insensitively for every needle.
fn head_has(needles: &[&str]) -> Step {
    let needles: Vec<String> = needles.iter().map(|n| n.to_ascii_lowercase()).collect();
    Step::head(move |h| {
        let h = h.to_ascii_lowercase();
        match needles.iter().find(|n| !h.contains(n.as_str())) {
            None => Ok(()),
            Some(n) => Err(format!("head does not contain {n:?} (case-insensitive)")),
        }
    })
}

fn ok_response(body: &str) -> Step {
    Step::send(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn finish(server: ScriptServer) {
    if let Err(e) = server.finish() {
        panic!("script server: {e}");
    }
}

// --- Output: -o, -O, -o -, several URLs ---------------------------------------------------------

#[test]
fn output_options_write_where_asked() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("a.txt", "alpha\n")
            .file("dir/b.txt", "bravo\n")
            .file("dir/c.txt", "charlie\n"),
    );
    let tmp = TempDir::new("cli-out");
    let (fa, fb) = (tmp.join("one"), tmp.join("two"));

    // Several URLs, each with its own -o; nothing on stdout.
    let run = ferry(&[
        "-o",
        &path_str(&fa),
        nginx.http_url("a.txt").as_str(),
        "-o",
        &path_str(&fb),
        nginx.http_url("dir/b.txt").as_str(),
    ])
    .ok();
    assert!(run.stdout.is_empty(), "{}", run.describe());
    assert_eq!(read(&fa), b"alpha\n");
    assert_eq!(read(&fb), b"bravo\n");

    // -o - is stdout.
    let run = ferry(&["-o", "-", &nginx.http_url("a.txt")]).ok();
    assert_eq!(run.stdout, b"alpha\n");

    // No -o: stdout.
    let run = ferry(&[&nginx.http_url("dir/c.txt")]).ok();
    assert_eq!(run.stdout, b"charlie\n");

    // -O: named after the URL's last segment, in the current directory.
    let cwd = TempDir::new("cli-cwd");
    let run = ferry_in(Some(cwd.path()), &["-O", &nginx.http_url("dir/b.txt")]).ok();
    assert!(run.stdout.is_empty(), "{}", run.describe());
    assert_eq!(read(&cwd.join("b.txt")), b"bravo\n");

    // -O and -o are matched to the URLs in command-line order (curl): the first URL gets the
    // remote name, the second the -o file.
    let cwd = TempDir::new("cli-cwd");
    let run = ferry_in(
        Some(cwd.path()),
        &[
            "-O",
            &nginx.http_url("dir/c.txt"),
            "-o",
            "named.out",
            &nginx.http_url("a.txt"),
        ],
    )
    .ok();
    assert!(run.stdout.is_empty(), "{}", run.describe());
    assert_eq!(read(&cwd.join("c.txt")), b"charlie\n");
    assert_eq!(read(&cwd.join("named.out")), b"alpha\n");

    // A URL with no file name for -O is an error (23), not a file named "".
    let cwd = TempDir::new("cli-cwd");
    ferry_in(Some(cwd.path()), &["-O", &nginx.http_url("/")]).fails_with(23);
}

#[test]
fn large_download_to_a_file_matches_the_source() {
    const SIZE: u64 = 16 << 20;
    let nginx = Nginx::start(NginxOptions::new().large_file("big.bin", SIZE));
    let tmp = TempDir::new("cli-big");
    let dest = tmp.join("big.bin");
    let run = ferry(&[
        "-o",
        &path_str(&dest),
        "-w",
        "%{size_download}",
        &nginx.http_url("big.bin"),
    ])
    .ok();
    assert_eq!(run.out(), SIZE.to_string());
    let got = read(&dest);
    assert_eq!(got.len() as u64, SIZE);
    assert_eq!(fnv1a64(&got), large_file_fnv1a64("big.bin", SIZE));
    assert_eq!(&got[..4096], &large_file_bytes("big.bin", 0, 4096)[..]);
}

// --- Heads: -i, -I -----------------------------------------------------------------------------

#[test]
fn include_and_head() {
    let nginx = Nginx::start(NginxOptions::new().file("hello.txt", "hello, ferry\n"));
    let url = nginx.http_url("hello.txt");

    let run = ferry(&["-i", &url]).ok();
    let out = run.out();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{}", run.describe());
    let (head, body) = out
        .split_once("\r\n\r\n")
        .expect("head ends with CRLF CRLF");
    assert!(
        head.to_ascii_lowercase().contains("\r\ncontent-length: 13"),
        "{}",
        run.describe()
    );
    assert_eq!(body, "hello, ferry\n");

    let run = ferry(&["-I", &url]).ok();
    let out = run.out();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{}", run.describe());
    assert!(
        out.ends_with("\r\n\r\n"),
        "only the head: {}",
        run.describe()
    );
    assert!(!out.contains("hello, ferry"), "{}", run.describe());

    let log = nginx.wait_log_lines(2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[1].method, "HEAD");
    assert_eq!(log[1].uri, "/hello.txt");
}

// --- Request options: -X, -H, -A, -d, --data-binary, -T ----------------------------------------

#[test]
fn method_header_and_user_agent_reach_the_server() {
    let nginx = Nginx::start(NginxOptions::new());
    ferry(&[
        "-X",
        "DELETE",
        "-H",
        "X-Test: tag-42",
        "-A",
        "cli-test-agent/1.0",
        &nginx.http_url("status/200"),
    ])
    .ok();
    // A header without a value removes it (curl): no X-Test on the second request.
    ferry(&["-H", "X-Test:", &nginx.http_url("status/201")]).ok();
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[0].method, "DELETE");
    assert_eq!(log[0].x_test, "tag-42");
    assert_eq!(log[0].user_agent, "cli-test-agent/1.0");
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].x_test, "");
    assert!(!log[1].user_agent.is_empty(), "a default User-Agent");
}

#[test]
fn data_is_posted_form_encoded_and_joined() {
    let server = ScriptServer::start(vec![vec![
        head_has(&[
            "POST /form HTTP/1.1\r\n",
            "\r\ncontent-type: application/x-www-form-urlencoded\r\n",
            "\r\ncontent-length: 7\r\n",
        ]),
        Step::expect("a=1&b=2"),
        ok_response("ok"),
    ]]);
    let run = ferry(&["-d", "a=1", "-d", "b=2", &server.url("form")]).ok();
    assert_eq!(run.stdout, b"ok");
    finish(server);
}

#[test]
fn data_from_files_ascii_strips_newlines_binary_keeps_them() {
    let tmp = TempDir::new("cli-data");
    let file = tmp.join("body.txt");
    std::fs::write(&file, "x=1\r\ny=2\n").unwrap();
    let at_file = format!("@{}", path_str(&file));

    let server = ScriptServer::start(vec![
        vec![
            head_has(&["POST / HTTP/1.1\r\n", "\r\ncontent-length: 6\r\n"]),
            Step::expect("x=1y=2"),
            ok_response("one"),
        ],
        vec![
            head_has(&["POST / HTTP/1.1\r\n", "\r\ncontent-length: 9\r\n"]),
            Step::expect("x=1\r\ny=2\n"),
            ok_response("two"),
        ],
    ]);
    // Two invocations: each makes its own connection (scripts 0 and 1).
    assert_eq!(
        ferry(&["-d", &at_file, &server.url("/")]).ok().stdout,
        b"one"
    );
    assert_eq!(
        ferry(&["--data-binary", &at_file, &server.url("/")])
            .ok()
            .stdout,
        b"two"
    );
    finish(server);
}

#[test]
fn upload_file_puts_the_exact_bytes() {
    let tmp = TempDir::new("cli-upload");
    let file = tmp.join("up.bin");
    let bytes = large_file_bytes("up.bin", 0, 3000);
    std::fs::write(&file, &bytes).unwrap();
    let server = ScriptServer::start(vec![
        vec![
            head_has(&["PUT /target HTTP/1.1\r\n", "\r\ncontent-length: 3000\r\n"]),
            Step::Expect(bytes.clone()),
            Step::send("HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nput"),
        ],
        vec![
            // A URL ending in '/' gets the file's name appended.
            head_has(&[
                "PUT /dav/up.bin HTTP/1.1\r\n",
                "\r\ncontent-length: 3000\r\n",
            ]),
            Step::Expect(bytes.clone()),
            Step::send("HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\ndav"),
        ],
    ]);
    let f = path_str(&file);
    assert_eq!(
        ferry(&["-T", &f, &server.url("target")]).ok().stdout,
        b"put"
    );
    assert_eq!(ferry(&["-T", &f, &server.url("dav/")]).ok().stdout, b"dav");
    finish(server);
}

#[test]
fn large_upload_waits_for_100_continue_and_include_shows_it() {
    const SIZE: usize = (1 << 20) + 1000;
    let tmp = TempDir::new("cli-upload-big");
    let file = tmp.join("big.bin");
    let bytes = large_file_bytes("big.bin", 0, SIZE);
    std::fs::write(&file, &bytes).unwrap();
    let server = ScriptServer::start(vec![vec![
        head_has(&[
            "PUT /big HTTP/1.1\r\n",
            &format!("\r\ncontent-length: {SIZE}\r\n"),
            "\r\nexpect: 100-continue\r\n",
        ]),
        Step::send("HTTP/1.1 100 Continue\r\n\r\n"),
        Step::Expect(bytes),
        Step::send("HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"),
    ]]);
    let run = ferry(&["-i", "-T", &path_str(&file), &server.url("big")]).ok();
    let out = run.out();
    assert!(
        out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"),
        "{}",
        run.describe()
    );
    assert!(out.ends_with("\r\n\r\ndone"), "{}", run.describe());
    finish(server);
}

// --- Redirects: -L, --max-redirs ----------------------------------------------------------------

#[test]
fn redirects_followed_with_location_only() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("final.txt", "landed\n")
            .redirect("/r1", 302, "@HTTP@/r2")
            .redirect("/r2", 302, "@HTTP@/final.txt"),
    );
    let start = nginx.http_url("r1");
    let fmt = "%{http_code} %{num_redirects} %{url_effective}\\n";

    let run = ferry(&["-L", "-w", fmt, &start]).ok();
    assert_eq!(
        run.out(),
        format!("landed\n200 2 {}\n", nginx.http_url("final.txt"))
    );

    // Without -L the 302 itself is the result, and that is a success.
    let run = ferry(&["-w", fmt, "-o", "/dev/null", &start]).ok();
    assert_eq!(run.out(), format!("302 0 {start}\n"));

    // -i -L outputs every head on the way (curl), then the final body.
    let run = ferry(&["-i", "-L", &start]).ok();
    let out = run.out();
    let heads: Vec<&str> = out.split("\r\n\r\n").collect();
    assert_eq!(heads.len(), 4, "{}", run.describe());
    assert!(heads[0].starts_with("HTTP/1.1 302 "), "{}", run.describe());
    assert!(heads[1].starts_with("HTTP/1.1 302 "), "{}", run.describe());
    assert!(
        heads[2].starts_with("HTTP/1.1 200 OK"),
        "{}",
        run.describe()
    );
    assert_eq!(heads[3], "landed\n");

    // --max-redirs -1 is "no limit" (curl).
    let run = ferry(&["-L", "--max-redirs", "-1", &start]).ok();
    assert_eq!(run.stdout, b"landed\n");

    // Two hops with --max-redirs 1: too many redirects.
    let run = ferry(&["-L", "--max-redirs", "1", &start]).fails_with(47);
    assert!(!run.out().contains("landed"), "{}", run.describe());
}

// --- Errors: -s, -S, -f -------------------------------------------------------------------------

#[test]
fn silent_show_error_and_fail() {
    let port = refused_port();
    let url = format!("http://127.0.0.1:{port}/");

    ferry(&[&url]).fails_with(7);
    let run = ferry(&["-s", &url]);
    assert_eq!(run.code, 7, "{}", run.describe());
    assert!(
        run.stderr.is_empty(),
        "-s prints nothing: {}",
        run.describe()
    );
    assert!(run.stdout.is_empty(), "{}", run.describe());
    ferry(&["-s", "-S", &url]).fails_with(7);
    ferry(&["-sS", &url]).fails_with(7);

    let nginx = Nginx::start(NginxOptions::new());
    let run = ferry(&["-f", &nginx.http_url("status/404")]).fails_with(22);
    assert!(run.stdout.is_empty(), "no body with -f: {}", run.describe());
    assert!(run.stderr.contains("404"), "{}", run.describe());
    let run = ferry(&["-sf", &nginx.http_url("status/404")]);
    assert_eq!(run.code, 22, "{}", run.describe());
    assert!(run.stdout.is_empty() && run.stderr.is_empty());
    // -f with -o creates no file (curl).
    let tmp = TempDir::new("cli-fail");
    let dest = tmp.join("out");
    ferry(&["-sf", "-o", &path_str(&dest), &nginx.http_url("status/404")]);
    assert!(!dest.exists(), "-f must not create the -o file");
    // Without -f a 404 is output and exit 0.
    let run = ferry(&[&nginx.http_url("status/404")]).ok();
    assert_eq!(run.stdout, b"status 404\n");
}

/// A loopback port nothing listens on (bound, then released).
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// --- Verbose ------------------------------------------------------------------------------------

#[test]
fn verbose_traces_and_masks_credentials() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("index.html", "<p>index</p>\n")
            .file("a.txt", "alpha\n"),
    );
    let run = ferry(&[
        "-v",
        "-H",
        "Authorization: Basic c2VjcmV0",
        "-H",
        "Cookie: session=hunter2",
        &nginx.http_url("/"),
        &nginx.http_url("a.txt"),
    ]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert_eq!(run.stdout, b"<p>index</p>\nalpha\n");
    let err = &run.stderr;
    let lines: Vec<&str> = err.lines().collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no line starting {needle:?}:\n{err}"))
    };
    let connected = pos("* Connected");
    let first_req = pos("> GET / HTTP/1.1");
    let first_resp = pos("< HTTP/1.1 200");
    let reuse = lines
        .iter()
        .position(|l| l.contains("Re-using existing connection"))
        .unwrap_or_else(|| panic!("no connection reuse:\n{err}"));
    let second_req = pos("> GET /a.txt HTTP/1.1");
    assert!(connected < first_req && first_req < first_resp, "{err}");
    assert!(first_resp < reuse && reuse < second_req, "{err}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("* Connected"))
            .count(),
        1,
        "one connection for both URLs:\n{err}"
    );
    // ferry's encoder sends header names in lower case, so -v shows them so (curl keeps the
    // case as typed); the value must be masked either way.
    let masked = |l: &&&str| l.eq_ignore_ascii_case("> Authorization: Basic ***");
    assert_eq!(lines.iter().filter(masked).count(), 2, "{err}");
    let cookie = |l: &&&str| l.eq_ignore_ascii_case("> Cookie: ***");
    assert_eq!(lines.iter().filter(cookie).count(), 2, "{err}");
    for secret in ["c2VjcmV0", "secret", "hunter2"] {
        assert!(!err.contains(secret), "{secret} leaked to stderr:\n{err}");
        assert!(!run.out().contains(secret), "{secret} leaked to stdout");
    }
    // The credentials were sent all the same.
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[0].authorization, "Basic c2VjcmV0");
    assert_eq!(log[1].cookie, "session=hunter2");
}

// --- Time limits: -m, --connect-timeout --------------------------------------------------------

#[test]
fn max_time_stops_a_stalled_transfer() {
    // The server reads the request and never answers; it waits for the client to hang up.
    let server = ScriptServer::start(vec![vec![Step::any_head(), Step::ReadToEof]]);
    let run = ferry(&["-m", "0.5", &server.url("stall")]).fails_with(28);
    assert!(
        run.elapsed < Duration::from_secs(3),
        "-m 0.5 took {:?}",
        run.elapsed
    );
    finish(server);

    // Stalled mid-body.
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part"),
        Step::ReadToEof,
    ]]);
    let run = ferry(&["-m", "0.5", &server.url("stall")]).fails_with(28);
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    finish(server);

    // 0 is "no limit" for -m and "the default" for --connect-timeout (curl), not an instant
    // timeout.
    let server = ScriptServer::start(vec![vec![Step::any_head(), ok_response("zero")]]);
    let run = ferry(&["-m", "0", "--connect-timeout", "0", &server.url("z")]).ok();
    assert_eq!(run.stdout, b"zero");
    finish(server);

    // --connect-timeout is accepted; a refused port is still a connect failure.
    let url = format!("http://127.0.0.1:{}/", refused_port());
    ferry(&["--connect-timeout", "2", &url]).fails_with(7);
    ferry(&["--connect-timeout", "0.5", "-m", "3", &url]).fails_with(7);
}

// --- TLS: --cacert, -k --------------------------------------------------------------------------

#[test]
fn tls_trust_options() {
    let nginx = Nginx::start(NginxOptions::new().file("hello.txt", "secure hello\n"));
    let url = nginx.https_url("hello.txt");
    let pki = pki();
    let ca = path_str(&pki.ca_pem);
    let ca2 = path_str(&pki.ca2_pem);

    let run = ferry(&["--cacert", &ca, &url]).ok();
    assert_eq!(run.stdout, b"secure hello\n");
    ferry(&["--cacert", &ca2, &url]).fails_with(60);
    ferry(&[&url]).fails_with(60);
    let run = ferry(&["-k", &url]).ok();
    assert_eq!(run.stdout, b"secure hello\n");
    // An unreadable CA file.
    ferry(&["--cacert", "/nonexistent/ca.pem", &url]).fails_with(77);

    let log = nginx.wait_log_lines(2);
    assert!(log.iter().all(|l| l.ssl_protocol.starts_with("TLSv1.")));
}

// --- Write-out and connection reuse --------------------------------------------------------------

#[test]
fn write_out_variables() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", "alpha\n"));
    let url = nginx.http_url("a.txt");
    let run = ferry(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}|%{num_connects}|%{num_redirects}|%{size_download}|%{url_effective}|%{content_type}|%{exitcode}|%{time_total}|%%\\n",
        &url,
    ])
    .ok();
    let out = run.out();
    let fields: Vec<&str> = out.trim_end_matches('\n').split('|').collect();
    assert!(out.ends_with("|%\n"), "{}", run.describe());
    assert_eq!(
        fields[..7],
        ["200", "1", "0", "6", url.as_str(), "text/plain", "0"],
        "{}",
        run.describe()
    );
    let t: f64 = fields[7].parse().expect("time_total is a number");
    assert!(t > 0.0 && t < RUN_LIMIT.as_secs_f64(), "{t}");

    // On failure -w still prints, with code 000.
    let bad = format!("http://127.0.0.1:{}/", refused_port());
    let run = ferry(&["-s", "-w", "%{http_code} %{exitcode}\\n", &bad]);
    assert_eq!(run.code, 7);
    assert_eq!(run.out(), "000 7\n");
}

#[test]
fn two_urls_share_one_connection() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("a.txt", "alpha\n")
            .file("b.txt", "bravo\n"),
    );
    let run = ferry(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\\n",
        &nginx.http_url("a.txt"),
        &nginx.http_url("b.txt"),
    ])
    .ok();
    assert_eq!(run.out(), "200 1\n200 0\n");
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[0].connection, log[1].connection, "{log:#?}");
    assert_eq!(
        (log[0].connection_requests, log[1].connection_requests),
        (1, 2)
    );
}

#[test]
fn next_groups_have_their_own_options_and_share_the_connection() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("a.txt", "alpha\n")
            .file("b.txt", "bravo\n"),
    );
    let run = ferry(&[
        "-H",
        "X-Test: one",
        &nginx.http_url("a.txt"),
        "--next",
        "-H",
        "X-Test: two",
        "-w",
        "[%{num_connects}]",
        &nginx.http_url("b.txt"),
    ])
    .ok();
    // -w belongs to the second group only.
    assert_eq!(run.out(), "alpha\nbravo\n[0]");
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[0].x_test, "one");
    assert_eq!(log[1].x_test, "two");
    assert_eq!(log[0].connection, log[1].connection, "{log:#?}");
}

// --- Exit codes ----------------------------------------------------------------------------------

#[test]
fn usage_errors_are_one_line_with_exit_2() {
    for args in [
        &["--no-such-option", "http://127.0.0.1:1/"][..],
        &["-m", "soon", "http://127.0.0.1:1/"],
        &["-m"],
        &["--max-redirs", "many", "http://127.0.0.1:1/"],
        &[],
        &["-v"],
    ] {
        let run = ferry(args).fails_with(2);
        assert!(run.stdout.is_empty(), "{}", run.describe());
    }
    let run = ferry(&["--help"]).ok();
    assert!(run.out().contains("--max-time"), "{}", run.describe());
}

#[test]
fn exit_codes_for_local_failures() {
    for bad in ["http://", "ftp://x/", "not a url"] {
        ferry(&[bad]).fails_with(3);
    }
    // `.invalid` never resolves (RFC 6761).
    ferry(&["-m", "10", "http://nonexistent.invalid/"]).fails_with(6);
    ferry(&[&format!("http://127.0.0.1:{}/", refused_port())]).fails_with(7);
    ferry(&["-X", "BAD METHOD", "http://127.0.0.1:1/"]).fails_with(43);

    // Writing into a directory that does not exist.
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", "alpha\n"));
    ferry(&["-o", "/nonexistent-dir/x/out", &nginx.http_url("a.txt")]).fails_with(23);
    let tmp = TempDir::new("cli-23");
    let missing = path_str(&tmp.join("no/such/dir/out"));
    ferry(&["-o", &missing, &nginx.http_url("a.txt")]).fails_with(23);
}

/// Runs ferry once against a one-connection script and checks the exit code.
fn against_script(steps: Vec<Step>, code: i32) -> Run {
    let server = ScriptServer::start(vec![steps]);
    let run = ferry(&["-m", "10", &server.url("x")]).fails_with(code);
    finish(server);
    run
}

#[test]
fn exit_codes_for_bad_servers() {
    // Not HTTP at all.
    against_script(vec![Step::any_head(), Step::send("HELLO\r\n\r\n")], 8);
    // A Content-Length that is not a number.
    against_script(
        vec![
            Step::any_head(),
            Step::send("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nabc"),
        ],
        8,
    );
    // Conflicting Content-Lengths (README: strict parsing).
    against_script(
        vec![
            Step::any_head(),
            Step::send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        ],
        8,
    );
    // Closed mid-body: partial file.
    let run = against_script(
        vec![
            Step::any_head(),
            Step::send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Step::Close,
        ],
        18,
    );
    assert_eq!(run.stdout, b"abc", "the partial body is output");
    // Closed without a reply.
    against_script(vec![Step::any_head(), Step::Close], 52);
    // Reset mid-body: the request stays unread so that closing sends RST.
    against_script(
        vec![
            Step::peek_any_head(),
            Step::send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"),
            Step::sleep_ms(200),
            Step::Reset,
        ],
        56,
    );
}

#[test]
fn exit_codes_for_http_results() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .redirect("/loop", 302, "@HTTP@/loop")
            .file("a.txt", "alpha\n"),
    );
    ferry(&["-f", &nginx.http_url("status/500")]).fails_with(22);
    ferry(&["-L", &nginx.http_url("loop")]).fails_with(47);
    ferry(&["-L", "--max-redirs", "0", &nginx.http_url("loop")]).fails_with(47);
    // As in curl, every URL runs and the last transfer decides the exit code.
    let (e404, ok) = (nginx.http_url("status/404"), nginx.http_url("a.txt"));
    let run = ferry(&["-sf", &e404, &ok]);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert_eq!(run.stdout, b"alpha\n");
    let run = ferry(&["-sf", &ok, &e404]);
    assert_eq!(run.code, 22, "{}", run.describe());
    assert_eq!(run.stdout, b"alpha\n");
}
