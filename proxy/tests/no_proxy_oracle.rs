//! Property test: `NoProxy::matches` against a simple oracle, on generated host / list pairs
//! (a seeded xorshift generator: reproducible, no dependency). The oracle is written from the
//! rules in `bypass.rs`'s module doc, as directly as possible: split at commas, trim, compare
//! strings; it shares no code with the matcher.
use ferry_proxy::NoProxy;
use std::net::Ipv4Addr;

/// xorshift64*: deterministic, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const LABELS: &[&str] = &[
    "a", "ex", "ample", "example", "com", "EXAMPLE", "Com", "corp", "x-1",
];
const IPS: &[&str] = &[
    "10.0.0.1",
    "10.1.2.3",
    "11.0.0.1",
    "192.168.1.7",
    "127.0.0.1",
];

fn name(r: &mut Rng) -> String {
    let n = 1 + r.below(3);
    (0..n).map(|_| r.pick(LABELS)).collect::<Vec<_>>().join(".")
}

fn host(r: &mut Rng) -> String {
    if r.chance(25) {
        return r.pick(IPS).to_owned();
    }
    let mut h = name(r);
    if r.chance(15) {
        h.push('.');
    }
    h
}

fn entry(r: &mut Rng) -> String {
    match r.below(10) {
        0 => "*".to_owned(),
        1 => r.pick(IPS).to_owned(),
        2 => format!(
            "{}/{}",
            r.pick(IPS),
            r.pick(&["8", "16", "24", "32", "0", "33", "x"])
        ),
        3 => format!("{}:8080", name(r)),
        _ => {
            let mut e = name(r);
            if r.chance(30) {
                e.insert(0, '.');
            }
            if r.chance(20) {
                e.push('.');
            }
            e
        }
    }
}

fn list(r: &mut Rng) -> String {
    let n = r.below(4);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(r.pick(&[",", ", ", " ,", ",,", "\t,\t"]));
        }
        s.push_str(&entry(r));
    }
    if r.chance(10) {
        s = format!(" {s} ");
    }
    s
}

/// The rules, naively.
fn oracle(list: &str, host: &str) -> bool {
    let host_ip: Option<Ipv4Addr> = host.parse().ok();
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() {
        return false;
    }
    for e in list.split(',') {
        let e = e
            .trim_matches(|c| c == ' ' || c == '\t')
            .to_ascii_lowercase();
        if e == "*" {
            return true;
        }
        if e.is_empty() || e.contains(':') {
            continue;
        }
        let (addr, bits) = match e.split_once('/') {
            Some((a, b)) => match b.parse::<u32>() {
                Ok(b) if b <= 32 => (a, b),
                _ => continue,
            },
            None => (e.as_str(), 32),
        };
        if let Ok(net) = addr.parse::<Ipv4Addr>() {
            if let Some(ip) = host_ip {
                let keep = |a: Ipv4Addr| u64::from(u32::from(a)) >> (32 - bits);
                if keep(ip) == keep(net) {
                    return true;
                }
            }
            continue;
        }
        if host_ip.is_some() || e.contains('/') {
            continue;
        }
        let e = e.strip_suffix('.').unwrap_or(&e);
        let e = e.strip_prefix('.').unwrap_or(e);
        if !e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))) {
            return true;
        }
    }
    false
}

#[test]
fn matcher_agrees_with_oracle() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut matched = 0;
    for i in 0..20_000 {
        let (l, h) = (list(&mut r), host(&mut r));
        let parsed = NoProxy::parse(&l);
        let got = parsed.matches(&h);
        assert_eq!(
            got.is_some(),
            oracle(&l, &h),
            "case {i}: NO_PROXY={l:?} host={h:?}"
        );
        if let Some(rule) = got {
            matched += 1;
            assert!(
                l.contains(rule),
                "case {i}: rule {rule:?} is not from {l:?}"
            );
        }
    }
    // The generator must exercise both outcomes.
    assert!((2_000..18_000).contains(&matched), "{matched} matches");
}

#[test]
fn never_panics_on_random_bytes() {
    let mut r = Rng(42);
    const ALPHABET: &[u8] = b"ab.:/*,[] \t%0123456789\\\r\n\x00\xc3\xa9";
    for _ in 0..20_000 {
        let mut gen = |max: usize| {
            let n = r.below(max);
            let bytes: Vec<u8> = (0..n).map(|_| ALPHABET[r.below(ALPHABET.len())]).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (l, h) = (gen(40), gen(20));
        let _ = NoProxy::parse(&l).matches(&h);
        let _ = ferry_proxy::WinHttpBypass::parse(&l).matches(&h);
        let _ = ferry_proxy::ProxyConfig::explicit(&l);
        let _ = ferry_proxy::ProxyConfig::per_scheme_list(&l);
    }
}
