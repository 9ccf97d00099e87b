//! `ferry download` against a real nginx (ranges, ETag, Last-Modified, and `limit_rate`
//! locations for slow transfers): 20 SIGKILLs at random moments of a 64 MiB transfer, each
//! re-run resuming at the sidecar's checkpoint with If-Range (checked in nginx's log, with a
//! bound on the bytes fetched twice), a file changed between attempts restarts instead of
//! splicing, `--checksum`, `--segments 4`, and `--limit-rate`.

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

/// The SIGKILL test's file: 64 MiB, large enough that 20 kills land at distinct checkpoints.
const KILL_FILE: &str = "kill.bin";
const KILL_SIZE: u64 = 64 << 20;
/// Kills before the run that is let finish.
const KILLS: usize = 20;
/// `limit_rate` of `/paced/`: 64 MiB take 16 s, plus what the kills make it fetch twice, so the
/// whole test stays well under 40 s. At this rate the 1 MiB checkpoint distance always comes
/// before the 1 s interval.
const KILL_RATE: u64 = 4 << 20;
/// `/paced/` pins what the slack bound below relies on: no sendfile, so nginx reads the file
/// through two 32 KiB output buffers and writes at most 64 KiB before `limit_rate` makes it wait.
const PACED_CONF: &str =
    "location /paced/ { alias @ROOT@/; limit_rate 4m; sendfile off; output_buffers 2 32k; }";
/// Bytes nginx may count as sent that ferry had not yet read when it died: what sits in the two
/// socket buffers. While ferry keeps reading, that is at most one nginx write (64 KiB, see
/// [`PACED_CONF`]); it grows only while ferry is not reading, which is during a checkpoint's two
/// fsyncs (data file, then sidecar), at `limit_rate`. Allowing those fsyncs 100 ms:
/// 64 KiB + 4 MiB/s × 0.1 s ≈ 474 KiB.
const SOCKET_SLACK: u64 = (64 << 10) + KILL_RATE / 10;

/// A small deterministic generator (splitmix64): the kill positions from a printed seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `FERRY_TEST_SEED` when set (to replay a failure), else one from the clock.
fn seed() -> u64 {
    if let Ok(s) = std::env::var("FERRY_TEST_SEED") {
        return s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FERRY_TEST_SEED={s:?} is not a number"));
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// What one killed run left.
#[derive(Debug)]
struct Kill {
    /// The data file size at which it was killed (the furthest byte written so far).
    killed_at: u64,
    /// The sidecar's `done` after the kill (0 when there was no sidecar yet).
    checkpoint: u64,
}

#[test]
fn twenty_sigkills_at_random_moments_resume_at_the_checkpoint() {
    let started = Instant::now();
    let seed = seed();
    // Printed first, so that a failure anywhere below can be replayed.
    eprintln!("kill positions from seed {seed} (replay: FERRY_TEST_SEED={seed})");
    let mut rng = SplitMix(seed);
    // One random position in each of the first KILLS of KILLS + 1 equal strata: the kills are
    // spread over the whole transfer, and the last stratum is left to the run that finishes.
    let stratum = KILL_SIZE / (KILLS as u64 + 1);
    let targets: Vec<u64> = (0..KILLS as u64)
        .map(|k| k * stratum + 1 + rng.next() % (stratum - 1))
        .collect();
    eprintln!("kill positions: {targets:?}");

    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file(KILL_FILE, KILL_SIZE)
            .server_conf(PACED_CONF),
    );
    let dir = TempDir::new("dl-kill");
    let url = nginx.http_url("/paced/kill.bin");
    let dest = dir.join(KILL_FILE);
    let part = ferry_transfer::download::temp_path(&dest);
    let size_of = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let args = ["-o", KILL_FILE, url.as_str()];
    let temporaries = [
        ".kill.bin.ferry-lock",
        ".kill.bin.ferry-part",
        ".kill.bin.ferry-state",
        ".kill.bin.ferry-state.new",
    ];
    let mut kills: Vec<Kill> = Vec::new();
    for (k, &target) in targets.iter().enumerate() {
        // Kill when this run has written past both its target and everything earlier runs
        // wrote (bytes past the checkpoint stay in the data file, so the size alone would
        // trigger before this run did anything).
        let trigger = target.max(size_of(&part) + 1);
        let mut child = ferry_cmd(dir.path(), &args).spawn().expect("spawn ferry");
        let reached = poll(RUN_LIMIT, Duration::from_millis(1), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            (size_of(&part) >= trigger).then_some(Ok(()))
        });
        match reached {
            Some(Ok(())) => kill(child),
            Some(Err(status)) => panic!("kill {k}: ferry ended ({status}) before byte {trigger}"),
            None => {
                kill(child);
                panic!("kill {k}: ferry did not reach byte {trigger} within {RUN_LIMIT:?}");
            }
        }
        assert!(
            !dest.exists(),
            "kill {k}: the destination exists before completion"
        );
        for name in std::fs::read_dir(dir.path()).unwrap() {
            let name = name.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                temporaries.contains(&name.as_str()),
                "kill {k}: {name} left"
            );
        }
        // Read after the process is gone: exactly what the next run will load.
        let checkpoint = ferry_transfer::download::load_state(&dest).map_or(0, |st| st.done());
        kills.push(Kill {
            killed_at: size_of(&part),
            checkpoint,
        });
    }
    let (code, err, _) = run(dir.path(), &args);
    assert_eq!(code, 0, "{err}");
    let want = large_file_bytes(KILL_FILE, 0, KILL_SIZE as usize);
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got.len() as u64, KILL_SIZE);
    assert_eq!(sha256_hex(&got), sha256_hex(&want), "SHA-256 of the result");
    drop((got, want));
    assert_only(dir.path(), &[KILL_FILE]);

    // One request per run, each on its own connection: nginx numbers connections in accept
    // order, which is run order even if a killed run's line was logged late.
    let mut log: Vec<_> = nginx
        .wait_log_lines(KILLS + 1)
        .into_iter()
        .filter(|l| l.uri == "/paced/kill.bin")
        .collect();
    log.sort_by_key(|l| l.connection);
    assert_eq!(log.len(), KILLS + 1, "{log:#?}");
    // What ferry had written past its last checkpoint when it died: under one checkpoint
    // distance plus the read in hand (a checkpoint follows the write that reaches the distance).
    let unsaved_bound =
        ferry_transfer::download::CHECKPOINT_BYTES + ferry_transfer::download::BUFFER as u64;
    // Fetched twice per kill: that, and what the socket buffers held (SOCKET_SLACK).
    let per_kill = unsaved_bound + SOCKET_SLACK;
    let mut twice = 0u64;
    let mut over = Vec::new();
    for (i, line) in log.iter().enumerate() {
        // The sidecar is all a run trusts, so it resumes exactly there: "at or after the
        // checkpoint" holds, and anything past it would be resuming from unverified bytes.
        let start = if i == 0 { 0 } else { kills[i - 1].checkpoint };
        if start == 0 {
            assert_eq!(
                (line.range.as_str(), line.status),
                ("", 200),
                "run {i}: {line:?}"
            );
        } else {
            assert_eq!(line.range, format!("bytes={start}-"), "run {i}: {line:?}");
            assert!(
                line.if_range.starts_with('"'),
                "run {i}: a resume carries If-Range with the ETag: {line:?}"
            );
            assert_eq!(line.status, 206, "run {i}: {line:?}");
        }
        let served = start + line.bytes;
        let Some(kill) = kills.get(i) else {
            assert_eq!(served, KILL_SIZE, "the last run fetched the rest");
            break;
        };
        assert!(
            kill.checkpoint >= start,
            "kill {i}: the checkpoint went back from {start} to {}",
            kill.checkpoint
        );
        assert!(
            kill.checkpoint <= kill.killed_at && kill.killed_at <= served,
            "kill {i}: the sidecar claims {} bytes, the file had {}, nginx sent {served}",
            kill.checkpoint,
            kill.killed_at
        );
        let lost = served - kill.checkpoint;
        eprintln!(
            "kill {i:2}: target {:>8}, file {:>8}, served {served:>8}, checkpoint {:>8}, \
             fetched twice {lost:>7}",
            targets[i], kill.killed_at, kill.checkpoint
        );
        // Timing-free, so checked for each kill: the engine's own share of the loss.
        let unsaved = kill.killed_at - kill.checkpoint;
        if unsaved > unsaved_bound {
            over.push((i, unsaved));
        }
        twice += lost;
    }
    let bound = KILLS as u64 * per_kill;
    eprintln!(
        "bytes fetched twice over {KILLS} kills: {twice} (bound {bound}, {:.0} per kill); \
         test took {:?}",
        twice as f64 / KILLS as f64,
        started.elapsed()
    );
    assert!(
        twice <= bound,
        "fetched {twice} bytes twice (bound {bound}; seed {seed})"
    );
    // Each kill on its own too: the total alone lets checkpoints three times too far apart pass
    // (a kill at a random moment loses half a checkpoint distance on average).
    assert!(
        over.is_empty(),
        "kills with more than {unsaved_bound} bytes written past the checkpoint \
         (kill, bytes): {over:?}; seed {seed}"
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
