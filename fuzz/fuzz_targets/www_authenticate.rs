//! Challenge parsing over fields split at `\n`, then Digest reading and scheme choice: never
//! panics, never returns more challenges than there are bytes, and every challenge has a
//! non-empty lowercase token scheme and lowercase parameter names, with values free of ASCII
//! control bytes other than HTAB (obs-text, even C1 controls in UTF-8, is allowed).
#![no_main]
use ferry_auth::credentials::SchemeSet;
use ferry_auth::{parse_challenges, policy, AuthPolicy, DigestChallenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (challenges, _) = parse_challenges(data.split(|&b| b == b'\n'));
    assert!(challenges.len() <= data.len());
    for c in &challenges {
        assert!(
            !c.scheme.is_empty() && c.scheme == c.scheme.to_ascii_lowercase(),
            "{c:?}"
        );
        for (name, value) in &c.params {
            assert!(
                !name.is_empty() && *name == name.to_ascii_lowercase(),
                "{c:?}"
            );
            assert!(
                !value.chars().any(|ch| ch.is_ascii_control() && ch != '\t'),
                "{c:?}"
            );
        }
        let _ = DigestChallenge::from_challenge(c);
    }
    if let Some((_, i)) = policy::choose(&challenges, SchemeSet::ANY, true, &AuthPolicy::default())
    {
        assert!(i < challenges.len());
    }
});
