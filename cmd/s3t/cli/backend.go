package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// backendConfig is what s3t serve and s3t worker share: where the ledger and the blobs are,
// how many training jobs this process runs, and the training leases.
type backendConfig struct {
	// DSN is the ledger database (store.Open: a SQLite DSN or a postgres:// URL).
	DSN string
	// BlobURL is the bucket (store.OpenBlobs).
	BlobURL string
	// WorkDir holds this process's local stage checkpoints.
	WorkDir string
	// TrainWorkers is how many training jobs this process runs at once (0: enqueue only).
	TrainWorkers int
	// Lease and Heartbeat of the training jobs (0: the training package's defaults).
	Lease, Heartbeat time.Duration
	// Holder names this process in training leases (default host:pid:random).
	Holder string
	// PollInterval is how often an idle process also polls for queued jobs (0: the store's
	// default); on PostgreSQL new jobs are announced through LISTEN/NOTIFY, on SQLite polling
	// is all there is.
	PollInterval time.Duration
}

// backend is an opened ledger, bucket, job queue and training runner.
type backend struct {
	cfg    backendConfig
	st     *store.Store
	blobs  *store.Blobs
	jobs   *store.Jobs
	runner *training.Runner
}

// openBackend opens the ledger, migrates it, opens the bucket (registered as a purger), the
// job queue and the training runner, and finishes interrupted purges. Close releases them.
func openBackend(ctx context.Context, cfg backendConfig) (_ *backend, err error) {
	if cfg.Lease <= 0 {
		cfg.Lease = training.DefaultLease
	}
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		var r [4]byte
		rand.Read(r[:])
		cfg.Holder = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(r[:]))
	}
	b := &backend{cfg: cfg}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.st, err = store.Open(ctx, cfg.DSN); err != nil {
		return nil, err
	}
	if err = b.st.Migrate(ctx); err != nil {
		return nil, err
	}
	if b.blobs, err = store.OpenBlobs(ctx, cfg.BlobURL); err != nil {
		return nil, err
	}
	b.st.OnPurge(b.blobs.Purger())
	if b.jobs, err = b.st.NewJobs(store.JobsConfig{Workers: max(cfg.TrainWorkers, 0), RetryDelay: 2 * time.Second, PollInterval: cfg.PollInterval}); err != nil {
		return nil, err
	}
	b.runner, err = training.New(training.Config{Store: b.st, Blobs: b.blobs, Jobs: b.jobs, WorkDir: cfg.WorkDir,
		Holder: cfg.Holder, Lease: cfg.Lease, Heartbeat: cfg.Heartbeat})
	if err != nil {
		return nil, err
	}
	if n, err := b.st.DrainPurges(ctx); err != nil {
		slog.Warn("interrupted purges remain", "finished", n, "err", err)
	} else if n > 0 {
		slog.Info("finished interrupted purges", "count", n)
	}
	return b, nil
}

// startJobs starts working the queue (when TrainWorkers > 0; an enqueue-only queue starts
// too) and, in a process that trains, the rescue of jobs whose worker died.
func (b *backend) startJobs(ctx context.Context) error {
	if err := b.jobs.Start(ctx); err != nil {
		return err
	}
	if b.cfg.TrainWorkers > 0 {
		go b.runner.RescueLost(ctx, b.cfg.Lease/2)
	}
	return nil
}

// stopJobs stops the queue: running jobs get until timeout to finish, then are interrupted
// (their finished stages stay published).
func (b *backend) stopJobs(ctx context.Context, timeout time.Duration) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := b.jobs.Stop(sctx); err != nil {
		slog.Warn("stop training jobs", "err", err)
	}
}

// Close releases the bucket and the ledger.
func (b *backend) Close() error {
	var errs []error
	if b.blobs != nil {
		errs = append(errs, b.blobs.Close())
	}
	if b.st != nil {
		errs = append(errs, b.st.Close())
	}
	return errors.Join(errs...)
}

// databaseKind names the ledger's database for logs.
func databaseKind(dsn string) string {
	if store.IsPostgresURL(dsn) {
		return "postgres"
	}
	return "sqlite"
}

// requirePostgres checks that a database URL is a PostgreSQL one (what several processes can
// share).
func requirePostgres(what, dsn string) error {
	if dsn == "" {
		return fmt.Errorf("%w: %s needs S3T_DATABASE_URL (or --database-url): a postgres:// URL shared by every process", errUsage, what)
	}
	if !store.IsPostgresURL(dsn) {
		return fmt.Errorf("%w: %s needs a postgres:// database URL (SQLite belongs to one s3t serve process)", errUsage, what)
	}
	return nil
}
