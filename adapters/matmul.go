package adapters

import (
	"runtime"
	"sync"
)

// This file is the float32 matrix product the package's graphs run on (kernel.go installs it into
// simplego as the executor of DotGeneral). simplego v0.26.0 multiplies with a scalar loop over
// blocked copies of both operands; training a ViT block spends most of its time there.
//
// Two kernels compute c = a·b with b row-major [k×n]:
//   - on amd64 CPUs with AVX2 and FMA, matmul_amd64.s: blocks of 4×16 elements of c held in vector
//     registers (about 80 GFLOP/s on one core of the development machine, BenchmarkGemm);
//   - elsewhere (or built with -tags purego), plain Go: four rows of c at a time as row updates
//     c[i,:] += a[i,p]·b[p,:] + a[i,p+1]·b[p+1,:] (two contraction steps per pass over a row of c,
//     so the row is loaded and stored half as often), inner loops over contiguous rows that the
//     compiler keeps free of bounds checks (about 8-11 GFLOP/s, several times simplego's loop).
//
// Determinism: in both kernels every element of c is summed over p in increasing order by the
// same arithmetic whichever group of rows it falls in, so the result does not depend on how rows
// are split between goroutines or on the number of cores: it is a function of the operands, the
// kernel (CPU features) and the build (the compiler may fuse the plain-Go multiply-adds when
// GOAMD64 allows it).

// dotGeneral computes the DotGeneral of two float32 operands into out, laid out as simplego's
// normalized output [batch, lhsCross, rhsCross]: batch axes in the order given, cross axes in
// increasing order, contracting axes paired by position. out is overwritten.
func dotGeneral(lhs []float32, lhsDims, lhsContracting, lhsBatch []int,
	rhs []float32, rhsDims, rhsContracting, rhsBatch []int, out []float32) {
	lhsCross := crossAxes(len(lhsDims), lhsContracting, lhsBatch)
	rhsCross := crossAxes(len(rhsDims), rhsContracting, rhsBatch)
	nb, m, k := prodDims(lhsDims, lhsBatch), prodDims(lhsDims, lhsCross), prodDims(lhsDims, lhsContracting)
	n := prodDims(rhsDims, rhsCross)

	// lhs as [batch][m][k] (row stride k) or, already laid out as [batch][k][m], read transposed.
	a, sam, sak := lhs, k, 1
	switch {
	case isIdentity(concat3(lhsBatch, lhsCross, lhsContracting)):
	case isIdentity(concat3(lhsBatch, lhsContracting, lhsCross)):
		sam, sak = 1, m
	default:
		a = permute(lhs, lhsDims, concat3(lhsBatch, lhsCross, lhsContracting))
	}
	// rhs as [batch][k][n].
	b := rhs
	if perm := concat3(rhsBatch, rhsContracting, rhsCross); !isIdentity(perm) {
		b = permute(rhs, rhsDims, perm)
	}
	matmulBatched(nb, m, n, k, a, sam, sak, b, out)
}

// matmulParallelMin is the number of multiply-adds from which matmulBatched splits its work
// between goroutines (a goroutine per part: not worth it for smaller products). Training runs
// micro-batches concurrently (Trainer) and keeps the cores busy either way (splitting or not
// made no measurable difference to `s3t bench train`); a single forward pass gains from it.
const matmulParallelMin = 1 << 21

// matmulBatched computes, for each of nb batches, c[m×n] = a[m×k]·b[k×n]: element (i, p) of batch
// q of a is a[q·m·k + i·sam + p·sak], b and c are contiguous and row-major. Large products are
// split by rows between up to GOMAXPROCS goroutines; the result does not depend on the split.
func matmulBatched(nb, m, n, k int, a []float32, sam, sak int, b, c []float32) {
	rows := nb * m
	parts := 1
	if work := rows * n * k; work >= matmulParallelMin {
		parts = min(runtime.GOMAXPROCS(0), work/(matmulParallelMin/2), rows)
	}
	if parts <= 1 {
		matmulRows(0, rows, m, n, k, a, sam, sak, b, c)
		return
	}
	var wg sync.WaitGroup
	for t := range parts {
		lo, hi := rows*t/parts, rows*(t+1)/parts
		wg.Go(func() { matmulRows(lo, hi, m, n, k, a, sam, sak, b, c) })
	}
	wg.Wait()
}

// matmulRows computes rows [lo, hi) of the batched product, rows counted over all batches.
func matmulRows(lo, hi, m, n, k int, a []float32, sam, sak int, b, c []float32) {
	for r := lo; r < hi; {
		q, i := r/m, r%m
		aq, bq := a[q*m*k:(q+1)*m*k], b[q*k*n:(q+1)*k*n]
		cnt := min(hi-r, m-i) // rows left in this batch
		gemmRows(i, i+cnt, n, k, aq, sam, sak, bq, c[q*m*n:(q+1)*m*n])
		r += cnt
	}
}

// gemmRowsSIMD, when not nil, replaces gemmRowsScalar: matmul_amd64.go sets it when the CPU has
// AVX2 and FMA.
var gemmRowsSIMD func(lo, hi, n, k int, a []float32, sam, sak int, b, c []float32)

// gemmRows computes rows [lo, hi) of c = a·b for one batch (see matmulBatched for the layouts).
func gemmRows(lo, hi, n, k int, a []float32, sam, sak int, b, c []float32) {
	if gemmRowsSIMD != nil {
		gemmRowsSIMD(lo, hi, n, k, a, sam, sak, b, c)
		return
	}
	gemmRowsScalar(lo, hi, n, k, a, sam, sak, b, c)
}

// gemmRowsScalar is gemmRows in plain Go.
func gemmRowsScalar(lo, hi, n, k int, a []float32, sam, sak int, b, c []float32) {
	i := lo
	for ; i+4 <= hi; i += 4 {
		gemm4(i, n, k, a, sam, sak, b, c)
	}
	for ; i < hi; i++ {
		gemm1(i, n, k, a, sam, sak, b, c)
	}
}

// gemm4 computes rows i..i+3 of c.
func gemm4(i, n, k int, a []float32, sam, sak int, b, c []float32) {
	c0 := c[i*n : i*n+n]
	c1 := c[(i+1)*n : (i+1)*n+n][:len(c0)]
	c2 := c[(i+2)*n : (i+2)*n+n][:len(c0)]
	c3 := c[(i+3)*n : (i+3)*n+n][:len(c0)]
	clear(c[i*n : (i+4)*n])
	r0, r1, r2, r3 := i*sam, (i+1)*sam, (i+2)*sam, (i+3)*sam
	p := 0
	for ; p+2 <= k; p += 2 {
		o, o1 := p*sak, (p+1)*sak
		x0, x1, x2, x3 := a[r0+o], a[r1+o], a[r2+o], a[r3+o]
		z0, z1, z2, z3 := a[r0+o1], a[r1+o1], a[r2+o1], a[r3+o1]
		bp := b[p*n : p*n+n][:len(c0)]
		bq := b[(p+1)*n : (p+1)*n+n][:len(c0)]
		for j, y := range bp {
			w := bq[j]
			c0[j] += float32(x0*y) + float32(z0*w) // see gemm1 on the conversions
			c1[j] += float32(x1*y) + float32(z1*w)
			c2[j] += float32(x2*y) + float32(z2*w)
			c3[j] += float32(x3*y) + float32(z3*w)
		}
	}
	if p < k {
		o := p * sak
		x0, x1, x2, x3 := a[r0+o], a[r1+o], a[r2+o], a[r3+o]
		bp := b[p*n : p*n+n][:len(c0)]
		for j, y := range bp {
			c0[j] += float32(x0 * y)
			c1[j] += float32(x1 * y)
			c2[j] += float32(x2 * y)
			c3[j] += float32(x3 * y)
		}
	}
}

// gemm1 computes row i of c with the same arithmetic as gemm4. Every product is converted to
// float32 explicitly: the Go spec lets the compiler fuse a multiply and an add (it does on arm64,
// and on amd64 with GOAMD64=v3), but never across an explicit conversion, and fused or not could
// then differ between rows of one 4-row block and a lone row, so with the rows' split (GOMAXPROCS).
func gemm1(i, n, k int, a []float32, sam, sak int, b, c []float32) {
	c0 := c[i*n : i*n+n]
	clear(c0)
	r0 := i * sam
	p := 0
	for ; p+2 <= k; p += 2 {
		x0, z0 := a[r0+p*sak], a[r0+(p+1)*sak]
		bp := b[p*n : p*n+n][:len(c0)]
		bq := b[(p+1)*n : (p+1)*n+n][:len(c0)]
		for j, y := range bp {
			w := bq[j]
			c0[j] += float32(x0*y) + float32(z0*w)
		}
	}
	if p < k {
		x0 := a[r0+p*sak]
		bp := b[p*n : p*n+n][:len(c0)]
		for j, y := range bp {
			c0[j] += float32(x0 * y)
		}
	}
}

// permute returns src (dimensions dims) with its axes permuted: axis a of the result is axis
// perm[a] of src.
func permute(src []float32, dims, perm []int) []float32 {
	dst := make([]float32, len(src))
	permuteInto(dst, src, dims, perm)
	return dst
}

// permuteInto is permute writing into dst, which has src's length.
func permuteInto(dst, src []float32, dims, perm []int) {
	rank := len(dims)
	if len(src) == 0 {
		return
	}
	strides := make([]int, rank)
	s := 1
	for a := rank - 1; a >= 0; a-- {
		strides[a] = s
		s *= dims[a]
	}
	if rank == 0 {
		copy(dst, src)
		return
	}
	// Walk dst in order; idx counts over dst's axes but the last, off is the matching src offset.
	last := dims[perm[rank-1]]
	lastStride := strides[perm[rank-1]]
	idx := make([]int, rank-1)
	off := 0
	for d := 0; d < len(dst); d += last {
		row := dst[d : d+last]
		if lastStride == 1 {
			copy(row, src[off:off+last])
		} else {
			o := off
			for j := range row {
				row[j] = src[o]
				o += lastStride
			}
		}
		for ax := rank - 2; ax >= 0; ax-- {
			idx[ax]++
			off += strides[perm[ax]]
			if idx[ax] < dims[perm[ax]] {
				break
			}
			off -= idx[ax] * strides[perm[ax]]
			idx[ax] = 0
		}
	}
}

// prodDims is the product of dims over axes.
func prodDims(dims, axes []int) int {
	p := 1
	for _, a := range axes {
		p *= dims[a]
	}
	return p
}

// concat3 returns x, y and z concatenated into a new slice.
func concat3(x, y, z []int) []int {
	return append(append(append(make([]int, 0, len(x)+len(y)+len(z)), x...), y...), z...)
}

// isIdentity reports whether perm is 0, 1, ..., len(perm)-1.
func isIdentity(perm []int) bool {
	for i, p := range perm {
		if i != p {
			return false
		}
	}
	return true
}
