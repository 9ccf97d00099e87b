//! Deterministic file contents for large-file and range tests.
//!
//! The byte at offset `i` of the file named `name` depends only on `(name, i)`, so a test can
//! compute the expected bytes of any range without generating the whole file:
//! `large_file_bytes("big.bin", 1_000_000, 4096)`. Contents are a 1 MiB xorshift block seeded
//! from the name, XORed with a per-block word, so no two 1 MiB blocks of a file are equal (a
//! resume that splices at the wrong block shows) and a 64 MiB file is written in well under a
//! second even in a debug build.

use std::io::Write;
use std::path::Path;

/// Size of the repeated base block.
pub const BLOCK: usize = 1 << 20;

/// FNV-1a, 64 bit: a cheap fingerprint for comparing large bodies in failure messages.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_update(0xcbf2_9ce4_8422_2325, bytes)
}

/// Continues an FNV-1a 64 hash (start from [`fnv1a64`]`(b"")`).
pub fn fnv1a64_update(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The pattern's seed for a file name.
pub fn seed_for(name: &str) -> u64 {
    fnv1a64(name.as_bytes())
}

/// The base block for `seed`, as little-endian words.
fn base_block(seed: u64) -> Vec<u64> {
    let mut x = splitmix64(seed) | 1;
    (0..BLOCK / 8)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn block_tweak(seed: u64, block: u64) -> u64 {
    splitmix64(seed ^ splitmix64(block))
}

/// Calls `sink` with consecutive pieces (at most [`BLOCK`] bytes each) of the pattern for
/// `name`, covering `[offset, offset + len)`.
pub fn for_each_piece(name: &str, offset: u64, len: u64, mut sink: impl FnMut(&[u8])) {
    let seed = seed_for(name);
    let base = base_block(seed);
    let mut buf = vec![0u8; BLOCK];
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let block = pos / BLOCK as u64;
        let tweak = block_tweak(seed, block);
        for (dst, w) in buf.chunks_exact_mut(8).zip(&base) {
            dst.copy_from_slice(&(w ^ tweak).to_le_bytes());
        }
        let from = (pos % BLOCK as u64) as usize;
        let to = (end - block * BLOCK as u64).min(BLOCK as u64) as usize;
        sink(&buf[from..to]);
        pos = block * BLOCK as u64 + to as u64;
    }
}

/// The bytes `[offset, offset + len)` of the large file named `name` (see
/// [`super::NginxOptions::large_file`]).
pub fn large_file_bytes(name: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for_each_piece(name, offset, len as u64, |p| out.extend_from_slice(p));
    out
}

/// FNV-1a 64 of the whole large file named `name` of `size` bytes, without holding it in memory.
pub fn large_file_fnv1a64(name: &str, size: u64) -> u64 {
    let mut h = fnv1a64(b"");
    for_each_piece(name, 0, size, |p| h = fnv1a64_update(h, p));
    h
}

/// Writes the large file named `name` of `size` bytes to `path`.
pub fn write_large_file(path: &Path, name: &str, size: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let mut result = Ok(());
    for_each_piece(name, 0, size, |p| {
        if result.is_ok() {
            result = f.write_all(p);
        }
    });
    result?;
    f.flush()
}
