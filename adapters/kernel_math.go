package adapters

import "math"

// This file is float32 Exp and Erf for the executors of kernel_elementwise.go. simplego computes
// both through float64 math.Exp and math.Erf, which made them a third of a training step's time
// outside the matmuls (the softmax, GELU and its gradient). The float32 versions below are
// polynomial and rational approximations with an error of a few float32 ulps
// (TestExpf, TestErff bound it); inputs outside their ranges, NaN included, go to float64 math.

// vecExpf and vecErff, when not nil, are vector versions of expf and erff over blocks of 8: they
// process dst[i] = f(x[i]) for i < n (a multiple of 8) until the first block they leave to the
// scalar function and return how many elements they did (kernel_math_amd64.go).
var vecExpf, vecErff func(dst, x *float32, n int) int

// applyMath sets y[i] = f(x[i]), with vec (vecExpf or vecErff for f) where it is set.
func applyMath(f func(float32) float32, vec func(dst, x *float32, n int) int, y, x []float32) {
	y = y[:len(x)]
	i := 0
	if vec != nil {
		n8 := len(x) / 8 * 8
		for i < n8 {
			i += vec(&y[i], &x[i], n8-i)
			if i < n8 { // a block the vector code leaves to f
				for j := i; j < i+8; j++ {
					y[j] = f(x[j])
				}
				i += 8
			}
		}
	}
	for ; i < len(x); i++ {
		y[i] = f(x[i])
	}
}

// mulf is a*b rounded to float32 before anything adds to it. The Go spec lets the compiler fuse
// a multiply and an add (it does on arm64, and on amd64 with GOAMD64=v3), but never across an
// explicit conversion: expf and erff must round every product as the vector code does (no fused
// multiply-adds), on every build.
func mulf(a, b float32) float32 { return float32(a * b) }

// expf returns e**x in float32 (Cephes expf): x = n·ln2 + r with |r| <= ln2/2, e**r by a
// degree-7 polynomial, scaled by 2**n through the exponent bits.
func expf(x float32) float32 {
	if !(x > -87 && x < 88) { // also NaN
		return float32(math.Exp(float64(x)))
	}
	t := mulf(x, 1.44269504088896341) + 0.5
	n := int32(t)
	if float32(n) > t {
		n--
	}
	fn := float32(n)
	r := x - mulf(fn, 0.693359375)
	r -= mulf(fn, -2.12194440e-4)
	y := mulf(1.9875691500e-4, r) + 1.3981999507e-3
	y = mulf(y, r) + 8.3334519073e-3
	y = mulf(y, r) + 4.1665795894e-2
	y = mulf(y, r) + 1.6666665459e-1
	y = mulf(y, r) + 5.0000001201e-1
	y = mulf(mulf(y, r), r) + r + 1
	return y * math.Float32frombits(uint32(n+127)<<23)
}

// erff returns erf(x) in float32 by the rational approximation Eigen and XLA use for float32
// (x·P(x²)/Q(x²) on [-4, 4], ±1 beyond, where erf rounds to ±1 in float32).
func erff(x float32) float32 {
	if x != x {
		return x
	}
	x = min(max(x, -4), 4)
	x2 := x * x
	p := mulf(x2, -2.72614225801306e-10) + 2.77068142495902e-08
	p = mulf(x2, p) + -2.10102402082508e-06
	p = mulf(x2, p) + -5.69250639462346e-05
	p = mulf(x2, p) + -7.34990630326855e-04
	p = mulf(x2, p) + -2.95459980854025e-03
	p = mulf(x2, p) + -1.60960333262415e-02
	p *= x
	q := mulf(x2, -1.45660718464996e-05) + -2.13374055278905e-04
	q = mulf(x2, q) + -1.68282697438203e-03
	q = mulf(x2, q) + -7.37332916720468e-03
	q = mulf(x2, q) + -1.42647390514189e-02
	return p / q
}
