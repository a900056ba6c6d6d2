//go:build !linux

package warmpool

import "errors"

// CPU returns -1: where the CPU is not known, Pool hands out the resource put last.
func CPU() int { return -1 }

// OnCPU fails: holding a thread to a CPU is implemented on Linux only.
func OnCPU(cpu int, f func()) error {
	return errors.New("warmpool: holding a thread to a CPU needs Linux")
}
