package sdk

import (
	"errors"
	"testing"
)

func TestFactorial(t *testing.T) {
	for _, tc := range []struct{ n, want int }{{0, 1}, {1, 1}, {4, 24}, {6, 720}, {20, 2432902008176640000}} {
		if got := Factorial(tc.n); got != tc.want {
			t.Errorf("Factorial(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	if got := Factorial(30); got != int(^uint(0)>>1) {
		t.Errorf("Factorial(30) = %d, want saturation", got)
	}
}

func TestSelectRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  SelectRequest
		ok   bool
	}{
		{"minimal", SelectRequest{Slices: 1, Budget: 1}, true},
		{"every order", SelectRequest{Slices: 4, Budget: 24}, true},
		{"with prior", SelectRequest{Slices: 2, Budget: 2, Prior: []float64{0, 1}}, true},
		{"too many slices", SelectRequest{Slices: MaxSlices + 1, Budget: 1}, false},
		{"budget above max", SelectRequest{Slices: 20, Budget: MaxBudget + 1}, false},
		{"budget above L!", SelectRequest{Slices: 4, Budget: 25}, false},
		{"negative prior", SelectRequest{Slices: 2, Budget: 1, Prior: []float64{-0.1, 0.5}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
		})
	}
}
