package unlearning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"

	"github.com/s3t-dev/s3t/sdk"
)

func selectSeqs(t *testing.T, sel sdk.Selector, req *sdk.SelectRequest) [][]int {
	t.Helper()
	seqs, err := Select(context.Background(), sel, req)
	if err != nil {
		t.Fatalf("Select(%+v): %v", *req, err)
	}
	return seqs
}

// The vectors of METHOD.md.
func TestCyclicMethodVectors(t *testing.T) {
	tests := []struct {
		L, B int
		want [][]int
	}{
		{4, 4, [][]int{{0, 1, 2, 3}, {3, 0, 1, 2}, {2, 3, 0, 1}, {1, 2, 3, 0}}},
		{4, 2, [][]int{{0, 1, 2, 3}, {3, 0, 1, 2}}},
		{4, 1, [][]int{{0, 1, 2, 3}}},
		{1, 1, [][]int{{0}}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("L%d_B%d", tc.L, tc.B), func(t *testing.T) {
			got := selectSeqs(t, Cyclic{}, &sdk.SelectRequest{Slices: tc.L, Budget: tc.B})
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("cyclic(%d,%d) = %v, want %v", tc.L, tc.B, got, tc.want)
			}
		})
	}
}

// TestCyclicMatchesReference pins every (L <= 6, B <= L!) to the output of the reference
// implementation (testdata/cyclic_reference.json: full vectors for L <= 5, SHA-256 of the
// compact JSON for L = 6).
func TestCyclicMatchesReference(t *testing.T) {
	raw, err := os.ReadFile("testdata/cyclic_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Full   map[string][][]int `json:"full"`
		SHA256 map[string]string  `json:"sha256_L6"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for L := 1; L <= 6; L++ {
		for B := 1; B <= sdk.Factorial(L); B++ {
			key := fmt.Sprintf("%d,%d", L, B)
			got := selectSeqs(t, Cyclic{}, &sdk.SelectRequest{Slices: L, Budget: B})
			if L <= 5 {
				want, ok := ref.Full[key]
				if !ok {
					t.Fatalf("reference lacks %s", key)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("cyclic(%s) = %v, want %v", key, got, want)
				}
			} else {
				b, _ := json.Marshal(got)
				sum := sha256.Sum256(b)
				if h := hex.EncodeToString(sum[:]); h != ref.SHA256[key] {
					t.Fatalf("cyclic(%s): sha256 %s, reference %s", key, h, ref.SHA256[key])
				}
			}
			checked++
		}
	}
	if checked != 1+2+6+24+120+720 {
		t.Fatalf("checked %d cases", checked)
	}
}

func isLatinSquare(seqs [][]int) bool {
	L := len(seqs)
	for p := 0; p < L; p++ {
		seen := make([]bool, L)
		for _, s := range seqs {
			if seen[s[p]] {
				return false
			}
			seen[s[p]] = true
		}
	}
	return true
}

func randomPrior(rng *rand.Rand, L int) []float64 {
	p := make([]float64, L)
	for i := range p {
		p[i] = 0.01 + 0.3*rng.Float64()
	}
	return p
}

// TestSelectorProperties checks every selector for every L <= 6 and B <= L!: B distinct
// permutations, deterministic for a seed; B' = min(B, L) distinct first slices for cyclic
// and bms; a Latin square for bms at B = L, whose best-scoring sequences come first.
func TestSelectorProperties(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range SelectorNames {
		sel, err := NewSelector(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			for L := 1; L <= 6; L++ {
				prior := randomPrior(rng, L)
				for B := 1; B <= sdk.Factorial(L); B++ {
					req := &sdk.SelectRequest{Slices: L, Budget: B, Prior: prior, Seed: int64(L*1000 + B)}
					seqs, err := Select(ctx, sel, req) // checks B distinct permutations
					if err != nil {
						t.Fatalf("L=%d B=%d: %v", L, B, err)
					}
					again := selectSeqs(t, sel, req)
					if !reflect.DeepEqual(seqs, again) {
						t.Fatalf("L=%d B=%d: not deterministic", L, B)
					}
					if name != "random" {
						if got, want := DistinctFirst(seqs), min(B, L); got != want {
							t.Fatalf("L=%d B=%d: %d distinct first slices, want %d", L, B, got, want)
						}
					}
					if name == "bms" {
						if B == L && !isLatinSquare(seqs) {
							t.Fatalf("L=%d: bms is not a Latin square: %v", L, seqs)
						}
						if B <= L {
							for i := 1; i < len(seqs); i++ {
								a, b := LogScore(seqs[i-1], prior, DefaultExpectedDeletions), LogScore(seqs[i], prior, DefaultExpectedDeletions)
								if a < b {
									t.Fatalf("L=%d B=%d: sequence %d scores %v > sequence %d's %v", L, B, i, b, i-1, a)
								}
							}
						}
						// A smaller budget is a prefix of a larger one.
						if B > 1 {
							smaller := selectSeqs(t, sel, &sdk.SelectRequest{Slices: L, Budget: B - 1, Prior: prior, Seed: req.Seed})
							if !reflect.DeepEqual(smaller, seqs[:B-1]) {
								t.Fatalf("L=%d: bms(B=%d) is not a prefix of bms(B=%d)", L, B-1, B)
							}
						}
					}
				}
			}
		})
	}
}

func TestRandomSeeds(t *testing.T) {
	a := selectSeqs(t, Random{}, &sdk.SelectRequest{Slices: 8, Budget: 8, Seed: 1})
	b := selectSeqs(t, Random{}, &sdk.SelectRequest{Slices: 8, Budget: 8, Seed: 2})
	if reflect.DeepEqual(a, b) {
		t.Fatal("different seeds gave the same sequences")
	}
	// The rejection-sampling path (L! above the enumeration limit).
	c := selectSeqs(t, Random{}, &sdk.SelectRequest{Slices: 12, Budget: 50, Seed: 3})
	if err := CheckSequences(c, 12, 50); err != nil {
		t.Fatal(err)
	}
}

// TestBMSPrefersSafeSlicesFirst: under a skewed prior the best sequence starts with the slice
// least likely to be deleted, and large t neither underflows nor breaks the Latin square.
func TestBMSPrefersSafeSlicesFirst(t *testing.T) {
	prior := []float64{0.4, 0.3, 0.2, 0.1}
	for _, tt := range []float64{1, 100, 1e4, 1e7} {
		seqs := selectSeqs(t, BMS{}, &sdk.SelectRequest{Slices: 4, Budget: 4, Prior: prior, ExpectedDeletions: tt})
		if !isLatinSquare(seqs) {
			t.Fatalf("t=%v: not a Latin square: %v", tt, seqs)
		}
		if seqs[0][0] != 3 {
			t.Errorf("t=%v: best sequence %v does not start with slice 3 (p=0.1)", tt, seqs[0])
		}
		for _, s := range seqs {
			if v := LogScore(s, prior, tt); math.IsNaN(v) || math.IsInf(v, 1) {
				t.Fatalf("t=%v: score of %v is %v", tt, s, v)
			}
		}
	}
}

func TestLogScore(t *testing.T) {
	p := []float64{0.4, 0.3, 0.2, 0.1}
	for _, tc := range []struct {
		q []int
		t float64
	}{{[]int{0, 1, 2, 3}, 1}, {[]int{3, 2, 1, 0}, 2}, {[]int{1, 3}, 5}, {[]int{2}, 100}} {
		want, c := 0.0, 0.0
		for i, s := range tc.q {
			c += p[s]
			want += float64(i+1) * math.Pow(1-c, tc.t)
		}
		if got := math.Exp(LogScore(tc.q, p, tc.t)); math.Abs(got-want) > 1e-12*math.Max(1, want) {
			t.Errorf("score(%v, t=%v) = %v, want %v", tc.q, tc.t, got, want)
		}
	}
	if v := LogScore([]int{0}, []float64{1}, 3); !math.IsInf(v, -1) {
		t.Errorf("score of a certain deletion = %v, want -Inf", v)
	}
}

// TestMaxAssignment compares the Hungarian solver with enumeration on random matrices,
// some with forbidden entries.
func TestMaxAssignment(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 300; trial++ {
		n := 1 + rng.IntN(6)
		w := make([][]float64, n)
		for i := range w {
			w[i] = make([]float64, n)
			for j := range w[i] {
				w[i][j] = rng.NormFloat64() * 10
				if rng.IntN(5) == 0 && i != j { // the diagonal keeps a feasible assignment
					w[i][j] = math.Inf(-1)
				}
			}
		}
		col := maxAssignment(w)
		got := 0.0
		used := make([]bool, n)
		for i, j := range col {
			if used[j] {
				t.Fatalf("column %d used twice", j)
			}
			used[j] = true
			got += w[i][j]
		}
		best := math.Inf(-1)
		for _, perm := range permutations(n) {
			s := 0.0
			for i, j := range perm {
				s += w[i][j]
			}
			best = math.Max(best, s)
		}
		if math.Abs(got-best) > 1e-9*math.Max(1, math.Abs(best)) {
			t.Fatalf("trial %d: assignment weight %v, optimum %v (w=%v)", trial, got, best, w)
		}
	}
}

func TestDiversity(t *testing.T) {
	if d := Diversity([][]int{{0, 1, 2, 3}}); d != 0 {
		t.Errorf("one sequence: %v", d)
	}
	// Rotations of a sequence differ at every position.
	if d := Diversity([][]int{{0, 1, 2, 3}, {3, 0, 1, 2}, {2, 3, 0, 1}, {1, 2, 3, 0}}); d != 4 {
		t.Errorf("cyclic(4,4) diversity = %v, want 4", d)
	}
	if d := Diversity([][]int{{0, 1, 2}, {0, 2, 1}}); d != 2 {
		t.Errorf("diversity = %v, want 2", d)
	}
}

func TestSelectRejectsBadRequests(t *testing.T) {
	tests := []struct {
		name string
		req  sdk.SelectRequest
	}{
		{"no slices", sdk.SelectRequest{Slices: 0, Budget: 1}},
		{"no budget", sdk.SelectRequest{Slices: 3, Budget: 0}},
		{"budget above L!", sdk.SelectRequest{Slices: 3, Budget: 7}},
		{"prior length", sdk.SelectRequest{Slices: 3, Budget: 1, Prior: []float64{0.5, 0.5}}},
		{"prior NaN", sdk.SelectRequest{Slices: 2, Budget: 1, Prior: []float64{math.NaN(), 0.5}}},
		{"prior above 1", sdk.SelectRequest{Slices: 2, Budget: 1, Prior: []float64{1.5, 0.5}}},
		{"negative t", sdk.SelectRequest{Slices: 2, Budget: 1, ExpectedDeletions: -1}},
	}
	for _, tc := range tests {
		for _, name := range SelectorNames {
			sel, _ := NewSelector(name)
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				if _, err := sel.Select(context.Background(), &tc.req); !errors.Is(err, sdk.ErrInvalidRequest) {
					t.Errorf("err = %v, want ErrInvalidRequest", err)
				}
			})
		}
	}
	if _, err := NewSelector("nope"); !errors.Is(err, sdk.ErrInvalidRequest) {
		t.Errorf("unknown selector: %v", err)
	}
}

// badSelector returns duplicate sequences; Select must refuse them.
type badSelector struct{}

func (badSelector) Select(_ context.Context, req *sdk.SelectRequest) (*sdk.SelectResponse, error) {
	s := identity(req.Slices)
	return &sdk.SelectResponse{Sequences: [][]int{s, s}}, nil
}

func TestSelectChecksSelectorOutput(t *testing.T) {
	if _, err := Select(context.Background(), badSelector{}, &sdk.SelectRequest{Slices: 3, Budget: 2}); err == nil {
		t.Fatal("duplicate sequences accepted")
	}
}
