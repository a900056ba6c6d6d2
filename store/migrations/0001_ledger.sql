-- 0001: the ledger. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are Unix nanoseconds (BIGINT); JSON is TEXT; bytes are BYTEA (SQLite stores them as blobs).

CREATE TABLE models (
    name        TEXT    PRIMARY KEY,
    config      TEXT    NOT NULL,
    shards      INTEGER NOT NULL,
    slices      INTEGER NOT NULL,
    sequences   TEXT    NOT NULL,
    assign_key  BYTEA   NOT NULL,
    version     BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Per (shard, slice) unit: how many live samples it holds (the Assigner's state).
CREATE TABLE units (
    model  TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    shard  INTEGER NOT NULL,
    slice  INTEGER NOT NULL,
    count  BIGINT  NOT NULL,
    PRIMARY KEY (model, shard, slice)
);

-- Per (shard, sequence): the live prefix length (only ever decreases).
CREATE TABLE prefixes (
    model     TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    shard     INTEGER NOT NULL,
    sequence  INTEGER NOT NULL,
    live      INTEGER NOT NULL,
    PRIMARY KEY (model, shard, sequence)
);

CREATE TABLE samples (
    model       TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    id          TEXT    NOT NULL,
    shard       INTEGER NOT NULL,
    slice       INTEGER NOT NULL,
    label       TEXT    NOT NULL,
    input       BYTEA,
    blob_key    TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (model, id)
);

CREATE INDEX samples_unit ON samples (model, shard, slice);

-- One row per deleted sample: the receipt. body is the receipt as JSON.
CREATE TABLE deletions (
    receipt    TEXT    PRIMARY KEY,
    model      TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    sample_id  TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    at         BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    UNIQUE (model, sample_id)
);

-- Derived data to erase after a commit (caches, blobs). Rows are written in the same
-- transaction as the deletion and removed once every purger has succeeded; no model
-- foreign key, so a purge outlives DeleteModel.
CREATE TABLE purges (
    id          TEXT    PRIMARY KEY,
    model       TEXT    NOT NULL,
    sample_id   TEXT    NOT NULL,
    shard       INTEGER NOT NULL,
    slice       INTEGER NOT NULL,
    blob_key    TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
