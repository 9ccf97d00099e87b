//! One resumable download of one URL to one local path, validated so that the result never
//! differs from the server's entity (invariant I8).
//!
//! ```text
//!  dest = dir/NAME
//!  dir/.NAME.ferry-part    data, written at each piece's local offset (umask mode, never wider)
//!  dir/.NAME.ferry-state   sidecar: validator + per-piece progress, replaced atomically
//!  dir/.NAME.ferry-lock    held (flock, exclusive) for the whole run; removed when it ends
//!
//!  load sidecar ──► pieces ──► for each piece: request ──► classify ──► write body ──► checkpoint
//!                                   ▲                        │
//!                                   └── retry after delay ◄──┤ transient (network, 408/429/5xx)
//!                                   └── restart from 0   ◄──┤ entity changed (200 to If-Range)
//!  all pieces done ──► verify length (+ SHA-256) ──► fsync ──► rename to dest ──► rm sidecar
//! ```
//!
//! Rules, where each decision is made below:
//! 1. The first response's validator (strong ETag, Last-Modified, length) is stored. A resume
//!    sends `Range: bytes=N-` and `If-Range` (the strong ETag, else Last-Modified).
//! 2. A 206 is appended only when its `Content-Range` starts exactly at N, ends within what was
//!    asked, and states the stored length; its own ETag, when present, must match.
//! 3. A 200 to a range request means the entity changed: the partial data is truncated and
//!    the 200 body is written from offset 0 (never appended). When the validator did *not*
//!    change, the server ignores ranges: an error, unless dynamic content is allowed.
//! 4. A mismatched `Content-Range` restarts from zero; a 416 re-validates with HEAD (the file
//!    may already be complete) and otherwise restarts. Restarts are bounded.
//! 5. Without a usable validator a partial file cannot be trusted: it restarts from zero.
//! 6. Data is fsynced and the sidecar rewritten every `checkpoint_bytes` or
//!    `checkpoint_interval` of progress, by a checkpointer thread so that no writer waits for a
//!    sync (see "Checkpoints" below). A kill re-downloads at most the interval being filled plus
//!    the one in flight: under [`UNSAVED_CHECKPOINTS`] (2) × `checkpoint_bytes` + one read
//!    ([`BUFFER`]) per connection.
//! 7. The destination appears only by `rename(2)` of a complete, verified file.
//! 8. One writer per destination: a run holds an exclusive lock on `.NAME.ferry-lock` from
//!    before it reads the sidecar until after it renames or cleans up, so a second run on the
//!    same destination (another process, or another job in the same queue) fails at once with
//!    [`DownloadError::Busy`] and touches nothing.
//!
//! Time is injected through [`Clock`]: retry delays and checkpoint intervals are measured on
//! it, never on the wall clock.
//!
//! # Checkpoints
//!
//! ```text
//!  writer, one per connection                 checkpointer thread, one per run
//!  read ─► pwrite ─► lock ─► done += n
//!                            due? copy ──► pending ──► take ─► fdatasync data ─► save sidecar
//!                                          (≤ 1)                                     │
//!                            2 × checkpoint_bytes       durable ◄─ Event::Checkpoint ◄┘
//!                            not durable? wait ◄──────── (wakes writers)
//!         next read ◄─────── unlock
//! ```
//!
//! - A writer accounts each block under the run's lock only after its `pwrite` returned. When
//!   `checkpoint_bytes` were written since the last copy, or `checkpoint_interval` passed on the
//!   injected clock while bytes arrive, it copies the state there (resetting both counters) and
//!   hands the copy to the checkpointer thread; it never syncs under the lock. At most one copy
//!   waits to be picked up: a writer that finds the slot still taken waits until it is free
//!   (rare: the back-pressure below usually holds writers back first).
//! - The checkpointer fdatasyncs the data file and then replaces the sidecar, outside the run's
//!   lock, so the other writers keep going. Invariant I8 (the sidecar never claims bytes that are
//!   not durable) holds with any number of concurrent segments: every byte a copy counts had its
//!   `pwrite` return before the copy was taken (a piece's `done` is advanced only after that,
//!   under the same lock); the fdatasync starts after the copy, so it flushes all of them; and
//!   the sidecar is written after the fdatasync returns. Bytes written during the sync may or
//!   may not be flushed by it: the copy does not count them.
//! - One checkpoint at a time (the `saving` mutex), saved in the order the copies were taken: a
//!   copy carries a sequence number and one older than the last saved is dropped, never saved
//!   over a newer one. [`Event::Checkpoint`] reports the saved copy's `done`, emitted while
//!   `saving` is held (so events follow the saves' order), before writers count it as durable.
//! - Back-pressure: a writer waits while the bytes written since the last saved checkpoint
//!   reach [`UNSAVED_CHECKPOINTS`] × `checkpoint_bytes` and a copy is pending or being saved.
//!   So what a kill loses is bounded as rule 6 says, however slow the disk. The price: when
//!   saves are slower than the network, a run writes about `checkpoint_bytes` per save.
//!   (Checkpoints falling due are never merged: one save each, so their count stays exact.)
//! - Synchronous checkpoints, where ordering matters: a reset (truncation; it also waits out a
//!   save in flight, and drops a pending copy of the old data), a piece's failure (before a
//!   retry or giving up), and the end of the segments. The end of a run waits for the
//!   checkpointer (it saves a copy still pending, then ends), then fsyncs the whole file before
//!   the rename. The thread ends with the run's body, also when it fails or panics; if the
//!   thread fails (a save's I/O error, a panicking observer) the next writer fails with that.

use crate::fetch::{classify_status, ErrorClass, Fetch, FetchError, FetchHead, FetchRequest};
use crate::range::{ByteRange, ContentRange};
use crate::throttle::TokenBucket;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::ops::Deref;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use url::Url;

/// Default checkpoint distance in bytes (issue 5: at least every 1 MiB).
pub const CHECKPOINT_BYTES: u64 = 1 << 20;
/// Default checkpoint interval (issue 5: at least every second).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Writers wait while this many checkpoint distances (`checkpoint_bytes`) are written but not
/// yet durable and a checkpoint is pending or being saved: what a kill can lose is the interval
/// being filled plus the one in flight (rule 6). Saves are one at a time, one per distance, so
/// a run writes at most about `checkpoint_bytes` per save (fdatasync + sidecar) whatever this
/// value: with 1 MiB and a 1.5 ms save, about 700 MB/s.
pub const UNSAVED_CHECKPOINTS: u64 = 2;
/// The first retry delay (curl's `--retry`: 1 s, doubling).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest retry delay (curl: 10 minutes).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);
/// Entity changes or inconsistent answers tolerated in one run before giving up.
pub const MAX_RESTARTS: u32 = 3;
/// Bytes read from a body per system call.
pub const BUFFER: usize = 96 * 1024;
/// The smallest slice a segment gets: smaller files use one connection.
pub const MIN_SEGMENT: u64 = 1 << 20;
/// The most segments (connections) for one file.
pub const MAX_SEGMENTS: usize = 16;
/// Largest sidecar accepted when loading (it holds a few lines per piece).
const MAX_SIDECAR: u64 = 1 << 20;
/// Attempts at taking the lock when its file keeps being replaced under us (each replacement
/// means another run just ended; a handful is plenty).
const LOCK_ATTEMPTS: usize = 8;

/// A clock: now, and sleeping. The engine reads time only through it.
pub trait Clock: Send + Sync {
    /// The current monotonic time.
    fn now(&self) -> Instant;
    /// Waits `d`.
    fn sleep(&self, d: Duration);
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// What identifies one version of the remote entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validator {
    /// `ETag` as sent (with quotes, `W/` for weak).
    pub etag: Option<String>,
    /// `Last-Modified` as sent.
    pub last_modified: Option<String>,
    /// The complete length, when known.
    pub length: Option<u64>,
}

/// Whether a header value may be stored in the sidecar and echoed in `If-Range`: visible ASCII
/// and spaces only, bounded.
fn storable(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl Validator {
    /// The validator a response head states (length from `Content-Range`'s complete length, or
    /// `Content-Length` of a 200).
    pub fn from_head(head: &FetchHead) -> Validator {
        let text = |name: &str| head.header(name).filter(|v| storable(v)).map(str::to_owned);
        let length = match head.status {
            206 => head
                .header("content-range")
                .and_then(|v| ContentRange::parse(v).ok())
                .and_then(|c| c.complete()),
            _ => head
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok()),
        };
        Validator {
            etag: text("etag"),
            last_modified: text("last-modified"),
            length,
        }
    }

    /// The strong ETag, if any (a weak one cannot be used with `If-Range`, RFC 9110 §13.1.5).
    pub fn strong_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| !e.starts_with("W/"))
    }

    /// The `If-Range` value: the strong ETag, else Last-Modified when there is no entity tag
    /// at all. RFC 9110 §13.1.5 forbids both a weak tag and a date when a tag is known, so an
    /// entity with only a weak ETag has no `If-Range` and cannot be resumed (it restarts).
    pub fn if_range(&self) -> Option<String> {
        match (&self.etag, self.strong_etag()) {
            (_, Some(strong)) => Some(strong.to_owned()),
            (Some(_weak), None) => None,
            (None, None) => self.last_modified.clone(),
        }
    }

    /// Whether a resume can be validated at all.
    pub fn is_usable(&self) -> bool {
        self.if_range().is_some()
    }

    /// Whether `other` is the same entity, as far as both can tell. Unknown is "no".
    pub fn same_entity(&self, other: &Validator) -> bool {
        if let (Some(a), Some(b)) = (self.length, other.length) {
            if a != b {
                return false;
            }
        }
        match (self.strong_etag(), other.strong_etag()) {
            (Some(a), Some(b)) => return a == b,
            (Some(_), None) | (None, Some(_)) => {}
            (None, None) => {}
        }
        match (&self.last_modified, &other.last_modified) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Whether `other` contradicts this validator (a field both know differs).
    pub fn contradicts(&self, other: &Validator) -> bool {
        let differ =
            |a: Option<&str>, b: Option<&str>| matches!((a, b), (Some(a), Some(b)) if a != b);
        differ(self.strong_etag(), other.strong_etag())
            || (self.strong_etag().is_none()
                && differ(
                    self.last_modified.as_deref(),
                    other.last_modified.as_deref(),
                ))
            || matches!((self.length, other.length), (Some(a), Some(b)) if a != b)
    }
}

/// One slice of the remote entity and where it goes in the local file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// First remote byte.
    pub start: u64,
    /// One past the last remote byte, when known.
    pub end: Option<u64>,
    /// Local file offset of `start`.
    pub offset: u64,
    /// Bytes of this piece written (and, in a loaded sidecar, durably checkpointed).
    pub done: u64,
}

impl Piece {
    /// The piece's length, when known.
    pub fn len(&self) -> Option<u64> {
        self.end.map(|e| e.saturating_sub(self.start))
    }

    /// Whether the piece is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Whether every byte of the piece is written.
    pub fn is_complete(&self) -> bool {
        self.len().is_some_and(|l| self.done >= l)
    }
}

/// What the sidecar records: the validator, whether the server said it serves ranges, and the
/// pieces with their progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The entity's validator.
    pub validator: Validator,
    /// The first response had `Accept-Ranges: bytes` (or was a 206).
    pub accept_ranges: bool,
    /// The pieces, in local order.
    pub pieces: Vec<Piece>,
}

const SIDECAR_MAGIC: &str = "ferry-state 1";

impl State {
    /// The sidecar text. Values are storable ASCII (see [`Validator::from_head`]), one per line.
    pub fn to_text(&self) -> String {
        let mut s = format!("{SIDECAR_MAGIC}\n");
        if let Some(e) = &self.validator.etag {
            s.push_str(&format!("etag {e}\n"));
        }
        if let Some(l) = &self.validator.last_modified {
            s.push_str(&format!("last-modified {l}\n"));
        }
        if let Some(n) = self.validator.length {
            s.push_str(&format!("length {n}\n"));
        }
        if self.accept_ranges {
            s.push_str("accept-ranges bytes\n");
        }
        for p in &self.pieces {
            let end = p.end.map_or_else(|| "-".to_owned(), |e| e.to_string());
            s.push_str(&format!(
                "piece {} {end} {} {}\n",
                p.start, p.offset, p.done
            ));
        }
        s.push_str("end\n");
        s
    }

    /// Parses sidecar text; `None` for anything unexpected (the caller then starts over, which
    /// is always safe). A sidecar cut short by a crash lacks its `end` line and is refused.
    pub fn parse(text: &str) -> Option<State> {
        let mut lines = text.lines();
        if lines.next()? != SIDECAR_MAGIC {
            return None;
        }
        let mut st = State::default();
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "etag" if storable(value) => st.validator.etag = Some(value.to_owned()),
                "last-modified" if storable(value) => {
                    st.validator.last_modified = Some(value.to_owned())
                }
                "length" => st.validator.length = Some(num(value)?),
                "accept-ranges" => st.accept_ranges = value == "bytes",
                "piece" => {
                    let f: Vec<&str> = value.split(' ').collect();
                    let [start, end, offset, done] = f[..] else {
                        return None;
                    };
                    let end = if end == "-" { None } else { Some(num(end)?) };
                    let p = Piece {
                        start: num(start)?,
                        end,
                        offset: num(offset)?,
                        done: num(done)?,
                    };
                    if p.end.is_some_and(|e| e < p.start || p.done > e - p.start) {
                        return None;
                    }
                    st.pieces.push(p);
                }
                "end" => return (!st.pieces.is_empty()).then_some(st),
                _ => return None,
            }
        }
        None
    }

    /// Total bytes written over all pieces.
    pub fn done(&self) -> u64 {
        self.pieces
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.done))
    }

    /// Total bytes expected, when every piece's length is known.
    pub fn total(&self) -> Option<u64> {
        self.pieces
            .iter()
            .try_fold(0u64, |a, p| p.len().and_then(|l| a.checked_add(l)))
    }

    /// Whether the pieces map the entity onto the file byte for byte (offset == start,
    /// contiguous from 0): a whole-file download, possibly in segments.
    pub fn is_identity(&self) -> bool {
        let mut next = 0u64;
        let last = self.pieces.len().saturating_sub(1);
        for (i, p) in self.pieces.iter().enumerate() {
            if p.start != next || p.offset != p.start {
                return false;
            }
            match p.end {
                Some(e) => next = e,
                None => return i == last,
            }
        }
        true
    }
}

/// The pieces for a list of ranges: concatenated in the order given. Overlapping ranges are
/// refused, and only the last range may be open-ended.
pub fn pieces_for_ranges(ranges: &[ByteRange]) -> Result<Vec<Piece>, DownloadError> {
    let mut pieces = Vec::with_capacity(ranges.len());
    let mut offset = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        let end = match r.end {
            Some(e) => Some(e.checked_add(1).ok_or(DownloadError::BadOptions(
                "a range ends beyond the largest offset",
            ))?),
            None if i + 1 == ranges.len() => None,
            None => {
                return Err(DownloadError::BadOptions(
                    "only the last range may be open-ended",
                ))
            }
        };
        for q in &ranges[..i] {
            let q_end = q.end.map_or(u64::MAX, |e| e.saturating_add(1));
            let r_end = end.unwrap_or(u64::MAX);
            if r.start < q_end && q.start < r_end {
                return Err(DownloadError::BadOptions("ranges overlap"));
            }
        }
        pieces.push(Piece {
            start: r.start,
            end,
            offset,
            done: 0,
        });
        if let Some(e) = end {
            offset = offset.saturating_add(e - r.start);
        }
    }
    Ok(pieces)
}

/// Splits `[0, length)` into `n` contiguous pieces (the last takes the remainder).
pub fn split_segments(length: u64, n: usize) -> Vec<Piece> {
    let n = (n.max(1) as u64).min(length.max(1));
    let size = length / n;
    (0..n)
        .map(|i| {
            let start = i * size;
            let end = if i + 1 == n { length } else { start + size };
            Piece {
                start,
                end: Some(end),
                offset: start,
                done: 0,
            }
        })
        .collect()
}

/// How a download behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Checkpoint at least every this many bytes.
    pub checkpoint_bytes: u64,
    /// Checkpoint at least this often (while bytes arrive).
    pub checkpoint_interval: Duration,
    /// Retries after transient errors (curl's `--retry`); an attempt that made progress does
    /// not use one up.
    pub retries: u32,
    /// The first retry delay; it doubles up to [`Options::max_retry_delay`]. `Retry-After`
    /// replaces it when the server sends one.
    pub retry_delay: Duration,
    /// The longest retry delay.
    pub max_retry_delay: Duration,
    /// Restart from zero instead of failing when the server cannot resume.
    pub allow_dynamic: bool,
    /// Rate cap in bytes per second (0: none).
    pub rate_limit: u64,
    /// Connections for a whole-file download of a large file with range support.
    pub segments: usize,
    /// Smallest segment.
    pub min_segment: u64,
    /// Expected SHA-256 of the whole result.
    pub sha256: Option<[u8; 32]>,
    /// Ranges to fetch, concatenated in this order (empty: the whole file).
    pub ranges: Vec<ByteRange>,
    /// Extra request header fields.
    pub headers: Vec<(String, String)>,
    /// Write into the destination itself and resume from its size (curl's `-C -`): no
    /// temporary file, no rename.
    pub in_place: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            checkpoint_bytes: CHECKPOINT_BYTES,
            checkpoint_interval: CHECKPOINT_INTERVAL,
            retries: 0,
            retry_delay: RETRY_DELAY,
            max_retry_delay: MAX_RETRY_DELAY,
            allow_dynamic: false,
            rate_limit: 0,
            segments: 1,
            min_segment: MIN_SEGMENT,
            sha256: None,
            ranges: Vec::new(),
            headers: Vec::new(),
            in_place: false,
        }
    }
}

/// What happened during a download, for a progress display.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Transfer starts (or resumes at `done`).
    Started {
        /// Bytes already on disk (from a checkpoint).
        done: u64,
        /// Bytes expected, when known.
        total: Option<u64>,
    },
    /// Bytes arrived.
    Progress {
        /// Bytes on disk so far.
        done: u64,
        /// Bytes expected, when known.
        total: Option<u64>,
    },
    /// The partial data was thrown away.
    Restarted {
        /// Why.
        reason: &'a str,
    },
    /// A transient failure; the next attempt comes after `delay`.
    Retrying {
        /// The failure.
        error: &'a FetchError,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Bytes durably on disk.
        done: u64,
    },
}

/// What a finished download reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Bytes in the result.
    pub total: u64,
    /// Bytes already on disk when this run began (from a checkpoint).
    pub resumed_from: u64,
    /// Body bytes written by this run (a restart counts its discarded bytes too).
    pub fetched: u64,
    /// Times the partial data was discarded.
    pub restarts: u32,
    /// Retries after transient failures.
    pub retries: u32,
    /// Requests made.
    pub requests: u32,
    /// Connections used at once (1 unless segmented).
    pub segments: usize,
}

/// Why a download failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DownloadError {
    /// A request failed for good (final), or the retries ran out (transient).
    Fetch(FetchError),
    /// The partial file cannot be resumed: the server ignores ranges (BITS
    /// `BG_E_INSUFFICIENT_RANGE_SUPPORT`).
    NoRangeSupport,
    /// A requested range lies outside the file.
    RangeNotSatisfiable,
    /// The server kept answering inconsistently (changed entity, wrong `Content-Range`).
    Inconsistent(&'static str),
    /// The result's SHA-256 differs from the one expected; nothing was kept.
    Checksum {
        /// The expected digest (hex).
        expected: String,
        /// The digest of what arrived (hex).
        actual: String,
    },
    /// A local file operation failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The options cannot work together.
    BadOptions(&'static str),
    /// Another run (process or job) holds the destination's lock: nothing was touched.
    Busy {
        /// The destination.
        dest: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's process id, as it wrote it into the lock file (informational).
        pid: Option<u32>,
    },
}

impl DownloadError {
    /// Whether trying again later may succeed (a busy destination frees up when its other
    /// run ends).
    pub fn is_transient(&self) -> bool {
        matches!(self, DownloadError::Fetch(e) if e.is_transient())
            || matches!(self, DownloadError::Busy { .. })
    }

    /// The HTTP status behind the failure, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            DownloadError::Fetch(e) => e.status,
            _ => None,
        }
    }
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::Fetch(e) => e.fmt(f),
            DownloadError::NoRangeSupport => f.write_str(
                "the server does not support byte ranges, so the download cannot resume",
            ),
            DownloadError::RangeNotSatisfiable => {
                f.write_str("a requested range lies outside the file (416)")
            }
            DownloadError::Inconsistent(why) => {
                write!(f, "the server answers inconsistently: {why}")
            }
            DownloadError::Checksum { expected, actual } => {
                write!(f, "SHA-256 mismatch: expected {expected}, got {actual}")
            }
            DownloadError::Io { what, source } => write!(f, "{what}: {source}"),
            DownloadError::BadOptions(why) => f.write_str(why),
            DownloadError::Busy { dest, lock, pid } => {
                write!(
                    f,
                    "another download is already writing {} (it holds {}",
                    dest.display(),
                    lock.display()
                )?;
                match pid {
                    Some(pid) => write!(f, ", pid {pid})"),
                    None => f.write_str(")"),
                }
            }
        }
    }
}

impl std::error::Error for DownloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DownloadError::Io { source, .. } => Some(source),
            DownloadError::Fetch(e) => Some(e),
            _ => None,
        }
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> DownloadError {
    move |source| DownloadError::Io { what, source }
}

/// A bounded hidden name beside `dest`: `.NAME.SUFFIX`, or a digest of NAME when too long.
fn side_path(dest: &Path, suffix: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let side = if name.len() + suffix.len() + 2 <= crate::disposition::MAX_NAME {
        format!(".{name}.{suffix}")
    } else {
        let digest = Sha256::digest(name.as_bytes());
        format!(".ferry-{}.{suffix}", hex(&digest[..12]))
    };
    match dest.parent() {
        Some(p) => p.join(side),
        None => PathBuf::from(side),
    }
}

/// The temporary data file beside `dest`.
pub fn temp_path(dest: &Path) -> PathBuf {
    side_path(dest, "ferry-part")
}

/// The sidecar state file beside `dest`.
pub fn state_path(dest: &Path) -> PathBuf {
    side_path(dest, "ferry-state")
}

/// The lock file beside `dest` (see [`DestLock`]).
pub fn lock_path(dest: &Path) -> PathBuf {
    side_path(dest, "ferry-lock")
}

/// An exclusive hold on one destination: `flock(2)` (std's [`File::try_lock`]) on
/// `.NAME.ferry-lock` beside it. Dropping it removes the lock file and releases the lock.
///
/// The kernel drops the lock when its holder dies, so a file left by a killed run blocks
/// nobody. Removing the file on release is safe because a lock only counts when it is on the
/// file the path names *after* locking: a run that opened the old file just before it was
/// removed finds, once it has the lock, that the path names another file (or none), and tries
/// again with a fresh one.
#[derive(Debug)]
pub struct DestLock {
    file: File,
    path: PathBuf,
}

impl DestLock {
    /// Takes the lock for `dest` without waiting: [`DownloadError::Busy`] when another run holds
    /// it. Creates the lock file (mode 0600 minus the umask) and writes this process's id in it.
    pub fn acquire(dest: &Path) -> Result<DestLock, DownloadError> {
        let path = lock_path(dest);
        for _ in 0..LOCK_ATTEMPTS {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io_err("cannot open the lock file"))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(DownloadError::Busy {
                        dest: dest.to_owned(),
                        pid: holder_pid(&file),
                        lock: path,
                    })
                }
                Err(TryLockError::Error(e)) => {
                    return Err(io_err("cannot lock the lock file")(e));
                }
            }
            if !names_file(&path, &file) {
                // The holder before us removed it between our open and our lock.
                continue;
            }
            // Informational only (for the other run's error message): not synced.
            let pid = format!("{}\n", std::process::id());
            let _ = file
                .set_len(0)
                .and_then(|()| file.write_all_at(pid.as_bytes(), 0));
            return Ok(DestLock { file, path });
        }
        Err(DownloadError::Io {
            what: "cannot take the lock",
            source: io::Error::other("the lock file kept being replaced"),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DestLock {
    fn drop(&mut self) {
        // Remove the file while still holding the lock (closing the file releases it), and only
        // if it is still ours: someone may have removed it and another run made a new one.
        if names_file(&self.path, &self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` names the open `file` (same device and inode).
fn names_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The process id a lock holder wrote into its lock file, if readable.
fn holder_pid(file: &File) -> Option<u32> {
    let mut buf = [0u8; 16];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, in lower-case hex (what `--checksum sha256=HEX` expects).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Parses 64 hex digits into a SHA-256 digest.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Reads the sidecar beside `dest`, if there is a valid one.
pub fn load_state(dest: &Path) -> Option<State> {
    let path = state_path(dest);
    let f = File::open(path).ok()?;
    let mut text = String::new();
    f.take(MAX_SIDECAR).read_to_string(&mut text).ok()?;
    State::parse(&text)
}

/// Writes the sidecar beside `dest` atomically (temp file, fsync, rename), mode 0600 minus the
/// umask: it may name the server's validators, which are nobody else's business.
pub fn save_state(dest: &Path, state: &State) -> io::Result<()> {
    let path = state_path(dest);
    let tmp = side_path(dest, "ferry-state.new");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(state.to_text().as_bytes())?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, &path)
}

/// Removes the sidecar (and a leftover half-written one).
pub fn remove_state(dest: &Path) {
    let _ = std::fs::remove_file(state_path(dest));
    let _ = std::fs::remove_file(side_path(dest, "ferry-state.new"));
}

/// fsyncs the directory holding `path`, so a rename in it is durable.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// An observer of [`Event`]s.
pub type Observer = Box<dyn Fn(&Event<'_>) + Send + Sync>;

/// Unit tests' look at each copy taken for a checkpoint.
#[cfg(test)]
type CopyHook = Box<dyn Fn(&State) + Send + Sync>;

/// One download: a URL, a destination, options, a clock and an optional observer.
pub struct Download {
    url: Url,
    dest: PathBuf,
    opts: Options,
    clock: Box<dyn Clock>,
    observer: Option<Observer>,
    /// Unit tests: called with each copy taken for a checkpoint, under the run's lock.
    #[cfg(test)]
    on_copy: Option<CopyHook>,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url.as_str())
            .field("dest", &self.dest)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Why one request (attempt) stopped.
enum Stop {
    Transient(FetchError),
    Final(DownloadError),
    /// Throw the partial data away and start over.
    Restart(&'static str),
    /// Another segment asked everyone to stop.
    Aborted,
}

impl From<DownloadError> for Stop {
    fn from(e: DownloadError) -> Stop {
        Stop::Final(e)
    }
}

/// Mutable run state shared by the segments and the checkpointer.
struct Inner {
    state: State,
    bucket: TokenBucket,
    /// When the last copy for a checkpoint was taken (on the injected clock).
    ckpt_at: Instant,
    /// Bytes written since the last copy for a checkpoint.
    since_ckpt: u64,
    /// The last copy's sequence number.
    ckpt_seq: u64,
    /// A copy handed to the checkpointer thread and not yet taken (at most one).
    pending: Option<Snapshot>,
    /// A copy is being saved (from its `take` to the end of its save).
    in_flight: bool,
    /// `report.fetched` as of the last saved copy: `report.fetched - durable` is what a kill
    /// would lose now (rule 6).
    durable: u64,
    /// The checkpointer thread is running; without it writers checkpoint synchronously.
    checkpointer: bool,
    /// Tells the checkpointer thread to end (after saving a pending copy).
    stop: bool,
    /// Why the checkpointer thread stopped early; the first writer to see it fails with it.
    ckpt_error: Option<DownloadError>,
    report: Report,
}

/// A copy of the state for a checkpoint, taken under the [`Inner`] lock: it counts only bytes
/// whose `pwrite` had returned.
struct Snapshot {
    state: State,
    /// Its place in the order of copies; saves only go forward.
    seq: u64,
    /// `report.fetched` when it was taken.
    fetched: u64,
}

/// What a run shares with its checkpointer thread: everything but the fetcher (which need not
/// be `Sync` for [`Download::run`]).
struct Core<'a> {
    dl: &'a Download,
    file: File,
    inner: Mutex<Inner>,
    /// Held for a whole checkpoint save (sync, sidecar, event): one at a time. Holds the last
    /// saved copy's sequence number. Lock order: `saving`, then `inner`.
    saving: Mutex<u64>,
    /// Wakes the checkpointer thread: a copy is pending, or it should stop.
    wake: Condvar,
    /// Wakes waiting writers: the pending slot was freed, a save ended, or the checkpointer
    /// thread stopped.
    moved: Condvar,
    abort: AtomicBool,
}

/// One run over an open data file.
struct Run<'a, F> {
    core: Core<'a>,
    fetch: &'a F,
}

impl<'a, F> Deref for Run<'a, F> {
    type Target = Core<'a>;

    fn deref(&self) -> &Core<'a> {
        &self.core
    }
}

impl Download {
    /// A download of `url` to `dest` with default options and the system clock.
    pub fn new(url: Url, dest: impl Into<PathBuf>) -> Download {
        Download {
            url,
            dest: dest.into(),
            opts: Options::default(),
            clock: Box::new(SystemClock),
            observer: None,
            #[cfg(test)]
            on_copy: None,
        }
    }

    /// Sets the options.
    pub fn options(mut self, opts: Options) -> Download {
        self.opts = opts;
        self
    }

    /// Sets the clock (tests inject a fake one).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Download {
        self.clock = Box::new(clock);
        self
    }

    /// Sets the observer of progress events.
    pub fn observer(mut self, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Download {
        self.observer = Some(Box::new(f));
        self
    }

    /// The destination path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Where the data goes until complete.
    pub fn data_path(&self) -> PathBuf {
        if self.opts.in_place {
            self.dest.clone()
        } else {
            temp_path(&self.dest)
        }
    }

    fn emit(&self, e: &Event<'_>) {
        if let Some(f) = &self.observer {
            f(e);
        }
    }

    /// Runs the download over one connection at a time, holding the destination's
    /// [`DestLock`] throughout ([`DownloadError::Busy`] at once if another run holds it).
    pub fn run<F: Fetch>(&self, fetch: &F) -> Result<Report, DownloadError> {
        // Before anything reads or cleans up the sidecar or the data: they may be another run's.
        let _lock = DestLock::acquire(&self.dest)?;
        let result = self.prepare(fetch).and_then(|run| {
            run.with_checkpointer(|| run.single())?;
            run.finish()
        });
        self.cleanup_on_error(result)
    }

    /// After a failure with nothing worth resuming on disk, removes this download's own
    /// temporary files (and never anything else).
    fn cleanup_on_error(
        &self,
        result: Result<Report, DownloadError>,
    ) -> Result<Report, DownloadError> {
        if result.is_err() {
            let empty = load_state(&self.dest).is_none_or(|st| st.done() == 0);
            if empty {
                // In place, the file is the user's: only the sidecar is ours.
                if !self.opts.in_place {
                    let _ = std::fs::remove_file(temp_path(&self.dest));
                }
                remove_state(&self.dest);
            }
        }
        result
    }

    /// Runs the download with up to [`Options::segments`] connections at once when the file is
    /// large and the server supports ranges; otherwise like [`Download::run`] (the same lock).
    pub fn run_segmented<F>(&self, fetch: &F) -> Result<Report, DownloadError>
    where
        F: Fetch + Sync,
    {
        let _lock = DestLock::acquire(&self.dest)?;
        let result = self.prepare(fetch).and_then(|run| self.segmented(run));
        self.cleanup_on_error(result)
    }

    fn segmented<F: Fetch + Sync>(&self, run: Run<'_, F>) -> Result<Report, DownloadError> {
        run.with_checkpointer(|| self.segments_then_single(&run))?;
        run.finish()
    }

    fn segments_then_single<F: Fetch + Sync>(&self, run: &Run<'_, F>) -> Result<(), DownloadError> {
        let fresh = {
            let g = run.lock();
            g.state.done() == 0 && g.state.pieces.len() == 1
        };
        let want = self.opts.segments.clamp(1, MAX_SEGMENTS);
        if fresh && want > 1 && self.opts.ranges.is_empty() && !self.opts.in_place {
            run.probe_segments(want);
        }
        if run.lock().state.pieces.len() > 1 {
            match run.parallel() {
                Ok(()) => {}
                Err(Stop::Restart(why)) => {
                    // The entity changed under the segments: start over on one connection.
                    run.restart(why)?;
                }
                Err(Stop::Final(e)) => return Err(e),
                Err(Stop::Transient(e)) => return Err(DownloadError::Fetch(e)),
                Err(Stop::Aborted) => return Err(DownloadError::Inconsistent("segments stopped")),
            }
        }
        run.single()
    }

    /// Opens the data file and loads or creates the state.
    fn prepare<'a, F: Fetch>(&'a self, fetch: &'a F) -> Result<Run<'a, F>, DownloadError> {
        let opts = &self.opts;
        if opts.in_place && !opts.ranges.is_empty() {
            return Err(DownloadError::BadOptions(
                "resuming in place cannot be combined with ranges",
            ));
        }
        let wanted = if opts.ranges.is_empty() {
            vec![Piece {
                start: 0,
                end: None,
                offset: 0,
                done: 0,
            }]
        } else {
            pieces_for_ranges(&opts.ranges)?
        };
        let data = self.data_path();
        // The umask applies to 0o666 (OpenOptions' default): never wider than the user allows.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data)
            .map_err(io_err("cannot open the data file"))?;
        let on_disk = file
            .metadata()
            .map_err(io_err("cannot stat the data file"))?
            .len();
        let loaded = load_state(&self.dest);
        let mut restarted = None;
        let state = if opts.in_place {
            // curl's -C -: the file's size is the offset; the sidecar may know a validator.
            let st = loaded.unwrap_or_default();
            State {
                validator: st.validator.clone(),
                accept_ranges: true,
                pieces: vec![Piece {
                    start: 0,
                    end: None,
                    offset: 0,
                    done: on_disk,
                }],
            }
        } else {
            match loaded {
                Some(st) if self.state_fits(&st, &wanted, on_disk) => st,
                Some(_) => {
                    restarted = Some("the saved state does not match this download");
                    State {
                        pieces: wanted,
                        ..State::default()
                    }
                }
                None => {
                    if on_disk > 0 {
                        restarted = Some("no saved state for the partial data");
                    }
                    State {
                        pieces: wanted,
                        ..State::default()
                    }
                }
            }
        };
        let now = self.clock.now();
        let run = Run {
            core: Core {
                dl: self,
                file,
                inner: Mutex::new(Inner {
                    bucket: TokenBucket::new(
                        opts.rate_limit,
                        (opts.rate_limit / 20).max(16 * 1024),
                    ),
                    ckpt_at: now,
                    since_ckpt: 0,
                    ckpt_seq: 0,
                    pending: None,
                    in_flight: false,
                    durable: 0,
                    checkpointer: false,
                    stop: false,
                    ckpt_error: None,
                    report: Report {
                        resumed_from: state.done(),
                        segments: 1,
                        ..Report::default()
                    },
                    state,
                }),
                saving: Mutex::new(0),
                wake: Condvar::new(),
                moved: Condvar::new(),
                abort: AtomicBool::new(false),
            },
            fetch,
        };
        if let Some(why) = restarted {
            run.reset(why)?;
            run.lock().report.restarts = 0;
        }
        {
            let mut g = run.lock();
            g.report.resumed_from = g.state.done();
        }
        let (done, total) = {
            let g = run.lock();
            (g.state.done(), g.state.total())
        };
        self.emit(&Event::Started { done, total });
        Ok(run)
    }

    /// Whether a loaded sidecar describes this download and its data file.
    fn state_fits(&self, st: &State, wanted: &[Piece], on_disk: u64) -> bool {
        let layout_ok = if self.opts.ranges.is_empty() {
            st.is_identity()
        } else {
            st.pieces.len() == wanted.len()
                && st.pieces.iter().zip(wanted).all(|(a, b)| {
                    a.start == b.start
                        && a.offset == b.offset
                        && (a.end == b.end || b.end.is_none())
                })
        };
        // Every checkpointed byte must be in the file.
        let data_ok = st
            .pieces
            .iter()
            .all(|p| p.done == 0 || p.offset.checked_add(p.done).is_some_and(|e| e <= on_disk));
        layout_ok && data_ok
    }
}

impl Core<'_> {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another segment poisons the lock; the data is still consistent (every
        // update is a single assignment), so keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits on `cv` with the run's lock (poison tolerated, as in [`Core::lock`]).
    fn wait<'g>(&self, cv: &Condvar, g: MutexGuard<'g, Inner>) -> MutexGuard<'g, Inner> {
        cv.wait(g).unwrap_or_else(PoisonError::into_inner)
    }

    /// The checkpoint lock: one save at a time; it holds the last saved copy's sequence.
    fn saving(&self) -> MutexGuard<'_, u64> {
        self.saving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn opts(&self) -> &Options {
        &self.dl.opts
    }

    /// Throws away all progress: truncate, zero every piece, forget the validator.
    fn reset(&self, why: &'static str) -> Result<(), DownloadError> {
        // `saving` first: a save in flight ends before the truncation, and no copy of the old
        // data is saved after it (the pending one is dropped; later ones see the new state).
        let mut last = self.saving();
        let snap = {
            let mut g = self.lock();
            self.file
                .set_len(0)
                .map_err(io_err("cannot truncate the data file"))?;
            let wanted = if self.opts().ranges.is_empty() {
                vec![Piece {
                    start: 0,
                    end: None,
                    offset: 0,
                    done: 0,
                }]
            } else {
                pieces_for_ranges(&self.opts().ranges)?
            };
            g.state = State {
                pieces: wanted,
                ..State::default()
            };
            g.report.restarts += 1;
            g.pending = None;
            g.in_flight = true;
            self.snapshot(&mut g)
        };
        self.moved.notify_all();
        self.persist(&mut last, snap)?;
        // Still under `saving`: after this reset's checkpoint event, before any later one.
        self.dl.emit(&Event::Restarted { reason: why });
        Ok(())
    }

    /// [`Core::reset`], refusing past [`MAX_RESTARTS`].
    fn restart(&self, why: &'static str) -> Result<(), DownloadError> {
        if self.lock().report.restarts >= MAX_RESTARTS {
            return Err(DownloadError::Inconsistent(why));
        }
        self.reset(why)
    }

    /// Copies the state for a checkpoint (under the run's lock, which `g` is) and restarts the
    /// byte and time counts from here.
    fn snapshot(&self, g: &mut Inner) -> Snapshot {
        g.since_ckpt = 0;
        g.ckpt_at = self.dl.clock.now();
        g.ckpt_seq += 1;
        #[cfg(test)]
        if let Some(f) = &self.dl.on_copy {
            f(&g.state);
        }
        Snapshot {
            state: g.state.clone(),
            seq: g.ckpt_seq,
            fetched: g.report.fetched,
        }
    }

    /// Saves `snap`: fsync the data, then replace the sidecar (in that order: the sidecar never
    /// claims bytes that are not durable), then report it. The caller holds `saving` (`last`)
    /// and set `in_flight`; this clears it, whatever happens. A copy older than the last saved
    /// one is dropped.
    fn persist(&self, last: &mut u64, snap: Snapshot) -> Result<(), DownloadError> {
        /// Ends the flight, also on an error or a panicking observer: the saved copy (if any)
        /// becomes what writers count as durable, and waiting writers wake.
        struct Landing<'r, 'a> {
            core: &'r Core<'a>,
            durable: Option<u64>,
        }
        impl Drop for Landing<'_, '_> {
            fn drop(&mut self) {
                let mut g = self.core.lock();
                g.in_flight = false;
                if let Some(d) = self.durable {
                    g.durable = g.durable.max(d);
                }
                drop(g);
                self.core.moved.notify_all();
            }
        }
        let mut landing = Landing {
            core: self,
            durable: None,
        };
        if snap.seq <= *last {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(io_err("cannot sync the data file"))?;
        save_state(&self.dl.dest, &snap.state).map_err(io_err("cannot write the state file"))?;
        *last = snap.seq;
        self.dl.emit(&Event::Checkpoint {
            done: snap.state.done(),
        });
        landing.durable = Some(snap.fetched);
        Ok(())
    }

    /// A synchronous checkpoint of the current state (the caller waits for it).
    fn checkpoint(&self) -> Result<(), DownloadError> {
        let mut last = self.saving();
        let snap = {
            let mut g = self.lock();
            // This copy is newer than a pending one: that one need not be saved.
            g.pending = None;
            g.in_flight = true;
            self.snapshot(&mut g)
        };
        self.moved.notify_all();
        self.persist(&mut last, snap)
    }

    /// After a write is accounted (`g` is the run's lock): hands a copy to the checkpointer
    /// when a checkpoint is due, then holds the writer back while 2 × `checkpoint_bytes` are
    /// not durable and a checkpoint is pending or being saved. Returns the lock and whether the
    /// caller must checkpoint synchronously (no checkpointer thread). Waits release the lock.
    fn after_write<'g>(
        &'g self,
        mut g: MutexGuard<'g, Inner>,
    ) -> Result<(MutexGuard<'g, Inner>, bool), DownloadError> {
        let opts = self.opts();
        loop {
            if let Some(e) = g.ckpt_error.take() {
                return Err(e);
            }
            let now = self.dl.clock.now();
            let due = g.since_ckpt >= opts.checkpoint_bytes
                || now.saturating_duration_since(g.ckpt_at) >= opts.checkpoint_interval;
            if !due {
                break;
            }
            if !g.checkpointer {
                return Ok((g, true));
            }
            if g.pending.is_none() {
                let snap = self.snapshot(&mut g);
                g.pending = Some(snap);
                self.wake.notify_all();
                break;
            }
            // The previous copy is still waiting for a save to end: wait for the slot (the
            // checkpointer takes it, a synchronous checkpoint drops it, or the thread ends).
            g = self.wait(&self.moved, g);
        }
        let limit = opts.checkpoint_bytes.saturating_mul(UNSAVED_CHECKPOINTS);
        while g.report.fetched.saturating_sub(g.durable) >= limit
            && (g.in_flight || g.pending.is_some())
            && g.ckpt_error.is_none()
        {
            g = self.wait(&self.moved, g);
        }
        if let Some(e) = g.ckpt_error.take() {
            return Err(e);
        }
        Ok((g, false))
    }

    /// The checkpointer thread: saves each copy the writers hand over, one at a time, until
    /// told to stop (then it saves a copy still pending and ends) or a save fails.
    fn checkpointer(&self) {
        /// Marks the thread gone, also when it panics (a panicking observer): waiting writers
        /// wake, and the next one fails instead of waiting for a save that will not come.
        struct Gone<'r, 'a>(&'r Core<'a>);
        impl Drop for Gone<'_, '_> {
            fn drop(&mut self) {
                let mut g = self.0.lock();
                g.checkpointer = false;
                g.pending = None;
                if std::thread::panicking() && g.ckpt_error.is_none() {
                    g.ckpt_error = Some(DownloadError::Inconsistent(
                        "the checkpoint thread panicked",
                    ));
                }
                drop(g);
                self.0.moved.notify_all();
            }
        }
        let _gone = Gone(self);
        loop {
            {
                let mut g = self.lock();
                while g.pending.is_none() && !g.stop {
                    g = self.wait(&self.wake, g);
                }
                if g.pending.is_none() {
                    return; // stop, nothing left
                }
            }
            let mut last = self.saving();
            let snap = {
                let mut g = self.lock();
                // A synchronous checkpoint may have dropped it while we waited for `saving`.
                let Some(snap) = g.pending.take() else {
                    continue;
                };
                g.in_flight = true;
                snap
            };
            self.moved.notify_all(); // the slot is free
            if let Err(e) = self.persist(&mut last, snap) {
                self.lock().ckpt_error.get_or_insert(e);
                return;
            }
        }
    }

    /// Runs `body` (the run's transfers, on this thread) with the checkpointer thread beside
    /// it; the thread ends before this returns, also when `body` fails or panics. A failure of
    /// the thread that no writer reported fails the run.
    fn with_checkpointer<T>(
        &self,
        body: impl FnOnce() -> Result<T, DownloadError>,
    ) -> Result<T, DownloadError> {
        /// Tells the checkpointer to stop when `body` returns or unwinds.
        struct Stopper<'r, 'a>(&'r Core<'a>);
        impl Drop for Stopper<'_, '_> {
            fn drop(&mut self) {
                self.0.lock().stop = true;
                self.0.wake.notify_all();
            }
        }
        std::thread::scope(|s| {
            {
                let mut g = self.lock();
                g.checkpointer = true;
                g.stop = false;
            }
            let spawned = std::thread::Builder::new()
                .name("ferry-checkpoint".into())
                .spawn_scoped(s, || self.checkpointer());
            let Ok(thread) = spawned else {
                // No thread: writers checkpoint synchronously, as they find them due.
                self.lock().checkpointer = false;
                return body();
            };
            let stopper = Stopper(self);
            let result = body();
            drop(stopper);
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
            let failed = {
                let mut g = self.lock();
                g.checkpointer = false;
                g.ckpt_error.take()
            };
            match (result, failed) {
                (Ok(_), Some(e)) => Err(e),
                (result, _) => result,
            }
        })
    }
}

impl<F: Fetch> Run<'_, F> {
    /// The one-connection loop: each piece in order, with retries.
    fn single(&self) -> Result<(), DownloadError> {
        let n = self.lock().state.pieces.len();
        let mut i = 0;
        while i < n {
            match self.drive_piece(i) {
                Ok(()) => i += 1,
                Err(Stop::Restart(why)) => {
                    self.restart(why)?;
                    i = 0;
                }
                Err(Stop::Final(e)) => return Err(e),
                Err(Stop::Transient(e)) => return Err(DownloadError::Fetch(e)),
                Err(Stop::Aborted) => return Err(DownloadError::Inconsistent("aborted")),
            }
        }
        Ok(())
    }

    /// Fetches piece `i` to completion, retrying transient failures. Restarts and final errors
    /// go to the caller (after a checkpoint, so the progress is kept for a later run).
    fn drive_piece(&self, i: usize) -> Result<(), Stop> {
        let mut failures = 0u32;
        let mut retries_left = self.opts().retries;
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Err(Stop::Aborted);
            }
            if self.lock().state.pieces[i].is_complete() {
                return Ok(());
            }
            let before = self.lock().state.pieces[i].done;
            let result = self.attempt(i);
            let progressed = self.lock().state.pieces[i].done > before;
            match result {
                Ok(()) => failures = 0,
                Err(Stop::Transient(e)) => {
                    self.checkpoint()?;
                    if progressed {
                        failures = 0;
                    }
                    if retries_left == 0 {
                        return Err(Stop::Transient(e));
                    }
                    retries_left -= 1;
                    let delay = e.retry_after.unwrap_or_else(|| self.backoff(failures));
                    failures = failures.saturating_add(1);
                    self.lock().report.retries += 1;
                    self.dl.emit(&Event::Retrying { error: &e, delay });
                    self.dl.clock.sleep(delay);
                }
                Err(other) => {
                    let _ = self.checkpoint();
                    return Err(other);
                }
            }
        }
    }

    /// The delay after `failures` consecutive failures: base × 2^failures, capped.
    fn backoff(&self, failures: u32) -> Duration {
        let base = self.opts().retry_delay;
        let factor = 1u32.checked_shl(failures.min(30)).unwrap_or(u32::MAX);
        base.checked_mul(factor)
            .unwrap_or(self.opts().max_retry_delay)
            .min(self.opts().max_retry_delay)
    }

    /// One request for piece `i`, and its body.
    fn attempt(&self, i: usize) -> Result<(), Stop> {
        let (piece, validator, accept_ranges, identity, single) = {
            let g = self.lock();
            (
                g.state.pieces[i],
                g.state.validator.clone(),
                g.state.accept_ranges,
                g.state.is_identity(),
                g.state.pieces.len() == 1,
            )
        };
        let in_place = self.opts().in_place;
        // The whole entity into one piece (not a list of ranges that happens to start at 0).
        let whole = self.opts().ranges.is_empty() && identity && single;
        if piece.done > 0 && !in_place {
            // Rule 5: a partial file with nothing to validate it against cannot be trusted.
            if !validator.is_usable() {
                return Err(Stop::Restart(
                    "the server gave no validator to resume against",
                ));
            }
            if !accept_ranges {
                if self.opts().allow_dynamic && whole {
                    return Err(Stop::Restart("the server does not support ranges"));
                }
                return Err(Stop::Final(DownloadError::NoRangeSupport));
            }
        }
        let from = piece.start.saturating_add(piece.done);
        // The last byte this piece may receive; a whole-file resume still asks `bytes=N-`.
        let to = piece.end.map(|e| e.saturating_sub(1));
        let range = match (whole, from) {
            (true, 0) => None,
            (true, _) => Some((from, None)),
            (false, _) => Some((from, to)),
        };
        let url = &self.dl.url;
        let req = FetchRequest {
            url,
            range,
            if_range: range.and_then(|_| validator.if_range()),
            headers: self.opts().headers.clone(),
            head: false,
        };
        self.lock().report.requests += 1;
        let (head, body) = self.fetch.fetch(&req).map_err(fetch_stop)?;
        if let Some(e) = classify_status(head.status, &head.headers) {
            return Err(fetch_stop(e));
        }
        let fresh = Validator::from_head(&head);
        let (write_from, expected) = match head.status {
            200 => {
                if range.is_some() {
                    // Rule 3.
                    let changed = validator.is_usable() && !validator.same_entity(&fresh);
                    if !whole {
                        return Err(if changed {
                            Stop::Restart("the file changed on the server")
                        } else {
                            Stop::Final(DownloadError::NoRangeSupport)
                        });
                    }
                    if !changed && !self.opts().allow_dynamic {
                        return Err(Stop::Final(DownloadError::NoRangeSupport));
                    }
                    self.restart_in_place(if changed {
                        "the file changed on the server"
                    } else {
                        "the server does not support ranges"
                    })?;
                }
                let mut g = self.lock();
                g.state.validator = fresh.clone();
                g.state.accept_ranges = head
                    .header("accept-ranges")
                    .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("bytes")));
                g.state.pieces[i].end = fresh.length;
                g.state.pieces[i].done = 0;
                (0u64, fresh.length)
            }
            206 => {
                let cr = head
                    .header("content-range")
                    .and_then(|v| ContentRange::parse(v).ok());
                let Some(ContentRange::Bytes {
                    first,
                    last,
                    complete,
                }) = cr
                else {
                    return Err(Stop::Restart("a 206 without a valid Content-Range"));
                };
                // Rule 2.
                if first != from || to.is_some_and(|t| last > t) {
                    return Err(Stop::Restart(
                        "the Content-Range does not match the request",
                    ));
                }
                if validator.contradicts(&fresh) {
                    return Err(Stop::Restart("the file changed on the server"));
                }
                let mut g = self.lock();
                if g.state.validator.if_range().is_none() && g.state.validator.length.is_none() {
                    g.state.validator = fresh.clone();
                } else if g.state.validator.length.is_none() {
                    g.state.validator.length = complete;
                }
                g.state.accept_ranges = true;
                let p = &mut g.state.pieces[i];
                if p.end.is_none() {
                    p.end = complete;
                }
                (piece.done, Some(last - first + 1))
            }
            416 => return self.unsatisfiable(i, &head, &validator, whole),
            s => {
                return Err(Stop::Final(DownloadError::Fetch(FetchError {
                    kind: ErrorClass::Final,
                    message: format!("unexpected status {s}"),
                    status: Some(s),
                    retry_after: None,
                })))
            }
        };
        self.copy_body(i, body, write_from, expected)
    }

    /// A 200 replaces everything on a single whole-file piece: truncate and write from 0.
    fn restart_in_place(&self, why: &'static str) -> Result<(), Stop> {
        // As in `reset`: no save in flight across the truncation, and none of the old data's
        // copies saved after it.
        let _saving = self.saving();
        let mut g = self.lock();
        if g.report.restarts >= MAX_RESTARTS {
            return Err(Stop::Final(DownloadError::Inconsistent(why)));
        }
        self.file
            .set_len(0)
            .map_err(io_err("cannot truncate the data file"))?;
        g.state.pieces[0].done = 0;
        g.pending = None;
        g.report.restarts += 1;
        drop(g);
        self.moved.notify_all();
        self.dl.emit(&Event::Restarted { reason: why });
        Ok(())
    }

    /// Rule 4, for a 416.
    fn unsatisfiable(
        &self,
        i: usize,
        head: &FetchHead,
        validator: &Validator,
        whole: bool,
    ) -> Result<(), Stop> {
        let complete = head
            .header("content-range")
            .and_then(|v| ContentRange::parse(v).ok())
            .and_then(|c| c.complete());
        if !whole {
            return Err(Stop::Final(DownloadError::RangeNotSatisfiable));
        }
        let have = self.lock().state.pieces[i].done;
        if complete.is_some_and(|c| c != have) {
            return Err(Stop::Restart("the file on the server has another length"));
        }
        if validator.is_usable() {
            // Re-validate: are all our bytes the server's current entity?
            let req = FetchRequest {
                url: &self.dl.url,
                range: None,
                if_range: None,
                headers: self.opts().headers.clone(),
                head: true,
            };
            self.lock().report.requests += 1;
            let (h, _) = self.fetch.fetch(&req).map_err(fetch_stop)?;
            let now = Validator::from_head(&h);
            if h.status != 200 || !validator.same_entity(&now) || now.length != Some(have) {
                return Err(Stop::Restart("the file changed on the server"));
            }
        } else if !self.opts().in_place || complete != Some(have) {
            return Err(Stop::Restart("416 without a way to validate"));
        }
        // Everything is here already (curl #6740: not an error).
        let mut g = self.lock();
        g.state.pieces[i].end = Some(have);
        g.state.validator.length = Some(have);
        Ok(())
    }

    /// Copies the body into the data file at piece `i`'s offset + `done` (== `write_from`).
    fn copy_body(
        &self,
        i: usize,
        mut body: F::Body,
        write_from: u64,
        expected: Option<u64>,
    ) -> Result<(), Stop> {
        let mut buf = vec![0u8; BUFFER];
        let mut got = 0u64;
        let offset = self.lock().state.pieces[i].offset;
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Err(Stop::Aborted);
            }
            let want = match expected {
                Some(e) if got >= e => break,
                Some(e) => (e - got).min(BUFFER as u64) as usize,
                None => BUFFER,
            };
            let n = match body.read(&mut buf[..want]) {
                Ok(0) => {
                    if expected.is_some_and(|e| got < e) {
                        return Err(Stop::Transient(FetchError::transient(
                            "the connection closed before the body ended",
                        )));
                    }
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Stop::Transient(FetchError::transient(format!(
                        "receiving the body failed: {e}"
                    ))))
                }
            };
            let at = offset
                .checked_add(write_from)
                .and_then(|v| v.checked_add(got))
                .ok_or(Stop::Final(DownloadError::BadOptions("offset overflow")))?;
            self.file
                .write_all_at(&buf[..n], at)
                .map_err(io_err("cannot write the data file"))?;
            got += n as u64;
            let (wait, done, total, sync_now) = {
                let mut g = self.lock();
                // Only now that the pwrite returned: a checkpoint's copy (taken under this lock)
                // counts no byte that is not in the file (I8, see the module doc).
                g.state.pieces[i].done = write_from + got;
                g.report.fetched += n as u64;
                g.since_ckpt += n as u64;
                let wait = g.bucket.take(n as u64, self.dl.clock.now());
                // Never a sync under this lock: at most a copy handed to the checkpointer.
                let (g, sync_now) = self.after_write(g)?;
                (wait, g.state.done(), g.state.total(), sync_now)
            };
            if sync_now {
                self.checkpoint()?;
            }
            self.dl.emit(&Event::Progress { done, total });
            if !wait.is_zero() {
                self.dl.clock.sleep(wait);
            }
        }
        let mut g = self.lock();
        let p = &mut g.state.pieces[i];
        if p.end.is_none() {
            // A body without a stated length ended cleanly: that is the length.
            p.end = Some(p.start + p.done);
            g.state.validator.length = g.state.total();
        }
        Ok(())
    }

    /// Before segments: HEAD for length, validator and range support, then split.
    fn probe_segments(&self, want: usize) {
        let req = FetchRequest {
            url: &self.dl.url,
            range: None,
            if_range: None,
            headers: self.opts().headers.clone(),
            head: true,
        };
        self.lock().report.requests += 1;
        let Ok((head, _)) = self.fetch.fetch(&req) else {
            return;
        };
        let v = Validator::from_head(&head);
        let ranges = head
            .header("accept-ranges")
            .is_some_and(|a| a.split(',').any(|t| t.trim().eq_ignore_ascii_case("bytes")));
        let Some(len) = v.length else { return };
        if head.status != 200 || !ranges || !v.is_usable() {
            return;
        }
        let n = want.min((len / self.opts().min_segment.max(1)) as usize);
        if n < 2 {
            return;
        }
        let mut g = self.lock();
        g.state.validator = v;
        g.state.accept_ranges = true;
        g.state.pieces = split_segments(len, n);
        g.report.segments = n;
    }

    /// Final checks, then the rename (rule 7).
    fn finish(self) -> Result<Report, DownloadError> {
        let Core {
            dl, file, inner, ..
        } = self.core;
        let mut g = inner.into_inner().unwrap_or_else(|e| e.into_inner());
        let total = g.state.total().ok_or(DownloadError::Inconsistent(
            "the download ended without a known length",
        ))?;
        if !g.state.pieces.iter().all(Piece::is_complete) {
            return Err(DownloadError::Inconsistent("a piece is incomplete"));
        }
        if g.state.is_identity() {
            if let Some(l) = g.state.validator.length {
                if l != total {
                    return Err(DownloadError::Inconsistent(
                        "length differs from the server's",
                    ));
                }
            }
        }
        file.set_len(total)
            .map_err(io_err("cannot size the data file"))?;
        file.sync_all()
            .map_err(io_err("cannot sync the data file"))?;
        let data = dl.data_path();
        if let Some(want) = dl.opts.sha256 {
            let got = sha256_file(&file).map_err(io_err("cannot read back the data file"))?;
            if got != want {
                // The bytes are not the ones asked for: keep none of them (and no state that
                // would resume them).
                if !dl.opts.in_place {
                    let _ = std::fs::remove_file(&data);
                }
                remove_state(&dl.dest);
                return Err(DownloadError::Checksum {
                    expected: hex(&want),
                    actual: hex(&got),
                });
            }
        }
        drop(file);
        if !dl.opts.in_place {
            std::fs::rename(&data, &dl.dest).map_err(io_err("cannot rename into place"))?;
            sync_dir(&dl.dest);
        }
        remove_state(&dl.dest);
        g.report.total = total;
        Ok(g.report.clone())
    }
}

impl<F: Fetch + Sync> Run<'_, F> {
    /// Every piece on its own connection, at once.
    fn parallel(&self) -> Result<(), Stop> {
        let n = self.lock().state.pieces.len();
        let results: Vec<Result<(), Stop>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    s.spawn(move || {
                        let r = self.drive_piece(i);
                        if r.is_err() {
                            self.abort.store(true, Ordering::Relaxed);
                        }
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(Stop::Final(DownloadError::Inconsistent(
                            "a segment thread panicked",
                        ))))
                })
                .collect()
        });
        self.abort.store(false, Ordering::Relaxed);
        let _ = self.checkpoint();
        // The most telling failure wins: final, then restart, then transient.
        let mut worst: Option<Stop> = None;
        for r in results {
            let Err(e) = r else { continue };
            let rank = |s: &Stop| match s {
                Stop::Final(_) => 3,
                Stop::Restart(_) => 2,
                Stop::Transient(_) => 1,
                Stop::Aborted => 0,
            };
            if worst.as_ref().is_none_or(|w| rank(&e) > rank(w)) {
                worst = Some(e);
            }
        }
        match worst {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

fn fetch_stop(e: FetchError) -> Stop {
    match e.kind {
        ErrorClass::Transient => Stop::Transient(e),
        ErrorClass::Final => Stop::Final(DownloadError::Fetch(e)),
    }
}

/// SHA-256 of a whole file, read positionally from the start.
fn sha256_file(file: &File) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = file.read_at(&mut buf, pos)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_range_follows_rfc_9110_13_1_5() {
        let v = |etag: Option<&str>, lm: Option<&str>| Validator {
            etag: etag.map(str::to_owned),
            last_modified: lm.map(str::to_owned),
            length: Some(10),
        };
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            v(Some("\"a\""), Some(date)).if_range().as_deref(),
            Some("\"a\"")
        );
        assert_eq!(v(None, Some(date)).if_range().as_deref(), Some(date));
        // A weak tag: neither the tag nor the date may be sent, so no resume.
        assert_eq!(v(Some("W/\"a\""), Some(date)).if_range(), None);
        assert!(!v(Some("W/\"a\""), Some(date)).is_usable());
        assert!(!v(None, None).is_usable());
    }

    fn v(etag: Option<&str>, lm: Option<&str>, len: Option<u64>) -> Validator {
        Validator {
            etag: etag.map(str::to_owned),
            last_modified: lm.map(str::to_owned),
            length: len,
        }
    }

    #[test]
    fn sidecar_round_trips() {
        let st = State {
            validator: v(
                Some("\"abc\""),
                Some("Mon, 01 Jan 2024 00:00:00 GMT"),
                Some(10),
            ),
            accept_ranges: true,
            pieces: vec![
                Piece {
                    start: 0,
                    end: Some(5),
                    offset: 0,
                    done: 5,
                },
                Piece {
                    start: 5,
                    end: None,
                    offset: 5,
                    done: 2,
                },
            ],
        };
        assert_eq!(State::parse(&st.to_text()), Some(st.clone()));
        assert!(st.is_identity());
        assert_eq!(st.done(), 7);
        assert_eq!(st.total(), None);
    }

    #[test]
    fn bad_sidecars_are_refused() {
        for text in [
            "",
            "ferry-state 2\npiece 0 - 0 0\nend\n",
            "ferry-state 1\nend\n",
            "ferry-state 1\npiece 0 - 0 0\n",
            "ferry-state 1\npiece 0 5 0 6\nend\n",
            "ferry-state 1\npiece 5 4 0 0\nend\n",
            "ferry-state 1\npiece 0 - 0\nend\n",
            "ferry-state 1\npiece 0 - 0 -1\nend\n",
            "ferry-state 1\npiece 0 - 0 99999999999999999999\nend\n",
            "ferry-state 1\nlength x\npiece 0 - 0 0\nend\n",
            "ferry-state 1\nwhat\npiece 0 - 0 0\nend\n",
        ] {
            assert_eq!(State::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn validators_compare() {
        let strong = v(Some("\"a\""), Some("d1"), Some(5));
        assert_eq!(strong.if_range().as_deref(), Some("\"a\""));
        assert!(strong.same_entity(&v(Some("\"a\""), Some("d2"), Some(5))));
        assert!(!strong.same_entity(&v(Some("\"b\""), Some("d1"), Some(5))));
        assert!(!strong.same_entity(&v(Some("\"a\""), Some("d1"), Some(6))));
        let weak = v(Some("W/\"a\""), Some("d1"), None);
        // RFC 9110 §13.1.5: no date when an entity tag (even a weak one) is known.
        assert_eq!(weak.if_range(), None);
        assert!(weak.same_entity(&v(None, Some("d1"), None)));
        assert!(!v(Some("W/\"a\""), None, None).is_usable());
        assert!(!Validator::default().same_entity(&Validator::default()));
        assert!(strong.contradicts(&v(Some("\"b\""), None, None)));
        assert!(!strong.contradicts(&v(None, None, None)));
        assert!(v(None, Some("d1"), None).contradicts(&v(None, Some("d2"), None)));
    }

    #[test]
    fn layouts() {
        let p = split_segments(10, 4);
        assert_eq!(
            p.iter().map(|p| (p.start, p.end)).collect::<Vec<_>>(),
            [(0, Some(2)), (2, Some(4)), (4, Some(6)), (6, Some(10))]
        );
        assert_eq!(split_segments(2, 8).len(), 2);
        assert_eq!(split_segments(0, 4).len(), 1);
        let r = pieces_for_ranges(&ByteRange::parse_list("10-19,0-4,30-").unwrap()).unwrap();
        assert_eq!(r.iter().map(|p| p.offset).collect::<Vec<_>>(), [0, 10, 15]);
        assert!(pieces_for_ranges(&ByteRange::parse_list("0-9,9-12").unwrap()).is_err());
        assert!(pieces_for_ranges(&ByteRange::parse_list("5-,0-1").unwrap()).is_err());
        let st = State {
            pieces: r,
            ..State::default()
        };
        assert!(!st.is_identity());
    }

    #[test]
    fn side_files_are_hidden_and_bounded() {
        let d = Path::new("/x/file.iso");
        assert_eq!(temp_path(d), Path::new("/x/.file.iso.ferry-part"));
        assert_eq!(state_path(d), Path::new("/x/.file.iso.ferry-state"));
        let long = PathBuf::from(format!("/x/{}", "a".repeat(250)));
        let t = temp_path(&long);
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 255 && name.starts_with(".ferry-"), "{name}");
        assert_eq!(temp_path(Path::new("f")), Path::new(".f.ferry-part"));
    }

    /// A fresh directory under the temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(label: &str) -> TestDir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("ferry-unit-{label}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TestDir(p)
        }

        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_lock_excludes_a_second_holder_and_is_removed_on_release() {
        let dir = TestDir::new("lock");
        let dest = dir.0.join("f.iso");
        let lock = DestLock::acquire(&dest).unwrap();
        assert_eq!(lock.path(), dir.0.join(".f.iso.ferry-lock"));
        // flock locks belong to open files, so a second open in this very process (another job
        // of the same queue) is refused just like another process.
        match DestLock::acquire(&dest) {
            Err(DownloadError::Busy {
                dest: d,
                lock: l,
                pid,
            }) => {
                assert_eq!((d.as_path(), l.as_path()), (dest.as_path(), lock.path()));
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        let e = DestLock::acquire(&dest).unwrap_err();
        assert!(e.is_transient(), "a busy destination frees up later");
        assert!(e.to_string().contains("already writing"), "{e}");
        drop(lock);
        assert!(dir.names().is_empty(), "{:?}", dir.names());
        // Free again.
        drop(DestLock::acquire(&dest).unwrap());
        assert!(dir.names().is_empty());
    }

    #[test]
    fn a_lock_file_left_by_a_dead_run_blocks_nobody() {
        let dir = TestDir::new("stale");
        let dest = dir.0.join("f.iso");
        // What a SIGKILLed run leaves: the file, with a pid, and no lock on it.
        std::fs::write(lock_path(&dest), "4242\n").unwrap();
        let lock = DestLock::acquire(&dest).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(lock);
        assert!(dir.names().is_empty());
    }

    #[test]
    fn a_lock_file_replaced_while_held_is_not_removed_by_its_old_holder() {
        let dir = TestDir::new("replaced");
        let dest = dir.0.join("f.iso");
        let old = DestLock::acquire(&dest).unwrap();
        // Someone removes the file; a new run makes and takes a new one.
        std::fs::remove_file(old.path()).unwrap();
        let new = DestLock::acquire(&dest).unwrap();
        drop(old);
        assert_eq!(
            dir.names(),
            [".f.iso.ferry-lock"],
            "the new holder's file stays"
        );
        assert!(matches!(
            DestLock::acquire(&dest),
            Err(DownloadError::Busy { .. })
        ));
        drop(new);
        assert!(dir.names().is_empty());
    }

    /// A fetcher that, while "on the wire", tries to start a second run on the same destination
    /// and records what happened, then fails for good.
    struct Contender {
        dest: PathBuf,
        seen: Mutex<Vec<String>>,
    }

    impl Fetch for Contender {
        type Body = io::Empty;

        fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, io::Empty), FetchError> {
            let second = Download::new(req.url.clone(), &self.dest);
            let r = second.run(&Refuse);
            self.seen.lock().unwrap().push(match r {
                Err(DownloadError::Busy { .. }) => "busy".to_owned(),
                other => format!("{other:?}"),
            });
            Err(FetchError::fatal("scripted final failure"))
        }
    }

    /// A fetcher that must never be reached.
    struct Refuse;

    impl Fetch for Refuse {
        type Body = io::Empty;

        fn fetch(&self, _: &FetchRequest<'_>) -> Result<(FetchHead, io::Empty), FetchError> {
            panic!("a run that could not take the lock made a request")
        }
    }

    #[test]
    fn run_and_run_segmented_hold_the_lock_while_they_work() {
        let dir = TestDir::new("run-lock");
        let dest = dir.0.join("out.bin");
        let url = Url::parse("http://fake.test/out.bin").unwrap();
        let f = Contender {
            dest: dest.clone(),
            seen: Mutex::new(Vec::new()),
        };
        let e = Download::new(url.clone(), &dest).run(&f).unwrap_err();
        assert!(matches!(e, DownloadError::Fetch(_)), "{e:?}");
        let opts = Options {
            segments: 4,
            ..Options::default()
        };
        let e = Download::new(url, &dest)
            .options(opts)
            .run_segmented(&f)
            .unwrap_err();
        assert!(matches!(e, DownloadError::Fetch(_)), "{e:?}");
        // run_segmented probes with HEAD first, then GETs: every request saw the lock held.
        let seen = f.seen.lock().unwrap().clone();
        assert!(
            seen.len() >= 2 && seen.iter().all(|s| s == "busy"),
            "{seen:?}"
        );
        // Nothing worth resuming: the runs left nothing behind, lock file included.
        assert!(dir.names().is_empty(), "{:?}", dir.names());
    }

    #[test]
    fn a_busy_run_leaves_the_holders_files_alone() {
        let dir = TestDir::new("busy-files");
        let dest = dir.0.join("out.bin");
        // The holder's files, with nothing checkpointed yet: exactly what a failed run would
        // clean up as "nothing worth resuming", had it not been refused first.
        std::fs::write(temp_path(&dest), b"").unwrap();
        let st = State {
            pieces: vec![Piece {
                start: 0,
                end: None,
                offset: 0,
                done: 0,
            }],
            ..State::default()
        };
        save_state(&dest, &st).unwrap();
        let held = DestLock::acquire(&dest).unwrap();
        let url = Url::parse("http://fake.test/out.bin").unwrap();
        let e = Download::new(url, &dest).run(&Refuse).unwrap_err();
        assert!(matches!(e, DownloadError::Busy { .. }), "{e:?}");
        assert_eq!(
            dir.names(),
            [
                ".out.bin.ferry-lock",
                ".out.bin.ferry-part",
                ".out.bin.ferry-state"
            ]
        );
        assert_eq!(load_state(&dest), Some(st));
        drop(held);
    }

    #[test]
    fn sha256_hex() {
        let h = "ab".repeat(32);
        assert_eq!(parse_sha256(&h), Some([0xab; 32]));
        assert_eq!(hex(&[0xab; 32]), h);
        assert_eq!(parse_sha256("ab"), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
        assert_eq!(parse_sha256(&"é".repeat(32)), None);
    }

    // -----------------------------------------------------------------------------------------
    // Checkpoints running beside the writers.

    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    /// Called with the bytes handed out by all bodies so far, this read's included.
    type OnRead = Arc<dyn Fn(u64) + Send + Sync>;

    /// One entity served from memory: HEAD, GET, ranges (206) and an ETag; bodies are read in
    /// `chunk`-sized pieces, so that writes and checkpoints interleave finely.
    struct Entity {
        data: Arc<Vec<u8>>,
        chunk: usize,
        handed: Arc<AtomicU64>,
        on_read: OnRead,
        /// A body for a range that does not start at 0 panics after this many bytes.
        panic_after: Option<usize>,
    }

    impl Entity {
        fn new(data: Arc<Vec<u8>>, chunk: usize) -> Entity {
            Entity {
                data,
                chunk,
                handed: Arc::new(AtomicU64::new(0)),
                on_read: Arc::new(|_| {}),
                panic_after: None,
            }
        }
    }

    struct EntityBody {
        data: Arc<Vec<u8>>,
        pos: usize,
        end: usize,
        chunk: usize,
        handed: Arc<AtomicU64>,
        on_read: OnRead,
        panic_after: Option<usize>,
        sent: usize,
    }

    impl Read for EntityBody {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.panic_after.is_some_and(|p| self.sent >= p) {
                panic!("scripted panic in a segment's body");
            }
            let n = buf.len().min(self.end - self.pos).min(self.chunk);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            self.sent += n;
            let handed = self.handed.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            (self.on_read)(handed);
            Ok(n)
        }
    }

    impl Fetch for Entity {
        type Body = EntityBody;

        fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, EntityBody), FetchError> {
            let len = self.data.len() as u64;
            let mut headers = http::HeaderMap::new();
            let mut put = |k: &'static str, v: String| {
                headers.insert(k, v.parse().unwrap());
            };
            put("etag", "\"e1\"".into());
            put("accept-ranges", "bytes".into());
            let (status, first, end) = match req.range {
                Some((first, last)) => {
                    let last = last.unwrap_or(len - 1).min(len - 1);
                    put("content-range", format!("bytes {first}-{last}/{len}"));
                    (206, first, last + 1)
                }
                None => (200, 0, len),
            };
            put("content-length", (end - first).to_string());
            let head = FetchHead {
                status,
                headers,
                final_url: req.url.clone(),
            };
            let body = EntityBody {
                data: self.data.clone(),
                pos: first as usize,
                end: if req.head { first } else { end } as usize,
                chunk: self.chunk,
                handed: self.handed.clone(),
                on_read: self.on_read.clone(),
                panic_after: self.panic_after.filter(|_| first > 0),
                sent: 0,
            };
            Ok((head, body))
        }
    }

    /// `len` bytes, none of them zero (a hole in the data file reads as zeros).
    fn pattern(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| ((i.wrapping_mul(0x9e37_79b9) >> 11) % 255 + 1) as u8)
            .collect()
    }

    fn entity_url() -> Url {
        Url::parse("http://fake.test/f.bin").unwrap()
    }

    /// Runs `f` on its own thread and fails if it takes longer than `limit` (a hang).
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(limit) {
            Ok(v) => v,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("still running after {limit:?}")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the run panicked"),
        }
    }

    /// Whether every byte `st` claims is in the data file beside `dest` (a claimed byte not yet
    /// written reads as zero: `data` has none). `verified` remembers, per piece start, the
    /// claimed bytes already compared (written bytes stay written). Returns what is wrong.
    fn claims_written(
        dest: &Path,
        data: &[u8],
        st: &State,
        verified: &mut HashMap<u64, u64>,
    ) -> Vec<String> {
        let mut bad = Vec::new();
        let file = File::open(temp_path(dest)).unwrap();
        for p in &st.pieces {
            let from = verified.get(&p.start).copied().unwrap_or(0).min(p.done);
            let mut got = vec![0u8; (p.done - from) as usize];
            if file.read_exact_at(&mut got, p.offset + from).is_err() {
                bad.push(format!(
                    "piece {}: claims {}, the file is shorter",
                    p.start, p.done
                ));
                continue;
            }
            let at = (p.start + from) as usize;
            if got[..] != data[at..at + got.len()] {
                bad.push(format!(
                    "piece {}: claims {}, not all written",
                    p.start, p.done
                ));
            }
            verified.insert(p.start, p.done);
        }
        bad
    }

    /// I8 with checkpoints saved while segments write. Every copy taken for a checkpoint claims
    /// only bytes already in the data file (so the fdatasync that follows covers them), and
    /// every checkpoint reported is exactly what the sidecar on disk says, never more than the
    /// bodies handed out, never going back. Checkpoints every 16 KiB of 4 KiB writes; the
    /// checks make each copy and save slow, so saves and writes overlap all the time.
    #[test]
    fn checkpoints_never_claim_bytes_not_yet_written() {
        for segments in [4usize, 1] {
            let dir = TestDir::new("ckpt-claims");
            let dest = dir.0.join("f.bin");
            let data = Arc::new(pattern(3 << 20));
            let fetch = Entity::new(data.clone(), 4096);
            let handed = fetch.handed.clone();
            let problems = Arc::new(Mutex::new(Vec::<String>::new()));
            let (copies, saves) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let on_copy = {
                let (dest, data, problems, copies) =
                    (dest.clone(), data.clone(), problems.clone(), copies.clone());
                let verified = Mutex::new(HashMap::new());
                move |st: &State| {
                    copies.fetch_add(1, Ordering::SeqCst);
                    let bad = claims_written(&dest, &data, st, &mut verified.lock().unwrap());
                    problems.lock().unwrap().extend(bad);
                }
            };
            let observer = {
                let (dest, problems, saves) = (dest.clone(), problems.clone(), saves.clone());
                let last = AtomicU64::new(0);
                move |e: &Event<'_>| {
                    let Event::Checkpoint { done } = *e else {
                        return;
                    };
                    saves.fetch_add(1, Ordering::SeqCst);
                    let mut bad = Vec::new();
                    let handed = handed.load(Ordering::SeqCst);
                    if done > handed {
                        bad.push(format!("checkpoint {done} > {handed} bytes received"));
                    }
                    if last.fetch_max(done, Ordering::SeqCst) > done {
                        bad.push(format!("checkpoint {done} after a larger one"));
                    }
                    match load_state(&dest) {
                        Some(st) if st.done() == done => {}
                        other => bad.push(format!("checkpoint {done}, sidecar {other:?}")),
                    }
                    problems.lock().unwrap().extend(bad);
                }
            };
            let opts = Options {
                segments,
                min_segment: 64 << 10,
                checkpoint_bytes: 16 << 10,
                checkpoint_interval: Duration::from_secs(3600),
                ..Options::default()
            };
            let mut dl = Download::new(entity_url(), &dest)
                .options(opts)
                .observer(observer);
            dl.on_copy = Some(Box::new(on_copy));
            let report = if segments > 1 {
                dl.run_segmented(&fetch).unwrap()
            } else {
                dl.run(&fetch).unwrap()
            };
            assert_eq!(report.segments, segments);
            assert_eq!(std::fs::read(&dest).unwrap(), *data);
            let problems = problems.lock().unwrap();
            assert!(problems.is_empty(), "{segments} segments: {problems:#?}");
            let (copies, saves) = (copies.load(Ordering::SeqCst), saves.load(Ordering::SeqCst));
            assert!(
                saves >= 20 && copies >= saves,
                "{segments} segments: {copies} copies, {saves} checkpoints"
            );
            assert_eq!(dir.names(), ["f.bin"]);
        }
    }

    /// Back-pressure (rule 6): with saves slower than the writers, the bytes received past the
    /// last reported checkpoint never exceed 2 × `checkpoint_bytes` + one read per connection,
    /// and they do exceed one checkpoint distance (so the saves really were the bottleneck).
    #[test]
    fn writers_wait_while_two_checkpoint_distances_are_not_durable() {
        const DISTANCE: u64 = 32 << 10;
        const CHUNK: usize = 4096;
        for segments in [4usize, 1] {
            let dir = TestDir::new("ckpt-backpressure");
            let dest = dir.0.join("f.bin");
            let data = Arc::new(pattern(2 << 20));
            let durable = Arc::new(AtomicU64::new(0));
            let worst = Arc::new(AtomicU64::new(0));
            let mut fetch = Entity::new(data.clone(), CHUNK);
            fetch.on_read = {
                let (durable, worst) = (durable.clone(), worst.clone());
                Arc::new(move |handed| {
                    let d = durable.load(Ordering::SeqCst);
                    worst.fetch_max(handed.saturating_sub(d), Ordering::SeqCst);
                })
            };
            // A slow disk: every save takes 3 ms more. The event comes before writers count
            // the save as durable, so `durable` here is never behind the engine's.
            let observer = {
                let durable = durable.clone();
                move |e: &Event<'_>| {
                    if let Event::Checkpoint { done } = *e {
                        std::thread::sleep(Duration::from_millis(3));
                        durable.fetch_max(done, Ordering::SeqCst);
                    }
                }
            };
            let opts = Options {
                segments,
                min_segment: 64 << 10,
                checkpoint_bytes: DISTANCE,
                checkpoint_interval: Duration::from_secs(3600),
                ..Options::default()
            };
            let dl = Download::new(entity_url(), &dest)
                .options(opts)
                .observer(observer);
            let report = if segments > 1 {
                dl.run_segmented(&fetch).unwrap()
            } else {
                dl.run(&fetch).unwrap()
            };
            assert_eq!(report.segments, segments);
            assert_eq!(std::fs::read(&dest).unwrap(), *data);
            let worst = worst.load(Ordering::SeqCst);
            let bound = UNSAVED_CHECKPOINTS * DISTANCE + segments as u64 * CHUNK as u64;
            assert!(
                worst <= bound,
                "{segments} segments: {worst} bytes past the checkpoint (bound {bound})"
            );
            assert!(
                worst > DISTANCE,
                "{segments} segments: at most {worst} bytes past the checkpoint: the saves \
                 never held the writers back, so this test checked nothing"
            );
        }
    }

    /// A segment that panics ends the run with an error (not a hang): the other segments and
    /// the checkpointer thread end, the lock is released, and the progress kept is consistent.
    #[test]
    fn a_panicking_segment_ends_the_run_and_its_checkpointer() {
        let dir = TestDir::new("ckpt-panic");
        let dest = dir.0.join("f.bin");
        let data = Arc::new(pattern(3 << 20));
        let mut fetch = Entity::new(data.clone(), 4096);
        fetch.panic_after = Some(40 << 10);
        let opts = Options {
            segments: 4,
            min_segment: 64 << 10,
            checkpoint_bytes: 16 << 10,
            ..Options::default()
        };
        let d = dest.clone();
        let e = within(Duration::from_secs(60), move || {
            Download::new(entity_url(), &d)
                .options(opts)
                .run_segmented(&fetch)
                .unwrap_err()
        });
        assert!(matches!(e, DownloadError::Inconsistent(_)), "{e:?}");
        assert!(!lock_path(&dest).exists());
        let st = load_state(&dest).expect("progress kept");
        let file = std::fs::read(temp_path(&dest)).unwrap();
        for p in &st.pieces {
            let (a, b) = (p.offset as usize, (p.offset + p.done) as usize);
            assert_eq!(file[a..b], data[a..b], "piece {}", p.start);
        }
        assert!(st.pieces[0].is_complete(), "{st:?}");
    }

    /// An observer that panics on a checkpoint (on the checkpointer thread) makes the run panic
    /// rather than hang or go on without checkpoints; the lock is released.
    #[test]
    fn a_panicking_checkpoint_observer_ends_the_run() {
        let dir = TestDir::new("ckpt-observer");
        let dest = dir.0.join("f.bin");
        let data = Arc::new(pattern(3 << 20));
        let fetch = Entity::new(data, 4096);
        let opts = Options {
            checkpoint_bytes: 64 << 10,
            ..Options::default()
        };
        let d = dest.clone();
        let panicked = within(Duration::from_secs(60), move || {
            let dl = Download::new(entity_url(), &d).options(opts).observer(|e| {
                if let Event::Checkpoint { .. } = e {
                    panic!("scripted observer panic");
                }
            });
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dl.run(&fetch))).is_err()
        });
        assert!(panicked);
        assert!(!lock_path(&dest).exists());
        assert!(!dest.exists());
    }
}
