//! ferry-auth: who a request is made as, and how to prove it.
//!
//! Owns: credentials and secrets (never printed), [`Identity`] (a keyed fingerprint of everything
//! that decides who a request is made as), challenge parsing (RFC 9110 §11), the Basic
//! (RFC 7617), Digest (RFC 7616), NTLMv2 (MS-NLMP, through ntlmclient, hardened) and Bearer
//! (RFC 6750) mechanisms, and the policy that decides which scheme to use and where credentials
//! may go (autologon levels, Basic over cleartext, credential origins).
//!
//! Does not own: sockets, sessions, retries, pools. The session drives the auth loop; this crate
//! turns challenges and credentials into header values and decisions. Mechanism is kept apart
//! from policy (`policy.rs`), as rustls does.
#![forbid(unsafe_code)]

pub mod basic;
pub mod challenge;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod identity;
pub mod ntlm;
pub mod policy;

pub use challenge::{parse_challenges, Challenge, Malformed};
pub use credentials::{Credentials, Scheme, SchemeSet, Secret};
pub use digest::{DigestAlgorithm, DigestChallenge, DigestSession};
pub use error::AuthError;
pub use identity::{Identity, IdentityBuilder};
pub use ntlm::{ExpectNtlmType2, NtlmBound};
pub use policy::{AuthPolicy, AutologonLevel, Origin};
