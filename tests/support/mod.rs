//! Shared harness for ferry's end-to-end tests: real servers and scripted fault servers, all on
//! loopback.
//!
//! Use it from an integration test file in `tests/` with `mod support;`.
//!
//! - [`Nginx`]: a private nginx instance per test (HTTP, HTTPS with a test PKI, an access log that
//!   records per-connection request counts and credential headers, and a few built-in locations).
//! - [`Pki`]: a test CA, an unrelated second CA, a `localhost` server leaf and a client leaf,
//!   generated once per test binary with the `openssl` CLI ([`pki()`]).
//! - [`ScriptServer`]: a std `TcpListener` whose connections each follow a script of
//!   `expect` / `send` / `sleep` / `close` / `reset` steps (hyper `tests/client.rs` style), for
//!   faults that a real server will not produce.
//! - [`NtlmServer`]: an NTLM-protected keep-alive HTTP/1.1 server (`tests/servers/ntlm_server.py`,
//!   NTLM by the pyspnego package) with a per-request log of connection, user and message type.
//! - [`Apache`]: a private Apache httpd with `mod_auth_digest` (Digest, MD5) and an access log of
//!   client port, keep-alive count, user and status.
//! - [`NginxOptions::basic_auth`]: Basic-authentication locations on [`Nginx`].
//! - [`Squid`]: a private Squid forward proxy (Debian's `squid`, foreground) with optional Basic
//!   proxy accounts and NTLM through squid's `ntlm_fake_auth`, and an access log of client port,
//!   proxy user, method, URL, status and the credential headers squid received.
//! - [`RecordingOrigin`]: a keep-alive HTTP/1.1 (and HTTPS) origin
//!   (`tests/servers/recording_origin.py`) that records every request's full header block, to
//!   check what a proxy let through.
//! - [`NtlmProxy`]: an NTLMv2-authenticating forward proxy (`tests/servers/ntlm_proxy.py`, NTLM by
//!   pyspnego), per-connection authentication, forwarding and CONNECT tunnels, with a per-request
//!   log of connection, user, method, target, status and message type.
//! - [`Service`]: a private `ferry service` (own runtime and data directories) and `ferry job`
//!   runs against it; killed on drop.
//! - [`pattern`]: deterministic, position-addressable file contents for large-file and range
//!   tests, and FNV-1a for cheap comparisons.
//!
//! Rules the harness keeps so that tests can rely on them: only loopback addresses; every server
//! a test starts stops when its handle drops; every wait is bounded in count and time; a missing
//! tool (nginx, openssl) is a loud panic that says to run `./scripts/test.sh`, never a skip.

// Not every test file uses every helper, and the helpers are `pub` for readability although the
// module is private to each test crate.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod apache;
pub mod cli;
pub mod logfile;
pub mod nginx;
pub mod ntlm;
pub mod ntlm_proxy;
pub mod pattern;
pub mod pki;
pub mod recording;
pub mod script;
pub mod service;
pub mod squid;
pub mod tempdir;

pub use apache::{Apache, ApacheLogLine, ApacheOptions};
pub use nginx::{BasicAuthLocation, LogLine, Nginx, NginxOptions};
pub use ntlm::{NtlmLogLine, NtlmServer};
pub use ntlm_proxy::{NtlmProxy, NtlmProxyLogLine};
pub use pattern::{fnv1a64, large_file_bytes, large_file_fnv1a64};
pub use pki::{pki, Pki};
pub use recording::{RecordedRequest, RecordingOrigin};
pub use script::{ScriptServer, Step};
pub use service::{Service, ServiceEnv};
pub use squid::{Squid, SquidLogLine, SquidOptions};
pub use tempdir::TempDir;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// What to tell a developer when a tool the tests need is missing.
pub const INSTALL_HINT: &str = "run ./scripts/test.sh, which installs nginx, openssl and curl";

/// Runs `cmd` to completion and returns its output, panicking with a clear message when the
/// program cannot be started (usually: not installed).
pub fn run_tool(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` not found: {INSTALL_HINT}")
        }
        Err(e) => panic!("could not run `{program}`: {e}"),
    }
}

/// Finds an executable by name: first in `preferred` (absolute paths), then on `PATH`.
pub fn find_executable(name: &str, preferred: &[&str]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    for p in preferred {
        let p = PathBuf::from(p);
        if is_exec(&p) {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

/// Polls `ready` every `step` until it returns `Some` or `limit` has passed (bounded in time, and
/// so in count). Returns the last result.
pub fn poll<T>(limit: Duration, step: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// Whether the IPv6 loopback address `::1` can be bound on this machine.
pub fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Renders bytes for a failure message: printable ASCII as is, the rest escaped, cut at `max`.
pub fn show_bytes(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(max) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > max {
        s.push_str(&format!("... ({} bytes in all)", bytes.len()));
    }
    s
}
