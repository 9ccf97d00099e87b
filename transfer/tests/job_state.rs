//! The state table: every (state, verb) pair against an independent grid, the messages of
//! illegal verbs, and random verb sequences (state machine and whole jobs).

use ferry_transfer::job::{FileSpec, Job, JobError, JobId, NotifyCommand, Priority};
use ferry_transfer::state::{apply, legal_verbs, State, Verb, TRANSITIONS};
use url::Url;

/// The expected result of every pair, written as a grid independent of `TRANSITIONS`.
/// Columns follow `Verb::ALL`; a cell is the target state's code, or `--` when illegal.
/// Codes: SU QU CO TR TE ER TD AC CA.
const GRID: &str = "
#            Res Sus Can Cmp Add SRN SPr SPp Sta Con Pro All TFa FFa Ret NPT Pre
Suspended     QU  SU  CA  AC  SU  SU  SU  SU  --  --  --  --  --  --  --  --  --
Queued        QU  SU  CA  AC  --  --  QU  QU  CO  --  --  --  TE  ER  --  --  --
Connecting    CO  SU  CA  AC  --  --  CO  CO  --  TR  --  --  TE  ER  --  --  QU
Transferring  TR  SU  CA  AC  --  --  TR  TR  --  --  TR  TD  TE  ER  --  --  QU
TransientErr  QU  SU  CA  AC  --  TE  TE  TE  --  --  --  --  --  --  QU  ER  --
Error         QU  SU  CA  AC  --  ER  ER  ER  --  --  --  --  --  --  --  --  --
Transferred   --  --  CA  AC  --  --  TD  TD  --  --  --  --  --  --  --  --  --
Acknowledged  --  --  --  --  --  --  --  --  --  --  --  --  --  --  --  --  --
Cancelled     --  --  --  --  --  --  --  --  --  --  --  --  --  --  --  --  --
";

fn code(c: &str) -> Option<State> {
    Some(match c {
        "SU" => State::Suspended,
        "QU" => State::Queued,
        "CO" => State::Connecting,
        "TR" => State::Transferring,
        "TE" => State::TransientError,
        "ER" => State::Error,
        "TD" => State::Transferred,
        "AC" => State::Acknowledged,
        "CA" => State::Cancelled,
        "--" => return None,
        other => panic!("bad code {other}"),
    })
}

fn grid() -> Vec<(State, Vec<Option<State>>)> {
    let rows: Vec<&str> = GRID
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rows.len(), State::ALL.len());
    rows.iter()
        .zip(State::ALL)
        .map(|(line, st)| {
            let cells: Vec<Option<State>> = line.split_whitespace().skip(1).map(code).collect();
            assert_eq!(cells.len(), Verb::ALL.len(), "row {st}");
            (st, cells)
        })
        .collect()
}

#[test]
fn every_pair_matches_the_grid() {
    let mut legal = 0;
    for (st, cells) in grid() {
        for (verb, want) in Verb::ALL.iter().zip(cells) {
            let got = apply(st, *verb);
            match want {
                Some(to) => {
                    assert_eq!(got, Ok(to), "{st} + {verb}");
                    legal += 1;
                }
                None => {
                    let e = got.expect_err(&format!("{st} + {verb} should be illegal"));
                    assert_eq!((e.state, e.verb), (st, *verb));
                }
            }
        }
    }
    assert_eq!(
        legal,
        TRANSITIONS.len(),
        "the table has rows the grid lacks"
    );
}

#[test]
fn legal_verbs_lists_exactly_the_legal_ones() {
    for (st, cells) in grid() {
        let want: Vec<Verb> = Verb::ALL
            .iter()
            .zip(cells)
            .filter(|(_, c)| c.is_some())
            .map(|(v, _)| *v)
            .collect();
        assert_eq!(legal_verbs(st), want.as_slice(), "{st}");
    }
}

#[test]
fn final_states_accept_nothing() {
    for st in [State::Acknowledged, State::Cancelled] {
        assert!(st.is_final());
        assert!(legal_verbs(st).is_empty());
        for v in Verb::ALL {
            let e = apply(st, v).unwrap_err();
            assert!(
                e.to_string().contains("finished and accepts nothing"),
                "{e}"
            );
        }
    }
}

#[test]
fn illegal_messages_say_what_is_legal() {
    let e = apply(State::Queued, Verb::AddFile).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot add a file to a job that is QUEUED: files can be added only while the job is \
         SUSPENDED: suspend it first"
    );
    let e = apply(State::Transferred, Verb::Resume).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot resume a job that is TRANSFERRED: every file is transferred: complete it to keep \
         the files, or cancel it"
    );
    let e = apply(State::Cancelled, Verb::Complete).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot complete a job that is CANCELLED: a job that is CANCELLED is finished and \
         accepts nothing"
    );
    let e = apply(State::Suspended, Verb::Start).unwrap_err();
    assert!(e.to_string().starts_with("cannot start a job that is SUSPENDED: legal in SUSPENDED: resume, suspend, cancel, complete"), "{e}");
    let e = apply(State::Transferring, Verb::SetRemoteName).unwrap_err();
    assert!(e.to_string().contains("suspend it first"), "{e}");
    // Every illegal pair has a message naming the state.
    for st in State::ALL {
        for v in Verb::ALL {
            if let Err(e) = apply(st, v) {
                let m = e.to_string();
                assert!(m.starts_with("cannot ") && m.contains(st.as_str()), "{m}");
            }
        }
    }
}

#[test]
fn bits_rules_hold() {
    use State::*;
    for st in [Suspended, TransientError, Error] {
        assert_eq!(apply(st, Verb::Resume), Ok(Queued));
    }
    for st in [Queued, Connecting, Transferring, TransientError, Error] {
        assert_eq!(apply(st, Verb::Suspend), Ok(Suspended));
    }
    for st in State::ALL {
        let c = apply(st, Verb::Cancel);
        assert_eq!(c.is_ok(), !st.is_final(), "cancel from {st}");
        let c = apply(st, Verb::Complete);
        assert_eq!(c.is_ok(), !st.is_final(), "complete from {st}");
        if let Ok(to) = c {
            assert_eq!(to, Acknowledged);
        }
        assert_eq!(apply(st, Verb::AddFile).is_ok(), st == Suspended);
    }
}

/// xorshift64*: a small deterministic generator for the property tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_verb_sequences_never_panic_and_final_states_absorb() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut reached = std::collections::HashSet::new();
    for _ in 0..20_000 {
        let mut st = State::Suspended;
        let mut finished: Option<State> = None;
        for _ in 0..rng.below(60) {
            let v = Verb::ALL[rng.below(Verb::ALL.len())];
            match apply(st, v) {
                Ok(to) => {
                    assert!(finished.is_none(), "{st} accepted {v}");
                    st = to;
                }
                Err(e) => {
                    assert_eq!((e.state, e.verb), (st, v));
                    assert!(!e.to_string().is_empty());
                }
            }
            reached.insert(st);
            if st.is_final() {
                finished.get_or_insert(st);
                assert_eq!(Some(st), finished);
            }
        }
    }
    assert_eq!(reached.len(), State::ALL.len(), "every state reached");
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[test]
fn random_job_operations_keep_the_invariants() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for round in 0..2_000u64 {
        let mut job = Job::new(JobId::from_bytes([round as u8; 16]), 1000, "prop", 0).unwrap();
        let mut now = 0u64;
        for step in 0..rng.below(80) {
            now += rng.below(2_000) as u64;
            let before = job.clone();
            let r: Result<(), String> = match rng.below(8) {
                0 => job
                    .add_file(
                        FileSpec::new(
                            url("http://example.test/f"),
                            format!("/tmp/ferry-prop/{step}"),
                        )
                        .unwrap(),
                        now,
                    )
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                1 => job
                    .fail(
                        JobError {
                            status: Some(503),
                            message: "busy".into(),
                            transient: rng.below(3) != 0,
                        },
                        now,
                    )
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                2 => job
                    .set_priority(Priority::ALL[rng.below(4)], now)
                    .map_err(|e| e.to_string()),
                3 => job
                    .set_notify(
                        Some(NotifyCommand::new("/bin/true", vec!["a b".into()]).unwrap()),
                        now,
                    )
                    .map_err(|e| e.to_string()),
                4 => {
                    if let Some(v) = job.due_event(now) {
                        job.apply(v, now).map(|_| ()).map_err(|e| e.to_string())
                    } else {
                        Ok(())
                    }
                }
                5 => {
                    let i = rng.below(job.files().len() + 1);
                    job.set_min_retry_delay_secs(rng.below(1_000) as u64, now)
                        .map(|d| assert!(d >= 5))
                        .map_err(|e| e.to_string())
                        .and_then(|_| {
                            job.set_remote_name(i, url("https://mirror.test/f"), now)
                                .map_err(|e| e.to_string())
                        })
                }
                _ => {
                    let v = Verb::ALL[rng.below(Verb::ALL.len())];
                    let want = apply(job.state(), v);
                    let got = job.apply(v, now);
                    if let (Ok(w), Ok(g)) = (want, &got) {
                        assert_eq!(w, *g);
                    }
                    got.map(|_| ()).map_err(|e| e.to_string())
                }
            };
            if let Err(msg) = &r {
                assert!(!msg.is_empty());
            }
            if before.state().is_final() {
                assert_eq!(job.state(), before.state(), "final state left");
            }
            if job.state() != State::TransientError {
                assert_eq!(job.retry_at(), None, "retry time outside transient error");
            }
            if job.state().is_final() {
                assert_eq!(job.notify_due(), None);
            }
            assert!(job.min_retry_delay_secs() >= 5);
            assert!(job.files_done() <= job.files().len());
        }
    }
}
