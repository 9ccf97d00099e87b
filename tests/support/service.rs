//! A private `ferry service` per test: its own runtime directory (socket) and data directory
//! (job store), started in the foreground as a child, killed when the handle drops.
//!
//! `job(...)` runs `ferry job ...` against it with the same environment, through the bounded
//! runner of [`crate::support::cli`]. A test that wants the on-demand start instead uses
//! [`ServiceEnv`] alone and stops whatever started through [`ServiceEnv::stop_started`].

use super::cli::{self, Run};
use super::tempdir::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment of one user's service: runtime and data directories.
#[derive(Debug)]
pub struct ServiceEnv {
    pub bin: String,
    pub root: TempDir,
    pub runtime: PathBuf,
    pub data: PathBuf,
}

impl ServiceEnv {
    /// Fresh, private directories under a new temp dir.
    pub fn new(bin: &str, label: &str) -> ServiceEnv {
        let root = TempDir::new(label);
        let runtime = root.join("run");
        let data = root.join("data");
        for d in [&runtime, &data] {
            std::fs::create_dir_all(d).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        ServiceEnv {
            bin: bin.to_owned(),
            root,
            runtime,
            data,
        }
    }

    /// The variables that point `ferry` at these directories.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            (
                "XDG_RUNTIME_DIR".into(),
                self.runtime.to_string_lossy().into_owned(),
            ),
            (
                "XDG_DATA_HOME".into(),
                self.data.to_string_lossy().into_owned(),
            ),
        ]
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.runtime.join("ferry").join("sock")
    }

    /// The job store path.
    pub fn store(&self) -> PathBuf {
        self.data.join("ferry").join("jobs.db")
    }

    /// Runs `ferry job ARGS` in `cwd` (bounded by `limit`).
    pub fn job_in(&self, cwd: &Path, args: &[&str], limit: Duration) -> Run {
        let vars = self.vars();
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut full = vec!["job"];
        full.extend_from_slice(args);
        cli::run(&self.bin, Some(cwd), &full, &env, limit)
    }

    /// Runs `ferry job ARGS` in the root dir with a 30 s limit.
    pub fn job(&self, args: &[&str]) -> Run {
        self.job_in(self.root.path(), args, Duration::from_secs(30))
    }

    /// Runs `ferry job ARGS`, panicking unless it exits 0; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.job(args);
        assert_eq!(r.code, 0, "ferry job {args:?} failed: {}", r.stderr);
        String::from_utf8_lossy(&r.stdout).trim().to_owned()
    }

    /// The pid in the runtime directory, if a service wrote one.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.runtime.join("ferry").join("pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Kills (SIGKILL) a service that `ferry job` started on demand, and waits until it is
    /// gone (bounded).
    pub fn stop_started(&self) {
        // The pid file outlives a service that was killed and reaped already.
        // Only a `ferry service` whose environment names our runtime dir (a reused pid is
        // someone else's process).
        let ours = |pid: &u32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let runtime = format!("XDG_RUNTIME_DIR={}", self.runtime.display());
            cmdline.split(|&b| b == 0).any(|a| a == b"service")
                && environ.split(|&b| b == 0).any(|e| e == runtime.as_bytes())
        };
        if let Some(pid) = self.pid().filter(ours) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                // A zombie of another parent still has /proc/PID; its state says so.
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.contains(") Z ") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A running `ferry service` child.
#[derive(Debug)]
pub struct Service {
    pub env: ServiceEnv,
    child: Option<Child>,
    args: Vec<String>,
}

impl Service {
    /// Starts `ferry service ARGS` with fresh directories and waits (≤ 10 s) for its socket.
    pub fn start(bin: &str, label: &str, args: &[&str]) -> Service {
        let mut s = Service {
            env: ServiceEnv::new(bin, label),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.env.bin);
        cmd.arg("service")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for var in cli::PROXY_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in self.env.vars() {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start ferry service");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.env.pid() == Some(pid)
                && std::os::unix::net::UnixStream::connect(self.env.socket()).is_ok()
            {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ferry service exited at start: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "ferry service did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the service (no chance to tidy up) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the service again on the same directories.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl std::ops::Deref for Service {
    type Target = ServiceEnv;
    fn deref(&self) -> &ServiceEnv {
        &self.env
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
        // A service that a `ferry job` started on demand after a kill.
        self.env.stop_started();
    }
}
