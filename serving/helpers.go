package serving

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// helpers run the extra shares of a prediction split over several Predictors (see model.run),
// and its ledger read (see Service.PredictWith); helperCount says how many goroutines.
//
// Handing work to another goroutine costs a thread wake-up when that goroutine sleeps, and on a
// virtual machine waking an idle vCPU takes 0.1-0.3 ms (go test ./serving -bench Wake): more
// than running one shard of the demo model, and a vCPU that slept also runs the next request
// slower. So after every prediction the helpers keep polling for work for a while
// (Config.Spin), yielding to any other runnable thread, before they sleep: under steady traffic
// a share starts within microseconds and the cores stay awake for the next request. The caller
// never waits for a helper that has not started: it runs the share itself instead
// (share.claim), so a late helper never holds a prediction up. (That does not make a split
// prediction as fast as its shards in turn everywhere: on a 16-core host, threads free to use
// every core, it measured 0.40-0.44 ms against 0.35-0.38; see the README.)
type helpers struct {
	tasks    chan *share
	wake     chan struct{}
	spin     time.Duration
	epoch    time.Time
	n        int32        // the most helpers (see ensure), and the predictions in flight from which none polls
	active   atomic.Int64 // time.Since(epoch) when the latest prediction ended
	asleep   atomic.Int32 // helpers waiting on tasks or wake
	inflight atomic.Int32 // predictions begun and not ended
	crowded  atomic.Int64 // time.Since(epoch) when a prediction last began while another was in flight
	quit     chan struct{}
	wg       sync.WaitGroup

	smu     sync.Mutex // guards started and closed
	started int32
	closed  bool
}

// share is one part of a prediction's work that a helper (or a goroutine of its own) or its
// caller runs, whichever claims it first.
type share struct {
	claimed atomic.Bool
	run     func()
	done    chan struct{} // closed once run returns, when do ran it
	panic   any           // what run panicked with, when do ran it
}

// claim reports whether the caller won the share (a share runs exactly once).
func (s *share) claim() bool { return s.claimed.CompareAndSwap(false, true) }

// do runs the share unless its caller claimed it first. A panic is kept for the caller (see
// wait) rather than taking the process down from a goroutine no handler recovers.
func (s *share) do() {
	if !s.claim() {
		return // its caller ran it meanwhile
	}
	defer func() {
		s.panic = recover()
		close(s.done)
	}()
	s.run()
}

// wait waits until do has run the share, and returns what the share panicked with (nil when it
// did not), for the caller to panic with in its own goroutine.
func (s *share) wait() any {
	<-s.done
	return s.panic
}

// newHelpers returns the helpers of a service, up to n of them, none started yet (see ensure).
func newHelpers(n int, spin time.Duration) *helpers {
	h := &helpers{tasks: make(chan *share, 4*n), wake: make(chan struct{}, n), spin: spin, epoch: time.Now(), n: int32(n), quit: make(chan struct{})}
	h.crowded.Store(-int64(crowdedFor)) // no overlap yet
	return h
}

// ensure starts helpers until k run, or n: as many as a lone prediction can use, so that no
// more poll than that. A prediction alone in the service hands its ledger read and each shard
// but its own to a helper (see Service.PredictWith and model.run): a model of k shards uses k.
//
// With one helper per 2 cores whatever the model, one client sending single inputs back to
// back to the demo model (2 shards) on a 16-core host kept 10.6 cores busy, its 8 helpers
// taking turns through the scheduler's global run queue (runtime.lock2 was half the CPU
// profile), where 2 helpers have all the work there is. With 2, the server takes 3.5 cores
// there, and that client's p50 went from 0.66-0.68 ms to 0.45-0.55 (a minimal load generator,
// two alternated runs on an H100 host's 16 vCPUs).
func (h *helpers) ensure(k int) {
	h.smu.Lock()
	defer h.smu.Unlock()
	for !h.closed && h.started < min(int32(k), h.n) {
		h.started++
		h.wg.Add(1)
		go h.loop()
	}
}

// running returns how many helpers ensure has started.
func (h *helpers) running() int {
	h.smu.Lock()
	defer h.smu.Unlock()
	return int(h.started)
}

// begin and end bracket a prediction (its wait for a Predictor included).
func (h *helpers) begin() {
	if h.inflight.Add(1) > 1 {
		h.crowded.Store(int64(time.Since(h.epoch)))
	}
}

// end marks the end of a prediction. When it was the last in flight, the helpers poll for the
// next one until Spin from now, and sleeping ones wake up for it, unless predictions overlapped
// in the last crowdedFor. While as many predictions as cores are in flight nobody polls: every
// core has work, and polling would only take CPU from it.
func (h *helpers) end() {
	if h.inflight.Add(-1) != 0 || h.spin <= 0 || h.crowdedNow() {
		return
	}
	h.active.Store(int64(time.Since(h.epoch)))
	for range h.asleep.Load() {
		select {
		case h.wake <- struct{}{}:
		default:
			return
		}
	}
}

// alone reports whether the caller's prediction is the only one in flight: only then are its
// shards split (under load each runs on one Predictor, most in batches: see model.run).
func (h *helpers) alone() bool { return h.inflight.Load() == 1 }

// polling reports whether an idle helper should keep polling rather than sleep: whether the
// helpers poll now, so that work offered to them starts within microseconds. Work is offered
// only then: offered to sleeping helpers it wakes one into the run queue of the offering
// goroutine's P, and when that goroutine goes on into an ONNX Runtime run, the P stays with it (a
// cgo call) and the helper waits for the runtime to take the P back (under 8 clients 0.16 ms on
// average, go tool trace's scheduler latency).
func (h *helpers) polling() bool {
	return h.inflight.Load() < h.n && !h.crowdedNow() && time.Since(h.epoch) < time.Duration(h.active.Load())+h.spin
}

// crowdedNow reports whether two predictions were in flight at once in the last crowdedFor.
// Concurrent clients keep the cores awake with their own requests, and there polling helpers
// only take CPU from the work in progress (the HTTP requests in flight, not yet predictions):
// with 8 clients on 2 cores they made the p99 latency 8-12 ms instead of 5-6.
func (h *helpers) crowdedNow() bool {
	return time.Since(h.epoch) < time.Duration(h.crowded.Load())+crowdedFor
}

// crowdedFor is how long after predictions overlapped the helpers do not poll.
const crowdedFor = 2 * time.Millisecond

// offer queues a share for the helpers, unless the queue is full (its caller then runs it, as
// any share no helper has started).
func (h *helpers) offer(s *share) {
	select {
	case h.tasks <- s:
	default:
	}
}

func (h *helpers) loop() {
	defer h.wg.Done()
	for {
		select {
		case s := <-h.tasks:
			s.do()
			continue
		case <-h.quit:
			return
		default:
		}
		if h.polling() {
			runtime.Gosched() // let any other goroutine of the process run
			yieldCPU()        // and any other thread of the machine
			continue
		}
		h.asleep.Add(1)
		select {
		case s := <-h.tasks:
			h.asleep.Add(-1)
			s.do()
		case <-h.wake:
			h.asleep.Add(-1)
		case <-h.quit:
			h.asleep.Add(-1)
			return
		}
	}
}

func (h *helpers) close() {
	h.smu.Lock()
	h.closed = true
	h.smu.Unlock()
	close(h.quit)
	h.wg.Wait()
}
