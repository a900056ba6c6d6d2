// Command tracestat sums up the tasks and regions of Go execution traces: for each task kind
// (a server's "predict" requests, s3t bench serve's "direct" runs), how long tasks took, how long
// their goroutine waited to run just before the task began, and for each region kind inside
// them ("shard", "decode", "ledger read", ...) how long it took and what its goroutine did
// meanwhile: ran, waited to run, sat in a system or cgo call (ONNX Runtime runs are cgo calls),
// or was blocked.
//
// It reads the traces that s3t bench serve --trace DIR writes:
//
//	cd scripts/tracestat && go run . DIR/server.trace DIR/direct.trace
//
// It is a module of its own so that its trace parser (golang.org/x/exp/trace) stays out of
// s3t's dependencies.
package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tracestat TRACE...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		st, err := readFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tracestat: %s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Printf("%s\n", path)
		st.print(os.Stdout)
		fmt.Println()
	}
}

func readFile(path string) (*stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f)
}

// States a goroutine spends a region in.
const (
	running = iota
	runnable
	syscall
	blocked
	nStates
)

var stateNames = [nStates]string{"running", "runnable", "syscall/cgo", "blocked"}

func stateOf(s trace.GoState) int {
	switch s {
	case trace.GoRunning:
		return running
	case trace.GoRunnable:
		return runnable
	case trace.GoSyscall:
		return syscall
	}
	return blocked
}

// durations collects a quantity's samples.
type durations []time.Duration

func (d durations) quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func (d durations) mean() time.Duration {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return sum / time.Duration(len(d))
}

// regionStats is one region kind's figures within one task kind.
type regionStats struct {
	took  durations
	state [nStates]durations
}

// kindStats is one task kind's figures.
type kindStats struct {
	took    durations // task begin to end
	wake    durations // the task's goroutine: its last wait to run before the task began
	regions map[string]*regionStats
	order   []string // region kinds in the order first seen
}

type stats struct {
	kinds map[string]*kindStats
	order []string
}

// openRegion is a region begun and not yet ended on a goroutine.
type openRegion struct {
	task  trace.TaskID
	kind  string
	begin trace.Time
	state [nStates]time.Duration
}

// goState is what is known of a goroutine while reading.
type goState struct {
	state    int
	since    trace.Time
	lastWake time.Duration // its last Runnable -> Running wait
	// runnableSince is when it last became runnable.
	runnableSince trace.Time
	regions       []*openRegion
}

// flush counts the time since s.since, in s.state, to every open region, up to t.
func (s *goState) flush(t trace.Time) {
	d := t.Sub(s.since)
	for _, o := range s.regions {
		o.state[s.state] += d
	}
	s.since = t
}

func read(r io.Reader) (*stats, error) {
	rd, err := trace.NewReader(r)
	if err != nil {
		return nil, err
	}
	st := &stats{kinds: map[string]*kindStats{}}
	kind := func(name string) *kindStats {
		k, ok := st.kinds[name]
		if !ok {
			k = &kindStats{regions: map[string]*regionStats{}}
			st.kinds[name] = k
			st.order = append(st.order, name)
		}
		return k
	}
	type taskInfo struct {
		kind  string
		begin trace.Time
	}
	tasks := map[trace.TaskID]taskInfo{}
	gs := map[trace.GoID]*goState{}
	g := func(id trace.GoID, t trace.Time) *goState {
		s, ok := gs[id]
		if !ok {
			s = &goState{state: blocked, since: t}
			gs[id] = s
		}
		return s
	}
	for {
		ev, err := rd.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		t := ev.Time()
		switch ev.Kind() {
		case trace.EventStateTransition:
			tr := ev.StateTransition()
			if tr.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			from, to := tr.Goroutine()
			s := g(tr.Resource.Goroutine(), t)
			if from == trace.GoRunnable && to == trace.GoRunning {
				s.lastWake = t.Sub(s.runnableSince)
			}
			if to == trace.GoRunnable {
				s.runnableSince = t
			}
			s.flush(t)
			s.state = stateOf(to)
		case trace.EventTaskBegin:
			tk := ev.Task()
			tasks[tk.ID] = taskInfo{kind: tk.Type, begin: t}
			if ev.Goroutine() != trace.NoGoroutine {
				kind(tk.Type).wake = append(kind(tk.Type).wake, g(ev.Goroutine(), t).lastWake)
			}
		case trace.EventTaskEnd:
			tk := ev.Task()
			if info, ok := tasks[tk.ID]; ok {
				kind(info.kind).took = append(kind(info.kind).took, t.Sub(info.begin))
				delete(tasks, tk.ID)
			}
		case trace.EventRegionBegin:
			rg := ev.Region()
			if _, ok := tasks[rg.Task]; !ok || ev.Goroutine() == trace.NoGoroutine {
				continue
			}
			s := g(ev.Goroutine(), t)
			s.flush(t)
			s.regions = append(s.regions, &openRegion{task: rg.Task, kind: rg.Type, begin: t})
		case trace.EventRegionEnd:
			rg := ev.Region()
			if ev.Goroutine() == trace.NoGoroutine {
				continue
			}
			s := g(ev.Goroutine(), t)
			i := slices.IndexFunc(s.regions, func(o *openRegion) bool { return o.task == rg.Task && o.kind == rg.Type })
			if i < 0 {
				continue
			}
			s.flush(t)
			o := s.regions[i]
			s.regions = slices.Delete(s.regions, i, i+1)
			info, ok := tasks[rg.Task]
			if !ok {
				continue
			}
			k := kind(info.kind)
			rs, ok := k.regions[o.kind]
			if !ok {
				rs = &regionStats{}
				k.regions[o.kind] = rs
				k.order = append(k.order, o.kind)
			}
			rs.took = append(rs.took, t.Sub(o.begin))
			for i, v := range o.state {
				rs.state[i] = append(rs.state[i], v)
			}
		}
	}
	return st, nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }

func (st *stats) print(w io.Writer) {
	for _, name := range st.order {
		k := st.kinds[name]
		if len(k.took) == 0 {
			continue
		}
		fmt.Fprintf(w, "task %q: %d, took p50 %s µs, p90 %s, mean %s; its goroutine's wait to run before it: p50 %s µs, p90 %s, mean %s\n",
			name, len(k.took), us(k.took.quantile(0.5)), us(k.took.quantile(0.9)), us(k.took.mean()),
			us(k.wake.quantile(0.5)), us(k.wake.quantile(0.9)), us(k.wake.mean()))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "region\tper task\tp50 µs\tp90 µs\tmean µs\t")
		for _, s := range stateNames {
			fmt.Fprintf(tw, "%s mean µs\t", s)
		}
		fmt.Fprintln(tw)
		order := slices.Clone(k.order)
		slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(k.regions[b].took.mean(), k.regions[a].took.mean()) })
		for _, r := range order {
			rs := k.regions[r]
			fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%s\t", r, float64(len(rs.took))/float64(len(k.took)),
				us(rs.took.quantile(0.5)), us(rs.took.quantile(0.9)), us(rs.took.mean()))
			for _, d := range rs.state {
				fmt.Fprintf(tw, "%s\t", us(d.mean()))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}
