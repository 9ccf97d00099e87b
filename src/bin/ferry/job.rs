//! `ferry job …`: BITS-style download jobs (bitsadmin's verbs), run by the per-user service.
//!
//! ```text
//!  ferry job ARGS ──parse──▶ --help / usage error: answered here, no service needed
//!        │                   monitor: asks for `list` every SECS, here
//!        │ reads what only the caller has: a secret (stdin or its environment),
//!        │ a notify program found on its PATH
//!        ▼
//!  ipc::call(Request { cwd, args }) ──unix socket──▶ ferry service: execute(ctx, request)
//!                                                    (the only writer of the store; its
//!                                                     queue runs the jobs)
//! ```
//!
//! Locking inside the service: the queue's workers lock the store to record progress, so a
//! command never holds the store lock while it waits for a worker ([`Control::quiesce`]). The
//! verbs that touch a running job's files (cancel, complete, suspend, set-remote-name) look the
//! job up, quiesce its worker with the lock released, then reload the job and change it. Every
//! change ends with [`Control::changed`] so that the queue plans again.
//!
//! Files on disk before `complete` are described in [`ferry_transfer::files`].
//!
//! Secrets: `set-credentials` reads the password or token in the client (`--password-stdin`,
//! `--password-env VAR`) and sends it inside the request as `--secret=…`, an option that only
//! the service's parser knows, so no process's argv ever holds it; the service also scrubs it
//! from any reply. `info` and `--json` show target, scheme and user only.
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use ferry_transfer::files;
use ferry_transfer::job::{
    AuthScheme, ByteRange, CredentialTarget, FileSpec, Job, JobCredentials, JobId, NotifyCommand,
    Priority, ProxyChoice, RedirectPolicy, Secret, ValidationError,
};
use ferry_transfer::queue::Control;
use ferry_transfer::state::{self, IllegalTransition, State, Verb};
use ferry_transfer::store::{Store, StoreError};
use ferry_transfer::throttle;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ipc::{self, Reply, Request};
use crate::Failure;

/// The `ferry job --help` summary.
const ABOUT: &str = "Manage BITS-style download jobs. Commands run in your ferry service \
(started on demand), which keeps the jobs in $XDG_DATA_HOME/ferry/jobs.db and transfers \
them in the background.";

/// How long the client waits for an ordinary command's reply (`complete` fsyncs every file).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// What the client adds to `wait --timeout` for its own read timeout, so the service's answer
/// always arrives first.
const WAIT_MARGIN: Duration = Duration::from_secs(30);
/// `wait`'s default limit (one hour).
const DEFAULT_WAIT_SECS: u64 = 3600;
/// `wait`'s largest limit (30 days); larger values would only hide a stuck job.
const MAX_WAIT_SECS: u64 = 30 * 24 * 3600;
/// How often `wait` looks at the job.
const WAIT_POLL: Duration = Duration::from_millis(100);
/// `monitor`'s shortest refresh interval.
const MIN_REFRESH_SECS: f64 = 0.1;
/// `monitor`'s longest refresh interval (one day).
const MAX_REFRESH_SECS: f64 = 86_400.0;
/// Most bytes of a secret read by `--password-stdin` (a token, not a file).
const MAX_SECRET_BYTES: usize = 64 * 1024;
/// The option that carries a secret from the client to the service (never typed by people).
const SECRET_OPT: &str = "--secret";

/// What the service gives a job command.
pub(crate) struct Ctx<'a> {
    /// The caller (SO_PEERCRED); equals the service's uid.
    pub(crate) uid: u32,
    /// The job store; the queue's workers lock it too.
    pub(crate) store: &'a Mutex<Store>,
    /// The running queue.
    pub(crate) queue: &'a dyn Control,
}

/// Which parser: the client's (what people type) or the service's (what the client sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `ferry job` as typed: `--password-stdin`/`--password-env`, no `--secret`.
    Client,
    /// The request the client sends: `--secret`, no `--password-*`.
    Service,
}

// ------------------------------------------------------------------------------------------
// The command line
// ------------------------------------------------------------------------------------------

/// The `ferry job` command line as `side` parses it.
fn command(side: Side) -> Command {
    let job_arg = || {
        Arg::new("job")
            .value_name("JOB")
            .required(true)
            .help("Job id, or a unique display name")
    };
    let json = || {
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("Print JSON (one line)")
    };
    let simple =
        |name: &'static str, about: &'static str| Command::new(name).about(about).arg(job_arg());
    let value = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name)
            .value_name(value_name)
            .required(true)
            .help(help)
    };
    Command::new("ferry job")
        .about(ABOUT)
        .override_usage("ferry job COMMAND [ARGS]")
        .disable_version_flag(true)
        .subcommand_required(true)
        .subcommand(
            Command::new("create")
                .about("Create a suspended job; prints its id")
                .arg(Arg::new("name").value_name("NAME").required(true))
                .arg(
                    Arg::new("priority")
                        .long("priority")
                        .value_name("P")
                        .help("foreground, high, normal (default) or low"),
                ),
        )
        .subcommand(
            Command::new("add")
                .about("Add a file to a suspended job; prints its index")
                .arg(job_arg())
                .arg(Arg::new("url").value_name("URL").required(true))
                .arg(
                    Arg::new("path")
                        .value_name("PATH")
                        .required(true)
                        .value_parser(value_parser!(PathBuf))
                        .help("Destination (relative to the current directory)"),
                )
                .arg(
                    Arg::new("range")
                        .long("range")
                        .value_name("OFF:LEN")
                        .action(ArgAction::Append)
                        .help("Fetch only this byte range (OFF:LEN or OFF:eof); repeatable"),
                ),
        )
        .subcommand(Command::new("list").about("List your jobs").arg(json()))
        .subcommand(
            Command::new("monitor")
                .about("Show the list again every SECS until interrupted")
                .arg(
                    Arg::new("refresh")
                        .long("refresh")
                        .value_name("SECS")
                        .help("Seconds between refreshes (default 1)"),
                )
                .arg(
                    Arg::new("count")
                        .long("count")
                        .value_name("N")
                        .help("Stop after N refreshes"),
                ),
        )
        .subcommand(
            Command::new("info")
                .about("Show a job: state, legal commands, files, last error")
                .arg(job_arg())
                .arg(
                    Arg::new("verbose")
                        .long("verbose")
                        .short('v')
                        .action(ArgAction::SetTrue)
                        .help("Also settings, validators, timers and temporary paths"),
                )
                .arg(json()),
        )
        .subcommand(simple(
            "resume",
            "Schedule the job (the service transfers it in the background)",
        ))
        .subcommand(simple("suspend", "Stop scheduling the job"))
        .subcommand(simple(
            "cancel",
            "Cancel the job and delete its temporary files",
        ))
        .subcommand(simple(
            "complete",
            "Move finished files into place (others are discarded) and end the job",
        ))
        .subcommand(
            Command::new("wait")
                .about(
                    "Wait until the job is transferred (exit 0) or fails (non-zero, with its \
                     error)",
                )
                .arg(job_arg())
                .arg(
                    Arg::new("timeout")
                        .long("timeout")
                        .value_name("SECS")
                        .help("Give up after SECS seconds (default 3600; exit 28)"),
                ),
        )
        .subcommand(
            Command::new("set-name")
                .about("Change the job's display name")
                .arg(job_arg())
                .arg(value("name", "NAME", "The new name")),
        )
        .subcommand(
            Command::new("set-priority")
                .about("Change the job's priority")
                .arg(job_arg())
                .arg(value("priority", "P", "foreground, high, normal or low")),
        )
        .subcommand(
            Command::new("set-remote-name")
                .about("Change a file's URL (FILE is the index shown by 'info')")
                .arg(job_arg())
                .arg(value("file", "FILE", "The file's index"))
                .arg(value("url", "URL", "The new URL")),
        )
        .subcommand(
            Command::new("set-limit")
                .about("Cap the job's transfer rate")
                .arg(job_arg())
                .arg(value(
                    "rate",
                    "RATE",
                    "Bytes per second, with an optional k, M or G suffix (500k, 2M), or none",
                )),
        )
        .subcommand(
            Command::new("set-notify")
                .about("Run PROGRAM ARGS... (no shell) when the job becomes TRANSFERRED or ERROR")
                .arg(job_arg())
                .arg(
                    Arg::new("clear")
                        .long("clear")
                        .action(ArgAction::SetTrue)
                        .conflicts_with("command")
                        .help("Remove the notify command"),
                )
                .arg(
                    Arg::new("command")
                        .value_name("PROGRAM [ARGS]")
                        .num_args(1..)
                        .trailing_var_arg(true)
                        .allow_hyphen_values(true)
                        .value_parser(value_parser!(OsString))
                        .required_unless_present("clear")
                        .help("An absolute path, or a name found on your PATH; ARGS are literal"),
                ),
        )
        .subcommand(credentials_command(side, job_arg()))
        .subcommand(
            Command::new("set-proxy")
                .about("Choose the job's proxy: your session's, none, or an override")
                .arg(job_arg())
                .arg(value("mode", "MODE", "session, none or override"))
                .arg(
                    Arg::new("list")
                        .value_name("PROXYLIST")
                        .help("With override: proxies (WinHTTP syntax, e.g. http=h:3128)"),
                )
                .arg(
                    Arg::new("bypass")
                        .long("bypass")
                        .value_name("LIST")
                        .help("With override: hosts reached directly (e.g. '<local>;*.corp')"),
                ),
        )
        .subcommand(
            Command::new("set-retry-delay")
                .about("Seconds to wait before retrying a transient error (at least 5)")
                .arg(job_arg())
                .arg(value("secs", "SECS", "Seconds")),
        )
        .subcommand(
            Command::new("set-no-progress-timeout")
                .about("Seconds of retries without progress before an error is final")
                .arg(job_arg())
                .arg(value(
                    "secs",
                    "SECS",
                    "Seconds (0: the first error is final)",
                )),
        )
        .subcommand(
            Command::new("set-redirect-policy")
                .about("What the job does with HTTP redirects")
                .arg(job_arg())
                .arg(value(
                    "policy",
                    "POLICY",
                    "allow, report (follow and record the final URL) or disallow",
                ))
                .arg(
                    Arg::new("allow-https-to-http")
                        .long("allow-https-to-http")
                        .action(ArgAction::SetTrue)
                        .help("Also follow redirects from https to http"),
                ),
        )
        .subcommand(
            Command::new("set-dynamic")
                .about("Accept content without range support (an interruption restarts it)")
                .arg(job_arg())
                .arg(value("on", "on|off", "on or off")),
        )
        .subcommand(
            Command::new("set-headers")
                .about("Replace the headers sent with every request (none: remove them)")
                .arg(job_arg())
                .arg(
                    Arg::new("headers")
                        .value_name("NAME: VALUE")
                        .num_args(0..)
                        .help("Headers, one argument each"),
                ),
        )
}

/// `set-credentials`: the client reads the secret; the service receives it in `--secret`.
fn credentials_command(side: Side, job_arg: Arg) -> Command {
    let cmd = Command::new("set-credentials")
        .about("Set or clear the job's credentials for the server or the proxy")
        .arg(job_arg)
        .arg(
            Arg::new("target")
                .long("target")
                .value_name("T")
                .required(true)
                .help("server or proxy"),
        )
        .arg(
            Arg::new("scheme")
                .long("scheme")
                .value_name("S")
                .required_unless_present("clear")
                .help("basic, digest, ntlm, negotiate or bearer"),
        )
        .arg(
            Arg::new("user")
                .long("user")
                .value_name("U")
                .help("User name (DOMAIN\\user for NTLM; none for bearer)"),
        )
        .arg(
            Arg::new("clear")
                .long("clear")
                .action(ArgAction::SetTrue)
                .conflicts_with_all(["scheme", "user"])
                .help("Remove the target's credentials"),
        );
    match side {
        Side::Client => cmd
            .arg(
                Arg::new("password-stdin")
                    .long("password-stdin")
                    .action(ArgAction::SetTrue)
                    .conflicts_with_all(["password-env", "clear"])
                    .help("Read the password or token from stdin (one trailing newline dropped)"),
            )
            .arg(
                Arg::new("password-env")
                    .long("password-env")
                    .value_name("VAR")
                    .conflicts_with("clear")
                    .help("Read the password or token from environment variable VAR"),
            ),
        Side::Service => cmd.arg(
            Arg::new("secret")
                .long("secret")
                .value_name("SECRET")
                .allow_hyphen_values(true)
                .conflicts_with("clear")
                .hide(true),
        ),
    }
}

/// The first line of a clap error, without clap's `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("bad arguments");
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// Parses `ferry job ARGS` for `side`: Ok(matches), or the reply to give instead (help text,
/// or a one-line usage error).
fn parse(side: Side, args: &[OsString]) -> Result<ArgMatches, Reply> {
    let argv = std::iter::once(OsString::from("ferry job")).chain(args.iter().cloned());
    match command(side).try_get_matches_from(argv) {
        Ok(m) => Ok(m),
        Err(e) if !e.use_stderr() => Err(Reply {
            code: 0,
            stdout: e.render().to_string().into_bytes(),
            stderr: Vec::new(),
        }),
        Err(e) => {
            let message = clap_message(&e);
            // Someone typed the service's secret option: say why it is refused, without
            // repeating what they typed.
            let message = if side == Side::Client && message.contains(SECRET_OPT) {
                "secrets are not accepted on the command line (other users can read a \
                 process's arguments): use --password-stdin or --password-env VAR"
                    .to_owned()
            } else {
                message
            };
            Err(Reply::failure(&usage(message)))
        }
    }
}

// ------------------------------------------------------------------------------------------
// Failures
// ------------------------------------------------------------------------------------------

/// A usage error (exit 2) pointing at `--help`.
fn usage(message: String) -> Failure {
    Failure {
        code: 2,
        message,
        hint: Some("try 'ferry job --help'"),
    }
}

/// A refused value (exit 2) with a specific hint.
fn bad(message: String, hint: &'static str) -> Failure {
    Failure {
        code: 2,
        message,
        hint: Some(hint),
    }
}

/// A refusal by the job model (exit 2); illegal verbs get [`illegal`]'s wording.
fn invalid(e: ValidationError) -> Failure {
    match e {
        ValidationError::Transition(t) => illegal(t),
        e => {
            let hint = validation_hint(&e);
            Failure {
                code: 2,
                message: e.to_string(),
                hint: Some(hint),
            }
        }
    }
}

/// An illegal verb: what was refused, in which state, and what that state allows.
fn illegal(t: IllegalTransition) -> Failure {
    // The crate's text starts "cannot VERB-PHRASE a job that is STATE: …"; keep that part and
    // list the commands (not the engine's events) that the state allows.
    let full = t.to_string();
    let head = format!("a job that is {}", t.state);
    let message = match full.find(&head) {
        Some(i) => full[..i + head.len()].to_owned(),
        None => full,
    };
    let verbs = caller_verbs(t.state);
    let message = if verbs.is_empty() {
        format!("{message} ({} is final: no command applies)", t.state)
    } else {
        format!("{message} (legal in {}: {})", t.state, verbs.join(", "))
    };
    Failure {
        code: 2,
        message,
        hint: Some(illegal_hint(t)),
    }
}

/// What to do instead of an illegal verb.
fn illegal_hint(t: IllegalTransition) -> &'static str {
    match (t.state, t.verb) {
        (s, _) if s.is_final() => {
            "a finished job accepts nothing; 'ferry job create' makes a new one"
        }
        (State::Transferred, _) => {
            "every file is transferred: 'ferry job complete JOB' keeps the files, \
             'ferry job cancel JOB' drops them"
        }
        (_, Verb::AddFile) => {
            "files are added only while the job is SUSPENDED: 'ferry job suspend JOB' first"
        }
        (_, Verb::SetRemoteName) => {
            "remote names change only while the job is SUSPENDED or in error: \
             'ferry job suspend JOB' first"
        }
        _ => "'ferry job info JOB' shows the job's state",
    }
}

/// Where to look after a refusal by the job model.
fn validation_hint(e: &ValidationError) -> &'static str {
    use ValidationError as E;
    match e {
        E::NoFiles => "'ferry job add JOB URL PATH' adds one",
        E::RemoteUrl { .. } => "URLs look like http://host[:port]/path or https://…",
        E::LocalPath { .. } | E::DuplicateLocalPath { .. } => {
            "each file of a job needs its own destination path"
        }
        E::Range { .. } | E::OverlappingRanges { .. } | E::TooManyRanges { .. } => {
            "ranges are OFFSET:LENGTH or OFFSET:eof, not overlapping"
        }
        E::RangesWithDynamicContent => "use ranges or 'set-dynamic JOB on', not both",
        E::Header { .. } | E::HeadersTooLarge => "see 'ferry job set-headers --help'",
        E::Notify { .. } => "see 'ferry job set-notify --help'",
        E::Credentials { .. } => "see 'ferry job set-credentials --help'",
        E::Proxy { .. } => "see 'ferry job set-proxy --help'",
        E::NoSuchFile { .. } => "'ferry job info JOB' lists the files with their indexes",
        _ => "try 'ferry job --help'",
    }
}

/// A store failure (exit 1).
fn store_err(e: StoreError) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
        hint: Some("the job store is $XDG_DATA_HOME/ferry/jobs.db; service.log beside the socket may say more"),
    }
}

/// No job of the caller's matches `spec` (exit 2).
fn not_found(spec: &str) -> Failure {
    Failure {
        code: 2,
        message: format!("no job '{}'", spec.escape_debug()),
        hint: Some("'ferry job list' shows your jobs"),
    }
}

/// The commands a caller may run in `s`, as typed (`add`, `set-*`), in the table's order.
fn caller_verbs(s: State) -> Vec<&'static str> {
    state::legal_verbs(s)
        .iter()
        .filter(|v| v.is_caller_verb())
        .map(|v| match v {
            Verb::AddFile => "add",
            Verb::SetProperty => "set-*",
            v => v.as_str(),
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The client
// ------------------------------------------------------------------------------------------

/// Writes a reply to this process's stdout and stderr; returns its exit code.
fn emit(reply: &Reply) -> u8 {
    // A closed stdout (`| head`) is the reader's choice, not an error of the command.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&reply.stdout);
    let _ = out.flush();
    let _ = std::io::stderr().write_all(&reply.stderr);
    reply.code
}

/// The client: `ferry job ARGS` → sends the request (cwd = current dir) to the service and
/// prints the reply; returns the exit code.
pub(crate) fn main(args: Vec<OsString>) -> u8 {
    let m = match parse(Side::Client, &args) {
        Ok(m) => m,
        Err(reply) => return emit(&reply),
    };
    let Some((sub, sm)) = m.subcommand() else {
        return emit(&Reply::failure(&usage("no job command given".into())));
    };
    if sub == "monitor" {
        return monitor(sm);
    }
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let mut read_stdin = || read_secret(&mut std::io::stdin().lock(), stdin_is_terminal);
    let env = |k: &str| std::env::var_os(k);
    let caller = Caller {
        env: &env,
        stdin: &mut read_stdin,
    };
    let (args, timeout) = match prepare(sub, sm, args, caller) {
        Ok(p) => p,
        Err(f) => return emit(&Reply::failure(&f)),
    };
    // An unknown working directory only matters to `add` with a relative path, which the
    // service then refuses with a clear message.
    let cwd = std::env::current_dir().unwrap_or_default();
    match ipc::call(&Request { cwd, args }, timeout) {
        Ok(reply) => emit(&reply),
        Err(f) => emit(&Reply::failure(&f)),
    }
}

/// What the client may read on the caller's behalf (injected so tests need no real stdin).
struct Caller<'a> {
    /// Looks an environment variable up.
    env: &'a dyn Fn(&str) -> Option<OsString>,
    /// Reads the secret for `--password-stdin`.
    stdin: &'a mut dyn FnMut() -> Result<String, Failure>,
}

/// Turns the typed arguments into the request's arguments and the reply timeout: the secret
/// and the notify program are filled in here; everything else goes as typed.
fn prepare(
    sub: &str,
    m: &ArgMatches,
    raw: Vec<OsString>,
    caller: Caller<'_>,
) -> Result<(Vec<OsString>, Duration), Failure> {
    match sub {
        "set-credentials" => {
            let mut out: Vec<OsString> = vec![
                "set-credentials".into(),
                format!("--target={}", arg(m, "target")).into(),
            ];
            if m.get_flag("clear") {
                out.push("--clear".into());
            } else {
                out.push(format!("--scheme={}", arg(m, "scheme")).into());
                if let Some(u) = m.get_one::<String>("user") {
                    out.push(format!("--user={u}").into());
                }
                let secret = match (
                    m.get_flag("password-stdin"),
                    m.get_one::<String>("password-env"),
                ) {
                    (true, None) => (caller.stdin)()?,
                    (false, Some(var)) => env_secret(caller.env, var)?,
                    _ => {
                        return Err(usage(
                            "set-credentials needs --password-stdin or --password-env VAR \
                             (or --clear)"
                                .into(),
                        ))
                    }
                };
                // An empty secret is almost always a pipe or variable that held nothing.
                if secret.is_empty() {
                    return Err(bad(
                        "the password or token is empty".into(),
                        "check what --password-stdin or --password-env reads",
                    ));
                }
                out.push(format!("{SECRET_OPT}={secret}").into());
            }
            out.push("--".into());
            out.push(arg(m, "job").into());
            Ok((out, CALL_TIMEOUT))
        }
        "set-notify" => {
            let mut out: Vec<OsString> = vec!["set-notify".into()];
            if m.get_flag("clear") {
                out.extend(["--clear".into(), "--".into(), arg(m, "job").into()]);
                return Ok((out, CALL_TIMEOUT));
            }
            let cmd: Vec<&OsString> = m
                .get_many::<OsString>("command")
                .into_iter()
                .flatten()
                .collect();
            let Some((program, args)) = cmd.split_first() else {
                return Err(usage("set-notify needs a PROGRAM (or --clear)".into()));
            };
            let program = resolve_program(program, (caller.env)("PATH").as_deref())?;
            out.extend(["--".into(), arg(m, "job").into(), program.into_os_string()]);
            out.extend(args.iter().map(|a| (*a).clone()));
            Ok((out, CALL_TIMEOUT))
        }
        "wait" => {
            let secs = wait_secs(m)?;
            Ok((raw, Duration::from_secs(secs) + WAIT_MARGIN))
        }
        _ => Ok((raw, CALL_TIMEOUT)),
    }
}

/// Reads a secret from `r`: at most [`MAX_SECRET_BYTES`], UTF-8, one trailing newline dropped.
/// Refuses a terminal, where typing would echo the secret.
fn read_secret(r: &mut dyn Read, is_terminal: bool) -> Result<String, Failure> {
    if is_terminal {
        return Err(bad(
            "--password-stdin reads a pipe, not a terminal (typing would show the secret)".into(),
            "pipe it in: 'printf %s \"$TOKEN\" | ferry job set-credentials …', or use --password-env VAR",
        ));
    }
    let mut buf = Vec::new();
    r.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure {
            code: 26,
            message: format!("cannot read the secret from stdin: {e}"),
            hint: Some("pipe the secret in, or use --password-env VAR"),
        })?;
    if buf.len() > MAX_SECRET_BYTES {
        return Err(bad(
            format!("the secret on stdin is longer than {MAX_SECRET_BYTES} bytes"),
            "pass the password or token itself, not a file",
        ));
    }
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    String::from_utf8(buf).map_err(|_| {
        bad(
            "the secret on stdin is not UTF-8".into(),
            "credentials are text; check the encoding",
        )
    })
}

/// The secret in the caller's environment variable `var`.
fn env_secret(env: &dyn Fn(&str) -> Option<OsString>, var: &str) -> Result<String, Failure> {
    let value = env(var).ok_or_else(|| {
        bad(
            format!("environment variable '{}' is not set", var.escape_debug()),
            "export it first, or use --password-stdin",
        )
    })?;
    value.into_string().map_err(|_| {
        bad(
            format!("environment variable '{}' is not UTF-8", var.escape_debug()),
            "credentials are text; check the encoding",
        )
    })
}

/// The notify program as the service must run it: an absolute path as given, or a bare name
/// looked up on the caller's `PATH` (absolute entries only; BITS requires a full path).
fn resolve_program(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Failure> {
    let p = Path::new(program);
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    let shown = p.display().to_string();
    if program.is_empty() || program.as_bytes().contains(&b'/') {
        return Err(bad(
            format!(
                "notify program '{}' is not an absolute path",
                shown.escape_debug()
            ),
            "give its absolute path (e.g. \"$PWD/notify.sh\"), or a bare name found on your PATH",
        ));
    }
    let is_exec = |c: &Path| {
        std::fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    path.into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(p))
        .find(|c| is_exec(c))
        .ok_or_else(|| {
            bad(
                format!(
                    "notify program '{}' is not on your PATH",
                    shown.escape_debug()
                ),
                "give its absolute path",
            )
        })
}

/// `monitor`: the `list` table every `--refresh` seconds, `--count` times (or until
/// interrupted); the screen is cleared only on a terminal, so scripts get one table after
/// another, separated by an empty line.
fn monitor(m: &ArgMatches) -> u8 {
    let settings = refresh_secs(m).and_then(|r| Ok((r, count(m)?)));
    let (refresh, count) = match settings {
        Ok(s) => s,
        Err(f) => return emit(&Reply::failure(&f)),
    };
    let tty = std::io::stdout().is_terminal();
    let req = Request {
        cwd: std::env::current_dir().unwrap_or_default(),
        args: vec!["list".into()],
    };
    let mut shown: u64 = 0;
    loop {
        let reply = match ipc::call(&req, CALL_TIMEOUT) {
            Ok(r) if r.code == 0 => r,
            Ok(r) => return emit(&r),
            Err(f) => return emit(&Reply::failure(&f)),
        };
        let mut screen = Vec::new();
        if tty {
            screen.extend_from_slice(b"\x1b[H\x1b[2J");
            let _ = writeln!(
                screen,
                "ferry job monitor: every {refresh} s (Ctrl-C stops)\n"
            );
        } else if shown > 0 {
            screen.push(b'\n');
        }
        screen.extend_from_slice(&reply.stdout);
        let mut out = std::io::stdout().lock();
        if out.write_all(&screen).and_then(|()| out.flush()).is_err() {
            // The reader went away (`| head`): nothing more to show.
            return 0;
        }
        drop(out);
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return 0;
        }
        std::thread::sleep(Duration::from_secs_f64(refresh));
    }
}

/// `monitor --refresh`: seconds between refreshes (default 1).
fn refresh_secs(m: &ArgMatches) -> Result<f64, Failure> {
    let Some(text) = m.get_one::<String>("refresh") else {
        return Ok(1.0);
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| (MIN_REFRESH_SECS..=MAX_REFRESH_SECS).contains(s))
        .ok_or_else(|| {
            usage(format!(
                "--refresh '{}': expected seconds from {MIN_REFRESH_SECS} to {MAX_REFRESH_SECS}",
                text.escape_debug()
            ))
        })
}

/// `monitor --count`: how many refreshes (None: until interrupted).
fn count(m: &ArgMatches) -> Result<Option<u64>, Failure> {
    let Some(text) = m.get_one::<String>("count") else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(usage(format!(
            "--count '{}': expected a whole number of refreshes, at least 1",
            text.escape_debug()
        ))),
    }
}

/// `wait --timeout`: seconds (default [`DEFAULT_WAIT_SECS`], at most [`MAX_WAIT_SECS`]).
fn wait_secs(m: &ArgMatches) -> Result<u64, Failure> {
    let Some(text) = m.get_one::<String>("timeout") else {
        return Ok(DEFAULT_WAIT_SECS);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if n <= MAX_WAIT_SECS => Ok(n),
        _ => Err(usage(format!(
            "--timeout '{}': expected whole seconds from 0 to {MAX_WAIT_SECS}",
            text.escape_debug()
        ))),
    }
}

// ------------------------------------------------------------------------------------------
// The service side
// ------------------------------------------------------------------------------------------

/// What a command prints.
#[derive(Debug, Default)]
struct Out {
    /// For the caller's stdout.
    stdout: String,
    /// For the caller's stderr (notes; failures go through [`Failure`]).
    stderr: String,
}

impl Out {
    /// One line on stdout.
    fn line(s: impl std::fmt::Display) -> Out {
        Out {
            stdout: format!("{s}\n"),
            stderr: String::new(),
        }
    }

    /// Adds a note on stderr.
    fn note(mut self, s: impl std::fmt::Display) -> Out {
        let _ = writeln!(self.stderr, "ferry: note: {s}");
        self
    }
}

/// Runs one `ferry job` command inside the service; never panics on any input.
pub(crate) fn execute(ctx: &Ctx<'_>, req: Request) -> Reply {
    let secret = secret_in(&req.args);
    // Handlers are written not to panic; this keeps a bug from taking the connection (and
    // the service's request thread) down without an answer.
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(ctx, &req)))
        .unwrap_or_else(|_| {
            Reply::failure(&Failure {
                code: 1,
                message: "internal error while running the job command".into(),
                hint: Some("this is a bug; the service log has the details"),
            })
        });
    match secret {
        Some(s) => scrub(reply, &s),
        None => reply,
    }
}

/// Parses and runs one request (the part of [`execute`] that may not panic but could).
fn serve(ctx: &Ctx<'_>, req: &Request) -> Reply {
    let m = match parse(Side::Service, &req.args) {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    match run(ctx, &req.cwd, &m) {
        Ok(out) => Reply {
            code: 0,
            stdout: out.stdout.into_bytes(),
            stderr: out.stderr.into_bytes(),
        },
        Err(f) => Reply::failure(&f),
    }
}

/// The secret a request carries (`--secret=S` or `--secret S`), to keep out of the reply.
fn secret_in(args: &[OsString]) -> Option<Vec<u8>> {
    let prefix = format!("{SECRET_OPT}=");
    let mut it = args.iter().map(|a| a.as_bytes());
    while let Some(a) = it.next() {
        if a == SECRET_OPT.as_bytes() {
            return it.next().map(<[u8]>::to_vec).filter(|s| !s.is_empty());
        }
        if let Some(s) = a.strip_prefix(prefix.as_bytes()) {
            return Some(s.to_vec()).filter(|s| !s.is_empty());
        }
    }
    None
}

/// Replaces every occurrence of `secret` in the reply's text with `***`.
fn scrub(mut r: Reply, secret: &[u8]) -> Reply {
    r.stdout = replace_bytes(&r.stdout, secret, b"***");
    r.stderr = replace_bytes(&r.stderr, secret, b"***");
    r
}

/// `hay` with every `needle` replaced by `with`.
fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || hay.len() < needle.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Wall-clock seconds since the Unix epoch (the job model's clock).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The store, locked.
fn lock<'a>(ctx: &Ctx<'a>) -> MutexGuard<'a, Store> {
    // A handler that panicked while holding the lock left no half-written job: every store
    // write is one SQLite transaction.
    ctx.store.lock().unwrap_or_else(|p| p.into_inner())
}

/// The string value of `name`, empty when absent (or not an argument of this command).
fn arg(m: &ArgMatches, name: &str) -> String {
    m.try_get_one::<String>(name)
        .ok()
        .flatten()
        .cloned()
        .unwrap_or_default()
}

/// The caller's job named by `spec`: an id, else a unique display name. Other users' jobs
/// are "not found", never "not yours".
fn find(store: &Store, uid: u32, spec: &str) -> Result<Job, Failure> {
    if let Ok(id) = spec.parse::<JobId>() {
        return reload(store, uid, id).map_err(|f| if f.code == 2 { not_found(spec) } else { f });
    }
    let mut hits: Vec<Job> = store
        .list_jobs(Some(uid))
        .map_err(store_err)?
        .into_iter()
        .filter(|j| j.display_name() == spec)
        .collect();
    match hits.len() {
        0 => Err(not_found(spec)),
        1 => Ok(hits.remove(0)),
        n => Err(bad(
            format!("{n} jobs are named '{}'", spec.escape_debug()),
            "use the job id ('ferry job list' shows them)",
        )),
    }
}

/// The caller's job `id`, read again from the store.
fn reload(store: &Store, uid: u32, id: JobId) -> Result<Job, Failure> {
    match store.load_job(&id) {
        Ok(j) if j.owner_uid() == uid => Ok(j),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(not_found(&id.to_string())),
        Err(e) => Err(store_err(e)),
    }
}

/// Loads the job, lets `f` change it, saves it and tells the queue, all under the store lock
/// (for changes that need no worker stopped).
fn edit(
    ctx: &Ctx<'_>,
    spec: &str,
    f: impl FnOnce(&mut Job, u64) -> Result<Out, Failure>,
) -> Result<Out, Failure> {
    let mut store = lock(ctx);
    let mut job = find(&store, ctx.uid, spec)?;
    let out = f(&mut job, now())?;
    store.update_job(&job).map_err(store_err)?;
    drop(store);
    ctx.queue.changed();
    Ok(out)
}

/// As [`edit`], for `verb`s that touch a running job's files: the job is looked up and the
/// verb checked, its worker quiesced with the store unlocked (workers lock it to record
/// progress), and then the job is reloaded, changed by `f` and saved.
fn edit_quiesced(
    ctx: &Ctx<'_>,
    spec: &str,
    verb: Verb,
    f: impl FnOnce(&mut Job, u64) -> Result<Out, Failure>,
) -> Result<Out, Failure> {
    let id = {
        let store = lock(ctx);
        let job = find(&store, ctx.uid, spec)?;
        // Refuse before stopping anything: an illegal verb must not disturb a running job.
        state::apply(job.state(), verb).map_err(illegal)?;
        job.id()
    };
    ctx.queue.quiesce(id);
    let result = (|| {
        let mut store = lock(ctx);
        let mut job = reload(&store, ctx.uid, id)?;
        let out = f(&mut job, now())?;
        store.update_job(&job).map_err(store_err)?;
        Ok(out)
    })();
    // Also after a failure: the worker was stopped and the queue must decide again.
    ctx.queue.changed();
    result
}

/// Dispatches one parsed command.
fn run(ctx: &Ctx<'_>, cwd: &Path, m: &ArgMatches) -> Result<Out, Failure> {
    let Some((sub, m)) = m.subcommand() else {
        return Err(usage("no job command given".into()));
    };
    let spec = arg(m, "job");
    let spec = spec.as_str();
    match sub {
        "create" => create(ctx, m),
        "list" => list(ctx, m),
        "info" => info(ctx, spec, m),
        "add" => add(ctx, cwd, spec, m),
        "wait" => wait(ctx, spec, Duration::from_secs(wait_secs(m)?)),
        "monitor" => Err(usage(
            "monitor runs in 'ferry job', not in the service".into(),
        )),
        "resume" => edit(ctx, spec, |job, now| {
            job.apply(Verb::Resume, now).map_err(invalid)?;
            Ok(Out::default())
        }),
        "suspend" => edit_quiesced(ctx, spec, Verb::Suspend, |job, now| {
            job.apply(Verb::Suspend, now).map_err(invalid)?;
            Ok(Out::default())
        }),
        "cancel" => edit_quiesced(ctx, spec, Verb::Cancel, cancel),
        "complete" => edit_quiesced(ctx, spec, Verb::Complete, complete),
        "set-remote-name" => {
            let text = arg(m, "file");
            let index: usize = text.trim().parse().map_err(|_| {
                usage(format!(
                    "FILE '{}' is not a file index",
                    text.escape_debug()
                ))
            })?;
            let url = parse_url(&arg(m, "url"))?;
            edit_quiesced(ctx, spec, Verb::SetRemoteName, |job, now| {
                job.set_remote_name(index, url, now).map_err(invalid)?;
                Ok(Out::default())
            })
        }
        _ => set(ctx, spec, sub, m),
    }
}

/// The `set-*` commands that change a property without stopping the job.
fn set(ctx: &Ctx<'_>, spec: &str, sub: &str, m: &ArgMatches) -> Result<Out, Failure> {
    let done = |r: Result<(), ValidationError>| r.map(|()| Out::default()).map_err(invalid);
    match sub {
        "set-name" => {
            let name = arg(m, "name");
            edit(ctx, spec, |job, now| done(job.set_display_name(name, now)))
        }
        "set-priority" => {
            let p: Priority = arg(m, "priority").parse().map_err(invalid)?;
            edit(ctx, spec, |job, now| done(job.set_priority(p, now)))
        }
        "set-limit" => {
            let rate = parse_limit(&arg(m, "rate"))?;
            edit(ctx, spec, |job, now| done(job.set_rate_limit(rate, now)))
        }
        "set-notify" => {
            let cmd = notify_command(m)?;
            edit(ctx, spec, |job, now| done(job.set_notify(cmd, now)))
        }
        "set-credentials" => {
            let target: CredentialTarget = arg(m, "target").parse().map_err(invalid)?;
            if m.get_flag("clear") {
                return edit(ctx, spec, |job, now| {
                    done(job.remove_credentials(target, now))
                });
            }
            let creds = credentials(target, m)?;
            edit(ctx, spec, |job, now| done(job.set_credentials(creds, now)))
        }
        "set-proxy" => {
            let choice = proxy_choice(m)?;
            edit(ctx, spec, |job, now| done(job.set_proxy(choice, now)))
        }
        "set-retry-delay" => {
            let secs = parse_secs(&arg(m, "secs"))?;
            edit(ctx, spec, |job, now| {
                let set = job.set_min_retry_delay_secs(secs, now).map_err(invalid)?;
                let out = Out::default();
                Ok(if set != secs {
                    out.note(format!("the retry delay is {set} s, the minimum"))
                } else {
                    out
                })
            })
        }
        "set-no-progress-timeout" => {
            let secs = parse_secs(&arg(m, "secs"))?;
            edit(ctx, spec, |job, now| {
                done(job.set_no_progress_timeout_secs(secs, now))
            })
        }
        "set-redirect-policy" => {
            let policy = parse_redirect_policy(&arg(m, "policy"))?;
            let downgrade = m.get_flag("allow-https-to-http");
            edit(ctx, spec, |job, now| {
                done(job.set_redirect_policy(policy, downgrade, now))
            })
        }
        "set-dynamic" => {
            let on = parse_on_off(&arg(m, "on"))?;
            edit(ctx, spec, |job, now| done(job.set_dynamic_content(on, now)))
        }
        "set-headers" => {
            let headers = m
                .get_many::<String>("headers")
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, h)| parse_header(i, h))
                .collect::<Result<Vec<_>, _>>()?;
            edit(ctx, spec, |job, now| {
                done(job.set_custom_headers(headers, now))
            })
        }
        other => Err(usage(format!(
            "unknown job command '{}'",
            other.escape_debug()
        ))),
    }
}

/// `create NAME [--priority P]`: a new suspended job; prints its id.
fn create(ctx: &Ctx<'_>, m: &ArgMatches) -> Result<Out, Failure> {
    let id = JobId::random().map_err(|e| Failure {
        code: 1,
        message: format!("cannot make a job id (reading /dev/urandom): {e}"),
        hint: Some("the service needs /dev/urandom"),
    })?;
    let now = now();
    let mut job = Job::new(id, ctx.uid, arg(m, "name"), now).map_err(invalid)?;
    if let Some(p) = m.get_one::<String>("priority") {
        let p: Priority = p.parse().map_err(invalid)?;
        job.set_priority(p, now).map_err(invalid)?;
    }
    lock(ctx).insert_job(&job).map_err(store_err)?;
    ctx.queue.changed();
    Ok(Out::line(id))
}

/// `list [--json]`: the caller's jobs, oldest first.
fn list(ctx: &Ctx<'_>, m: &ArgMatches) -> Result<Out, Failure> {
    let jobs = lock(ctx).list_jobs(Some(ctx.uid)).map_err(store_err)?;
    if m.get_flag("json") {
        let items: Vec<String> = jobs.iter().map(|j| job_json(j, false)).collect();
        Ok(Out::line(format!("[{}]", items.join(","))))
    } else {
        Ok(Out {
            stdout: table(&jobs),
            stderr: String::new(),
        })
    }
}

/// `info JOB [--verbose] [--json]`.
fn info(ctx: &Ctx<'_>, spec: &str, m: &ArgMatches) -> Result<Out, Failure> {
    let job = find(&lock(ctx), ctx.uid, spec)?;
    let verbose = m.get_flag("verbose");
    Ok(if m.get_flag("json") {
        Out::line(job_json(&job, verbose))
    } else {
        Out {
            stdout: info_text(&job, verbose, now()),
            stderr: String::new(),
        }
    })
}

/// `add JOB URL PATH [--range OFF:LEN]…`: prints the new file's index.
fn add(ctx: &Ctx<'_>, cwd: &Path, spec: &str, m: &ArgMatches) -> Result<Out, Failure> {
    let url = parse_url(&arg(m, "url"))?;
    let path = m.get_one::<PathBuf>("path").cloned().unwrap_or_default();
    let dest = destination(cwd, &path)?;
    let ranges = m
        .get_many::<String>("range")
        .into_iter()
        .flatten()
        .map(|r| r.parse::<ByteRange>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let file = FileSpec::with_ranges(url, dest, ranges).map_err(invalid)?;
    edit(ctx, spec, |job, now| {
        let index = job.add_file(file, now).map_err(invalid)?;
        Ok(Out::line(index))
    })
}

/// `cancel`: the state first (so an illegal cancel touches nothing), then the temporary files.
fn cancel(job: &mut Job, now: u64) -> Result<Out, Failure> {
    job.apply(Verb::Cancel, now).map_err(invalid)?;
    files::cancel(job);
    Ok(Out::default())
}

/// `complete`: finished files are renamed into place before the job is recorded as
/// acknowledged, so an interrupted `complete` can run again.
fn complete(job: &mut Job, now: u64) -> Result<Out, Failure> {
    job.apply(Verb::Complete, now).map_err(invalid)?;
    files::complete(job).map_err(|e| Failure {
        code: 23,
        message: format!("cannot move the files of job {} into place: {e}", job.id()),
        hint: Some("fix the cause and run 'ferry job complete JOB' again (it is safe to repeat)"),
    })?;
    let dropped = job.files().iter().filter(|f| !f.completed).count();
    let out = Out::default();
    Ok(if dropped > 0 {
        out.note(format!(
            "{dropped} file(s) were not finished; their partial data is discarded"
        ))
    } else {
        out
    })
}

/// `wait`: polls the job every [`WAIT_POLL`] (never holding the store lock while asleep)
/// until it is transferred, acknowledged, in error or cancelled, or `limit` passes.
fn wait(ctx: &Ctx<'_>, spec: &str, limit: Duration) -> Result<Out, Failure> {
    let id = find(&lock(ctx), ctx.uid, spec)?.id();
    let deadline = Instant::now() + limit;
    loop {
        let job = reload(&lock(ctx), ctx.uid, id)?;
        match job.state() {
            State::Transferred | State::Acknowledged => {
                return Ok(Out::line(format!("{id} {}", job.state())))
            }
            State::Error => {
                let error = job
                    .last_error()
                    .map_or_else(|| "no error recorded".to_owned(), |e| e.to_string());
                return Err(Failure {
                    code: if job.last_error().is_some_and(|e| e.status.is_some()) {
                        22
                    } else {
                        1
                    },
                    message: format!("job {id} is ERROR: {error}"),
                    hint: Some(
                        "'ferry job info JOB' shows the details; 'ferry job resume JOB' tries again",
                    ),
                });
            }
            State::Cancelled => {
                return Err(Failure {
                    code: 1,
                    message: format!("job {id} was cancelled"),
                    hint: Some("its files were discarded; 'ferry job create' starts again"),
                })
            }
            // Nothing moves a suspended job: waiting would only run into the timeout.
            State::Suspended => {
                return Err(bad(
                    format!("job {id} is SUSPENDED, so it will not transfer"),
                    "'ferry job resume JOB' first",
                ))
            }
            _ => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let error = job
                .last_error()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(Failure {
                code: 28,
                message: format!(
                    "job {id} is still {} after {} s{error}",
                    job.state(),
                    limit.as_secs()
                ),
                hint: Some("'ferry job wait JOB --timeout SECS' waits longer"),
            });
        }
        std::thread::sleep(left.min(WAIT_POLL));
    }
}

// ------------------------------------------------------------------------------------------
// Values
// ------------------------------------------------------------------------------------------

/// An absolute URL (exit 3 otherwise, as curl).
fn parse_url(text: &str) -> Result<ferry::Url, Failure> {
    ferry::Url::parse(text).map_err(|_| Failure {
        code: 3,
        message: format!(
            "bad URL: '{}' is not a valid absolute URL",
            text.escape_debug()
        ),
        hint: Some("URLs look like http://host[:port]/path or https://…"),
    })
}

/// The absolute destination: `path` as given, or joined to the caller's directory. Its
/// directory must exist and it must not be a directory itself (found now, not at transfer).
fn destination(cwd: &Path, path: &Path) -> Result<PathBuf, Failure> {
    let dest = if path.is_absolute() {
        path.to_owned()
    } else if cwd.is_absolute() {
        cwd.join(path)
    } else {
        return Err(bad(
            format!(
                "cannot resolve '{}': the caller's working directory is unknown",
                path.display()
            ),
            "give an absolute PATH",
        ));
    };
    if dest.is_dir() {
        return Err(bad(
            format!("'{}' is a directory", dest.display()),
            "PATH names the file to write, e.g. dir/name.iso",
        ));
    }
    match dest.parent() {
        Some(dir) if dir.is_dir() => Ok(dest),
        Some(dir) => Err(bad(
            format!("directory '{}' does not exist", dir.display()),
            "create it first (mkdir -p)",
        )),
        None => Err(bad(
            format!("'{}' names no file", dest.display()),
            "PATH names the file to write, e.g. dir/name.iso",
        )),
    }
}

/// `RATE|none` as curl's `--limit-rate` (`500k`, `2M`; 1024-based); `none` and 0 lift the cap.
fn parse_limit(text: &str) -> Result<Option<u64>, Failure> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match throttle::parse_rate(text) {
        Some(0) => Ok(None),
        Some(r) => Ok(Some(r)),
        None => Err(usage(format!(
            "bad rate '{}': expected bytes per second with an optional k, M or G suffix \
             (500k, 2M), or none",
            text.escape_debug()
        ))),
    }
}

/// Whole seconds.
fn parse_secs(text: &str) -> Result<u64, Failure> {
    text.trim().parse::<u64>().map_err(|_| {
        usage(format!(
            "bad duration '{}': expected whole seconds",
            text.escape_debug()
        ))
    })
}

/// `on` or `off` (also true/false, yes/no).
fn parse_on_off(text: &str) -> Result<bool, Failure> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(usage(format!(
            "bad switch '{}': expected on or off",
            text.escape_debug()
        ))),
    }
}

/// `allow`, `report` (also `allow-report`) or `disallow`.
fn parse_redirect_policy(text: &str) -> Result<RedirectPolicy, Failure> {
    if text.trim().eq_ignore_ascii_case("report") {
        return Ok(RedirectPolicy::AllowReport);
    }
    text.parse::<RedirectPolicy>().map_err(|_| {
        usage(format!(
            "bad redirect policy '{}': expected allow, report or disallow",
            text.escape_debug()
        ))
    })
}

/// `NAME: VALUE` (optional whitespace after the colon is not part of the value).
fn parse_header(index: usize, text: &str) -> Result<(String, String), Failure> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(usage(format!(
            "bad header #{index} '{}': expected NAME: VALUE",
            text.escape_debug()
        )));
    };
    Ok((
        name.to_owned(),
        value.trim_start_matches([' ', '\t']).to_owned(),
    ))
}

/// `set-notify`'s command (None for `--clear`); the program must already be absolute.
fn notify_command(m: &ArgMatches) -> Result<Option<NotifyCommand>, Failure> {
    if m.get_flag("clear") {
        return Ok(None);
    }
    let mut cmd = m.get_many::<OsString>("command").into_iter().flatten();
    let program = PathBuf::from(cmd.next().cloned().unwrap_or_default());
    let args = cmd
        .map(|a| {
            a.to_str().map(str::to_owned).ok_or_else(|| {
                bad(
                    "a notify argument is not UTF-8".into(),
                    "pass text arguments",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    NotifyCommand::new(program, args).map(Some).map_err(invalid)
}

/// `set-credentials`' credentials, the secret taken from `--secret`.
fn credentials(target: CredentialTarget, m: &ArgMatches) -> Result<JobCredentials, Failure> {
    let scheme: AuthScheme = arg(m, "scheme").parse().map_err(invalid)?;
    // The model accepts it, but no proxy takes a bearer token: refuse now, not at transfer.
    if target == CredentialTarget::Proxy && scheme == AuthScheme::Bearer {
        return Err(bad(
            "a bearer token cannot authenticate to a proxy".into(),
            "use --scheme basic, digest or ntlm with --target proxy",
        ));
    }
    let Some(secret) = m.get_one::<String>("secret") else {
        return Err(usage(
            "set-credentials needs --password-stdin or --password-env VAR (or --clear)".into(),
        ));
    };
    JobCredentials::new(target, scheme, arg(m, "user"), Secret::new(secret.clone()))
        .map_err(invalid)
}

/// `set-proxy MODE [PROXYLIST] [--bypass LIST]`.
fn proxy_choice(m: &ArgMatches) -> Result<ProxyChoice, Failure> {
    let mode = arg(m, "mode");
    let list = m.get_one::<String>("list");
    let bypass = m.get_one::<String>("bypass");
    match mode.trim().to_ascii_lowercase().as_str() {
        "session" | "none" if list.is_some() || bypass.is_some() => Err(usage(format!(
            "set-proxy {mode} takes no PROXYLIST or --bypass (only override does)"
        ))),
        "session" => Ok(ProxyChoice::Session),
        "none" => Ok(ProxyChoice::None),
        "override" => match list {
            Some(proxy) => Ok(ProxyChoice::Override {
                proxy: proxy.clone(),
                bypass: bypass.cloned().unwrap_or_default(),
            }),
            None => Err(usage("set-proxy override needs a PROXYLIST".into())),
        },
        _ => Err(usage(format!(
            "bad proxy mode '{}': expected session, none or override",
            mode.escape_debug()
        ))),
    }
}

// ------------------------------------------------------------------------------------------
// Output
// ------------------------------------------------------------------------------------------

/// A number, or `?` when unknown.
fn opt_u64(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// Rows of cells as an aligned table (two spaces between columns, no trailing blanks).
fn align(rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = Vec::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            let n = c.chars().count();
            match width.get_mut(i) {
                Some(w) => *w = (*w).max(n),
                None => width.push(n),
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(&width).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{c:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The aligned table of `list` (and `monitor`).
fn table(jobs: &[Job]) -> String {
    let mut rows = vec![["ID", "NAME", "STATE", "PRIORITY", "FILES", "BYTES"]
        .map(str::to_owned)
        .to_vec()];
    for j in jobs {
        let p = j.progress();
        rows.push(vec![
            j.id().to_string(),
            j.display_name().to_owned(),
            j.state().to_string(),
            j.priority().to_string(),
            format!("{}/{}", p.files_done, p.files_total),
            format!("{}/{}", p.bytes_done, opt_u64(p.bytes_total)),
        ]);
    }
    align(&rows)
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, proleptic Gregorian).
fn utc(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A time with how far it is from `now`.
fn when(t: u64, now: u64) -> String {
    if t >= now {
        format!("{} (in {} s)", utc(t), t - now)
    } else {
        format!("{} ({} s ago)", utc(t), now - t)
    }
}

/// A notify argument as a shell would need it typed (for reading, never for running).
fn quoted(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}

/// True for header names whose values are likely credentials; `info` shows them as `***`.
fn sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth", "cookie", "token", "key", "secret", "pass", "session",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A custom header's value as `info` shows it.
fn header_value(name: &str, value: &str) -> String {
    if sensitive_header(name) {
        "***".to_owned()
    } else {
        value.to_owned()
    }
}

/// Credentials without their secret: target, scheme, user.
fn credentials_text(c: &JobCredentials) -> String {
    if c.user.is_empty() {
        format!("{} {}", c.target, c.scheme)
    } else {
        format!("{} {} user {}", c.target, c.scheme, quoted(&c.user))
    }
}

/// The proxy choice, for people.
fn proxy_text(p: &ProxyChoice) -> String {
    match p {
        ProxyChoice::Session => "session (your proxy settings)".to_owned(),
        ProxyChoice::None => "none (direct)".to_owned(),
        ProxyChoice::Override { proxy, bypass } if bypass.is_empty() => {
            format!("override {}", quoted(proxy))
        }
        ProxyChoice::Override { proxy, bypass } => {
            format!("override {} bypass {}", quoted(proxy), quoted(bypass))
        }
    }
}

/// A rate cap, for people.
fn rate_text(r: Option<u64>) -> String {
    match r {
        None => "none".to_owned(),
        Some(r) if r >= 1 << 20 && r % (1 << 10) == 0 => {
            format!("{r} B/s ({:.1} MiB/s)", r as f64 / f64::from(1 << 20))
        }
        Some(r) if r >= 1 << 10 => format!("{r} B/s ({:.1} KiB/s)", r as f64 / 1024.0),
        Some(r) => format!("{r} B/s"),
    }
}

/// `info`'s text: one `label: value` row each, aligned.
fn info_text(j: &Job, verbose: bool, now: u64) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |label: &str, value: String| rows.push((format!("{label}:"), value));
    let p = j.progress();
    row("id", j.id().to_string());
    row("name", j.display_name().to_owned());
    row("state", j.state().to_string());
    row("priority", j.priority().to_string());
    row("files", format!("{}/{}", p.files_done, p.files_total));
    row(
        "bytes",
        format!("{}/{}", p.bytes_done, opt_u64(p.bytes_total)),
    );
    let verbs = caller_verbs(j.state());
    row(
        "commands",
        if verbs.is_empty() {
            "none (final)".to_owned()
        } else {
            verbs.join(", ")
        },
    );
    row(
        "error",
        j.last_error()
            .map_or_else(|| "none".to_owned(), |e| e.to_string()),
    );
    if verbose {
        row("owner", format!("uid {}", j.owner_uid()));
        row("created", utc(j.created()));
        row("modified", utc(j.modified()));
        row(
            "completed",
            j.completed().map_or_else(|| "-".to_owned(), utc),
        );
        row("retry delay", format!("{} s", j.min_retry_delay_secs()));
        row(
            "retry at",
            j.retry_at()
                .map_or_else(|| "-".to_owned(), |t| when(t, now)),
        );
        row(
            "no-progress timeout",
            format!("{} s", j.no_progress_timeout_secs()),
        );
        row(
            "gives up at",
            j.no_progress_deadline()
                .map_or_else(|| "-".to_owned(), |t| when(t, now)),
        );
        row(
            "notify",
            j.notify().map_or_else(
                || "none".to_owned(),
                |n| {
                    std::iter::once(quoted(&n.program.to_string_lossy()))
                        .chain(n.args.iter().map(|a| quoted(a)))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            ),
        );
        let creds: Vec<String> = [CredentialTarget::Server, CredentialTarget::Proxy]
            .into_iter()
            .filter_map(|t| j.credentials(t).map(credentials_text))
            .collect();
        row(
            "credentials",
            if creds.is_empty() {
                "none".to_owned()
            } else {
                creds.join("; ")
            },
        );
        row("proxy", proxy_text(j.proxy()));
        row(
            "redirects",
            format!(
                "{} (https to http {})",
                j.redirect_policy(),
                if j.allow_https_to_http() {
                    "allowed"
                } else {
                    "refused"
                }
            ),
        );
        row(
            "dynamic",
            if j.dynamic_content() { "on" } else { "off" }.to_owned(),
        );
        row("rate limit", rate_text(j.rate_limit()));
        if j.custom_headers().is_empty() {
            row("headers", "none".to_owned());
        }
        for (name, value) in j.custom_headers() {
            row("header", format!("{name}: {}", header_value(name, value)));
        }
    }
    for (i, f) in j.files().iter().enumerate() {
        let status = if f.completed { "done" } else { "pending" };
        row(
            &format!("file {i}"),
            format!(
                "{status} {}/{} {} -> {}",
                f.bytes_done,
                opt_u64(f.bytes_total),
                f.remote(),
                f.local().display()
            ),
        );
        if !f.ranges().is_empty() {
            let r: Vec<String> = f.ranges().iter().map(|r| r.to_string()).collect();
            row("  ranges", r.join(" "));
        }
        if verbose {
            row("  temp", files::staged(f.local()).display().to_string());
            if let Some(v) = &f.validator {
                row(
                    "  validator",
                    format!(
                        "etag {} last-modified {} length {}",
                        v.etag.as_deref().unwrap_or("-"),
                        v.last_modified.as_deref().unwrap_or("-"),
                        opt_u64(v.length)
                    ),
                );
            }
        }
    }
    let width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut o = String::new();
    for (label, value) in rows {
        let _ = writeln!(o, "{label:<width$} {value}");
    }
    o
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON number or `null`.
fn jn(v: Option<u64>) -> String {
    v.map_or_else(|| "null".to_owned(), |n| n.to_string())
}

/// A JSON value already rendered, or `null`.
fn jo(v: Option<String>) -> String {
    v.unwrap_or_else(|| "null".to_owned())
}

/// A job as one JSON object; `verbose` adds the settings, validators and timers. Secrets are
/// never part of it.
fn job_json(j: &Job, verbose: bool) -> String {
    let p = j.progress();
    let verbs: Vec<String> = state::legal_verbs(j.state())
        .iter()
        .filter(|v| v.is_caller_verb())
        .map(|v| js(v.as_str()))
        .collect();
    let files: Vec<String> = j
        .files()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let ranges: Vec<String> = f.ranges().iter().map(|r| js(&r.to_string())).collect();
            let mut s = format!(
                "{{\"index\":{i},\"url\":{},\"path\":{},\"ranges\":[{}],\"bytes_done\":{},\
                 \"bytes_total\":{},\"completed\":{}",
                js(f.remote().as_str()),
                js(&f.local().to_string_lossy()),
                ranges.join(","),
                f.bytes_done,
                jn(f.bytes_total),
                f.completed
            );
            if verbose {
                let v = f.validator.as_ref().map(|v| {
                    format!(
                        "{{\"etag\":{},\"last_modified\":{},\"length\":{}}}",
                        jo(v.etag.as_deref().map(js)),
                        jo(v.last_modified.as_deref().map(js)),
                        jn(v.length)
                    )
                });
                let _ = write!(
                    s,
                    ",\"temp\":{},\"validator\":{}",
                    js(&files::staged(f.local()).to_string_lossy()),
                    jo(v)
                );
            }
            s.push('}');
            s
        })
        .collect();
    let error = jo(j.last_error().map(|e| {
        format!(
            "{{\"status\":{},\"message\":{},\"transient\":{}}}",
            jn(e.status.map(u64::from)),
            js(&e.message),
            e.transient
        )
    }));
    let mut s = format!(
        "{{\"id\":{},\"name\":{},\"state\":{},\"priority\":{},\"files_done\":{},\
         \"files_total\":{},\"bytes_done\":{},\"bytes_total\":{},\"verbs\":[{}],\"error\":{},\
         \"created\":{},\"modified\":{}",
        js(&j.id().to_string()),
        js(j.display_name()),
        js(j.state().as_str()),
        js(j.priority().as_str()),
        p.files_done,
        p.files_total,
        p.bytes_done,
        jn(p.bytes_total),
        verbs.join(","),
        error,
        j.created(),
        j.modified(),
    );
    if verbose {
        let notify = jo(j.notify().map(|n| {
            let args: Vec<String> = n.args.iter().map(|a| js(a)).collect();
            format!(
                "{{\"program\":{},\"args\":[{}]}}",
                js(&n.program.to_string_lossy()),
                args.join(",")
            )
        }));
        let creds: Vec<String> = [CredentialTarget::Server, CredentialTarget::Proxy]
            .into_iter()
            .filter_map(|t| j.credentials(t))
            .map(|c| {
                format!(
                    "{{\"target\":{},\"scheme\":{},\"user\":{}}}",
                    js(c.target.as_str()),
                    js(c.scheme.as_str()),
                    js(&c.user)
                )
            })
            .collect();
        let proxy = match j.proxy() {
            ProxyChoice::Session => "{\"mode\":\"session\"}".to_owned(),
            ProxyChoice::None => "{\"mode\":\"none\"}".to_owned(),
            ProxyChoice::Override { proxy, bypass } => format!(
                "{{\"mode\":\"override\",\"list\":{},\"bypass\":{}}}",
                js(proxy),
                js(bypass)
            ),
        };
        let headers: Vec<String> = j
            .custom_headers()
            .iter()
            .map(|(n, v)| {
                format!(
                    "{{\"name\":{},\"value\":{}}}",
                    js(n),
                    js(&header_value(n, v))
                )
            })
            .collect();
        let _ = write!(
            s,
            ",\"owner\":{},\"completed\":{},\"min_retry_delay\":{},\"retry_at\":{},\
             \"no_progress_timeout\":{},\"no_progress_since\":{},\"notify\":{},\
             \"credentials\":[{}],\"proxy\":{},\"redirect_policy\":{},\
             \"allow_https_to_http\":{},\"dynamic\":{},\"rate_limit\":{},\"headers\":[{}]",
            j.owner_uid(),
            jn(j.completed()),
            j.min_retry_delay_secs(),
            jn(j.retry_at()),
            j.no_progress_timeout_secs(),
            jn(j.no_progress_since()),
            notify,
            creds.join(","),
            proxy,
            js(j.redirect_policy().as_str()),
            j.allow_https_to_http(),
            j.dynamic_content(),
            jn(j.rate_limit()),
            headers.join(","),
        );
    }
    let _ = write!(s, ",\"files\":[{}]}}", files.join(","));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_transfer::job::JobError;
    use std::os::unix::ffi::OsStringExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A failure's message (Failure has no Debug).
    fn m<T>(r: Result<T, Failure>) -> Result<T, String> {
        r.map_err(|f| f.message)
    }

    const UID: u32 = 4242;
    const SECRET: &str = "s3cr3t-Pa55-XYZ";

    /// A directory under the temp dir, removed on drop.
    struct Tmp(PathBuf);

    impl Tmp {
        fn new(label: &str) -> Tmp {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir()
                .join(format!("ferry-unit-job-{label}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A queue that records its calls, and whether the store was unlocked during `quiesce`.
    struct Recorder {
        store: Arc<Mutex<Store>>,
        log: Mutex<Vec<String>>,
    }

    impl Control for Recorder {
        fn quiesce(&self, id: JobId) {
            let free = self.store.try_lock().is_ok();
            let how = if free { "unlocked" } else { "LOCKED" };
            self.log.lock().unwrap().push(format!("quiesce {id} {how}"));
        }
        fn changed(&self) {
            self.log.lock().unwrap().push("changed".into());
        }
    }

    struct Fixture {
        tmp: Tmp,
        store: Arc<Mutex<Store>>,
        queue: Recorder,
    }

    impl Fixture {
        fn new(label: &str) -> Fixture {
            let tmp = Tmp::new(label);
            let store = Arc::new(Mutex::new(Store::open(tmp.0.join("jobs.db")).unwrap()));
            let queue = Recorder {
                store: Arc::clone(&store),
                log: Mutex::new(Vec::new()),
            };
            Fixture { tmp, store, queue }
        }

        fn run_os(&self, args: Vec<OsString>) -> Reply {
            let ctx = Ctx {
                uid: UID,
                store: &self.store,
                queue: &self.queue,
            };
            let r = execute(
                &ctx,
                Request {
                    cwd: self.tmp.0.clone(),
                    args,
                },
            );
            // Every failure, whatever the command: one line, with a hint.
            if r.code != 0 {
                let err = stderr(&r);
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(
                    err.starts_with("ferry: (") && err.contains("; hint: "),
                    "{err}"
                );
            }
            r
        }

        fn run(&self, args: &[&str]) -> Reply {
            self.run_os(args.iter().map(OsString::from).collect())
        }

        fn ok(&self, args: &[&str]) -> String {
            let r = self.run(args);
            assert_eq!(
                r.code,
                0,
                "{args:?}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            String::from_utf8(r.stdout).unwrap()
        }

        fn job(&self, id: &str) -> Job {
            let id: JobId = id.parse().unwrap();
            self.store.lock().unwrap().load_job(&id).unwrap()
        }

        fn save(&self, job: &Job) {
            self.store.lock().unwrap().update_job(job).unwrap();
        }

        fn take_log(&self) -> Vec<String> {
            std::mem::take(&mut *self.queue.log.lock().unwrap())
        }

        /// A job with one file, moved to `state` with the engine's own events.
        fn job_in(&self, state: State) -> String {
            let id = self.ok(&["create", "fixture"]).trim().to_owned();
            let dest = self.tmp.0.join(format!("f-{}.bin", &id[1..9]));
            self.ok(&["add", &id, "http://127.0.0.1:1/f", dest.to_str().unwrap()]);
            let mut j = self.job(&id);
            let t = 1_700_000_000;
            let steps: &[Verb] = match state {
                State::Suspended => &[],
                State::Queued => &[Verb::Resume],
                State::Connecting => &[Verb::Resume, Verb::Start],
                State::Transferring | State::Transferred => {
                    &[Verb::Resume, Verb::Start, Verb::Connected]
                }
                State::TransientError | State::Error => &[Verb::Resume, Verb::Start],
                State::Acknowledged => &[Verb::Complete],
                State::Cancelled => &[Verb::Cancel],
            };
            for v in steps {
                j.apply(*v, t).unwrap();
            }
            match state {
                State::Transferred => {
                    let f = j.file_mut(0).unwrap();
                    f.bytes_total = Some(3);
                    f.bytes_done = 3;
                    f.completed = true;
                    j.apply(Verb::AllDone, t).unwrap();
                }
                State::TransientError | State::Error => {
                    let e = JobError {
                        status: (state == State::Error).then_some(404),
                        message: "Not Found".into(),
                        transient: state == State::TransientError,
                    };
                    assert_eq!(j.fail(e, t).unwrap(), state);
                }
                _ => {}
            }
            assert_eq!(j.state(), state);
            self.save(&j);
            self.take_log();
            id
        }
    }

    /// A reply's stderr as text.
    fn stderr(r: &Reply) -> String {
        String::from_utf8_lossy(&r.stderr).into_owned()
    }

    /// Every caller command, its arguments for job `id` in `dir`, and the verb it applies.
    fn commands(id: &str, dir: &Path) -> Vec<(Vec<String>, Verb)> {
        let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let y = dir.join("y.bin").to_string_lossy().into_owned();
        let secret = format!("--secret={SECRET}");
        vec![
            (s(&["add", id, "http://127.0.0.1:1/y", &y]), Verb::AddFile),
            (s(&["resume", id]), Verb::Resume),
            (s(&["suspend", id]), Verb::Suspend),
            (s(&["cancel", id]), Verb::Cancel),
            (s(&["complete", id]), Verb::Complete),
            (s(&["set-priority", id, "low"]), Verb::SetPriority),
            (
                s(&["set-remote-name", id, "0", "http://127.0.0.1:1/z"]),
                Verb::SetRemoteName,
            ),
            (s(&["set-name", id, "renamed"]), Verb::SetProperty),
            (s(&["set-limit", id, "500k"]), Verb::SetProperty),
            (
                s(&["set-notify", "--", id, "/bin/true", "-x"]),
                Verb::SetProperty,
            ),
            (
                s(&[
                    "set-credentials",
                    "--target=server",
                    "--scheme=basic",
                    "--user=alice",
                    &secret,
                    "--",
                    id,
                ]),
                Verb::SetProperty,
            ),
            (s(&["set-proxy", id, "none"]), Verb::SetProperty),
            (s(&["set-retry-delay", id, "30"]), Verb::SetProperty),
            (s(&["set-no-progress-timeout", id, "60"]), Verb::SetProperty),
            (
                s(&["set-redirect-policy", id, "disallow"]),
                Verb::SetProperty,
            ),
            (s(&["set-dynamic", id, "off"]), Verb::SetProperty),
            (s(&["set-headers", id, "X-A: 1"]), Verb::SetProperty),
        ]
    }

    /// The verbs whose handlers stop the job's worker first.
    fn quiesces(v: Verb) -> bool {
        matches!(
            v,
            Verb::Suspend | Verb::Cancel | Verb::Complete | Verb::SetRemoteName
        )
    }

    #[test]
    fn every_command_in_every_state_follows_the_table() {
        let fx = Fixture::new("table");
        for st in State::ALL {
            for (args, verb) in commands("ID", &fx.tmp.0) {
                let id = fx.job_in(st);
                let args: Vec<&str> = args
                    .iter()
                    .map(|a| if a == "ID" { id.as_str() } else { a.as_str() })
                    .collect();
                let before = fx.job(&id);
                let r = fx.run(&args);
                let err = stderr(&r);
                let log = fx.take_log();
                assert!(
                    log.iter().all(|l| !l.ends_with("LOCKED")),
                    "{args:?} in {st}: quiesce with the store locked: {log:?}"
                );
                if state::is_legal(st, verb) {
                    assert_eq!(r.code, 0, "{args:?} in {st}: {err}");
                    assert_eq!(log.last().map(String::as_str), Some("changed"), "{log:?}");
                    if quiesces(verb) {
                        assert_eq!(log[0], format!("quiesce {id} unlocked"), "{args:?}");
                    }
                    let after = fx.job(&id);
                    assert_eq!(after.state(), state::apply(st, verb).unwrap(), "{args:?}");
                } else {
                    assert_eq!(r.code, 2, "{args:?} in {st}: {err}");
                    assert!(r.stdout.is_empty());
                    assert_eq!(err.lines().count(), 1, "one line: {err}");
                    assert!(err.starts_with("ferry: (2) cannot "), "{err}");
                    assert!(err.contains(&format!("a job that is {st} (")), "{err}");
                    let verbs = caller_verbs(st);
                    if verbs.is_empty() {
                        assert!(err.contains(&format!("({st} is final")), "{err}");
                    } else {
                        let legal = format!("(legal in {st}: {}); hint: ", verbs.join(", "));
                        assert!(err.contains(&legal), "{err}");
                    }
                    // Refused before anything changed or any worker was disturbed.
                    assert!(log.iter().all(|l| !l.starts_with("quiesce")), "{log:?}");
                    assert_eq!(fx.job(&id), before, "{args:?} in {st}");
                }
                // One fixture job per case: drop it so the owner stays under
                // MAX_JOBS_PER_USER.
                let _ = fx.store.lock().unwrap().delete_job(&id.parse().unwrap());
            }
        }
    }

    #[test]
    fn create_add_list_info_and_paths() {
        let fx = Fixture::new("basic");
        let id = fx.ok(&["create", "first", "--priority", "high"]);
        let id = id.trim();
        assert!(id.parse::<JobId>().is_ok(), "{id}");
        assert_eq!(fx.take_log(), ["changed"]);
        // A relative PATH is the caller's directory's, not the service's.
        assert_eq!(fx.ok(&["add", id, "http://127.0.0.1:1/a", "a.bin"]), "0\n");
        assert_eq!(
            fx.ok(&[
                "add",
                "first",
                "http://127.0.0.1:1/b",
                "b.bin",
                "--range",
                "0:10"
            ]),
            "1\n"
        );
        let j = fx.job(id);
        assert_eq!(j.files()[0].local(), fx.tmp.0.join("a.bin"));
        assert_eq!(j.priority(), Priority::High);
        for (args, want) in [
            (
                vec!["add", id, "http://127.0.0.1:1/c", "nodir/c.bin"],
                "does not exist",
            ),
            (
                vec!["add", id, "http://127.0.0.1:1/c", "."],
                "is a directory",
            ),
            (
                vec!["add", id, "ftp://127.0.0.1/c", "c.bin"],
                "only http and https",
            ),
            (
                vec!["add", id, "http://u:p@127.0.0.1/c", "c.bin"],
                "set-credentials",
            ),
            (
                vec!["add", id, "http://127.0.0.1:1/a", "a.bin"],
                "already the destination",
            ),
            (vec!["add", id, "not a url", "c.bin"], "bad URL"),
        ] {
            let r = fx.run(&args);
            assert_ne!(r.code, 0, "{args:?}");
            assert!(stderr(&r).contains(want), "{args:?}: {}", stderr(&r));
            assert_eq!(stderr(&r).lines().count(), 1);
        }
        // An unknown working directory cannot resolve a relative path.
        let ctx = Ctx {
            uid: UID,
            store: &fx.store,
            queue: &fx.queue,
        };
        let r = execute(
            &ctx,
            Request {
                cwd: PathBuf::new(),
                args: ["add", id, "http://127.0.0.1:1/c", "c.bin"]
                    .map(OsString::from)
                    .to_vec(),
            },
        );
        assert!(
            stderr(&r).contains("working directory is unknown"),
            "{}",
            stderr(&r)
        );

        let table = fx.ok(&["list"]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert_eq!(lines[0].find("NAME"), lines[1].find("first"), "{table}");
        assert!(
            lines[1].contains("SUSPENDED") && lines[1].contains("0/2"),
            "{table}"
        );

        let info = fx.ok(&["info", id]);
        assert!(
            info.contains("state:") && info.contains("SUSPENDED"),
            "{info}"
        );
        assert!(info.contains("ranges:") && info.contains("0:10"), "{info}");
        assert!(!info.contains("temp:"), "verbose only: {info}");
        let verbose = fx.ok(&["info", id, "--verbose"]);
        assert!(verbose.contains(".a.bin.ferry-part"), "{verbose}");

        // Another user's job does not exist for this caller.
        let mut other = fx.job(id);
        other = Job::new(JobId::random().unwrap(), UID + 1, "theirs", other.created()).unwrap();
        fx.store.lock().unwrap().insert_job(&other).unwrap();
        let r = fx.run(&["info", &other.id().to_string()]);
        assert_eq!(r.code, 2);
        assert!(stderr(&r).contains("no job"), "{}", stderr(&r));
        assert!(!fx.ok(&["list"]).contains("theirs"));

        // Names are not unique.
        fx.ok(&["create", "first"]);
        let r = fx.run(&["info", "first"]);
        assert!(
            stderr(&r).contains("2 jobs are named 'first'"),
            "{}",
            stderr(&r)
        );
    }

    #[test]
    fn resume_needs_a_file_and_leaves_running_to_the_queue() {
        let fx = Fixture::new("resume");
        let id = fx.ok(&["create", "empty"]).trim().to_owned();
        let r = fx.run(&["resume", &id]);
        assert_eq!(r.code, 2);
        assert!(stderr(&r).contains("has no files"), "{}", stderr(&r));
        assert_eq!(fx.job(&id).state(), State::Suspended);
        // A job the queue is running: resume changes nothing and stops nothing.
        let id = fx.job_in(State::Transferring);
        fx.ok(&["resume", &id]);
        assert_eq!(fx.job(&id).state(), State::Transferring);
        assert_eq!(fx.take_log(), ["changed"]);
        // An error is re-armed: queued, error cleared.
        let id = fx.job_in(State::Error);
        fx.ok(&["resume", &id]);
        let j = fx.job(&id);
        assert_eq!((j.state(), j.last_error()), (State::Queued, None));
    }

    #[test]
    fn settings_reach_the_job() {
        let fx = Fixture::new("settings");
        let id = fx.job_in(State::Suspended);
        fx.ok(&["set-limit", &id, "2M"]);
        assert_eq!(fx.job(&id).rate_limit(), Some(2 << 20));
        fx.ok(&["set-limit", &id, "none"]);
        assert_eq!(fx.job(&id).rate_limit(), None);
        fx.ok(&[
            "set-notify",
            "--",
            &id,
            "/bin/echo",
            "--flag",
            "a b",
            "$HOME",
        ]);
        let n = fx.job(&id).notify().cloned().unwrap();
        assert_eq!(n.program, Path::new("/bin/echo"));
        assert_eq!(n.args, ["--flag", "a b", "$HOME"], "literal, no shell");
        let r = fx.run(&["set-notify", "--", &id, "echo"]);
        assert!(stderr(&r).contains("absolute"), "{}", stderr(&r));
        fx.ok(&["set-notify", "--clear", "--", &id]);
        assert_eq!(fx.job(&id).notify(), None);
        fx.ok(&[
            "set-proxy",
            &id,
            "override",
            "http=127.0.0.1:3128",
            "--bypass",
            "<local>",
        ]);
        assert_eq!(
            fx.job(&id).proxy(),
            &ProxyChoice::Override {
                proxy: "http=127.0.0.1:3128".into(),
                bypass: "<local>".into()
            }
        );
        for bad in [
            vec!["set-proxy", &id, "override"],
            vec!["set-proxy", &id, "none", "x"],
            vec!["set-proxy", &id, "auto"],
        ] {
            assert_eq!(fx.run(&bad).code, 2, "{bad:?}");
        }
        let r = fx.run(&["set-retry-delay", &id, "1"]);
        assert_eq!(r.code, 0);
        assert!(stderr(&r).contains("5 s, the minimum"), "{}", stderr(&r));
        assert_eq!(fx.job(&id).min_retry_delay_secs(), 5);
        fx.ok(&["set-no-progress-timeout", &id, "0"]);
        assert_eq!(fx.job(&id).no_progress_timeout_secs(), 0);
        fx.ok(&[
            "set-redirect-policy",
            &id,
            "report",
            "--allow-https-to-http",
        ]);
        let j = fx.job(&id);
        assert_eq!(j.redirect_policy(), RedirectPolicy::AllowReport);
        assert!(j.allow_https_to_http());
        fx.ok(&["set-dynamic", &id, "on"]);
        assert!(fx.job(&id).dynamic_content());
        fx.ok(&["set-headers", &id, "X-A: 1", "X-B:two words"]);
        assert_eq!(
            fx.job(&id).custom_headers(),
            [
                ("X-A".into(), "1".into()),
                ("X-B".into(), "two words".into())
            ]
        );
        let r = fx.run(&["set-headers", &id, "Host: evil"]);
        assert!(stderr(&r).contains("set by ferry itself"), "{}", stderr(&r));
        fx.ok(&["set-headers", &id]);
        assert!(fx.job(&id).custom_headers().is_empty());
        fx.ok(&["set-name", &id, "renamed"]);
        assert_eq!(fx.job(&id).display_name(), "renamed");
        let info = fx.ok(&["info", &id, "-v"]);
        for want in [
            "retry delay:",
            "5 s",
            "no-progress timeout:",
            "allow-report",
            "dynamic:",
        ] {
            assert!(info.contains(want), "{want}: {info}");
        }
    }

    #[test]
    fn credentials_are_never_shown() {
        let fx = Fixture::new("creds");
        let id = fx.job_in(State::Suspended);
        let secret = format!("--secret={SECRET}");
        let set = |target: &str, scheme: &str, user: &str| {
            fx.run(&[
                "set-credentials",
                &format!("--target={target}"),
                &format!("--scheme={scheme}"),
                &format!("--user={user}"),
                &secret,
                "--",
                &id,
            ])
        };
        let mut outputs = vec![
            set("server", "basic", "alice"),
            set("proxy", "ntlm", "CORP\\bob"),
        ];
        assert!(outputs.iter().all(|r| r.code == 0));
        let j = fx.job(&id);
        let c = j.credentials(CredentialTarget::Server).unwrap();
        assert_eq!((c.user.as_str(), c.secret.expose()), ("alice", SECRET));
        for args in [
            vec!["info", &id, "--verbose"],
            vec!["info", &id, "--verbose", "--json"],
            vec!["info", &id, "--json"],
            vec!["list", "--json"],
            vec!["list"],
        ] {
            let r = fx.run(&args);
            assert_eq!(r.code, 0);
            outputs.push(r);
        }
        let info = fx.ok(&["info", &id, "-v"]);
        assert!(info.contains("SERVER BASIC user alice"), "{info}");
        assert!(info.contains("PROXY NTLM user"), "{info}");
        // Refusals that could echo what they were given.
        outputs.push(set("bogus", "basic", "alice"));
        outputs.push(set("server", "bogus", "alice"));
        outputs.push(set("proxy", "bearer", ""));
        outputs.push(set("server", "basic", "a:b"));
        outputs.push(fx.run(&["set-credentials", "--bogus", &secret]));
        outputs.push(fx.run(&["set-credentials", "--secret", SECRET, "--bogus"]));
        outputs.push(fx.run(&["set-credentials", &secret, "--target=server", "--", "nope"]));
        let cancelled = fx.job_in(State::Cancelled);
        outputs.push(fx.run(&[
            "set-credentials",
            "--target=server",
            "--scheme=basic",
            "--user=u",
            &secret,
            "--",
            &cancelled,
        ]));
        for (i, r) in outputs.iter().enumerate() {
            for text in [&r.stdout, &r.stderr] {
                let text = String::from_utf8_lossy(text);
                assert!(
                    !text.contains(SECRET),
                    "output #{i} shows the secret: {text}"
                );
            }
        }
        // The refusals were refusals, each one line.
        for r in &outputs[outputs.len() - 8..] {
            assert_ne!(r.code, 0);
            assert_eq!(stderr(r).lines().count(), 1, "{}", stderr(r));
        }
        // The service never reads a secret from its own stdin or environment.
        let r = fx.run(&[
            "set-credentials",
            "--target=server",
            "--scheme=basic",
            "--user=u",
            "--password-env",
            "HOME",
            "--",
            &id,
        ]);
        assert_eq!(r.code, 2, "{}", stderr(&r));
        fx.ok(&["set-credentials", "--target=server", "--clear", "--", &id]);
        assert!(fx.job(&id).credentials(CredentialTarget::Server).is_none());
        assert!(fx.job(&id).credentials(CredentialTarget::Proxy).is_some());
    }

    #[test]
    fn the_client_reads_secrets_and_programs_locally() {
        let typed = |v: &[&str]| -> Vec<OsString> { v.iter().map(OsString::from).collect() };
        let prep = |args: Vec<OsString>, env: &dyn Fn(&str) -> Option<OsString>, input: &str| {
            let m = parse(Side::Client, &args).map_err(|r| stderr(&r))?;
            let (sub, sm) = m.subcommand().unwrap();
            let mut stdin = || Ok(input.to_owned());
            let caller = Caller {
                env,
                stdin: &mut stdin,
            };
            prepare(sub, sm, args.clone(), caller).map_err(|f| f.message)
        };
        let no_env = |_: &str| None;
        let (args, _) = prep(
            typed(&[
                "set-credentials",
                "J",
                "--target",
                "server",
                "--scheme",
                "basic",
                "--user=-a",
                "--password-stdin",
            ]),
            &no_env,
            "pw from stdin",
        )
        .unwrap();
        assert_eq!(
            args,
            typed(&[
                "set-credentials",
                "--target=server",
                "--scheme=basic",
                "--user=-a",
                "--secret=pw from stdin",
                "--",
                "J"
            ])
        );
        let env = |k: &str| (k == "TOKEN").then(|| OsString::from("tok"));
        let (args, _) = prep(
            typed(&[
                "set-credentials",
                "J",
                "--target=server",
                "--scheme=bearer",
                "--password-env",
                "TOKEN",
            ]),
            &env,
            "",
        )
        .unwrap();
        assert!(args.contains(&OsString::from("--secret=tok")), "{args:?}");
        let e = prep(
            typed(&[
                "set-credentials",
                "J",
                "--target=server",
                "--scheme=basic",
                "--user=u",
                "--password-env",
                "UNSET",
            ]),
            &env,
            "",
        )
        .unwrap_err();
        assert!(e.contains("'UNSET' is not set"), "{e}");
        let e = prep(
            typed(&[
                "set-credentials",
                "J",
                "--target=server",
                "--scheme=basic",
                "--user=u",
                "--password-stdin",
            ]),
            &env,
            "",
        )
        .unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = prep(
            typed(&[
                "set-credentials",
                "J",
                "--target=server",
                "--scheme=basic",
                "--user=u",
            ]),
            &env,
            "",
        )
        .unwrap_err();
        assert!(e.contains("--password-stdin or --password-env"), "{e}");
        // The service's option is refused without repeating its value.
        let e = prep(
            typed(&[
                "set-credentials",
                "J",
                "--target=server",
                &format!("--secret={SECRET}"),
            ]),
            &env,
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("not accepted on the command line") && !e.contains(SECRET),
            "{e}"
        );

        // A bare notify program is found on the caller's PATH (absolute entries only).
        let bin = Tmp::new("path");
        let prog = bin.0.join("notify-me");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.0.join("not-exec"), "").unwrap();
        let path = format!("relative/dir:{}", bin.0.display());
        let env = |k: &str| (k == "PATH").then(|| OsString::from(&path));
        let (args, _) = prep(
            typed(&["set-notify", "J", "notify-me", "-x", "--clear"]),
            &env,
            "",
        )
        .unwrap();
        let want: Vec<OsString> = vec![
            "set-notify".into(),
            "--".into(),
            "J".into(),
            prog.clone().into_os_string(),
            "-x".into(),
            "--clear".into(),
        ];
        assert_eq!(args, want);
        for (program, why) in [
            ("not-exec", "not on your PATH"),
            ("./notify-me", "not an absolute path"),
            ("sub/x", "not an absolute path"),
        ] {
            let e = prep(typed(&["set-notify", "J", program]), &env, "").unwrap_err();
            assert!(e.contains(why), "{program}: {e}");
        }
        let (args, _) = prep(typed(&["set-notify", "J", "--clear"]), &env, "").unwrap();
        assert_eq!(args, typed(&["set-notify", "--clear", "--", "J"]));

        // wait: the client's read timeout outlasts the service's wait.
        let (_, t) = prep(typed(&["wait", "J", "--timeout", "5"]), &no_env, "").unwrap();
        assert_eq!(t, Duration::from_secs(5) + WAIT_MARGIN);
        let (_, t) = prep(typed(&["wait", "J"]), &no_env, "").unwrap();
        assert_eq!(t, Duration::from_secs(DEFAULT_WAIT_SECS) + WAIT_MARGIN);
        assert!(prep(typed(&["wait", "J", "--timeout", "-1"]), &no_env, "").is_err());
    }

    #[test]
    fn secrets_from_stdin() {
        let read = |b: &[u8]| read_secret(&mut &b[..], false).map_err(|f| f.message);
        assert_eq!(read(b"pw\n").unwrap(), "pw");
        assert_eq!(read(b"pw\r\n").unwrap(), "pw");
        assert_eq!(read(b"pw\n\n").unwrap(), "pw\n", "one newline only");
        assert_eq!(read(b"").unwrap(), "");
        assert!(read(&[0xff]).unwrap_err().contains("UTF-8"));
        assert!(read(&vec![b'a'; MAX_SECRET_BYTES + 1])
            .unwrap_err()
            .contains("longer"));
        assert_eq!(
            read(&vec![b'a'; MAX_SECRET_BYTES]).unwrap().len(),
            MAX_SECRET_BYTES
        );
        let e = read_secret(&mut &b"pw"[..], true).unwrap_err();
        assert!(e.message.contains("terminal"), "{}", e.message);
    }

    #[test]
    fn wait_ends_on_final_states_and_times_out() {
        let fx = Fixture::new("wait");
        let id = fx.job_in(State::Transferred);
        assert_eq!(fx.ok(&["wait", &id]), format!("{id} TRANSFERRED\n"));
        let id = fx.job_in(State::Acknowledged);
        assert_eq!(fx.ok(&["wait", &id]), format!("{id} ACKNOWLEDGED\n"));
        let id = fx.job_in(State::Error);
        let r = fx.run(&["wait", &id]);
        assert_eq!(r.code, 22, "{}", stderr(&r));
        assert!(
            stderr(&r).contains("is ERROR: final error: HTTP 404: Not Found"),
            "{}",
            stderr(&r)
        );
        let id = fx.job_in(State::Cancelled);
        assert!(stderr(&fx.run(&["wait", &id])).contains("was cancelled"));
        let id = fx.job_in(State::Suspended);
        let r = fx.run(&["wait", &id]);
        assert!(stderr(&r).contains("SUSPENDED"), "{}", stderr(&r));

        let id = fx.job_in(State::TransientError);
        let started = Instant::now();
        let r = fx.run(&["wait", &id, "--timeout", "0"]);
        assert_eq!(r.code, 28, "{}", stderr(&r));
        assert!(
            stderr(&r).contains(
                "still TRANSIENT_ERROR after 0 s (last error: transient error: Not Found)"
            ),
            "{}",
            stderr(&r)
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        // A job that becomes transferred while `wait` polls: the store stays usable (the
        // lock is not held across the sleeps) and wait notices within a poll or two.
        let id = fx.job_in(State::Transferring);
        let store = Arc::clone(&fx.store);
        let jid: JobId = id.parse().unwrap();
        let finisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut s = store.lock().unwrap();
            let mut j = s.load_job(&jid).unwrap();
            j.file_mut(0).unwrap().completed = true;
            j.apply(Verb::AllDone, 1).unwrap();
            s.update_job(&j).unwrap();
            Instant::now()
        });
        let r = fx.run(&["wait", &id, "--timeout", "20"]);
        let done_at = finisher.join().unwrap();
        assert_eq!(r.code, 0, "{}", stderr(&r));
        assert!(done_at.elapsed() < Duration::from_secs(2), "noticed late");
    }

    #[test]
    fn no_input_panics_and_failures_are_one_line() {
        let fx = Fixture::new("fuzz");
        let id = fx.job_in(State::Suspended);
        let id = id.as_str();
        let cases: Vec<Vec<OsString>> = vec![
            vec![],
            vec!["--help".into()],
            vec!["info".into(), "--help".into()],
            vec!["info".into()],
            vec![OsString::from_vec(vec![0xff, 0xfe])],
            vec!["info".into(), OsString::from_vec(vec![b'{', 0xff])],
            vec![
                "add".into(),
                id.into(),
                OsString::from_vec(vec![0xff]),
                "x".into(),
            ],
            vec![
                "add".into(),
                id.into(),
                "http://h/".into(),
                OsString::from_vec(vec![0xff, b'x']),
            ],
            vec!["add".into(), id.into(), "http://h/".into(), "a\0b".into()],
            vec![
                "add".into(),
                id.into(),
                "http://h/".into(),
                "r.bin".into(),
                "--range".into(),
                "9:0".into(),
            ],
            vec!["set-headers".into(), id.into(), ":".into()],
            vec![
                "set-headers".into(),
                id.into(),
                "X: a\r\nInjected: 1".into(),
            ],
            vec![
                "wait".into(),
                id.into(),
                "--timeout".into(),
                "99999999999999999999999".into(),
            ],
            vec!["set-limit".into(), id.into(), "1e400".into()],
            vec!["set-limit".into(), id.into(), "-5".into()],
            vec![
                "set-retry-delay".into(),
                id.into(),
                "18446744073709551615".into(),
            ],
            vec![
                "set-remote-name".into(),
                id.into(),
                "99999999999999999999".into(),
                "http://h/".into(),
            ],
            vec![
                "set-remote-name".into(),
                id.into(),
                "7".into(),
                "http://h/".into(),
            ],
            vec![
                "set-notify".into(),
                "--".into(),
                id.into(),
                "/bin/x".into(),
                OsString::from_vec(vec![0xff]),
            ],
            vec!["set-notify".into(), "--".into(), id.into(), "/".into()],
            vec!["set-name".into(), id.into(), "".into()],
            vec!["set-name".into(), id.into(), "a\nb".into()],
            vec!["set-priority".into(), id.into(), "urgent".into()],
            vec!["monitor".into()],
            vec!["list".into(), "extra".into()],
            vec!["create".into(), "x".repeat(300).into()],
            vec![
                "info".into(),
                "{00000000-0000-4000-8000-000000000000}".into(),
            ],
        ];
        for args in cases {
            let r = fx.run_os(args.clone());
            let err = stderr(&r);
            if r.code != 0 {
                assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
                assert!(err.starts_with("ferry: ("), "{args:?}: {err}");
                assert!(err.contains("; hint: "), "{args:?}: {err}");
            }
        }
        // The store is still usable and the job untouched in name.
        assert_eq!(fx.job(id).display_name(), "fixture");
    }

    /// A minimal JSON syntax check: one value, nothing after it.
    fn json_ok(s: &str) -> bool {
        fn ws(b: &[u8], i: &mut usize) {
            while *i < b.len() && b" \t\r\n".contains(&b[*i]) {
                *i += 1;
            }
        }
        fn value(b: &[u8], i: &mut usize, depth: usize) -> bool {
            if depth > 64 {
                return false;
            }
            ws(b, i);
            match b.get(*i) {
                Some(b'{') | Some(b'[') => {
                    let close = if b[*i] == b'{' { b'}' } else { b']' };
                    let object = close == b'}';
                    *i += 1;
                    ws(b, i);
                    if b.get(*i) == Some(&close) {
                        *i += 1;
                        return true;
                    }
                    loop {
                        if object {
                            ws(b, i);
                            if b.get(*i) != Some(&b'"') || !string(b, i) {
                                return false;
                            }
                            ws(b, i);
                            if b.get(*i) != Some(&b':') {
                                return false;
                            }
                            *i += 1;
                        }
                        if !value(b, i, depth + 1) {
                            return false;
                        }
                        ws(b, i);
                        match b.get(*i) {
                            Some(b',') => *i += 1,
                            Some(c) if *c == close => {
                                *i += 1;
                                return true;
                            }
                            _ => return false,
                        }
                    }
                }
                Some(b'"') => string(b, i),
                Some(b't') => lit(b, i, b"true"),
                Some(b'f') => lit(b, i, b"false"),
                Some(b'n') => lit(b, i, b"null"),
                Some(c) if c.is_ascii_digit() || *c == b'-' => {
                    *i += 1;
                    while *i < b.len() && (b[*i].is_ascii_digit() || b".eE+-".contains(&b[*i])) {
                        *i += 1;
                    }
                    true
                }
                _ => false,
            }
        }
        fn lit(b: &[u8], i: &mut usize, w: &[u8]) -> bool {
            let ok = b[*i..].starts_with(w);
            *i += w.len();
            ok
        }
        fn string(b: &[u8], i: &mut usize) -> bool {
            *i += 1;
            while let Some(&c) = b.get(*i) {
                *i += 1;
                match c {
                    b'"' => return true,
                    b'\\' => match b.get(*i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 1,
                        Some(b'u')
                            if b.len() >= *i + 5
                                && b[*i + 1..*i + 5].iter().all(u8::is_ascii_hexdigit) =>
                        {
                            *i += 5
                        }
                        _ => return false,
                    },
                    c if c < 0x20 => return false,
                    _ => {}
                }
            }
            false
        }
        let b = s.as_bytes();
        let mut i = 0;
        let ok = value(b, &mut i, 0);
        ws(b, &mut i);
        ok && i == b.len()
    }

    #[test]
    fn json_is_json_whatever_the_names() {
        assert!(
            json_ok("{\"a\":[1,null,\"x\\n\"]}") && !json_ok("{\"a\":}") && !json_ok("\"\u{1}\"")
        );
        let fx = Fixture::new("json");
        let id = fx.job_in(State::Error);
        let odd = fx.tmp.0.join("q\"uote\\back\nline\ttab é.bin");
        let mut j = fx.job(&id);
        j.apply(Verb::Suspend, 1).unwrap();
        fx.save(&j);
        fx.ok(&[
            "add",
            &id,
            "http://127.0.0.1:1/a?x=\"y\"",
            odd.to_str().unwrap(),
        ]);
        fx.ok(&["set-name", &id, "name \"quoted\" \\ é"]);
        fx.ok(&["set-notify", "--", &id, "/bin/echo", "a\"b", "c\nd"]);
        fx.ok(&["set-headers", &id, "X-Q: \"v\" \\"]);
        fx.ok(&[
            "set-proxy",
            &id,
            "override",
            "http=127.0.0.1:1",
            "--bypass",
            "<local>",
        ]);
        let mut j = fx.job(&id);
        j.file_mut(0).unwrap().validator = Some(ferry_transfer::job::Validator {
            etag: Some("\"abc\"".into()),
            last_modified: None,
            length: Some(5),
        });
        fx.save(&j);
        for args in [
            vec!["list", "--json"],
            vec!["info", &id, "--json"],
            vec!["info", &id, "--json", "-v"],
        ] {
            let out = fx.ok(&args);
            assert_eq!(out.lines().count(), 1, "{out}");
            assert!(json_ok(out.trim_end()), "{args:?}: {out}");
        }
        let v = fx.ok(&["info", &id, "--json", "-v"]);
        for key in [
            "\"state\":\"SUSPENDED\"",
            "\"error\":{\"status\":404",
            "\"notify\":{\"program\":\"/bin/echo\"",
            "\"proxy\":{\"mode\":\"override\"",
            "\"validator\":{\"etag\":\"\\\"abc\\\"\"",
            "\"rate_limit\":null",
        ] {
            assert!(v.contains(key), "{key}: {v}");
        }
    }

    #[test]
    fn values_parse_strictly() {
        assert_eq!(m(parse_limit("500k")).unwrap(), Some(500 << 10));
        assert_eq!(m(parse_limit("2M")).unwrap(), Some(2 << 20));
        assert_eq!(m(parse_limit("1234")).unwrap(), Some(1234));
        assert_eq!(m(parse_limit("NONE")).unwrap(), None);
        assert_eq!(m(parse_limit("0")).unwrap(), None);
        for bad in ["", "fast", "1.2.3k", "-1", "2T"] {
            assert!(m(parse_limit(bad)).is_err(), "{bad}");
        }
        assert_eq!(m(parse_header(0, "A:b")).unwrap(), ("A".into(), "b".into()));
        assert_eq!(
            m(parse_header(0, "A: \t b c ")).unwrap(),
            ("A".into(), "b c ".into())
        );
        assert_eq!(m(parse_header(0, "A:")).unwrap(), ("A".into(), "".into()));
        assert!(m(parse_header(0, "no colon")).is_err());
        assert_eq!(
            m(parse_redirect_policy("report")).unwrap(),
            RedirectPolicy::AllowReport
        );
        assert_eq!(
            m(parse_redirect_policy("allow-report")).unwrap(),
            RedirectPolicy::AllowReport
        );
        assert_eq!(
            m(parse_redirect_policy("DISALLOW")).unwrap(),
            RedirectPolicy::Disallow
        );
        assert!(m(parse_redirect_policy("follow")).is_err());
        assert!(m(parse_on_off("on")).unwrap() && !m(parse_on_off("off")).unwrap());
        assert!(m(parse_on_off("maybe")).is_err());
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert!(utc(u64::MAX).ends_with("UTC"));
        assert_eq!(replace_bytes(b"a-pw-pwpw", b"pw", b"*"), b"a-*-**");
        assert_eq!(
            secret_in(&["x".into(), "--secret".into(), "v".into()]),
            Some(b"v".to_vec())
        );
        assert_eq!(secret_in(&["--secret=".into()]), None);
    }
}
