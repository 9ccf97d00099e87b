//! The chunked transfer coding decoder (RFC 9112 §7.1): a small state machine with named
//! limits on extensions and trailers.
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! The rules this decoder keeps:
//! - The input may be split anywhere; every byte handed in is consumed once processed, so the
//!   caller only ever re-presents bytes the decoder has not looked at (plus the bytes after a
//!   data range or an error, see [`Dechunker::decode`]).
//! - A chunk size is hex digits only, at least one, and must fit in a u64.
//! - Whitespace after the size is tolerated only as SP / HTAB before a `;` (the BWS of
//!   `chunk-ext`); extensions are skipped but bounded by `max_chunk_ext_bytes`, and may not
//!   hold control bytes other than HTAB.
//! - Lines end in CRLF. A bare LF is [`Violation::BareLineEnding`] unless
//!   [`ParseConfig::allow_bare_lf_in_chunked`]; a CR not followed by LF is always an error.
//! - After each chunk's data comes CRLF, or [`Violation::BadChunkTerminator`].
//! - The trailer section is bounded by `max_trailer_bytes` (counted from the end of the
//!   last-chunk line through the final CRLF) and parsed with httparse into a [`HeaderMap`].
//!
//! ```text
//!  Size ─► SizeWs ─► Ext ─► SizeLf ─┬─► Data ─► DataCr ─► DataLf ─► Size …
//!   │  └──────────────────┴─────────┘ (size 0)
//!   │                               └─► TrailerStart ─┬─► TrailerLine ─► TrailerLf ─► TrailerStart
//!   │                                                 └─► EndLf ─► Done
//! ```
use crate::proto::body::Decoded;
use crate::proto::config::{Limits, ParseConfig};
use crate::proto::error::{Error, Violation};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Incremental chunked decoder; see [`crate::proto::BodyDecoder`] for the public entry.
#[derive(Debug)]
pub struct Dechunker {
    config: ParseConfig,
    limits: Limits,
    state: State,
    /// Bytes after the size digits on the current chunk-size line (BWS and extensions).
    ext_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// The trailer field lines, kept only when there are some.
    trailer_buf: Vec<u8>,
    /// The parsed trailer section, once the body is done.
    trailers: Option<HeaderMap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size { size: u64, digits: bool },
    /// SP / HTAB after the size digits; only `;` may follow.
    SizeWs { size: u64 },
    /// Inside chunk extensions, skipped up to the line end.
    Ext { size: u64 },
    /// After the CR of a chunk-size line.
    SizeLf { size: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// After chunk data, expecting CR.
    DataCr,
    /// After chunk data and CR, expecting LF.
    DataLf,
    /// At the start of a trailer field line or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// After the CR of a trailer field line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    /// The body and its trailers are complete.
    Done,
}

/// What one step over the input did.
enum Step {
    /// Consumed this many bytes of framing.
    Framing(usize),
    /// Reached chunk data (not consumed).
    Data,
    /// Reached the end of the body.
    Done,
}

impl Dechunker {
    /// A decoder at the start of a chunked body.
    pub fn new(config: ParseConfig, limits: Limits) -> Self {
        Dechunker {
            config,
            limits,
            state: State::Size {
                size: 0,
                digits: false,
            },
            ext_bytes: 0,
            trailer_bytes: 0,
            trailer_buf: Vec::new(),
            trailers: None,
        }
    }

    /// Decodes from `input`: consumes framing, and at most one contiguous data range.
    ///
    /// Framing after that data range is consumed too, up to the next chunk's data or the end
    /// of the body, so that [`Dechunker::is_done`] turns true as soon as the last byte is
    /// seen. If the framing after a data range is bad, the data is returned first and the
    /// error comes from the next call, so that no data is lost however the input was split.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, Error> {
        let mut pos = 0;
        let mut data = 0..0;
        while pos < input.len() {
            if let State::Data { remaining } = self.state {
                if !data.is_empty() {
                    break;
                }
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - pos);
                data = pos..pos + n;
                pos += n;
                // `n <= remaining` by construction.
                let left = remaining - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                continue;
            }
            match self.step(&input[pos..]) {
                Ok(Step::Framing(n)) => pos += n,
                Ok(Step::Data) => continue,
                Ok(Step::Done) => break,
                Err(e) if data.is_empty() => return Err(e),
                // Deliver the data first; the same bytes fail again on the next call.
                Err(_) => break,
            }
        }
        Ok(Decoded {
            consumed: pos,
            data,
        })
    }

    /// Whether the last chunk and the trailer section have been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer section, once done (empty when the body had none).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// Takes the trailer section out of a finished decoder.
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// One framing step on non-empty `input`. Mutates state only for bytes it consumes.
    fn step(&mut self, input: &[u8]) -> Result<Step, Error> {
        let lf_ok = self.config.allow_bare_lf_in_chunked;
        let bad_size = Error::Remote(Violation::BadChunkSize);
        let bare = Error::Remote(Violation::BareLineEnding);
        let Some(&b) = input.first() else {
            return Ok(Step::Framing(0));
        };
        match self.state {
            State::Size { size, digits } => {
                let next = match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = u64::from(hex_value(b));
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(digit))
                            .ok_or(bad_size)?;
                        State::Size { size, digits: true }
                    }
                    _ if !digits => return Err(bad_size),
                    b' ' | b'\t' => {
                        self.count_ext(1)?;
                        State::SizeWs { size }
                    }
                    b';' => {
                        self.count_ext(1)?;
                        State::Ext { size }
                    }
                    b'\r' => State::SizeLf { size },
                    b'\n' if lf_ok => self.line_done(size),
                    b'\n' => return Err(bare),
                    _ => return Err(bad_size),
                };
                self.state = next;
                Ok(Step::Framing(1))
            }
            State::SizeWs { size } => {
                let next = match b {
                    b' ' | b'\t' => State::SizeWs { size },
                    b';' => State::Ext { size },
                    _ => return Err(bad_size),
                };
                self.count_ext(1)?;
                self.state = next;
                Ok(Step::Framing(1))
            }
            State::Ext { size } => {
                // Skip extension bytes in bulk up to the line end.
                let n = input
                    .iter()
                    .position(|&c| !is_ext_byte(c))
                    .unwrap_or(input.len());
                if n > 0 {
                    self.count_ext(n)?;
                    return Ok(Step::Framing(n));
                }
                self.state = match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' if lf_ok => self.line_done(size),
                    b'\n' => return Err(bare),
                    _ => return Err(bad_size),
                };
                Ok(Step::Framing(1))
            }
            State::SizeLf { size } => {
                if b != b'\n' {
                    return Err(bare);
                }
                self.state = self.line_done(size);
                Ok(Step::Framing(1))
            }
            State::Data { .. } => Ok(Step::Data),
            State::DataCr => {
                self.state = match b {
                    b'\r' => State::DataLf,
                    b'\n' if lf_ok => State::Size {
                        size: 0,
                        digits: false,
                    },
                    b'\n' => return Err(bare),
                    _ => return Err(Error::Remote(Violation::BadChunkTerminator)),
                };
                Ok(Step::Framing(1))
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(Error::Remote(Violation::BadChunkTerminator));
                }
                self.state = State::Size {
                    size: 0,
                    digits: false,
                };
                Ok(Step::Framing(1))
            }
            State::TrailerStart => {
                match b {
                    b'\r' => {
                        self.count_trailer(1)?;
                        self.state = State::EndLf;
                    }
                    b'\n' if lf_ok => self.end_trailers()?,
                    b'\n' => return Err(bare),
                    // The first byte of a field line; `TrailerLine` takes it.
                    _ => self.state = State::TrailerLine,
                }
                Ok(Step::Framing(if self.state == State::TrailerLine {
                    0
                } else {
                    1
                }))
            }
            State::TrailerLine => {
                let n = input
                    .iter()
                    .position(|&c| c == b'\r' || c == b'\n')
                    .unwrap_or(input.len());
                if n > 0 {
                    self.count_trailer(n)?;
                    self.trailer_buf.extend_from_slice(&input[..n]);
                    return Ok(Step::Framing(n));
                }
                match b {
                    b'\r' => {
                        self.count_trailer(1)?;
                        self.state = State::TrailerLf;
                    }
                    b'\n' if lf_ok => {
                        self.count_trailer(1)?;
                        self.trailer_buf.extend_from_slice(b"\r\n");
                        self.state = State::TrailerStart;
                    }
                    _ => return Err(bare),
                }
                Ok(Step::Framing(1))
            }
            State::TrailerLf => {
                if b != b'\n' {
                    return Err(bare);
                }
                self.count_trailer(1)?;
                self.trailer_buf.extend_from_slice(b"\r\n");
                self.state = State::TrailerStart;
                Ok(Step::Framing(1))
            }
            State::EndLf => {
                if b != b'\n' {
                    return Err(bare);
                }
                self.end_trailers()?;
                Ok(Step::Framing(1))
            }
            State::Done => Ok(Step::Done),
        }
    }

    /// The state after a whole chunk-size line.
    fn line_done(&mut self, size: u64) -> State {
        self.ext_bytes = 0;
        if size == 0 {
            State::TrailerStart
        } else {
            State::Data { remaining: size }
        }
    }

    fn count_ext(&mut self, n: usize) -> Result<(), Error> {
        let total = self.ext_bytes.saturating_add(n);
        if total > self.limits.max_chunk_ext_bytes {
            return Err(Error::Limit {
                name: "max_chunk_ext_bytes",
                max: u64::try_from(self.limits.max_chunk_ext_bytes).unwrap_or(u64::MAX),
            });
        }
        self.ext_bytes = total;
        Ok(())
    }

    fn count_trailer(&mut self, n: usize) -> Result<(), Error> {
        let total = self.trailer_bytes.saturating_add(n);
        if total > self.limits.max_trailer_bytes {
            return Err(Error::Limit {
                name: "max_trailer_bytes",
                max: u64::try_from(self.limits.max_trailer_bytes).unwrap_or(u64::MAX),
            });
        }
        self.trailer_bytes = total;
        Ok(())
    }

    /// Counts the line end that closes the trailer section, then finishes. On error neither the
    /// count nor the state changes: the byte is not consumed, and when it is presented again it
    /// must fail the same way (counting it twice turned a bad trailer into a limit error,
    /// depending on how the input was split).
    fn end_trailers(&mut self) -> Result<(), Error> {
        let before = self.trailer_bytes;
        self.count_trailer(1)?;
        self.finish().inspect_err(|_| self.trailer_bytes = before)
    }

    /// Parses the trailer section and moves to `Done`. On error the state is unchanged, so
    /// the same byte fails again if re-presented.
    fn finish(&mut self) -> Result<(), Error> {
        let trailers = if self.trailer_buf.is_empty() {
            HeaderMap::new()
        } else {
            self.trailer_buf.extend_from_slice(b"\r\n");
            let parsed = parse_trailers(&self.trailer_buf, self.limits.max_headers);
            if parsed.is_err() {
                self.trailer_buf
                    .truncate(self.trailer_buf.len().saturating_sub(2));
            }
            parsed?
        };
        self.trailer_buf = Vec::new();
        self.trailers = Some(trailers);
        self.state = State::Done;
        Ok(())
    }
}

/// Parses whole trailer field lines plus the final CRLF.
fn parse_trailers(buf: &[u8], max_headers: usize) -> Result<HeaderMap, Error> {
    let bad = Error::Remote(Violation::BadTrailer);
    let lines = buf.iter().filter(|&&b| b == b'\n').count();
    let mut slots = vec![httparse::EMPTY_HEADER; lines.min(max_headers)];
    let fields = match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((n, fields))) if n == buf.len() => fields,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::Limit {
                name: "max_headers",
                max: u64::try_from(max_headers).unwrap_or(u64::MAX),
            })
        }
        _ => return Err(bad),
    };
    let mut map = HeaderMap::try_with_capacity(fields.len()).map_err(|_| bad)?;
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| bad)?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| bad)?;
        map.try_append(name, value).map_err(|_| bad)?;
    }
    Ok(map)
}

/// Bytes that may appear inside chunk extensions: HTAB, VCHAR, SP and obs-text (the union of
/// token, `=`, `;`, BWS and quoted-string bytes), never CR, LF or other controls.
fn is_ext_byte(b: u8) -> bool {
    crate::proto::abnf::is_field_value_byte(b)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Out {
        data: Vec<u8>,
        result: Result<Vec<(String, Vec<u8>)>, Error>,
        leftover: Vec<u8>,
    }

    /// Feeds `pieces` as a driver would; `Err(IncompleteBody)` when input ends early.
    fn run<'a>(
        config: ParseConfig,
        limits: Limits,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Out {
        let mut d = Dechunker::new(config, limits);
        let mut buf = Vec::new();
        let mut data = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            while !buf.is_empty() && !d.is_done() {
                match d.decode(&buf) {
                    Ok(r) => {
                        assert!(r.consumed > 0 && r.consumed <= buf.len());
                        assert!(r.data.end <= r.consumed);
                        data.extend_from_slice(&buf[r.data]);
                        buf.drain(..r.consumed);
                    }
                    Err(e) => {
                        return Out {
                            data,
                            result: Err(e),
                            leftover: buf,
                        }
                    }
                }
            }
        }
        let result = match d.trailers() {
            Some(t) => Ok(t
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect()),
            None => Err(Error::Remote(Violation::IncompleteBody)),
        };
        if d.is_done() {
            assert_eq!(
                d.decode(b"more").map(|r| r.consumed),
                Ok(0),
                "done decoders consume nothing"
            );
        }
        Out {
            data,
            result,
            leftover: buf,
        }
    }

    fn shotgun(config: ParseConfig, limits: Limits, input: &[u8]) -> Out {
        let whole = run(config, limits, [input]);
        for i in 1..input.len() {
            let split = run(config, limits, [&input[..i], &input[i..]]);
            assert_eq!(split.data, whole.data, "split at {i}");
            assert_eq!(split.result, whole.result, "split at {i}");
        }
        let bytes = run(config, limits, input.chunks(1));
        assert_eq!(bytes.data, whole.data);
        assert_eq!(bytes.result, whole.result);
        if whole.result.is_ok() {
            let with_trailing = [input, b"TRAILING"].concat();
            for out in [
                run(config, limits, [&with_trailing[..]]),
                run(config, limits, with_trailing.chunks(1)),
            ] {
                assert_eq!(out.data, whole.data);
                assert_eq!(out.result, whole.result);
                assert_eq!(out.leftover, b"TRAILING");
            }
        }
        whole
    }

    fn strict(input: &[u8]) -> Out {
        shotgun(ParseConfig::default(), Limits::default(), input)
    }

    #[test]
    fn simple_bodies() {
        let out = strict(b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
        assert_eq!(out.data, b"abc0123456789abcdef");
        assert_eq!(out.result, Ok(vec![]));
    }

    #[test]
    fn trailers_parsed() {
        let out = strict(b"1\r\nx\r\n0\r\nA: 1\r\nb: two words\r\nA: 3\r\n\r\n");
        assert_eq!(out.data, b"x");
        let fields = out.result.expect("trailers");
        assert_eq!(
            fields,
            vec![
                ("a".to_string(), b"1".to_vec()),
                ("a".to_string(), b"3".to_vec()),
                ("b".to_string(), b"two words".to_vec()),
            ]
        );
    }

    #[test]
    fn ext_limit_is_exact() {
        let limits = Limits {
            max_chunk_ext_bytes: 3,
            ..Limits::default()
        };
        let ok = shotgun(ParseConfig::default(), limits, b"1;ab\r\nx\r\n0 ;a\r\n\r\n");
        assert_eq!(ok.result, Ok(vec![]));
        let over = shotgun(ParseConfig::default(), limits, b"1;abc\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            over.result,
            Err(Error::Limit {
                name: "max_chunk_ext_bytes",
                max: 3
            })
        );
        // The limit is per line, not per body.
        let many = shotgun(
            ParseConfig::default(),
            limits,
            b"1;ab\r\nx\r\n1;ab\r\ny\r\n0;ab\r\n\r\n",
        );
        assert_eq!(many.data, b"xy");
        assert_eq!(many.result, Ok(vec![]));
    }

    #[test]
    fn trailer_limit_is_exact() {
        // The trailer section here is `A: b\r\n\r\n`: 8 bytes.
        let input = b"0\r\nA: b\r\n\r\n";
        let at = Limits {
            max_trailer_bytes: 8,
            ..Limits::default()
        };
        assert!(shotgun(ParseConfig::default(), at, input).result.is_ok());
        let under = Limits {
            max_trailer_bytes: 7,
            ..Limits::default()
        };
        assert_eq!(
            shotgun(ParseConfig::default(), under, input).result,
            Err(Error::Limit {
                name: "max_trailer_bytes",
                max: 7
            })
        );
        // Even an empty trailer section's CRLF counts.
        let zero = Limits {
            max_trailer_bytes: 1,
            ..Limits::default()
        };
        assert_eq!(
            shotgun(ParseConfig::default(), zero, b"0\r\n\r\n").result,
            Err(Error::Limit {
                name: "max_trailer_bytes",
                max: 1
            })
        );
    }

    #[test]
    fn trailer_field_count_limited() {
        let limits = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let out = shotgun(
            ParseConfig::default(),
            limits,
            b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        );
        assert_eq!(
            out.result,
            Err(Error::Limit {
                name: "max_headers",
                max: 2
            })
        );
    }

    /// Found by the `chunked` fuzz target (issue 6): a bad trailer section right after data.
    /// The failing line end was counted against `max_trailer_bytes` once per attempt, so the
    /// input in one piece (data returned first, the same bytes failing on the next call) gave
    /// a limit error and the input in pieces gave `BadTrailer`.
    #[test]
    fn failed_trailer_end_counts_once() {
        let input = b"5;\nldeo\r\n0\r\nTil%aerr:\x98heo\r\n0\r\nTil%aerr:\x00\x00\n\r\n";
        let lenient = ParseConfig {
            allow_bare_lf_in_chunked: true,
            ..ParseConfig::default()
        };
        let limits = Limits {
            max_chunk_ext_bytes: 8,
            max_trailer_bytes: 32,
            ..Limits::default()
        };
        let out = shotgun(lenient, limits, input);
        assert_eq!(out.data, b"ldeo\r");
        assert_eq!(out.result, Err(Error::Remote(Violation::BadTrailer)));
        // The same with strict line endings, and with the failure on the final CRLF.
        let out = shotgun(
            ParseConfig::default(),
            Limits {
                max_trailer_bytes: 8,
                ..Limits::default()
            },
            b"1\r\nx\r\n0\r\nA:\x00b\r\n\r\n",
        );
        assert_eq!(out.result, Err(Error::Remote(Violation::BadTrailer)));
    }

    #[test]
    fn data_before_error_is_delivered() {
        let mut d = Dechunker::new(ParseConfig::default(), Limits::default());
        let input = b"5\r\nhelloXX";
        let first = d.decode(input).expect("data first");
        assert_eq!(&input[first.data.clone()], b"hello");
        assert_eq!(first.consumed, 8);
        assert_eq!(
            d.decode(&input[first.consumed..]),
            Err(Error::Remote(Violation::BadChunkTerminator))
        );
        // Still failing on the same bytes: no state was changed by the failed byte.
        assert_eq!(
            d.decode(&input[first.consumed..]),
            Err(Error::Remote(Violation::BadChunkTerminator))
        );
    }

    #[test]
    fn one_data_range_per_call_and_framing_after_it_consumed() {
        let mut d = Dechunker::new(ParseConfig::default(), Limits::default());
        let input = b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n";
        let r = d.decode(input).expect("ok");
        assert_eq!(r.data, 3..5);
        assert_eq!(r.consumed, 10, "stops at the start of the next data");
        let r = d.decode(&input[10..]).expect("ok");
        assert_eq!(r.data, 0..2);
        assert_eq!(
            r.consumed,
            input.len() - 10,
            "end framing consumed with the last data"
        );
        assert!(d.is_done());
        assert_eq!(d.decode(b"next response").map(|r| r.consumed), Ok(0));
    }

    #[test]
    fn bare_lf_leniency() {
        let input = b"2\nab\n0\nX: y\n\n";
        assert_eq!(
            strict(input).result,
            Err(Error::Remote(Violation::BareLineEnding))
        );
        let lenient = ParseConfig {
            allow_bare_lf_in_chunked: true,
            ..ParseConfig::default()
        };
        let out = shotgun(lenient, Limits::default(), input);
        assert_eq!(out.data, b"ab");
        assert_eq!(out.result, Ok(vec![("x".to_string(), b"y".to_vec())]));
        // A bare CR is never a line ending.
        assert_eq!(
            shotgun(lenient, Limits::default(), b"2\rab\r\n0\r\n\r\n").result,
            Err(Error::Remote(Violation::BareLineEnding))
        );
        assert_eq!(
            shotgun(lenient, Limits::default(), b"0\r\nA: b\rc\r\n\r\n").result,
            Err(Error::Remote(Violation::BareLineEnding))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(
            strict(b"fF\r\n").result,
            Err(Error::Remote(Violation::IncompleteBody))
        );
        assert_eq!(strict(b"FFFFFFFFFFFFFFFF\r\n").data, b"");
        for bad in [
            &b"10000000000000000\r\n"[..],
            b"g\r\n",
            b" 5\r\n",
            b"5\t\r\n",
            b"5;\x01\r\n",
            b"5\x00\r\n",
        ] {
            assert_eq!(
                strict(bad).result,
                Err(Error::Remote(Violation::BadChunkSize)),
                "{bad:?}"
            );
        }
    }
}
