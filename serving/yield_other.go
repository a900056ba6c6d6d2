//go:build !linux

package serving

import "runtime"

// yieldCPU lets other goroutines run (the operating system's yield is used on Linux only).
func yieldCPU() { runtime.Gosched() }
