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
		drawTraining(&b, &tt.st, time.Second)
		if !strings.Contains(b.String(), tt.want) {
			t.Errorf("%+v: bar %q, want %q", tt.st, b.String(), tt.want)
		}
	}
}
