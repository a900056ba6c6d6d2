package server

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/store"
)

// TestRetrainerCoalesces: the checks run one at a time; a model marked again and again while
// its check runs is checked once more after it, not once per mark; close waits for the check in
// progress, whose context it ends, and drops the ones not begun.
func TestRetrainerCoalesces(t *testing.T) {
	var (
		mu      sync.Mutex
		checked []string
		ended   []bool // whether each check's context had ended when it was released
		running int
		most    int
	)
	started := make(chan string, 16)
	release := make(chan struct{})
	r := newRetrainer(func(ctx context.Context, model string) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		started <- model
		<-release
		mu.Lock()
		running--
		checked = append(checked, model)
		ended = append(ended, ctx.Err() != nil)
		mu.Unlock()
	})
	r.mark("a")
	if got := <-started; got != "a" {
		t.Fatalf("first check of %q, want a", got)
	}
	for range 10 {
		r.mark("a", "b") // a deletion burst while a's check runs
	}
	release <- struct{}{} // a's first check ends
	second := []string{<-started}
	release <- struct{}{}
	second = append(second, <-started)
	slices.Sort(second)
	if !slices.Equal(second, []string{"a", "b"}) {
		t.Fatalf("checks after the burst: %v, want a and b once each", second)
	}
	r.mark("c") // marked while b's or a's check runs: dropped by close below
	done := make(chan struct{})
	go func() { r.close(); close(done) }()
	select {
	case <-done:
		t.Fatal("close returned while a check was running")
	case <-time.After(50 * time.Millisecond):
	}
	release <- struct{}{}
	<-done
	r.mark("d") // after close: ignored
	mu.Lock()
	defer mu.Unlock()
	if len(checked) != 3 || most != 1 {
		t.Errorf("checked %v with up to %d at once; want 3 checks (a, then a and b), one at a time", checked, most)
	}
	if !slices.Equal(ended, []bool{false, false, true}) {
		t.Errorf("contexts ended %v; want only the check in progress at close", ended)
	}
	if len(started) != 0 {
		t.Errorf("a check started after close: %q", <-started)
	}
}

// TestRetrainShards: the policy retrains trained shards that deletions cut below its limits,
// and leaves a shard short only because its training stopped early.
func TestRetrainShards(t *testing.T) {
	for _, tc := range []struct {
		name          string
		live, trained [][]int
		gen           [][]int
		pol           api.RetrainPolicy
		want          []int
	}{
		{"cut to nothing", [][]int{{0, 0}, {4, 4}}, [][]int{{4, 4}, {4, 4}}, nil, api.RetrainPolicy{}, []int{0}},
		{"one sequence still serves", [][]int{{0, 3}, {4, 4}}, [][]int{{4, 4}, {4, 4}}, nil, api.RetrainPolicy{}, nil},
		{"cut below min prefix", [][]int{{2, 1}, {4, 4}}, [][]int{{4, 4}, {4, 4}}, nil, api.RetrainPolicy{MinPrefix: 3}, []int{0}},
		{"training stopped early, not cut", [][]int{{4, 4}, {4, 4}}, [][]int{{2, 2}, {4, 4}}, nil, api.RetrainPolicy{MinPrefix: 3}, nil},
		{"never trained", [][]int{{4, 4}, {4, 4}}, [][]int{{0, 0}, {0, 0}}, nil, api.RetrainPolicy{}, nil},
		{"cut before any stage was trained", [][]int{{0, 4}, {4, 4}}, [][]int{{0, 0}, {4, 4}}, nil, api.RetrainPolicy{}, nil},
		{"retrained generation cut again", [][]int{{0, 0}, {4, 4}}, [][]int{{4, 4}, {4, 4}}, [][]int{{2, 2}, {1, 1}}, api.RetrainPolicy{}, []int{0}},
		{"too few live shards", [][]int{{0, 0}, {0, 0}, {4, 4}}, [][]int{{4, 4}, {4, 4}, {4, 4}}, nil, api.RetrainPolicy{MinLiveShards: 2}, []int{0, 1}},
		{"disabled", [][]int{{0, 0}, {4, 4}}, [][]int{{4, 4}, {4, 4}}, nil, api.RetrainPolicy{Disabled: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen := tc.gen
			if gen == nil {
				for range tc.live {
					gen = append(gen, []int{1, 1})
				}
			}
			m := &store.Model{Shards: len(tc.live), Slices: 4, Live: tc.live, Trained: tc.trained, Gen: gen}
			var got []int
			for k := range retrainShards(m, tc.pol) {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("retrain shards %v, want %v", got, tc.want)
			}
		})
	}
}
