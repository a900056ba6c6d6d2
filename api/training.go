package api

import "time"

// StartTrainingRequest queues the training a model needs: every (shard, sequence) not fully
// trained, and a retraining on the data as it is now of every sequence whose live prefix was cut
// or whose published stages miss samples uploaded since they trained. Force retrains every
// sequence.
type StartTrainingRequest struct {
	Model string `json:"-"`
	Force bool   `json:"force,omitempty"`
}

// TrainingJobs are the jobs a request queued (none when nothing needed training).
type TrainingJobs struct {
	Model string  `json:"model"`
	Jobs  []int64 `json:"jobs"`
}

// Training job states.
const (
	TrainingQueued    = "queued"
	TrainingRunning   = "running"
	TrainingDone      = "done"
	TrainingFailed    = "failed" // for good: attempts exhausted, or bad data or configuration (Message says why)
	TrainingCancelled = "cancelled"
)

// TrainingJob is one training job: a (shard, sequence) of a model trained stage by stage.
type TrainingJob struct {
	ID       int64  `json:"id"`
	Shard    int    `json:"shard"`
	Sequence int    `json:"sequence"`
	Retrain  bool   `json:"retrain"`
	State    string `json:"state"`
	// Stage is the stage in training (of Stages); Step counts optimizer steps (of Steps, 0
	// until a worker starts the job).
	Stage  int     `json:"stage"`
	Stages int     `json:"stages"`
	Step   int64   `json:"step"`
	Steps  int64   `json:"steps"`
	Loss   float64 `json:"loss"`
	// ExamplesPerSecond is the current stage's throughput; ETASeconds the estimated time left
	// (both 0 while the job is Stalled).
	ExamplesPerSecond float64 `json:"examples_per_second"`
	ETASeconds        float64 `json:"eta_seconds"`
	Message           string  `json:"message,omitempty"`
	// Worker holds the job's lease until LeaseUntil (set while the job is running); a live
	// worker renews it every heartbeat.
	Worker     string    `json:"worker,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Stalled is true when the job is running but its lease has expired: its worker stopped
	// renewing it (killed, machine lost, partitioned, or unable to reach the ledger). The job
	// makes no progress, its ETASeconds and ExamplesPerSecond are 0, and its Message says which
	// worker and since when; it is requeued (state queued) once the lease has been expired for
	// one more lease, and another worker resumes it from its published stages. State stays
	// running meanwhile.
	Stalled bool      `json:"stalled,omitempty"`
	Updated time.Time `json:"updated_at"`
}

// GetTrainingRequest asks for a model's training status.
type GetTrainingRequest struct {
	Model string `json:"-"`
}

// TrainingStatus is a model's training: every job, and the totals.
type TrainingStatus struct {
	Model string        `json:"model"`
	Jobs  []TrainingJob `json:"jobs"`
	// Done is true when no job is queued or running (each is done, failed or cancelled).
	Done bool `json:"done"`
	// Step and Steps sum the jobs' steps (failed and cancelled ones left out; a done job counts
	// all of its steps). A job that has not started yet (a job knows its steps once a worker
	// starts it) counts at an estimate, the mean steps of the model's jobs that know theirs.
	// Progress is Step/Steps (0 while no job knows its steps); it does not fall when a queued
	// job starts, only by what a job's actual steps differ from the estimate.
	Step     int64   `json:"step"`
	Steps    int64   `json:"steps"`
	Progress float64 `json:"progress"`
	// ETASeconds estimates the time until every queued and running job is done: their remaining
	// steps (a queued job's at the estimate, a stalled job's too) at the combined rate of the
	// running jobs that are not Stalled, and at least the longest ETA of such a job; 0 when
	// unknown (no running job that is not Stalled has an ETA yet).
	ETASeconds float64 `json:"eta_seconds"`
}

// CancelTrainingRequest cancels a model's unfinished training jobs.
type CancelTrainingRequest struct {
	Model string `json:"-"`
}

// CancelTrainingResponse lists the cancelled jobs.
type CancelTrainingResponse struct {
	Model     string  `json:"model"`
	Cancelled []int64 `json:"cancelled"`
}

// GetUnlearningRequest asks for a model's unlearning status.
type GetUnlearningRequest struct {
	Model string `json:"-"`
}

// SequenceStatus is one sequence of a shard: its slice order, its live prefix, how many stages
// of its current generation Gen are trained and published (those above Live are switched off
// for good, as Model.Trained says) and that generation.
type SequenceStatus struct {
	Sequence int   `json:"sequence"`
	Order    []int `json:"order"`
	Live     int   `json:"live"`
	Trained  int   `json:"trained"`
	Gen      int   `json:"gen"`
}

// ShardStatus is one shard's unlearning state.
type ShardStatus struct {
	Shard     int              `json:"shard"`
	Serving   Served           `json:"serving"`
	Sequences []SequenceStatus `json:"sequences"`
	// Samples is the number of stored samples in the shard; Deletions the deletions so far.
	Samples   int64 `json:"samples"`
	Deletions int64 `json:"deletions"`
	// ExpectedDeletionsBeforeRetrain is the expected number of further deletions of the shard's
	// samples (uniformly at random) before its served prefix falls below the policy's
	// MinPrefix, estimated by simulating the live prefixes from their current state.
	ExpectedDeletionsBeforeRetrain float64 `json:"expected_deletions_before_retrain"`
	// NeedsRetrain is true when the policy asks for a retraining of this shard now.
	NeedsRetrain bool `json:"needs_retrain"`
}

// UnlearningStatus is a model's unlearning state and retraining policy.
type UnlearningStatus struct {
	Model      string        `json:"model"`
	Policy     RetrainPolicy `json:"policy"`
	LiveShards int           `json:"live_shards"`
	Shards     []ShardStatus `json:"shards"`
	Deletions  int64         `json:"deletions"`
	// Version is the ledger version this status was read at.
	Version int64 `json:"ledger_version"`
}
