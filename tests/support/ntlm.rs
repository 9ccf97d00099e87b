//! An NTLM-protected HTTP/1.1 server per test: `tests/servers/ntlm_server.py`, whose NTLM is the
//! pyspnego package's (an implementation independent of ferry's), on a loopback port.
//!
//! ```text
//! let server = NtlmServer::start(&[("CORP", "alice", "Secret1")]);
//! ... the client GETs server.url("/x") with CORP\alice / Secret1 ...
//! let log = server.wait_log_lines(2);   // type 1 → 401, type 3 → 200
//! assert_eq!(log[1].user.as_deref(), Some("CORP\\alice"));
//! assert_eq!(log[0].conn, log[1].conn); // the handshake stayed on one connection
//! ```
//!
//! Behaviour (IIS-like, per TCP connection; see the script's docstring for the details):
//! - no `Authorization` on an unauthenticated connection: 401 `WWW-Authenticate: NTLM`;
//! - `NTLM <type 1>`: 401 `WWW-Authenticate: NTLM <type 2>` (a fresh handshake);
//! - `NTLM <type 3>`: verified by pyspnego; success is 200 `hello DOMAIN\user` (the user file's
//!   spelling) and the connection stays authenticated: later requests on it without
//!   `Authorization` get 200 as that user; failure is 401 `WWW-Authenticate: NTLM` and the
//!   connection's state resets;
//! - `/anon` (any query): always 200 `anonymous`, logged with no user.
//!
//! Only NTLMv2 responses pass: the acceptor runs with `LM_COMPAT_LEVEL=5`, so NTLMv1 and LM
//! responses fail like a wrong password. Every response has a `Content-Length` and keeps the
//! connection open.
//!
//! Needs `python3` with the `pyspnego` package (`scripts/test.sh` installs it).

use super::logfile::{read_lines, wait_lines};
use super::nginx::{read_lossy, stop_child};
use super::{find_executable, poll, TempDir};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long to wait for the server to print its port.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`NtlmServer::wait_log_lines`] waits.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// What to tell a developer when pyspnego is missing.
pub const PYSPNEGO_HINT: &str = "pyspnego missing: run ./scripts/test.sh (pip install pyspnego)";

/// The Python interpreter for the test servers: `$FERRY_TEST_PYTHON`, or `python3` on `PATH`.
pub fn python_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    find_executable("python3", &[]).unwrap_or_else(|| {
        panic!("python3 not found on PATH: install python3, then run ./scripts/test.sh")
    })
}

/// A script under `tests/servers/`.
pub fn server_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/servers")
        .join(name)
}

/// One request as the NTLM server logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmLogLine {
    /// The server's TCP connection number (from 1): equal values mean the same connection.
    pub conn: u64,
    /// `DOMAIN\user` (the user file's spelling; just `user` for an empty domain) when the request
    /// was answered as an authenticated user, `None` otherwise (all 401s, and `/anon`).
    pub user: Option<String>,
    /// Response status.
    pub status: u16,
    /// Request path, without the query.
    pub path: String,
    /// What the request's `Authorization` header held: `none`, `type1`, `type3`, or `other`
    /// (another scheme, or not an NTLM negotiate/authenticate message).
    pub auth: String,
}

impl NtlmLogLine {
    /// Parses `conn=<n> user=<u|-> status=<code> path=<path> auth=<kind>`.
    pub fn parse(line: &str) -> Result<NtlmLogLine, String> {
        let err = || format!("bad NTLM server log line: {line:?}");
        let rest = line.strip_prefix("conn=").ok_or_else(err)?;
        let (conn, rest) = rest.split_once(" user=").ok_or_else(err)?;
        // The user may hold spaces; path and auth cannot, so split those off the end.
        let mut tail = rest.rsplitn(4, ' ');
        let auth = tail.next().and_then(|s| s.strip_prefix("auth="));
        let path = tail.next().and_then(|s| s.strip_prefix("path="));
        let status = tail.next().and_then(|s| s.strip_prefix("status="));
        let user = tail.next();
        let (Some(auth), Some(path), Some(status), Some(user)) = (auth, path, status, user) else {
            return Err(err());
        };
        Ok(NtlmLogLine {
            conn: conn.parse().map_err(|_| err())?,
            user: (user != "-").then(|| user.to_owned()),
            status: status.parse().map_err(|_| err())?,
            path: path.to_owned(),
            auth: auth.to_owned(),
        })
    }
}

/// A running NTLM server. Dropping it kills the server and removes its directory (user file,
/// logs); if the test is panicking, the server's stderr is printed first.
#[derive(Debug)]
pub struct NtlmServer {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
}

impl NtlmServer {
    /// Starts the server with these accounts: `(domain, user, password)` (the domain may be
    /// empty). Waits (at most 10 s) for it to report its port.
    ///
    /// Panics with an install hint when python3 or pyspnego is missing, and with the server's
    /// stderr when it does not come up. A field may not hold `:` or a line break (the user file
    /// is pyspnego's `DOMAIN:USER:PASSWORD` format).
    pub fn start(users: &[(&str, &str, &str)]) -> NtlmServer {
        let dir = TempDir::new("ntlm");
        let mut file = String::new();
        for (domain, user, password) in users {
            for field in [domain, user, password] {
                assert!(
                    !field.contains([':', '\n', '\r']),
                    "NTLM test account field {field:?} holds ':' or a line break, which the \
                     DOMAIN:USER:PASSWORD user file cannot express"
                );
            }
            assert!(
                !user.is_empty(),
                "NTLM test account with an empty user name"
            );
            file.push_str(&format!("{domain}:{user}:{password}\n"));
        }
        let users_path = dir.join("users");
        std::fs::write(&users_path, file).expect("write NTLM user file");
        let python = python_binary();
        let script = server_script("ntlm_server.py");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut child = match Command::new(&python)
            .arg(&script)
            .arg("--port")
            .arg("0")
            .arg("--users")
            .arg(&users_path)
            .arg("--log")
            .arg(dir.join("requests.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{} not found: install python3, then run ./scripts/test.sh",
                python.display()
            ),
            Err(e) => panic!("could not start {}: {e}", python.display()),
        };
        // A thread reads stdout so that the wait is bounded; it ends when the server exits.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep the pipe drained (the server prints nothing else; bounded by its lifetime).
            for _ in lines.by_ref() {}
        });
        let first = rx.recv_timeout(START_TIMEOUT);
        let port = match first {
            Ok(Some(Ok(ref line))) => line
                .strip_prefix("PORT ")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .filter(|p| *p != 0),
            _ => None,
        };
        let Some(port) = port else {
            stop_child(&mut child);
            let err = read_lossy(&dir.join("stderr.log"));
            if err.contains("pyspnego missing") || err.contains("No module named 'spnego'") {
                panic!("{PYSPNEGO_HINT}\n--- server stderr ---\n{err}");
            }
            panic!(
                "NTLM server ({} {}) did not report its port within {START_TIMEOUT:?} \
                 (first stdout line: {first:?})\n--- server stderr ---\n{err}",
                python.display(),
                script.display()
            );
        };
        NtlmServer {
            child: Some(child),
            dir,
            port,
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// The instance's directory (user file, request log, stderr).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stderr so far (why a type 3 was rejected, Python tracebacks).
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr.log"))
    }

    /// The request log's complete lines so far, parsed. Panics on a line it cannot parse.
    pub fn log(&self) -> Vec<NtlmLogLine> {
        read_lines(&self.dir.join("requests.log"), NtlmLogLine::parse)
    }

    /// Waits (at most 5 s) until the log has at least `n` lines and returns them all. The server
    /// logs a request after sending its response, so a client may be a little ahead of the log.
    /// Panics, showing the lines and the server's stderr, if fewer appear.
    pub fn wait_log_lines(&self, n: usize) -> Vec<NtlmLogLine> {
        wait_lines(
            "NTLM server log lines",
            &self.dir.join("requests.log"),
            n,
            NtlmLogLine::parse,
            LOG_WAIT,
            || format!("\n--- server stderr ---\n{}", self.stderr()),
        )
    }
}

impl Drop for NtlmServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "NTLM server on port {} (dir {}), stderr:\n{}",
                self.port,
                self.dir.path().display(),
                self.stderr()
            );
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}
