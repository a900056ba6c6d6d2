package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "modernc.org/sqlite"             // SQLite driver "sqlite" (pure Go)

	"github.com/riverqueue/river/rivermigrate"
)

// Sentinel errors. Every error returned by this package that is one of these wraps it, so
// callers check with [errors.Is].
var (
	// ErrNotFound: the model, sample or receipt does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrGone: the sample existed and was deleted; a receipt exists for it.
	ErrGone = errors.New("store: gone")
	// ErrConflict: the request contradicts stored state (a model name in use, a sample id
	// uploaded with a different label or input).
	ErrConflict = errors.New("store: conflict")
	// ErrInvalid: the request is malformed (empty id, bad configuration).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrSchemaNewer: the ledger was migrated by a later s3t than this one, whose code may
	// not read or write it correctly ([Store.Migrate] refuses it).
	ErrSchemaNewer = errors.New("store: ledger schema newer than this s3t")
)

// Dialect is the SQL database behind a [Store].
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// LedgerFile is the name of the SQLite ledger inside a data directory.
const LedgerFile = "ledger.db"

// SQLiteDSN returns the DSN of the ledger in dataDir.
func SQLiteDSN(dataDir string) string {
	return "sqlite://" + filepath.Join(dataDir, LedgerFile)
}

// DSN returns the ledger s3t uses: databaseURL when set (S3T_DATABASE_URL, for example
// postgres://user@host:5432/db), else the SQLite ledger in dataDir.
func DSN(dataDir, databaseURL string) string {
	if databaseURL != "" {
		return databaseURL
	}
	return SQLiteDSN(dataDir)
}

// IsPostgresURL reports whether dsn names a PostgreSQL database.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Store is s3t's durable state: the ledger (models, samples, placements, live prefixes,
// deletion receipts) in SQL. It is safe for concurrent use.
//
// Every query is written once, with PostgreSQL-style numbered placeholders ($1, $2, ...),
// which both PostgreSQL and SQLite (modernc.org/sqlite binds $N by position) accept, and
// with only portable SQL (ON CONFLICT, RETURNING, no FOR UPDATE). Write transactions begin
// by updating the model row, which serialises writers per model on PostgreSQL (row lock) and
// globally on SQLite (BEGIN IMMEDIATE, one writer).
type Store struct {
	db      *sql.DB
	dialect Dialect
	// listen is a small pgx pool on PostgreSQL from which River takes the connection it
	// LISTENs on, so that a worker starts a job when it is queued instead of at its next poll.
	listen *pgxpool.Pool
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	purgers []Purger
	drainMu sync.Mutex

	// Background loop: SQLite checkpoints, purge queue cleanup.
	purged  []string // purges done but still queued
	ckMu    sync.Mutex
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}

	// stamp is Stamp's statement, prepared once: a serving replica reads it on every
	// prediction, and parsing it each time cost more than running it.
	stampMu sync.Mutex
	stamp   *sql.Stmt
	// With exclusive (WithExclusive), stamps caches each model's stamp (*stampEntry) as read
	// when commits, the count of this Store's committed write transactions, was entry.commits.
	exclusive bool
	commits   atomic.Uint64
	stamps    sync.Map

	// erasures counts the deletions (of samples or whole models) this store committed.
	erasures atomic.Int64

	// purgeRetry is how often the background loop hands the purges still queued (a purger
	// failed, or a replica that committed them died) to the purgers again (WithPurgeRetry).
	purgeRetry time.Duration
}

// DefaultPurgeRetry is how often a store retries the purges left queued (WithPurgeRetry).
const DefaultPurgeRetry = 10 * time.Second

// pgMaxIdle is how many idle PostgreSQL connections a store keeps for the next requests.
const pgMaxIdle = 16

// listenerPool opens the pool River's listener takes its connection from: none at first, and
// one per River client that listens (each keeps its own for good).
func listenerPool(dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MinConns, cfg.MaxConns = 0, 2
	return pgxpool.NewWithConfig(context.Background(), cfg)
}

func (s *Store) closeDB() error {
	if s.listen != nil {
		s.listen.Close()
	}
	if s.db == nil {
		return nil
	}
	return s.db.Close()
}

// Option configures [Open].
type Option func(*Store)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithPurgeRetry sets how often the store hands the purges left queued (a purger failed: a
// bucket that answered an error, a file it could not remove) to its purgers again, while any
// purger is registered (default DefaultPurgeRetry). Without it, such a purge ran again only at
// the next DrainPurges, in practice the next start of a process.
func WithPurgeRetry(d time.Duration) Option { return func(s *Store) { s.purgeRetry = d } }

// WithExclusive declares that this Store is the only writer of its database, as an embedded
// s3t serve is of the SQLite ledger in the data directory it holds locked. Stamp then answers
// from memory for as long as no transaction of this Store has committed since it last read the
// model's row, instead of reading SQLite on every prediction (25-30 µs of a 0.3 ms prediction on
// 2 cores, its code and pages cold after the shard runs). Every write that changes a model's
// version commits through inTx, which counts it before returning: a deletion's receipt is
// returned after the count, so a prediction started after it reads the ledger again. Do not set
// it where another process may write the database (PostgreSQL replicas and workers).
func WithExclusive() Option { return func(s *Store) { s.exclusive = true } }

// WithClock sets the clock used for timestamps (default time.Now); for tests.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// Open connects to the ledger named by dsn and checks the connection. It does not migrate;
// call [Store.Migrate].
//
//   - "postgres://..." or "postgresql://...": PostgreSQL through pgx.
//   - "sqlite://PATH", "file:PATH" or a plain PATH: a SQLite file (created if missing), opened
//     with WAL, foreign keys, a 10 s busy timeout, synchronous=FULL and secure_delete=ON.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s := &Store{log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	var err error
	switch {
	case IsPostgresURL(dsn):
		s.dialect = Postgres
		s.db, err = sql.Open("pgx", dsn)
		if err == nil {
			// database/sql keeps 2 idle connections by default: any more concurrent requests
			// closed theirs after use and opened new ones, and PostgreSQL forks a backend
			// process per connection (half its CPU went there under 4 deleting clients).
			s.db.SetMaxIdleConns(pgMaxIdle)
			s.db.SetConnMaxIdleTime(5 * time.Minute)
			s.listen, err = listenerPool(dsn)
		}
	default:
		s.dialect = SQLite
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if path == "" {
			return nil, fmt.Errorf("store: open: %w: empty SQLite path", ErrInvalid)
		}
		q := url.Values{}
		// Automatic checkpoints are off: the background loop folds the log into the
		// database off the request path (see background), which keeps deletion latency flat.
		for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)",
			"synchronous(FULL)", "secure_delete(1)", "wal_autocheckpoint(0)"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
		s.db, err = sql.Open("sqlite", "file:"+path+"?"+q.Encode())
		if err == nil {
			// One writer at a time anyway; a few connections let readers run beside it, and
			// all of them stay open (opening one re-runs every pragma).
			s.db.SetMaxOpenConns(4)
			s.db.SetMaxIdleConns(4)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	// A new SQLite file switches to WAL on its first connection; processes opening it at that
	// very moment get SQLITE_BUSY at once (the busy timeout does not cover a journal mode
	// change), so the first connection is retried for a while.
	for attempt := 0; ; attempt++ {
		err := s.db.PingContext(ctx)
		if err == nil {
			break
		}
		if s.dialect != SQLite || attempt == 100 || !strings.Contains(err.Error(), "SQLITE_BUSY") {
			s.closeDB()
			return nil, fmt.Errorf("store: open: %w", err)
		}
		select {
		case <-ctx.Done():
			s.closeDB()
			return nil, fmt.Errorf("store: open: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.wake = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.stopped = make(chan struct{})
	go s.background()
	s.log.Debug("store opened", "dialect", s.dialect)
	return s, nil
}

// backgroundInterval is how often the background loop runs when there were writes;
// backgroundMaxDelay bounds how long a stream of writes may postpone it.
const (
	backgroundInterval = 200 * time.Millisecond
	backgroundMaxDelay = 2 * time.Second
	// checkpointWarnAfter is how long checkpoints may be deferred (readers holding the log)
	// before the store warns that erased data waits in the log.
	checkpointWarnAfter = 10 * time.Second
)

// background does, shortly after writes and off the request path: removing completed
// purges from the queue (one commit for many), and on SQLite folding the write-ahead log
// into the database file, truncating it when no reader holds it, so that data erased by a
// deletion (zeroed by secure_delete) leaves the log. A truncating checkpoint blocks writers
// while it syncs, so it waits for a pause in the writes (a tick without one), but no longer
// than backgroundMaxDelay after the first write it covers: erased data leaves the log within
// about backgroundInterval of the last write of a burst, and within backgroundMaxDelay during
// a steady stream.
func (s *Store) background() {
	defer close(s.stopped)
	t := time.NewTicker(backgroundInterval)
	defer t.Stop()
	retry := time.NewTicker(cmp.Or(s.purgeRetry, DefaultPurgeRetry))
	defer retry.Stop()
	// Dirty from the start: a process killed after a deletion left the erasure in the log and
	// the erased page's old image in the database file, and a restarted server may not write
	// for a while; so the first tick folds the log in.
	dirty, wroteThisTick := true, false
	since := time.Now()         // the first write not yet covered
	var deferredSince time.Time // the first checkpoint deferred since the last one that ran
	warned := false
	for {
		select {
		case <-s.stop:
			return
		case <-retry.C:
			s.retryPurges()
		case <-s.wake:
			if !dirty {
				since = time.Now()
			}
			dirty, wroteThisTick = true, true
		case <-t.C:
			busy := wroteThisTick
			wroteThisTick = false
			if !dirty || (busy && time.Since(since) < backgroundMaxDelay) {
				continue
			}
			dirty = false
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.flushPurged(ctx); err != nil {
				dirty = true
				s.log.Warn("purge queue cleanup deferred", "err", err)
			}
			if err := s.Checkpoint(ctx); err != nil {
				dirty = true // retry on the next tick
				if deferredSince.IsZero() {
					deferredSince = time.Now()
				}
				if d := time.Since(deferredSince); d > checkpointWarnAfter && !warned {
					warned = true
					s.log.Warn("checkpoint deferred: data erased since stays in the write-ahead log until it runs", "for", d.Round(time.Second), "err", err)
				} else {
					s.log.Debug("checkpoint deferred", "err", err)
				}
			} else {
				if warned {
					s.log.Info("checkpoint ran after a deferral", "deferred", time.Since(deferredSince).Round(time.Second))
				}
				deferredSince, warned = time.Time{}, false
			}
			if dirty {
				since = time.Now()
			}
			cancel()
		}
	}
}

// retryPurges hands the queued purges to the purgers again (see WithPurgeRetry).
func (s *Store) retryPurges() {
	s.mu.Lock()
	n := len(s.purgers)
	s.mu.Unlock()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done, err := s.DrainPurges(ctx)
	if err != nil {
		s.log.Warn("queued purges failed again; retrying later", "finished", done, "err", err)
	} else if done > 0 {
		s.log.Info("finished queued purges", "count", done)
	}
}

// wrote tells the background loop, and Stamp's cache, that a transaction committed. It runs
// after the commit and before the write's caller gets its answer (see WithExclusive).
func (s *Store) wrote() {
	s.commits.Add(1)
	if s.wake == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// JobQueueVersion returns the highest applied migration of the job queue's own schema
// (River's; 0 before [Store.Migrate]).
func (s *Store) JobQueueVersion(ctx context.Context) (int, error) {
	m, err := rivermigrate.New(s.riverDriver(), &rivermigrate.Config{Logger: s.log})
	if err != nil {
		return 0, fmt.Errorf("store: job queue version: %w", err)
	}
	vs, err := m.ExistingVersions(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: job queue version: %w", err)
	}
	v := 0
	for _, m := range vs {
		v = max(v, m.Version)
	}
	return v, nil
}

// Dialect returns the database behind the store.
func (s *Store) Dialect() Dialect { return s.dialect }

// Close stops the background loop (after a last purge cleanup and checkpoint) and closes
// the database.
func (s *Store) Close() error {
	if s.stop != nil {
		close(s.stop)
		<-s.stopped
		s.stop = nil
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.flushPurged(ctx); err != nil {
			s.log.Warn("purge queue cleanup deferred", "err", err)
		}
		if err := s.Checkpoint(ctx); err != nil {
			s.log.Debug("final checkpoint deferred", "err", err)
		}
		cancel()
	}
	s.stampMu.Lock()
	if s.stamp != nil {
		s.stamp.Close()
		s.stamp = nil
	}
	s.stampMu.Unlock()
	return s.closeDB()
}

// inTx runs f in a transaction, committing when f returns nil.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.wrote()
	return nil
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Compact rewrites the SQLite database file (VACUUM) and then truncates the log. SQLite's
// secure_delete zeroes a deleted row where it lies, but B-tree rebalancing copies rows between
// pages and does not zero the gap it leaves behind, so an older copy of a row deleted later can
// survive in a page's free space; only a rewrite of the file is sure to drop it. Compact takes
// the write lock for as long as the rewrite lasts (about a second per 50 MB): run it off the
// request path. It does nothing on PostgreSQL, where erasure needs VACUUM as well.
func (s *Store) Compact(ctx context.Context) error {
	if s.dialect != SQLite {
		return nil
	}
	s.ckMu.Lock()
	_, err := s.db.ExecContext(ctx, `VACUUM`)
	s.ckMu.Unlock()
	if err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	return s.Checkpoint(ctx)
}

// Checkpoint folds the SQLite write-ahead log into the database file and truncates it, so
// that pages freed by deletions (zeroed by secure_delete) replace the old contents on disk
// and no old copy stays in the log. It does nothing on PostgreSQL.
func (s *Store) Checkpoint(ctx context.Context) error {
	if s.dialect != SQLite {
		return nil
	}
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	for attempt := 0; ; attempt++ {
		var busy, logFrames, checkpointed int
		if err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil {
			return fmt.Errorf("store: checkpoint: %w", err)
		}
		if busy == 0 {
			return nil
		}
		if attempt == 4 {
			return fmt.Errorf("store: checkpoint: database busy (a reader holds the log), log not truncated")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: checkpoint: %w", ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
}
