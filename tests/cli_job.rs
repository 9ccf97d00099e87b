//! `ferry job …` against a real nginx, on a per-test store (`XDG_DATA_HOME` in a temp dir):
//! create → add → resume (foreground, no service yet) → transferred with the data only in
//! temporary files → complete → the destinations appear with the right bytes; cancel removes
//! temporary files; an illegal verb is one clear line and a non-zero exit; the database is
//! mode 0600; `list --json` prints JSON.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{cli, large_file_bytes, Nginx, NginxOptions, TempDir};

const RUN_LIMIT: Duration = Duration::from_secs(30);
const BIG: &str = "big.bin";
const BIG_SIZE: u64 = 3 << 20;

/// Runs `ferry job ARGS` in `cwd` with the store under `data` (bounded):
/// (exit code, stdout, stderr).
fn job(cwd: &Path, data: &Path, args: &[&str]) -> (i32, String, String) {
    let data = data.to_str().expect("utf-8 data path");
    let args: Vec<&str> = std::iter::once("job").chain(args.iter().copied()).collect();
    let run = cli::run(
        env!("CARGO_BIN_EXE_ferry"),
        Some(cwd),
        &args,
        &[("XDG_DATA_HOME", data)],
        RUN_LIMIT,
    );
    (
        run.code,
        String::from_utf8_lossy(&run.stdout).into_owned(),
        run.stderr,
    )
}

/// Runs and expects success; returns stdout.
fn ok(cwd: &Path, data: &Path, args: &[&str]) -> String {
    let (code, out, err) = job(cwd, data, args);
    assert_eq!(code, 0, "ferry job {args:?}: {err}");
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn state_line(info: &str) -> &str {
    info.lines()
        .find_map(|l| l.strip_prefix("state:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no state in {info}"))
}

/// A job of two files (the whole big file, and two ranges of it) transferred by `resume`.
fn transferred_job(nginx: &Nginx, dir: &Path, data: &Path, name: &str) -> String {
    let id = ok(dir, data, &["create", name, "--priority", "foreground"]);
    let id = id.trim().to_owned();
    assert!(id.starts_with('{') && id.ends_with('}'), "{id}");
    let url = nginx.http_url(BIG);
    ok(dir, data, &["add", &id, &url, "whole.bin"]);
    ok(
        dir,
        data,
        &[
            "add",
            name,
            &url,
            "parts.bin",
            "--range",
            "100:1000",
            "--range",
            "2000000:24",
        ],
    );
    let info = ok(dir, data, &["info", &id]);
    assert_eq!(state_line(&info), "SUSPENDED", "{info}");
    assert!(info.contains("resume"), "legal verbs listed: {info}");
    let dest = dir.join("whole.bin");
    assert!(
        info.contains(&dest.display().to_string()),
        "PATH made absolute: {info}"
    );

    ok(dir, data, &["resume", &id]);
    let info = ok(dir, data, &["info", &id, "--verbose"]);
    assert_eq!(state_line(&info), "TRANSFERRED", "{info}");
    assert!(info.contains("files:     2/2"), "{info}");
    id
}

#[test]
fn create_add_resume_complete() {
    let nginx = Nginx::start(NginxOptions::new().large_file(BIG, BIG_SIZE));
    let dir = TempDir::new("job-cycle");
    let data = TempDir::new("job-cycle-data");
    let id = transferred_job(&nginx, dir.path(), data.path(), "cycle");

    // Transferred: the data is only in temporary files; the destinations do not exist yet.
    assert_eq!(
        names(dir.path()),
        [".parts.bin.ferry-part", ".whole.bin.ferry-part"]
    );

    ok(dir.path(), data.path(), &["complete", &id]);
    assert_eq!(names(dir.path()), ["parts.bin", "whole.bin"]);
    let whole = std::fs::read(dir.join("whole.bin")).unwrap();
    assert!(
        whole == large_file_bytes(BIG, 0, BIG_SIZE as usize),
        "whole.bin differs"
    );
    let mut want = large_file_bytes(BIG, 100, 1000);
    want.extend(large_file_bytes(BIG, 2_000_000, 24));
    assert!(
        std::fs::read(dir.join("parts.bin")).unwrap() == want,
        "parts.bin differs"
    );
    let info = ok(dir.path(), data.path(), &["info", "cycle"]);
    assert_eq!(state_line(&info), "ACKNOWLEDGED", "{info}");

    // The store is private to the user.
    let db = data.join("ferry/jobs.db");
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{db:?}");

    // list --json is JSON (an array of objects) with the job in it.
    let json = ok(dir.path(), data.path(), &["list", "--json"]);
    let json = json.trim();
    assert!(json.starts_with("[{") && json.ends_with("}]"), "{json}");
    assert!(
        json.contains(&format!(
            "\"id\":\"{id}\",\"name\":\"cycle\",\"state\":\"ACKNOWLEDGED\""
        )),
        "{json}"
    );
    assert!(
        json.contains("\"files_done\":2,\"files_total\":2"),
        "{json}"
    );

    // The table has a header and one aligned row.
    let table = ok(dir.path(), data.path(), &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("ID"), "{table}");
    assert_eq!(
        lines[0].find("NAME"),
        lines[1].find("cycle"),
        "aligned: {table}"
    );
}

#[test]
fn cancel_removes_temporary_files_and_later_verbs_are_refused() {
    let nginx = Nginx::start(NginxOptions::new().large_file(BIG, BIG_SIZE));
    let dir = TempDir::new("job-cancel");
    let data = TempDir::new("job-cancel-data");
    let id = transferred_job(&nginx, dir.path(), data.path(), "gone");
    assert_eq!(names(dir.path()).len(), 2);

    ok(dir.path(), data.path(), &["cancel", &id]);
    assert!(
        names(dir.path()).is_empty(),
        "temporary files removed, no destination: {:?}",
        names(dir.path())
    );
    let info = ok(dir.path(), data.path(), &["info", &id]);
    assert_eq!(state_line(&info), "CANCELLED", "{info}");

    let (code, out, err) = job(dir.path(), data.path(), &["complete", &id]);
    assert_ne!(code, 0);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("ferry: (2) cannot complete a job that is CANCELLED"),
        "{err}"
    );
    assert!(names(dir.path()).is_empty());
}

#[test]
fn failures_and_lookups() {
    let nginx = Nginx::start(NginxOptions::new());
    let dir = TempDir::new("job-fail");
    let data = TempDir::new("job-fail-data");
    ok(dir.path(), data.path(), &["create", "dup"]);
    ok(dir.path(), data.path(), &["create", "dup"]);
    let (code, _, err) = job(dir.path(), data.path(), &["info", "dup"]);
    assert_eq!(code, 2, "ambiguous name: {err}");
    let (code, _, err) = job(dir.path(), data.path(), &["info", "nope"]);
    assert_eq!(code, 2, "{err}");

    // A 404 is a final error, recorded with its status; the job is in ERROR.
    let id = ok(dir.path(), data.path(), &["create", "missing"]);
    let id = id.trim();
    let url = nginx.http_url("/no-such-file");
    ok(dir.path(), data.path(), &["add", id, &url, "x.bin"]);
    let (code, _, err) = job(dir.path(), data.path(), &["resume", id]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let info = ok(dir.path(), data.path(), &["info", id]);
    assert_eq!(state_line(&info), "ERROR", "{info}");
    assert!(info.contains("404"), "{info}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

    // add-file is legal only while suspended; set-priority is fine.
    let (code, _, err) = job(dir.path(), data.path(), &["add", id, &url, "y.bin"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("ferry: (2) cannot add a file to"), "{err}");
    ok(dir.path(), data.path(), &["set-priority", id, "low"]);
    ok(
        dir.path(),
        data.path(),
        &["set-remote-name", id, "0", &nginx.http_url("/other")],
    );
    let info = ok(dir.path(), data.path(), &["info", id]);
    assert!(info.contains("LOW") && info.contains("/other"), "{info}");
}

#[test]
fn an_interrupted_resume_continues_from_the_recorded_checkpoint() {
    const SIZE: u64 = 8 << 20;
    let conf = "location /slow/ { alias @ROOT@/; limit_rate 2m; }";
    let nginx = Nginx::start(NginxOptions::new().large_file(BIG, SIZE).server_conf(conf));
    let dir = TempDir::new("job-kill");
    let data = TempDir::new("job-kill-data");
    let id = ok(dir.path(), data.path(), &["create", "slow"]);
    let id = id.trim();
    let url = nginx.http_url("/slow/big.bin");
    ok(dir.path(), data.path(), &["add", id, &url, "big.bin"]);

    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .current_dir(dir.path())
        .args(["job", "resume", id])
        .env("XDG_DATA_HOME", data.path())
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let _ = child.wait();

    // The killed run left the job transferring, with a checkpoint recorded in the store.
    let json = ok(dir.path(), data.path(), &["info", id, "--json"]);
    assert!(json.contains("\"state\":\"TRANSFERRING\""), "{json}");
    assert!(
        !json.contains("\"bytes_done\":0,"),
        "progress recorded: {json}"
    );
    assert!(!dir.join("big.bin").exists());

    ok(dir.path(), data.path(), &["resume", id]);
    ok(dir.path(), data.path(), &["complete", id]);
    assert_eq!(names(dir.path()), ["big.bin"]);
    assert!(
        std::fs::read(dir.join("big.bin")).unwrap() == large_file_bytes(BIG, 0, SIZE as usize),
        "bytes differ"
    );
    let log = nginx.wait_log_lines(2);
    assert!(
        log[1].range.starts_with("bytes=") && log[1].range != "bytes=0-",
        "resumed with a Range: {:?}",
        log[1].range
    );
}
