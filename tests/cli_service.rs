//! `ferry service` end to end: callers of another uid are refused (SO_PEERCRED), a service
//! killed with SIGKILL at 20 random moments during a 64 MiB transfer loses no job and no byte
//! (resumes start at the last checkpoint, checked in nginx's log), and a kill during
//! `complete` never leaves a partial file at a destination.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{large_file_bytes, Nginx, NginxOptions, Service};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
const BIG: &str = "big.bin";
const BIG_SIZE: u64 = 64 << 20;
/// 64 MiB at 6 MiB/s: about 11 s of transfer, long enough for 20 kills.
const SLOW_CONF: &str = "location /slow/ { alias @ROOT@/; limit_rate 6m; }";

/// A small deterministic generator (xorshift64*), seeded and printed so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("FERRY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("FERRY_TEST_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The job's engine sidecar for destination `dest` (see transfer/src/files.rs).
fn sidecar_done(dest: &Path) -> Option<u64> {
    let staged = ferry_transfer::files::staged(dest);
    ferry_transfer::download::load_state(&staged).map(|s| s.done())
}

fn sha256_hex(bytes: &[u8]) -> String {
    ferry_transfer::download::sha256_hex(bytes)
}

#[test]
fn a_caller_of_another_uid_is_refused_by_the_service() {
    let svc = Service::start(BIN, "svc-uid", &[]);
    // Open the file modes so that only the service's own check stands in the way.
    let bin_copy = svc.root.join("ferry");
    std::fs::copy(BIN, &bin_copy).unwrap();
    for (p, mode) in [
        (svc.root.path().to_owned(), 0o755),
        (bin_copy.clone(), 0o755),
        (svc.runtime.clone(), 0o711),
        (svc.runtime.join("ferry"), 0o711),
        (svc.socket(), 0o666),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let id = svc.ok(&["create", "mine"]);
    let run = support::cli::run(
        "setpriv",
        Some(Path::new("/")),
        &[
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            bin_copy.to_str().unwrap(),
            "job",
            "cancel",
            &id,
        ],
        &[("XDG_RUNTIME_DIR", svc.runtime.to_str().unwrap())],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, 77, "refused with EX_NOPERM: {}", run.stderr);
    assert!(
        run.stderr.contains("refuses a caller of uid 65534"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    // Nothing happened to the owner's job.
    let info = svc.ok(&["info", &id]);
    assert!(info.to_lowercase().contains("suspended"), "{info}");
    // With the modes the service sets, the other user cannot even reach the socket.
    std::fs::set_permissions(svc.socket(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = support::cli::run(
        "setpriv",
        Some(Path::new("/")),
        &[
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            bin_copy.to_str().unwrap(),
            "job",
            "list",
        ],
        &[("XDG_RUNTIME_DIR", svc.runtime.to_str().unwrap())],
        Duration::from_secs(30),
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(svc.ok(&["info", &id]).to_lowercase().contains("suspended"));
}

#[test]
fn sigkill_of_the_service_at_20_moments_loses_nothing() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file(BIG, BIG_SIZE)
            .server_conf(SLOW_CONF),
    );
    let mut svc = Service::start(BIN, "svc-kill", &[]);
    let dest = svc.root.join(BIG);
    let url = nginx.http_url("/slow/big.bin");
    let id = svc.ok(&["create", "big", "--priority", "normal"]);
    svc.ok(&["add", &id, &url, dest.to_str().unwrap()]);
    svc.ok(&["resume", &id]);
    let mut rng = Rng::seeded();
    let mut checkpoints = Vec::new();
    let started = Instant::now();
    for kill in 0..20 {
        // Wait for the restarted service to fetch again, then a random moment more.
        std::thread::sleep(Duration::from_millis(rng.between(250, 700)));
        svc.kill9();
        assert!(!dest.exists(), "the destination exists before complete");
        let done = sidecar_done(&dest).unwrap_or(0);
        eprintln!("kill {kill}: checkpoint {done}");
        checkpoints.push(done);
        svc.restart();
    }
    let r = svc.job_in(
        svc.root.path(),
        &["wait", &id, "--timeout", "120"],
        Duration::from_secs(150),
    );
    assert_eq!(r.code, 0, "wait: {}", r.stderr);
    svc.ok(&["complete", &id]);
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got.len() as u64, BIG_SIZE);
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(&large_file_bytes(BIG, 0, BIG_SIZE as usize)),
        "SHA-256 of the result"
    );
    let temps: Vec<PathBuf> = ferry_transfer::files::temporaries(&dest)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    assert!(temps.is_empty(), "temporaries left: {temps:?}");

    // nginx's view: every resume starts exactly at a checkpoint the engine had recorded, in
    // order, with If-Range; the bytes served twice stay within one interval per kill.
    let log: Vec<_> = nginx
        .wait_log_lines(1)
        .into_iter()
        .filter(|l| l.uri == "/slow/big.bin")
        .collect();
    assert!(log.len() >= 2, "{log:#?}");
    assert_eq!(log[0].range, "", "the first request is not ranged");
    let mut prev_start = 0u64;
    let mut served_to = log[0].bytes; // how far the server had sent, from the first request
    let mut twice = 0u64;
    for (i, line) in log.iter().enumerate().skip(1) {
        let start: u64 = line
            .range
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("request {i} is not a resume: {line:?}"));
        assert!(!line.if_range.is_empty(), "resume {i} without If-Range");
        assert!(
            checkpoints.contains(&start),
            "resume {i} starts at {start}, not at a recorded checkpoint {checkpoints:?}"
        );
        assert!(
            start >= prev_start,
            "resumes go forward: {start} < {prev_start}"
        );
        twice += served_to.saturating_sub(start);
        prev_start = start;
        served_to = start + line.bytes;
    }
    let bound = 20
        * (ferry_transfer::download::CHECKPOINT_BYTES
            + ferry_transfer::download::BUFFER as u64
            // What sat in the kernel's socket buffers on both sides when the process died.
            + (512 << 10));
    eprintln!(
        "{} requests over 20 kills in {:?}; bytes fetched twice: {twice} (bound {bound})",
        log.len(),
        started.elapsed()
    );
    assert!(twice <= bound, "fetched twice {twice} > {bound}");
}

#[test]
fn sigkill_during_complete_never_leaves_a_partial_destination() {
    const FILES: usize = 6;
    const SIZE: u64 = 4 << 20;
    let mut opts = NginxOptions::new();
    for i in 0..FILES {
        opts = opts.large_file(&format!("f{i}.bin"), SIZE);
    }
    let nginx = Nginx::start(opts);
    let mut svc = Service::start(BIN, "svc-complete", &[]);
    let mut rng = Rng::seeded();
    for trial in 0..3 {
        let dir = svc.root.join(format!("t{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let id = svc.ok(&["create", &format!("t{trial}"), "--priority", "foreground"]);
        for i in 0..FILES {
            let dest = dir.join(format!("f{i}.bin"));
            svc.ok(&[
                "add",
                &id,
                &nginx.http_url(&format!("/f{i}.bin")),
                dest.to_str().unwrap(),
            ]);
        }
        svc.ok(&["resume", &id]);
        let r = svc.job_in(
            svc.root.path(),
            &["wait", &id, "--timeout", "60"],
            Duration::from_secs(90),
        );
        assert_eq!(r.code, 0, "wait: {}", r.stderr);
        // `complete` runs in the service: kill the service while it renames.
        let vars = svc.vars();
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut child = support::cli::command(BIN, Some(&dir), &["job", "complete", &id], &env)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.between(0, 20_000)));
        svc.kill9();
        let _ = child.kill();
        let _ = child.wait();
        let check = |after: &str| {
            let mut present = 0;
            for i in 0..FILES {
                let dest = dir.join(format!("f{i}.bin"));
                if let Ok(bytes) = std::fs::read(&dest) {
                    present += 1;
                    assert!(
                        bytes == large_file_bytes(&format!("f{i}.bin"), 0, SIZE as usize),
                        "{after}: {} is partial or wrong ({} bytes)",
                        dest.display(),
                        bytes.len()
                    );
                }
            }
            present
        };
        let present = check("after the kill");
        eprintln!("trial {trial}: {present} of {FILES} files in place at the kill");
        svc.restart();
        let again = svc.job(&["complete", &id]);
        if again.code != 0 {
            assert!(
                again.stderr.to_lowercase().contains("acknowledged"),
                "a second complete fails only because the first finished: {}",
                again.stderr
            );
        }
        assert_eq!(check("after the second complete"), FILES);
    }
}
