// Package store is s3t's durable state: the SQL ledger and sample store (SQLite embedded,
// PostgreSQL at scale), the River job queue, and artifact blobs through gocloud.dev. SQL
// drivers, River and gocloud.dev are imported here and nowhere else; the API is plain Go
// types.
//
// # Ledger
//
// [Open] connects to a SQLite file ([SQLiteDSN] of a data directory; WAL, foreign keys,
// busy timeout, synchronous=FULL, secure_delete=ON, IMMEDIATE transactions) or to
// PostgreSQL (a postgres:// URL, pgx through database/sql). [Store.Migrate] applies the
// embedded, numbered migrations (migrations/NNNN_name.sql, recorded in schema_migrations)
// and River's own. Every query is written once for both databases: numbered placeholders
// ($1, $2, ...; modernc.org/sqlite binds $N by position), ON CONFLICT, RETURNING, times as
// Unix nanoseconds, JSON as TEXT, bytes as BYTEA. Write transactions start by updating the
// model's row, which serialises writers of one model on PostgreSQL and is the single-writer
// lock on SQLite.
//
// Tables: models (name, config JSON, shards, slices, sequences JSON, assignment key,
// version), units (per (shard, slice) sample counts, the Assigner's state), prefixes (live
// prefix length per (shard, sequence)), samples (id, shard, slice, label, input bytes or a
// blob key), deletions (one receipt per deleted sample, unique per (model, sample id)) and
// purges (derived data still to erase).
//
// # Deletion
//
// [Store.Delete] and [Store.DeleteBatch] unlearn samples in one transaction each: plan
// with unlearning.Shard restored from the stored live lengths, truncate, erase the sample
// row, lower the unit count, bump the model's ledger version, queue a purge and write the
// [Receipt]. A second deletion of an id returns a [GoneError] (ErrGone) carrying the first
// receipt. Derived data (activation caches, blobs) is erased by [Purger]s registered with
// [Store.OnPurge]: the purge row is committed with the deletion and removed only when every
// purger succeeded, so a crash between the two loses nothing ([Store.DrainPurges] at
// startup finishes the job). On SQLite a background checkpointer folds the write-ahead log
// into the database file within about 200 ms of a commit, so erased bytes do not linger in
// the log either ([Store.Checkpoint] forces it). secure_delete zeroes a row where it lies, but
// B-tree rebalancing can leave an older copy of a row in a page's free space; [Store.Compact]
// (VACUUM) removes such copies and must run before an erasure is claimed for the file itself.
//
// # Blobs and jobs
//
// [Blobs] wraps a gocloud.dev bucket (file:// under the data directory by default, see
// [DefaultBlobURL]; mem:// for tests). [Jobs] is the River queue in the same database, with
// handlers registered by kind name.
package store
