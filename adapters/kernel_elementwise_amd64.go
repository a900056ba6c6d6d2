//go:build !purego

package adapters

import "golang.org/x/sys/cpu"

// This file installs the AVX loops of kernel_elementwise_amd64.s for float32 Add, Sub, Mul and
// Div when the CPU has AVX.

func init() {
	if !cpu.X86.HasAVX {
		return
	}
	vecOps = &vectorOps{
		vv: [4]func(dst, x, y *float32, n int){avxAddVV, avxSubVV, avxMulVV, avxDivVV},
		vs: [4]func(dst, x *float32, s float32, n int){avxAddVS, avxSubVS, avxMulVS, avxDivVS},
		sv: [4]func(dst, y *float32, s float32, n int){avxAddSV, avxSubSV, avxMulSV, avxDivSV},
	}
}

//go:noescape
func avxAddVV(dst, x, y *float32, n int)

//go:noescape
func avxSubVV(dst, x, y *float32, n int)

//go:noescape
func avxMulVV(dst, x, y *float32, n int)

//go:noescape
func avxDivVV(dst, x, y *float32, n int)

//go:noescape
func avxAddVS(dst, x *float32, s float32, n int)

//go:noescape
func avxSubVS(dst, x *float32, s float32, n int)

//go:noescape
func avxMulVS(dst, x *float32, s float32, n int)

//go:noescape
func avxDivVS(dst, x *float32, s float32, n int)

//go:noescape
func avxAddSV(dst, y *float32, s float32, n int)

//go:noescape
func avxSubSV(dst, y *float32, s float32, n int)

//go:noescape
func avxMulSV(dst, y *float32, s float32, n int)

//go:noescape
func avxDivSV(dst, y *float32, s float32, n int)
