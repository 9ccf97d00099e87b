//! `ferry download` against scripted loopback servers, for the faults nginx will not produce: a
//! server that ignores `Range` (refused, or restarted from zero with `--allow-dynamic`, never
//! spliced), a wrong `Content-Range` (restart from zero), 503 then 200 with `--retry` (the delay
//! from `Retry-After` as seconds or an HTTP-date, or the engine's own, measured at the server),
//! a body that stalls (`--receive-timeout`, exit 28, a re-run resumes), and two processes on one
//! destination (the second fails at once on the lock). Each checks the resulting bytes and every
//! file left in the directory.
//!
//! The scripts answer with `Connection: close`, so that each request the engine makes arrives on
//! a new connection and runs the next script: a request the test did not expect is a failure of
//! [`ScriptServer::finish`].

mod support;

use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{cli, large_file_bytes, poll, ScriptServer, Step, TempDir};

/// Longest any single run of the binary may take.
const RUN_LIMIT: Duration = Duration::from_secs(30);
/// The entity: small enough that a whole response fits in loopback socket buffers, so a script
/// never blocks (or fails) writing a body the client decided not to read.
const LEN: usize = 48 * 1024;
/// Where the first, interrupted response stops.
const CUT: usize = 12 * 1024;
const OUT: &str = "out.bin";
const PART: &str = ".out.bin.ferry-part";
const STATE: &str = ".out.bin.ferry-state";
/// How far a measured delay may run past the one asked for: process scheduling, a loopback
/// connect and a request on a loaded test machine.
const DELAY_TOLERANCE: Duration = Duration::from_millis(700);

/// The entity's bytes: a non-repeating pattern, so bytes from the wrong offset show.
fn entity() -> Vec<u8> {
    large_file_bytes("script.bin", 0, LEN)
}

/// Runs `ferry download ARGS` in `cwd` (bounded).
fn download(cwd: &Path, args: &[&str]) -> cli::Run {
    let all: Vec<&str> = std::iter::once("download")
        .chain(args.iter().copied())
        .collect();
    cli::run(env!("CARGO_BIN_EXE_ferry"), Some(cwd), &all, &[], RUN_LIMIT)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A 200 head for the whole entity with a strong ETag and range support.
fn head_200() -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\nETag: \"v1\"\r\nAccept-Ranges: bytes\r\n\
         Connection: close\r\n\r\n"
    )
}

/// A 206 head stating `bytes first-last/LEN`.
fn head_206(first: usize, last: usize) -> String {
    format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{LEN}\r\n\
         Content-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
        last - first + 1
    )
}

/// Request-head times, stamped by [`request`] as each head arrives at the server.
type Stamps = Arc<Mutex<Vec<Instant>>>;

/// Expects a `GET` whose head (compared in lower case) holds every one of `needles` and, when
/// `fresh`, no `Range` at all; stamps its arrival in `stamps`.
fn request(needles: &[&str], fresh: bool, stamps: Option<&Stamps>) -> Step {
    let needles: Vec<String> = needles.iter().map(|n| n.to_ascii_lowercase()).collect();
    let stamps = stamps.cloned();
    Step::head(move |h| {
        if let Some(s) = &stamps {
            s.lock().unwrap().push(Instant::now());
        }
        let lower = h.to_ascii_lowercase();
        if !lower.starts_with("get /f.bin http/1.1\r\n") {
            return Err("not GET /f.bin".into());
        }
        if let Some(n) = needles.iter().find(|n| !lower.contains(n.as_str())) {
            return Err(format!("no {n:?} in the head"));
        }
        if fresh && lower.contains("\r\nrange:") {
            return Err("a Range on a request from zero".into());
        }
        Ok(())
    })
}

/// The resume of an entity cut at `at`: `Range: bytes=at-` with `If-Range: "v1"`.
fn resume_from(at: usize) -> Step {
    request(
        &[
            &format!("\r\nrange: bytes={at}-\r\n"),
            "\r\nif-range: \"v1\"\r\n",
        ],
        false,
        None,
    )
}

/// The first connection: the whole entity announced, `CUT` bytes sent, then closed.
fn cut_short(body: &[u8]) -> Vec<Step> {
    vec![
        request(&[], true, None),
        Step::send([head_200().as_bytes(), &body[..CUT]].concat()),
        Step::Close,
    ]
}

/// Asserts the directory holds just the data file (with exactly `prefix`) and a sidecar that
/// records `prefix.len()` bytes, and no lock file: the run that made them has ended.
fn assert_partial(dir: &TempDir, prefix: &[u8]) {
    assert_eq!(names(dir.path()), [PART, STATE]);
    assert_eq!(std::fs::read(dir.join(PART)).unwrap(), prefix, "data file");
    let st = ferry_transfer::download::load_state(&dir.join(OUT)).expect("a sidecar");
    assert_eq!(st.done(), prefix.len() as u64, "checkpoint");
}

/// Asserts the directory holds just the destination, with exactly `want`.
fn assert_complete(dir: &TempDir, want: &[u8]) {
    assert_eq!(names(dir.path()), [OUT]);
    assert!(
        std::fs::read(dir.join(OUT)).unwrap() == want,
        "the result differs from the entity"
    );
}

/// One error line on stderr: `ferry: (CODE) ...`.
fn assert_one_error_line(err: &str, code: i32) {
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("ferry: ({code}) ")), "{err}");
}

#[test]
fn a_server_that_ignores_range_is_refused_and_never_spliced() {
    let body = entity();
    // The same validator again with a 200: the server ignores Range (the entity did not change).
    let ignore = |body: &[u8]| {
        vec![
            resume_from(CUT),
            Step::send([head_200().as_bytes(), body].concat()),
            Step::Close,
        ]
    };
    let server = ScriptServer::start(vec![cut_short(&body), ignore(&body), ignore(&body)]);
    let dir = TempDir::new("dl-ignore");
    let url = server.url("/f.bin");

    let r = download(dir.path(), &["-o", OUT, &url]);
    assert_eq!(r.code, 18, "a body cut short: {}", r.stderr);
    assert_partial(&dir, &body[..CUT]);

    let r = download(dir.path(), &["-o", OUT, &url]);
    assert_eq!(r.code, 33, "{}", r.stderr);
    assert_one_error_line(&r.stderr, 33);
    assert!(
        r.stderr.contains("does not support byte ranges")
            && r.stderr.contains("hint: --allow-dynamic"),
        "{}",
        r.stderr
    );
    // Neither appended nor restarted: the partial data and its checkpoint are as they were.
    assert_partial(&dir, &body[..CUT]);

    // --allow-dynamic: the 200 is written from byte 0 over the partial data.
    let r = download(dir.path(), &["-v", "--allow-dynamic", "-o", OUT, &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("restarting from zero: the server does not support ranges"),
        "{}",
        r.stderr
    );
    assert_complete(&dir, &body);
    server.finish().unwrap();
}

#[test]
fn a_wrong_content_range_restarts_from_zero() {
    let body = entity();
    let server = ScriptServer::start(vec![
        cut_short(&body),
        // Asked for CUT-, the server answers from 0 (and says so): appending it at CUT would
        // corrupt the file.
        vec![
            resume_from(CUT),
            Step::send([head_206(0, LEN - 1).as_bytes(), &body].concat()),
            Step::Close,
        ],
        vec![
            request(&[], true, None),
            Step::send([head_200().as_bytes(), &body].concat()),
            Step::Close,
        ],
    ]);
    let dir = TempDir::new("dl-wrong-cr");
    let url = server.url("/f.bin");
    let r = download(dir.path(), &["-o", OUT, &url]);
    assert_eq!(r.code, 18, "{}", r.stderr);
    assert_partial(&dir, &body[..CUT]);

    let r = download(dir.path(), &["-v", "-o", OUT, &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("restarting from zero: the Content-Range does not match the request")
            && r.stderr.contains("restarts 1"),
        "{}",
        r.stderr
    );
    assert_complete(&dir, &body);
    server.finish().unwrap();
}

/// 503 (with the extra head lines `busy_head`), then 200, with `--retry 2`: returns the gap
/// between the two requests' arrival at the server, and stderr.
fn service_unavailable_then_ok(label: &str, busy_head: &str) -> (Duration, String) {
    let body = entity();
    let stamps: Stamps = Arc::default();
    let server = ScriptServer::start(vec![
        vec![
            request(&[], true, Some(&stamps)),
            Step::send(format!(
                "HTTP/1.1 503 Service Unavailable\r\n{busy_head}Content-Length: 5\r\n\
                 Connection: close\r\n\r\nbusy\n"
            )),
            Step::Close,
        ],
        vec![
            request(&[], true, Some(&stamps)),
            Step::send([head_200().as_bytes(), &body].concat()),
            Step::Close,
        ],
    ]);
    let dir = TempDir::new(label);
    let r = download(
        dir.path(),
        &["-v", "--retry", "2", "-o", OUT, &server.url("/f.bin")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_complete(&dir, &body);
    server.finish().unwrap();
    let t = stamps.lock().unwrap().clone();
    assert_eq!(t.len(), 2);
    (t[1] - t[0], r.stderr)
}

/// Asserts `gap` is `want` within [`DELAY_TOLERANCE`] (never shorter).
fn assert_waited(gap: Duration, want: Duration, what: &str) {
    eprintln!("{what}: asked {want:?}, measured {gap:?} between the requests");
    assert!(
        gap >= want && gap <= want + DELAY_TOLERANCE,
        "{what}: waited {gap:?}, wanted {want:?}"
    );
}

#[test]
fn service_unavailable_with_retry_after_seconds_waits_that_long() {
    // 2 s, not the engine's own 1 s first delay, so honouring it shows.
    let (gap, err) = service_unavailable_then_ok("dl-503-secs", "Retry-After: 2\r\n");
    assert!(err.contains("HTTP 503; retrying in 2.0 s"), "{err}");
    assert_waited(gap, Duration::from_secs(2), "Retry-After: 2");
}

#[test]
fn service_unavailable_with_retry_after_date_waits_until_then() {
    // Both dates on the server's clock, long past on ours: only measuring the Retry-After date
    // against the response's Date gives 2 s (against the wall clock it would be no delay).
    let (gap, err) = service_unavailable_then_ok(
        "dl-503-date",
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nRetry-After: Sun, 06 Nov 1994 08:49:39 GMT\r\n",
    );
    assert!(err.contains("retrying in 2.0 s"), "{err}");
    assert_waited(gap, Duration::from_secs(2), "Retry-After: HTTP-date");
}

#[test]
fn service_unavailable_without_retry_after_waits_the_first_backoff() {
    let (gap, err) = service_unavailable_then_ok("dl-503-none", "");
    let first = ferry_transfer::download::RETRY_DELAY;
    assert!(err.contains("retrying in 1.0 s"), "{err}");
    assert_waited(gap, first, "no Retry-After");
}

#[test]
fn service_unavailable_without_retry_fails_and_leaves_nothing() {
    let server = ScriptServer::start(vec![vec![
        request(&[], true, None),
        Step::send(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nbusy\n",
        ),
        Step::Close,
    ]]);
    let dir = TempDir::new("dl-503-once");
    let r = download(dir.path(), &["-o", OUT, &server.url("/f.bin")]);
    assert_eq!(r.code, 22, "{}", r.stderr);
    assert_one_error_line(&r.stderr, 22);
    assert!(r.stderr.contains("HTTP 503"), "{}", r.stderr);
    assert!(
        r.elapsed < Duration::from_secs(1),
        "not retried: {:?}",
        r.elapsed
    );
    assert_eq!(names(dir.path()), Vec::<String>::new());
    server.finish().unwrap();
}

#[test]
fn a_stalled_body_times_out_and_a_rerun_resumes() {
    let body = entity();
    let second_cut = 3 * CUT;
    // The stalls outlast the receive timeout by far; the scripts then just close.
    let stall = Duration::from_secs(3);
    let server = ScriptServer::start(vec![
        vec![
            request(&[], true, None),
            Step::send([head_200().as_bytes(), &body[..CUT]].concat()),
            Step::Sleep(stall),
            Step::Close,
        ],
        // The re-run stalls once more, and its own retry resumes where that left off.
        vec![
            resume_from(CUT),
            Step::send([head_206(CUT, LEN - 1).as_bytes(), &body[CUT..second_cut]].concat()),
            Step::Sleep(stall),
            Step::Close,
        ],
        vec![
            resume_from(second_cut),
            Step::send(
                [
                    head_206(second_cut, LEN - 1).as_bytes(),
                    &body[second_cut..],
                ]
                .concat(),
            ),
            Step::Close,
        ],
    ]);
    let dir = TempDir::new("dl-stall");
    let url = server.url("/f.bin");
    let r = download(dir.path(), &["--receive-timeout", "1", "-o", OUT, &url]);
    assert_eq!(r.code, 28, "a timeout: {}", r.stderr);
    assert_one_error_line(&r.stderr, 28);
    assert!(
        r.stderr
            .contains("hint: run the same command again to resume"),
        "transient: {}",
        r.stderr
    );
    eprintln!("stalled run ended after {:?}", r.elapsed);
    assert!(
        r.elapsed >= Duration::from_secs(1) && r.elapsed < stall,
        "gave up after {:?}, not after the 1 s receive timeout",
        r.elapsed
    );
    assert_partial(&dir, &body[..CUT]);

    let r = download(
        dir.path(),
        &[
            "-v",
            "--receive-timeout",
            "1",
            "--retry",
            "1",
            "-o",
            OUT,
            &url,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("resuming at byte {CUT}")) && r.stderr.contains("retries 1"),
        "{}",
        r.stderr
    );
    assert_complete(&dir, &body);
    server.finish().unwrap();
}

/// Waits (bounded) for `child` to exit; kills it and panics past [`RUN_LIMIT`].
fn wait_bounded(child: &mut Child) -> std::process::ExitStatus {
    let status = poll(RUN_LIMIT, Duration::from_millis(5), || {
        child.try_wait().ok().flatten()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ferry download still running after {RUN_LIMIT:?}: killed")
    })
}

#[test]
fn a_second_download_to_the_same_file_fails_at_once() {
    let body = entity();
    // The first run gets CUT bytes, then waits (holding its lock) while the second is tried.
    let hold = Duration::from_secs(3);
    let server = ScriptServer::start(vec![vec![
        request(&[], true, None),
        Step::send([head_200().as_bytes(), &body[..CUT]].concat()),
        Step::Sleep(hold),
        Step::send(&body[CUT..]),
        Step::Close,
    ]]);
    let dir = TempDir::new("dl-lock");
    let url = server.url("/f.bin");
    let args = ["download", "-o", OUT, url.as_str()];
    let mut first = cli::command(env!("CARGO_BIN_EXE_ferry"), Some(dir.path()), &args, &[])
        .spawn()
        .expect("start the first ferry");
    let part = dir.join(PART);
    let writing = poll(Duration::from_secs(10), Duration::from_millis(5), || {
        (std::fs::metadata(&part).map_or(0, |m| m.len()) >= CUT as u64).then_some(())
    });
    if writing.is_none() {
        let _ = first.kill();
        let _ = first.wait();
        panic!("the first run never wrote {CUT} bytes");
    }

    let r = download(dir.path(), &["-o", OUT, &url]);
    eprintln!(
        "second run refused after {:?}: {}",
        r.elapsed,
        r.stderr.trim()
    );
    assert_eq!(r.code, 23, "{}", r.stderr);
    assert_one_error_line(&r.stderr, 23);
    assert!(
        r.stderr.contains(&format!(
            "another download is already writing {OUT} (it holds .out.bin.ferry-lock, pid {})",
            first.id()
        )) && r.stderr.contains("hint: wait for the other download"),
        "{}",
        r.stderr
    );
    // At once: well inside the first run's pause, and no request (a second connection would be
    // unscripted, a failure of finish()).
    assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
    assert_eq!(
        names(dir.path()),
        [".out.bin.ferry-lock", PART],
        "the second run touched nothing (the first has no checkpoint yet)"
    );
    assert_eq!(std::fs::read(&part).unwrap(), &body[..CUT]);

    let status = wait_bounded(&mut first);
    assert!(status.success(), "the first run: {status}");
    assert_complete(&dir, &body);
    server.finish().unwrap();
}
