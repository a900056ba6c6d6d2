package unlearning

import "math"

// maxAssignment solves the maximum-weight perfect assignment on an n x n matrix with the
// Hungarian algorithm (potentials, O(n^3)). It returns col[i], the column given to row i.
// Entries equal to -Inf are forbidden; a feasible assignment must exist.
func maxAssignment(w [][]float64) []int {
	n := len(w)
	// Convert to a minimisation over finite costs: forbidden entries get a cost larger than
	// any feasible assignment could accumulate.
	hi, lo := math.Inf(-1), math.Inf(1)
	for _, row := range w {
		for _, v := range row {
			if !math.IsInf(v, -1) {
				hi = math.Max(hi, v)
				lo = math.Min(lo, v)
			}
		}
	}
	if math.IsInf(hi, -1) {
		hi, lo = 0, 0
	}
	forbidden := (hi-lo+1)*float64(n+1) + 1
	cost := func(i, j int) float64 {
		if math.IsInf(w[i][j], -1) {
			return forbidden
		}
		return hi - w[i][j]
	}
	// 1-indexed arrays, as in the classic formulation: p[j] is the row matched to column j.
	u := make([]float64, n+1)
	v := make([]float64, n+1)
	p := make([]int, n+1)
	way := make([]int, n+1)
	minv := make([]float64, n+1)
	used := make([]bool, n+1)
	for i := 1; i <= n; i++ {
		p[0] = i
		j0 := 0
		for j := range minv {
			minv[j] = math.Inf(1)
			used[j] = false
		}
		for {
			used[j0] = true
			i0, delta, j1 := p[j0], math.Inf(1), 0
			for j := 1; j <= n; j++ {
				if used[j] {
					continue
				}
				cur := cost(i0-1, j-1) - u[i0] - v[j]
				if cur < minv[j] {
					minv[j] = cur
					way[j] = j0
				}
				if minv[j] < delta {
					delta = minv[j]
					j1 = j
				}
			}
			for j := 0; j <= n; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if p[j0] == 0 {
				break
			}
		}
		for {
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
			if j0 == 0 {
				break
			}
		}
	}
	col := make([]int, n)
	for j := 1; j <= n; j++ {
		col[p[j]-1] = j - 1
	}
	return col
}
