package training

import (
	"testing"
	"time"

	"github.com/s3t-dev/s3t/adapters"
)

// TestProgressETA: a job says nothing of its time left during its first etaAfter (its first
// steps also pay for the trunk activations and the graphs' compilation), then estimates it from
// its pace so far.
func TestProgressETA(t *testing.T) {
	var r Runner
	a := &activeJob{work: 100, started: time.Now().Add(-etaAfter / 2)}
	r.progress(a, adapters.StageProgress{Stage: 1})
	if a.row.ETA != 0 || a.row.Step != 1 {
		t.Errorf("after one step in %v: ETA %v, step %d; want 0 (not known yet), 1", etaAfter/2, a.row.ETA, a.row.Step)
	}
	a.started = time.Now().Add(-2 * time.Second)
	r.progress(a, adapters.StageProgress{Stage: 1})
	// 2 of 100 units of work in 2 s: 98 s left.
	if a.row.ETA < 97*time.Second || a.row.ETA > 99*time.Second {
		t.Errorf("after 2 of 100 units in 2 s: ETA %v, want 98s", a.row.ETA)
	}
}
