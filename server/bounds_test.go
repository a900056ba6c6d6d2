package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/server"
)

// TestCreateModelBounds: every sized field of a model spec has an upper bound as well as a
// lower one (100000 shards were accepted and made /metrics 400k lines; a learning rate of
// 1e300 made training diverge to NaN), and the refusal names the field, the range and the
// value. The bounds themselves are accepted.
func TestCreateModelBounds(t *testing.T) {
	ts := startServer(t, server.Config{DisableRuntime: true}, nil)
	ctx := context.Background()
	c := ts.client(t, "")
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	labels := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("l", i)
		}
		return out
	}
	base := func() api.ModelSpec {
		return api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"},
			S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}
	}
	tests := []struct {
		name string
		edit func(*api.ModelSpec)
		msg  string // "" accepts
	}{
		{"shards 100000", func(s *api.ModelSpec) { s.S3T.Shards = 100000 }, "s3t.shards must be in [1, 1024], got 100000"},
		{"shards 1025", func(s *api.ModelSpec) { s.S3T.Shards = 1025 }, "s3t.shards must be in [1, 1024], got 1025"},
		{"shards 0", func(s *api.ModelSpec) { s.S3T.Shards = 0 }, "s3t.shards must be in [1, 1024], got 0"},
		{"slices 65", func(s *api.ModelSpec) { s.S3T.Slices = 65 }, "s3t.slices must be in [1, 64], got 65"},
		{"sequences 65537", func(s *api.ModelSpec) { s.S3T.Slices = 9; s.S3T.Sequences = 65537 }, "s3t.sequences must be in [1, 65536], got 65537"},
		{"sequences -1", func(s *api.ModelSpec) { s.S3T.Sequences = -1 }, "s3t.sequences must be in [1, 65536], got -1"},
		{"sequences over slices!", func(s *api.ModelSpec) { s.S3T.Sequences = 3 }, "s3t.sequences: at most 2! = 2 distinct slice orders for 2 slices, got 3"},
		{"shards x sequences", func(s *api.ModelSpec) { s.S3T = api.S3TConfig{Shards: 1024, Slices: 4, Sequences: 17} },
			"s3t: shards x sequences must be at most 16384 (a training job and /metrics series each), got 1024 x 17 = 17408"},
		{"one label", func(s *api.ModelSpec) { s.Labels = []string{"a"} }, "labels: want 2 to 10000 labels, got 1"},
		{"10001 labels", func(s *api.ModelSpec) { s.Labels = labels(10001) }, "labels: want 2 to 10000 labels, got 10001"},
		{"empty label", func(s *api.ModelSpec) { s.Labels = []string{"a", ""} }, `labels: "" is empty or repeated`},
		{"repeated label", func(s *api.ModelSpec) { s.Labels = []string{"a", "b", "a"} }, `labels: "a" is empty or repeated`},
		{"control label", func(s *api.ModelSpec) { s.Labels = []string{"a", "b\x07"} }, `labels: "b\a" holds a control character`},
		{"invalid UTF-8 label", func(s *api.ModelSpec) { s.Labels = []string{"a", "b\xff"} }, "holds a control character, invalid UTF-8 or U+FFFD"},
		{"epochs 10001", func(s *api.ModelSpec) { s.Training.Epochs = 10001 }, "training.epochs must be in [1, 10000], got 10001"},
		{"epochs -1", func(s *api.ModelSpec) { s.Training.Epochs = -1 }, "training.epochs must be in [1, 10000], got -1"},
		{"batch size 65537", func(s *api.ModelSpec) { s.Training.BatchSize = 65537 }, "training.batch_size must be in [1, 65536], got 65537"},
		{"batch size -2", func(s *api.ModelSpec) { s.Training.BatchSize = -2 }, "training.batch_size must be in [1, 65536], got -2"},
		{"learning rate 1e300", func(s *api.ModelSpec) { s.Training.LearningRate = 1e300 }, "training.learning_rate must be in (0, 10], got 1e+300"},
		{"learning rate 10.5", func(s *api.ModelSpec) { s.Training.LearningRate = 10.5 }, "training.learning_rate must be in (0, 10], got 10.5"},
		{"learning rate -0.1", func(s *api.ModelSpec) { s.Training.LearningRate = -0.1 }, "training.learning_rate must be in (0, 10], got -0.1"},
		{"defaults", func(s *api.ModelSpec) {}, ""},
		{"at the bounds", func(s *api.ModelSpec) {
			s.Labels, s.S3T = labels(10000), api.S3TConfig{Shards: 1024, Slices: 64, Sequences: 2}
			s.Training = api.TrainingConfig{Epochs: 10000, LearningRate: 10, BatchSize: 65536}
		}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := base()
			tt.edit(&spec)
			name := fmt.Sprint("m", i)
			m, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: name, ModelSpec: spec})
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				if m.Spec.Training.Epochs < 1 || m.Spec.Training.BatchSize < 1 || m.Spec.Training.LearningRate <= 0 {
					t.Errorf("stored training config %+v lacks its defaults", m.Spec.Training)
				}
				return
			}
			e := wantError(t, err, http.StatusBadRequest, api.CodeInvalid)
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("message %q lacks %q", e.Message, tt.msg)
			}
			_, err = c.GetModel(ctx, &api.GetModelRequest{Name: name})
			wantError(t, err, http.StatusNotFound, api.CodeNotFound)
		})
	}
}
