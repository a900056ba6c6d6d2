package server

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRetrainerCoalesces: the checks run one at a time; a model marked again and again while
// its check runs is checked once more after it, not once per mark; close waits for the check in
// progress and drops the ones not begun.
func TestRetrainerCoalesces(t *testing.T) {
	var (
		mu      sync.Mutex
		checked []string
		running int
		most    int
	)
	started := make(chan string, 16)
	release := make(chan struct{})
	r := &retrainer{apply: func(_ context.Context, model string) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		started <- model
		<-release
		mu.Lock()
		running--
		checked = append(checked, model)
		mu.Unlock()
	}}
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
	if len(started) != 0 {
		t.Errorf("a check started after close: %q", <-started)
	}
}
