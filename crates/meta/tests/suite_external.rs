//! The conformance suite driven from outside the crate, as another store's tests would use it
//! (here on `SqliteStore::open_temporary`, through the non-persistent `Ephemeral` fixture).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;

use berth_meta::sqlite::SqliteStore;
use berth_meta::suite::Ephemeral;

async fn temporary() -> Ephemeral<SqliteStore> {
    Ephemeral(Arc::new(
        SqliteStore::open_temporary().expect("temporary store"),
    ))
}

berth_meta::meta_suite!(temporary());
