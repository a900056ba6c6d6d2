// Package store is s3t's durable state: the SQL ledger and sample store (SQLite embedded,
// PostgreSQL at scale), the River job queue, and artifact blobs through gocloud.dev. It is
// built by the server issue.
package store
