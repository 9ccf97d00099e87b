//! Command-line parsing: curl's options for URL mode, split into groups at `--next`.
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::time::Duration;

/// One `--next`-separated group: its URLs and the options that apply to them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Group {
    pub(crate) urls: Vec<String>,
    /// `-o FILE` and `-O`, in command-line order: the i-th goes with the i-th URL (curl).
    pub(crate) outputs: Vec<OutputArg>,
    pub(crate) include: bool,
    pub(crate) head: bool,
    pub(crate) method: Option<String>,
    pub(crate) headers: Vec<String>,
    pub(crate) data: Vec<DataArg>,
    pub(crate) upload: Option<String>,
    pub(crate) location: bool,
    pub(crate) max_redirs: Option<u32>,
    pub(crate) redirect_policy: Option<String>,
    pub(crate) silent: bool,
    pub(crate) show_error: bool,
    pub(crate) verbose: bool,
    pub(crate) fail: bool,
    pub(crate) max_time: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) cacert: Option<String>,
    pub(crate) insecure: bool,
    pub(crate) user_agent: Option<String>,
    pub(crate) write_out: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) basic: bool,
    pub(crate) digest: bool,
    pub(crate) ntlm: bool,
    pub(crate) anyauth: bool,
    pub(crate) bearer: Option<String>,
    pub(crate) location_trusted: bool,
    pub(crate) default_credentials: Option<String>,
    pub(crate) autologon: Option<String>,
    pub(crate) proxy: Option<String>,
    pub(crate) noproxy: Option<String>,
    pub(crate) proxytunnel: bool,
    pub(crate) proxy_user: Option<String>,
    pub(crate) proxy_basic: bool,
    pub(crate) proxy_digest: bool,
    pub(crate) proxy_ntlm: bool,
    pub(crate) proxy_anyauth: bool,
    /// `-C OFFSET`: only `-` (resume the output file from its size) is supported.
    pub(crate) continue_at: Option<String>,
    /// `-r/--range`: the byte ranges to ask for (`Range: bytes=...`).
    pub(crate) range: Option<String>,
    /// `--limit-rate`: bytes per second (0: no limit).
    pub(crate) limit_rate: Option<u64>,
    /// `--retry N`: retries of transient failures.
    pub(crate) retry: u32,
    /// `-J`: with `-O`, name the file from Content-Disposition.
    pub(crate) remote_header_name: bool,
}

/// An `-o` / `-O` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputArg {
    /// `-o FILE` (`-` is stdout).
    File(String),
    /// `-O`: the URL's last path segment.
    RemoteName,
}

/// A `-d` / `--data-binary` argument.
#[derive(Debug, Clone)]
pub(crate) enum DataArg {
    /// `-d`: `@file` has CR and LF stripped, as curl does.
    Ascii(String),
    /// `--data-binary`: `@file` is sent as is.
    Binary(String),
}

fn command() -> Command {
    let flag = |name: &'static str, short: Option<char>, help: &'static str| {
        let a = Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help);
        match short {
            Some(c) => a.short(c),
            None => a,
        }
    };
    let opt = |name: &'static str, short: Option<char>, value: &'static str, help: &'static str| {
        let a = Arg::new(name)
            .long(name)
            .value_name(value)
            .action(ArgAction::Append)
            .allow_hyphen_values(true)
            .help(help);
        match short {
            Some(c) => a.short(c),
            None => a,
        }
    };
    Command::new("ferry")
        .about("A non-interactive HTTP/1.1 client: curl-like requests (URL mode)")
        .override_usage("ferry [OPTIONS] URL... [--next [OPTIONS] URL...]\n       ferry --help")
        .disable_version_flag(true)
        .arg(
            Arg::new("url")
                .value_name("URL")
                .action(ArgAction::Append)
                .help("URL to fetch"),
        )
        .arg(opt(
            "output",
            Some('o'),
            "FILE",
            "Write the body to FILE (one per URL, in order)",
        ))
        .arg(
            Arg::new("remote-name")
                .long("remote-name")
                .short('O')
                // Append (not Count) so that every occurrence keeps its index.
                .num_args(0)
                .default_missing_value("")
                .action(ArgAction::Append)
                .help("Write the body to a file named like the URL's last path segment"),
        )
        .arg(flag(
            "include",
            Some('i'),
            "Include the response head in the output",
        ))
        .arg(flag(
            "head",
            Some('I'),
            "Send HEAD and print the response head",
        ))
        .arg(opt("request", Some('X'), "METHOD", "Use METHOD"))
        .arg(opt(
            "header",
            Some('H'),
            "LINE",
            "Add a header 'Name: value'",
        ))
        .arg(opt(
            "data",
            Some('d'),
            "DATA",
            "POST DATA (@file reads a file, CR/LF stripped)",
        ))
        .arg(opt(
            "data-binary",
            None,
            "DATA",
            "POST DATA as is (@file reads a file)",
        ))
        .arg(opt(
            "upload-file",
            Some('T'),
            "FILE",
            "PUT FILE ('-' streams stdin, chunked)",
        ))
        .arg(flag("location", Some('L'), "Follow redirects"))
        .arg(opt(
            "max-redirs",
            None,
            "N",
            "At most N redirects (default 10)",
        ))
        .arg(opt(
            "redirect-policy",
            None,
            "POLICY",
            "With -L: no-downgrade (default: never https to http), always, never",
        ))
        .arg(flag("silent", Some('s'), "Print no error messages"))
        .arg(flag("show-error", Some('S'), "With -s, still print errors"))
        .arg(flag(
            "verbose",
            Some('v'),
            "Print heads ('>' sent, '<' received) and events ('*')",
        ))
        .arg(flag(
            "fail",
            Some('f'),
            "Exit 22 without output on HTTP errors (>= 400)",
        ))
        .arg(opt(
            "max-time",
            Some('m'),
            "SECONDS",
            "Total time limit per URL",
        ))
        .arg(opt(
            "connect-timeout",
            None,
            "SECONDS",
            "Connect time limit",
        ))
        .arg(opt(
            "cacert",
            None,
            "FILE",
            "Trust the CA certificates in FILE (PEM)",
        ))
        .arg(flag(
            "insecure",
            Some('k'),
            "Do not verify the server certificate (unsafe)",
        ))
        .arg(opt("user-agent", Some('A'), "NAME", "Send User-Agent NAME"))
        .arg(opt(
            "write-out",
            Some('w'),
            "FORMAT",
            "Print FORMAT after each transfer",
        ))
        .arg(opt(
            "user",
            Some('u'),
            "USER:PASSWORD",
            "Server credentials (DOMAIN\\user accepted); Basic unless another scheme is chosen",
        ))
        .arg(flag(
            "basic",
            None,
            "Use Basic, sent preemptively (the default with -u)",
        ))
        .arg(flag(
            "digest",
            None,
            "Use Digest (answers the server's challenge)",
        ))
        .arg(flag(
            "ntlm",
            None,
            "Use NTLMv2 (handshake on one connection)",
        ))
        .arg(flag(
            "anyauth",
            None,
            "Ask the server, then use the strongest scheme it offers",
        ))
        .arg(opt("oauth2-bearer", None, "TOKEN", "Send a Bearer token"))
        .arg(flag(
            "location-trusted",
            None,
            "Send credentials to the targets of redirects too (other origins)",
        ))
        .arg(opt(
            "default-credentials",
            None,
            "FILE",
            "Ambient credentials (user:password in a mode-0600 file) for NTLM/Digest",
        ))
        .arg(opt(
            "proxy",
            Some('x'),
            "[SCHEME://]HOST[:PORT]",
            "Use this proxy (http:// or https://; or WinHTTP's 'http=h:p;https=h:p')",
        ))
        .arg(opt(
            "noproxy",
            None,
            "LIST",
            "Hosts that bypass the proxy (comma-separated, as NO_PROXY; overrides the environment)",
        ))
        .arg(flag(
            "proxytunnel",
            Some('p'),
            "Tunnel http:// URLs through the proxy with CONNECT too",
        ))
        .arg(opt(
            "proxy-user",
            Some('U'),
            "USER:PASSWORD",
            "Proxy credentials (sent only to the proxy)",
        ))
        .arg(flag(
            "proxy-basic",
            None,
            "Use Basic with the proxy (the default)",
        ))
        .arg(flag("proxy-digest", None, "Use Digest with the proxy"))
        .arg(flag("proxy-ntlm", None, "Use NTLMv2 with the proxy"))
        .arg(flag(
            "proxy-anyauth",
            None,
            "Use the strongest scheme the proxy offers",
        ))
        .arg(opt(
            "continue-at",
            Some('C'),
            "-",
            "Resume the -o/-O file from its size (validated with If-Range when known)",
        ))
        .arg(opt(
            "range",
            Some('r'),
            "RANGE",
            "Ask for these bytes only (e.g. 0-499, 500-, 0-99,200-299)",
        ))
        .arg(opt(
            "limit-rate",
            None,
            "RATE",
            "Cap the transfer speed (bytes/s; k, M, G suffixes)",
        ))
        .arg(opt(
            "retry",
            None,
            "N",
            "Retry transient failures (timeouts, 408, 429, 5xx) N times, 1 s doubling",
        ))
        .arg(flag(
            "remote-header-name",
            Some('J'),
            "With -O, name the file from Content-Disposition (sanitised; never overwrites)",
        ))
        .arg(opt(
            "autologon",
            None,
            "LEVEL",
            "Where ambient credentials may go: low (anywhere), medium (intranet), high (nowhere)",
        ))
}

/// Parses `args` (without the program name) into groups split at `--next`.
pub(crate) fn parse(args: Vec<OsString>) -> Result<Vec<Group>, clap::Error> {
    let mut groups = Vec::new();
    for part in args.split(|a| a == "--next") {
        let m = command().try_get_matches_from(
            std::iter::once(OsString::from("ferry")).chain(part.iter().cloned()),
        )?;
        groups.push(group(&m)?);
    }
    Ok(groups)
}

fn strings(m: &ArgMatches, name: &str) -> Vec<String> {
    m.get_many::<String>(name)
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

fn last(m: &ArgMatches, name: &str) -> Option<String> {
    m.get_many::<String>(name)
        .and_then(|mut v| v.next_back().cloned())
}

fn seconds(m: &ArgMatches, name: &str) -> Result<Option<Duration>, clap::Error> {
    match last(m, name) {
        None => Ok(None),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if (0.0..1e9).contains(&v) => Ok(Some(Duration::from_secs_f64(v))),
            _ => Err(command().error(
                clap::error::ErrorKind::ValueValidation,
                format!("--{name}: '{s}' is not a number of seconds"),
            )),
        },
    }
}

fn group(m: &ArgMatches) -> Result<Group, clap::Error> {
    let mut data = Vec::new();
    // Keep -d and --data-binary in command-line order, as curl joins them with '&'.
    let mut indexed: Vec<(usize, DataArg)> = Vec::new();
    for (name, make) in [
        ("data", DataArg::Ascii as fn(String) -> DataArg),
        ("data-binary", DataArg::Binary as fn(String) -> DataArg),
    ] {
        if let (Some(vals), Some(idx)) = (m.get_many::<String>(name), m.indices_of(name)) {
            indexed.extend(idx.zip(vals.cloned().map(make)));
        }
    }
    indexed.sort_by_key(|(i, _)| *i);
    data.extend(indexed.into_iter().map(|(_, d)| d));
    // Likewise -o and -O: curl gives each URL the next output option in command-line order.
    let mut outputs: Vec<(usize, OutputArg)> = Vec::new();
    if let (Some(vals), Some(idx)) = (m.get_many::<String>("output"), m.indices_of("output")) {
        outputs.extend(idx.zip(vals.cloned().map(OutputArg::File)));
    }
    if let Some(idx) = m.indices_of("remote-name") {
        outputs.extend(idx.map(|i| (i, OutputArg::RemoteName)));
    }
    outputs.sort_by_key(|(i, _)| *i);
    let max_redirs = match last(m, "max-redirs") {
        None => None,
        Some(s) => Some(
            // -1 (any negative number) is "no limit", as in curl.
            s.parse::<i64>()
                .map(|n| {
                    if n < 0 {
                        u32::MAX
                    } else {
                        n.min(u32::MAX as i64) as u32
                    }
                })
                .map_err(|_| {
                    command().error(
                        clap::error::ErrorKind::ValueValidation,
                        format!("--max-redirs: '{s}' is not a number"),
                    )
                })?,
        ),
    };
    let bad = |msg: String| command().error(clap::error::ErrorKind::ValueValidation, msg);
    let limit_rate = match last(m, "limit-rate") {
        None => None,
        Some(r) => Some(
            ferry_transfer::throttle::parse_rate(&r)
                .ok_or_else(|| bad(format!("--limit-rate: '{r}' is not a rate")))?,
        ),
    };
    let retry = match last(m, "retry") {
        None => 0,
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| bad(format!("--retry: '{n}' is not a number")))?,
    };
    let range = last(m, "range");
    if let Some(r) = &range {
        if r.is_empty()
            || !r
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
        {
            return Err(bad(format!("--range: '{r}' is not a byte range list")));
        }
    }
    Ok(Group {
        continue_at: last(m, "continue-at"),
        range,
        limit_rate,
        retry,
        remote_header_name: m.get_flag("remote-header-name"),
        urls: strings(m, "url"),
        outputs: outputs.into_iter().map(|(_, o)| o).collect(),
        include: m.get_flag("include"),
        head: m.get_flag("head"),
        method: last(m, "request"),
        headers: strings(m, "header"),
        data,
        upload: last(m, "upload-file"),
        location: m.get_flag("location"),
        max_redirs,
        redirect_policy: last(m, "redirect-policy"),
        silent: m.get_flag("silent"),
        show_error: m.get_flag("show-error"),
        verbose: m.get_flag("verbose"),
        fail: m.get_flag("fail"),
        max_time: seconds(m, "max-time")?,
        connect_timeout: seconds(m, "connect-timeout")?,
        cacert: last(m, "cacert"),
        insecure: m.get_flag("insecure"),
        user_agent: last(m, "user-agent"),
        write_out: last(m, "write-out"),
        user: last(m, "user"),
        basic: m.get_flag("basic"),
        digest: m.get_flag("digest"),
        ntlm: m.get_flag("ntlm"),
        anyauth: m.get_flag("anyauth"),
        bearer: last(m, "oauth2-bearer"),
        location_trusted: m.get_flag("location-trusted"),
        default_credentials: last(m, "default-credentials"),
        autologon: last(m, "autologon"),
        proxy: last(m, "proxy"),
        noproxy: last(m, "noproxy"),
        proxytunnel: m.get_flag("proxytunnel"),
        proxy_user: last(m, "proxy-user"),
        proxy_basic: m.get_flag("proxy-basic"),
        proxy_digest: m.get_flag("proxy-digest"),
        proxy_ntlm: m.get_flag("proxy-ntlm"),
        proxy_anyauth: m.get_flag("proxy-anyauth"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Vec<Group> {
        parse(args.iter().map(OsString::from).collect()).unwrap()
    }

    #[test]
    fn groups_split_at_next() {
        let g = p(&[
            "-v",
            "http://a/",
            "http://b/",
            "--next",
            "-d",
            "x",
            "http://c/",
        ]);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].urls, ["http://a/", "http://b/"]);
        assert!(g[0].verbose);
        assert!(!g[1].verbose);
        assert!(matches!(&g[1].data[..], [DataArg::Ascii(d)] if d == "x"));
    }

    #[test]
    fn data_keeps_order() {
        let g = p(&["--data-binary", "b", "-d", "a", "-d", "c", "http://x/"]);
        let got: Vec<_> = g[0]
            .data
            .iter()
            .map(|d| match d {
                DataArg::Ascii(s) | DataArg::Binary(s) => s.as_str(),
            })
            .collect();
        assert_eq!(got, ["b", "a", "c"]);
    }

    #[test]
    fn outputs_keep_order() {
        let g = p(&[
            "-O",
            "http://a/x",
            "-o",
            "f",
            "http://b/",
            "-O",
            "http://c/y",
        ]);
        assert_eq!(
            g[0].outputs,
            [
                OutputArg::RemoteName,
                OutputArg::File("f".into()),
                OutputArg::RemoteName
            ]
        );
    }

    #[test]
    fn download_flags_parse() {
        let g = p(&[
            "-C",
            "-",
            "-r",
            "0-99",
            "--limit-rate",
            "100k",
            "--retry",
            "3",
            "-J",
            "-O",
            "http://x/f",
        ]);
        assert_eq!(g[0].continue_at.as_deref(), Some("-"));
        assert_eq!(g[0].range.as_deref(), Some("0-99"));
        assert_eq!(g[0].limit_rate, Some(102_400));
        assert_eq!(g[0].retry, 3);
        assert!(g[0].remote_header_name);
        for bad in [["--limit-rate", "fast"], ["--retry", "-1"], ["-r", "a-b"]] {
            let mut v: Vec<OsString> = bad.iter().map(OsString::from).collect();
            v.push("http://x/".into());
            assert!(parse(v).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seconds_parse() {
        let g = p(&["-m", "1.5", "--connect-timeout", "2", "http://x/"]);
        assert_eq!(g[0].max_time, Some(Duration::from_millis(1500)));
        assert_eq!(g[0].connect_timeout, Some(Duration::from_secs(2)));
        assert!(parse(vec!["-m".into(), "soon".into(), "http://x/".into()]).is_err());
    }
}
