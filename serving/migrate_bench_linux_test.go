package serving_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// BenchmarkMigrate times one shard of a trained model (one input) on two threads, one held to
// the first CPU this process may use and one to the last (CPUs 0 and 1 on 2 cores; on a larger
// host, likely two cores that share no cache but the last level), three ways: "kept", one
// session run back to back on the first; "moved", one session run on each CPU in turn, so that
// every run finds its weights and buffers in the other core's caches; "own", two sessions run on
// each CPU in turn, each keeping its core. "moved" against "own" is what running a session on the
// core that ran it last saves (warmpool), with the same hand-over between threads and the same
// idle gaps on each core; "own" against "kept", what those idle gaps cost. The "-spin" variants
// do the same with every thread, the benchmark's included, polling instead of sleeping while it
// waits, so that no core idles; they run only with 3 CPUs or more, the benchmark's own thread
// held to the CPUs other than the two measured (on 2, the spinning threads take every Go P and
// a run back from ONNX Runtime waits for one).
//
//	go test ./serving -run '^$' -bench Migrate -benchtime 2000x -count 3
func BenchmarkMigrate(b *testing.B) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil || all.Count() < 2 {
		b.Skip("needs two CPUs")
	}
	var ends []int // the first and last CPU of the set
	for c := range len(all) * 64 {
		if all.IsSet(c) {
			ends = append(ends[:min(len(ends), 1)], c)
		}
	}
	b.Logf("CPUs %d and %d", ends[0], ends[1])
	ctx := context.Background()
	fx := benchFixture(b)
	ck := fx.Served(b)[0]
	p0, p1 := fx.Predictor(b, 1), fx.Predictor(b, 1)
	x := ort.NewTensor(fx.Test[0], append([]int64{1}, fx.Rec.InputShape...)...)
	var cpus [2]chan func()
	done := make(chan struct{}, 1)
	var spin atomic.Bool // the threads and the benchmark wait by polling: no core idles
	for c := range cpus {
		cpus[c] = make(chan func(), 1)
		defer close(cpus[c])
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			var set unix.CPUSet
			set.Set(ends[c])
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				panic(err)
			}
			for {
				var f func()
				if spin.Load() {
					select {
					case f = <-cpus[c]:
					default:
						continue
					}
				} else {
					f = <-cpus[c]
				}
				if f == nil {
					return
				}
				f()
				done <- struct{}{}
			}
		}()
	}
	modes := []string{"kept", "moved", "own"}
	if all.Count() >= 3 {
		modes = append(modes, "kept-spin", "moved-spin", "own-spin")
	}
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			spin.Store(strings.HasSuffix(mode, "-spin"))
			if spin.Load() {
				// This goroutine polls too: hold it off the two measured CPUs.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				rest := all
				rest.Clear(ends[0])
				rest.Clear(ends[1])
				if err := unix.SchedSetaffinity(0, &rest); err != nil {
					b.Fatal(err)
				}
				defer unix.SchedSetaffinity(0, &all)
			}
			mode := strings.TrimSuffix(mode, "-spin")
			d := make([]time.Duration, 0, b.N)
			var err error
			for i := 0; b.Loop(); i++ {
				c, p := 0, p0
				switch {
				case mode == "moved":
					c = i % 2
				case mode == "own":
					c, p = i%2, [2]*adapters.Predictor{p0, p1}[i%2]
				}
				cpus[c] <- func() {
					t0 := time.Now()
					_, err = p.Logits(ctx, ck, x, 0)
					d = append(d, time.Since(t0))
				}
				if spin.Load() {
					for len(done) == 0 {
					}
				}
				<-done
				if err != nil {
					b.Fatal(err)
				}
			}
			reportP50(b, d)
		})
	}
}

// BenchmarkPair times one shard of a trained model (one input) run back to back on a thread
// held to the first CPU this process may use, while a thread held to another CPU does one of:
// "idle", nothing; "yield", what a polling helper does between shares (sched_yield and a clock
// read, in a loop); "busy", a loop that never leaves user space; "shard", another session's
// runs of the same shard back to back. It runs for every other CPU of the set, so on a host
// whose vCPUs share physical cores (hyperthreads the guest is not told about) the sibling of the
// first CPU shows as the one whose "shard" and "busy" slow the first down most. A split
// prediction runs its shards side by side on two such threads while idle helpers poll; this says
// what each costs the other.
//
//	go test ./serving -run '^$' -bench Pair -benchtime 1000x
func BenchmarkPair(b *testing.B) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil || all.Count() < 2 {
		b.Skip("needs two CPUs")
	}
	var cpus []int
	for c := range len(all) * 64 {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	ctx := context.Background()
	fx := benchFixture(b)
	ck := fx.Served(b)[0]
	p0, p1 := fx.Predictor(b, 1), fx.Predictor(b, 1)
	x := ort.NewTensor(fx.Test[0], append([]int64{1}, fx.Rec.InputShape...)...)
	// pinned runs f on a thread of its own held to CPU c, and returns when f does.
	pinned := func(c int, f func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			var set unix.CPUSet
			set.Set(c)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				panic(err)
			}
			f()
		}()
		<-done
	}
	for _, other := range cpus[1:] {
		for _, mode := range []string{"idle", "yield", "rawyield", "gosched", "helper", "busy", "shard"} {
			b.Run(fmt.Sprintf("cpu%02d/%s", other, mode), func(b *testing.B) {
				var stop atomic.Bool
				var wg sync.WaitGroup
				if mode != "idle" {
					wg.Add(1)
					go func() {
						defer wg.Done()
						pinned(other, func() {
							var sink int64
							for !stop.Load() {
								switch mode {
								case "yield":
									yieldCPU()
									sink += time.Now().UnixNano()
								case "rawyield":
									unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
									sink += time.Now().UnixNano()
								case "gosched":
									runtime.Gosched()
									sink += time.Now().UnixNano()
								case "helper":
									runtime.Gosched()
									yieldCPU()
									sink += time.Now().UnixNano()
								case "busy":
									for i := range 1000 {
										sink += int64(i) * sink
									}
								case "shard":
									if _, err := p1.Logits(ctx, ck, x, 0); err != nil {
										panic(err)
									}
								}
							}
							_ = sink
						})
					}()
				}
				d := make([]time.Duration, 0, b.N)
				var err error
				pinned(cpus[0], func() {
					for b.Loop() {
						t0 := time.Now()
						if _, err = p0.Logits(ctx, ck, x, 0); err != nil {
							break
						}
						d = append(d, time.Since(t0))
					}
				})
				stop.Store(true)
				wg.Wait()
				if err != nil {
					b.Fatal(err)
				}
				reportP50(b, d)
			})
		}
	}
}

// yieldCPU is serving's yield of a polling helper (sched_yield).
func yieldCPU() { unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
