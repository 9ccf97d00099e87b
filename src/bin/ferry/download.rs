//! `ferry download URL`: a one-shot resumable download. Data goes to `.NAME.ferry-part` beside
//! the destination with a `.NAME.ferry-state` sidecar; re-running the same command after an
//! interruption resumes with validation (`Range` + `If-Range`); the file appears under its name
//! only when complete (and verified, with `--checksum`). A run holds `.NAME.ferry-lock` (the
//! engine's [`download::DestLock`]), so a second `ferry download` to the same file fails at once
//! (exit 23) instead of writing alongside the first.
use clap::{Arg, ArgAction, ArgMatches, Command};
use ferry::{
    Credentials, ProxyConfig, RedirectPolicy, Response, SchemeSet, Session, SessionFetch,
    TlsSettings,
};
use ferry_transfer::disposition;
use ferry_transfer::download::{self, Download, DownloadError, Event, Options};
use ferry_transfer::fetch::{Fetch, FetchError, FetchHead, FetchRequest};
use ferry_transfer::range::ByteRange;
use ferry_transfer::throttle::parse_rate;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::ffi::OsString;
use std::io::{self, IsTerminal, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Failure;

/// Exit code for a checksum mismatch (aria2's "checksum validation failed"; curl has none).
const EXIT_CHECKSUM: u8 = 32;

fn command() -> Command {
    let opt = |name: &'static str, short: Option<char>, value: &'static str, help: &'static str| {
        let a = Arg::new(name)
            .long(name)
            .value_name(value)
            .action(ArgAction::Set)
            .help(help);
        match short {
            Some(c) => a.short(c),
            None => a,
        }
    };
    let flag = |name: &'static str, short: Option<char>, help: &'static str| {
        let a = Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help);
        match short {
            Some(c) => a.short(c),
            None => a,
        }
    };
    Command::new("ferry download")
        .about("Download URL to a file, resumably: re-run the same command to resume")
        .override_usage("ferry download URL [-o FILE] [OPTIONS]")
        .disable_version_flag(true)
        .arg(
            Arg::new("url")
                .value_name("URL")
                .required(true)
                .help("URL to download"),
        )
        .arg(opt(
            "output",
            Some('o'),
            "FILE",
            "Save as FILE (default: the URL's file name)",
        ))
        .arg(flag(
            "remote-header-name",
            Some('J'),
            "Name the file from Content-Disposition (sanitised; never overwrites)",
        ))
        .arg(opt(
            "segments",
            None,
            "N",
            "Use up to N connections for a large file (1-16)",
        ))
        .arg(opt(
            "limit-rate",
            None,
            "RATE",
            "Cap the speed (bytes/s; k, M, G suffixes)",
        ))
        .arg(opt(
            "checksum",
            None,
            "sha256=HEX",
            "Verify the SHA-256 before keeping the file",
        ))
        .arg(opt(
            "retry",
            None,
            "N",
            "Retry transient failures N times (1 s doubling)",
        ))
        .arg(opt(
            "range",
            Some('r'),
            "A-B[,C-D...]",
            "Fetch these byte ranges, concatenated in this order",
        ))
        .arg(
            opt("header", Some('H'), "LINE", "Add a header 'Name: value'")
                .action(ArgAction::Append),
        )
        .arg(flag(
            "allow-dynamic",
            None,
            "Restart from zero when the server cannot resume (instead of failing)",
        ))
        .arg(opt(
            "checkpoint-bytes",
            None,
            "SIZE",
            "Save progress at least every SIZE bytes (default 1M)",
        ))
        .arg(opt(
            "checkpoint-interval",
            None,
            "SECONDS",
            "Save progress at least this often (default 1)",
        ))
        .arg(opt(
            "connect-timeout",
            None,
            "SECONDS",
            "Connect time limit",
        ))
        .arg(opt(
            "receive-timeout",
            None,
            "SECONDS",
            "Give up on a server that sends nothing for this long (default 30)",
        ))
        .arg(opt(
            "user",
            Some('u'),
            "USER:PASSWORD",
            "Server credentials (DOMAIN\\user accepted); Basic unless --digest, --ntlm or --anyauth",
        ))
        .arg(flag("digest", None, "Use Digest for --user"))
        .arg(flag("ntlm", None, "Use NTLM for --user"))
        .arg(flag(
            "anyauth",
            None,
            "Answer the server's challenge with the strongest scheme it offers",
        ))
        .arg(opt(
            "proxy",
            Some('x'),
            "URL",
            "Use this proxy (default: http_proxy / https_proxy; '' for none)",
        ))
        .arg(opt(
            "noproxy",
            None,
            "LIST",
            "Hosts that bypass the proxy (default: NO_PROXY)",
        ))
        .arg(opt(
            "proxy-user",
            Some('U'),
            "USER:PASSWORD",
            "Proxy credentials (Basic, sent only to the proxy)",
        ))
        .arg(flag(
            "insecure",
            Some('k'),
            "Do not verify the server certificate (unsafe)",
        ))
        .arg(opt(
            "cacert",
            None,
            "FILE",
            "Trust the CA certificates in FILE (PEM)",
        ))
        .arg(flag("silent", Some('s'), "No progress bar, no messages"))
        .arg(flag("show-error", Some('S'), "With -s, still print errors"))
        .arg(flag(
            "verbose",
            Some('v'),
            "Report resumes, restarts and retries on stderr",
        ))
        .after_help(
            "Exit codes (curl's where curl has one): 0 saved; 18 body cut short, 28 timeout, \
             56 receive failure (run again to resume); 22 HTTP error; 23 cannot write the \
             destination, or another download is writing it; 32 checksum mismatch; 33 the \
             server cannot resume (see --allow-dynamic); 8 inconsistent answers; 2 bad usage.",
        )
}

/// A usage error (exit 2).
fn usage(msg: String) -> Failure {
    Failure {
        code: 2,
        message: msg,
        hint: Some("try 'ferry download --help'"),
    }
}

/// Runs `ferry download ARGS` (without the `download` word); returns the exit code.
pub(crate) fn main(args: Vec<OsString>) -> u8 {
    let m = match crate::parse_sub(command(), "download", args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let silent = m.get_flag("silent");
    let show_error = m.get_flag("show-error");
    match run(&m, silent) {
        Ok(()) => 0,
        Err(f) => {
            if !silent || show_error {
                match f.hint {
                    Some(h) => eprintln!("ferry: ({}) {}; hint: {h}", f.code, f.message),
                    None => eprintln!("ferry: ({}) {}", f.code, f.message),
                }
            }
            f.code
        }
    }
}

/// The proxy: `--proxy` (empty: none) else the environment, with `--noproxy` else NO_PROXY.
fn proxy_config(m: &ArgMatches) -> Result<ProxyConfig, Failure> {
    let bad = |e: ferry_proxy::ProxyError| Failure {
        code: 5,
        message: e.to_string(),
        hint: Some("check --proxy and the http_proxy / https_proxy / NO_PROXY variables"),
    };
    let explicit = value(m, "proxy");
    let mut config = match &explicit {
        Some(p) if p.is_empty() => ProxyConfig::default(),
        Some(p) => ProxyConfig::explicit(p).map_err(bad)?,
        None => ProxyConfig::from_env(|k| std::env::var(k).ok()).map_err(bad)?,
    };
    if let Some(list) = value(m, "noproxy") {
        config.bypass =
            ferry_proxy::BypassList::Curl(ferry_proxy::NoProxy::parse(&list), "--noproxy");
    } else if explicit.is_some() {
        // An explicit proxy keeps the environment's bypass list, as curl does.
        if let Ok(env) = ProxyConfig::from_env(|k| std::env::var(k).ok()) {
            config.bypass = env.bypass;
        }
    }
    Ok(config)
}

fn value(m: &ArgMatches, name: &str) -> Option<String> {
    m.get_one::<String>(name).cloned()
}

fn number<T: std::str::FromStr>(m: &ArgMatches, name: &str) -> Result<Option<T>, Failure> {
    match value(m, name) {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| usage(format!("--{name}: '{s}' is not a valid number"))),
    }
}

fn seconds(m: &ArgMatches, name: &str) -> Result<Option<Duration>, Failure> {
    match number::<f64>(m, name)? {
        None => Ok(None),
        Some(v) if (0.0..1e9).contains(&v) => Ok(Some(Duration::from_secs_f64(v))),
        Some(_) => Err(usage(format!("--{name} is out of range"))),
    }
}

/// The engine's fetcher for the CLI: remembers the exit code of the latest session error, in a
/// request or in reading a body, so that the exit code can say what failed, as curl's does
/// (28 for a stalled body, not a generic 56).
struct CliFetch {
    inner: SessionFetch,
    last_code: Arc<Mutex<Option<u8>>>,
}

impl CliFetch {
    fn record(&self, code: Option<u8>) {
        record(&self.last_code, code);
    }

    fn last_code(&self) -> Option<u8> {
        self.last_code.lock().ok().and_then(|c| *c)
    }
}

fn record(slot: &Mutex<Option<u8>>, code: Option<u8>) {
    if let Ok(mut c) = slot.lock() {
        *c = code;
    }
}

/// A response body that records the exit code of a failed read (see [`CliFetch`]).
struct CliBody {
    inner: Response,
    last_code: Arc<Mutex<Option<u8>>>,
}

impl Read for CliBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            let code = match e.get_ref().and_then(|i| i.downcast_ref::<ferry::Error>()) {
                Some(fe) => crate::exit::code_for(fe),
                None if e.kind() == io::ErrorKind::TimedOut => 28,
                None => 56,
            };
            record(&self.last_code, Some(code));
        })
    }
}

impl Fetch for CliFetch {
    type Body = CliBody;

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, CliBody), FetchError> {
        // Only the latest attempt's failure explains the outcome.
        self.record(None);
        match self.inner.send(req) {
            Ok(r) => Ok((
                ferry::fetch_head(&r),
                CliBody {
                    inner: r,
                    last_code: Arc::clone(&self.last_code),
                },
            )),
            Err(e) => {
                self.record(Some(crate::exit::code_for(&e)));
                Err(ferry::fetch_error(&e))
            }
        }
    }
}

fn run(m: &ArgMatches, silent: bool) -> Result<(), Failure> {
    let url_text = value(m, "url").unwrap_or_default();
    let url = ferry::Url::parse(&url_text).map_err(|_| Failure {
        code: 3,
        message: format!("bad URL: '{url_text}' is not a valid absolute URL"),
        hint: Some("URLs look like http://host[:port]/path or https://…"),
    })?;
    let mut opts = Options::default();
    if let Some(r) = value(m, "limit-rate") {
        opts.rate_limit =
            parse_rate(&r).ok_or_else(|| usage(format!("--limit-rate: bad rate '{r}'")))?;
    }
    if let Some(n) = number::<usize>(m, "segments")? {
        if !(1..=download::MAX_SEGMENTS).contains(&n) {
            return Err(usage(format!(
                "--segments must be 1 to {}",
                download::MAX_SEGMENTS
            )));
        }
        opts.segments = n;
    }
    if let Some(n) = number::<u32>(m, "retry")? {
        opts.retries = n;
    }
    if let Some(c) = value(m, "checksum") {
        let hex = c
            .strip_prefix("sha256=")
            .ok_or_else(|| usage("--checksum takes sha256=HEX".into()))?;
        opts.sha256 = Some(
            download::parse_sha256(hex)
                .ok_or_else(|| usage("--checksum: sha256 needs 64 hex digits".into()))?,
        );
    }
    if let Some(r) = value(m, "range") {
        opts.ranges =
            ByteRange::parse_list(&r).map_err(|e| usage(format!("--range '{r}': {e}")))?;
    }
    if let Some(b) = value(m, "checkpoint-bytes") {
        opts.checkpoint_bytes = parse_rate(&b)
            .filter(|&n| n > 0)
            .ok_or_else(|| usage(format!("--checkpoint-bytes: bad size '{b}'")))?;
    }
    if let Some(t) = seconds(m, "checkpoint-interval")? {
        opts.checkpoint_interval = t;
    }
    opts.allow_dynamic = m.get_flag("allow-dynamic");
    let mut headers = Vec::new();
    for line in m.get_many::<String>("header").into_iter().flatten() {
        let Some((k, v)) = line.split_once(':') else {
            return Err(usage(format!("header '{line}' is not 'Name: value'")));
        };
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }

    let mut builder = Session::builder().proxy(proxy_config(m)?);
    if let Some(t) = seconds(m, "receive-timeout")?.filter(|t| !t.is_zero()) {
        builder = builder.receive_timeout(t);
    }
    if let Some(u) = value(m, "user") {
        let schemes = if m.get_flag("anyauth") {
            SchemeSet::ANY
        } else if m.get_flag("digest") || m.get_flag("ntlm") {
            SchemeSet {
                basic: false,
                digest: m.get_flag("digest"),
                ntlm: m.get_flag("ntlm"),
            }
        } else {
            SchemeSet::BASIC
        };
        builder = builder.credentials(Credentials::parse_user_password(&u), schemes);
    }
    if let Some(u) = value(m, "proxy-user") {
        builder = builder.proxy_credentials(Credentials::parse_user_password(&u), SchemeSet::BASIC);
    }
    let session = builder.build().map_err(|e| Failure {
        code: crate::exit::code_for(&e),
        message: e.to_string(),
        hint: e.hint(),
    })?;
    let mut fetch = SessionFetch::new(session).redirect_policy(RedirectPolicy::NoHttpsToHttp);
    for (k, v) in headers {
        fetch = fetch.header(k, v);
    }
    if let Some(t) = seconds(m, "connect-timeout")?.filter(|t| !t.is_zero()) {
        fetch = fetch.connect_timeout(t);
    }
    let insecure = m.get_flag("insecure");
    let cacert = value(m, "cacert");
    if insecure || cacert.is_some() {
        let mut tls = TlsSettings {
            danger_accept_invalid_certs: insecure,
            ..Default::default()
        };
        if let Some(path) = &cacert {
            tls.extra_ca_pem = Some(std::fs::read(path).map_err(|e| Failure {
                code: 77,
                message: format!("cannot read CA file {path}: {e}"),
                hint: None,
            })?);
        }
        fetch = fetch.tls(tls);
    }
    let fetch = CliFetch {
        inner: fetch,
        last_code: Arc::new(Mutex::new(None)),
    };

    let dest = destination(m, &url, &fetch)?;
    let verbose = m.get_flag("verbose") && !silent;
    let bar = if silent || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bytes:>10}/{total_bytes:<10} [{bar:30}] {bytes_per_sec:>12} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b
    };
    let b = bar.clone();
    let dl = Download::new(url, &dest)
        .options(opts)
        .observer(move |e| match e {
            Event::Started { done, total } => {
                if let Some(t) = total {
                    b.set_length(*t);
                }
                b.set_position(*done);
                if verbose && *done > 0 {
                    b.suspend(|| eprintln!("ferry: resuming at byte {done}"));
                }
            }
            Event::Progress { done, total } => {
                if let Some(t) = total {
                    b.set_length(*t);
                }
                b.set_position(*done);
            }
            Event::Restarted { reason } => {
                b.set_position(0);
                if verbose {
                    b.suspend(|| eprintln!("ferry: restarting from zero: {reason}"));
                }
            }
            Event::Retrying { error, delay } if verbose => {
                b.suspend(|| eprintln!("ferry: {error}; retrying in {:.1} s", delay.as_secs_f64()));
            }
            _ => {}
        });
    let result = dl.run_segmented(&fetch);
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            if verbose {
                eprintln!(
                    "ferry: saved {} ({} bytes; resumed from {}, fetched {}, restarts {}, retries {}, requests {}, segments {})",
                    dest.display(),
                    report.total,
                    report.resumed_from,
                    report.fetched,
                    report.restarts,
                    report.retries,
                    report.requests,
                    report.segments
                );
            }
            Ok(())
        }
        Err(e) => Err(failure(&e, fetch.last_code())),
    }
}

/// Where to save: `-o`, else `-J`'s Content-Disposition name (asked with HEAD), else the URL's
/// last segment; server-chosen names are sanitised, stay in the current directory, and (with
/// `-J`) never replace an existing file.
fn destination(m: &ArgMatches, url: &ferry::Url, fetch: &CliFetch) -> Result<PathBuf, Failure> {
    if let Some(o) = value(m, "output") {
        if o.is_empty() || o.ends_with('/') {
            return Err(usage(format!("-o '{o}' is not a file name")));
        }
        return Ok(PathBuf::from(o));
    }
    let no_name = || Failure {
        code: 23,
        message: format!("the URL {url} has no file name to save to"),
        hint: Some("use -o FILE"),
    };
    if m.get_flag("remote-header-name") {
        let req = FetchRequest {
            head: true,
            ..FetchRequest::get(url)
        };
        let cd = fetch.fetch(&req).ok().and_then(|(h, _)| {
            h.headers
                .get("content-disposition")
                .map(|v| v.as_bytes().to_vec())
        });
        let name = disposition::choose(cd.as_deref(), url).ok_or_else(no_name)?;
        // A partial download of the same name is ours to resume; anything else is refused.
        let resuming = download::temp_path(std::path::Path::new(&name)).exists();
        if resuming && !std::path::Path::new(&name).exists() {
            return Ok(PathBuf::from(name));
        }
        return disposition::unique_in(std::path::Path::new("."), &name)
            .map(|p| PathBuf::from(p.file_name().unwrap_or_default()))
            .map_err(|e| Failure {
                code: 23,
                message: format!("{e}"),
                hint: Some("use -o FILE to choose the name"),
            });
    }
    disposition::from_url(url)
        .map(PathBuf::from)
        .ok_or_else(no_name)
}

/// The exit code and message for a failed download (curl's codes where curl has one).
///
/// A destination busy with another run is 23 (curl's `CURLE_WRITE_ERROR`, what curl exits with
/// when it cannot write its output file): this run cannot write there now.
pub(crate) fn failure(e: &DownloadError, last_code: Option<u8>) -> Failure {
    let code = match e {
        DownloadError::Busy { .. } => 23,
        DownloadError::Fetch(f) if f.status.is_some() => 22,
        DownloadError::Fetch(_) => last_code.unwrap_or(56),
        DownloadError::NoRangeSupport | DownloadError::RangeNotSatisfiable => 33,
        DownloadError::Inconsistent(_) => 8,
        DownloadError::Checksum { .. } => EXIT_CHECKSUM,
        DownloadError::Io { .. } => 23,
        DownloadError::BadOptions(_) => 2,
        _ => 1,
    };
    let hint = match e {
        DownloadError::NoRangeSupport => Some("--allow-dynamic restarts from zero instead"),
        DownloadError::Busy { .. } => {
            Some("wait for the other download to end (or stop it), then run this again to resume")
        }
        DownloadError::Fetch(f) if f.is_transient() => {
            Some("run the same command again to resume, or add --retry N")
        }
        _ => None,
    };
    Failure {
        code,
        message: e.to_string(),
        hint,
    }
}
