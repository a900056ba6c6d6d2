package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
	"github.com/s3t-dev/s3t/unlearning"
)

// sseInterval is how often the training event stream sends the status.
const sseInterval = time.Second

func (s *Server) trainer() (Trainer, error) {
	if s.cfg.Trainer == nil {
		return nil, &statusError{status: http.StatusNotImplemented, body: &api.Error{Code: api.CodeNotImplemented, Message: "this server has no trainer"}}
	}
	return s.cfg.Trainer, nil
}

func (s *Server) startTraining(c echo.Context) error {
	ctx := c.Request().Context()
	name := param(c, "name")
	tr, err := s.trainer()
	if err != nil {
		return err
	}
	var req api.StartTrainingRequest
	// The body is optional: none (or an empty one, in any framing) is {"force": false}.
	body := bufio.NewReader(c.Request().Body)
	if _, err := body.Peek(1); err == nil {
		c.Request().Body = struct {
			io.Reader
			io.Closer
		}{body, c.Request().Body}
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	} else if !errors.Is(err, io.EOF) {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return invalidf("request body: %v", err)
	}
	jobs, err := tr.Start(ctx, name, req.Force)
	if err != nil {
		return fmt.Errorf("train %q: %w", name, err)
	}
	if jobs == nil {
		jobs = []int64{}
	}
	return c.JSON(http.StatusAccepted, api.TrainingJobs{Model: name, Jobs: jobs})
}

// trainingStatus reads a model's training jobs and sums them up.
func (s *Server) trainingStatus(ctx context.Context, name string) (*api.TrainingStatus, error) {
	tr, err := s.trainer()
	if err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.GetModel(ctx, name); err != nil {
		return nil, fmt.Errorf("training of %q: %w", name, err)
	}
	ts, err := tr.Status(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("training of %q: %w", name, err)
	}
	now := time.Now() // the jobs and the totals see the same leases expired
	out := &api.TrainingStatus{Model: name, Jobs: make([]api.TrainingJob, 0, len(ts))}
	for _, t := range ts {
		j := api.TrainingJob{ID: t.JobID, Shard: t.Shard, Sequence: t.Sequence, Retrain: t.Retrain, State: t.State,
			Stage: t.Stage, Stages: t.Stages, Step: t.Step, Steps: t.Steps, Loss: t.Loss, ExamplesPerSecond: t.Rate,
			ETASeconds: t.ETA.Seconds(), Message: t.Message, Worker: t.Holder, Updated: t.Updated}
		if t.State == store.TrainingRunning {
			j.LeaseUntil = t.LeaseUntil
		}
		if stalled(t, now) {
			j.Stalled, j.ETASeconds, j.ExamplesPerSecond = true, 0, 0
			j.Message = stalledMessage(t, now)
		}
		out.Jobs = append(out.Jobs, j)
	}
	sum := sumTraining(ts, now)
	out.Done, out.Step, out.Steps, out.Progress, out.ETASeconds = sum.done, sum.step, sum.steps, sum.progress, sum.eta.Seconds()
	return out, nil
}

// unfinished reports whether a training job is queued or running.
func unfinished(t *store.Training) bool {
	return t.State == store.TrainingQueued || t.State == store.TrainingRunning
}

// stalled reports whether a training job is running under a lease that expired before now: its
// worker stopped renewing it (killed, machine lost, partitioned, or cut off from the ledger), and
// its progress, rate and ETA are those of its last heartbeat. It reads running until a worker
// requeues it (store.RescueExpiredTrainings: once the lease has been expired for one more
// lease). A running row without a lease (none recorded) is not stalled.
func stalled(t *store.Training, now time.Time) bool {
	return t.State == store.TrainingRunning && !t.LeaseUntil.IsZero() && now.After(t.LeaseUntil)
}

// stalledMessage is a stalled job's message: which worker stopped renewing its lease, when, and
// what comes next; the row's own message, if any, after it.
func stalledMessage(t *store.Training, now time.Time) string {
	worker := "its worker"
	if t.Holder != "" {
		worker = "worker " + t.Holder
	}
	msg := fmt.Sprintf("stalled: %s stopped renewing its lease, which expired at %s (%s ago); a running worker requeues the job once the lease has been expired for one more lease",
		worker, t.LeaseUntil.UTC().Format(time.RFC3339), now.Sub(t.LeaseUntil).Round(time.Second))
	if t.Message != "" {
		msg += "; " + t.Message
	}
	return msg
}

// trainingSum is a model's training summed over its jobs (sumTraining).
type trainingSum struct {
	done        bool // no job is queued or running
	step, steps int64
	progress    float64 // step / steps, 0 while steps is unknown
	eta         time.Duration
}

// sumTraining sums a model's training jobs up, as both the training status and /metrics report
// them.
//
// Only each unit's (shard, sequence) latest job counts: a unit trained again (a forced retrain,
// a retraining after deletions, a training started again after a cancel) has its earlier jobs
// in the list too, and those are not the work now asked for (a forced retrain started at 60%
// with its earlier jobs' steps counted as taken). A unit normally has at most one unfinished
// job, its latest; done still looks at every job, so that an earlier one still running (queued
// twice by a replica of an older version) keeps the training from being done.
//
// Steps: a done job counts all its steps as taken, an unfinished one those it took, a failed or
// cancelled one none (its remaining work will not be done). A job's number of steps is known
// once it starts (the worker computes it from the job's data); until then (queued, or running
// but still loading its data) it is estimated as the mean number of steps of the model's jobs
// that know theirs: a model's jobs train the same stages on shards of similar size. So the
// progress does not fall when a queued job starts, as it would if queued jobs counted no steps;
// it moves only where a job's actual steps differ from the estimate. With no job that knows its
// steps, steps is 0 (unknown) and so is the progress.
//
// ETA: the remaining steps of the unfinished jobs (the queued ones at their estimate) over the
// aggregate rate of the running jobs, in steps per second (each job's remaining steps over its
// own ETA, which weighs its deeper, slower stages), and never less than the longest ETA of a
// running job (one job is not shared between workers). It assumes that the workers now busy
// stay busy until the queue is drained. A stalled job (its lease expired before now, see
// stalled) counts its remaining steps, as a queued one does, but neither its rate nor its ETA:
// its worker is gone, and the ETA its last heartbeat wrote does not run down. With no running
// job that has an ETA yet (stalled ones aside), it is 0 (unknown).
func sumTraining(ts []*store.Training, now time.Time) trainingSum {
	unfinished := slices.ContainsFunc(ts, unfinished)
	ts = latestPerUnit(ts)
	var known, knownSteps int64
	for _, t := range ts {
		if t.Steps > 0 {
			known++
			knownSteps += t.Steps
		}
	}
	var estimate int64
	if known > 0 {
		estimate = (knownSteps + known/2) / known
	}
	sum := trainingSum{done: !unfinished}
	var remaining, rate float64
	for _, t := range ts {
		steps := t.Steps
		switch t.State {
		case store.TrainingCancelled, store.TrainingFailed:
			continue
		case store.TrainingDone:
			sum.step += steps
			sum.steps += steps
			continue
		}
		// Queued or running.
		if steps <= 0 {
			steps = estimate
		}
		step := min(t.Step, steps)
		sum.step += step
		sum.steps += steps
		left := float64(steps - step)
		remaining += left
		if t.State == store.TrainingRunning && t.ETA > 0 && !stalled(t, now) {
			sum.eta = max(sum.eta, t.ETA)
			if t.Steps > 0 && left > 0 {
				rate += left / t.ETA.Seconds()
			}
		}
	}
	if sum.steps > 0 {
		sum.progress = float64(sum.step) / float64(sum.steps)
	}
	if rate > 0 {
		sum.eta = max(sum.eta, time.Duration(remaining/rate*float64(time.Second)).Round(time.Second))
	}
	return sum
}

// latestPerUnit keeps each (shard, sequence)'s job of the highest id (the queue's ids grow), in
// the order of ts.
func latestPerUnit(ts []*store.Training) []*store.Training {
	type unit struct{ shard, seq int }
	latest := map[unit]int64{}
	for _, t := range ts {
		u := unit{t.Shard, t.Sequence}
		if id, ok := latest[u]; !ok || t.JobID > id {
			latest[u] = t.JobID
		}
	}
	if len(latest) == len(ts) {
		return ts
	}
	out := make([]*store.Training, 0, len(latest))
	for _, t := range ts {
		if latest[unit{t.Shard, t.Sequence}] == t.JobID {
			out = append(out, t)
		}
	}
	return out
}

// trainingSteps is sumTraining's steps taken, steps in all and progress (for /metrics).
func trainingSteps(ts []*store.Training) (step, steps int64, progress float64) {
	sum := sumTraining(ts, time.Now())
	return sum.step, sum.steps, sum.progress
}

func (s *Server) getTraining(c echo.Context) error {
	st, err := s.trainingStatus(c.Request().Context(), param(c, "name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// trainingEvents streams the training status as Server-Sent Events: a "progress" event every
// second while jobs are queued or running, then one "done" event; each event's data is the
// TrainingStatus. The stream ends instead with one "error" event, whose data is the error body
// {"error":{"code","message"}}, when the status cannot be read (the code as the status route
// would answer) or the server shuts down (code unavailable: Serve ends the stream rather than
// wait for the training, see Server.stopping).
func (s *Server) trainingEvents(c echo.Context) error {
	ctx := c.Request().Context()
	name := param(c, "name")
	st, err := s.trainingStatus(ctx, name)
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set(echo.HeaderCacheControl, "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(sseInterval)
	defer t.Stop()
	for {
		event := "progress"
		if st.Done {
			event = "done"
		}
		if !s.sendEvent(w, name, event, st) {
			return nil
		}
		if st.Done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			s.sendEvent(w, name, "error", api.ErrorBody{Error: &api.Error{Code: api.CodeUnavailable, Message: "the server is shutting down"}})
			return nil
		case <-t.C:
		}
		if st, err = s.trainingStatus(ctx, name); err != nil {
			if ctx.Err() != nil {
				return nil // the client went away
			}
			status, body := toAPIError(err)
			if status >= 500 {
				s.log.Error("training events: read the status", "model", name, "err", err)
			}
			s.sendEvent(w, name, "error", api.ErrorBody{Error: body})
			return nil
		}
	}
}

// sendEvent writes one Server-Sent Event with data as JSON and flushes it; false when the
// stream is over (the client went away, or data does not encode, which is logged).
func (s *Server) sendEvent(w *echo.Response, model, event string, data any) bool {
	b, err := json.Marshal(data)
	if err != nil {
		s.log.Error("training events: encode an event", "model", model, "event", event, "err", err)
		return false
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return false
	}
	w.Flush()
	return true
}

func (s *Server) cancelTraining(c echo.Context) error {
	ctx := c.Request().Context()
	name := param(c, "name")
	tr, err := s.trainer()
	if err != nil {
		return err
	}
	if _, err := s.cfg.Store.GetModel(ctx, name); err != nil {
		return fmt.Errorf("cancel training of %q: %w", name, err)
	}
	ids, err := tr.Cancel(ctx, name)
	if err != nil {
		return fmt.Errorf("cancel training of %q: %w", name, err)
	}
	if ids == nil {
		ids = []int64{}
	}
	return c.JSON(http.StatusOK, api.CancelTrainingResponse{Model: name, Cancelled: ids})
}

// retrainRuns is the number of simulated deletion streams behind
// ExpectedDeletionsBeforeRetrain.
const retrainRuns = 400

func (s *Server) getUnlearning(c echo.Context) error {
	ctx := c.Request().Context()
	name := param(c, "name")
	m, err := s.cfg.Store.GetModel(ctx, name)
	if err != nil {
		return fmt.Errorf("unlearning status of %q: %w", name, err)
	}
	rec, err := training.DecodeRecord(m)
	if err != nil {
		return err
	}
	counts, err := s.cfg.Store.UnitCounts(ctx, name)
	if err != nil {
		return err
	}
	dels, err := s.cfg.Store.DeletionCounts(ctx, name)
	if err != nil {
		return err
	}
	pol := rec.Retrain
	pol.MinPrefix = max(pol.MinPrefix, 1)
	out := api.UnlearningStatus{Model: name, Policy: pol, Version: m.Version}
	pub := m.Published()
	needs := retrainShards(m, pol)
	for k := range m.Shards {
		ss := api.ShardStatus{Shard: k, Serving: api.Served(pub[k]), Deletions: dels[k], NeedsRetrain: needs[k]}
		for b, seq := range m.Sequences[k] {
			ss.Sequences = append(ss.Sequences, api.SequenceStatus{Sequence: b, Order: seq, Live: m.Live[k][b], Trained: m.Trained[k][b], Gen: m.Gen[k][b]})
		}
		for _, n := range counts[k] {
			ss.Samples += int64(n)
		}
		ss.ExpectedDeletionsBeforeRetrain = expectedDeletions(m.Sequences[k], m.Live[k], counts[k], pol.MinPrefix, uint64(k))
		if pub[k].Length > 0 {
			out.LiveShards++
		}
		out.Deletions += dels[k]
		out.Shards = append(out.Shards, ss)
	}
	return c.JSON(http.StatusOK, out)
}

// expectedDeletions estimates, by simulating deletion streams (each deleting a uniformly random
// remaining sample of the shard), how many deletions it takes from the live prefixes live
// until the shard's longest live prefix is shorter than minPrefix. Deterministic per seed.
func expectedDeletions(seqs [][]int, live []int, counts []int, minPrefix int, seed uint64) float64 {
	start, err := unlearning.RestoreShard(seqs, live)
	if err != nil || start.Served().Length < minPrefix {
		return 0
	}
	rng := rand.New(rand.NewPCG(seed, 0x5e7))
	total := 0
	for run := 0; run < retrainRuns; run++ {
		sh, _ := unlearning.RestoreShard(seqs, live)
		left := append([]int(nil), counts...)
		n := 0
		for _, c := range left {
			n += c
		}
		for n > 0 && sh.Served().Length >= minPrefix {
			r := rng.IntN(n)
			j := 0
			for r >= left[j] {
				r -= left[j]
				j++
			}
			left[j]--
			n--
			if _, err := sh.Delete(j); err != nil {
				break
			}
			total++
		}
	}
	return float64(total) / retrainRuns
}

// retrainShards returns the shards the policy asks to retrain now, among the trained shards
// that deletions cut (a sequence's live prefix below L): those whose served prefix is below
// MinPrefix, and every dead one when fewer than MinLiveShards shards serve something. A shard
// short of MinPrefix only because its training was cancelled, failed or is still running is
// not the policy's to restart.
func retrainShards(m *store.Model, pol api.RetrainPolicy) map[int]bool {
	out := map[int]bool{}
	if pol.Disabled {
		return out
	}
	pub := m.Published()
	live := 0
	for _, sv := range pub {
		if sv.Length > 0 {
			live++
		}
	}
	for k, sv := range pub {
		trained, cut := false, false
		for b := range m.Trained[k] {
			trained = trained || m.Trained[k][b] > 0 || m.Gen[k][b] > 1
			cut = cut || m.Live[k][b] < m.Slices
		}
		if trained && cut && (sv.Length < max(pol.MinPrefix, 1) || (live < pol.MinLiveShards && sv.Length == 0)) {
			out[k] = true
		}
	}
	return out
}

// afterDeletion applies the retraining policy once a deletion committed: the cut sequences of
// the shards that need it are queued for retraining on the remaining data, in the background
// (the request that deleted does not wait; see retrainer).
func (s *Server) afterDeletion(model string) {
	if s.cfg.Trainer != nil {
		s.retrain.mark(model)
	}
}

// retrainer applies the retraining policy to the models that deletions touched, one model at a
// time, on one goroutine that runs while models are marked: a burst of deletions checks each
// model once. Serve marks every model when it starts, so that a deletion whose retraining was
// not queued before the process stopped (or was killed) is retrained after the restart, and
// stops the retrainer when it stops (Serve runs once per Server).
type retrainer struct {
	apply func(ctx context.Context, model string)
	// ctx ends at close, so that a check in progress does not hold up a shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	pending map[string]bool
	running bool
	closed  bool
	wg      sync.WaitGroup
}

func newRetrainer(apply func(ctx context.Context, model string)) *retrainer {
	ctx, cancel := context.WithCancel(context.Background())
	return &retrainer{apply: apply, ctx: ctx, cancel: cancel}
}

// mark queues the check of models.
func (r *retrainer) mark(models ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.pending == nil {
		r.pending = map[string]bool{}
	}
	for _, m := range models {
		r.pending[m] = true
	}
	if !r.running && len(r.pending) > 0 {
		r.running = true
		r.wg.Add(1)
		go r.drain()
	}
}

func (r *retrainer) drain() {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		name, ok := "", false
		if !r.closed {
			for name = range r.pending {
				ok = true
				break
			}
		}
		if !ok {
			r.running = false
			r.mu.Unlock()
			return
		}
		delete(r.pending, name)
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		r.apply(ctx, name)
		cancel()
	}
}

// close stops the checks: the one in progress is interrupted (its context ends) and waited
// for, the others are dropped (Serve's next start checks every model).
func (r *retrainer) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// applyRetrainPolicy queues the retraining the policy asks of a model now (retrainShards).
func (s *Server) applyRetrainPolicy(ctx context.Context, model string) {
	m, err := s.cfg.Store.GetModel(ctx, model)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("retraining policy: read model", "model", model, "err", err)
		}
		return
	}
	rec, err := training.DecodeRecord(m)
	if err != nil {
		s.log.Warn("retraining policy: read model", "model", model, "err", err)
		return
	}
	need := retrainShards(m, rec.Retrain)
	if len(need) == 0 {
		return
	}
	shards := make([]int, 0, len(need))
	for k := range need {
		shards = append(shards, k)
	}
	slices.Sort(shards)
	ids, err := s.cfg.Trainer.Retrain(ctx, model, shards)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("retraining policy: queue retraining", "model", model, "shards", shards, "err", err)
		return
	}
	if len(ids) > 0 {
		s.log.Info("retraining policy: retraining queued", "model", model, "shards", shards, "jobs", len(ids))
	}
}
