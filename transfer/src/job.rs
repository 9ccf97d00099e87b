//! The job model: ids, priorities, files and byte ranges, per-job settings, progress.
//!
//! Sans-IO and deterministic: every method that changes a job takes the current wall-clock
//! time (`now`, unix seconds) from the caller; the only I/O is [`JobId::random`], which reads
//! the OS's random bytes. Every input is validated when it enters a job, and a refusal is a
//! [`ValidationError`] that says what was wrong and where. State changes go through the table
//! in [`crate::state`]; the mutators here check it too (a verb that is not legal in the
//! current state is refused before anything changes).
//!
//! Times: `created`, `modified` and `completed` are wall-clock seconds. `retry_at`,
//! `no_progress_since` and `notify_due` are wall-clock seconds as persisted; the scheduler
//! keeps the monotonic deadlines while it runs and re-derives them from these after a restart.

use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use url::Url;

use crate::state::{self, IllegalTransition, State, Verb};

/// Default minimum delay before a transient error is retried (BITS: 600 s).
pub const DEFAULT_MIN_RETRY_DELAY_SECS: u64 = 600;
/// The smallest minimum retry delay; lower settings are raised to this (BITS: 5 s).
pub const MIN_RETRY_DELAY_FLOOR_SECS: u64 = 5;
/// Default no-progress timeout (BITS: 14 days). 0 means the first error is final.
pub const DEFAULT_NO_PROGRESS_TIMEOUT_SECS: u64 = 14 * 24 * 3600;
/// Most files in one job (BITS policy MaxFilesPerJob).
pub const MAX_FILES_PER_JOB: usize = 200;
/// Most byte ranges for one file (BITS policy MaxRangesPerFile).
pub const MAX_RANGES_PER_FILE: usize = 500;
/// Longest remote URL accepted, in bytes (BITS: 2,200 characters).
pub const MAX_URL_LEN: usize = 2200;
/// Longest display name, in characters (BITS: 256).
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// Most custom headers on a job.
pub const MAX_CUSTOM_HEADERS: usize = 64;
/// Most bytes of custom headers on a job (names plus values).
pub const MAX_CUSTOM_HEADER_BYTES: usize = 16 * 1024;

/// Header names the engine sets itself; a custom header may not override them (they frame the
/// exchange or carry the resume validation that invariant I8 depends on).
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "range",
    "if-range",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
];

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/// Why a job, or a change to it, was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationError {
    /// A string could not be parsed as a value of kind `what`.
    Parse {
        /// What was being parsed ("job id", "priority", …).
        what: &'static str,
        /// The text given.
        given: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The display name is unusable.
    DisplayName {
        /// Why.
        why: &'static str,
    },
    /// A remote URL is unusable.
    RemoteUrl {
        /// The URL (with any password removed).
        url: String,
        /// Why.
        why: &'static str,
    },
    /// A local path is unusable.
    LocalPath {
        /// The path.
        path: PathBuf,
        /// Why.
        why: &'static str,
    },
    /// Two files of one job would write the same local path.
    DuplicateLocalPath {
        /// The path.
        path: PathBuf,
        /// The index of the file that already uses it.
        existing: usize,
    },
    /// A byte range is unusable on its own.
    Range {
        /// Its position in the list given.
        index: usize,
        /// The range.
        range: ByteRange,
        /// Why.
        why: &'static str,
    },
    /// Two byte ranges of one file overlap.
    OverlappingRanges {
        /// Position and value of the earlier range in the list.
        first: (usize, ByteRange),
        /// Position and value of the later range.
        second: (usize, ByteRange),
    },
    /// More ranges than [`MAX_RANGES_PER_FILE`].
    TooManyRanges {
        /// How many were given.
        given: usize,
    },
    /// More files than [`MAX_FILES_PER_JOB`].
    TooManyFiles,
    /// Byte ranges on a job that allows dynamic content (a restart from zero could not
    /// honour them).
    RangesWithDynamicContent,
    /// A custom header is unusable.
    Header {
        /// The header's position in the list.
        index: usize,
        /// Its name (escaped when printed).
        name: String,
        /// Why.
        why: &'static str,
    },
    /// The custom headers as a whole exceed a limit.
    HeadersTooLarge,
    /// The notify command is unusable.
    Notify {
        /// Why.
        why: &'static str,
    },
    /// The credentials are unusable.
    Credentials {
        /// Why.
        why: &'static str,
    },
    /// The proxy override is unusable.
    Proxy {
        /// Why.
        why: &'static str,
    },
    /// There is no file with this index.
    NoSuchFile {
        /// The index asked for.
        index: usize,
        /// How many files the job has.
        files: usize,
    },
    /// `resume` on a job without files (BITS: BG_E_EMPTY); the job stays suspended.
    NoFiles,
    /// The final URL of a redirect was reported but the job's policy is not allow-report.
    RedirectNotReported,
    /// The verb is not legal in the job's state.
    Transition(IllegalTransition),
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ValidationError as E;
        match self {
            E::Parse {
                what,
                given,
                expected,
            } => write!(
                f,
                "bad {what} '{}': expected {expected}",
                given.escape_debug()
            ),
            E::DisplayName { why } => write!(f, "bad display name: {why}"),
            E::RemoteUrl { url, why } => write!(f, "bad remote URL '{url}': {why}"),
            E::LocalPath { path, why } => {
                write!(f, "bad local path '{}': {why}", path.display())
            }
            E::DuplicateLocalPath { path, existing } => write!(
                f,
                "local path '{}' is already the destination of file {existing} of this job",
                path.display()
            ),
            E::Range { index, range, why } => write!(f, "bad byte range #{index} ({range}): {why}"),
            E::OverlappingRanges { first, second } => write!(
                f,
                "byte range #{} ({}) overlaps byte range #{} ({}): ranges must not overlap",
                second.0, second.1, first.0, first.1
            ),
            E::TooManyRanges { given } => write!(
                f,
                "{given} byte ranges for one file: at most {MAX_RANGES_PER_FILE} are allowed"
            ),
            E::TooManyFiles => write!(
                f,
                "the job already has {MAX_FILES_PER_JOB} files, the most one job may hold"
            ),
            E::RangesWithDynamicContent => f.write_str(
                "byte ranges cannot be combined with dynamic content (an interrupted dynamic \
                 transfer restarts from zero)",
            ),
            E::Header { index, name, why } => write!(
                f,
                "bad custom header #{index} '{}': {why}",
                name.escape_debug()
            ),
            E::HeadersTooLarge => write!(
                f,
                "custom headers exceed the limit ({MAX_CUSTOM_HEADERS} headers, \
                 {MAX_CUSTOM_HEADER_BYTES} bytes)"
            ),
            E::Notify { why } => write!(f, "bad notify command: {why}"),
            E::Credentials { why } => write!(f, "bad credentials: {why}"),
            E::Proxy { why } => write!(f, "bad proxy override: {why}"),
            E::NoSuchFile { index, files } => {
                write!(f, "no file #{index}: the job has {files} file(s)")
            }
            E::NoFiles => f.write_str("cannot resume a job that has no files: add a file first"),
            E::RedirectNotReported => f.write_str(
                "a redirect's final URL is recorded only when the redirect policy is allow-report",
            ),
            E::Transition(t) => t.fmt(f),
        }
    }
}

impl std::error::Error for ValidationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ValidationError::Transition(t) => Some(t),
            _ => None,
        }
    }
}

impl From<IllegalTransition> for ValidationError {
    fn from(t: IllegalTransition) -> Self {
        ValidationError::Transition(t)
    }
}

fn has_ctl_except_tab(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t')
}

// ------------------------------------------------------------------------------------------
// JobId
// ------------------------------------------------------------------------------------------

/// A job's identity: 128 random bits, printed as a bitsadmin-style GUID
/// (`{0F1E2D3C-4B5A-4968-8776-655443322110}`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId([u8; 16]);

impl JobId {
    /// An id with exactly these bytes (tests, the database).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        JobId(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh random id, read from `/dev/urandom` (version-4 GUID layout).
    pub fn random() -> std::io::Result<Self> {
        let mut f = std::fs::File::open("/dev/urandom")?;
        Self::random_from(&mut f)
    }

    /// A fresh id from 16 bytes of `source` (version-4 GUID layout).
    pub fn random_from(source: &mut impl Read) -> std::io::Result<Self> {
        let mut b = [0u8; 16];
        source.read_exact(&mut b)?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(JobId(b))
    }

    /// The 32 lowercase hex digits without punctuation (for file names).
    pub fn simple(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        f.write_str("{")?;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl FromStr for JobId {
    type Err = ValidationError;

    /// Parses 32 hex digits, any case, with or without the braces and the four hyphens.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ValidationError::Parse {
            what: "job id",
            given: s.chars().take(80).collect(),
            expected: "a GUID such as {0F1E2D3C-4B5A-4968-8776-655443322110}",
        };
        let t = s.trim();
        let t = match (t.strip_prefix('{'), t.strip_suffix('}')) {
            (Some(_), Some(_)) if t.len() >= 2 => &t[1..t.len() - 1],
            (None, None) => t,
            _ => return Err(bad()),
        };
        let hex: Vec<u8> = if t.len() == 36 {
            let bytes = t.as_bytes();
            for pos in [8, 13, 18, 23] {
                if bytes[pos] != b'-' {
                    return Err(bad());
                }
            }
            bytes.iter().copied().filter(|&c| c != b'-').collect()
        } else {
            t.as_bytes().to_vec()
        };
        if hex.len() != 32 {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
            // Both digits are < 16, so the value fits a byte.
            out[i] = u8::try_from(hi * 16 + lo).map_err(|_| bad())?;
        }
        Ok(JobId(out))
    }
}

// ------------------------------------------------------------------------------------------
// Small enums
// ------------------------------------------------------------------------------------------

/// BITS priority. Ordered most urgent first: sorting ascending gives scheduling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Runs at once, concurrently with other foreground jobs, never throttled by policy.
    Foreground,
    /// Background, highest.
    High,
    /// Background, the default.
    #[default]
    Normal,
    /// Background, lowest.
    Low,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 4] = [
        Priority::Foreground,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The bitsadmin name (`FOREGROUND`, `HIGH`, `NORMAL`, `LOW`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Foreground => "FOREGROUND",
            Priority::High => "HIGH",
            Priority::Normal => "NORMAL",
            Priority::Low => "LOW",
        }
    }

    /// True for the background priorities (high, normal, low).
    pub fn is_background(self) -> bool {
        self != Priority::Foreground
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ValidationError;

    /// Parses a bitsadmin name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .iter()
            .copied()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ValidationError::Parse {
                what: "priority",
                given: s.chars().take(80).collect(),
                expected: "FOREGROUND, HIGH, NORMAL or LOW",
            })
    }
}

/// What a job does with an HTTP redirect (BITS job redirect policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RedirectPolicy {
    /// Follow silently (the default).
    #[default]
    Allow,
    /// Follow, and record the final URL as the file's remote name.
    AllowReport,
    /// A redirect is a fatal error.
    Disallow,
}

impl RedirectPolicy {
    /// The CLI name (`allow`, `allow-report`, `disallow`).
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectPolicy::Allow => "allow",
            RedirectPolicy::AllowReport => "allow-report",
            RedirectPolicy::Disallow => "disallow",
        }
    }
}

impl fmt::Display for RedirectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RedirectPolicy {
    type Err = ValidationError;

    /// Parses a CLI name, case-insensitively (`_` may stand for `-`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.trim().replace('_', "-");
        [
            RedirectPolicy::Allow,
            RedirectPolicy::AllowReport,
            RedirectPolicy::Disallow,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(&n))
        .ok_or_else(|| ValidationError::Parse {
            what: "redirect policy",
            given: s.chars().take(80).collect(),
            expected: "allow, allow-report or disallow",
        })
    }
}

/// Which proxy a job uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProxyChoice {
    /// The owner's session configuration (BITS PRECONFIG).
    #[default]
    Session,
    /// No proxy at all.
    None,
    /// This proxy list and bypass list (WinHTTP syntax), whatever the session says.
    Override {
        /// The proxy list.
        proxy: String,
        /// The bypass list (may be empty).
        bypass: String,
    },
}

impl ProxyChoice {
    /// Checks an override: a non-empty proxy list, no control characters.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let ProxyChoice::Override { proxy, bypass } = self {
            if proxy.trim().is_empty() {
                return Err(ValidationError::Proxy {
                    why: "the proxy list is empty (use the 'none' choice for no proxy)",
                });
            }
            if has_ctl_except_tab(proxy) || has_ctl_except_tab(bypass) {
                return Err(ValidationError::Proxy {
                    why: "control characters (CR, LF, NUL, …) are not allowed",
                });
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Files and ranges
// ------------------------------------------------------------------------------------------

/// A byte range of a remote file: `len` bytes from `offset`, or to the end when `len` is None.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte.
    pub offset: u64,
    /// Number of bytes; `None` means to the end of the entity.
    pub len: Option<u64>,
}

impl ByteRange {
    /// The byte after the last one, or None for a range to the end.
    pub fn end(&self) -> Option<u64> {
        self.len.map(|l| self.offset.saturating_add(l))
    }

    /// True when the two ranges share a byte.
    pub fn overlaps(&self, other: &ByteRange) -> bool {
        let a_before_b_end = other.end().is_none_or(|e| self.offset < e);
        let b_before_a_end = self.end().is_none_or(|e| other.offset < e);
        a_before_b_end && b_before_a_end
    }

    fn check(&self, index: usize) -> Result<(), ValidationError> {
        match self.len {
            Some(0) => Err(ValidationError::Range {
                index,
                range: *self,
                why: "the length is zero",
            }),
            Some(l)
                if self
                    .offset
                    .checked_add(l)
                    .is_none_or(|e| e > i64::MAX as u64) =>
            {
                Err(ValidationError::Range {
                    index,
                    range: *self,
                    why: "the range ends beyond the largest supported offset (2^63 - 1)",
                })
            }
            None if self.offset > i64::MAX as u64 => Err(ValidationError::Range {
                index,
                range: *self,
                why: "the offset is beyond the largest supported offset (2^63 - 1)",
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.len {
            Some(l) => write!(f, "{}:{l}", self.offset),
            None => write!(f, "{}:eof", self.offset),
        }
    }
}

impl FromStr for ByteRange {
    type Err = ValidationError;

    /// Parses `OFFSET:LENGTH` or `OFFSET:eof` (decimal), as bitsadmin's `/addfilewithranges`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ValidationError::Parse {
            what: "byte range",
            given: s.chars().take(80).collect(),
            expected: "OFFSET:LENGTH or OFFSET:eof, in decimal",
        };
        let (off, len) = s.trim().split_once(':').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(off) {
            return Err(bad());
        }
        let offset: u64 = off.parse().map_err(|_| bad())?;
        let len = if len.eq_ignore_ascii_case("eof") {
            None
        } else if digits(len) {
            Some(len.parse().map_err(|_| bad())?)
        } else {
            return Err(bad());
        };
        let r = ByteRange { offset, len };
        r.check(0)?;
        Ok(r)
    }
}

/// Checks a list of ranges: each usable, none overlapping, not too many.
pub fn validate_ranges(ranges: &[ByteRange]) -> Result<(), ValidationError> {
    if ranges.len() > MAX_RANGES_PER_FILE {
        return Err(ValidationError::TooManyRanges {
            given: ranges.len(),
        });
    }
    for (i, r) in ranges.iter().enumerate() {
        r.check(i)?;
    }
    // Sort a copy by offset; overlaps then show up between neighbours (or with an open range).
    let mut sorted: Vec<(usize, ByteRange)> = ranges.iter().copied().enumerate().collect();
    sorted.sort_by_key(|(i, r)| (r.offset, *i));
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.1.overlaps(&b.1) {
            let (first, second) = if a.0 < b.0 { (a, b) } else { (b, a) };
            return Err(ValidationError::OverlappingRanges { first, second });
        }
    }
    Ok(())
}

/// What identifies a version of a remote entity, from the first response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Validator {
    /// The `ETag` value, as sent (quotes included; may be weak `W/"…"`).
    pub etag: Option<String>,
    /// The `Last-Modified` value, as sent.
    pub last_modified: Option<String>,
    /// The full entity length.
    pub length: Option<u64>,
}

impl Validator {
    /// The strong ETag, if any (a weak one cannot be used with `If-Range`).
    pub fn strong_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| !e.starts_with("W/"))
    }

    /// True when `other` certainly names the same entity: equal strong ETags, or (without
    /// strong ETags on both sides) equal Last-Modified and equal length. Unknown is not same.
    pub fn same_entity(&self, other: &Validator) -> bool {
        if let (Some(a), Some(b)) = (self.strong_etag(), other.strong_etag()) {
            return a == b && lengths_agree(self.length, other.length);
        }
        match (&self.last_modified, &other.last_modified) {
            (Some(a), Some(b)) => a == b && self.length.is_some() && self.length == other.length,
            _ => false,
        }
    }
}

fn lengths_agree(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// One file of a job: where from, where to, which ranges, and its progress.
///
/// The source, destination and ranges are validated when the file is made and change only
/// through [`Job::set_remote_name`]; the progress fields are the engine's to update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    remote: Url,
    local: PathBuf,
    ranges: Vec<ByteRange>,
    /// Total bytes of this file (the entity, or the ranges' sum) once known.
    pub bytes_total: Option<u64>,
    /// Bytes written to the temporary file so far (as of the last checkpoint when loaded).
    pub bytes_done: u64,
    /// The validator of the entity being fetched, from the first response.
    pub validator: Option<Validator>,
    /// True once every byte of the file is written and synced.
    pub completed: bool,
}

impl FileSpec {
    /// A whole-file download of `remote` to the absolute path `local`.
    pub fn new(remote: Url, local: impl Into<PathBuf>) -> Result<Self, ValidationError> {
        Self::with_ranges(remote, local, Vec::new())
    }

    /// A download of these ranges of `remote`, concatenated in the given order into `local`.
    pub fn with_ranges(
        remote: Url,
        local: impl Into<PathBuf>,
        ranges: Vec<ByteRange>,
    ) -> Result<Self, ValidationError> {
        let local = local.into();
        validate_remote(&remote)?;
        validate_local(&local)?;
        validate_ranges(&ranges)?;
        Ok(FileSpec {
            remote,
            local,
            ranges,
            bytes_total: None,
            bytes_done: 0,
            validator: None,
            completed: false,
        })
    }

    /// The remote URL.
    pub fn remote(&self) -> &Url {
        &self.remote
    }

    /// The absolute destination path.
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// The byte ranges, in file order (empty = the whole entity).
    pub fn ranges(&self) -> &[ByteRange] {
        &self.ranges
    }

    /// The ranges' total length when every range has a length (None for whole files).
    pub fn ranges_len(&self) -> Option<u64> {
        if self.ranges.is_empty() {
            return None;
        }
        self.ranges
            .iter()
            .try_fold(0u64, |acc, r| r.len.and_then(|l| acc.checked_add(l)))
    }

    /// Forgets progress so the file restarts from byte zero (the entity changed).
    pub fn restart(&mut self) {
        self.bytes_total = None;
        self.bytes_done = 0;
        self.validator = None;
        self.completed = false;
    }
}

fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        // Cannot fail for URLs that already have a password.
        let _ = u.set_password(Some("***"));
    }
    let s = u.to_string();
    if s.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Checks a remote URL: http or https, a host, no credentials in it, not too long.
pub fn validate_remote(url: &Url) -> Result<(), ValidationError> {
    let err = |why| ValidationError::RemoteUrl {
        url: redacted(url),
        why,
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err("only http and https URLs can be transferred"));
    }
    if url.host().is_none() {
        return Err(err("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err(
            "credentials in the URL are not accepted: use set-credentials",
        ));
    }
    if url.as_str().len() > MAX_URL_LEN {
        return Err(err("the URL is longer than 2200 bytes"));
    }
    Ok(())
}

/// Checks a local path: absolute, naming a file (not a directory), no NUL byte.
pub fn validate_local(path: &Path) -> Result<(), ValidationError> {
    let err = |why| ValidationError::LocalPath {
        path: path.to_owned(),
        why,
    };
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(err("the path contains a NUL byte"));
    }
    if !path.is_absolute() {
        return Err(err("the path must be absolute"));
    }
    if bytes.ends_with(b"/") || path.file_name().is_none() || bytes.ends_with(b"/.") {
        return Err(err("the path names a directory, not a file"));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Other per-job settings
// ------------------------------------------------------------------------------------------

/// A program run (no shell, literal arguments) when the job becomes transferred or fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyCommand {
    /// The absolute path of the program.
    pub program: PathBuf,
    /// Its arguments, passed as they are.
    pub args: Vec<String>,
}

impl NotifyCommand {
    /// A validated command.
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Result<Self, ValidationError> {
        let c = NotifyCommand {
            program: program.into(),
            args,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the command: an absolute program path, no NUL anywhere.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let p = self.program.as_os_str();
        if p.is_empty() {
            return Err(ValidationError::Notify {
                why: "the program is empty",
            });
        }
        if p.as_bytes().contains(&0) || self.args.iter().any(|a| a.contains('\0')) {
            return Err(ValidationError::Notify {
                why: "the program or an argument contains a NUL byte",
            });
        }
        if !self.program.is_absolute() {
            return Err(ValidationError::Notify {
                why: "the program must be an absolute path (no PATH search, no shell)",
            });
        }
        if self.program.file_name().is_none() || p.as_bytes().ends_with(b"/") {
            return Err(ValidationError::Notify {
                why: "the program path names a directory",
            });
        }
        Ok(())
    }
}

/// Where a job's credentials are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialTarget {
    /// The origin server (401).
    Server,
    /// The proxy (407).
    Proxy,
}

impl CredentialTarget {
    /// The bitsadmin name (`SERVER`, `PROXY`).
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialTarget::Server => "SERVER",
            CredentialTarget::Proxy => "PROXY",
        }
    }
}

impl fmt::Display for CredentialTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialTarget {
    type Err = ValidationError;

    /// Parses `SERVER` or `PROXY`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "SERVER" => Ok(CredentialTarget::Server),
            "PROXY" => Ok(CredentialTarget::Proxy),
            _ => Err(ValidationError::Parse {
                what: "credential target",
                given: s.chars().take(80).collect(),
                expected: "SERVER or PROXY",
            }),
        }
    }
}

/// The authentication scheme credentials are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthScheme {
    /// RFC 7617 Basic (refused over plain http unless the session allows it).
    Basic,
    /// RFC 7616 Digest.
    Digest,
    /// NTLMv2.
    Ntlm,
    /// Negotiate (Kerberos / SPNEGO).
    Negotiate,
    /// A bearer token (the secret is the token; the user may be empty).
    Bearer,
}

impl AuthScheme {
    /// The bitsadmin-style name (`BASIC`, `DIGEST`, `NTLM`, `NEGOTIATE`, `BEARER`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Basic => "BASIC",
            AuthScheme::Digest => "DIGEST",
            AuthScheme::Ntlm => "NTLM",
            AuthScheme::Negotiate => "NEGOTIATE",
            AuthScheme::Bearer => "BEARER",
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthScheme {
    type Err = ValidationError;

    /// Parses a scheme name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "BASIC" => Ok(AuthScheme::Basic),
            "DIGEST" => Ok(AuthScheme::Digest),
            "NTLM" => Ok(AuthScheme::Ntlm),
            "NEGOTIATE" => Ok(AuthScheme::Negotiate),
            "BEARER" => Ok(AuthScheme::Bearer),
            _ => Err(ValidationError::Parse {
                what: "authentication scheme",
                given: s.chars().take(80).collect(),
                expected: "BASIC, DIGEST, NTLM, NEGOTIATE or BEARER",
            }),
        }
    }
}

/// A secret (password or token). Its `Debug` never shows it; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the code that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Credentials for one target of a job (bitsadmin `/setcredentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCredentials {
    /// Server or proxy.
    pub target: CredentialTarget,
    /// The scheme.
    pub scheme: AuthScheme,
    /// The user name (may be `DOMAIN\user` for NTLM; empty for a bearer token).
    pub user: String,
    /// The password or token.
    pub secret: Secret,
}

impl JobCredentials {
    /// Validated credentials.
    pub fn new(
        target: CredentialTarget,
        scheme: AuthScheme,
        user: impl Into<String>,
        secret: Secret,
    ) -> Result<Self, ValidationError> {
        let c = JobCredentials {
            target,
            scheme,
            user: user.into(),
            secret,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the credentials: a user (except for bearer), no control characters, and no `:`
    /// in a Basic user name (RFC 7617).
    pub fn validate(&self) -> Result<(), ValidationError> {
        let err = |why| Err(ValidationError::Credentials { why });
        if self.user.is_empty() && self.scheme != AuthScheme::Bearer {
            return err("the user name is empty");
        }
        if self.user.chars().any(char::is_control) {
            return err("the user name contains a control character");
        }
        if self.secret.0.contains(['\0', '\r', '\n']) {
            return err("the secret contains CR, LF or NUL");
        }
        if self.scheme == AuthScheme::Basic && self.user.contains(':') {
            return err("a Basic user name cannot contain ':'");
        }
        if self.scheme == AuthScheme::Bearer && self.secret.0.is_empty() {
            return err("the bearer token is empty");
        }
        if self.scheme == AuthScheme::Bearer && self.target == CredentialTarget::Proxy {
            return err("a bearer token cannot authenticate to a proxy");
        }
        if self.scheme == AuthScheme::Negotiate {
            // Accepting it would only fail every transfer later: there is no Kerberos here.
            return err("Negotiate (Kerberos) is not supported; use NTLM");
        }
        Ok(())
    }
}

/// Why a job is in error or transient error (BITS `IBackgroundCopyError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// The HTTP status, when the failure was an HTTP answer.
    pub status: Option<u16>,
    /// What happened, for people.
    pub message: String,
    /// True when the failure is retried after the delay.
    pub transient: bool,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.transient { "transient" } else { "final" };
        match self.status {
            Some(s) => write!(f, "{kind} error: HTTP {s}: {}", self.message),
            None => write!(f, "{kind} error: {}", self.message),
        }
    }
}

/// A job's progress (BITS `BG_JOB_PROGRESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    /// Total bytes, once every file's size is known.
    pub bytes_total: Option<u64>,
    /// Bytes transferred over all files.
    pub bytes_done: u64,
    /// Number of files.
    pub files_total: usize,
    /// Number of completed files.
    pub files_done: usize,
}

pub(crate) fn validate_display_name(name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(ValidationError::DisplayName {
            why: "the name is empty",
        });
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(ValidationError::DisplayName {
            why: "the name is longer than 256 characters",
        });
    }
    if name.chars().any(char::is_control) {
        return Err(ValidationError::DisplayName {
            why: "the name contains a control character",
        });
    }
    Ok(())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks custom headers: token names, values without CR/LF/NUL (or other controls but tab),
/// no header the engine sets itself, within the size limits.
pub fn validate_headers(headers: &[(String, String)]) -> Result<(), ValidationError> {
    if headers.len() > MAX_CUSTOM_HEADERS {
        return Err(ValidationError::HeadersTooLarge);
    }
    let mut total = 0usize;
    for (index, (name, value)) in headers.iter().enumerate() {
        let err = |why| ValidationError::Header {
            index,
            name: name.chars().take(80).collect(),
            why,
        };
        if name.is_empty() {
            return Err(err("the name is empty"));
        }
        if !name.bytes().all(is_tchar) {
            return Err(err(
                "the name must be an HTTP token (letters, digits, !#$%&'*+-.^_`|~)",
            ));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(err("the value contains CR, LF or NUL"));
        }
        if has_ctl_except_tab(value) {
            return Err(err("the value contains a control character"));
        }
        if RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            return Err(err("this header is set by ferry itself"));
        }
        total = total.saturating_add(name.len() + value.len());
    }
    if total > MAX_CUSTOM_HEADER_BYTES {
        return Err(ValidationError::HeadersTooLarge);
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Job
// ------------------------------------------------------------------------------------------

/// A BITS-style download job.
///
/// Fields are private so that every change is validated and checked against the state
/// table; read them through the accessors. `Debug` never prints secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub(crate) id: JobId,
    pub(crate) owner_uid: u32,
    pub(crate) display_name: String,
    pub(crate) priority: Priority,
    pub(crate) state: State,
    pub(crate) files: Vec<FileSpec>,
    pub(crate) created: u64,
    pub(crate) modified: u64,
    pub(crate) completed: Option<u64>,
    pub(crate) min_retry_delay_secs: u64,
    pub(crate) no_progress_timeout_secs: u64,
    pub(crate) notify: Option<NotifyCommand>,
    pub(crate) custom_headers: Vec<(String, String)>,
    pub(crate) server_credentials: Option<JobCredentials>,
    pub(crate) proxy_credentials: Option<JobCredentials>,
    pub(crate) proxy: ProxyChoice,
    pub(crate) redirect_policy: RedirectPolicy,
    pub(crate) allow_https_to_http: bool,
    pub(crate) dynamic_content: bool,
    pub(crate) rate_limit: Option<u64>,
    pub(crate) last_error: Option<JobError>,
    pub(crate) retry_at: Option<u64>,
    pub(crate) no_progress_since: Option<u64>,
    pub(crate) notify_due: Option<u64>,
}

impl Job {
    /// A new job, suspended, with BITS's defaults, created at `now`.
    pub fn new(
        id: JobId,
        owner_uid: u32,
        display_name: impl Into<String>,
        now: u64,
    ) -> Result<Self, ValidationError> {
        let display_name = display_name.into();
        validate_display_name(&display_name)?;
        Ok(Job {
            id,
            owner_uid,
            display_name,
            priority: Priority::Normal,
            state: State::Suspended,
            files: Vec::new(),
            created: now,
            modified: now,
            completed: None,
            min_retry_delay_secs: DEFAULT_MIN_RETRY_DELAY_SECS,
            no_progress_timeout_secs: DEFAULT_NO_PROGRESS_TIMEOUT_SECS,
            notify: None,
            custom_headers: Vec::new(),
            server_credentials: None,
            proxy_credentials: None,
            proxy: ProxyChoice::Session,
            redirect_policy: RedirectPolicy::Allow,
            allow_https_to_http: false,
            dynamic_content: false,
            rate_limit: None,
            last_error: None,
            retry_at: None,
            no_progress_since: None,
            notify_due: None,
        })
    }

    // --- accessors ---

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }
    /// The uid of the local user who owns the job.
    pub fn owner_uid(&self) -> u32 {
        self.owner_uid
    }
    /// The display name (not unique).
    pub fn display_name(&self) -> &str {
        &self.display_name
    }
    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }
    /// The BITS state.
    pub fn state(&self) -> State {
        self.state
    }
    /// The files, in transfer order.
    pub fn files(&self) -> &[FileSpec] {
        &self.files
    }
    /// Creation time (unix seconds).
    pub fn created(&self) -> u64 {
        self.created
    }
    /// Time of the last change of state or property (unix seconds).
    pub fn modified(&self) -> u64 {
        self.modified
    }
    /// When the job last became transferred (unix seconds), as BITS's completion time.
    pub fn completed(&self) -> Option<u64> {
        self.completed
    }
    /// Minimum delay before a transient error is retried, in seconds (≥ 5).
    pub fn min_retry_delay_secs(&self) -> u64 {
        self.min_retry_delay_secs
    }
    /// How long transient errors are retried without progress, in seconds (0 = never).
    pub fn no_progress_timeout_secs(&self) -> u64 {
        self.no_progress_timeout_secs
    }
    /// The notify command, if any.
    pub fn notify(&self) -> Option<&NotifyCommand> {
        self.notify.as_ref()
    }
    /// Extra headers sent with every request of the job.
    pub fn custom_headers(&self) -> &[(String, String)] {
        &self.custom_headers
    }
    /// Credentials for `target`, if set.
    pub fn credentials(&self, target: CredentialTarget) -> Option<&JobCredentials> {
        match target {
            CredentialTarget::Server => self.server_credentials.as_ref(),
            CredentialTarget::Proxy => self.proxy_credentials.as_ref(),
        }
    }
    /// The proxy choice.
    pub fn proxy(&self) -> &ProxyChoice {
        &self.proxy
    }
    /// The redirect policy.
    pub fn redirect_policy(&self) -> RedirectPolicy {
        self.redirect_policy
    }
    /// Whether a redirect from https to http may be followed.
    pub fn allow_https_to_http(&self) -> bool {
        self.allow_https_to_http
    }
    /// Whether content without range support is accepted (an interruption restarts it).
    pub fn dynamic_content(&self) -> bool {
        self.dynamic_content
    }
    /// The job's own rate cap in bytes per second, if any.
    pub fn rate_limit(&self) -> Option<u64> {
        self.rate_limit
    }
    /// The last error, while the job is in error or transient error.
    pub fn last_error(&self) -> Option<&JobError> {
        self.last_error.as_ref()
    }
    /// When a transient error is retried (wall-clock seconds).
    pub fn retry_at(&self) -> Option<u64> {
        self.retry_at
    }
    /// Since when the job has made no progress despite errors (wall-clock seconds).
    pub fn no_progress_since(&self) -> Option<u64> {
        self.no_progress_since
    }
    /// When the no-progress timeout ends, while the job is failing.
    pub fn no_progress_deadline(&self) -> Option<u64> {
        self.no_progress_since
            .map(|s| s.saturating_add(self.no_progress_timeout_secs))
    }
    /// When the notify command is due (set on becoming transferred or error).
    pub fn notify_due(&self) -> Option<u64> {
        self.notify_due
    }

    /// Progress over all files.
    pub fn progress(&self) -> JobProgress {
        JobProgress {
            bytes_total: self.bytes_total(),
            bytes_done: self.bytes_done(),
            files_total: self.files.len(),
            files_done: self.files_done(),
        }
    }
    /// Total bytes when every file's size is known (BITS reports unknown until then).
    pub fn bytes_total(&self) -> Option<u64> {
        self.files
            .iter()
            .try_fold(0u64, |acc, f| f.bytes_total.map(|t| acc.saturating_add(t)))
    }
    /// Bytes transferred over all files.
    pub fn bytes_done(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(f.bytes_done))
    }
    /// Number of completed files.
    pub fn files_done(&self) -> usize {
        self.files.iter().filter(|f| f.completed).count()
    }
    /// The files `complete` keeps (the completed ones); the others' temporary files go.
    pub fn kept_files(&self) -> impl Iterator<Item = (usize, &FileSpec)> {
        self.files.iter().enumerate().filter(|(_, f)| f.completed)
    }
    /// The first file not yet completed (files transfer one after another).
    pub fn current_file(&self) -> Option<usize> {
        self.files.iter().position(|f| !f.completed)
    }

    // --- state ---

    fn check(&self, verb: Verb) -> Result<State, ValidationError> {
        Ok(state::apply(self.state, verb)?)
    }

    /// Applies a verb or engine event through the state table, with its side effects:
    /// `resume` needs a file and clears the error and retry time; becoming transferred sets
    /// the completion time; becoming transferred or error makes the notify command due;
    /// progress resets the no-progress timer. Returns the new state.
    pub fn apply(&mut self, verb: Verb, now: u64) -> Result<State, ValidationError> {
        let to = self.check(verb)?;
        if verb == Verb::Resume && self.files.is_empty() {
            return Err(ValidationError::NoFiles);
        }
        let from = self.state;
        self.state = to;
        self.modified = now;
        match verb {
            Verb::Resume if from != to => {
                self.last_error = None;
                self.retry_at = None;
                self.no_progress_since = None;
            }
            Verb::Progress => self.no_progress_since = None,
            Verb::AllDone => {
                // Every byte arrived: an error from an earlier attempt is history.
                self.no_progress_since = None;
                self.last_error = None;
            }
            Verb::RetryDue => self.retry_at = None,
            _ => {}
        }
        if !matches!(to, State::TransientError) {
            self.retry_at = None;
        }
        if to == State::Transferred && from != State::Transferred {
            self.completed = Some(now);
        }
        if from != to {
            self.notify_due = match to {
                State::Transferred | State::Error if self.notify.is_some() => Some(now),
                _ => None,
            };
        }
        Ok(to)
    }

    /// Records a failure of the running job and picks its next state as BITS does: a final
    /// error, a no-progress timeout of 0, or a retry that would come after the no-progress
    /// deadline gives [`State::Error`]; otherwise [`State::TransientError`] with `retry_at =
    /// now + min_retry_delay`. Returns the new state.
    pub fn fail(&mut self, error: JobError, now: u64) -> Result<State, ValidationError> {
        let since = self.no_progress_since.unwrap_or(now);
        let retry = now.saturating_add(self.min_retry_delay_secs);
        let deadline = since.saturating_add(self.no_progress_timeout_secs);
        let fatal = !error.transient || self.no_progress_timeout_secs == 0 || retry > deadline;
        let verb = if fatal {
            Verb::FatalFailure
        } else {
            Verb::TransientFailure
        };
        let to = self.apply(verb, now)?;
        self.last_error = Some(error);
        self.no_progress_since = Some(since);
        if !fatal {
            self.retry_at = Some(retry);
        }
        Ok(to)
    }

    /// Puts a queued or running job in transient error for a reason outside the transfer
    /// (the bandwidth policy blocks it): no retry timer and no no-progress accounting, so it
    /// can never turn into a final error; the engine queues it again when the reason ends.
    pub fn hold_transient(&mut self, error: JobError, now: u64) -> Result<State, ValidationError> {
        let since = self.no_progress_since;
        let to = self.apply(Verb::TransientFailure, now)?;
        self.last_error = Some(error);
        self.no_progress_since = since;
        self.retry_at = None;
        Ok(to)
    }

    /// Moves the retry of a job in transient error to no earlier than `at` (a server's
    /// `Retry-After` longer than the minimum retry delay). Other states are left alone.
    pub fn postpone_retry(&mut self, at: u64) {
        if self.state == State::TransientError {
            self.retry_at = Some(self.retry_at.map_or(at, |r| r.max(at)));
        }
    }

    /// The timer event due at `now`, if any: [`Verb::NoProgressTimeout`] once the deadline
    /// passed, else [`Verb::RetryDue`] once the retry time came (transient error only). A
    /// transient error without a retry time (network loss, blocked by policy) has no timer:
    /// the engine sends [`Verb::RetryDue`] itself when the network or the window returns.
    pub fn due_event(&self, now: u64) -> Option<Verb> {
        if self.state != State::TransientError {
            return None;
        }
        if self.no_progress_deadline().is_some_and(|d| now >= d) {
            return Some(Verb::NoProgressTimeout);
        }
        if self.retry_at.is_some_and(|r| now >= r) {
            return Some(Verb::RetryDue);
        }
        None
    }

    /// Records that the notify command ran: `success` clears it, a failure (non-zero exit)
    /// makes it due again after the minimum retry delay while the job is not completed.
    pub fn notify_ran(&mut self, success: bool, now: u64) {
        self.notify_due = if success || self.state.is_final() || self.notify.is_none() {
            None
        } else {
            Some(now.saturating_add(self.min_retry_delay_secs))
        };
    }

    // --- caller mutators (each checked against the table) ---

    /// Adds a file (only while suspended). Returns its index.
    pub fn add_file(&mut self, file: FileSpec, now: u64) -> Result<usize, ValidationError> {
        self.check(Verb::AddFile)?;
        if self.files.len() >= MAX_FILES_PER_JOB {
            return Err(ValidationError::TooManyFiles);
        }
        validate_remote(&file.remote)?;
        validate_local(&file.local)?;
        validate_ranges(&file.ranges)?;
        if self.dynamic_content && !file.ranges.is_empty() {
            return Err(ValidationError::RangesWithDynamicContent);
        }
        if let Some(existing) = self.files.iter().position(|f| f.local == file.local) {
            return Err(ValidationError::DuplicateLocalPath {
                path: file.local,
                existing,
            });
        }
        self.files.push(file);
        self.modified = now;
        Ok(self.files.len() - 1)
    }

    /// Changes a file's remote URL (suspended, transient error or error). Progress and the
    /// validator are kept: the next attempt resumes only if the new source's validator
    /// matches, otherwise that file restarts (decided by the engine).
    pub fn set_remote_name(
        &mut self,
        index: usize,
        remote: Url,
        now: u64,
    ) -> Result<(), ValidationError> {
        self.check(Verb::SetRemoteName)?;
        validate_remote(&remote)?;
        let files = self.files.len();
        let f = self
            .files
            .get_mut(index)
            .ok_or(ValidationError::NoSuchFile { index, files })?;
        f.remote = remote;
        self.modified = now;
        Ok(())
    }

    /// Records the final URL of a followed redirect as the file's remote name (engine side;
    /// only under [`RedirectPolicy::AllowReport`]).
    pub fn report_redirect(
        &mut self,
        index: usize,
        final_url: Url,
        now: u64,
    ) -> Result<(), ValidationError> {
        if self.state.is_final() {
            return Err(IllegalTransition {
                state: self.state,
                verb: Verb::SetRemoteName,
            }
            .into());
        }
        if self.redirect_policy != RedirectPolicy::AllowReport {
            return Err(ValidationError::RedirectNotReported);
        }
        validate_remote(&final_url)?;
        let files = self.files.len();
        let f = self
            .files
            .get_mut(index)
            .ok_or(ValidationError::NoSuchFile { index, files })?;
        f.remote = final_url;
        self.modified = now;
        Ok(())
    }

    /// The engine's mutable view of a file's progress fields (source and ranges stay fixed).
    pub fn file_mut(&mut self, index: usize) -> Result<&mut FileSpec, ValidationError> {
        let files = self.files.len();
        self.files
            .get_mut(index)
            .ok_or(ValidationError::NoSuchFile { index, files })
    }

    /// Changes the priority.
    pub fn set_priority(&mut self, p: Priority, now: u64) -> Result<(), ValidationError> {
        self.check(Verb::SetPriority)?;
        self.priority = p;
        self.modified = now;
        Ok(())
    }

    fn set_property(&mut self, now: u64) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        self.modified = now;
        Ok(())
    }

    /// Changes the display name.
    pub fn set_display_name(
        &mut self,
        name: impl Into<String>,
        now: u64,
    ) -> Result<(), ValidationError> {
        let name = name.into();
        self.check(Verb::SetProperty)?;
        validate_display_name(&name)?;
        self.display_name = name;
        self.set_property(now)
    }

    /// Sets the minimum retry delay; values below 5 s are raised to 5 s. Returns the value set.
    pub fn set_min_retry_delay_secs(
        &mut self,
        secs: u64,
        now: u64,
    ) -> Result<u64, ValidationError> {
        self.check(Verb::SetProperty)?;
        self.min_retry_delay_secs = secs.max(MIN_RETRY_DELAY_FLOOR_SECS);
        self.set_property(now)?;
        Ok(self.min_retry_delay_secs)
    }

    /// Sets the no-progress timeout (0 = the first error is final).
    pub fn set_no_progress_timeout_secs(
        &mut self,
        secs: u64,
        now: u64,
    ) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        self.no_progress_timeout_secs = secs;
        self.set_property(now)
    }

    /// Sets or clears the notify command.
    pub fn set_notify(
        &mut self,
        cmd: Option<NotifyCommand>,
        now: u64,
    ) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        if let Some(c) = &cmd {
            c.validate()?;
        } else {
            self.notify_due = None;
        }
        self.notify = cmd;
        self.set_property(now)
    }

    /// Replaces the custom headers.
    pub fn set_custom_headers(
        &mut self,
        headers: Vec<(String, String)>,
        now: u64,
    ) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        validate_headers(&headers)?;
        self.custom_headers = headers;
        self.set_property(now)
    }

    /// Sets the credentials for their target (replacing that target's previous ones).
    pub fn set_credentials(
        &mut self,
        creds: JobCredentials,
        now: u64,
    ) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        creds.validate()?;
        match creds.target {
            CredentialTarget::Server => self.server_credentials = Some(creds),
            CredentialTarget::Proxy => self.proxy_credentials = Some(creds),
        }
        self.set_property(now)
    }

    /// Removes the credentials for `target`.
    pub fn remove_credentials(
        &mut self,
        target: CredentialTarget,
        now: u64,
    ) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        match target {
            CredentialTarget::Server => self.server_credentials = None,
            CredentialTarget::Proxy => self.proxy_credentials = None,
        }
        self.set_property(now)
    }

    /// Sets the proxy choice.
    pub fn set_proxy(&mut self, proxy: ProxyChoice, now: u64) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        proxy.validate()?;
        self.proxy = proxy;
        self.set_property(now)
    }

    /// Sets the redirect policy and whether https→http redirects are allowed.
    pub fn set_redirect_policy(
        &mut self,
        policy: RedirectPolicy,
        allow_https_to_http: bool,
        now: u64,
    ) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        self.redirect_policy = policy;
        self.allow_https_to_http = allow_https_to_http;
        self.set_property(now)
    }

    /// Allows or forbids dynamic content (refused on a job whose files have ranges).
    pub fn set_dynamic_content(&mut self, on: bool, now: u64) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        if on && self.files.iter().any(|f| !f.ranges.is_empty()) {
            return Err(ValidationError::RangesWithDynamicContent);
        }
        self.dynamic_content = on;
        self.set_property(now)
    }

    /// Sets or clears the job's rate cap (bytes per second; 0 is treated as no cap).
    pub fn set_rate_limit(&mut self, limit: Option<u64>, now: u64) -> Result<(), ValidationError> {
        self.check(Verb::SetProperty)?;
        self.rate_limit = limit.filter(|&l| l > 0);
        self.set_property(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_formats() {
        let id = JobId::from_bytes([
            0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x49, 0x68, 0x87, 0x76, 0x65, 0x54, 0x43, 0x32,
            0x21, 0x10,
        ]);
        assert_eq!(id.to_string(), "{0F1E2D3C-4B5A-4968-8776-655443322110}");
        assert_eq!(id.simple(), "0f1e2d3c4b5a49688776655443322110");
        for s in [
            "{0F1E2D3C-4B5A-4968-8776-655443322110}",
            "0f1e2d3c-4b5a-4968-8776-655443322110",
            "0f1e2d3c4b5a49688776655443322110",
        ] {
            assert_eq!(s.parse::<JobId>(), Ok(id), "{s}");
        }
        for s in [
            "",
            "{}",
            "{0F1E2D3C-4B5A-4968-8776-655443322110",
            "0f1e2d3c-4b5a-4968-8776-65544332211",
            "0f1e2d3c-4b5a-4968-8776-65544332211g",
            "0f1e2d3c+4b5a-4968-8776-655443322110",
            "é",
        ] {
            assert!(s.parse::<JobId>().is_err(), "{s}");
        }
    }
}
