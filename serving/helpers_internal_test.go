package serving

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/internal/testmodel"
)

// TestShareRunsOnce races helpers against the callers that offered them shares: every share
// runs exactly once, by a helper or by its caller, and the caller never returns before it ran.
func TestShareRunsOnce(t *testing.T) {
	for _, spin := range []time.Duration{-1, DefaultSpin} {
		t.Run(spin.String(), func(t *testing.T) {
			h := newHelpers(3, max(spin, 0))
			h.ensure(3)
			var wg sync.WaitGroup
			const callers, per = 4, 300
			runs := make([]atomic.Int32, callers*per)
			var byCaller atomic.Int32
			for c := range callers {
				wg.Go(func() {
					for i := range per {
						h.begin()
						id := c*per + i
						s := &share{run: func() { runs[id].Add(1) }, done: make(chan struct{})}
						h.offer(s)
						if i%2 == 0 {
							spinFor(time.Duration(i%7) * time.Microsecond)
						}
						if s.claim() {
							byCaller.Add(1)
							s.run()
						} else {
							<-s.done
						}
						if n := runs[id].Load(); n != 1 {
							t.Errorf("share %d ran %d times when its caller went on", id, n)
						}
						h.end()
					}
				})
			}
			wg.Wait()
			h.close()
			for id := range runs {
				if n := runs[id].Load(); n != 1 {
					t.Errorf("share %d ran %d times", id, n)
				}
			}
			t.Logf("%d of %d shares run by their callers", byCaller.Load(), callers*per)
			if h.inflight.Load() != 0 {
				t.Errorf("%d predictions still in flight", h.inflight.Load())
			}
		})
	}
}

// BenchmarkWake measures how long a share offered to the helpers takes to start, after an idle
// gap like the one between two requests, with helpers that sleep at once and with polling ones.
//
//	go test ./serving -run '^$' -bench Wake
func BenchmarkWake(b *testing.B) {
	for _, spin := range []time.Duration{0, DefaultSpin} {
		for _, gap := range []time.Duration{0, 300 * time.Microsecond} {
			b.Run("spin="+spin.String()+"/gap="+gap.String(), func(b *testing.B) {
				h := newHelpers(2, spin)
				h.ensure(2)
				defer h.close()
				var lat []float64
				for b.Loop() { // ns/op includes the gap; start-µs is the figure
					if gap > 0 {
						time.Sleep(gap)
					}
					h.begin()
					t0 := time.Now()
					started := make(chan time.Duration, 1)
					s := &share{run: func() { started <- time.Since(t0) }, done: make(chan struct{})}
					h.offer(s)
					spinFor(200 * time.Microsecond) // the caller's own share
					if s.claim() {
						s.run()
						lat = append(lat, float64(<-started)/1e3)
						h.end()
						continue
					}
					<-s.done
					lat = append(lat, float64(<-started)/1e3)
					h.end()
				}
				slices.Sort(lat)
				b.ReportMetric(lat[len(lat)/2], "start-µs")
			})
		}
	}
}

func spinFor(d time.Duration) {
	for t := time.Now(); time.Since(t) < d; {
	}
}

// TestPollingAfterPredictions: after a lone prediction the helpers poll for the next one; after
// predictions that overlapped they do not, until crowdedFor has passed without an overlap.
func TestPollingAfterPredictions(t *testing.T) {
	h := newHelpers(2, time.Hour)
	defer h.close()
	lone := func() { h.begin(); h.end() }
	overlapping := func() { h.begin(); h.begin(); h.end(); h.end() }
	for _, tt := range []struct {
		name  string
		run   func()
		sleep time.Duration
		poll  bool
	}{
		{"after a lone prediction", lone, 0, true},
		{"after overlapping predictions", overlapping, 0, false},
		{"after a lone prediction right after overlapping ones", lone, 0, false},
		{"after a lone prediction, crowdedFor after the overlap", lone, crowdedFor + time.Millisecond, true},
	} {
		time.Sleep(tt.sleep)
		tt.run()
		if got := h.polling(); got != tt.poll {
			t.Errorf("%s: polling() = %v, want %v", tt.name, got, tt.poll)
		}
	}
}

// TestHelperCount: beyond two Ps, helpers never take every P (see helperCount).
func TestHelperCount(t *testing.T) {
	for _, tt := range []struct{ procs, want int }{{2, 2}, {3, 2}, {4, 2}, {8, 4}, {16, 8}, {64, 32}} {
		if got := helperCount(tt.procs); got != tt.want || (tt.procs > 2 && got >= tt.procs) {
			t.Errorf("helperCount(%d) = %d, want %d", tt.procs, got, tt.want)
		}
	}
}

// TestSharePanicReachesCaller: a share that panics on a goroutine of its own (or a helper) does
// not take the process down: its caller gets the panic, to raise in its own goroutine, where the
// HTTP server's recovery handles it.
func TestSharePanicReachesCaller(t *testing.T) {
	s := &share{run: func() { panic("injected") }, done: make(chan struct{})}
	go s.do()
	for !s.claimed.Load() {
		runtime.Gosched()
	}
	if s.claim() {
		t.Fatal("the caller claimed a share the goroutine had started")
	}
	if v := s.wait(); v != "injected" {
		t.Errorf("wait = %v, want the share's panic", v)
	}
}

// TestHelpersFitTheModels: a service runs as many helpers as the loaded model of most shards
// can use (helpers.ensure), never fewer than it once did, never more than helperCount, and
// none once closed.
func TestHelpersFitTheModels(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(16)) // helperCount(16) = 8
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	svc, err := New(Config{Store: st, Blobs: blobs, Pool: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if got := svc.helpers.running(); got != 0 {
		t.Fatalf("%d helpers run before any model is loaded, want 0", got)
	}
	for _, tt := range []struct {
		shards, want int
	}{
		{2, 2},  // the demo model's m
		{3, 3},  // a wider model
		{1, 3},  // a narrower one starts none
		{12, 8}, // helperCount(16) at most
	} {
		name := fmt.Sprintf("m%d", tt.shards)
		testmodel.New(t, st, blobs, testmodel.Options{Name: name, Shards: tt.shards, Samples: 4 * tt.shards, Untrained: true})
		if _, err := svc.Info(ctx, name); err != nil {
			t.Fatal(err)
		}
		if got := svc.helpers.running(); got != tt.want {
			t.Errorf("after loading a model of %d shards: %d helpers, want %d", tt.shards, got, tt.want)
		}
	}
	h := newHelpers(4, time.Hour)
	h.close()
	if h.ensure(4); h.running() != 0 {
		t.Errorf("ensure started %d helpers after close", h.running())
	}
}
