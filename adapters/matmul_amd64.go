//go:build !purego

package adapters

import "golang.org/x/sys/cpu"

// This file is the matmul kernel on AVX2 and FMA (matmul_amd64.s), used when the CPU has them:
// blocks of 4 rows × 16 columns of c are summed in eight vector registers, one fused multiply-add
// per contraction step and element, so each element of c is the chain
// fma(a[i,k-1], b[k-1,j], ... fma(a[i,0], b[0,j], 0)) in increasing p whatever block it falls in
// (rows past the last multiple of 4 use a 1×8 kernel with the same arithmetic): as with the
// scalar kernel, the result does not depend on how rows are split. Columns past the last multiple
// of 8 are summed by a scalar loop in the same order, with a multiply and an add rounded apart
// (not fused, on every build: gemmTail): the same on every run, though not the fused chain. Build
// with -tags purego to leave it out.

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		gemmRowsSIMD = gemmRowsAVX2
	}
}

//go:noescape
func avx2Gemm4x16(k int, a *float32, sam, sak int, b *float32, ldb int, c *float32, ldc int)

//go:noescape
func avx2Gemm1x8(k int, a *float32, sak int, b *float32, ldb int, c *float32)

// gemmRowsAVX2 computes rows [lo, hi) of c = a·b (see matmulBatched for the layouts).
func gemmRowsAVX2(lo, hi, n, k int, a []float32, sam, sak int, b, c []float32) {
	if k == 0 || n == 0 || lo >= hi {
		gemmRowsScalar(lo, hi, n, k, a, sam, sak, b, c)
		return
	}
	// The kernels read a[i·sam + p·sak] for the rows i < hi and p < k, b[:k·n], and write
	// c[lo·n : hi·n]: check those bounds once here.
	_ = a[(hi-1)*sam+(k-1)*sak]
	_ = b[k*n-1]
	_ = c[hi*n-1]
	n16, n8 := n/16*16, n/8*8
	i := lo
	for ; i+4 <= hi; i += 4 {
		for j := 0; j < n16; j += 16 {
			avx2Gemm4x16(k, &a[i*sam], sam, sak, &b[j], n, &c[i*n+j], n)
		}
		for j := n16; j < n8; j += 8 {
			for r := i; r < i+4; r++ {
				avx2Gemm1x8(k, &a[r*sam], sak, &b[j], n, &c[r*n+j])
			}
		}
		for r := i; r < i+4; r++ {
			gemmTail(r, n8, n, k, a, sam, sak, b, c)
		}
	}
	for ; i < hi; i++ {
		for j := 0; j < n8; j += 8 {
			avx2Gemm1x8(k, &a[i*sam], sak, &b[j], n, &c[i*n+j])
		}
		gemmTail(i, n8, n, k, a, sam, sak, b, c)
	}
}

// gemmTail computes c[i, j:n] in plain Go.
func gemmTail(i, j, n, k int, a []float32, sam, sak int, b, c []float32) {
	r0 := i * sam
	for ; j < n; j++ {
		var s float32
		for p := range k {
			s += float32(a[r0+p*sak] * b[p*n+j]) // the conversion forbids fusing: same on every GOAMD64
		}
		c[i*n+j] = s
	}
}
