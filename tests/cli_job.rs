//! `ferry job …` end to end, through the per-user service that the first command starts on
//! demand. Each test is one user with private directories (`XDG_RUNTIME_DIR` for the socket,
//! `XDG_DATA_HOME` for the store); the service it started is stopped when the test ends.
//!
//! Covered: create → add → resume → wait → transferred with the data only in temporary files →
//! complete → the destinations appear with the right bytes; cancel removes temporary files
//! (also of a running job); every illegal command in each state a job can be brought to is one
//! line naming that state; every command's happy path; credentials never in any output, argv
//! or log; `--json` is JSON; `monitor --count` repeats the table; `--help` and usage errors need
//! no service; a service killed mid-transfer resumes from its checkpoint; credentials and the
//! notify program reach the transfer.

mod support;

use ferry_transfer::state::{self, State, Verb};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cli, large_file_bytes, poll, Nginx, NginxOptions, TempDir};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_ferry");
/// Longest any one `ferry job` run may take (a `wait` included).
const RUN_LIMIT: Duration = Duration::from_secs(90);
/// The large test file's name.
const BIG: &str = "big.bin";
/// Its size: large enough for several checkpoints and segments.
const BIG_SIZE: u64 = 3 << 20;
/// A password that must never appear in any output, argv or log.
const SECRET: &str = "Tr0ub4dor-s3cret-7q";

/// One user's world: a working directory and a private runtime and data directory. The
/// service `ferry job` starts there is stopped on drop (SIGTERM, then SIGKILL; bounded).
struct User {
    root: TempDir,
    cwd: PathBuf,
    runtime: PathBuf,
    data: PathBuf,
}

/// What one run printed.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl User {
    /// Fresh private directories.
    fn new(label: &str) -> User {
        let root = TempDir::new(label);
        let (cwd, runtime, data) = (root.join("cwd"), root.join("run"), root.join("data"));
        for d in [&cwd, &runtime, &data] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        User {
            root,
            cwd,
            runtime,
            data,
        }
    }

    /// The variables that point `ferry` at this user's directories.
    fn vars(&self) -> [(&'static str, String); 2] {
        [
            (
                "XDG_RUNTIME_DIR",
                self.runtime.to_string_lossy().into_owned(),
            ),
            ("XDG_DATA_HOME", self.data.to_string_lossy().into_owned()),
        ]
    }

    /// Runs `ferry job ARGS` in `cwd` with `extra` variables (bounded).
    fn run_in(&self, cwd: &Path, args: &[&str], extra: &[(&str, &str)]) -> Out {
        let vars = self.vars();
        let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra);
        let full: Vec<&str> = std::iter::once("job").chain(args.iter().copied()).collect();
        let r = cli::run(BIN, Some(cwd), &full, &env, RUN_LIMIT);
        Out {
            code: r.code,
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: r.stderr,
        }
    }

    /// Runs `ferry job ARGS` in the working directory.
    fn job(&self, args: &[&str]) -> Out {
        self.run_in(&self.cwd, args, &[])
    }

    /// Runs and expects exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let r = self.job(args);
        assert_eq!(r.code, 0, "ferry job {args:?}: {}", r.stderr);
        r.stdout
    }

    /// `create NAME ARGS…`: the new job's id.
    fn create(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["create", name];
        args.extend_from_slice(extra);
        let id = self.ok(&args).trim().to_owned();
        assert!(id.starts_with('{') && id.ends_with('}'), "{id}");
        id
    }

    /// Runs `ferry job ARGS` with `input` on stdin (bounded).
    fn with_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        let vars = self.vars();
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let full: Vec<&str> = std::iter::once("job").chain(args.iter().copied()).collect();
        let mut cmd = cli::command(BIN, Some(&self.cwd), &full, &env);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("start ferry");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        let deadline = Instant::now() + RUN_LIMIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ferry job {args:?} still running after {RUN_LIMIT:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The state `info` reports.
    fn state(&self, id: &str) -> String {
        field(&self.ok(&["info", id]), "state").to_owned()
    }

    /// Polls `info` until the job is in `want` (≤ 30 s).
    fn await_state(&self, id: &str, want: &str) {
        let got = poll(Duration::from_secs(30), Duration::from_millis(100), || {
            let s = self.state(id);
            (s == want).then_some(s)
        });
        assert!(
            got.is_some(),
            "{id} never became {want}: {}",
            self.state(id)
        );
    }

    /// The pid of the service this user's `ferry job` started.
    fn service_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.runtime.join("ferry/pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Whether `pid` is this user's ferry service: its argv says `ferry service` and its
    /// environment names our runtime directory (never signal anyone else's process).
    fn is_our_service(&self, pid: u32) -> bool {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let ours = format!("XDG_RUNTIME_DIR={}", self.runtime.display());
        args.first().is_some_and(|a| a.ends_with(b"ferry"))
            && args.get(1) == Some(&&b"service"[..])
            && environ.split(|&b| b == 0).any(|v| v == ours.as_bytes())
    }

    /// Sends `signal` to our service and waits (≤ `limit`) until it is gone.
    fn signal_service(&self, signal: &str, limit: Duration) -> bool {
        let Some(pid) = self.service_pid().filter(|&p| self.is_our_service(p)) else {
            return true;
        };
        let _ = Command::new("kill")
            .args([signal, &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        poll(limit, Duration::from_millis(10), || gone(pid).then_some(())).is_some()
    }

    /// Stops the service: SIGTERM, then SIGKILL if it lingers.
    fn stop_service(&self) {
        if !self.signal_service("-TERM", Duration::from_secs(3)) {
            self.signal_service("-KILL", Duration::from_secs(3));
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        self.stop_service();
    }
}

/// True when `pid` no longer runs (absent, or a zombie waiting for its new parent).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The value of `label:` in `info` output.
fn field<'a>(info: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label} in {info}"))
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The first number after `"key":` in JSON text (0 when absent).
fn json_u64(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    json.find(&pat)
        .map(|i| &json[i + pat.len()..])
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `--json` output: one line, an array or object, with `keys`; and a real JSON parser
/// (python3, installed with the test servers) accepts it.
fn assert_json(text: &str, keys: &[&str]) {
    let t = text.strip_suffix('\n').unwrap_or(text);
    assert_eq!(t.lines().count(), 1, "one line: {text}");
    assert!(t.starts_with('[') || t.starts_with('{'), "{t}");
    for k in keys {
        assert!(t.contains(&format!("\"{k}\":")), "key {k}: {t}");
    }
    let mut py = Command::new("python3")
        .args(["-c", "import json,sys; json.load(sys.stdin)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (run ./scripts/test.sh)");
    py.stdin.take().unwrap().write_all(t.as_bytes()).unwrap();
    let done = poll(Duration::from_secs(20), Duration::from_millis(10), || {
        py.try_wait().unwrap()
    });
    let Some(status) = done else {
        let _ = py.kill();
        panic!("python3 did not finish");
    };
    assert!(status.success(), "not JSON: {t}");
}

/// An illegal command's refusal: exit 2, nothing on stdout, one line naming `state`.
fn assert_refused(r: &Out, state: &str, what: &str) {
    assert_eq!(r.code, 2, "{what} in {state}: {}", r.stderr);
    assert!(r.stdout.is_empty(), "{what}: {}", r.stdout);
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "{what}: one line: {}",
        r.stderr
    );
    assert!(r.stderr.contains("; hint: "), "{what}: {}", r.stderr);
    assert!(
        r.stderr.starts_with("ferry: (2) cannot "),
        "{what}: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("a job that is {state} (")),
        "{what}: names {state}: {}",
        r.stderr
    );
}

/// Every command a caller can give a job, with the verb it applies (`ID` stands for the job).
fn commands(dir: &Path) -> Vec<(Vec<String>, Verb)> {
    let y = dir.join("other.bin").to_string_lossy().into_owned();
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        (v(&["add", "ID", "http://127.0.0.1:1/y", &y]), Verb::AddFile),
        (v(&["resume", "ID"]), Verb::Resume),
        (v(&["suspend", "ID"]), Verb::Suspend),
        (v(&["cancel", "ID"]), Verb::Cancel),
        (v(&["complete", "ID"]), Verb::Complete),
        (v(&["set-priority", "ID", "low"]), Verb::SetPriority),
        (
            v(&["set-remote-name", "ID", "0", "http://127.0.0.1:1/z"]),
            Verb::SetRemoteName,
        ),
        (v(&["set-name", "ID", "renamed"]), Verb::SetProperty),
        (v(&["set-limit", "ID", "1M"]), Verb::SetProperty),
        (v(&["set-notify", "ID", "/bin/true"]), Verb::SetProperty),
        (v(&["set-notify", "ID", "--clear"]), Verb::SetProperty),
        (v(&["set-proxy", "ID", "none"]), Verb::SetProperty),
        (v(&["set-retry-delay", "ID", "30"]), Verb::SetProperty),
        (
            v(&["set-no-progress-timeout", "ID", "60"]),
            Verb::SetProperty,
        ),
        (
            v(&["set-redirect-policy", "ID", "disallow"]),
            Verb::SetProperty,
        ),
        (v(&["set-dynamic", "ID", "off"]), Verb::SetProperty),
        (v(&["set-headers", "ID", "X-A: 1"]), Verb::SetProperty),
        (
            v(&["set-credentials", "ID", "--target", "server", "--clear"]),
            Verb::SetProperty,
        ),
    ]
}

/// Runs every command that the state table forbids in `state` on job `id` and checks each
/// refusal; the job's state is unchanged afterwards.
fn check_illegal(u: &User, id: &str, state: State) {
    let mut refused = 0;
    for (args, verb) in commands(&u.cwd) {
        if state::is_legal(state, verb) {
            continue;
        }
        let args: Vec<&str> = args
            .iter()
            .map(|a| if a == "ID" { id } else { a.as_str() })
            .collect();
        assert_refused(&u.job(&args), state.as_str(), &format!("{args:?}"));
        refused += 1;
    }
    assert!(refused > 0, "nothing is illegal in {state}?");
    assert_eq!(u.state(id), state.as_str());
}

/// A job of two files (the whole big file, and two ranges of it), resumed and waited for.
fn transferred_job(u: &User, nginx: &Nginx, name: &str) -> String {
    let id = u.create(name, &["--priority", "foreground"]);
    let url = nginx.http_url(BIG);
    assert_eq!(u.ok(&["add", &id, &url, "whole.bin"]), "0\n");
    let ranges = [
        "add",
        name,
        &url,
        "parts.bin",
        "--range",
        "100:1000",
        "--range",
        "2000000:24",
    ];
    assert_eq!(u.ok(&ranges), "1\n");
    let info = u.ok(&["info", &id]);
    assert_eq!(field(&info, "state"), "SUSPENDED", "{info}");
    assert!(field(&info, "commands").contains("resume"), "{info}");
    let dest = u.cwd.join("whole.bin");
    assert!(
        info.contains(&dest.display().to_string()),
        "PATH made absolute against the caller's directory: {info}"
    );
    u.ok(&["resume", &id]);
    assert_eq!(
        u.ok(&["wait", &id, "--timeout", "60"]),
        format!("{id} TRANSFERRED\n")
    );
    let info = u.ok(&["info", &id, "--verbose"]);
    assert_eq!(field(&info, "state"), "TRANSFERRED", "{info}");
    assert_eq!(field(&info, "files"), "2/2", "{info}");
    id
}

#[test]
fn create_add_resume_wait_complete() {
    let nginx = Nginx::start(NginxOptions::new().large_file(BIG, BIG_SIZE));
    let u = User::new("job-cycle");
    let id = transferred_job(&u, &nginx, "cycle");

    // Transferred: the data is only in temporary files; the destinations do not exist yet.
    assert_eq!(
        names(&u.cwd),
        [".parts.bin.ferry-part", ".whole.bin.ferry-part"]
    );
    u.ok(&["complete", &id]);
    assert_eq!(names(&u.cwd), ["parts.bin", "whole.bin"]);
    let whole = std::fs::read(u.cwd.join("whole.bin")).unwrap();
    assert!(
        whole == large_file_bytes(BIG, 0, BIG_SIZE as usize),
        "whole.bin differs"
    );
    let mut want = large_file_bytes(BIG, 100, 1000);
    want.extend(large_file_bytes(BIG, 2_000_000, 24));
    assert!(
        std::fs::read(u.cwd.join("parts.bin")).unwrap() == want,
        "parts.bin differs"
    );
    assert_eq!(u.state("cycle"), "ACKNOWLEDGED");
    assert_eq!(u.ok(&["wait", &id]), format!("{id} ACKNOWLEDGED\n"));

    // The store is private to the user.
    let db = u.data.join("ferry/jobs.db");
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{db:?}");

    // list --json is JSON with the job in it; info --json too.
    let json = u.ok(&["list", "--json"]);
    assert_json(
        &json,
        &["id", "name", "state", "files_done", "files_total", "files"],
    );
    assert!(json.starts_with("[{"), "{json}");
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
    let json = u.ok(&["info", &id, "--json", "--verbose"]);
    assert_json(
        &json,
        &["state", "validator", "temp", "credentials", "proxy"],
    );
    assert!(json.contains("\"etag\":\""), "validator recorded: {json}");

    // The table has a header and one aligned row.
    let table = u.ok(&["list"]);
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
    let u = User::new("job-cancel");
    let id = transferred_job(&u, &nginx, "gone");
    assert_eq!(names(&u.cwd).len(), 2);

    u.ok(&["cancel", &id]);
    assert!(
        names(&u.cwd).is_empty(),
        "temporary files removed, no destination: {:?}",
        names(&u.cwd)
    );
    assert_eq!(u.state(&id), "CANCELLED");
    let r = u.job(&["complete", &id]);
    assert_refused(&r, "CANCELLED", "complete");
    assert!(names(&u.cwd).is_empty());
    let r = u.job(&["wait", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("was cancelled"), "{}", r.stderr);
}

#[test]
fn failures_and_lookups() {
    let nginx = Nginx::start(NginxOptions::new());
    let u = User::new("job-fail");
    u.create("dup", &[]);
    u.create("dup", &[]);
    let r = u.job(&["info", "dup"]);
    assert_eq!(r.code, 2, "ambiguous name: {}", r.stderr);
    assert!(r.stderr.contains("2 jobs are named 'dup'"), "{}", r.stderr);
    let r = u.job(&["info", "nope"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no job 'nope'"), "{}", r.stderr);

    // resume refuses a job without files; it stays suspended.
    let empty = u.create("empty", &[]);
    let r = u.job(&["resume", &empty]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no files"), "{}", r.stderr);
    assert_eq!(u.state(&empty), "SUSPENDED");

    // A 404 is a final error, recorded with its status: wait says so and exits 22.
    let id = u.create("missing", &[]);
    let url = nginx.http_url("/no-such-file");
    u.ok(&["add", &id, &url, "x.bin"]);
    u.ok(&["resume", &id]);
    let r = u.job(&["wait", &id, "--timeout", "30"]);
    assert_eq!(r.code, 22, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("is ERROR") && r.stderr.contains("404"),
        "{}",
        r.stderr
    );
    let info = u.ok(&["info", &id]);
    assert_eq!(field(&info, "state"), "ERROR", "{info}");
    assert!(field(&info, "error").contains("HTTP 404"), "{info}");
    assert!(names(&u.cwd).is_empty(), "{:?}", names(&u.cwd));

    // add is legal only while suspended; set-priority and set-remote-name are fine in ERROR.
    let r = u.job(&["add", &id, &url, "y.bin"]);
    assert_refused(&r, "ERROR", "add");
    assert!(
        r.stderr.contains("'ferry job suspend JOB' first"),
        "{}",
        r.stderr
    );
    u.ok(&["set-priority", &id, "low"]);
    u.ok(&["set-remote-name", &id, "0", &nginx.http_url("/other")]);
    let info = u.ok(&["info", &id]);
    assert!(info.contains("LOW") && info.contains("/other"), "{info}");
}

#[test]
fn a_killed_service_resumes_from_the_recorded_checkpoint() {
    const SIZE: u64 = 8 << 20;
    let conf = "location /slow/ { alias @ROOT@/; limit_rate 2m; }";
    let nginx = Nginx::start(NginxOptions::new().large_file(BIG, SIZE).server_conf(conf));
    let u = User::new("job-kill");
    let id = u.create("slow", &[]);
    u.ok(&["add", &id, &nginx.http_url("/slow/big.bin"), "big.bin"]);
    u.ok(&["resume", &id]);

    // Wait for a checkpoint in the store (after the first progress report the store records
    // only checkpoints, whose data is synced), then kill the service without warning.
    let done = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let json = u.ok(&["info", &id, "--json"]);
        let done = json_u64(&json, "bytes_done");
        (done >= 1 << 20 && json.contains("\"state\":\"TRANSFERRING\"")).then_some(done)
    });
    let checkpoint = done.expect("no checkpoint recorded");
    let first = u.service_pid().expect("the service wrote its pid");
    assert!(
        u.signal_service("-KILL", Duration::from_secs(5)),
        "service still running"
    );
    assert!(!u.cwd.join("big.bin").exists());

    // The next command starts a new service, which puts the job back in the queue.
    assert_eq!(
        u.ok(&["wait", &id, "--timeout", "60"]),
        format!("{id} TRANSFERRED\n")
    );
    assert_ne!(u.service_pid(), Some(first), "a new service");
    u.ok(&["complete", &id]);
    assert_eq!(names(&u.cwd), ["big.bin"]);
    assert!(
        std::fs::read(u.cwd.join("big.bin")).unwrap() == large_file_bytes(BIG, 0, SIZE as usize),
        "bytes differ"
    );
    let log = nginx.wait_log_lines(2);
    let gets: Vec<(u16, &str)> = log.iter().map(|l| (l.status, l.range.as_str())).collect();
    let resumed_at = log
        .last()
        .and_then(|l| l.range.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        resumed_at.is_some_and(|at| at >= checkpoint),
        "resumed with a Range from the checkpoint ({checkpoint}): {gets:?}"
    );
}

#[test]
fn every_setting_through_the_service_and_no_secret_anywhere() {
    let u = User::new("job-settings");
    let mut outputs: Vec<Out> = Vec::new();
    let mut keep = |o: Out| -> Out {
        outputs.push(Out {
            code: o.code,
            stdout: o.stdout.clone(),
            stderr: o.stderr.clone(),
        });
        o
    };
    let id = u.create("settings", &[]);
    let sub = u.cwd.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let r = keep(u.run_in(&sub, &["add", &id, "http://127.0.0.1:1/a", "a.bin"], &[]));
    assert_eq!((r.code, r.stdout.as_str()), (0, "0\n"), "{}", r.stderr);

    // The secret travels on stdin or in the caller's environment, never in argv.
    let set_stdin = [
        "set-credentials",
        &id,
        "--target",
        "server",
        "--scheme",
        "basic",
        "--user",
        "alice",
        "--password-stdin",
    ];
    let r = keep(u.with_stdin(&set_stdin, format!("{SECRET}\n").as_bytes()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let set_env = [
        "set-credentials",
        &id,
        "--target",
        "proxy",
        "--scheme",
        "ntlm",
        "--user",
        "CORP\\bob",
        "--password-env",
        "FERRY_TEST_PW",
    ];
    let r = keep(u.run_in(&u.cwd, &set_env, &[("FERRY_TEST_PW", SECRET)]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Refusals that see the secret.
    let r = keep(u.with_stdin(
        &[
            "set-credentials",
            &id,
            "--target",
            "server",
            "--scheme",
            "basic",
            "--user",
            "a:b",
            "--password-stdin",
        ],
        SECRET.as_bytes(),
    ));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = keep(u.with_stdin(
        &[
            "set-credentials",
            &id,
            "--target",
            "proxy",
            "--scheme",
            "bearer",
            "--password-stdin",
        ],
        SECRET.as_bytes(),
    ));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let typed = format!("--secret={SECRET}");
    let r = keep(u.job(&["set-credentials", &id, "--target", "server", &typed]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--password-stdin"), "{}", r.stderr);
    let r = keep(u.job(&[
        "set-credentials",
        &id,
        "--target",
        "server",
        "--scheme",
        "basic",
        "--user",
        "u",
        "--password-env",
        "FERRY_TEST_UNSET_VAR",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);

    // The notify program: a bare name is looked up on the caller's PATH.
    u.ok(&["set-notify", &id, "true", "--literal", "$HOME", "a b"]);
    u.ok(&["set-limit", &id, "500k"]);
    u.ok(&[
        "set-proxy",
        &id,
        "override",
        "http=127.0.0.1:3128",
        "--bypass",
        "<local>",
    ]);
    let r = u.job(&["set-retry-delay", &id, "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("5 s, the minimum"), "{}", r.stderr);
    u.ok(&["set-no-progress-timeout", &id, "0"]);
    u.ok(&[
        "set-redirect-policy",
        &id,
        "report",
        "--allow-https-to-http",
    ]);
    u.ok(&["set-dynamic", &id, "on"]);
    u.ok(&[
        "set-headers",
        &id,
        "X-Trace: 7",
        "Authorization: Bearer hidden-token",
    ]);
    u.ok(&["set-priority", &id, "high"]);
    u.ok(&["set-remote-name", &id, "0", "http://127.0.0.1:1/b"]);
    u.ok(&["set-name", &id, "renamed"]);

    let info = keep(u.job(&["info", "renamed", "--verbose"]));
    assert_eq!(info.code, 0, "{}", info.stderr);
    let info = info.stdout;
    let checks = [
        ("file 0", "http://127.0.0.1:1/b"),
        ("file 0", &format!("{}", sub.join("a.bin").display())),
        ("priority", "HIGH"),
        ("rate limit", "512000 B/s"),
        ("retry delay", "5 s"),
        ("no-progress timeout", "0 s"),
        ("redirects", "allow-report (https to http allowed)"),
        ("dynamic", "on"),
        ("proxy", "override http=127.0.0.1:3128 bypass \"<local>\""),
        ("credentials", "SERVER BASIC user alice; PROXY NTLM user"),
        ("notify", "/true --literal \"$HOME\" \"a b\""),
    ];
    for (label, want) in checks {
        assert!(
            field(&info, label).contains(want),
            "{label}: {want}: {info}"
        );
    }
    let program = field(&info, "notify").split(' ').next().unwrap();
    assert!(
        program.starts_with('/'),
        "resolved to an absolute path: {info}"
    );
    assert!(
        info.contains("X-Trace: 7") && info.contains("Authorization: ***"),
        "{info}"
    );
    assert!(!info.contains("hidden-token"), "{info}");
    for args in [
        vec!["info", &id, "--json", "--verbose"],
        vec!["info", &id, "--json"],
        vec!["list", "--json"],
        vec!["list"],
    ] {
        let r = keep(u.job(&args));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let json = u.ok(&["info", &id, "--json", "--verbose"]);
    assert_json(
        &json,
        &[
            "notify",
            "credentials",
            "proxy",
            "redirect_policy",
            "rate_limit",
            "headers",
        ],
    );
    assert!(
        json.contains("{\"target\":\"SERVER\",\"scheme\":\"BASIC\",\"user\":\"alice\"}"),
        "{json}"
    );

    // Clearing.
    u.ok(&["set-credentials", &id, "--target", "proxy", "--clear"]);
    u.ok(&["set-notify", &id, "--clear"]);
    u.ok(&["set-headers", &id]);
    u.ok(&["set-limit", &id, "none"]);
    u.ok(&["set-proxy", &id, "session"]);
    let info = u.ok(&["info", &id, "-v"]);
    for (label, want) in [
        ("credentials", "SERVER BASIC user alice"),
        ("notify", "none"),
        ("headers", "none"),
        ("rate limit", "none"),
        ("proxy", "session"),
    ] {
        assert!(field(&info, label).starts_with(want), "{label}: {info}");
    }
    assert!(!field(&info, "credentials").contains("PROXY"), "{info}");

    // The secret is in no output, in no process's arguments, and not in the service's log.
    for (i, o) in outputs.iter().enumerate() {
        assert!(
            !o.stdout.contains(SECRET) && !o.stderr.contains(SECRET),
            "output #{i}"
        );
    }
    let pid = u.service_pid().expect("service pid");
    assert!(u.is_our_service(pid));
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !cmdline
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes()),
            "{:?} has the secret in its argv",
            entry.path()
        );
    }
    let log = std::fs::read_to_string(u.runtime.join("ferry/service.log")).unwrap_or_default();
    assert!(!log.contains(SECRET), "{log}");

    // Still SUSPENDED throughout; complete with nothing finished discards and acknowledges.
    assert_eq!(u.state(&id), "SUSPENDED");
    let r = u.job(&["complete", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not finished"), "{}", r.stderr);
    assert_eq!(u.state(&id), "ACKNOWLEDGED");
}

#[test]
fn illegal_commands_in_each_reachable_state_name_that_state() {
    const SLOW_SIZE: u64 = 8 << 20;
    let conf = "location /slow/ { alias @ROOT@/; limit_rate 64k; }";
    let nginx = Nginx::start(
        NginxOptions::new()
            .large_file(BIG, SLOW_SIZE)
            .file("small.bin", "small\n")
            .server_conf(conf),
    );
    let u = User::new("job-illegal");

    // ERROR: a 404.
    let err = u.create("error", &["--priority", "foreground"]);
    u.ok(&["add", &err, &nginx.http_url("/missing"), "e.bin"]);
    u.ok(&["resume", &err]);
    assert_eq!(u.job(&["wait", &err, "--timeout", "30"]).code, 22);
    check_illegal(&u, &err, State::Error);

    // TRANSIENT_ERROR: nothing listens on the port (retried only after 600 s).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let transient = u.create("transient", &["--priority", "foreground"]);
    u.ok(&[
        "add",
        &transient,
        &format!("http://127.0.0.1:{port}/x"),
        "t.bin",
    ]);
    u.ok(&["resume", &transient]);
    u.await_state(&transient, "TRANSIENT_ERROR");
    check_illegal(&u, &transient, State::TransientError);
    let r = u.job(&["wait", &transient, "--timeout", "1"]);
    assert_eq!(r.code, 28, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("still TRANSIENT_ERROR after 1 s (last error: "),
        "{}",
        r.stderr
    );

    // TRANSFERRED, then ACKNOWLEDGED.
    let done = u.create("done", &["--priority", "foreground"]);
    u.ok(&["add", &done, &nginx.http_url("small.bin"), "s.bin"]);
    u.ok(&["resume", &done]);
    u.ok(&["wait", &done, "--timeout", "30"]);
    check_illegal(&u, &done, State::Transferred);
    u.ok(&["complete", &done]);
    assert_eq!(std::fs::read(u.cwd.join("s.bin")).unwrap(), b"small\n");
    check_illegal(&u, &done, State::Acknowledged);

    // TRANSFERRING: a slow foreground job; meanwhile a background job stays QUEUED (background
    // jobs run only on bandwidth that foreground work leaves idle).
    let running = u.create("running", &["--priority", "foreground"]);
    u.ok(&["add", &running, &nginx.http_url("/slow/big.bin"), "r.bin"]);
    u.ok(&["resume", &running]);
    u.await_state(&running, "TRANSFERRING");
    let queued = u.create("queued", &[]);
    u.ok(&["add", &queued, &nginx.http_url("small.bin"), "q.bin"]);
    u.ok(&["resume", &queued]);
    assert_eq!(u.state(&queued), "QUEUED");
    check_illegal(&u, &queued, State::Queued);
    check_illegal(&u, &running, State::Transferring);
    let r = u.job(&["wait", &running, "--timeout", "1"]);
    assert_eq!(r.code, 28, "{}", r.stderr);
    assert!(
        r.stderr.contains("is still TRANSFERRING after 1 s"),
        "{}",
        r.stderr
    );

    // CANCELLED: cancelling the running job stops it and removes its temporary files.
    u.ok(&["cancel", &running]);
    check_illegal(&u, &running, State::Cancelled);
    let left = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let n = names(&u.cwd);
        n.iter().all(|f| !f.starts_with(".r.bin")).then_some(())
    });
    assert!(
        left.is_some(),
        "temporary files of the cancelled job: {:?}",
        names(&u.cwd)
    );
    // With the foreground job gone, the background job runs.
    assert_eq!(
        u.ok(&["wait", &queued, "--timeout", "30"]),
        format!("{queued} TRANSFERRED\n")
    );
}

#[test]
fn monitor_repeats_the_table() {
    let u = User::new("job-monitor");
    u.create("watched", &[]);
    let r = u.job(&["monitor", "--count", "2", "--refresh", "0.2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let headers = r.stdout.lines().filter(|l| l.starts_with("ID  ")).count();
    let rows = r.stdout.lines().filter(|l| l.contains("watched")).count();
    assert_eq!((headers, rows), (2, 2), "{}", r.stdout);
    assert!(
        !r.stdout.contains('\x1b'),
        "no screen control when not a terminal"
    );
    let r = u.job(&["monitor", "--count", "0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn help_and_usage_errors_need_no_service() {
    let u = User::new("job-local");
    let r = u.job(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("set-credentials") && r.stdout.contains("monitor"),
        "{}",
        r.stdout
    );
    let r = u.job(&["set-credentials", "--help"]);
    assert!(
        r.stdout.contains("--password-stdin") && !r.stdout.contains("--secret"),
        "{}",
        r.stdout
    );
    for args in [
        vec![
            "set-credentials",
            "j",
            "--target",
            "server",
            "--scheme",
            "basic",
            "--user",
            "u",
            "--password-stdin",
        ],
        vec!["bogus"],
        vec![],
        vec!["add", "j"],
        vec!["monitor", "--refresh", "0"],
        vec!["wait", "j", "--timeout", "x"],
        vec!["set-notify", "j", "./relative.sh"],
        vec!["set-notify", "j", "no-such-program-on-path-7q"],
        vec![
            "set-credentials",
            "j",
            "--target",
            "server",
            "--scheme",
            "basic",
            "--user",
            "u",
        ],
        vec![
            "set-credentials",
            "j",
            "--target",
            "server",
            "--clear",
            "--password-stdin",
        ],
    ] {
        let r = u.job(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("ferry: (2) ") && r.stderr.contains("; hint: "),
            "{}",
            r.stderr
        );
    }
    // None of these reached (or started) a service.
    assert!(
        !u.runtime.join("ferry/pid").exists() && !u.runtime.join("ferry/sock").exists(),
        "a service was started: {:?}",
        names(&u.runtime)
    );
}

#[test]
fn basic_credentials_never_cross_plain_http_and_notify_runs_on_failure() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .basic_auth("/basic/", "jobs", &[("alice", SECRET)])
            .file("basic/private.bin", "private bytes\n"),
    );
    let u = User::new("job-auth");
    let url = nginx.http_url("/basic/private.bin");

    // Without credentials: a final 401.
    let anon = u.create("anon", &["--priority", "foreground"]);
    u.ok(&["add", &anon, &url, "anon.bin"]);
    u.ok(&["resume", &anon]);
    let r = u.job(&["wait", &anon, "--timeout", "30"]);
    assert_eq!(r.code, 22, "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);

    // With them (from stdin), and a notify program that leaves a mark.
    let id = u.create("auth", &["--priority", "foreground"]);
    u.ok(&["add", &id, &url, "private.bin"]);
    let r = u.with_stdin(
        &[
            "set-credentials",
            &id,
            "--target",
            "server",
            "--scheme",
            "basic",
            "--user",
            "alice",
            "--password-stdin",
        ],
        format!("{SECRET}\n").as_bytes(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mark = u.root.join("notified");
    u.ok(&["set-notify", &id, "touch", mark.to_str().unwrap()]);
    u.ok(&["resume", &id]);
    // A job sends Basic only over https (BITS): over http the job fails, final, and says why;
    // the password never went on the wire. The notify program runs for a failure too.
    let r = u.job(&["wait", &id, "--timeout", "30"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("cleartext"), "{}", r.stderr);
    let notified = poll(Duration::from_secs(15), Duration::from_millis(50), || {
        mark.exists().then_some(())
    });
    assert!(notified.is_some(), "the notify program did not run");
    let log = nginx.wait_log_lines(1);
    assert!(
        log.iter().all(|l| l.authorization.is_empty()),
        "no credentials reached the server: {log:?}"
    );
}
