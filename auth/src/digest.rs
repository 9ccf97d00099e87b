//! Digest access authentication (RFC 7616): MD5, MD5-sess, SHA-256, SHA-256-sess,
//! SHA-512-256 (and -sess); qop `auth` and `auth-int`; nonce counting, `userhash`, `opaque`,
//! `stale`.
//!
//! The response, as computed in [`DigestSession::respond`] (RFC 7616 §3.4.1–§3.4.3):
//! ```text
//! A1       = unq(username) ":" unq(realm) ":" passwd                  (plain algorithms)
//!          = H( unq(username) ":" unq(realm) ":" passwd ) ":" unq(nonce) ":" unq(cnonce)  (-sess)
//! A2       = Method ":" request-uri                                   (qop=auth or none)
//!          = Method ":" request-uri ":" H(entity-body)                (qop=auth-int)
//! response = KD( H(A1), unq(nonce) ":" nc ":" unq(cnonce) ":" unq(qop) ":" H(A2) )
//!          = KD( H(A1), unq(nonce) ":" H(A2) )                        (no qop: RFC 2069)
//! KD(secret, data) = H( secret ":" data )
//! ```
use crate::challenge::Challenge;
use crate::credentials::Credentials;
use crate::error::AuthError;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use std::fmt::Write as _;

/// A Digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// `MD5` (the default when the challenge names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl DigestAlgorithm {
    /// Parses an `algorithm` value (case-insensitive); `None` for algorithms ferry lacks.
    pub fn from_name(name: &str) -> Option<Self> {
        const ALL: [DigestAlgorithm; 6] = [
            DigestAlgorithm::Md5,
            DigestAlgorithm::Md5Sess,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha256Sess,
            DigestAlgorithm::Sha512_256,
            DigestAlgorithm::Sha512_256Sess,
        ];
        ALL.into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The name as registered (RFC 7616 §6.1), as sent back in the `algorithm` parameter.
    pub fn name(&self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Md5Sess => "MD5-sess",
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha256Sess => "SHA-256-sess",
            DigestAlgorithm::Sha512_256 => "SHA-512-256",
            DigestAlgorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Whether this is a `-sess` variant (A1 also covers the nonce and cnonce).
    pub fn is_sess(&self) -> bool {
        matches!(
            self,
            DigestAlgorithm::Md5Sess
                | DigestAlgorithm::Sha256Sess
                | DigestAlgorithm::Sha512_256Sess
        )
    }

    /// Whether the hash is from the SHA-2 family (ranked above MD5 by the policy).
    pub fn is_sha2(&self) -> bool {
        !matches!(self, DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess)
    }

    /// `H(data)`, lowercase hex (RFC 7616 §3.4).
    fn hash(&self, data: &[u8]) -> String {
        match self {
            DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess => hex(&Md5::digest(data)),
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha256Sess => hex(&Sha256::digest(data)),
            DigestAlgorithm::Sha512_256 | DigestAlgorithm::Sha512_256Sess => {
                hex(&Sha512_256::digest(data))
            }
        }
    }
}

/// A parsed Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<String>,
    /// `algorithm`.
    pub algorithm: DigestAlgorithm,
    /// `qop=auth` offered.
    pub qop_auth: bool,
    /// `qop=auth-int` offered.
    pub qop_auth_int: bool,
    /// `stale=true`: the nonce expired but the credentials were right.
    pub stale: bool,
    /// `userhash=true`.
    pub userhash: bool,
}

impl DigestChallenge {
    /// Reads a Digest challenge; unknown algorithms or a missing realm/nonce are errors.
    pub fn from_challenge(c: &Challenge) -> Result<Self, AuthError> {
        if !c.is("digest") {
            return Err(AuthError::BadChallenge("not a Digest challenge"));
        }
        if c.token68.is_some() {
            return Err(AuthError::BadChallenge("Digest challenge in token68 form"));
        }
        // RFC 7616 §3.3: absent algorithm means MD5.
        let algorithm = match c.param("algorithm") {
            None => DigestAlgorithm::Md5,
            Some(name) => DigestAlgorithm::from_name(name.trim())
                .ok_or(AuthError::Unsupported("Digest algorithm"))?,
        };
        let realm = c
            .param("realm")
            .ok_or(AuthError::BadChallenge("Digest challenge without realm"))?;
        let nonce = c
            .param("nonce")
            .ok_or(AuthError::BadChallenge("Digest challenge without nonce"))?;
        // qop-options: a quoted, comma-separated list; unknown values are ignored (§3.3), but a
        // list with nothing we implement cannot be answered without qop.
        let (mut qop_auth, mut qop_auth_int) = (false, false);
        if let Some(list) = c.param("qop") {
            for q in list
                .split(',')
                .map(|q| q.trim_matches(|c| c == ' ' || c == '\t'))
            {
                qop_auth |= q.eq_ignore_ascii_case("auth");
                qop_auth_int |= q.eq_ignore_ascii_case("auth-int");
            }
            if !qop_auth && !qop_auth_int {
                return Err(AuthError::Unsupported("Digest qop"));
            }
        }
        // `charset` may only be "UTF-8" (§3.3); ferry always hashes UTF-8, so it decides nothing.
        let is_true = |name| {
            c.param(name)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        Ok(DigestChallenge {
            realm: realm.to_owned(),
            nonce: nonce.to_owned(),
            opaque: c.param("opaque").map(str::to_owned),
            algorithm,
            qop_auth,
            qop_auth_int,
            stale: is_true("stale"),
            userhash: is_true("userhash"),
        })
    }
}

/// A Digest conversation with one server realm: the current nonce and its count.
#[derive(Debug, Clone)]
pub struct DigestSession {
    challenge: DigestChallenge,
    nc: u32,
}

/// The qop chosen for one response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Qop {
    /// RFC 2069 compatibility: the server offered no qop.
    None,
    Auth,
    AuthInt,
}

impl DigestSession {
    /// Starts answering `challenge`.
    pub fn new(challenge: DigestChallenge) -> Self {
        DigestSession { challenge, nc: 0 }
    }

    /// The challenge being answered.
    pub fn challenge(&self) -> &DigestChallenge {
        &self.challenge
    }

    /// Replaces the nonce after `stale=true` (or a new challenge), restarting the count.
    pub fn renew(&mut self, challenge: DigestChallenge) {
        self.challenge = challenge;
        self.nc = 0;
    }

    /// The `Authorization` value for one request: increments `nc` (only when a value is
    /// returned). `qop=auth` is preferred; `auth-int` is used only when `auth` is not offered,
    /// and then needs `body`, the request body when it can be hashed (replayable), or the answer
    /// is `Unsupported`. `cnonce` is random unless given (tests).
    pub fn respond(
        &mut self,
        creds: &Credentials,
        method: &str,
        uri: &str,
        body: Option<&[u8]>,
        cnonce: Option<&str>,
    ) -> Result<String, AuthError> {
        let ch = &self.challenge;
        let alg = ch.algorithm;
        let qop = match (ch.qop_auth, ch.qop_auth_int, body) {
            (true, _, _) => Qop::Auth,
            (false, true, Some(_)) => Qop::AuthInt,
            (false, true, None) => {
                return Err(AuthError::Unsupported("auth-int needs a replayable body"))
            }
            (false, false, _) => Qop::None,
        };
        let nc = self.nc.checked_add(1).ok_or(AuthError::Limit {
            name: "digest_nonce_count",
            max: u64::from(u32::MAX),
        })?;

        // Everything that goes into the header must be header-safe (invariant I6): the parser
        // never yields control bytes, but the challenge's fields are public.
        let user = full_user(creds);
        if has_control(&user) {
            return Err(AuthError::InvalidUser);
        }
        for v in [&ch.realm, &ch.nonce].into_iter().chain(ch.opaque.as_ref()) {
            if has_control(v) {
                return Err(AuthError::BadChallenge(
                    "control character in Digest challenge",
                ));
            }
        }
        if has_control(uri) || has_control(method) || method.is_empty() {
            return Err(AuthError::Unsupported(
                "request line with control characters",
            ));
        }
        let cnonce = match cnonce {
            Some(c) if has_control(c) => {
                return Err(AuthError::Unsupported("cnonce with control characters"))
            }
            Some(c) => c.to_owned(),
            None => random_cnonce()?,
        };
        let nc_hex = format!("{nc:08x}");

        // §3.4.2: A1 and H(A1).
        let mut ha1 =
            alg.hash(format!("{user}:{}:{}", ch.realm, creds.password.expose()).as_bytes());
        if alg.is_sess() {
            ha1 = alg.hash(format!("{ha1}:{}:{cnonce}", ch.nonce).as_bytes());
        }
        // §3.4.3: A2 and H(A2).
        let a2 = match (qop, body) {
            (Qop::AuthInt, Some(b)) => format!("{method}:{uri}:{}", alg.hash(b)),
            _ => format!("{method}:{uri}"),
        };
        let ha2 = alg.hash(a2.as_bytes());
        // §3.4.1: the response; RFC 2069's form when the server offered no qop.
        let qop_name = match qop {
            Qop::None => None,
            Qop::Auth => Some("auth"),
            Qop::AuthInt => Some("auth-int"),
        };
        let response = match qop_name {
            Some(q) => {
                alg.hash(format!("{ha1}:{}:{nc_hex}:{cnonce}:{q}:{ha2}", ch.nonce).as_bytes())
            }
            None => alg.hash(format!("{ha1}:{}:{ha2}", ch.nonce).as_bytes()),
        };

        // §3.4: the header, in the order of the RFC's examples.
        let mut v = String::from("Digest ");
        if ch.userhash {
            // §3.4.4: username = H( unq(username) ":" unq(realm) ).
            let hashed = alg.hash(format!("{user}:{}", ch.realm).as_bytes());
            let _ = write!(v, "username=\"{hashed}\"");
        } else if user.is_ascii() {
            let _ = write!(v, "username={}", quote(&user));
        } else {
            // §3.4.4: a name that quoted-string cannot carry goes as RFC 8187 ext-value.
            let _ = write!(v, "username*=UTF-8''{}", percent_encode(&user));
        }
        let _ = write!(
            v,
            ", realm={}, uri={}, algorithm={}, nonce={}",
            quote(&ch.realm),
            quote(uri),
            alg.name(),
            quote(&ch.nonce)
        );
        if let Some(q) = qop_name {
            let _ = write!(v, ", nc={nc_hex}, cnonce={}, qop={q}", quote(&cnonce));
        } else if alg.is_sess() {
            // The server needs the cnonce to compute a -sess A1 even without qop.
            let _ = write!(v, ", cnonce={}", quote(&cnonce));
        }
        let _ = write!(v, ", response=\"{response}\"");
        if let Some(opaque) = &ch.opaque {
            let _ = write!(v, ", opaque={}", quote(opaque));
        }
        if ch.userhash {
            v.push_str(", userhash=true");
        }
        self.nc = nc;
        Ok(v)
    }
}

/// The user as the server knows it: `DOMAIN\user` when a domain was given (as for Basic).
fn full_user(creds: &Credentials) -> String {
    match creds.domain.as_deref() {
        Some(d) if !d.is_empty() => format!("{d}\\{}", creds.user),
        _ => creds.user.clone(),
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `quoted-string` with `"` and `\` escaped (RFC 9110 §5.6.4).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 8187 §3.2.1 `value-chars`: attr-char as is, every other byte as `%HH`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// 16 random bytes as 32 hex digits.
fn random_cnonce() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|_| AuthError::Random)?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::parse_challenges;

    fn challenge(value: &str) -> DigestChallenge {
        let (c, m) = parse_challenges([value.as_bytes()]);
        assert!(m.is_empty(), "{m:?}");
        DigestChallenge::from_challenge(&c[0]).unwrap()
    }

    /// A parameter of our own header, read back with our own parser.
    fn param(header: &str, name: &str) -> Option<String> {
        let (c, m) = parse_challenges([header.as_bytes()]);
        assert!(m.is_empty(), "{m:?}");
        c.first()?.param(name).map(str::to_owned)
    }

    const RFC_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn rfc_3_9_1(alg: &str) -> DigestChallenge {
        challenge(&format!(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, \
             nonce=\"{RFC_NONCE}\", opaque=\"{RFC_OPAQUE}\""
        ))
    }

    fn mufasa() -> Credentials {
        Credentials::new("Mufasa", "Circle of Life")
    }

    #[test]
    fn kat_rfc7616_3_9_1_md5() {
        let mut s = DigestSession::new(rfc_3_9_1("MD5"));
        let v = s
            .respond(&mufasa(), "GET", "/dir/index.html", None, Some(RFC_CNONCE))
            .unwrap();
        assert_eq!(
            v,
            format!(
                "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
                 uri=\"/dir/index.html\", algorithm=MD5, nonce=\"{RFC_NONCE}\", nc=00000001, \
                 cnonce=\"{RFC_CNONCE}\", qop=auth, response=\"8ca523f5e9506fed4657c9700eebdbec\", \
                 opaque=\"{RFC_OPAQUE}\""
            )
        );
    }

    #[test]
    fn kat_rfc7616_3_9_1_sha256() {
        let mut s = DigestSession::new(rfc_3_9_1("SHA-256"));
        let v = s
            .respond(&mufasa(), "GET", "/dir/index.html", None, Some(RFC_CNONCE))
            .unwrap();
        assert_eq!(
            param(&v, "response").as_deref(),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        assert_eq!(param(&v, "algorithm").as_deref(), Some("SHA-256"));
    }

    #[test]
    fn kat_rfc7616_3_9_2_sha512_256_userhash_erratum_4897() {
        let ch = challenge(
            "Digest realm=\"api@example.org\", qop=\"auth\", algorithm=SHA-512-256, \
             nonce=\"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK\", \
             opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\", charset=UTF-8, \
             userhash=true",
        );
        assert!(ch.userhash);
        let mut s = DigestSession::new(ch);
        let creds = Credentials::new("J\u{e4}s\u{f8}n Doe", "Secret, or not?");
        let v = s
            .respond(
                &creds,
                "GET",
                "/doe.json",
                None,
                Some("NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v"),
            )
            .unwrap();
        assert_eq!(
            param(&v, "username").as_deref(),
            Some("793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b")
        );
        assert_eq!(
            param(&v, "response").as_deref(),
            Some("3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5")
        );
        assert_eq!(param(&v, "userhash").as_deref(), Some("true"));
        assert_eq!(param(&v, "algorithm").as_deref(), Some("SHA-512-256"));
        assert_eq!(
            param(&v, "opaque").as_deref(),
            Some("HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS")
        );
    }

    #[test]
    fn non_ascii_user_without_userhash_uses_ext_value() {
        let mut s = DigestSession::new(challenge("Digest realm=\"r\", nonce=\"n\", qop=auth"));
        let creds = Credentials::new("J\u{e4}s\u{f8}n Doe", "p");
        let v = s.respond(&creds, "GET", "/", None, Some("c")).unwrap();
        assert!(
            v.starts_with("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"r\""),
            "{v}"
        );
    }

    // Expected values for the cases below were computed independently with Python's hashlib.
    #[test]
    fn md5_sess() {
        let mut s = DigestSession::new(rfc_3_9_1("MD5-sess"));
        let v = s
            .respond(&mufasa(), "GET", "/dir/index.html", None, Some(RFC_CNONCE))
            .unwrap();
        assert_eq!(param(&v, "algorithm").as_deref(), Some("MD5-sess"));
        assert_eq!(
            param(&v, "response").as_deref(),
            Some("e783283f46242139c486a698fec7211d")
        );
    }

    #[test]
    fn sha256_sess() {
        let mut s = DigestSession::new(rfc_3_9_1("sha-256-SESS"));
        let v = s
            .respond(&mufasa(), "GET", "/dir/index.html", None, Some(RFC_CNONCE))
            .unwrap();
        assert_eq!(param(&v, "algorithm").as_deref(), Some("SHA-256-sess"));
        assert_eq!(
            param(&v, "response").as_deref(),
            Some("2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7")
        );
    }

    #[test]
    fn auth_int_only_with_body() {
        let ch = challenge(&format!(
            "Digest realm=\"http-auth@example.org\", qop=\"auth-int\", nonce=\"{RFC_NONCE}\""
        ));
        let mut s = DigestSession::new(ch);
        assert_eq!(
            s.respond(&mufasa(), "POST", "/dir/index.html", None, Some(RFC_CNONCE)),
            Err(AuthError::Unsupported("auth-int needs a replayable body"))
        );
        let v = s
            .respond(
                &mufasa(),
                "POST",
                "/dir/index.html",
                Some(b"hello"),
                Some(RFC_CNONCE),
            )
            .unwrap();
        assert_eq!(param(&v, "qop").as_deref(), Some("auth-int"));
        // The failed attempt did not consume a count.
        assert_eq!(param(&v, "nc").as_deref(), Some("00000001"));
        assert_eq!(
            param(&v, "response").as_deref(),
            Some("23fef4d928a3e9fa6e0b0de51288c997")
        );
    }

    #[test]
    fn auth_preferred_over_auth_int() {
        let mut s = DigestSession::new(rfc_3_9_1("MD5"));
        let v = s
            .respond(&mufasa(), "POST", "/", Some(b"x"), Some("c"))
            .unwrap();
        assert_eq!(param(&v, "qop").as_deref(), Some("auth"));
    }

    #[test]
    fn legacy_rfc2069_without_qop() {
        let ch = challenge(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        );
        assert_eq!(ch.algorithm, DigestAlgorithm::Md5);
        let mut s = DigestSession::new(ch);
        let v = s
            .respond(
                &Credentials::new("Mufasa", "Circle Of Life"),
                "GET",
                "/dir/index.html",
                None,
                None,
            )
            .unwrap();
        // RFC 2069's own example prints a response that does not match its inputs (a known
        // erratum); this value is H(H(A1):nonce:H(A2)) from hashlib.
        assert_eq!(
            param(&v, "response").as_deref(),
            Some("670fd8c2df070c60b045671b8b24ff02")
        );
        assert!(param(&v, "nc").as_deref().is_none() && param(&v, "cnonce").as_deref().is_none());
        assert!(param(&v, "qop").as_deref().is_none() && param(&v, "opaque").as_deref().is_none());
    }

    #[test]
    fn nc_counts_and_stale_renew_resets() {
        let mut s = DigestSession::new(rfc_3_9_1("MD5"));
        for n in ["00000001", "00000002", "00000003"] {
            let v = s.respond(&mufasa(), "GET", "/", None, None).unwrap();
            assert_eq!(param(&v, "nc").as_deref(), Some(n));
            assert_eq!(param(&v, "opaque").as_deref(), Some(RFC_OPAQUE));
        }
        let stale = challenge(
            "Digest realm=\"http-auth@example.org\", qop=auth, nonce=\"new\", stale=TRUE",
        );
        assert!(stale.stale);
        s.renew(stale);
        let v = s.respond(&mufasa(), "GET", "/", None, None).unwrap();
        assert_eq!(param(&v, "nc").as_deref(), Some("00000001"));
        assert_eq!(param(&v, "nonce").as_deref(), Some("new"));
        assert_eq!(param(&v, "opaque").as_deref(), None);
    }

    #[test]
    fn random_cnonces_differ() {
        let mut s = DigestSession::new(rfc_3_9_1("MD5"));
        let a = s.respond(&mufasa(), "GET", "/", None, None).unwrap();
        let b = s.respond(&mufasa(), "GET", "/", None, None).unwrap();
        let (ca, cb) = (param(&a, "cnonce").unwrap(), param(&b, "cnonce").unwrap());
        assert_eq!(ca.len(), 32);
        assert!(ca.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(ca, cb);
    }

    #[test]
    fn quoted_values_are_escaped() {
        let mut s = DigestSession::new(challenge(
            r#"Digest realm="a \"b\" \\ c", nonce="n", qop=auth, opaque="o\"p""#,
        ));
        let v = s
            .respond(
                &Credentials::new("us\"er", "p"),
                "GET",
                "/x",
                None,
                Some("c"),
            )
            .unwrap();
        assert!(v.contains(r#"username="us\"er""#), "{v}");
        assert!(v.contains(r#"realm="a \"b\" \\ c""#), "{v}");
        assert_eq!(param(&v, "realm").as_deref(), Some(r#"a "b" \ c"#));
        assert_eq!(param(&v, "opaque").as_deref(), Some("o\"p"));
    }

    #[test]
    fn control_bytes_refused() {
        let mut s = DigestSession::new(rfc_3_9_1("MD5"));
        let bad_user = Credentials::new("a\r\nX: y", "p");
        assert_eq!(
            s.respond(&bad_user, "GET", "/", None, None),
            Err(AuthError::InvalidUser)
        );
        let mut ch = rfc_3_9_1("MD5");
        ch.nonce = "n\r\nX: y".to_owned();
        let mut s = DigestSession::new(ch);
        assert!(matches!(
            s.respond(&mufasa(), "GET", "/", None, None),
            Err(AuthError::BadChallenge(_))
        ));
    }

    #[test]
    fn challenge_parsing() {
        let ch = challenge(
            "DIGEST REALM=\"r\", NONCE=\"n\", ALGORITHM=sha-512-256, QOP=\"AUTH-INT , auth\", \
             STALE=true, USERHASH=TRUE, opaque=\"o\"",
        );
        assert_eq!(
            ch,
            DigestChallenge {
                realm: "r".into(),
                nonce: "n".into(),
                opaque: Some("o".into()),
                algorithm: DigestAlgorithm::Sha512_256,
                qop_auth: true,
                qop_auth_int: true,
                stale: true,
                userhash: true,
            }
        );
        let d = challenge("Digest realm=\"r\", nonce=\"n\", stale=false, userhash=\"false\"");
        assert!(!d.stale && !d.userhash && !d.qop_auth && !d.qop_auth_int);
        assert_eq!(d.algorithm, DigestAlgorithm::Md5);
    }

    #[test]
    fn challenge_errors() {
        let parse = |v: &str| {
            let (c, _) = parse_challenges([v.as_bytes()]);
            DigestChallenge::from_challenge(&c[0])
        };
        assert_eq!(
            parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-1"),
            Err(AuthError::Unsupported("Digest algorithm"))
        );
        assert!(matches!(
            parse("Digest realm=\"r\""),
            Err(AuthError::BadChallenge(_))
        ));
        assert!(matches!(
            parse("Digest nonce=\"n\""),
            Err(AuthError::BadChallenge(_))
        ));
        assert!(matches!(
            parse("Digest abc=="),
            Err(AuthError::BadChallenge(_))
        ));
        assert!(matches!(
            parse("Basic realm=\"r\""),
            Err(AuthError::BadChallenge(_))
        ));
        assert_eq!(
            parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-conf\""),
            Err(AuthError::Unsupported("Digest qop"))
        );
    }
}
