package adapters

import (
	"math"
	"testing"
)

// ulps returns the distance in float32 ulps between got and want (want rounded to float32).
func ulps(got float32, want float64) float64 {
	w := float32(want)
	if got == w {
		return 0
	}
	u := math.Nextafter32(w, float32(math.Inf(1))) - w
	if u == 0 || math.IsInf(float64(u), 0) {
		u = w - math.Nextafter32(w, float32(math.Inf(-1)))
	}
	return math.Abs(float64(got)-want) / float64(u)
}

// TestExpf bounds expf's error against float64 math.Exp over its whole range.
func TestExpf(t *testing.T) {
	worst, at := 0.0, float32(0)
	for x := float32(-103); x < 89; x += 0.000731 {
		want := math.Exp(float64(x))
		got := expf(x)
		if want < 1e-37 { // denormal results: absolute error
			if d := math.Abs(float64(got) - want); d > 1e-44 && ulps(got, want) > 1 {
				t.Fatalf("expf(%g) = %g, want %g", x, got, want)
			}
			continue
		}
		if u := ulps(got, want); u > worst {
			worst, at = u, x
		}
	}
	t.Logf("worst error %.2f ulp at %g", worst, at)
	if worst > 2 {
		t.Errorf("expf: error %.2f ulp at %g", worst, at)
	}
	for _, c := range []struct{ x, want float32 }{
		{0, 1}, {float32(math.Inf(1)), float32(math.Inf(1))}, {float32(math.Inf(-1)), 0}, {100, float32(math.Inf(1))}, {-200, 0},
	} {
		if got := expf(c.x); got != c.want {
			t.Errorf("expf(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if got := expf(float32(math.NaN())); got == got {
		t.Errorf("expf(NaN) = %g", got)
	}
}

// TestErff bounds erff's error against float64 math.Erf: 4e-7 absolute (7 ulps of 1: the
// approximation is weakest where erf approaches ±1) and 1e-6 relative.
func TestErff(t *testing.T) {
	worstAbs, worstRel := 0.0, 0.0
	for x := float32(-6); x < 6; x += 0.000317 {
		want := math.Erf(float64(x))
		got := erff(x)
		d := math.Abs(float64(got) - want)
		worstAbs = max(worstAbs, d)
		if want != 0 {
			worstRel = max(worstRel, d/math.Abs(want))
		}
		if d > 4e-7 || (want != 0 && d/math.Abs(want) > 1e-6) {
			t.Fatalf("erff(%g) = %.9g, want %.9g", x, got, want)
		}
	}
	t.Logf("worst error %.3g absolute, %.3g relative", worstAbs, worstRel)
	for _, c := range []struct{ x, want float32 }{
		{0, 0}, {float32(math.Inf(1)), 1}, {float32(math.Inf(-1)), -1}, {10, 1},
	} {
		if got := erff(c.x); got != c.want {
			t.Errorf("erff(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if got := erff(float32(math.NaN())); got == got {
		t.Errorf("erff(NaN) = %g", got)
	}
}

// TestVectorMathAgrees checks the vector Exp and Erf against expf and erff element by element,
// special values included: bit for bit, on every build (mulf keeps the compiler from fusing the
// scalar code's multiply-adds).
func TestVectorMathAgrees(t *testing.T) {
	if vecExpf == nil || vecErff == nil {
		t.Skip("no vector math on this CPU or build")
	}
	var x []float32
	for v := float32(-110); v < 100; v += 0.0137 {
		x = append(x, v)
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	x = append(x, 0, -0.0, nan, inf, -inf, 87.99, -86.99, 88, -87, 3.99, 4, -4.01, 1e-30, -1e-30)
	x = append(x, make([]float32, 8-len(x)%8+3)...) // a tail
	for _, c := range []struct {
		name string
		f    func(float32) float32
		vec  func(dst, x *float32, n int) int
	}{{"exp", expf, vecExpf}, {"erf", erff, vecErff}} {
		got := make([]float32, len(x))
		applyMath(c.f, c.vec, got, x)
		for i, v := range x {
			want := c.f(v)
			if math.Float32bits(got[i]) != math.Float32bits(want) && !(got[i] != got[i] && want != want) {
				t.Fatalf("%s(%g): vector %g, scalar %g", c.name, v, got[i], want)
			}
		}
	}
}
