//! The MetaStore conformance suite (the same cases SQLite passes) against a real PostgreSQL:
//! every case gets its own throwaway cluster (see `pg/mod.rs`).

mod pg;

berth_meta::meta_suite!(pg::PgFixture::new());
