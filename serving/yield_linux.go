package serving

import "syscall"

// yieldCPU offers this thread's CPU to any other runnable thread of the machine, of any
// process (sched_yield), so that a spinning helper does not hold a core a client or another
// server process needs.
func yieldCPU() { syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
