//! SQLite persistence: round trips, permissions, reopen, owners, concurrency, schema version.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use ferry_transfer::job::{
    AuthScheme, ByteRange, CredentialTarget, FileSpec, Job, JobCredentials, JobError, JobId,
    NotifyCommand, Priority, ProxyChoice, RedirectPolicy, Secret, Validator,
};
use ferry_transfer::state::{State, Verb};
use ferry_transfer::store::{default_path, Segment, Store, StoreError, SCHEMA_VERSION};
use url::Url;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ferry-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn simple_job(n: u8, owner: u32, created: u64) -> Job {
    let mut j = Job::new(
        JobId::from_bytes([n; 16]),
        owner,
        format!("job {n}"),
        created,
    )
    .unwrap();
    j.add_file(
        FileSpec::new(url("http://127.0.0.1:8080/f"), format!("/tmp/ferry-t/{n}")).unwrap(),
        created,
    )
    .unwrap();
    j
}

/// A job with every field set away from its default.
fn full_job() -> Job {
    let mut j = Job::new(
        JobId::random().unwrap(),
        4242,
        "everything — ünïcode",
        1_700_000_000,
    )
    .unwrap();
    let t = 1_700_000_001;
    j.set_priority(Priority::Foreground, t).unwrap();
    j.set_min_retry_delay_secs(7, t).unwrap();
    j.set_no_progress_timeout_secs(u64::MAX, t).unwrap();
    j.set_notify(
        Some(
            NotifyCommand::new(
                "/usr/local/bin/on-done",
                vec!["$HOME; rm -rf /".into(), String::new(), "ü".into()],
            )
            .unwrap(),
        ),
        t,
    )
    .unwrap();
    j.set_custom_headers(
        vec![
            ("X-Trace".into(), "a\tb".into()),
            ("Accept".into(), "*/*".into()),
        ],
        t,
    )
    .unwrap();
    j.set_credentials(
        JobCredentials::new(
            CredentialTarget::Server,
            AuthScheme::Digest,
            "alice",
            Secret::new("s3cret:ü"),
        )
        .unwrap(),
        t,
    )
    .unwrap();
    j.set_credentials(
        JobCredentials::new(
            CredentialTarget::Proxy,
            AuthScheme::Ntlm,
            "CORP\\bob",
            Secret::new("pw"),
        )
        .unwrap(),
        t,
    )
    .unwrap();
    j.set_proxy(
        ProxyChoice::Override {
            proxy: "http=p:3128".into(),
            bypass: "<local>;*.corp".into(),
        },
        t,
    )
    .unwrap();
    j.set_redirect_policy(RedirectPolicy::AllowReport, true, t)
        .unwrap();
    j.set_rate_limit(Some(65_536), t).unwrap();
    let ranges = vec![
        ByteRange {
            offset: 100,
            len: Some(100),
        },
        ByteRange {
            offset: 1000,
            len: None,
        },
        ByteRange {
            offset: 400,
            len: Some(100),
        },
    ];
    j.add_file(
        FileSpec::with_ranges(url("https://example.test/a?x=1"), "/srv/ranged", ranges).unwrap(),
        t,
    )
    .unwrap();
    j.add_file(
        FileSpec::new(
            url("https://example.test/b"),
            PathBuf::from(OsStr::from_bytes(b"/srv/non-utf8-\xff\xfe")),
        )
        .unwrap(),
        t,
    )
    .unwrap();
    j.add_file(
        FileSpec::new(url("https://example.test/c"), "/srv/c").unwrap(),
        t,
    )
    .unwrap();
    {
        let f = j.file_mut(0).unwrap();
        f.bytes_total = Some(300);
        f.bytes_done = 300;
        f.completed = true;
        f.validator = Some(Validator {
            etag: Some("\"abc\"".into()),
            last_modified: Some("Tue, 01 Jul 2025 00:00:00 GMT".into()),
            length: Some(5000),
        });
    }
    {
        let f = j.file_mut(1).unwrap();
        f.bytes_total = Some(u64::MAX);
        f.bytes_done = 17;
        f.validator = Some(Validator::default());
    }
    j.apply(Verb::Resume, t + 1).unwrap();
    j.apply(Verb::Start, t + 2).unwrap();
    j.fail(
        JobError {
            status: Some(503),
            message: "Service Unavailable — retry".into(),
            transient: true,
        },
        t + 3,
    )
    .unwrap();
    assert_eq!(j.state(), State::TransientError);
    assert!(j.retry_at().is_some());
    j
}

#[test]
fn every_field_round_trips() {
    let d = TempDir::new("rt");
    let mut s = Store::open(d.path().join("jobs.db")).unwrap();
    let job = full_job();
    s.insert_job(&job).unwrap();
    let back = s.load_job(&job.id()).unwrap();
    assert_eq!(back, job);
    // And once more after a transferred state with completion time and notify due.
    let mut j2 = back.clone();
    j2.apply(Verb::Suspend, 1_800_000_000).unwrap();
    j2.apply(Verb::Resume, 1_800_000_001).unwrap();
    j2.apply(Verb::Start, 1_800_000_002).unwrap();
    j2.apply(Verb::Connected, 1_800_000_002).unwrap();
    j2.apply(Verb::AllDone, 1_800_000_003).unwrap();
    assert!(j2.notify_due().is_some() && j2.completed().is_some());
    s.update_job(&j2).unwrap();
    assert_eq!(s.load_job(&j2.id()).unwrap(), j2);
}

#[test]
fn files_are_created_owner_only() {
    let d = TempDir::new("mode");
    let dir = d.path().join("nested/ferry");
    let db = dir.join("jobs.db");
    let mut s = Store::open(&db).unwrap();
    s.insert_job(&simple_job(1, 1, 1)).unwrap();
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&d.path().join("nested")), 0o700);
    let wal = db.with_extension("db-wal");
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600);
    drop(s);

    // An existing, too-open file is tightened.
    let loose = d.path().join("loose.db");
    std::fs::write(&loose, b"").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    Store::open(&loose).unwrap();
    assert_eq!(mode(&loose), 0o600);

    // A directory is not a database.
    let e = Store::open(d.path()).unwrap_err();
    assert!(
        matches!(e, StoreError::Io { .. } | StoreError::NotAFile(_)),
        "{e}"
    );
}

#[test]
fn jobs_survive_reopen() {
    let d = TempDir::new("reopen");
    let db = d.path().join("jobs.db");
    {
        let mut s = Store::open(&db).unwrap();
        for n in 1..=3 {
            s.insert_job(&simple_job(n, 1000, u64::from(n))).unwrap();
        }
        s.record_progress(&JobId::from_bytes([2; 16]), 0, 4096, None)
            .unwrap();
    }
    let s = Store::open(&db).unwrap();
    let jobs = s.list_jobs(None).unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[1].files()[0].bytes_done, 4096);
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn list_by_owner() {
    let d = TempDir::new("owner");
    let mut s = Store::open(d.path().join("jobs.db")).unwrap();
    s.insert_job(&simple_job(1, 1000, 30)).unwrap();
    s.insert_job(&simple_job(2, 1001, 20)).unwrap();
    s.insert_job(&simple_job(3, 1000, 10)).unwrap();
    let mine: Vec<u8> = s
        .list_jobs(Some(1000))
        .unwrap()
        .iter()
        .map(|j| j.id().as_bytes()[0])
        .collect();
    assert_eq!(mine, vec![3, 1], "oldest first");
    assert_eq!(s.list_jobs(Some(1001)).unwrap().len(), 1);
    assert_eq!(s.list_jobs(Some(0)).unwrap().len(), 0);
    assert_eq!(s.list_jobs(None).unwrap().len(), 3);
}

#[test]
fn insert_update_delete_errors() {
    let d = TempDir::new("crud");
    let mut s = Store::open(d.path().join("jobs.db")).unwrap();
    let j = simple_job(1, 1, 1);
    let missing = JobId::from_bytes([9; 16]);
    assert!(matches!(s.load_job(&missing), Err(StoreError::NotFound(_))));
    assert!(matches!(s.update_job(&j), Err(StoreError::NotFound(_))));
    s.insert_job(&j).unwrap();
    let e = s.insert_job(&j).unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists(_)));
    assert!(e.to_string().contains("already exists"), "{e}");
    s.delete_job(&j.id()).unwrap();
    assert!(matches!(
        s.delete_job(&j.id()),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(s.load_job(&j.id()), Err(StoreError::NotFound(_))));
    assert_eq!(
        StoreError::NotFound(missing).to_string(),
        "no job {09090909-0909-0909-0909-090909090909}"
    );
}

#[test]
fn progress_checkpoints() {
    let d = TempDir::new("progress");
    let mut s = Store::open(d.path().join("jobs.db")).unwrap();
    let mut j = simple_job(1, 1, 1);
    s.insert_job(&j).unwrap();
    let v = Validator {
        etag: Some("\"e1\"".into()),
        last_modified: None,
        length: Some(1 << 40),
    };
    s.record_progress(&j.id(), 0, 1 << 20, Some(&v)).unwrap();
    let back = s.load_job(&j.id()).unwrap();
    assert_eq!(back.files()[0].bytes_done, 1 << 20);
    assert_eq!(back.files()[0].validator.as_ref(), Some(&v));
    assert!(matches!(
        s.record_progress(&j.id(), 1, 0, None),
        Err(StoreError::NoSuchFile { index: 1, .. })
    ));
    assert!(matches!(
        s.record_progress(&JobId::from_bytes([7; 16]), 0, 0, None),
        Err(StoreError::NotFound(_))
    ));
    s.record_progress(&j.id(), 0, 0, None).unwrap();
    assert_eq!(s.load_job(&j.id()).unwrap().files()[0].validator, None);

    let f = j.file_mut(0).unwrap();
    f.bytes_total = Some(10);
    f.bytes_done = 10;
    f.completed = true;
    f.validator = Some(v.clone());
    let f = f.clone();
    s.record_file(&j.id(), 0, &f).unwrap();
    assert_eq!(
        s.load_job(&j.id()).unwrap(),
        j,
        "record_file wrote every progress field"
    );
}

#[test]
fn segment_checkpoints() {
    let d = TempDir::new("seg");
    let mut s = Store::open(d.path().join("jobs.db")).unwrap();
    let mut j = simple_job(1, 1, 1);
    s.insert_job(&j).unwrap();
    let segs = vec![
        Segment {
            start: 0,
            end: Some(100),
            done: 10,
        },
        Segment {
            start: 100,
            end: None,
            done: 0,
        },
    ];
    s.save_segments(&j.id(), 0, &segs).unwrap();
    s.record_segment(&j.id(), 0, 1, 55).unwrap();
    let mut want = segs.clone();
    want[1].done = 55;
    assert_eq!(s.load_segments(&j.id(), 0).unwrap(), want);
    assert!(s.record_segment(&j.id(), 0, 5, 1).is_err());
    assert!(matches!(
        s.save_segments(&j.id(), 3, &segs),
        Err(StoreError::NoSuchFile { .. })
    ));
    // Updating the job keeps the segments of its files.
    j.set_priority(Priority::Low, 2).unwrap();
    s.update_job(&j).unwrap();
    assert_eq!(s.load_segments(&j.id(), 0).unwrap(), want);
    // Deleting the job removes them.
    s.delete_job(&j.id()).unwrap();
    assert!(s.load_segments(&j.id(), 0).unwrap().is_empty());
}

#[test]
fn two_handles_at_once_do_not_corrupt() {
    let d = TempDir::new("conc");
    let db = d.path().join("jobs.db");
    Store::open(&db).unwrap();
    let threads: Vec<_> = (0..2u8)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = Store::open(&db).unwrap();
                for i in 0..40u8 {
                    let mut j = Job::new(
                        JobId::from_bytes([t, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                        u32::from(t),
                        "c",
                        u64::from(i),
                    )
                    .unwrap();
                    j.add_file(
                        FileSpec::new(url("http://h.test/x"), format!("/tmp/c/{t}/{i}")).unwrap(),
                        0,
                    )
                    .unwrap();
                    s.insert_job(&j).unwrap();
                    s.record_progress(&j.id(), 0, u64::from(i) * 10, None)
                        .unwrap();
                    j.set_priority(Priority::High, 1).unwrap();
                    s.update_job(&j).unwrap();
                    // Read the other thread's jobs while it writes.
                    let _ = s.list_jobs(Some(u32::from(1 - t))).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = Store::open(&db).unwrap();
    assert_eq!(s.list_jobs(Some(0)).unwrap().len(), 40);
    assert_eq!(s.list_jobs(Some(1)).unwrap().len(), 40);
    for j in s.list_jobs(None).unwrap() {
        assert_eq!(j.priority(), Priority::High);
    }
    drop(s);
    let c = rusqlite::Connection::open(&db).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let jm: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(jm, "wal");
}

#[test]
fn schema_version_is_recorded_and_newer_refused() {
    let d = TempDir::new("schema");
    let db = d.path().join("jobs.db");
    drop(Store::open(&db).unwrap());
    let c = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 1);
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in ["checkpoints", "files", "jobs", "ranges"] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    c.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(c);
    let e = Store::open(&db).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 1
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade ferry"));
}

#[test]
fn corrupt_rows_are_reported_not_panicked() {
    let d = TempDir::new("corrupt");
    let db = d.path().join("jobs.db");
    let mut s = Store::open(&db).unwrap();
    let j = simple_job(1, 1, 1);
    s.insert_job(&j).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    for (sql, what) in [
        ("UPDATE jobs SET state = 'BOGUS'", "unknown job state"),
        ("UPDATE jobs SET state = 'QUEUED', priority = 'urgent'", "bad priority"),
        ("UPDATE jobs SET priority = 'LOW', display_name = ''", "display name"),
        ("UPDATE jobs SET display_name = 'x'; UPDATE files SET local = CAST('rel' AS BLOB)", "absolute"),
        ("UPDATE files SET local = CAST('/ok' AS BLOB), remote = 'not a url'", "remote URL"),
        ("UPDATE files SET remote = 'http://h/'; INSERT INTO ranges VALUES ((SELECT id FROM jobs), 0, 0, 0, 10), ((SELECT id FROM jobs), 0, 1, 5, 10)", "overlaps"),
    ] {
        c.execute_batch(sql).unwrap();
        let e = s.load_job(&j.id()).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains(what), "{sql}: {e}");
        assert!(s.list_jobs(None).is_err());
    }
    drop(s);
}

#[test]
fn secrets_are_stored_for_the_owner_but_not_printed() {
    let d = TempDir::new("secret");
    let db = d.path().join("jobs.db");
    let mut s = Store::open(&db).unwrap();
    let j = full_job();
    s.insert_job(&j).unwrap();
    let loaded = s.load_job(&j.id()).unwrap();
    assert_eq!(
        loaded
            .credentials(CredentialTarget::Server)
            .unwrap()
            .secret
            .expose(),
        "s3cret:ü"
    );
    assert!(!format!("{loaded:?}").contains("s3cret"));
    assert!(!format!("{s:?}").contains("s3cret"));
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn default_path_reads_the_environment_through_a_closure() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    assert_eq!(
        default_path(env(&[("XDG_DATA_HOME", "/x/data"), ("HOME", "/home/u")])).unwrap(),
        PathBuf::from("/x/data/ferry/jobs.db")
    );
    assert_eq!(
        default_path(env(&[("HOME", "/home/u")])).unwrap(),
        PathBuf::from("/home/u/.local/share/ferry/jobs.db")
    );
    assert_eq!(
        default_path(env(&[("XDG_DATA_HOME", "relative"), ("HOME", "/home/u")])).unwrap(),
        PathBuf::from("/home/u/.local/share/ferry/jobs.db"),
        "a relative XDG_DATA_HOME is ignored"
    );
    assert_eq!(
        default_path(env(&[("XDG_DATA_HOME", ""), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/h/.local/share/ferry/jobs.db")
    );
    assert!(matches!(default_path(env(&[])), Err(StoreError::NoDataDir)));
}

#[test]
fn update_rewrites_files_and_drops_removed_state() {
    let d = TempDir::new("upd");
    let mut s = Store::open(d.path().join("jobs.db")).unwrap();
    let mut j = simple_job(1, 1, 1);
    s.insert_job(&j).unwrap();
    j.add_file(
        FileSpec::with_ranges(
            url("http://h.test/r"),
            "/tmp/r",
            vec![ByteRange {
                offset: 5,
                len: Some(5),
            }],
        )
        .unwrap(),
        2,
    )
    .unwrap();
    j.set_notify(
        Some(NotifyCommand::new("/bin/echo", vec!["x".into()]).unwrap()),
        2,
    )
    .unwrap();
    s.update_job(&j).unwrap();
    assert_eq!(s.load_job(&j.id()).unwrap(), j);
    j.set_notify(None, 3).unwrap();
    j.remove_credentials(CredentialTarget::Server, 3).unwrap();
    j.apply(Verb::Cancel, 4).unwrap();
    s.update_job(&j).unwrap();
    let back = s.load_job(&j.id()).unwrap();
    assert_eq!(back, j);
    assert_eq!(back.state(), State::Cancelled);
}

#[test]
fn unfinished_jobs_per_user_are_capped_and_finished_ones_purged() {
    use ferry_transfer::store::MAX_JOBS_PER_USER;
    let dir = TempDir::new("cap");
    let mut store = Store::open(dir.path().join("jobs.db")).unwrap();
    let make = |i: usize, owner: u32| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        b[8..12].copy_from_slice(&owner.to_be_bytes());
        Job::new(JobId::from_bytes(b), owner, format!("j{i}"), 1_000).unwrap()
    };
    for i in 0..MAX_JOBS_PER_USER {
        store.insert_job(&make(i, 7)).unwrap();
    }
    match store.insert_job(&make(MAX_JOBS_PER_USER, 7)) {
        Err(e @ StoreError::TooManyJobs { owner: 7, limit }) => {
            assert_eq!(limit, MAX_JOBS_PER_USER);
            assert!(e.to_string().contains("MAX_JOBS_PER_USER"), "{e}");
        }
        other => panic!("expected TooManyJobs, got {other:?}"),
    }
    // Another user is not affected.
    store.insert_job(&make(0, 8)).unwrap();
    // A cancelled job frees its slot, and is purged once old enough.
    let mut first = store.load_job(&make(0, 7).id()).unwrap();
    first.apply(Verb::Cancel, 2_000).unwrap();
    store.update_job(&first).unwrap();
    store.insert_job(&make(MAX_JOBS_PER_USER, 7)).unwrap();
    assert_eq!(
        store.purge_finished(2_000).unwrap(),
        0,
        "not older than the cutoff"
    );
    assert_eq!(store.purge_finished(2_001).unwrap(), 1);
    assert!(matches!(
        store.load_job(&first.id()),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_jobs(Some(7)).unwrap().len(), MAX_JOBS_PER_USER);
}
