//! A private Apache httpd per test with `mod_auth_digest`: Digest authentication from a real,
//! independent server, on a loopback port, with its own config, htdigest file, document root and
//! logs in a temp dir, stopped when the handle drops.
//!
//! ```text
//! let apache = Apache::start(ApacheOptions::digest("ferry realm", &[("alice", "pw")]));
//! ... the client GETs apache.url("/digest/secret.txt") as alice ...
//! let log = apache.wait_log_lines(2);      // 401 challenge, then 200
//! assert_eq!(log[1].user.as_deref(), Some("alice"));
//! assert_eq!(log[0].client_port, log[1].client_port); // same connection
//! ```
//!
//! Locations:
//! - `/digest/`: `AuthType Digest` for [`ApacheOptions::realm`] against the generated htdigest
//!   file, `Require valid-user`. Holds `secret.txt` (`digest secret\n`) plus any
//!   [`ApacheOptions::file`] under `digest/`.
//! - `/open/`: no authentication. Holds `hello.txt` (`open hello\n`).
//! - everything else under the document root: no authentication.
//!
//! Apache 2.4's `mod_auth_digest` (checked with Debian's 2.4.x) implements
//! `AuthDigestAlgorithm MD5` only: `MD5-sess` and `SHA-256` are refused at config time
//! ("Unsupported algorithm"), and only `qop="auth"` (`AuthDigestQop` with any other value is
//! refused as deprecated), so challenges are always `algorithm=MD5, qop="auth"` (RFC 2617). For
//! SHA-256 / userhash (RFC 7616) another server is needed. Keep-alive is on (at most 1000 requests
//! per connection, 30 s idle).
//!
//! Needs Debian's `apache2` package (`/usr/sbin/apache2`, modules in `/usr/lib/apache2/modules`),
//! installed by `scripts/test.sh`; no Apache service is used.

use super::logfile::{read_lines, wait_lines};
use super::nginx::{can_connect, read_lossy, running_as_root, stop_child};
use super::{find_executable, poll, TempDir};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What to tell a developer when Apache is missing.
pub const APACHE_HINT: &str = "run ./scripts/test.sh, which installs apache2 (Debian package)";

/// Where Debian keeps Apache's modules.
pub const MODULE_DIR: &str = "/usr/lib/apache2/modules";

/// How long to wait for Apache to bind and answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with fresh ports when another process took a chosen port first.
const PORT_ATTEMPTS: usize = 5;
/// How long [`Apache::wait_log_lines`] waits.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// Fields of the access log, tab-separated (Apache escapes `"`, `\` and control bytes in the
/// request line, user and headers, so a field never holds a raw tab).
const LOG_FORMAT: &str = "%{remote}p\\t%k\\t%u\\t%r\\t%>s\\t%{Authorization}i";
const LOG_FIELD_COUNT: usize = 6;

/// What to serve. Build with [`ApacheOptions::digest`] and the methods; the fields are public.
#[derive(Debug, Clone)]
pub struct ApacheOptions {
    /// `AuthName`: the Digest realm.
    pub realm: String,
    /// Accounts in the htdigest file: (user, password).
    pub users: Vec<(String, String)>,
    /// `AuthDigestAlgorithm`: `MD5`, the only value Apache 2.4 accepts (anything else makes
    /// [`Apache::start`] panic with Apache's "Unsupported algorithm").
    pub algorithm: String,
    /// `AuthDigestNonceLifetime` in seconds (Apache's default, 300, when `None`); a nonce older
    /// than this gets a 401 with `stale=true`.
    pub nonce_lifetime: Option<u32>,
    /// Files to create under the document root before start: (relative path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Directives appended to the main config (`@ROOT@`, `@DIR@`, `@PORT@` are replaced).
    pub extra_conf: String,
}

impl Default for ApacheOptions {
    fn default() -> ApacheOptions {
        ApacheOptions {
            realm: "ferry digest".to_owned(),
            users: Vec::new(),
            algorithm: "MD5".to_owned(),
            nonce_lifetime: None,
            files: Vec::new(),
            extra_conf: String::new(),
        }
    }
}

impl ApacheOptions {
    /// Digest for `realm` with these (user, password) accounts; MD5 (`qop="auth"`, always).
    pub fn digest(realm: &str, users: &[(&str, &str)]) -> ApacheOptions {
        ApacheOptions {
            realm: realm.to_owned(),
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
            ..ApacheOptions::default()
        }
    }

    /// Adds a file under the document root (e.g. `"digest/big.bin"` is protected).
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> ApacheOptions {
        self.files
            .push((path.trim_start_matches('/').to_owned(), contents.into()));
        self
    }

    /// Sets `AuthDigestNonceLifetime` (seconds).
    pub fn nonce_lifetime(mut self, seconds: u32) -> ApacheOptions {
        self.nonce_lifetime = Some(seconds);
        self
    }

    /// Appends directives to the main config.
    pub fn conf(mut self, conf: &str) -> ApacheOptions {
        self.extra_conf.push_str(conf);
        self.extra_conf.push('\n');
        self
    }
}

/// One access-log line: one request as Apache saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApacheLogLine {
    /// The client's TCP port: equal values (within a test) mean the same connection.
    pub client_port: u16,
    /// Apache's `%k`: requests served on this connection before this one (0 for the first
    /// request of a connection, 1 for the second, ...).
    pub keepalive_count: u32,
    /// Apache's `%u`: the user name of the `Authorization` header Apache processed, `None` when
    /// there was none. It is the name the client sent, so it can be present on a 401.
    pub user: Option<String>,
    /// The request line, e.g. `GET /digest/secret.txt HTTP/1.1`.
    pub request_line: String,
    /// Final response status.
    pub status: u16,
    /// The `Authorization` request header, empty when absent.
    pub authorization: String,
}

/// Undoes Apache's log escaping (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\v`, `\f`, `\xHH`).
fn unescape_apache(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'n' => (b'\n', 2),
                b'r' => (b'\r', 2),
                b't' => (b'\t', 2),
                b'b' => (8, 2),
                b'v' => (11, 2),
                b'f' => (12, 2),
                b'x' if i + 4 <= b.len() => match u8::from_str_radix(&field[i + 2..i + 4], 16) {
                    Ok(v) => (v, 4),
                    Err(_) => (b'\\', 1),
                },
                c @ (b'"' | b'\\') => (c, 2),
                _ => (b'\\', 1),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ApacheLogLine {
    /// Parses one line of the harness's Apache log format (without the trailing newline).
    pub fn parse(line: &str) -> Result<ApacheLogLine, String> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != LOG_FIELD_COUNT {
            return Err(format!(
                "Apache access-log line has {} fields, expected {LOG_FIELD_COUNT}: {line:?}",
                f.len()
            ));
        }
        let num_err =
            |what: &str| format!("Apache access-log field {what} is not a number: {line:?}");
        let user = unescape_apache(f[2]);
        let authorization = if f[5] == "-" {
            String::new()
        } else {
            unescape_apache(f[5])
        };
        Ok(ApacheLogLine {
            client_port: f[0].parse().map_err(|_| num_err("client port"))?,
            keepalive_count: f[1].parse().map_err(|_| num_err("keepalive count"))?,
            user: (user != "-").then_some(user),
            request_line: unescape_apache(f[3]),
            status: f[4].parse().map_err(|_| num_err("status"))?,
            authorization,
        })
    }

    /// The request target (second word of the request line).
    pub fn path(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or("")
    }
}

/// The Apache binary: `$FERRY_TEST_APACHE`, `/usr/sbin/apache2`, or `apache2`/`httpd` on `PATH`.
pub fn apache_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_APACHE") {
        return PathBuf::from(p);
    }
    find_executable("apache2", &["/usr/sbin/apache2"])
        .or_else(|| find_executable("httpd", &["/usr/sbin/httpd"]))
        .unwrap_or_else(|| {
            panic!("apache2 not found (looked at /usr/sbin/apache2 and PATH): {APACHE_HINT}")
        })
}

/// Lowercase hex MD5 of `data`, computed by the `openssl` CLI.
pub fn md5_hex(data: &str) -> String {
    let mut child = match Command::new("openssl")
        .args(["dgst", "-md5", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`openssl` not found: {}", super::INSTALL_HINT)
        }
        Err(e) => panic!("could not run openssl: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(data.as_bytes())
        .expect("write to openssl");
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(
        out.status.success(),
        "openssl dgst -md5 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "unexpected openssl dgst output: {text:?}"
    );
    hex
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn config(opts: &ApacheOptions, dir: &Path, port: u16) -> String {
    let d = |rel: &str| quote(&dir.join(rel).display().to_string());
    let root = dir.join("root");
    let m = |name: &str, file: &str| format!("LoadModule {name} {MODULE_DIR}/{file}\n");
    let mut c = String::new();
    let _ = writeln!(c, "ServerRoot {}", quote(&dir.display().to_string()));
    c.push_str("ServerName 127.0.0.1\n");
    let _ = writeln!(c, "Listen 127.0.0.1:{port}");
    let _ = writeln!(c, "PidFile {}", d("httpd.pid"));
    let _ = writeln!(c, "DefaultRuntimeDir {}", d("run"));
    let _ = writeln!(c, "ErrorLog {}", d("error.log"));
    c.push_str("LogLevel info auth_digest:debug\n");
    c.push_str(&m("mpm_event_module", "mod_mpm_event.so"));
    c.push_str(&m("authn_core_module", "mod_authn_core.so"));
    c.push_str(&m("authn_file_module", "mod_authn_file.so"));
    c.push_str(&m("authz_core_module", "mod_authz_core.so"));
    c.push_str(&m("authz_user_module", "mod_authz_user.so"));
    c.push_str(&m("auth_digest_module", "mod_auth_digest.so"));
    c.push_str(&m("mime_module", "mod_mime.so"));
    if running_as_root() {
        // Apache refuses to run its children as root; they only read the 0644 files below.
        c.push_str("User www-data\nGroup www-data\n");
    }
    // One child process with threads: per-connection state is in one place, stopping is simple.
    c.push_str(
        "StartServers 1\nServerLimit 1\nThreadLimit 32\nThreadsPerChild 32\n\
         MaxRequestWorkers 32\nMinSpareThreads 1\nMaxSpareThreads 32\nMaxConnectionsPerChild 0\n",
    );
    c.push_str("KeepAlive On\nMaxKeepAliveRequests 1000\nKeepAliveTimeout 30\nTimeout 30\n");
    c.push_str("TypesConfig /dev/null\nAddType text/plain .txt\nAddType text/html .html\n");
    let _ = writeln!(c, "LogFormat \"{LOG_FORMAT}\" ferry");
    let _ = writeln!(c, "CustomLog {} ferry", d("access.log"));
    let _ = writeln!(c, "DocumentRoot {}", quote(&root.display().to_string()));
    c.push_str("<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n");
    let _ = writeln!(
        c,
        "<Directory {}>\n    AllowOverride None\n    Require all granted\n</Directory>",
        quote(&root.display().to_string())
    );
    c.push_str("<Location \"/digest/\">\n    AuthType Digest\n");
    let _ = writeln!(c, "    AuthName {}", quote(&opts.realm));
    c.push_str("    AuthDigestDomain \"/digest/\"\n    AuthDigestProvider file\n");
    let _ = writeln!(c, "    AuthUserFile {}", d("htdigest"));
    let _ = writeln!(c, "    AuthDigestAlgorithm {}", opts.algorithm);
    if let Some(n) = opts.nonce_lifetime {
        let _ = writeln!(c, "    AuthDigestNonceLifetime {n}");
    }
    c.push_str("    Require valid-user\n</Location>\n");
    if !opts.extra_conf.is_empty() {
        c.push_str(
            &opts
                .extra_conf
                .replace("@ROOT@", &root.display().to_string())
                .replace("@DIR@", &dir.display().to_string())
                .replace("@PORT@", &port.to_string()),
        );
        c.push('\n');
    }
    c
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Writes `bytes` to `root/rel` (creating directories) readable by Apache's children.
fn write_public(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    let parent = path.parent().expect("file under the root");
    std::fs::create_dir_all(parent).expect("create docroot subdir");
    let mut dir = parent;
    while dir.starts_with(root) {
        set_mode(dir, 0o755);
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(&path, 0o644);
}

/// How one start attempt ended.
enum Attempt {
    Up(Child),
    PortTaken,
}

/// A running Apache httpd. Dropping it stops Apache (SIGTERM, then SIGKILL after 5 s) and
/// removes its directory; if the test is panicking, the error log is printed first.
#[derive(Debug)]
pub struct Apache {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
}

impl Apache {
    /// Starts Apache with `opts`, waiting (at most 10 s) until it accepts.
    ///
    /// Panics with the error log when it does not come up, and with an install hint when Apache
    /// or a module is missing. Retries with a fresh port (at most 5 times) when one was taken.
    pub fn start(opts: ApacheOptions) -> Apache {
        let bin = apache_binary();
        let dir = TempDir::new("apache");
        // Apache's children (www-data when the tests run as root) read the root and htdigest.
        set_mode(dir.path(), 0o755);
        std::fs::create_dir_all(dir.join("run")).expect("create run dir");
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("create docroot");
        set_mode(&root, 0o755);
        write_public(&root, "digest/secret.txt", b"digest secret\n");
        write_public(&root, "open/hello.txt", b"open hello\n");
        for (rel, bytes) in &opts.files {
            write_public(&root, rel, bytes);
        }
        let mut htdigest = String::new();
        for (user, password) in &opts.users {
            assert!(
                !user.contains([':', '\n', '\r']) && !opts.realm.contains([':', '\n', '\r']),
                "Digest test user {user:?} / realm {:?} holds ':' or a line break, which an \
                 htdigest file cannot express",
                opts.realm
            );
            let ha1 = md5_hex(&format!("{user}:{}:{password}", opts.realm));
            let _ = writeln!(htdigest, "{user}:{}:{ha1}", opts.realm);
        }
        std::fs::write(dir.join("htdigest"), htdigest).expect("write htdigest");
        set_mode(&dir.join("htdigest"), 0o644);

        for attempt in 1..=PORT_ATTEMPTS {
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
                l.local_addr().expect("local addr").port()
            };
            std::fs::write(dir.join("httpd.conf"), config(&opts, dir.path(), port))
                .expect("write httpd.conf");
            let _ = std::fs::remove_file(dir.join("httpd.pid"));
            let _ = std::fs::remove_file(dir.join("error.log"));
            match Self::try_start(&bin, dir.path(), port) {
                Attempt::Up(child) => {
                    return Apache {
                        child: Some(child),
                        dir,
                        port,
                    }
                }
                Attempt::PortTaken if attempt < PORT_ATTEMPTS => continue,
                Attempt::PortTaken => {}
            }
        }
        panic!(
            "Apache could not bind a free port in {PORT_ATTEMPTS} attempts; error log:\n{}",
            read_lossy(&dir.join("error.log"))
        )
    }

    fn try_start(bin: &Path, dir: &Path, port: u16) -> Attempt {
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-f")
            .arg(dir.join("httpd.conf"))
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("Apache not found at {}: {APACHE_HINT}", bin.display())
            }
            Err(e) => panic!("could not start {}: {e}", bin.display()),
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Apache writes its pid file after binding, so "pid file present" proves the port is
        // Apache's and not another process's that won the race.
        let pid_file = dir.join("httpd.pid");
        let ready = poll(START_TIMEOUT, Duration::from_millis(10), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            let pid_written =
                std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty());
            (pid_written && can_connect(addr)).then_some(Ok(()))
        });
        let logs = || {
            format!(
                "--- error.log ---\n{}--- stderr ---\n{}--- httpd.conf: {} ---",
                read_lossy(&dir.join("error.log")),
                read_lossy(&dir.join("stderr.log")),
                dir.join("httpd.conf").display()
            )
        };
        match ready {
            Some(Ok(())) => Attempt::Up(child),
            Some(Err(status)) => {
                let log = logs();
                if log.contains("Address already in use") {
                    return Attempt::PortTaken;
                }
                let hint = if log.contains(MODULE_DIR) && log.contains("Cannot load") {
                    format!("\n(a module is missing: {APACHE_HINT})")
                } else {
                    String::new()
                };
                panic!("Apache exited during start ({status}){hint}\n{log}")
            }
            None => {
                stop_child(&mut child);
                panic!(
                    "Apache did not accept on {addr} within {START_TIMEOUT:?}\n{}",
                    logs()
                )
            }
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

    /// The document root.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The instance's directory (config, htdigest, logs, root).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The error log so far (level `info`, `auth_digest` at `debug`).
    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.join("error.log"))
    }

    /// The access log's complete lines so far, parsed. Panics on a line it cannot parse.
    pub fn access_log(&self) -> Vec<ApacheLogLine> {
        read_lines(&self.dir.join("access.log"), ApacheLogLine::parse)
    }

    /// Waits (at most 5 s) until the access log has at least `n` lines and returns them all.
    /// Panics, showing the lines, if fewer appear.
    pub fn wait_log_lines(&self, n: usize) -> Vec<ApacheLogLine> {
        wait_lines(
            "Apache access-log lines",
            &self.dir.join("access.log"),
            n,
            ApacheLogLine::parse,
            LOG_WAIT,
            String::new,
        )
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "Apache on port {} (dir {}), error log:\n{}",
                self.port,
                self.dir.path().display(),
                self.error_log()
            );
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}
