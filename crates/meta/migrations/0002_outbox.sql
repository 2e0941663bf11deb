-- Berth metadata schema, version 2: the webhook outbox.
--
-- Events for notification endpoints are written here (in batches, off the request path) and
-- removed once the endpoint acknowledged them, so a receiver that is down, or a registry restart,
-- loses nothing. `id` is the delivery order per endpoint.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY,
    endpoint   TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_by_endpoint ON outbox (endpoint, id);
