//! The `ferry` command: curl-like requests in URL mode (`ferry [OPTIONS] URL...`), with
//! `--next` groups sharing one session so connections are reused across URLs.
#![forbid(unsafe_code)]

mod args;
mod download;
mod exit;
mod ipc;
mod job;
mod output;
mod service;

use args::{DataArg, Group, OutputArg};
use ferry::{Body, Method, RedirectPolicy, Response, Session, TlsSettings};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Bytes moved per read of a response body: bulk copies peak at 64–96 KiB per system call.
const COPY_BUF: usize = 96 * 1024;

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "download") {
        return ExitCode::from(download::main(args.split_off(1)));
    }
    if args.first().is_some_and(|a| a == "job") {
        return ExitCode::from(job::main(args.split_off(1)));
    }
    if args.first().is_some_and(|a| a == "service") {
        return ExitCode::from(service::main(args.split_off(1)));
    }
    let explain = args.first().is_some_and(|a| a == "proxy");
    if explain {
        if args.get(1).is_none_or(|a| a != "explain") {
            eprintln!("ferry: (2) unknown proxy command; hint: try 'ferry proxy explain URL'");
            return ExitCode::from(2);
        }
        args.drain(..2);
    }
    let groups = match args::parse(args) {
        Ok(g) => g,
        Err(e) if !e.use_stderr() => {
            // --help: the text goes to stdout.
            let _ = e.print();
            return ExitCode::from(0);
        }
        Err(e) => {
            // Usage errors keep the one-line error format too (curl's exit code 2).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("ferry: (2) {first}; hint: try 'ferry --help'");
            return ExitCode::from(2);
        }
    };
    if groups.iter().all(|g| g.urls.is_empty()) {
        eprintln!("ferry: (2) no URL specified; hint: try 'ferry --help'");
        return ExitCode::from(2);
    }
    // The environment is read once, here at the edge; the parsers take strings.
    let env_proxy = ferry::ProxyConfig::from_env(|k| std::env::var(k).ok());
    if explain {
        return ExitCode::from(explain_proxy(&groups, &env_proxy));
    }
    let verbose = Arc::new(AtomicBool::new(false));
    let session = {
        let mut builder = Session::builder().redirect_policy(RedirectPolicy::Never);
        match session_auth(&groups) {
            Ok((policy, ambient)) => {
                builder = builder.auth_policy(policy);
                if let Some(a) = ambient {
                    builder = builder.default_credentials(a);
                }
            }
            Err(f) => return ExitCode::from(report(&f, false, true)),
        }
        // Without -v or -i nobody listens: the library then skips the work events cost.
        if groups.iter().any(|g| g.verbose || g.include || g.head) {
            let v = verbose.clone();
            builder = builder.on_event(Arc::new(move |e: &ferry::Event<'_>| {
                if v.load(Ordering::Relaxed) {
                    output::verbose_event(e);
                }
                output::collect_head(e);
            }));
        }
        match builder.build() {
            Ok(s) => s,
            Err(e) => return ExitCode::from(report(&e.into(), false, true)),
        }
    };
    let mut ctx = Ctx {
        buf: vec![0u8; COPY_BUF],
        stdout: None,
        tls: Ok(None),
        proxy: Ok(ferry::ProxyConfig::default()),
    };
    let mut status = 0u8;
    for group in &groups {
        verbose.store(group.verbose, Ordering::Relaxed);
        ctx.tls = group_tls(group);
        ctx.proxy = group_proxy(group, &env_proxy);
        for (i, url) in group.urls.iter().enumerate() {
            let output = match group.outputs.get(i) {
                Some(OutputArg::File(o)) => Output::File(o.clone()),
                Some(OutputArg::RemoteName) => Output::RemoteName,
                None => Output::Stdout,
            };
            // As in curl, the last transfer's result is the exit code.
            status = run_one(&session, group, url, output, &mut ctx);
        }
    }
    ExitCode::from(status)
}

/// What lives across transfers: the copy buffer, stdout's descriptor, the group's TLS settings
/// (its CA file is read once per group, not once per URL).
struct Ctx {
    buf: Vec<u8>,
    stdout: Option<File>,
    tls: Result<Option<TlsSettings>, (u8, String)>,
    proxy: Result<ferry::ProxyConfig, (u8, String)>,
}

/// The proxy configuration of a group: `-x` (a URL, or WinHTTP's per-scheme list), else the
/// environment; `--noproxy` replaces the bypass list.
fn group_proxy(
    g: &Group,
    env: &Result<ferry::ProxyConfig, ferry_proxy::ProxyError>,
) -> Result<ferry::ProxyConfig, (u8, String)> {
    let bad = |e: ferry_proxy::ProxyError| (5u8, e.to_string());
    let env_bypass = env.as_ref().map(|c| c.bypass.clone()).unwrap_or_default();
    let mut config = match &g.proxy {
        Some(p) if p.is_empty() => ferry::ProxyConfig::default(),
        Some(p) if p.contains('=') && !p.contains("://") => {
            ferry::ProxyConfig::per_scheme_list(p).map_err(bad)?
        }
        Some(p) => ferry::ProxyConfig::explicit(p).map_err(bad)?,
        None => env.clone().map_err(bad)?,
    };
    config.bypass = match &g.noproxy {
        Some(list) => ferry_proxy::BypassList::Curl(ferry_proxy::NoProxy::parse(list), "--noproxy"),
        None if g.proxy.is_some() => env_bypass,
        None => config.bypass,
    };
    Ok(config)
}

/// The proxy schemes a group allows for `--proxy-user`.
fn proxy_schemes(g: &Group) -> ferry::SchemeSet {
    if g.proxy_anyauth {
        ferry::SchemeSet::ANY
    } else if g.proxy_basic || g.proxy_digest || g.proxy_ntlm {
        ferry::SchemeSet {
            basic: g.proxy_basic,
            digest: g.proxy_digest,
            ntlm: g.proxy_ntlm,
        }
    } else {
        ferry::SchemeSet::BASIC
    }
}

/// `ferry proxy explain URL`: the route and every policy decision, for the first URL, with
/// the same options and environment as a request.
fn explain_proxy(
    groups: &[Group],
    env: &Result<ferry::ProxyConfig, ferry_proxy::ProxyError>,
) -> u8 {
    let Some((g, url)) = groups.iter().find_map(|g| g.urls.first().map(|u| (g, u))) else {
        eprintln!("ferry: (2) no URL specified; hint: try 'ferry proxy explain URL'");
        return 2;
    };
    let url = match ferry::Url::parse(url) {
        Ok(u) => u,
        Err(_) => {
            eprintln!("ferry: (3) bad URL: not a valid absolute URL");
            return 3;
        }
    };
    let config = match group_proxy(g, env) {
        Ok(c) => c,
        Err((code, message)) => {
            eprintln!("ferry: ({code}) {message}");
            return code;
        }
    };
    let (policy, ambient) = match session_auth(groups) {
        Ok(x) => x,
        Err(f) => return report(&f, false, true),
    };
    let proxy_creds = g.proxy_user.is_some()
        || config
            .http
            .as_ref()
            .is_some_and(|(p, _)| p.credentials.is_some())
        || config
            .https
            .as_ref()
            .is_some_and(|(p, _)| p.credentials.is_some());
    let input = ferry_proxy::ExplainInput {
        url: &url,
        config: &config,
        force_tunnel: g.proxytunnel,
        policy: ferry::ProxyPolicy::default(),
        autologon: policy.autologon,
        proxy_credentials: proxy_creds,
        proxy_basic_allowed: proxy_schemes(g).basic,
        server_credentials: g.user.is_some() || g.bearer.is_some(),
        ambient_credentials: ambient.is_some(),
    };
    let mut out = io::stdout().lock();
    for line in ferry_proxy::explain(&input) {
        if writeln!(out, "{line}").is_err() {
            return 23;
        }
    }
    0
}

/// The session-wide auth settings: the autologon level and ambient credentials (from a file
/// that only its owner may read), taken from whichever group gives them (the last wins).
fn session_auth(
    groups: &[Group],
) -> Result<(ferry::AuthPolicy, Option<ferry::Credentials>), Failure> {
    let mut policy = ferry::AuthPolicy::default();
    let mut ambient = None;
    for g in groups {
        if let Some(level) = &g.autologon {
            policy.autologon = match level.to_ascii_lowercase().as_str() {
                "low" => ferry::AutologonLevel::Low,
                "medium" => ferry::AutologonLevel::Medium,
                "high" => ferry::AutologonLevel::High,
                other => {
                    return Err(Failure {
                        code: 2,
                        message: format!("unknown --autologon level '{other}'"),
                        hint: Some("use low, medium or high"),
                    })
                }
            };
        }
        if let Some(path) = &g.default_credentials {
            ambient = Some(read_default_credentials(path)?);
        }
    }
    Ok((policy, ambient))
}

/// Reads `user:password` from `path`, refusing a file others can read or write: ambient
/// credentials are a service's secret.
fn read_default_credentials(path: &str) -> Result<ferry::Credentials, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |message: String, hint: Option<&'static str>| Failure {
        code: 26,
        message,
        hint,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(
            format!("cannot read --default-credentials {path}: {e}"),
            None,
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(
            format!("--default-credentials {path} has mode {mode:04o}; it must be 0600"),
            Some("chmod 600 the file"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            format!("cannot read --default-credentials {path}: {e}"),
            None,
        )
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if !line.contains(':') {
        return Err(fail(
            format!("--default-credentials {path} does not hold user:password"),
            None,
        ));
    }
    Ok(ferry::Credentials::parse_user_password(line))
}

/// The TLS settings of a group's `-k` and `--cacert`, or why the CA file cannot be used.
fn group_tls(g: &Group) -> Result<Option<TlsSettings>, (u8, String)> {
    if !g.insecure && g.cacert.is_none() {
        return Ok(None);
    }
    let mut tls = TlsSettings {
        danger_accept_invalid_certs: g.insecure,
        ..Default::default()
    };
    if let Some(path) = &g.cacert {
        let pem =
            std::fs::read(path).map_err(|e| (77, format!("cannot read CA file {path}: {e}")))?;
        tls.extra_ca_pem = Some(pem);
    }
    Ok(Some(tls))
}

enum Output {
    File(String),
    RemoteName,
    Stdout,
}

/// What one transfer produced, for `-w`.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) http_code: u16,
    pub(crate) num_connects: u32,
    pub(crate) num_redirects: u32,
    pub(crate) size_download: u64,
    pub(crate) size_header: u64,
    pub(crate) url_effective: String,
    pub(crate) content_type: String,
    pub(crate) exitcode: u8,
    pub(crate) time_total: f64,
}

/// Parses a subcommand's arguments; `Err(code)` when clap answered instead (help text on
/// stdout: 0; a usage error as one line plus a hint on stderr: 2).
pub(crate) fn parse_sub(
    cmd: clap::Command,
    name: &str,
    args: Vec<std::ffi::OsString>,
) -> Result<clap::ArgMatches, u8> {
    let argv = std::iter::once(std::ffi::OsString::from(format!("ferry {name}"))).chain(args);
    match cmd.try_get_matches_from(argv) {
        Ok(m) => Ok(m),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(0)
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("ferry: (2) {first}; hint: try 'ferry {name} --help'");
            Err(2)
        }
    }
}

/// A failure of one transfer: the curl exit code and the message.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
    pub(crate) hint: Option<&'static str>,
}

impl From<ferry::Error> for Failure {
    fn from(e: ferry::Error) -> Self {
        Failure {
            code: exit::code_for(&e),
            message: e.to_string(),
            hint: e.hint(),
        }
    }
}

fn run_one(session: &Session, g: &Group, url: &str, output: Output, ctx: &mut Ctx) -> u8 {
    let started = Instant::now();
    let mut outcome = Outcome {
        url_effective: url.to_owned(),
        ..Default::default()
    };
    let result = transfer(session, g, url, output, &mut outcome, ctx);
    outcome.time_total = started.elapsed().as_secs_f64();
    let code = match result {
        Ok(()) => 0,
        Err(f) => {
            if !g.silent || g.show_error {
                match f.hint {
                    Some(h) => eprintln!("ferry: ({}) {}; hint: {h}", f.code, f.message),
                    None => eprintln!("ferry: ({}) {}", f.code, f.message),
                }
            }
            f.code
        }
    };
    outcome.exitcode = code;
    if let Some(fmt) = &g.write_out {
        if let Err(e) = output::write_out(fmt, &outcome) {
            if !g.silent || g.show_error {
                eprintln!("ferry: (23) writing -w output failed: {e}");
            }
            return 23;
        }
    }
    code
}

/// Whether (and after how long) `--retry` tries again: transient errors and 408/429/5xx,
/// 1 s doubling up to 10 minutes, or the server's `Retry-After` (curl's rules).
fn retry_delay(
    g: &Group,
    attempt: u32,
    sent: &Result<Response, ferry::Error>,
) -> Option<std::time::Duration> {
    use ferry_transfer::fetch::{classify_status, ErrorClass};
    if attempt >= g.retry {
        return None;
    }
    let retry_after = match sent {
        Err(e) if ferry::error_class(e) == ErrorClass::Transient => None,
        Err(_) => return None,
        Ok(r) => match classify_status(r.status().as_u16(), r.headers()) {
            Some(e) if e.is_transient() => e.retry_after,
            _ => return None,
        },
    };
    let backoff = std::time::Duration::from_secs(1u64 << attempt.min(10))
        .min(ferry_transfer::download::MAX_RETRY_DELAY);
    Some(retry_after.unwrap_or(backoff))
}

/// The request of one attempt: method, body, and everything [`base_request`] adds.
fn build_request(
    session: &Session,
    g: &Group,
    url: &str,
    ctx: &Ctx,
) -> Result<ferry::RequestBuilder, Failure> {
    let mut url = url.to_owned();
    let (body, default_method, form) = request_body(g, &mut url)?;
    let method = match (&g.method, g.head) {
        (Some(m), _) => Method::from_bytes(m.as_bytes()).map_err(|_| Failure {
            code: 43,
            message: format!("'{m}' is not a valid method"),
            hint: Some("methods are tokens such as GET, POST, PUT, DELETE"),
        })?,
        (None, true) => Method::HEAD,
        (None, false) => default_method,
    };
    let req = base_request(session, g, &url, method, ctx, form)?;
    Ok(req.body(body.unwrap_or(Body::Empty)))
}

/// `url` without its user information, and that information as `user:password`
/// (percent-decoded), the way curl reads `http://user:password@host/`.
fn split_userinfo(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = ferry::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return (url.to_owned(), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = format!(
        "{}:{}",
        decode(parsed.username()),
        decode(parsed.password().unwrap_or(""))
    );
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    (parsed.to_string(), Some(user))
}

/// A request with the group's headers, redirects, timeouts, credentials, proxy, TLS and range,
/// and no body.
fn base_request(
    session: &Session,
    g: &Group,
    url: &str,
    method: Method,
    ctx: &Ctx,
    form: bool,
) -> Result<ferry::RequestBuilder, Failure> {
    let (url, url_user) = split_userinfo(url);
    let mut req = session.request(method, &url)?;
    match g.user_agent.as_deref() {
        // curl: an empty -A sends no User-Agent at all.
        Some("") => req = req.without_header(ferry::HeaderName::from_static("user-agent")),
        Some(ua) => req = req.header("user-agent", ua),
        None => {}
    }
    let mut has_content_type = false;
    for line in &g.headers {
        let Some((name, value)) = split_header(line) else {
            return Err(Failure {
                code: 43,
                message: format!("header '{line}' is not 'Name: value'"),
                hint: None,
            });
        };
        let Some(value) = value else {
            // `Name:` removes the header, defaults included, as curl does.
            match ferry::HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => req = req.without_header(n),
                Err(_) => {
                    return Err(Failure {
                        code: 43,
                        message: format!("'{name}' is not a valid header name"),
                        hint: None,
                    })
                }
            }
            continue;
        };
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        req = req.header(name, value);
    }
    if form && !has_content_type {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    if g.location {
        let policy = match g.redirect_policy.as_deref() {
            None | Some("no-downgrade") => RedirectPolicy::NoHttpsToHttp,
            Some("always") => RedirectPolicy::Always,
            Some("never") => RedirectPolicy::Never,
            Some(other) => {
                return Err(Failure {
                    code: 2,
                    message: format!("unknown --redirect-policy '{other}'"),
                    hint: Some("use no-downgrade, always or never"),
                })
            }
        };
        req = req.redirect_policy(policy);
    }
    if let Some(n) = g.max_redirs {
        req = req.max_redirects(n);
    }
    // 0 means no limit (-m) and the default (--connect-timeout), as in curl.
    if let Some(t) = g.max_time.filter(|t| !t.is_zero()) {
        req = req.timeout(t);
    }
    if let Some(t) = g.connect_timeout.filter(|t| !t.is_zero()) {
        req = req.connect_timeout(t);
    }
    // As curl: credentials in the URL act as -u, which wins when both are given.
    if let Some(user) = g.user.as_ref().or(url_user.as_ref()) {
        let creds = ferry::Credentials::parse_user_password(user);
        let schemes = if g.anyauth {
            ferry::SchemeSet::ANY
        } else if g.basic || g.digest || g.ntlm {
            ferry::SchemeSet {
                basic: g.basic,
                digest: g.digest,
                ntlm: g.ntlm,
            }
        } else {
            ferry::SchemeSet::BASIC
        };
        req = req.credentials(creds, schemes);
    }
    if let Some(token) = &g.bearer {
        req = req.bearer_auth(token.clone());
    }
    if g.location_trusted {
        req = req.location_trusted(true);
    }
    match &ctx.proxy {
        Ok(config) => req = req.proxy(config.clone()),
        Err((code, message)) => {
            return Err(Failure {
                code: *code,
                message: message.clone(),
                hint: Some("proxies look like http://host:port or https://host:port"),
            })
        }
    }
    if g.proxytunnel {
        req = req.proxy_tunnel(true);
    }
    if let Some(user) = &g.proxy_user {
        req = req.proxy_credentials(
            ferry::Credentials::parse_user_password(user),
            proxy_schemes(g),
        );
    }
    match &ctx.tls {
        Ok(Some(tls)) => req = req.tls(tls.clone()),
        Ok(None) => {}
        Err((code, message)) => {
            return Err(Failure {
                code: *code,
                message: message.clone(),
                hint: None,
            })
        }
    }
    if let Some(r) = &g.range {
        req = req.header("range", format!("bytes={r}"));
    }
    Ok(req)
}

fn transfer(
    session: &Session,
    g: &Group,
    url: &str,
    output: Output,
    outcome: &mut Outcome,
    ctx: &mut Ctx,
) -> Result<(), Failure> {
    if g.continue_at.is_some() {
        return resume_in_place(session, g, url, &output, outcome, ctx);
    }
    let mut attempt = 0u32;
    let (mut resp, heads) = loop {
        let req = build_request(session, g, url, ctx)?;
        // With -i / -I, every response head (interim, redirects, final) is output, as in curl.
        output::start_collecting_heads(g.include || g.head);
        let sent = req.send();
        let heads = output::take_heads();
        if let Some(delay) = retry_delay(g, attempt, &sent) {
            if !g.silent {
                eprintln!(
                    "ferry: transient problem; retrying in {:.0} s ({} retries left)",
                    delay.as_secs_f64(),
                    g.retry - attempt
                );
            }
            drop(sent);
            std::thread::sleep(delay);
            attempt += 1;
            continue;
        }
        break (sent?, heads);
    };
    outcome.http_code = resp.status().as_u16();
    outcome.num_connects = resp.connect_count();
    outcome.num_redirects = resp.redirect_count();
    outcome.url_effective = resp.url().to_string();
    outcome.content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let printed_head = g.include || g.head;
    let head_text = if printed_head || g.write_out.is_some() {
        output::head_text(&resp)
    } else {
        String::new()
    };
    outcome.size_header = head_text.len() as u64;

    if g.fail && resp.status().as_u16() >= 400 {
        return Err(Failure {
            code: 22,
            message: format!(
                "the requested URL returned error: {}",
                resp.status().as_u16()
            ),
            hint: None,
        });
    }
    let mut sink = if g.remote_header_name && matches!(output, Output::RemoteName) {
        open_header_named(&resp, url)?
    } else {
        open_output(&output, resp.url(), &mut ctx.stdout)?
    };
    if printed_head {
        // The last collected head is the final response's, printed from `resp` below.
        for earlier in heads.iter().take(heads.len().saturating_sub(1)) {
            sink.write_all(earlier.as_bytes()).map_err(write_failure)?;
        }
        sink.write_all(head_text.as_bytes())
            .map_err(write_failure)?;
    }
    let mut bucket = g
        .limit_rate
        .filter(|&r| r > 0)
        .map(|r| ferry_transfer::throttle::TokenBucket::new(r, (r / 20).max(16 * 1024)));
    copy_body(&mut resp, &mut sink, outcome, &mut ctx.buf, bucket.as_mut())?;
    sink.flush().map_err(write_failure)?;
    Ok(())
}

fn copy_body(
    resp: &mut Response,
    sink: &mut Sink<'_>,
    outcome: &mut Outcome,
    buf: &mut [u8],
    mut limit: Option<&mut ferry_transfer::throttle::TokenBucket>,
) -> Result<(), Failure> {
    loop {
        let n = match resp.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failure(e)),
        };
        sink.write_all(&buf[..n]).map_err(write_failure)?;
        outcome.size_download += n as u64;
        if let Some(bucket) = limit.as_deref_mut() {
            let wait = bucket.take(n as u64, Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
}

/// `-O -J`: the file named by Content-Disposition (else the URL's last segment), sanitised,
/// in the current directory, and never one that exists already (curl refuses too).
fn open_header_named(resp: &Response, url: &str) -> Result<Sink<'static>, Failure> {
    use ferry_transfer::disposition;
    let original = ferry::Url::parse(url).unwrap_or_else(|_| resp.url().clone());
    let cd = resp
        .headers()
        .get("content-disposition")
        .map(|v| v.as_bytes());
    let Some(name) = disposition::choose(cd, &original) else {
        return Err(Failure {
            code: 23,
            message: format!("the response names no file and the URL {url} has none"),
            hint: Some("use -o FILE"),
        });
    };
    let refuse = |e: io::Error| Failure {
        code: 23,
        message: format!("cannot create {name}: {e}"),
        hint: Some("use -o FILE to choose the name"),
    };
    let path = disposition::unique_in(std::path::Path::new("."), &name).map_err(refuse)?;
    // create_new: a file that appeared since the check is not overwritten either.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map(Sink::File)
        .map_err(refuse)
}

/// `-C -`: the resumable engine writing straight into the output file, from its size, with
/// `If-Range` when the sidecar knows a validator.
fn resume_in_place(
    session: &Session,
    g: &Group,
    url: &str,
    output: &Output,
    outcome: &mut Outcome,
    ctx: &Ctx,
) -> Result<(), Failure> {
    let usage = |message: &str| Failure {
        code: 2,
        message: message.to_owned(),
        hint: Some("resume with -C - -o FILE URL"),
    };
    if g.continue_at.as_deref() != Some("-") {
        return Err(usage(
            "only '-C -' (resume from the file's size) is supported",
        ));
    }
    if g.range.is_some() || g.remote_header_name {
        return Err(usage("-C - cannot be combined with -r or -J"));
    }
    let parsed = ferry::Url::parse(url).map_err(|_| Failure {
        code: 3,
        message: format!("bad URL: '{url}' is not a valid absolute URL"),
        hint: None,
    })?;
    let path = match output {
        Output::File(p) if p != "-" => p.clone(),
        Output::RemoteName => remote_name(&parsed)?,
        _ => return Err(usage("-C - needs an output file (-o FILE or -O)")),
    };
    let fetch = GroupFetch {
        session,
        g,
        ctx,
        last_code: std::cell::Cell::new(None),
        last: std::cell::RefCell::new(None),
    };
    let opts = ferry_transfer::download::Options {
        in_place: true,
        retries: g.retry,
        rate_limit: g.limit_rate.unwrap_or(0),
        ..Default::default()
    };
    let result = ferry_transfer::download::Download::new(parsed, &path)
        .options(opts)
        .run(&fetch);
    if let Some((code, url)) = fetch.last.take() {
        outcome.http_code = code;
        outcome.url_effective = url;
    }
    match result {
        Ok(report) => {
            outcome.size_download = report.fetched;
            Ok(())
        }
        Err(e) => Err(download::failure(&e, fetch.last_code.get())),
    }
}

/// The engine's fetcher in URL mode: every request built with the group's options.
struct GroupFetch<'a> {
    session: &'a Session,
    g: &'a Group,
    ctx: &'a Ctx,
    last_code: std::cell::Cell<Option<u8>>,
    last: std::cell::RefCell<Option<(u16, String)>>,
}

impl ferry_transfer::fetch::Fetch for GroupFetch<'_> {
    type Body = Response;

    fn fetch(
        &self,
        req: &ferry_transfer::fetch::FetchRequest<'_>,
    ) -> Result<(ferry_transfer::fetch::FetchHead, Response), ferry_transfer::fetch::FetchError>
    {
        let method = if req.head { Method::HEAD } else { Method::GET };
        let b = base_request(
            self.session,
            self.g,
            req.url.as_str(),
            method,
            self.ctx,
            false,
        )
        .map_err(|f| {
            self.last_code.set(Some(f.code));
            ferry_transfer::fetch::FetchError::fatal(f.message)
        })?;
        let resp = ferry::with_fetch_request(b, req).send().map_err(|e| {
            self.last_code.set(Some(exit::code_for(&e)));
            ferry::fetch_error(&e)
        })?;
        *self.last.borrow_mut() = Some((resp.status().as_u16(), resp.url().to_string()));
        Ok((ferry::fetch_head(&resp), resp))
    }
}

fn read_failure(e: io::Error) -> Failure {
    match e.into_inner().map(|inner| inner.downcast::<ferry::Error>()) {
        Some(Ok(fe)) => (*fe).into(),
        Some(Err(other)) => Failure {
            code: 56,
            message: other.to_string(),
            hint: None,
        },
        None => Failure {
            code: 56,
            message: "receive failed".into(),
            hint: None,
        },
    }
}

fn write_failure(e: io::Error) -> Failure {
    Failure {
        code: 23,
        message: format!("failed writing the body: {e}"),
        hint: None,
    }
}

/// Opens where the body goes. Stdout is written unbuffered through its own descriptor (made
/// once, kept in `stdout`): the standard library's line buffering would scan every bulk block
/// for newlines.
fn open_output<'a>(
    output: &Output,
    url: &ferry::Url,
    stdout: &'a mut Option<File>,
) -> Result<Sink<'a>, Failure> {
    let path = match output {
        Output::Stdout => {
            if stdout.is_none() {
                let fd = io::stdout().as_fd().try_clone_to_owned();
                *stdout = Some(fd.map(File::from).map_err(write_failure)?);
            }
            let file = stdout.as_ref().expect("set just above");
            return Ok(Sink::Stdout(file));
        }
        Output::File(p) if p == "-" => return open_output(&Output::Stdout, url, stdout),
        Output::File(p) => p.clone(),
        Output::RemoteName => remote_name(url)?,
    };
    File::create(&path).map(Sink::File).map_err(|e| Failure {
        code: 23,
        message: format!("cannot create {path}: {e}"),
        hint: None,
    })
}

/// Where a body is written: a file of its own, or the shared stdout descriptor.
enum Sink<'a> {
    File(File),
    Stdout(&'a File),
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Stdout(f) => (&**f).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stdout(f) => (&**f).flush(),
        }
    }
}

/// The file name `-O` uses: the URL's last path segment, never a path of its own.
fn remote_name(url: &ferry::Url) -> Result<String, Failure> {
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    if name.is_empty() || name == "." || name == ".." {
        return Err(Failure {
            code: 23,
            message: format!("the URL {url} has no file name to save to"),
            hint: Some("use -o FILE"),
        });
    }
    Ok(name.to_owned())
}

/// Splits `Name: value`. `Name:` alone is `(name, None)` (curl removes the header);
/// `Name;` is an empty value.
fn split_header(line: &str) -> Option<(&str, Option<&str>)> {
    if let Some((name, value)) = line.split_once(':') {
        let value = value.trim_start_matches([' ', '\t']);
        if value.is_empty() {
            return Some((name, None));
        }
        return Some((name, Some(value)));
    }
    line.strip_suffix(';').map(|name| (name, Some("")))
}

/// The request body from `-d`, `--data-binary` or `-T`: (body, default method, is form data).
fn request_body(g: &Group, url: &mut String) -> Result<(Option<Body>, Method, bool), Failure> {
    let read_failure = |what: &str, e: io::Error| Failure {
        code: 26,
        message: format!("cannot read {what}: {e}"),
        hint: None,
    };
    if let Some(path) = &g.upload {
        if url.ends_with('/') {
            let base = std::path::Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            url.push_str(&base);
        }
        if path == "-" {
            return Ok((
                Some(Body::Chunked(Box::new(io::stdin()))),
                Method::PUT,
                false,
            ));
        }
        let file = File::open(path).map_err(|e| read_failure(path, e))?;
        let len = file.metadata().map_err(|e| read_failure(path, e))?.len();
        return Ok((
            Some(Body::Reader {
                reader: Box::new(file),
                len,
            }),
            Method::PUT,
            false,
        ));
    }
    if g.data.is_empty() {
        return Ok((None, Method::GET, false));
    }
    let mut joined = Vec::new();
    for (i, d) in g.data.iter().enumerate() {
        if i > 0 {
            joined.push(b'&');
        }
        let (text, strip) = match d {
            DataArg::Ascii(t) => (t, true),
            DataArg::Binary(t) => (t, false),
        };
        match text.strip_prefix('@') {
            Some(path) => {
                let mut bytes = Vec::new();
                if path == "-" {
                    io::stdin()
                        .read_to_end(&mut bytes)
                        .map_err(|e| read_failure("stdin", e))?;
                } else {
                    bytes = std::fs::read(path).map_err(|e| read_failure(path, e))?;
                }
                if strip {
                    bytes.retain(|b| *b != b'\r' && *b != b'\n');
                }
                joined.extend_from_slice(&bytes);
            }
            None => joined.extend_from_slice(text.as_bytes()),
        }
    }
    Ok((Some(Body::Bytes(joined)), Method::POST, true))
}

/// Prints an error that happened before any transfer.
fn report(f: &Failure, silent: bool, show_error: bool) -> u8 {
    if !silent || show_error {
        eprintln!("ferry: ({}) {}", f.code, f.message);
    }
    f.code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines() {
        assert_eq!(split_header("A: b"), Some(("A", Some("b"))));
        assert_eq!(split_header("A:b: c"), Some(("A", Some("b: c"))));
        assert_eq!(split_header("A:"), Some(("A", None)));
        assert_eq!(split_header("A;"), Some(("A", Some(""))));
        assert_eq!(split_header("A"), None);
    }

    #[test]
    fn remote_names() {
        let u = |s: &str| ferry::Url::parse(s).unwrap();
        assert_eq!(
            remote_name(&u("http://h/a/b.txt?x=1")).ok(),
            Some("b.txt".into())
        );
        assert!(remote_name(&u("http://h/")).is_err());
        assert!(remote_name(&u("http://h/a/..")).is_err());
    }
}
