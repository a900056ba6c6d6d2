package sdktest_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/sdk/sdktest"
	"github.com/s3t-dev/s3t/unlearning"
)

// scaleOutputs rewrites every block output h into h·(1 + p) + bias·p, p [hidden] off at 0:
// a correct PEFT type, unless broken says how to break it.
type scaleOutputs struct{ broken string }

func (s scaleOutputs) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "peft.scale", Version: "0.0.1",
		ConfigSchema: json.RawMessage(`{"type": "object", "properties": {}}`), Defaults: json.RawMessage(`{}`)}, nil
}

func (s scaleOutputs) Plan(_ context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	var cfg struct{}
	if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
		return nil, err
	}
	resp := &sdk.PlanResponse{}
	for _, blk := range req.Manifest.Blocks {
		e, _ := blk.Output()
		hidden := e.Shape.Sizes()[len(e.Shape)-1]
		b := sdk.NewBuilder(req.Manifest.Opset)
		h := b.Input("h")
		off := sdk.Zeros("p", hidden)
		if s.broken == "off" {
			off = sdk.Fill("p", 0.01, hidden)
		}
		p := b.Param(off)
		factor := b.Add(b.Scalar(1), p)
		if s.broken == "inert" {
			factor = b.Add(b.Scalar(1), b.Mul(p, b.Scalar(0)))
		}
		g, err := b.Build(b.Mul(h, factor))
		if err != nil {
			return nil, err
		}
		resp.Blocks = append(resp.Blocks, sdk.BlockPlan{Block: blk.Index, Rewrites: []sdk.Rewrite{
			{Edge: e, Graph: g, Init: map[string]sdk.Init{"p": sdk.Constant(0)}}}})
	}
	return resp, nil
}

func TestMain(m *testing.M) {
	sdktest.Main(m, &sdk.Plugin{Name: "peft.scale", Version: "0.0.1", PEFT: scaleOutputs{}})
}

// TestSelf runs the suite on this test binary serving peft.scale.
func TestSelf(t *testing.T) {
	sdktest.TestPEFT(t, sdktest.Self(), sdktest.WithName("peft.scale"))
}

func TestBackbones(t *testing.T) {
	bbs, err := sdktest.Backbones()
	if err != nil {
		t.Fatal(err)
	}
	if len(bbs) != 2 {
		t.Fatalf("%d backbones", len(bbs))
	}
	for i, want := range []sdk.Layout{sdk.LayoutOutIn, sdk.LayoutInOut} {
		q, ok := bbs[i].Manifest.Blocks[0].Edge(sdk.RoleQuery)
		if !ok || q.Layout != want {
			t.Errorf("%s: query edge %+v, want layout %s", bbs[i].Name, q, want)
		}
		if len(bbs[i].Manifest.Blocks) != 4 {
			t.Errorf("%s: %d blocks", bbs[i].Name, len(bbs[i].Manifest.Blocks))
		}
	}
}

// TestCheckPlanCatchesBrokenPlugins: the suite fails a plugin whose off values are not the
// identity and one whose parameters do nothing.
func TestCheckPlanCatchesBrokenPlugins(t *testing.T) {
	bbs, err := sdktest.Backbones()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		broken, want string
	}{
		{"", ""},
		{"off", "with every parameter off"},
		{"inert", "has no effect"},
	}
	for _, tt := range tests {
		t.Run("broken="+tt.broken, func(t *testing.T) {
			plan, err := scaleOutputs{tt.broken}.Plan(ctx, &sdk.PlanRequest{Manifest: *bbs[0].Manifest})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := sdktest.CheckPlan(ctx, bbs[0], "peft.scale", plan)
			if tt.want == "" {
				if err != nil || rep.OffDiff != 0 || len(rep.BlockChange) != 4 {
					t.Fatalf("report %+v, %v", rep, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a failure mentioning %q", err, tt.want)
			}
		})
	}
}

// TestTrainCheckHook: the trainer's check sees every spliced model with the plan's parameters.
func TestTrainCheckHook(t *testing.T) {
	calls := 0
	check := func(_ context.Context, model []byte, params []sdk.ParamSpec) error {
		calls++
		if len(model) == 0 || len(params) != 4 || !strings.HasPrefix(params[0].Name, "peft.scale/0/output/") {
			t.Errorf("train check got %d bytes, params %+v", len(model), params)
		}
		return nil
	}
	sdktest.RunPEFT(t, "peft.scale", scaleOutputs{}, sdktest.WithTrainCheck(check))
	if calls != 2 {
		t.Errorf("train check called %d times, want once per backbone", calls)
	}
}

func TestRunSelectorInProcess(t *testing.T) {
	sdktest.RunSelector(t, unlearning.Random{})
}
