//! Issue 5 via the job queue: scripted server faults; nginx scheduling, caps, sources, notify.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::logfile::read_lines;
use support::{large_file_bytes, poll, Nginx, NginxOptions, ScriptServer, Service, Step};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_ferry");
/// The smallest retry delay a job accepts; every job here uses it so retries come quickly.
const RETRY: &str = "5";
/// Size of the scripted entities: small enough that a body the client never reads still fits
/// in the loopback socket buffers (so the script's write never fails on a reset).
const ENTITY: usize = 40_000;
/// Where the scripted first responses break off.
const CUT: usize = 15_000;
/// A fine checkpoint distance for the nginx tests, so `bytes_done` follows the transfer closely
/// (the store only ever shows checkpointed bytes).
const FINE_CHECKPOINTS: &[&str] = &["--checkpoint-bytes", "64k"];
/// An extra nginx log with times: nginx logs a request when it ends (`$msec`) and knows how
/// long it took (`$request_time`), so each line gives the request's interval.
const TIMED_FORMAT: &str =
    "log_format timed '$msec $request_time $request_method $request_uri $status $body_bytes_sent';";
/// The harness's own access log must be repeated: an `access_log` in a server block replaces
/// the inherited one.
const TIMED_LOGS: &str = "access_log @DIR@/access.log ferry; access_log @DIR@/timed.log timed;";
/// A rate-limited view of the document root.
const SLOW_512K: &str = "location /slow/ { alias @ROOT@/; limit_rate 512k; }";
/// The same document root under another path: same files, so the same ETags.
const MIRROR: &str = "location /mirror/ { alias @ROOT@/; }";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Jobs as `info --json` / `list --json` show them.

/// A job's last error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JobErr {
    status: Option<u16>,
    message: String,
    transient: bool,
}

/// One job in one sample.
#[derive(Debug, Clone, Default)]
struct Snap {
    id: String,
    state: String,
    bytes_done: u64,
    files_done: u64,
    error: Option<JobErr>,
}

/// The text right after the first `"key":`.
fn json_raw<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    json.find(&pat).map(|i| &json[i + pat.len()..])
}

/// The first string value of `key` (the escapes the CLI writes undone).
fn json_string(json: &str, key: &str) -> Option<String> {
    let rest = json_raw(json, key)?.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The first number value of `key` (`None` for `null` or absent).
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let digits: String = json_raw(json, key)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One job object. The job's own keys come before its `files` array, so the first match of
/// `state` and `bytes_done` is the job's.
fn snap(json: &str) -> Snap {
    let error = json_raw(json, "error")
        .filter(|r| r.starts_with('{'))
        .map(|r| JobErr {
            status: json_u64(r, "status").map(|s| s as u16),
            message: json_string(r, "message").unwrap_or_default(),
            transient: json_raw(r, "transient").is_some_and(|t| t.starts_with("true")),
        });
    Snap {
        id: json_string(json, "id").unwrap_or_default(),
        state: json_string(json, "state").unwrap_or_else(|| panic!("no state in {json}")),
        bytes_done: json_u64(json, "bytes_done").unwrap_or_else(|| panic!("{json}")),
        files_done: json_u64(json, "files_done").unwrap_or_else(|| panic!("{json}")),
        error,
    }
}

/// Every job of a `list --json` array.
fn snaps(json: &str) -> Vec<Snap> {
    let starts: Vec<usize> = json.match_indices("{\"id\":").map(|(i, _)| i).collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| snap(&json[s..starts.get(k + 1).copied().unwrap_or(json.len())]))
        .collect()
}

fn info(svc: &Service, id: &str) -> Snap {
    snap(&svc.ok(&["info", id, "--json"]))
}

/// Every job, and the moment the sample stands for (the middle of the `list` run).
fn sample(svc: &Service) -> (Instant, Vec<Snap>) {
    let before = Instant::now();
    let all = snaps(&svc.ok(&["list", "--json"]));
    (before + before.elapsed() / 2, all)
}

fn pick<'a>(all: &'a [Snap], id: &str) -> &'a Snap {
    all.iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no job {id} in {all:?}"))
}

/// Polls `info` (every 50 ms, at most `limit`) until `ready` holds; returns that sample.
fn await_job(
    svc: &Service,
    id: &str,
    what: &str,
    limit: Duration,
    ready: impl Fn(&Snap) -> bool,
) -> Snap {
    let got = poll(limit, Duration::from_millis(50), || {
        let s = info(svc, id);
        ready(&s).then_some(s)
    });
    got.unwrap_or_else(|| panic!("{id}: not {what} within {limit:?}: {:?}", info(svc, id)))
}

fn await_state(svc: &Service, id: &str, state: &str, limit: Duration) -> Snap {
    await_job(svc, id, state, limit, |s| s.state == state)
}

/// A job of `priority` with one file per `(url, dest)`, the shortest retry delay; not resumed.
fn new_job(svc: &Service, name: &str, priority: &str, files: &[(&str, &Path)]) -> String {
    let id = svc.ok(&["create", name, "--priority", priority]);
    for (url, dest) in files {
        svc.ok(&["add", &id, url, dest.to_str().unwrap()]);
    }
    svc.ok(&["set-retry-delay", &id, RETRY]);
    id
}

/// `ferry job wait JOB --timeout SECS`, which must say TRANSFERRED.
fn wait_transferred(svc: &Service, id: &str, secs: u64) {
    let r = svc.job_in(
        svc.root.path(),
        &["wait", id, "--timeout", &secs.to_string()],
        Duration::from_secs(secs + 30),
    );
    assert_eq!(
        (r.code, String::from_utf8_lossy(&r.stdout).trim().to_owned()),
        (0, format!("{id} TRANSFERRED")),
        "wait: {}; {:?}",
        r.stderr,
        info(svc, id)
    );
}

/// The temporary files of `dest` that exist.
fn temporaries_left(dest: &Path) -> Vec<PathBuf> {
    ferry_transfer::files::temporaries(dest)
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// Waits (≤ 5 s) until none of `dest`'s temporaries exist: a stopped worker may write its last
/// checkpoint a moment after the command returned, and then tidies up after itself.
fn assert_no_temporaries(dest: &Path) {
    let gone = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        temporaries_left(dest).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "temporary files left: {:?}",
        temporaries_left(dest)
    );
}

/// Compares a result with what it should be, without printing megabytes.
fn assert_bytes(path: &Path, want: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{}: {} bytes, expected {}; first difference at {at:?}",
            path.display(),
            got.len(),
            want.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted servers.

/// Request heads as they arrived, with the moment each arrived.
type Heads = Arc<Mutex<Vec<(Instant, String)>>>;

/// Reads a request head, records it, and checks that it holds every one of `needles` and none
/// of `absent` (case-insensitively: header names may be written in any case).
fn rec(log: &Heads, needles: &[&str], absent: &[&str]) -> Step {
    let log = Arc::clone(log);
    let needles: Vec<String> = needles.iter().map(|n| n.to_ascii_lowercase()).collect();
    let absent: Vec<String> = absent.iter().map(|n| n.to_ascii_lowercase()).collect();
    Step::head(move |h| {
        log.lock().unwrap().push((Instant::now(), h.to_owned()));
        let lower = h.to_ascii_lowercase();
        if let Some(n) = needles.iter().find(|n| !lower.contains(n.as_str())) {
            return Err(format!("head lacks {n:?}"));
        }
        if let Some(n) = absent.iter().find(|n| lower.contains(n.as_str())) {
            return Err(format!("head has {n:?}"));
        }
        Ok(())
    })
}

/// A 200 head (every scripted response closes its connection, so each attempt of the job is
/// exactly one scripted connection).
fn head_200(etag: &str, len: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\
         Connection: close\r\n\r\n"
    )
}

/// A 206 head for `bytes first-last/total`.
fn head_206(etag: &str, first: usize, last: usize, total: usize) -> String {
    format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{total}\r\n\
         Content-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        last + 1 - first
    )
}

fn send(head: String, body: &[u8]) -> Step {
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Step::Send(bytes)
}

/// The deterministic entity called `name`.
fn entity(name: &str, len: usize) -> Vec<u8> {
    large_file_bytes(name, 0, len)
}

/// The request that starts a file: no `Range`.
fn first_request(heads: &Heads, path: &str) -> Step {
    rec(
        heads,
        &[&format!("GET {path} HTTP/1.1\r\n")],
        &["\r\nrange:"],
    )
}

/// A resume from the cut, validated with `etag`.
fn resume_request(heads: &Heads, etag: &str) -> Step {
    rec(
        heads,
        &[
            &format!("\r\nrange: bytes={CUT}-\r\n"),
            &format!("\r\nif-range: {etag}\r\n"),
        ],
        &[],
    )
}

/// The first response, broken off after `CUT` body bytes by a clean close.
fn cut_short(heads: &Heads, path: &str, etag: &str, body: &[u8]) -> Vec<Step> {
    vec![
        first_request(heads, path),
        send(head_200(etag, body.len()), &body[..CUT]),
        Step::Close,
    ]
}

fn arrivals(heads: &Heads) -> Vec<Instant> {
    heads.lock().unwrap().iter().map(|(t, _)| *t).collect()
}

/// A private service for scripted servers: one connection per attempt (no segment probe).
fn scripted_service(label: &str, extra: &[&str]) -> Service {
    let mut args = vec!["--segments", "1"];
    args.extend_from_slice(extra);
    Service::start(BIN, label, &args)
}

#[test]
fn a_503_is_retried_after_the_jobs_delay_then_transfers() {
    let body = entity("s-503", ENTITY);
    let heads = Heads::default();
    let server = ScriptServer::start(vec![
        vec![
            first_request(&heads, "/a"),
            Step::send(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
            ),
            Step::Close,
        ],
        vec![
            first_request(&heads, "/a"),
            send(head_200("\"a1\"", ENTITY), &body),
            Step::Close,
        ],
    ]);
    let svc = scripted_service("sc-503", &[]);
    let dest = svc.root.join("a.bin");
    let id = new_job(&svc, "a", "foreground", &[(&server.url("/a"), &dest)]);
    svc.ok(&["resume", &id]);

    let s = await_state(&svc, &id, "TRANSIENT_ERROR", Duration::from_secs(10));
    let err = s.error.expect("a transient error has its error");
    assert_eq!(err.status, Some(503), "{err:?}");
    assert!(err.transient && err.message.contains("HTTP 503"), "{err:?}");
    wait_transferred(&svc, &id, 20);
    let t = arrivals(&heads);
    assert_eq!(t.len(), 2, "one failure, one retry");
    // The server's Retry-After (1 s) is shorter than the job's delay, which wins; the failure
    // came after the first request arrived, so the gap between requests bounds it from below.
    let gap = t[1] - t[0];
    eprintln!("503: the retry came {gap:?} after the first request");
    assert!(
        gap >= Duration::from_secs(5),
        "retried {gap:?} after the failure"
    );
    assert!(gap < Duration::from_secs(9), "retried late: {gap:?}");
    svc.ok(&["complete", &id]);
    assert_bytes(&dest, &body);
    server.finish().unwrap();
}

#[test]
fn a_server_ignoring_range_is_an_error_unless_dynamic_content_is_allowed() {
    let body = entity("s-norange", ENTITY);
    let etag = "\"nr1\"";
    let heads = Heads::default();
    let server = ScriptServer::start(vec![
        cut_short(&heads, "/b", etag, &body),
        // The resume is answered with the whole entity, same validator: ranges are ignored.
        vec![
            resume_request(&heads, etag),
            send(head_200(etag, ENTITY), &body),
            Step::Close,
        ],
        // After `set-dynamic on` and `resume`: the same answer is now a restart.
        vec![
            resume_request(&heads, etag),
            send(head_200(etag, ENTITY), &body),
            Step::Close,
        ],
    ]);
    let svc = scripted_service("sc-norange", &[]);
    let dest = svc.root.join("b.bin");
    let id = new_job(&svc, "b", "foreground", &[(&server.url("/b"), &dest)]);
    svc.ok(&["resume", &id]);

    let s = await_state(&svc, &id, "ERROR", Duration::from_secs(20));
    let err = s.error.expect("an error has its error");
    assert!(
        !err.transient && err.message.to_lowercase().contains("range"),
        "{err:?}"
    );
    // Nothing spliced: the engine's partial data is still exactly the first CUT bytes.
    let staged = ferry_transfer::files::staged(&dest);
    let partial = ferry_transfer::download::temp_path(&staged);
    assert!(!dest.exists() && !staged.exists());
    assert_bytes(&partial, &body[..CUT]);
    assert_eq!(heads.lock().unwrap().len(), 2);

    svc.ok(&["set-dynamic", &id, "on"]);
    svc.ok(&["resume", &id]);
    wait_transferred(&svc, &id, 20);
    svc.ok(&["complete", &id]);
    assert_bytes(&dest, &body);
    assert!(temporaries_left(&dest).is_empty());
    server.finish().unwrap();
}

#[test]
fn a_wrong_content_range_on_the_resume_restarts_from_zero() {
    let body = entity("s-badcr", ENTITY);
    let etag = "\"cr1\"";
    let heads = Heads::default();
    // 100 bytes before the cut: spliced at the cut, these bytes would corrupt the file.
    let early = CUT - 100;
    let server = ScriptServer::start(vec![
        cut_short(&heads, "/c", etag, &body),
        vec![
            resume_request(&heads, etag),
            send(head_206(etag, early, ENTITY - 1, ENTITY), &body[early..]),
            Step::Close,
        ],
        vec![
            first_request(&heads, "/c"),
            send(head_200(etag, ENTITY), &body),
            Step::Close,
        ],
    ]);
    let svc = scripted_service("sc-badcr", &[]);
    let dest = svc.root.join("c.bin");
    let id = new_job(&svc, "c", "foreground", &[(&server.url("/c"), &dest)]);
    svc.ok(&["resume", &id]);
    wait_transferred(&svc, &id, 25);
    svc.ok(&["complete", &id]);
    assert_bytes(&dest, &body);
    assert_eq!(heads.lock().unwrap().len(), 3);
    server.finish().unwrap();
}

#[test]
fn a_stall_is_a_transient_error_and_the_retry_resumes_at_the_checkpoint() {
    let body = entity("s-stall", ENTITY);
    let etag = "\"st1\"";
    let heads = Heads::default();
    let server = ScriptServer::start(vec![
        vec![
            first_request(&heads, "/d"),
            send(head_200(etag, ENTITY), &body[..CUT]),
            // Longer than the service's 1 s receive timeout.
            Step::sleep_ms(2500),
            Step::Close,
        ],
        vec![
            resume_request(&heads, etag),
            send(head_206(etag, CUT, ENTITY - 1, ENTITY), &body[CUT..]),
            Step::Close,
        ],
    ]);
    let svc = scripted_service("sc-stall", &["--receive-timeout", "1"]);
    let dest = svc.root.join("d.bin");
    let id = new_job(&svc, "d", "foreground", &[(&server.url("/d"), &dest)]);
    svc.ok(&["resume", &id]);

    let s = await_state(&svc, &id, "TRANSIENT_ERROR", Duration::from_secs(10));
    let err = s.error.clone().expect("a transient error has its error");
    assert!(
        err.transient && err.status.is_none(),
        "no HTTP status: {err:?}"
    );
    assert_eq!(s.bytes_done, CUT as u64, "checkpointed at the stall: {s:?}");
    wait_transferred(&svc, &id, 20);
    let t = arrivals(&heads);
    assert_eq!(t.len(), 2);
    // The failure came at least the receive timeout after the first request, the retry at
    // least the retry delay after the failure.
    let gap = t[1] - t[0];
    eprintln!("stall: the resume came {gap:?} after the first request");
    assert!(gap >= Duration::from_millis(5950), "retried {gap:?} after");
    svc.ok(&["complete", &id]);
    assert_bytes(&dest, &body);
    server.finish().unwrap();
}

#[test]
fn a_changed_entity_restarts_the_file_with_the_new_bytes() {
    let old = entity("s-old", ENTITY);
    let new = entity("s-new", ENTITY - 7_000);
    let heads = Heads::default();
    let server = ScriptServer::start(vec![
        cut_short(&heads, "/e", "\"old\"", &old),
        // If-Range names the old entity; the server has a new one and sends all of it.
        vec![
            resume_request(&heads, "\"old\""),
            send(head_200("\"new\"", new.len()), &new),
            Step::Close,
        ],
    ]);
    let svc = scripted_service("sc-changed", &[]);
    let dest = svc.root.join("e.bin");
    let id = new_job(&svc, "e", "foreground", &[(&server.url("/e"), &dest)]);
    svc.ok(&["resume", &id]);
    wait_transferred(&svc, &id, 20);
    svc.ok(&["complete", &id]);
    assert_bytes(&dest, &new);
    server.finish().unwrap();
}

#[test]
fn a_404_is_final_never_retried_and_cancel_leaves_nothing() {
    let heads = Heads::default();
    let server = ScriptServer::start(vec![vec![
        first_request(&heads, "/f"),
        Step::send(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n",
        ),
        Step::Close,
    ]]);
    let svc = scripted_service("sc-404", &[]);
    let dir = svc.root.join("out");
    std::fs::create_dir(&dir).unwrap();
    let dest = dir.join("f.bin");
    let id = new_job(&svc, "f", "foreground", &[(&server.url("/f"), &dest)]);
    svc.ok(&["resume", &id]);
    let s = await_state(&svc, &id, "ERROR", Duration::from_secs(10));
    let failed_at = Instant::now();
    let err = s.error.expect("an error has its error");
    assert_eq!(err.status, Some(404), "{err:?}");
    assert!(
        !err.transient && err.message.contains("HTTP 404"),
        "{err:?}"
    );
    // Well past the 5 s retry delay: still final, and no second request.
    while failed_at.elapsed() < Duration::from_secs(7) {
        assert_eq!(info(&svc, &id).state, "ERROR");
        assert_eq!(
            server.connections_accepted(),
            1,
            "a final error was retried"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    svc.ok(&["cancel", &id]);
    assert_eq!(info(&svc, &id).state, "CANCELLED");
    assert_no_temporaries(&dest);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    server.finish().unwrap();
}

// ---------------------------------------------------------------------------------------------
// nginx.

/// One line of the timed log: a request's interval in seconds since the epoch.
#[derive(Debug, Clone)]
struct Timed {
    start: f64,
    end: f64,
    method: String,
    uri: String,
    status: u16,
    bytes: u64,
}

fn parse_timed(line: &str) -> Result<Timed, String> {
    let f: Vec<&str> = line.split(' ').collect();
    let bad = || format!("timed log line: {line:?}");
    if f.len() != 6 {
        return Err(bad());
    }
    let end: f64 = f[0].parse().map_err(|_| bad())?;
    let took: f64 = f[1].parse().map_err(|_| bad())?;
    Ok(Timed {
        start: end - took,
        end,
        method: f[2].to_owned(),
        uri: f[3].to_owned(),
        status: f[4].parse().map_err(|_| bad())?,
        bytes: f[5].parse().map_err(|_| bad())?,
    })
}

/// The GETs of `uri` in the timed log so far.
fn timed_gets(nginx: &Nginx, uri: &str) -> Vec<Timed> {
    read_lines(&nginx.dir().join("timed.log"), parse_timed)
        .into_iter()
        .filter(|t| t.method == "GET" && t.uri == uri)
        .collect()
}

/// nginx with the timed log, these files and these locations.
fn nginx_with(files: &[(&str, u64)], locations: &[&str]) -> Nginx {
    let mut opts = NginxOptions::new()
        .http_conf(TIMED_FORMAT)
        .server_conf(TIMED_LOGS);
    for (name, size) in files {
        opts = opts.large_file(name, *size);
    }
    for l in locations {
        opts = opts.server_conf(l);
    }
    Nginx::start(opts)
}

fn pattern(name: &str, size: u64) -> Vec<u8> {
    large_file_bytes(name, 0, size as usize)
}

#[test]
fn two_foreground_jobs_progress_together() {
    const SIZE: u64 = 3 * MIB / 2;
    let nginx = nginx_with(&[("fa.bin", SIZE), ("fb.bin", SIZE)], &[SLOW_512K]);
    let svc = Service::start(BIN, "sc-fg2", FINE_CHECKPOINTS);
    let (da, db) = (svc.root.join("fa.bin"), svc.root.join("fb.bin"));
    let a = new_job(
        &svc,
        "fa",
        "foreground",
        &[(&nginx.http_url("/slow/fa.bin"), &da)],
    );
    let b = new_job(
        &svc,
        "fb",
        "foreground",
        &[(&nginx.http_url("/slow/fb.bin"), &db)],
    );
    svc.ok(&["resume", &a]);
    svc.ok(&["resume", &b]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut together = 0;
    loop {
        let (_, all) = sample(&svc);
        let (sa, sb) = (pick(&all, &a), pick(&all, &b));
        let done = |s: &Snap| s.state == "TRANSFERRED";
        if done(sa) && done(sb) {
            break;
        }
        if !done(sa) && !done(sb) && sa.bytes_done > 0 && sb.bytes_done > 0 {
            together += 1;
        }
        assert!(Instant::now() < deadline, "not transferred: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        together >= 3,
        "both had bytes before either finished in {together} samples"
    );
    // In nginx's view too: the two files' GETs overlap in time.
    let (ga, gb) = (
        timed_gets(&nginx, "/slow/fa.bin"),
        timed_gets(&nginx, "/slow/fb.bin"),
    );
    let overlap = ga
        .iter()
        .any(|x| gb.iter().any(|y| x.start < y.end && y.start < x.end));
    assert!(overlap, "{ga:?} {gb:?}");
    svc.ok(&["complete", &a]);
    svc.ok(&["complete", &b]);
    assert_bytes(&da, &pattern("fa.bin", SIZE));
    assert_bytes(&db, &pattern("fb.bin", SIZE));
}

#[test]
fn a_low_job_waits_for_a_normal_job() {
    const SIZE: u64 = MIB;
    let nginx = nginx_with(&[("n.bin", SIZE), ("l.bin", 64 * KIB)], &[SLOW_512K]);
    let svc = Service::start(BIN, "sc-low", FINE_CHECKPOINTS);
    let (dn, dl) = (svc.root.join("n.bin"), svc.root.join("l.bin"));
    let n = new_job(
        &svc,
        "n",
        "normal",
        &[(&nginx.http_url("/slow/n.bin"), &dn)],
    );
    let l = new_job(&svc, "l", "low", &[(&nginx.http_url("/l.bin"), &dl)]);
    svc.ok(&["resume", &n]);
    await_job(&svc, &n, "transferring", Duration::from_secs(10), |s| {
        s.bytes_done > 0
    });
    svc.ok(&["resume", &l]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut samples = 0;
    loop {
        let (_, all) = sample(&svc);
        let (sn, sl) = (pick(&all, &n), pick(&all, &l));
        if sn.state == "TRANSFERRED" {
            break;
        }
        samples += 1;
        assert_eq!(
            (sl.state.as_str(), sl.bytes_done),
            ("QUEUED", 0),
            "LOW ran beside NORMAL: {all:?}"
        );
        let asked = nginx.access_log().into_iter().any(|x| x.uri == "/l.bin");
        assert!(!asked, "nginx saw LOW's request while NORMAL ran");
        assert!(Instant::now() < deadline, "NORMAL not transferred: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(samples >= 5, "only {samples} samples while NORMAL ran");
    wait_transferred(&svc, &l, 20);
    // nginx's times: LOW's only request began after NORMAL's only request ended.
    let (gn, gl) = (
        timed_gets(&nginx, "/slow/n.bin"),
        timed_gets(&nginx, "/l.bin"),
    );
    assert_eq!((gn.len(), gl.len()), (1, 1), "{gn:?} {gl:?}");
    assert_eq!(
        (gn[0].status, gn[0].bytes),
        (200, SIZE),
        "NORMAL was never stopped"
    );
    assert!(gl[0].start >= gn[0].end - 0.002, "{gn:?} {gl:?}");
    svc.ok(&["complete", &n]);
    svc.ok(&["complete", &l]);
    assert_bytes(&dn, &pattern("n.bin", SIZE));
    assert_bytes(&dl, &pattern("l.bin", 64 * KIB));
}

#[test]
fn equal_priorities_take_turns_in_slices() {
    const SIZE: u64 = MIB;
    let nginx = nginx_with(&[("ra.bin", SIZE), ("rb.bin", SIZE)], &[SLOW_512K]);
    let mut args = vec!["--slice", "1"];
    args.extend_from_slice(FINE_CHECKPOINTS);
    let svc = Service::start(BIN, "sc-slices", &args);
    let (da, db) = (svc.root.join("ra.bin"), svc.root.join("rb.bin"));
    let a = new_job(
        &svc,
        "ra",
        "normal",
        &[(&nginx.http_url("/slow/ra.bin"), &da)],
    );
    let b = new_job(
        &svc,
        "rb",
        "normal",
        &[(&nginx.http_url("/slow/rb.bin"), &db)],
    );
    svc.ok(&["resume", &a]);
    svc.ok(&["resume", &b]);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut prev: Option<(u64, u64)> = None;
    let (mut both_before_end, mut one_grew, mut both_grew) = (0, 0, 0);
    // Which job grew, in order, for the samples where exactly one did.
    let mut turns: Vec<char> = Vec::new();
    loop {
        let (_, all) = sample(&svc);
        let (sa, sb) = (pick(&all, &a), pick(&all, &b));
        let active = |s: &Snap| matches!(s.state.as_str(), "CONNECTING" | "TRANSFERRING");
        assert!(!(active(sa) && active(sb)), "both ran at once: {all:?}");
        let done = |s: &Snap| s.state == "TRANSFERRED";
        if done(sa) && done(sb) {
            break;
        }
        if !done(sa) && !done(sb) && sa.bytes_done > 0 && sb.bytes_done > 0 {
            both_before_end += 1;
        }
        if let Some((pa, pb)) = prev {
            match (sa.bytes_done > pa, sb.bytes_done > pb) {
                (true, true) => both_grew += 1,
                (true, false) => {
                    one_grew += 1;
                    turns.push('a');
                }
                (false, true) => {
                    one_grew += 1;
                    turns.push('b');
                }
                (false, false) => {}
            }
        }
        prev = Some((sa.bytes_done, sb.bytes_done));
        assert!(Instant::now() < deadline, "not transferred: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    turns.dedup();
    eprintln!(
        "turns {turns:?}; one grew {one_grew}, both grew {both_grew}, both had bytes before \
         the end {both_before_end}"
    );
    assert!(
        both_before_end > 0,
        "one job finished before the other began"
    );
    assert!(turns.len() >= 3, "the jobs did not alternate: {turns:?}");
    // At a hand-over the stopped job's last checkpoint can land in the same sample as the next
    // job's first: rare, not the rule.
    assert!(
        both_grew * 4 <= one_grew,
        "both grew in {both_grew} samples, one in {one_grew}"
    );
    for (uri, name) in [("/slow/ra.bin", "ra"), ("/slow/rb.bin", "rb")] {
        let gets = timed_gets(&nginx, uri);
        assert!(gets.len() >= 2, "{name}: one request, no turns: {gets:?}");
    }
    svc.ok(&["complete", &a]);
    svc.ok(&["complete", &b]);
    assert_bytes(&da, &pattern("ra.bin", SIZE));
    assert_bytes(&db, &pattern("rb.bin", SIZE));
}

/// The rate of `id` from `info` samples over at least `span`, once it has bytes.
fn measured_rate(svc: &Service, id: &str, span: Duration) -> f64 {
    await_job(svc, id, "transferring", Duration::from_secs(10), |s| {
        s.bytes_done >= 128 * KIB
    });
    let (t0, all) = sample(svc);
    let b0 = pick(&all, id).bytes_done;
    let deadline = t0 + span + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (t, all) = sample(svc);
        let s = pick(&all, id);
        assert!(
            s.state == "TRANSFERRING",
            "{id} stopped while measured: {s:?}"
        );
        if t - t0 >= span {
            let rate = (s.bytes_done - b0) as f64 / (t - t0).as_secs_f64();
            eprintln!(
                "{id}: {} bytes in {:?}: {rate:.0} B/s",
                s.bytes_done - b0,
                t - t0
            );
            return rate;
        }
        assert!(Instant::now() < deadline, "sampling too slow");
    }
}

fn assert_near(rate: f64, want: f64, what: &str) {
    assert!(
        (rate - want).abs() <= want * 0.10,
        "{what}: {rate:.0} B/s, not within 10% of {want:.0}"
    );
}

#[test]
fn the_background_cap_and_a_jobs_own_limit_hold_and_foreground_ignores_the_cap() {
    let nginx = nginx_with(
        &[
            ("bg.bin", 12 * MIB),
            ("fast.bin", 24 * MIB),
            ("capped.bin", 8 * MIB),
        ],
        &[],
    );
    let mut args = vec!["--background-limit", "1M"];
    args.extend_from_slice(FINE_CHECKPOINTS);
    let svc = Service::start(BIN, "sc-throttle", &args);
    let dest = |n: &str| svc.root.join(n);
    let bg = new_job(
        &svc,
        "bg",
        "normal",
        &[(&nginx.http_url("/bg.bin"), &dest("bg.bin"))],
    );
    svc.ok(&["resume", &bg]);
    let rate = measured_rate(&svc, &bg, Duration::from_millis(3500));
    assert_near(rate, MIB as f64, "NORMAL job under --background-limit 1M");

    // Foreground jobs: one capped by its own limit, one free; the background job yields.
    let capped = new_job(
        &svc,
        "capped",
        "foreground",
        &[(&nginx.http_url("/capped.bin"), &dest("capped.bin"))],
    );
    svc.ok(&["set-limit", &capped, "512k"]);
    svc.ok(&["resume", &capped]);
    let fast = new_job(
        &svc,
        "fast",
        "foreground",
        &[(&nginx.http_url("/fast.bin"), &dest("fast.bin"))],
    );
    let started = Instant::now();
    svc.ok(&["resume", &fast]);
    wait_transferred(&svc, &fast, 30);
    let fast_rate = (24 * MIB) as f64 / started.elapsed().as_secs_f64();
    eprintln!("foreground: {fast_rate:.0} B/s");
    assert!(
        fast_rate >= 4.0 * MIB as f64,
        "the foreground job ran at {fast_rate:.0} B/s, not well above the 1 MiB/s cap"
    );
    let bg_before = info(&svc, &bg);
    let rate = measured_rate(&svc, &capped, Duration::from_millis(3200));
    assert_near(
        rate,
        (512 * KIB) as f64,
        "foreground job with set-limit 512k",
    );
    let bg_after = info(&svc, &bg);
    assert_eq!(
        (bg_after.state.as_str(), bg_after.bytes_done),
        ("QUEUED", bg_before.bytes_done),
        "the background job ran beside foreground jobs"
    );
    svc.ok(&["complete", &fast]);
    assert_bytes(&dest("fast.bin"), &pattern("fast.bin", 24 * MIB));
    svc.ok(&["cancel", &capped]);
    svc.ok(&["cancel", &bg]);
}

#[test]
fn a_new_source_keeps_bytes_only_when_its_validator_matches() {
    const BIG: u64 = 2 * MIB;
    let nginx = nginx_with(
        &[("big.bin", BIG), ("other.bin", BIG)],
        &[SLOW_512K, MIRROR],
    );
    // Same size, an older mtime: nginx's ETag (mtime-size) differs, and only the ETag tells
    // the two files apart.
    let other = std::fs::File::options()
        .write(true)
        .open(nginx.root().join("other.bin"))
        .unwrap();
    other
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(other);
    let svc = Service::start(
        BIN,
        "sc-source",
        &["--segments", "1", "--checkpoint-bytes", "64k"],
    );
    let (ds, dd) = (svc.root.join("same.bin"), svc.root.join("diff.bin"));
    let slow = nginx.http_url("/slow/big.bin");
    let same = new_job(&svc, "same", "foreground", &[(&slow, &ds)]);
    let diff = new_job(&svc, "diff", "foreground", &[(&slow, &dd)]);
    svc.ok(&["resume", &same]);
    svc.ok(&["resume", &diff]);
    let mut kept = Vec::new();
    for id in [&same, &diff] {
        await_job(&svc, id, "transferring", Duration::from_secs(10), |s| {
            s.bytes_done >= 256 * KIB
        });
        svc.ok(&["suspend", id]);
        kept.push(await_state(&svc, id, "SUSPENDED", Duration::from_secs(5)).bytes_done);
    }
    svc.ok(&[
        "set-remote-name",
        &same,
        "0",
        &nginx.http_url("/mirror/big.bin"),
    ]);
    svc.ok(&[
        "set-remote-name",
        &diff,
        "0",
        &nginx.http_url("/mirror/other.bin"),
    ]);
    svc.ok(&["resume", &same]);
    svc.ok(&["resume", &diff]);
    wait_transferred(&svc, &same, 30);
    wait_transferred(&svc, &diff, 30);
    svc.ok(&["complete", &same]);
    svc.ok(&["complete", &diff]);
    assert_bytes(&ds, &pattern("big.bin", BIG));
    assert_bytes(&dd, &pattern("other.bin", BIG));

    let log = nginx.wait_log_lines(4);
    let gets = |uri: &str| -> Vec<_> {
        log.iter()
            .filter(|l| l.method == "GET" && l.uri == uri)
            .cloned()
            .collect()
    };
    // Same validator: one ranged request to the new URL, from at least the checkpoint.
    let m = gets("/mirror/big.bin");
    assert_eq!(m.len(), 1, "{m:#?}");
    let from: u64 = m[0]
        .range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a resume: {:?}", m[0]));
    assert!(
        from >= kept[0] && from > 0,
        "resumed at {from}, kept {kept:?}"
    );
    assert_eq!((m[0].status, m[0].bytes), (206, BIG - from), "{:?}", m[0]);
    // Another entity: whatever the request asked, the data came as the whole new file.
    let o = gets("/mirror/other.bin");
    assert!(!o.is_empty() && o.iter().all(|l| l.status == 200), "{o:#?}");
    assert_eq!(o.last().unwrap().bytes, BIG, "{o:#?}");
}

#[test]
fn complete_midway_keeps_finished_files_and_cancel_removes_temporaries() {
    const SLOW: u64 = 3 * MIB;
    let nginx = nginx_with(
        &[("done.bin", 64 * KIB), ("m.bin", SLOW), ("c.bin", SLOW)],
        &[SLOW_512K],
    );
    let svc = Service::start(
        BIN,
        "sc-midway",
        &["--segments", "1", "--checkpoint-bytes", "64k"],
    );
    let (mdir, cdir) = (svc.root.join("m"), svc.root.join("c"));
    std::fs::create_dir(&mdir).unwrap();
    std::fs::create_dir(&cdir).unwrap();
    let (m1, m2, c1) = (
        mdir.join("done.bin"),
        mdir.join("m.bin"),
        cdir.join("c.bin"),
    );
    let m = new_job(
        &svc,
        "m",
        "foreground",
        &[
            (&nginx.http_url("/done.bin"), &m1),
            (&nginx.http_url("/slow/m.bin"), &m2),
        ],
    );
    let c = new_job(
        &svc,
        "c",
        "foreground",
        &[(&nginx.http_url("/slow/c.bin"), &c1)],
    );
    svc.ok(&["resume", &m]);
    svc.ok(&["resume", &c]);
    let s = await_job(&svc, &m, "midway", Duration::from_secs(15), |s| {
        s.files_done == 1 && s.bytes_done > 64 * KIB + 128 * KIB
    });
    assert_eq!(s.state, "TRANSFERRING", "{s:?}");
    let r = svc.job(&["complete", &m]);
    assert_eq!(r.code, 0, "complete: {}", r.stderr);
    assert_eq!(info(&svc, &m).state, "ACKNOWLEDGED");
    assert_bytes(&m1, &pattern("done.bin", 64 * KIB));
    assert!(!m2.exists(), "an unfinished file was put in place");
    assert_no_temporaries(&m1);
    assert_no_temporaries(&m2);
    let names: Vec<_> = std::fs::read_dir(&mdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["done.bin"], "{names:?}");

    await_job(&svc, &c, "transferring", Duration::from_secs(10), |s| {
        s.state == "TRANSFERRING" && s.bytes_done > 0
    });
    svc.ok(&["cancel", &c]);
    assert_eq!(info(&svc, &c).state, "CANCELLED");
    assert_no_temporaries(&c1);
    assert!(!c1.exists());
    let left: Vec<_> = std::fs::read_dir(&cdir).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn notify_runs_once_with_literal_arguments() {
    let nginx = nginx_with(&[("n.bin", 64 * KIB)], &[]);
    let svc = Service::start(BIN, "sc-notify", &[]);
    let out = svc.root.join("notified");
    let script = svc.root.join("notify.sh");
    let out_text = out.to_str().unwrap();
    assert!(!out_text.contains('\''), "{out_text}");
    // Each argument followed by a NUL, appended: the file shows every run and every argument
    // exactly as the program received it.
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\000' \"$@\" >> '{out_text}'\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dest = svc.root.join("n.bin");
    let id = new_job(
        &svc,
        "n",
        "foreground",
        &[(&nginx.http_url("/n.bin"), &dest)],
    );
    svc.ok(&[
        "set-notify",
        &id,
        script.to_str().unwrap(),
        "a b",
        "$HOME;*",
    ]);
    svc.ok(&["resume", &id]);
    wait_transferred(&svc, &id, 30);
    let ran = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        out.exists().then_some(())
    });
    assert!(ran.is_some(), "the notify program did not run");
    // Long enough for a second (wrong) run to show.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"a b\0$HOME;*\0",
        "exactly one run, with the literal arguments"
    );
    svc.ok(&["complete", &id]);
    assert_bytes(&dest, &pattern("n.bin", 64 * KIB));
}

/// A job's Basic credentials go to an https origin (trusted through `ferry service --cacert`)
/// and authenticate the transfer; the secret was read from stdin and is never printed.
#[test]
fn basic_credentials_authenticate_a_job_over_https() {
    let pki = support::pki();
    let nginx = Nginx::start(
        NginxOptions::new()
            .basic_auth("/basic/", "jobs", &[("alice", "s3cret-Pw")])
            .file("basic/private.bin", "private bytes\n"),
    );
    let svc = Service::start(
        BIN,
        "svc-basic-https",
        &["--cacert", pki.ca_pem.to_str().unwrap()],
    );
    let dest = svc.root.join("private.bin");
    let url = nginx.https_url("/basic/private.bin");
    let id = new_job(&svc, "auth", "foreground", &[(&url, &dest)]);
    let vars = svc.vars();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = support::cli::run(
        BIN,
        Some(svc.root.path()),
        &[
            "job",
            "set-credentials",
            &id,
            "--target",
            "server",
            "--scheme",
            "basic",
            "--user",
            "alice",
            "--password-env",
            "FERRY_TEST_SECRET",
        ],
        &[env.as_slice(), &[("FERRY_TEST_SECRET", "s3cret-Pw")]].concat(),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    svc.ok(&["resume", &id]);
    wait_transferred(&svc, &id, 30);
    let info_text = svc.ok(&["info", &id, "--verbose"]);
    assert!(!info_text.contains("s3cret"), "{info_text}");
    svc.ok(&["complete", &id]);
    assert_eq!(std::fs::read(&dest).unwrap(), b"private bytes\n");
    let log = nginx.wait_log_lines(1);
    assert!(
        log.iter()
            .any(|l| l.remote_user == "alice" && l.status == 200),
        "{log:?}"
    );
}
