//! Response-head parsing with httparse, with named limits and 1xx handling.
use crate::proto::config::{Limits, ParseConfig};
use crate::proto::error::{Error, Violation};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use std::mem::MaybeUninit;

/// Header slots kept on the stack; larger `max_headers` limits use a heap array.
const STACK_HEADERS: usize = 100;

/// A parsed final (non-1xx) response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase as sent (may be empty; not necessarily UTF-8, lossily converted).
    pub reason: String,
    /// Header fields in order received.
    pub headers: HeaderMap,
}

/// One step of head parsing.
#[derive(Debug)]
pub enum Parsed {
    /// A 1xx interim response was consumed (100, 102, 103, …); keep parsing after it.
    Interim(StatusCode),
    /// The final response head.
    Final(ResponseHead),
}

/// Parses response heads, counting interim responses against the limit.
#[derive(Debug, Clone)]
pub struct HeadParser {
    config: ParseConfig,
    limits: Limits,
    interim_seen: usize,
    upgrade_requested: bool,
}

impl HeadParser {
    /// A parser for one exchange. `upgrade_requested` says whether the request asked for a
    /// protocol switch (otherwise a 101 is an error).
    pub fn new(config: ParseConfig, limits: Limits, upgrade_requested: bool) -> Self {
        HeadParser {
            config,
            limits,
            interim_seen: 0,
            upgrade_requested,
        }
    }

    /// Tries to parse one head from the start of `input`.
    ///
    /// `Ok(None)` means more bytes are needed (and `input` is still within
    /// `max_head_bytes`); `Ok(Some((n, parsed)))` consumed `n` bytes.
    ///
    /// The caller keeps unconsumed bytes and calls again with them plus whatever arrives next;
    /// each call parses from the start of `input` (httparse is fast enough that this is cheaper
    /// than keeping partial state). Only the [`HeaderMap`] of a final head allocates.
    pub fn try_parse(&mut self, input: &[u8]) -> Result<Option<(usize, Parsed)>, Error> {
        // Look at no more than `max_head_bytes`: a head that is not whole within them is over
        // the limit, whatever follows.
        let max = self.limits.max_head_bytes;
        let window = &input[..input.len().min(max)];
        let over_limit = input.len() > max;

        let mut parser = httparse::ParserConfig::default();
        parser
            .allow_obsolete_multiline_headers_in_responses(
                self.config.allow_obsolete_multiline_headers,
            )
            .allow_spaces_after_header_name_in_responses(
                self.config.allow_spaces_after_header_name,
            );

        // A field line takes at least 3 bytes (`a:` LF), so the window cannot hold more fields
        // than this; more slots would never be used (and a huge `max_headers` costs nothing).
        let slot_count = self.limits.max_headers.min(window.len() / 3 + 1);
        let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
        let mut heap = Vec::new();
        let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if slot_count <= STACK_HEADERS {
            &mut stack[..slot_count]
        } else {
            heap.resize(slot_count, MaybeUninit::uninit());
            &mut heap[..]
        };
        let mut response = httparse::Response::new(&mut []);
        let status = parser.parse_response_with_uninit_headers(&mut response, window, slots);
        let len = match status {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if over_limit => return Err(self.head_limit()),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::Limit {
                    name: "max_headers",
                    max: as_u64(self.limits.max_headers),
                })
            }
            Err(httparse::Error::NewLine) => return Err(Error::Remote(Violation::BareLineEnding)),
            Err(httparse::Error::Version) => {
                return match version_shape(window) {
                    // `HTTP/x.y ` with a version httparse does not take (only 1.0 and 1.1).
                    Shape::Version => Err(Error::Remote(Violation::UnsupportedVersion)),
                    // Could still become `HTTP/x.y `: wait, exactly as httparse would.
                    Shape::Prefix if over_limit => Err(self.head_limit()),
                    Shape::Prefix => Ok(None),
                    Shape::Other => Err(Error::Remote(Violation::BadHead)),
                };
            }
            Err(_) => return Err(Error::Remote(Violation::BadHead)),
        };

        let version = match response.version {
            Some(0) => Version::HTTP_10,
            Some(1) => Version::HTTP_11,
            _ => return Err(Error::Remote(Violation::UnsupportedVersion)),
        };
        let status = response
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(Error::Remote(Violation::BadHead))?;

        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                // 101 is final: the connection now speaks another protocol, which only a
                // request that asked for it can handle.
                if !self.upgrade_requested {
                    return Err(Error::Remote(Violation::UnexpectedUpgrade));
                }
            } else {
                self.interim_seen += 1;
                if self.interim_seen > self.limits.max_interim_responses {
                    return Err(Error::Limit {
                        name: "max_interim_responses",
                        max: as_u64(self.limits.max_interim_responses),
                    });
                }
                return Ok(Some((len, Parsed::Interim(status))));
            }
        }

        let mut headers =
            HeaderMap::try_with_capacity(response.headers.len()).map_err(|_| Error::Limit {
                name: "max_headers",
                max: as_u64(self.limits.max_headers),
            })?;
        // One copy of the head; each value is a zero-copy slice of it (hyper does the same),
        // so a response costs one allocation for its values instead of one per field.
        let shared = bytes::Bytes::copy_from_slice(&window[..len]);
        let base = window.as_ptr() as usize;
        for h in response.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| Error::Remote(Violation::BadHead))?;
            let value = if self.config.allow_obsolete_multiline_headers
                && h.value.iter().any(|&b| b == b'\r' || b == b'\n')
            {
                // RFC 9112 §5.2: replace each obs-fold with SP before using the value.
                let unfolded: Vec<u8> = h
                    .value
                    .iter()
                    .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                    .collect();
                HeaderValue::from_bytes(&unfolded)
            } else {
                // `h.value` borrows from `window[..len]`, so the offset is within `shared`.
                let start = (h.value.as_ptr() as usize).wrapping_sub(base);
                match shared.get(start..start + h.value.len()) {
                    Some(v) if v == h.value => {
                        HeaderValue::from_maybe_shared(shared.slice(start..start + h.value.len()))
                    }
                    _ => HeaderValue::from_bytes(h.value),
                }
            }
            .map_err(|_| Error::Remote(Violation::BadHead))?;
            headers.try_append(name, value).map_err(|_| Error::Limit {
                name: "max_headers",
                max: as_u64(self.limits.max_headers),
            })?;
        }

        let reason = match response.reason {
            Some(r) if !r.is_empty() => r.to_owned(),
            // httparse gives "" for a reason holding obs-text; recover it lossily.
            _ => String::from_utf8_lossy(raw_reason(window)).into_owned(),
        };
        Ok(Some((
            len,
            Parsed::Final(ResponseHead {
                version,
                status,
                reason,
                headers,
            }),
        )))
    }

    /// How many 1xx interim responses this parser has consumed.
    pub fn interim_seen(&self) -> usize {
        self.interim_seen
    }

    fn head_limit(&self) -> Error {
        Error::Limit {
            name: "max_head_bytes",
            max: as_u64(self.limits.max_head_bytes),
        }
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// What the start of a status line looks like, for telling an unsupported version from junk.
enum Shape {
    /// `HTTP/` DIGIT `.` DIGIT SP.
    Version,
    /// A proper prefix of that.
    Prefix,
    /// Anything else.
    Other,
}

/// Classifies the status line's start (after the empty lines httparse skips) against
/// `HTTP-version SP` (RFC 9112 §2.3: `HTTP-name "/" DIGIT "." DIGIT`).
fn version_shape(input: &[u8]) -> Shape {
    let line = skip_empty_lines(input);
    const PATTERN: &[u8] = b"HTTP/0.0 ";
    for (&b, &p) in line.iter().zip(PATTERN) {
        let ok = match p {
            b'0' => b.is_ascii_digit(),
            p => b == p,
        };
        if !ok {
            return Shape::Other;
        }
    }
    if line.len() >= PATTERN.len() {
        Shape::Version
    } else {
        Shape::Prefix
    }
}

fn skip_empty_lines(mut input: &[u8]) -> &[u8] {
    loop {
        match input {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => input = rest,
            _ => return input,
        }
    }
}

/// The raw reason-phrase of a status line httparse accepted (`HTTP/1.x NNN SP reason`).
fn raw_reason(input: &[u8]) -> &[u8] {
    let line = skip_empty_lines(input);
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let line = &line[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.get(b"HTTP/1.1 200 ".len()..).unwrap_or(b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> HeadParser {
        HeadParser::new(ParseConfig::default(), Limits::default(), false)
    }

    fn final_head(r: Result<Option<(usize, Parsed)>, Error>) -> (usize, ResponseHead) {
        match r {
            Ok(Some((n, Parsed::Final(h)))) => (n, h),
            other => panic!("not a final head: {other:?}"),
        }
    }

    #[test]
    fn parses_a_head_and_stops_at_its_end() {
        let input = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabc";
        let (n, head) = final_head(parser().try_parse(input));
        assert_eq!(n, input.len() - 3);
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.status, StatusCode::NOT_FOUND);
        assert_eq!(head.reason, "Not Found");
        let xa: Vec<&[u8]> = head
            .headers
            .get_all("x-a")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(xa, vec![&b"1"[..], &b"2"[..]]);
    }

    #[test]
    fn partial_until_whole() {
        let input = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n";
        let mut p = parser();
        for i in 0..input.len() {
            assert_eq!(
                p.try_parse(&input[..i]).map(|r| r.is_none()),
                Ok(true),
                "prefix {i}"
            );
        }
        let (n, head) = final_head(p.try_parse(input));
        assert_eq!(n, input.len());
        assert_eq!(head.version, Version::HTTP_10);
    }

    #[test]
    fn interims_counted_across_calls() {
        let limits = Limits {
            max_interim_responses: 2,
            ..Limits::default()
        };
        let mut p = HeadParser::new(ParseConfig::default(), limits, false);
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        for seen in 1..=2 {
            match p.try_parse(interim) {
                Ok(Some((n, Parsed::Interim(s)))) => {
                    assert_eq!(n, interim.len());
                    assert_eq!(s, StatusCode::CONTINUE);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(p.interim_seen(), seen);
        }
        assert_eq!(
            p.try_parse(interim).err(),
            Some(Error::Limit {
                name: "max_interim_responses",
                max: 2
            })
        );
    }

    #[test]
    fn upgrade_only_when_requested() {
        let input = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(
            parser().try_parse(input).err(),
            Some(Error::Remote(Violation::UnexpectedUpgrade))
        );
        let mut p = HeadParser::new(ParseConfig::default(), Limits::default(), true);
        let (_, head) = final_head(p.try_parse(input));
        assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(p.interim_seen(), 0);
    }

    #[test]
    fn limits_are_named() {
        let tight = Limits {
            max_head_bytes: 10,
            ..Limits::default()
        };
        let mut p = HeadParser::new(ParseConfig::default(), tight, false);
        assert!(
            matches!(p.try_parse(b"HTTP/1.1 2"), Ok(None)),
            "exactly at the limit"
        );
        assert_eq!(
            p.try_parse(b"HTTP/1.1 20").err(),
            Some(Error::Limit {
                name: "max_head_bytes",
                max: 10
            })
        );

        let none = Limits {
            max_headers: 0,
            ..Limits::default()
        };
        let mut p = HeadParser::new(ParseConfig::default(), none, false);
        assert!(p
            .try_parse(b"HTTP/1.1 200 OK\r\n\r\n")
            .is_ok_and(|r| r.is_some()));
        assert_eq!(
            p.try_parse(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n").err(),
            Some(Error::Limit {
                name: "max_headers",
                max: 0
            })
        );
    }

    #[test]
    fn huge_max_headers_is_cheap() {
        let limits = Limits {
            max_headers: usize::MAX,
            ..Limits::default()
        };
        let mut p = HeadParser::new(ParseConfig::default(), limits, false);
        let (_, head) = final_head(p.try_parse(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"));
        assert_eq!(head.headers.len(), 2);
    }

    #[test]
    fn versions() {
        for (input, want) in [
            (
                &b"HTTP/2.0 200 OK\r\n\r\n"[..],
                Violation::UnsupportedVersion,
            ),
            (b"HTTP/0.9 200 OK\r\n\r\n", Violation::UnsupportedVersion),
            (b"HTTP/1.1x 200 OK\r\n\r\n", Violation::BadHead),
            (b"http/1.1 200 OK\r\n\r\n", Violation::BadHead),
            (b"HTTP/1.1  200 OK\r\n\r\n", Violation::BadHead),
            (b"ICY 200 OK\r\n\r\n", Violation::BadHead),
        ] {
            assert_eq!(
                parser().try_parse(input).err(),
                Some(Error::Remote(want)),
                "{input:?}"
            );
        }
        // A prefix that may still become a version is not an error yet.
        assert_eq!(
            parser().try_parse(b"HTTP/2.").map(|r| r.is_none()),
            Ok(true)
        );
        assert_eq!(
            parser().try_parse(b"HTTP/2.0").map(|r| r.is_none()),
            Ok(true)
        );
    }

    #[test]
    fn raw_reason_recovered() {
        assert_eq!(raw_reason(b"\r\nHTTP/1.1 200 caf\xe9\r\n"), b"caf\xe9");
        assert_eq!(raw_reason(b"HTTP/1.1 200\r\n"), b"");
        assert_eq!(raw_reason(b"HTTP/1.1 200 x\n"), b"x");
    }
}
