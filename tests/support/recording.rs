//! A recording origin per test: `tests/servers/recording_origin.py`, a keep-alive HTTP/1.1 server
//! (and, with a [`Pki`], an HTTPS one) that records every request's full header block, so proxy
//! tests can check exactly what reached the origin (e.g. that no `Proxy-Authorization` did).
//!
//! ```text
//! let origin = RecordingOrigin::start(Some(pki()));
//! ... the client GETs origin.http_url("/a") through a proxy ...
//! let reqs = origin.wait_requests(1);
//! assert!(reqs[0].header("proxy-authorization").is_none());
//! ```
//!
//! Answers: `/redirect?to=URL` → 302 `Location: URL` (URL percent-decoded); `/status/NNN` →
//! NNN; anything else → 200 with body `ok`. Every response has a `Content-Length` (none for 204
//! and 304) and keeps the connection open. The server listens on 127.0.0.1 and, when the machine
//! has IPv6 loopback, on `[::1]` with the same ports (so `localhost` works whichever address a
//! client or proxy tries first).
//!
//! Needs `python3` (standard library only).

use super::logfile::{read_lines, wait_lines};
use super::nginx::{read_lossy, stop_child};
use super::ntlm::{python_binary, server_script};
use super::{poll, Pki, TempDir};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long to wait for a Python test server to print its port line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RecordingOrigin::wait_requests`] waits.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// Starts `python3 tests/servers/<script> <args>` with stderr to `dir/stderr.log`, and waits (at
/// most 10 s) for its first stdout line, which must start with `PORT `; returns the child and the
/// rest of that line. Panics with the server's stderr (and an install hint for pyspnego) when it
/// does not come up.
pub fn spawn_python_server(script: &str, args: &[&std::ffi::OsStr], dir: &Path) -> (Child, String) {
    let python = python_binary();
    let script_path = server_script(script);
    let stderr_path = dir.join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).expect("create stderr.log");
    let mut child = match Command::new(&python)
        .arg(&script_path)
        .args(args)
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
        let _ = tx.send(lines.next());
        for _ in lines.by_ref() {}
    });
    let first = rx.recv_timeout(START_TIMEOUT);
    if let Ok(Some(Ok(line))) = &first {
        if let Some(rest) = line.strip_prefix("PORT ") {
            return (child, rest.trim().to_owned());
        }
    }
    stop_child(&mut child);
    let err = read_lossy(&stderr_path);
    if err.contains("pyspnego missing") || err.contains("No module named 'spnego'") {
        panic!(
            "{}\n--- server stderr ---\n{err}",
            super::ntlm::PYSPNEGO_HINT
        );
    }
    panic!(
        "{script} ({}) did not report its port within {START_TIMEOUT:?} (first stdout line: \
         {first:?})\n--- server stderr ---\n{err}",
        python.display()
    )
}

/// One request as the recording origin received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The origin's TCP connection number (from 1, across HTTP and HTTPS): equal values mean the
    /// same connection.
    pub conn: u64,
    /// Whether it came over the HTTPS listener.
    pub tls: bool,
    /// The listener port it came to.
    pub port: u16,
    /// Request method.
    pub method: String,
    /// The request target as sent (`/path?query`, or absolute form if a client sent that).
    pub path: String,
    /// `HTTP/1.1`, `HTTP/1.0`.
    pub version: String,
    /// Every header line in order: (name as sent, value).
    pub headers: Vec<(String, String)>,
    /// Bytes of request body received (-1 when the body was rejected).
    pub body_len: i64,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Parses one line of the origin's log (a JSON object).
    pub fn parse(line: &str) -> Result<RecordedRequest, String> {
        let err = |what: &str| format!("recording origin log line: {what}: {line:?}");
        let v = json::parse(line).map_err(|e| err(&e))?;
        let num = |k: &str| v.get(k).and_then(json::Value::as_i64).ok_or_else(|| err(k));
        let text = |k: &str| {
            v.get(k)
                .and_then(json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| err(k))
        };
        let headers = match v.get("headers") {
            Some(json::Value::Array(items)) => items
                .iter()
                .map(|h| match h {
                    json::Value::Array(pair) if pair.len() == 2 => {
                        match (pair[0].as_str(), pair[1].as_str()) {
                            (Some(n), Some(v)) => Ok((n.to_owned(), v.to_owned())),
                            _ => Err(err("header pair")),
                        }
                    }
                    _ => Err(err("header pair")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(err("headers")),
        };
        Ok(RecordedRequest {
            conn: u64::try_from(num("conn")?).map_err(|_| err("conn"))?,
            tls: matches!(v.get("tls"), Some(json::Value::Bool(true))),
            port: u16::try_from(num("port")?).map_err(|_| err("port"))?,
            method: text("method")?,
            path: text("target")?,
            version: text("version")?,
            headers,
            body_len: num("body_len")?,
        })
    }
}

/// A running recording origin. Dropping it kills the server and removes its directory; if the
/// test is panicking, the server's stderr is printed first.
#[derive(Debug)]
pub struct RecordingOrigin {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    tls_port: Option<u16>,
}

impl RecordingOrigin {
    /// Starts the origin: plain HTTP always, and HTTPS too with `tls` (presenting
    /// [`Pki::leaf_pem`], for `localhost`, `127.0.0.1` and `::1`). Waits at most 10 s.
    pub fn start(tls: Option<&Pki>) -> RecordingOrigin {
        let dir = TempDir::new("origin");
        let log = dir.join("requests.jsonl");
        let mut args: Vec<&std::ffi::OsStr> = vec!["--log".as_ref(), log.as_os_str()];
        if let Some(pki) = tls {
            args.extend([
                "--cert".as_ref(),
                pki.leaf_pem.as_os_str(),
                "--key".as_ref(),
                pki.leaf_key.as_os_str(),
            ]);
        }
        let (child, rest) = spawn_python_server("recording_origin.py", &args, dir.path());
        let ports: Vec<u16> = rest
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let (port, tls_port) = match ports.as_slice() {
            [p, t] if *p != 0 => (*p, (*t != 0).then_some(*t)),
            _ => panic!("recording origin printed a bad port line: PORT {rest}"),
        };
        assert_eq!(
            tls.is_some(),
            tls_port.is_some(),
            "recording origin: HTTPS port {tls_port:?} does not match the TLS request"
        );
        RecordingOrigin {
            child: Some(child),
            dir,
            port,
            tls_port,
        }
    }

    /// The HTTP port (127.0.0.1, and ::1 when available).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTPS port. Panics when started without TLS.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
            .expect("the recording origin was started without TLS (pass Some(pki()))")
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn http_url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// `https://localhost:TLS_PORT/path`. Panics when started without TLS.
    pub fn https_url(&self, path: &str) -> String {
        format!(
            "https://localhost:{}/{}",
            self.tls_port(),
            path.trim_start_matches('/')
        )
    }

    /// The instance's directory (request log, stderr).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stderr so far (TLS handshake failures, tracebacks).
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr.log"))
    }

    /// Every request recorded so far (complete lines), in the order they were answered. Panics
    /// on a line it cannot parse.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        read_lines(&self.dir.join("requests.jsonl"), RecordedRequest::parse)
    }

    /// Waits (at most 5 s) until at least `n` requests are recorded and returns them all. A
    /// request is recorded after its response is sent. Panics, showing what was recorded and the
    /// server's stderr, if fewer appear.
    pub fn wait_requests(&self, n: usize) -> Vec<RecordedRequest> {
        wait_lines(
            "recorded requests",
            &self.dir.join("requests.jsonl"),
            n,
            RecordedRequest::parse,
            LOG_WAIT,
            || format!("\n--- server stderr ---\n{}", self.stderr()),
        )
    }
}

impl Drop for RecordingOrigin {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "recording origin on ports {}/{:?} (dir {}), stderr:\n{}",
                self.port,
                self.tls_port,
                self.dir.path().display(),
                self.stderr()
            );
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

/// A minimal JSON reader for the origin's log lines (no serde in the dev-dependencies).
pub mod json {
    /// A JSON value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        /// `null`
        Null,
        /// `true` / `false`
        Bool(bool),
        /// Any number (as f64; integers up to 2^53 are exact).
        Number(f64),
        /// A string.
        String(String),
        /// An array.
        Array(Vec<Value>),
        /// An object, keys in order.
        Object(Vec<(String, Value)>),
    }

    impl Value {
        /// The value of `key` in an object.
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        /// A string's contents.
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }

        /// An integral number.
        pub fn as_i64(&self) -> Option<i64> {
            match self {
                Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(*n as i64),
                _ => None,
            }
        }
    }

    /// Parses one JSON document (nesting at most 64 deep).
    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", c as char, self.i))
            }
        }

        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > 64 {
                return Err("nested too deep".into());
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut members = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(members));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        members.push((k, self.value(depth + 1)?));
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(members));
                            }
                            _ => return Err(format!("expected , or }} at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(items));
                            }
                            _ => return Err(format!("expected , or ] at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Value::String(self.string()?)),
                Some(b't') if self.b[self.i..].starts_with(b"true") => {
                    self.i += 4;
                    Ok(Value::Bool(true))
                }
                Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                    self.i += 5;
                    Ok(Value::Bool(false))
                }
                Some(b'n') if self.b[self.i..].starts_with(b"null") => {
                    self.i += 4;
                    Ok(Value::Null)
                }
                Some(c) if *c == b'-' || c.is_ascii_digit() => {
                    let start = self.i;
                    while self.i < self.b.len()
                        && matches!(
                            self.b[self.i],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        self.i += 1;
                    }
                    let s =
                        std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
                    s.parse()
                        .map(Value::Number)
                        .map_err(|_| format!("bad number {s:?}"))
                }
                _ => Err(format!("unexpected byte at {}", self.i)),
            }
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let s = self
                .b
                .get(self.i..self.i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .ok_or("short \\u escape")?;
            let v = u32::from_str_radix(s, 16).map_err(|_| format!("bad \\u escape {s:?}"))?;
            self.i += 4;
            Ok(v)
        }

        fn string(&mut self) -> Result<String, String> {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(format!("expected string at {}", self.i));
            }
            self.i += 1;
            let mut out: Vec<u8> = Vec::new();
            loop {
                let c = *self.b.get(self.i).ok_or("unterminated string")?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    b'\\' => {
                        let e = *self.b.get(self.i).ok_or("unterminated escape")?;
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi)
                                    && self.b[self.i..].starts_with(b"\\u")
                                {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    0x10000
                                        + ((hi - 0xD800) << 10)
                                        + (lo.wrapping_sub(0xDC00) & 0x3FF)
                                } else {
                                    hi
                                };
                                // Lone surrogates (Python's surrogateescape) become U+FFFD.
                                char::from_u32(code).unwrap_or('\u{FFFD}')
                            }
                            _ => return Err(format!("bad escape at {}", self.i)),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => out.push(c),
                }
            }
        }
    }
}
