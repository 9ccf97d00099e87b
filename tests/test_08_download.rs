//! `ferry download` against a real nginx (ranges, ETag, Last-Modified, and a `limit_rate`
//! location for slow transfers): SIGKILL mid-transfer then re-run resumes at the checkpoint
//! (checked in nginx's log), a file changed between attempts restarts instead of splicing,
//! `--checksum`, `--segments 4`, and `--limit-rate`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{large_file_bytes, poll, Nginx, NginxOptions, TempDir};

/// Longest a single run of the binary may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);
const BIG: &str = "big.bin";
const BIG_SIZE: u64 = 16 << 20;
/// nginx's `limit_rate` on `/slow/`: 16 MiB take about 4 s.
const SLOW_CONF: &str = "location /slow/ { alias @ROOT@/; limit_rate 4m; }";

fn ferry_cmd(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.current_dir(cwd)
        .arg("download")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `ferry download ARGS` in `cwd` to completion (bounded); returns (exit code, stderr).
fn run(cwd: &Path, args: &[&str]) -> (i32, String, Duration) {
    let started = Instant::now();
    let mut child = ferry_cmd(cwd, args).spawn().expect("spawn ferry");
    let status = poll(RUN_LIMIT, Duration::from_millis(10), || {
        child.try_wait().ok().flatten()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ferry download {args:?} ran past {RUN_LIMIT:?}");
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.code().unwrap_or(-1), err, started.elapsed())
}

/// Kills `child` with SIGKILL (std's `Child::kill`) and reaps it.
fn kill(mut child: Child) {
    child.kill().expect("SIGKILL ferry");
    let _ = child.wait();
}

fn sha256_hex(bytes: &[u8]) -> String {
    ferry_transfer::download::sha256_hex(bytes)
}

fn assert_only(dir: &Path, names: &[&str]) {
    let mut got: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(got, names, "files in {}", dir.display());
}

/// The `done` of the single piece in the sidecar beside `dest`.
fn checkpoint(dest: &Path) -> u64 {
    ferry_transfer::download::load_state(dest)
        .expect("a sidecar after the kill")
        .done()
}

#[test]
fn sigkill_then_rerun_resumes_from_the_checkpoint() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file(BIG, BIG_SIZE)
            .server_conf(SLOW_CONF),
    );
    let dir = TempDir::new("dl-kill");
    let url = nginx.http_url("/slow/big.bin");
    let dest = dir.join("big.bin");
    let args = ["-o", "big.bin", url.as_str()];
    let mut resumes = Vec::new();
    // Kill at three moments (each after some progress), then let it finish.
    for wait_ms in [900u64, 700, 1100] {
        let child = ferry_cmd(dir.path(), &args).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        kill(child);
        assert!(!dest.exists(), "the destination exists before completion");
        resumes.push(checkpoint(&dest));
    }
    let (code, err, _) = run(dir.path(), &args);
    assert_eq!(code, 0, "{err}");
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got.len() as u64, BIG_SIZE);
    assert!(
        got == large_file_bytes(BIG, 0, BIG_SIZE as usize),
        "bytes differ"
    );
    assert_only(dir.path(), &["big.bin"]);

    let log: Vec<_> = nginx
        .wait_log_lines(4)
        .into_iter()
        .filter(|l| l.uri == "/slow/big.bin")
        .collect();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert_eq!(log[0].range, "");
    let etag_less = log.iter().skip(1).any(|l| l.if_range.is_empty());
    assert!(!etag_less, "every resume carries If-Range: {log:#?}");
    let mut redownloaded = 0u64;
    let mut served_before = 0u64; // bytes the server had delivered for this file so far
    for (i, line) in log.iter().enumerate().skip(1) {
        let ckpt = resumes[i - 1];
        assert_eq!(
            line.range,
            format!("bytes={ckpt}-"),
            "resume {i} starts at the checkpoint"
        );
        assert_eq!(line.status, 206);
        let prev_start = if i == 1 { 0 } else { resumes[i - 2] };
        served_before = prev_start + log[i - 1].bytes;
        assert!(ckpt <= served_before, "resume beyond what was served");
        // At most one checkpoint interval (1 MiB comes before 1 s at 4 MiB/s) plus one read
        // and what sat in socket buffers when the process died.
        let lost = served_before - ckpt;
        let bound = ferry_transfer::download::CHECKPOINT_BYTES
            + ferry_transfer::download::BUFFER as u64
            + (256 << 10);
        assert!(
            lost <= bound,
            "re-downloaded {lost} bytes after kill {i} (bound {bound})"
        );
        eprintln!("kill {i}: served {served_before}, checkpoint {ckpt}, fetched twice {lost}");
        redownloaded += lost;
    }
    let _ = served_before;
    eprintln!(
        "resume checkpoints {resumes:?}; bytes fetched twice over {} kills: {redownloaded}",
        resumes.len()
    );
}

#[test]
fn a_file_changed_between_attempts_restarts_and_is_not_spliced() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file(BIG, BIG_SIZE)
            .server_conf(SLOW_CONF),
    );
    let dir = TempDir::new("dl-change");
    let url = nginx.http_url("/slow/big.bin");
    let args = ["-v", "-o", "out.bin", url.as_str()];
    let child = ferry_cmd(dir.path(), &args).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    kill(child);
    let ckpt = checkpoint(&dir.join("out.bin"));
    assert!(ckpt > 0);
    // A new version of the file: other bytes, other size, so another ETag.
    let v2 = large_file_bytes("other.bin", 0, 3 << 20);
    std::fs::write(nginx.root().join(BIG), &v2).unwrap();
    let (code, err, _) = run(dir.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("restarts 1"), "{err}");
    let got = std::fs::read(dir.join("out.bin")).unwrap();
    assert!(got == v2, "got {} bytes, not the new version", got.len());
    assert_only(dir.path(), &["out.bin"]);
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[1].range, format!("bytes={ckpt}-"));
    assert!(!log[1].if_range.is_empty());
    assert_eq!(
        log[1].status, 200,
        "If-Range failed: the whole new entity came back"
    );
}

#[test]
fn checksum_mismatch_is_an_error_and_keeps_no_file() {
    let body = b"checksum me\n".repeat(1000);
    let nginx = Nginx::start(NginxOptions::new().file("c.txt", body.clone()));
    let dir = TempDir::new("dl-sum");
    let url = nginx.http_url("/c.txt");
    let wrong = format!("sha256={}", "0".repeat(64));
    let (code, err, _) = run(dir.path(), &["--checksum", &wrong, url.as_str()]);
    assert_eq!(code, 32, "{err}");
    assert!(err.starts_with("ferry: (32) SHA-256 mismatch"), "{err}");
    assert_only(dir.path(), &[]);

    let right = format!("sha256={}", sha256_hex(&body));
    let (code, err, _) = run(dir.path(), &["--checksum", &right, url.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(std::fs::read(dir.join("c.txt")).unwrap(), body);
}

#[test]
fn four_segments_fetch_four_ranges() {
    let nginx = Nginx::start(NginxOptions::new().large_file(BIG, BIG_SIZE));
    let dir = TempDir::new("dl-seg");
    let url = nginx.http_url(BIG);
    let (code, err, _) = run(dir.path(), &["-v", "--segments", "4", url.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("segments 4"), "{err}");
    let got = std::fs::read(dir.join(BIG)).unwrap();
    assert!(
        got == large_file_bytes(BIG, 0, BIG_SIZE as usize),
        "bytes differ"
    );
    let log = nginx.wait_log_lines(5);
    assert_eq!(log[0].method, "HEAD");
    let mut ranges: Vec<_> = log[1..]
        .iter()
        .inspect(|l| assert_eq!((l.method.as_str(), l.status), ("GET", 206)))
        .map(|l| l.range.clone())
        .collect();
    ranges.sort();
    let q = BIG_SIZE / 4;
    let mut want: Vec<String> = (0..4)
        .map(|i| format!("bytes={}-{}", i * q, (i + 1) * q - 1))
        .collect();
    want.sort();
    assert_eq!(ranges, want);
    // Four connections at once, not one after another.
    let conns: std::collections::HashSet<_> = log[1..].iter().map(|l| l.connection).collect();
    assert_eq!(conns.len(), 4);
}

#[test]
fn limit_rate_holds_within_ten_percent() {
    let size = 2u64 << 20;
    let nginx = Nginx::start(NginxOptions::new().large_file("r.bin", size));
    let dir = TempDir::new("dl-rate");
    let url = nginx.http_url("/r.bin");
    let (code, err, elapsed) = run(dir.path(), &["--limit-rate", "1M", url.as_str()]);
    assert_eq!(code, 0, "{err}");
    let rate = size as f64 / elapsed.as_secs_f64();
    let cap = (1u64 << 20) as f64;
    eprintln!(
        "--limit-rate 1M: {rate:.0} B/s over {elapsed:?} ({:.3} of the cap)",
        rate / cap
    );
    assert!(
        (0.9 * cap..=1.1 * cap).contains(&rate),
        "{rate:.0} B/s over {elapsed:?}"
    );
    assert_eq!(std::fs::read(dir.join("r.bin")).unwrap().len() as u64, size);
}

#[test]
fn remote_header_name_is_sanitised_and_never_overwrites() {
    let conf = "location = /cd/report { default_type text/plain; \
                add_header Content-Disposition 'attachment; filename=\"../../.evil.txt\"'; \
                return 200 \"report\\n\"; }";
    let nginx = Nginx::start(NginxOptions::new().server_conf(conf));
    let dir = TempDir::new("dl-j");
    let url = nginx.http_url("/cd/report");
    let (code, err, _) = run(dir.path(), &["-J", url.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert_only(dir.path(), &["evil.txt"]);
    assert_eq!(std::fs::read(dir.join("evil.txt")).unwrap(), b"report\n");
    std::fs::write(dir.join("evil.txt"), b"mine").unwrap();
    let (code, err, _) = run(dir.path(), &["-J", url.as_str()]);
    assert_eq!(code, 23, "{err}");
    assert_eq!(std::fs::read(dir.join("evil.txt")).unwrap(), b"mine");
    assert_only(dir.path(), &["evil.txt"]);
}

#[test]
fn not_found_is_final_and_leaves_nothing() {
    let nginx = Nginx::start(NginxOptions::new());
    let dir = TempDir::new("dl-404");
    let (code, err, elapsed) = run(
        dir.path(),
        &["--retry", "3", &nginx.http_url("/missing.bin")],
    );
    assert_eq!(code, 22, "{err}");
    assert!(err.contains("404"), "{err}");
    assert!(elapsed < Duration::from_secs(1), "a 404 is not retried");
    assert_only(dir.path(), &[]);
}
