//! The [`Metered`] wrapper is a backend like any other: the shared conformance suite over it
//! (wrapping the filesystem backend) proves it passes every call, stream and error through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use berth_storage::fs::FsBackend;
use berth_storage::metered::Metered;
use berth_storage::suite::Harness;

fn metered() -> Harness<Metered> {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FsBackend::new(dir.path().join("root")).expect("backend");
    Harness::new(Metered::new(Arc::new(fs), "filesystem"), dir)
}

berth_storage::backend_suite!(metered());
