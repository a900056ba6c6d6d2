package unlearning

import (
	"fmt"
)

// Truncation records that one sequence's live prefix was cut from From to To slices (its
// groups G_(To+1)..G_From switched off). To == 0 means that sequence's model is dead.
type Truncation struct {
	Sequence int `json:"sequence"`
	From     int `json:"from"`
	To       int `json:"to"`
}

// Plan is what deleting a sample of one slice does to a shard: the truncations, in sequence
// order. A plan with no truncations changes nothing (the slice was already cut from every
// live prefix).
type Plan struct {
	Slice       int          `json:"slice"`
	Truncations []Truncation `json:"truncations"`
}

// Served is the checkpoint a shard serves: sequence Sequence at prefix length Length, i.e.
// C[shard, Sequence, Length]. Length 0 means the shard has no live model.
type Served struct {
	Sequence int `json:"sequence"`
	Length   int `json:"length"`
}

// Shard is the live-prefix state of one shard: its B sequences and, per sequence, how many
// of its stages are still live. Live lengths only ever decrease; nothing here can revive a
// prefix.
//
// A Shard is not safe for concurrent use; the ledger serialises deletions per model.
type Shard struct {
	seqs [][]int
	pos  [][]int // pos[b][slice] = position of slice in sequence b
	live []int
}

// NewShard returns the state of a freshly trained shard: every sequence live at full length.
func NewShard(seqs [][]int) (*Shard, error) {
	return RestoreShard(seqs, nil)
}

// RestoreShard rebuilds a shard from its sequences and the live lengths recorded in the
// ledger (nil means all at full length).
func RestoreShard(seqs [][]int, live []int) (*Shard, error) {
	if len(seqs) == 0 {
		return nil, fmt.Errorf("unlearning: shard needs at least one sequence")
	}
	L := len(seqs[0])
	if err := CheckSequences(seqs, L, len(seqs)); err != nil {
		return nil, fmt.Errorf("unlearning: shard: %w", err)
	}
	s := &Shard{
		seqs: make([][]int, len(seqs)),
		pos:  make([][]int, len(seqs)),
		live: make([]int, len(seqs)),
	}
	for b, seq := range seqs {
		s.seqs[b] = append([]int(nil), seq...)
		s.pos[b] = make([]int, L)
		for i, slice := range seq {
			s.pos[b][slice] = i
		}
		s.live[b] = L
	}
	if live != nil {
		if len(live) != len(seqs) {
			return nil, fmt.Errorf("unlearning: shard: %d live lengths for %d sequences", len(live), len(seqs))
		}
		for b, n := range live {
			if n < 0 || n > L {
				return nil, fmt.Errorf("unlearning: shard: live length %d of sequence %d out of [0, %d]", n, b, L)
			}
			s.live[b] = n
		}
	}
	return s, nil
}

// Slices returns L.
func (s *Shard) Slices() int { return len(s.seqs[0]) }

// Sequences returns a copy of the shard's sequences.
func (s *Shard) Sequences() [][]int {
	out := make([][]int, len(s.seqs))
	for b, seq := range s.seqs {
		out[b] = append([]int(nil), seq...)
	}
	return out
}

// Live returns a copy of the live prefix length of every sequence.
func (s *Shard) Live() []int { return append([]int(nil), s.live...) }

// LivePrefix returns the slices of sequence b's live prefix.
func (s *Shard) LivePrefix(b int) []int { return append([]int(nil), s.seqs[b][:s.live[b]]...) }

// Plan returns what deleting a sample of slice would do, without changing the shard.
func (s *Shard) Plan(slice int) (Plan, error) {
	if slice < 0 || slice >= s.Slices() {
		return Plan{}, fmt.Errorf("unlearning: plan: slice %d out of range [0, %d)", slice, s.Slices())
	}
	p := Plan{Slice: slice, Truncations: []Truncation{}}
	for b := range s.seqs {
		if j := s.pos[b][slice]; j < s.live[b] {
			p.Truncations = append(p.Truncations, Truncation{Sequence: b, From: s.live[b], To: j})
		}
	}
	return p, nil
}

// Apply carries out a plan made by [Shard.Plan]. Applying a plan twice, or a plan made
// before other deletions, is safe: a live length only ever moves down to the plan's target.
func (s *Shard) Apply(p Plan) error {
	if p.Slice < 0 || p.Slice >= s.Slices() {
		return fmt.Errorf("unlearning: apply: slice %d out of range [0, %d)", p.Slice, s.Slices())
	}
	for _, t := range p.Truncations {
		if t.Sequence < 0 || t.Sequence >= len(s.seqs) || s.pos[t.Sequence][p.Slice] != t.To {
			return fmt.Errorf("unlearning: apply: truncation %+v does not match slice %d", t, p.Slice)
		}
	}
	for _, t := range p.Truncations {
		s.live[t.Sequence] = min(s.live[t.Sequence], t.To)
	}
	return nil
}

// Delete plans and applies the deletion of a sample of slice, returning the plan.
func (s *Shard) Delete(slice int) (Plan, error) {
	p, err := s.Plan(slice)
	if err != nil {
		return Plan{}, err
	}
	return p, s.Apply(p)
}

// truncate is Delete without the plan, for the simulator's hot loop.
func (s *Shard) truncate(slice int) {
	for b := range s.seqs {
		if j := s.pos[b][slice]; j < s.live[b] {
			s.live[b] = j
		}
	}
}

func (s *Shard) reset() {
	for b := range s.live {
		s.live[b] = len(s.seqs[b])
	}
}

// Served returns the checkpoint the shard serves: the sequence with the longest live prefix,
// ties to the lowest sequence index. Length is 0 when every sequence is dead.
func (s *Shard) Served() Served {
	best := Served{}
	for b, n := range s.live {
		if n > best.Length {
			best = Served{Sequence: b, Length: n}
		}
	}
	return best
}

// Alive reports whether any sequence still has a live prefix.
func (s *Shard) Alive() bool {
	for _, n := range s.live {
		if n > 0 {
			return true
		}
	}
	return false
}
