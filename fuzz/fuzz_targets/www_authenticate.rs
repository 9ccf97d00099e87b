//! Challenge parsing over fields split at `\n`, then Digest reading and scheme choice: never
//! panics, and never returns more challenges than there are bytes.
#![no_main]
use ferry_auth::credentials::SchemeSet;
use ferry_auth::{parse_challenges, policy, AuthPolicy, DigestChallenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (challenges, _) = parse_challenges(data.split(|&b| b == b'\n'));
    assert!(challenges.len() <= data.len());
    for c in &challenges {
        let _ = DigestChallenge::from_challenge(c);
    }
    if let Some((_, i)) = policy::choose(&challenges, SchemeSet::ANY, true, &AuthPolicy::default())
    {
        assert!(i < challenges.len());
    }
});
