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

// TestTrainingLineStalled: a running job whose worker stopped renewing its lease (the server's
// stalled) counts as stalled, not running, and its dead worker's last rate is not shown; the
// bar showed "1 running ... ETA 10s" for the minute until the job was requeued.
func TestTrainingLineStalled(t *testing.T) {
	dead := api.TrainingJob{ID: 1, State: api.TrainingRunning, Stalled: true, Worker: "w-dead", Loss: 0.9, ExamplesPerSecond: 80}
	live := api.TrainingJob{ID: 2, State: api.TrainingRunning, Loss: 0.5, ExamplesPerSecond: 40}
	for _, tt := range []struct {
		name string
		st   api.TrainingStatus
		want []string
	}{
		{"only job stalled", api.TrainingStatus{Jobs: []api.TrainingJob{dead}}, []string{"jobs 0 done, 0 running, 1 stalled", "0 ex/s", "ETA ?"}},
		{"one stalled, one running", api.TrainingStatus{Jobs: []api.TrainingJob{dead, live}, ETASeconds: 100},
			[]string{"jobs 0 done, 1 running, 1 stalled", "loss 0.500", "40 ex/s", "ETA 1m40s"}},
		{"none stalled", api.TrainingStatus{Jobs: []api.TrainingJob{live}, ETASeconds: 25}, []string{"jobs 0 done, 1 running  loss", "ETA 25s"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			line := trainingLine(&tt.st, time.Second, nil)
			for _, want := range tt.want {
				if !strings.Contains(line, want) {
					t.Errorf("bar %q, want %q", line, want)
				}
			}
		})
	}
}

// TestStallLines: a followed job's stall is said once, naming its worker, and so is its end
// (requeued, or its worker renewing its lease again); jobs not followed are left out.
func TestStallLines(t *testing.T) {
	lease := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	running := api.TrainingJob{ID: 7, Shard: 1, State: api.TrainingRunning, Worker: "w-dead", LeaseUntil: lease}
	stalledJob := running
	stalledJob.Stalled = true
	other := stalledJob
	other.ID, other.Worker = 8, "w-other"
	requeued := api.TrainingJob{ID: 7, Shard: 1, State: api.TrainingQueued}
	renewed := running
	follow := func(id int64) bool { return id == 7 }
	stalled := map[int64]bool{}
	for _, step := range []struct {
		name string
		jobs []api.TrainingJob
		want []string // substrings, one line each; none: no line
	}{
		{"running", []api.TrainingJob{running, other}, nil},
		{"stalls", []api.TrainingJob{stalledJob, other}, []string{"job 7 (shard 1, sequence 0) stalled: worker w-dead stopped renewing its lease at " + lease.Local().Format(time.TimeOnly)}},
		{"still stalled", []api.TrainingJob{stalledJob, other}, nil},
		{"renews again", []api.TrainingJob{renewed, other}, []string{"job 7 (shard 1, sequence 0) running again on worker w-dead"}},
		{"stalls again", []api.TrainingJob{stalledJob, other}, []string{"job 7 (shard 1, sequence 0) stalled"}},
		{"requeued", []api.TrainingJob{requeued, other}, []string{"job 7 (shard 1, sequence 0) requeued"}},
		{"queued", []api.TrainingJob{requeued, other}, nil},
	} {
		lines := stallLines(&api.TrainingStatus{Jobs: step.jobs}, follow, stalled)
		if len(lines) != len(step.want) {
			t.Fatalf("%s: lines %q, want %d", step.name, lines, len(step.want))
		}
		for i, want := range step.want {
			if !strings.Contains(lines[i], want) {
				t.Errorf("%s: line %q, want %q", step.name, lines[i], want)
			}
		}
	}
}

// TestTrainingLineLossAndRate: the loss shown is the latest a job reported, a done job's last
// included, so that the line does not read "loss 0.000" between one job's end and the next
// one's first step, nor once training is done (the demo's log showed both); a running job
// with no rate yet reads "? ex/s", not 0.
func TestTrainingLineLossAndRate(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	first := api.TrainingJob{ID: 1, State: api.TrainingDone, Step: 900, Steps: 900, Loss: 0.41, ExamplesPerSecond: 5000, Updated: at}
	second := api.TrainingJob{ID: 2, State: api.TrainingDone, Step: 900, Steps: 900, Loss: 0.37, ExamplesPerSecond: 5200, Updated: at.Add(time.Second)}
	starting := api.TrainingJob{ID: 3, State: api.TrainingRunning, Updated: at.Add(2 * time.Second)}
	going := api.TrainingJob{ID: 3, State: api.TrainingRunning, Step: 40, Steps: 900, Loss: 1.52, ExamplesPerSecond: 4800, Updated: at.Add(3 * time.Second)}
	for _, tt := range []struct {
		name string
		st   api.TrainingStatus
		want []string
	}{
		{"nothing reported", api.TrainingStatus{Jobs: []api.TrainingJob{{ID: 1, State: api.TrainingRunning}}}, []string{"loss ?", "? ex/s"}},
		{"a job just started", api.TrainingStatus{Jobs: []api.TrainingJob{first, second, starting}}, []string{"jobs 2 done, 1 running", "loss 0.370", "? ex/s"}},
		{"a job under way", api.TrainingStatus{Jobs: []api.TrainingJob{first, second, going}}, []string{"loss 1.520", "4800 ex/s"}},
		{"done", api.TrainingStatus{Jobs: []api.TrainingJob{second, first}, Done: true, Progress: 1}, []string{"jobs 2 done, 0 running", "loss 0.370", "0 ex/s", "ETA 0s"}},
		{"earlier jobs not followed", api.TrainingStatus{Jobs: []api.TrainingJob{first, second, starting}}, []string{"jobs 0 done, 1 running", "loss ?"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var follow func(int64) bool
			if tt.name == "earlier jobs not followed" {
				follow = func(id int64) bool { return id == 3 }
			}
			line := trainingLine(&tt.st, time.Second, follow)
			for _, want := range tt.want {
				if !strings.Contains(line, want) {
					t.Errorf("bar %q, want %q", line, want)
				}
			}
		})
	}
}
