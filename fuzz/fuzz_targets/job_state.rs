//! The job state machine driven by random verb sequences: never panics, and the terminal
//! states (Acknowledged, Cancelled) accept nothing, `is_legal` agrees with `apply`, a refusal names the
//! state and verb it refused, and every state's name parses back to it.
#![no_main]
use ferry_transfer::state::{apply, is_legal, State, Verb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut state = State::Suspended;
    for b in data {
        let verb = Verb::ALL[usize::from(*b) % Verb::ALL.len()];
        let terminal = matches!(state, State::Acknowledged | State::Cancelled);
        assert_eq!(terminal, state.is_final());
        assert_eq!(state.as_str().parse::<State>(), Ok(state));
        let result = apply(state, verb);
        assert_eq!(result.is_ok(), is_legal(state, verb));
        match result {
            Ok(next) => {
                assert!(!terminal, "{state:?} accepted {verb:?}");
                state = next;
            }
            Err(e) => assert!(e.state == state && e.verb == verb, "{e:?}"),
        }
    }
});
