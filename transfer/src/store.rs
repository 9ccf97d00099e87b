//! Persistence of jobs in an embedded SQLite database (rusqlite, bundled).
//!
//! One file per user, by default `$XDG_DATA_HOME/ferry/jobs.db` ([`default_path`]); the
//! directory is created 0700 and the file 0600 (checked, and tightened if wider), because it
//! holds the jobs' credentials in clear for their owner. Nothing here prints a secret.
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a committed checkpoint survives a
//! crash or a power cut, and several handles (the service and a CLI) can use it at once. The
//! schema version is SQLite's `user_version`; [`Store::open`] migrates older files and refuses
//! newer ones. Numbers are `u64` in Rust and stored bit-for-bit in SQLite's signed 64-bit
//! integers. Paths are stored as their raw bytes, so non-UTF-8 names round-trip.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};
use url::Url;

use crate::job::{
    validate_display_name, validate_headers, ByteRange, CredentialTarget, FileSpec, Job,
    JobCredentials, JobError, JobId, NotifyCommand, ProxyChoice, Secret, Validator,
    MIN_RETRY_DELAY_FLOOR_SECS,
};
use crate::state::State;

/// The schema version this code writes (SQLite `user_version`).
pub const SCHEMA_VERSION: i64 = 1;
/// Most unfinished jobs one user may have (BITS' per-user default of its "maximum number of
/// BITS jobs for each user" policy is 60; its per-machine limit is 300). Acknowledged and
/// cancelled jobs do not count; the service purges them after [`KEEP_FINISHED_SECS`].
pub const MAX_JOBS_PER_USER: usize = 60;
/// How long acknowledged and cancelled jobs stay listed before the service purges them.
pub const KEEP_FINISHED_SECS: u64 = 7 * 24 * 3600;

/// How long a handle waits for another handle's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// A file-system operation on `path` failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An SQLite operation failed.
    Sqlite {
        /// What was being done.
        op: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The path exists but is not a regular file.
    NotAFile(PathBuf),
    /// No job has this id.
    NotFound(JobId),
    /// A job with this id is already stored.
    AlreadyExists(JobId),
    /// The owner already has [`MAX_JOBS_PER_USER`] unfinished jobs.
    TooManyJobs {
        /// The owner.
        owner: u32,
        /// The limit.
        limit: usize,
    },
    /// The job has no file with this index.
    NoSuchFile {
        /// The job.
        job: JobId,
        /// The index asked for.
        index: usize,
    },
    /// The database was written by a newer ferry.
    SchemaTooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A stored value does not make a valid job (edited by hand, or a bug).
    Corrupt {
        /// The job's id as stored.
        job: String,
        /// What is wrong.
        what: String,
    },
    /// Neither `XDG_DATA_HOME` nor `HOME` is set to an absolute path.
    NoDataDir,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, source } => {
                write!(
                    f,
                    "job database: cannot {op} '{}': {source}",
                    path.display()
                )
            }
            StoreError::Sqlite { op, source } => write!(f, "job database: {op}: {source}"),
            StoreError::NotAFile(p) => {
                write!(f, "job database '{}' is not a regular file", p.display())
            }
            StoreError::NotFound(id) => write!(f, "no job {id}"),
            StoreError::AlreadyExists(id) => write!(f, "job {id} already exists"),
            StoreError::TooManyJobs { owner, limit } => write!(
                f,
                "uid {owner} already has {limit} unfinished jobs (MAX_JOBS_PER_USER); \
                 complete or cancel some first"
            ),
            StoreError::NoSuchFile { job, index } => write!(f, "job {job} has no file #{index}"),
            StoreError::SchemaTooNew { found, supported } => write!(
                f,
                "job database schema version {found} is newer than this ferry supports \
                 ({supported}): upgrade ferry"
            ),
            StoreError::Corrupt { job, what } => {
                write!(f, "job database: job {job} is corrupt: {what}")
            }
            StoreError::NoDataDir => f.write_str(
                "cannot locate the job database: neither XDG_DATA_HOME nor HOME is an absolute \
                 path",
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Sqlite { source, .. } => Some(source),
            _ => None,
        }
    }
}

trait Ctx<T> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { op, source })
    }
}

/// The default database path: `$XDG_DATA_HOME/ferry/jobs.db`, else
/// `$HOME/.local/share/ferry/jobs.db`. `env` looks a variable up (pass `std::env::var_os`);
/// empty or relative values are ignored, as the XDG spec says.
pub fn default_path(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, StoreError> {
    let abs = |k: &str| env(k).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(d) = abs("XDG_DATA_HOME") {
        return Ok(d.join("ferry").join("jobs.db"));
    }
    if let Some(h) = abs("HOME") {
        return Ok(h.join(".local/share/ferry/jobs.db"));
    }
    Err(StoreError::NoDataDir)
}

/// A segment checkpoint of a file fetched over several connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First byte of the segment (in the file being written).
    pub start: u64,
    /// The byte after the segment's last one; None = to the end.
    pub end: Option<u64>,
    /// Bytes of the segment written and synced.
    pub done: u64,
}

/// A handle on the job database. Several handles (in one process or several) may be open on
/// the same file at once.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn to_i(v: u64) -> i64 {
    // Bit-for-bit: u64 values above i64::MAX come back unchanged through `from_i`.
    v as i64
}

fn from_i(v: i64) -> u64 {
    v as u64
}

fn opt_to_i(v: Option<u64>) -> Option<i64> {
    v.map(to_i)
}

fn opt_from_i(v: Option<i64>) -> Option<u64> {
    v.map(from_i)
}

fn idx_to_i(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

const SCHEMA_V1: &str = "
CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY NOT NULL,
    owner_uid           INTEGER NOT NULL,
    display_name        TEXT NOT NULL,
    priority            TEXT NOT NULL,
    state               TEXT NOT NULL,
    created             INTEGER NOT NULL,
    modified            INTEGER NOT NULL,
    completed           INTEGER,
    min_retry_delay     INTEGER NOT NULL,
    no_progress_timeout INTEGER NOT NULL,
    notify_program      BLOB,
    proxy_kind          TEXT NOT NULL,
    proxy_list          TEXT,
    proxy_bypass        TEXT,
    redirect_policy     TEXT NOT NULL,
    allow_https_to_http INTEGER NOT NULL,
    dynamic_content     INTEGER NOT NULL,
    rate_limit          INTEGER,
    error_status        INTEGER,
    error_message       TEXT,
    error_transient     INTEGER,
    retry_at            INTEGER,
    no_progress_since   INTEGER,
    notify_due          INTEGER
);
CREATE INDEX jobs_by_owner ON jobs (owner_uid, created);
CREATE TABLE notify_args (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx    INTEGER NOT NULL,
    arg    TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE headers (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx    INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE credentials (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    scheme TEXT NOT NULL,
    user   TEXT NOT NULL,
    secret TEXT NOT NULL,
    PRIMARY KEY (job_id, target)
);
CREATE TABLE files (
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    remote        TEXT NOT NULL,
    local         BLOB NOT NULL,
    bytes_total   INTEGER,
    bytes_done    INTEGER NOT NULL,
    has_validator INTEGER NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    length        INTEGER,
    completed     INTEGER NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE ranges (
    job_id   TEXT NOT NULL,
    file_idx INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    offset   INTEGER NOT NULL,
    len      INTEGER,
    PRIMARY KEY (job_id, file_idx, idx),
    FOREIGN KEY (job_id, file_idx) REFERENCES files (job_id, idx) ON DELETE CASCADE
);
CREATE TABLE checkpoints (
    job_id   TEXT NOT NULL,
    file_idx INTEGER NOT NULL,
    segment  INTEGER NOT NULL,
    start    INTEGER NOT NULL,
    end_     INTEGER,
    done     INTEGER NOT NULL,
    PRIMARY KEY (job_id, file_idx, segment),
    FOREIGN KEY (job_id, file_idx) REFERENCES files (job_id, idx) ON DELETE CASCADE
);
";

impl Store {
    /// Opens (creating if needed) the database at `path`: the parent directory is created
    /// with mode 0700, the file with 0600 (a wider existing mode is tightened), WAL and
    /// `synchronous=FULL` are set, and the schema is created or migrated.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let io_err = |op, p: &Path| {
            let p = p.to_owned();
            move |source| StoreError::Io {
                op,
                path: p,
                source,
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(io_err("create the directory", parent))?;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let meta = file.metadata().map_err(io_err("inspect", &path))?;
        if !meta.is_file() {
            return Err(StoreError::NotAFile(path));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(Permissions::from_mode(0o600))
                .map_err(io_err("restrict the permissions of", &path))?;
        }
        drop(file);

        let conn = Connection::open(&path).ctx("open")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("set the busy timeout")?;
        // journal_mode answers with the mode in force; it must be WAL.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx("enable WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                op: "enable WAL",
                source: rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode is {mode}, not wal"
                )),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .ctx("set synchronous=FULL")?;
        conn.pragma_update(None, "foreign_keys", true)
            .ctx("enable foreign keys")?;
        let mut store = Store { conn, path };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin the migration")?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .ctx("read the schema version")?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < 1 {
            tx.execute_batch(SCHEMA_V1).ctx("create the schema (v1)")?;
        }
        // Later versions: `if found < 2 { … }`, each step in this same transaction.
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .ctx("write the schema version")?;
        tx.commit().ctx("commit the migration")
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .ctx("read the schema version")
    }

    /// Stores a new job; refuses an id that is already stored.
    pub fn insert_job(&mut self, job: &Job) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin")?;
        let exists = job_exists(&tx, &job.id)?;
        if exists {
            return Err(StoreError::AlreadyExists(job.id));
        }
        let unfinished: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE owner_uid = ?1 AND state NOT IN (?2, ?3)",
                params![
                    i64::from(job.owner_uid()),
                    State::Acknowledged.as_str(),
                    State::Cancelled.as_str()
                ],
                |r| r.get(0),
            )
            .ctx("count the owner's jobs")?;
        if usize::try_from(unfinished).unwrap_or(usize::MAX) >= MAX_JOBS_PER_USER {
            return Err(StoreError::TooManyJobs {
                owner: job.owner_uid(),
                limit: MAX_JOBS_PER_USER,
            });
        }
        write_job_row(&tx, job, true)?;
        write_children(&tx, job)?;
        tx.commit().ctx("commit the new job")
    }

    /// Replaces a stored job with `job` (every field and file), in one transaction. Segment
    /// checkpoints of files that still exist are kept.
    pub fn update_job(&mut self, job: &Job) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin")?;
        if !job_exists(&tx, &job.id)? {
            return Err(StoreError::NotFound(job.id));
        }
        write_job_row(&tx, job, false)?;
        write_children(&tx, job)?;
        tx.commit().ctx("commit the job update")
    }

    /// Loads a job.
    pub fn load_job(&self, id: &JobId) -> Result<Job, StoreError> {
        let tx = self.conn.unchecked_transaction().ctx("begin")?;
        let job = read_job(&tx, &id.to_string())?.ok_or(StoreError::NotFound(*id))?;
        tx.finish().ctx("end the read")?;
        Ok(job)
    }

    /// Loads every job of `owner` (None = every user's, for root), oldest first.
    pub fn list_jobs(&self, owner: Option<u32>) -> Result<Vec<Job>, StoreError> {
        let tx = self.conn.unchecked_transaction().ctx("begin")?;
        let ids: Vec<String> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id FROM jobs WHERE (?1 IS NULL OR owner_uid = ?1) ORDER BY created, id",
                )
                .ctx("list jobs")?;
            let rows = stmt
                .query_map(params![owner.map(i64::from)], |r| r.get(0))
                .ctx("list jobs")?;
            rows.collect::<rusqlite::Result<_>>().ctx("list jobs")?
        };
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            // A job deleted between the two reads cannot happen inside the transaction.
            if let Some(j) = read_job(&tx, &id)? {
                jobs.push(j);
            }
        }
        tx.finish().ctx("end the read")?;
        Ok(jobs)
    }

    /// Deletes acknowledged and cancelled jobs last modified before `before` (Unix seconds).
    /// Returns how many went.
    pub fn purge_finished(&mut self, before: u64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM jobs WHERE state IN (?1, ?2) AND modified < ?3",
                params![
                    State::Acknowledged.as_str(),
                    State::Cancelled.as_str(),
                    to_i(before)
                ],
            )
            .ctx("purge finished jobs")
    }

    /// Deletes a job and everything stored with it.
    pub fn delete_job(&mut self, id: &JobId) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM jobs WHERE id = ?1", params![id.to_string()])
            .ctx("delete the job")?;
        if n == 0 {
            return Err(StoreError::NotFound(*id));
        }
        Ok(())
    }

    /// Records a checkpoint of one file: bytes done and the validator (None clears it). One
    /// UPDATE, cheap enough for every checkpoint.
    pub fn record_progress(
        &self,
        job: &JobId,
        file_index: usize,
        bytes_done: u64,
        validator: Option<&Validator>,
    ) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE files SET bytes_done = ?3, has_validator = ?4, etag = ?5, \
                 last_modified = ?6, length = ?7 WHERE job_id = ?1 AND idx = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    job.to_string(),
                    idx_to_i(file_index),
                    to_i(bytes_done),
                    validator.is_some(),
                    validator.and_then(|v| v.etag.as_deref()),
                    validator.and_then(|v| v.last_modified.as_deref()),
                    validator.and_then(|v| opt_to_i(v.length)),
                ])
            })
            .ctx("record progress")?;
        if n == 0 {
            return Err(missing(&self.conn, job, file_index));
        }
        Ok(())
    }

    /// Records every progress field of one file (total, done, validator, completed) in one
    /// UPDATE. The remote URL, path and ranges change only through [`Store::update_job`].
    pub fn record_file(
        &self,
        job: &JobId,
        file_index: usize,
        file: &FileSpec,
    ) -> Result<(), StoreError> {
        let v = file.validator.as_ref();
        let n = self
            .conn
            .prepare_cached(
                "UPDATE files SET bytes_total = ?3, bytes_done = ?4, has_validator = ?5, \
                 etag = ?6, last_modified = ?7, length = ?8, completed = ?9 \
                 WHERE job_id = ?1 AND idx = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    job.to_string(),
                    idx_to_i(file_index),
                    opt_to_i(file.bytes_total),
                    to_i(file.bytes_done),
                    v.is_some(),
                    v.and_then(|v| v.etag.as_deref()),
                    v.and_then(|v| v.last_modified.as_deref()),
                    v.and_then(|v| opt_to_i(v.length)),
                    file.completed,
                ])
            })
            .ctx("record the file's progress")?;
        if n == 0 {
            return Err(missing(&self.conn, job, file_index));
        }
        Ok(())
    }

    /// Replaces the segment checkpoints of one file (a segmented download's layout).
    pub fn save_segments(
        &mut self,
        job: &JobId,
        file_index: usize,
        segments: &[Segment],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin")?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE job_id = ?1 AND idx = ?2)",
                params![job.to_string(), idx_to_i(file_index)],
                |r| r.get(0),
            )
            .ctx("find the file")?;
        if !exists {
            return Err(missing(&tx, job, file_index));
        }
        tx.execute(
            "DELETE FROM checkpoints WHERE job_id = ?1 AND file_idx = ?2",
            params![job.to_string(), idx_to_i(file_index)],
        )
        .ctx("clear the segments")?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO checkpoints (job_id, file_idx, segment, start, end_, done) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .ctx("save the segments")?;
            for (i, s) in segments.iter().enumerate() {
                ins.execute(params![
                    job.to_string(),
                    idx_to_i(file_index),
                    idx_to_i(i),
                    to_i(s.start),
                    opt_to_i(s.end),
                    to_i(s.done),
                ])
                .ctx("save the segments")?;
            }
        }
        tx.commit().ctx("commit the segments")
    }

    /// Records one segment's progress (one UPDATE).
    pub fn record_segment(
        &self,
        job: &JobId,
        file_index: usize,
        segment: usize,
        done: u64,
    ) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE checkpoints SET done = ?4 WHERE job_id = ?1 AND file_idx = ?2 \
                 AND segment = ?3",
            )
            .and_then(|mut s| {
                s.execute(params![
                    job.to_string(),
                    idx_to_i(file_index),
                    idx_to_i(segment),
                    to_i(done)
                ])
            })
            .ctx("record the segment's progress")?;
        if n == 0 {
            return Err(missing(&self.conn, job, file_index));
        }
        Ok(())
    }

    /// The segment checkpoints of one file, in order (empty when it was never segmented).
    pub fn load_segments(
        &self,
        job: &JobId,
        file_index: usize,
    ) -> Result<Vec<Segment>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start, end_, done FROM checkpoints WHERE job_id = ?1 AND file_idx = ?2 \
                 ORDER BY segment",
            )
            .ctx("load the segments")?;
        let rows = stmt
            .query_map(params![job.to_string(), idx_to_i(file_index)], |r| {
                Ok(Segment {
                    start: from_i(r.get(0)?),
                    end: opt_from_i(r.get(1)?),
                    done: from_i(r.get(2)?),
                })
            })
            .ctx("load the segments")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx("load the segments")
    }
}

/// The error for an update that matched no row: which of job and file is missing.
fn missing(conn: &Connection, job: &JobId, file_index: usize) -> StoreError {
    match job_exists(conn, job) {
        Ok(false) => StoreError::NotFound(*job),
        Ok(true) => StoreError::NoSuchFile {
            job: *job,
            index: file_index,
        },
        Err(e) => e,
    }
}

fn job_exists(conn: &Connection, id: &JobId) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)",
        params![id.to_string()],
        |r| r.get(0),
    )
    .ctx("find the job")
}

fn proxy_columns(p: &ProxyChoice) -> (&'static str, Option<&str>, Option<&str>) {
    match p {
        ProxyChoice::Session => ("session", None, None),
        ProxyChoice::None => ("none", None, None),
        ProxyChoice::Override { proxy, bypass } => ("override", Some(proxy), Some(bypass)),
    }
}

fn write_job_row(tx: &Transaction<'_>, job: &Job, insert: bool) -> Result<(), StoreError> {
    let (pk, pl, pb) = proxy_columns(&job.proxy);
    let err = job.last_error.as_ref();
    let sql = if insert {
        "INSERT INTO jobs (id, owner_uid, display_name, priority, state, created, modified, \
         completed, min_retry_delay, no_progress_timeout, notify_program, proxy_kind, proxy_list, \
         proxy_bypass, redirect_policy, allow_https_to_http, dynamic_content, rate_limit, \
         error_status, error_message, error_transient, retry_at, no_progress_since, notify_due) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21, ?22, ?23, ?24)"
    } else {
        "UPDATE jobs SET owner_uid = ?2, display_name = ?3, priority = ?4, state = ?5, \
         created = ?6, modified = ?7, completed = ?8, min_retry_delay = ?9, \
         no_progress_timeout = ?10, notify_program = ?11, proxy_kind = ?12, proxy_list = ?13, \
         proxy_bypass = ?14, redirect_policy = ?15, allow_https_to_http = ?16, \
         dynamic_content = ?17, rate_limit = ?18, error_status = ?19, error_message = ?20, \
         error_transient = ?21, retry_at = ?22, no_progress_since = ?23, notify_due = ?24 \
         WHERE id = ?1"
    };
    let r = tx.execute(
        sql,
        params![
            job.id.to_string(),
            i64::from(job.owner_uid),
            job.display_name,
            job.priority.as_str(),
            job.state.as_str(),
            to_i(job.created),
            to_i(job.modified),
            opt_to_i(job.completed),
            to_i(job.min_retry_delay_secs),
            to_i(job.no_progress_timeout_secs),
            job.notify
                .as_ref()
                .map(|n| n.program.as_os_str().as_bytes()),
            pk,
            pl,
            pb,
            job.redirect_policy.as_str(),
            job.allow_https_to_http,
            job.dynamic_content,
            opt_to_i(job.rate_limit),
            err.and_then(|e| e.status).map(i64::from),
            err.map(|e| e.message.as_str()),
            err.map(|e| e.transient),
            opt_to_i(job.retry_at),
            opt_to_i(job.no_progress_since),
            opt_to_i(job.notify_due),
        ],
    );
    match r {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(StoreError::AlreadyExists(job.id))
        }
        r => r.map(|_| ()).ctx("write the job"),
    }
}

fn write_children(tx: &Transaction<'_>, job: &Job) -> Result<(), StoreError> {
    let id = job.id.to_string();
    for table in ["notify_args", "headers", "credentials"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE job_id = ?1"),
            params![id],
        )
        .ctx("clear the job's settings")?;
    }
    if let Some(n) = &job.notify {
        let mut st = tx
            .prepare_cached("INSERT INTO notify_args (job_id, idx, arg) VALUES (?1, ?2, ?3)")
            .ctx("write the notify arguments")?;
        for (i, a) in n.args.iter().enumerate() {
            st.execute(params![id, idx_to_i(i), a])
                .ctx("write the notify arguments")?;
        }
    }
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO headers (job_id, idx, name, value) VALUES (?1, ?2, ?3, ?4)",
            )
            .ctx("write the headers")?;
        for (i, (name, value)) in job.custom_headers.iter().enumerate() {
            st.execute(params![id, idx_to_i(i), name, value])
                .ctx("write the headers")?;
        }
    }
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO credentials (job_id, target, scheme, user, secret) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .ctx("write the credentials")?;
        for c in [&job.server_credentials, &job.proxy_credentials]
            .into_iter()
            .flatten()
        {
            st.execute(params![
                id,
                c.target.as_str(),
                c.scheme.as_str(),
                c.user,
                c.secret.expose()
            ])
            .ctx("write the credentials")?;
        }
    }
    // Files: upsert by index (keeps segment checkpoints), drop the ones past the end.
    tx.execute(
        "DELETE FROM files WHERE job_id = ?1 AND idx >= ?2",
        params![id, idx_to_i(job.files.len())],
    )
    .ctx("remove dropped files")?;
    let mut up = tx
        .prepare_cached(
            "INSERT INTO files (job_id, idx, remote, local, bytes_total, bytes_done, \
             has_validator, etag, last_modified, length, completed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (job_id, idx) DO UPDATE SET remote = excluded.remote, \
             local = excluded.local, bytes_total = excluded.bytes_total, \
             bytes_done = excluded.bytes_done, has_validator = excluded.has_validator, \
             etag = excluded.etag, last_modified = excluded.last_modified, \
             length = excluded.length, completed = excluded.completed",
        )
        .ctx("write the files")?;
    let mut del_ranges = tx
        .prepare_cached("DELETE FROM ranges WHERE job_id = ?1 AND file_idx = ?2")
        .ctx("write the ranges")?;
    let mut ins_range = tx
        .prepare_cached(
            "INSERT INTO ranges (job_id, file_idx, idx, offset, len) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .ctx("write the ranges")?;
    for (fi, f) in job.files.iter().enumerate() {
        let v = f.validator.as_ref();
        up.execute(params![
            id,
            idx_to_i(fi),
            f.remote().as_str(),
            f.local().as_os_str().as_bytes(),
            opt_to_i(f.bytes_total),
            to_i(f.bytes_done),
            v.is_some(),
            v.and_then(|v| v.etag.as_deref()),
            v.and_then(|v| v.last_modified.as_deref()),
            v.and_then(|v| opt_to_i(v.length)),
            f.completed,
        ])
        .ctx("write the files")?;
        del_ranges
            .execute(params![id, idx_to_i(fi)])
            .ctx("write the ranges")?;
        for (ri, r) in f.ranges().iter().enumerate() {
            ins_range
                .execute(params![
                    id,
                    idx_to_i(fi),
                    idx_to_i(ri),
                    to_i(r.offset),
                    opt_to_i(r.len)
                ])
                .ctx("write the ranges")?;
        }
    }
    Ok(())
}

/// The columns of a `jobs` row, before validation.
struct JobRow {
    id: String,
    owner_uid: i64,
    display_name: String,
    priority: String,
    state: String,
    created: i64,
    modified: i64,
    completed: Option<i64>,
    min_retry_delay: i64,
    no_progress_timeout: i64,
    notify_program: Option<Vec<u8>>,
    proxy_kind: String,
    proxy_list: Option<String>,
    proxy_bypass: Option<String>,
    redirect_policy: String,
    allow_https_to_http: bool,
    dynamic_content: bool,
    rate_limit: Option<i64>,
    error_status: Option<i64>,
    error_message: Option<String>,
    error_transient: Option<bool>,
    retry_at: Option<i64>,
    no_progress_since: Option<i64>,
    notify_due: Option<i64>,
}

fn read_job(conn: &Connection, id: &str) -> Result<Option<Job>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT id, owner_uid, display_name, priority, state, created, modified, completed, \
             min_retry_delay, no_progress_timeout, notify_program, proxy_kind, proxy_list, \
             proxy_bypass, redirect_policy, allow_https_to_http, dynamic_content, rate_limit, \
             error_status, error_message, error_transient, retry_at, no_progress_since, \
             notify_due FROM jobs WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![id], |r| {
                Ok(JobRow {
                    id: r.get(0)?,
                    owner_uid: r.get(1)?,
                    display_name: r.get(2)?,
                    priority: r.get(3)?,
                    state: r.get(4)?,
                    created: r.get(5)?,
                    modified: r.get(6)?,
                    completed: r.get(7)?,
                    min_retry_delay: r.get(8)?,
                    no_progress_timeout: r.get(9)?,
                    notify_program: r.get(10)?,
                    proxy_kind: r.get(11)?,
                    proxy_list: r.get(12)?,
                    proxy_bypass: r.get(13)?,
                    redirect_policy: r.get(14)?,
                    allow_https_to_http: r.get(15)?,
                    dynamic_content: r.get(16)?,
                    rate_limit: r.get(17)?,
                    error_status: r.get(18)?,
                    error_message: r.get(19)?,
                    error_transient: r.get(20)?,
                    retry_at: r.get(21)?,
                    no_progress_since: r.get(22)?,
                    notify_due: r.get(23)?,
                })
            })
            .optional()
        })
        .ctx("load the job")?;
    let Some(row) = row else { return Ok(None) };
    let corrupt = |what: String| StoreError::Corrupt {
        job: row.id.clone(),
        what,
    };
    let bad = |e: &dyn fmt::Display| corrupt(e.to_string());

    let job_id: JobId = row.id.parse().map_err(|e| bad(&e))?;
    validate_display_name(&row.display_name).map_err(|e| bad(&e))?;
    let owner_uid = u32::try_from(row.owner_uid)
        .map_err(|_| corrupt(format!("owner uid {} out of range", row.owner_uid)))?;

    let args: Vec<String> = {
        let mut st = conn
            .prepare_cached("SELECT arg FROM notify_args WHERE job_id = ?1 ORDER BY idx")
            .ctx("load the notify arguments")?;
        let rows = st
            .query_map(params![id], |r| r.get(0))
            .ctx("load the notify arguments")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx("load the notify arguments")?
    };
    let notify = match row.notify_program {
        Some(p) => Some(
            NotifyCommand::new(PathBuf::from(OsStr::from_bytes(&p)), args).map_err(|e| bad(&e))?,
        ),
        None => None,
    };

    let headers: Vec<(String, String)> = {
        let mut st = conn
            .prepare_cached("SELECT name, value FROM headers WHERE job_id = ?1 ORDER BY idx")
            .ctx("load the headers")?;
        let rows = st
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("load the headers")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx("load the headers")?
    };
    validate_headers(&headers).map_err(|e| bad(&e))?;

    let mut server_credentials = None;
    let mut proxy_credentials = None;
    {
        let mut st = conn
            .prepare_cached(
                "SELECT target, scheme, user, secret FROM credentials WHERE job_id = ?1",
            )
            .ctx("load the credentials")?;
        let rows = st
            .query_map(params![id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .ctx("load the credentials")?;
        for row in rows {
            let (target, scheme, user, secret) = row.ctx("load the credentials")?;
            let target: CredentialTarget = target.parse().map_err(|e| bad(&e))?;
            let c = JobCredentials::new(
                target,
                scheme.parse().map_err(|e| bad(&e))?,
                user,
                Secret::new(secret),
            )
            .map_err(|e| bad(&e))?;
            match target {
                CredentialTarget::Server => server_credentials = Some(c),
                CredentialTarget::Proxy => proxy_credentials = Some(c),
            }
        }
    }

    let proxy = match (row.proxy_kind.as_str(), row.proxy_list, row.proxy_bypass) {
        ("session", _, _) => ProxyChoice::Session,
        ("none", _, _) => ProxyChoice::None,
        ("override", Some(proxy), bypass) => ProxyChoice::Override {
            proxy,
            bypass: bypass.unwrap_or_default(),
        },
        (k, _, _) => return Err(corrupt(format!("unknown proxy choice '{k}'"))),
    };
    proxy.validate().map_err(|e| bad(&e))?;

    let files = read_files(conn, id).map_err(|e| match e {
        StoreError::Corrupt { what, .. } => corrupt(what),
        e => e,
    })?;

    let last_error = match (row.error_message, row.error_transient) {
        (Some(message), Some(transient)) => Some(JobError {
            status: match row.error_status {
                Some(s) => Some(
                    u16::try_from(s)
                        .map_err(|_| corrupt(format!("HTTP status {s} out of range")))?,
                ),
                None => None,
            },
            message,
            transient,
        }),
        _ => None,
    };

    let job = Job {
        id: job_id,
        owner_uid,
        display_name: row.display_name,
        priority: row.priority.parse().map_err(|e| bad(&e))?,
        state: row.state.parse::<State>().map_err(|e| bad(&e))?,
        files,
        created: from_i(row.created),
        modified: from_i(row.modified),
        completed: opt_from_i(row.completed),
        min_retry_delay_secs: from_i(row.min_retry_delay).max(MIN_RETRY_DELAY_FLOOR_SECS),
        no_progress_timeout_secs: from_i(row.no_progress_timeout),
        notify,
        custom_headers: headers,
        server_credentials,
        proxy_credentials,
        proxy,
        redirect_policy: row.redirect_policy.parse().map_err(|e| bad(&e))?,
        allow_https_to_http: row.allow_https_to_http,
        dynamic_content: row.dynamic_content,
        rate_limit: opt_from_i(row.rate_limit),
        last_error,
        retry_at: opt_from_i(row.retry_at),
        no_progress_since: opt_from_i(row.no_progress_since),
        notify_due: opt_from_i(row.notify_due),
    };
    Ok(Some(job))
}

fn read_files(conn: &Connection, id: &str) -> Result<Vec<FileSpec>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        job: id.to_owned(),
        what,
    };
    type FileRow = (
        i64,
        String,
        Vec<u8>,
        Option<i64>,
        i64,
        bool,
        Option<String>,
        Option<String>,
        Option<i64>,
        bool,
    );
    let rows: Vec<FileRow> = {
        let mut st = conn
            .prepare_cached(
                "SELECT idx, remote, local, bytes_total, bytes_done, has_validator, etag, \
                 last_modified, length, completed FROM files WHERE job_id = ?1 ORDER BY idx",
            )
            .ctx("load the files")?;
        let it = st
            .query_map(params![id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .ctx("load the files")?;
        it.collect::<rusqlite::Result<_>>().ctx("load the files")?
    };
    let mut range_stmt = conn
        .prepare_cached(
            "SELECT offset, len FROM ranges WHERE job_id = ?1 AND file_idx = ?2 ORDER BY idx",
        )
        .ctx("load the ranges")?;
    let mut files = Vec::with_capacity(rows.len());
    for (expected, row) in rows.into_iter().enumerate() {
        let (idx, remote, local, total, done, has_v, etag, lm, len, completed) = row;
        if idx != idx_to_i(expected) {
            return Err(corrupt(format!(
                "file indexes are not contiguous at #{idx}"
            )));
        }
        let ranges: Vec<ByteRange> = range_stmt
            .query_map(params![id, idx], |r| {
                Ok(ByteRange {
                    offset: from_i(r.get(0)?),
                    len: opt_from_i(r.get(1)?),
                })
            })
            .ctx("load the ranges")?
            .collect::<rusqlite::Result<_>>()
            .ctx("load the ranges")?;
        let url = Url::parse(&remote)
            .map_err(|e| corrupt(format!("file #{idx}: bad remote URL: {e}")))?;
        let mut f = FileSpec::with_ranges(url, PathBuf::from(OsStr::from_bytes(&local)), ranges)
            .map_err(|e| corrupt(format!("file #{idx}: {e}")))?;
        f.bytes_total = opt_from_i(total);
        f.bytes_done = from_i(done);
        f.validator = has_v.then(|| Validator {
            etag,
            last_modified: lm,
            length: opt_from_i(len),
        });
        f.completed = completed;
        files.push(f);
    }
    Ok(files)
}
