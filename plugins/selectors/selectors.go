// Package selectors serves the sequence selectors of package unlearning as the built-in plugins
// selector.cyclic, selector.bms and selector.random.
package selectors

import (
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

// Version is the version of the three selector plugins.
const Version = "1.0.0"

// Cyclic returns selector.cyclic: the reference code's iterative cyclic rotation.
func Cyclic() *sdk.Plugin {
	return &sdk.Plugin{Name: "selector.cyclic", Version: Version,
		Description: "iterative cyclic rotation (uniform deletion prior)", Selector: unlearning.Cyclic{}}
}

// BMS returns selector.bms: bipartite matching selection under a per-slice deletion prior.
func BMS() *sdk.Plugin {
	return &sdk.Plugin{Name: "selector.bms", Version: Version,
		Description: "bipartite matching selection for a known per-slice deletion prior", Selector: unlearning.BMS{}}
}

// Random returns selector.random: distinct uniformly random permutations, seeded.
func Random() *sdk.Plugin {
	return &sdk.Plugin{Name: "selector.random", Version: Version,
		Description: "distinct random permutations (the baseline), reproducible for a seed", Selector: unlearning.Random{}}
}

var (
	_ sdk.Selector = unlearning.Cyclic{}
	_ sdk.Selector = unlearning.BMS{}
	_ sdk.Selector = unlearning.Random{}
)
