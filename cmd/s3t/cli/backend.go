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
	// Exclusive says this process is the ledger's only writer (an embedded server holding its
	// data directory's lock): the store answers ledger versions from memory (store.WithExclusive).
	Exclusive bool
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
	var opts []store.Option
	if cfg.Exclusive {
		opts = append(opts, store.WithExclusive())
	}
	if b.st, err = store.Open(ctx, cfg.DSN, opts...); err != nil {
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
	if err = checkBucket(ctx, b, cfg); err != nil {
		return nil, err
	}
	return b, nil
}

// checkBucket checks that the bucket holds the backbones of the ledger's models. One that holds
// none of them is not the bucket the models were made with: on PostgreSQL, where every process
// shares one bucket, that stops the process (its training jobs would each fail within seconds,
// for good); on SQLite it is logged as an error and the server starts, so that the models can
// still be read and deleted through the API. A bucket that lacks only some is logged, as is a
// check that could not be made.
func checkBucket(ctx context.Context, b *backend, cfg backendConfig) error {
	bucket := redactURL(cfg.BlobURL)
	c, err := training.CheckBucket(ctx, b.st, b.blobs)
	if err != nil {
		// The bucket or the ledger failing now (a passing outage) is not a wrong bucket: the
		// jobs and predictions that need them retry.
		slog.Warn("could not check the bucket", "bucket", bucket, "err", err)
		return nil
	}
	switch {
	case c.Wrong() && store.IsPostgresURL(cfg.DSN):
		return fmt.Errorf("the bucket %s is not the one this ledger's models were made with: %s; give every s3t process the bucket the others use (S3T_BLOB_URL or --blob-url)", bucket, c)
	case c.Wrong():
		slog.Error("the bucket is not the one this ledger's models were made with: their training and predictions will fail", "bucket", bucket, "missing", c.String())
	case len(c.Missing) > 0:
		slog.Warn("the bucket lacks backbones of some models: their training and predictions will fail", "bucket", bucket, "missing", c.String())
	}
	return nil
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
