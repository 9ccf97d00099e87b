//! Runs one command and reports its wall time, CPU time and peak RSS, for `bench/run.py`.
//!
//! ```text
//! measure <report-file> <program> [args...]
//! ```
//!
//! The command inherits stdin, stdout and stderr. When it has exited, one JSON line goes to
//! `<report-file>`: `{"status":…,"wall_s":…,"user_s":…,"sys_s":…,"maxrss_kib":…}`, and measure
//! exits with the command's exit code (128 + signal when it was killed).
//!
//! Why not measure from Python directly: Linux carries the pre-`exec` image's peak RSS into the
//! child's `ru_maxrss`, so a child forked from a 14 MiB Python reports at least 14 MiB whatever
//! it uses. This launcher forks (not posix_spawn) so that the child carries over only the
//! launcher's few anonymous pages: `/bin/true` measures about 1 MiB, which is `true` itself.
//! `run.py` prints that floor next to the results.
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::time::Instant;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: measure <report-file> <program> [args...]");
        std::process::exit(2);
    }
    let t0 = Instant::now();
    let mut cmd = Command::new(&args[1]);
    cmd.args(&args[2..]);
    // SAFETY: prctl is async-signal-safe. A pre_exec hook also makes std fork() instead of
    // posix_spawn() (a CLONE_VM spawn): a forked child starts with only the launcher's anonymous
    // pages resident, which lowers the RSS floor that `exec` carries over.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("measure: cannot run {:?}: {e}", args[1]);
            std::process::exit(127);
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    // The only child has been waited for, so RUSAGE_CHILDREN is that child's usage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let line = format!(
        "{{\"status\":{},\"wall_s\":{:.6},\"user_s\":{:.6},\"sys_s\":{:.6},\"maxrss_kib\":{}}}\n",
        code,
        wall,
        tv(ru.ru_utime),
        tv(ru.ru_stime),
        ru.ru_maxrss
    );
    if let Err(e) = std::fs::File::create(&args[0]).and_then(|mut f| f.write_all(line.as_bytes()))
    {
        eprintln!("measure: writing {:?}: {e}", args[0]);
        std::process::exit(125);
    }
    std::process::exit(code);
}
