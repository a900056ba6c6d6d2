package unlearning

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

var cyclic44 = [][]int{{0, 1, 2, 3}, {3, 0, 1, 2}, {2, 3, 0, 1}, {1, 2, 3, 0}}

func TestShardDeletionPlans(t *testing.T) {
	tests := []struct {
		name       string
		deletes    []int
		wantLive   []int
		wantServed Served
	}{
		{"fresh", nil, []int{4, 4, 4, 4}, Served{0, 4}},
		// Slice 2 sits at positions 2, 3, 0, 1 of the four sequences.
		{"slice 2", []int{2}, []int{2, 3, 0, 1}, Served{1, 3}},
		{"slices 2 then 1", []int{2, 1}, []int{1, 2, 0, 0}, Served{1, 2}},
		{"ties go to the lowest index", []int{3}, []int{3, 0, 1, 2}, Served{0, 3}},
		{"every first slice", []int{0, 3, 2, 1}, []int{0, 0, 0, 0}, Served{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewShard(cyclic44)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tc.deletes {
				if _, err := s.Delete(d); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.Live(); !reflect.DeepEqual(got, tc.wantLive) {
				t.Errorf("live = %v, want %v", got, tc.wantLive)
			}
			if got := s.Served(); got != tc.wantServed {
				t.Errorf("served = %+v, want %+v", got, tc.wantServed)
			}
			if s.Alive() != (tc.wantServed.Length > 0) {
				t.Errorf("alive = %v", s.Alive())
			}
		})
	}
}

func TestShardPlanIsPure(t *testing.T) {
	s, _ := NewShard(cyclic44)
	p, err := s.Plan(1)
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{Slice: 1, Truncations: []Truncation{{0, 4, 1}, {1, 4, 2}, {2, 4, 3}, {3, 4, 0}}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("plan = %+v, want %+v", p, want)
	}
	if !reflect.DeepEqual(s.Live(), []int{4, 4, 4, 4}) {
		t.Fatal("Plan changed the shard")
	}
	if _, err := s.Plan(4); err == nil {
		t.Fatal("plan for slice out of range")
	}
	if err := s.Apply(Plan{Slice: 1, Truncations: []Truncation{{0, 4, 3}}}); err == nil {
		t.Fatal("a plan that does not match the slice was applied")
	}
}

// TestShardDeletionIdempotentNoRevival applies random deletion streams twice over and checks
// that every live length only decreases, that repeating a deletion changes nothing, that a
// stale plan never revives a prefix, and that each live prefix excludes every deleted slice.
func TestShardDeletionIdempotentNoRevival(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := 0; trial < 200; trial++ {
		L := 1 + rng.IntN(6)
		seqs := permutations(L)
		rng.Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
		seqs = seqs[:1+rng.IntN(len(seqs))]
		s, err := NewShard(seqs)
		if err != nil {
			t.Fatal(err)
		}
		deleted := map[int]bool{}
		var stale []Plan
		for step := 0; step < 3*L; step++ {
			slice := rng.IntN(L)
			before := s.Live()
			p, err := s.Delete(slice)
			if err != nil {
				t.Fatal(err)
			}
			stale = append(stale, p)
			deleted[slice] = true
			again, _ := s.Delete(slice)
			if len(again.Truncations) != 0 {
				t.Fatalf("repeated delete of slice %d truncated %+v", slice, again.Truncations)
			}
			// Re-applying an old plan must not move anything up.
			old := stale[rng.IntN(len(stale))]
			if err := s.Apply(old); err != nil {
				t.Fatal(err)
			}
			after := s.Live()
			for b := range after {
				if after[b] > before[b] {
					t.Fatalf("sequence %d revived from %d to %d", b, before[b], after[b])
				}
				for _, sl := range s.LivePrefix(b) {
					if deleted[sl] {
						t.Fatalf("sequence %d's live prefix %v holds deleted slice %d", b, s.LivePrefix(b), sl)
					}
				}
			}
			// The served prefix is the longest live one, lowest index on ties.
			sv := s.Served()
			for b, n := range after {
				if n > sv.Length || (n == sv.Length && n > 0 && b < sv.Sequence) {
					t.Fatalf("served %+v but sequence %d has %d", sv, b, n)
				}
			}
		}
	}
}

func TestRestoreShard(t *testing.T) {
	s, err := RestoreShard(cyclic44, []int{1, 0, 2, 0})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Served(); got != (Served{2, 2}) {
		t.Fatalf("served %+v", got)
	}
	for _, tc := range []struct {
		name string
		seqs [][]int
		live []int
	}{
		{"no sequences", nil, nil},
		{"not a permutation", [][]int{{0, 0}}, nil},
		{"duplicate sequences", [][]int{{0, 1}, {0, 1}}, nil},
		{"live length count", cyclic44, []int{1}},
		{"live length too long", cyclic44, []int{5, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RestoreShard(tc.seqs, tc.live); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
