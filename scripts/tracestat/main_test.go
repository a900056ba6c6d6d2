package main

import (
	"bytes"
	"context"
	"runtime/trace"
	"strings"
	"testing"
	"time"
)

// TestRead traces tasks with regions on two goroutines and finds them, their counts and
// durations, and the time a region's goroutine spent blocked.
func TestRead(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	const tasks = 5
	for range tasks {
		ctx, task := trace.NewTask(context.Background(), "predict")
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer trace.StartRegion(ctx, "shard").End()
			spin(2 * time.Millisecond)
		}()
		r := trace.StartRegion(ctx, "wait for a share")
		<-done
		r.End()
		trace.WithRegion(ctx, "encode", func() { spin(time.Millisecond) })
		task.End()
	}
	trace.Stop()

	st, err := read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	k := st.kinds["predict"]
	if k == nil || len(k.took) != tasks {
		t.Fatalf("kinds %v: want %d predict tasks", st.order, tasks)
	}
	if got := k.took.quantile(0.5); got < 3*time.Millisecond {
		t.Errorf("task p50 %v, want >= 3 ms", got)
	}
	for name, want := range map[string]time.Duration{"shard": 2 * time.Millisecond, "wait for a share": 2 * time.Millisecond, "encode": time.Millisecond} {
		rs := k.regions[name]
		if rs == nil || len(rs.took) != tasks {
			t.Fatalf("region %q: %+v, want %d", name, rs, tasks)
		}
		if got := rs.took.quantile(0.5); got < want || got > want+50*time.Millisecond {
			t.Errorf("region %q p50 %v, want about %v", name, got, want)
		}
		var sum time.Duration
		for _, d := range rs.state {
			sum += d.mean()
		}
		if m := rs.took.mean(); sum > m+time.Microsecond || sum < m-time.Microsecond*time.Duration(nStates) {
			t.Errorf("region %q: states sum to %v, took %v", name, sum, m)
		}
	}
	// Waiting for the share is being blocked, not running.
	w := k.regions["wait for a share"]
	if w.state[blocked].mean() < w.took.mean()/2 {
		t.Errorf("wait for a share: blocked %v of %v", w.state[blocked].mean(), w.took.mean())
	}
	var out strings.Builder
	st.print(&out)
	for _, s := range []string{`task "predict": 5`, "wait for a share", "shard", "encode"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}

// spin runs for d without blocking.
func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}
