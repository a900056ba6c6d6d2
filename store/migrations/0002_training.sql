-- 0002: training state. Portable SQL: runs unchanged on SQLite and PostgreSQL.

-- Per (shard, sequence): gen is the generation of the checkpoints live counts for (1 for
-- the first training; a retraining on the remaining data publishes gen + 1 and swaps it in),
-- trained is how many stages of that generation are published. A shard serves the sequence
-- with the largest min(live, trained).
ALTER TABLE prefixes ADD COLUMN gen INTEGER NOT NULL DEFAULT 1;
ALTER TABLE prefixes ADD COLUMN trained INTEGER NOT NULL DEFAULT 0;

-- Where a deletion hit, so that a retraining can tell which of its stages saw a sample
-- deleted after it read its data.
ALTER TABLE deletions ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
ALTER TABLE deletions ADD COLUMN slice INTEGER NOT NULL DEFAULT -1;
CREATE INDEX deletions_shard ON deletions (model, shard, version);

-- Published checkpoints C[shard, sequence, stage] of a generation; the bytes are a blob.
CREATE TABLE checkpoints (
    model       TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    shard       INTEGER NOT NULL,
    sequence    INTEGER NOT NULL,
    gen         INTEGER NOT NULL,
    stage       INTEGER NOT NULL,
    blob_key    TEXT    NOT NULL,
    samples     BIGINT  NOT NULL,
    digest      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (model, shard, sequence, gen, stage)
);

-- One row per training job (a (shard, sequence) of a model): its progress, written by the
-- worker that runs it, and its lease (a worker holds the job while lease_until is ahead).
CREATE TABLE trainings (
    job_id      BIGINT  PRIMARY KEY,
    model       TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    shard       INTEGER NOT NULL,
    sequence    INTEGER NOT NULL,
    retrain     INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    stage       INTEGER NOT NULL,
    stages      INTEGER NOT NULL,
    step        BIGINT  NOT NULL,
    steps       BIGINT  NOT NULL,
    loss        DOUBLE PRECISION NOT NULL,
    rate        DOUBLE PRECISION NOT NULL,
    eta_ms      BIGINT  NOT NULL,
    message     TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    lease_until BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE INDEX trainings_model ON trainings (model, shard, sequence);
