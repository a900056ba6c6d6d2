package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
)

// TestTrainingProgressOverHTTP trains 4 jobs on one worker and follows the model's training
// status: its progress does not fall back when a queued job starts (it went from 1 to 0.5, the
// queued jobs counting no steps), at most by the little a job's actual steps differ from the
// estimate. (The ETA is checked on sumTraining: these jobs take well under a second.)
func TestTrainingProgressOverHTTP(t *testing.T) {
	ctx := context.Background()
	c := fullServer(t) // one worker
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "p", ModelSpec: digitsSpec(api.S3TConfig{Shards: 2, Slices: 2, Sequences: 2}, 7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "p", Samples: digitSamples(t, "p", 120)}); err != nil {
		t.Fatal(err)
	}
	if jobs, err := c.StartTraining(ctx, &api.StartTrainingRequest{Model: "p"}); err != nil || len(jobs.Jobs) != 4 {
		t.Fatalf("start training = %+v, %v; want 4 jobs", jobs, err)
	}
	const slack = 0.1 // a job's steps may differ a little from the estimate (shards differ in size)
	last := 0.0
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := c.GetTraining(ctx, &api.GetTrainingRequest{Model: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if st.Progress < last-slack {
			t.Fatalf("progress fell from %.3f to %.3f: %+v", last, st.Progress, st)
		}
		last = st.Progress
		if st.Done {
			if st.Progress != 1 || st.Step != st.Steps || st.ETASeconds != 0 {
				t.Fatalf("done: %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("training not done: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
