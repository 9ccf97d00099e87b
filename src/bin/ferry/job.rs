//! `ferry job …`: BITS-style jobs (modelled on bitsadmin) working directly on the per-user
//! store (`$XDG_DATA_HOME/ferry/jobs.db`). There is no service yet: `resume` runs the job's
//! files now, in the foreground, one after another.
//!
//! Files on disk, for a destination `dir/NAME`:
//!
//! ```text
//!  dir/.NAME.ferry-part                     the finished (or, while running, staged) data
//!  dir/..NAME.ferry-part.ferry-part         the engine's partial data while transferring
//!  dir/..NAME.ferry-part.ferry-state        the engine's resume sidecar
//! ```
//!
//! The download engine renames a finished download into its destination; a job must keep
//! finished files out of place until `complete`, so the engine's destination is the job's
//! temporary file `.NAME.ferry-part`, and `complete` fsyncs and renames that into `NAME`.
use clap::{Arg, ArgAction, ArgMatches, Command};
use ferry::{RedirectPolicy, Session, SessionFetch};
use ferry_transfer::download::{self, Download, Event, Options};
use ferry_transfer::job::{
    ByteRange, FileSpec, Job, JobError, JobId, Priority, ValidationError, Validator,
};
use ferry_transfer::range;
use ferry_transfer::state::{self, State, Verb};
use ferry_transfer::store::{Store, StoreError};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::Failure;

const ABOUT: &str = "Manage BITS-style download jobs in the per-user store \
($XDG_DATA_HOME/ferry/jobs.db). There is no background service yet: jobs run only \
while 'ferry job resume JOB' runs, in the foreground.";

fn command() -> Command {
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
            .help("Print JSON")
    };
    let simple =
        |name: &'static str, about: &'static str| Command::new(name).about(about).arg(job_arg());
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
                .about("Add a file to a suspended job")
                .arg(job_arg())
                .arg(Arg::new("url").value_name("URL").required(true))
                .arg(
                    Arg::new("path")
                        .value_name("PATH")
                        .required(true)
                        .help("Destination (made absolute against the current directory)"),
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
            Command::new("info")
                .about("Show a job: state, legal verbs, files, last error")
                .arg(job_arg())
                .arg(
                    Arg::new("verbose")
                        .long("verbose")
                        .short('v')
                        .action(ArgAction::SetTrue)
                        .help("Also temporary paths, validators, timers"),
                )
                .arg(json()),
        )
        .subcommand(simple(
            "resume",
            "Run the job now, in the foreground (no service yet)",
        ))
        .subcommand(simple("suspend", "Suspend the job"))
        .subcommand(simple(
            "cancel",
            "Cancel the job and delete its temporary files",
        ))
        .subcommand(simple(
            "complete",
            "Move finished files into place (others are discarded) and end the job",
        ))
        .subcommand(
            Command::new("set-priority")
                .about("Change the job's priority")
                .arg(job_arg())
                .arg(Arg::new("priority").value_name("P").required(true)),
        )
        .subcommand(
            Command::new("set-remote-name")
                .about("Change a file's URL (FILE is the index shown by 'info')")
                .arg(job_arg())
                .arg(Arg::new("file").value_name("FILE").required(true))
                .arg(Arg::new("url").value_name("URL").required(true)),
        )
}

fn usage(message: String) -> Failure {
    Failure {
        code: 2,
        message,
        hint: Some("try 'ferry job --help'"),
    }
}

fn invalid(e: ValidationError) -> Failure {
    Failure {
        code: 2,
        message: e.to_string(),
        hint: None,
    }
}

fn store_err(e: StoreError) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
        hint: None,
    }
}

/// Runs `ferry job ARGS` (without the `job` word); returns the exit code.
pub(crate) fn main(args: Vec<OsString>) -> u8 {
    let m = match command()
        .try_get_matches_from(std::iter::once(OsString::from("ferry job")).chain(args))
    {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("ferry: (2) {first}; hint: try 'ferry job --help'");
            return 2;
        }
    };
    match run(&m) {
        Ok(()) => 0,
        Err(f) => {
            let message = f.message.replace('\n', " ");
            match f.hint {
                Some(h) => eprintln!("ferry: ({}) {message}; hint: {h}", f.code),
                None => eprintln!("ferry: ({}) {message}", f.code),
            }
            f.code
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The caller's uid: the owner of `/proc/self`.
fn my_uid() -> Result<u32, Failure> {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot find the caller's uid from /proc/self: {e}"),
            hint: None,
        })
}

fn open_store() -> Result<Store, Failure> {
    let path = ferry_transfer::store::default_path(|k| std::env::var_os(k)).map_err(store_err)?;
    Store::open(path).map_err(store_err)
}

fn arg(m: &ArgMatches, name: &str) -> String {
    m.get_one::<String>(name).cloned().unwrap_or_default()
}

/// The caller's job named by `spec`: an id, else a unique display name.
fn find(store: &Store, uid: u32, spec: &str) -> Result<Job, Failure> {
    let not_found = || Failure {
        code: 2,
        message: format!("no job '{spec}'"),
        hint: Some("'ferry job list' shows your jobs"),
    };
    if let Ok(id) = spec.parse::<JobId>() {
        return match store.load_job(&id) {
            Ok(j) if j.owner_uid() == uid => Ok(j),
            Ok(_) | Err(StoreError::NotFound(_)) => Err(not_found()),
            Err(e) => Err(store_err(e)),
        };
    }
    let mut hits: Vec<Job> = store
        .list_jobs(Some(uid))
        .map_err(store_err)?
        .into_iter()
        .filter(|j| j.display_name() == spec)
        .collect();
    match hits.len() {
        0 => Err(not_found()),
        1 => Ok(hits.remove(0)),
        n => Err(Failure {
            code: 2,
            message: format!("{n} jobs are named '{spec}'"),
            hint: Some("use the job id"),
        }),
    }
}

fn run(m: &ArgMatches) -> Result<(), Failure> {
    let (sub, m) = m
        .subcommand()
        .ok_or_else(|| usage("no job command given".into()))?;
    let uid = my_uid()?;
    let mut store = open_store()?;
    if sub == "create" {
        let mut job = Job::new(
            JobId::random().map_err(|e| Failure {
                code: 1,
                message: format!("cannot make a job id: {e}"),
                hint: None,
            })?,
            uid,
            arg(m, "name"),
            now(),
        )
        .map_err(invalid)?;
        if let Some(p) = m.get_one::<String>("priority") {
            let p: Priority = p.parse().map_err(invalid)?;
            job.set_priority(p, now()).map_err(invalid)?;
        }
        store.insert_job(&job).map_err(store_err)?;
        println!("{}", job.id());
        return Ok(());
    }
    if sub == "list" {
        let jobs = store.list_jobs(Some(uid)).map_err(store_err)?;
        if m.get_flag("json") {
            let items: Vec<String> = jobs.iter().map(|j| job_json(j, false)).collect();
            println!("[{}]", items.join(","));
        } else {
            print!("{}", table(&jobs));
        }
        return Ok(());
    }
    let mut job = find(&store, uid, &arg(m, "job"))?;
    match sub {
        "add" => {
            let url = parse_url(&arg(m, "url"))?;
            let path = absolute(&arg(m, "path"))?;
            let ranges = m
                .get_many::<String>("range")
                .into_iter()
                .flatten()
                .map(|r| r.parse::<ByteRange>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            let file = FileSpec::with_ranges(url, path, ranges).map_err(invalid)?;
            let index = job.add_file(file, now()).map_err(invalid)?;
            store.update_job(&job).map_err(store_err)?;
            println!("{index}");
        }
        "info" => {
            if m.get_flag("json") {
                println!("{}", job_json(&job, m.get_flag("verbose")));
            } else {
                print!("{}", info_text(&job, m.get_flag("verbose")));
            }
        }
        "suspend" => {
            job.apply(Verb::Suspend, now()).map_err(invalid)?;
            store.update_job(&job).map_err(store_err)?;
        }
        "cancel" => {
            job.apply(Verb::Cancel, now()).map_err(invalid)?;
            for f in job.files() {
                remove_temps(f.local());
            }
            store.update_job(&job).map_err(store_err)?;
        }
        "complete" => complete(&mut store, &mut job)?,
        "set-priority" => {
            let p: Priority = arg(m, "priority").parse().map_err(invalid)?;
            job.set_priority(p, now()).map_err(invalid)?;
            store.update_job(&job).map_err(store_err)?;
        }
        "set-remote-name" => {
            let text = arg(m, "file");
            let index: usize = text
                .parse()
                .map_err(|_| usage(format!("FILE '{text}' is not a file index")))?;
            let url = parse_url(&arg(m, "url"))?;
            job.set_remote_name(index, url, now()).map_err(invalid)?;
            store.update_job(&job).map_err(store_err)?;
        }
        "resume" => return resume(store, job),
        other => return Err(usage(format!("unknown job command '{other}'"))),
    }
    Ok(())
}

fn parse_url(text: &str) -> Result<ferry::Url, Failure> {
    ferry::Url::parse(text).map_err(|_| Failure {
        code: 3,
        message: format!("bad URL: '{text}' is not a valid absolute URL"),
        hint: Some("URLs look like http://host[:port]/path or https://…"),
    })
}

fn absolute(p: &str) -> Result<PathBuf, Failure> {
    let p = Path::new(p);
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot read the current directory: {e}"),
            hint: None,
        })
}

/// The job's temporary file for `dest`: the engine's destination (see the module docs).
fn staged(dest: &Path) -> PathBuf {
    download::temp_path(dest)
}

/// Every temporary file of one job file (never the destination).
fn temp_files(dest: &Path) -> Vec<PathBuf> {
    let s = staged(dest);
    let state = download::state_path(&s);
    let mut state_new = state.clone().into_os_string();
    state_new.push(".new");
    vec![download::temp_path(&s), state, PathBuf::from(state_new), s]
}

fn remove_temps(dest: &Path) {
    for p in temp_files(dest) {
        let _ = std::fs::remove_file(p);
    }
}

fn sync_dir(path: &Path) {
    if let Some(d) = path.parent() {
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
}

/// `complete`: fsync and rename each finished file into place; discard the others' temporary
/// files; the job becomes acknowledged. The store is updated only after every rename, so an
/// interrupted `complete` can be run again.
fn complete(store: &mut Store, job: &mut Job) -> Result<(), Failure> {
    let before = job.clone();
    job.apply(Verb::Complete, now()).map_err(invalid)?;
    for f in before.files() {
        let dest = f.local();
        let src = staged(dest);
        if f.completed && src.exists() {
            let io = |what: &str, e: std::io::Error| Failure {
                code: 23,
                message: format!("cannot {what} {}: {e}", src.display()),
                hint: None,
            };
            std::fs::File::open(&src)
                .and_then(|h| h.sync_all())
                .map_err(|e| io("sync", e))?;
            std::fs::rename(&src, dest).map_err(|e| io("rename into place", e))?;
            sync_dir(dest);
        } else if !f.completed {
            remove_temps(dest);
        }
    }
    store.update_job(job).map_err(store_err)
}

/// What the observer shares with `resume`.
struct Shared {
    store: Store,
    job: Job,
    index: usize,
}

fn job_validator(v: &download::Validator) -> Validator {
    Validator {
        etag: v.etag.clone(),
        last_modified: v.last_modified.clone(),
        length: v.length,
    }
}

fn engine_ranges(f: &FileSpec) -> Vec<range::ByteRange> {
    f.ranges()
        .iter()
        .map(|r| range::ByteRange {
            start: r.offset,
            end: r.len.map(|l| r.offset + l.saturating_sub(1)),
        })
        .collect()
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// `resume`, without a service: Queued → Connecting → Transferring → Transferred, running
/// each unfinished file now with the download engine, recording progress at checkpoints.
fn resume(mut store: Store, mut job: Job) -> Result<(), Failure> {
    // A job left connecting or transferring by an interrupted `resume` is not running: put it
    // back in the queue first (no service owns it).
    if matches!(job.state(), State::Connecting | State::Transferring) {
        job.apply(Verb::Preempt, now()).map_err(invalid)?;
    }
    job.apply(Verb::Resume, now()).map_err(invalid)?;
    job.apply(Verb::Start, now()).map_err(invalid)?;
    store.update_job(&job).map_err(store_err)?;
    let session = Session::builder().build().map_err(Failure::from)?;
    let mut fetch = SessionFetch::new(session).redirect_policy(RedirectPolicy::NoHttpsToHttp);
    for (k, v) in job.custom_headers() {
        fetch = fetch.header(k.clone(), v.clone());
    }
    let files: Vec<(usize, FileSpec)> = job
        .files()
        .iter()
        .cloned()
        .enumerate()
        .filter(|(_, f)| !f.completed)
        .collect();
    let opts_base = Options {
        allow_dynamic: job.dynamic_content(),
        rate_limit: job.rate_limit().unwrap_or(0),
        ..Options::default()
    };
    let shared = Arc::new(Mutex::new(Shared {
        store,
        job,
        index: 0,
    }));
    for (index, f) in files {
        lock(&shared).index = index;
        let stage = staged(f.local());
        let opts = Options {
            ranges: engine_ranges(&f),
            ..opts_base.clone()
        };
        let obs = Arc::clone(&shared);
        let obs_stage = stage.clone();
        let dl = Download::new(f.remote().clone(), &stage)
            .options(opts)
            .observer(move |e| observe(&obs, &obs_stage, e));
        let result = dl.run(&fetch);
        let mut g = lock(&shared);
        let Shared { store, job, .. } = &mut *g;
        match result {
            Ok(report) => {
                if job.state() == State::Connecting {
                    job.apply(Verb::Connected, now()).map_err(invalid)?;
                }
                let file = job.file_mut(index).map_err(invalid)?;
                file.bytes_total = Some(report.total);
                file.bytes_done = report.total;
                file.completed = true;
                let _ = job.apply(Verb::Progress, now());
                store.update_job(job).map_err(store_err)?;
            }
            Err(e) => {
                let error = JobError {
                    status: e.status(),
                    message: e.to_string(),
                    transient: e.is_transient(),
                };
                let to = job.fail(error, now()).map_err(invalid)?;
                store.update_job(job).map_err(store_err)?;
                let mut failure = crate::download::failure(&e, None);
                failure.message = format!(
                    "job {} is now {to}: file {index}: {}",
                    job.id(),
                    failure.message
                );
                if !failure.message.contains("hint:") {
                    failure.hint = Some("'ferry job resume JOB' tries again");
                } else {
                    failure.hint = None;
                }
                return Err(failure);
            }
        }
    }
    let mut g = lock(&shared);
    let Shared { store, job, .. } = &mut *g;
    if job.state() == State::Connecting {
        job.apply(Verb::Connected, now()).map_err(invalid)?;
    }
    job.apply(Verb::AllDone, now()).map_err(invalid)?;
    store.update_job(job).map_err(store_err)?;
    println!("{} {}", job.id(), job.state());
    Ok(())
}

/// Progress from the engine: the first sign of the server makes the job transferring;
/// checkpoints are recorded in the store (with the entity's validator from the sidecar).
fn observe(shared: &Mutex<Shared>, stage: &Path, e: &Event<'_>) {
    let mut g = lock(shared);
    let Shared { store, job, index } = &mut *g;
    let index = *index;
    match e {
        Event::Started { done, total } | Event::Progress { done, total } => {
            if job.state() == State::Connecting && job.apply(Verb::Connected, now()).is_ok() {
                let _ = store.update_job(job);
            }
            if let Ok(f) = job.file_mut(index) {
                f.bytes_done = *done;
                if total.is_some() {
                    f.bytes_total = *total;
                }
            }
        }
        Event::Restarted { .. } => {
            if let Ok(f) = job.file_mut(index) {
                f.restart();
            }
        }
        Event::Checkpoint { done } => {
            let _ = job.apply(Verb::Progress, now());
            let validator = download::load_state(stage).map(|s| job_validator(&s.validator));
            if let Ok(f) = job.file_mut(index) {
                f.bytes_done = *done;
                if validator.is_some() {
                    f.validator = validator;
                }
                let f = f.clone();
                let _ = store.record_file(&job.id(), index, &f);
            }
        }
        _ => {}
    }
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// The aligned table of `list`.
fn table(jobs: &[Job]) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "ID".into(),
        "NAME".into(),
        "STATE".into(),
        "PRIORITY".into(),
        "FILES".into(),
        "BYTES".into(),
    ]];
    for j in jobs {
        let p = j.progress();
        rows.push([
            j.id().to_string(),
            j.display_name().to_owned(),
            j.state().to_string(),
            j.priority().to_string(),
            format!("{}/{}", p.files_done, p.files_total),
            format!("{}/{}", p.bytes_done, opt_u64(p.bytes_total)),
        ]);
    }
    let mut width = [0usize; 6];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
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

fn caller_verbs(s: State) -> Vec<&'static str> {
    state::legal_verbs(s)
        .iter()
        .filter(|v| v.is_caller_verb())
        .map(|v| v.as_str())
        .collect()
}

fn info_text(j: &Job, verbose: bool) -> String {
    let mut o = String::new();
    let p = j.progress();
    let _ = writeln!(o, "id:        {}", j.id());
    let _ = writeln!(o, "name:      {}", j.display_name());
    let _ = writeln!(o, "state:     {}", j.state());
    let _ = writeln!(o, "priority:  {}", j.priority());
    let _ = writeln!(o, "files:     {}/{}", p.files_done, p.files_total);
    let _ = writeln!(o, "bytes:     {}/{}", p.bytes_done, opt_u64(p.bytes_total));
    let _ = writeln!(o, "verbs:     {}", caller_verbs(j.state()).join(", "));
    let _ = writeln!(
        o,
        "error:     {}",
        j.last_error()
            .map_or_else(|| "none".to_owned(), |e| e.to_string())
    );
    if verbose {
        let _ = writeln!(o, "owner:     {}", j.owner_uid());
        let _ = writeln!(o, "created:   {}", j.created());
        let _ = writeln!(o, "modified:  {}", j.modified());
        let _ = writeln!(o, "completed: {}", opt_u64(j.completed()));
        let _ = writeln!(o, "retry:     {} s minimum delay", j.min_retry_delay_secs());
        let _ = writeln!(o, "no-progress timeout: {} s", j.no_progress_timeout_secs());
    }
    for (i, f) in j.files().iter().enumerate() {
        let status = if f.completed { "done" } else { "pending" };
        let _ = writeln!(
            o,
            "file {i}:    {status} {}/{} {} -> {}",
            f.bytes_done,
            opt_u64(f.bytes_total),
            f.remote(),
            f.local().display()
        );
        if !f.ranges().is_empty() {
            let r: Vec<String> = f.ranges().iter().map(|r| r.to_string()).collect();
            let _ = writeln!(o, "  ranges:  {}", r.join(" "));
        }
        if verbose {
            let _ = writeln!(o, "  temp:    {}", staged(f.local()).display());
            if let Some(v) = &f.validator {
                let _ = writeln!(
                    o,
                    "  validator: etag={} last-modified={} length={}",
                    v.etag.as_deref().unwrap_or("-"),
                    v.last_modified.as_deref().unwrap_or("-"),
                    opt_u64(v.length)
                );
            }
        }
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

fn jn(v: Option<u64>) -> String {
    v.map_or_else(|| "null".to_owned(), |n| n.to_string())
}

fn job_json(j: &Job, verbose: bool) -> String {
    let p = j.progress();
    let verbs: Vec<String> = caller_verbs(j.state()).iter().map(|v| js(v)).collect();
    let files: Vec<String> = j
        .files()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let ranges: Vec<String> = f.ranges().iter().map(|r| js(&r.to_string())).collect();
            let mut s = format!(
                "{{\"index\":{i},\"url\":{},\"path\":{},\"ranges\":[{}],\"bytes_done\":{},\"bytes_total\":{},\"completed\":{}",
                js(f.remote().as_str()),
                js(&f.local().to_string_lossy()),
                ranges.join(","),
                f.bytes_done,
                jn(f.bytes_total),
                f.completed
            );
            if verbose {
                let _ = write!(s, ",\"temp\":{}", js(&staged(f.local()).to_string_lossy()));
            }
            s.push('}');
            s
        })
        .collect();
    let error = j.last_error().map_or_else(
        || "null".to_owned(),
        |e| {
            format!(
                "{{\"status\":{},\"message\":{},\"transient\":{}}}",
                jn(e.status.map(u64::from)),
                js(&e.message),
                e.transient
            )
        },
    );
    format!(
        "{{\"id\":{},\"name\":{},\"state\":{},\"priority\":{},\"files_done\":{},\"files_total\":{},\"bytes_done\":{},\"bytes_total\":{},\"verbs\":[{}],\"error\":{},\"created\":{},\"modified\":{},\"files\":[{}]}}",
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
        files.join(",")
    )
}
