package sdk

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestInitSample(t *testing.T) {
	shape := []int64{40, 50}
	tests := []struct {
		name  string
		init  Init
		check func(v []float32) bool
	}{
		{"constant", Constant(0.25), func(v []float32) bool {
			return !slices.ContainsFunc(v, func(x float32) bool { return x != 0.25 })
		}},
		{"uniform", Uniform(-0.5, 0.25), func(v []float32) bool {
			return !slices.ContainsFunc(v, func(x float32) bool { return x < -0.5 || x >= 0.25 })
		}},
		{"normal", Normal(1, 0.1), func(v []float32) bool {
			mean := 0.0
			for _, x := range v {
				mean += float64(x)
			}
			return math.Abs(mean/float64(len(v))-1) < 0.02
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tt.init.Sample("p", shape, 42)
			if err != nil {
				t.Fatal(err)
			}
			if a.Validate() != nil || len(a.Float32) != 2000 || !slices.Equal(a.Shape, shape) {
				t.Fatalf("tensor %v %v", a.Shape, a.Validate())
			}
			if !tt.check(a.Float32) {
				t.Errorf("values do not follow %+v", tt.init)
			}
			b, _ := tt.init.Sample("p", shape, 42)
			if !slices.Equal(a.Float32, b.Float32) {
				t.Error("the same seed gave different values")
			}
			c, _ := tt.init.Sample("p", shape, 43)
			if tt.init.Dist != DistConstant && slices.Equal(a.Float32, c.Float32) {
				t.Error("another seed gave the same values")
			}
		})
	}
}

// TestInitSampleGolden pins the generator: every engine and host must draw these values.
func TestInitSampleGolden(t *testing.T) {
	got, err := Uniform(0, 1).Sample("p", []int64{3}, SeedFor(1, "peft.lora/0/query/A"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0.8575578, 0.86668724, 0.0197129}; !slices.Equal(got.Float32, want) {
		t.Errorf("uniform draws %v, want %v", got.Float32, want)
	}
	n, _ := Normal(0, 1).Sample("p", []int64{2}, 7)
	if want := []float32{1.0559852, -0.36838883}; !slices.Equal(n.Float32, want) {
		t.Errorf("normal draws %v, want %v", n.Float32, want)
	}
	if got := SeedFor(1, "a"); got != 13906159068427031964 {
		t.Errorf("SeedFor(1, a) = %d", got)
	}
	if SeedFor(1, "a") == SeedFor(1, "b") || SeedFor(1, "a") == SeedFor(2, "a") {
		t.Error("SeedFor collides on a different name or seed")
	}
}

func TestInitValidate(t *testing.T) {
	for _, bad := range []Init{{}, {Dist: "beta"}, Normal(0, -1), Uniform(1, 0), Constant(math.Inf(1)), Normal(math.NaN(), 1)} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("%+v: %v, want ErrInvalidPlan", bad, err)
		}
	}
	if _, err := Constant(1).Sample("p", []int64{-1}, 0); !errors.Is(err, ErrInvalidTensor) {
		t.Errorf("negative shape: %v", err)
	}
}
