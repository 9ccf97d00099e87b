//! The job state machine driven by random verb sequences: never panics, and the terminal
//! states (Acknowledged, Cancelled) accept nothing.
#![no_main]
use ferry_transfer::state::{apply, State, Verb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut state = State::Suspended;
    for b in data {
        let verb = Verb::ALL[usize::from(*b) % Verb::ALL.len()];
        let terminal = matches!(state, State::Acknowledged | State::Cancelled);
        match apply(state, verb) {
            Ok(next) => {
                assert!(!terminal, "{state:?} accepted {verb:?}");
                state = next;
            }
            Err(_) => {}
        }
    }
});
