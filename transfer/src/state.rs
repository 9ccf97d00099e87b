//! The BITS job state machine: states, verbs, and the one table of legal transitions.
//!
//! Every change of a job's state goes through [`apply`], which looks the `(state, verb)` pair
//! up in [`TRANSITIONS`]. A pair that is not in the table is an [`IllegalTransition`] whose
//! message says what is legal instead. Pure data: no I/O, no clock.
//!
//! Choices (BITS leaves some of them open; they are ours and tested):
//! - New jobs start [`State::Suspended`]. Files are added only while the job is suspended, so
//!   the engine never sees the file list change under it (suspend, add, resume).
//! - `resume` on a job that is already queued, connecting or transferring, and `suspend` on a
//!   suspended job, are accepted and change nothing (scripts may repeat them).
//! - `complete` is legal in every non-final state, not only [`State::Transferred`]: completing
//!   early keeps only the files that finished (BITS's partial complete); the others' temporary
//!   files are deleted by the engine.
//! - `set-remote-name` needs the job not to be running (suspended, transient error or error),
//!   as BITS's "suspend, change, resume".
//! - [`Verb::Preempt`] (an engine event not in BITS's public API) moves a running job back to
//!   queued: the end of a round-robin time slice, a higher-priority job taking the background
//!   slot, or recovery after the service restarted while the job was running.
//! - [`State::Acknowledged`] and [`State::Cancelled`] are final: they accept nothing.

use std::fmt;
use std::str::FromStr;

/// A job's BITS state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Not scheduled; every new job starts here.
    Suspended,
    /// Waiting for the scheduler to give it a slot.
    Queued,
    /// The engine is connecting to the server.
    Connecting,
    /// Bytes are flowing.
    Transferring,
    /// A recoverable error; retried after the minimum retry delay.
    TransientError,
    /// A final error until the caller resumes (or cancels) the job.
    Error,
    /// Every file is transferred; waiting for `complete` or `cancel`.
    Transferred,
    /// Completed: files renamed into place. Final.
    Acknowledged,
    /// Cancelled: temporary files removed. Final.
    Cancelled,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 9] = [
        State::Suspended,
        State::Queued,
        State::Connecting,
        State::Transferring,
        State::TransientError,
        State::Error,
        State::Transferred,
        State::Acknowledged,
        State::Cancelled,
    ];

    /// The bitsadmin-style name (`SUSPENDED`, `TRANSIENT_ERROR`, …), also used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Suspended => "SUSPENDED",
            State::Queued => "QUEUED",
            State::Connecting => "CONNECTING",
            State::Transferring => "TRANSFERRING",
            State::TransientError => "TRANSIENT_ERROR",
            State::Error => "ERROR",
            State::Transferred => "TRANSFERRED",
            State::Acknowledged => "ACKNOWLEDGED",
            State::Cancelled => "CANCELLED",
        }
    }

    /// True for the final states (acknowledged, cancelled), which accept no verb.
    pub fn is_final(self) -> bool {
        matches!(self, State::Acknowledged | State::Cancelled)
    }

    /// True while the engine works on the job (connecting or transferring).
    pub fn is_active(self) -> bool {
        matches!(self, State::Connecting | State::Transferring)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown state name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState(pub String);

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown job state '{}' (expected one of SUSPENDED, QUEUED, CONNECTING, TRANSFERRING, \
             TRANSIENT_ERROR, ERROR, TRANSFERRED, ACKNOWLEDGED, CANCELLED)",
            self.0.escape_debug()
        )
    }
}

impl std::error::Error for UnknownState {}

impl FromStr for State {
    type Err = UnknownState;

    /// Parses a bitsadmin-style name, case-insensitively; `-` may stand for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().replace('-', "_");
        State::ALL
            .iter()
            .copied()
            .find(|st| st.as_str().eq_ignore_ascii_case(&norm))
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Something that may change a job's state: a caller's verb or an engine event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    // --- caller verbs (the CLI / service API) ---
    /// Schedule the job (also re-arms a job in error or transient error).
    Resume,
    /// Stop scheduling the job.
    Suspend,
    /// Abandon the job and delete its temporary files.
    Cancel,
    /// Rename finished files into place and end the job.
    Complete,
    /// Add a file to the job.
    AddFile,
    /// Change a file's remote URL.
    SetRemoteName,
    /// Change the job's priority.
    SetPriority,
    /// Change any other property (name, notify command, credentials, proxy, headers, timers…).
    SetProperty,
    // --- engine events ---
    /// The scheduler picked the job and starts connecting.
    Start,
    /// A connection is up and the server answered.
    Connected,
    /// Bytes arrived (no state change; resets the no-progress timer).
    Progress,
    /// Every file is transferred.
    AllDone,
    /// A recoverable failure (network, timeout, 408, 429, 5xx, blocked by policy).
    TransientFailure,
    /// A final failure (other 4xx, certificate, refused credentials, corrupt response…).
    FatalFailure,
    /// The retry delay elapsed (or the network came back): queue the job again.
    RetryDue,
    /// No progress for the no-progress timeout: the transient error becomes final.
    NoProgressTimeout,
    /// The engine stopped working on the job without an error (time slice over, preempted by
    /// a higher priority, or the service restarted while it ran).
    Preempt,
}

impl Verb {
    /// Every verb, in declaration order.
    pub const ALL: [Verb; 17] = [
        Verb::Resume,
        Verb::Suspend,
        Verb::Cancel,
        Verb::Complete,
        Verb::AddFile,
        Verb::SetRemoteName,
        Verb::SetPriority,
        Verb::SetProperty,
        Verb::Start,
        Verb::Connected,
        Verb::Progress,
        Verb::AllDone,
        Verb::TransientFailure,
        Verb::FatalFailure,
        Verb::RetryDue,
        Verb::NoProgressTimeout,
        Verb::Preempt,
    ];

    /// The CLI-style name (`resume`, `add-file`, `transient-failure`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Resume => "resume",
            Verb::Suspend => "suspend",
            Verb::Cancel => "cancel",
            Verb::Complete => "complete",
            Verb::AddFile => "add-file",
            Verb::SetRemoteName => "set-remote-name",
            Verb::SetPriority => "set-priority",
            Verb::SetProperty => "set-property",
            Verb::Start => "start",
            Verb::Connected => "connected",
            Verb::Progress => "progress",
            Verb::AllDone => "all-done",
            Verb::TransientFailure => "transient-failure",
            Verb::FatalFailure => "fatal-failure",
            Verb::RetryDue => "retry-due",
            Verb::NoProgressTimeout => "no-progress-timeout",
            Verb::Preempt => "preempt",
        }
    }

    /// True for the verbs a caller may send; false for engine events.
    pub fn is_caller_verb(self) -> bool {
        matches!(
            self,
            Verb::Resume
                | Verb::Suspend
                | Verb::Cancel
                | Verb::Complete
                | Verb::AddFile
                | Verb::SetRemoteName
                | Verb::SetPriority
                | Verb::SetProperty
        )
    }

    /// The phrase used in error messages: "cannot {phrase} a job that is …".
    fn phrase(self) -> &'static str {
        match self {
            Verb::Resume => "resume",
            Verb::Suspend => "suspend",
            Verb::Cancel => "cancel",
            Verb::Complete => "complete",
            Verb::AddFile => "add a file to",
            Verb::SetRemoteName => "change a file's remote name in",
            Verb::SetPriority => "change the priority of",
            Verb::SetProperty => "change a property of",
            Verb::Start => "start",
            Verb::Connected => "mark as connected",
            Verb::Progress => "record progress for",
            Verb::AllDone => "mark as transferred",
            Verb::TransientFailure => "record a transient failure for",
            Verb::FatalFailure => "record a fatal failure for",
            Verb::RetryDue => "retry",
            Verb::NoProgressTimeout => "time out",
            Verb::Preempt => "preempt",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use State::{
    Acknowledged, Cancelled, Connecting, Error, Queued, Suspended, Transferred, Transferring,
    TransientError,
};
use Verb::{
    AddFile, AllDone, Cancel, Complete, Connected, FatalFailure, NoProgressTimeout, Preempt,
    Progress, Resume, RetryDue, SetPriority, SetProperty, SetRemoteName, Start, Suspend,
    TransientFailure,
};

/// THE table of legal transitions: `(from, verb, to)`. A pair not listed is illegal.
/// Final states (Acknowledged, Cancelled) appear in no row: they accept nothing.
#[rustfmt::skip]
pub const TRANSITIONS: &[(State, Verb, State)] = &[
    // from             verb                 to
    // --- resume: schedule (re-arms errors); a no-op on a job already scheduled or running
    (Suspended,       Resume,             Queued),
    (TransientError,  Resume,             Queued),
    (Error,           Resume,             Queued),
    (Queued,          Resume,             Queued),
    (Connecting,      Resume,             Connecting),
    (Transferring,    Resume,             Transferring),
    // --- suspend: stop scheduling; a no-op on a suspended job; not once transferred
    (Suspended,       Suspend,            Suspended),
    (Queued,          Suspend,            Suspended),
    (Connecting,      Suspend,            Suspended),
    (Transferring,    Suspend,            Suspended),
    (TransientError,  Suspend,            Suspended),
    (Error,           Suspend,            Suspended),
    // --- cancel: from any non-final state
    (Suspended,       Cancel,             Cancelled),
    (Queued,          Cancel,             Cancelled),
    (Connecting,      Cancel,             Cancelled),
    (Transferring,    Cancel,             Cancelled),
    (TransientError,  Cancel,             Cancelled),
    (Error,           Cancel,             Cancelled),
    (Transferred,     Cancel,             Cancelled),
    // --- complete: normally from Transferred; earlier keeps only the finished files
    (Transferred,     Complete,           Acknowledged),
    (Suspended,       Complete,           Acknowledged),
    (Queued,          Complete,           Acknowledged),
    (Connecting,      Complete,           Acknowledged),
    (Transferring,    Complete,           Acknowledged),
    (TransientError,  Complete,           Acknowledged),
    (Error,           Complete,           Acknowledged),
    // --- add-file: only while suspended
    (Suspended,       AddFile,            Suspended),
    // --- set-remote-name: only while not running and not transferred
    (Suspended,       SetRemoteName,      Suspended),
    (TransientError,  SetRemoteName,      TransientError),
    (Error,           SetRemoteName,      Error),
    // --- set-priority / set-property: any non-final state, no state change
    (Suspended,       SetPriority,        Suspended),
    (Queued,          SetPriority,        Queued),
    (Connecting,      SetPriority,        Connecting),
    (Transferring,    SetPriority,        Transferring),
    (TransientError,  SetPriority,        TransientError),
    (Error,           SetPriority,        Error),
    (Transferred,     SetPriority,        Transferred),
    (Suspended,       SetProperty,        Suspended),
    (Queued,          SetProperty,        Queued),
    (Connecting,      SetProperty,        Connecting),
    (Transferring,    SetProperty,        Transferring),
    (TransientError,  SetProperty,        TransientError),
    (Error,           SetProperty,        Error),
    (Transferred,     SetProperty,        Transferred),
    // --- engine events
    (Queued,          Start,              Connecting),
    (Connecting,      Connected,          Transferring),
    (Transferring,    Progress,           Transferring),
    (Transferring,    AllDone,            Transferred),
    (Queued,          TransientFailure,   TransientError),
    (Connecting,      TransientFailure,   TransientError),
    (Transferring,    TransientFailure,   TransientError),
    (Queued,          FatalFailure,       Error),
    (Connecting,      FatalFailure,       Error),
    (Transferring,    FatalFailure,       Error),
    (TransientError,  RetryDue,           Queued),
    (TransientError,  NoProgressTimeout,  Error),
    (Connecting,      Preempt,            Queued),
    (Transferring,    Preempt,            Queued),
];

/// A verb that is not legal in the job's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The state the job was in.
    pub state: State,
    /// The verb that was refused.
    pub verb: Verb,
}

impl IllegalTransition {
    /// Advice for the caller: what to do instead.
    fn hint(&self) -> String {
        let st = self.state;
        if st.is_final() {
            return format!("a job that is {st} is finished and accepts nothing");
        }
        match (st, self.verb) {
            (Transferred, Resume | Suspend | AddFile | SetRemoteName) => {
                "every file is transferred: complete it to keep the files, or cancel it".to_owned()
            }
            (_, AddFile) => {
                "files can be added only while the job is SUSPENDED: suspend it first".to_owned()
            }
            (_, SetRemoteName) => {
                "a remote name can be changed only while the job is SUSPENDED, TRANSIENT_ERROR or \
                 ERROR: suspend it first"
                    .to_owned()
            }
            _ => {
                let legal: Vec<&str> = legal_verbs(st).iter().map(|v| v.as_str()).collect();
                format!("legal in {st}: {}", legal.join(", "))
            }
        }
    }
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} a job that is {}: {}",
            self.verb.phrase(),
            self.state,
            self.hint()
        )
    }
}

impl std::error::Error for IllegalTransition {}

/// The state after `verb` in `state`, or the illegal pair. Looks the pair up in [`TRANSITIONS`].
pub fn apply(state: State, verb: Verb) -> Result<State, IllegalTransition> {
    TRANSITIONS
        .iter()
        .find(|(from, v, _)| *from == state && *v == verb)
        .map(|&(_, _, to)| to)
        .ok_or(IllegalTransition { state, verb })
}

/// True when `verb` is legal in `state`.
pub fn is_legal(state: State, verb: Verb) -> bool {
    apply(state, verb).is_ok()
}

/// The verbs legal in `state`, in [`Verb::ALL`] order (engine events included; filter with
/// [`Verb::is_caller_verb`] for display). Kept equal to the table by a test.
pub fn legal_verbs(state: State) -> &'static [Verb] {
    match state {
        Suspended => &[
            Resume,
            Suspend,
            Cancel,
            Complete,
            AddFile,
            SetRemoteName,
            SetPriority,
            SetProperty,
        ],
        Queued => &[
            Resume,
            Suspend,
            Cancel,
            Complete,
            SetPriority,
            SetProperty,
            Start,
            TransientFailure,
            FatalFailure,
        ],
        Connecting => &[
            Resume,
            Suspend,
            Cancel,
            Complete,
            SetPriority,
            SetProperty,
            Connected,
            TransientFailure,
            FatalFailure,
            Preempt,
        ],
        Transferring => &[
            Resume,
            Suspend,
            Cancel,
            Complete,
            SetPriority,
            SetProperty,
            Progress,
            AllDone,
            TransientFailure,
            FatalFailure,
            Preempt,
        ],
        TransientError => &[
            Resume,
            Suspend,
            Cancel,
            Complete,
            SetRemoteName,
            SetPriority,
            SetProperty,
            RetryDue,
            NoProgressTimeout,
        ],
        Error => &[
            Resume,
            Suspend,
            Cancel,
            Complete,
            SetRemoteName,
            SetPriority,
            SetProperty,
        ],
        Transferred => &[Cancel, Complete, SetPriority, SetProperty],
        Acknowledged | Cancelled => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicate_pairs() {
        for (i, a) in TRANSITIONS.iter().enumerate() {
            for b in &TRANSITIONS[i + 1..] {
                assert!(!(a.0 == b.0 && a.1 == b.1), "duplicate row {a:?} / {b:?}");
            }
        }
    }

    #[test]
    fn legal_verbs_match_the_table() {
        for st in State::ALL {
            let from_table: Vec<Verb> = Verb::ALL
                .iter()
                .copied()
                .filter(|v| is_legal(st, *v))
                .collect();
            assert_eq!(legal_verbs(st), from_table.as_slice(), "state {st}");
        }
    }

    #[test]
    fn state_names_round_trip() {
        for st in State::ALL {
            assert_eq!(st.as_str().parse::<State>(), Ok(st));
            assert_eq!(st.as_str().to_lowercase().parse::<State>(), Ok(st));
        }
        assert_eq!("transient-error".parse::<State>(), Ok(TransientError));
        assert!("nope".parse::<State>().is_err());
    }
}
