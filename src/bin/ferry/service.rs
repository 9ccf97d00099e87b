//! `ferry service`: the per-user daemon that runs the transfer queue (BITS on Linux).
//!
//! It owns the user's job store (`$XDG_DATA_HOME/ferry/jobs.db`, its only writer), runs the
//! queue (scheduling, workers, timers, notify programs, the background bandwidth policy) and
//! answers `ferry job` commands on `$XDG_RUNTIME_DIR/ferry/sock` from callers of its own uid.
//! Stopping it at any moment (SIGTERM, SIGKILL, a reboot) loses no job: the next start puts
//! running jobs back in the queue and they resume from their checkpoints.
use crate::ipc::{self, Reply, Request};
use crate::{job, Failure};
use clap::{Arg, ArgAction, Command};
use ferry::{JobConnector, ProxyConfig};
use ferry_transfer::queue::{Config, Queue};
use ferry_transfer::store::Store;
use ferry_transfer::throttle::{parse_rate, parse_window, BackgroundPolicy};
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn command() -> Command {
    let value = |name: &'static str, v: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name(v).help(help)
    };
    Command::new("ferry service")
        .about(
            "Run the per-user transfer service in the foreground (ferry job starts it on \
             demand; contrib/ferry.service runs it under systemd --user)",
        )
        .disable_version_flag(true)
        .arg(value(
            "background-limit",
            "RATE",
            "Cap for all background jobs together (like 500k, 2M; 0 blocks them) — inside \
             --window when one is given, else all day",
        ))
        .arg(value(
            "window",
            "HH:MM-HH:MM",
            "Daily window (UTC, seconds allowed: HH:MM:SS) in which --background-limit applies",
        ))
        .arg(value(
            "outside-limit",
            "RATE",
            "Cap for background jobs outside --window (default: none)",
        ))
        .arg(value(
            "slice",
            "SECS",
            "Round-robin time slice among background jobs of equal priority (default 60)",
        ))
        .arg(value(
            "segments",
            "N",
            "Connections per large file of a foreground job (default 4; 1 never segments)",
        ))
        .arg(value(
            "checkpoint-bytes",
            "BYTES",
            "Checkpoint at least every BYTES (default 1M)",
        ))
        .arg(value(
            "cacert",
            "FILE",
            "Trust the CA certificates in FILE (PEM) for every job, besides the webpki roots",
        ))
        .arg(value(
            "receive-timeout",
            "SECS",
            "How long a stalled server may hold a job before a transient error (default 30)",
        ))
        .arg(
            Arg::new("print-socket")
                .long("print-socket")
                .action(ArgAction::SetTrue)
                .help("Print the socket path and exit"),
        )
}

fn usage(message: String) -> Failure {
    Failure {
        code: 2,
        message,
        hint: Some("try 'ferry service --help'"),
    }
}

fn rate(m: &clap::ArgMatches, name: &str) -> Result<Option<u64>, Failure> {
    match m.get_one::<String>(name) {
        None => Ok(None),
        Some(s) => parse_rate(s)
            .map(Some)
            .ok_or_else(|| usage(format!("--{name} '{s}' is not a rate (like 500k or 2M)"))),
    }
}

fn config(m: &clap::ArgMatches) -> Result<Config, Failure> {
    let mut c = Config::default();
    let window = match m.get_one::<String>("window") {
        Some(w) => Some(parse_window(w).ok_or_else(|| {
            usage(format!(
                "--window '{w}' is not HH:MM[:SS]-HH:MM[:SS] with different ends"
            ))
        })?),
        None => None,
    };
    let limit = rate(m, "background-limit")?;
    let outside = rate(m, "outside-limit")?;
    if window.is_none() && outside.is_some() {
        return Err(usage("--outside-limit needs --window".into()));
    }
    c.policy = match window {
        Some(w) => BackgroundPolicy {
            window: Some(w),
            inside: limit,
            outside,
        },
        None => BackgroundPolicy {
            window: None,
            inside: None,
            outside: limit,
        },
    };
    if let Some(s) = m.get_one::<String>("slice") {
        let secs: f64 = s
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.1 && *v <= 86_400.0)
            .ok_or_else(|| usage(format!("--slice '{s}' is not 0.1 to 86400 seconds")))?;
        c.slice = Duration::from_secs_f64(secs);
    }
    if let Some(s) = m.get_one::<String>("segments") {
        c.segments = s
            .parse()
            .ok()
            .filter(|n| (1..=ferry_transfer::download::MAX_SEGMENTS).contains(n))
            .ok_or_else(|| usage(format!("--segments '{s}' is not 1 to 16")))?;
    }
    if let Some(s) = m.get_one::<String>("checkpoint-bytes") {
        c.checkpoint_bytes = parse_rate(s)
            .filter(|n| *n >= 4096)
            .ok_or_else(|| usage(format!("--checkpoint-bytes '{s}' is not at least 4k")))?;
    }
    Ok(c)
}

/// Runs `ferry service ARGS`; returns only on a startup failure (the exit code).
pub(crate) fn main(args: Vec<OsString>) -> u8 {
    let m = match crate::parse_sub(command(), "service", args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match run(&m) {
        Ok(()) => 0,
        Err(f) => {
            let r = Reply::failure(&f);
            eprint!("{}", String::from_utf8_lossy(&r.stderr));
            f.code
        }
    }
}

fn run(m: &clap::ArgMatches) -> Result<(), Failure> {
    let config = config(m)?;
    let receive_timeout = match m.get_one::<String>("receive-timeout") {
        None => None,
        Some(s) => {
            let secs: f64 = s
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.1 && *v <= 86_400.0)
                .ok_or_else(|| {
                    usage(format!(
                        "--receive-timeout '{s}' is not 0.1 to 86400 seconds"
                    ))
                })?;
            Some(Duration::from_secs_f64(secs))
        }
    };
    let cacert = match m.get_one::<String>("cacert") {
        None => None,
        Some(path) => Some(ferry::TlsSettings {
            extra_ca_pem: Some(std::fs::read(path).map_err(|e| Failure {
                code: 77,
                message: format!("cannot read CA file {path}: {e}"),
                hint: None,
            })?),
            ..Default::default()
        }),
    };
    let dir = ipc::runtime_dir()?;
    if m.get_flag("print-socket") {
        println!("{}", ipc::socket_path(&dir).display());
        return Ok(());
    }
    let listener = ipc::bind(&dir)?;
    let uid = listener.uid();
    let path = ferry_transfer::store::default_path(|k| std::env::var_os(k)).map_err(store_err)?;
    let store = Arc::new(Mutex::new(Store::open(path).map_err(store_err)?));
    // The "session" proxy choice of every job: the service's environment, read once.
    let proxy = ProxyConfig::from_env(|k| std::env::var(k).ok()).map_err(|e| Failure {
        code: 5,
        message: format!("the proxy environment is unusable: {e}"),
        hint: Some("fix or unset http_proxy / https_proxy / NO_PROXY"),
    })?;
    let mut connector = JobConnector::new(proxy);
    if let Some(tls) = cacert {
        connector = connector.tls(tls);
    }
    if let Some(t) = receive_timeout {
        connector = connector.receive_timeout(t);
    }
    let queue = Queue::start(Arc::clone(&store), connector, config);
    let handle = queue.handle();
    eprintln!(
        "ferry service: uid {uid}, listening on {}",
        ipc::socket_path(listener.dir()).display()
    );
    listener.serve(move |req: Request| {
        let ctx = job::Ctx {
            uid,
            store: &store,
            queue: &handle,
        };
        job::execute(&ctx, req)
    });
    queue.shutdown();
    Ok(())
}

fn store_err(e: ferry_transfer::store::StoreError) -> Failure {
    Failure {
        code: 1,
        message: format!("the job store is unusable: {e}"),
        hint: Some("check $XDG_DATA_HOME/ferry/jobs.db and its directory"),
    }
}
