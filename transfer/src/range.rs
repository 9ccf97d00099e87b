//! Byte ranges on the wire: parsing `Content-Range` (RFC 9110 §14.4) and formatting `Range`
//! (RFC 9110 §14.2) for single ranges.
//!
//! The grammar, transcribed for the one unit we speak (`bytes`):
//!
//! ```text
//! Content-Range       = range-unit SP ( range-resp / unsatisfied-range )
//! range-resp          = incl-range "/" ( complete-length / "*" )
//! incl-range          = first-pos "-" last-pos
//! unsatisfied-range   = "*/" complete-length
//! first-pos, last-pos, complete-length = 1*DIGIT
//! ```
//!
//! Rules enforced here, each a way a resume could otherwise splice the wrong bytes: digits only
//! (no sign, no spaces inside numbers, no hex), no overflow, `first-pos <= last-pos`, and
//! `last-pos < complete-length` when the length is known.
//!
//! ```
//! use ferry_transfer::range::{ContentRange, range_header};
//! assert_eq!(
//!     ContentRange::parse("bytes 100-199/1000"),
//!     Ok(ContentRange::Bytes { first: 100, last: 199, complete: Some(1000) })
//! );
//! assert_eq!(range_header(100, None), "bytes=100-");
//! ```

use std::fmt;

/// A parsed `Content-Range` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes FIRST-LAST/COMPLETE` or `bytes FIRST-LAST/*` (complete length unknown).
    Bytes {
        /// First byte position (inclusive).
        first: u64,
        /// Last byte position (inclusive).
        last: u64,
        /// The representation's complete length, when the server knows it.
        complete: Option<u64>,
    },
    /// `bytes */COMPLETE`: the range asked for cannot be satisfied (sent with 416).
    Unsatisfied {
        /// The representation's complete length.
        complete: u64,
    },
}

/// Why a `Content-Range` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// The unit is not `bytes` (or the separator after it is not one space).
    Unit,
    /// The value does not follow the grammar (missing `-` or `/`, empty or non-digit number).
    Syntax,
    /// A number does not fit in 64 bits.
    Overflow,
    /// `first-pos > last-pos`.
    Inverted,
    /// `last-pos >= complete-length`.
    BeyondEnd,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RangeError::Unit => "Content-Range unit is not 'bytes'",
            RangeError::Syntax => "Content-Range is malformed",
            RangeError::Overflow => "Content-Range number overflows",
            RangeError::Inverted => "Content-Range first position is after its last",
            RangeError::BeyondEnd => "Content-Range ends beyond the complete length",
        })
    }
}

impl std::error::Error for RangeError {}

/// Parses `1*DIGIT` into a u64, refusing anything else (signs, spaces, empty) and overflow.
fn digits(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Syntax);
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(RangeError::Overflow)?;
    }
    Ok(v)
}

impl ContentRange {
    /// Parses a `Content-Range` header value. Optional whitespace around the whole value is
    /// ignored (RFC 9110 §5.5); nothing else is lenient.
    pub fn parse(value: &str) -> Result<ContentRange, RangeError> {
        let v = value.trim_matches([' ', '\t']);
        // The unit is case-insensitive (RFC 9110 §14.1: range units are compared
        // case-insensitively).
        let (unit, rest) = v.split_once(' ').ok_or(RangeError::Unit)?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return Err(RangeError::Unit);
        }
        let (range, complete) = rest.split_once('/').ok_or(RangeError::Syntax)?;
        if range == "*" {
            return Ok(ContentRange::Unsatisfied {
                complete: digits(complete)?,
            });
        }
        let (first, last) = range.split_once('-').ok_or(RangeError::Syntax)?;
        let first = digits(first)?;
        let last = digits(last)?;
        let complete = if complete == "*" {
            None
        } else {
            Some(digits(complete)?)
        };
        if first > last {
            return Err(RangeError::Inverted);
        }
        if complete.is_some_and(|c| last >= c) {
            return Err(RangeError::BeyondEnd);
        }
        Ok(ContentRange::Bytes {
            first,
            last,
            complete,
        })
    }

    /// The complete length, when the value states it.
    pub fn complete(&self) -> Option<u64> {
        match *self {
            ContentRange::Bytes { complete, .. } => complete,
            ContentRange::Unsatisfied { complete } => Some(complete),
        }
    }

    /// How many bytes the range covers (`None` for an unsatisfied range). Never overflows:
    /// `last - first + 1` with `first <= last` fits unless the range is all of u64, which
    /// saturates.
    pub fn len(&self) -> Option<u64> {
        match *self {
            ContentRange::Bytes { first, last, .. } => Some((last - first).saturating_add(1)),
            ContentRange::Unsatisfied { .. } => None,
        }
    }

    /// Whether the range covers no bytes (only an unsatisfied range does).
    pub fn is_empty(&self) -> bool {
        self.len().is_none()
    }
}

/// The `Range` header value for one range: `bytes=START-END` (END inclusive) or `bytes=START-`.
pub fn range_header(start: u64, end_inclusive: Option<u64>) -> String {
    match end_inclusive {
        Some(end) => format!("bytes={start}-{end}"),
        None => format!("bytes={start}-"),
    }
}

/// A byte range given on a command line or to a job: `A-B` (inclusive), `A-` (to the end).
/// Suffix ranges (`-N`) are not accepted: they cannot be resumed at a stable offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte (inclusive).
    pub start: u64,
    /// Last byte (inclusive), or `None` for "to the end".
    pub end: Option<u64>,
}

impl ByteRange {
    /// Parses `A-B` or `A-` (digits only, `A <= B`).
    pub fn parse(s: &str) -> Result<ByteRange, RangeError> {
        let (a, b) = s.trim().split_once('-').ok_or(RangeError::Syntax)?;
        let start = digits(a)?;
        let end = if b.is_empty() { None } else { Some(digits(b)?) };
        if end.is_some_and(|e| e < start) {
            return Err(RangeError::Inverted);
        }
        Ok(ByteRange { start, end })
    }

    /// Parses a comma-separated list of ranges (`0-99,200-299`).
    pub fn parse_list(s: &str) -> Result<Vec<ByteRange>, RangeError> {
        s.split(',').map(ByteRange::parse).collect()
    }

    /// The number of bytes, when the end is known.
    pub fn len(&self) -> Option<u64> {
        self.end.map(|e| (e - self.start).saturating_add(1))
    }

    /// Never true: a range holds at least one byte (kept for API symmetry with `len`).
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(e) => write!(f, "{}-{e}", self.start),
            None => write!(f, "{}-", self.start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContentRange::*;
    use RangeError::*;

    macro_rules! case {
        ($name:ident, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!(ContentRange::parse($input), $want, "input {:?}", $input);
            }
        };
    }

    fn b(first: u64, last: u64, complete: Option<u64>) -> Result<ContentRange, RangeError> {
        Ok(Bytes {
            first,
            last,
            complete,
        })
    }

    case!(simple, "bytes 0-499/1234", b(0, 499, Some(1234)));
    case!(single_byte, "bytes 5-5/6", b(5, 5, Some(6)));
    case!(last_byte, "bytes 1233-1233/1234", b(1233, 1233, Some(1234)));
    case!(unknown_length, "bytes 10-19/*", b(10, 19, None));
    case!(
        unsatisfied,
        "bytes */1234",
        Ok(Unsatisfied { complete: 1234 })
    );
    case!(
        unsatisfied_zero,
        "bytes */0",
        Ok(Unsatisfied { complete: 0 })
    );
    case!(unit_case, "Bytes 0-0/1", b(0, 0, Some(1)));
    case!(ows_around, " bytes 0-0/1\t", b(0, 0, Some(1)));
    case!(
        max_values,
        "bytes 0-18446744073709551614/18446744073709551615",
        b(0, u64::MAX - 1, Some(u64::MAX))
    );
    case!(
        overflow_first,
        "bytes 18446744073709551616-1/2",
        Err(Overflow)
    );
    case!(
        overflow_complete,
        "bytes 0-1/99999999999999999999",
        Err(Overflow)
    );
    case!(
        overflow_unsat,
        "bytes */18446744073709551616",
        Err(Overflow)
    );
    case!(inverted, "bytes 10-9/100", Err(Inverted));
    case!(beyond_end, "bytes 0-100/100", Err(BeyondEnd));
    case!(beyond_end_zero, "bytes 0-0/0", Err(BeyondEnd));
    case!(wrong_unit, "items 0-1/2", Err(Unit));
    case!(no_unit, "0-1/2", Err(Unit));
    case!(empty, "", Err(Unit));
    case!(no_slash, "bytes 0-1", Err(Syntax));
    case!(no_dash, "bytes 01/2", Err(Syntax));
    case!(empty_first, "bytes -1/2", Err(Syntax));
    case!(empty_last, "bytes 0-/2", Err(Syntax));
    case!(empty_complete, "bytes 0-1/", Err(Syntax));
    case!(plus_sign, "bytes +0-1/2", Err(Syntax));
    case!(minus_sign, "bytes 0--1/2", Err(Syntax));
    case!(hex, "bytes 0x0-1/2", Err(Syntax));
    case!(inner_space, "bytes 0 -1/2", Err(Syntax));
    case!(two_spaces, "bytes  0-1/2", Err(Syntax));
    case!(star_star, "bytes */*", Err(Syntax));
    case!(unsat_extra, "bytes */5/6", Err(Syntax));
    case!(unicode_digit, "bytes ٠-1/2", Err(Syntax));
    case!(multi, "bytes 0-1/2, 3-4/5", Err(Syntax));
    case!(trailing_junk, "bytes 0-1/2x", Err(Syntax));

    #[test]
    fn lengths() {
        assert_eq!(b(0, 499, Some(1234)).unwrap().len(), Some(500));
        assert_eq!(b(0, 499, Some(1234)).unwrap().complete(), Some(1234));
        assert_eq!(Unsatisfied { complete: 3 }.len(), None);
        assert!(Unsatisfied { complete: 3 }.is_empty());
        assert_eq!(b(0, u64::MAX, None).unwrap().len(), Some(u64::MAX));
    }

    #[test]
    fn range_headers() {
        assert_eq!(range_header(0, Some(0)), "bytes=0-0");
        assert_eq!(range_header(7, None), "bytes=7-");
        assert_eq!(range_header(u64::MAX, None), format!("bytes={}-", u64::MAX));
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(
            ByteRange::parse("0-99"),
            Ok(ByteRange {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            ByteRange::parse("5-"),
            Ok(ByteRange {
                start: 5,
                end: None
            })
        );
        assert_eq!(ByteRange::parse("-5"), Err(Syntax));
        assert_eq!(ByteRange::parse("9-5"), Err(Inverted));
        assert_eq!(ByteRange::parse("a-b"), Err(Syntax));
        assert_eq!(ByteRange::parse(""), Err(Syntax));
        assert_eq!(ByteRange::parse_list("0-1,4-").unwrap().len(), 2);
        assert!(ByteRange::parse_list("0-1,,4-").is_err());
        assert_eq!(ByteRange::parse("3-5").unwrap().len(), Some(3));
        assert_eq!(
            ByteRange::parse("0-18446744073709551615").unwrap().len(),
            Some(u64::MAX)
        );
        assert_eq!(ByteRange::parse("3-5").unwrap().to_string(), "3-5");
    }

    /// Every prefix and every single-byte mutation of valid inputs parses or errs without
    /// panicking, and anything accepted satisfies the invariants.
    #[test]
    fn no_panic_and_invariants_hold() {
        let seeds = ["bytes 0-499/1234", "bytes */99", "bytes 10-19/*"];
        let alphabet = b"0123456789 -/*bytesB\t+x";
        for s in seeds {
            for cut in 0..=s.len() {
                check(&s[..cut]);
            }
            for i in 0..s.len() {
                for &c in alphabet {
                    let mut v = s.as_bytes().to_vec();
                    v[i] = c;
                    if let Ok(t) = std::str::from_utf8(&v) {
                        check(t);
                    }
                }
            }
        }
        fn check(s: &str) {
            if let Ok(Bytes {
                first,
                last,
                complete,
            }) = ContentRange::parse(s)
            {
                assert!(first <= last, "{s}");
                if let Some(c) = complete {
                    assert!(last < c, "{s}");
                }
            }
        }
    }
}
