package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// workerOptions are the flags of s3t worker.
type workerOptions struct {
	databaseURL, blobURL, workDir string
	trainWorkers                  int
	lease, heartbeat              time.Duration
	sweepEvery, jobsStop          time.Duration
	pollInterval                  time.Duration
}

func newWorkerCmd() *cobra.Command {
	var o workerOptions
	var checkWorkers func() error // set with the flags below
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run training and retraining jobs for s3t serve replicas that share PostgreSQL and a bucket",
		Long: `Work the training queue of a cluster: s3t serve replicas (with --train-workers 0) take requests
and enqueue training; s3t worker processes on any number of machines run the jobs, one per
(shard, sequence), --train-workers of them at once each. Everything is shared through
S3T_DATABASE_URL (PostgreSQL: ledger, samples, job queue) and S3T_BLOB_URL (the bucket: published
checkpoints); run s3t migrate once first. Stage checkpoints are also kept in --work-dir, so that
an interrupted job resumes on this machine without retraining finished stages.

A job holds a lease in the ledger, renewed every second; a worker that dies (kill -9, a lost
machine) stops renewing it, and another worker requeues the job about --lease after the lease
expired: at most the stage that was training is lost. SIGINT or SIGTERM stop the worker: running
jobs are interrupted after --jobs-stop-timeout, finished stages stay published and the jobs are
retried by the queue.

Deletions are committed (and purged from the bucket) by the serve replica that takes them. A
worker checks its local stage checkpoints against the ledger every --sweep-every and erases each
one that a deletion switched off or that the ledger no longer vouches for (its samples digest is
not the published one), so no local file keeps a deleted sample.

Environment:
  S3T_DATABASE_URL the cluster's ledger, postgres://... (--database-url; required)
  S3T_BLOB_URL     the cluster's bucket, s3://BUCKET?... or file://DIR on one machine (--blob-url; required)
  S3T_TRAIN_WORKERS training jobs run at once (--train-workers; default 1)
`,
		Example: `  S3T_DATABASE_URL=postgres://s3t@db:5432/s3t S3T_BLOB_URL='s3://s3t-blobs?region=eu-west-1' \
    s3t worker --train-workers 1`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkWorkers(); err != nil {
				return err
			}
			return runWorker(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.databaseURL, "database-url", env("S3T_DATABASE_URL"), "ledger database URL, postgres://... (S3T_DATABASE_URL; required)")
	f.StringVar(&o.blobURL, "blob-url", env("S3T_BLOB_URL"), "blob bucket URL, s3://... or file://... shared by every process (S3T_BLOB_URL; required)")
	hideDefaults(f, "database-url", "blob-url")
	def := filepath.Join(os.TempDir(), "s3t-worker")
	if d, err := os.UserCacheDir(); err == nil {
		def = filepath.Join(d, "s3t", "worker")
	}
	f.StringVar(&o.workDir, "work-dir", def, "local folder of this worker's stage checkpoints (one worker process per folder)")
	checkWorkers = trainWorkersFlag(c, &o.trainWorkers, 1, "training jobs run at once in this process (S3T_TRAIN_WORKERS)")
	f.DurationVar(&o.lease, "lease", training.DefaultLease, "a training job's lease: a job whose worker stops renewing it is requeued after about twice this")
	f.DurationVar(&o.heartbeat, "heartbeat", training.DefaultHeartbeat, "how often a running job writes its progress and renews its lease (well under --lease)")
	f.DurationVar(&o.pollInterval, "poll-interval", 200*time.Millisecond, "how often an idle worker also polls for queued jobs (it is told of new ones through PostgreSQL LISTEN/NOTIFY; polling is the fallback)")
	f.DurationVar(&o.sweepEvery, "sweep-every", 2*time.Second, "how often local stage checkpoints are checked against the ledger (deletions)")
	f.DurationVar(&o.jobsStop, "jobs-stop-timeout", 10*time.Second, "at shutdown, how long running training jobs may take to finish before they are interrupted")
	return c
}

// runWorker works training jobs until ctx is cancelled.
func runWorker(ctx context.Context, o workerOptions) error {
	if err := requirePostgres("s3t worker", o.databaseURL); err != nil {
		return err
	}
	if o.blobURL == "" {
		return fmt.Errorf("%w: s3t worker needs S3T_BLOB_URL (or --blob-url): the bucket every process shares", errUsage)
	}
	if o.heartbeat <= 0 || o.lease <= o.heartbeat {
		return fmt.Errorf("%w: --lease (%v) must be longer than --heartbeat (%v)", errUsage, o.lease, o.heartbeat)
	}
	if o.sweepEvery <= 0 || o.pollInterval <= 0 {
		return fmt.Errorf("%w: --sweep-every (%v) and --poll-interval (%v) must be more than 0", errUsage, o.sweepEvery, o.pollInterval)
	}
	dir, err := filepath.Abs(o.workDir)
	if err != nil {
		return fmt.Errorf("worker: work directory: %w", err)
	}
	lock, err := lockWorkDir(dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	be, err := openBackend(ctx, backendConfig{DSN: o.databaseURL, BlobURL: o.blobURL, WorkDir: dir,
		TrainWorkers: o.trainWorkers, Lease: o.lease, Heartbeat: o.heartbeat, PollInterval: o.pollInterval})
	if err != nil {
		return err
	}
	defer be.Close()
	sw := &localSweeper{st: be.st, runner: be.runner, root: filepath.Join(dir, "models"), holder: be.cfg.Holder, kept: map[string]keptMark{}}
	// Before taking jobs: deletions committed while this worker was down.
	if _, err := sw.sweep(ctx); err != nil {
		return fmt.Errorf("worker: check local checkpoints: %w", err)
	}
	if err := be.startJobs(ctx); err != nil {
		return err
	}
	// SIGHUP's default action ended the worker at once, as a kill would (systemctl reload, a
	// closed terminal), interrupting its jobs: a worker has nothing to read again.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				slog.Info("SIGHUP: a worker has nothing to read again; ignored (SIGTERM stops it)")
			}
		}
	}()
	slog.Info("s3t worker", "work_dir", dir, "bucket", redactURL(o.blobURL), "train_workers", o.trainWorkers, "lease", o.lease, "database", databaseKind(o.databaseURL))
	sw.loop(ctx, o.sweepEvery)
	slog.Info("s3t worker stopping", "cause", context.Cause(ctx))
	be.stopJobs(ctx, o.jobsStop)
	return nil
}

// lockWorkDir makes a work directory if missing and takes an exclusive lock on it (it dies with
// the process).
func lockWorkDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock work directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("work directory %s is in use by another s3t process (give each s3t worker its own --work-dir, each training s3t serve replica its own --data): %w", dir, err)
	}
	return f, nil
}

// localSweeper erases a worker's local stage checkpoints that may hold a deleted sample.
//
// Deletions commit, and purge the bucket, in the serve replica that takes them; the purge
// hooks of that process cannot reach this machine's disk. So the worker compares its files
// with the ledger itself. A local checkpoint C[k, b, i] (folder shard-k/seq-b/stage-i of a
// model) is kept only when
//   - the model still exists and (k, b) is one of its sequences,
//   - i <= Live[k][b]: no deletion switched stage i off (a deletion in slice sigma(j) cuts
//     every stage >= j), and
//   - the ledger's checkpoint of stage i in the current generation, when it is published, has
//     the same samples digest as the local one (a local file of an older generation, trained
//     before a retraining replaced it, saw data the ledger no longer vouches for).
//
// An unpublished stage within the live prefix of the current generation (a first training
// in progress) is kept: no deletion touched its slices since the generation began. Everything
// else is removed; at worst a job retrains a stage it could have loaded. The sequences of the
// jobs this process is running are left to those jobs (erasing a folder a job is writing would
// fail the job): a running job of a shard a deletion hit cannot publish what saw the sample
// (the ledger refuses it), restarts on the remaining data and overwrites its stages, and the
// first sweep after it ends erases what is left.
//
// The folders of models that no longer exist, or that a model created again under the name has
// not claimed, are the runner's to erase (training.Runner.SweepWork, which orders the removal
// with the claims of this process's jobs); each sweep runs it first.
type localSweeper struct {
	st     *store.Store
	runner *training.Runner
	root   string // <work-dir>/models
	holder string // this process's name in training leases
	kept   map[string]keptMark
}

// loop sweeps every interval until ctx ends.
func (s *localSweeper) loop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.sweep(ctx); err != nil && ctx.Err() == nil {
				slog.Warn("check local checkpoints", "err", err)
			}
		}
	}
}

// keptMark is what a kept checkpoint was verified against; it is checked again when any
// part changes.
type keptMark struct {
	gen, live int
	mod       time.Time
	size      int64
}

// sweep checks every local checkpoint and returns how many folders it erased.
func (w *localSweeper) sweep(ctx context.Context) (int, error) {
	erased, err := w.runner.SweepWork(ctx)
	if err != nil {
		return erased, err
	}
	models, err := os.ReadDir(w.root)
	if errors.Is(err, fs.ErrNotExist) {
		return erased, nil
	}
	if err != nil {
		return erased, err
	}
	for _, md := range models {
		if !md.IsDir() {
			continue
		}
		mdir := filepath.Join(w.root, md.Name())
		m, err := w.st.GetModel(ctx, md.Name())
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since SweepWork looked: the next sweep erases it
		}
		if err != nil {
			return erased, err
		}
		mine, err := w.running(ctx, m.Name)
		if err != nil {
			return erased, err
		}
		stages, _ := filepath.Glob(filepath.Join(mdir, "shard-*", "seq-*", "stage-*"))
		for _, sdir := range stages {
			keep, err := w.check(ctx, m, sdir, mine)
			if err != nil {
				return erased, err
			}
			if keep {
				continue
			}
			delete(w.kept, sdir)
			if err := os.RemoveAll(sdir); err != nil {
				return erased, err
			}
			slog.Info("erased a local stage checkpoint the ledger no longer vouches for", "model", m.Name, "dir", strings.TrimPrefix(sdir, w.root+string(filepath.Separator)))
			erased++
		}
	}
	return erased, nil
}

// running returns the (shard, sequence) pairs of a model whose job this process runs.
func (w *localSweeper) running(ctx context.Context, model string) (map[[2]int]bool, error) {
	ts, err := w.st.Trainings(ctx, model)
	if err != nil {
		return nil, err
	}
	out := map[[2]int]bool{}
	for _, t := range ts {
		if t.State == store.TrainingRunning && t.Holder == w.holder {
			out[[2]int{t.Shard, t.Sequence}] = true
		}
	}
	return out, nil
}

// check says whether the local checkpoint in sdir may stay.
func (w *localSweeper) check(ctx context.Context, m *store.Model, sdir string, mine map[[2]int]bool) (bool, error) {
	var k, b, i int
	rel, _ := filepath.Rel(filepath.Join(w.root, m.Name), sdir)
	if _, err := fmt.Sscanf(filepath.ToSlash(rel), "shard-%d/seq-%d/stage-%d", &k, &b, &i); err != nil {
		return false, nil
	}
	if mine[[2]int{k, b}] {
		return true, nil // the running job's own folders
	}
	if k < 0 || k >= m.Shards || b < 0 || b >= len(m.Sequences[k]) || i < 1 || i > m.Slices {
		return false, nil
	}
	gen, live := m.Gen[k][b], m.Live[k][b]
	if i > live {
		return false, nil // switched off by a deletion
	}
	mark := keptMark{gen: gen, live: live}
	var man adapters.CheckpointManifest
	mpath := filepath.Join(sdir, adapters.CheckpointManifestFile)
	if fi, err := os.Stat(mpath); err == nil {
		mark.mod, mark.size = fi.ModTime(), fi.Size()
		if w.kept[sdir] == mark {
			return true, nil
		}
		raw, err := os.ReadFile(mpath)
		if err != nil || json.Unmarshal(raw, &man) != nil {
			return false, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	rec, err := w.st.CheckpointRecordOf(ctx, m.Name, k, b, gen, i)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Not published in the current generation, and within its live prefix.
		return true, nil
	case err != nil:
		return false, err
	case man.SamplesDigest == "" || man.SamplesDigest != rec.Digest:
		return false, nil
	}
	w.kept[sdir] = mark
	return true, nil
}
