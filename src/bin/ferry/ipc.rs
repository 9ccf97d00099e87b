//! The service's Unix socket: where it lives, who may talk to it, and the little protocol on it.
//!
//! ```text
//!  $XDG_RUNTIME_DIR/ferry/          0700, the owner's
//!                         sock      0600, the listening socket
//!                         lock      held (flock) by the one running service
//!                         pid       the running service's pid
//!                         service.log   stderr of a service started on demand
//! ```
//!
//! A request is the caller's working directory and the `ferry job` arguments; the reply is an
//! exit code and the text for stdout and stderr. Every field is length-prefixed (u32, big
//! endian) and bounded. The service runs the command itself, so the store has one writer.
//!
//! Callers are identified by SO_PEERCRED, never by anything they send: a caller whose uid is
//! not the service's gets a refusal and nothing else, even when file modes would let it in.
use crate::Failure;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAGIC: &[u8; 12] = b"ferry-ipc 1\n";
/// Most arguments in one request.
pub(crate) const MAX_ARGS: usize = 4096;
/// Most bytes in one request or one reply stream.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// How long the service waits for a caller to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests served at once; more wait in the listen backlog.
const MAX_CONCURRENT: usize = 64;
/// How long `ferry job` waits for a service it started to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The exit code of a refused caller (curl has none for this; 77 is EX_NOPERM).
pub(crate) const REFUSED: u8 = 77;

/// One command for the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The caller's working directory (relative paths are resolved against it).
    pub(crate) cwd: PathBuf,
    /// The `ferry job` arguments, without `ferry job`.
    pub(crate) args: Vec<OsString>,
}

/// The outcome of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The exit code.
    pub(crate) code: u8,
    /// Text for the caller's stdout.
    pub(crate) stdout: Vec<u8>,
    /// Text for the caller's stderr.
    pub(crate) stderr: Vec<u8>,
}

impl Reply {
    /// A failure as the CLI prints it: one line plus a hint.
    pub(crate) fn failure(f: &Failure) -> Reply {
        let message = f.message.replace('\n', " ");
        let line = match f.hint {
            Some(h) => format!("ferry: ({}) {message}; hint: {h}\n", f.code),
            None => format!("ferry: ({}) {message}\n", f.code),
        };
        Reply {
            code: f.code,
            stdout: Vec::new(),
            stderr: line.into_bytes(),
        }
    }
}

fn fail(code: u8, message: String, hint: Option<&'static str>) -> Failure {
    Failure {
        code,
        message,
        hint,
    }
}

/// `$XDG_RUNTIME_DIR/ferry`, else `/run/user/UID/ferry` when that runtime dir exists.
pub(crate) fn runtime_dir() -> Result<PathBuf, Failure> {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        if d.is_absolute() {
            return Ok(d.join("ferry"));
        }
    }
    if let Ok(uid) = own_uid() {
        let d = PathBuf::from(format!("/run/user/{uid}"));
        if d.is_dir() {
            return Ok(d.join("ferry"));
        }
    }
    Err(fail(
        1,
        "no runtime directory for the service socket: XDG_RUNTIME_DIR is not set".into(),
        Some("log in through a session manager, or set XDG_RUNTIME_DIR to a private directory"),
    ))
}

/// This process's uid: the owner of `/proc/self`. No fallback: guessing a uid would make the
/// service accept the wrong callers.
fn own_uid() -> io::Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

/// The listening socket's path.
pub(crate) fn socket_path(dir: &Path) -> PathBuf {
    dir.join("sock")
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn get_bytes(r: &mut impl Read, budget: &mut usize) -> io::Result<Vec<u8>> {
    let n = get_u32(r)? as usize;
    if n > *budget {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    *budget -= n;
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

/// Encodes a request.
pub(crate) fn encode_request(req: &Request) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(req.args.len() as u32 + 1).to_be_bytes());
    put(&mut out, req.cwd.as_os_str().as_bytes());
    for a in &req.args {
        put(&mut out, a.as_bytes());
    }
    out
}

/// Decodes a request, refusing anything malformed or over the limits.
pub(crate) fn decode_request(r: &mut impl Read) -> io::Result<Request> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let mut magic = [0u8; 12];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("not a ferry request"));
    }
    let n = get_u32(r)? as usize;
    if n == 0 || n > MAX_ARGS + 1 {
        return Err(bad("bad argument count"));
    }
    let mut budget = MAX_MESSAGE;
    let cwd = PathBuf::from(OsString::from_vec(get_bytes(r, &mut budget)?));
    let mut args = Vec::with_capacity(n - 1);
    for _ in 1..n {
        args.push(OsString::from_vec(get_bytes(r, &mut budget)?));
    }
    Ok(Request { cwd, args })
}

/// Encodes a reply.
pub(crate) fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut out = vec![reply.code];
    put(
        &mut out,
        &reply.stdout[..reply.stdout.len().min(MAX_MESSAGE)],
    );
    put(
        &mut out,
        &reply.stderr[..reply.stderr.len().min(MAX_MESSAGE)],
    );
    out
}

/// Decodes a reply.
pub(crate) fn decode_reply(r: &mut impl Read) -> io::Result<Reply> {
    let mut code = [0u8; 1];
    r.read_exact(&mut code)?;
    let mut budget = 2 * MAX_MESSAGE;
    let stdout = get_bytes(r, &mut budget)?;
    let stderr = get_bytes(r, &mut budget)?;
    Ok(Reply {
        code: code[0],
        stdout,
        stderr,
    })
}

/// The uid of the process at the other end of `s`, from the kernel (SO_PEERCRED).
pub(crate) fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(s)?.uid.as_raw())
}

/// A bound service socket, holding the lock that makes it the only service of this user.
pub(crate) struct Listener {
    listener: UnixListener,
    dir: PathBuf,
    _lock: File,
    uid: u32,
}

/// Makes the runtime directory (0700, ours), takes the service lock and binds the socket
/// (0600). Fails when another service holds the lock.
pub(crate) fn bind(dir: &Path) -> Result<Listener, Failure> {
    let io = |what: &str, e: io::Error| fail(1, format!("{what} {}: {e}", dir.display()), None);
    let uid = own_uid()
        .map_err(|e| fail(1, format!("cannot find our uid from /proc/self: {e}"), None))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("cannot create", e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io("cannot stat", e))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(fail(
            1,
            format!(
                "{} is not a directory owned by uid {uid}; refusing to put the socket there",
                dir.display()
            ),
            None,
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("cannot chmod", e))?;
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join("lock"))
        .map_err(|e| io("cannot open the lock in", e))?;
    if lock.try_lock().is_err() {
        return Err(fail(
            1,
            "another ferry service is already running for this user".into(),
            Some("'ferry job list' talks to it"),
        ));
    }
    let sock = socket_path(dir);
    // The lock is ours, so a socket left here belongs to a dead service.
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(|e| io("cannot bind a socket in", e))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("cannot chmod the socket in", e))?;
    let _ = std::fs::write(dir.join("pid"), format!("{}\n", std::process::id()));
    Ok(Listener {
        listener,
        dir: dir.to_owned(),
        _lock: lock,
        uid,
    })
}

impl Listener {
    /// Serves requests until the process ends: each on its own thread (at most
    /// [`MAX_CONCURRENT`] at once), callers of another uid refused.
    pub(crate) fn serve<H>(self, handler: H)
    where
        H: Fn(Request) -> Reply + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let busy = Arc::new(AtomicUsize::new(0));
        for conn in self.listener.incoming() {
            let Ok(stream) = conn else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            while busy.load(Ordering::Acquire) >= MAX_CONCURRENT {
                std::thread::sleep(Duration::from_millis(5));
            }
            busy.fetch_add(1, Ordering::AcqRel);
            let handler = Arc::clone(&handler);
            let busy2 = Arc::clone(&busy);
            let uid = self.uid;
            let spawned = std::thread::Builder::new()
                .name("ferry-ipc".into())
                .spawn(move || {
                    serve_one(stream, uid, &*handler);
                    busy2.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The uid the service serves (its own).
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// The runtime directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn serve_one(mut stream: UnixStream, uid: u32, handler: &(dyn Fn(Request) -> Reply + Sync)) {
    let reply = match peer_uid(&stream) {
        Ok(peer) if peer == uid => {
            let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
            match decode_request(&mut stream) {
                Ok(req) => handler(req),
                Err(e) => Reply::failure(&fail(2, format!("bad request: {e}"), None)),
            }
        }
        Ok(peer) => Reply::failure(&fail(
            REFUSED,
            format!("the ferry service of uid {uid} refuses a caller of uid {peer}"),
            Some("each user runs their own service; run 'ferry job' as that user"),
        )),
        Err(e) => Reply::failure(&fail(
            REFUSED,
            format!("cannot identify the caller (SO_PEERCRED): {e}"),
            None,
        )),
    };
    let _ = stream.write_all(&encode_reply(&reply));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Sends `req` to the service, starting it first when none listens; waits for the reply at
/// most `timeout`.
pub(crate) fn call(req: &Request, timeout: Duration) -> Result<Reply, Failure> {
    let dir = runtime_dir()?;
    let sock = socket_path(&dir);
    let mut stream = match UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(_) => {
            start_service(&dir)?;
            wait_for(&sock)?
        }
    };
    let broken = |e: io::Error| {
        fail(
            1,
            format!("lost the ferry service at {}: {e}", sock.display()),
            Some("see service.log beside the socket; 'ferry service' runs it in the foreground"),
        )
    };
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(broken)?;
    stream.set_read_timeout(Some(timeout)).map_err(broken)?;
    stream.write_all(&encode_request(req)).map_err(broken)?;
    decode_reply(&mut stream).map_err(broken)
}

/// Starts `ferry service` in its own process group, detached from this terminal.
fn start_service(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| {
        fail(
            1,
            format!("cannot find the ferry executable to start the service: {e}"),
            None,
        )
    })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(1, format!("cannot create {}: {e}", dir.display()), None))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join("service.log"))
        .map_err(|e| fail(1, format!("cannot open the service log: {e}"), None))?;
    std::process::Command::new(exe)
        .arg("service")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| fail(1, format!("cannot start the ferry service: {e}"), None))?;
    Ok(())
}

/// Connects to a service that is starting, for at most [`START_TIMEOUT`].
fn wait_for(sock: &Path) -> Result<UnixStream, Failure> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match UnixStream::connect(sock) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(fail(
                    1,
                    format!(
                        "the ferry service did not start listening at {} within {} s: {e}",
                        sock.display(),
                        START_TIMEOUT.as_secs()
                    ),
                    Some("see service.log beside the socket"),
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let req = Request {
            cwd: PathBuf::from("/home/u/dl"),
            args: vec![
                "add".into(),
                "j".into(),
                OsString::from_vec(vec![0xff, b'x']),
            ],
        };
        let got = decode_request(&mut &encode_request(&req)[..]).unwrap();
        assert_eq!(got, req);
        let reply = Reply {
            code: 3,
            stdout: b"out".to_vec(),
            stderr: b"err\n".to_vec(),
        };
        assert_eq!(decode_reply(&mut &encode_reply(&reply)[..]).unwrap(), reply);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = encode_request(&Request {
            cwd: "/".into(),
            args: vec!["list".into()],
        });
        // Wrong magic, cut short at every byte, an oversized length.
        let mut wrong = good.clone();
        wrong[0] = b'x';
        assert!(decode_request(&mut &wrong[..]).is_err());
        for cut in 0..good.len() {
            assert!(decode_request(&mut &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&2u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_request(&mut &huge[..]).is_err());
        let mut many = MAGIC.to_vec();
        many.extend_from_slice(&(MAX_ARGS as u32 + 2).to_be_bytes());
        assert!(decode_request(&mut &many[..]).is_err());
    }

    #[test]
    fn a_socket_pair_reports_our_own_uid() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), own_uid().unwrap());
    }
}
