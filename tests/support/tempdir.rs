//! A uniquely named directory under the system temp dir, removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static SWEEP: Once = Once::new();

/// Removes `ferry-test-*-<pid>-<n>` directories left by test processes that no longer run (the
/// cached PKI of every test binary, and the dirs of tests that were killed). Best effort, once
/// per process, bounded by the size of the temp dir listing.
fn sweep_leftovers(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.take(100_000).flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("ferry-test-")) else {
            continue;
        };
        // `<label>-<pid>-<n>`: the pid is the second number from the end.
        let mut parts = rest.rsplit('-');
        let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A directory `$TMPDIR/ferry-test-<label>-<pid>-<n>`, removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, empty directory. `label` makes leftovers recognisable (e.g. `nginx`).
    pub fn new(label: &str) -> TempDir {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        SWEEP.call_once(|| sweep_leftovers(&base));
        // Bounded: a name can only be taken by a leftover of an earlier process with our pid.
        for _ in 0..1000 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("ferry-test-{label}-{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
        panic!("cannot find a free temp dir name under {}", base.display())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(rel)`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Keeps the directory on disk (for post-mortems) and returns its path.
    pub fn keep(self) -> PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
