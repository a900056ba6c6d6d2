package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
)

// TestDrawTrainingETA checks the progress bar's ETA: the server's 0 means no estimate yet while
// training goes on (the bar said "ETA 0s" between one job's end and the next one's first
// estimate), and done once the training is.
// TestDrawTrainingFollowed: the jobs done and running are those of the training followed, not
// the model's earlier ones (a forced retrain showed "jobs 3 done" before its jobs ran).
func TestDrawTrainingFollowed(t *testing.T) {
	st := &api.TrainingStatus{Jobs: []api.TrainingJob{{ID: 1, State: api.TrainingDone}, {ID: 2, State: api.TrainingDone},
		{ID: 3, State: api.TrainingRunning}, {ID: 4, State: api.TrainingQueued}}}
	var b bytes.Buffer
	drawTraining(&b, st, time.Second, func(id int64) bool { return id >= 3 })
	if want := "jobs 0 done, 1 running"; !strings.Contains(b.String(), want) {
		t.Errorf("bar %q, want %q", b.String(), want)
	}
}

func TestDrawTrainingETA(t *testing.T) {
	running := []api.TrainingJob{{State: api.TrainingRunning}}
	for _, tt := range []struct {
		st   api.TrainingStatus
		want string
	}{
		{api.TrainingStatus{Jobs: running}, "ETA ?"},
		{api.TrainingStatus{Jobs: running, ETASeconds: 12}, "ETA 12s"},
		{api.TrainingStatus{Jobs: []api.TrainingJob{{State: api.TrainingQueued}}}, "ETA ?"},
		{api.TrainingStatus{Jobs: []api.TrainingJob{{State: api.TrainingDone}}, Done: true, Progress: 1}, "ETA 0s"},
	} {
		var b bytes.Buffer
		drawTraining(&b, &tt.st, time.Second, nil)
		if !strings.Contains(b.String(), tt.want) {
			t.Errorf("%+v: bar %q, want %q", tt.st, b.String(), tt.want)
		}
	}
}
