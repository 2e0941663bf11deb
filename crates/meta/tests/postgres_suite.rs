//! The metadata-store conformance suite (the same cases SQLite passes: every role, the outbox and
//! the inventory) against a real PostgreSQL: every case gets its own throwaway cluster (see
//! `pg/mod.rs`).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod pg;

berth_meta::meta_suite!(pg::PgFixture::new());
