package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// riverDriver returns the River driver for the store's database: riversqlite on SQLite
// (workers poll), riverdatabasesql on PostgreSQL, over the same database/sql pool, with a
// pgx connection on which River LISTENs for new jobs.
func (s *Store) riverDriver() riverdriver.Driver[*sql.Tx] {
	if s.dialect == Postgres {
		return riverdatabasesql.NewWithPgxListener(s.db, s.listen)
	}
	return riversqlite.New(s.db)
}

// migrateRiver brings River's own tables up to date (idempotent).
func (s *Store) migrateRiver(ctx context.Context) error {
	m, err := rivermigrate.New(s.riverDriver(), &rivermigrate.Config{Logger: s.log})
	if err != nil {
		return err
	}
	var res *rivermigrate.MigrateResult
	if s.dialect == Postgres {
		// River's PostgreSQL migrations must commit one by one (a new enum value cannot be
		// used in the transaction that adds it), so several processes are serialised by a
		// session advisory lock held on a pinned connection instead.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7326002)`); err != nil {
			return err
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7326002)`)
		if res, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return err
		}
	} else {
		// One IMMEDIATE transaction: one process migrates, the others then find it done.
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			res, err = m.MigrateTx(ctx, tx, rivermigrate.DirectionUp, nil)
			return err
		})
		if err != nil {
			return err
		}
	}
	if len(res.Versions) > 0 {
		s.log.Info("river migrations applied", "count", len(res.Versions))
	}
	return nil
}

// Job is one queued job as a handler sees it.
type Job struct {
	ID   int64
	Kind string
	// Args is the JSON given to [Jobs.Enqueue].
	Args        json.RawMessage
	Attempt     int // 1 on the first run
	MaxAttempts int
}

// JobHandler runs one job. Returning an error fails this attempt; the job is retried until
// MaxAttempts, then discarded. Handlers must stop promptly when ctx is cancelled.
type JobHandler func(ctx context.Context, job Job) error

// JobInfo is a job's durable state.
type JobInfo struct {
	Job
	// State is River's job state: available, scheduled, running, retryable, completed,
	// cancelled or discarded.
	State       string
	Errors      []string
	CreatedAt   time.Time
	FinalizedAt time.Time // zero until completed, cancelled or discarded
}

// Finished reports whether the job reached a final state.
func (j *JobInfo) Finished() bool {
	switch rivertype.JobState(j.State) {
	case rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
		return true
	}
	return false
}

// JobsConfig configures [Store.NewJobs].
type JobsConfig struct {
	// Queue is the queue jobs are enqueued on and worked from (default "default").
	Queue string
	// Workers is how many jobs this process runs at once; 0 makes an enqueue-only
	// instance (a serving replica that leaves training to workers).
	Workers int
	// MaxAttempts per job (default 5).
	MaxAttempts int
	// PollInterval is how often idle workers look for new jobs (default 1 s; SQLite has
	// no LISTEN/NOTIFY).
	PollInterval time.Duration
	// RetryDelay, when set, is the fixed wait before a failed job is retried (default:
	// River's exponential backoff).
	RetryDelay time.Duration
}

// Jobs is the durable job queue (River, in the ledger database). Jobs survive crashes: a job
// enqueued is in the database. River never takes a running job back on its own (jobs have no
// timeout: a training stage may run for long); a training job whose worker died is handed back
// once its lease in the ledger has expired, or once the outcome its worker recorded in the
// ledger (and River not) is more than a lease old ([Store.RescueExpiredTrainings], which every
// training process runs), or at start by [Jobs.RecoverOrphans] on one machine.
type Jobs struct {
	store  *Store
	client *river.Client[*sql.Tx]
	cfg    JobsConfig
	log    *slog.Logger

	mu       sync.RWMutex
	handlers map[string]JobHandler
}

// riverKind is the one River job kind s3t uses; the s3t kind travels in the envelope, so
// handlers can be registered by name without a Go type per kind.
const riverKind = "s3t.job"

type envelope struct {
	JobKind string          `json:"kind"`
	Args    json.RawMessage `json:"args"`
}

func (envelope) Kind() string { return riverKind }

type dispatcher struct {
	river.WorkerDefaults[envelope]
	j *Jobs
}

func (d *dispatcher) Work(ctx context.Context, job *river.Job[envelope]) error {
	d.j.mu.RLock()
	h, ok := d.j.handlers[job.Args.JobKind]
	d.j.mu.RUnlock()
	if !ok {
		return river.JobCancel(fmt.Errorf("store: no handler for job kind %q", job.Args.JobKind))
	}
	err := h(ctx, Job{ID: job.ID, Kind: job.Args.JobKind, Args: job.Args.Args, Attempt: job.Attempt, MaxAttempts: job.MaxAttempts})
	// The handler logs its own outcome (a training job: interrupted, waiting, failed and why);
	// this says what the queue does with it. A snooze (a graceful stop, a restart on the data as
	// it is now) is a designed outcome, not a warning.
	var snooze *river.JobSnoozeError
	switch {
	case err == nil:
	case errors.As(err, &snooze):
		d.j.log.Debug("job snoozed", "job", job.ID, "kind", job.Args.JobKind, "attempt", job.Attempt, "for", snooze.Duration)
	default:
		d.j.log.Debug("job attempt ended with an error", "job", job.ID, "kind", job.Args.JobKind, "attempt", job.Attempt, "max_attempts", job.MaxAttempts, "err", err)
	}
	return err
}

type fixedRetry time.Duration

func (f fixedRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(time.Duration(f)) }

// NewJobs returns the job queue of the store. Register handlers with [Jobs.Handle], then
// call [Jobs.Start] (workers only; enqueueing works without it). [Store.Migrate] creates
// the queue's tables.
func (s *Store) NewJobs(cfg JobsConfig) (*Jobs, error) {
	if cfg.Queue == "" {
		cfg.Queue = river.QueueDefault
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	j := &Jobs{store: s, cfg: cfg, log: s.log, handlers: map[string]JobHandler{}}
	rc := &river.Config{
		Logger:            s.log,
		MaxAttempts:       cfg.MaxAttempts,
		FetchPollInterval: cfg.PollInterval,
		FetchCooldown:     min(cfg.PollInterval, 100*time.Millisecond),
		JobTimeout:        -1,
	}
	if cfg.RetryDelay > 0 {
		rc.RetryPolicy = fixedRetry(cfg.RetryDelay)
	}
	if cfg.Workers > 0 {
		workers := river.NewWorkers()
		if err := river.AddWorkerSafely(workers, &dispatcher{j: j}); err != nil {
			return nil, fmt.Errorf("store: new jobs: %w", err)
		}
		rc.Workers = workers
		rc.Queues = map[string]river.QueueConfig{cfg.Queue: {MaxWorkers: cfg.Workers}}
	}
	c, err := river.NewClient(s.riverDriver(), rc)
	if err != nil {
		return nil, fmt.Errorf("store: new jobs: %w", err)
	}
	j.client = c
	return j, nil
}

// Handle registers the handler of a job kind; a kind registered twice is an error.
func (j *Jobs) Handle(kind string, h JobHandler) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if kind == "" || h == nil {
		return fmt.Errorf("store: handle job kind %q: %w", kind, ErrInvalid)
	}
	if _, dup := j.handlers[kind]; dup {
		return fmt.Errorf("store: handle job kind %q: %w: already registered", kind, ErrConflict)
	}
	j.handlers[kind] = h
	return nil
}

// Start starts working jobs (a no-op for an enqueue-only instance). Jobs run until Stop: ctx
// ending does not stop them, since for River that is the abrupt stop that cancels the running
// jobs at once, and Stop's grace period would never apply (a SIGTERM interrupted every training
// job within 10 ms).
func (j *Jobs) Start(ctx context.Context) error {
	if j.cfg.Workers == 0 {
		return nil
	}
	if err := j.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("store: start jobs: %w", err)
	}
	return nil
}

// Stop stops fetching jobs and waits for running ones to return (until ctx ends; then
// their contexts are cancelled and Stop waits for them again).
func (j *Jobs) Stop(ctx context.Context) error {
	if j.cfg.Workers == 0 {
		return nil
	}
	err := j.client.Stop(ctx)
	if err != nil && ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = j.client.StopAndCancel(cctx)
	}
	if err != nil {
		return fmt.Errorf("store: stop jobs: %w", err)
	}
	return nil
}

// Enqueue queues a job of kind with args (marshalled to JSON) and returns its id. It is
// durable when Enqueue returns.
func (j *Jobs) Enqueue(ctx context.Context, kind string, args any) (int64, error) {
	if kind == "" {
		return 0, fmt.Errorf("store: enqueue: %w: empty kind", ErrInvalid)
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return 0, fmt.Errorf("store: enqueue %q: %w", kind, err)
	}
	res, err := j.client.Insert(ctx, envelope{JobKind: kind, Args: raw}, &river.InsertOpts{Queue: j.cfg.Queue})
	if err != nil {
		return 0, fmt.Errorf("store: enqueue %q: %w", kind, err)
	}
	return res.Job.ID, nil
}

// EnqueueTx queues a job inside tx, so that it exists exactly when tx commits.
func (j *Jobs) EnqueueTx(ctx context.Context, tx *sql.Tx, kind string, args any) (int64, error) {
	if kind == "" {
		return 0, fmt.Errorf("store: enqueue: %w: empty kind", ErrInvalid)
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return 0, fmt.Errorf("store: enqueue %q: %w", kind, err)
	}
	res, err := j.client.InsertTx(ctx, tx, envelope{JobKind: kind, Args: raw}, &river.InsertOpts{Queue: j.cfg.Queue})
	if err != nil {
		return 0, fmt.Errorf("store: enqueue %q: %w", kind, err)
	}
	return res.Job.ID, nil
}

// Snooze is what a job handler returns to run the job again after d without counting an
// attempt (a job whose lease another worker holds, or that must start over).
func Snooze(d time.Duration) error { return river.JobSnooze(d) }

// Permanent is what a job handler returns for a failure that retrying cannot fix: the job is
// cancelled, not retried.
func Permanent(err error) error { return river.JobCancel(err) }

// RecoverOrphans makes the jobs left running by a dead process available again, and releases
// the training leases that process held, at once instead of once the leases expire. Only for a
// process that knows it is the queue's one worker
// (the embedded SQLite server, which holds its data directory's lock); it returns how many
// jobs it recovered.
func (j *Jobs) RecoverOrphans(ctx context.Context) (int, error) {
	var n int64
	err := j.store.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running' AND queue = $1`, j.cfg.Queue)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `UPDATE trainings SET state = $1, holder = '', lease_until = 0, message = $2, updated_at = $3 WHERE state = $4`,
			TrainingQueued, "its process died: recovered at restart", j.store.now().UnixNano(), TrainingRunning)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: recover orphaned jobs: %w", err)
	}
	if n > 0 {
		j.log.Warn("recovered jobs left running by a previous process", "jobs", n)
	}
	return int(n), nil
}

// Queue returns the queue's name.
func (j *Jobs) Queue() string { return j.cfg.Queue }

// Depth returns how many jobs wait in the queue (available, scheduled or retryable) and how
// many run. A training job whose row a live lease holds runs, whatever River's state: a stalled
// run that finds its lease taken by a later run snoozes the job (Runner.afterLeaseLost), and River
// shows it scheduled while the later run works on it.
func (j *Jobs) Depth(ctx context.Context) (waiting, running int, err error) {
	err = j.store.db.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN state IN ('available', 'scheduled', 'retryable') AND held = 0 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state = 'running' OR (state IN ('available', 'scheduled', 'retryable') AND held = 1) THEN 1 ELSE 0 END), 0)
		FROM (SELECT j.state AS state, CASE WHEN t.state = $2 AND t.lease_until > $3 THEN 1 ELSE 0 END AS held
			FROM river_job j LEFT JOIN trainings t ON t.job_id = j.id WHERE j.queue = $1) q`,
		j.cfg.Queue, TrainingRunning, j.store.now().UnixNano()).Scan(&waiting, &running)
	if err != nil {
		return 0, 0, fmt.Errorf("store: queue depth: %w", err)
	}
	return waiting, running, nil
}

// Get returns a job's state (ErrNotFound for an unknown id).
func (j *Jobs) Get(ctx context.Context, id int64) (*JobInfo, error) {
	row, err := j.client.JobGet(ctx, id)
	if err != nil {
		return nil, jobErr("get", id, err)
	}
	return jobInfo(row)
}

// Cancel cancels a job: a queued job never runs; a running job's context is cancelled
// (when this process runs it) and it is not retried.
func (j *Jobs) Cancel(ctx context.Context, id int64) (*JobInfo, error) {
	row, err := j.client.JobCancel(ctx, id)
	if err != nil {
		return nil, jobErr("cancel", id, err)
	}
	return jobInfo(row)
}

func jobErr(op string, id int64, err error) error {
	if errors.Is(err, rivertype.ErrNotFound) {
		return fmt.Errorf("store: %s job %d: %w", op, id, ErrNotFound)
	}
	return fmt.Errorf("store: %s job %d: %w", op, id, err)
}

func jobInfo(row *rivertype.JobRow) (*JobInfo, error) {
	var env envelope
	if row.Kind == riverKind {
		if err := json.Unmarshal(row.EncodedArgs, &env); err != nil {
			return nil, fmt.Errorf("store: job %d: %w", row.ID, err)
		}
	} else {
		env.JobKind, env.Args = row.Kind, row.EncodedArgs
	}
	info := &JobInfo{
		Job:       Job{ID: row.ID, Kind: env.JobKind, Args: env.Args, Attempt: row.Attempt, MaxAttempts: row.MaxAttempts},
		State:     string(row.State),
		CreatedAt: row.CreatedAt,
	}
	if row.FinalizedAt != nil {
		info.FinalizedAt = *row.FinalizedAt
	}
	for _, e := range row.Errors {
		info.Errors = append(info.Errors, e.Error)
	}
	return info, nil
}
