package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
)

// TestTrainingLineETA checks the progress bar's ETA: the server's 0 means no estimate yet while
// training goes on (the bar said "ETA 0s" between one job's end and the next one's first
// estimate), and done once the training is.
// TestTrainingLineFollowed: the jobs done and running are those of the training followed, not
// the model's earlier ones (a forced retrain showed "jobs 3 done" before its jobs ran).
func TestTrainingLineFollowed(t *testing.T) {
	st := &api.TrainingStatus{Jobs: []api.TrainingJob{{ID: 1, State: api.TrainingDone}, {ID: 2, State: api.TrainingDone},
		{ID: 3, State: api.TrainingRunning}, {ID: 4, State: api.TrainingQueued}}}
	line := trainingLine(st, time.Second, func(id int64) bool { return id >= 3 })
	if want := "jobs 0 done, 1 running"; !strings.Contains(line, want) {
		t.Errorf("bar %q, want %q", line, want)
	}
}

func TestTrainingLineETA(t *testing.T) {
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
		if line := trainingLine(&tt.st, time.Second, nil); !strings.Contains(line, tt.want) {
			t.Errorf("%+v: bar %q, want %q", tt.st, line, tt.want)
		}
	}
}

// TestStatusLineOffTerminal: off a terminal (a CI log), the progress line carries no escape codes
// and is written at most every statusEvery, the latest at the end; lines printed for good are
// all written.
func TestStatusLineOffTerminal(t *testing.T) {
	var b bytes.Buffer
	s := newStatusLine(&b)
	s.set("one")
	s.set("two") // within statusEvery of "one": held back, then replaced
	s.print("stage done")
	s.set("three")
	s.end()
	if want := "one\nstage done\nthree\n"; b.String() != want {
		t.Errorf("wrote %q, want %q", b.String(), want)
	}
}
