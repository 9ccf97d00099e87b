//! Challenge parsing (RFC 9110 §11.2, §11.6.1): `WWW-Authenticate` and `Proxy-Authenticate`.
//!
//! ```text
//! challenge   = auth-scheme [ 1*SP ( token68 / [ auth-param *( OWS "," OWS auth-param ) ] ) ]
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//! Several challenges may share one field value, separated by commas, and span several fields.
//!
//! # Where one challenge ends
//! Commas separate both the parameters of one challenge and the challenges themselves:
//! `Digest realm="a", qop="auth", Basic realm="b"`. After a comma, an element that reads
//! `token BWS "="` is another parameter of the current challenge; anything else that starts with
//! a token (`token` then a space, a comma or the end) begins a new challenge. A `token =` can
//! never begin a challenge because a token68 cannot start with `=`.
//!
//! # What is skipped
//! Each field value is parsed on its own: a challenge never continues into the next field line
//! (servers send one or more whole challenges per line, and a list split across lines is a
//! recombination artefact we do not need). A malformed challenge (bad token characters, a
//! parameter without a value, an unterminated quoted string, a missing comma) becomes one
//! [`Malformed`] and parsing resumes at the next element that starts a challenge; after an
//! unterminated quoted string nothing else in that field can be trusted, so the field ends there.
//! Unknown schemes are returned like any other: ignoring them is the policy's job.

/// Bytes of all challenge field values of one response considered; more is a malformed
/// challenge, never an allocation without bound. 16 KiB: NTLM type-2 messages with large target
/// info are the largest legitimate challenges.
pub const MAX_CHALLENGE_BYTES: usize = 16 * 1024;

/// One challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`basic`, `digest`, `ntlm`, `bearer`, …).
    pub scheme: String,
    /// The token68 form, if used (NTLM type-2 messages, for example).
    pub token68: Option<String>,
    /// Parameters: lowercased names, unquoted and unescaped values, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the scheme is `scheme` (case-insensitive).
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// A challenge that was skipped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Why it was skipped.
    pub reason: &'static str,
}

/// Parses every challenge in `values` (the field values of all `WWW-Authenticate` or
/// `Proxy-Authenticate` fields, in order). Malformed challenges are skipped with a reason; the
/// rest are returned. Never panics.
///
/// Once the values seen so far add up to more than [`MAX_CHALLENGE_BYTES`], one
/// `Malformed { reason: "too large" }` is reported and neither that value nor any later one is
/// parsed (the challenges of earlier values are kept).
pub fn parse_challenges<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Challenge>, Vec<Malformed>) {
    let mut out = Parsed::default();
    let mut total = 0usize;
    for value in values {
        total = total.saturating_add(value.len());
        if total > MAX_CHALLENGE_BYTES {
            out.malformed.push(Malformed {
                reason: "too large",
            });
            break;
        }
        parse_field(value, &mut out);
    }
    (out.challenges, out.malformed)
}

// ---------------------------------------------------------------------------------------------
// The grammar, piece by piece (RFC 9110; h11 `_abnf.py` style).
// ---------------------------------------------------------------------------------------------

// OWS = *( SP / HTAB )                                               ; §5.6.3
// BWS = OWS                                                          ; "bad" whitespace, §5.6.3
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA                ; §5.6.2
// token = 1*tchar
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="   ; §11.2
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE            ; §5.6.4
// qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
// obs-text      = %x80-FF
fn is_qdtext(b: u8) -> bool {
    b == b'\t'
        || b == b' '
        || b == 0x21
        || (0x23..=0x5B).contains(&b)
        || (0x5D..=0x7E).contains(&b)
        || b >= 0x80
}

// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )                 ; §5.6.4
// VCHAR       = %x21-7E
fn is_quoted_pair_char(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7E).contains(&b) || b >= 0x80
}

// The list rule with empty elements tolerated on receipt (§5.6.1.2):
// #element => [ element ] *( OWS "," OWS [ element ] )

/// Results collected across fields.
#[derive(Default)]
struct Parsed {
    challenges: Vec<Challenge>,
    malformed: Vec<Malformed>,
}

/// A cursor over one field value. Every read is bounds-checked through `peek`; nothing slices
/// at an unchecked index, so hostile bytes cannot panic it.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

/// Why a challenge could not be parsed, and whether the rest of the field is still usable.
struct Failure {
    reason: &'static str,
    /// An unterminated quoted string swallowed the rest of the field.
    fatal: bool,
}

fn fail(reason: &'static str) -> Failure {
    Failure {
        reason,
        fatal: false,
    }
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, j: usize) -> Option<u8> {
        self.s.get(j).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.i += 1;
        }
    }

    /// Skips OWS and empty list elements: `  , ,  `.
    fn skip_empty_elements(&mut self) {
        while self.peek().is_some_and(|b| is_ows(b) || b == b',') {
            self.i += 1;
        }
    }

    /// `token`, lowercased; `None` (nothing consumed) if there is no tchar here.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        let bytes = self.s.get(start..self.i)?;
        if bytes.is_empty() {
            return None;
        }
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Whether a `token BWS "="` starts at `j`, i.e. the element there is an auth-param.
    fn param_starts_at(&self, mut j: usize) -> bool {
        let start = j;
        while self.peek_at(j).is_some_and(is_tchar) {
            j += 1;
        }
        if j == start {
            return false;
        }
        while self.peek_at(j).is_some_and(is_ows) {
            j += 1;
        }
        self.peek_at(j) == Some(b'=')
    }

    /// Whether a challenge starts at `j`: `token` followed by the end, a comma, OWS before a
    /// comma or the end, or `1*SP` and something other than `=` (which would make it a param).
    fn challenge_starts_at(&self, mut j: usize) -> bool {
        let start = j;
        while self.peek_at(j).is_some_and(is_tchar) {
            j += 1;
        }
        if j == start {
            return false;
        }
        match self.peek_at(j) {
            None | Some(b',') => true,
            Some(b) if is_ows(b) => !self.param_starts_at(start),
            Some(_) => false,
        }
    }

    /// Tries `token68` followed by OWS and then a comma or the end. Consumes nothing on failure.
    fn try_token68(&mut self) -> Option<String> {
        let start = self.i;
        let mut j = self.i;
        while self.peek_at(j).is_some_and(is_token68_char) {
            j += 1;
        }
        if j == start {
            return None;
        }
        while self.peek_at(j) == Some(b'=') {
            j += 1;
        }
        let end = j;
        while self.peek_at(j).is_some_and(is_ows) {
            j += 1;
        }
        if !matches!(self.peek_at(j), None | Some(b',')) {
            return None;
        }
        let bytes = self.s.get(start..end)?;
        self.i = j;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// `quoted-string`, unescaped; the cursor is on the opening quote.
    fn quoted_string(&mut self) -> Result<String, Failure> {
        self.i += 1; // DQUOTE
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(Failure {
                        reason: "unterminated quoted string",
                        fatal: true,
                    })
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                Some(b'\\') => match self.peek_at(self.i + 1) {
                    Some(b) if is_quoted_pair_char(b) => {
                        value.push(b);
                        self.i += 2;
                    }
                    None => {
                        return Err(Failure {
                            reason: "unterminated quoted string",
                            fatal: true,
                        })
                    }
                    Some(_) => {
                        self.skip_rest_of_quoted()?;
                        return Err(fail("control character in quoted string"));
                    }
                },
                Some(b) if is_qdtext(b) => {
                    value.push(b);
                    self.i += 1;
                }
                Some(_) => {
                    // Step over the rest of the string so that recovery resumes after it.
                    self.skip_rest_of_quoted()?;
                    return Err(fail("control character in quoted string"));
                }
            }
        }
    }

    /// Skips to just after the closing quote, whatever the bytes in between.
    fn skip_rest_of_quoted(&mut self) -> Result<(), Failure> {
        loop {
            match self.peek() {
                None => {
                    return Err(Failure {
                        reason: "unterminated quoted string",
                        fatal: true,
                    })
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => self.i += 2,
                Some(_) => self.i += 1,
            }
        }
    }

    /// `auth-param = token BWS "=" BWS ( token / quoted-string )`.
    fn auth_param(&mut self) -> Result<(String, String), Failure> {
        let name = self
            .token()
            .ok_or_else(|| fail("expected a parameter name"))?
            .to_ascii_lowercase();
        self.skip_ows();
        if self.peek() != Some(b'=') {
            return Err(fail("parameter without '='"));
        }
        self.i += 1;
        self.skip_ows();
        let value = match self.peek() {
            Some(b'"') => self.quoted_string()?,
            _ => self
                .token()
                .ok_or_else(|| fail("parameter without a value"))?,
        };
        Ok((name, value))
    }

    /// One challenge, starting at a non-empty list element.
    fn challenge(&mut self) -> Result<Challenge, Failure> {
        // auth-scheme = token
        let scheme = self
            .token()
            .ok_or_else(|| fail("expected an auth-scheme token"))?
            .to_ascii_lowercase();
        let mut challenge = Challenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        // A scheme alone: `Basic`, `Negotiate,…`, `NTLM\t,`. With a space after the scheme the
        // element may still go on with a parameter list that starts empty (`Digest , realm=…`),
        // which the loop below sorts out.
        if self.peek() != Some(b' ') {
            self.skip_ows();
            if matches!(self.peek(), None | Some(b',')) {
                return Ok(challenge);
            }
            return Err(fail("auth-scheme not followed by a space"));
        }
        // 1*SP
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        // token68, only when it fills the whole element (`realm=x` is an auth-param, but
        // `abc=` alone can only be a token68: an auth-param needs a value).
        if let Some(t) = self.try_token68() {
            challenge.token68 = Some(t);
            return Ok(challenge);
        }
        // [ auth-param *( OWS "," OWS auth-param ) ], empty elements tolerated.
        let mut after_comma = false;
        loop {
            let before = self.i;
            self.skip_empty_elements();
            after_comma |= self
                .s
                .get(before..self.i)
                .is_some_and(|b| b.contains(&b','));
            if self.at_end() || !self.param_starts_at(self.i) {
                // The end of the field, or the next element is not ours (a new challenge, or
                // junk that the next round reports). Junk right after the scheme's space, with
                // no comma in between, is this challenge's fault.
                if !after_comma && !self.at_end() {
                    return Err(fail("expected a token68 or an auth-param"));
                }
                return Ok(challenge);
            }
            after_comma = false;
            let param = self.auth_param()?;
            challenge.params.push(param);
            self.skip_ows();
            match self.peek() {
                None => return Ok(challenge),
                Some(b',') => {}
                Some(_) => return Err(fail("expected ',' after a parameter")),
            }
        }
    }

    /// After a failure: skips to the next list element that starts a challenge, skipping the
    /// parameters that belonged to the malformed one. Returns false if the field is exhausted
    /// (or a quoted string never ends, so no later comma can be trusted).
    fn recover(&mut self) -> bool {
        loop {
            // Find the next comma outside a quoted string.
            loop {
                match self.peek() {
                    None => return false,
                    Some(b',') => break,
                    Some(b'"') => {
                        self.i += 1;
                        if self.skip_rest_of_quoted().is_err() {
                            return false;
                        }
                    }
                    Some(_) => self.i += 1,
                }
            }
            self.skip_empty_elements();
            if self.at_end() {
                return false;
            }
            if self.challenge_starts_at(self.i) {
                return true;
            }
        }
    }
}

/// Parses one field value, appending to `out`.
fn parse_field(value: &[u8], out: &mut Parsed) {
    let mut c = Cursor { s: value, i: 0 };
    loop {
        c.skip_empty_elements();
        if c.at_end() {
            return;
        }
        let start = c.i;
        match c.challenge() {
            Ok(ch) => {
                out.challenges.push(ch);
                // A challenge ends at the end, or at a comma before the next element; anything
                // else means the next element is junk, which the next round reports.
                if c.i == start {
                    // Defensive: no progress would loop forever.
                    out.malformed.push(Malformed {
                        reason: "unparsable element",
                    });
                    if !c.recover() {
                        return;
                    }
                }
            }
            Err(f) => {
                out.malformed.push(Malformed { reason: f.reason });
                if f.fatal || !c.recover() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> (Vec<Challenge>, Vec<Malformed>) {
        parse_challenges(values.iter().map(|v| v.as_bytes()))
    }

    fn ch(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.to_owned(),
            token68: None,
            params: params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn t68(scheme: &str, token: &str) -> Challenge {
        Challenge {
            scheme: scheme.to_owned(),
            token68: Some(token.to_owned()),
            params: Vec::new(),
        }
    }

    macro_rules! case {
        ($name:ident: [$($v:expr),*] => [$($c:expr),*], malformed $m:expr) => {
            #[test]
            fn $name() {
                let (c, m) = parse(&[$($v),*]);
                assert_eq!(c, vec![$($c),*]);
                assert_eq!(m.len(), $m, "malformed: {m:?}");
            }
        };
    }

    case!(basic_alone: ["Basic"] => [ch("basic", &[])], malformed 0);
    case!(basic_realm: ["Basic realm=\"x\""] => [ch("basic", &[("realm", "x")])], malformed 0);
    case!(scheme_case_insensitive: ["BASIC Realm=\"x\", CHARSET=UTF-8"]
        => [ch("basic", &[("realm", "x"), ("charset", "UTF-8")])], malformed 0);
    case!(digest_then_basic: ["Digest realm=\"a\", qop=\"auth\", Basic realm=\"b\""]
        => [ch("digest", &[("realm", "a"), ("qop", "auth")]), ch("basic", &[("realm", "b")])],
        malformed 0);
    case!(across_fields: ["Negotiate", "NTLM", "Basic realm=\"r\""]
        => [ch("negotiate", &[]), ch("ntlm", &[]), ch("basic", &[("realm", "r")])], malformed 0);
    case!(schemes_alone_in_one_field: ["Negotiate, NTLM,Basic"]
        => [ch("negotiate", &[]), ch("ntlm", &[]), ch("basic", &[])], malformed 0);
    case!(token68_ntlm: ["NTLM TlRMTVNTUAACAAAA=="] => [t68("ntlm", "TlRMTVNTUAACAAAA==")],
        malformed 0);
    case!(token68_then_challenge: ["Negotiate abc+/=, Basic realm=\"x\""]
        => [t68("negotiate", "abc+/="), ch("basic", &[("realm", "x")])], malformed 0);
    case!(token68_trailing_equals_only_at_end: ["Foo abc="] => [t68("foo", "abc=")], malformed 0);
    case!(bws_around_equals: ["Digest realm = \"a\" , nonce\t=\tabc"]
        => [ch("digest", &[("realm", "a"), ("nonce", "abc")])], malformed 0);
    case!(empty_elements: [", , Basic realm=\"x\", , , Digest nonce=\"n\" ,,"]
        => [ch("basic", &[("realm", "x")]), ch("digest", &[("nonce", "n")])], malformed 0);
    case!(empty_elements_inside_params: ["Digest , realm=\"a\", , nonce=\"n\""]
        => [ch("digest", &[("realm", "a"), ("nonce", "n")])], malformed 0);
    case!(escapes: [r#"Basic realm="a \"quoted\" \\ realm""#]
        => [ch("basic", &[("realm", r#"a "quoted" \ realm"#)])], malformed 0);
    case!(quoted_comma: ["Digest realm=\"a, b\", qop=\"auth,auth-int\""]
        => [ch("digest", &[("realm", "a, b"), ("qop", "auth,auth-int")])], malformed 0);
    case!(unknown_scheme_returned: ["Mutual realm=\"x\", Basic"]
        => [ch("mutual", &[("realm", "x")]), ch("basic", &[])], malformed 0);
    case!(empty_quoted_value: ["Basic realm=\"\""] => [ch("basic", &[("realm", "")])],
        malformed 0);
    case!(empty_input: [""] => [], malformed 0);
    case!(only_commas: [" , ,"] => [], malformed 0);

    case!(unterminated_quote: ["Basic realm=\"x, Digest realm=\"y\""] => [], malformed 1);
    case!(unterminated_quote_next_field_ok: ["Basic realm=\"x", "Digest realm=\"y\""]
        => [ch("digest", &[("realm", "y")])], malformed 1);
    case!(param_without_value: ["Digest nonce=\"n\", realm=, Basic realm=\"b\""]
        => [ch("basic", &[("realm", "b")])], malformed 1);
    case!(param_without_value_at_end: ["Basic a=b, realm="] => [], malformed 1);
    // A lone `name=` is a valid token68, not a parameter without a value.
    case!(equals_alone_is_token68: ["Basic realm="] => [t68("basic", "realm=")], malformed 0);
    case!(scheme_space_comma: ["Basic , Digest nonce=n"]
        => [ch("basic", &[]), ch("digest", &[("nonce", "n")])], malformed 0);
    case!(junk_after_scheme: ["Basic \"x\", Digest nonce=n"]
        => [ch("digest", &[("nonce", "n")])], malformed 1);
    case!(bad_scheme_chars: ["B@sic realm=\"a\", Basic realm=\"b\""]
        => [ch("basic", &[("realm", "b")])], malformed 1);
    case!(missing_comma: ["Digest realm=\"a\" nonce=\"n\", Basic"] => [ch("basic", &[])],
        malformed 1);
    case!(malformed_params_skipped: ["Digest realm=\"a\" x, nonce=\"n\", qop=auth, Basic"]
        => [ch("basic", &[])], malformed 1);
    case!(scheme_then_equals: ["realm=\"x\", Basic"] => [ch("basic", &[])], malformed 1);
    case!(control_in_quoted: ["Basic realm=\"a\u{1}b\", Digest nonce=n"]
        => [ch("digest", &[("nonce", "n")])], malformed 1);
    case!(junk_after_param: ["Digest realm=\"a\", \"junk\", Basic"]
        => [ch("digest", &[("realm", "a")]), ch("basic", &[])], malformed 1);
    case!(tab_after_scheme: ["Basic\trealm=x"] => [], malformed 1);

    #[test]
    fn non_utf8_values_are_lossy() {
        let (c, m) = parse_challenges([&b"Basic realm=\"caf\xe9\""[..]]);
        assert!(m.is_empty());
        assert_eq!(c[0].param("realm"), Some("caf\u{fffd}"));
        let (c, _) = parse_challenges([&b"Basic realm=\"caf\xc3\xa9\""[..]]);
        assert_eq!(c[0].param("realm"), Some("café"));
    }

    #[test]
    fn param_lookup_is_case_insensitive() {
        let (c, _) = parse(&["Digest NONCE=abc"]);
        assert_eq!(c[0].param("nonce"), Some("abc"));
        assert_eq!(c[0].param("Nonce"), Some("abc"));
        assert!(c[0].is("DIGEST"));
    }

    #[test]
    fn too_large_stops() {
        let big = format!("Basic realm=\"{}\"", "a".repeat(MAX_CHALLENGE_BYTES));
        let (c, m) = parse(&["Negotiate", &big, "NTLM"]);
        assert_eq!(c, vec![ch("negotiate", &[])]);
        assert_eq!(
            m,
            vec![Malformed {
                reason: "too large"
            }]
        );
        let exact = format!("Basic realm=\"{}\"", "a".repeat(MAX_CHALLENGE_BYTES - 14));
        assert_eq!(exact.len(), MAX_CHALLENGE_BYTES);
        let (c, m) = parse(&[&exact]);
        assert_eq!((c.len(), m.len()), (1, 0));
    }

    /// Every prefix and every single-byte corruption of realistic inputs: no panic, and the
    /// output never claims more than the input could hold.
    #[test]
    fn prefixes_and_corruptions_never_panic() {
        let inputs: &[&[u8]] = &[
            b"Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
            b"Basic realm=\"a \\\"b\\\"\", charset=UTF-8, NTLM TlRMTVNTUAACAAAA==, Negotiate",
            "Basic realm=\"é\\\u{e9}\"".as_bytes(),
        ];
        for input in inputs {
            for n in 0..=input.len() {
                let _ = parse_challenges([&input[..n]]);
                let (a, b) = input.split_at(n);
                let _ = parse_challenges([a, b]);
            }
            for i in 0..input.len() {
                for b in [0u8, b'"', b'\\', b',', b'=', b' ', 0xff, 0xc3] {
                    let mut v = input.to_vec();
                    v[i] = b;
                    let (c, _) = parse_challenges([&v[..]]);
                    assert!(c.len() <= v.len());
                }
            }
        }
    }
}
