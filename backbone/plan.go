package backbone

import (
	"fmt"

	"github.com/s3t-dev/s3t/sdk"
)

// PlanSplices turns a PEFT plan into splices: one per rewrite, each under the scope
// sdk.BlockPlan.Scope gives it for the plugin named plugin, so that parameter names are
// "<plugin>/<block>/<role>/<local name>".
func PlanSplices(plugin string, plan *sdk.PlanResponse) []Splice {
	var out []Splice
	for _, bp := range plan.Blocks {
		for i, rw := range bp.Rewrites {
			out = append(out, Splice{Edge: rw.Edge, Graph: rw.Graph, Scope: bp.Scope(plugin, i)})
		}
	}
	return out
}

// SplicePlan returns m with every rewrite of a PEFT plan spliced in (see PlanSplices and
// Splice) and the plan's parameters under their names in the result. Each parameter is a graph
// input whose default is its "off" value, so the result computes what m computes until
// parameters are fed. Check the plan against the manifest first (sdk.ValidatePlan).
func (m *Model) SplicePlan(plugin string, plan *sdk.PlanResponse) (*Model, []sdk.ParamSpec, error) {
	splices := PlanSplices(plugin, plan)
	if len(splices) == 0 {
		return nil, nil, fmt.Errorf("splice plan of %s: %w: the plan rewrites no edge", plugin, sdk.ErrInvalidPlan)
	}
	out, err := m.Splice(splices...)
	if err != nil {
		return nil, nil, fmt.Errorf("splice plan of %s: %w", plugin, err)
	}
	return out, plan.Params(plugin), nil
}
