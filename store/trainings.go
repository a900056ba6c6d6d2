package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/riverqueue/river/rivertype"
)

// Training states of a [Training] row. Queued and running jobs are unfinished (a failed
// attempt that will be retried is queued again, with the error in its message); done, failed
// (for good: attempts exhausted, or an error retrying cannot fix) and cancelled are final.
const (
	TrainingQueued    = "queued"
	TrainingRunning   = "running"
	TrainingDone      = "done"
	TrainingFailed    = "failed"
	TrainingCancelled = "cancelled"
)

// Training is one training job's row: a (shard, sequence) of a model, its progress as its
// worker last wrote it, and its lease.
type Training struct {
	JobID    int64  `json:"job_id"`
	Model    string `json:"model"`
	Shard    int    `json:"shard"`
	Sequence int    `json:"sequence"`
	Retrain  bool   `json:"retrain"`
	State    string `json:"state"`
	// Stage is the stage being trained (or last trained), of Stages.
	Stage  int `json:"stage"`
	Stages int `json:"stages"`
	// Step and Steps count optimizer steps over the job's stages.
	Step    int64         `json:"step"`
	Steps   int64         `json:"steps"`
	Loss    float64       `json:"loss"`
	Rate    float64       `json:"examples_per_second"`
	ETA     time.Duration `json:"eta"`
	Message string        `json:"message,omitempty"`
	// Holder is the worker holding the lease, until LeaseUntil.
	Holder     string    `json:"holder,omitempty"`
	LeaseUntil time.Time `json:"lease_until"`
	Created    time.Time `json:"created_at"`
	Updated    time.Time `json:"updated_at"`
}

// TrainUnit is one (shard, sequence) to train.
type TrainUnit struct {
	Shard, Sequence int
	Retrain         bool
}

// EnqueueTraining queues one job of kind per unit with args(unit) as its arguments, and their
// Training rows, in one transaction: either every job and row exists or none does. A unit whose
// (shard, sequence) already has an unfinished training job (see UnfinishedTrainings) is
// skipped, and the ids returned are those of the new jobs. The check and the enqueue hold the
// model's row lock, so replicas sharing the ledger never queue one sequence twice.
func (s *Store) EnqueueTraining(ctx context.Context, jobs *Jobs, model, kind string, units []TrainUnit, args func(TrainUnit) any) ([]int64, error) {
	var ids []int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids = ids[:0]
		m, err := lockModel(ctx, tx, model)
		if err != nil {
			return err
		}
		unfinished, err := unfinishedTrainings(ctx, tx, model, s.now())
		if err != nil {
			return err
		}
		busy := map[[2]int]bool{}
		for _, u := range unfinished {
			busy[[2]int{u.Shard, u.Sequence}] = true
		}
		now := s.now().UnixNano()
		for _, u := range units {
			if busy[[2]int{u.Shard, u.Sequence}] {
				continue
			}
			busy[[2]int{u.Shard, u.Sequence}] = true // once per call too
			id, err := jobs.EnqueueTx(ctx, tx, kind, args(u))
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO trainings (job_id, model, shard, sequence, retrain, state, stage, stages, step, steps,
				loss, rate, eta_ms, message, holder, lease_until, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 0, 0, 0, 0, 0, '', '', 0, $8, $8)`,
				id, model, u.Shard, u.Sequence, boolInt(u.Retrain), TrainingQueued, m.Slices, now); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: enqueue training of %q: %w", model, err)
	}
	return ids, nil
}

// UnfinishedTraining is a training job that is neither finished nor abandoned: see
// [Store.UnfinishedTrainings].
type UnfinishedTraining struct {
	JobID           int64
	Shard, Sequence int
}

// UnfinishedTrainings returns a model's unfinished training jobs: those whose Training row is
// neither done, failed nor cancelled, and either whose queued job is not finished (nor removed
// from the queue) or whose row a worker holds under a lease that has not expired.
//
// A row can outlive its job, when a process stopped between the job's end and the row's update:
// once its lease is over, such a job is not counted. The lease counts whatever the queue says:
// the queue cannot tell two runs of one job apart (a job handed out again after its lease
// expired while its first run was still alive, RescueExpiredTrainings), and an outcome the
// stale first run returns could finish the job there while the second run holds it and still
// records stages. (The training runner's stale runs snooze rather than finish the job; the
// ledger does not count on it.)
func (s *Store) UnfinishedTrainings(ctx context.Context, model string) ([]UnfinishedTraining, error) {
	out, err := unfinishedTrainings(ctx, s.db, model, s.now())
	if err != nil {
		return nil, fmt.Errorf("store: unfinished trainings of %q: %w", model, err)
	}
	return out, nil
}

func unfinishedTrainings(ctx context.Context, q queryer, model string, now time.Time) ([]UnfinishedTraining, error) {
	rows, err := q.QueryContext(ctx, `SELECT t.job_id, t.shard, t.sequence FROM trainings t LEFT JOIN river_job j ON j.id = t.job_id
		WHERE t.model = $1 AND t.state NOT IN ($2, $3, $4)
			AND ((j.id IS NOT NULL AND j.state NOT IN ($5, $6, $7)) OR (t.state = $8 AND t.lease_until > $9))`,
		model, TrainingDone, TrainingFailed, TrainingCancelled,
		string(rivertype.JobStateCompleted), string(rivertype.JobStateCancelled), string(rivertype.JobStateDiscarded),
		TrainingRunning, now.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UnfinishedTraining
	for rows.Next() {
		var u UnfinishedTraining
		if err := rows.Scan(&u.JobID, &u.Shard, &u.Sequence); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// AcquireTraining takes the lease of a training job for holder until now+lease, when nobody
// else holds it (it is free, expired, or already holder's) and the job is neither finished,
// failed nor cancelled. It returns false otherwise (the caller reads the row to tell which);
// ErrNotFound when the row is gone (the model was deleted).
func (s *Store) AcquireTraining(ctx context.Context, jobID int64, holder string, lease time.Duration) (bool, error) {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `UPDATE trainings SET holder = $1, lease_until = $2, state = $3, updated_at = $4
		WHERE job_id = $5 AND state NOT IN ($6, $7, $8) AND (holder = '' OR holder = $1 OR lease_until < $4)`,
		holder, now.Add(lease).UnixNano(), TrainingRunning, now.UnixNano(), jobID, TrainingCancelled, TrainingDone, TrainingFailed)
	if err != nil {
		return false, fmt.Errorf("store: acquire training %d: %w", jobID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		s.wrote()
		return true, nil
	}
	if _, err := s.GetTraining(ctx, jobID); err != nil {
		return false, err
	}
	return false, nil
}

// UpdateTraining writes a job's progress and state and extends its lease, if holder still
// holds it (ErrStale otherwise: the lease expired and another worker took the job). An empty
// holder releases the lease. A loss or rate that is not a finite number is recorded as 0: SQLite
// stores NaN as NULL, which the column refuses, and JSON has no NaN (the trainer fails a job
// whose loss diverged, with a message that says so).
func (s *Store) UpdateTraining(ctx context.Context, t *Training, holder string, lease time.Duration) error {
	now := s.now()
	finite := func(x float64) float64 {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0
		}
		return x
	}
	until, newHolder := now.Add(lease).UnixNano(), holder
	if lease <= 0 {
		until, newHolder = 0, ""
	}
	res, err := s.db.ExecContext(ctx, `UPDATE trainings SET state = $1, stage = $2, step = $3, steps = $4, loss = $5, rate = $6, eta_ms = $7,
		message = $8, holder = $9, lease_until = $10, updated_at = $11, retrain = $12
		WHERE job_id = $13 AND holder = $14 AND state <> 'cancelled'`,
		t.State, t.Stage, t.Step, t.Steps, finite(t.Loss), finite(t.Rate), t.ETA.Milliseconds(), t.Message, newHolder, until, now.UnixNano(), boolInt(t.Retrain),
		t.JobID, holder)
	if err != nil {
		return fmt.Errorf("store: update training %d: %w", t.JobID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("store: update training %d: %w: cancelled, or the lease is not %q's", t.JobID, ErrStale, holder)
	}
	s.wrote()
	return nil
}

// SetTrainingState sets a job's state regardless of its lease (cancellation, a final failure
// seen by the queue).
func (s *Store) SetTrainingState(ctx context.Context, jobID int64, state, message string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE trainings SET state = $1, message = $2, holder = '', lease_until = 0, updated_at = $3 WHERE job_id = $4`,
		state, message, s.now().UnixNano(), jobID)
	if err != nil {
		return fmt.Errorf("store: set training %d state: %w", jobID, err)
	}
	s.wrote()
	return nil
}

const trainingCols = `job_id, model, shard, sequence, retrain, state, stage, stages, step, steps, loss, rate, eta_ms, message, holder, lease_until, created_at, updated_at`

func scanTraining(sc interface{ Scan(...any) error }) (*Training, error) {
	t := &Training{}
	var retrain int
	var eta, lease, created, updated int64
	if err := sc.Scan(&t.JobID, &t.Model, &t.Shard, &t.Sequence, &retrain, &t.State, &t.Stage, &t.Stages, &t.Step, &t.Steps,
		&t.Loss, &t.Rate, &eta, &t.Message, &t.Holder, &lease, &created, &updated); err != nil {
		return nil, err
	}
	t.Retrain = retrain != 0
	t.ETA = time.Duration(eta) * time.Millisecond
	if lease > 0 {
		t.LeaseUntil = time.Unix(0, lease).UTC()
	}
	t.Created, t.Updated = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return t, nil
}

// GetTraining returns one training job's row.
func (s *Store) GetTraining(ctx context.Context, jobID int64) (*Training, error) {
	t, err := scanTraining(s.db.QueryRowContext(ctx, `SELECT `+trainingCols+` FROM trainings WHERE job_id = $1`, jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: training %d: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: training %d: %w", jobID, err)
	}
	return t, nil
}

// Trainings returns a model's training jobs, oldest first.
func (s *Store) Trainings(ctx context.Context, model string) ([]*Training, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+trainingCols+` FROM trainings WHERE model = $1 ORDER BY job_id`, model)
	if err != nil {
		return nil, fmt.Errorf("store: trainings of %q: %w", model, err)
	}
	defer rows.Close()
	var out []*Training
	for rows.Next() {
		t, err := scanTraining(rows)
		if err != nil {
			return nil, fmt.Errorf("store: trainings of %q: %w", model, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RescueExpiredTrainings hands the training jobs whose worker died back to the queue: a job
// whose lease expired (its worker stopped heartbeating) more than grace ago, and that River
// still counts as running, becomes available again (River itself never takes a running job
// back: see Jobs). The lease is what tells a dead worker from a slow one; a live worker renews
// it every heartbeat.
//
// So does a job River counts as running whose training row nobody holds, released more than
// grace ago, when River last handed the job out more than grace ago too. Its worker recorded
// the run's outcome in the row and died before River recorded it in the job: River records a
// run's outcome in batches, up to 250 ms after the run returns. A retry or a snooze (the row
// waits in the queue) would otherwise never run, short of a restart of the embedded server
// ([Jobs.RecoverOrphans]); a finished or failed job would count as running in the queue for
// ever (its row stays as it is, and its next run does nothing: see AcquireTraining). The two
// waits spare a run that River has just handed out and that has not taken the row yet, and an
// outcome River is about to record. It returns the requeued job ids.
//
// A training row left queued or running, untouched for more than grace, whose job the queue no
// longer runs (discarded, cancelled or completed, or gone), is marked failed: its last run could
// not write the row (the ledger was down when the job used up its attempts), and the model's
// training would read as unfinished for ever. Training the model again takes up its stages.
func (s *Store) RescueExpiredTrainings(ctx context.Context, queue string, grace time.Duration) ([]int64, error) {
	var ids []int64
	var abandoned int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids = ids[:0]
		now := s.now()
		res, err := tx.ExecContext(ctx, `UPDATE trainings SET state = $1, holder = '', lease_until = 0, message = $2, updated_at = $3
			WHERE state IN ($4, $5) AND lease_until < $6 AND updated_at < $6
			AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = trainings.job_id AND j.state NOT IN ('discarded', 'cancelled', 'completed'))`,
			TrainingFailed, "the queue gave the job up while its row could not be written (the ledger did not answer): train the model again", now.UnixNano(),
			TrainingQueued, TrainingRunning, now.Add(-grace).UnixNano())
		if err != nil {
			return err
		}
		abandoned, _ = res.RowsAffected()
		expired, err := expiredLeases(ctx, tx, now.Add(-grace))
		if err != nil {
			return err
		}
		lost, err := unrecordedOutcomes(ctx, tx, queue, now.Add(-grace))
		if err != nil {
			return err
		}
		for _, c := range append(expired, lost...) {
			// scheduled_at is in the past already: the job ran.
			res, err := tx.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE id = $1 AND state = 'running' AND queue = $2`, c.id, queue)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			if c.why != "" {
				if _, err := tx.ExecContext(ctx, `UPDATE trainings SET state = $1, holder = '', lease_until = 0, message = $2, updated_at = $3 WHERE job_id = $4`,
					TrainingQueued, c.why, now.UnixNano(), c.id); err != nil {
					return err
				}
			}
			ids = append(ids, c.id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: rescue expired trainings: %w", err)
	}
	if len(ids) > 0 {
		s.log.Warn("requeued training jobs of a lost worker", "jobs", ids)
	}
	if abandoned > 0 {
		s.log.Warn("marked failed the training rows of jobs the queue gave up", "jobs", abandoned)
	}
	return ids, nil
}

// rescue is a job RescueExpiredTrainings hands back to the queue, and the message its training
// row then shows, queued (empty: the row stays as it is).
type rescue struct {
	id  int64
	why string
}

// expiredLeases returns the jobs whose training row a worker holds under a lease that expired
// before cutoff.
func expiredLeases(ctx context.Context, tx *sql.Tx, cutoff time.Time) ([]rescue, error) {
	rows, err := tx.QueryContext(ctx, `SELECT job_id FROM trainings WHERE state = $1 AND lease_until > 0 AND lease_until < $2`,
		TrainingRunning, cutoff.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rescue
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, rescue{id, "its worker stopped renewing the lease: requeued"})
	}
	return out, rows.Err()
}

// unrecordedOutcomes returns the jobs River counts as running on queue whose training row waits
// in the queue, is finished or has failed, released before cutoff, and which River last handed
// out before cutoff (see RescueExpiredTrainings).
func unrecordedOutcomes(ctx context.Context, tx *sql.Tx, queue string, cutoff time.Time) ([]rescue, error) {
	rows, err := tx.QueryContext(ctx, `SELECT t.job_id, t.state, t.message, j.attempted_at FROM trainings t JOIN river_job j ON j.id = t.job_id
		WHERE j.state = 'running' AND j.queue = $1 AND t.state IN ($2, $3, $4) AND t.lease_until = 0 AND t.updated_at < $5`,
		queue, TrainingQueued, TrainingDone, TrainingFailed, cutoff.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rescue
	for rows.Next() {
		var id int64
		var state, msg string
		var at sql.NullTime
		if err := rows.Scan(&id, &state, &msg, &at); err != nil {
			return nil, err
		}
		if !at.Valid || !at.Time.Before(cutoff) {
			continue
		}
		why := ""
		if state == TrainingQueued {
			why = "its worker stopped before the queue recorded its last run: requeued"
			if msg != "" {
				why += " (the run had recorded: " + msg + ")"
			}
		}
		out = append(out, rescue{id, why})
	}
	return out, rows.Err()
}
