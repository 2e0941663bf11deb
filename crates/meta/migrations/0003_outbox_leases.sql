-- Berth metadata schema, version 3: delivery leases for the webhook outbox.
--
-- One row per endpoint names the process that delivers it until `expires_at` (Unix
-- milliseconds). A deliverer takes or renews the lease before each batch and gives it up when the
-- endpoint's queue is empty, so processes sharing a database send each event once, in `id` order;
-- a crashed holder's lease simply runs out.
CREATE TABLE outbox_leases (
    endpoint   TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
