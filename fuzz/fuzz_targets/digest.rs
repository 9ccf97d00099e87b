//! Digest challenge parameters (RFC 7616): arbitrary parameters, reached both through the
//! challenge parser (`WWW-Authenticate: Digest …` text) and set directly on a
//! [`DigestChallenge`], with arbitrary credentials, method, URI, cnonce and body.
//!
//! Input: `[flags, field \n field \n …]` with fields realm, nonce, opaque, user, password,
//! method, uri, cnonce, body (`flags` bit 0: the first field is a whole challenge value to parse
//! instead; bits 1–3: algorithm; 4–5: qop offered; 6: userhash; 7: stale).
//!
//! Asserts: never panics; a response is a valid header value with no CR, LF, NUL or other
//! control character (I6); it parses back (with ferry's own challenge parser, the same
//! auth-param grammar) into exactly the realm, nonce, URI, opaque, algorithm and user it was
//! computed for, with a response digest of the algorithm's length in lowercase hex; it is
//! deterministic for a given cnonce; and `nc` counts 1, 2 on one session.
#![no_main]
use ferry_auth::{parse_challenges, Credentials, DigestAlgorithm, DigestChallenge, DigestSession};
use libfuzzer_sys::fuzz_target;

const ALGORITHMS: [DigestAlgorithm; 6] = [
    DigestAlgorithm::Md5,
    DigestAlgorithm::Md5Sess,
    DigestAlgorithm::Sha256,
    DigestAlgorithm::Sha256Sess,
    DigestAlgorithm::Sha512_256,
    DigestAlgorithm::Sha512_256Sess,
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut f = text.split('\n');
    let mut next = || f.next().unwrap_or_default();
    let challenge = if flags & 1 != 0 {
        let value = next();
        let (challenges, _) = parse_challenges([value.as_bytes()]);
        let Some(Ok(c)) = challenges
            .iter()
            .find(|c| c.is("digest"))
            .map(DigestChallenge::from_challenge)
        else {
            return;
        };
        c
    } else {
        let (realm, nonce, opaque) = (next(), next(), next());
        DigestChallenge {
            realm: realm.to_owned(),
            nonce: nonce.to_owned(),
            opaque: (!opaque.is_empty()).then(|| opaque.to_owned()),
            algorithm: ALGORITHMS[usize::from(flags >> 1 & 7) % ALGORITHMS.len()],
            qop_auth: flags & 16 != 0,
            qop_auth_int: flags & 32 != 0,
            stale: flags & 128 != 0,
            userhash: flags & 64 != 0,
        }
    };
    let (user, password, method, uri, cnonce) = (next(), next(), next(), next(), next());
    let body = next();
    let creds = Credentials::new(user, password);
    let body = (!body.is_empty()).then_some(body.as_bytes());

    let mut session = DigestSession::new(challenge.clone());
    let Ok(v) = session.respond(&creds, method, uri, body, Some(cnonce)) else {
        return;
    };
    assert!(!v.contains(['\r', '\n', '\0']), "{v:?}");
    assert!(!v.chars().any(char::is_control), "{v:?}");
    assert!(http::HeaderValue::from_str(&v).is_ok(), "{v:?}");
    assert!(v.starts_with("Digest "));

    // Deterministic for a given cnonce; nc counts per session.
    let mut again = DigestSession::new(challenge.clone());
    assert_eq!(
        again
            .respond(&creds, method, uri, body, Some(cnonce))
            .ok()
            .as_deref(),
        Some(v.as_str())
    );
    let second = session
        .respond(&creds, method, uri, body, Some(cnonce))
        .expect("a second response on the same session");

    // Parse it back with the same auth-param grammar.
    if v.len() > ferry_auth::challenge::MAX_CHALLENGE_BYTES {
        return;
    }
    let (parsed, malformed) = parse_challenges([v.as_bytes()]);
    assert!(malformed.is_empty(), "{v:?}: {malformed:?}");
    assert_eq!(parsed.len(), 1, "{v:?}: {parsed:?}");
    let p = &parsed[0];
    assert!(p.is("digest") && p.token68.is_none());
    let alg = challenge.algorithm;
    assert_eq!(p.param("realm"), Some(challenge.realm.as_str()));
    assert_eq!(p.param("nonce"), Some(challenge.nonce.as_str()));
    assert_eq!(p.param("uri"), Some(uri));
    assert_eq!(p.param("opaque"), challenge.opaque.as_deref());
    assert_eq!(p.param("algorithm"), Some(alg.name()));
    let full_user = match creds.domain.as_deref() {
        Some(d) if !d.is_empty() => format!("{d}\\{}", creds.user),
        _ => creds.user.clone(),
    };
    if !challenge.userhash && full_user.is_ascii() {
        assert_eq!(p.param("username"), Some(full_user.as_str()));
    }
    let hex_len = if alg.is_sha2() { 64 } else { 32 };
    let response = p.param("response").expect("response parameter");
    assert!(
        response.len() == hex_len
            && response
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{response:?}"
    );
    let qop = if challenge.qop_auth {
        Some("auth")
    } else if challenge.qop_auth_int {
        Some("auth-int")
    } else {
        None
    };
    assert_eq!(p.param("qop"), qop);
    if qop.is_some() {
        assert_eq!(p.param("nc"), Some("00000001"));
        assert!(second.contains("nc=00000002"), "{second:?}");
        assert_eq!(p.param("cnonce"), Some(cnonce));
    }
});
