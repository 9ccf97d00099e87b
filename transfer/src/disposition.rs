//! Local file names chosen by the server: `Content-Disposition` (RFC 6266, with RFC 8187
//! `filename*`) and the URL's last segment, and the sanitiser every such name goes through.
//!
//! A server-chosen name is hostile input (curl CVE-2016-0754, CVE-2020-8177; wget
//! CVE-2016-4971). [`sanitize`] turns it into a single path component that:
//! - holds no `/`, `\`, NUL, control byte or `:` (directories are cut off: the last component
//!   of `../../etc/passwd` is `passwd`);
//! - is never `.` or `..`, and starts with neither a dot (hidden) nor a dash (an option), nor
//!   starts or ends with a blank;
//! - is at most [`MAX_NAME`] bytes (cut at a character boundary, keeping a short extension).
//!
//! [`unique_in`] refuses a name that already exists in the directory, as curl's `-J` does: a
//! server never gets to overwrite a file. The caller still creates the file with `create_new`
//! so that a race cannot either.

use std::io;
use std::path::{Path, PathBuf};
use url::Url;

/// The longest name produced, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// The `filename` a `Content-Disposition` value names, before sanitising: `filename*`
/// (RFC 8187, UTF-8 or ISO-8859-1) wins over `filename`; quoted strings are unescaped. Bytes
/// that are not UTF-8 are replaced.
pub fn filename(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let mut plain = None;
    let mut extended = None;
    // Skip the disposition type; parameters follow each ';'.
    let mut rest = text.split_once(';').map(|(_, r)| r).unwrap_or("");
    while !rest.is_empty() {
        let (name, value, tail) = param(rest)?;
        rest = tail;
        if name.eq_ignore_ascii_case("filename*") && extended.is_none() {
            extended = decode_ext_value(&value);
        } else if name.eq_ignore_ascii_case("filename") && plain.is_none() {
            plain = Some(value);
        }
    }
    extended.or(plain)
}

/// Reads one `name=value` parameter from `s` (which starts after a ';'); returns the name, the
/// value (quoted-string unescaped) and what follows the next ';'.
fn param(s: &str) -> Option<(String, String, &str)> {
    let s = s.trim_start_matches([' ', '\t']);
    let eq = s.find('=')?;
    let name = s[..eq].trim_matches([' ', '\t']).to_owned();
    let after = s[eq + 1..].trim_start_matches([' ', '\t']);
    if let Some(q) = after.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        // An unterminated quoted string takes the rest of the value.
        let tail = match end {
            Some(e) => q[e..].split_once(';').map(|(_, t)| t).unwrap_or(""),
            None => "",
        };
        Some((name, value, tail))
    } else {
        let (value, tail) = after.split_once(';').unwrap_or((after, ""));
        Some((name, value.trim_matches([' ', '\t']).to_owned(), tail))
    }
}

/// Decodes an RFC 8187 `ext-value`: `charset'[language]'pct-encoded`.
fn decode_ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next()?;
    let _language = parts.next()?;
    let encoded = parts.next()?;
    let bytes = percent_decode(encoded)?;
    if charset.eq_ignore_ascii_case("utf-8") {
        Some(String::from_utf8_lossy(&bytes).into_owned())
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.iter().map(|&b| char::from(b)).collect())
    } else {
        None
    }
}

/// `%XX` decoding; `None` on a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Turns any proposed name into a safe single path component, or `None` when nothing usable is
/// left. See the module docs for the rules.
pub fn sanitize(name: &str) -> Option<String> {
    // Only the last component counts: a server cannot choose a directory.
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut s: String = last
        .chars()
        .map(|c| {
            if c.is_control() || c == ':' || c == '\u{2028}' || c == '\u{2029}' {
                '_'
            } else {
                c
            }
        })
        .collect();
    // Blanks, dots and dashes in any mix at the start (`- -x` must not become ` -x`), blanks at
    // the end.
    s = s
        .trim_start_matches(|c: char| c.is_whitespace() || c == '.' || c == '-')
        .trim_end_matches(|c: char| c.is_whitespace())
        .to_owned();
    if s.is_empty() || s == "." || s == ".." {
        return None;
    }
    if s.len() > MAX_NAME {
        // The cut can end on whitespace that was inside the name: trim it as the whole name
        // was trimmed, so that a sanitised name never ends in a blank and sanitises to itself.
        s = truncate_keeping_extension(&s, MAX_NAME)
            .trim_end()
            .to_owned();
    }
    Some(s)
}

/// Cuts `s` to at most `max` bytes at a character boundary, keeping an extension of up to 16
/// bytes.
fn truncate_keeping_extension(s: &str, max: usize) -> String {
    let ext = match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i <= 16 => &s[i..],
        _ => "",
    };
    let mut budget = max - ext.len();
    while !s.is_char_boundary(budget) {
        budget -= 1;
    }
    let stem = &s[..budget.min(s.len() - ext.len())];
    format!("{stem}{ext}")
}

/// The sanitised last path segment of `url` (percent-decoded), or `None` when it has none.
pub fn from_url(url: &Url) -> Option<String> {
    let seg = url.path_segments()?.next_back()?;
    let decoded = percent_decode(seg)?;
    sanitize(&String::from_utf8_lossy(&decoded))
}

/// The name to save a download as: `Content-Disposition`'s filename when given and usable, else
/// the URL's last segment; sanitised either way.
pub fn choose(content_disposition: Option<&[u8]>, url: &Url) -> Option<String> {
    content_disposition
        .and_then(filename)
        .and_then(|n| sanitize(&n))
        .or_else(|| from_url(url))
}

/// `dir/name`, refusing (as curl's `-J` does) when something by that name already exists,
/// dangling symlinks included. `name` must be a sanitised single component.
pub fn unique_in(dir: &Path, name: &str) -> io::Result<PathBuf> {
    if sanitize(name).as_deref() != Some(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a safe file name"),
        ));
    }
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("refusing to overwrite {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! name {
        ($test:ident, $header:expr, $want:expr) => {
            #[test]
            fn $test() {
                let got = filename($header.as_bytes()).and_then(|n| sanitize(&n));
                assert_eq!(got.as_deref(), $want, "header {:?}", $header);
            }
        };
    }

    name!(plain_token, "attachment; filename=a.txt", Some("a.txt"));
    name!(quoted, "attachment; filename=\"a b.txt\"", Some("a b.txt"));
    name!(
        quoted_escapes,
        r#"attachment; filename="a\"b.txt""#,
        Some("a\"b.txt")
    );
    name!(
        quoted_semicolon,
        "attachment; filename=\"a;b.txt\"; size=3",
        Some("a;b.txt")
    );
    name!(
        ext_utf8,
        "attachment; filename*=UTF-8''%E2%82%AC%20rates.txt",
        Some("€ rates.txt")
    );
    name!(
        ext_wins,
        "attachment; filename=\"fallback.txt\"; filename*=utf-8''real.txt",
        Some("real.txt")
    );
    name!(
        ext_latin1,
        "attachment; filename*=iso-8859-1'en'%A3.txt",
        Some("£.txt")
    );
    name!(
        ext_bad_charset_falls_back,
        "attachment; filename*=koi8-r''x; filename=y",
        Some("y")
    );
    name!(
        ext_bad_escape_falls_back,
        "attachment; filename*=UTF-8''%G1; filename=y",
        Some("y")
    );
    name!(
        case_insensitive,
        "ATTACHMENT; FILENAME=Up.TXT",
        Some("Up.TXT")
    );
    name!(no_filename, "attachment", None);
    name!(inline_no_params, "inline;", None);
    name!(
        traversal,
        "attachment; filename=\"../../etc/passwd\"",
        Some("passwd")
    );
    name!(
        backslash_traversal,
        "attachment; filename=\"..\\..\\x.exe\"",
        Some("x.exe")
    );
    name!(
        ext_traversal,
        "attachment; filename*=UTF-8''..%2F..%2Fevil",
        Some("evil")
    );
    name!(dotdot_only, "attachment; filename=\"..\"", None);
    name!(dot_only, "attachment; filename=.", None);
    name!(slash_only, "attachment; filename=\"/\"", None);
    name!(trailing_slash, "attachment; filename=\"dir/\"", None);
    name!(hidden, "attachment; filename=\".bashrc\"", Some("bashrc"));
    name!(dash, "attachment; filename=\"-rf\"", Some("rf"));
    name!(dots_dashes, "attachment; filename=\".-.-x\"", Some("x"));
    name!(drive, "attachment; filename=\"C:evil\"", Some("C_evil"));
    name!(
        stream,
        "attachment; filename=\"a:stream\"",
        Some("a_stream")
    );
    name!(
        nul_escape,
        "attachment; filename*=UTF-8''a%00b",
        Some("a_b")
    );
    name!(
        newline_escape,
        "attachment; filename*=UTF-8''a%0Ab%0D",
        Some("a_b_")
    );
    name!(unterminated, "attachment; filename=\"abc", Some("abc"));
    name!(empty_quoted, "attachment; filename=\"\"", None);
    name!(spaces_only, "attachment; filename=\"   \"", None);

    #[test]
    fn long_names_are_bounded() {
        let long = format!("{}.tar.gz", "a".repeat(400));
        let s = sanitize(&long).unwrap();
        assert!(s.len() <= MAX_NAME);
        assert!(s.ends_with(".gz"));
        let multi = "€".repeat(200); // 600 bytes
        let s = sanitize(&multi).unwrap();
        assert!(s.len() <= MAX_NAME);
        assert!(s.chars().all(|c| c == '€'));
    }

    /// Found by the `content_disposition` fuzz target (issue 6): a name cut to `MAX_NAME` right
    /// after a blank kept the blank at its end, so it did not sanitise to itself.
    #[test]
    fn cut_names_do_not_end_in_blanks() {
        let long = format!("{} b", "a".repeat(254));
        let s = sanitize(&long).unwrap();
        assert_eq!(s, "a".repeat(254));
        let parts: &[&[u8]] = &[
            b"a; filename=\"reportile%E2t\x00\x00\x00A82%%2\xffn\x00\x002%\x7f\x00%AC%E2\xff\xff",
            b"\xff\xff\xff\xff\x9d\xff\xff\xff\xff\xff\xffttac\x00~enatt%AC%\xff\xff\xff\xff\xff",
            b"\xff\xff\xff%Aatta 82tachme\xfc\xff; 8\xff\x1fA%AC%%Aattachme\xfc\xff; 8\xff\x1f\xff",
            b"\xff\xff\xff\xff\xff\xff\xb7 8 82%A 8ttachme\xfc \x00\x00\x00\xff\x1fAC% \x1f% 8 82%",
            b"A 8 8C% 82%A 8 82%A 8",
        ];
        let fuzzed = parts.concat();
        let name = filename(&fuzzed).and_then(|n| sanitize(&n)).unwrap();
        assert!(name.len() <= MAX_NAME && !name.ends_with(char::is_whitespace));
        assert_eq!(sanitize(&name).as_deref(), Some(name.as_str()));
    }

    /// Found by the `content_disposition` fuzz target (issue 6): blanks after a leading dash
    /// (or dot) survived, since blanks were trimmed before the dashes: `- x` became ` x`.
    #[test]
    fn leading_blanks_after_dashes_are_trimmed() {
        let fuzzed = b";filename=- \xb5";
        let name = filename(fuzzed).and_then(|n| sanitize(&n)).unwrap();
        assert_eq!(name, "\u{fffd}");
        for (given, want) in [
            ("- -x", "x"),
            (". .x", "x"),
            ("- .y z ", "y z"),
            (" - ", ""),
        ] {
            assert_eq!(sanitize(given).unwrap_or_default(), want, "{given:?}");
        }
    }

    #[test]
    fn url_names() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            from_url(&u("http://h/a/b.bin?x=1")).as_deref(),
            Some("b.bin")
        );
        assert_eq!(from_url(&u("http://h/a/%2E%2E")), None);
        assert_eq!(from_url(&u("http://h/a/..%2F..%2Fx")).as_deref(), Some("x"));
        assert_eq!(from_url(&u("http://h/")), None);
        assert_eq!(
            from_url(&u("http://h/%2Ehidden")).as_deref(),
            Some("hidden")
        );
        assert_eq!(
            choose(
                Some(b"attachment; filename=\"/etc/shadow\""),
                &u("http://h/f")
            )
            .as_deref(),
            Some("shadow")
        );
        assert_eq!(
            choose(Some(b"attachment"), &u("http://h/f")).as_deref(),
            Some("f")
        );
        assert_eq!(choose(None, &u("http://h/")), None);
    }

    #[test]
    fn unique_in_refuses_existing() {
        let dir = std::env::temp_dir().join(format!("ferry-disp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("taken"), b"x").unwrap();
        assert_eq!(
            unique_in(&dir, "taken").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(unique_in(&dir, "free").unwrap(), dir.join("free"));
        assert_eq!(
            unique_in(&dir, "../x").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Arbitrary bytes never panic and whatever comes out obeys the rules.
    #[test]
    fn fuzz_like_inputs() {
        let pieces: &[&[u8]] = &[
            b"attachment",
            b";",
            b" filename",
            b"*",
            b"=",
            b"\"",
            b"\\",
            b"UTF-8''",
            b"%",
            b"2F",
            b"..",
            b"/",
            b"\x00",
            b"\xff",
            b"\xe2\x82",
            b"-",
            b".",
            b"a",
            b"'",
            b":",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut v = Vec::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                v.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize]);
            }
            if let Some(n) = filename(&v).and_then(|n| sanitize(&n)) {
                assert!(!n.is_empty() && n.len() <= MAX_NAME, "{n:?}");
                assert!(!n.contains(['/', '\\', '\0', ':']), "{n:?}");
                assert!(!n.starts_with(['.', '-']), "{n:?}");
                assert!(!n.chars().any(char::is_control), "{n:?}");
            }
        }
    }
}
