//! A private nginx instance per test: HTTP and HTTPS on loopback, its own config, document root,
//! temp paths and logs in a temp dir, stopped when the handle drops.
//!
//! ```text
//! let nginx = Nginx::start(NginxOptions::new().file("hello.txt", b"hi\n"));
//! let url = nginx.http_url("/hello.txt");   // http://127.0.0.1:PORT/hello.txt
//! ... run the client ...
//! let log = nginx.wait_log_lines(1);        // one LogLine per request, in order
//! assert_eq!(log[0].connection_requests, 1);
//! ```
//!
//! Built-in locations (on both the HTTP and the HTTPS server):
//! - `/status/NNN` for each code in [`STATUS_CODES`]: `return NNN`, with body `status NNN\n`
//!   (204 and 304 have no body; the 3xx codes get nginx's own page and no `Location`).
//! - `/close`: 200 with `Connection: close` (`keepalive_timeout 0`).
//! - `/echo/head`: 200, the body is the raw request head as nginx received it (request line and
//!   header lines, ending with the empty line) — from the echo module.
//! - `/echo/body`: 200, the body is the request body (echo module; any size).
//! - `/chunked`: 200 with `Transfer-Encoding: chunked`, body `chunk one\nchunk two\n` sent in two
//!   flushes.
//! - `/slow`: 200 chunked, `start\n`, a 2 s pause, then `end\n` (for receive timeouts).
//! - redirects from [`NginxOptions::redirect`], files from [`NginxOptions::file`] and
//!   [`NginxOptions::large_file`] (static files have ETag, Last-Modified and byte ranges).
//!
//! - Basic-auth locations from [`NginxOptions::basic_auth`]: `PREFIX` needs one of the accounts
//!   (files under `root/PREFIX` are served after authentication), and `PREFIXecho` answers 200
//!   with the authenticated user name as its whole body.
//!
//! The echo locations need Debian's `libnginx-mod-http-echo` (installed by `scripts/test.sh`).

use super::logfile::{read_lines, wait_lines};
use super::pattern::write_large_file;
use super::{find_executable, pki, poll, run_tool, Pki, TempDir, INSTALL_HINT};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Codes served at `/status/NNN`.
pub const STATUS_CODES: &[u16] = &[
    200, 201, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 407, 408, 429, 500, 502,
    503,
];

/// Where Debian's echo module lives.
const ECHO_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_echo_module.so";

/// How long to wait for nginx to bind and answer (normally a few milliseconds).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for nginx to exit after SIGTERM before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts with fresh ports when another process took a chosen port first.
const PORT_ATTEMPTS: usize = 5;
/// How long [`Nginx::wait_log_lines`] waits for nginx to write its access-log lines.
const LOG_WAIT: Duration = Duration::from_secs(2);

/// Fields of the access log, in order, tab-separated, each escaped JSON-style by nginx
/// (`escape=json`: an absent header is an empty field, not `-`).
const LOG_FIELDS: &[&str] = &[
    "$connection",
    "$connection_requests",
    "$request_method",
    "$request_uri",
    "$status",
    "$body_bytes_sent",
    "$http_authorization",
    "$http_cookie",
    "$http_proxy_authorization",
    "$http_x_test",
    "$ssl_protocol",
    "$http_user_agent",
    "$http_host",
    "$http_range",
    "$http_if_range",
    "$server_protocol",
    "$server_port",
    "$request_length",
    "$http_content_length",
    "$http_transfer_encoding",
    "$remote_user",
];

/// What to serve. Build with the methods; the fields are public for struct-update syntax.
///
/// In `redirects` targets and both `extra_*_conf` strings these placeholders are replaced at
/// start: `@HTTP@` (`http://127.0.0.1:PORT`), `@HTTPS@` (`https://localhost:TLS_PORT`),
/// `@PORT@`, `@TLS_PORT@`, `@ROOT@` (document root) and `@DIR@` (the instance's temp dir).
#[derive(Debug, Clone, Default)]
pub struct NginxOptions {
    /// Files to create under the document root before start: (relative path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Pattern files to create before start: (relative path, size); see [`super::pattern`].
    pub large_files: Vec<(String, u64)>,
    /// `location = FROM { return STATUS "TO"; }`: (from path, status, target URL).
    pub redirects: Vec<(String, u16, String)>,
    /// Directives added to both `server` blocks (HTTP and HTTPS).
    pub extra_server_conf: String,
    /// Directives added to the `http` block.
    pub extra_http_conf: String,
    /// Locations protected by Basic authentication; see [`NginxOptions::basic_auth`].
    pub basic_auth: Vec<BasicAuthLocation>,
}

/// A location protected by nginx's `auth_basic` (see [`NginxOptions::basic_auth`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasicAuthLocation {
    /// Location prefix, starting and ending with `/` (e.g. `/basic/`).
    pub prefix: String,
    /// `auth_basic` realm.
    pub realm: String,
    /// Accounts: (user, password). Stored in an htpasswd file as `$apr1$` hashes.
    pub users: Vec<(String, String)>,
}

impl NginxOptions {
    /// No files, no redirects, no extra configuration.
    pub fn new() -> NginxOptions {
        NginxOptions::default()
    }

    /// Adds a file under the document root (`path` relative, e.g. `"dir/a.txt"`).
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> NginxOptions {
        self.files
            .push((path.trim_start_matches('/').to_owned(), contents.into()));
        self
    }

    /// Adds a file of `size` deterministic bytes whose contents tests can recompute with
    /// [`super::large_file_bytes`]`(name, offset, len)` or [`super::large_file_fnv1a64`].
    pub fn large_file(mut self, name: &str, size: u64) -> NginxOptions {
        self.large_files
            .push((name.trim_start_matches('/').to_owned(), size));
        self
    }

    /// Adds `location = from { return status "to"; }` (`to` may use `@HTTP@` / `@HTTPS@`).
    pub fn redirect(mut self, from: &str, status: u16, to: &str) -> NginxOptions {
        self.redirects
            .push((from.to_owned(), status, to.to_owned()));
        self
    }

    /// Appends directives to both `server` blocks.
    pub fn server_conf(mut self, conf: &str) -> NginxOptions {
        self.extra_server_conf.push_str(conf);
        self.extra_server_conf.push('\n');
        self
    }

    /// Appends directives to the `http` block.
    pub fn http_conf(mut self, conf: &str) -> NginxOptions {
        self.extra_http_conf.push_str(conf);
        self.extra_http_conf.push('\n');
        self
    }

    /// Protects `location PREFIX` (e.g. `"/basic/"`; slashes are added when missing) with
    /// `auth_basic "realm"` and an htpasswd file holding `users` (user, password), hashed with
    /// `openssl passwd -apr1`. Files under `root/PREFIX` (add them with [`NginxOptions::file`])
    /// are served after authentication, and `PREFIXecho` (e.g. `/basic/echo`) answers 200 with
    /// `$remote_user` as its whole body. Without valid credentials nginx answers 401 with
    /// `WWW-Authenticate: Basic realm="realm"`.
    pub fn basic_auth(mut self, prefix: &str, realm: &str, users: &[(&str, &str)]) -> NginxOptions {
        let mut prefix = format!("/{}", prefix.trim_matches('/'));
        if prefix != "/" {
            prefix.push('/');
        }
        self.basic_auth.push(BasicAuthLocation {
            prefix,
            realm: realm.to_owned(),
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
        });
        self
    }
}

/// One access-log line: one request as nginx saw it. Header fields are empty when the header was
/// absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// nginx's connection serial number: equal values mean the same TCP connection.
    pub connection: u64,
    /// Requests on this connection so far, this one included (1 for a fresh connection).
    pub connection_requests: u64,
    /// Request method.
    pub method: String,
    /// Request target as sent (path and query).
    pub uri: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// `Authorization` request header.
    pub authorization: String,
    /// `Cookie` request header.
    pub cookie: String,
    /// `Proxy-Authorization` request header (must never reach an origin: invariant I3).
    pub proxy_authorization: String,
    /// `X-Test` request header (a free tag for tests).
    pub x_test: String,
    /// `TLSv1.2`, `TLSv1.3`, or empty for plain HTTP.
    pub ssl_protocol: String,
    /// `User-Agent` request header.
    pub user_agent: String,
    /// `Host` request header.
    pub host: String,
    /// `Range` request header.
    pub range: String,
    /// `If-Range` request header.
    pub if_range: String,
    /// `HTTP/1.1`, `HTTP/1.0`, ...
    pub protocol: String,
    /// Local port of the server that answered (tells HTTP from HTTPS).
    pub server_port: u16,
    /// Bytes of the request: line, headers and body.
    pub request_length: u64,
    /// `Content-Length` request header.
    pub content_length: String,
    /// `Transfer-Encoding` request header.
    pub transfer_encoding: String,
    /// nginx's `$remote_user`: the user name of a `Basic` `Authorization` header, empty when
    /// there is none. It is the name the client sent, whether or not the password was right.
    pub remote_user: String,
}

/// Undoes nginx's `escape=json` (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, `\u00XX`).
fn unescape_json(field: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(field.len());
    let b = field.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'n' => (b'\n', 2),
                b'r' => (b'\r', 2),
                b't' => (b'\t', 2),
                b'b' => (8, 2),
                b'f' => (12, 2),
                b'u' if i + 6 <= b.len() => match u8::from_str_radix(&field[i + 4..i + 6], 16) {
                    Ok(v) if &field[i + 2..i + 4] == "00" => (v, 6),
                    _ => (b'\\', 1),
                },
                c @ (b'"' | b'\\' | b'/') => (c, 2),
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

impl LogLine {
    /// Parses one line of the harness's log format (without the trailing newline).
    pub fn parse(line: &str) -> Result<LogLine, String> {
        let f: Vec<String> = line.split('\t').map(unescape_json).collect();
        if f.len() != LOG_FIELDS.len() {
            return Err(format!(
                "access-log line has {} fields, expected {}: {line:?}",
                f.len(),
                LOG_FIELDS.len()
            ));
        }
        fn num<T: std::str::FromStr>(f: &[String], i: usize, line: &str) -> Result<T, String> {
            f[i].parse().map_err(|_| {
                format!(
                    "access-log field {} is not a number: {line:?}",
                    LOG_FIELDS[i]
                )
            })
        }
        Ok(LogLine {
            connection: num(&f, 0, line)?,
            connection_requests: num(&f, 1, line)?,
            method: f[2].clone(),
            uri: f[3].clone(),
            status: num(&f, 4, line)?,
            bytes: num(&f, 5, line)?,
            authorization: f[6].clone(),
            cookie: f[7].clone(),
            proxy_authorization: f[8].clone(),
            x_test: f[9].clone(),
            ssl_protocol: f[10].clone(),
            user_agent: f[11].clone(),
            host: f[12].clone(),
            range: f[13].clone(),
            if_range: f[14].clone(),
            protocol: f[15].clone(),
            server_port: num(&f, 16, line)?,
            request_length: num(&f, 17, line)?,
            content_length: f[18].clone(),
            transfer_encoding: f[19].clone(),
            remote_user: f[20].clone(),
        })
    }
}

/// A running nginx. Dropping it stops nginx (SIGTERM, then SIGKILL after 5 s) and removes its
/// directory; if the test is panicking, the error log is printed first.
#[derive(Debug)]
pub struct Nginx {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    tls_port: u16,
    ipv6: bool,
}

/// The nginx binary: `$FERRY_TEST_NGINX`, `/usr/sbin/nginx`, or `nginx` on `PATH`.
pub fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_NGINX") {
        return PathBuf::from(p);
    }
    find_executable("nginx", &["/usr/sbin/nginx"]).unwrap_or_else(|| {
        panic!("nginx not found (looked at /usr/sbin/nginx and PATH): {INSTALL_HINT}")
    })
}

/// Whether this process runs as root (uid 0).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Ports picked by binding port 0 and releasing them; nginx may still lose a race for them, so
/// the caller retries with new ones.
fn pick_ports(ipv6: bool) -> (u16, u16) {
    for _ in 0..100 {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        if !ipv6 {
            return (pa, pb);
        }
        let a6 = TcpListener::bind(("::1", pa));
        let b6 = TcpListener::bind(("::1", pb));
        if a6.is_ok() && b6.is_ok() {
            return (pa, pb);
        }
    }
    panic!("could not find two ports free on both 127.0.0.1 and ::1 in 100 tries")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn server_block(
    opts: &NginxOptions,
    root: &Path,
    listen: &[String],
    tls: Option<&Pki>,
    subst: &dyn Fn(&str) -> String,
) -> String {
    let mut s = String::from("    server {\n");
    for l in listen {
        let _ = writeln!(s, "        listen {l};");
    }
    s.push_str("        server_name localhost;\n");
    let _ = writeln!(s, "        root {};", quote(&root.display().to_string()));
    if let Some(pki) = tls {
        let _ = writeln!(
            s,
            "        ssl_certificate {};",
            quote(&pki.leaf_pem.display().to_string())
        );
        let _ = writeln!(
            s,
            "        ssl_certificate_key {};",
            quote(&pki.leaf_key.display().to_string())
        );
        s.push_str("        ssl_protocols TLSv1.2 TLSv1.3;\n");
    }
    for code in STATUS_CODES {
        let body = match code {
            204 | 304 | 301 | 302 | 303 | 307 | 308 => String::new(),
            _ => format!(" \"status {code}\\n\""),
        };
        let _ = writeln!(
            s,
            "        location = /status/{code} {{ return {code}{body}; }}"
        );
    }
    s.push_str(
        "        location = /close { keepalive_timeout 0; return 200 \"closing\\n\"; }\n\
         \x20       location = /echo/head { default_type text/plain; echo -n $echo_client_request_headers; }\n\
         \x20       location = /echo/body { default_type application/octet-stream; echo_read_request_body; echo_request_body; }\n\
         \x20       location = /chunked { default_type text/plain; echo \"chunk one\"; echo_flush; echo \"chunk two\"; }\n\
         \x20       location = /slow { default_type text/plain; echo \"start\"; echo_flush; echo_sleep 2; echo \"end\"; }\n",
    );
    for (i, basic) in opts.basic_auth.iter().enumerate() {
        let _ = writeln!(
            s,
            "        location {} {{\n\
             \x20           auth_basic {};\n\
             \x20           auth_basic_user_file {};\n\
             \x20           location = {}echo {{ default_type text/plain; echo -n $remote_user; }}\n\
             \x20       }}",
            basic.prefix,
            quote(&basic.realm),
            quote(&subst(&format!("@DIR@/{}", htpasswd_name(i)))),
            basic.prefix
        );
    }
    for (from, status, to) in &opts.redirects {
        let _ = writeln!(
            s,
            "        location = {from} {{ return {status} {}; }}",
            quote(&subst(to))
        );
    }
    if !opts.extra_server_conf.is_empty() {
        s.push_str(&subst(&opts.extra_server_conf));
        s.push('\n');
    }
    s.push_str("    }\n");
    s
}

/// The htpasswd file of the `i`-th [`BasicAuthLocation`], in the instance's directory.
fn htpasswd_name(i: usize) -> String {
    format!("htpasswd-{i}")
}

/// An htpasswd `$apr1$` hash of `password`, made by `openssl passwd -apr1` (read from stdin, so
/// any password works).
pub fn apr1_hash(password: &str) -> String {
    use std::io::Write as _;
    let mut child = match Command::new("openssl")
        .args(["passwd", "-apr1", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`openssl` not found: {INSTALL_HINT}")
        }
        Err(e) => panic!("could not run openssl: {e}"),
    };
    assert!(
        !password.contains(['\n', '\r']),
        "a Basic test password cannot hold a line break"
    );
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write to openssl");
    let out = child.wait_with_output().expect("wait for openssl");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && hash.starts_with("$apr1$"),
        "openssl passwd -apr1 failed ({}): {hash:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    hash
}

fn write_htpasswd_files(opts: &NginxOptions, dir: &Path) {
    for (i, basic) in opts.basic_auth.iter().enumerate() {
        let mut file = String::new();
        for (user, password) in &basic.users {
            assert!(
                !user.contains([':', '\n', '\r']),
                "Basic test user {user:?} holds ':' or a line break"
            );
            let _ = writeln!(file, "{user}:{}", apr1_hash(password));
        }
        let path = dir.join(htpasswd_name(i));
        std::fs::write(&path, file).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

fn config(
    opts: &NginxOptions,
    dir: &Path,
    root: &Path,
    ports: (u16, u16),
    ipv6: bool,
    pki: &Pki,
) -> String {
    let (port, tls_port) = ports;
    let d = |rel: &str| quote(&dir.join(rel).display().to_string());
    let subst = |s: &str| {
        s.replace("@HTTPS@", &format!("https://localhost:{tls_port}"))
            .replace("@HTTP@", &format!("http://127.0.0.1:{port}"))
            .replace("@TLS_PORT@", &tls_port.to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@ROOT@", &root.display().to_string())
            .replace("@DIR@", &dir.display().to_string())
    };
    let mut c = String::new();
    if running_as_root() {
        // Workers would otherwise switch to `nobody` and might not read the test's temp dirs.
        c.push_str("user root;\n");
    }
    c.push_str("daemon off;\nmaster_process on;\nworker_processes 1;\n");
    let _ = writeln!(c, "pid {};", d("nginx.pid"));
    let _ = writeln!(c, "error_log {} info;", d("error.log"));
    let _ = writeln!(c, "load_module {ECHO_MODULE};");
    c.push_str("events { worker_connections 512; }\n");
    c.push_str("http {\n");
    let _ = writeln!(
        c,
        "    log_format ferry escape=json '{}';",
        LOG_FIELDS.join("\t")
    );
    let _ = writeln!(c, "    access_log {} ferry;", d("access.log"));
    for (directive, sub) in [
        ("client_body_temp_path", "tmp/body"),
        ("proxy_temp_path", "tmp/proxy"),
        ("fastcgi_temp_path", "tmp/fastcgi"),
        ("uwsgi_temp_path", "tmp/uwsgi"),
        ("scgi_temp_path", "tmp/scgi"),
    ] {
        let _ = writeln!(c, "    {directive} {};", d(sub));
    }
    c.push_str(
        "    keepalive_requests 10000;\n\
         \x20   keepalive_timeout 60s;\n\
         \x20   client_max_body_size 0;\n\
         \x20   client_body_buffer_size 1m;\n\
         \x20   default_type application/octet-stream;\n\
         \x20   types { text/plain txt; text/html html; application/json json; }\n",
    );
    if !opts.extra_http_conf.is_empty() {
        c.push_str(&subst(&opts.extra_http_conf));
        c.push('\n');
    }
    let mut listen = vec![format!("127.0.0.1:{port}")];
    let mut listen_tls = vec![format!("127.0.0.1:{tls_port} ssl")];
    if ipv6 {
        listen.push(format!("[::1]:{port}"));
        listen_tls.push(format!("[::1]:{tls_port} ssl"));
    }
    c.push_str(&server_block(opts, root, &listen, None, &subst));
    c.push_str(&server_block(opts, root, &listen_tls, Some(pki), &subst));
    c.push_str("}\n");
    c
}

/// A file's contents as text (lossy), or empty when it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Whether a TCP connection to `addr` succeeds within 200 ms.
pub fn can_connect(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// How one start attempt ended.
enum Attempt {
    Up(Child),
    PortTaken,
}

impl Nginx {
    /// Starts nginx with `opts`, waiting (at most 10 s) until it accepts on every port.
    ///
    /// Panics with nginx's error log when it does not come up, and with an install hint when
    /// nginx is missing. Retries with fresh ports (at most 5 times) when a port was taken.
    pub fn start(opts: NginxOptions) -> Nginx {
        let bin = nginx_binary();
        let pki = pki();
        let dir = TempDir::new("nginx");
        let root = dir.join("root");
        for sub in ["root", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create nginx dirs");
        }
        for (rel, bytes) in &opts.files {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create docroot subdir");
            }
            std::fs::write(&path, bytes)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        for (rel, size) in &opts.large_files {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create docroot subdir");
            }
            write_large_file(&path, rel, *size)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        write_htpasswd_files(&opts, dir.path());
        let ipv6 = super::ipv6_loopback_available();
        for attempt in 1..=PORT_ATTEMPTS {
            let ports = pick_ports(ipv6);
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(&opts, dir.path(), &root, ports, ipv6, pki))
                .expect("write nginx.conf");
            let _ = std::fs::remove_file(dir.join("nginx.pid"));
            let _ = std::fs::remove_file(dir.join("error.log"));
            match Self::try_start(&bin, dir.path(), ports, ipv6) {
                Attempt::Up(child) => {
                    return Nginx {
                        child: Some(child),
                        dir,
                        port: ports.0,
                        tls_port: ports.1,
                        ipv6,
                    }
                }
                Attempt::PortTaken if attempt < PORT_ATTEMPTS => continue,
                Attempt::PortTaken => {}
            }
        }
        panic!(
            "nginx could not bind free ports in {PORT_ATTEMPTS} attempts; error log:\n{}",
            read_lossy(&dir.join("error.log"))
        )
    }

    fn try_start(bin: &Path, dir: &Path, ports: (u16, u16), ipv6: bool) -> Attempt {
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("nginx not found at {}: {INSTALL_HINT}", bin.display())
            }
            Err(e) => panic!("could not start {}: {e}", bin.display()),
        };
        let mut addrs: Vec<SocketAddr> = vec![
            ([127, 0, 0, 1], ports.0).into(),
            ([127, 0, 0, 1], ports.1).into(),
        ];
        if ipv6 {
            addrs.push((std::net::Ipv6Addr::LOCALHOST, ports.0).into());
            addrs.push((std::net::Ipv6Addr::LOCALHOST, ports.1).into());
        }
        // nginx writes its pid file only after binding every listener, so "pid file present"
        // proves the ports are nginx's and not another process's that won the race.
        let pid_file = dir.join("nginx.pid");
        let ready = poll(START_TIMEOUT, Duration::from_millis(10), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            let pid_written =
                std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty());
            (pid_written && addrs.iter().all(|a| can_connect(*a))).then_some(Ok(()))
        });
        let logs = || {
            format!(
                "--- error.log ---\n{}--- stderr ---\n{}--- nginx.conf: {} ---",
                read_lossy(&dir.join("error.log")),
                read_lossy(&dir.join("stderr.log")),
                dir.join("nginx.conf").display()
            )
        };
        match ready {
            Some(Ok(())) => Attempt::Up(child),
            Some(Err(status)) => {
                let log = logs();
                if log.contains("Address already in use") {
                    return Attempt::PortTaken;
                }
                let hint = if log.contains(ECHO_MODULE) {
                    format!("\n(the echo module is missing: {INSTALL_HINT})")
                } else {
                    String::new()
                };
                panic!("nginx exited during start ({status}){hint}\n{log}")
            }
            None => {
                stop_child(&mut child);
                panic!(
                    "nginx did not accept on {addrs:?} within {START_TIMEOUT:?}\n{}",
                    logs()
                )
            }
        }
    }

    /// HTTP port on 127.0.0.1 (and on ::1 when [`Nginx::has_ipv6`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// HTTPS port on 127.0.0.1 (and on ::1 when [`Nginx::has_ipv6`]).
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// Whether nginx also listens on `[::1]` (it does whenever the machine has IPv6 loopback).
    pub fn has_ipv6(&self) -> bool {
        self.ipv6
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn http_url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// `http://[::1]:PORT/path`. Panics when the machine has no IPv6 loopback.
    pub fn http_url_v6(&self, path: &str) -> String {
        assert!(
            self.ipv6,
            "this machine has no IPv6 loopback (::1), so nginx has no [::1] listener"
        );
        format!(
            "http://[::1]:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// `https://localhost:TLS_PORT/path`: the name the leaf certificate is for.
    pub fn https_url(&self, path: &str) -> String {
        format!(
            "https://localhost:{}/{}",
            self.tls_port,
            path.trim_start_matches('/')
        )
    }

    /// `https://127.0.0.1:TLS_PORT/path` (the leaf also has an IP SAN for 127.0.0.1).
    pub fn https_url_ip(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}/{}",
            self.tls_port,
            path.trim_start_matches('/')
        )
    }

    /// The PKI whose leaf the HTTPS listener presents (trust [`Pki::ca_pem`]).
    pub fn pki(&self) -> &'static Pki {
        pki()
    }

    /// The document root. Files written here after start are served too.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The instance's directory (config, logs, temp paths, root).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The error log so far (level `info`).
    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.join("error.log"))
    }

    /// The access log's complete lines so far, parsed. Panics on a line it cannot parse.
    pub fn access_log(&self) -> Vec<LogLine> {
        read_lines(&self.dir.join("access.log"), LogLine::parse)
    }

    /// Waits (at most 2 s) until the access log has at least `n` lines and returns them all.
    /// nginx logs a request after its response is sent, so a client that has just read a
    /// response may be a little ahead of the log. Panics, showing the lines, if fewer appear.
    pub fn wait_log_lines(&self, n: usize) -> Vec<LogLine> {
        wait_lines(
            "access-log lines",
            &self.dir.join("access.log"),
            n,
            LogLine::parse,
            LOG_WAIT,
            String::new,
        )
    }
}

/// The pids of `ppid`'s children, from /proc (bounded by the number of processes).
fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the parenthesised command: state, ppid, ...
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(ppid)
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    // `sh`'s builtin `kill`: procps' /usr/bin/kill is not on every minimal image.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{sig} {pid} 2>/dev/null"))
        .status();
}

/// Stops nginx's master: SIGTERM (fast shutdown, which also ends the worker), bounded wait, then
/// SIGKILL for the master and any worker left. Also used for Apache (whose parent ends its
/// children on SIGTERM) and the Python test servers.
pub fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), "TERM");
    let exited = poll(STOP_TIMEOUT, Duration::from_millis(10), || {
        matches!(child.try_wait(), Ok(Some(_))).then_some(())
    });
    if exited.is_none() {
        for worker in children_of(child.id()) {
            signal(worker, "KILL");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "nginx on ports {}/{} (dir {}), error log:\n{}",
                self.port,
                self.tls_port,
                self.dir.path().display(),
                self.error_log()
            );
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

/// Runs `nginx -V` and returns its output (version and build flags), for failure messages.
pub fn nginx_version() -> String {
    let out = run_tool(Command::new(nginx_binary()).arg("-V"));
    String::from_utf8_lossy(&out.stderr).into_owned()
}
