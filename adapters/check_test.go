package adapters

import (
	"context"
	"errors"
	"testing"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/sdk"
)

// TestCheckTrainable runs the trainer's conformance check on the ViT with each built-in plan
// spliced in, and checks that it refuses a parameter without a gradient and a name the model
// lacks.
func TestCheckTrainable(t *testing.T) {
	ctx := context.Background()
	m, man := vit(t)
	splice := func(t *testing.T, p Planned) ([]byte, []sdk.ParamSpec) {
		t.Helper()
		spliced, params, err := m.SplicePlan(p.Plugin, p.Plan)
		if err != nil {
			t.Fatal(err)
		}
		b, err := spliced.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return b, params
	}
	for _, p := range builtinPEFTs(t) {
		t.Run(p.Plugin, func(t *testing.T) {
			b, params := splice(t, p)
			if err := engine(t).CheckTrainable(ctx, b, params); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("no gradient", func(t *testing.T) {
		// W + 0·P: P never reaches the output.
		e, _ := man.Blocks[3].Edge(backbone.RoleQuery)
		bld := sdk.NewBuilder(man.Opset)
		w := bld.Input("W")
		pv := bld.Param(sdk.Zeros("P", e.Shape.Sizes()...))
		g, gerr := bld.Build(bld.Add(w, bld.Mul(pv, bld.Scalar(0))))
		if gerr != nil {
			t.Fatal(gerr)
		}
		plan := &sdk.PlanResponse{Blocks: []sdk.BlockPlan{{Block: 3, Rewrites: []sdk.Rewrite{{
			Edge: e, Graph: g, Init: map[string]sdk.Init{"P": sdk.Constant(0)}}}}}}
		b, params := splice(t, Planned{Plugin: "peft.dead", Plan: plan})
		err := engine(t).CheckTrainable(ctx, b, params)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("got %v, want a zero-gradient error", err)
		}
		t.Log(err)
		params[0].Name = "missing"
		if err := CheckTrainable(ctx, b, params); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("got %v, want ErrInvalidArgument for an unknown parameter", err)
		}
	})
}
