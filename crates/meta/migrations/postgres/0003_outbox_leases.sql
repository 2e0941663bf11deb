-- Berth metadata schema for PostgreSQL, version 3: delivery leases for the webhook outbox (see
-- the SQLite migration 0003_outbox_leases.sql). Times are the database's clock, so replicas with
-- skewed clocks agree on when a lease runs out.
CREATE TABLE outbox_leases (
    endpoint   TEXT        PRIMARY KEY,
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
