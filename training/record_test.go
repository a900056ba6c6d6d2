package training

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseInput(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want []float32
		err  string
	}{
		{`[1, 2.5, -3e2]`, 3, []float32{1, 2.5, -300}, ""},
		{` [[1,2],[3,4]] `, 4, []float32{1, 2, 3, 4}, ""},
		{`[[[0.25]], [ -0 ], [1E-3]]`, 3, []float32{0.25, 0, 0.001}, ""},
		{`[1,2]`, 3, nil, "has 2 values, want 3"},
		{`[1,2,3,4]`, 3, nil, "more than 3"},
		{`[1,"2",3]`, 3, nil, "array of numbers"},
		{`{"a":1}`, 1, nil, "array of numbers"},
		{`[1,,2]`, 2, nil, "unexpected ','"},
		{`[1 2]`, 2, nil, "unexpected number"},
		{`[1,2]]`, 2, nil, "trailing"},
		{`[1,2] x`, 2, nil, "trailing"},
		{`[1,2`, 2, nil, "unterminated"},
		{`1`, 1, nil, "array of numbers"},
		{`[1e39]`, 1, nil, "finite float32"},
		{`[1e999]`, 1, nil, "finite float32"},
		{`[01]`, 1, nil, "not a JSON number"},
		{`[1.]`, 1, nil, "not a JSON number"},
		{`[NaN]`, 1, nil, "array of numbers"},
		{`[]`, 1, nil, "has 0 values"},
		{`[-]`, 1, nil, "not a JSON number"},
		{`[1e]`, 1, nil, "not a JSON number"},
		{`[1e+]`, 1, nil, "not a JSON number"},
		{`[1-2]`, 1, nil, "not a JSON number"},
		{`[-0.5e-2]`, 1, []float32{-0.005}, ""},
		{``, 1, nil, "empty"},
		{`[1,]`, 1, nil, "unexpected ']'"},
	}
	for _, tt := range tests {
		got, err := ParseInput(json.RawMessage(tt.in), tt.n)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseInput(%s) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseInput(%s) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	// Every float32 survives encoding/json and back bit for bit.
	vals := []float32{0, 1, -1, 0.1, 1.0 / 3, math.MaxFloat32, math.SmallestNonzeroFloat32, -123456.78}
	b, _ := json.Marshal(vals)
	got, err := ParseInput(b, len(vals))
	if err != nil || !slices.Equal(got, vals) {
		t.Fatalf("round trip %s = %v, %v", b, got, err)
	}
}

// BenchmarkParseInput parses one 28x28 image as a prediction request carries it.
//
//	go test ./training -run '^$' -bench ParseInput
func BenchmarkParseInput(b *testing.B) {
	v := make([]float32, 784)
	for i := range v {
		v[i] = float32(i%255) / 255
	}
	raw, _ := json.Marshal(v)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseInput(raw, len(v)); err != nil {
			b.Fatal(err)
		}
	}
}
