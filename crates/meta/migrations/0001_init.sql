-- Berth metadata schema, version 1.
--
-- Applied by crates/meta/src/sqlite/migrate.rs inside one transaction; PRAGMA user_version records
-- the version. Never edit a released migration: add 0002_*.sql instead.
--
-- Conventions: integer surrogate ids where rows are referenced from other tables (small keys keep
-- the reference indexes compact); WITHOUT ROWID for pure link tables whose primary key is the whole
-- row; STRICT everywhere so a wrong type is an error, not a silent coercion. Timestamps are Unix
-- seconds. Digests are stored as their full text ("sha256:…").

-- A repository exists from its first blob link or manifest push. Rows are never removed by
-- manifest or blob deletes (like registry:2's repository directory), so a repository stays "known".
CREATE TABLE repositories (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

-- Content-addressed blobs, once per digest for the whole registry. This is where online GC keeps
-- blob-level state (size now; "unreferenced since" later). Rows are removed only by GC.
CREATE TABLE blobs (
    id         INTEGER PRIMARY KEY,
    digest     TEXT    NOT NULL UNIQUE,
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL
) STRICT;

-- Which repository may use which blob (registry:2's _layers links). A manifest push checks its
-- config and layers against this table; blob HEAD/GET in a repository is one lookup here.
CREATE TABLE repo_blobs (
    repo_id   INTEGER NOT NULL REFERENCES repositories (id),
    blob_id   INTEGER NOT NULL REFERENCES blobs (id),
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, blob_id)
) STRICT, WITHOUT ROWID;
-- GC: "is this blob linked anywhere?" is an index lookup.
CREATE INDEX repo_blobs_by_blob ON repo_blobs (blob_id);

-- Manifests, byte-exact, per repository. `bytes` is deliberately the LAST column: SQLite reads a
-- row's columns in order, so queries that stop before it (referrers, existence checks) never
-- touch the overflow pages of a large manifest.
CREATE TABLE manifests (
    id            INTEGER PRIMARY KEY,
    repo_id       INTEGER NOT NULL REFERENCES repositories (id),
    digest        TEXT    NOT NULL,
    media_type    TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    subject       TEXT,              -- digest of the subject manifest; not a foreign key: a
                                     -- referrer may be pushed before, and outlive, its subject
    artifact_type TEXT,
    annotations   TEXT,              -- JSON object, as given at push
    created_at    INTEGER NOT NULL,
    bytes         BLOB    NOT NULL,
    UNIQUE (repo_id, digest)
) STRICT;
-- Referrers API: (repo, subject) lookup already ordered by digest for pagination.
CREATE INDEX manifests_by_subject ON manifests (repo_id, subject, digest) WHERE subject IS NOT NULL;

-- Tags: one row per (repository, tag); moving a tag is an UPDATE of manifest_id. Deleting the
-- manifest deletes its tags.
CREATE TABLE tags (
    repo_id     INTEGER NOT NULL REFERENCES repositories (id),
    name        TEXT    NOT NULL,
    manifest_id INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name)
) STRICT, WITHOUT ROWID;
-- Cascade on manifest delete, and "which tags point here" for the UI/GC.
CREATE INDEX tags_by_manifest ON tags (manifest_id);

-- Manifest -> blob references (config, layers): the reference counts of online GC. A blob's
-- count of manifest references is an index lookup on manifest_blobs_by_blob.
CREATE TABLE manifest_blobs (
    manifest_id INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    blob_id     INTEGER NOT NULL REFERENCES blobs (id),
    PRIMARY KEY (manifest_id, blob_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX manifest_blobs_by_blob ON manifest_blobs (blob_id);

-- Index -> child manifest references. Keyed by the child's digest (the index's bytes name it
-- whatever happens to the child row), so deleting and re-pushing a child keeps the reference.
-- "Which indexes in this repository hold this manifest" is an index lookup.
CREATE TABLE manifest_children (
    parent_id    INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    repo_id      INTEGER NOT NULL REFERENCES repositories (id),
    child_digest TEXT    NOT NULL,
    PRIMARY KEY (parent_id, child_digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX manifest_children_by_child ON manifest_children (repo_id, child_digest);

-- In-progress blob uploads. The repository is kept by name, not id: starting an upload must not
-- make a repository known. hash_state is the opaque resumable-hash state after the last completed
-- append (empty before the first), so an upload can resume on any replica.
CREATE TABLE uploads (
    id         TEXT    NOT NULL PRIMARY KEY,
    repo       TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    hash_state BLOB    NOT NULL
) STRICT, WITHOUT ROWID;
-- Purge of stale sessions walks this index.
CREATE INDEX uploads_by_start ON uploads (started_at);
