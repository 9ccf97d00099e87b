//! ferry-pool: placeholder, see the pool helper.
#![forbid(unsafe_code)]
