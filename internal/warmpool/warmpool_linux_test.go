package warmpool

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// onCPU runs f on a thread held to cpu (skipping the test where that CPU is not available).
func onCPU(t *testing.T, cpu int, f func()) {
	t.Helper()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil || !all.IsSet(cpu) {
		t.Skipf("CPU %d not available", cpu)
	}
	err := OnCPU(cpu, func() {
		if got := CPU(); got != cpu {
			t.Errorf("CPU() = %d on a thread held to CPU %d", got, cpu)
		}
		f()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGetPrefersTheCallersCPU(t *testing.T) {
	var p Pool[string]
	onCPU(t, 0, func() { p.Ran("a"); p.Ran("d") })
	onCPU(t, 1, func() { p.Ran("b") })
	for _, v := range []string{"d", "a", "b", "c", "e"} { // c and e never ran; e is on top
		p.Put(v)
	}
	tests := []struct {
		cpu  int
		want string
	}{
		{1, "b"}, // under c and e, but it ran on CPU 1
		{0, "a"}, // ran on CPU 0, put after d
		{1, "e"}, // none left that ran on CPU 1: one that never ran
		{1, "c"},
		{1, "d"}, // all ran elsewhere: the one put first
	}
	for _, tt := range tests {
		onCPU(t, tt.cpu, func() {
			if got, _ := p.Get(); got != tt.want {
				t.Errorf("Get on CPU %d = %q, want %q", tt.cpu, got, tt.want)
			}
		})
	}
}

func TestGetTakesTheLastPutOfTheCPU(t *testing.T) {
	var p Pool[string]
	onCPU(t, 0, func() {
		p.Ran("a")
		p.Ran("b")
	})
	for _, v := range []string{"a", "b", "c"} {
		p.Put(v)
	}
	onCPU(t, 0, func() {
		if got, _ := p.Get(); got != "b" {
			t.Errorf("Get = %q, want b: put after a, both ran on CPU 0", got)
		}
	})
}

func TestTrade(t *testing.T) {
	tests := []struct {
		name    string
		ran     map[string]int // resource -> CPU it last ran on
		idle    []string
		held    string
		cpu     int
		want    string
		wantOut []string // the idle ones after, bottom to top
	}{
		{"held ran here", map[string]int{"x": 0, "y": 0}, []string{"y"}, "x", 0, "x", []string{"y"}},
		{"held never ran", map[string]int{"y": 0}, []string{"y"}, "x", 0, "x", []string{"y"}},
		{"an idle one ran here", map[string]int{"x": 1, "y": 0}, []string{"z", "y", "w"}, "x", 0, "y", []string{"z", "w", "x"}},
		{"none ran here", map[string]int{"x": 1, "y": 1}, []string{"y"}, "x", 0, "x", []string{"y"}},
		{"none idle", map[string]int{"x": 1}, nil, "x", 0, "x", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Pool[string]
			for v, cpu := range tt.ran {
				onCPU(t, cpu, func() { p.Ran(v) })
			}
			for _, v := range tt.idle {
				p.Put(v)
			}
			onCPU(t, tt.cpu, func() {
				if got := p.Trade(tt.held); got != tt.want {
					t.Errorf("Trade(%q) = %q, want %q", tt.held, got, tt.want)
				}
			})
			out := p.idle // bottom to top
			if len(out) != len(tt.wantOut) {
				t.Fatalf("idle after = %q, want %q", out, tt.wantOut)
			}
			for i := range out {
				if out[i] != tt.wantOut[i] {
					t.Fatalf("idle after = %q, want %q", out, tt.wantOut)
				}
			}
		})
	}
}

func TestCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	if c := CPU(); c < 0 || !set.IsSet(c) {
		t.Fatalf("CPU() = %d, not one this thread may run on", c)
	}
}
