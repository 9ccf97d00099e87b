//! A job file's places on disk before `complete`, and what `complete` and `cancel` do to them.
//!
//! ```text
//!  dir/NAME                                 the destination: appears only at `complete`
//!  dir/.NAME.ferry-part                     the job's staged file: finished data waits here
//!  dir/..NAME.ferry-part.ferry-part         the download engine's partial data
//!  dir/..NAME.ferry-part.ferry-state        the engine's resume sidecar (+ `.new` while written)
//!  dir/..NAME.ferry-part.ferry-lock         held by the run writing the file
//! ```
//!
//! The download engine renames a finished download into *its* destination; a job must keep
//! finished files out of place until `complete`, so the engine's destination is the staged
//! file, and `complete` fsyncs and renames that into `NAME`.
use crate::download;
use crate::job::Job;
use std::io;
use std::path::{Path, PathBuf};

/// The job's staged file for `dest` (the engine's destination).
pub fn staged(dest: &Path) -> PathBuf {
    download::temp_path(dest)
}

/// Every temporary file of one job file, never the destination itself.
pub fn temporaries(dest: &Path) -> Vec<PathBuf> {
    let s = staged(dest);
    let state = download::state_path(&s);
    let mut state_new = state.clone().into_os_string();
    state_new.push(".new");
    vec![
        download::temp_path(&s),
        state,
        PathBuf::from(state_new),
        download::lock_path(&s),
        s,
    ]
}

/// Removes every temporary file of one job file (missing ones are fine).
pub fn remove_temporaries(dest: &Path) {
    for p in temporaries(dest) {
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

/// What `complete` does on disk: each finished file's staged data is fsynced and renamed into
/// place (then its directory fsynced); unfinished files' temporaries are removed. Idempotent:
/// a file already renamed is skipped, so an interrupted `complete` can run again. Call it
/// before recording the job as acknowledged.
pub fn complete(job: &Job) -> io::Result<()> {
    for f in job.files() {
        let dest = f.local();
        let src = staged(dest);
        if f.completed {
            if src.exists() {
                std::fs::File::open(&src)?.sync_all()?;
                std::fs::rename(&src, dest)?;
                sync_dir(dest);
            }
        } else {
            remove_temporaries(dest);
        }
    }
    Ok(())
}

/// What `cancel` does on disk: every temporary file of every file goes; destinations (which
/// exist only after a `complete`) are never touched.
pub fn cancel(job: &Job) {
    for f in job.files() {
        remove_temporaries(f.local());
    }
}
