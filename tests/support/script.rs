//! Scripted raw-TCP servers for faults no real server produces (hyper `tests/client.rs` style).
//!
//! ```text
//! let server = ScriptServer::start(vec![vec![
//!     Step::head_starts_with("GET /a HTTP/1.1\r\n"),
//!     Step::send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
//! ]]);
//! ... client requests server.url("/a") ...
//! server.finish().unwrap();          // every script ran to its end, no expectation failed
//! ```
//!
//! The i-th accepted connection runs the i-th script, each on its own thread, so a client may hold
//! several connections at once. A connection beyond the scripts is a failure. Every read and
//! write has a 5 s timeout, so a script never hangs; failures are collected and returned by
//! [`ScriptServer::finish`] (or make [`Drop`] panic if `finish` was never called).
//!
//! Reads never take more bytes from the kernel than the current step needs, so bytes a step does
//! not consume stay unread in the socket. That is what makes [`Step::Reset`] work: Linux answers
//! `close()` on a socket with unread received bytes with a TCP RST (std has no stable
//! `SO_LINGER`; with `socket2` as a dev-dependency, `set_linger(Some(0))` would make it
//! unconditional).

use super::show_bytes;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Timeout of every read and write, and of waiting for bytes in [`Step::PeekHead`] /
/// [`Step::Reset`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head [`Step::ExpectHead`] / [`Step::PeekHead`] accept.
pub const MAX_HEAD: usize = 64 * 1024;
/// How long [`ScriptServer::finish`] waits for scripts to finish.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// A check of a request head (request line and headers, with the final empty line).
pub type HeadCheck = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// One step of a connection's script.
pub enum Step {
    /// Read exactly these bytes; any difference is a failure (reported at the first differing
    /// byte, without waiting for the rest).
    Expect(Vec<u8>),
    /// Read up to and including the first `\r\n\r\n` and check the head with the closure.
    ExpectHead(HeadCheck),
    /// Like `ExpectHead` but leave the head unread in the socket (then [`Step::Reset`] sends RST).
    PeekHead(HeadCheck),
    /// Read exactly this many bytes, whatever they are (e.g. a request body).
    ExpectLen(usize),
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write these bytes in pieces of at most `.1` bytes, one `write` + `flush` each (TCP_NODELAY
    /// is on). Pieces may still coalesce in the client's buffer: add `SendPaced` for gaps.
    SendSplit(Vec<u8>, usize),
    /// Like `SendSplit`, sleeping `pause` after each piece.
    SendPaced {
        /// Bytes to send.
        bytes: Vec<u8>,
        /// Largest piece.
        chunk: usize,
        /// Sleep after each piece.
        pause: Duration,
    },
    /// Do nothing for this long.
    Sleep(Duration),
    /// Graceful close: read whatever already arrived (so the close is a FIN, not an RST), then
    /// shut down and drop the socket. Ends the script.
    Close,
    /// Abortive close: wait (at most 5 s) until the client has bytes in the socket that no step
    /// consumed, then drop it, which makes the kernel send RST. Use it after `PeekHead`, or before
    /// reading the request. A failure if no unread byte arrives. Ends the script.
    Reset,
    /// Read until the client closes its side (each read bounded by the 5 s timeout).
    ReadToEof,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Expect(b) => write!(f, "Expect({:?})", show_bytes(b, 80)),
            Step::ExpectHead(_) => f.write_str("ExpectHead(..)"),
            Step::PeekHead(_) => f.write_str("PeekHead(..)"),
            Step::ExpectLen(n) => write!(f, "ExpectLen({n})"),
            Step::Send(b) => write!(f, "Send({:?})", show_bytes(b, 80)),
            Step::SendSplit(b, n) => write!(f, "SendSplit({:?}, {n})", show_bytes(b, 80)),
            Step::SendPaced {
                bytes,
                chunk,
                pause,
            } => write!(
                f,
                "SendPaced({:?}, {chunk}, {pause:?})",
                show_bytes(bytes, 80)
            ),
            Step::Sleep(d) => write!(f, "Sleep({d:?})"),
            Step::Close => f.write_str("Close"),
            Step::Reset => f.write_str("Reset"),
            Step::ReadToEof => f.write_str("ReadToEof"),
        }
    }
}

impl Step {
    /// `Step::Expect` from anything byte-like.
    pub fn expect(bytes: impl AsRef<[u8]>) -> Step {
        Step::Expect(bytes.as_ref().to_vec())
    }

    /// `Step::Send` from anything byte-like.
    pub fn send(bytes: impl AsRef<[u8]>) -> Step {
        Step::Send(bytes.as_ref().to_vec())
    }

    /// `Step::SendSplit` from anything byte-like.
    pub fn send_split(bytes: impl AsRef<[u8]>, chunk: usize) -> Step {
        Step::SendSplit(bytes.as_ref().to_vec(), chunk)
    }

    /// `Step::Sleep` of `ms` milliseconds.
    pub fn sleep_ms(ms: u64) -> Step {
        Step::Sleep(Duration::from_millis(ms))
    }

    /// `Step::ExpectHead` with a closure.
    pub fn head(check: impl Fn(&str) -> Result<(), String> + Send + 'static) -> Step {
        Step::ExpectHead(Box::new(check))
    }

    /// `Step::ExpectHead` accepting any head.
    pub fn any_head() -> Step {
        Step::head(|_| Ok(()))
    }

    /// `Step::ExpectHead` requiring the head to start with `prefix` (e.g. the request line).
    pub fn head_starts_with(prefix: &str) -> Step {
        let prefix = prefix.to_owned();
        Step::head(move |h| {
            if h.starts_with(&prefix) {
                Ok(())
            } else {
                Err(format!("head does not start with {prefix:?}"))
            }
        })
    }

    /// `Step::ExpectHead` requiring every one of `needles` (e.g. `"\r\nHost: a\r\n"`) to occur.
    pub fn head_contains(needles: &[&str]) -> Step {
        let needles: Vec<String> = needles.iter().map(|s| (*s).to_owned()).collect();
        Step::head(
            move |h| match needles.iter().find(|n| !h.contains(n.as_str())) {
                None => Ok(()),
                Some(n) => Err(format!("head does not contain {n:?}")),
            },
        )
    }

    /// `Step::PeekHead` accepting any head.
    pub fn peek_any_head() -> Step {
        Step::PeekHead(Box::new(|_| Ok(())))
    }
}

#[derive(Default)]
struct Shared {
    scripts: Mutex<Vec<Option<Vec<Step>>>>,
    received: Mutex<Vec<Vec<u8>>>,
    failures: Mutex<Vec<String>>,
    /// Clones of live connections, so that stopping the server can shut them down.
    streams: Mutex<std::collections::HashMap<usize, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn fail(&self, msg: String) {
        self.failures.lock().unwrap().push(msg);
    }
}

/// A loopback server whose connections follow scripts. See the module docs.
pub struct ScriptServer {
    addr: SocketAddr,
    expected: usize,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    finished: bool,
}

impl std::fmt::Debug for ScriptServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptServer")
            .field("addr", &self.addr)
            .field("expected", &self.expected)
            .field("accepted", &self.connections_accepted())
            .finish()
    }
}

impl ScriptServer {
    /// Listens on `127.0.0.1:0`; the i-th accepted connection runs `scripts[i]`.
    pub fn start(scripts: Vec<Vec<Step>>) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let expected = scripts.len();
        let shared = Arc::new(Shared::default());
        *shared.scripts.lock().unwrap() = scripts.into_iter().map(Some).collect();
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("script-server-{}", addr.port()))
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn acceptor");
        ScriptServer {
            addr,
            expected,
            shared,
            acceptor: Some(acceptor),
            finished: false,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.addr.port(),
            path.trim_start_matches('/')
        )
    }

    /// Connections accepted so far (scripted or not).
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every byte the steps of connection `conn` (0-based) consumed so far, plus the unread bytes
    /// a `Reset` found. Empty for a connection not (yet) accepted.
    pub fn received(&self, conn: usize) -> Vec<u8> {
        self.shared
            .received
            .lock()
            .unwrap()
            .get(conn)
            .cloned()
            .unwrap_or_default()
    }

    /// Failures recorded so far (does not wait).
    pub fn failures(&self) -> Vec<String> {
        self.shared.failures.lock().unwrap().clone()
    }

    /// Waits (bounded) until every script has been accepted and has run to its end, stops the
    /// server, and returns every failure: expectation mismatches, timeouts, connections that
    /// were never made or had no script.
    pub fn finish(mut self) -> Result<(), String> {
        self.finished = true;
        let deadline = Instant::now() + FINISH_TIMEOUT;
        // A client's connect completes in the kernel before our accept: give it a moment.
        super::poll(Duration::from_secs(2), Duration::from_millis(5), || {
            (self.connections_accepted() >= self.expected).then_some(())
        });
        let accepted = self.connections_accepted();
        if accepted < self.expected {
            self.shared.fail(format!(
                "expected {} connections, the client made {accepted}",
                self.expected
            ));
        }
        self.stop_accepting();
        loop {
            let running = {
                let workers = self.shared.workers.lock().unwrap();
                workers.iter().filter(|w| !w.is_finished()).count()
            };
            if running == 0 {
                break;
            }
            if Instant::now() >= deadline {
                self.shared.fail(format!(
                    "{running} connection script(s) still running after {FINISH_TIMEOUT:?}"
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shutdown_connections();
        let failures = self.failures();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }

    fn stop_accepting(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            // Wake the blocking accept(); the acceptor sees `stop` and drops this connection.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = acceptor.join();
        }
    }

    fn shutdown_connections(&self) {
        for s in self.shared.streams.lock().unwrap().values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let workers: Vec<_> = self.shared.workers.lock().unwrap().drain(..).collect();
        let deadline = Instant::now() + Duration::from_secs(2);
        for w in workers {
            // Threads whose socket was shut down return at once; never block past the deadline.
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.stop_accepting();
        self.shutdown_connections();
        if !self.finished && !std::thread::panicking() {
            let failures = self.failures();
            if !failures.is_empty() {
                panic!(
                    "ScriptServer dropped without finish() and with failures:\n{}",
                    failures.join("\n")
                );
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                shared.fail(format!("accept failed: {e}"));
                return;
            }
        };
        let index = shared.accepted.fetch_add(1, Ordering::SeqCst);
        shared.received.lock().unwrap().push(Vec::new());
        let script = shared
            .scripts
            .lock()
            .unwrap()
            .get_mut(index)
            .and_then(Option::take);
        let Some(script) = script else {
            shared.fail(format!(
                "unexpected connection #{index}: no script left for it"
            ));
            continue;
        };
        if let Ok(clone) = stream.try_clone() {
            shared.streams.lock().unwrap().insert(index, clone);
        }
        let sh = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name(format!("script-conn-{index}"))
            .spawn(move || {
                let result = run_script(stream, index, script, &sh);
                // Drop the clone too: the socket closes (FIN, or RST after `Reset`) only when its
                // last descriptor does.
                sh.streams.lock().unwrap().remove(&index);
                if let Err(msg) = result {
                    sh.fail(format!("connection #{index}: {msg}"));
                }
            })
            .expect("spawn connection thread");
        shared.workers.lock().unwrap().push(worker);
    }
}

struct Conn<'a> {
    stream: TcpStream,
    index: usize,
    shared: &'a Shared,
}

impl Conn<'_> {
    fn record(&self, bytes: &[u8]) {
        self.shared.received.lock().unwrap()[self.index].extend_from_slice(bytes);
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => {
                    self.record(&buf[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("read timed out after {IO_TIMEOUT:?}"))
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    fn read_exact_checked(&mut self, len: usize, want: Option<&[u8]>) -> Result<(), String> {
        let mut got = Vec::with_capacity(len);
        let mut buf = vec![0u8; 64 * 1024];
        while got.len() < len {
            let room = (len - got.len()).min(buf.len());
            let n = self.read_some(&mut buf[..room])?;
            if n == 0 {
                return Err(format!(
                    "client closed after {} of {len} expected bytes; got {:?}",
                    got.len(),
                    show_bytes(&got, 400)
                ));
            }
            got.extend_from_slice(&buf[..n]);
            if let Some(want) = want {
                if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
                    return Err(format!(
                        "mismatch at byte {at}:\n  expected {:?}\n  received {:?}",
                        show_bytes(want, 400),
                        show_bytes(&got, 400)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads one byte at a time up to `\r\n\r\n`, so nothing after the head is consumed.
    fn read_head(&mut self) -> Result<String, String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_HEAD {
                return Err(format!("no end of head within {MAX_HEAD} bytes"));
            }
            if self.read_some(&mut byte)? == 0 {
                return Err(format!(
                    "client closed before the end of the head; got {:?}",
                    show_bytes(&head, 400)
                ));
            }
            head.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&head).into_owned())
    }

    /// Peeks (bounded by IO_TIMEOUT) until `done(peeked)` holds; returns the peeked bytes.
    fn peek_until(&mut self, done: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = vec![0u8; MAX_HEAD];
        loop {
            match self.stream.peek(&mut buf) {
                Ok(0) => return Err("client closed while peeking".to_owned()),
                Ok(n) if done(&buf[..n]) => return Ok(buf[..n].to_vec()),
                Ok(n) if n == buf.len() => return Err(format!("no end of head in {n} bytes")),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("peek failed: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!("peek timed out after {IO_TIMEOUT:?}"));
            }
            // peek() returns at once while some bytes are there: pace the re-checks.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn send(&mut self, bytes: &[u8], chunk: usize, pause: Duration) -> Result<(), String> {
        for piece in bytes.chunks(chunk.max(1)) {
            self.stream
                .write_all(piece)
                .and_then(|()| self.stream.flush())
                .map_err(|e| format!("write failed: {e}"))?;
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        Ok(())
    }

    /// Reads what has already arrived without waiting, so that closing sends FIN, not RST.
    fn drain_ready(&mut self) {
        if self.stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: at most 1024 reads (64 MiB) of already-arrived bytes.
        for _ in 0..1024 {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.record(&buf[..n]),
            }
        }
    }
}

fn run_script(
    stream: TcpStream,
    index: usize,
    script: Vec<Step>,
    shared: &Shared,
) -> Result<(), String> {
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("set_write_timeout: {e}"))?;
    let mut c = Conn {
        stream,
        index,
        shared,
    };
    for (i, step) in script.into_iter().enumerate() {
        let at = |msg: String| format!("step {i} ({step:?}): {msg}");
        match &step {
            Step::Expect(want) => c.read_exact_checked(want.len(), Some(want)).map_err(at)?,
            Step::ExpectLen(n) => c.read_exact_checked(*n, None).map_err(at)?,
            Step::ExpectHead(check) => {
                let head = c.read_head().map_err(at)?;
                check(&head).map_err(|e| at(format!("{e}; head was:\n{head}")))?;
            }
            Step::PeekHead(check) => {
                let peeked = c
                    .peek_until(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
                    .map_err(at)?;
                let end = peeked
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(0, |p| p + 4);
                let head = String::from_utf8_lossy(&peeked[..end]).into_owned();
                check(&head).map_err(|e| at(format!("{e}; head was:\n{head}")))?;
            }
            Step::Send(bytes) => c.send(bytes, usize::MAX, Duration::ZERO).map_err(at)?,
            Step::SendSplit(bytes, chunk) => c.send(bytes, *chunk, Duration::ZERO).map_err(at)?,
            Step::SendPaced {
                bytes,
                chunk,
                pause,
            } => c.send(bytes, *chunk, *pause).map_err(at)?,
            Step::Sleep(d) => std::thread::sleep(*d),
            Step::Close => break,
            Step::Reset => {
                let unread = c.peek_until(|b| !b.is_empty()).map_err(|e| {
                    at(format!(
                        "{e}: Reset needs unread bytes from the client to cause an RST"
                    ))
                })?;
                c.record(&unread);
                // Dropping a socket with unread received bytes makes the kernel send RST.
                drop(c);
                return Ok(());
            }
            Step::ReadToEof => {
                let deadline = Instant::now() + IO_TIMEOUT * 2;
                let mut buf = vec![0u8; 64 * 1024];
                while c.read_some(&mut buf).map_err(at)? > 0 {
                    if Instant::now() >= deadline {
                        return Err(at("client did not close within 10 s".to_owned()));
                    }
                }
            }
        }
    }
    // End of script (or Close): a graceful close.
    c.drain_ready();
    let _ = c.stream.shutdown(Shutdown::Both);
    Ok(())
}
