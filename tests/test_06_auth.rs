//! Authentication end to end: Basic against nginx (preemptive, challenge-driven, wrong password,
//! the cleartext policy), Digest against Apache's `mod_auth_digest` (MD5) and against scripted
//! servers for what Apache lacks (SHA-256, userhash, stale nonces, opaque, auth-int), hostile
//! challenges and hostile NTLM type-2 messages (never a panic: the 401 is returned or the error
//! kind is `Auth`), Bearer, and ambient credentials under WinHTTP's autologon levels (invariant
//! I4) against the pyspnego NTLM server.
//!
//! Digest responses are recomputed here with the `openssl` CLI's hashes, independently of
//! ferry-auth, and also with ferry-auth itself from the cnonce the client sent.

mod support;

use ferry::{AuthPolicy, AutologonLevel, Credentials, ErrorKind, SchemeSet, Session, StatusCode};
use ferry_auth::{parse_challenges, DigestChallenge, DigestSession};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Apache, ApacheOptions, Nginx, NginxOptions, NtlmServer, ScriptServer, Step};

const LIMIT: u64 = 1 << 20;

fn session() -> Session {
    session_with(Session::builder())
}

fn session_with(b: ferry::SessionBuilder) -> Session {
    let pki = support::pki();
    b.add_root_certificates_pem(&pki.read(&pki.ca_pem))
        .total_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap()
}

/// Status and body of a response.
fn done(r: ferry::Response) -> (StatusCode, String) {
    let status = r.status();
    (status, r.text(LIMIT).unwrap())
}

/// A header's value in a raw request head (names compare without case); the first one.
fn header_in(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// A step that reads a request head and stores it in `into`.
fn capture(into: &Arc<Mutex<Vec<String>>>) -> Step {
    let into = Arc::clone(into);
    Step::head(move |h| {
        into.lock().unwrap().push(h.to_owned());
        Ok(())
    })
}

/// A keep-alive 401 with these `WWW-Authenticate` values and an empty body.
fn unauthorized(challenges: &[&str]) -> Step {
    let mut r = String::from("HTTP/1.1 401 Unauthorized\r\n");
    for c in challenges {
        r.push_str(&format!("WWW-Authenticate: {c}\r\n"));
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    Step::send(r)
}

fn ok_body(body: &str) -> Step {
    Step::send(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// Lowercase hex digest of `data` by the `openssl` CLI (`md5`, `sha256`): independent of ferry.
fn openssl_hex(alg: &str, data: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", &format!("-{alg}"), "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl: {e}: {}", support::INSTALL_HINT));
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst -{alg} failed");
    String::from_utf8(out.stdout).unwrap()[..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned()
}

/// The parameters of a `Digest ...` Authorization value (parsed with the challenge grammar, which
/// credentials share).
fn digest_params(value: &str) -> Vec<(String, String)> {
    let (c, malformed) = parse_challenges([value.as_bytes()]);
    assert!(malformed.is_empty(), "{value}: {malformed:?}");
    assert_eq!(c.len(), 1, "{value}");
    assert!(c[0].is("digest"), "{value}");
    c[0].params.clone()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {params:?}"))
}

/// Recomputes a Digest `response` (RFC 7616 §3.4.1, qop auth/auth-int, non-sess) with openssl.
#[allow(clippy::too_many_arguments)]
fn expected_response(
    alg: &str,
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    p: &[(String, String)],
    body: Option<&[u8]>,
) -> String {
    let ha1 = openssl_hex(alg, format!("{user}:{realm}:{password}").as_bytes());
    let qop = param(p, "qop");
    let a2 = match body {
        Some(b) if qop == "auth-int" => format!("{method}:{uri}:{}", openssl_hex(alg, b)),
        _ => format!("{method}:{uri}"),
    };
    let ha2 = openssl_hex(alg, a2.as_bytes());
    openssl_hex(
        alg,
        format!(
            "{ha1}:{}:{}:{}:{qop}:{ha2}",
            param(p, "nonce"),
            param(p, "nc"),
            param(p, "cnonce")
        )
        .as_bytes(),
    )
}

/// Recomputes the whole header with ferry-auth from the challenge and the cnonce sent.
fn ferry_auth_header(challenge: &str, creds: &Credentials, sent: &[(String, String)]) -> String {
    let (c, _) = parse_challenges([challenge.as_bytes()]);
    let mut d = DigestSession::new(DigestChallenge::from_challenge(&c[0]).unwrap());
    d.respond(
        creds,
        "GET",
        param(sent, "uri"),
        Some(b""),
        Some(param(sent, "cnonce")),
    )
    .unwrap()
}

// --- Basic against nginx ----------------------------------------------------------------------

const ALICE_BASIC: &str = "Basic YWxpY2U6V29uZGVyLWxhbmQ=";

fn nginx_basic() -> Nginx {
    Nginx::start(NginxOptions::new().basic_auth("/basic/", "ferry", &[("alice", "Wonder-land")]))
}

#[test]
fn basic_preemptive_is_one_request() {
    let nginx = nginx_basic();
    let s = session();
    let r = s
        .get(&nginx.http_url("/basic/echo"))
        .unwrap()
        .credentials(Credentials::new("alice", "Wonder-land"), SchemeSet::BASIC)
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "alice".into()));
    // basic_auth is the same thing.
    let r = s
        .get(&nginx.http_url("/basic/echo"))
        .unwrap()
        .basic_auth("alice", "Wonder-land")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    let log = nginx.wait_log_lines(2);
    assert_eq!(log.len(), 2, "{log:#?}");
    for l in &log {
        assert_eq!(
            (l.authorization.as_str(), l.remote_user.as_str(), l.status),
            (ALICE_BASIC, "alice", 200)
        );
    }
}

#[test]
fn basic_anyauth_asks_first_then_answers_on_the_same_connection() {
    let nginx = nginx_basic();
    let s = session();
    let r = s
        .get(&nginx.http_url("/basic/echo"))
        .unwrap()
        .credentials(Credentials::new("alice", "Wonder-land"), SchemeSet::ANY)
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "alice".into()));
    let log = nginx.wait_log_lines(2);
    assert_eq!(
        log.iter()
            .map(|l| (l.status, l.authorization.as_str()))
            .collect::<Vec<_>>(),
        [(401, ""), (200, ALICE_BASIC)]
    );
    assert_eq!(log[0].connection, log[1].connection);
}

#[test]
fn basic_wrong_password_returns_the_401() {
    let nginx = nginx_basic();
    let s = session();
    for (schemes, requests) in [(SchemeSet::BASIC, 1), (SchemeSet::ANY, 2)] {
        let before = nginx.access_log().len();
        let r = s
            .get(&nginx.http_url("/basic/echo"))
            .unwrap()
            .credentials(Credentials::new("alice", "wrong"), schemes)
            .send()
            .expect("a refused password is the server's 401, not an error");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{schemes:?}");
        drop(r);
        let log = nginx.wait_log_lines(before + requests);
        assert_eq!(log.len(), before + requests, "not retried: {log:#?}");
        assert!(log.iter().all(|l| l.status == 401));
    }
}

#[test]
fn basic_over_cleartext_refused_by_policy_but_allowed_over_https() {
    let policy = AuthPolicy {
        basic_over_cleartext: false,
        ..AuthPolicy::default()
    };
    let s = session_with(Session::builder().auth_policy(policy));
    // Preemptive Basic to http: an error before anything is sent (no connection at all).
    let silent = ScriptServer::start(vec![]);
    let e = s
        .get(&silent.url("/x"))
        .unwrap()
        .basic_auth("alice", "Wonder-land")
        .send()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    silent.finish().unwrap();

    let nginx = nginx_basic();
    // Challenge-driven over http: the Basic challenge is not answered; the 401 is returned.
    let r = s
        .get(&nginx.http_url("/basic/echo"))
        .unwrap()
        .credentials(Credentials::new("alice", "Wonder-land"), SchemeSet::ANY)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    drop(r);
    // Over HTTPS, both work.
    for schemes in [SchemeSet::BASIC, SchemeSet::ANY] {
        let r = s
            .get(&nginx.https_url("/basic/echo"))
            .unwrap()
            .credentials(Credentials::new("alice", "Wonder-land"), schemes)
            .send()
            .unwrap();
        assert_eq!(done(r), (StatusCode::OK, "alice".into()), "{schemes:?}");
    }
    let log = nginx.wait_log_lines(4);
    let plain: Vec<_> = log.iter().filter(|l| l.ssl_protocol.is_empty()).collect();
    assert_eq!(plain.len(), 1, "{log:#?}");
    assert_eq!(
        plain[0].authorization, "",
        "no Basic over cleartext: {log:#?}"
    );
}

// --- Digest against Apache (MD5) --------------------------------------------------------------

fn apache() -> Apache {
    Apache::start(ApacheOptions::digest(
        "ferry digest",
        &[("alice", "Secret1")],
    ))
}

#[test]
fn digest_md5_against_apache_then_preemptive_with_the_next_nonce_count() {
    let apache = apache();
    let s = session();
    let get = || {
        s.get(&apache.url("/digest/secret.txt"))
            .unwrap()
            .credentials(Credentials::new("alice", "Secret1"), SchemeSet::DIGEST)
            .send()
            .unwrap()
    };
    assert_eq!(done(get()), (StatusCode::OK, "digest secret\n".into()));
    let log = apache.wait_log_lines(2);
    assert_eq!((log[0].status, log[0].authorization.as_str()), (401, ""));
    assert_eq!(
        (log[1].status, log[1].user.as_deref()),
        (200, Some("alice"))
    );
    assert_eq!(log[0].client_port, log[1].client_port, "same connection");
    let first = digest_params(&log[1].authorization);
    assert_eq!(param(&first, "nc"), "00000001");
    assert_eq!(param(&first, "algorithm"), "MD5");
    assert_eq!(param(&first, "qop"), "auth");
    assert_eq!(
        param(&first, "response"),
        expected_response(
            "md5",
            "alice",
            "ferry digest",
            "Secret1",
            "GET",
            "/digest/secret.txt",
            &first,
            None
        )
    );

    // The second request answers the same nonce at once, with nc 2: one request, no 401.
    assert_eq!(done(get()), (StatusCode::OK, "digest secret\n".into()));
    let log = apache.wait_log_lines(3);
    assert_eq!(log.len(), 3, "{log:#?}");
    let second = digest_params(&log[2].authorization);
    assert_eq!(log[2].status, 200);
    assert_eq!(param(&second, "nc"), "00000002");
    assert_eq!(param(&second, "nonce"), param(&first, "nonce"));
}

#[test]
fn digest_wrong_password_against_apache_returns_the_401() {
    let apache = apache();
    let s = session();
    let r = s
        .get(&apache.url("/digest/secret.txt"))
        .unwrap()
        .credentials(Credentials::new("alice", "wrong"), SchemeSet::DIGEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    drop(r);
    let log = apache.wait_log_lines(2);
    assert_eq!(log.len(), 2, "answered once, not again: {log:#?}");
    assert_eq!(
        (log[1].status, log[1].user.as_deref()),
        (401, Some("alice"))
    );
}

#[test]
fn anyauth_picks_digest_from_apache() {
    let apache = apache();
    let r = session()
        .get(&apache.url("/digest/secret.txt"))
        .unwrap()
        .credentials(Credentials::new("alice", "Secret1"), SchemeSet::ANY)
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "digest secret\n".into()));
}

// --- Digest against scripted servers (RFC 7616 features Apache lacks) -------------------------

const SHA_CHALLENGE: &str = "Digest realm=\"api@example.org\", qop=\"auth\", algorithm=SHA-256, \
                             nonce=\"n-0001\", opaque=\"opaque-xyz\"";

#[test]
fn digest_sha256_with_opaque() {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let server = ScriptServer::start(vec![vec![
        capture(&heads),
        unauthorized(&[SHA_CHALLENGE]),
        capture(&heads),
        ok_body("ok"),
    ]]);
    let creds = Credentials::new("alice", "Secret1");
    let r = session()
        .get(&server.url("/sha?x=1"))
        .unwrap()
        .credentials(creds.clone(), SchemeSet::DIGEST)
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "ok".into()));
    server.finish().unwrap();
    let heads = heads.lock().unwrap();
    assert_eq!(header_in(&heads[0], "authorization"), None);
    let value = header_in(&heads[1], "authorization").expect("an Authorization header");
    let p = digest_params(&value);
    assert_eq!(param(&p, "algorithm"), "SHA-256");
    assert_eq!(param(&p, "username"), "alice");
    assert_eq!(param(&p, "realm"), "api@example.org");
    assert_eq!(param(&p, "uri"), "/sha?x=1");
    assert_eq!(param(&p, "nonce"), "n-0001");
    assert_eq!(param(&p, "opaque"), "opaque-xyz", "opaque echoed");
    assert_eq!(param(&p, "nc"), "00000001");
    assert_eq!(
        param(&p, "response"),
        expected_response(
            "sha256",
            "alice",
            "api@example.org",
            "Secret1",
            "GET",
            "/sha?x=1",
            &p,
            None
        )
    );
    assert_eq!(value, ferry_auth_header(SHA_CHALLENGE, &creds, &p));
}

#[test]
fn digest_userhash_sends_the_hashed_user_name() {
    let challenge = "Digest realm=\"api@example.org\", qop=\"auth\", algorithm=SHA-256, \
                     nonce=\"n-uh\", userhash=true";
    let heads = Arc::new(Mutex::new(Vec::new()));
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        unauthorized(&[challenge]),
        capture(&heads),
        ok_body("ok"),
    ]]);
    let creds = Credentials::new("alice", "Secret1");
    let r = session()
        .get(&server.url("/uh"))
        .unwrap()
        .credentials(creds.clone(), SchemeSet::DIGEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    server.finish().unwrap();
    let value = header_in(&heads.lock().unwrap()[0], "authorization").unwrap();
    let p = digest_params(&value);
    assert_eq!(
        param(&p, "username"),
        openssl_hex("sha256", b"alice:api@example.org")
    );
    assert_eq!(param(&p, "userhash"), "true");
    assert!(!value.contains("alice"), "{value}");
    // The response is over the real user name (RFC 7616 §3.4.4).
    assert_eq!(
        param(&p, "response"),
        expected_response(
            "sha256",
            "alice",
            "api@example.org",
            "Secret1",
            "GET",
            "/uh",
            &p,
            None
        )
    );
    assert_eq!(value, ferry_auth_header(challenge, &creds, &p));
}

#[test]
fn digest_stale_nonce_is_answered_with_the_new_nonce() {
    let stale = "Digest realm=\"r\", qop=\"auth\", nonce=\"second\", stale=true";
    let heads = Arc::new(Mutex::new(Vec::new()));
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        unauthorized(&["Digest realm=\"r\", qop=\"auth\", nonce=\"first\""]),
        capture(&heads),
        unauthorized(&[stale]),
        capture(&heads),
        ok_body("fresh"),
    ]]);
    let r = session()
        .get(&server.url("/stale"))
        .unwrap()
        .credentials(Credentials::new("alice", "pw"), SchemeSet::DIGEST)
        .send()
        .expect("stale=true is not an error");
    assert_eq!(done(r), (StatusCode::OK, "fresh".into()));
    server.finish().unwrap();
    let heads = heads.lock().unwrap();
    let p1 = digest_params(&header_in(&heads[0], "authorization").unwrap());
    let p2 = digest_params(&header_in(&heads[1], "authorization").unwrap());
    assert_eq!(param(&p1, "nonce"), "first");
    assert_eq!(param(&p2, "nonce"), "second");
    assert_eq!(
        param(&p2, "nc"),
        "00000001",
        "the count restarts with a nonce"
    );
    assert_eq!(
        param(&p2, "response"),
        expected_response("md5", "alice", "r", "pw", "GET", "/stale", &p2, None)
    );
}

#[test]
fn digest_refused_twice_without_stale_returns_the_401() {
    let challenge = "Digest realm=\"r\", qop=\"auth\", nonce=\"n\"";
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        unauthorized(&[challenge]),
        Step::any_head(),
        unauthorized(&[challenge]),
    ]]);
    let r = session()
        .get(&server.url("/x"))
        .unwrap()
        .credentials(Credentials::new("alice", "pw"), SchemeSet::DIGEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    drop(r);
    server.finish().unwrap();
}

#[test]
fn digest_auth_int_hashes_the_replayable_body() {
    const BODY: &[u8] = b"{\"amount\": 100}";
    let challenge = "Digest realm=\"r\", qop=\"auth-int\", algorithm=SHA-256, nonce=\"ai\"";
    let heads = Arc::new(Mutex::new(Vec::new()));
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::ExpectLen(BODY.len()),
        unauthorized(&[challenge]),
        capture(&heads),
        Step::expect(BODY),
        ok_body("paid"),
    ]]);
    let r = session()
        .post(&server.url("/pay"))
        .unwrap()
        .body(BODY.to_vec())
        .credentials(Credentials::new("alice", "pw"), SchemeSet::DIGEST)
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "paid".into()));
    server.finish().unwrap();
    let p = digest_params(&header_in(&heads.lock().unwrap()[0], "authorization").unwrap());
    assert_eq!(param(&p, "qop"), "auth-int");
    assert_eq!(
        param(&p, "response"),
        expected_response("sha256", "alice", "r", "pw", "POST", "/pay", &p, Some(BODY))
    );
}

// --- Hostile challenges ------------------------------------------------------------------------

/// The outcome of a request against a server that answers one 401 with `challenges`: the 401
/// returned, or an `Auth` error; anything else fails. No second request is made on it.
fn against_one_401(challenges: &[&str], schemes: SchemeSet) {
    let server = ScriptServer::start(vec![vec![Step::any_head(), unauthorized(challenges)]]);
    let shown: Vec<String> = challenges
        .iter()
        .map(|c| support::show_bytes(c.as_bytes(), 120))
        .collect();
    match session()
        .get(&server.url("/h"))
        .unwrap()
        .credentials(Credentials::new("alice", "pw"), schemes)
        .send()
    {
        Ok(r) => assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{shown:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Auth, "{shown:?}: {e}"),
    }
    server.finish().unwrap();
}

#[test]
fn hostile_challenges_give_the_401_or_an_auth_error() {
    let huge = format!("Digest realm=\"{}\", nonce=\"n\"", "a".repeat(60_000));
    let many_params = format!("Digest realm=\"r\", nonce=\"n\"{}", ", x=y".repeat(9_000));
    let cases: Vec<Vec<&str>> = vec![
        vec!["Digest realm=\"r, nonce=\"n"],
        vec!["Digest realm=\"r\", nonce=\"n\", qop=\"auth"],
        vec![&huge],
        vec![&many_params],
        vec!["Digest realm=\"r\", nonce=\"n\", algorithm=SHA-1"],
        vec!["Digest realm=\"r\", nonce=\"n\", algorithm=MD6"],
        vec!["Digest realm=\"r\", nonce=\"n\", algorithm="],
        vec!["Digest realm=\"r\", qop=\"auth\""],
        vec!["Digest nonce=\"n\""],
        vec!["Digest realm=\"r\", nonce=\"n\", qop=\"auth-conf\""],
        vec!["Digest ===="],
        vec!["Digest"],
        vec![""],
        vec![",,,,"],
        vec!["\"quoted\""],
        vec!["Negotiate abc==", "Bearer realm=\"x\""],
    ];
    for c in &cases {
        against_one_401(c, SchemeSet::ANY);
    }
    // Digest only: a Basic challenge is no answer either.
    against_one_401(&["Basic realm=\"r\""], SchemeSet::DIGEST);
    against_one_401(&["Digest realm=\"r\", nonce=\"n\""], SchemeSet::NTLM);
}

#[test]
fn several_challenges_where_only_basic_is_usable() {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        unauthorized(&[
            "Negotiate, Digest realm=\"r\", nonce=\"n\", algorithm=FOO",
            "Digest realm=\"unterminated",
            "Basic realm=\"fallback\"",
        ]),
        capture(&heads),
        ok_body("basic it is"),
    ]]);
    let r = session()
        .get(&server.url("/m"))
        .unwrap()
        .credentials(Credentials::new("alice", "pw"), SchemeSet::ANY)
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "basic it is".into()));
    server.finish().unwrap();
    assert_eq!(
        header_in(&heads.lock().unwrap()[0], "authorization").as_deref(),
        Some("Basic YWxpY2U6cHc=")
    );
}

// --- Hostile NTLM type-2 messages --------------------------------------------------------------

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const TYPE2_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO;

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// AV pairs: (id, value) each, then MsvAvEOL.
fn av_pairs(pairs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (id, value) in pairs {
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        v.extend_from_slice(value);
    }
    v.extend_from_slice(&[0, 0, 0, 0]);
    v
}

fn good_target_info() -> Vec<u8> {
    av_pairs(&[(2, &utf16("CORP")), (1, &utf16("SERVER"))])
}

/// A type-2 message (MS-NLMP §2.2.1.2) without a Version field: target name, then target info,
/// after the 48-byte fixed part.
fn type2(flags: u32, target_name: &[u8], target_info: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"NTLMSSP\0");
    m.extend_from_slice(&2u32.to_le_bytes());
    let name_at = 48u32;
    let info_at = name_at + target_name.len() as u32;
    let buffer = |m: &mut Vec<u8>, len: usize, at: u32| {
        m.extend_from_slice(&(len as u16).to_le_bytes());
        m.extend_from_slice(&(len as u16).to_le_bytes());
        m.extend_from_slice(&at.to_le_bytes());
    };
    buffer(&mut m, target_name.len(), name_at);
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    m.extend_from_slice(&[0; 8]);
    buffer(&mut m, target_info.len(), info_at);
    assert_eq!(m.len(), 48);
    m.extend_from_slice(target_name);
    m.extend_from_slice(target_info);
    m
}

fn good_type2() -> Vec<u8> {
    type2(TYPE2_FLAGS, &utf16("CORP"), &good_target_info())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (the root package has no base64 dependency).
fn b64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c).expect("base64 character") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Answers the client's type-1 with `type2` (base64 unless `raw`), on one connection.
fn ntlm_script(type2_token: String) -> ScriptServer {
    ScriptServer::start(vec![vec![
        Step::head(|h| match header_in(h, "authorization") {
            Some(v) if v.starts_with("NTLM ") => Ok(()),
            other => Err(format!("expected an NTLM type-1, got {other:?}")),
        }),
        Step::send(format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM {type2_token}\r\n\
             Content-Length: 0\r\n\r\n"
        )),
    ]])
}

#[test]
fn ntlm_well_formed_scripted_type2_gets_a_type3() {
    // The control for the hostile cases: the same builder, unharmed, is answered.
    let heads = Arc::new(Mutex::new(Vec::new()));
    let server = ScriptServer::start(vec![vec![
        Step::any_head(),
        Step::send(format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM {}\r\nContent-Length: 0\r\n\r\n",
            b64(&good_type2())
        )),
        capture(&heads),
        ok_body("in"),
    ]]);
    let r = session()
        .get(&server.url("/n"))
        .unwrap()
        .credentials(Credentials::new("CORP\\alice", "pw"), SchemeSet::NTLM)
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "in".into()));
    server.finish().unwrap();
    let v = header_in(&heads.lock().unwrap()[0], "authorization").unwrap();
    let token = v.strip_prefix("NTLM ").unwrap();
    let type3 = unb64(token);
    assert_eq!(&type3[..12], b"NTLMSSP\0\x03\0\0\0");
}

#[test]
fn ntlm_hostile_type2_is_an_auth_error_never_a_panic() {
    let good = good_type2();
    let patched = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut m = good.clone();
        f(&mut m);
        b64(&m)
    };
    let u16_at =
        |at: usize, v: u16| move |m: &mut Vec<u8>| m[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let u32_at =
        |at: usize, v: u32| move |m: &mut Vec<u8>| m[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let mut bad_av = good_target_info();
    bad_av[2..4].copy_from_slice(&0x7FFFu16.to_le_bytes()); // the first pair's length
    let info = good_target_info();
    let no_eol = &info[..info.len() - 4];
    let mut cases: Vec<(&str, String)> = vec![
        ("not token68", "!!!not*base64".into()),
        ("token68 but not base64", "A".into()),
        ("signature only", b64(b"NTLMSSP\0")),
        ("truncated fixed part", b64(&good[..30])),
        ("truncated payload", b64(&good[..good.len() - 7])),
        (
            "bad signature",
            patched(&|m| m[..8].copy_from_slice(b"NTLMSSX\0")),
        ),
        ("message type 3", patched(&u32_at(8, 3))),
        (
            "target name offset past the end",
            patched(&u32_at(16, 0xFFFF_FFF0)),
        ),
        (
            "target info offset past the end",
            patched(&u32_at(44, 0xFFFF_FFF0)),
        ),
        (
            "target info length past the end",
            patched(&u16_at(40, 0xFFFF)),
        ),
        (
            "target info MaxLen past the end",
            patched(&u16_at(42, 0xFFFF)),
        ),
        (
            "target info overlapping the header",
            patched(&u32_at(44, 8)),
        ),
        (
            "no target info (NTLMv1 only)",
            b64(&type2(
                TYPE2_FLAGS & !NEGOTIATE_TARGET_INFO,
                &utf16("CORP"),
                &[],
            )),
        ),
        (
            "AV pair past its buffer",
            b64(&type2(TYPE2_FLAGS, b"", &bad_av)),
        ),
        (
            "AV pairs without EOL",
            b64(&type2(TYPE2_FLAGS, b"", no_eol)),
        ),
        (
            "timestamp of 4 bytes",
            b64(&type2(TYPE2_FLAGS, b"", &av_pairs(&[(7, &[1, 2, 3, 4])]))),
        ),
    ];
    // Target info over ferry's 4 KiB limit, a message over its 8 KiB limit, and target info near
    // 64 KiB (the base64 kept within the 64 KiB response-head limit: 45 000 bytes of target info
    // are about 60 000 characters), where ntlmclient's 16-bit type-3 fields would overflow.
    for size in [6_000usize, 10_000, 45_000] {
        let info = av_pairs(&[(2, &vec![b'A'; size])]);
        cases.push(("large target info", b64(&type2(TYPE2_FLAGS, b"", &info))));
    }
    for (what, token) in &cases {
        let server = ntlm_script(token.clone());
        let result = session()
            .get(&server.url("/n"))
            .unwrap()
            .credentials(Credentials::new("CORP\\alice", "pw"), SchemeSet::NTLM)
            .send();
        match result {
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Auth,
                "{what} ({} bytes): {e}",
                token.len()
            ),
            Ok(r) => panic!(
                "{what} ({} bytes): {} instead of an Auth error",
                token.len(),
                r.status()
            ),
        }
        server.finish().unwrap();
    }
}

#[test]
fn ntlm_bare_challenge_after_type1_returns_the_401() {
    // A bare `NTLM` in answer to the type 1 is the server declining, not a hostile message.
    let server = ntlm_script(String::new());
    let r = session()
        .get(&server.url("/n"))
        .unwrap()
        .credentials(Credentials::new("CORP\\alice", "pw"), SchemeSet::NTLM)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    drop(r);
    server.finish().unwrap();
}

// --- Bearer ------------------------------------------------------------------------------------

#[test]
fn bearer_token_is_sent_to_its_origin_only() {
    let b_heads = Arc::new(Mutex::new(Vec::new()));
    let b = ScriptServer::start(vec![vec![capture(&b_heads), ok_body("b")]]);
    let a_heads = Arc::new(Mutex::new(Vec::new()));
    let a = ScriptServer::start(vec![vec![
        capture(&a_heads),
        Step::send(format!(
            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
            b.url("/landing")
        )),
    ]]);
    let r = session()
        .get(&a.url("/start"))
        .unwrap()
        .bearer_auth("mF_9.B5f-4.1JqM")
        .send()
        .unwrap();
    assert_eq!(done(r), (StatusCode::OK, "b".into()));
    a.finish().unwrap();
    b.finish().unwrap();
    assert_eq!(
        header_in(&a_heads.lock().unwrap()[0], "authorization").as_deref(),
        Some("Bearer mF_9.B5f-4.1JqM")
    );
    assert_eq!(
        header_in(&b_heads.lock().unwrap()[0], "authorization"),
        None
    );
}

#[test]
fn bearer_token_that_is_not_token68_is_refused_before_sending() {
    let silent = ScriptServer::start(vec![]);
    let e = session()
        .get(&silent.url("/x"))
        .unwrap()
        .bearer_auth("two words")
        .send()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    silent.finish().unwrap();
}

// --- Ambient credentials and the autologon levels (I4) ----------------------------------------

fn ntlm_server() -> NtlmServer {
    NtlmServer::start(&[("CORP", "svc", "Machine-1")])
}

fn ambient_session(level: Option<AutologonLevel>) -> Session {
    let mut b = Session::builder().default_credentials(Credentials::new("CORP\\svc", "Machine-1"));
    if let Some(level) = level {
        b = b.auth_policy(AuthPolicy {
            autologon: level,
            ..AuthPolicy::default()
        });
    }
    session_with(b)
}

fn localhost_url(port: u16, path: &str) -> String {
    format!("http://localhost:{port}{path}")
}

/// GETs `url` and returns the status and body; also how many NTLM type-1 messages the server saw
/// so far.
fn ambient_get(s: &Session, url: &str) -> (StatusCode, String) {
    done(s.get(url).unwrap().send().unwrap())
}

#[test]
fn autologon_medium_uses_ambient_credentials_for_intranet_names_only() {
    let server = ntlm_server();
    let s = ambient_session(None); // MEDIUM is the default
    assert_eq!(
        ambient_get(&s, &localhost_url(server.port(), "/intranet")),
        (StatusCode::OK, "hello CORP\\svc".into()),
        "{}",
        server.stderr()
    );
    let (status, _) = ambient_get(&s, &server.url("/by-ip"));
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "127.0.0.1 is not intranet"
    );
    let log = server.wait_log_lines(4);
    let by_ip: Vec<_> = log.iter().filter(|l| l.path == "/by-ip").collect();
    assert_eq!(by_ip.len(), 1, "{log:#?}");
    assert_eq!(by_ip[0].auth, "none", "no NTLM message went to 127.0.0.1");
}

#[test]
fn autologon_high_never_and_low_everywhere() {
    let server = ntlm_server();
    let high = ambient_session(Some(AutologonLevel::High));
    let (status, _) = ambient_get(&high, &localhost_url(server.port(), "/high"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let low = ambient_session(Some(AutologonLevel::Low));
    assert_eq!(
        ambient_get(&low, &server.url("/low")),
        (StatusCode::OK, "hello CORP\\svc".into())
    );
    let log = server.wait_log_lines(4);
    let high: Vec<_> = log.iter().filter(|l| l.path == "/high").collect();
    assert_eq!(high.len(), 1, "{log:#?}");
    assert_eq!(high[0].auth, "none");
}

#[test]
fn ambient_credentials_are_never_sent_as_basic() {
    let nginx =
        Nginx::start(NginxOptions::new().basic_auth("/basic/", "ferry", &[("svc", "Machine-1")]));
    let s = session_with(
        Session::builder()
            .default_credentials(Credentials::new("svc", "Machine-1"))
            .auth_policy(AuthPolicy {
                autologon: AutologonLevel::Low,
                ..AuthPolicy::default()
            }),
    );
    let (status, _) = ambient_get(&s, &nginx.http_url("/basic/echo"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = ambient_get(&s, &localhost_url(nginx.port(), "/basic/echo"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let log = nginx.wait_log_lines(2);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|l| l.authorization.is_empty()), "{log:#?}");
}

#[test]
fn ambient_credentials_answer_digest_where_allowed() {
    let apache = Apache::start(ApacheOptions::digest(
        "ferry digest",
        &[("svc", "Machine-1")],
    ));
    let s = session_with(
        Session::builder()
            .default_credentials(Credentials::new("svc", "Machine-1"))
            .auth_policy(AuthPolicy {
                autologon: AutologonLevel::Low,
                ..AuthPolicy::default()
            }),
    );
    assert_eq!(
        ambient_get(&s, &apache.url("/digest/secret.txt")),
        (StatusCode::OK, "digest secret\n".into())
    );
}
