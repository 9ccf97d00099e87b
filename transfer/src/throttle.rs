//! A token bucket with an injected clock, for rate caps (`--limit-rate`, job caps).
//!
//! The caller asks to [`TokenBucket::take`] `n` bytes at `now` and gets back how long to wait
//! before moving them. Tokens refill at `rate` bytes per second up to `burst`; a take may
//! overdraw the bucket (a read already happened), and the debt is what the returned wait pays
//! off. Over any interval `T` the bytes allowed are at most `burst + rate × T`, so the long-run
//! rate converges to the cap. The bucket never reads the clock itself (quinn-proto style).
//!
//! ```
//! use ferry_transfer::throttle::TokenBucket;
//! use std::time::{Duration, Instant};
//! let t0 = Instant::now();
//! let mut b = TokenBucket::new(1000, 1000);
//! assert_eq!(b.take(1000, t0), Duration::ZERO);          // the burst
//! assert_eq!(b.take(500, t0), Duration::from_millis(500)); // then the rate
//! ```

use std::time::{Duration, Instant};

/// The longest single wait a bucket returns (a guard against absurd inputs).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A token bucket. A `rate` of 0 means "no limit" (curl's `--limit-rate 0`).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens available, in bytes; negative while in debt.
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A bucket refilling at `rate_bytes_per_s` and holding at most `burst` bytes (at least 1),
    /// starting full.
    pub fn new(rate_bytes_per_s: u64, burst: u64) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate: rate_bytes_per_s,
            burst,
            tokens: burst as f64,
            last: None,
        }
    }

    /// The cap, in bytes per second (0: none).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Whether the bucket limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.rate == 0
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            // A clock that goes backwards (it cannot with Instant, but be safe) adds nothing.
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate as f64).min(self.burst as f64);
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }

    /// Takes `n` bytes at `now`; returns how long to wait before they may move (zero when the
    /// bucket had them).
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        let secs = -self.tokens / self.rate as f64;
        if !secs.is_finite() || secs >= MAX_WAIT.as_secs_f64() {
            return MAX_WAIT;
        }
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// Changes the cap (0: none), keeping the tokens held.
    pub fn set_rate(&mut self, rate_bytes_per_s: u64) {
        self.rate = rate_bytes_per_s;
    }
}

/// Parses a rate as curl's `--limit-rate` does: a number of bytes per second with an optional
/// suffix `k`/`K` (1024), `m`/`M` (1024²), `g`/`G` (1024³); `B` alone is accepted. Fractions are
/// allowed with a suffix (`1.5M`). Returns `None` for anything else or an overflowing value.
pub fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1u64 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1u64 << 30),
        b'b' | b'B' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    if num.bytes().filter(|&b| b == b'.').count() > 1 || num == "." {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a reader pulling `chunk` bytes as fast as the bucket allows for `secs` of fake
    /// time; returns the observed rate.
    fn simulate(rate: u64, burst: u64, chunk: u64, secs: u64) -> f64 {
        let t0 = Instant::now();
        let mut now = t0;
        let mut b = TokenBucket::new(rate, burst);
        let mut moved = 0u64;
        let end = t0 + Duration::from_secs(secs);
        while now < end {
            let wait = b.take(chunk, now);
            now += wait;
            moved += chunk;
            // Reading costs a little time too.
            now += Duration::from_micros(50);
        }
        moved as f64 / now.duration_since(t0).as_secs_f64()
    }

    #[test]
    fn long_run_rate_within_ten_percent() {
        for (rate, burst, chunk) in [
            (1_000_000, 64_000, 65_536),
            (50_000, 16_384, 16_384),
            (10 << 20, 1 << 20, 96 * 1024),
            (1000, 1000, 4096), // chunks larger than the burst still average out
        ] {
            let got = simulate(rate, burst, chunk, 30);
            let ratio = got / rate as f64;
            assert!(
                (0.9..=1.1).contains(&ratio),
                "rate {rate}: got {got:.0} ({ratio:.3})"
            );
        }
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 1000);
        assert_eq!(b.take(1000, t0), Duration::ZERO);
        assert_eq!(b.take(500, t0), Duration::from_millis(500));
        // After paying off the debt and a further second, a full bucket again.
        let t = t0 + Duration::from_millis(1500);
        assert_eq!(b.take(1000, t), Duration::ZERO);
    }

    #[test]
    fn unlimited_and_extremes_never_panic() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0);
        assert!(b.is_unlimited());
        assert_eq!(b.take(u64::MAX, t0), Duration::ZERO);
        let mut b = TokenBucket::new(1, 1);
        assert_eq!(b.take(u64::MAX, t0), MAX_WAIT);
        let mut b = TokenBucket::new(u64::MAX, u64::MAX);
        assert_eq!(b.take(u64::MAX, t0), Duration::ZERO);
        // An earlier `now` than before adds no tokens and does not panic.
        let mut b = TokenBucket::new(10, 10);
        let _ = b.take(10, t0 + Duration::from_secs(5));
        assert!(b.take(10, t0) > Duration::ZERO);
    }

    #[test]
    fn rates_parse_like_curl() {
        assert_eq!(parse_rate("1000"), Some(1000));
        assert_eq!(parse_rate("100k"), Some(102_400));
        assert_eq!(parse_rate("100K"), Some(102_400));
        assert_eq!(parse_rate("2M"), Some(2 << 20));
        assert_eq!(parse_rate("1G"), Some(1 << 30));
        assert_eq!(parse_rate("1.5M"), Some(1_572_864));
        assert_eq!(parse_rate("10B"), Some(10));
        for bad in [
            "",
            "k",
            "-1",
            "1x",
            "1..5k",
            ".",
            "1e9",
            "99999999999999999999G",
            "1 k",
        ] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }
}

/// Seconds in a day.
const DAY: u32 = 24 * 3600;

/// What the background policy allows at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// No cap.
    Unlimited,
    /// At most this many bytes per second, shared by all background jobs.
    Rate(u64),
    /// A cap of 0: background jobs wait in transient error ("blocked by policy").
    Blocked,
}

impl Cap {
    fn from_rate(rate: Option<u64>) -> Cap {
        match rate {
            None => Cap::Unlimited,
            Some(0) => Cap::Blocked,
            Some(r) => Cap::Rate(r),
        }
    }
}

/// The global cap for background jobs (BITS group policy "limit the maximum network bandwidth
/// for BITS background transfers"): one cap inside a daily time window, another outside it.
/// Times of day are UTC seconds since midnight; a window may wrap past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackgroundPolicy {
    /// `(start, end)` of the window, seconds since midnight UTC; `None`: no window, the
    /// `outside` cap applies all day.
    pub window: Option<(u32, u32)>,
    /// The cap inside the window (`None`: unlimited, `Some(0)`: blocked).
    pub inside: Option<u64>,
    /// The cap outside the window.
    pub outside: Option<u64>,
}

impl BackgroundPolicy {
    /// Whether `t` (seconds since midnight UTC) lies in the window.
    pub fn in_window(&self, t: u32) -> bool {
        let t = t % DAY;
        match self.window {
            None => false,
            Some((s, e)) if s <= e => (s..e).contains(&t),
            Some((s, e)) => t >= s || t < e,
        }
    }

    /// The cap at `t` (seconds since midnight UTC).
    pub fn cap_at(&self, t: u32) -> Cap {
        if self.in_window(t) {
            Cap::from_rate(self.inside)
        } else {
            Cap::from_rate(self.outside)
        }
    }

    /// The cap at a Unix time.
    pub fn cap_at_unix(&self, unix_secs: u64) -> Cap {
        self.cap_at((unix_secs % u64::from(DAY)) as u32)
    }
}

/// Parses `HH:MM[:SS]-HH:MM[:SS]` (UTC) into a window; start and end must differ.
pub fn parse_window(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('-')?;
    let (a, b) = (parse_time_of_day(a)?, parse_time_of_day(b)?);
    (a != b).then_some((a, b))
}

fn parse_time_of_day(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let num = |p: &str, max: u32| -> Option<u32> {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
            .filter(|&n| n <= max)
    };
    let h = num(parts[0], 23)?;
    let m = num(parts[1], 59)?;
    let sec = match parts.get(2) {
        Some(p) => num(p, 59)?,
        None => 0,
    };
    Some(h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn windows_parse_strictly() {
        assert_eq!(
            parse_window("08:00-17:30"),
            Some((8 * 3600, 17 * 3600 + 1800))
        );
        assert_eq!(
            parse_window("22:00:05-06:00"),
            Some((22 * 3600 + 5, 6 * 3600))
        );
        for bad in [
            "",
            "8:00-9:00",
            "08:00",
            "24:00-01:00",
            "08:60-09:00",
            "08:00-08:00",
            "a-b",
        ] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
    }

    #[test]
    fn caps_follow_the_window_including_wrap() {
        let p = BackgroundPolicy {
            window: Some((22 * 3600, 6 * 3600)),
            inside: Some(0),
            outside: Some(1000),
        };
        assert_eq!(p.cap_at(23 * 3600), Cap::Blocked);
        assert_eq!(p.cap_at(3600), Cap::Blocked);
        assert_eq!(p.cap_at(6 * 3600), Cap::Rate(1000));
        assert_eq!(p.cap_at(12 * 3600), Cap::Rate(1000));
        let day = BackgroundPolicy {
            window: Some((9 * 3600, 17 * 3600)),
            inside: Some(500),
            outside: None,
        };
        assert_eq!(day.cap_at(9 * 3600), Cap::Rate(500));
        assert_eq!(day.cap_at(17 * 3600), Cap::Unlimited);
        assert_eq!(day.cap_at_unix(86_400 * 3 + 10 * 3600), Cap::Rate(500));
        assert_eq!(BackgroundPolicy::default().cap_at(0), Cap::Unlimited);
    }
}
