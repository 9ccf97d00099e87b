//! A bounded runner of the `ferry` binary for the CLI tests.
//!
//! The binary path comes from the caller (`env!("CARGO_BIN_EXE_ferry")` is only set in the test
//! crate itself). Every run: stdin empty, every proxy-related variable removed (then the caller's
//! `env` set, so a test can still choose a proxy environment), stdout and stderr drained on
//! threads so a large output never blocks the child, and a hard time limit past which the child
//! is killed and the test panics.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every variable that could change the proxy a run uses; removed before each run.
pub const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
];

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

/// The command [`run`] runs: `bin` with `args` in `cwd` (or the test's cwd), stdin empty, stdout
/// and stderr piped, without [`PROXY_VARS`] and then with `env`. For a test that must spawn the
/// child itself (to kill it mid-transfer, say).
pub fn command(bin: &str, cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd
}

/// Runs [`command`] to completion; kills the child and panics if it is still running after
/// `limit`.
pub fn run(
    bin: &str,
    cwd: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Run {
    let mut cmd = command(bin, cwd, args, env);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start the ferry binary");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferry {args:?} still running after {limit:?}: killed");
            }
            Err(e) => panic!("waiting for ferry {args:?}: {e}"),
        }
    };
    let elapsed = started.elapsed();
    let stdout = out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned();
    Run {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        elapsed,
    }
}
