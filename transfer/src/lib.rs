//! ferry-transfer: BITS-style transfers.
//!
//! Owns: jobs (owner, priority, files, ranges, credentials reference, proxy choice, retry
//! settings), the BITS state machine as one table, persistence in SQLite, resumable downloads
//! that never produce a file differing from the server's (invariant I8: validators with
//! `If-Range`, a changed entity restarts instead of splicing, rename into place only when
//! complete), checkpoints, throttling, and the parsing of `Content-Range` and
//! `Content-Disposition`.
//!
//! Does not own: sockets or sessions. It asks for bytes through the [`fetch::Fetch`] trait,
//! which the root crate implements with its `Session`, so the queue is testable without
//! sockets and the root package can hold both the CLI and the queue without a dependency
//! cycle.
#![forbid(unsafe_code)]

pub mod disposition;
pub mod download;
pub mod fetch;
pub mod files;
pub mod job;
pub mod queue;
pub mod range;
pub mod state;
pub mod store;
pub mod throttle;
