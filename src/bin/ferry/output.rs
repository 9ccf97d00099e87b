//! What the CLI prints: response heads, verbose traces (with credentials masked) and `-w`.
use crate::Outcome;
use ferry::{Event, Response};
use http::HeaderMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::Mutex;

/// The response head as curl's `-i` prints it.
pub(crate) fn head_text(resp: &Response) -> String {
    format_head(
        resp.version(),
        resp.status().as_u16(),
        resp.reason(),
        resp.headers(),
    )
}

/// Heads collected for `-i` while a request runs: `Some` while collecting.
static HEADS: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Starts (or, with `false`, stops) collecting every response head of the next request.
pub(crate) fn start_collecting_heads(on: bool) {
    if let Ok(mut h) = HEADS.lock() {
        *h = on.then(Vec::new);
    }
}

/// The heads collected since [`start_collecting_heads`], in arrival order; stops collecting.
pub(crate) fn take_heads() -> Vec<String> {
    HEADS
        .lock()
        .ok()
        .and_then(|mut h| h.take())
        .unwrap_or_default()
}

/// Records a response head event while collecting.
pub(crate) fn collect_head(e: &Event<'_>) {
    if let Event::ResponseHead {
        version,
        status,
        reason,
        headers,
    } = e
    {
        if let Ok(mut h) = HEADS.lock() {
            if let Some(heads) = h.as_mut() {
                // The library reports interim (1xx) heads without their reason phrase.
                let reason = match *reason {
                    "" if status.is_informational() => status.canonical_reason().unwrap_or(""),
                    r => r,
                };
                heads.push(format_head(*version, status.as_u16(), reason, headers));
            }
        }
    }
}

fn format_head(version: http::Version, status: u16, reason: &str, headers: &HeaderMap) -> String {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{version:?} {status}");
    if !reason.is_empty() {
        s.push(' ');
        s.push_str(reason);
    }
    s.push_str("\r\n");
    for (name, value) in headers {
        let _ = write!(
            s,
            "{}: {}\r\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    s.push_str("\r\n");
    s
}

/// Header fields whose values are secrets: printed as the scheme followed by `***`.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Masks a header line's value if the field carries a secret.
pub(crate) fn mask_line(line: &str) -> String {
    if let Some((name, value)) = line.split_once(':') {
        if SECRET_HEADERS
            .iter()
            .any(|s| name.trim().eq_ignore_ascii_case(s))
        {
            let value = value.trim();
            let scheme = value.split_once(' ').map(|(s, _)| s);
            return match scheme {
                Some(s) if !name.trim().to_ascii_lowercase().contains("cookie") => {
                    format!("{name}: {s} ***")
                }
                _ => format!("{name}: ***"),
            };
        }
    }
    line.to_owned()
}

/// Prints one event in curl's `-v` style to stderr.
pub(crate) fn verbose_event(e: &Event<'_>) {
    let mut err = io::stderr().lock();
    let _ = match e {
        Event::Connecting { addr, .. } => writeln!(err, "*   Trying {addr}..."),
        Event::Connected { peer, id } => {
            writeln!(
                err,
                "* Connected to {} port {} (#{id})",
                peer.ip(),
                peer.port()
            )
        }
        Event::TlsEstablished { version, cipher } => {
            writeln!(err, "* TLS connection using {version} / {cipher}")
        }
        Event::Reused { peer, id } => {
            writeln!(err, "* Re-using existing connection #{id} with host {peer}")
        }
        Event::RequestHead(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
                let _ = writeln!(err, "> {}", mask_line(line));
            }
            writeln!(err, ">")
        }
        Event::ResponseHead {
            version,
            status,
            reason,
            headers,
        } => {
            let _ = writeln!(err, "< {version:?} {} {reason}", status.as_u16());
            for (n, v) in headers.iter() {
                let line = format!("{n}: {}", String::from_utf8_lossy(v.as_bytes()));
                let _ = writeln!(err, "< {}", mask_line(&line));
            }
            writeln!(err, "<")
        }
        Event::Redirect { to } => writeln!(err, "* Issue another request to this URL: '{to}'"),
        Event::RedirectRefused { to, why } => {
            writeln!(err, "* Not following redirect to '{to}': {why}")
        }
        Event::Kept { id } => writeln!(err, "* Connection #{id} left intact"),
        Event::Closed { id, why } => writeln!(err, "* Closing connection #{id} ({why})"),
        Event::Retrying => writeln!(err, "* Connection died, retrying on a new connection"),
        _ => Ok(()),
    };
}

/// Expands a `-w` format (`%{var}`, `\n`, `\t`, `\r`, `%%`; `@file` reads the format from a
/// file) and prints it to stdout.
pub(crate) fn write_out(fmt: &str, o: &Outcome) -> io::Result<()> {
    let fmt = match fmt.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)?,
        None => fmt.to_owned(),
    };
    let text = expand(&fmt, o);
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn expand(fmt: &str, o: &Outcome) -> String {
    let mut s = String::new();
    let mut rest = fmt;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("%{") {
            if let Some(end) = after.find('}') {
                let var = &after[..end];
                match var {
                    "http_code" | "response_code" => {
                        let _ = write!(s, "{:03}", o.http_code);
                    }
                    "num_connects" => {
                        let _ = write!(s, "{}", o.num_connects);
                    }
                    "num_redirects" => {
                        let _ = write!(s, "{}", o.num_redirects);
                    }
                    "size_download" => {
                        let _ = write!(s, "{}", o.size_download);
                    }
                    "size_header" => {
                        let _ = write!(s, "{}", o.size_header);
                    }
                    "url_effective" => s.push_str(&o.url_effective),
                    "content_type" => s.push_str(&o.content_type),
                    "exitcode" => {
                        let _ = write!(s, "{}", o.exitcode);
                    }
                    "time_total" => {
                        let _ = write!(s, "{:.6}", o.time_total);
                    }
                    _ => {
                        let _ = write!(s, "%{{{var}}}");
                    }
                }
                rest = &after[end + 1..];
                continue;
            }
        }
        let two = rest.get(..2).unwrap_or("");
        let (piece, n) = match two {
            "\\n" => ("\n", 2),
            "\\t" => ("\t", 2),
            "\\r" => ("\r", 2),
            "\\\\" => ("\\", 2),
            "%%" => ("%", 2),
            _ => {
                s.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
        };
        s.push_str(piece);
        rest = &rest[n..];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_out_expands() {
        let o = Outcome {
            http_code: 200,
            num_connects: 1,
            num_redirects: 2,
            size_download: 1024,
            url_effective: "http://h/x".into(),
            ..Default::default()
        };
        assert_eq!(
            expand(
                "%{http_code} %{num_connects} %{num_redirects} %{size_download}\\n",
                &o
            ),
            "200 1 2 1024\n"
        );
        assert_eq!(
            expand("%{url_effective}%%\\t%{nope}", &o),
            "http://h/x%\t%{nope}"
        );
        let none = Outcome::default();
        assert_eq!(expand("%{http_code}", &none), "000");
    }

    #[test]
    fn secrets_masked() {
        assert_eq!(
            mask_line("Authorization: Basic dXNlcjpwYXNz"),
            "Authorization: Basic ***"
        );
        assert_eq!(
            mask_line("proxy-authorization: NTLM abc"),
            "proxy-authorization: NTLM ***"
        );
        assert_eq!(mask_line("Cookie: a=b"), "Cookie: ***");
        assert_eq!(mask_line("Host: h"), "Host: h");
    }
}
