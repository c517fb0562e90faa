//! `sierradb bench`: measurements that print numbers. `--embedded` drives the store in
//! process through the real disk; the RESP load generator drives a running server.

pub mod embedded;
pub mod stats;
