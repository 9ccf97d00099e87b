//! The curl-mode download flags of the `ferry` binary: `-C -` (resume from the file's size,
//! with `If-Range` when the sidecar knows a validator), `-r`, `-J` with `-O` (sanitised, stays
//! in the directory, never overwrites), `--retry` against a server that answers 503 then 200,
//! `--limit-rate`, the destination lock (a second `-C -` on a file being written fails), and
//! `ferry download` with `-u` through the environment's proxy (and `--noproxy`).
//! Loopback only; every run is bounded.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{cli, large_file_bytes, Nginx, NginxOptions, ScriptServer, Step, TempDir};

const RUN_LIMIT: Duration = Duration::from_secs(30);

fn cmd(cwd: &Path, args: &[&str]) -> Command {
    cli::command(env!("CARGO_BIN_EXE_ferry"), Some(cwd), args, &[])
}

/// Runs ferry to completion (bounded): (exit code, stdout, stderr, elapsed).
fn run(cwd: &Path, args: &[&str]) -> (i32, Vec<u8>, String, Duration) {
    let run = cli::run(env!("CARGO_BIN_EXE_ferry"), Some(cwd), args, &[], RUN_LIMIT);
    (run.code, run.stdout, run.stderr, run.elapsed)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const FILE: &str = "f.bin";
const SIZE: u64 = 4 << 20;

#[test]
fn continue_at_resumes_from_the_file_size() {
    let nginx = Nginx::start(NginxOptions::new().large_file(FILE, SIZE));
    let dir = TempDir::new("cli-c");
    let want = large_file_bytes(FILE, 0, SIZE as usize);
    std::fs::write(dir.join("out"), &want[..1_000_000]).unwrap();
    let url = nginx.http_url(FILE);
    let (code, _, err, _) = run(dir.path(), &["-C", "-", "-o", "out", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read(dir.join("out")).unwrap() == want,
        "bytes differ"
    );
    assert_eq!(names(dir.path()), ["out"], "no sidecar left behind");
    let log = nginx.wait_log_lines(1);
    assert_eq!(log[0].range, "bytes=1000000-");
    assert_eq!(
        log[0].if_range, "",
        "no validator known: no If-Range (as curl)"
    );
    assert_eq!(log[0].status, 206);

    // The file is complete: curl #6740 made this an error; here it is a no-op success.
    let (code, _, err, _) = run(dir.path(), &["-C", "-", "-o", "out", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(dir.join("out")).unwrap() == want);
    assert_eq!(names(dir.path()), ["out"]);
}

#[test]
fn continue_at_sends_if_range_when_the_sidecar_knows_a_validator() {
    let conf = "location /slow/ { alias @ROOT@/; limit_rate 2m; }";
    let nginx = Nginx::start(NginxOptions::new().large_file(FILE, SIZE).server_conf(conf));
    let dir = TempDir::new("cli-c-ir");
    let url = nginx.http_url("/slow/f.bin");
    let mut child = cmd(dir.path(), &["-C", "-", "-o", "out", &url])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    let _ = child.wait();
    let size = std::fs::metadata(dir.join("out")).unwrap().len();
    assert!(size > 0 && size < SIZE, "{size}");
    assert!(
        dir.join(".out.ferry-state").exists(),
        "{:?}",
        names(dir.path())
    );
    let (code, _, err, _) = run(dir.path(), &["-C", "-", "-o", "out", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(dir.join("out")).unwrap() == large_file_bytes(FILE, 0, SIZE as usize));
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[1].range, format!("bytes={size}-"));
    assert!(
        log[1].if_range.starts_with('"'),
        "If-Range is the ETag: {:?}",
        log[1]
    );
    assert_eq!(names(dir.path()), ["out"]);
}

#[test]
fn continue_at_refuses_a_server_that_ignores_ranges() {
    let body = b"0123456789".repeat(100);
    let server = ScriptServer::start(vec![vec![
        Step::head_contains(&["\r\nrange: bytes=10-\r\n"]),
        Step::send(
            [
                &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"[..],
                &body,
            ]
            .concat(),
        ),
        Step::Close,
    ]]);
    let dir = TempDir::new("cli-c-200");
    std::fs::write(dir.join("out"), &body[..10]).unwrap();
    let (code, _, err, _) = run(dir.path(), &["-C", "-", "-o", "out", &server.url("/x")]);
    assert_eq!(code, 33, "{err}");
    assert_eq!(
        std::fs::read(dir.join("out")).unwrap(),
        &body[..10],
        "never appended"
    );
    server.finish().unwrap();
}

#[test]
fn continue_at_refuses_a_file_another_run_is_writing() {
    // The engine's lock covers curl mode too: a second `-C -` on the same file fails at once.
    let body = large_file_bytes(FILE, 0, 64 * 1024);
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\nETag: \"v1\"\r\n\
                Accept-Ranges: bytes\r\nConnection: close\r\n\r\n";
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send([head.as_bytes(), &body[..1000]].concat()),
        // The first run holds its lock meanwhile.
        Step::sleep_ms(3000),
        Step::send(&body[1000..]),
        Step::Close,
    ]]);
    let dir = TempDir::new("cli-c-lock");
    let url = server.url("/f.bin");
    let args = ["-C", "-", "-o", "out", url.as_str()];
    let mut first = cmd(dir.path(), &args).spawn().unwrap();
    let out = dir.join("out");
    let started = support::poll(Duration::from_secs(10), Duration::from_millis(5), || {
        (std::fs::metadata(&out).map_or(0, |m| m.len()) >= 1000).then_some(())
    });
    if started.is_none() {
        let _ = first.kill();
        let _ = first.wait();
        panic!("the first run never wrote 1000 bytes");
    }
    let (code, _, err, elapsed) = run(dir.path(), &args);
    assert_eq!(code, 23, "{err}");
    assert!(
        err.starts_with("ferry: (23) another download is already writing out")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(1), "at once: {elapsed:?}");
    assert_eq!(std::fs::read(&out).unwrap(), &body[..1000], "untouched");
    let status = support::poll(RUN_LIMIT, Duration::from_millis(5), || {
        first.try_wait().ok().flatten()
    });
    let Some(status) = status else {
        let _ = first.kill();
        let _ = first.wait();
        panic!("the first run did not end within {RUN_LIMIT:?}");
    };
    assert!(status.success(), "{status}");
    assert!(std::fs::read(&out).unwrap() == body);
    assert_eq!(names(dir.path()), ["out"], "lock and sidecar removed");
    server.finish().unwrap();
}

#[test]
fn range_asks_for_bytes() {
    let nginx = Nginx::start(NginxOptions::new().large_file(FILE, SIZE));
    let dir = TempDir::new("cli-r");
    let (code, out, err, _) = run(dir.path(), &["-r", "100-199", &nginx.http_url(FILE)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, large_file_bytes(FILE, 100, 100));
    assert_eq!(nginx.wait_log_lines(1)[0].range, "bytes=100-199");
    let (code, _, err, _) = run(dir.path(), &["-r", "x-y", &nginx.http_url(FILE)]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err, _) = run(
        dir.path(),
        &["-C", "-", "-r", "0-1", "-o", "o", &nginx.http_url(FILE)],
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn remote_header_name_stays_in_the_directory_and_never_overwrites() {
    let conf = "location = /cd/a { default_type text/plain; \
                add_header Content-Disposition 'attachment; filename=\"../../../tmp/-x:y.txt\"'; \
                return 200 \"one\\n\"; }\n\
                location = /cd/none { default_type text/plain; return 200 \"two\\n\"; }";
    let nginx = Nginx::start(NginxOptions::new().server_conf(conf));
    let dir = TempDir::new("cli-j");
    let sub = dir.join("work");
    std::fs::create_dir(&sub).unwrap();
    let (code, _, err, _) = run(&sub, &["-O", "-J", &nginx.http_url("/cd/a")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(names(&sub), ["x_y.txt"]);
    assert_eq!(
        names(dir.path()),
        ["work"],
        "nothing written outside the directory"
    );
    // Again: the name is taken, so it is refused and the file is unchanged.
    std::fs::write(sub.join("x_y.txt"), b"mine").unwrap();
    let (code, _, err, _) = run(&sub, &["-O", "-J", &nginx.http_url("/cd/a")]);
    assert_eq!(code, 23, "{err}");
    assert_eq!(std::fs::read(sub.join("x_y.txt")).unwrap(), b"mine");
    // No Content-Disposition: the URL's name.
    let (code, _, err, _) = run(&sub, &["-O", "-J", &nginx.http_url("/cd/none")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(sub.join("none")).unwrap(), b"two\n");
}

#[test]
fn retry_after_503_then_200() {
    let server = ScriptServer::start(vec![
        vec![
            Step::head_starts_with("GET /r HTTP/1.1\r\n"),
            Step::send(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\
                 Connection: close\r\n\r\nbusy",
            ),
            Step::Close,
        ],
        vec![
            Step::head_starts_with("GET /r HTTP/1.1\r\n"),
            Step::send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"),
        ],
    ]);
    let dir = TempDir::new("cli-retry");
    let (code, out, err, elapsed) = run(dir.path(), &["--retry", "2", &server.url("/r")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"ok\n");
    assert!(
        elapsed >= Duration::from_secs(1),
        "Retry-After: 1 honoured ({elapsed:?})"
    );
    assert!(err.contains("retrying in 1 s"), "{err}");
    server.finish().unwrap();

    // Without --retry the 503 is the answer.
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"),
    ]]);
    let (code, out, _, _) = run(dir.path(), &[&server.url("/r")]);
    assert_eq!((code, out.as_slice()), (0, &b"busy"[..]));
    server.finish().unwrap();
}

#[test]
fn limit_rate_in_url_mode() {
    let size = 1u64 << 20;
    let nginx = Nginx::start(NginxOptions::new().large_file(FILE, size));
    let dir = TempDir::new("cli-rate");
    let (code, out, err, elapsed) =
        run(dir.path(), &["--limit-rate", "512k", &nginx.http_url(FILE)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len() as u64, size);
    let rate = size as f64 / elapsed.as_secs_f64();
    let cap = 512.0 * 1024.0;
    assert!(
        (0.9 * cap..=1.1 * cap).contains(&rate),
        "{rate:.0} B/s over {elapsed:?}"
    );
}

#[test]
fn download_sends_user_credentials_and_goes_through_the_environment_proxy() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file("private/f.bin", 1 << 20)
            .basic_auth("private", "r", &[("alice", "pw")]),
    );
    let squid = support::Squid::start(support::SquidOptions::new());
    let dir = TempDir::new("dl-auth-proxy");
    let url = nginx.http_url("/private/f.bin");
    let env = [("http_proxy", squid.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ferry = env!("CARGO_BIN_EXE_ferry");
    // Without credentials: 401 is final (exit 22) and nothing is left behind.
    let r = cli::run(
        ferry,
        Some(dir.path()),
        &["download", "-o", "f.bin", &url],
        &env,
        RUN_LIMIT,
    );
    assert_eq!(r.code, 22, "{}", r.stderr);
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    // With -u, through the proxy named by http_proxy.
    let r = cli::run(
        ferry,
        Some(dir.path()),
        &["download", "-u", "alice:pw", "-o", "f.bin", &url],
        &env,
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = std::fs::read(dir.join("f.bin")).unwrap();
    assert!(
        got == large_file_bytes("private/f.bin", 0, 1 << 20),
        "bytes differ"
    );
    let via_proxy = squid
        .wait_log_lines(2)
        .into_iter()
        .filter(|l| l.url == url)
        .count();
    assert_eq!(via_proxy, 2, "both attempts went through squid");
    let users: Vec<String> = nginx
        .wait_log_lines(2)
        .into_iter()
        .map(|l| l.remote_user)
        .collect();
    assert_eq!(users.last().map(String::as_str), Some("alice"), "{users:?}");
    // --noproxy bypasses it; '' as --proxy means none.
    std::fs::remove_file(dir.join("f.bin")).unwrap();
    let r = cli::run(
        ferry,
        Some(dir.path()),
        &[
            "download",
            "--noproxy",
            "127.0.0.1",
            "-u",
            "alice:pw",
            "-o",
            "f.bin",
            &url,
        ],
        &env,
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        squid.wait_log_lines(2).len(),
        2,
        "the bypassed download did not reach squid"
    );
}
