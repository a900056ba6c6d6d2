package unlearning

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// KeySize is the length in bytes of an assignment key.
const KeySize = 32

// Placement is the (shard, slice) unit a sample belongs to.
type Placement struct {
	Shard int `json:"shard"`
	Slice int `json:"slice"`
}

// NewKey returns a fresh random assignment key. Each model gets its own key, so placements
// are reproducible for the model's owner but cannot be guessed from sample ids.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("unlearning: new assignment key: %w", err)
	}
	return k, nil
}

// Assigner places sample ids on the Shards x Slices units of one model.
//
// Each id is hashed with HMAC-SHA256 under the model's key to two candidate units; the id goes
// to the less loaded of the two (ties to the first). This "two choices" rule keeps units
// within a few samples of equal where a plain hash would be off by several percent, and it
// stays reproducible: the same key and the same ids in the same order give the same
// placements. Placements are meant to be recorded durably (the ledger) when made; an
// Assigner rebuilt from the recorded counts with [NewAssigner] continues exactly where the
// old one stopped.
//
// An Assigner is not safe for concurrent use.
type Assigner struct {
	key    []byte
	shards int
	slices int
	counts []int
}

// NewAssigner returns an Assigner for shards x slices units. counts, when not nil, holds the
// number of samples already placed on each unit (index shard*slices+slice).
func NewAssigner(key []byte, shards, slices int, counts []int) (*Assigner, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("unlearning: new assigner: empty key")
	}
	if shards < 1 || slices < 1 {
		return nil, fmt.Errorf("unlearning: new assigner: need shards >= 1 and slices >= 1, got %d and %d", shards, slices)
	}
	units := shards * slices
	c := make([]int, units)
	if counts != nil {
		if len(counts) != units {
			return nil, fmt.Errorf("unlearning: new assigner: %d counts for %d units", len(counts), units)
		}
		for i, n := range counts {
			if n < 0 {
				return nil, fmt.Errorf("unlearning: new assigner: negative count %d for unit %d", n, i)
			}
		}
		copy(c, counts)
	}
	return &Assigner{key: append([]byte(nil), key...), shards: shards, slices: slices, counts: c}, nil
}

// Candidates returns the two units id may be placed on, as a pure function of the key and
// the id. With a single unit both candidates are that unit.
func (a *Assigner) Candidates(id string) (Placement, Placement) {
	u1, u2 := a.candidates(id)
	return a.placement(u1), a.placement(u2)
}

func (a *Assigner) candidates(id string) (int, int) {
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(id))
	sum := mac.Sum(nil)
	units := uint64(len(a.counts))
	h1 := binary.BigEndian.Uint64(sum[0:8])
	h2 := binary.BigEndian.Uint64(sum[8:16])
	u1 := h1 % units
	if units == 1 {
		return 0, 0
	}
	// A second unit distinct from the first.
	u2 := (u1 + 1 + h2%(units-1)) % units
	return int(u1), int(u2)
}

func (a *Assigner) placement(u int) Placement {
	return Placement{Shard: u / a.slices, Slice: u % a.slices}
}

// Place assigns id to a unit and counts it there.
func (a *Assigner) Place(id string) Placement {
	u1, u2 := a.candidates(id)
	u := u1
	if a.counts[u2] < a.counts[u1] {
		u = u2
	}
	a.counts[u]++
	return a.placement(u)
}

// Remove uncounts a sample that left placement p (it was deleted), so that later uploads
// refill the unit. It reports an error for a unit out of range or already empty.
func (a *Assigner) Remove(p Placement) error {
	if p.Shard < 0 || p.Shard >= a.shards || p.Slice < 0 || p.Slice >= a.slices {
		return fmt.Errorf("unlearning: remove: placement %+v out of range", p)
	}
	u := p.Shard*a.slices + p.Slice
	if a.counts[u] == 0 {
		return fmt.Errorf("unlearning: remove: unit %+v is empty", p)
	}
	a.counts[u]--
	return nil
}

// Counts returns a copy of the per-unit sample counts, index shard*slices+slice.
func (a *Assigner) Counts() []int {
	return append([]int(nil), a.counts...)
}
