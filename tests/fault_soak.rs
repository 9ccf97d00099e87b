//! Fault soak (issue 6, item 4; DESIGN.md I5–I7): tens of thousands of exchanges from one shared
//! [`Session`] (one pool) on several client threads, against an in-process loopback server that
//! answers every request with a script picked at random:
//! - valid responses: Content-Length, chunked (random chunk sizes, extensions, trailers),
//!   close-delimited, sometimes after 1xx interim responses, sometimes in several writes, some
//!   to HEAD; afterwards the server keeps the connection alive, closes it when idle (FIN after
//!   0–5 ms), marks it `Connection: close`, or drops the next request unanswered (the idle-close
//!   race, made certain);
//! - slow drips of valid responses (pauses well within the receive timeout);
//! - bodies longer than their Content-Length (junk or a whole smuggled response behind them),
//!   and chunked bodies that also carry a Content-Length;
//! - faults: resets mid-head and mid-body, stalls past the receive timeout (before, inside and
//!   after the head), truncated chunked bodies, garbage and malformed framing instead of a head,
//!   oversized heads and other limits (64 KiB head, 100 fields, 10 interim responses, 4 KiB
//!   chunk extensions, 16 KiB trailers), bodies shorter than their Content-Length.
//!
//! The client reads most bodies to the end, but sometimes only a prefix or nothing before it
//! drops the response, so the session's drain-and-reuse path is exercised too.
//!
//! Knobs (environment; the seed and the replay command are printed at the start):
//! - `FERRY_SOAK_SEED`: replay a run (decimal or `0x` hex). Exchange `i` always gets the same
//!   script, bytes and client behaviour for a seed; only the interleaving of threads differs.
//! - `FERRY_SOAK_EXCHANGES`: how many exchanges (default 20 000).
//! - `FERRY_SOAK_THREADS`: client threads sharing the session (default 4).
//! - `FERRY_SOAK_STRICT_RETRY=0`: tolerate "double races" (criterion 4a: a request and its
//!   automatic retry both dropped). The client retries on a new connection, so by default
//!   they fail the soak.
//!
//! An exchange is one `GET` (or `HEAD`) of `/soak/<i>` plus reading its body. The server derives
//! the script from `(seed, i)` (the client derives the same to know what to expect) and logs
//! which connection, which request on it and which script served each request; failures are
//! printed with that log.
//!
//! Pass criteria, each asserted at the end (every failure is collected and printed together):
//! 1. No panic: each exchange runs under `catch_unwind`, each server connection too.
//! 2. Every exchange ends, `Ok` or a typed [`ferry::Error`], within its budget: the time the
//!    script itself spends sending (drips) + the receive timeout + 1 s. Each is measured and the
//!    maximum is reported. A watchdog fails the run if one runs past its budget + 5 s, and bounds
//!    the whole run.
//! 3. Peak RSS (`VmHWM`) stays below [`RSS_LIMIT_MIB`].
//! 4. The pool never hands out a dead connection:
//!    a. every request whose script is valid gets the right answer. A pooled connection that
//!    the server closed after the request was sent may cost the one automatic retry of an
//!    idempotent request (RFC 9110 §9.2.2), never a failure. Only when the server dropped both
//!    the request and its retry that way (a "double race": no client can know, and the retry
//!    may take another pooled connection) is a failure excused, and reported;
//!    b. no request arrives on a connection after a response that forbids reusing it
//!    (`Connection: close`, bytes beyond the declared Content-Length, Transfer-Encoding with
//!    Content-Length). The server keeps such connections open for [`LINGER`], so the liveness
//!    probe cannot save a client that forgot; the server reports any request that arrives;
//!    c. the liveness check at checkout sees connections the server closed while they were idle:
//!    after its idle-timeout FIN the server reads on, and a request that still arrives must come
//!    from a checkout before the FIN (see [`FIN_DELIVERY`] and [`AMBIGUOUS_MAX`]).
//! 5. Every valid response is read correctly: status, `X-Soak-Id`, the body (a deterministic
//!    pattern of the request number, so a shifted, cut or foreign body shows, including a
//!    prefix when the client reads only one) and, when sent, the trailer.
//! 6. Faults that leave the response incomplete or malformed end in an error, never `Ok` (a cut
//!    body taken as complete is silent corruption), and stalls end in `ErrorKind::Timeout`.
//!
//! Resets: std has no stable `SO_LINGER` and socket2 is not a dev-dependency, so the server makes
//! the kernel send RST the other way Linux does: it only peeks at the request head of a reset
//! script, and closing a socket with unread received bytes sends RST instead of FIN.

use ferry::{ErrorKind, Event, Session};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Exchanges per run unless `FERRY_SOAK_EXCHANGES` says otherwise.
const DEFAULT_EXCHANGES: u64 = 20_000;
/// Client threads sharing the session unless `FERRY_SOAK_THREADS` says otherwise.
const DEFAULT_THREADS: usize = 4;
/// The session's receive timeout: short, so that a stall costs little.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(200);
/// What an exchange may take beyond its script's own sending time and one receive timeout.
const SLACK: Duration = Duration::from_secs(1);
/// The watchdog calls an exchange hung once it runs this long past its budget.
const HANG: Duration = Duration::from_secs(5);
/// Wall-time bound of the whole soak for 20 000 exchanges (scaled for more).
const WALL_PER_20K: Duration = Duration::from_secs(120);
/// Peak RSS bound. Legitimate peak: the binary and libtest (~10 MiB), 4 client threads each with
/// at most a 128 KiB body, its expected copy and the 64 KiB head buffer, ~30 live server threads
/// each with one response of at most ~200 KiB (the largest oversized head), pool buffers: under
/// 30 MiB; measured 15 MiB. 64 MiB leaves room for allocator slack but not for a leak of 4 KiB
/// per connection over a run (~11 000 connections), nor for an unbounded head or body buffer.
const RSS_LIMIT_MIB: u64 = 64;
/// Read and write timeout of every server socket operation.
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server keeps an idle keep-alive connection open (its keep-alive timeout).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(3);
/// How long the server keeps open a connection the client must not reuse, watching for a request.
const LINGER: Duration = Duration::from_millis(100);
/// After its idle timeout the server sends FIN but reads on for this long, so that a request the
/// client sends on the dead connection still shows up.
const LATE_WATCH: Duration = Duration::from_millis(200);
/// Bound on how long the server's FIN takes to reach the client's socket on loopback (it is
/// normally there when `shutdown` returns). An exchange that *started* later than this after the
/// FIN checked its connection out after the FIN had arrived: if its request still reached that
/// connection, the liveness check at checkout missed a dead connection. (The exchange's start,
/// not the `Reused` event, is the reference: the check happens after the start, so a thread
/// preempted between the check and the event cannot make a race look like a miss.)
const FIN_DELIVERY: Duration = Duration::from_millis(2);
/// Late requests whose exchange started before the FIN but whose `Reused` event came after it:
/// the check itself ran somewhere in between, so each is either a race plus a thread preempted
/// in the microseconds between the check and the event, or a missed dead connection. A working
/// check shows none of them in practice (the server looks for a pending request right before its
/// FIN, so races need that microsecond window); a check that never probes the socket shows
/// hundreds per run. At most this many are tolerated.
const AMBIGUOUS_MAX: u64 = 5;
/// Longest request head the server accepts.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// The client's cap on a body.
const BODY_CAP: u64 = 1 << 20;
/// Bound of the server's per-connection request loop.
const MAX_REQUESTS_PER_CONN: u32 = 1_000_000;
/// Failures printed in full (all are counted).
const MAX_REPORTED: usize = 40;

// ---------------------------------------------------------------------------------------------
// Seeded randomness (SplitMix64; no dev-dependency needed).

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    /// Stream `stream` of exchange `id` under `seed`: 0 picks the script, 1 shapes its bytes.
    fn for_exchange(seed: u64, id: u64, stream: u64) -> Rng {
        Rng(splitmix(
            seed ^ splitmix(id.wrapping_mul(8).wrapping_add(stream)),
        ))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }

    /// Uniform in `0..n` (modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

// ---------------------------------------------------------------------------------------------
// Scripts.

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked {
        trailer: bool,
    },
    /// No Content-Length, no Transfer-Encoding: the body ends when the server closes.
    UntilClose,
}

/// What the server does after a valid response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// Waits up to [`KEEPALIVE_IDLE`] for the next request.
    KeepAlive,
    /// Waits this many milliseconds (often 0) for the next request, then sends FIN: the pooled
    /// connection dies while idle, and the client's liveness check at checkout must see it.
    IdleClose(u64),
    /// The response says `Connection: close`; the server lingers, then closes.
    ConnClose,
    /// The server waits for the next request on the connection and closes it without reading
    /// or answering it: the idle-close race (the server gave up on the connection just as the
    /// request arrived), made certain. The client cannot know; its one retry must cover it.
    RaceClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StallAt {
    BeforeHead,
    MidHead,
    MidBody,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// A valid 200; `split` sends it in a few writes.
    Valid {
        len: usize,
        framing: Framing,
        after: After,
        split: bool,
    },
    /// A valid keep-alive 200 sent in `pieces` writes with `pause_ms` after each (well within
    /// the receive timeout).
    Drip {
        len: usize,
        framing: Framing,
        pieces: usize,
        pause_ms: u64,
    },
    /// A valid Content-Length body followed, in the same write, by bytes nobody asked for: a
    /// whole smuggled response or junk. The server lingers; the connection must not be reused.
    LongBody { len: usize, smuggle: bool },
    /// A valid chunked body whose head also carries a (wrong) Content-Length: Transfer-Encoding
    /// wins (RFC 9112 §6.3 step 3), and the connection must not be reused. The server lingers.
    TeAndCl { len: usize },
    /// Part of a valid head, then RST.
    ResetMidHead,
    /// A head and part of the body, then RST.
    ResetMidBody { len: usize, chunked: bool },
    /// Nothing, part of a head, or a head and part of the body, then silence until the client
    /// gives up.
    Stall { at: StallAt },
    /// A chunked body cut anywhere before its last byte, then FIN.
    TruncatedChunked { len: usize },
    /// Something that is not a valid response head or framing, then FIN.
    Garbage { kind: u8 },
    /// A head past the 64 KiB / 100-field limits, then FIN.
    OversizedHead { kind: u8 },
    /// Fewer body bytes than the Content-Length declares, then FIN.
    ShortBody { declared: usize },
}

/// What the client must make of a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// `Ok`, status 200, the right id, body and trailer.
    Body,
    /// As `Body`, or an error of kind `Protocol`: what a strict parser may make of a framing that
    /// RFC 9112 §6.3 resolves but calls a possible smuggling attempt. Either way the connection
    /// must not be reused (the server lingers and watches).
    BodyOrProtocol,
    /// An error of kind `Timeout`.
    Timeout,
    /// Any typed error.
    Error,
}

const GARBAGE_KINDS: u8 = 16;
const OVERSIZED_KINDS: u8 = 7;

impl Script {
    fn category(&self) -> &'static str {
        match self {
            Script::Valid {
                framing: Framing::Length,
                ..
            } => "valid-length",
            Script::Valid {
                framing: Framing::Chunked { .. },
                ..
            } => "valid-chunked",
            Script::Valid {
                framing: Framing::UntilClose,
                ..
            } => "valid-until-close",
            Script::Drip { .. } => "slow-drip",
            Script::LongBody { .. } => "long-body",
            Script::TeAndCl { .. } => "te-and-cl",
            Script::ResetMidHead => "reset-mid-head",
            Script::ResetMidBody { .. } => "reset-mid-body",
            Script::Stall { .. } => "stall",
            Script::TruncatedChunked { .. } => "truncated-chunked",
            Script::Garbage { .. } => "garbage",
            Script::OversizedHead { .. } => "oversized-head",
            Script::ShortBody { .. } => "short-body",
        }
    }

    fn expect(&self) -> Expect {
        match self {
            Script::Valid { .. } | Script::Drip { .. } | Script::LongBody { .. } => Expect::Body,
            Script::TeAndCl { .. } => Expect::BodyOrProtocol,
            Script::Stall { .. } => Expect::Timeout,
            _ => Expect::Error,
        }
    }

    /// The body the client must read, for [`Expect::Body`] scripts.
    fn body_len(&self) -> usize {
        match *self {
            Script::Valid { len, .. }
            | Script::Drip { len, .. }
            | Script::LongBody { len, .. }
            | Script::TeAndCl { len } => len,
            _ => 0,
        }
    }

    fn trailer(&self) -> bool {
        matches!(
            self,
            Script::Valid {
                framing: Framing::Chunked { trailer: true },
                ..
            } | Script::Drip {
                framing: Framing::Chunked { trailer: true },
                ..
            }
        )
    }

    /// Time the script itself spends sending (pauses between pieces).
    fn planned(&self) -> Duration {
        match *self {
            Script::Drip {
                pieces, pause_ms, ..
            } => Duration::from_millis(pieces as u64 * pause_ms),
            _ => Duration::ZERO,
        }
    }

    /// The longest an exchange with this script may take.
    fn budget(&self) -> Duration {
        self.planned() + RECEIVE_TIMEOUT + SLACK
    }
}

/// The mix, in per mille.
const MIX: &[(u16, &str)] = &[
    (590, "valid"),
    (30, "drip"),
    (40, "long"),
    (15, "te-and-cl"),
    (50, "reset-head"),
    (50, "reset-body"),
    (5, "stall"),
    (60, "truncated"),
    (60, "garbage"),
    (40, "oversized"),
    (60, "short"),
];

fn random_len(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=2 => 0,
        3..=52 => r.range(1, 512),
        53..=89 => r.range(513, 16 * 1024),
        _ => r.range(16 * 1024 + 1, 128 * 1024),
    }
}

fn random_framing(r: &mut Rng, until_close: bool) -> Framing {
    match r.below(100) {
        0..=44 => Framing::Length,
        45..=89 => Framing::Chunked {
            trailer: r.percent(20),
        },
        _ if until_close => Framing::UntilClose,
        _ => Framing::Length,
    }
}

/// The script of exchange `id`: the same on both sides, from the seed alone.
fn plan(seed: u64, id: u64) -> Script {
    let mut r = Rng::for_exchange(seed, id, 0);
    let mut roll = r.below(1000) as u16;
    let mut pick = MIX[0].1;
    for (weight, name) in MIX {
        if roll < *weight {
            pick = name;
            break;
        }
        roll -= weight;
    }
    match pick {
        "valid" => {
            let framing = random_framing(&mut r, true);
            let after = if framing == Framing::UntilClose {
                After::ConnClose
            } else {
                match r.below(100) {
                    0..=69 => After::KeepAlive,
                    70..=84 if r.percent(50) => After::IdleClose(0),
                    70..=84 => After::IdleClose(r.range(1, 5) as u64),
                    85..=94 => After::ConnClose,
                    _ => After::RaceClose,
                }
            };
            Script::Valid {
                len: random_len(&mut r),
                framing,
                after,
                split: r.percent(25),
            }
        }
        "drip" => Script::Drip {
            len: r.range(0, 4096),
            framing: random_framing(&mut r, false),
            pieces: r.range(3, 20),
            pause_ms: r.range(1, 5) as u64,
        },
        "long" => Script::LongBody {
            len: r.range(0, 16 * 1024),
            smuggle: r.percent(60),
        },
        "te-and-cl" => Script::TeAndCl {
            len: r.range(0, 16 * 1024),
        },
        "reset-head" => Script::ResetMidHead,
        "reset-body" => Script::ResetMidBody {
            len: r.range(2, 64 * 1024),
            chunked: r.percent(50),
        },
        "stall" => Script::Stall {
            at: match r.below(3) {
                0 => StallAt::BeforeHead,
                1 => StallAt::MidHead,
                _ => StallAt::MidBody,
            },
        },
        "truncated" => Script::TruncatedChunked {
            len: random_len(&mut r),
        },
        "garbage" => Script::Garbage {
            kind: r.below(u64::from(GARBAGE_KINDS)) as u8,
        },
        "oversized" => Script::OversizedHead {
            kind: r.below(u64::from(OVERSIZED_KINDS)) as u8,
        },
        _ => Script::ShortBody {
            declared: r.range(1, 64 * 1024),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Response bytes.

/// The body of exchange `id`: position-dependent, so a shifted, cut or foreign body shows.
fn pattern(id: u64, len: usize) -> Vec<u8> {
    let base = splitmix(id ^ 0x5EED);
    (0..len)
        .map(|i| {
            let i = i as u64;
            (base.rotate_left((i % 64) as u32) as u8)
                ^ (i as u8)
                ^ ((i >> 8) as u8).wrapping_mul(31)
        })
        .collect()
}

fn head(id: u64, framing: Framing, declared: usize, close: bool) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 200 OK\r\nServer: soak\r\nX-Soak-Id: {id}\r\n");
    match framing {
        Framing::Length => h.push_str(&format!("Content-Length: {declared}\r\n")),
        Framing::Chunked { .. } => h.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::UntilClose => {}
    }
    if close {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

fn chunked(id: u64, body: &[u8], trailer: bool, r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut rest = body;
    while !rest.is_empty() {
        let max = if r.percent(50) { 64 } else { rest.len() };
        let n = r.range(1, max.min(rest.len()));
        let size = if r.percent(50) {
            format!("{n:x}")
        } else {
            format!("{n:X}")
        };
        out.extend_from_slice(size.as_bytes());
        if r.percent(10) {
            out.extend_from_slice(b";soak=1");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailer {
        out.extend_from_slice(format!("X-Soak-Trailer: {id}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A valid response, sometimes after interim (1xx) responses; also the length of the heads.
fn valid_response(
    id: u64,
    len: usize,
    framing: Framing,
    close: bool,
    r: &mut Rng,
) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    if r.percent(8) {
        for _ in 0..r.range(1, 3) {
            out.extend_from_slice(if r.percent(50) {
                &b"HTTP/1.1 100 Continue\r\n\r\n"[..]
            } else {
                &b"HTTP/1.1 103 Early Hints\r\nLink: </soak.css>; rel=preload\r\n\r\n"[..]
            });
        }
    }
    out.extend_from_slice(&head(id, framing, len, close));
    let head_len = out.len();
    let body = pattern(id, len);
    match framing {
        Framing::Length | Framing::UntilClose => out.extend_from_slice(&body),
        Framing::Chunked { trailer } => out.extend_from_slice(&chunked(id, &body, trailer, r)),
    }
    (out, head_len)
}

fn garbage(kind: u8, r: &mut Rng) -> Vec<u8> {
    let fixed: &[u8] = match kind {
        0 => {
            // Random bytes; the first can start neither a status line nor an empty line.
            const FIRST: &[u8] = b"<{!#abcxyz0123456789\x00\x01\x7f\xff";
            let len = r.range(1, 2048);
            let mut v: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            v[0] = FIRST[r.below(FIRST.len() as u64) as usize];
            return v;
        }
        1 => b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
        2 => b"HTTP/1.1 200 OK\r\nthis is not a header\r\nContent-Length: 0\r\n\r\n",
        3 => b"HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: 0\r\n\r\n",
        4 => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        5 => b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        6 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        7 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        8 => b"HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n",
        9 => b"<html><body>not HTTP</body></html>\r\n\r\n",
        10 => b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        11 => b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        12 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        // A chunk size past u64.
        13 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nab",
        // The largest chunk size, then the connection ends.
        14 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nabc",
        _ => {
            // More interim responses than the limit (10), then a final one.
            let mut v = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(r.range(11, 40));
            v.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            return v;
        }
    };
    fixed.to_vec()
}

fn oversized(kind: u8, r: &mut Rng) -> Vec<u8> {
    let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
    match kind {
        0 => {
            // One field past the 64 KiB head limit.
            v.extend_from_slice(b"X-Big: ");
            v.resize(v.len() + r.range(65 * 1024, 200 * 1024), b'a');
            v.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        }
        1 => {
            // 80 fields of 1 KiB: past the byte limit before the field limit.
            for i in 0..80 {
                v.extend_from_slice(format!("X-F{i:02}: ").as_bytes());
                v.resize(v.len() + 1024, b'b');
                v.extend_from_slice(b"\r\n");
            }
            v.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        }
        2 => {
            // Small but past the 100-field limit.
            for i in 0..r.range(101, 400) {
                v.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
            }
            v.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        }
        3 => {
            // A head that never ends.
            let target = r.range(70 * 1024, 200 * 1024);
            while v.len() < target {
                v.extend_from_slice(b"X-More: and more and more\r\n");
            }
        }
        5 => {
            // Chunk extensions past their 4 KiB limit.
            v.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n5;ext=");
            v.resize(v.len() + r.range(5 * 1024, 64 * 1024), b'e');
            v.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        }
        6 => {
            // A trailer section past its 16 KiB limit.
            v.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n");
            let target = v.len() + r.range(17 * 1024, 64 * 1024);
            while v.len() < target {
                v.extend_from_slice(b"X-Trailer-Padding: 0123456789abcdef0123456789abcdef\r\n");
            }
            v.extend_from_slice(b"\r\n");
        }
        _ => {
            // A status line past the limit.
            v = b"HTTP/1.1 200 ".to_vec();
            v.resize(v.len() + r.range(65 * 1024, 100 * 1024), b'R');
            v.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The server.

/// One request the server served.
#[derive(Clone, Copy, Debug)]
struct Served {
    id: u64,
    conn: u64,
    seq: u32,
    /// The previous request on the same connection and its category.
    prev: Option<(u64, &'static str)>,
}

#[derive(Default)]
struct ServerShared {
    seed: u64,
    stop: AtomicBool,
    next_conn: AtomicU64,
    live: AtomicUsize,
    peak_live: AtomicUsize,
    log: Mutex<Vec<Served>>,
    /// Requests that arrived where the client must not have sent them (criterion 4b).
    violations: Mutex<Vec<String>>,
    /// Harness trouble: malformed requests, panics, threads that could not start.
    problems: Mutex<Vec<String>>,
    /// Exchanges whose request a [`After::RaceClose`] connection dropped unanswered, and how
    /// many times.
    raced: Mutex<HashMap<u64, u32>>,
    /// Connections closed by the server's idle timeout ([`After::IdleClose`], keep-alive).
    idle_closed: AtomicU64,
    /// Requests that arrived on a connection after the server's idle-timeout FIN.
    late: Mutex<Vec<Late>>,
}

/// A request that arrived on a connection after the server had sent FIN for its idle timeout.
#[derive(Clone, Copy, Debug)]
struct Late {
    id: u64,
    conn: u64,
    /// When `shutdown(Write)` returned: the FIN is in the client's socket by then (loopback).
    fin: Instant,
    seen: Instant,
}

struct Server {
    addr: SocketAddr,
    shared: Arc<ServerShared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the connection does after a script.
enum Next {
    /// Wait this long for another request.
    KeepAlive(Duration),
    /// Wait [`LINGER`] watching for a request that must not come (why it must not).
    Linger(&'static str),
    /// Wait for the next request and close without reading it ([`After::RaceClose`]).
    RaceClose,
    /// Close gracefully (FIN).
    Close,
    /// Close with the request head unread, so that the kernel sends RST.
    Reset,
}

impl Server {
    fn start(seed: u64) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(ServerShared {
            seed,
            ..ServerShared::default()
        });
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("soak-acceptor".to_owned())
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn acceptor");
        Server {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Stops accepting and waits (bounded) for every connection thread to end; false if some
    /// did not end in time.
    fn stop(&mut self) -> bool {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = acceptor.join();
        }
        let deadline = Instant::now() + KEEPALIVE_IDLE + SERVER_IO_TIMEOUT;
        while self.shared.live.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = acceptor.join();
        }
    }
}

/// Decrements the live-connection count however the thread ends.
struct LiveGuard(Arc<ServerShared>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ServerShared>) {
    let mut errors = 0u32;
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                shared
                    .problems
                    .lock()
                    .unwrap()
                    .push(format!("accept failed: {e}"));
                errors += 1;
                if errors > 100 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        let live = shared.live.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_live.fetch_max(live, Ordering::SeqCst);
        let sh = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("soak-conn-{id}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let guard = LiveGuard(Arc::clone(&sh));
                let result = catch_unwind(AssertUnwindSafe(|| serve_conn(stream, id, &sh)));
                let problem = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(msg)) => Some(format!("connection {id}: {msg}")),
                    Err(_) => Some(format!("connection {id}: the server thread panicked")),
                };
                if let Some(p) = problem {
                    sh.problems.lock().unwrap().push(p);
                }
                drop(guard);
            });
        if let Err(e) = spawned {
            shared.live.fetch_sub(1, Ordering::SeqCst);
            shared
                .problems
                .lock()
                .unwrap()
                .push(format!("spawn connection thread: {e}"));
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Peeks (leaving them unread) until a whole request head is there; `None` if the client closed
/// or reset, or if `limit` passed first (the caller then closes: an idle timeout). Looks at least
/// once, without waiting when `limit` is zero, so that a request already there is served rather
/// than raced.
fn peek_head(stream: &TcpStream, limit: Duration) -> Result<Option<Vec<u8>>, String> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; MAX_REQUEST_HEAD];
    // Bounded by the deadline; each pass either blocks in peek (bounded by its timeout), or
    // does not block and then returns or sleeps 1 ms.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = left.is_zero();
        if last {
            stream
                .set_nonblocking(true)
                .map_err(|e| format!("set_nonblocking: {e}"))?;
        } else {
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| format!("set_read_timeout: {e}"))?;
        }
        let peeked = stream.peek(&mut buf);
        if last {
            stream
                .set_nonblocking(false)
                .map_err(|e| format!("set_nonblocking: {e}"))?;
        }
        match peeked {
            Ok(0) => return Ok(None),
            Ok(n) => {
                if let Some(end) = find_head_end(&buf[..n]) {
                    return Ok(Some(buf[..end].to_vec()));
                }
                if n == buf.len() {
                    return Err(format!("request head longer than {MAX_REQUEST_HEAD} bytes"));
                }
                if last {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if last {
                    return Ok(None);
                }
            }
            // The client reset the connection (it closed with our bytes unread): it is done.
            Err(_) => return Ok(None),
        }
    }
}

/// Whether `GET /soak/<id> HTTP/1.1` or `HEAD ...` is a HEAD, and the exchange number.
fn parse_request(head: &[u8]) -> Result<(bool, u64), String> {
    let text = String::from_utf8_lossy(head);
    let line = text.split("\r\n").next().unwrap_or_default();
    let (is_head, rest) = match line.strip_prefix("HEAD ") {
        Some(rest) => (true, rest),
        None => (false, line.strip_prefix("GET ").unwrap_or_default()),
    };
    let id = rest
        .strip_prefix("/soak/")
        .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected request line {line:?}"))?;
    if !text.to_ascii_lowercase().contains("\r\nhost: 127.0.0.1:") {
        return Err(format!("request {id} without Host: {text:?}"));
    }
    Ok((is_head, id))
}

fn send(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    stream
        .write_all(bytes)
        .and_then(|()| stream.flush())
        .is_ok()
}

/// Sends `bytes` in `pieces` consecutive writes, sleeping `pause` after each; false if the
/// client went away.
fn send_pieces(stream: &mut TcpStream, bytes: &[u8], pieces: usize, pause: Duration) -> bool {
    let size = bytes.len().div_ceil(pieces.max(1)).max(1);
    for piece in bytes.chunks(size) {
        if !send(stream, piece) {
            return false;
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    true
}

/// Sends `bytes` in a few writes cut at random points.
fn send_split(stream: &mut TcpStream, bytes: &[u8], r: &mut Rng) -> bool {
    let mut cuts: Vec<usize> = (0..r.range(1, 6))
        .map(|_| r.range(0, bytes.len()))
        .collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut from = 0;
    for to in cuts {
        if to > from {
            if !send(stream, &bytes[from..to]) {
                return false;
            }
            from = to;
        }
    }
    true
}

/// Reads and discards until the client closes (bounded by [`SERVER_IO_TIMEOUT`]).
fn wait_for_client_close(stream: &mut TcpStream) {
    let deadline = Instant::now() + SERVER_IO_TIMEOUT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn serve_conn(mut stream: TcpStream, conn: u64, sh: &ServerShared) -> Result<(), String> {
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    stream
        .set_write_timeout(Some(SERVER_IO_TIMEOUT))
        .map_err(|e| format!("set_write_timeout: {e}"))?;
    // The client connected to send a request: the first one comes at once.
    let mut next = Next::KeepAlive(SERVER_IO_TIMEOUT);
    let mut prev: Option<(u64, &'static str)> = None;
    for seq in 0..MAX_REQUESTS_PER_CONN {
        let (limit, forbidden, race) = match next {
            Next::KeepAlive(d) => (d, None, false),
            Next::Linger(why) => (LINGER, Some(why), false),
            Next::RaceClose => (KEEPALIVE_IDLE, None, true),
            // Close: nothing unread, so dropping sends FIN. Reset: the head is unread: RST.
            Next::Close | Next::Reset => return Ok(()),
        };
        let waited = Instant::now();
        let Some(request) = peek_head(&stream, limit)? else {
            if matches!(next, Next::KeepAlive(_)) && waited.elapsed() >= limit {
                // Idle timeout: FIN now, but read on, so that a request the client sends on
                // this dead connection later shows up here.
                sh.idle_closed.fetch_add(1, Ordering::Relaxed);
                let _ = stream.shutdown(Shutdown::Write);
                let fin = Instant::now();
                if let Some(late) = peek_head(&stream, LATE_WATCH)? {
                    let (_, id) = parse_request(&late)?;
                    sh.late.lock().unwrap().push(Late {
                        id,
                        conn,
                        fin,
                        seen: Instant::now(),
                    });
                }
            }
            return Ok(());
        };
        if race {
            let (_, id) = parse_request(&request)?;
            *sh.raced.lock().unwrap().entry(id).or_default() += 1;
            // Dropped with the request unread: the kernel answers it with RST.
            return Ok(());
        }
        if let Some(why) = forbidden {
            let line = String::from_utf8_lossy(&request);
            let line = line.lines().next().unwrap_or_default().to_owned();
            let (pid, pcat) = prev.unwrap_or((u64::MAX, "?"));
            sh.violations.lock().unwrap().push(format!(
                "server connection {conn}: request {seq} ({line:?}) arrived {why} \
                 (the response to exchange {pid}, {pcat})"
            ));
            return Ok(());
        }
        let (is_head, id) = parse_request(&request)?;
        let script = plan(sh.seed, id);
        if is_head != client_plan(sh.seed, id, &script).0 {
            return Err(format!(
                "exchange {id}: unexpected method (HEAD: {is_head})"
            ));
        }
        sh.log.lock().unwrap().push(Served {
            id,
            conn,
            seq,
            prev,
        });
        prev = Some((id, script.category()));
        let mut r = Rng::for_exchange(sh.seed, id, 1);
        next = run_script(&mut stream, id, script, request.len(), is_head, &mut r);
    }
    Ok(())
}

fn run_script(
    stream: &mut TcpStream,
    id: u64,
    script: Script,
    request_len: usize,
    is_head: bool,
    r: &mut Rng,
) -> Next {
    // Takes the request head (already peeked, so it is all there) off the socket.
    let consume = |stream: &mut TcpStream| -> bool {
        let mut head = vec![0u8; request_len];
        let _ = stream.set_read_timeout(Some(SERVER_IO_TIMEOUT));
        stream.read_exact(&mut head).is_ok()
    };
    if !matches!(script, Script::ResetMidHead | Script::ResetMidBody { .. }) && !consume(stream) {
        return Next::Close;
    }
    match script {
        Script::Valid {
            len,
            framing,
            after,
            split,
        } => {
            let close = after == After::ConnClose;
            let (mut bytes, head_len) = valid_response(id, len, framing, close, r);
            if is_head {
                // The same head as for GET, and no body (RFC 9110 §9.3.2).
                bytes.truncate(head_len);
            }
            let sent = if split {
                send_split(stream, &bytes, r)
            } else {
                send(stream, &bytes)
            };
            match (sent, framing, after) {
                (false, _, _) | (_, Framing::UntilClose, _) => Next::Close,
                (true, _, After::KeepAlive) => Next::KeepAlive(KEEPALIVE_IDLE),
                (true, _, After::IdleClose(ms)) => Next::KeepAlive(Duration::from_millis(ms)),
                (true, _, After::ConnClose) => Next::Linger("after a `Connection: close` response"),
                (true, _, After::RaceClose) => Next::RaceClose,
            }
        }
        Script::Drip {
            len,
            framing,
            pieces,
            pause_ms,
        } => {
            let (bytes, _) = valid_response(id, len, framing, false, r);
            if send_pieces(stream, &bytes, pieces, Duration::from_millis(pause_ms)) {
                Next::KeepAlive(KEEPALIVE_IDLE)
            } else {
                Next::Close
            }
        }
        Script::LongBody { len, smuggle } => {
            let (mut bytes, _) = valid_response(id, len, Framing::Length, false, r);
            if smuggle {
                bytes.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\nX-Soak-Id: smuggled-after-{id}\r\n\
                         Content-Length: 8\r\n\r\nSMUGGLED"
                    )
                    .as_bytes(),
                );
            } else {
                let n = r.range(1, 512);
                bytes.extend((0..n).map(|_| r.next() as u8));
            }
            if send(stream, &bytes) {
                Next::Linger("after a response with bytes beyond its Content-Length")
            } else {
                Next::Close
            }
        }
        Script::TeAndCl { len } => {
            let framing = Framing::Chunked { trailer: false };
            let (bytes, head_len) = valid_response(id, len, framing, false, r);
            let declared = r.range(0, 2 * len + 10);
            let mut out = bytes[..head_len - 2].to_vec();
            out.extend_from_slice(format!("Content-Length: {declared}\r\n\r\n").as_bytes());
            out.extend_from_slice(&bytes[head_len..]);
            if send(stream, &out) {
                Next::Linger("after a response with both Transfer-Encoding and Content-Length")
            } else {
                Next::Close
            }
        }
        Script::ResetMidHead => {
            let len = r.range(0, 64);
            let (bytes, head_len) = valid_response(id, len, Framing::Length, false, r);
            send(stream, &bytes[..r.range(1, head_len - 1)]);
            Next::Reset
        }
        Script::ResetMidBody { len, chunked } => {
            let framing = if chunked {
                Framing::Chunked { trailer: false }
            } else {
                Framing::Length
            };
            let (bytes, head_len) = valid_response(id, len, framing, false, r);
            send(stream, &bytes[..r.range(head_len + 1, bytes.len() - 1)]);
            Next::Reset
        }
        Script::Stall { at } => {
            let (bytes, head_len) = valid_response(id, r.range(2, 4096), Framing::Length, false, r);
            let prefix = match at {
                StallAt::BeforeHead => &bytes[..0],
                StallAt::MidHead => &bytes[..r.range(1, head_len - 1)],
                StallAt::MidBody => &bytes[..r.range(head_len, bytes.len() - 1)],
            };
            send(stream, prefix);
            wait_for_client_close(stream);
            Next::Close
        }
        Script::TruncatedChunked { len } => {
            let framing = Framing::Chunked {
                trailer: r.percent(30),
            };
            let (bytes, head_len) = valid_response(id, len, framing, false, r);
            send(stream, &bytes[..r.range(head_len, bytes.len() - 1)]);
            Next::Close
        }
        Script::Garbage { kind } => {
            send(stream, &garbage(kind, r));
            Next::Close
        }
        Script::OversizedHead { kind } => {
            // The client stops reading at its limit and closes: the write may fail.
            send(stream, &oversized(kind, r));
            Next::Close
        }
        Script::ShortBody { declared } => {
            let mut bytes = head(id, Framing::Length, declared, false);
            bytes.extend_from_slice(&pattern(id, r.range(0, declared - 1)));
            send(stream, &bytes);
            Next::Close
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client side.

/// How much of the body the client reads before dropping the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadMode {
    /// To the end.
    Full,
    /// This many bytes (or fewer if the body ends), then drop: the session drains the rest to
    /// reuse the connection, or closes it.
    Prefix(usize),
    /// Drop the response as soon as its head is there.
    Drop,
}

/// Whether exchange `id` is a HEAD (some valid scripts only), and how much of the body the
/// client reads.
fn client_plan(seed: u64, id: u64, script: &Script) -> (bool, ReadMode) {
    let mut r = Rng::for_exchange(seed, id, 2);
    if matches!(script, Script::Valid { .. }) && r.percent(5) {
        return (true, ReadMode::Full);
    }
    let mode = match r.below(100) {
        0..=84 => ReadMode::Full,
        85..=94 => ReadMode::Prefix(r.range(0, script.body_len().max(4096))),
        _ => ReadMode::Drop,
    };
    (false, mode)
}

/// Session events seen by the current thread's exchange.
#[derive(Default, Clone, Debug)]
struct Trace {
    /// Connection ids in the order they were used: new (`+id`) or reused (`~id`).
    conns: Vec<String>,
    /// When each reused connection passed its checkout (liveness check included).
    reused_at: Vec<Instant>,
    /// When the exchange started.
    started: Option<Instant>,
    connects: u32,
    reuses: u32,
    retries: u32,
}

thread_local! {
    static TRACE: RefCell<Trace> = RefCell::new(Trace::default());
}

fn on_event(e: &Event<'_>) {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        match e {
            Event::Connected { id, .. } => {
                t.connects += 1;
                t.conns.push(format!("+{id}"));
            }
            Event::Reused { id, .. } => {
                t.reused_at.push(Instant::now());
                t.reuses += 1;
                t.conns.push(format!("~{id}"));
            }
            Event::Retrying => t.retries += 1,
            _ => {}
        }
    });
}

/// What a successful exchange produced.
struct Got {
    status: u16,
    id: Option<String>,
    /// The body, or the part of it the client read.
    body: Vec<u8>,
    trailer: Option<String>,
}

/// One exchange; the outer error is an error that is not a `ferry::Error` (criterion 2).
fn exchange(
    session: &Session,
    url: &str,
    is_head: bool,
    mode: ReadMode,
) -> Result<Result<Got, ferry::Error>, String> {
    let typed = |e: ferry::Error| Ok(Err(e));
    let method = if is_head {
        ferry::Method::HEAD
    } else {
        ferry::Method::GET
    };
    let mut resp = match session.request(method, url).and_then(|r| r.send()) {
        Ok(resp) => resp,
        Err(e) => return typed(e),
    };
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-soak-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match mode {
        ReadMode::Full => match resp.read_to_vec(BODY_CAP) {
            Ok(body) => body,
            Err(e) => return typed(e),
        },
        ReadMode::Drop => Vec::new(),
        ReadMode::Prefix(n) => {
            let mut buf = vec![0u8; n];
            let mut got = 0;
            // Bounded: each pass reads at least one byte or ends.
            while got < n {
                match Read::read(&mut resp, &mut buf[got..]) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let shown = format!("{e:?}");
                        return match e.into_inner().map(|i| i.downcast::<ferry::Error>()) {
                            Some(Ok(typed_error)) => typed(*typed_error),
                            _ => Err(format!("Response::read failed with {shown}")),
                        };
                    }
                }
            }
            buf.truncate(got);
            buf
        }
    };
    let trailer = resp
        .trailers()
        .and_then(|t| t.get("x-soak-trailer"))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // Dropping an unfinished response drains or closes its connection, within the budget.
    drop(resp);
    Ok(Ok(Got {
        status,
        id,
        body,
        trailer,
    }))
}

/// Why an exchange's result is wrong for its script, if it is.
fn verdict(
    id: u64,
    script: &Script,
    plan: (bool, ReadMode),
    result: &Result<Got, ferry::Error>,
) -> Option<String> {
    let (is_head, mode) = plan;
    let expect = script.expect();
    if mode != ReadMode::Full && matches!(expect, Expect::Timeout | Expect::Error) {
        // The client gave up on a fault before its end: any outcome within the budget will do.
        return None;
    }
    match (expect, result) {
        (Expect::BodyOrProtocol, Err(e)) if e.kind() == ErrorKind::Protocol => None,
        (Expect::Body | Expect::BodyOrProtocol, Ok(got)) => {
            let want_id = id.to_string();
            if got.status != 200 {
                return Some(format!("status {} instead of 200", got.status));
            }
            if got.id.as_deref() != Some(want_id.as_str()) {
                return Some(format!(
                    "X-Soak-Id {:?} instead of {want_id:?}: another response's head",
                    got.id
                ));
            }
            let mut want = if is_head {
                Vec::new()
            } else {
                pattern(id, script.body_len())
            };
            match mode {
                ReadMode::Full => {}
                ReadMode::Prefix(n) => want.truncate(n),
                ReadMode::Drop => want.clear(),
            }
            if got.body != want {
                let at = got
                    .body
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.body.len().min(want.len()));
                return Some(format!(
                    "wrong body: {} bytes instead of {}, first difference at byte {at}",
                    got.body.len(),
                    want.len()
                ));
            }
            let read_all = mode == ReadMode::Full && !is_head;
            if read_all && script.trailer() && got.trailer.as_deref() != Some(want_id.as_str()) {
                return Some(format!("trailer {:?} instead of {want_id:?}", got.trailer));
            }
            None
        }
        (Expect::Body | Expect::BodyOrProtocol, Err(e)) => {
            Some(format!("a valid response failed: {:?}: {e}", e.kind()))
        }
        (Expect::Timeout, Err(e)) if e.kind() == ErrorKind::Timeout => None,
        (Expect::Timeout, Err(e)) => Some(format!(
            "a stall ended in {:?} ({e}) instead of a timeout",
            e.kind()
        )),
        (Expect::Error, Err(_)) => None,
        (Expect::Timeout | Expect::Error, Ok(got)) => Some(format!(
            "a fault was taken as a response: status {}, {} body bytes",
            got.status,
            got.body.len()
        )),
    }
}

#[derive(Default)]
struct CatStats {
    exchanges: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    failures: u64,
    max: Duration,
    /// The largest share of its budget an exchange used.
    max_share: f64,
    reused: u64,
    retried: u64,
}

struct Failure {
    id: u64,
    script: Script,
    plan: (bool, ReadMode),
    what: String,
    took: Duration,
    trace: Trace,
}

#[derive(Clone, Copy)]
struct InFlight {
    id: u64,
    script: Script,
    start: Instant,
}

struct Ctx {
    seed: u64,
    total: u64,
    port: u16,
    session: Session,
    next: AtomicU64,
    stop: AtomicBool,
    in_flight: Vec<Mutex<Option<InFlight>>>,
    stats: Mutex<BTreeMap<&'static str, CatStats>>,
    failures: Mutex<Vec<Failure>>,
    failure_count: AtomicU64,
    panics: AtomicU64,
    /// Valid exchanges that failed after the automatic retry (uncapped; judged at the end).
    retried_failures: Mutex<Vec<Failure>>,
    /// Per exchange that reused a connection: when it started, and when its reused connections
    /// passed checkout.
    reused_at: Mutex<HashMap<u64, (Instant, Vec<Instant>)>>,
    connects: AtomicU64,
    reuses: AtomicU64,
    retries: AtomicU64,
}

impl Ctx {
    fn record(
        &self,
        id: u64,
        script: Script,
        plan: (bool, ReadMode),
        outcome: Outcome,
        took: Duration,
        trace: Trace,
    ) {
        let category = script.category();
        let mut what = Vec::new();
        let mut retried = None;
        let error_kind = match &outcome {
            Outcome::Untyped(msg) => {
                what.push(format!("an untyped error: {msg}"));
                Some("untyped".to_owned())
            }
            Outcome::Panicked(msg) => {
                self.panics.fetch_add(1, Ordering::SeqCst);
                what.push(format!("PANIC: {msg}"));
                Some("PANIC".to_owned())
            }
            Outcome::Done(result) => {
                if let Some(v) = verdict(id, &script, plan, result) {
                    if result.is_err() && trace.retries > 0 {
                        // Judged at the end, once the server's logs of dropped requests are
                        // complete: see `classify_retried`.
                        retried = Some(v);
                    } else {
                        what.push(v);
                    }
                }
                result.as_ref().err().map(|e| format!("{:?}", e.kind()))
            }
        };
        let budget = script.budget();
        if took > budget {
            what.push(format!("took {took:?}, over its budget of {budget:?}"));
        }
        if let Some(v) = retried {
            if what.is_empty() {
                self.retried_failures.lock().unwrap().push(Failure {
                    id,
                    script,
                    plan,
                    what: v,
                    took,
                    trace: trace.clone(),
                });
            } else {
                what.push(v);
            }
        }
        // Only exchanges that may have met a dead connection (criterion 4c) are kept: a request
        // that reached one saw its close and was retried or failed.
        let may_have_met_dead = trace.retries > 0 || error_kind.is_some();
        if let (true, false, Some(started)) =
            (may_have_met_dead, trace.reused_at.is_empty(), trace.started)
        {
            self.reused_at
                .lock()
                .unwrap()
                .insert(id, (started, trace.reused_at.clone()));
        }
        self.connects
            .fetch_add(u64::from(trace.connects), Ordering::Relaxed);
        self.reuses
            .fetch_add(u64::from(trace.reuses), Ordering::Relaxed);
        self.retries
            .fetch_add(u64::from(trace.retries), Ordering::Relaxed);
        {
            let mut stats = self.stats.lock().unwrap();
            let s = stats.entry(category).or_default();
            s.exchanges += 1;
            match error_kind {
                None => s.ok += 1,
                Some(k) => *s.errors.entry(k).or_default() += 1,
            }
            s.max = s.max.max(took);
            s.max_share = s.max_share.max(took.as_secs_f64() / budget.as_secs_f64());
            s.reused += u64::from(trace.reuses > 0);
            s.retried += u64::from(trace.retries > 0);
            s.failures += u64::from(!what.is_empty());
        }
        if !what.is_empty() {
            self.failure_count.fetch_add(1, Ordering::SeqCst);
            let mut failures = self.failures.lock().unwrap();
            if failures.len() < MAX_REPORTED {
                failures.push(Failure {
                    id,
                    script,
                    plan,
                    what: what.join("; "),
                    took,
                    trace,
                });
            }
        }
    }
}

enum Outcome {
    Done(Result<Got, ferry::Error>),
    /// An error that is not a `ferry::Error`.
    Untyped(String),
    Panicked(String),
}

fn worker(cx: &Ctx, slot: usize) {
    // Bounded: each pass takes a fresh exchange number below `total`.
    loop {
        if cx.stop.load(Ordering::SeqCst) {
            return;
        }
        let id = cx.next.fetch_add(1, Ordering::SeqCst);
        if id >= cx.total {
            return;
        }
        let script = plan(cx.seed, id);
        let (is_head, mode) = client_plan(cx.seed, id, &script);
        let url = format!("http://127.0.0.1:{}/soak/{id}", cx.port);
        let start = Instant::now();
        TRACE.with(|t| {
            *t.borrow_mut() = Trace {
                started: Some(start),
                ..Trace::default()
            }
        });
        *cx.in_flight[slot].lock().unwrap() = Some(InFlight { id, script, start });
        let outcome = match catch_unwind(AssertUnwindSafe(|| {
            exchange(&cx.session, &url, is_head, mode)
        })) {
            Ok(Ok(result)) => Outcome::Done(result),
            Ok(Err(untyped)) => Outcome::Untyped(untyped),
            Err(payload) => Outcome::Panicked(
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default(),
            ),
        };
        let took = start.elapsed();
        *cx.in_flight[slot].lock().unwrap() = None;
        let trace = TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()));
        cx.record(id, script, (is_head, mode), outcome, took, trace);
    }
}

// ---------------------------------------------------------------------------------------------
// The soak.

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// A field of `/proc/self/status`, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix(nanos ^ (u64::from(std::process::id()) << 32))
}

#[test]
fn fault_soak() {
    let seed = env_u64("FERRY_SOAK_SEED").unwrap_or_else(fresh_seed);
    let total = env_u64("FERRY_SOAK_EXCHANGES").unwrap_or(DEFAULT_EXCHANGES);
    let threads = env_u64("FERRY_SOAK_THREADS").map_or(DEFAULT_THREADS, |t| t.max(1) as usize);
    let strict_retry = env_u64("FERRY_SOAK_STRICT_RETRY").is_none_or(|v| v != 0);
    let wall = WALL_PER_20K.mul_f64((total as f64 / 20_000.0).max(1.0));
    println!(
        "fault soak: seed {seed:#x}, {total} exchanges, {threads} client threads, receive \
         timeout {RECEIVE_TIMEOUT:?}, wall bound {wall:?}\n\
         replay: FERRY_SOAK_SEED={seed:#x} FERRY_SOAK_EXCHANGES={total} \
         cargo test --test fault_soak -- --nocapture"
    );
    let rss_start = proc_status_kib("VmRSS");

    let mut server = Server::start(seed);
    let session = Session::builder()
        .receive_timeout(RECEIVE_TIMEOUT)
        .send_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .on_event(Arc::new(on_event))
        .build()
        .expect("session");
    let cx = Arc::new(Ctx {
        seed,
        total,
        port: server.addr.port(),
        session,
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        in_flight: (0..threads).map(|_| Mutex::new(None)).collect(),
        stats: Mutex::new(BTreeMap::new()),
        failures: Mutex::new(Vec::new()),
        failure_count: AtomicU64::new(0),
        panics: AtomicU64::new(0),
        retried_failures: Mutex::new(Vec::new()),
        reused_at: Mutex::new(HashMap::new()),
        connects: AtomicU64::new(0),
        reuses: AtomicU64::new(0),
        retries: AtomicU64::new(0),
    });

    let start = Instant::now();
    let workers: Vec<JoinHandle<()>> = (0..threads)
        .map(|slot| {
            let cx = Arc::clone(&cx);
            std::thread::Builder::new()
                .name(format!("soak-client-{slot}"))
                .spawn(move || worker(&cx, slot))
                .expect("spawn client thread")
        })
        .collect();

    // Watchdog: bounded by the wall deadline; polls every 50 ms.
    let deadline = start + wall;
    while !workers.iter().all(JoinHandle::is_finished) {
        let now = Instant::now();
        let hung: Vec<String> = cx
            .in_flight
            .iter()
            .filter_map(|f| *f.lock().unwrap())
            .filter(|f| now - f.start > f.script.budget() + HANG || now >= deadline)
            .map(|f| {
                format!(
                    "exchange {} ({:?}) running for {:?} (budget {:?})",
                    f.id,
                    f.script,
                    now - f.start,
                    f.script.budget()
                )
            })
            .collect();
        if !hung.is_empty() || now >= deadline {
            cx.stop.store(true, Ordering::SeqCst);
            panic!(
                "fault soak (seed {seed:#x}): {} after {:?}, {} exchanges started:\n  {}\n\
                 replay: FERRY_SOAK_SEED={seed:#x} cargo test --test fault_soak -- --nocapture",
                if hung.is_empty() {
                    "wall-time bound reached"
                } else {
                    "an exchange hangs"
                },
                now - start,
                cx.next.load(Ordering::SeqCst).min(total),
                hung.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    for w in workers {
        w.join().expect("client threads catch their panics");
    }

    // Closing the session closes the idle pooled connections; the server threads then end.
    let cx = Arc::into_inner(cx).expect("the workers are done");
    let Ctx {
        session,
        stats,
        failures,
        failure_count,
        panics,
        retried_failures,
        reused_at,
        connects,
        reuses,
        retries,
        ..
    } = cx;
    drop(session);
    let server_stopped = server.stop();
    let hwm = proc_status_kib("VmHWM");
    let rss_end = proc_status_kib("VmRSS");

    // The report.
    let mut stats = stats.into_inner().unwrap();
    let log = std::mem::take(&mut *server.shared.log.lock().unwrap());
    let violations = std::mem::take(&mut *server.shared.violations.lock().unwrap());
    let problems = std::mem::take(&mut *server.shared.problems.lock().unwrap());
    let mut failures = failures.into_inner().unwrap();
    let mut failure_count = failure_count.load(Ordering::SeqCst);
    let panics = panics.load(Ordering::SeqCst);
    let mut served: HashMap<u64, Vec<Served>> = HashMap::new();
    for s in &log {
        served.entry(s.id).or_default().push(*s);
    }
    let served_twice = served.values().filter(|v| v.len() > 1).count();
    let raced = server.shared.raced.lock().unwrap().values().sum::<u32>();
    // Criterion 4, the liveness check: a request that reached a connection after the server's
    // idle FIN must come from an exchange that started before that FIN arrived (a race: the
    // check ran before the FIN), never from one that started after it.
    let reused_at = reused_at.into_inner().unwrap();
    let late = std::mem::take(&mut *server.shared.late.lock().unwrap());
    let mut late_races = 0u64;
    let mut ambiguous = Vec::new();
    let mut dead_handed_out = Vec::new();
    for l in &late {
        let Some((started, reuses)) = reused_at.get(&l.id) else {
            dead_handed_out.push(format!(
                "exchange {} reached server connection {} {:?} after its idle FIN, but the \
                 client reported no reused connection for it",
                l.id,
                l.conn,
                l.seen - l.fin
            ));
            continue;
        };
        if *started > l.fin + FIN_DELIVERY {
            dead_handed_out.push(format!(
                "the pool handed out a dead connection: exchange {} started {:?} after the \
                 server's FIN on server connection {} and still sent its request there (the \
                 liveness check at checkout missed it)",
                l.id,
                *started - l.fin,
                l.conn
            ));
        } else {
            let checkout = reuses.iter().filter(|t| **t <= l.seen).max();
            match checkout {
                Some(t) if *t > l.fin => ambiguous.push(format!(
                    "exchange {} started {:?} before the server's FIN on server connection {}, \
                     and checked a connection out {:?} after it",
                    l.id,
                    l.fin.saturating_duration_since(*started),
                    l.conn,
                    *t - l.fin
                )),
                _ => late_races += 1,
            }
        }
    }
    if ambiguous.len() as u64 > AMBIGUOUS_MAX {
        dead_handed_out.push(format!(
            "the pool handed out dead connections: {} requests reached a connection after the \
             server's idle FIN from checkouts that may have followed it (at most \
             {AMBIGUOUS_MAX} races are plausible), e.g.:\n  {}",
            ambiguous.len(),
            ambiguous
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    // A valid exchange that failed after its retry is excused only if the server dropped both
    // attempts unanswered on connections it closed after the request was sent (raced closes, and
    // late requests that were races): the one retry cannot cover two such connections in a row.
    let mut dropped: HashMap<u64, u32> = server.shared.raced.lock().unwrap().clone();
    for l in &late {
        *dropped.entry(l.id).or_default() += 1;
    }
    let mut double_races = Vec::new();
    for f in retried_failures.into_inner().unwrap() {
        let n = dropped.get(&f.id).copied().unwrap_or(0);
        if n >= 2 && !strict_retry {
            double_races.push(format!(
                "exchange {} {:?}: {} [client connections {:?}]",
                f.id, f.script, f.what, f.trace.conns
            ));
            continue;
        }
        failure_count += 1;
        if let Some(s) = stats.get_mut(f.script.category()) {
            s.failures += 1;
        }
        if failures.len() < MAX_REPORTED {
            failures.push(Failure {
                what: format!(
                    "{} (after the automatic retry; the server dropped {n} of its attempts)",
                    f.what
                ),
                ..f
            });
        }
    }
    let late_line = format!(
        "requests on connections after the server's idle FIN: {} ({late_races} races, checked \
         out before the FIN; {} ambiguous, checked out between the exchange's start before the \
         FIN and the `Reused` event after it; {} certain misses of the liveness check)",
        late.len(),
        ambiguous.len(),
        late.len() as u64 - late_races - ambiguous.len() as u64
    );
    let max = stats.values().map(|s| s.max).max().unwrap_or_default();
    let max_share = stats.values().map(|s| s.max_share).fold(0.0, f64::max);

    println!(
        "{:<18} {:>6} {:>6} {:>5} {:>7} {:>7} {:>9}  errors by kind",
        "category", "count", "ok", "fail", "reused", "retried", "max"
    );
    for (cat, s) in &stats {
        let errors: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "{cat:<18} {:>6} {:>6} {:>5} {:>7} {:>7} {:>7.0}ms  {}",
            s.exchanges,
            s.ok,
            s.failures,
            s.reused,
            s.retried,
            s.max.as_secs_f64() * 1000.0,
            errors.join(", ")
        );
    }
    println!(
        "{total} exchanges in {elapsed:.1?} ({:.0}/s); connections: {} opened, {} reuses, {} \
         stale retries; server: {} connections, {} requests served, peak {} live, {} exchanges \
         served twice",
        total as f64 / elapsed.as_secs_f64(),
        connects.load(Ordering::SeqCst),
        reuses.load(Ordering::SeqCst),
        retries.load(Ordering::SeqCst),
        server.shared.next_conn.load(Ordering::SeqCst),
        log.len(),
        server.shared.peak_live.load(Ordering::SeqCst),
        served_twice,
    );
    println!("{late_line}");
    for a in ambiguous.iter().take(AMBIGUOUS_MAX as usize) {
        println!("  ambiguous: {a}");
    }
    println!(
        "server idle-closed {} pooled connections; raced closes (request dropped unanswered): \
         {raced}; valid exchanges whose request and retry were both dropped: {}",
        server.shared.idle_closed.load(Ordering::SeqCst),
        double_races.len()
    );
    for n in double_races.iter().take(10) {
        println!("  double race (not a failure): {n}");
    }
    println!(
        "longest exchange {max:?} (receive timeout {RECEIVE_TIMEOUT:?}; at most {:.0}% of its \
         budget); RSS {} KiB at start, {} KiB at end, peak (VmHWM) {} KiB (bound {} MiB)",
        max_share * 100.0,
        rss_start,
        rss_end,
        hwm,
        RSS_LIMIT_MIB
    );

    let mut problems_all = Vec::new();
    for f in &failures {
        let on_server: Vec<String> = served
            .get(&f.id)
            .map(|v| {
                v.iter()
                    .map(|s| {
                        format!(
                            "server connection {} request {} (previous: {})",
                            s.conn,
                            s.seq,
                            s.prev
                                .map_or("none".to_owned(), |(id, cat)| format!("{id} {cat}"))
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        problems_all.push(format!(
            "exchange {} {:?} (HEAD {}, read {:?}): {} [took {:?}; client connections {:?}, {} \
             retries; served on: {}]",
            f.id,
            f.script,
            f.plan.0,
            f.plan.1,
            f.what,
            f.took,
            f.trace.conns,
            f.trace.retries,
            if on_server.is_empty() {
                "never".to_owned()
            } else {
                on_server.join(", ")
            }
        ));
    }
    if failure_count > failures.len() as u64 {
        problems_all.push(format!(
            "... and {} more failed exchanges",
            failure_count - failures.len() as u64
        ));
    }
    problems_all.extend(
        violations
            .iter()
            .map(|v| format!("dead-connection reuse: {v}")),
    );
    problems_all.extend(dead_handed_out.iter().cloned());
    problems_all.extend(problems.iter().map(|p| format!("server: {p}")));
    if !server_stopped {
        problems_all.push(format!(
            "{} server connection threads still running after the session closed",
            server.shared.live.load(Ordering::SeqCst)
        ));
    }
    if hwm > RSS_LIMIT_MIB * 1024 {
        problems_all.push(format!(
            "peak RSS {hwm} KiB is over the {RSS_LIMIT_MIB} MiB bound"
        ));
    }
    assert_eq!(
        panics,
        0,
        "panics (seed {seed:#x}):\n{}",
        problems_all.join("\n")
    );
    assert!(
        problems_all.is_empty(),
        "fault soak failed (seed {seed:#x}; replay with FERRY_SOAK_SEED={seed:#x}): {failure_count} \
         failed exchanges, {} dead-connection reuses, {} server problems:\n{}",
        violations.len(),
        problems.len(),
        problems_all.join("\n")
    );
}
