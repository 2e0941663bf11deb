-- Berth metadata schema for PostgreSQL, version 1: the same tables as the SQLite schema
-- (crates/meta/migrations/0001_init.sql documents each one), in PostgreSQL's types.
--
-- Applied by crates/meta/src/postgres/migrate.rs in one transaction under an advisory lock; the
-- berth_schema_migrations table records it. Never edit a released migration: add 0002_*.sql.
--
-- Conventions: BIGINT identity ids where rows are referenced from other tables; timestamps are
-- Unix seconds (BIGINT), as in SQLite. Every text column that is compared or ordered (names,
-- digests) uses the "C" collation: the registry API orders tags and repositories by bytes, and
-- only a "C" index can serve `name > $1 ORDER BY name` in that order, whatever the database's
-- default locale is.

CREATE TABLE repositories (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE blobs (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest     TEXT COLLATE "C" NOT NULL UNIQUE,
    size       BIGINT NOT NULL CHECK (size >= 0),
    created_at BIGINT NOT NULL
);

CREATE TABLE repo_blobs (
    repo_id   BIGINT NOT NULL REFERENCES repositories (id),
    blob_id   BIGINT NOT NULL REFERENCES blobs (id),
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, blob_id)
);
CREATE INDEX repo_blobs_by_blob ON repo_blobs (blob_id);

-- Manifest bytes (at most 4 MiB) are stored in the row; PostgreSQL moves large values to TOAST,
-- so metadata-only queries (referrers, existence checks) never read them.
CREATE TABLE manifests (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id       BIGINT NOT NULL REFERENCES repositories (id),
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT NOT NULL,
    size          BIGINT NOT NULL,
    subject       TEXT COLLATE "C",  -- not a foreign key: a referrer may precede and outlive it
    artifact_type TEXT,
    annotations   TEXT,              -- JSON object, as given at push
    created_at    BIGINT NOT NULL,
    bytes         BYTEA NOT NULL,
    UNIQUE (repo_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo_id, subject, digest) WHERE subject IS NOT NULL;

CREATE TABLE tags (
    repo_id     BIGINT NOT NULL REFERENCES repositories (id),
    name        TEXT COLLATE "C" NOT NULL,
    manifest_id BIGINT NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name)
);
CREATE INDEX tags_by_manifest ON tags (manifest_id);

CREATE TABLE manifest_blobs (
    manifest_id BIGINT NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    blob_id     BIGINT NOT NULL REFERENCES blobs (id),
    PRIMARY KEY (manifest_id, blob_id)
);
CREATE INDEX manifest_blobs_by_blob ON manifest_blobs (blob_id);

CREATE TABLE manifest_children (
    parent_id    BIGINT NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    repo_id      BIGINT NOT NULL REFERENCES repositories (id),
    child_digest TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (parent_id, child_digest)
);
CREATE INDEX manifest_children_by_child ON manifest_children (repo_id, child_digest);

-- The repository is kept by name: starting an upload must not make a repository known.
CREATE TABLE uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    repo       TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    hash_state BYTEA NOT NULL
);
CREATE INDEX uploads_by_start ON uploads (started_at);
