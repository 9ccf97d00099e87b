//! An NTLM-authenticating forward proxy per test: `tests/servers/ntlm_proxy.py`, whose NTLM is
//! pyspnego's (independent of ferry's), on a loopback port.
//!
//! ```text
//! let proxy = NtlmProxy::start(&[("CORP", "alice", "Secret1")]);
//! let origin = RecordingOrigin::start(None);
//! ... the client GETs origin.http_url("/x") through proxy.url() as CORP\alice ...
//! let log = proxy.wait_log_lines(2);   // type 1 → 407, type 3 → forwarded (200)
//! assert_eq!(log[1].user.as_deref(), Some("CORP\\alice"));
//! assert_eq!(log[0].conn, log[1].conn); // the handshake stayed on one connection
//! ```
//!
//! Behaviour (per client TCP connection, like ISA/TMG; see the script's docstring):
//! - no `Proxy-Authorization` on an unauthenticated connection: 407 `Proxy-Authenticate: NTLM`;
//! - `NTLM <type 1>`: 407 `Proxy-Authenticate: NTLM <type 2>` (a fresh handshake);
//! - `NTLM <type 3>`: verified by pyspnego (NTLMv2 only, `LM_COMPAT_LEVEL=5`); success forwards the
//!   request and authenticates the connection (later requests on it need no header); failure is
//!   407 `Proxy-Authenticate: NTLM` and resets the connection's state;
//! - absolute-form `http://` requests are forwarded to loopback origins over a fresh origin
//!   connection without `Proxy-Authorization` (nor other hop-by-hop headers); `CONNECT` opens a
//!   tunnel (200, then bytes both ways until a side closes; the client connection ends with it);
//!   a non-loopback destination is 403, an unreachable one 502.
//!
//! Every 407 has a `Content-Length` and keeps the connection open.
//!
//! Needs `python3` with the `pyspnego` package (`scripts/test.sh` installs it).

use super::logfile::{read_lines, wait_lines};
use super::nginx::{read_lossy, stop_child};
use super::recording::spawn_python_server;
use super::{poll, TempDir};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// How long [`NtlmProxy::wait_log_lines`] waits.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// One request as the NTLM proxy logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmProxyLogLine {
    /// The proxy's client-connection number (from 1): equal values mean the same connection.
    pub conn: u64,
    /// `DOMAIN\user` (the user file's spelling) when the request was handled as an authenticated
    /// user (forwarded, tunnelled, or refused by the proxy after authentication), else `None`.
    pub user: Option<String>,
    /// Request method (`CONNECT` for tunnels).
    pub method: String,
    /// Request target as sent: an absolute URL, or `host:port` for `CONNECT`.
    pub target: String,
    /// Status the client got (the origin's for a forwarded request, 200 for a tunnel).
    pub status: u16,
    /// What `Proxy-Authorization` held: `none`, `type1`, `type3` or `other`.
    pub auth: String,
}

impl NtlmProxyLogLine {
    /// Parses `conn=<n> user=<u|-> method=<m> target=<t> status=<code> auth=<kind>`.
    pub fn parse(line: &str) -> Result<NtlmProxyLogLine, String> {
        let err = || format!("bad NTLM proxy log line: {line:?}");
        let rest = line.strip_prefix("conn=").ok_or_else(err)?;
        let (conn, rest) = rest.split_once(" user=").ok_or_else(err)?;
        // The user may hold spaces; method, target, status and auth cannot.
        let mut tail = rest.rsplitn(5, ' ');
        let auth = tail.next().and_then(|s| s.strip_prefix("auth="));
        let status = tail.next().and_then(|s| s.strip_prefix("status="));
        let target = tail.next().and_then(|s| s.strip_prefix("target="));
        let method = tail.next().and_then(|s| s.strip_prefix("method="));
        let user = tail.next();
        let (Some(auth), Some(status), Some(target), Some(method), Some(user)) =
            (auth, status, target, method, user)
        else {
            return Err(err());
        };
        Ok(NtlmProxyLogLine {
            conn: conn.parse().map_err(|_| err())?,
            user: (user != "-").then(|| user.to_owned()),
            method: method.to_owned(),
            target: target.to_owned(),
            status: status.parse().map_err(|_| err())?,
            auth: auth.to_owned(),
        })
    }
}

/// A running NTLM proxy. Dropping it kills the proxy (open tunnels end with it) and removes its
/// directory; if the test is panicking, the proxy's stderr is printed first.
#[derive(Debug)]
pub struct NtlmProxy {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
}

impl NtlmProxy {
    /// Starts the proxy with these accounts: `(domain, user, password)` (the domain may be
    /// empty). Waits (at most 10 s) for it to report its port.
    ///
    /// Panics with an install hint when python3 or pyspnego is missing. A field may not hold `:`
    /// or a line break (pyspnego's `DOMAIN:USER:PASSWORD` user file).
    pub fn start(users: &[(&str, &str, &str)]) -> NtlmProxy {
        let dir = TempDir::new("ntlm-proxy");
        let mut file = String::new();
        for (domain, user, password) in users {
            for field in [domain, user, password] {
                assert!(
                    !field.contains([':', '\n', '\r']),
                    "NTLM test account field {field:?} holds ':' or a line break"
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
        let log = dir.join("requests.log");
        let args: Vec<&std::ffi::OsStr> = vec![
            "--port".as_ref(),
            "0".as_ref(),
            "--users".as_ref(),
            users_path.as_os_str(),
            "--log".as_ref(),
            log.as_os_str(),
        ];
        let (mut child, rest) = spawn_python_server("ntlm_proxy.py", &args, dir.path());
        let Some(port) = rest.parse::<u16>().ok().filter(|p| *p != 0) else {
            stop_child(&mut child);
            panic!("NTLM proxy printed a bad port line: PORT {rest}");
        };
        NtlmProxy {
            child: Some(child),
            dir,
            port,
        }
    }

    /// `http://127.0.0.1:PORT`: the proxy URL to give a client (or `curl -x`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The instance's directory (user file, request log, stderr).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The proxy's stderr so far (why a type 3 was rejected, origin failures, tracebacks).
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr.log"))
    }

    /// The request log's complete lines so far, parsed. Panics on a line it cannot parse.
    pub fn log(&self) -> Vec<NtlmProxyLogLine> {
        read_lines(&self.dir.join("requests.log"), NtlmProxyLogLine::parse)
    }

    /// Waits (at most 5 s) until the log has at least `n` lines and returns them all. Panics,
    /// showing the lines and the proxy's stderr, if fewer appear.
    pub fn wait_log_lines(&self, n: usize) -> Vec<NtlmProxyLogLine> {
        wait_lines(
            "NTLM proxy log lines",
            &self.dir.join("requests.log"),
            n,
            NtlmProxyLogLine::parse,
            LOG_WAIT,
            || format!("\n--- proxy stderr ---\n{}", self.stderr()),
        )
    }
}

impl Drop for NtlmProxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "NTLM proxy on port {} (dir {}), stderr:\n{}",
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
