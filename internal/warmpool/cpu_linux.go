package warmpool

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CPU returns the CPU the calling thread runs on (getcpu(2)), or -1 when it cannot tell. The
// thread may move right after; callers take it as a hint.
func CPU() int {
	var cpu uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); e != 0 {
		return -1
	}
	return int(cpu)
}

// OnCPU runs f on a thread of its own held to cpu, and returns once f has; for tests and
// benchmarks that need to know where work runs. It fails when the thread may not run there.
func OnCPU(cpu int, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, held to one CPU, ends with the goroutine
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("warmpool: hold a thread to CPU %d: %w", cpu, err)
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}
