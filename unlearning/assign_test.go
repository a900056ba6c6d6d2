package unlearning

import (
	"fmt"
	"testing"
)

func TestAssignerBalanced(t *testing.T) {
	tests := []struct{ shards, slices, n int }{
		{5, 4, 2000},
		{10, 8, 8000},
		{2, 4, 1000},
		{1, 1, 100},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("m%d_L%d_N%d", tc.shards, tc.slices, tc.n), func(t *testing.T) {
			a, err := NewAssigner([]byte("model-key"), tc.shards, tc.slices, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.n; i++ {
				p := a.Place(fmt.Sprintf("sample-%d", i))
				if p.Shard < 0 || p.Shard >= tc.shards || p.Slice < 0 || p.Slice >= tc.slices {
					t.Fatalf("placement %+v out of range", p)
				}
			}
			counts := a.Counts()
			mean := float64(tc.n) / float64(len(counts))
			for u, c := range counts {
				// "Within a few percent of equal": 3% of the mean, or one sample.
				if d := float64(c) - mean; d > max(0.03*mean, 1) || -d > max(0.03*mean, 1) {
					t.Errorf("unit %d has %d samples, mean %.1f", u, c, mean)
				}
			}
		})
	}
}

func TestAssignerReproducibleAndKeyed(t *testing.T) {
	place := func(key string) []Placement {
		a, err := NewAssigner([]byte(key), 4, 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []Placement
		for i := 0; i < 500; i++ {
			out = append(out, a.Place(fmt.Sprint("id", i)))
		}
		return out
	}
	a, b, c := place("k1"), place("k1"), place("k2")
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same key, id %d: %+v vs %+v", i, a[i], b[i])
		}
		if a[i] == c[i] {
			same++
		}
	}
	// 16 units: another key should agree on about 1/16 of the ids, not most of them.
	if same > 100 {
		t.Errorf("different keys agree on %d of 500 placements", same)
	}
}

func TestAssignerResumesFromCounts(t *testing.T) {
	key := []byte("k")
	whole, _ := NewAssigner(key, 3, 3, nil)
	first, _ := NewAssigner(key, 3, 3, nil)
	for i := 0; i < 300; i++ {
		whole.Place(fmt.Sprint(i))
		if i < 150 {
			first.Place(fmt.Sprint(i))
		}
	}
	resumed, err := NewAssigner(key, 3, 3, first.Counts())
	if err != nil {
		t.Fatal(err)
	}
	for i := 150; i < 300; i++ {
		resumed.Place(fmt.Sprint(i))
	}
	if fmt.Sprint(resumed.Counts()) != fmt.Sprint(whole.Counts()) {
		t.Fatalf("resumed counts %v, uninterrupted %v", resumed.Counts(), whole.Counts())
	}
}

func TestAssignerCandidatesAndRemove(t *testing.T) {
	a, _ := NewAssigner([]byte("k"), 2, 3, nil)
	c1, c2 := a.Candidates("x")
	if c1 == c2 {
		t.Fatalf("candidates coincide: %+v", c1)
	}
	p := a.Place("x")
	if p != c1 && p != c2 {
		t.Fatalf("placed on %+v, not a candidate", p)
	}
	if err := a.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(p); err == nil {
		t.Fatal("removing from an empty unit succeeded")
	}
	if err := a.Remove(Placement{Shard: 5}); err == nil {
		t.Fatal("removing an out-of-range unit succeeded")
	}
}

func TestNewAssignerErrors(t *testing.T) {
	tests := []struct {
		name          string
		key           []byte
		shards, slice int
		counts        []int
	}{
		{"empty key", nil, 1, 1, nil},
		{"no shards", []byte("k"), 0, 1, nil},
		{"counts length", []byte("k"), 2, 2, []int{1}},
		{"negative count", []byte("k"), 1, 2, []int{1, -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAssigner(tc.key, tc.shards, tc.slice, tc.counts); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if k, err := NewKey(); err != nil || len(k) != KeySize {
		t.Fatalf("NewKey: %v, %d bytes", err, len(k))
	}
}
