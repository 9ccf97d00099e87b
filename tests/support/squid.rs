//! A private Squid forward proxy per test: Debian's `squid` run in the foreground (`squid -N`) with
//! its own config, logs and pid file in a temp dir, on a loopback port, stopped when the handle
//! drops.
//!
//! ```text
//! let squid = Squid::start(SquidOptions::basic(&[("alice", "pw")]));
//! ... the client GETs http://127.0.0.1:ORIGIN/x through squid.url() as alice ...
//! let log = squid.wait_log_lines(1);     // squid logs a transaction when it ends
//! assert_eq!(log[0].user.as_deref(), Some("alice"));
//! ```
//!
//! What the generated `squid.conf` does:
//! - `http_port 127.0.0.1:PORT` only; no cache (`cache deny all`, no `cache_dir`), no ICP/HTCP,
//!   no pinger, `shutdown_lifetime 0 seconds`.
//! - Clients must come from 127.0.0.1 and the destination must be `localhost`, `127.0.0.1` or
//!   `[::1]` as written in the request (squid's `dstdomain -n`, no DNS): anything else is 403, so
//!   the proxy never leaves loopback. `CONNECT` is allowed to any port of those hosts (no
//!   `SSL_ports` rule).
//! - [`SquidOptions::basic_users`] non-empty: `auth_param basic` with squid's `basic_ncsa_auth` on
//!   an htpasswd file (`$apr1$` hashes from `openssl passwd -apr1`, which basic_ncsa_auth
//!   verifies), realm [`SquidOptions::realm`], and every request needs valid credentials (407
//!   with `Proxy-Authenticate: Basic realm="..."` otherwise).
//! - [`SquidOptions::ntlm`]: `auth_param ntlm` with squid's `ntlm_fake_auth` helper, which
//!   accepts any user and password (it checks nothing: it only makes squid run the NTLM
//!   handshake, 407 `Proxy-Authenticate: NTLM` / type 2, per connection). With both, squid offers
//!   NTLM first, then Basic.
//! - [`SquidOptions::extra_conf`] is inserted before the `http_access` rules (so a test can add
//!   its own `acl` / `http_access` lines that take precedence).
//!
//! Squid adds `Via` and `X-Forwarded-For` to forwarded requests, and never forwards the
//! `Proxy-Authorization` it received to an origin (only to a `cache_peer` with `login=`).
//!
//! The access log ([`Squid::access_log`]) has one line per transaction, written when the
//! transaction ends: for a `CONNECT`, when the tunnel closes. As root, squid drops to the
//! `proxy` user; the temp dir is handed to that user.
//!
//! Needs Debian's `squid` package (`/usr/sbin/squid`, helpers in `/usr/lib/squid`), installed by
//! `scripts/test.sh`; the squid service is never used.

use super::logfile::{read_lines, wait_lines};
use super::nginx::{apr1_hash, read_lossy, running_as_root};
use super::{find_executable, poll, TempDir};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What to tell a developer when squid is missing.
pub const SQUID_HINT: &str = "run ./scripts/test.sh, which installs squid (Debian package)";

/// Where Debian keeps squid's helpers.
pub const HELPER_DIR: &str = "/usr/lib/squid";

/// How long to wait for squid to bind and answer (normally well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with fresh ports when another process took a chosen port first.
const PORT_ATTEMPTS: usize = 5;
/// How long [`Squid::wait_log_lines`] waits.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// The access-log format: space-separated, every text field URL-encoded by squid (`%#`), so a
/// field never holds a space; an absent value is `-`.
const LOG_FORMAT: &str = "%>a %>p %#un %#rm %#ru %>Hs %#Ss %#{Proxy-Authorization}>h \
                          %#{Authorization}>h";
const LOG_FIELD_COUNT: usize = 9;

/// How to configure squid. Build with the constructors and methods; the fields are public.
#[derive(Debug, Clone, Default)]
pub struct SquidOptions {
    /// Basic proxy accounts (user, password); empty: no Basic authentication.
    pub basic_users: Vec<(String, String)>,
    /// Basic realm (`ferry-proxy` when empty).
    pub realm: String,
    /// Require NTLM proxy authentication through squid's `ntlm_fake_auth` (any user/password).
    pub ntlm: bool,
    /// Directives inserted before the `http_access` rules (`@DIR@` and `@PORT@` are replaced).
    pub extra_conf: String,
}

impl SquidOptions {
    /// No authentication: any loopback client may use the proxy.
    pub fn new() -> SquidOptions {
        SquidOptions::default()
    }

    /// Basic proxy authentication with these accounts.
    pub fn basic(users: &[(&str, &str)]) -> SquidOptions {
        SquidOptions {
            basic_users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
            ..SquidOptions::default()
        }
    }

    /// NTLM proxy authentication through `ntlm_fake_auth` (panics at start if the helper is
    /// missing).
    pub fn ntlm() -> SquidOptions {
        SquidOptions {
            ntlm: true,
            ..SquidOptions::default()
        }
    }

    /// Sets the Basic realm.
    pub fn realm(mut self, realm: &str) -> SquidOptions {
        self.realm = realm.to_owned();
        self
    }

    /// Also require (offer) NTLM through `ntlm_fake_auth`.
    pub fn with_ntlm(mut self) -> SquidOptions {
        self.ntlm = true;
        self
    }

    /// Appends directives (inserted before the `http_access` rules).
    pub fn conf(mut self, conf: &str) -> SquidOptions {
        self.extra_conf.push_str(conf);
        self.extra_conf.push('\n');
        self
    }
}

/// One access-log line: one transaction as squid saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquidLogLine {
    /// Client address (always `127.0.0.1`).
    pub client_addr: String,
    /// Client source port: equal values (within a test) mean the same client connection.
    pub client_port: u16,
    /// The proxy user squid knows for the transaction (`%un`), `None` when there is none. On a
    /// 407 for wrong Basic credentials this is the name the client sent.
    pub user: Option<String>,
    /// Request method (`CONNECT` for tunnels).
    pub method: String,
    /// Request URL: absolute for forwarded requests, `host:port` for `CONNECT`, and
    /// `error:...` for a connection that ended without a complete request (e.g.
    /// `error:transaction-end-before-headers`, with an empty method and status 0).
    pub url: String,
    /// Status squid sent to the client (0 when it sent none, e.g. the client went away).
    pub status: u16,
    /// Squid's result code, e.g. `TCP_MISS`, `TCP_TUNNEL`, `TCP_DENIED`.
    pub squid_status: String,
    /// The `Proxy-Authorization` header squid received (empty when absent).
    pub proxy_authorization: String,
    /// The `Authorization` header squid received (empty when absent).
    pub authorization: String,
}

/// Undoes URL encoding (`%XX`); `-` alone means absent and becomes empty.
fn decode_field(field: &str) -> String {
    if field == "-" {
        return String::new();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SquidLogLine {
    /// Parses one line of the harness's log format.
    pub fn parse(line: &str) -> Result<SquidLogLine, String> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != LOG_FIELD_COUNT {
            return Err(format!(
                "squid access-log line has {} fields, expected {LOG_FIELD_COUNT}: {line:?}",
                f.len()
            ));
        }
        let user = decode_field(f[2]);
        Ok(SquidLogLine {
            client_addr: f[0].to_owned(),
            client_port: f[1]
                .parse()
                .map_err(|_| format!("bad client port in squid log line {line:?}"))?,
            user: (!user.is_empty()).then_some(user),
            method: decode_field(f[3]),
            url: decode_field(f[4]),
            status: if f[5] == "-" {
                0
            } else {
                f[5].parse()
                    .map_err(|_| format!("bad status in squid log line {line:?}"))?
            },
            squid_status: decode_field(f[6]),
            proxy_authorization: decode_field(f[7]),
            authorization: decode_field(f[8]),
        })
    }
}

/// The squid binary: `$FERRY_TEST_SQUID`, `/usr/sbin/squid`, or `squid` on `PATH`.
pub fn squid_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_SQUID") {
        return PathBuf::from(p);
    }
    find_executable("squid", &["/usr/sbin/squid"]).unwrap_or_else(|| {
        panic!("squid not found (looked at /usr/sbin/squid and PATH): {SQUID_HINT}")
    })
}

/// A squid helper under [`HELPER_DIR`], or a panic with an install hint.
pub fn squid_helper(name: &str) -> PathBuf {
    let path = Path::new(HELPER_DIR).join(name);
    assert!(
        path.is_file(),
        "squid helper {} not found: {SQUID_HINT}",
        path.display()
    );
    path
}

/// Whether squid's `ntlm_fake_auth` helper is installed.
pub fn ntlm_fake_auth_available() -> bool {
    Path::new(HELPER_DIR).join("ntlm_fake_auth").is_file()
}

/// `squid -v`'s first line, e.g. `Squid Cache: Version 5.7`.
pub fn squid_version() -> String {
    let out = super::run_tool(Command::new(squid_binary()).arg("-v"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Name, uid and gid of the user squid runs as when started by root: Debian's `proxy` (or
/// `nobody`), from /etc/passwd.
fn squid_user() -> (&'static str, u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for user in ["proxy", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[0] == user {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    return (user, uid, gid);
                }
            }
        }
    }
    panic!("neither a `proxy` nor a `nobody` user in /etc/passwd for squid to run as: {SQUID_HINT}")
}

/// Hands `dir` and everything in it to squid's user (only when running as root).
fn chown_recursive(dir: &Path, ids: (u32, u32)) {
    let _ = std::os::unix::fs::chown(dir, Some(ids.0), Some(ids.1));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                chown_recursive(&p, ids);
            } else {
                let _ = std::os::unix::fs::chown(&p, Some(ids.0), Some(ids.1));
            }
        }
    }
}

fn config(opts: &SquidOptions, dir: &Path, port: u16) -> String {
    let d = |rel: &str| dir.join(rel).display().to_string();
    let subst = |s: &str| {
        s.replace("@DIR@", &dir.display().to_string())
            .replace("@PORT@", &port.to_string())
    };
    let mut c = String::new();
    let _ = writeln!(c, "http_port 127.0.0.1:{port}");
    let _ = writeln!(c, "pid_filename {}", d("squid.pid"));
    if running_as_root() {
        let _ = writeln!(c, "cache_effective_user {}", squid_user().0);
    }
    c.push_str(
        "cache deny all\n\
         cache_mem 8 MB\n\
         icp_port 0\n\
         htcp_port 0\n\
         snmp_port 0\n\
         pinger_enable off\n\
         netdb_filename none\n\
         cache_store_log none\n\
         visible_hostname ferry-test\n\
         strip_query_terms off\n\
         shutdown_lifetime 0 seconds\n\
         client_persistent_connections on\n\
         server_persistent_connections on\n",
    );
    let _ = writeln!(c, "logformat ferry {LOG_FORMAT}");
    let _ = writeln!(c, "access_log stdio:{} ferry", d("access.log"));
    // Flush every line at once (stdio logs are buffered otherwise).
    c.push_str("buffered_logs off\n");
    let _ = writeln!(c, "cache_log {}", d("cache.log"));
    let _ = writeln!(c, "coredump_dir {}", dir.display());
    if opts.ntlm {
        let _ = writeln!(
            c,
            "auth_param ntlm program {}",
            squid_helper("ntlm_fake_auth").display()
        );
        c.push_str("auth_param ntlm children 4 startup=1 idle=1\n");
        c.push_str("auth_param ntlm keep_alive on\n");
    }
    if !opts.basic_users.is_empty() {
        let _ = writeln!(
            c,
            "auth_param basic program {} {}",
            squid_helper("basic_ncsa_auth").display(),
            d("htpasswd")
        );
        c.push_str("auth_param basic children 4 startup=1 idle=1\n");
        let realm = if opts.realm.is_empty() {
            "ferry-proxy"
        } else {
            opts.realm.as_str()
        };
        let _ = writeln!(c, "auth_param basic realm {realm}");
        // Re-check credentials on every request (no credential cache between tests' requests).
        c.push_str("auth_param basic credentialsttl 1 second\n");
    }
    c.push_str(
        "acl ferry_src src 127.0.0.1/32\n\
         acl ferry_dst dstdomain -n localhost 127.0.0.1 [::1]\n",
    );
    if opts.ntlm || !opts.basic_users.is_empty() {
        c.push_str("acl ferry_auth proxy_auth REQUIRED\n");
    }
    if !opts.extra_conf.is_empty() {
        c.push_str(&subst(&opts.extra_conf));
        c.push('\n');
    }
    c.push_str("http_access deny !ferry_src\nhttp_access deny !ferry_dst\n");
    if opts.ntlm || !opts.basic_users.is_empty() {
        c.push_str("http_access allow ferry_auth\n");
    } else {
        c.push_str("http_access allow all\n");
    }
    c.push_str("http_access deny all\n");
    c
}

fn write_htpasswd(opts: &SquidOptions, dir: &Path) {
    let mut file = String::new();
    for (user, password) in &opts.basic_users {
        assert!(
            !user.contains([':', '\n', '\r']),
            "Basic proxy test user {user:?} holds ':' or a line break"
        );
        let _ = writeln!(file, "{user}:{}", apr1_hash(password));
    }
    std::fs::write(dir.join("htpasswd"), file).expect("write squid htpasswd");
}

/// A port free on 127.0.0.1 right now (squid may still lose a race for it; start retries).
fn pick_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// How one start attempt ended.
enum Attempt {
    Up(Child),
    PortTaken,
    /// Squid exited during start: its logs.
    Failed(String),
}

/// A running squid. Dropping it kills squid and its helpers (SIGKILL: see `kill_squid`) and
/// removes its directory; if the test is panicking, cache.log is printed first.
#[derive(Debug)]
pub struct Squid {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
}

impl Squid {
    /// Starts squid with `opts`, waiting (at most 20 s) until it accepts on its port.
    ///
    /// Panics with an install hint when squid (or a helper) is missing and with cache.log when it
    /// does not come up. Retries with a fresh port (at most 5 times) when the port was taken.
    pub fn start(opts: SquidOptions) -> Squid {
        let bin = squid_binary();
        let dir = TempDir::new("squid");
        write_htpasswd(&opts, dir.path());
        for attempt in 1..=PORT_ATTEMPTS {
            let port = pick_port();
            std::fs::write(dir.join("squid.conf"), config(&opts, dir.path(), port))
                .expect("write squid.conf");
            for f in ["squid.pid", "cache.log", "access.log", "stderr.log"] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            if running_as_root() {
                let (_, uid, gid) = squid_user();
                chown_recursive(dir.path(), (uid, gid));
            }
            match Self::try_start(&bin, dir.path(), port) {
                Attempt::Up(child) => {
                    return Squid {
                        child: Some(child),
                        dir,
                        port,
                    }
                }
                Attempt::Failed(log) => {
                    remove_shm(&service_name(port));
                    panic!("{log}")
                }
                Attempt::PortTaken if attempt < PORT_ATTEMPTS => continue,
                Attempt::PortTaken => {}
            }
        }
        panic!(
            "squid could not bind a free port in {PORT_ATTEMPTS} attempts; cache.log:\n{}",
            read_lossy(&dir.join("cache.log"))
        )
    }

    fn try_start(bin: &Path, dir: &Path, port: u16) -> Attempt {
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut child = match Command::new(bin)
            .arg("-N")
            // A service name of its own: squid names its shared-memory segments after it, so
            // concurrent instances (and segments a killed one left behind) never collide.
            .arg("-n")
            .arg(service_name(port))
            .arg("-f")
            .arg(dir.join("squid.conf"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("squid not found at {}: {SQUID_HINT}", bin.display())
            }
            Err(e) => panic!("could not start {}: {e}", bin.display()),
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // "Accepting HTTP Socket connections at ... local=127.0.0.1:PORT" proves the port is
        // squid's and not another process's that won the race. No probe connection: squid would
        // log it (`error:transaction-end-before-headers`) in the tests' access log.
        let accepting = format!("local=127.0.0.1:{port} ");
        let log_path = dir.join("cache.log");
        let ready = poll(START_TIMEOUT, Duration::from_millis(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(Some(status)));
            }
            let log = read_lossy(&log_path);
            if log.contains("Address already in use") {
                return Some(Err(None));
            }
            let up = log
                .lines()
                .any(|l| l.contains("Accepting HTTP Socket connections") && l.contains(&accepting));
            up.then_some(Ok(()))
        });
        let logs = || {
            format!(
                "--- cache.log ---\n{}--- stderr ---\n{}--- squid.conf: {} ---",
                read_lossy(&log_path),
                read_lossy(&dir.join("stderr.log")),
                dir.join("squid.conf").display()
            )
        };
        match ready {
            Some(Ok(())) => Attempt::Up(child),
            Some(Err(status)) => {
                let log = logs();
                kill_squid(&mut child);
                if log.contains("Address already in use") {
                    return Attempt::PortTaken;
                }
                match status {
                    Some(status) => {
                        Attempt::Failed(format!("squid exited during start ({status})\n{log}"))
                    }
                    None => Attempt::Failed(format!("squid failed during start\n{log}")),
                }
            }
            None => {
                kill_squid(&mut child);
                panic!(
                    "squid did not accept on {addr} within {START_TIMEOUT:?}\n{}",
                    logs()
                )
            }
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

    /// The instance's directory (squid.conf, htpasswd, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// cache.log so far (startup, helper and error messages).
    pub fn cache_log(&self) -> String {
        read_lossy(&self.dir.join("cache.log"))
    }

    /// The access log's complete lines so far, parsed. Panics on a line it cannot parse.
    pub fn access_log(&self) -> Vec<SquidLogLine> {
        read_lines(&self.dir.join("access.log"), SquidLogLine::parse)
    }

    /// Waits (at most 5 s) until the access log has at least `n` lines and returns them all.
    /// Squid logs a transaction when it ends (a `CONNECT` when its tunnel closes), so a client
    /// may be ahead of the log. Panics, showing the lines and cache.log, if fewer appear.
    pub fn wait_log_lines(&self, n: usize) -> Vec<SquidLogLine> {
        wait_lines(
            "squid access-log lines",
            &self.dir.join("access.log"),
            n,
            SquidLogLine::parse,
            LOG_WAIT,
            || format!("\n--- cache.log ---\n{}", self.cache_log()),
        )
    }
}

/// The pids of `ppid`'s children (squid's auth helpers), from /proc.
fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(ppid)
        })
        .collect()
}

/// Stops squid at once: SIGKILL for squid and its helpers. A graceful SIGTERM costs about 2 s
/// (squid's shutdown runs on its 1 s event ticks even with `shutdown_lifetime 0`), and there is
/// nothing to save: the access log is written unbuffered, line by line.
fn kill_squid(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let helpers = children_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    for pid in helpers {
        // `sh`'s builtin `kill`: procps' /usr/bin/kill is not on every minimal image.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -KILL {pid} 2>/dev/null"))
            .status();
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "squid on port {} (dir {}), cache.log:\n{}",
                self.port,
                self.dir.path().display(),
                self.cache_log()
            );
        }
        if let Some(mut child) = self.child.take() {
            kill_squid(&mut child);
        }
        remove_shm(&service_name(self.port));
    }
}

/// The squid service name of the instance on `port` in this process.
fn service_name(port: u16) -> String {
    format!("ferry{}p{port}", std::process::id())
}

/// Removes the shared-memory segments squid (killed, not shut down) left for `service`.
fn remove_shm(service: &str) {
    let prefix = format!("{service}-");
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
