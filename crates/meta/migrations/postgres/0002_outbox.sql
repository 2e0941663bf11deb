-- Berth metadata schema for PostgreSQL, version 2: the webhook outbox (see the SQLite
-- migration 0002_outbox.sql). `id` is the delivery order per endpoint; enqueues lock the table
-- (crates/meta/src/postgres/ops.rs), so ids become visible in order across replicas.
CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    payload    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_by_endpoint ON outbox (endpoint, id);
