package training

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseInput(t *testing.T) {
	tests := []struct {
		in    string
		shape []int64
		want  []float32
		err   string
	}{
		{`[1, 2.5, -3e2]`, []int64{3}, []float32{1, 2.5, -300}, ""},
		{` [[1,2],[3,4]] `, []int64{2, 2}, []float32{1, 2, 3, 4}, ""},
		{`[1,2,3,4]`, []int64{2, 2}, []float32{1, 2, 3, 4}, ""}, // flat
		{`[[1,2,3,4]]`, []int64{2, 2}, nil, "nested as [1 4], want [2 2] or flat"},
		{`[[1,2],[3,4]]`, []int64{4}, nil, "nested as [2 2], want [4] or flat"},
		{`[[1,2,3],[4,5,6]]`, []int64{3, 2}, nil, "nested as [2 3], want [3 2]"}, // channels last
		{`[[[1],[2]],[[3],[4]]]`, []int64{1, 2, 2}, []float32{1, 2, 3, 4}, ""},   // dimensions of 1 aside
		{`[[[1,2]],[[3,4]]]`, []int64{2, 2, 1}, []float32{1, 2, 3, 4}, ""},
		{`[[[0.25]], [ -0 ], [1E-3]]`, []int64{3}, nil, "a number among arrays"},
		{`[1, [2, 3]]`, []int64{3}, nil, "an array among numbers"},
		{`[[1,2],[3]]`, []int64{3}, nil, "an array of 1 elements where the first at its depth has 2"},
		{`[[1],[]]`, []int64{1}, nil, "empty array"},
		{`[[[[[[[[[1]]]]]]]]]`, []int64{1}, nil, "nested deeper than 8"},
		{`[1,2]`, []int64{3}, nil, "has 2 values, want 3"},
		{`[1,2,3,4]`, []int64{3}, nil, "more than 3"},
		{`[1,"2",3]`, []int64{3}, nil, "array of numbers"},
		{`{"a":1}`, []int64{1}, nil, "array of numbers"},
		{`[1,,2]`, []int64{2}, nil, "unexpected ','"},
		{`[1 2]`, []int64{2}, nil, "unexpected number"},
		{`[1,2]]`, []int64{2}, nil, "trailing"},
		{`[1,2] x`, []int64{2}, nil, "trailing"},
		{`[1,2`, []int64{2}, nil, "unterminated"},
		{`1`, []int64{1}, nil, "array of numbers"},
		{`[1e39]`, []int64{1}, nil, "finite float32"},
		{`[1e999]`, []int64{1}, nil, "finite float32"},
		{`[01]`, []int64{1}, nil, "not a JSON number"},
		{`[1.]`, []int64{1}, nil, "not a JSON number"},
		{`[NaN]`, []int64{1}, nil, "array of numbers"},
		{`[]`, []int64{1}, nil, "empty array"},
		{`[-]`, []int64{1}, nil, "not a JSON number"},
		{`[1e]`, []int64{1}, nil, "not a JSON number"},
		{`[1e+]`, []int64{1}, nil, "not a JSON number"},
		{`[1-2]`, []int64{1}, nil, "not a JSON number"},
		{`[-0.5e-2]`, []int64{1}, []float32{-0.005}, ""},
		{``, []int64{1}, nil, "empty"},
		{`[1,]`, []int64{1}, nil, "unexpected ']'"},
	}
	for _, tt := range tests {
		got, err := ParseInput(json.RawMessage(tt.in), tt.shape)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseInput(%s, %v) = %v, %v; want an error with %q", tt.in, tt.shape, got, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseInput(%s, %v) = %v, %v; want %v", tt.in, tt.shape, got, err, tt.want)
		}
	}
	// Every float32 survives encoding/json and back bit for bit.
	vals := []float32{0, 1, -1, 0.1, 1.0 / 3, math.MaxFloat32, math.SmallestNonzeroFloat32, -123456.78}
	b, _ := json.Marshal(vals)
	got, err := ParseInput(b, []int64{int64(len(vals))})
	if err != nil || !slices.Equal(got, vals) {
		t.Fatalf("round trip %s = %v, %v", b, got, err)
	}
}

func TestInputLayout(t *testing.T) {
	for _, tt := range []struct {
		nested []int
		shape  []int64
		ok     bool
	}{
		{[]int{784}, []int64{1, 28, 28}, true},
		{[]int{1, 28, 28}, []int64{1, 28, 28}, true},
		{[]int{28, 28}, []int64{1, 28, 28}, true},
		{[]int{28, 28, 1}, []int64{1, 28, 28}, true},
		{[]int{1, 1, 28, 1, 28}, []int64{1, 28, 28}, true},
		{[]int{28, 28}, []int64{28, 1, 28}, true},
		{[]int{14, 56}, []int64{1, 28, 28}, false},
		{[]int{32, 32, 3}, []int64{3, 32, 32}, false},
		{[]int{3, 32, 32}, []int64{3, 32, 32}, true},
		{[]int{3, 1024}, []int64{3, 32, 32}, false},
		{[]int{1, 1}, []int64{1}, true},
		{[]int{2, 1}, []int64{2, 2}, false},
	} {
		if got := InputLayout(tt.nested, tt.shape); got != tt.ok {
			t.Errorf("InputLayout(%v, %v) = %v, want %v", tt.nested, tt.shape, got, tt.ok)
		}
	}
}

// TestScanInput: ScanInput parses one input out of a longer text and says where it ends;
// AppendInput appends to what dst holds. Both count the values they add, not dst's.
func TestScanInput(t *testing.T) {
	tests := []struct {
		b    string
		i, n int
		want []float32 // after dst's 9
		end  int
		err  string
	}{
		{`{"inputs":[[1,2], [3,4]]}`, 11, 2, []float32{1, 2}, 16, ""},
		{`{"inputs":[[1,2], [3,4]]}`, 17, 2, []float32{3, 4}, 23, ""},
		{`x [[1],[2]]], 5`, 1, 2, []float32{1, 2}, 11, ""},
		{`ab[1,,2]`, 2, 2, nil, 0, "unexpected ',' at byte 5"},
		{`ab[1,2,3]`, 2, 2, nil, 0, "more than 2"},
		{`ab[1]`, 2, 2, nil, 0, "has 1 values, want 2"},
		{`ab[1,2`, 2, 2, nil, 0, "unterminated"},
		{`ab`, 2, 2, nil, 0, "empty"},
		{`ab   `, 2, 2, nil, 0, "has 0 values"},
	}
	for _, tt := range tests {
		got, end, err := ScanInput([]float32{9}, []byte(tt.b), tt.i, []int64{int64(tt.n)})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ScanInput(%s, %d) = %v, %d, %v; want an error with %q", tt.b, tt.i, got, end, err, tt.err)
			}
			continue
		}
		if err != nil || end != tt.end || !slices.Equal(got, append([]float32{9}, tt.want...)) {
			t.Errorf("ScanInput(%s, %d) = %v, %d, %v; want [9 %v], %d", tt.b, tt.i, got, end, err, tt.want, tt.end)
		}
	}
	got, err := AppendInput([]float32{9}, []byte(`[1, 2] `), []int64{2})
	if err != nil || !slices.Equal(got, []float32{9, 1, 2}) {
		t.Errorf("AppendInput = %v, %v; want [9 1 2]", got, err)
	}
	if _, err := AppendInput([]float32{9}, []byte(`[1]`), []int64{2}); err == nil || !strings.Contains(err.Error(), "has 1 values, want 2") {
		t.Errorf("AppendInput of 1 value for 2 = %v; want a count error", err)
	}
}

// BenchmarkParseInput parses one 28x28 image as a prediction request carries it: one of
// values spread over [0, 1), and one mostly 0 as an MNIST digit is (4 pixels in 5).
//
//	go test ./training -run '^$' -bench ParseInput
func BenchmarkParseInput(b *testing.B) {
	spread, digit := make([]float32, 784), make([]float32, 784)
	for i := range spread {
		spread[i] = float32(i%255) / 255
		if i%5 == 0 {
			digit[i] = float32(i%255) / 255
		}
	}
	for name, v := range map[string][]float32{"spread": spread, "digit": digit} {
		raw, _ := json.Marshal(v)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := ParseInput(raw, []int64{1, 28, 28}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestShortDecimalMatchesParseFloat: ParseInput's fast path gives strconv.ParseFloat's float32,
// bit for bit: on the shortest forms of random float32s (any, and in the range of pixel values
// and features), on decimals at and next to the points halfway between two float32s (where
// rounding to float64 first would round twice), and on random plain decimals.
func TestShortDecimalMatchesParseFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]string{}
	for range 100000 {
		f := math.Float32frombits(rng.Uint32())
		if !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
			cases["any float32"] = append(cases["any float32"], strconv.FormatFloat(float64(f), 'f', -1, 32))
		}
		u := rng.Float32()
		if rng.IntN(2) == 0 {
			u = (u - 0.5) * 2000
		}
		cases["float32 in [0,1) or [-1000,1000)"] = append(cases["float32 in [0,1) or [-1000,1000)"], strconv.FormatFloat(float64(u), 'f', -1, 32))
		// Halfway between u and the next float32 up, exactly (a float64), in its shortest form
		// and with 9 to 19 significant digits.
		next := math.Nextafter32(u, float32(math.Inf(1)))
		mid := (float64(u) + float64(next)) / 2
		cases["halfway"] = append(cases["halfway"], strconv.FormatFloat(mid, 'f', -1, 64))
		for _, digits := range []int{9, 12, 17, 19} {
			point := digits - 1 - int(math.Floor(math.Log10(math.Abs(mid))))
			cases["halfway"] = append(cases["halfway"], strconv.FormatFloat(mid, 'f', max(point, 0), 64))
		}
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteByte('-')
		}
		if ints := rng.IntN(8); ints == 0 {
			b.WriteByte('0')
		} else {
			b.WriteByte(byte('1' + rng.IntN(9)))
			for range ints - 1 {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		if frac := rng.IntN(24); frac > 0 {
			b.WriteByte('.')
			for range frac {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		cases["plain decimal"] = append(cases["plain decimal"], b.String())
	}
	for kind, ss := range cases {
		fast := 0
		for _, s := range ss {
			want, err := strconv.ParseFloat(s, 32)
			if err != nil {
				t.Fatalf("%s: strconv.ParseFloat(%s): %v", kind, s, err)
			}
			if _, _, ok := shortDecimal([]byte(s), 0); ok {
				fast++
			}
			got, err := ParseInput(json.RawMessage("["+s+"]"), []int64{1})
			if err != nil || math.Float32bits(got[0]) != math.Float32bits(float32(want)) {
				t.Fatalf("%s: ParseInput([%s]) = %v, %v; strconv.ParseFloat gives %v", kind, s, got, err, float32(want))
			}
		}
		t.Logf("%s: %d numbers, %d by the fast path", kind, len(ss), fast)
		if kind != "any float32" && fast < len(ss)/3 {
			t.Errorf("%s: the fast path took only %d of %d numbers", kind, fast, len(ss))
		}
	}
}

// TestCheckpointKeys: every write gets a key of its own, even for the same stage and snapshot
// (two jobs can train one stage), and keys of both layouts parse back.
func TestCheckpointKeys(t *testing.T) {
	a, b := CheckpointKey("m-1", 2, 1, 3, 4, 9, 17), CheckpointKey("m-1", 2, 1, 3, 4, 9, 17)
	if a == b {
		t.Fatalf("two writes of C[2, 1, 4] got one key %s", a)
	}
	if !strings.HasPrefix(a, SequencePrefix("m-1", 2, 1)) {
		t.Errorf("%s is not under %s", a, SequencePrefix("m-1", 2, 1))
	}
	for _, tt := range []struct {
		key                    string
		shard, seq, gen, stage int
		ok                     bool
	}{
		{a, 2, 1, 3, 4, true},
		{"models/m-1/checkpoints/shard-0/seq-1/gen-2/stage-3.safetensors", 0, 1, 2, 3, true},                      // earliest layout
		{"models/m-1/checkpoints/shard-0/seq-1/gen-2/stage-3/v17-0123456789abcdef.safetensors", 0, 1, 2, 3, true}, // without the job
		{"models/m-10/checkpoints/shard-0/seq-1/gen-2/stage-3.safetensors", 0, 0, 0, 0, false},
		{"models/m-1/backbone.onnx", 0, 0, 0, 0, false},
	} {
		sh, sq, gen, st, ok := ParseCheckpointKey("m-1", tt.key)
		if ok != tt.ok || (ok && (sh != tt.shard || sq != tt.seq || gen != tt.gen || st != tt.stage)) {
			t.Errorf("ParseCheckpointKey(%s) = %d %d %d %d %v", tt.key, sh, sq, gen, st, ok)
		}
	}
	for key, want := range map[string]int64{a: 9, CheckpointKey("m-1", 0, 0, 1, 1, 12345678901, 0): 12345678901} {
		if job, ok := CheckpointJob(key); !ok || job != want {
			t.Errorf("CheckpointJob(%s) = %d, %v; want %d", key, job, ok, want)
		}
	}
	for _, key := range []string{"models/m-1/checkpoints/shard-0/seq-1/gen-2/stage-3.safetensors",
		"models/m-1/checkpoints/shard-0/seq-1/gen-2/stage-3/v17-0123456789abcdef.safetensors"} {
		if job, ok := CheckpointJob(key); ok {
			t.Errorf("CheckpointJob(%s) = %d, true; an earlier layout names no job", key, job)
		}
	}
}
