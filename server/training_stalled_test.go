package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/store"
)

// TestTrainingStatusStalled: a running job whose worker stopped renewing its lease (killed with
// kill -9, in the operator walkthrough) reads running, stalled, with its lease's end, no ETA and
// no rate, and a message naming the worker; the model's ETA does not count its rate. It showed
// its last heartbeat's ETA ("ETA 10s" for a minute) until it was requeued, two to two and a
// half leases later. A job whose lease is live reads running with its ETA, as before.
//
// The rows are written as workers would write them (AcquireTraining, then a heartbeat's
// UpdateTraining with its lease); the server works no jobs, so nothing requeues the stalled one.
func TestTrainingStatusStalled(t *testing.T) {
	ctx := context.Background()
	url, c, st, _ := queueOnlyServer(t)
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 3, Slices: 2, Sequences: 1},
		Training: api.TrainingConfig{Epochs: 1, LearningRate: 1e-2, BatchSize: 2}}
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "s", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	var ndjson strings.Builder
	for i := range 60 { // enough for every slice of every shard
		fmt.Fprintln(&ndjson, withPixels(fmt.Sprintf(`{"id":"s%d","input":PIX,"label":"a"}`, i)))
	}
	if _, err := c.UploadNDJSON(ctx, "s", strings.NewReader(ndjson.String())); err != nil {
		t.Fatal(err)
	}
	queued, err := c.StartTraining(ctx, &api.StartTrainingRequest{Model: "s"})
	if err != nil || len(queued.Jobs) != 3 {
		t.Fatalf("start training = %+v, %v; want 3 jobs", queued, err)
	}

	// Each job halfway (50 of 100 steps) with its last heartbeat's ETA and rate; the last one
	// stays queued.
	jobs := []struct {
		name    string
		worker  string
		lease   time.Duration // of the last heartbeat; 0: the job stays queued
		eta     time.Duration // as the last heartbeat wrote it
		rate    float64
		stalled bool
		state   string
		wantETA float64
	}{
		{name: "lease expired", worker: "w-dead", lease: time.Millisecond, eta: 10 * time.Second, rate: 80, stalled: true, state: api.TrainingRunning},
		{name: "lease live", worker: "w-live", lease: time.Hour, eta: 25 * time.Second, rate: 40, state: api.TrainingRunning, wantETA: 25},
		{name: "queued", state: api.TrainingQueued},
	}
	for i, j := range jobs {
		if j.lease == 0 {
			continue
		}
		id := queued.Jobs[i]
		if ok, err := st.AcquireTraining(ctx, id, j.worker, time.Hour); !ok || err != nil {
			t.Fatalf("acquire job %d: %v, %v", id, ok, err)
		}
		row := &store.Training{JobID: id, State: store.TrainingRunning, Stage: 1, Stages: 2, Step: 50, Steps: 100, Loss: 0.5, Rate: j.rate, ETA: j.eta}
		if err := st.UpdateTraining(ctx, row, j.worker, j.lease); err != nil {
			t.Fatalf("heartbeat of job %d: %v", id, err)
		}
	}
	time.Sleep(10 * time.Millisecond) // past the short lease

	status, err := c.GetTraining(ctx, &api.GetTrainingRequest{Model: "s"})
	if err != nil {
		t.Fatal(err)
	}
	read := time.Now()
	byID := map[int64]api.TrainingJob{}
	for _, j := range status.Jobs {
		byID[j.ID] = j
	}
	for i, want := range jobs {
		t.Run(want.name, func(t *testing.T) {
			got, ok := byID[queued.Jobs[i]]
			if !ok {
				t.Fatalf("job %d not in the status %+v", queued.Jobs[i], status)
			}
			if got.State != want.state || got.Stalled != want.stalled || got.ETASeconds != want.wantETA || got.Worker != want.worker {
				t.Fatalf("job = state %s, stalled %v, ETA %v s, worker %q; want %s, %v, %v s, %q (%+v)",
					got.State, got.Stalled, got.ETASeconds, got.Worker, want.state, want.stalled, want.wantETA, want.worker, got)
			}
			switch {
			case want.lease == 0:
				if !got.LeaseUntil.IsZero() || got.Message != "" {
					t.Fatalf("queued job with a lease %v, message %q", got.LeaseUntil, got.Message)
				}
			case want.stalled:
				if got.ExamplesPerSecond != 0 || !got.LeaseUntil.Before(read) {
					t.Fatalf("stalled job: %v examples/s, lease until %v (read at %v); want 0, and a lease that ended", got.ExamplesPerSecond, got.LeaseUntil, read)
				}
				if !strings.Contains(got.Message, "worker "+want.worker+" stopped renewing its lease") || !strings.Contains(got.Message, "requeues") {
					t.Fatalf("stalled job's message %q, want it to name the worker that stopped renewing its lease and say it is requeued", got.Message)
				}
			default:
				if got.ExamplesPerSecond != want.rate || !got.LeaseUntil.After(read) || got.Message != "" {
					t.Fatalf("running job: %v examples/s, lease until %v (read at %v), message %q; want %v, a lease that runs, no message",
						got.ExamplesPerSecond, got.LeaseUntil, read, got.Message, want.rate)
				}
			}
		})
	}
	// The model: 200 steps left (the stalled job's 50, the live one's 50, the queued one at the
	// estimate, 100) at the live job's rate, 50 steps in 25 s: 100 s. Counting the stalled job's
	// rate as if it still ran (5 steps/s more) made it 29 s.
	if status.Done || status.Step != 100 || status.Steps != 300 || status.ETASeconds != 100 {
		t.Fatalf("model: done %v, %d of %d steps, ETA %v s; want not done, 100 of 300, 100 s", status.Done, status.Step, status.Steps, status.ETASeconds)
	}

	// On the wire: "stalled" and "lease_until" where they apply, neither on the queued job.
	resp := get(t, url+"/v1/models/s/training")
	var raw struct {
		Jobs []map[string]json.RawMessage `json:"jobs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for i, j := range raw.Jobs {
		_, stalled := j["stalled"]
		_, lease := j["lease_until"]
		if stalled != jobs[i].stalled || lease != (jobs[i].lease > 0) {
			t.Errorf("job %d on the wire: stalled key %v, lease_until key %v: %v", i, stalled, lease, j)
		}
	}
}
