//! ferry-pool: a pool of idle connections keyed by an exact key.
//!
//! Owns:
//! - the idle connections, each filed under the key it was created for, and their expiry
//!   (`Config::idle_timeout`, measured on the clock the caller passes in);
//! - the limits: idle per key, idle in total (least recently released evicted first), and open
//!   connections per key (leased + idle), with a bounded wait when a key is full;
//! - the rule that a connection is handed out only to a request whose key is *equal* to the key
//!   of the lease that released it. Keys carry the authenticated identity (DESIGN.md, I1), so
//!   this is a security invariant, not a cache policy. [`Pool::acquire`] and
//!   [`Lease::release`] are the only way in and out, and the key is fixed when the lease is born.
//!
//! Does not own:
//! - sockets, TLS, HTTP, or what the key contains: it is generic over the key `K` and the
//!   connection `C`, so it is tested without a network;
//! - deciding whether a connection may be reused (`Connection: close`, unread body, framing
//!   error): the caller decides, then calls [`Lease::release`] or [`Lease::discard`];
//! - connecting: an acquire that finds nothing idle returns an empty lease that the caller fills
//!   with [`Lease::set`];
//! - the clock: `now` is injected; only the wait for a free slot uses the real clock, for its
//!   `deadline`.
//!
//! ```
//! use ferry_pool::{Config, Pool};
//! use std::time::Instant;
//!
//! let pool: Pool<&str, u32> = Pool::new(Config::default());
//! let now = Instant::now();
//!
//! let mut lease = pool.acquire(&"alice@example.com:443", now, None, |_| true).unwrap();
//! assert!(lease.conn().is_none()); // nothing idle: connect, then fill the lease
//! lease.set(7);
//! lease.release(now);
//!
//! // Another identity never sees alice's connection.
//! let other = pool.acquire(&"bob@example.com:443", now, None, |_| true).unwrap();
//! assert!(!other.is_reused());
//!
//! let again = pool.acquire(&"alice@example.com:443", now, None, |_| true).unwrap();
//! assert!(again.is_reused());
//! assert_eq!(again.conn_ref(), Some(&7));
//! ```
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Default [`Config::max_idle_per_key`]: idle connections kept per key.
///
/// ureq 2 keeps 1 per host; we keep a few more because a BITS-style segmented download opens
/// several connections to one origin under one identity.
pub const DEFAULT_MAX_IDLE_PER_KEY: usize = 8;

/// Default [`Config::max_idle_total`]: idle connections kept over all keys.
pub const DEFAULT_MAX_IDLE_TOTAL: usize = 64;

/// Default [`Config::max_per_key`]: open connections (leased + idle) per key.
///
/// WinHTTP's `WINHTTP_OPTION_MAX_CONNS_PER_SERVER` defaults to unlimited; we keep a finite limit
/// so that a runaway caller cannot open sockets without bound (DESIGN.md, I7).
pub const DEFAULT_MAX_PER_KEY: usize = 16;

/// Default [`Config::idle_timeout`]: how long a connection may sit idle and still be reused.
///
/// Shorter than curl's `CURLOPT_MAXAGE_CONN` (118 s) because many servers close idle keep-alive
/// connections after about a minute or less, and a stale connection costs a failed request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits of a [`Pool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Idle connections kept per key; releasing one more evicts that key's oldest idle one.
    pub max_idle_per_key: usize,
    /// Idle connections kept in total; releasing one more evicts the least recently released.
    pub max_idle_total: usize,
    /// Open connections per key (leased + idle); `acquire` waits while a key is at the limit.
    pub max_per_key: usize,
    /// A connection idle for this long or longer is closed instead of reused.
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_idle_per_key: DEFAULT_MAX_IDLE_PER_KEY,
            max_idle_total: DEFAULT_MAX_IDLE_TOTAL,
            max_per_key: DEFAULT_MAX_PER_KEY,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why [`Pool::acquire`] gave no lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// The key already had `max_per_key` connections open until the deadline passed.
    Exhausted {
        /// The limit that was reached ([`Config::max_per_key`]).
        max_per_key: usize,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Exhausted { max_per_key } => write!(
                f,
                "connection pool exhausted: {max_per_key} connections already open for this key"
            ),
        }
    }
}

impl std::error::Error for PoolError {}

/// A shared pool of idle connections; cloning it is cheap and shares the same connections.
pub struct Pool<K, C> {
    shared: Arc<Shared<K, C>>,
}

struct Shared<K, C> {
    config: Config,
    inner: Mutex<Inner<K, C>>,
    /// Notified whenever a slot is freed or a connection goes idle, while someone waits.
    freed: Condvar,
}

struct Inner<K, C> {
    /// A key is present only while it has a leased or an idle connection, so the map does not
    /// grow with keys that were used once.
    keys: HashMap<K, PerKey<C>>,
    /// Sum of `idle.len()` over all keys.
    idle_total: usize,
    /// Release order, for the global least-recently-released eviction.
    next_seq: u64,
    /// Threads blocked in `acquire`; nobody is notified when this is zero.
    waiters: usize,
}

struct PerKey<C> {
    /// Oldest release at the front, most recent at the back.
    idle: VecDeque<Idle<C>>,
    /// Leases alive for this key, filled or empty.
    leased: usize,
}

struct Idle<C> {
    conn: C,
    since: Instant,
    seq: u64,
}

impl<C> PerKey<C> {
    fn open(&self) -> usize {
        self.leased + self.idle.len()
    }

    fn is_unused(&self) -> bool {
        self.leased == 0 && self.idle.is_empty()
    }

    /// Moves every idle connection that has expired at `now` into `out`; returns how many.
    fn remove_expired(&mut self, now: Instant, timeout: Duration, out: &mut Vec<C>) -> usize {
        let before = out.len();
        let mut i = 0;
        while i < self.idle.len() {
            if now.saturating_duration_since(self.idle[i].since) >= timeout {
                if let Some(idle) = self.idle.remove(i) {
                    out.push(idle.conn);
                }
            } else {
                i += 1;
            }
        }
        out.len() - before
    }
}

impl<K, C> Shared<K, C> {
    /// Locks the state, recovering it if a thread panicked while holding the lock: every update
    /// below leaves the counters consistent before it can call code that might panic.
    fn lock(&self) -> MutexGuard<'_, Inner<K, C>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify_if(&self, notify: bool) {
        if notify {
            self.freed.notify_all();
        }
    }
}

impl<K, C> Clone for Pool<K, C> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, C> fmt::Debug for Pool<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are not printed: they carry identities.
        let idle = self.shared.lock().idle_total;
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .field("idle", &idle)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, C> Pool<K, C> {
    /// Creates an empty pool with these limits.
    pub fn new(config: Config) -> Self {
        Pool {
            shared: Arc::new(Shared {
                config,
                inner: Mutex::new(Inner {
                    keys: HashMap::new(),
                    idle_total: 0,
                    next_seq: 0,
                    waiters: 0,
                }),
                freed: Condvar::new(),
            }),
        }
    }

    /// The limits this pool was created with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Leases a connection for `key`: the most recently released idle one that is unexpired at
    /// `now` and passes `is_alive`, else an empty lease to fill with [`Lease::set`].
    ///
    /// Only a connection released under a key equal to `key` is ever returned. Expired
    /// connections and those for which `is_alive` returns false are closed (dropped) and their
    /// slots freed. `is_alive` is called without the pool's lock held, so it may do a
    /// nonblocking syscall; if it panics, the connection is discarded.
    ///
    /// When `key` already has `max_per_key` connections open and none idle is usable, this
    /// waits until one of them is released or closed, or until `deadline` (real clock), and
    /// then fails with [`PoolError::Exhausted`]. `deadline: None` waits indefinitely. With
    /// `max_per_key == 0` it fails at once.
    pub fn acquire(
        &self,
        key: &K,
        now: Instant,
        deadline: Option<Instant>,
        mut is_alive: impl FnMut(&mut C) -> bool,
    ) -> Result<Lease<K, C>, PoolError> {
        let shared = &*self.shared;
        let max_per_key = shared.config.max_per_key;
        if max_per_key == 0 {
            return Err(PoolError::Exhausted { max_per_key });
        }
        let timeout = shared.config.idle_timeout;
        let mut inner = shared.lock();
        loop {
            let mut expired = Vec::new();
            let mut candidate = None;
            let mut reserved = false;
            let Inner {
                keys,
                idle_total,
                waiters,
                ..
            } = &mut *inner;
            match keys.get_mut(key) {
                Some(per_key) => {
                    let removed = per_key.remove_expired(now, timeout, &mut expired);
                    *idle_total -= removed;
                    // Most recently used first: it is the least likely to have been closed by
                    // the server, and the older ones age out.
                    if let Some(idle) = per_key.idle.pop_back() {
                        *idle_total -= 1;
                        per_key.leased += 1;
                        candidate = Some(idle.conn);
                    } else if per_key.open() < max_per_key {
                        per_key.leased += 1;
                        reserved = true;
                    }
                }
                None => {
                    keys.insert(
                        key.clone(),
                        PerKey {
                            idle: VecDeque::new(),
                            leased: 1,
                        },
                    );
                    reserved = true;
                }
            }
            // Expired connections free slots that another waiter for this key may take.
            let notify = !expired.is_empty() && *waiters > 0;

            if candidate.is_some() || reserved {
                drop(inner);
                shared.notify_if(notify);
                drop(expired);
                let mut lease = Lease {
                    pool: self.clone(),
                    key: key.clone(),
                    reused: candidate.is_some(),
                    conn: candidate,
                    done: false,
                };
                // A match rather than `is_none_or`, which needs Rust 1.82 (workspace MSRV 1.80).
                let usable = match lease.conn.as_mut() {
                    None => true,
                    Some(conn) => is_alive(conn),
                };
                if usable {
                    return Ok(lease);
                }
                // Dead: `discard` closes it and frees its slot; try the next one.
                lease.discard();
                inner = shared.lock();
                continue;
            }
            if !expired.is_empty() {
                // Close them outside the lock, then look again.
                drop(inner);
                shared.notify_if(notify);
                drop(expired);
                inner = shared.lock();
                continue;
            }

            // The key is full: wait for a release or a close.
            inner.waiters += 1;
            inner = match deadline {
                None => shared
                    .freed
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        inner.waiters -= 1;
                        return Err(PoolError::Exhausted { max_per_key });
                    }
                    shared
                        .freed
                        .wait_timeout(inner, remaining)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            inner.waiters -= 1;
            // Loop: a woken waiter looks again, and a timed-out one fails on the next pass
            // unless a slot freed up in the meantime.
        }
    }

    /// Number of idle connections over all keys.
    pub fn idle_count(&self) -> usize {
        self.shared.lock().idle_total
    }

    /// Number of idle connections for `key`.
    pub fn idle_count_for(&self, key: &K) -> usize {
        self.shared
            .lock()
            .keys
            .get(key)
            .map_or(0, |per_key| per_key.idle.len())
    }

    /// Number of open connections for `key`: leased (including empty leases) plus idle.
    pub fn open_count_for(&self, key: &K) -> usize {
        self.shared.lock().keys.get(key).map_or(0, PerKey::open)
    }

    /// Closes (drops) every idle connection; leased ones are untouched.
    pub fn clear(&self) {
        let mut closed = Vec::new();
        let mut inner = self.shared.lock();
        for per_key in inner.keys.values_mut() {
            closed.extend(per_key.idle.drain(..).map(|idle| idle.conn));
        }
        inner.keys.retain(|_, per_key| !per_key.is_unused());
        inner.idle_total = 0;
        let notify = !closed.is_empty() && inner.waiters > 0;
        drop(inner);
        self.shared.notify_if(notify);
        drop(closed);
    }

    /// Closes every idle connection that has expired at `now`, over all keys; returns how many.
    ///
    /// `acquire` already skips expired connections; this is for a periodic sweep that releases
    /// sockets of keys that are no longer used.
    pub fn remove_expired(&self, now: Instant) -> usize {
        let timeout = self.shared.config.idle_timeout;
        let mut closed = Vec::new();
        let mut inner = self.shared.lock();
        let mut removed = 0;
        for per_key in inner.keys.values_mut() {
            removed += per_key.remove_expired(now, timeout, &mut closed);
        }
        if removed > 0 {
            inner.keys.retain(|_, per_key| !per_key.is_unused());
            inner.idle_total -= removed;
        }
        let notify = removed > 0 && inner.waiters > 0;
        drop(inner);
        self.shared.notify_if(notify);
        drop(closed);
        removed
    }
}

/// One open-connection slot for one key: holds the connection while a request uses it.
///
/// Dropping a lease without [`release`](Lease::release) closes its connection and frees the slot,
/// as [`discard`](Lease::discard) does.
pub struct Lease<K: Eq + Hash, C> {
    pool: Pool<K, C>,
    key: K,
    conn: Option<C>,
    reused: bool,
    /// Set once the slot has been given back, so that `Drop` does not give it back twice.
    done: bool,
}

impl<K: Eq + Hash, C> fmt::Debug for Lease<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is not printed: it carries an identity.
        f.debug_struct("Lease")
            .field("reused", &self.reused)
            .field("has_conn", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, C> Lease<K, C> {
    /// The key this lease was acquired for; its connection can only ever go back under it.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// True if the connection came from the idle list rather than from [`set`](Lease::set).
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// The connection, if the lease holds one.
    pub fn conn(&mut self) -> Option<&mut C> {
        self.conn.as_mut()
    }

    /// The connection, if the lease holds one, shared.
    pub fn conn_ref(&self) -> Option<&C> {
        self.conn.as_ref()
    }

    /// Puts a freshly made connection into the lease (replacing and closing any previous one).
    pub fn set(&mut self, conn: C) {
        self.reused = false;
        self.conn = Some(conn);
    }

    /// Returns the connection to the pool's idle list under this lease's key, idle since `now`.
    ///
    /// Over `max_idle_per_key`, the key's oldest idle connection is closed; over
    /// `max_idle_total`, the least recently released idle connection of any key is closed. An
    /// empty lease just frees its slot.
    pub fn release(mut self, now: Instant) {
        self.finish(Some(now));
    }

    /// Closes the connection (drops it) and frees the slot.
    pub fn discard(mut self) {
        self.finish(None);
    }
}

impl<K: Eq + Hash, C> Lease<K, C> {
    /// Gives the slot back: with `Some(now)` the connection goes idle, otherwise it is closed.
    /// Never panics (except if `C::drop` does, after the pool's state is updated).
    fn finish(&mut self, release_at: Option<Instant>) {
        if self.done {
            return;
        }
        self.done = true;
        let conn = self.conn.take();
        let shared = &*self.pool.shared;
        let config = &shared.config;
        let keep_idle = config.max_idle_per_key > 0 && config.max_idle_total > 0;

        let mut closed = None;
        let mut evicted_here = None;
        let mut evicted_lru = None;
        let mut inner = shared.lock();
        let Inner {
            keys,
            idle_total,
            next_seq,
            waiters,
        } = &mut *inner;
        match keys.get_mut(&self.key) {
            // Unreachable while the counts are right (a lease keeps its key present); close.
            None => closed = conn,
            Some(per_key) => {
                per_key.leased = per_key.leased.saturating_sub(1);
                match (conn, release_at) {
                    (Some(conn), Some(now)) if keep_idle => {
                        per_key.idle.push_back(Idle {
                            conn,
                            since: now,
                            seq: *next_seq,
                        });
                        *next_seq += 1;
                        *idle_total += 1;
                        if per_key.idle.len() > config.max_idle_per_key {
                            evicted_here = per_key.idle.pop_front().map(|idle| idle.conn);
                            *idle_total -= 1;
                        }
                    }
                    (conn, _) => closed = conn,
                }
                if per_key.is_unused() {
                    keys.remove(&self.key);
                }
            }
        }
        if *idle_total > config.max_idle_total {
            evicted_lru = evict_least_recent(keys);
            if evicted_lru.is_some() {
                *idle_total -= 1;
            }
        }
        let notify = *waiters > 0;
        drop(inner);
        shared.notify_if(notify);
        drop(closed);
        drop(evicted_here);
        drop(evicted_lru);
    }
}

/// Removes the idle connection released longest ago, over all keys (a scan over the keys, which
/// is cheap because `max_idle_total` is small).
fn evict_least_recent<K: Eq + Hash, C>(keys: &mut HashMap<K, PerKey<C>>) -> Option<C> {
    let oldest = keys
        .values_mut()
        .filter_map(|per_key| Some((per_key.idle.front()?.seq, per_key)))
        .min_by_key(|(seq, _)| *seq)?
        .1;
    let conn = oldest.idle.pop_front().map(|idle| idle.conn);
    if oldest.is_unused() {
        keys.retain(|_, per_key| !per_key.is_unused());
    }
    conn
}

impl<K: Eq + Hash, C> Drop for Lease<K, C> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    /// A key with two fields, as a real `PoolKey` has route and identity.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct Key {
        host: &'static str,
        identity: u32,
    }

    const ALICE: Key = Key {
        host: "example.com",
        identity: 1,
    };
    const BOB: Key = Key {
        host: "example.com",
        identity: 2,
    };
    const CAROL: Key = Key {
        host: "example.com",
        identity: 3,
    };

    type Drops = Arc<Mutex<Vec<u32>>>;

    /// A fake connection that records its id into `drops` when closed.
    struct Conn {
        id: u32,
        drops: Drops,
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            self.drops
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.id);
        }
    }

    fn dropped(drops: &Drops) -> Vec<u32> {
        drops.lock().unwrap().clone()
    }

    fn pool(config: Config) -> (Pool<Key, Conn>, Drops) {
        (Pool::new(config), Arc::default())
    }

    fn alive(_: &mut Conn) -> bool {
        true
    }

    /// Acquires for `key`, asserts the lease is empty, fills it with `id` and releases it.
    fn put(pool: &Pool<Key, Conn>, drops: &Drops, key: &Key, id: u32, now: Instant) {
        let mut lease = pool.acquire(key, now, None, alive).unwrap();
        assert!(
            lease.conn_ref().is_none(),
            "expected an empty lease for {id}"
        );
        lease.set(Conn {
            id,
            drops: Arc::clone(drops),
        });
        lease.release(now);
    }

    /// Acquires for `key` and returns the reused connection's id, or None for an empty lease.
    fn take(pool: &Pool<Key, Conn>, key: &Key, now: Instant) -> Option<u32> {
        let lease = pool.acquire(key, now, None, alive).unwrap();
        assert_eq!(lease.is_reused(), lease.conn_ref().is_some());
        lease.conn_ref().map(|c| c.id)
    }

    /// Puts connections `ids` idle under `key` at once, all open together.
    fn put_many(pool: &Pool<Key, Conn>, drops: &Drops, key: &Key, ids: &[u32], now: Instant) {
        let leases: Vec<_> = ids
            .iter()
            .map(|&id| {
                let mut lease = pool.acquire(key, now, None, alive).unwrap();
                assert!(!lease.is_reused());
                lease.set(Conn {
                    id,
                    drops: Arc::clone(drops),
                });
                lease
            })
            .collect();
        for lease in leases {
            lease.release(now);
        }
    }

    #[test]
    fn checkout_only_by_equal_key() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        put(&pool, &drops, &ALICE, 1, now);

        // Same host, other identity: never alice's connection.
        assert_eq!(take(&pool, &BOB, now), None);
        let other_host = Key {
            host: "example.org",
            ..ALICE
        };
        assert_eq!(take(&pool, &other_host, now), None);
        assert_eq!(pool.idle_count_for(&ALICE), 1);

        let lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        assert!(lease.is_reused());
        assert_eq!(lease.key(), &ALICE);
        assert_eq!(lease.conn_ref().map(|c| c.id), Some(1));
        assert!(dropped(&drops).is_empty());
    }

    #[test]
    fn released_connection_goes_back_under_the_lease_key() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        put(&pool, &drops, &ALICE, 1, now);
        assert_eq!(pool.idle_count_for(&ALICE), 1);
        assert_eq!(pool.idle_count_for(&BOB), 0);
        assert_eq!(pool.idle_count(), 1);
    }

    #[test]
    fn idle_expiry() {
        let config = Config {
            idle_timeout: Duration::from_secs(10),
            ..Config::default()
        };
        let (pool, drops) = pool(config);
        let t0 = Instant::now();
        put_many(&pool, &drops, &ALICE, &[1, 2], t0);
        put(&pool, &drops, &BOB, 3, t0);

        // Just under the timeout: reused, and idle again from 9.999 s.
        let almost = t0 + Duration::from_millis(9_999);
        let lease = pool.acquire(&ALICE, almost, None, alive).unwrap();
        assert_eq!(lease.conn_ref().map(|c| c.id), Some(2));
        lease.release(almost);
        assert!(dropped(&drops).is_empty());

        // At exactly the timeout: 1 (idle 10 s) is closed, 2 (idle 1 ms) is reused.
        let later = t0 + Duration::from_secs(10);
        let lease = pool.acquire(&ALICE, later, None, alive).unwrap();
        assert_eq!(lease.conn_ref().map(|c| c.id), Some(2));
        assert_eq!(dropped(&drops), vec![1]);
        assert_eq!(pool.open_count_for(&ALICE), 1);
        lease.release(later);

        // Expired ones of other keys wait for their own acquire or for `remove_expired`.
        assert_eq!(pool.idle_count_for(&BOB), 1);
        assert_eq!(pool.remove_expired(later), 1);
        assert_eq!(dropped(&drops), vec![1, 3]);
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(pool.open_count_for(&BOB), 0);
    }

    #[test]
    fn expired_connection_gives_empty_lease() {
        let (pool, drops) = pool(Config::default());
        let t0 = Instant::now();
        put(&pool, &drops, &ALICE, 1, t0);
        assert_eq!(take(&pool, &ALICE, t0 + DEFAULT_IDLE_TIMEOUT), None);
        assert_eq!(dropped(&drops), vec![1]);
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn expired_connections_free_slots_without_waiting() {
        let (pool, drops) = pool(Config {
            max_per_key: 1,
            ..Config::default()
        });
        let t0 = Instant::now();
        put(&pool, &drops, &ALICE, 1, t0);
        let start = Instant::now();
        let deadline = Some(start + Duration::from_secs(5));
        let lease = pool
            .acquire(&ALICE, t0 + DEFAULT_IDLE_TIMEOUT, deadline, alive)
            .unwrap();
        assert!(lease.conn_ref().is_none());
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(dropped(&drops), vec![1]);
    }

    #[test]
    fn clock_going_backwards_is_not_expiry() {
        let (pool, drops) = pool(Config::default());
        let t0 = Instant::now() + Duration::from_secs(5);
        put(&pool, &drops, &ALICE, 1, t0);
        assert_eq!(take(&pool, &ALICE, t0 - Duration::from_secs(5)), Some(1));
    }

    #[test]
    fn dead_connection_is_dropped_and_next_is_tried() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        put_many(&pool, &drops, &ALICE, &[1, 2, 3], now);
        assert_eq!(pool.open_count_for(&ALICE), 3);

        let mut checked = Vec::new();
        let lease = pool
            .acquire(&ALICE, now, None, |c| {
                checked.push(c.id);
                c.id != 3
            })
            .unwrap();
        assert_eq!(checked, vec![3, 2]);
        assert!(lease.is_reused());
        assert_eq!(lease.conn_ref().map(|c| c.id), Some(2));
        assert_eq!(dropped(&drops), vec![3]);
        assert_eq!(pool.open_count_for(&ALICE), 2);
        assert_eq!(pool.idle_count(), 1);
    }

    #[test]
    fn all_dead_gives_empty_lease() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        put_many(&pool, &drops, &ALICE, &[1, 2], now);
        let lease = pool.acquire(&ALICE, now, None, |_| false).unwrap();
        assert!(!lease.is_reused());
        assert!(lease.conn_ref().is_none());
        assert_eq!(dropped(&drops), vec![2, 1]);
        assert_eq!(pool.open_count_for(&ALICE), 1);
    }

    #[test]
    fn panicking_liveness_check_frees_the_slot() {
        let (pool, drops) = pool(Config {
            max_per_key: 1,
            ..Config::default()
        });
        let now = Instant::now();
        put(&pool, &drops, &ALICE, 1, now);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.acquire(&ALICE, now, None, |_| panic!("liveness check failed"))
        }));
        assert!(result.is_err());
        assert_eq!(dropped(&drops), vec![1]);
        assert_eq!(pool.open_count_for(&ALICE), 0);
        let deadline = Some(Instant::now());
        assert!(pool.acquire(&ALICE, now, deadline, alive).is_ok());
    }

    #[test]
    fn most_recently_released_first() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        put_many(&pool, &drops, &ALICE, &[1, 2, 3], now);
        let a = pool.acquire(&ALICE, now, None, alive).unwrap();
        let b = pool.acquire(&ALICE, now, None, alive).unwrap();
        assert_eq!(a.conn_ref().map(|c| c.id), Some(3));
        assert_eq!(b.conn_ref().map(|c| c.id), Some(2));
        b.release(now);
        a.release(now);
        // Released order now 1, 2, 3 → most recent is 3 again.
        assert_eq!(take(&pool, &ALICE, now), Some(3));
    }

    #[test]
    fn max_idle_per_key_evicts_that_keys_oldest() {
        let (pool, drops) = pool(Config {
            max_idle_per_key: 2,
            ..Config::default()
        });
        let now = Instant::now();
        put(&pool, &drops, &BOB, 10, now);
        put_many(&pool, &drops, &ALICE, &[1, 2, 3], now);
        assert_eq!(dropped(&drops), vec![1]);
        assert_eq!(pool.idle_count_for(&ALICE), 2);
        assert_eq!(pool.open_count_for(&ALICE), 2);
        assert_eq!(pool.idle_count_for(&BOB), 1);
        assert_eq!(pool.idle_count(), 3);
    }

    #[test]
    fn max_idle_total_evicts_least_recently_released() {
        let (pool, drops) = pool(Config {
            max_idle_total: 2,
            ..Config::default()
        });
        let now = Instant::now();
        put(&pool, &drops, &ALICE, 1, now);
        put(&pool, &drops, &BOB, 2, now);
        // Reuse alice's: it becomes the most recently released, so bob's is now the oldest.
        let lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        assert_eq!(lease.conn_ref().map(|c| c.id), Some(1));
        lease.release(now);
        put(&pool, &drops, &CAROL, 3, now);
        assert_eq!(dropped(&drops), vec![2]);
        assert_eq!(pool.idle_count(), 2);
        assert_eq!(pool.open_count_for(&BOB), 0);
        assert_eq!(pool.idle_count_for(&ALICE), 1);
        assert_eq!(pool.idle_count_for(&CAROL), 1);
        // One more: alice's (released before carol's) goes.
        put(&pool, &drops, &BOB, 4, now);
        assert_eq!(dropped(&drops), vec![2, 1]);
        assert_eq!(pool.idle_count(), 2);
    }

    #[test]
    fn zero_idle_limits_close_on_release() {
        for config in [
            Config {
                max_idle_per_key: 0,
                ..Config::default()
            },
            Config {
                max_idle_total: 0,
                ..Config::default()
            },
        ] {
            let (pool, drops) = pool(config);
            let now = Instant::now();
            put(&pool, &drops, &ALICE, 1, now);
            assert_eq!(dropped(&drops), vec![1]);
            assert_eq!(pool.idle_count(), 0);
            assert_eq!(pool.open_count_for(&ALICE), 0);
        }
    }

    #[test]
    fn max_per_key_times_out_with_exhausted() {
        let (pool, _drops) = pool(Config {
            max_per_key: 2,
            ..Config::default()
        });
        let now = Instant::now();
        let _a = pool.acquire(&ALICE, now, None, alive).unwrap();
        let _b = pool.acquire(&ALICE, now, None, alive).unwrap();
        assert_eq!(pool.open_count_for(&ALICE), 2);

        let start = Instant::now();
        let deadline = start + Duration::from_millis(100);
        let err = pool
            .acquire(&ALICE, now, Some(deadline), alive)
            .unwrap_err();
        let elapsed = start.elapsed();
        assert_eq!(err, PoolError::Exhausted { max_per_key: 2 });
        assert!(elapsed >= Duration::from_millis(90), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

        // A past deadline fails at once; other keys are not limited by alice's.
        let start = Instant::now();
        assert!(pool.acquire(&ALICE, now, Some(start), alive).is_err());
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(pool.acquire(&BOB, now, Some(start), alive).is_ok());
        assert_eq!(pool.shared.lock().waiters, 0);
    }

    #[test]
    fn zero_max_per_key_fails_at_once() {
        let (pool, _drops) = pool(Config {
            max_per_key: 0,
            ..Config::default()
        });
        let err = pool
            .acquire(&ALICE, Instant::now(), None, alive)
            .unwrap_err();
        assert_eq!(err, PoolError::Exhausted { max_per_key: 0 });
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn waiter_wakes_when_another_thread_releases() {
        let (pool, drops) = pool(Config {
            max_per_key: 1,
            ..Config::default()
        });
        let now = Instant::now();
        let mut lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        lease.set(Conn {
            id: 1,
            drops: Arc::clone(&drops),
        });
        let holder = {
            let pool = pool.clone();
            thread::spawn(move || {
                // Wait until the main thread is blocked in acquire, then release.
                let until = Instant::now() + Duration::from_secs(5);
                while pool.shared.lock().waiters == 0 && Instant::now() < until {
                    thread::sleep(Duration::from_millis(1));
                }
                lease.release(now);
            })
        };
        let start = Instant::now();
        let lease = pool
            .acquire(&ALICE, now, Some(start + Duration::from_secs(10)), alive)
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(6));
        assert!(lease.is_reused());
        assert_eq!(lease.conn_ref().map(|c| c.id), Some(1));
        holder.join().unwrap();
    }

    #[test]
    fn waiter_wakes_when_another_thread_discards() {
        let (pool, _drops) = pool(Config {
            max_per_key: 1,
            ..Config::default()
        });
        let now = Instant::now();
        let lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        let holder = {
            let pool = pool.clone();
            thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(5);
                while pool.shared.lock().waiters == 0 && Instant::now() < until {
                    thread::sleep(Duration::from_millis(1));
                }
                drop(lease);
            })
        };
        let lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        assert!(!lease.is_reused());
        holder.join().unwrap();
    }

    #[test]
    fn dropping_a_lease_frees_its_slot_and_closes() {
        let (pool, drops) = pool(Config {
            max_per_key: 1,
            ..Config::default()
        });
        let now = Instant::now();
        let mut lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        lease.set(Conn {
            id: 1,
            drops: Arc::clone(&drops),
        });
        assert_eq!(pool.open_count_for(&ALICE), 1);
        drop(lease);
        assert_eq!(dropped(&drops), vec![1]);
        assert_eq!(pool.open_count_for(&ALICE), 0);
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.shared.lock().keys.is_empty());
        assert!(pool.acquire(&ALICE, now, Some(now), alive).is_ok());
    }

    #[test]
    fn discard_closes_and_empty_release_frees() {
        let (pool, drops) = pool(Config {
            max_per_key: 1,
            ..Config::default()
        });
        let now = Instant::now();
        put(&pool, &drops, &ALICE, 1, now);
        let lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        lease.discard();
        assert_eq!(dropped(&drops), vec![1]);
        assert_eq!(pool.open_count_for(&ALICE), 0);

        let lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        lease.release(now);
        assert_eq!(pool.open_count_for(&ALICE), 0);
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn set_replaces_and_marks_fresh() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        put(&pool, &drops, &ALICE, 1, now);
        let mut lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        assert!(lease.is_reused());
        lease.set(Conn {
            id: 2,
            drops: Arc::clone(&drops),
        });
        assert!(!lease.is_reused());
        assert_eq!(dropped(&drops), vec![1]);
        if let Some(conn) = lease.conn() {
            conn.id = 3;
        }
        lease.release(now);
        assert_eq!(take(&pool, &ALICE, now), Some(3));
    }

    #[test]
    fn clear_closes_idle_keeps_leased() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        put_many(&pool, &drops, &ALICE, &[1, 2], now);
        put(&pool, &drops, &BOB, 3, now);
        let mut leased = pool.acquire(&CAROL, now, None, alive).unwrap();
        leased.set(Conn {
            id: 4,
            drops: Arc::clone(&drops),
        });
        pool.clear();
        let mut closed = dropped(&drops);
        closed.sort_unstable();
        assert_eq!(closed, vec![1, 2, 3]);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(pool.open_count_for(&CAROL), 1);
        leased.release(now);
        assert_eq!(pool.idle_count_for(&CAROL), 1);
    }

    #[test]
    fn poisoned_lock_is_recovered() {
        let (pool, drops) = pool(Config::default());
        let now = Instant::now();
        let mut lease = pool.acquire(&ALICE, now, None, alive).unwrap();
        lease.set(Conn {
            id: 1,
            drops: Arc::clone(&drops),
        });
        let poisoner = pool.clone();
        let result = thread::spawn(move || {
            let _guard = poisoner.shared.inner.lock();
            panic!("poison the pool lock");
        })
        .join();
        assert!(result.is_err());
        assert!(pool.shared.inner.is_poisoned());
        drop(lease); // must not panic
        assert_eq!(dropped(&drops), vec![1]);
        assert_eq!(pool.open_count_for(&ALICE), 0);
        put(&pool, &drops, &ALICE, 2, now);
        assert_eq!(take(&pool, &ALICE, now), Some(2));
    }

    #[test]
    fn clones_share_state() {
        let (pool, drops) = pool(Config::default());
        let other = pool.clone();
        let now = Instant::now();
        put(&pool, &drops, &ALICE, 1, now);
        assert_eq!(other.idle_count(), 1);
        assert_eq!(take(&other, &ALICE, now), Some(1));
        assert_eq!(other.config(), &Config::default());
        assert!(format!("{pool:?}").starts_with("Pool"));
    }

    #[test]
    fn send_sync_and_size() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pool<Key, Conn>>();
        assert_send_sync::<Lease<Key, Conn>>();
        assert_send_sync::<PoolError>();
        // Pool is one pointer; a lease is the pointer, the key, the connection and two flags.
        assert_eq!(std::mem::size_of::<Pool<Key, Conn>>(), 8);
        assert!(std::mem::size_of::<Lease<u64, u64>>() <= 40);
    }

    #[test]
    fn stress_threads_never_get_another_keys_connection() {
        const THREADS: u32 = 8;
        const ITERATIONS: u32 = 500;
        // One connection per key and fewer idle slots than keys: waits and evictions happen.
        let config = Config {
            max_idle_per_key: 1,
            max_idle_total: 3,
            max_per_key: 1,
            idle_timeout: Duration::from_secs(60),
        };
        let pool: Pool<Key, (Key, u32)> = Pool::new(config);
        let made = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool = pool.clone();
                let made = Arc::clone(&made);
                thread::spawn(move || {
                    // Four keys differing in one field or the other; two threads share each,
                    // so the per-key limit is contended.
                    let key = Key {
                        host: if t % 2 == 0 { "a.test" } else { "b.test" },
                        identity: (t / 2) % 2,
                    };
                    for i in 0..ITERATIONS {
                        let deadline = Some(Instant::now() + Duration::from_secs(20));
                        let mut lease = pool
                            .acquire(&key, Instant::now(), deadline, |c| (c.1 + i) % 7 != 0)
                            .expect("a slot frees up well before the deadline");
                        assert_eq!(lease.key(), &key);
                        match lease.conn_ref() {
                            Some((tag, _)) => assert_eq!(tag, &key, "I1 violated"),
                            None => {
                                let n = made.fetch_add(1, Ordering::Relaxed) as u32;
                                lease.set((key.clone(), n));
                            }
                        }
                        assert!(pool.open_count_for(&key) <= 1);
                        if i % 11 == 0 {
                            lease.discard();
                        } else if i % 13 == 0 {
                            drop(lease);
                        } else {
                            lease.release(Instant::now());
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        assert!(pool.idle_count() <= 3);
        let inner = pool.shared.lock();
        assert_eq!(inner.waiters, 0);
        assert!(inner.keys.values().all(|k| k.leased == 0));
        let idle: usize = inner.keys.values().map(|k| k.idle.len()).sum();
        assert_eq!(idle, inner.idle_total);
    }
}
