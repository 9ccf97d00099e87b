//! Reading the line logs the harness's servers write (nginx, Apache, squid, the Python test
//! servers): complete lines only, each parsed, and a bounded wait for at least `n` of them.

use super::nginx::read_lossy;
use super::poll;
use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

/// The complete (newline-terminated) lines of the log at `path` so far, read lossily and each
/// parsed with `parse`. A missing file reads as empty. Panics on a line `parse` rejects.
pub fn read_lines<T>(path: &Path, parse: fn(&str) -> Result<T, String>) -> Vec<T> {
    let text = read_lossy(path);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .lines()
        .map(|l| parse(l).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Waits (at most `limit`, polling every 10 ms) until the log at `path` has at least `n`
/// complete lines and returns them all. Panics if fewer appear, with
/// `expected at least {n} {what} within {limit:?}, found {count}:` followed by the lines and
/// then whatever `context` returns (for example another log of the server's).
pub fn wait_lines<T: Debug>(
    what: &str,
    path: &Path,
    n: usize,
    parse: fn(&str) -> Result<T, String>,
    limit: Duration,
    context: impl FnOnce() -> String,
) -> Vec<T> {
    let got = poll(limit, Duration::from_millis(10), || {
        let lines = read_lines(path, parse);
        (lines.len() >= n).then_some(lines)
    });
    got.unwrap_or_else(|| {
        let lines = read_lines(path, parse);
        panic!(
            "expected at least {n} {what} within {limit:?}, found {}:\n{lines:#?}{}",
            lines.len(),
            context()
        )
    })
}
