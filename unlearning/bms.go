package unlearning

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/s3t-dev/s3t/sdk"
)

// DefaultExpectedDeletions is the t that [BMS] scores with when the request leaves it zero
// (the reference implementation's default).
const DefaultExpectedDeletions = 100

// BMS is bipartite-matching selection under a per-slice deletion prior p.
//
// It starts from L one-slice sequences [r] and extends all of them by one slice per round,
// choosing the extension by a maximum-weight perfect matching between sequences and unused
// slices, with weight score(sequence + [v]) where
//
//	score(q) = sum_{i=1..|q|} i * (1 - sum_{j<=i} p_{q_j})^t
//
// and t is the expected number of deletions per shard. The result is a Latin square, ordered
// best-scoring first, truncated to B. An empty prior is uniform.
//
// Scores are computed in log space, since (1-c)^t underflows at large t. The matching
// maximises the sum of scores, as the reference does: weights are exp(log score - max), the
// same optimum up to a common factor. Entries that underflow even so (more than e^-700 below
// the best) tie at zero; rows matched among such ties are re-matched by log score, which
// leaves the sum unchanged and picks the best of the tied choices.
//
// For B > L the Latin square is extended like a prefix tree, as [Cyclic] does: at depth
// n = 1, 2, ... each sequence keeps its first n slices, a matching over the remaining slices
// proposes one new sequence per other choice of slice n+1, and the new sequences are added
// best-scoring first until B exist. Earlier sequences are always kept, so the sequences for
// budget B are a prefix of those for any larger budget.
type BMS struct{}

// Select implements [sdk.Selector].
func (BMS) Select(ctx context.Context, req *sdk.SelectRequest) (*sdk.SelectResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("selector.bms: %w", err)
	}
	prior := req.Prior
	if len(prior) == 0 {
		prior = make([]float64, req.Slices)
		for i := range prior {
			prior[i] = 1 / float64(req.Slices)
		}
	}
	t := req.ExpectedDeletions
	if t == 0 {
		t = DefaultExpectedDeletions
	}
	seqs, err := bms(ctx, prior, t, req.Budget)
	if err != nil {
		return nil, fmt.Errorf("selector.bms: %w", err)
	}
	return &sdk.SelectResponse{Sequences: seqs}, nil
}

// LogScore returns log score(q) for sequence (or prefix) q under prior p and t expected
// deletions; -Inf when every term is zero.
func LogScore(q []int, p []float64, t float64) float64 {
	c := 0.0
	best := math.Inf(-1)
	terms := make([]float64, 0, len(q))
	for i, s := range q {
		c += p[s]
		if 1-c <= 0 {
			continue
		}
		var x float64
		if t == 0 {
			x = math.Log(float64(i + 1))
		} else {
			x = math.Log(float64(i+1)) + t*math.Log1p(-c)
		}
		terms = append(terms, x)
		best = math.Max(best, x)
	}
	if math.IsInf(best, -1) {
		return best
	}
	sum := 0.0
	for _, x := range terms {
		sum += math.Exp(x - best)
	}
	return best + math.Log(sum)
}

// latinRows extends each row of rows (all of the same length) with the slices in free,
// one matching round per position, and returns the completed rows.
func latinRows(ctx context.Context, rows [][]int, free []int, p []float64, t float64) ([][]int, error) {
	n := len(rows)
	if n != len(free) {
		return nil, fmt.Errorf("internal error: %d rows for %d free slices", n, len(free))
	}
	for round := 1; round < n; round++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		logw := make([][]float64, n)
		top := math.Inf(-1)
		for i, row := range rows {
			logw[i] = make([]float64, n)
			for j, v := range free {
				if contains(row, v) {
					logw[i][j] = math.Inf(-1)
					continue
				}
				logw[i][j] = LogScore(append(row[:len(row):len(row)], v), p, t)
				top = math.Max(top, logw[i][j])
			}
		}
		w := make([][]float64, n)
		for i := range w {
			w[i] = make([]float64, n)
			for j := range w[i] {
				switch {
				case contains(rows[i], free[j]):
					w[i][j] = math.Inf(-1) // slice already used: forbidden
				case math.IsInf(top, -1):
					w[i][j] = 0
				default:
					w[i][j] = math.Exp(logw[i][j] - top) // 0 when it underflows (or the score is 0)
				}
			}
		}
		col := maxAssignment(w)
		rematchTies(w, logw, col)
		for i := range rows {
			rows[i] = append(rows[i], free[col[i]])
		}
	}
	return rows, nil
}

// rematchTies re-solves, by log score, the rows that the matching gave a zero weight. Within
// that sub-problem every weight is zero (otherwise the matching was not optimal), so the sum
// of weights does not change.
func rematchTies(w, logw [][]float64, col []int) {
	var rows, cols []int
	for i, j := range col {
		if w[i][j] == 0 {
			rows = append(rows, i)
			cols = append(cols, j)
		}
	}
	if len(rows) < 2 {
		return
	}
	sub := make([][]float64, len(rows))
	for a, i := range rows {
		sub[a] = make([]float64, len(cols))
		for b, j := range cols {
			switch {
			case math.IsInf(w[i][j], -1):
				sub[a][b] = math.Inf(-1)
			case math.IsInf(logw[i][j], -1):
				sub[a][b] = -1e300 // allowed, but a zero score: worst
			default:
				sub[a][b] = logw[i][j]
			}
		}
	}
	for a, b := range maxAssignment(clampLog(sub)) {
		col[rows[a]] = cols[b]
	}
}

// clampLog maps very negative finite log weights to a floor that keeps the Hungarian
// algorithm's arithmetic finite.
func clampLog(w [][]float64) [][]float64 {
	const floor = -1e15
	for _, row := range w {
		for j, v := range row {
			if !math.IsInf(v, -1) && v < floor {
				row[j] = floor
			}
		}
	}
	return w
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type scored struct {
	seq   []int
	score float64
}

// byScore orders best-scoring first; ties keep their order.
func byScore(s []scored) {
	sort.SliceStable(s, func(i, j int) bool { return s[i].score > s[j].score })
}

func bms(ctx context.Context, p []float64, t float64, B int) ([][]int, error) {
	L := len(p)
	rows := make([][]int, L)
	for r := range rows {
		rows[r] = []int{r}
	}
	square, err := latinRows(ctx, rows, identity(L), p, t)
	if err != nil {
		return nil, err
	}
	level := make([]scored, L)
	for i, s := range square {
		level[i] = scored{s, LogScore(s, p, t)}
	}
	byScore(level)
	out := make([][]int, 0, B)
	for _, s := range level {
		out = append(out, s.seq)
	}
	// Deeper levels: keep the first depth slices of each sequence, vary the next one.
	for depth := 1; len(out) < B && depth < L-1; depth++ {
		var added []scored
		for _, parent := range out {
			prefix := parent[:depth]
			var free []int
			for v := 0; v < L; v++ {
				if !contains(prefix, v) {
					free = append(free, v)
				}
			}
			sub := make([][]int, len(free))
			for i, v := range free {
				sub[i] = append(append(make([]int, 0, L), prefix...), v)
			}
			// Each row holds one free slice after the prefix; the matching rounds place
			// the others.
			completed, err := latinRows(ctx, sub, free, p, t)
			if err != nil {
				return nil, err
			}
			for _, s := range completed {
				if s[depth] != parent[depth] {
					added = append(added, scored{s, LogScore(s, p, t)})
				}
			}
		}
		byScore(added)
		for _, s := range added {
			if len(out) == B {
				break
			}
			out = append(out, s.seq)
		}
	}
	if len(out) > B {
		out = out[:B]
	}
	if len(out) != B {
		return nil, fmt.Errorf("internal error: %d sequences, want %d", len(out), B)
	}
	return out, nil
}

var _ sdk.Selector = BMS{}
