//! The download engine against a scripted in-memory server (a fake [`Fetch`]) and a fake clock:
//! resume with 206, restart on 200, wrong `Content-Range`, 416, servers that ignore ranges or
//! send no validator, 503 with `Retry-After`, stalls, ranges, segments, checksums and the
//! throttle. Every scenario checks that the final bytes equal the server's and that nothing was
//! spliced.

use ferry_transfer::download::{
    load_state, save_state, state_path, temp_path, Clock, Download, DownloadError, Event, Options,
    Piece, State, Validator,
};
use ferry_transfer::fetch::{ErrorClass, Fetch, FetchError, FetchHead, FetchRequest};
use ferry_transfer::range::ByteRange;
use http::HeaderMap;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

// ---------------------------------------------------------------------------------------------
// Fakes

/// What the server does for one request (taken in order; `Honest` when the script is empty).
#[derive(Debug, Clone)]
enum Act {
    Honest,
    /// Answer honestly but fail the body read after this many bytes (a dropped connection).
    CutAfter(usize),
    /// Answer honestly but the body read times out after this many bytes (a stall).
    StallAfter(usize),
    /// A status with an optional `Retry-After`.
    Status(u16, Option<&'static str>),
    /// A 206 whose Content-Range start is off by this much (body from the wrong place).
    WrongRange(u64),
    /// The connection fails before any response.
    Refused,
    /// Change the entity, then answer honestly.
    Change(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    head: bool,
    range: Option<String>,
    if_range: Option<String>,
}

struct Server {
    content: Vec<u8>,
    version: u32,
    script: VecDeque<Act>,
    log: Vec<Logged>,
    accept_ranges: bool,
    validators: bool,
    ignore_ranges: bool,
}

struct Fake {
    s: Mutex<Server>,
}

impl Fake {
    fn new(content: Vec<u8>) -> Fake {
        Fake {
            s: Mutex::new(Server {
                content,
                version: 1,
                script: VecDeque::new(),
                log: Vec::new(),
                accept_ranges: true,
                validators: true,
                ignore_ranges: false,
            }),
        }
    }

    fn script(&self, acts: impl IntoIterator<Item = Act>) {
        self.s.lock().unwrap().script.extend(acts);
    }

    fn log(&self) -> Vec<Logged> {
        self.s.lock().unwrap().log.clone()
    }

    fn etag(s: &Server) -> String {
        format!("\"v{}\"", s.version)
    }

    fn last_modified(s: &Server) -> String {
        format!("Mon, 0{} Jan 2024 00:00:00 GMT", s.version % 10)
    }
}

struct Body {
    data: Vec<u8>,
    pos: usize,
    fail_at: Option<(usize, io::ErrorKind)>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut end = self.data.len();
        if let Some((at, kind)) = self.fail_at {
            if self.pos >= at {
                return Err(io::Error::new(kind, "scripted failure"));
            }
            end = end.min(at);
        }
        // Small reads, so checkpoints and throttling see many of them.
        let n = buf.len().min(end - self.pos).min(16 * 1024);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let r = ByteRange::parse(h.strip_prefix("bytes=")?).ok()?;
    Some((
        r.start,
        r.end
            .unwrap_or(len.saturating_sub(1))
            .min(len.saturating_sub(1)),
    ))
}

impl Fetch for Fake {
    type Body = Body;

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, Body), FetchError> {
        let mut s = self.s.lock().unwrap();
        s.log.push(Logged {
            head: req.head,
            range: req.range_header(),
            if_range: req.if_range.clone(),
        });
        let mut act = s.script.pop_front().unwrap_or(Act::Honest);
        if let Act::Change(new) = act {
            s.content = new;
            s.version += 1;
            act = Act::Honest;
        }
        let len = s.content.len() as u64;
        let mut headers = HeaderMap::new();
        let mut put = |k: &'static str, v: String| {
            headers.insert(k, v.parse().unwrap());
        };
        if s.validators {
            put("etag", Fake::etag(&s));
            put("last-modified", Fake::last_modified(&s));
        }
        if s.accept_ranges {
            put("accept-ranges", "bytes".into());
        }
        let head = |status: u16, headers: HeaderMap| FetchHead {
            status,
            headers,
            final_url: req.url.clone(),
        };
        let body = |data: Vec<u8>, fail_at| Body {
            data,
            pos: 0,
            fail_at,
        };
        match act {
            Act::Refused => return Err(FetchError::transient("connection refused")),
            Act::Status(code, retry_after) => {
                if let Some(r) = retry_after {
                    put("retry-after", r.into());
                }
                put("content-length", "0".into());
                return Ok((head(code, headers), body(Vec::new(), None)));
            }
            _ => {}
        }
        let validator_ok = match &req.if_range {
            None => true,
            Some(v) => s.validators && (*v == Fake::etag(&s) || *v == Fake::last_modified(&s)),
        };
        let range = req
            .range_header()
            .filter(|_| validator_ok && !s.ignore_ranges);
        let fail = match act {
            Act::CutAfter(n) => Some((n, io::ErrorKind::ConnectionReset)),
            Act::StallAfter(n) => Some((n, io::ErrorKind::TimedOut)),
            _ => None,
        };
        match range {
            Some(r) => {
                let Some((first, last)) = parse_range(&r, len) else {
                    panic!("bad range {r}");
                };
                if first >= len {
                    put("content-range", format!("bytes */{len}"));
                    put("content-length", "0".into());
                    return Ok((head(416, headers), body(Vec::new(), None)));
                }
                let (cr_first, src) = match act {
                    Act::WrongRange(d) => (first + d, first + d),
                    _ => (first, first),
                };
                let cr_last = last.max(cr_first).min(len - 1);
                put("content-range", format!("bytes {cr_first}-{cr_last}/{len}"));
                let data = s.content[src as usize..=cr_last as usize].to_vec();
                put("content-length", data.len().to_string());
                Ok((head(206, headers), body(data, fail)))
            }
            None => {
                put("content-length", len.to_string());
                let data = if req.head {
                    Vec::new()
                } else {
                    s.content.clone()
                };
                Ok((head(200, headers), body(data, fail)))
            }
        }
    }
}

/// A clock that only moves when slept on; it records every sleep.
#[derive(Clone)]
struct FakeClock {
    t: Arc<Mutex<(Instant, Vec<Duration>)>>,
}

impl FakeClock {
    fn new() -> FakeClock {
        FakeClock {
            t: Arc::new(Mutex::new((Instant::now(), Vec::new()))),
        }
    }

    fn sleeps(&self) -> Vec<Duration> {
        self.t.lock().unwrap().1.clone()
    }

    fn slept(&self) -> Duration {
        self.sleeps().iter().sum()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.t.lock().unwrap().0
    }

    fn sleep(&self, d: Duration) {
        let mut t = self.t.lock().unwrap();
        t.0 += d;
        t.1.push(d);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

static DIRS: AtomicU64 = AtomicU64::new(0);

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let p = std::env::temp_dir().join(format!(
            "ferry-dl-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn dest(&self) -> PathBuf {
        self.0.join("out.bin")
    }

    /// Names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic content; `salt` makes a different version.
fn content(len: usize, salt: u8) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ u64::from(salt);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn url() -> Url {
    Url::parse("http://fake.test/file.bin").unwrap()
}

fn dl(dest: &Path, opts: Options, clock: &FakeClock) -> Download {
    Download::new(url(), dest)
        .options(opts)
        .clock(clock.clone())
}

fn opts() -> Options {
    Options {
        checkpoint_bytes: 64 * 1024,
        ..Options::default()
    }
}

/// Asserts `dest` holds exactly `want`, and no temporary or state file is left.
fn assert_complete(dir: &Dir, want: &[u8]) {
    let got = std::fs::read(dir.dest()).expect("destination exists");
    assert_eq!(got.len(), want.len(), "length");
    assert!(got == want, "bytes differ from the server's");
    assert_eq!(dir.names(), ["out.bin"], "leftover files");
}

/// Asserts the partial data on disk is a prefix-consistent copy of `source` wherever the
/// sidecar says bytes are done (nothing spliced).
fn assert_partial_consistent(dir: &Dir, source: &[u8]) -> u64 {
    assert!(
        !dir.dest().exists(),
        "destination must not exist before completion"
    );
    let st = load_state(&dir.dest()).expect("a sidecar after an interruption");
    let data = std::fs::read(temp_path(&dir.dest())).unwrap();
    for p in st.pieces.iter().filter(|p| p.done > 0) {
        let local = &data[p.offset as usize..(p.offset + p.done) as usize];
        let remote = &source[p.start as usize..(p.start + p.done) as usize];
        assert!(local == remote, "checkpointed bytes differ from the source");
    }
    st.done()
}

const LEN: usize = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Scenarios

#[test]
fn fresh_download_renames_into_place() {
    let dir = Dir::new();
    let src = content(LEN, 1);
    let fake = Fake::new(src.clone());
    let clock = FakeClock::new();
    let r = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.total, LEN as u64);
    assert_eq!(r.fetched, LEN as u64);
    assert_eq!(r.requests, 1);
    assert_eq!(fake.log()[0].range, None);
}

#[test]
fn interrupted_then_resumed_with_range_and_if_range() {
    let dir = Dir::new();
    let src = content(LEN, 2);
    let fake = Fake::new(src.clone());
    fake.script([Act::CutAfter(300_000)]);
    let clock = FakeClock::new();
    let err = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    assert!(err.is_transient(), "{err}");
    let ckpt = assert_partial_consistent(&dir, &src);
    // Everything read was checkpointed when the connection broke.
    assert_eq!(ckpt, 300_000);

    let r = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.resumed_from, ckpt);
    assert_eq!(r.fetched, LEN as u64 - ckpt);
    let log = fake.log();
    assert_eq!(log[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(log[1].if_range.as_deref(), Some("\"v1\""));
}

#[test]
fn retry_in_the_same_run_resumes_after_the_delay() {
    let dir = Dir::new();
    let src = content(LEN, 3);
    let fake = Fake::new(src.clone());
    fake.script([
        Act::CutAfter(100_000),
        Act::StallAfter(200_000),
        Act::Refused,
    ]);
    let clock = FakeClock::new();
    let o = Options {
        retries: 5,
        ..opts()
    };
    let r = dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.retries, 3);
    assert_eq!(r.fetched, LEN as u64, "no byte fetched twice");
    // Progress resets the backoff; the refused connection made none, so it doubled.
    assert_eq!(
        clock.sleeps(),
        [
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(2)
        ]
    );
    let ranges: Vec<_> = fake.log().into_iter().map(|l| l.range).collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=100000-".into()),
            Some("bytes=300000-".into()),
            Some("bytes=300000-".into())
        ]
    );
}

#[test]
fn changed_entity_restarts_and_is_never_spliced() {
    let dir = Dir::new();
    let v1 = content(LEN, 4);
    let v2 = content(LEN + 5000, 5);
    let fake = Fake::new(v1.clone());
    fake.script([Act::CutAfter(400_000)]);
    let clock = FakeClock::new();
    dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    assert_partial_consistent(&dir, &v1);
    fake.script([Act::Change(v2.clone())]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let r = dl(&dir.dest(), opts(), &clock)
        .observer(move |e| {
            if let Event::Restarted { reason } = e {
                ev.lock().unwrap().push(reason.to_string());
            }
        })
        .run(&fake)
        .unwrap();
    assert_complete(&dir, &v2);
    assert_eq!(r.restarts, 1);
    assert_eq!(events.lock().unwrap().len(), 1);
    // The 200 body was used from offset 0: one request, no extra round trip.
    assert_eq!(r.requests, 1);
    assert_eq!(fake.log()[1].if_range.as_deref(), Some("\"v1\""));
}

#[test]
fn server_ignoring_ranges_is_an_error_unless_dynamic() {
    let dir = Dir::new();
    let src = content(LEN, 6);
    let fake = Fake::new(src.clone());
    fake.script([Act::CutAfter(250_000)]);
    let clock = FakeClock::new();
    dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    fake.s.lock().unwrap().ignore_ranges = true;
    let err = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    assert!(matches!(err, DownloadError::NoRangeSupport), "{err}");
    // Nothing appended, nothing lost: the partial data is still a faithful prefix.
    assert_eq!(assert_partial_consistent(&dir, &src), 250_000);

    let o = Options {
        allow_dynamic: true,
        ..opts()
    };
    let r = dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.restarts, 1);
}

#[test]
fn no_accept_ranges_means_no_resume() {
    let dir = Dir::new();
    let src = content(LEN, 7);
    let fake = Fake::new(src.clone());
    fake.s.lock().unwrap().accept_ranges = false;
    fake.script([Act::CutAfter(250_000)]);
    let clock = FakeClock::new();
    dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    let err = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    assert!(matches!(err, DownloadError::NoRangeSupport), "{err}");
    assert_eq!(
        fake.log().len(),
        1,
        "no request is made for a resume that cannot work"
    );
    let o = Options {
        allow_dynamic: true,
        ..opts()
    };
    dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(fake.log()[1].range, None);
}

#[test]
fn no_validator_restarts_from_zero() {
    let dir = Dir::new();
    let src = content(LEN, 8);
    let fake = Fake::new(src.clone());
    fake.s.lock().unwrap().validators = false;
    fake.script([Act::CutAfter(500_000)]);
    let clock = FakeClock::new();
    dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    let r = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.fetched, LEN as u64);
    assert_eq!(
        fake.log()[1].range,
        None,
        "an unvalidated partial is never resumed"
    );
}

#[test]
fn wrong_content_range_restarts_and_never_corrupts() {
    let dir = Dir::new();
    let src = content(LEN, 9);
    let fake = Fake::new(src.clone());
    fake.script([Act::CutAfter(200_000), Act::WrongRange(1000)]);
    let clock = FakeClock::new();
    dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    let r = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.restarts, 1);
    assert_eq!(fake.log()[2].range, None);
}

#[test]
fn a_server_always_wrong_gives_up_without_a_destination() {
    let dir = Dir::new();
    let src = content(LEN, 10);
    let fake = Fake::new(src.clone());
    fake.script([Act::CutAfter(200_000)]);
    let clock = FakeClock::new();
    dl(&dir.dest(), opts(), &clock).run(&fake).unwrap_err();
    // Every resume gets a 206 from the wrong offset, and every fresh start breaks early.
    for _ in 0..10 {
        fake.script([Act::WrongRange(7), Act::CutAfter(10)]);
    }
    let o = Options {
        retries: 10,
        ..opts()
    };
    let err = dl(&dir.dest(), o, &clock).run(&fake).unwrap_err();
    assert!(matches!(err, DownloadError::Inconsistent(_)), "{err}");
    assert!(!dir.dest().exists(), "{err}");
    assert_partial_consistent(&dir, &src);
}

#[test]
fn range_not_satisfiable_on_a_complete_partial_revalidates() {
    let dir = Dir::new();
    let src = content(LEN, 11);
    let fake = Fake::new(src.clone());
    // A run killed after its last checkpoint but before the rename.
    std::fs::write(temp_path(&dir.dest()), &src).unwrap();
    let st = State {
        validator: Validator {
            etag: Some("\"v1\"".into()),
            last_modified: None,
            length: None,
        },
        accept_ranges: true,
        pieces: vec![Piece {
            start: 0,
            end: None,
            offset: 0,
            done: LEN as u64,
        }],
    };
    save_state(&dir.dest(), &st).unwrap();
    let clock = FakeClock::new();
    let r = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.fetched, 0);
    let log = fake.log();
    assert_eq!(log.len(), 2);
    assert!(log[1].head, "a 416 is re-validated with HEAD");
}

#[test]
fn range_not_satisfiable_with_a_longer_partial_restarts() {
    let dir = Dir::new();
    let src = content(LEN, 12);
    let fake = Fake::new(src.clone());
    let mut junk = src.clone();
    junk.extend_from_slice(&[0u8; 100]);
    std::fs::write(temp_path(&dir.dest()), &junk).unwrap();
    let st = State {
        validator: Validator {
            etag: Some("\"v1\"".into()),
            ..Validator::default()
        },
        accept_ranges: true,
        pieces: vec![Piece {
            start: 0,
            end: None,
            offset: 0,
            done: junk.len() as u64,
        }],
    };
    save_state(&dir.dest(), &st).unwrap();
    let clock = FakeClock::new();
    let r = dl(&dir.dest(), opts(), &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.restarts, 1);
}

#[test]
fn service_unavailable_then_ok_honours_retry_after() {
    let dir = Dir::new();
    let src = content(LEN, 13);
    let fake = Fake::new(src.clone());
    fake.script([
        Act::Status(503, Some("3")),
        Act::Status(503, None),
        Act::Status(429, Some("2")),
        Act::Status(500, None),
    ]);
    let clock = FakeClock::new();
    let o = Options {
        retries: 4,
        ..opts()
    };
    let r = dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.retries, 4);
    let s = |n| Duration::from_secs(n);
    // Retry-After wins; otherwise 1 s doubling per failure without progress.
    assert_eq!(clock.sleeps(), [s(3), s(2), s(2), s(8)]);
}

#[test]
fn retries_run_out_and_final_errors_are_not_retried() {
    let dir = Dir::new();
    let fake = Fake::new(content(1000, 14));
    fake.script([Act::Status(503, None), Act::Status(503, None)]);
    let clock = FakeClock::new();
    let o = Options {
        retries: 1,
        ..opts()
    };
    let err = dl(&dir.dest(), o.clone(), &clock).run(&fake).unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.is_transient());
    // Nothing arrived, so nothing is left behind.
    assert!(dir.names().is_empty(), "{:?}", dir.names());

    fake.script([Act::Status(404, None)]);
    let before = fake.log().len();
    let err = dl(&dir.dest(), o, &clock).run(&fake).unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(matches!(&err, DownloadError::Fetch(e) if e.kind == ErrorClass::Final));
    assert_eq!(fake.log().len(), before + 1, "a 404 is not retried");
    assert!(dir.names().is_empty());
}

#[test]
fn ranges_are_written_in_the_order_given_and_resume() {
    let dir = Dir::new();
    let src = content(LEN, 15);
    let fake = Fake::new(src.clone());
    let ranges = ByteRange::parse_list("100000-199999,900000-999999,400000-499999").unwrap();
    let want: Vec<u8> = [100_000..200_000, 900_000..1_000_000, 400_000..500_000]
        .into_iter()
        .flat_map(|r| src[r].to_vec())
        .collect();
    fake.script([Act::Honest, Act::CutAfter(50_000)]);
    let clock = FakeClock::new();
    let o = Options {
        ranges: ranges.clone(),
        ..opts()
    };
    dl(&dir.dest(), o.clone(), &clock).run(&fake).unwrap_err();
    assert_partial_consistent(&dir, &src);
    dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_complete(&dir, &want);
    let ranges: Vec<_> = fake.log().into_iter().map(|l| l.range.unwrap()).collect();
    assert_eq!(
        ranges,
        [
            "bytes=100000-199999",
            "bytes=900000-999999",
            "bytes=950000-999999",
            "bytes=400000-499999"
        ]
    );
}

#[test]
fn ranges_against_a_server_without_range_support_fail() {
    let dir = Dir::new();
    let fake = Fake::new(content(LEN, 16));
    fake.s.lock().unwrap().ignore_ranges = true;
    let clock = FakeClock::new();
    let o = Options {
        ranges: ByteRange::parse_list("0-9").unwrap(),
        ..opts()
    };
    let err = dl(&dir.dest(), o, &clock).run(&fake).unwrap_err();
    assert!(matches!(err, DownloadError::NoRangeSupport), "{err}");
    assert!(!dir.dest().exists());
}

#[test]
fn overlapping_or_outside_ranges_are_refused() {
    let dir = Dir::new();
    let fake = Fake::new(content(1000, 17));
    let clock = FakeClock::new();
    for list in ["0-99,50-149", "10-20,0-", "0-,5-9"] {
        let o = Options {
            ranges: ByteRange::parse_list(list).unwrap(),
            ..opts()
        };
        let err = dl(&dir.dest(), o, &clock).run(&fake).unwrap_err();
        assert!(matches!(err, DownloadError::BadOptions(_)), "{list}: {err}");
    }
    let o = Options {
        ranges: ByteRange::parse_list("5000-5999").unwrap(),
        ..opts()
    };
    let err = dl(&dir.dest(), o, &clock).run(&fake).unwrap_err();
    assert!(matches!(err, DownloadError::RangeNotSatisfiable), "{err}");
}

#[test]
fn checksum_mismatch_keeps_nothing() {
    let dir = Dir::new();
    let src = content(LEN, 18);
    let fake = Fake::new(src.clone());
    let clock = FakeClock::new();
    let o = Options {
        sha256: Some([0u8; 32]),
        ..opts()
    };
    let err = dl(&dir.dest(), o, &clock).run(&fake).unwrap_err();
    assert!(matches!(err, DownloadError::Checksum { .. }), "{err}");
    assert!(dir.names().is_empty(), "{:?}", dir.names());

    use sha2::Digest;
    let good: [u8; 32] = sha2::Sha256::digest(&src).into();
    let o = Options {
        sha256: Some(good),
        ..opts()
    };
    dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
}

#[test]
fn segments_fetch_slices_in_parallel() {
    let dir = Dir::new();
    let src = content(8 << 20, 19);
    let fake = Fake::new(src.clone());
    // Whichever segment asks first loses its connection once.
    fake.script([Act::Honest, Act::CutAfter(70_000)]);
    let clock = FakeClock::new();
    let o = Options {
        segments: 4,
        retries: 2,
        ..opts()
    };
    let r = dl(&dir.dest(), o, &clock).run_segmented(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.segments, 4);
    assert_eq!(r.fetched, 8 << 20);
    let log = fake.log();
    assert!(log[0].head);
    let mut ranges: Vec<_> = log[1..].iter().filter_map(|l| l.range.clone()).collect();
    ranges.sort();
    assert_eq!(ranges.len(), 5, "{ranges:?}");
    assert!(log[1..]
        .iter()
        .all(|l| l.if_range.as_deref() == Some("\"v1\"")));
}

#[test]
fn segments_resume_from_the_sidecar() {
    let dir = Dir::new();
    let src = content(4 << 20, 20);
    let fake = Fake::new(src.clone());
    fake.script([
        Act::Honest,
        Act::CutAfter(300_000),
        Act::CutAfter(300_000),
        Act::CutAfter(300_000),
        Act::CutAfter(300_000),
    ]);
    let clock = FakeClock::new();
    let o = Options {
        segments: 4,
        ..opts()
    };
    dl(&dir.dest(), o.clone(), &clock)
        .run_segmented(&fake)
        .unwrap_err();
    let done = assert_partial_consistent(&dir, &src);
    assert_eq!(load_state(&dir.dest()).unwrap().pieces.len(), 4);
    assert!(done >= 300_000, "{done}");
    // A segment aborted before it asked leaves its scripted cut for this run (it happens
    // under load): a retry absorbs it without changing what is fetched.
    let o = Options { retries: 2, ..o };
    let r = dl(&dir.dest(), o, &clock).run_segmented(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.resumed_from, done);
    assert_eq!(r.fetched, (4 << 20) - done);
}

#[test]
fn segments_fall_back_when_the_entity_changes() {
    let dir = Dir::new();
    let v1 = content(4 << 20, 21);
    let v2 = content(3 << 20, 22);
    let fake = Fake::new(v1);
    fake.script([Act::Honest, Act::Change(v2.clone())]);
    let clock = FakeClock::new();
    let o = Options {
        segments: 4,
        ..opts()
    };
    let r = dl(&dir.dest(), o, &clock).run_segmented(&fake).unwrap();
    assert_complete(&dir, &v2);
    assert_eq!(r.restarts, 1);
}

#[test]
fn segments_fall_back_to_one_connection_without_ranges() {
    let dir = Dir::new();
    let src = content(4 << 20, 23);
    let fake = Fake::new(src.clone());
    fake.s.lock().unwrap().accept_ranges = false;
    let clock = FakeClock::new();
    let o = Options {
        segments: 4,
        ..opts()
    };
    let r = dl(&dir.dest(), o, &clock).run_segmented(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.segments, 1);
    assert_eq!(fake.log().len(), 2); // HEAD, then one GET
}

#[test]
fn checkpoints_follow_the_byte_and_time_limits() {
    let dir = Dir::new();
    let src = content(LEN, 24);
    let fake = Fake::new(src.clone());
    let clock = FakeClock::new();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let o = Options {
        checkpoint_bytes: 100_000,
        checkpoint_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    dl(&dir.dest(), o, &clock)
        .observer(move |e| {
            if let Event::Checkpoint { .. } = e {
                c.fetch_add(1, Ordering::SeqCst);
            }
        })
        .run(&fake)
        .unwrap();
    // 16 KiB reads: a checkpoint after every 7th read (114 688 bytes) → 8 for 1 MB.
    assert_eq!(count.load(Ordering::SeqCst), 8);

    // With a rate cap of 100 kB/s, the time limit (1 s) fires first.
    let dir = Dir::new();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let o = Options {
        checkpoint_bytes: u64::MAX,
        checkpoint_interval: Duration::from_secs(1),
        rate_limit: 100_000,
        ..Options::default()
    };
    let clock = FakeClock::new();
    dl(&dir.dest(), o, &clock)
        .observer(move |e| {
            if let Event::Checkpoint { .. } = e {
                c.fetch_add(1, Ordering::SeqCst);
            }
        })
        .run(&fake)
        .unwrap();
    let n = count.load(Ordering::SeqCst);
    assert!((8..=11).contains(&n), "{n} checkpoints over ~10 s");
    assert_complete(&dir, &src);
}

#[test]
fn throttle_holds_the_cap_within_ten_percent() {
    let dir = Dir::new();
    let src = content(2_000_000, 25);
    let fake = Fake::new(src.clone());
    let clock = FakeClock::new();
    let o = Options {
        rate_limit: 200_000,
        ..opts()
    };
    dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    let secs = clock.slept().as_secs_f64();
    let rate = 2_000_000.0 / secs;
    assert!(
        (180_000.0..=220_000.0).contains(&rate),
        "rate {rate:.0} B/s over {secs:.2} s"
    );
}

#[test]
fn resume_in_place_like_curl_c() {
    let dir = Dir::new();
    let src = content(LEN, 26);
    let fake = Fake::new(src.clone());
    std::fs::write(dir.dest(), &src[..123_456]).unwrap();
    let clock = FakeClock::new();
    let o = Options {
        in_place: true,
        ..opts()
    };
    let r = dl(&dir.dest(), o.clone(), &clock).run(&fake).unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.fetched, (LEN - 123_456) as u64);
    assert_eq!(fake.log()[0].range.as_deref(), Some("bytes=123456-"));
    assert_eq!(fake.log()[0].if_range, None, "no validator known yet");

    // Already complete: a 416 for the whole size is success, nothing written.
    let r = dl(&dir.dest(), o.clone(), &clock).run(&fake).unwrap();
    assert_eq!(r.fetched, 0);
    assert_complete(&dir, &src);

    // A server that ignores ranges, with no validator to tell a change: refuse, untouched.
    std::fs::write(dir.dest(), &src[..1000]).unwrap();
    fake.s.lock().unwrap().ignore_ranges = true;
    let err = dl(&dir.dest(), o, &clock).run(&fake).unwrap_err();
    assert!(matches!(err, DownloadError::NoRangeSupport), "{err}");
    assert_eq!(std::fs::read(dir.dest()).unwrap(), &src[..1000]);
}

#[test]
fn resume_in_place_sends_if_range_from_the_sidecar() {
    let dir = Dir::new();
    let v1 = content(LEN, 27);
    let v2 = content(LEN, 28);
    let fake = Fake::new(v1.clone());
    fake.script([Act::CutAfter(200_000)]);
    let clock = FakeClock::new();
    let o = Options {
        in_place: true,
        ..opts()
    };
    dl(&dir.dest(), o.clone(), &clock).run(&fake).unwrap_err();
    assert!(state_path(&dir.dest()).exists());
    assert_eq!(std::fs::read(dir.dest()).unwrap(), &v1[..200_000]);
    fake.script([Act::Change(v2.clone())]);
    let r = dl(&dir.dest(), o, &clock).run(&fake).unwrap();
    assert_eq!(fake.log()[1].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(r.restarts, 1);
    assert_complete(&dir, &v2);
}

#[test]
fn temp_file_mode_follows_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    let dir = Dir::new();
    let fake = Fake::new(content(1000, 29));
    dl(&dir.dest(), opts(), &FakeClock::new())
        .run(&fake)
        .unwrap();
    let mode = std::fs::metadata(dir.dest()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !umask, "mode {mode:o}, umask {umask:o}");
}

#[test]
fn a_corrupt_sidecar_restarts_safely() {
    let dir = Dir::new();
    let src = content(LEN, 30);
    let fake = Fake::new(src.clone());
    std::fs::write(temp_path(&dir.dest()), vec![0xAA; 5000]).unwrap();
    std::fs::write(
        state_path(&dir.dest()),
        "ferry-state 1\netag \"v1\"\npiece 0 - 0 5000\n",
    )
    .unwrap(); // no `end` line: cut short by a crash
    let r = dl(&dir.dest(), opts(), &FakeClock::new())
        .run(&fake)
        .unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.resumed_from, 0);
    // A sidecar claiming more bytes than the data file holds is refused too.
    let dir = Dir::new();
    std::fs::write(temp_path(&dir.dest()), vec![0xAA; 10]).unwrap();
    let st = State {
        validator: Validator {
            etag: Some("\"v1\"".into()),
            ..Validator::default()
        },
        accept_ranges: true,
        pieces: vec![Piece {
            start: 0,
            end: None,
            offset: 0,
            done: 5000,
        }],
    };
    save_state(&dir.dest(), &st).unwrap();
    let r = dl(&dir.dest(), opts(), &FakeClock::new())
        .run(&fake)
        .unwrap();
    assert_complete(&dir, &src);
    assert_eq!(r.resumed_from, 0);
}
