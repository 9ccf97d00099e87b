//! I1 (DESIGN.md): a connection made for one identity is never handed to another, under any
//! interleaving of threads. Uses only the public API.

use ferry_pool::{Config, Pool, PoolError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// A pool key as the session forms it: route plus identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    origin: &'static str,
    identity: u64,
}

/// A fake connection that remembers the key it was created for.
#[derive(Debug)]
struct Conn {
    made_for: Key,
    serial: u64,
}

#[test]
fn threads_with_own_and_shared_identities_never_cross() {
    const THREADS: u64 = 8;
    const ITERATIONS: u64 = 500;
    let pool: Pool<Key, Conn> = Pool::new(Config {
        max_idle_per_key: 2,
        max_idle_total: 6,
        max_per_key: 2,
        idle_timeout: Duration::from_secs(60),
    });
    let serial = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, serial, barrier) = (pool.clone(), Arc::clone(&serial), Arc::clone(&barrier));
            thread::spawn(move || {
                // Every thread has its own identity on the shared origin, and every thread also
                // uses an identity shared with three others, on an origin that differs only there.
                let own = Key {
                    origin: "https://a.test",
                    identity: t,
                };
                let shared = Key {
                    origin: "https://b.test",
                    identity: t % 2,
                };
                let mut reused = 0u64;
                barrier.wait();
                for i in 0..ITERATIONS {
                    let key = if i % 3 == 0 { &shared } else { &own };
                    let deadline = Some(Instant::now() + Duration::from_secs(20));
                    let mut lease = pool
                        .acquire(key, Instant::now(), deadline, |c| c.serial % 17 != 0)
                        .expect("a slot frees up well before the deadline");
                    assert_eq!(lease.key(), key);
                    match lease.conn_ref() {
                        Some(conn) => {
                            assert_eq!(&conn.made_for, key, "I1: got another key's connection");
                            assert!(lease.is_reused());
                            reused += 1;
                        }
                        None => lease.set(Conn {
                            made_for: key.clone(),
                            serial: serial.fetch_add(1, Ordering::Relaxed),
                        }),
                    }
                    assert!(pool.open_count_for(key) <= 2);
                    match i % 10 {
                        0 => lease.discard(),
                        1 => drop(lease),
                        _ => lease.release(Instant::now()),
                    }
                }
                reused
            })
        })
        .collect();
    let reused: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    // The pool did pool: most checkouts reused a connection.
    assert!(reused > THREADS * ITERATIONS / 2, "only {reused} reused");
    assert!(pool.idle_count() <= 6);
    for t in 0..THREADS {
        let own = Key {
            origin: "https://a.test",
            identity: t,
        };
        assert_eq!(pool.open_count_for(&own), pool.idle_count_for(&own));
    }
    pool.clear();
    assert_eq!(pool.idle_count(), 0);
}

#[test]
fn release_of_another_key_does_not_satisfy_a_waiter() {
    let pool: Pool<Key, Conn> = Pool::new(Config {
        max_per_key: 1,
        ..Config::default()
    });
    let alice = Key {
        origin: "https://a.test",
        identity: 1,
    };
    let bob = Key {
        identity: 2,
        ..alice.clone()
    };
    let now = Instant::now();
    let _held = pool.acquire(&alice, now, None, |_| true).unwrap();

    let releaser = {
        let (pool, bob) = (pool.clone(), bob.clone());
        thread::spawn(move || {
            for serial in 0..20 {
                let mut lease = pool.acquire(&bob, now, None, |_| true).unwrap();
                if lease.conn_ref().is_none() {
                    lease.set(Conn {
                        made_for: bob.clone(),
                        serial,
                    });
                }
                lease.release(now);
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let err = pool
        .acquire(
            &alice,
            now,
            Some(start + Duration::from_millis(100)),
            |_| true,
        )
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err, PoolError::Exhausted { max_per_key: 1 });
    assert!(elapsed >= Duration::from_millis(90), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    releaser.join().unwrap();
    assert_eq!(pool.idle_count_for(&bob), 1);
    assert_eq!(pool.idle_count_for(&alice), 0);
}
