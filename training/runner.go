package training

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/unlearning"
)

// JobKind is the kind of a training job on the store's queue.
const JobKind = "s3t.train"

// Defaults of Config.
const (
	DefaultLease     = 30 * time.Second
	DefaultHeartbeat = time.Second
)

// Config configures a Runner.
type Config struct {
	Store *store.Store
	Blobs *store.Blobs
	// Jobs is the queue. A Runner registers its handler on it; whether this process works
	// jobs is the queue's configuration (Workers 0: enqueue only).
	Jobs *store.Jobs
	// WorkDir holds this worker's local stage checkpoints, so that an interrupted job resumes
	// without retraining finished stages (required).
	WorkDir string
	// Holder names this worker in leases (default host:pid:random).
	Holder string
	// Lease is how long a job's lease lasts without a heartbeat (default DefaultLease);
	// Heartbeat is how often progress is written and the lease extended (DefaultHeartbeat).
	Lease     time.Duration
	Heartbeat time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// OnProgress, when set, sees every progress write (for metrics).
	OnProgress func(*store.Training)
}

// Runner queues and runs training jobs.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	engine *adapters.Engine

	mu        sync.Mutex
	active    map[int64]*activeJob
	backbones map[string]*loadedBackbone // by SHA-256

	// workMu orders the removal of a model's work folder (dropWork) with a job's claim of it
	// (claimWork): a folder is removed only while no job of the model that exists now writes
	// in it, and a job writes only in a folder that its marker gives to that model.
	workMu sync.Mutex
}

type loadedBackbone struct {
	model    *backbone.Model
	manifest *backbone.Manifest
}

// jobArgs are a training job's arguments.
type jobArgs struct {
	Model    string `json:"model"`
	Shard    int    `json:"shard"`
	Sequence int    `json:"sequence"`
	// Retrain forces a new generation even if the current one is intact.
	Retrain bool `json:"retrain,omitempty"`
	// Stale: queued because the sequence's published stages missed samples uploaded since
	// they trained. Each run checks again (store.Stale) and trains a new generation only while
	// that holds, so a run after the new one swapped in (a retry, a restart) trains nothing.
	Stale bool `json:"stale,omitempty"`
}

// errDeleted cancels a running job when a sample of its shard is deleted: the stages it is
// training may have seen it, so it starts over on the remaining data.
var errDeleted = errors.New("a sample of this shard was deleted")

// errLeaseLost cancels a job whose lease was taken by another worker or which was cancelled.
var errLeaseLost = errors.New("lease lost or training cancelled")

// errModelDeleted cancels a running job when its model is deleted: nothing it trains may stay.
var errModelDeleted = errors.New("the model was deleted")

// errJobGone is what acquire returns for a job whose training row is gone with its model.
var errJobGone = errors.New("training job of a deleted model")

// New returns a Runner and registers its job handler and its purger (which stops running jobs
// of a shard a deletion hit and erases the local and published checkpoints that saw the
// deleted sample).
func New(cfg Config) (*Runner, error) {
	if cfg.Store == nil || cfg.Blobs == nil || cfg.Jobs == nil || cfg.WorkDir == "" {
		return nil, errors.New("training: Config.Store, Blobs, Jobs and WorkDir are required")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		cfg.Holder = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	eng, err := adapters.NewEngine()
	if err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, engine: eng, active: map[int64]*activeJob{}, backbones: map[string]*loadedBackbone{}}
	if err := cfg.Jobs.Handle(JobKind, r.work); err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	cfg.Store.OnPurge(r.purge)
	return r, nil
}

// Start queues the training jobs a model needs: one per (shard, sequence) that is not fully
// trained, or whose live prefix was cut, or whose published stages miss samples uploaded since
// they trained (a retraining on the data as it is now: store.Stale); with force, every sequence
// is retrained. Sequences with a training job still queued or running are
// skipped. It returns the new jobs' ids (none when nothing needs training).
func (r *Runner) Start(ctx context.Context, model string, force bool) ([]int64, error) {
	return r.start(ctx, model, force, nil)
}

// Retrain queues, like Start, the training of the given shards only: the retraining policy's
// call when those shards fell below it.
func (r *Runner) Retrain(ctx context.Context, model string, shards []int) ([]int64, error) {
	if len(shards) == 0 {
		return nil, nil
	}
	return r.start(ctx, model, false, shards)
}

func (r *Runner) start(ctx context.Context, model string, force bool, only []int) ([]int64, error) {
	m, err := r.cfg.Store.GetModel(ctx, model)
	if err != nil {
		return nil, err
	}
	if m.Samples == 0 {
		return nil, fmt.Errorf("training: model %q: %w: no samples uploaded", model, store.ErrInvalid)
	}
	counts, err := r.cfg.Store.UnitCounts(ctx, model)
	if err != nil {
		return nil, err
	}
	stale, err := r.cfg.Store.Stale(ctx, m)
	if err != nil {
		return nil, err
	}
	var units []store.TrainUnit
	// Sequences that cannot be retrained: their first slice lost every sample to deletions.
	var empty []string
	for k := range m.Shards {
		if only != nil && !slices.Contains(only, k) {
			continue
		}
		for b := range m.Sequences[k] {
			// A sequence whose stages were cut, or whose published stages did not see every
			// sample their slices hold now (uploaded after or while they trained), is retrained
			// on the data as it is: a new generation, swapped in once complete.
			retrain := force || m.Live[k][b] < m.Slices || stale[k][b]
			if !retrain && m.Trained[k][b] == m.Slices {
				continue
			}
			if !retrain {
				// A first training: every stage needs data of its own, refused up front.
				if j := slices.Index(counts[k], 0); j >= 0 {
					return nil, fmt.Errorf("training: model %q: %w: shard %d slice %d holds no samples (every stage needs data: upload more samples, or use fewer shards or slices)",
						model, store.ErrInvalid, k, j)
				}
			} else if first := m.Sequences[k][b][0]; counts[k][first] == 0 {
				// Deletions emptied the sequence's first slice: its stage 1 has no data. Stage i
				// trains on slices sigma(1..i), so a slice emptied later in the order is fine,
				// and the shard's other sequences are retrained without this one.
				empty = append(empty, fmt.Sprintf("shard %d sequence %d (its first slice %d holds no samples)", k, b, first))
				continue
			}
			units = append(units, store.TrainUnit{Shard: k, Sequence: b, Retrain: retrain})
		}
	}
	if len(empty) > 0 {
		if len(units) == 0 {
			return nil, fmt.Errorf("training: model %q: %w: cannot retrain %s: deletions emptied it; upload more samples",
				model, store.ErrInvalid, strings.Join(empty, ", "))
		}
		r.log.Warn("training: sequences left out, deletions emptied their first slice; upload more samples", "model", model, "sequences", strings.Join(empty, ", "))
	}
	if len(units) == 0 {
		return nil, nil
	}
	ids, err := r.cfg.Store.EnqueueTraining(ctx, r.cfg.Jobs, model, JobKind, units, func(u store.TrainUnit) any {
		return jobArgs{Model: model, Shard: u.Shard, Sequence: u.Sequence, Retrain: force, Stale: stale[u.Shard][u.Sequence]}
	})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	r.log.Info("training queued", "model", model, "jobs", len(ids))
	return ids, nil
}

// Cancel cancels a model's unfinished training jobs and returns their ids. Finished stages stay
// published; a cancelled sequence can be trained again with Start.
func (r *Runner) Cancel(ctx context.Context, model string) ([]int64, error) {
	ts, err := r.cfg.Store.Trainings(ctx, model)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, t := range ts {
		if t.State == store.TrainingDone || t.State == store.TrainingCancelled || t.State == store.TrainingFailed {
			continue
		}
		if err := r.cfg.Store.SetTrainingState(ctx, t.JobID, store.TrainingCancelled, "cancelled by request"); err != nil {
			return ids, err
		}
		if _, err := r.cfg.Jobs.Cancel(ctx, t.JobID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return ids, err
		}
		r.mu.Lock()
		if a := r.active[t.JobID]; a != nil {
			a.cancel(errLeaseLost)
		}
		r.mu.Unlock()
		ids = append(ids, t.JobID)
	}
	if len(ids) > 0 {
		r.log.Info("training cancelled", "model", model, "jobs", len(ids))
	}
	return ids, nil
}

// activeJob is a job running in this process.
type activeJob struct {
	model  string
	shard  int
	cancel context.CancelCauseFunc
	// stopped is closed once the job writes nothing more into the work folder (nil in tests
	// that fake a job).
	stopped chan struct{}
	// created is the CreatedAt of the model the job read (guarded by Runner.mu; zero until it
	// read it): a model created again under the name is another model.
	created time.Time

	mu       sync.Mutex
	row      store.Training
	snap     int64 // the ledger version the job read its data at; 0 until then
	started  time.Time
	work     int // steps weighted by stage, of the stages this run trains
	workDone int

	// purged are the slices of the shard whose deletions' purges cancelled the job while it
	// ran (guarded by Runner.mu): it may still have written a stage that saw the deleted sample
	// after the purge erased the local stages, so it erases them again once it has stopped.
	purged []int
}

func (a *activeJob) snapshot() store.Training {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.row
}

// work runs one training job.
func (r *Runner) work(ctx context.Context, job store.Job) error {
	var args jobArgs
	if err := json.Unmarshal(job.Args, &args); err != nil {
		return fmt.Errorf("training job %d: bad arguments: %w", job.ID, err)
	}
	// The shard trainer's lines name the shard and sequence themselves: it gets jobLog.
	jobLog := r.log.With("job", job.ID, "model", args.Model)
	log := jobLog.With("shard", args.Shard, "sequence", args.Sequence)
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a := &activeJob{model: args.Model, shard: args.Shard, cancel: cancel, started: time.Now(), stopped: make(chan struct{})}
	a.row = store.Training{JobID: job.ID, Model: args.Model, Shard: args.Shard, Sequence: args.Sequence, State: store.TrainingRunning}
	stop := sync.OnceFunc(func() { close(a.stopped) })
	defer stop()
	// One run of a job per process: a job whose lease expired while it still ran (a long pause)
	// is handed out again (store.RescueExpiredTrainings), possibly to this process, and the lease
	// (held by this process) would not tell the two runs apart, so the second one's sweep could
	// remove the first one's blobs.
	r.mu.Lock()
	if r.active[job.ID] != nil {
		r.mu.Unlock()
		log.Info("training job already running in this process; waiting")
		return store.Snooze(r.cfg.Lease)
	}
	r.active[job.ID] = a
	r.mu.Unlock()
	if ok, ret := r.acquire(ctx, job.ID, log); !ok {
		r.mu.Lock()
		delete(r.active, job.ID)
		r.mu.Unlock()
		stop()
		if errors.Is(ret, errJobGone) {
			// An earlier run of the job may have left stages in the work folder (it failed
			// to publish them once the model was gone): they go too, also from the folder of
			// a model created again under the name since (their owner is the deleted one).
			if _, err := r.dropWork(context.WithoutCancel(ctx), args.Model, nil, r.log.With("job", job.ID)); err != nil {
				log.Warn("erase the local stages of a deleted model (left to the next sweep)", "err", err)
			}
			return nil
		}
		if ret != nil && !r.ledgerAnswers(ctx) {
			log.Warn("training job waits: the ledger does not answer", "err", ret)
			return store.Snooze(ledgerRetry) // an outage is not the job's attempt
		}
		return ret
	}
	defer func() { // after train returned: the job writes no more local stages
		r.mu.Lock()
		delete(r.active, job.ID)
		purged := a.purged
		r.mu.Unlock()
		r.erasePurged(context.WithoutCancel(ctx), args.Model, args.Shard, purged, log)
	}()
	hbDone := make(chan struct{})
	go r.heartbeat(jctx, a, hbDone)
	err := r.train(jctx, args, a, log, jobLog)
	cancel(nil)
	<-hbDone
	stop()

	final := a.snapshot()
	wctx := context.WithoutCancel(ctx)
	cause := context.Cause(jctx)
	if r.jobGone(wctx, job.ID) {
		// The model was deleted while the job ran, or right after it finished (wherever that
		// was seen: a purge of this process cancelled the job, its ledger reads or its
		// publishing found the model gone, its heartbeat its lease gone, or nothing did, the
		// deletion committed elsewhere). Nothing it trained may stay, and there is nothing to
		// retry: a failed attempt here used to leave its last stage in the work folder.
		r.mu.Lock()
		created := a.created
		r.mu.Unlock()
		if _, derr := r.dropWork(wctx, args.Model, &jobWork{created: created, shard: args.Shard, sequence: args.Sequence}, r.log.With("job", job.ID)); derr != nil {
			log.Warn("erase the local stages of a deleted model (left to the next sweep)", "err", derr)
		}
		log.Info("training job stopped: its model was deleted", "err", err)
		return nil
	}
	switch {
	case err == nil:
		final.State, final.Message, final.ETA = store.TrainingDone, "", 0
		// Done: at the last stage, every step taken, also when this run found every stage
		// trained already (it took no step, and its row said stage 0).
		final.Stage, final.Step = final.Stages, final.Steps
		if uerr := r.cfg.Store.UpdateTraining(wctx, &final, r.cfg.Holder, 0); uerr != nil {
			log.Warn("record training done", "err", uerr)
		}
		log.Info("training job done")
		return nil
	case errors.Is(cause, errDeleted):
		log.Info("training job restarts after a deletion in its shard")
		return r.requeue(wctx, &final, "a sample of this shard was deleted: starting over on the remaining data", time.Second, log)
	case errors.Is(cause, errModelDeleted):
		// A purge of an earlier model of the name stopped this job of the one created since
		// (it had not read its model yet): it resumes.
		log.Info("training job restarts after the deletion of an earlier model of its name")
		return r.requeue(wctx, &final, "stopped by the deletion of an earlier model of the name: resumes", time.Second, log)
	case errors.Is(cause, errLeaseLost), errors.Is(err, errLeaseLost):
		return r.afterLeaseLost(wctx, job.ID, log)
	case ctx.Err() != nil:
		// Shutdown or a cancellation from the queue: finished stages are published. A snooze
		// does not count as one of the job's attempts, so restarts never use them up; the next
		// start (or another worker) resumes the job after the finished stages. A job cancelled
		// through the queue stays cancelled whatever this returns (River records the
		// cancellation instead).
		log.Info("training job interrupted", "cause", context.Cause(ctx))
		return r.requeue(wctx, &final, "interrupted: "+context.Cause(ctx).Error()+"; resumes after its finished stages", time.Second, log)
	case errors.Is(err, ort.ErrLibrary):
		// This process cannot run ONNX Runtime (s3t serve said so at start, and is not ready):
		// no attempt can succeed until it starts with a library that loads, so none is used up;
		// the job waits, queued.
		log.Error("training job waits: ONNX Runtime cannot be loaded", "err", err)
		return r.requeue(wctx, &final, "waiting: ONNX Runtime cannot be loaded in this process; it trains once the process starts with a library that loads: "+err.Error(), libraryRetry, log)
	case errors.Is(err, adapters.ErrInvalidArgument), errors.Is(err, adapters.ErrUnsupported), errors.Is(err, adapters.ErrDiverged),
		errors.Is(err, ErrInvalidSpec), errors.Is(err, store.ErrInvalid):
		// Retrying cannot fix the data or the configuration, nor an operator of a PEFT plugin's
		// subgraphs that the trainer cannot import (such a job used to fail its five attempts
		// before it said so).
		final.State, final.Message = store.TrainingFailed, err.Error()
		if uerr := r.cfg.Store.UpdateTraining(wctx, &final, r.cfg.Holder, 0); uerr != nil {
			log.Warn("record training failure", "err", uerr)
		}
		log.Error("training job failed for good", "err", err)
		return store.Permanent(err)
	case !r.ledgerAnswers(wctx):
		// Most likely the failure was the ledger's (a database restart): not the job's, so
		// it uses up none of its attempts (each outage cost every running job one).
		log.Warn("training job waits: the ledger does not answer", "err", err)
		return r.requeue(wctx, &final, "waiting: the ledger did not answer: "+err.Error(), ledgerRetry, log)
	default:
		final.State, final.Message = store.TrainingQueued, fmt.Sprintf("attempt %d of %d failed, retrying: %v", job.Attempt, job.MaxAttempts, err)
		if job.Attempt >= job.MaxAttempts {
			final.State, final.Message = store.TrainingFailed, fmt.Sprintf("failed after %d attempts: %v", job.Attempt, err)
		}
		if uerr := r.cfg.Store.UpdateTraining(wctx, &final, r.cfg.Holder, 0); uerr != nil {
			log.Warn("record training failure", "err", uerr)
		}
		log.Error("training job attempt failed", "attempt", job.Attempt, "max_attempts", job.MaxAttempts, "err", err)
		return err
	}
}

// acquire takes the lease of a job for this process. When it cannot, it returns false and what
// the run returns instead: errJobGone when the job's model was deleted (the run erases what the
// work folder holds of it, then returns nil), nil when there is nothing to do (the job was
// cancelled or is finished), a snooze while another run holds the job, or the error.
func (r *Runner) acquire(ctx context.Context, jobID int64, log *slog.Logger) (bool, error) {
	ok, err := r.cfg.Store.AcquireTraining(ctx, jobID, r.cfg.Holder, r.cfg.Lease)
	if errors.Is(err, store.ErrNotFound) {
		log.Info("training job of a deleted model: nothing to do")
		return false, errJobGone
	}
	if err != nil {
		return false, err
	}
	if ok {
		return true, nil
	}
	row, err := r.cfg.Store.GetTraining(ctx, jobID)
	if err != nil {
		return false, err
	}
	switch row.State {
	case store.TrainingCancelled:
		return false, nil
	case store.TrainingDone, store.TrainingFailed:
		// A run handed the job after another run of it finished (see afterLeaseLost).
		log.Info("training job already finished", "state", row.State)
		return false, nil
	}
	log.Info("training job held by another worker; waiting", "holder", row.Holder)
	return false, store.Snooze(r.cfg.Lease)
}

// afterLeaseLost is what a run of a job returns once its lease is gone. A cancelled job, or one
// whose model was deleted, is over. Otherwise the lease went to another run of the same job:
// store.RescueExpiredTrainings handed the job out again while this run stalled. The queue tells
// the two runs apart no better than the lease does, and records whichever outcome it gets while
// the job counts as running: a nil here would mark the job completed under the other run, and a
// failure of that run would then never be retried, nor a restart after a deletion happen. A
// snooze leaves the outcome to a later run instead: that run waits while the other one holds the
// lease, then does what is left, nothing when the other run finished (AcquireTraining refuses a
// finished job).
func (r *Runner) afterLeaseLost(ctx context.Context, jobID int64, log *slog.Logger) error {
	row, err := r.cfg.Store.GetTraining(ctx, jobID)
	if errors.Is(err, store.ErrNotFound) || err == nil && row.State == store.TrainingCancelled {
		log.Info("training job stopped: cancelled, or its model deleted")
		return nil
	}
	log.Warn("training job stopped: its lease went to another run of it; a later run takes over what is left")
	return store.Snooze(r.cfg.Lease)
}

// heartbeat writes the job's progress and extends its lease until ctx ends.
func (r *Runner) heartbeat(ctx context.Context, a *activeJob, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		row := a.snapshot()
		err := r.cfg.Store.UpdateTraining(ctx, &row, r.cfg.Holder, r.cfg.Lease)
		switch {
		case errors.Is(err, store.ErrStale):
			a.cancel(errLeaseLost)
			return
		case err != nil && ctx.Err() == nil:
			r.log.Warn("training heartbeat", "job", row.JobID, "err", err)
		}
		if r.cfg.OnProgress != nil {
			r.cfg.OnProgress(&row)
		}
		// A deletion committed elsewhere (another replica or machine) in this job's shard
		// since it read its data: what it trains now may have seen the sample, and the
		// ledger would refuse it. Start over on the remaining data.
		a.mu.Lock()
		snap := a.snap
		a.mu.Unlock()
		if snap > 0 {
			hit, err := r.cfg.Store.DeletedSince(ctx, a.model, a.shard, snap)
			if err == nil && hit {
				a.cancel(errDeleted)
				return
			}
		}
	}
}

// train trains the stages a job must publish.
func (r *Runner) train(ctx context.Context, args jobArgs, a *activeJob, log, trainerLog *slog.Logger) error {
	st := r.cfg.Store
	m, err := st.GetModel(ctx, args.Model)
	if err != nil {
		return err
	}
	r.mu.Lock()
	a.created = m.CreatedAt
	r.mu.Unlock()
	if n, err := r.sweep(ctx, args, a.row.JobID); err != nil {
		log.Warn("remove the unrecorded checkpoints of earlier runs", "err", err)
	} else if n > 0 {
		log.Info("removed the unrecorded checkpoints of earlier runs", "blobs", n)
	}
	rec, err := DecodeRecord(m)
	if err != nil {
		return err
	}
	force := args.Retrain
	if !force && args.Stale {
		stale, err := st.Stale(ctx, m)
		if err != nil {
			return err
		}
		force = stale[args.Shard][args.Sequence]
	}
	tgt, err := st.Target(ctx, args.Model, args.Shard, args.Sequence, force)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.row.Retrain, a.row.Stages, a.snap = tgt.Retrain, m.Slices, tgt.Snapshot
	a.mu.Unlock()
	if tgt.From > m.Slices {
		log.Info("every stage is published already")
		return nil
	}
	// Before the job writes into the work folder: it must be this model's.
	if err := r.claimWork(m, log); err != nil {
		return err
	}
	data, err := r.loadShard(ctx, args.Model, args.Shard, m.Slices, rec)
	if err != nil {
		return err
	}
	bb, err := r.backbone(ctx, rec)
	if err != nil {
		return err
	}
	seq := m.Sequences[args.Shard][args.Sequence]
	if !tgt.Retrain && tgt.From > 1 {
		// Resuming a sequence another worker started: its published stages are the ones to
		// build on; the trainer loads them when they match the data, instead of training them
		// again.
		if err := r.fetchPublished(ctx, args, tgt); err != nil {
			log.Warn("fetch published stages; they will be trained again", "err", err)
		}
	}
	digests := make([]string, m.Slices)
	var pubErr error
	trainer, err := r.engine.NewShardTrainer(adapters.ShardConfig{
		Backbone: bb.model, Manifest: bb.manifest,
		PEFT:         adapters.Planned{Plugin: rec.PEFT.Type, Plan: rec.Plan},
		Slices:       m.Slices,
		Head:         adapters.Head{Input: rec.HeadInput, Classes: len(rec.Labels)},
		Epochs:       rec.Training.Epochs,
		Optimizer:    adapters.AdamW{LearningRate: rec.Training.LearningRate},
		BatchSize:    rec.Training.BatchSize,
		MicroBatches: microBatches,
		Seed:         uint64(rec.Seed),
		Dir:          r.workDir(args.Model),
		Owner:        ModelOwner(m),
		Logger:       trainerLog,
		Progress:     func(p adapters.StageProgress) { r.progress(a, p) },
		StageDone: func(c *adapters.Checkpoint, trained bool) {
			if pubErr != nil {
				return
			}
			digests[c.Manifest.Stage-1] = c.Manifest.SamplesDigest
			if c.Manifest.Stage < tgt.From {
				return
			}
			if pubErr = r.publish(ctx, args, a.row.JobID, tgt, c); pubErr != nil {
				a.cancel(pubErr)
			}
		},
	})
	if err != nil {
		return err
	}
	defer trainer.Close()
	// The progress total: every stage this job trains, weighted by its depth.
	total, work := 0, 0
	n := 0
	for i, j := range seq {
		n += len(data[j])
		if i+1 >= tgt.From {
			steps := trainer.StageSteps(n)
			total += steps
			work += steps * (i + 1)
		}
	}
	a.mu.Lock()
	a.row.Steps, a.work, a.started = int64(total), work, time.Now()
	a.mu.Unlock()
	log.Info("training", "gen", tgt.Gen, "retrain", tgt.Retrain, "from_stage", tgt.From, "samples", n, "steps", total)
	if _, err := trainer.TrainSequence(ctx, args.Shard, args.Sequence, seq, data, m.Slices); err != nil {
		if pubErr != nil {
			return pubErr
		}
		return err
	}
	if pubErr != nil {
		return pubErr
	}
	if tgt.Retrain {
		swap, err := st.SwapGeneration(ctx, args.Model, args.Shard, args.Sequence, tgt.Gen, tgt.Snapshot, digests)
		if err != nil {
			return err
		}
		for _, k := range swap.Replaced {
			if err := r.cfg.Blobs.Delete(ctx, k); err != nil {
				log.Warn("delete a replaced checkpoint", "key", k, "err", err)
			}
		}
	}
	return nil
}

// publish writes a stage's checkpoint blob under a key of its own and records it. A blob whose
// record fails, for any reason, is removed again: it is this write's alone (see CheckpointKey),
// and one the ledger refused saw a sample deleted meanwhile.
func (r *Runner) publish(ctx context.Context, args jobArgs, job int64, tgt *store.TrainingTarget, c *adapters.Checkpoint) error {
	b, err := adapters.EncodeCheckpoint(c)
	if err != nil {
		return err
	}
	key := CheckpointKey(args.Model, args.Shard, args.Sequence, tgt.Gen, c.Manifest.Stage, job, tgt.Snapshot)
	if err := r.cfg.Blobs.Put(ctx, key, b); err != nil {
		return err
	}
	err = r.cfg.Store.PublishCheckpoint(ctx, store.CheckpointRecord{
		Model: args.Model, Shard: args.Shard, Sequence: args.Sequence, Gen: tgt.Gen, Stage: c.Manifest.Stage,
		BlobKey: key, Samples: int64(c.Manifest.Samples), Digest: c.Manifest.SamplesDigest, Snapshot: tgt.Snapshot,
		Job: job, Holder: r.cfg.Holder,
	})
	if err != nil {
		if derr := r.cfg.Blobs.Delete(context.WithoutCancel(ctx), key); derr != nil {
			r.log.Warn("remove an unrecorded checkpoint", "key", key, "err", derr)
		}
		if errors.Is(err, store.ErrNotHolder) {
			return fmt.Errorf("%w: %w", errLeaseLost, err)
		}
		if errors.Is(err, store.ErrStale) {
			return fmt.Errorf("%w: %w", errDeleted, err)
		}
		return err
	}
	r.log.Info("checkpoint published", "model", args.Model, "shard", args.Shard, "sequence", args.Sequence,
		"gen", tgt.Gen, "stage", c.Manifest.Stage, "samples", c.Manifest.Samples)
	return nil
}

// sweep removes the checkpoint blobs of the job's sequence that no ledger record names, except
// those another unfinished job is writing, and returns how many it removed. Those are what
// earlier runs left when they stopped between writing a blob and recording it, or failed to
// remove one the ledger refused; such a blob can hold what a sample deleted since taught (the
// ledger refuses exactly those), and nothing will ever record or serve it. The blobs are listed
// first, then the unfinished jobs, then the records: a blob written after the listing is not
// seen, one of a job unfinished at the second read is kept, and a job finished before it
// recorded its blobs before the third.
func (r *Runner) sweep(ctx context.Context, args jobArgs, job int64) (int, error) {
	keys, err := r.cfg.Blobs.List(ctx, SequencePrefix(args.Model, args.Shard, args.Sequence))
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	unfinished, err := r.cfg.Store.UnfinishedTrainings(ctx, args.Model)
	if err != nil {
		return 0, err
	}
	live := map[int64]bool{}
	for _, t := range unfinished {
		live[t.JobID] = t.JobID != job
	}
	names, err := r.cfg.Store.CheckpointKeys(ctx, args.Model)
	if err != nil {
		return 0, err
	}
	recorded := make(map[string]bool, len(names))
	for _, k := range names {
		recorded[k] = true
	}
	n := 0
	for _, k := range keys {
		if recorded[k] {
			continue
		}
		if j, ok := CheckpointJob(k); ok && live[j] {
			continue
		}
		if err := r.cfg.Blobs.Delete(ctx, k); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// fetchPublished writes the published checkpoints of stages 1..From-1 of the job's sequence
// into the local work folder where it has none.
func (r *Runner) fetchPublished(ctx context.Context, args jobArgs, tgt *store.TrainingTarget) error {
	for stage := 1; stage < tgt.From; stage++ {
		dir := adapters.CheckpointDir(r.workDir(args.Model), args.Shard, args.Sequence, stage)
		if _, err := adapters.LoadCheckpoint(dir); err == nil {
			continue
		}
		rec, err := r.cfg.Store.CheckpointRecordOf(ctx, args.Model, args.Shard, args.Sequence, tgt.Gen, stage)
		if err != nil {
			return err
		}
		b, err := r.cfg.Blobs.Get(ctx, rec.BlobKey)
		if err != nil {
			return err
		}
		c, err := adapters.DecodeCheckpoint(b)
		if err != nil {
			return err
		}
		if err := adapters.SaveCheckpoint(dir, c); err != nil {
			return err
		}
	}
	return nil
}

// etaAfter is how long a job runs before it estimates its time left: its first steps also pay
// for computing the trunk activations of its data and for compiling the training graphs, and an
// estimate from them alone ran 5 to 10 times over (make demo showed "ETA 2m1s" for a second,
// then 16 s). Until then the job's ETA is 0, "not known yet".
const etaAfter = time.Second

// progress records one training step.
func (r *Runner) progress(a *activeJob, p adapters.StageProgress) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.row.Stage, a.row.Loss, a.row.Rate = p.Stage, p.Loss, p.ExamplesPerSecond
	a.row.Step++
	a.workDone += p.Stage
	if el := time.Since(a.started); el >= etaAfter && a.workDone > 0 && a.workDone < a.work {
		a.row.ETA = (el / time.Duration(a.workDone) * time.Duration(a.work-a.workDone)).Round(time.Second)
	} else {
		a.row.ETA = 0
	}
}

// workDir is the local folder of a model's stage checkpoints.
func (r *Runner) workDir(model string) string {
	return filepath.Join(r.cfg.WorkDir, "models", model)
}

// loadShard reads the samples of a shard, slice by slice.
func (r *Runner) loadShard(ctx context.Context, model string, shard, L int, rec *Record) ([][]adapters.Example, error) {
	const page = 1000
	out := make([][]adapters.Example, L)
	size := rec.InputSize()
	for j := range L {
		after := ""
		for {
			smps, err := r.cfg.Store.ListSamples(ctx, model, unlearning.Placement{Shard: shard, Slice: j}, after, page)
			if err != nil {
				return nil, err
			}
			for _, s := range smps {
				in, err := DecodeInput(s.Input, size)
				if err != nil {
					return nil, fmt.Errorf("sample %q: %w", s.ID, err)
				}
				label := rec.Label(s.Label)
				if label < 0 {
					return nil, fmt.Errorf("sample %q: label %q is not one of the model's", s.ID, s.Label)
				}
				out[j] = append(out[j], adapters.Example{ID: s.ID, Input: in, Label: label})
			}
			if len(smps) < page {
				break
			}
			after = smps[len(smps)-1].ID
		}
	}
	return out, nil
}

// backbone loads (once per process) the backbone a record pins.
func (r *Runner) backbone(ctx context.Context, rec *Record) (*loadedBackbone, error) {
	r.mu.Lock()
	bb := r.backbones[rec.BackboneSHA256]
	r.mu.Unlock()
	if bb != nil {
		return bb, nil
	}
	b, err := r.cfg.Blobs.Get(ctx, BackboneKey(rec.Backbone))
	if err != nil {
		return nil, fmt.Errorf("backbone %q: %w", rec.Backbone, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != rec.BackboneSHA256 {
		return nil, fmt.Errorf("backbone %q: its bytes changed since the model was created (SHA-256 %x, model pins %s)", rec.Backbone, sum, rec.BackboneSHA256)
	}
	m, err := backbone.LoadBytes(b)
	if err != nil {
		return nil, err
	}
	man, err := backbone.DetectManifest(m)
	if err != nil {
		return nil, err
	}
	bb = &loadedBackbone{model: m, manifest: man}
	r.mu.Lock()
	r.backbones[rec.BackboneSHA256] = bb
	r.mu.Unlock()
	return bb, nil
}

// purge runs after a deletion commits: it stops this process's running jobs of the shard the
// deletion hit (they restart on the remaining data) and erases the local and published
// checkpoints that saw the deleted sample, in every generation: for each sequence of the shard,
// the stages at and above the deleted slice's position. A whole-model purge stops this
// process's running jobs of the model and waits for them (stopModelJobs), then removes the
// model's local folder (dropWork) and blobs.
func (r *Runner) purge(ctx context.Context, p store.Purge) error {
	if p.SampleID == "" {
		r.stopModelJobs(ctx, p)
		if _, err := r.dropWork(ctx, p.Model, nil, r.log); err != nil {
			return err
		}
		keys, err := r.cfg.Blobs.List(ctx, ModelPrefix(p.Model))
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := r.purgeBlob(ctx, k, p); err != nil {
				return err
			}
		}
		// The emptied folders name the model: they go too, unless a model was created again
		// under the name meanwhile, whose writes may need them (and whose folders they are).
		if _, err := r.cfg.Store.GetModel(ctx, p.Model); !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return r.cfg.Blobs.PruneEmpty(ModelPrefix(p.Model))
	}
	r.mu.Lock()
	for _, a := range r.active {
		if a.model == p.Model && a.shard == p.Shard {
			a.cancel(errDeleted)
			a.purged = append(a.purged, p.Slice)
		}
	}
	r.mu.Unlock()
	m, err := r.cfg.Store.GetModel(ctx, p.Model)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the model is gone; its whole-model purge erases the rest
	}
	if err != nil {
		return err
	}
	if p.Shard < 0 || p.Shard >= m.Shards {
		return nil
	}
	if err := r.eraseLocal(m, p.Shard, p.Slice); err != nil {
		return err
	}
	for b, seq := range m.Sequences[p.Shard] {
		pos := slices.Index(seq, p.Slice) + 1
		if pos < 1 {
			continue
		}
		keys, err := r.cfg.Blobs.List(ctx, SequencePrefix(p.Model, p.Shard, b))
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, _, _, stage, ok := ParseCheckpointKey(p.Model, k); !ok || stage < pos {
				continue
			}
			if err := r.purgeBlob(ctx, k, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// eraseLocal erases this process's local stage checkpoints of the shard that may have seen a
// sample of slice: in each sequence, the stages at and above the slice's position.
func (r *Runner) eraseLocal(m *store.Model, shard, slice int) error {
	for b, seq := range m.Sequences[shard] {
		pos := slices.Index(seq, slice) + 1
		if pos < 1 {
			continue
		}
		for stage := pos; stage <= m.Slices; stage++ {
			if err := os.RemoveAll(adapters.CheckpointDir(r.workDir(m.Name), shard, b, stage)); err != nil {
				return err
			}
		}
	}
	return nil
}

// erasePurged runs eraseLocal again for the purges that cancelled a job, once the job stopped.
func (r *Runner) erasePurged(ctx context.Context, model string, shard int, purged []int, log *slog.Logger) {
	if len(purged) == 0 {
		return
	}
	m, err := r.cfg.Store.GetModel(ctx, model)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) { // a deleted model's purge erased its whole folder
			log.Warn("erase the stages a cancelling purge covers", "err", err)
		}
		return
	}
	for _, s := range purged {
		if err := r.eraseLocal(m, shard, s); err != nil {
			log.Warn("erase the stages a cancelling purge covers", "slice", s, "err", err)
		}
	}
}

// requeue records a job as queued again with msg and snoozes it for d: the queue runs it
// again after d without counting the run as one of its attempts.
func (r *Runner) requeue(ctx context.Context, final *store.Training, msg string, d time.Duration, log *slog.Logger) error {
	final.State, final.Message = store.TrainingQueued, msg
	switch err := r.cfg.Store.UpdateTraining(ctx, final, r.cfg.Holder, 0); {
	case errors.Is(err, store.ErrStale):
		// Not a fault: cancelling the job (s3t models cancel) ends its lease too.
		log.Info("training job not recorded as queued again: it was cancelled, or another run holds it", "reason", msg)
	case err != nil:
		log.Warn("record the training job queued again", "err", err)
	}
	return store.Snooze(d)
}

// ledgerRetry is how long a training job whose run failed while the ledger did not answer
// waits before it runs again (a variable for tests).
var ledgerRetry = 5 * time.Second

// ledgerAnswers reports whether the ledger answers a read within 2 s.
func (r *Runner) ledgerAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return r.cfg.Store.Ping(ctx) == nil
}

// libraryRetry is how long a training job that found ONNX Runtime unloadable waits before it
// tries again (a variable for tests).
var libraryRetry = time.Minute

// purgeStopWait bounds how long a whole-model purge waits for this process's jobs of the model
// to stop writing. A job checks its context between training steps and batches, but a single
// call into ONNX Runtime or the trainer (the trunk activations of a large shard) runs to its end
// first; a job still running when the wait ends erases the model's folder itself once it stops
// (work, dropWork), as a job cancelled by a sample's purge erases its stages again
// (erasePurged). A variable for tests.
var purgeStopWait = 10 * time.Second

// stopModelJobs cancels this process's running jobs of a deleted model and waits, up to
// purgeStopWait (or ctx), for them to stop writing into its work folder. Jobs of a model
// created again under the name after the deletion are left alone.
func (r *Runner) stopModelJobs(ctx context.Context, p store.Purge) {
	var stopping []chan struct{}
	r.mu.Lock()
	for _, a := range r.active {
		if a.model != p.Model || !a.created.IsZero() && a.created.After(p.Created) {
			continue
		}
		a.cancel(errModelDeleted)
		if a.stopped != nil {
			stopping = append(stopping, a.stopped)
		}
	}
	r.mu.Unlock()
	if len(stopping) == 0 {
		return
	}
	t := time.NewTimer(purgeStopWait)
	defer t.Stop()
	for _, c := range stopping {
		select {
		case <-c:
		case <-t.C:
			r.log.Warn("training jobs of a deleted model are still running; each erases the model's local stages once it stops", "model", p.Model)
			return
		case <-ctx.Done():
			return
		}
	}
}

// jobGone says whether a job's training row is gone: only the deletion of its model removes
// it (a model created again under the name has other jobs).
func (r *Runner) jobGone(ctx context.Context, jobID int64) bool {
	_, err := r.cfg.Store.GetTraining(ctx, jobID)
	return errors.Is(err, store.ErrNotFound)
}

// workMarkerFile, in a model's work folder, names the model whose stages the folder holds: its
// creation time, which tells it from a model created again under the same name.
const workMarkerFile = "model.json"

type workMarker struct {
	Model string `json:"model"`
	// Created is the model's CreatedAt in Unix nanoseconds (what the ledger stores).
	Created int64 `json:"created_unix_nano"`
}

// ownsWork says whether a model's work folder is that model's: its marker names it.
func (r *Runner) ownsWork(m *store.Model) bool {
	b, err := os.ReadFile(filepath.Join(r.workDir(m.Name), workMarkerFile))
	if err != nil {
		return false
	}
	var mk workMarker
	return json.Unmarshal(b, &mk) == nil && mk.Model == m.Name && mk.Created == m.CreatedAt.UnixNano()
}

// claimWork makes a model's work folder the model's before a job of it writes there: a folder
// another model of the name left (deleted, then created again), or one without a marker (left
// by a job that went on writing after its model's folder was removed), is erased first.
func (r *Runner) claimWork(m *store.Model, log *slog.Logger) error {
	r.workMu.Lock()
	defer r.workMu.Unlock()
	if r.ownsWork(m) {
		return nil
	}
	dir := r.workDir(m.Name)
	if _, err := os.Lstat(dir); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("training: erase an earlier model's local stages: %w", err)
		}
		log.Info("erased local stages that are not this model's (an earlier model of the name)", "model", m.Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("training: work folder: %w", err)
	}
	b, _ := json.Marshal(workMarker{Model: m.Name, Created: m.CreatedAt.UnixNano()})
	tmp := filepath.Join(dir, workMarkerFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("training: work folder: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, workMarkerFile)); err != nil {
		return fmt.Errorf("training: work folder: %w", err)
	}
	return nil
}

// jobWork is what a job of a deleted model may have written: the sequence folder of the model
// it read (created: its CreatedAt; zero when it read none, and wrote nothing).
type jobWork struct {
	created         time.Time
	shard, sequence int
}

// dropWork erases what this process's work folder holds of a deleted model: the model's whole
// folder when no model of the name exists now, or when the one that does has not claimed the
// folder (claimWork). When a model created again under the name has, its folder stays, but the
// sequence folder of job, when job trained the deleted one (it went on writing after the new
// model's job claimed the folder), goes. It reports whether it removed anything.
func (r *Runner) dropWork(ctx context.Context, model string, job *jobWork, log *slog.Logger) (bool, error) {
	r.workMu.Lock()
	defer r.workMu.Unlock()
	dir := r.workDir(model)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	m, err := r.cfg.Store.GetModel(ctx, model)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && !r.ownsWork(m):
		if err := os.RemoveAll(dir); err != nil {
			return false, err
		}
		if err == nil {
			// Left by an earlier model of the name, or written before folders were claimed (a
			// server upgraded across that change erases them once): a cache, since what is
			// published is fetched again.
			log.Info("erased local stage checkpoints the model has not claimed; published stages are fetched again", "model", model)
		} else {
			log.Info("erased the local checkpoints of a deleted model", "model", model)
		}
		return true, nil
	case err != nil:
		return false, err
	case job == nil:
		// The folder is the model's; stages of another owner in it (a job of a deleted model of
		// the name that saved one after the new model's job claimed the folder, then was not
		// there to erase it: a kill, a ledger error) go.
		return r.dropForeignStages(dir, ModelOwner(m), log)
	case !job.created.IsZero() && !job.created.Equal(m.CreatedAt):
		seq := filepath.Dir(adapters.CheckpointDir(dir, job.shard, job.sequence, 1))
		if _, err := os.Lstat(seq); errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err := os.RemoveAll(seq); err != nil {
			return false, err
		}
		log.Info("erased the local checkpoints of a deleted model's job", "model", model, "shard", job.shard, "sequence", job.sequence)
		return true, nil
	}
	return false, nil
}

// ModelOwner is the owner of a model's stage checkpoints (adapters.ShardConfig.Owner): its name
// and creation time, which tell it from a model created again under the name.
func ModelOwner(m *store.Model) string { return fmt.Sprintf("%s@%d", m.Name, m.CreatedAt.UnixNano()) }

// dropForeignStages erases the stage checkpoints under a model's work folder dir whose manifest
// names another owner than owner, and reports whether it erased any. A stage whose manifest is
// not written yet (being saved, or left half-saved) is its job's to overwrite or sweep.
func (r *Runner) dropForeignStages(dir, owner string, log *slog.Logger) (bool, error) {
	var foreign []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != adapters.CheckpointManifestFile {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // gone meanwhile, or unreadable: not a stage anything loads
		}
		var man struct {
			Owner string `json:"owner"`
		}
		if json.Unmarshal(b, &man) == nil && man.Owner != owner {
			foreign = append(foreign, filepath.Dir(p))
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, stage := range foreign {
		if err := os.RemoveAll(stage); err != nil {
			return false, err
		}
		log.Info("erased a stage checkpoint another model of the name left", "dir", stage)
	}
	return len(foreign) > 0, nil
}

// SweepWork erases the work folders of models that no longer exist, or that a model created
// again under the same name has not claimed, and in the folders of the models that exist the
// stages another owner left (dropForeignStages); it returns how many folders it erased from. A deletion's
// purge erases the folder in the process that committed it, and the jobs of this process stop
// and erase what they wrote; this catches the rest: a process killed between the deletion and
// its purge, a deletion committed through another process (a PostgreSQL deployment), a job
// stopped the hard way. Run it at start, before jobs are taken, and from time to time where
// other processes delete.
func (r *Runner) SweepWork(ctx context.Context) (int, error) {
	ents, err := os.ReadDir(filepath.Join(r.cfg.WorkDir, "models"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		removed, err := r.dropWork(ctx, e.Name(), nil, r.log)
		if err != nil {
			return n, err
		}
		if removed {
			n++
		}
	}
	return n, nil
}

// purgeClockMargin is how much later than a deletion a blob must have been written for a purge
// to leave it, where the blob's key does not say what data it was trained on: the blob store's
// clock (an S3 server's) may run ahead of this process's.
const purgeClockMargin = 5 * time.Minute

// purgeBlob deletes a blob a purge covers, unless it was trained on data read after the
// deletion: a purge handed over again later (after a crash, or a failed attempt) must not erase
// what a retraining on the remaining data, or a model created again under the name, wrote since
// (nothing trained on data read before the deletion is recorded: publishing refuses it). A
// sample's purge knows the deletion's ledger version and the key names the version its writer
// read the data at, so the rule is exact: a blob of a job that read at that version or later is
// left, any other erased, whenever it was written. A whole model's purge, or a key of the
// earliest layout, falls back to the blob's write time: the first hand-over, right after the
// deletion commits, erases every covered blob that exists, and a later one leaves what was
// written well after the deletion.
func (r *Runner) purgeBlob(ctx context.Context, key string, p store.Purge) error {
	if snapshot, ok := CheckpointSnapshot(key); ok && p.Version > 0 {
		if snapshot >= p.Version {
			return nil
		}
		return r.cfg.Blobs.Delete(ctx, key)
	}
	t, err := r.cfg.Blobs.ModTime(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err == nil && t.After(p.Created.Add(purgeClockMargin)) {
		return nil
	}
	return r.cfg.Blobs.Delete(ctx, key)
}

// Status returns a model's training jobs, with this process's live progress for the ones it
// runs. The live rows are taken before the ledger is read: a job that ends in between has
// written its end, and its ledger row says so; read the other way round, a job that ended
// in between showed its last heartbeat's progress, behind what the status had shown (the
// progress fell: TestTrainingProgressOverHTTP flaked). A job the ledger says ended (done,
// failed, cancelled) is reported so even while this process still holds it: a run registers
// itself as running before it looks at its row, and a cancelled job showed as running
// meanwhile (a client following the training then took it for one of its own, which failed it).
func (r *Runner) Status(ctx context.Context, model string) ([]*store.Training, error) {
	live := map[int64]store.Training{}
	r.mu.Lock()
	for id, a := range r.active {
		if a.model == model {
			live[id] = a.snapshot()
		}
	}
	r.mu.Unlock()
	ts, err := r.cfg.Store.Trainings(ctx, model)
	if err != nil {
		return nil, err
	}
	for i, t := range ts {
		if t.State != store.TrainingQueued && t.State != store.TrainingRunning {
			continue
		}
		if row, ok := live[t.JobID]; ok {
			row.Holder, row.LeaseUntil, row.Created, row.Updated = t.Holder, t.LeaseUntil, t.Created, time.Now().UTC()
			ts[i] = &row
		}
	}
	return ts, nil
}

// RescueLost requeues, every interval until ctx ends, the jobs of workers that died: jobs whose
// lease expired more than one lease ago (see store.RescueExpiredTrainings). Every process that
// works jobs runs it; one that finds nothing does nothing.
func (r *Runner) RescueLost(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.cfg.Store.RescueExpiredTrainings(ctx, r.cfg.Jobs.Queue(), r.cfg.Lease); err != nil && ctx.Err() == nil {
			r.log.Warn("rescue lost training jobs", "err", err)
		}
	}
}
