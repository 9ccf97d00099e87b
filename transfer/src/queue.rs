//! The job queue that `ferry service` runs: which jobs transfer now (BITS scheduling), the
//! workers that run them, the timers (retry delay on a monotonic clock, no-progress timeout,
//! notify reruns) and the background bandwidth policy.
//!
//! Callers (the service's command handlers) change jobs in the store and then tell the queue
//! through [`Control`]: `quiesce` before touching a running job's files, `changed` after.

use crate::job::JobId;

/// What command handlers need from the running queue.
pub trait Control: Send + Sync {
    /// Stops the job's worker, if one runs, and waits until it has stopped, so that the job's
    /// temporary files are quiet (nothing writes them until the job is scheduled again).
    fn quiesce(&self, id: JobId);
    /// Jobs changed in the store: plan again now (start, preempt, stop, retune throttles).
    fn changed(&self);
}

/// A [`Control`] for callers without a queue (tests, one-shot tools): nothing runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Idle;

impl Control for Idle {
    fn quiesce(&self, _id: JobId) {}
    fn changed(&self) {}
}

use crate::download::{self, Download, DownloadError, Event, Options};
use crate::fetch::{Fetch, FetchError, FetchHead, FetchRequest};
use crate::files;
use crate::job::{Job, JobError, Priority, Validator};
use crate::range;
use crate::state::{State, Verb};
use crate::store::Store;
use crate::throttle::{BackgroundPolicy, Cap, TokenBucket};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The error a background job shows while the bandwidth policy's cap is 0.
pub const POLICY_BLOCKED: &str = "blocked by policy: the background bandwidth cap is 0 now";
/// The longest a notify program may run before it is killed (and counted as failed).
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(600);
/// Default round-robin time slice among background jobs of equal priority.
pub const DEFAULT_SLICE: Duration = Duration::from_secs(60);
/// Default planning interval (timers, window changes, reaping workers).
pub const DEFAULT_TICK: Duration = Duration::from_millis(250);
/// Default connections for a large file of a foreground job.
pub const DEFAULT_SEGMENTS: usize = 4;
/// How long a stop waits for a worker before leaving it to finish on its own.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How the queue behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Round-robin slice among background jobs of equal priority.
    pub slice: Duration,
    /// Planning interval.
    pub tick: Duration,
    /// Connections per large file for foreground jobs (1: never segment).
    pub segments: usize,
    /// Checkpoint distance in bytes.
    pub checkpoint_bytes: u64,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// The global background bandwidth policy.
    pub policy: BackgroundPolicy,
    /// How long a stop waits for a worker.
    pub stop_grace: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            slice: DEFAULT_SLICE,
            tick: DEFAULT_TICK,
            segments: DEFAULT_SEGMENTS,
            checkpoint_bytes: download::CHECKPOINT_BYTES,
            checkpoint_interval: download::CHECKPOINT_INTERVAL,
            policy: BackgroundPolicy::default(),
            stop_grace: STOP_GRACE,
        }
    }
}

/// Makes the [`Fetch`] a job's transfers use (its credentials, proxy choice, headers and
/// redirect policy applied). The root crate implements it over its `Session`.
pub trait Connector: Send + Sync + 'static {
    /// The fetcher.
    type Fetch: Fetch + Sync;
    /// A fetcher for `job`; an error fails the job (final or transient as the error says).
    fn connect(&self, job: &Job) -> Result<Self::Fetch, FetchError>;
}

/// The seconds since the Unix epoch (the store's timestamps).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// The gate every byte of a running job passes: stop flag and token buckets.

/// Stop flag and rate caps of one running job.
#[derive(Debug)]
struct Gate {
    stop: AtomicBool,
    job: Mutex<TokenBucket>,
    /// The shared background bucket; `None` for foreground jobs, which the background policy
    /// never slows.
    global: Option<Arc<Mutex<TokenBucket>>>,
    /// The URL that answered the last GET (after redirects), for "allow and report".
    final_url: Mutex<Option<url::Url>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker poisons nothing that matters: every update is one assignment.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn bucket(rate: u64) -> TokenBucket {
    TokenBucket::new(rate, (rate / 20).max(16 * 1024))
}

impl Gate {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Charges `n` bytes and sleeps off the debt, waking early when stopped.
    fn charge(&self, n: u64) {
        let now = Instant::now();
        let mut wait = lock(&self.job).take(n, now);
        if let Some(g) = &self.global {
            wait = wait.max(lock(g).take(n, now));
        }
        let until = now + wait;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn set_job_rate(&self, rate: u64) {
        let mut b = lock(&self.job);
        if b.rate() != rate {
            *b = bucket(rate);
        }
    }
}

/// A [`Fetch`] whose bodies pass through a [`Gate`].
struct Governed<'a, F> {
    inner: &'a F,
    gate: Arc<Gate>,
}

/// A body passing through a [`Gate`].
struct GovernedBody<B> {
    inner: B,
    gate: Arc<Gate>,
}

fn stopped_error() -> FetchError {
    FetchError::transient("the job was stopped")
}

impl<F: Fetch + Sync> Fetch for Governed<'_, F> {
    type Body = GovernedBody<F::Body>;

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, Self::Body), FetchError> {
        if self.gate.stopped() {
            return Err(stopped_error());
        }
        let (head, body) = self.inner.fetch(req)?;
        if !req.head {
            *lock(&self.gate.final_url) = Some(head.final_url.clone());
        }
        Ok((
            head,
            GovernedBody {
                inner: body,
                gate: Arc::clone(&self.gate),
            },
        ))
    }
}

impl<B: Read> Read for GovernedBody<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.gate.stopped() {
            return Err(io::Error::other("the job was stopped"));
        }
        let n = self.inner.read(buf)?;
        self.gate.charge(n as u64);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Workers: one thread per running job, its files one after another.

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Every file transferred.
    Transferred,
    /// A transient failure: retry after this delay (monotonic).
    Transient(Duration),
    /// A final failure.
    Failed,
    /// Stopped from outside; the state is the stopper's business.
    Stopped,
}

struct Running {
    gate: Arc<Gate>,
    handle: JoinHandle<()>,
    outcome: Arc<Mutex<Option<Outcome>>>,
    started: Instant,
    priority: Priority,
}

fn engine_ranges(f: &crate::job::FileSpec) -> Vec<range::ByteRange> {
    f.ranges()
        .iter()
        .map(|r| range::ByteRange {
            start: r.offset,
            end: r.len.map(|l| r.offset + l.saturating_sub(1)),
        })
        .collect()
}

fn job_validator(v: &download::Validator) -> Validator {
    Validator {
        etag: v.etag.clone(),
        last_modified: v.last_modified.clone(),
        length: v.length,
    }
}

/// What the queue's threads share.
struct Shared<C> {
    store: Arc<Mutex<Store>>,
    connector: C,
    config: Config,
    sched: Mutex<Sched>,
    wake: Condvar,
    global: Arc<Mutex<TokenBucket>>,
    shutdown: AtomicBool,
}

#[derive(Default)]
struct Sched {
    running: HashMap<crate::job::JobId, Running>,
    /// Workers told to stop that had not stopped within the grace period.
    stopping: HashMap<crate::job::JobId, JoinHandle<()>>,
    /// Queue order within a priority: lower first; a preempted job gets a new ticket.
    tickets: HashMap<crate::job::JobId, u64>,
    next_ticket: u64,
    /// Retry deadlines measured on the monotonic clock (the store's wall-clock retry time is
    /// used only after a restart of the service).
    retry_at: HashMap<crate::job::JobId, Instant>,
    notifying: HashSet<crate::job::JobId>,
    /// Reruns of failed notify programs on the monotonic clock (the store's wall-clock
    /// `notify_due`, whole seconds, is used only after a restart of the service).
    notify_at: HashMap<crate::job::JobId, Instant>,
    /// Jobs a command handler quiesced, left alone (neither taken for orphans nor started)
    /// until the handler moved them out of queued/connecting/transferring or the hold ends.
    held: HashMap<crate::job::JobId, Instant>,
    /// The last [`network_fingerprint`].
    network: Option<u64>,
    /// When finished jobs were last purged from the store.
    purged_at: Option<Instant>,
    dirty: bool,
}

/// How often the planner purges finished jobs older than the store's keep time.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Largest routing table read per file.
const MAX_ROUTE_TABLE: u64 = 256 << 10;

/// A digest of the kernel's IPv4 and IPv6 routing tables: it changes when an interface or a
/// route comes or goes, which is what "the network returned" looks like from here.
fn network_fingerprint() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in ["/proc/net/route", "/proc/net/ipv6_route"] {
        let mut text = Vec::new();
        if let Ok(f) = std::fs::File::open(path) {
            let _ = f.take(MAX_ROUTE_TABLE).read_to_end(&mut text);
        }
        route_table_digest(&text).hash(&mut h);
    }
    h.finish()
}

/// The routes of one table, order-insensitive (the kernel may list them in any order).
fn route_table_digest(text: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    lines.hash(&mut h);
    h.finish()
}

/// How long a quiesced job is left alone for its handler to change it in the store.
const QUIESCE_HOLD: Duration = Duration::from_secs(10);

impl<C: Connector> Shared<C> {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Loads `id`, lets `f` change it, and saves it, all under the store lock. `None` when the
    /// job is gone or the store fails.
    fn with_job<R>(&self, id: crate::job::JobId, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        let mut store = self.store();
        let mut job = store.load_job(&id).ok()?;
        let r = f(&mut job);
        store.update_job(&job).ok()?;
        Some(r)
    }

    fn work(&self, id: crate::job::JobId, gate: &Arc<Gate>) -> Outcome {
        let Ok(job) = self.store().load_job(&id) else {
            return Outcome::Stopped;
        };
        if job.state() != State::Connecting {
            return Outcome::Stopped;
        }
        let fetch = match self.connector.connect(&job) {
            Ok(f) => f,
            Err(e) => return self.failed(id, DownloadError::Fetch(e)),
        };
        let governed = Governed {
            inner: &fetch,
            gate: Arc::clone(gate),
        };
        let foreground = job.priority() == Priority::Foreground;
        for (index, file) in job.files().iter().enumerate() {
            if file.completed {
                continue;
            }
            if gate.stopped() {
                return Outcome::Stopped;
            }
            let stage = files::staged(file.local());
            let opts = Options {
                checkpoint_bytes: self.config.checkpoint_bytes,
                checkpoint_interval: self.config.checkpoint_interval,
                allow_dynamic: job.dynamic_content(),
                segments: if foreground { self.config.segments } else { 1 },
                ranges: engine_ranges(file),
                headers: job.custom_headers().to_vec(),
                ..Options::default()
            };
            let store = Arc::clone(&self.store);
            let obs_stage = stage.clone();
            let seen = AtomicBool::new(false);
            let dl = Download::new(file.remote().clone(), &stage)
                .options(opts)
                .observer(move |e| observe(&store, id, index, &obs_stage, &seen, e));
            let result = if foreground && self.config.segments > 1 {
                dl.run_segmented(&governed)
            } else {
                dl.run(&governed)
            };
            if gate.stopped() {
                return Outcome::Stopped;
            }
            match result {
                Ok(report) => {
                    let moved = lock(&gate.final_url).take().filter(|u| u != file.remote());
                    let saved = self.with_job(id, |j| {
                        if let Some(u) = moved.filter(|_| {
                            j.redirect_policy() == crate::job::RedirectPolicy::AllowReport
                        }) {
                            let _ = j.report_redirect(index, u, unix_now());
                        }
                        if j.state() == State::Connecting {
                            let _ = j.apply(Verb::Connected, unix_now());
                        }
                        let _ = j.apply(Verb::Progress, unix_now());
                        if let Ok(f) = j.file_mut(index) {
                            f.bytes_total = Some(report.total);
                            f.bytes_done = report.total;
                            f.completed = true;
                        }
                    });
                    if saved.is_none() {
                        return Outcome::Stopped;
                    }
                }
                Err(e) => return self.failed(id, e),
            }
        }
        let done = self.with_job(id, |j| {
            if j.state() == State::Connecting {
                let _ = j.apply(Verb::Connected, unix_now());
            }
            j.apply(Verb::AllDone, unix_now()).is_ok()
        });
        if done == Some(true) {
            Outcome::Transferred
        } else {
            Outcome::Stopped
        }
    }

    /// Records a failure: BITS picks transient or final (no-progress timeout); a server's
    /// `Retry-After` longer than the minimum delay postpones the retry.
    fn failed(&self, id: crate::job::JobId, e: DownloadError) -> Outcome {
        let retry_after = match &e {
            DownloadError::Fetch(f) => f.retry_after,
            _ => None,
        };
        let error = JobError {
            status: e.status(),
            message: e.to_string(),
            transient: e.is_transient(),
        };
        let now = unix_now();
        let r = self.with_job(id, |j| {
            let to = j.fail(error, now).ok()?;
            let mut delay = Duration::from_secs(j.min_retry_delay_secs());
            if let Some(ra) = retry_after.filter(|ra| *ra > delay) {
                j.postpone_retry(now.saturating_add(ra.as_secs()));
                delay = ra;
            }
            Some((to, delay))
        });
        match r.flatten() {
            Some((State::TransientError, delay)) => Outcome::Transient(delay),
            Some(_) => Outcome::Failed,
            None => Outcome::Stopped,
        }
    }

    /// After a stopped worker wrote its last checkpoint: if the job was cancelled or completed
    /// meanwhile, the files it was writing are removed (the stopper removed them too, but the
    /// engine's final checkpoint may have come after).
    fn tidy_after_stop(&self, id: crate::job::JobId) {
        let Ok(job) = self.store().load_job(&id) else {
            return;
        };
        match job.state() {
            State::Cancelled => files::cancel(&job),
            State::Acknowledged => {
                for f in job.files().iter().filter(|f| !f.completed) {
                    files::remove_temporaries(f.local());
                }
            }
            _ => {}
        }
    }
}

/// Progress from the engine: the first bytes make the job transferring; checkpoints go to the
/// store with the entity's validator (from the sidecar) and reset the no-progress timer.
fn observe(
    store: &Mutex<Store>,
    id: crate::job::JobId,
    index: usize,
    stage: &std::path::Path,
    seen: &AtomicBool,
    e: &Event<'_>,
) {
    let first = matches!(e, Event::Progress { .. }) && !seen.swap(true, Ordering::AcqRel);
    // The store claims only durable bytes: counts are recorded at checkpoints; the first
    // bytes only mark the job as transferring (None: leave the count alone).
    let (done, total, restarted) = match e {
        Event::Progress { .. } if !first => return,
        Event::Progress { total, .. } => (None, *total, false),
        Event::Checkpoint { done } => (Some(*done), None, false),
        Event::Restarted { .. } => (Some(0), None, true),
        _ => return,
    };
    let validator = download::load_state(stage);
    let mut store = lock(store);
    let Ok(mut job) = store.load_job(&id) else {
        return;
    };
    let now = unix_now();
    if job.state() == State::Connecting {
        let _ = job.apply(Verb::Connected, now);
    }
    if job.state() == State::Transferring {
        let _ = job.apply(Verb::Progress, now);
    }
    if let Ok(f) = job.file_mut(index) {
        if restarted {
            f.restart();
        } else {
            if let Some(done) = done {
                f.bytes_done = done;
            }
            if let Some(st) = &validator {
                f.validator = Some(job_validator(&st.validator));
                if total.is_none() {
                    f.bytes_total = st.total().or(f.bytes_total);
                }
            }
            if total.is_some() {
                f.bytes_total = total;
            }
        }
    }
    let _ = store.update_job(&job);
}

// ---------------------------------------------------------------------------------------------
// The queue.

/// The running queue: a planning thread, one worker per running job, notify runners.
pub struct Queue<C: Connector> {
    shared: Arc<Shared<C>>,
    planner: Option<JoinHandle<()>>,
}

impl<C: Connector> std::fmt::Debug for Queue<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// A handle to a running queue for command handlers.
pub struct Handle<C: Connector>(Arc<Shared<C>>);

impl<C: Connector> Clone for Handle<C> {
    fn clone(&self) -> Self {
        Handle(Arc::clone(&self.0))
    }
}

impl<C: Connector> Queue<C> {
    /// Starts the queue over `store`: jobs a previous run left connecting or transferring go
    /// back to the queue and resume from their checkpoints.
    pub fn start(store: Arc<Mutex<Store>>, connector: C, config: Config) -> Queue<C> {
        let shared = Arc::new(Shared {
            store,
            connector,
            config,
            sched: Mutex::new(Sched::default()),
            wake: Condvar::new(),
            global: Arc::new(Mutex::new(bucket(0))),
            shutdown: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let planner = std::thread::Builder::new()
            .name("ferry-queue".into())
            .spawn(move || planner_loop(&s))
            .ok();
        Queue { shared, planner }
    }

    /// A handle for command handlers.
    pub fn handle(&self) -> Handle<C> {
        Handle(Arc::clone(&self.shared))
    }

    /// Stops every worker (their jobs stay connecting/transferring in the store and resume
    /// at the next start) and the planner.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(p) = self.planner.take() {
            let _ = p.join();
        }
        let running: Vec<_> = lock(&self.shared.sched).running.drain().collect();
        for (_, r) in &running {
            r.gate.stop.store(true, Ordering::Release);
        }
        for (_, r) in running {
            let _ = r.handle.join();
        }
    }
}

impl<C: Connector> Drop for Queue<C> {
    fn drop(&mut self) {
        if self.planner.is_some() {
            self.stop_all();
        }
    }
}

impl<C: Connector> Control for Handle<C> {
    fn quiesce(&self, id: crate::job::JobId) {
        // Held first: once the worker is gone, its job still says transferring until the
        // handler changes it, and the planner must not restart it meanwhile.
        lock(&self.0.sched)
            .held
            .insert(id, Instant::now() + QUIESCE_HOLD);
        stop_worker(&self.0, id);
    }

    fn changed(&self) {
        lock(&self.0.sched).dirty = true;
        self.0.wake.notify_all();
    }
}

/// Stops `id`'s worker and waits up to the grace period; a worker still busy then (blocked
/// in a read) is left to finish on its own and tidies up after itself.
fn stop_worker<C: Connector>(shared: &Shared<C>, id: crate::job::JobId) -> bool {
    // The worker goes to `stopping` at once (not only after the grace period): while it stops,
    // its job still says connecting/transferring, and the planner (which may run meanwhile when
    // a command handler quiesces) must neither take it for an orphan nor start it again.
    let (gate, outcome) = {
        let mut g = lock(&shared.sched);
        let Some(r) = g.running.remove(&id) else {
            return false;
        };
        g.stopping.insert(id, r.handle);
        (r.gate, r.outcome)
    };
    gate.stop.store(true, Ordering::Release);
    let finished = |g: &Sched| g.stopping.get(&id).is_none_or(JoinHandle::is_finished);
    let deadline = Instant::now() + shared.config.stop_grace;
    while !finished(&lock(&shared.sched)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = {
        let mut g = lock(&shared.sched);
        // `None` inside: the planner's reap already dropped the finished handle.
        finished(&g).then(|| g.stopping.remove(&id))
    };
    if let Some(handle) = done {
        if let Some(h) = handle {
            let _ = h.join();
        }
        // A worker that had just failed on its own (the planner saw its job in transient
        // error before the thread ended) keeps its monotonic retry deadline.
        if let Some(Outcome::Transient(delay)) = lock(&outcome).take() {
            lock(&shared.sched)
                .retry_at
                .insert(id, Instant::now() + delay);
        }
    }
    true
}

fn planner_loop<C: Connector>(shared: &Arc<Shared<C>>) {
    // Jobs a previous run left running have no worker now.
    recover(shared);
    while !shared.shutdown.load(Ordering::Acquire) {
        plan(shared);
        let g = lock(&shared.sched);
        if g.dirty {
            drop(g);
            lock(&shared.sched).dirty = false;
            continue;
        }
        let (mut g, _) = shared
            .wake
            .wait_timeout(g, shared.config.tick)
            .unwrap_or_else(|e| e.into_inner());
        g.dirty = false;
    }
}

fn recover<C: Connector>(shared: &Shared<C>) {
    let jobs = shared.store().list_jobs(None).unwrap_or_default();
    for j in jobs {
        if matches!(j.state(), State::Connecting | State::Transferring) {
            shared.with_job(j.id(), |j| j.apply(Verb::Preempt, unix_now()));
        }
    }
}

/// One planning round: reap workers, fire timers, run notify programs, apply the bandwidth
/// policy, and start or preempt jobs (BITS scheduling).
fn plan<C: Connector>(shared: &Arc<Shared<C>>) {
    let now = Instant::now();
    let wall = unix_now();
    reap(shared, now);
    let cap = shared.config.policy.cap_at_unix(wall);
    {
        let mut g = lock(&shared.global);
        let rate = match cap {
            Cap::Rate(r) => r,
            _ => 0,
        };
        if g.rate() != rate {
            *g = bucket(rate);
        }
    }
    // Acknowledged and cancelled jobs stay listed for a while, then go (hourly check).
    let purge_due = {
        let mut g = lock(&shared.sched);
        let due = g
            .purged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= PURGE_EVERY);
        if due {
            g.purged_at = Some(now);
        }
        due
    };
    if purge_due {
        let cutoff = wall.saturating_sub(crate::store::KEEP_FINISHED_SECS);
        let _ = shared.store().purge_finished(cutoff);
    }
    let jobs = match shared.store().list_jobs(None) {
        Ok(j) => j,
        Err(_) => return,
    };
    // The network changed (a route came or went): failures of the connection itself are
    // retried now rather than after the whole delay (BITS resumes when the network returns).
    let net_changed = {
        let fp = network_fingerprint();
        let mut g = lock(&shared.sched);
        let changed = g.network.is_some_and(|prev| prev != fp);
        g.network = Some(fp);
        changed
    };
    // Timers.
    for j in &jobs {
        let id = j.id();
        if j.state() != State::TransientError {
            continue;
        }
        let blocked = j.last_error().is_some_and(|e| e.message == POLICY_BLOCKED);
        let network_failure = j.last_error().is_some_and(|e| e.status.is_none());
        let verb = if blocked {
            (cap != Cap::Blocked || j.priority() == Priority::Foreground).then_some(Verb::RetryDue)
        } else if j.due_event(wall) == Some(Verb::NoProgressTimeout) {
            Some(Verb::NoProgressTimeout)
        } else if net_changed && network_failure {
            Some(Verb::RetryDue)
        } else {
            match lock(&shared.sched).retry_at.get(&id) {
                Some(at) => (now >= *at).then_some(Verb::RetryDue),
                None => j.due_event(wall),
            }
        };
        if let Some(v) = verb {
            lock(&shared.sched).retry_at.remove(&id);
            shared.with_job(id, |j| j.apply(v, wall));
        }
    }
    // Notify programs.
    for j in &jobs {
        if j.notify_due().is_some() {
            start_notify(shared, j.id(), wall);
        } else {
            lock(&shared.sched).notify_at.remove(&j.id());
        }
    }
    // Scheduling works on a fresh view (timers may have queued jobs).
    let jobs = match shared.store().list_jobs(None) {
        Ok(j) => j,
        Err(_) => return,
    };
    schedule(shared, &jobs, cap, now, wall);
}

fn reap<C: Connector>(shared: &Shared<C>, now: Instant) {
    let mut finished = Vec::new();
    {
        let mut g = lock(&shared.sched);
        let ids: Vec<_> = g
            .running
            .iter()
            .filter(|(_, r)| r.handle.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(r) = g.running.remove(&id) {
                finished.push((id, r));
            }
        }
        g.stopping.retain(|_, h| !h.is_finished());
    }
    for (id, r) in finished {
        let _ = r.handle.join();
        let outcome = lock(&r.outcome).take();
        match outcome {
            Some(Outcome::Transient(delay)) => {
                lock(&shared.sched).retry_at.insert(id, now + delay);
            }
            Some(Outcome::Transferred | Outcome::Failed | Outcome::Stopped) => {}
            None => {
                // The worker panicked: put the job back in the queue.
                shared.with_job(id, |j| j.apply(Verb::Preempt, unix_now()));
            }
        }
    }
}

fn schedule<C: Connector>(
    shared: &Arc<Shared<C>>,
    jobs: &[Job],
    cap: Cap,
    now: Instant,
    wall: u64,
) {
    let (running, stopping): (HashMap<_, (Priority, Instant)>, HashSet<_>) = {
        let mut g = lock(&shared.sched);
        // A hold ends when it expires or when the handler moved the job on.
        g.held.retain(|id, until| {
            now < *until
                && jobs.iter().any(|j| {
                    j.id() == *id
                        && matches!(
                            j.state(),
                            State::Queued | State::Connecting | State::Transferring
                        )
                })
        });
        (
            g.running
                .iter()
                .map(|(id, r)| (*id, (r.priority, r.started)))
                .collect(),
            // Stopping and held jobs are left alone alike.
            g.stopping.keys().chain(g.held.keys()).copied().collect(),
        )
    };
    // A job whose state says it runs but has no worker (its worker ended without a word)
    // goes back to the queue.
    for j in jobs {
        if matches!(j.state(), State::Connecting | State::Transferring)
            && !running.contains_key(&j.id())
            && !stopping.contains(&j.id())
        {
            shared.with_job(j.id(), |j| j.apply(Verb::Preempt, wall));
        }
    }
    // Running workers whose job is no longer active (suspended, cancelled… by a handler
    // that did not quiesce) or whose priority changed class are stopped.
    for (id, (prio, _)) in &running {
        let job = jobs.iter().find(|j| j.id() == *id);
        let keep = job.is_some_and(|j| {
            j.state().is_active()
                && (j.priority() == Priority::Foreground) == (*prio == Priority::Foreground)
        });
        if !keep {
            preempt(shared, *id);
        }
    }
    let queued: Vec<&Job> = jobs.iter().filter(|j| j.state() == State::Queued).collect();
    {
        let mut g = lock(&shared.sched);
        for j in &queued {
            if !g.tickets.contains_key(&j.id()) {
                let t = g.next_ticket;
                g.next_ticket += 1;
                g.tickets.insert(j.id(), t);
            }
        }
        let live: HashSet<_> = jobs.iter().map(|j| j.id()).collect();
        g.tickets.retain(|id, _| live.contains(id));
    }
    // Foreground: all at once.
    for j in queued
        .iter()
        .filter(|j| j.priority() == Priority::Foreground)
    {
        if !stopping.contains(&j.id()) {
            start(shared, j);
        }
    }
    // Per-job caps follow the store (set-limit while running).
    {
        let g = lock(&shared.sched);
        for (id, r) in &g.running {
            if let Some(j) = jobs.iter().find(|j| j.id() == *id) {
                r.gate.set_job_rate(j.rate_limit().unwrap_or(0));
            }
        }
    }
    // Background: one at a time, only while no foreground job runs (idle bandwidth), best
    // priority first, round-robin slices among equals.
    let fg_active = jobs.iter().any(|j| {
        j.priority() == Priority::Foreground
            && matches!(
                j.state(),
                State::Queued | State::Connecting | State::Transferring
            )
    });
    let bg_running: Vec<(crate::job::JobId, Priority, Instant)> = lock(&shared.sched)
        .running
        .iter()
        .filter(|(_, r)| r.priority != Priority::Foreground)
        // The job's priority now (set-priority while it runs), not the one it started with.
        .map(|(id, r)| {
            let now_prio = jobs
                .iter()
                .find(|j| j.id() == *id)
                .map_or(r.priority, Job::priority);
            (*id, now_prio, r.started)
        })
        .collect();
    if cap == Cap::Blocked {
        for (id, _, _) in &bg_running {
            preempt(shared, *id);
        }
        let blocked = JobError {
            status: None,
            message: POLICY_BLOCKED.into(),
            transient: true,
        };
        let fresh = shared.store().list_jobs(None).unwrap_or_default();
        for j in fresh
            .iter()
            .filter(|j| j.priority() != Priority::Foreground && j.state() == State::Queued)
        {
            shared.with_job(j.id(), |j| j.hold_transient(blocked.clone(), wall));
        }
        return;
    }
    if fg_active {
        for (id, _, _) in &bg_running {
            preempt(shared, *id);
        }
        return;
    }
    let ticket = |id: &crate::job::JobId| lock(&shared.sched).tickets.get(id).copied();
    let best = queued
        .iter()
        .filter(|j| j.priority() != Priority::Foreground && !stopping.contains(&j.id()))
        .min_by_key(|j| (j.priority(), ticket(&j.id()).unwrap_or(u64::MAX)))
        .copied();
    match (bg_running.first(), best) {
        (None, Some(j)) => start(shared, j),
        (Some(&(id, prio, started)), Some(j)) => {
            let outranked = j.priority() < prio;
            let slice_over = j.priority() == prio
                && now.saturating_duration_since(started) >= shared.config.slice;
            if outranked || slice_over {
                preempt(shared, id);
                start(shared, j);
            }
        }
        _ => {}
    }
}

/// Stops a running job and puts it back in the queue, at the back of its priority.
fn preempt<C: Connector>(shared: &Shared<C>, id: crate::job::JobId) {
    if stop_worker(shared, id) {
        lock(&shared.sched).tickets.remove(&id);
        shared.with_job(id, |j| {
            if matches!(j.state(), State::Connecting | State::Transferring) {
                let _ = j.apply(Verb::Preempt, unix_now());
            }
        });
    }
}

fn start<C: Connector>(shared: &Arc<Shared<C>>, job: &Job) {
    let id = job.id();
    if lock(&shared.sched).running.contains_key(&id) {
        return;
    }
    let started = shared.with_job(id, |j| {
        j.state() == State::Queued && j.apply(Verb::Start, unix_now()).is_ok()
    });
    if started != Some(true) {
        return;
    }
    let foreground = job.priority() == Priority::Foreground;
    let gate = Arc::new(Gate {
        stop: AtomicBool::new(false),
        job: Mutex::new(bucket(job.rate_limit().unwrap_or(0))),
        global: (!foreground).then(|| Arc::clone(&shared.global)),
        final_url: Mutex::new(None),
    });
    let outcome = Arc::new(Mutex::new(None));
    let (s, g, o) = (Arc::clone(shared), Arc::clone(&gate), Arc::clone(&outcome));
    let handle = std::thread::Builder::new()
        .name("ferry-job".into())
        .spawn(move || {
            let out = s.work(id, &g);
            if out == Outcome::Stopped {
                s.tidy_after_stop(id);
            }
            *lock(&o) = Some(out);
            s.wake.notify_all();
        });
    let Ok(handle) = handle else {
        shared.with_job(id, |j| j.apply(Verb::Preempt, unix_now()));
        return;
    };
    let mut g = lock(&shared.sched);
    g.tickets.remove(&id);
    g.running.insert(
        id,
        Running {
            gate,
            handle,
            outcome,
            started: Instant::now(),
            priority: job.priority(),
        },
    );
}

/// Runs the job's notify program (literal arguments, no shell) on its own thread; records
/// the result so that a failure reruns it after the retry delay.
fn start_notify<C: Connector>(shared: &Arc<Shared<C>>, id: crate::job::JobId, wall: u64) {
    // Decided under the scheduler lock on a fresh copy of the job: a run that just ended
    // records its result (store, then `notify_at`) under the same lock, so the planner's
    // older list of jobs never starts a second run.
    let cmd = {
        let mut g = lock(&shared.sched);
        if g.notifying.contains(&id) {
            return;
        }
        let Ok(job) = shared.store().load_job(&id) else {
            return;
        };
        let due = match (job.notify_due(), g.notify_at.get(&id)) {
            (None, _) => false,
            (Some(_), Some(at)) => Instant::now() >= *at,
            (Some(d), None) => d <= wall,
        };
        let Some(cmd) = job.notify().cloned().filter(|_| due) else {
            return;
        };
        g.notifying.insert(id);
        cmd
    };
    let s = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("ferry-notify".into())
        .spawn(move || {
            let ok = run_notify(&cmd.program, &cmd.args);
            let mut g = lock(&s.sched);
            let rerun = s
                .with_job(id, |j| {
                    j.notify_ran(ok, unix_now());
                    j.notify_due()
                        .map(|_| Duration::from_secs(j.min_retry_delay_secs()))
                })
                .flatten();
            match rerun {
                Some(delay) => g.notify_at.insert(id, Instant::now() + delay),
                None => g.notify_at.remove(&id),
            };
            g.notifying.remove(&id);
        });
    if spawned.is_err() {
        lock(&shared.sched).notifying.remove(&id);
    }
}

fn run_notify(program: &PathBuf, args: &[String]) -> bool {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let deadline = Instant::now() + NOTIFY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_digests_see_routes_not_their_order() {
        let a = b"Iface\tDestination\nlo\t0000007F\neth0\t00000000\n";
        let b = b"Iface\tDestination\neth0\t00000000\nlo\t0000007F\n";
        let gone = b"Iface\tDestination\nlo\t0000007F\n";
        assert_eq!(route_table_digest(a), route_table_digest(b));
        assert_ne!(route_table_digest(a), route_table_digest(gone));
        // Reading this machine's tables works and is stable between two reads.
        assert_eq!(network_fingerprint(), network_fingerprint());
    }
}
