package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func validPlan(t *testing.T) (*Manifest, *PlanResponse) {
	t.Helper()
	man := testManifest()
	plan, err := fakePEFT{}.Plan(context.Background(), &PlanRequest{Manifest: man})
	if err != nil {
		t.Fatal(err)
	}
	return &man, plan
}

func TestValidatePlan(t *testing.T) {
	tests := []struct {
		name   string
		change func(man *Manifest, p *PlanResponse)
		want   string
	}{
		{"valid", func(*Manifest, *PlanResponse) {}, ""},
		{"block out of range", func(_ *Manifest, p *PlanResponse) { p.Blocks[1].Block = 5 }, "manifest has 2 blocks"},
		{"blocks out of order", func(_ *Manifest, p *PlanResponse) { p.Blocks[0], p.Blocks[1] = p.Blocks[1], p.Blocks[0] }, "increasing index"},
		{"edge not in manifest", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Edge.Tensor = "other" }, "not an edge of block 0"},
		{"edge of another block", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Edge.Tensor = "h1" }, "not an edge of block 0"},
		{"consumers changed", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Edge.Consumers = []string{"n"} }, "not an edge"},
		{"edge twice", func(_ *Manifest, p *PlanResponse) {
			p.Blocks[0].Rewrites = append(p.Blocks[0].Rewrites, p.Blocks[0].Rewrites[0])
		}, "already rewritten"},
		{"missing init", func(_ *Manifest, p *PlanResponse) { delete(p.Blocks[0].Rewrites[0].Init, "p") }, "has no init"},
		{"init of nothing", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Init["q"] = Constant(0) }, "not a parameter"},
		{"bad init", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Init["p"] = Init{Dist: "zipf"} }, "zipf"},
		{"dropout rate", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Dropout["p"] = 1 }, "rate 1"},
		{"dropout target", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Dropout["zz"] = 0.1 }, "does not define"},
		{"off not finite", func(_ *Manifest, p *PlanResponse) {
			p.Blocks[0].Rewrites[0].Graph.Params[0].Float32[0] = float32(math.NaN())
		}, "not finite"},
		{"int64 param", func(_ *Manifest, p *PlanResponse) {
			p.Blocks[0].Rewrites[0].Graph.Params[0] = Int64s("p", 0, 0, 0, 0)
		}, "want float32"},
		{"bad graph", func(_ *Manifest, p *PlanResponse) { p.Blocks[0].Rewrites[0].Graph.Output = "nowhere" }, "no node produces"},
		{"packed edge", func(man *Manifest, p *PlanResponse) {
			man.Blocks[0].Edges[0].Slice = &Slice{Axis: 0, Start: 0, End: 1}
			p.Blocks[0].Rewrites[0].Edge.Slice = &Slice{Axis: 0, Start: 0, End: 1}
		}, "packed edge"},
		{"config not an object", func(_ *Manifest, p *PlanResponse) { p.Config = json.RawMessage(`[1]`) }, "not a JSON object"},
		{"nothing rewritten", func(_ *Manifest, p *PlanResponse) { p.Blocks = nil }, "rewrites no edge"},
		{"bad manifest", func(man *Manifest, _ *PlanResponse) { man.Blocks[1].Name = "layers.0" }, "name used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			man, plan := validPlan(t)
			tt.change(man, plan)
			err := ValidatePlan(man, plan)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidPlan mentioning %q", err, tt.want)
			}
		})
	}
}

func TestScopeAndParams(t *testing.T) {
	_, plan := validPlan(t)
	bp := &plan.Blocks[1]
	bp.Rewrites = append(bp.Rewrites, bp.Rewrites[0])
	if got := bp.Scope("peft.fake", 0); got != "peft.fake/1/output/" {
		t.Errorf("scope %q", got)
	}
	if got := bp.Scope("peft.fake", 1); got != "peft.fake/1/output.1/" {
		t.Errorf("scope of a second rewrite with the same role: %q", got)
	}
	params := plan.Params("peft.fake")
	if len(params) != 3 || params[0].Name != "peft.fake/0/output/p" || params[0].Block != 0 || params[2].Block != 1 ||
		params[0].Off.Name != params[0].Name || params[0].Init.Dist != DistNormal {
		t.Errorf("params %+v", params)
	}
}

func TestDecodeConfig(t *testing.T) {
	type cfg struct {
		Rank  int     `json:"rank"`
		Alpha float64 `json:"alpha"`
	}
	tests := []struct {
		in   string
		want cfg
		ok   bool
	}{
		{"", cfg{8, 16}, true},
		{"  ", cfg{8, 16}, true},
		{`{"rank": 4}`, cfg{4, 16}, true},
		{`{"rnak": 4}`, cfg{}, false},
		{`[1]`, cfg{}, false},
		{`{"rank": "x"}`, cfg{}, false},
		{`{"rank": 4} {}`, cfg{}, false},
	}
	for _, tt := range tests {
		c := cfg{8, 16}
		err := DecodeConfig(json.RawMessage(tt.in), &c)
		if tt.ok != (err == nil) || (tt.ok && c != tt.want) {
			t.Errorf("DecodeConfig(%q) = %+v, %v", tt.in, c, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: %v does not wrap ErrInvalidConfig", tt.in, err)
		}
	}
}
