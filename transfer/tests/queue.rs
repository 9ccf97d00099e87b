//! The job queue (`queue::Queue`) without sockets: a fake [`Connector`] whose [`Fetch`] serves
//! in-memory entities (ETag, `Accept-Ranges`, 206 for `Range: bytes=N-` with `If-Range`), paced
//! at a per-URL byte rate in small reads so that throttling and preemption are observable, with
//! a shared counter of bytes served per URL, a log of requests and bodies, and scripted failures
//! (503 with or without `Retry-After`, 404, slow reads that ignore the stop flag).
//!
//! Jobs are created and changed through the store, then the queue is told with
//! `Control::changed`, as the service's command handlers do. Every wait is bounded.

use ferry_transfer::fetch::{Fetch, FetchError, FetchHead, FetchRequest};
use ferry_transfer::files;
use ferry_transfer::job::{FileSpec, Job, JobId, NotifyCommand, Priority};
use ferry_transfer::queue::{self, Config, Connector, Control, Queue};
use ferry_transfer::state::{State, Verb};
use ferry_transfer::store::Store;
use ferry_transfer::throttle::BackgroundPolicy;
use http::{HeaderMap, HeaderValue};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};
use url::Url;

// ---------------------------------------------------------------------------------------------
// The fake server

/// Bytes per read of a body: small, so that pacing, throttles and stops act often.
const CHUNK: usize = 8 * 1024;
/// Poll interval of every wait loop.
const POLL: Duration = Duration::from_millis(20);

/// A scripted answer, taken in order per URL (honest service when none is left).
#[derive(Debug, Clone)]
enum Act {
    /// This status with an empty body, and `Retry-After` when given.
    Status(u16, Option<&'static str>),
    /// Honest, but once `after` bytes of this body are out, every read first sleeps `pause`
    /// (a slow or stalled connection; the sleep ignores the job's stop flag, as a blocked
    /// socket read would).
    Slow { after: u64, pause: Duration },
}

struct Entity {
    data: Arc<Vec<u8>>,
    etag: String,
    /// Bytes per second per body (0: as fast as read).
    rate: u64,
    served: Arc<AtomicU64>,
    script: VecDeque<Act>,
}

#[derive(Debug, Clone)]
struct Logged {
    url: String,
    at: Instant,
    head: bool,
    range: Option<(u64, Option<u64>)>,
    if_range: Option<String>,
    status: u16,
}

/// One body's lifetime: from the response until the engine dropped it.
#[derive(Debug, Clone)]
struct Life {
    url: String,
    from: Instant,
    to: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    entities: Mutex<HashMap<String, Entity>>,
    log: Mutex<Vec<Logged>>,
    lives: Mutex<Vec<Life>>,
}

#[derive(Clone, Default)]
struct Server(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deterministic bytes that differ everywhere (a splice or an offset error shows).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

impl Server {
    /// Serves `data` at `http://fake.test/{name}` at `rate` bytes per second per body.
    fn add(&self, name: &str, data: Vec<u8>, rate: u64) -> Url {
        let url = Url::parse(&format!("http://fake.test/{name}")).unwrap();
        lock(&self.0.entities).insert(
            url.to_string(),
            Entity {
                data: Arc::new(data),
                etag: format!("\"{name}-v1\""),
                rate,
                served: Arc::new(AtomicU64::new(0)),
                script: VecDeque::new(),
            },
        );
        url
    }

    fn script(&self, url: &Url, acts: impl IntoIterator<Item = Act>) {
        let mut e = lock(&self.0.entities);
        e.get_mut(url.as_str()).unwrap().script.extend(acts);
    }

    fn served(&self, url: &Url) -> u64 {
        lock(&self.0.entities)[url.as_str()]
            .served
            .load(Ordering::SeqCst)
    }

    fn data(&self, url: &Url) -> Arc<Vec<u8>> {
        Arc::clone(&lock(&self.0.entities)[url.as_str()].data)
    }

    fn etag(&self, url: &Url) -> String {
        lock(&self.0.entities)[url.as_str()].etag.clone()
    }

    /// The requests for `url`, in order.
    fn requests(&self, url: &Url) -> Vec<Logged> {
        lock(&self.0.log)
            .iter()
            .filter(|l| l.url == url.as_str())
            .cloned()
            .collect()
    }

    /// The GET requests for `url`, in order.
    fn gets(&self, url: &Url) -> Vec<Logged> {
        self.requests(url).into_iter().filter(|l| !l.head).collect()
    }

    fn lives(&self, url: &Url) -> Vec<Life> {
        lock(&self.0.lives)
            .iter()
            .filter(|l| l.url == url.as_str())
            .cloned()
            .collect()
    }

    /// Pairs of bodies of `a` and `b` that were open at the same time (open bodies count as
    /// open until now).
    fn overlaps(&self, a: &Url, b: &Url) -> Vec<(Life, Life)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for x in self.lives(a) {
            for y in self.lives(b) {
                if x.from < y.to.unwrap_or(now) && y.from < x.to.unwrap_or(now) {
                    out.push((x.clone(), y));
                }
            }
        }
        out
    }
}

fn header(map: &mut HeaderMap, name: &'static str, value: &str) {
    map.insert(name, HeaderValue::from_str(value).unwrap());
}

struct Body {
    server: Server,
    life: usize,
    data: Arc<Vec<u8>>,
    pos: usize,
    end: usize,
    rate: u64,
    t0: Instant,
    sent: u64,
    served: Arc<AtomicU64>,
    slow: Option<(u64, Duration)>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK).min(self.end - self.pos);
        if n == 0 {
            return Ok(0);
        }
        if let Some((after, pause)) = self.slow {
            if self.sent >= after {
                sleep(pause);
            }
        }
        if self.rate > 0 {
            let due =
                self.t0 + Duration::from_secs_f64((self.sent + n as u64) as f64 / self.rate as f64);
            let now = Instant::now();
            if due > now {
                sleep(due - now);
            }
        }
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.sent += n as u64;
        self.served.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        lock(&self.server.0.lives)[self.life].to = Some(Instant::now());
    }
}

impl Fetch for Server {
    type Body = Body;

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, Body), FetchError> {
        let key = req.url.to_string();
        let mut entities = lock(&self.0.entities);
        let mut headers = HeaderMap::new();
        let (status, data, start, end, rate, served, slow) = match entities.get_mut(&key) {
            None => {
                header(&mut headers, "content-length", "0");
                (404, Arc::new(Vec::new()), 0, 0, 0, Arc::default(), None)
            }
            Some(e) => {
                let len = e.data.len();
                let act = if req.head { None } else { e.script.pop_front() };
                let slow = match act {
                    Some(Act::Slow { after, pause }) => Some((after, pause)),
                    _ => None,
                };
                match act {
                    Some(Act::Status(s, retry_after)) => {
                        header(&mut headers, "content-length", "0");
                        if let Some(ra) = retry_after {
                            header(&mut headers, "retry-after", ra);
                        }
                        (s, Arc::clone(&e.data), 0, 0, 0, Arc::clone(&e.served), None)
                    }
                    _ => {
                        header(&mut headers, "etag", &e.etag);
                        header(&mut headers, "accept-ranges", "bytes");
                        header(
                            &mut headers,
                            "last-modified",
                            "Mon, 01 Jan 2024 00:00:00 GMT",
                        );
                        let ranged = req
                            .range
                            .filter(|_| req.if_range.as_deref().is_none_or(|v| v == e.etag));
                        let (status, start, end) = match ranged {
                            Some((first, _)) if first >= len as u64 => {
                                header(&mut headers, "content-range", &format!("bytes */{len}"));
                                header(&mut headers, "content-length", "0");
                                (416, 0, 0)
                            }
                            Some((first, last)) => {
                                let first = first as usize;
                                let last = last.map_or(len - 1, |l| (l as usize).min(len - 1));
                                header(
                                    &mut headers,
                                    "content-range",
                                    &format!("bytes {first}-{last}/{len}"),
                                );
                                header(
                                    &mut headers,
                                    "content-length",
                                    &(last + 1 - first).to_string(),
                                );
                                (206, first, last + 1)
                            }
                            None => {
                                header(&mut headers, "content-length", &len.to_string());
                                (200, 0, len)
                            }
                        };
                        let end = if req.head { start } else { end };
                        (
                            status,
                            Arc::clone(&e.data),
                            start,
                            end,
                            e.rate,
                            Arc::clone(&e.served),
                            slow,
                        )
                    }
                }
            }
        };
        drop(entities);
        let at = Instant::now();
        lock(&self.0.log).push(Logged {
            url: key.clone(),
            at,
            head: req.head,
            range: req.range,
            if_range: req.if_range.clone(),
            status,
        });
        let life = {
            let mut lives = lock(&self.0.lives);
            lives.push(Life {
                url: key,
                from: at,
                to: None,
            });
            lives.len() - 1
        };
        let head = FetchHead {
            status,
            headers,
            final_url: req.url.clone(),
        };
        let body = Body {
            server: self.clone(),
            life,
            data,
            pos: start,
            end,
            rate,
            t0: at,
            sent: 0,
            served,
            slow,
        };
        Ok((head, body))
    }
}

/// Hands every job the same fake server.
struct Conn(Server);

impl Connector for Conn {
    type Fetch = Server;

    fn connect(&self, _job: &Job) -> Result<Server, FetchError> {
        Ok(self.0.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// The test bench: a temporary directory, a store, the server, a queue

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ferry-queue-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> Config {
    Config {
        slice: Duration::from_secs(60),
        tick: Duration::from_millis(50),
        segments: 1,
        checkpoint_bytes: 64 * 1024,
        checkpoint_interval: Duration::from_millis(200),
        policy: BackgroundPolicy::default(),
        stop_grace: Duration::from_secs(3),
    }
}

struct Bench {
    dir: TempDir,
    store: Arc<Mutex<Store>>,
    server: Server,
    queue: Option<Queue<Conn>>,
}

impl Bench {
    fn new(tag: &str, config: Config) -> Bench {
        let dir = TempDir::new(tag);
        let store = Arc::new(Mutex::new(Store::open(dir.0.join("db/jobs.db")).unwrap()));
        let server = Server::default();
        let queue = Queue::start(Arc::clone(&store), Conn(server.clone()), config);
        Bench {
            dir,
            store,
            server,
            queue: Some(queue),
        }
    }

    fn queue(&self) -> &Queue<Conn> {
        self.queue.as_ref().expect("the queue runs")
    }

    fn changed(&self) {
        self.queue().handle().changed();
    }

    /// A directory of its own for each job's files (so "nothing left" is "empty").
    fn job_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.0.join("files").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Creates a job with one file of `url`, lets `tweak` set it up while suspended, resumes
    /// it, stores it and tells the queue. Returns its id and destination.
    fn add_job(
        &self,
        name: &str,
        url: &Url,
        priority: Priority,
        tweak: impl FnOnce(&mut Job),
    ) -> (JobId, PathBuf) {
        let now = queue::unix_now();
        let dest = self.job_dir(name).join(format!("{name}.bin"));
        let mut job = Job::new(JobId::random().unwrap(), 1000, name, now).unwrap();
        job.set_priority(priority, now).unwrap();
        job.add_file(FileSpec::new(url.clone(), &dest).unwrap(), now)
            .unwrap();
        tweak(&mut job);
        job.apply(Verb::Resume, now).unwrap();
        lock(&self.store).insert_job(&job).unwrap();
        self.changed();
        (job.id(), dest)
    }

    fn job(&self, id: JobId) -> Job {
        lock(&self.store).load_job(&id).unwrap()
    }

    fn state(&self, id: JobId) -> State {
        self.job(id).state()
    }

    fn describe(&self, id: JobId) -> String {
        let j = self.job(id);
        format!(
            "{} is {} (done {} of {:?}, last error {:?})",
            j.display_name(),
            j.state(),
            j.bytes_done(),
            j.bytes_total(),
            j.last_error()
        )
    }

    fn wait_state(&self, id: JobId, want: State, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.state(id) == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {want}: {}",
                self.describe(id)
            );
            sleep(POLL);
        }
    }

    /// Waits until `url` has been served at least `bytes`; returns when that was seen.
    fn wait_served(&self, url: &Url, bytes: u64, timeout: Duration) -> Instant {
        wait_until(&format!("{bytes} bytes served for {url}"), timeout, || {
            (self.server.served(url) >= bytes).then(Instant::now)
        })
    }

    /// Changes a job in the store as a command handler would.
    fn mutate(&self, id: JobId, f: impl FnOnce(&mut Job)) -> Job {
        let mut store = lock(&self.store);
        let mut job = store.load_job(&id).unwrap();
        f(&mut job);
        store.update_job(&job).unwrap();
        job
    }

    /// `complete` as the service does it: files into place, then the state.
    fn complete(&self, id: JobId) {
        let job = self.job(id);
        files::complete(&job).unwrap();
        self.mutate(id, |j| {
            j.apply(Verb::Complete, queue::unix_now()).unwrap();
        });
        self.changed();
    }

    /// The staged file holds exactly the server's bytes; the destination does not exist yet.
    fn assert_staged(&self, dest: &Path, url: &Url) {
        let staged = files::staged(dest);
        let got = std::fs::read(&staged)
            .unwrap_or_else(|e| panic!("staged file {} unreadable: {e}", staged.display()));
        assert!(
            got == *self.server.data(url),
            "staged bytes of {url} differ from the server's ({} vs {} bytes)",
            got.len(),
            self.server.data(url).len()
        );
        assert!(!dest.exists(), "{} exists before complete", dest.display());
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            q.shutdown();
        }
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        sleep(POLL);
    }
}

/// The entries of a directory (names), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// 1. Foreground jobs run together

#[test]
fn foreground_jobs_progress_together_and_appear_only_on_complete() {
    let b = Bench::new("fg2", config());
    let len = 300_000;
    let ua = b.server.add("a", content(len, 1), 200_000);
    let ub = b.server.add("b", content(len, 2), 200_000);
    let (a, da) = b.add_job("a", &ua, Priority::Foreground, |_| {});
    let (c, dc) = b.add_job("b", &ub, Priority::Foreground, |_| {});

    // Both receive bytes while neither has finished: neither waits for the other.
    let (sa, sb) = wait_until(
        "both foreground jobs to receive bytes",
        Duration::from_secs(3),
        || {
            let (sa, sb) = (b.server.served(&ua), b.server.served(&ub));
            (sa > 0 && sb > 0).then_some((sa, sb))
        },
    );
    assert!(
        sa < len as u64 / 2 && sb < len as u64 / 2,
        "one job was far ahead when the other started: {sa} vs {sb}"
    );
    assert!(
        !b.server.overlaps(&ua, &ub).is_empty(),
        "the two foreground transfers never overlapped in time"
    );

    b.wait_state(a, State::Transferred, Duration::from_secs(8));
    b.wait_state(c, State::Transferred, Duration::from_secs(8));
    for (id, dest, url) in [(a, &da, &ua), (c, &dc, &ub)] {
        b.assert_staged(dest, url);
        let job = b.job(id);
        assert_eq!(job.files()[0].bytes_done, len as u64);
        assert!(job.files()[0].completed);
    }

    for (id, dest, url) in [(a, &da, &ua), (c, &dc, &ub)] {
        b.complete(id);
        assert_eq!(b.state(id), State::Acknowledged);
        assert!(std::fs::read(dest).unwrap() == *b.server.data(url));
        // Only the destination is left in its directory.
        assert_eq!(
            entries(dest.parent().unwrap()),
            vec![dest.file_name().unwrap().to_string_lossy().into_owned()]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Background priorities: low waits, high preempts, the preempted job resumes

#[test]
fn background_priorities_low_waits_and_high_preempts_normal() {
    let b = Bench::new("prio", config());
    let un = b.server.add("normal", content(600_000, 3), 300_000);
    let ul = b.server.add("low", content(100_000, 4), 1_000_000);
    let uh = b.server.add("high", content(150_000, 5), 300_000);

    let (n, dn) = b.add_job("normal", &un, Priority::Normal, |_| {});
    b.wait_served(&un, 1, Duration::from_secs(3));
    let (l, dl) = b.add_job("low", &ul, Priority::Low, |_| {});
    sleep(Duration::from_millis(400));
    assert_eq!(
        b.server.served(&ul),
        0,
        "the low job got bytes while normal ran"
    );
    assert_eq!(b.state(l), State::Queued);

    // Wait for at least one checkpoint of the normal job, then queue a high one.
    wait_until(
        "a checkpoint of the normal job",
        Duration::from_secs(3),
        || (b.job(n).files()[0].bytes_done > 0).then_some(()),
    );
    let (h, dh) = b.add_job("high", &uh, Priority::High, |_| {});
    wait_until(
        "the normal job to be preempted",
        Duration::from_secs(3),
        || (b.state(n) == State::Queued).then_some(()),
    );
    let checkpoint = b.job(n).files()[0].bytes_done;
    assert!(checkpoint > 0, "the preempted job recorded no checkpoint");
    let gets_before = b.server.gets(&un).len();
    b.wait_state(h, State::Transferred, Duration::from_secs(5));
    b.assert_staged(&dh, &uh);

    b.wait_state(n, State::Transferred, Duration::from_secs(8));
    b.assert_staged(&dn, &un);
    let resumed = &b.server.gets(&un)[gets_before..];
    let first = resumed.first().expect("the normal job was never resumed");
    let (start, _) = first.range.expect("the resume sent no Range");
    assert!(
        start >= checkpoint,
        "resumed at {start}, before the recorded checkpoint {checkpoint}"
    );
    assert_eq!(first.if_range.as_deref(), Some(b.server.etag(&un).as_str()));
    assert_eq!(first.status, 206);

    // At most one background body at a time, and the low one only after normal ended.
    assert!(
        b.server.overlaps(&un, &uh).is_empty(),
        "normal and high overlapped"
    );
    let normal_end = b
        .server
        .lives(&un)
        .iter()
        .filter_map(|l| l.to)
        .max()
        .unwrap();
    let high_end = b
        .server
        .lives(&uh)
        .iter()
        .filter_map(|l| l.to)
        .max()
        .unwrap();
    b.wait_state(l, State::Transferred, Duration::from_secs(5));
    b.assert_staged(&dl, &ul);
    let low_first = b.server.gets(&ul)[0].at;
    assert!(
        low_first >= normal_end && low_first >= high_end,
        "the low job started before the normal and high jobs were done"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Equal priorities take turns

#[test]
fn equal_priorities_alternate_by_time_slice() {
    let mut cfg = config();
    cfg.slice = Duration::from_millis(300);
    let b = Bench::new("slice", cfg);
    let len = 400_000u64;
    let ua = b.server.add("a", content(len as usize, 6), 250_000);
    let ub = b.server.add("b", content(len as usize, 7), 250_000);
    let (a, da) = b.add_job("a", &ua, Priority::Normal, |_| {});
    let (c, dc) = b.add_job("b", &ub, Priority::Normal, |_| {});

    // Sample the served counters until both are done.
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = (b.server.served(&ua), b.server.served(&ub));
        samples.push(s);
        if s.0 == len && s.1 == len {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: served {s:?} of {len} each"
        );
        sleep(POLL);
    }
    // Both received bytes before either finished.
    let first_done = samples
        .iter()
        .position(|s| s.0 == len || s.1 == len)
        .unwrap();
    let (sa, sb) = samples[first_done];
    assert!(
        sa > 0 && sb > 0 && (sa < len || sb < len),
        "one job ran to the end before the other started: {sa} / {sb}"
    );
    // Who advanced in each interval: never both, except across a switch.
    let mut turns = Vec::new();
    let mut both = 0;
    for w in samples.windows(2) {
        let (da_, db_) = (w[1].0 > w[0].0, w[1].1 > w[0].1);
        match (da_, db_) {
            (true, true) => both += 1,
            (true, false) => turns.push('a'),
            (false, true) => turns.push('b'),
            _ => {}
        }
    }
    turns.dedup();
    assert!(
        turns.len() >= 4,
        "the served timeline does not alternate: {turns:?}"
    );
    assert!(
        both <= turns.len(),
        "{both} samples saw both jobs served, for {} switches",
        turns.len()
    );
    // Strictly: no two background bodies were ever open at once.
    let ov = b.server.overlaps(&ua, &ub);
    assert!(ov.is_empty(), "background bodies overlapped: {ov:?}");

    b.wait_state(a, State::Transferred, Duration::from_secs(3));
    b.wait_state(c, State::Transferred, Duration::from_secs(3));
    b.assert_staged(&da, &ua);
    b.assert_staged(&dc, &ub);
    // Each resume went on from where its slice stopped: nothing was fetched twice.
    for u in [&ua, &ub] {
        let gets = b.server.gets(u);
        assert!(gets.len() >= 2, "{u} was never preempted");
        assert!(gets[1..]
            .iter()
            .all(|g| g.range.is_some() && g.status == 206));
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Foreground holds background

#[test]
fn foreground_holds_background() {
    let b = Bench::new("fgbg", config());
    let ubg = b.server.add("bg", content(500_000, 8), 250_000);
    let ufg = b.server.add("fg", content(250_000, 9), 250_000);
    let (bg, dbg) = b.add_job("bg", &ubg, Priority::High, |_| {});
    b.wait_served(&ubg, 20_000, Duration::from_secs(3));
    let (fg, dfg) = b.add_job("fg", &ufg, Priority::Foreground, |_| {});
    b.wait_served(&ufg, 1, Duration::from_secs(3));
    // Give the preemption a moment (the foreground job starts first, the background worker
    // is stopped right after), then nothing may move for the background job.
    sleep(Duration::from_millis(150));
    let held = b.server.served(&ubg);
    assert_eq!(b.state(bg), State::Queued);
    while b.state(fg) != State::Transferred {
        assert_eq!(
            b.server.served(&ubg),
            held,
            "background bytes while a foreground job runs"
        );
        assert!(b.server.served(&ufg) > 0);
        sleep(POLL);
        assert!(
            b.state(fg) != State::Error,
            "foreground failed: {}",
            b.describe(fg)
        );
    }
    assert_eq!(b.server.served(&ubg), held);
    // Background bodies ended right after the foreground one began.
    b.assert_staged(&dfg, &ufg);
    b.wait_state(bg, State::Transferred, Duration::from_secs(5));
    b.assert_staged(&dbg, &ubg);
    // Background bodies: ended right after the foreground one began, or began after it ended.
    let fg_from = b.server.lives(&ufg)[0].from;
    let fg_to = b
        .server
        .lives(&ufg)
        .iter()
        .filter_map(|l| l.to)
        .max()
        .unwrap();
    for l in b.server.lives(&ubg) {
        let to = l.to.unwrap_or_else(Instant::now);
        assert!(
            to <= fg_from + Duration::from_millis(150) || l.from >= fg_to,
            "a background body was open {:?} into the foreground transfer",
            to.saturating_duration_since(fg_from)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Throttling

/// The rate served for `url` over `window`, starting `settle` after its first byte.
fn measure(b: &Bench, url: &Url, settle: Duration, window: Duration) -> f64 {
    b.wait_served(url, 1, Duration::from_secs(3));
    sleep(settle);
    let (t0, c0) = (Instant::now(), b.server.served(url));
    sleep(window);
    let (t1, c1) = (Instant::now(), b.server.served(url));
    (c1 - c0) as f64 / secs(t1 - t0)
}

#[test]
fn per_job_cap_holds() {
    let b = Bench::new("cap", config());
    let cap = 150_000u64;
    let u = b.server.add("capped", content(750_000, 10), 3_000_000);
    let (id, dest) = b.add_job("capped", &u, Priority::Normal, |j| {
        j.set_rate_limit(Some(cap), queue::unix_now()).unwrap();
    });
    let rate = measure(
        &b,
        &u,
        Duration::from_millis(300),
        Duration::from_millis(2200),
    );
    let ratio = rate / cap as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "per-job cap {cap} B/s: measured {rate:.0} B/s ({ratio:.3})"
    );
    assert_eq!(b.state(id), State::Transferring);
    let left = 750_000 - b.server.served(&u);
    assert!(
        left >= 300_000,
        "only {left} bytes left to test lifting the cap"
    );
    // Lifting the cap while it runs takes effect (the queue follows the store).
    b.mutate(id, |j| j.set_rate_limit(None, queue::unix_now()).unwrap());
    b.changed();
    // At least 300 kB were left (2 s at the cap); without the cap they take a moment.
    b.wait_state(id, State::Transferred, Duration::from_secs(1));
    b.assert_staged(&dest, &u);
}

#[test]
fn global_background_cap_holds_and_spares_foreground() {
    let cap = 150_000u64;
    let mut cfg = config();
    cfg.policy = BackgroundPolicy {
        window: None,
        inside: None,
        outside: Some(cap),
    };
    let b = Bench::new("global", cfg);
    let ufg = b.server.add("fg", content(1_200_000, 11), 2_000_000);
    let ubg = b.server.add("bg", content(600_000, 12), 3_000_000);

    // Foreground alone: far above the background cap.
    let (fg, dfg) = b.add_job("fg", &ufg, Priority::Foreground, |_| {});
    let fg_rate = measure(
        &b,
        &ufg,
        Duration::from_millis(100),
        Duration::from_millis(400),
    );
    assert!(
        fg_rate > 4.0 * cap as f64,
        "the foreground job was slowed by the background cap: {fg_rate:.0} B/s"
    );
    b.wait_state(fg, State::Transferred, Duration::from_secs(5));
    b.assert_staged(&dfg, &ufg);

    let (bg, dbg) = b.add_job("bg", &ubg, Priority::Normal, |_| {});
    let rate = measure(
        &b,
        &ubg,
        Duration::from_millis(300),
        Duration::from_millis(2200),
    );
    let ratio = rate / cap as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "global background cap {cap} B/s: measured {rate:.0} B/s ({ratio:.3})"
    );
    assert_eq!(b.state(bg), State::Transferring);
    b.wait_state(bg, State::Transferred, Duration::from_secs(4));
    b.assert_staged(&dbg, &ubg);
}

// ---------------------------------------------------------------------------------------------
// 6. A cap of 0 blocks background jobs

#[test]
fn cap_zero_blocks_background_not_foreground() {
    let mut cfg = config();
    cfg.policy = BackgroundPolicy {
        window: None,
        inside: None,
        outside: Some(0),
    };
    let b = Bench::new("blocked", cfg);
    let ubg = b.server.add("bg", content(100_000, 13), 0);
    let ufg = b.server.add("fg", content(200_000, 14), 1_000_000);
    let (bg, _) = b.add_job("bg", &ubg, Priority::High, |_| {});
    b.wait_state(bg, State::TransientError, Duration::from_secs(2));
    let e = b.job(bg).last_error().cloned().expect("no error recorded");
    assert_eq!(e.message, queue::POLICY_BLOCKED);
    assert!(e.transient);
    assert_eq!(e.status, None);

    let (fg, dfg) = b.add_job("fg", &ufg, Priority::Foreground, |_| {});
    b.wait_state(fg, State::Transferred, Duration::from_secs(3));
    b.assert_staged(&dfg, &ufg);
    sleep(Duration::from_millis(500));
    assert_eq!(b.state(bg), State::TransientError);
    assert_eq!(b.server.served(&ubg), 0, "a blocked job got bytes");
    assert!(
        b.server.requests(&ubg).is_empty(),
        "a blocked job sent requests"
    );
}

#[test]
fn cap_zero_window_ends_and_the_job_runs() {
    // A window from now to 3 s later (UTC seconds of the day, wrapping at midnight) in which
    // the background cap is 0; unlimited outside it.
    let now = queue::unix_now();
    let end_unix = now + 3;
    let day = 24 * 3600;
    let start = (now % day) as u32;
    let end = (end_unix % day) as u32;
    let mut cfg = config();
    cfg.policy = BackgroundPolicy {
        window: Some((start, end)),
        inside: Some(0),
        outside: None,
    };
    let b = Bench::new("window", cfg);
    let u = b.server.add("bg", content(200_000, 15), 1_000_000);
    let (id, dest) = b.add_job("bg", &u, Priority::Normal, |_| {});
    b.wait_state(id, State::TransientError, Duration::from_secs(2));
    assert_eq!(
        b.job(id).last_error().map(|e| e.message.as_str()),
        Some(queue::POLICY_BLOCKED)
    );
    // Nothing moves while the window lasts.
    loop {
        let before = queue::unix_now();
        let served = b.server.served(&u);
        let state = b.state(id);
        if before >= end_unix || queue::unix_now() >= end_unix {
            break;
        }
        assert_eq!(served, 0, "bytes served inside the blocked window");
        assert_eq!(state, State::TransientError);
        sleep(POLL);
    }
    b.wait_state(id, State::Transferred, Duration::from_secs(4));
    b.assert_staged(&dest, &u);
}

// ---------------------------------------------------------------------------------------------
// 7. Failures: transient with the retry delay and Retry-After, final, no-progress timeout 0

/// Runs a foreground job whose first request answers `first`; returns the bench, the job, its
/// URL and destination once the job is in `want`.
fn failing_job(
    tag: &str,
    first: Act,
    want: State,
    tweak: impl FnOnce(&mut Job),
) -> (Bench, JobId, Url, PathBuf) {
    let b = Bench::new(tag, config());
    let u = b.server.add(tag, content(100_000, 16), 0);
    b.server.script(&u, [first]);
    let (id, dest) = b.add_job(tag, &u, Priority::Foreground, |j| {
        j.set_min_retry_delay_secs(5, queue::unix_now()).unwrap();
        tweak(j);
    });
    b.wait_state(id, want, Duration::from_secs(3));
    (b, id, u, dest)
}

/// The time between the first two requests for `url` (waiting up to `timeout` for the second).
fn retry_gap(b: &Bench, url: &Url, timeout: Duration) -> Duration {
    let second = wait_until("the retry", timeout, || {
        b.server.gets(url).get(1).map(|l| l.at)
    });
    second - b.server.gets(url)[0].at
}

#[test]
fn transient_503_is_retried_after_the_delay() {
    let (b, id, u, dest) = failing_job(
        "t503",
        Act::Status(503, None),
        State::TransientError,
        |_| {},
    );
    let e = b.job(id).last_error().cloned().unwrap();
    assert_eq!(e.status, Some(503));
    assert!(e.transient);
    let gap = retry_gap(&b, &u, Duration::from_secs(8));
    assert!(
        gap >= Duration::from_secs(5) && gap <= Duration::from_secs(6),
        "retried after {gap:?}, expected 5 s (+ at most 1 s)"
    );
    b.wait_state(id, State::Transferred, Duration::from_secs(3));
    b.assert_staged(&dest, &u);
}

#[test]
fn retry_after_longer_than_the_delay_postpones_the_retry() {
    let (b, id, u, dest) = failing_job(
        "ra7",
        Act::Status(503, Some("7")),
        State::TransientError,
        |_| {},
    );
    let gap = retry_gap(&b, &u, Duration::from_secs(10));
    assert!(
        gap >= Duration::from_secs(7) && gap <= Duration::from_secs(8),
        "retried after {gap:?}, expected Retry-After's 7 s (+ at most 1 s)"
    );
    b.wait_state(id, State::Transferred, Duration::from_secs(3));
    b.assert_staged(&dest, &u);
}

#[test]
fn not_found_is_final() {
    let (b, id, u, dest) = failing_job("nf", Act::Status(404, None), State::Error, |_| {});
    let e = b.job(id).last_error().cloned().unwrap();
    assert_eq!(e.status, Some(404));
    assert!(!e.transient);
    sleep(Duration::from_secs(2));
    assert_eq!(b.server.requests(&u).len(), 1, "a final error was retried");
    assert_eq!(b.state(id), State::Error);
    assert!(
        entries(dest.parent().unwrap()).is_empty(),
        "files left after a 404"
    );
}

#[test]
fn no_progress_timeout_zero_makes_the_first_transient_error_final() {
    let (b, id, u, _) = failing_job("np0", Act::Status(503, None), State::Error, |j| {
        j.set_no_progress_timeout_secs(0, queue::unix_now())
            .unwrap();
    });
    let j = b.job(id);
    assert_eq!(j.last_error().and_then(|e| e.status), Some(503));
    assert_eq!(j.retry_at(), None);
    sleep(Duration::from_secs(2));
    assert_eq!(b.server.requests(&u).len(), 1);
    assert_eq!(b.state(id), State::Error);
}

// ---------------------------------------------------------------------------------------------
// 8. Notify

/// Writes an executable script that appends its arguments after the first, as `[a][b]…`, to
/// the file named by its first argument, then exits with `code`.
fn notify_script(dir: &Path, name: &str, code: u8) -> PathBuf {
    let p = dir.join(name);
    let text = format!(
        "#!/bin/sh\nout=\"$1\"\nshift\nprintf '[%s]' \"$@\" >> \"$out\"\necho >> \"$out\"\nexit {code}\n"
    );
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn notify_runs_once_with_literal_args_and_failures_rerun_after_the_delay() {
    let b = Bench::new("notify", config());
    // Scripts are written before any job runs (no fork may hold them open for writing).
    let tools = b.job_dir("tools");
    let ok = notify_script(&tools, "ok.sh", 0);
    let bad = notify_script(&tools, "bad.sh", 1);
    let weird = ["two words", "$HOME;*", "`id` && echo 'x'", "\"q\"\\"];
    let expected: String = weird.iter().map(|a| format!("[{a}]")).collect();

    let out = |n: &str| tools.join(format!("out {n}.txt"));
    let cmd = |prog: &Path, n: &str| {
        let mut args = vec![out(n).to_string_lossy().into_owned()];
        args.extend(weird.iter().map(|s| s.to_string()));
        NotifyCommand::new(prog, args).unwrap()
    };
    let mk = |n: &str, prog: &Path| {
        let u = b.server.add(n, content(50_000, 17), 0);
        let c = cmd(prog, n);
        let (id, dest) = b.add_job(n, &u, Priority::Foreground, move |j| {
            let now = queue::unix_now();
            j.set_min_retry_delay_secs(5, now).unwrap();
            j.set_notify(Some(c), now).unwrap();
        });
        (id, dest, u)
    };
    let (x, _, _) = mk("x", &ok);
    let (y, _, _) = mk("y", &bad);
    let (z, _, _) = mk("z", &bad);

    let first = |n: &str| {
        wait_until(
            &format!("the notify program of {n}"),
            Duration::from_secs(4),
            || (!lines(&out(n)).is_empty()).then(Instant::now),
        )
    };
    let tx = first("x");
    assert_eq!(b.state(x), State::Transferred);
    let ty = first("y");
    let tz = first("z");
    // Z is completed right after its failed run: no rerun after that.
    b.complete(z);
    assert_eq!(
        lines(&out("x")),
        vec![expected.clone()],
        "arguments not passed literally"
    );

    // Y reruns after its retry delay (5 s), not before.
    let ty2 = wait_until(
        "the rerun of Y's failed notify",
        Duration::from_secs(8),
        || (lines(&out("y")).len() >= 2).then(Instant::now),
    );
    let gap = ty2 - ty;
    assert!(
        gap >= Duration::from_millis(4950) && gap <= Duration::from_millis(6500),
        "a failed notify reran after {gap:?}, expected the 5 s retry delay"
    );
    assert_eq!(lines(&out("y")), vec![expected.clone(), expected.clone()]);
    // X ran exactly once (success), Z once (completed after its failure).
    let until = tz.max(tx) + Duration::from_millis(6500);
    sleep(until.saturating_duration_since(Instant::now()));
    assert_eq!(lines(&out("x")).len(), 1, "a successful notify ran again");
    assert_eq!(lines(&out("z")).len(), 1, "a notify reran after complete");
    assert_eq!(b.state(z), State::Acknowledged);
    assert_eq!(b.state(y), State::Transferred);
    assert!(b.job(y).notify_due().is_some());
}

// ---------------------------------------------------------------------------------------------
// 9. quiesce + cancel

#[test]
fn quiesce_then_cancel_leaves_nothing_and_serves_nothing() {
    let b = Bench::new("cancel", config());
    let u = b.server.add("c", content(600_000, 18), 200_000);
    let (id, dest) = b.add_job("c", &u, Priority::Normal, |_| {});
    b.wait_served(&u, 100_000, Duration::from_secs(3));
    b.queue().handle().quiesce(id);
    let served = b.server.served(&u);
    let requests = b.server.requests(&u).len();
    assert!(
        b.server.lives(&u).iter().all(|l| l.to.is_some()),
        "a body is still open after quiesce"
    );
    let job = b.mutate(id, |j| {
        j.apply(Verb::Cancel, queue::unix_now()).unwrap();
    });
    files::cancel(&job);
    b.changed();
    sleep(Duration::from_secs(1));
    assert_eq!(b.state(id), State::Cancelled);
    assert_eq!(b.server.served(&u), served, "bytes served after quiesce");
    assert_eq!(
        b.server.requests(&u).len(),
        requests,
        "requests after quiesce"
    );
    for t in files::temporaries(&dest) {
        assert!(!t.exists(), "{} remains after cancel", t.display());
    }
    let left = entries(dest.parent().unwrap());
    assert!(left.is_empty(), "files remain after cancel: {left:?}");
}

#[test]
fn quiesce_waits_for_a_slow_worker_without_restarting_it() {
    let b = Bench::new("slowq", config());
    let u = b.server.add("s", content(400_000, 19), 0);
    // After 64 KiB every read blocks 700 ms, deaf to the stop flag (a slow socket).
    b.server.script(
        &u,
        [Act::Slow {
            after: 64 * 1024,
            pause: Duration::from_millis(700),
        }],
    );
    let (id, dest) = b.add_job("s", &u, Priority::Normal, |_| {});
    b.wait_served(&u, 64 * 1024 + 1, Duration::from_secs(3));
    let t = Instant::now();
    b.queue().handle().quiesce(id);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "quiesce took {took:?}");
    // While quiesce waited, nobody started the job again.
    let st = b.state(id);
    assert!(
        st == State::Transferring,
        "the job changed while being quiesced: {}",
        b.describe(id)
    );
    assert_eq!(
        b.server.requests(&u).len(),
        1,
        "the job was restarted while quiesced"
    );
    let served = b.server.served(&u);
    let job = b.mutate(id, |j| {
        j.apply(Verb::Cancel, queue::unix_now()).unwrap();
    });
    files::cancel(&job);
    b.changed();
    sleep(Duration::from_millis(800));
    assert_eq!(b.server.served(&u), served);
    assert_eq!(b.server.requests(&u).len(), 1);
    let left = entries(dest.parent().unwrap());
    assert!(left.is_empty(), "files remain after cancel: {left:?}");
}

#[test]
fn quiesce_suspend_resume_continues_from_the_checkpoint() {
    let b = Bench::new("suspend", config());
    let u = b.server.add("p", content(400_000, 22), 300_000);
    let (id, dest) = b.add_job("p", &u, Priority::Foreground, |_| {});
    b.wait_served(&u, 100_000, Duration::from_secs(3));
    b.queue().handle().quiesce(id);
    b.mutate(id, |j| {
        j.apply(Verb::Suspend, queue::unix_now()).unwrap();
    });
    b.changed();
    let served = b.server.served(&u);
    let checkpoint = b.job(id).files()[0].bytes_done;
    sleep(Duration::from_millis(500));
    assert_eq!(b.state(id), State::Suspended);
    assert_eq!(b.server.served(&u), served, "a suspended job got bytes");
    let gets = b.server.gets(&u).len();
    // Resumed, it runs again at once (the quiesce hold ended with the suspend).
    b.mutate(id, |j| {
        j.apply(Verb::Resume, queue::unix_now()).unwrap();
    });
    b.changed();
    b.wait_state(id, State::Transferred, Duration::from_secs(3));
    b.assert_staged(&dest, &u);
    let resumed = &b.server.gets(&u)[gets..];
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    let (start, _) = resumed[0].range.expect("the resume sent no Range");
    assert!(
        start >= checkpoint && start > 0,
        "resumed at {start}, checkpoint {checkpoint}"
    );
}

#[test]
fn a_worker_stuck_past_the_grace_tidies_up_after_cancel() {
    let mut cfg = config();
    cfg.stop_grace = Duration::from_millis(300);
    let b = Bench::new("stuck", cfg);
    let u = b.server.add("s", content(400_000, 20), 0);
    b.server.script(
        &u,
        [Act::Slow {
            after: 64 * 1024,
            pause: Duration::from_millis(1500),
        }],
    );
    let (id, dest) = b.add_job("s", &u, Priority::Normal, |_| {});
    b.wait_served(&u, 64 * 1024 + 1, Duration::from_secs(5));
    let t = Instant::now();
    b.queue().handle().quiesce(id);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "quiesce ignored its grace"
    );
    let served = b.server.served(&u);
    let job = b.mutate(id, |j| {
        j.apply(Verb::Cancel, queue::unix_now()).unwrap();
    });
    files::cancel(&job);
    b.changed();
    // The stuck read returns (one more chunk at most), then the worker ends and tidies up.
    wait_until(
        "the stuck worker to tidy up",
        Duration::from_secs(4),
        || entries(dest.parent().unwrap()).is_empty().then_some(()),
    );
    sleep(Duration::from_millis(300));
    let left = entries(dest.parent().unwrap());
    assert!(left.is_empty(), "files remain after cancel: {left:?}");
    assert!(b.server.served(&u) <= served + CHUNK as u64);
    assert_eq!(b.server.requests(&u).len(), 1);
    assert_eq!(b.state(id), State::Cancelled);
}

// ---------------------------------------------------------------------------------------------
// 10. Restart recovery

#[test]
fn a_restarted_queue_resumes_from_the_checkpoint() {
    let mut b = Bench::new("restart", config());
    let len = 800_000u64;
    let u = b.server.add("r", content(len as usize, 21), 250_000);
    let (id, dest) = b.add_job("r", &u, Priority::Normal, |_| {});
    wait_until("a checkpoint past 200 kB", Duration::from_secs(4), || {
        (b.job(id).files()[0].bytes_done >= 200_000).then_some(())
    });
    let t = Instant::now();
    b.queue.take().unwrap().shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        t.elapsed()
    );
    let st = b.state(id);
    assert!(
        st == State::Transferring,
        "after shutdown: {}",
        b.describe(id)
    );
    let checkpoint = b.job(id).files()[0].bytes_done;
    let served = b.server.served(&u);
    let gets = b.server.gets(&u).len();
    sleep(Duration::from_millis(300));
    assert_eq!(b.server.served(&u), served, "bytes served after shutdown");

    b.queue = Some(Queue::start(
        Arc::clone(&b.store),
        Conn(b.server.clone()),
        config(),
    ));
    b.wait_state(id, State::Transferred, Duration::from_secs(6));
    b.assert_staged(&dest, &u);
    let resumed = &b.server.gets(&u)[gets..];
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    let (start, _) = resumed[0].range.expect("the resume sent no Range");
    assert!(
        start >= checkpoint && start > 0,
        "resumed at {start}, checkpoint {checkpoint}"
    );
    assert_eq!(
        resumed[0].if_range.as_deref(),
        Some(b.server.etag(&u).as_str())
    );
    assert_eq!(
        b.server.served(&u) - served,
        len - start,
        "bytes fetched twice"
    );
}
