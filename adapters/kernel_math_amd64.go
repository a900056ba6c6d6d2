//go:build !purego

package adapters

import "golang.org/x/sys/cpu"

// This file installs the AVX2 versions of expf and erff (kernel_math_amd64.s) for the Exp and Erf
// executors when the CPU has AVX2.

func init() {
	if cpu.X86.HasAVX2 {
		vecExpf, vecErff = avxExpf, avxErff
	}
}

//go:noescape
func avxExpf(dst, x *float32, n int) (done int)

//go:noescape
func avxErff(dst, x *float32, n int) (done int)
