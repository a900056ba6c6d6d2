package adapters

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// TestLoRAParams checks the parameters LoRA adds to the ViT's top block.
func TestLoRAParams(t *testing.T) {
	_, man := vit(t)
	a, err := LoRA{Rank: 4}.Adapter(man, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []Param{
		{Name: "lora/3/query/A", Block: 3, Role: backbone.RoleQuery, Target: "encoder.layer.3.attention.attention.query.weight",
			Shape: []int64{4, 64}, Init: Init{Uniform: 0.125}},
		{Name: "lora/3/query/B", Block: 3, Role: backbone.RoleQuery, Target: "encoder.layer.3.attention.attention.query.weight",
			Shape: []int64{64, 4}},
		{Name: "lora/3/value/A", Block: 3, Role: backbone.RoleValue, Target: "encoder.layer.3.attention.attention.value.weight",
			Shape: []int64{4, 64}, Init: Init{Uniform: 0.125}},
		{Name: "lora/3/value/B", Block: 3, Role: backbone.RoleValue, Target: "encoder.layer.3.attention.attention.value.weight",
			Shape: []int64{64, 4}},
	}
	if !reflect.DeepEqual(a.Params, want) {
		t.Errorf("params:\n got %+v\nwant %+v", a.Params, want)
	}
	if s := a.Splices[0].Graph.Constants[0].Float32[0]; s != 2 {
		t.Errorf("scale %g, want the default alpha/rank = 2", s)
	}
}

// TestLoRAAdapterErrors checks the configurations and edges LoRA refuses.
func TestLoRAAdapterErrors(t *testing.T) {
	_, man := vit(t)
	packed := *man
	packed.Blocks = append([]backbone.Block(nil), man.Blocks...)
	q, _ := man.Blocks[0].Edge(backbone.RoleQuery)
	q.Slice = &backbone.Slice{Axis: 0, Start: 0, End: 32}
	packed.Blocks[0] = backbone.Block{Index: 0, Name: "b0", Edges: []backbone.Edge{q}}
	out, _ := man.Blocks[0].Output()
	activation := *man
	activation.Blocks = []backbone.Block{{Index: 0, Name: "b0", Edges: []backbone.Edge{{Role: backbone.RoleQuery, Kind: backbone.KindActivation, Tensor: out.Tensor, DType: out.DType, Shape: out.Shape}}}}
	for _, c := range []struct {
		name string
		cfg  LoRA
		man  *backbone.Manifest
		blk  int
	}{
		{"block out of range", LoRA{}, man, 4},
		{"negative rank", LoRA{Rank: -1}, man, 0},
		{"negative alpha", LoRA{Alpha: -1}, man, 0},
		{"missing role", LoRA{Targets: []backbone.Role{"conv"}}, man, 0},
		{"packed weight", LoRA{}, &packed, 0},
		{"activation edge", LoRA{}, &activation, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.cfg.Adapter(c.man, c.blk); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("got %v, want ErrInvalidArgument", err)
			}
		})
	}
}

// TestLoRAOffIsIdentity splices LoRA into every weight of every block of the ViT and checks that,
// with the parameters at their defaults, ONNX Runtime and GoMLX compute exactly the backbone's
// outputs.
func TestLoRAOffIsIdentity(t *testing.T) {
	m, man := vit(t)
	all := []backbone.Role{backbone.RoleQuery, backbone.RoleKey, backbone.RoleValue, backbone.RoleAttentionOutput,
		backbone.RoleMLPIn, backbone.RoleMLPOut}
	a, err := LoRA{Targets: all}.Adapter(man, 0, 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	spliced, err := m.Splice(a.Splices...)
	if err != nil {
		t.Fatal(err)
	}
	feeds := map[string]ort.Tensor{"pixel_values": randomPixels(16, 1)}
	want := runORT(t, session(t, m), feeds)
	got := runORT(t, session(t, spliced), feeds)
	g, err := engine(t).Import(spliced)
	if err != nil {
		t.Fatal(err)
	}
	gx, err := g.Forward(context.Background(), feeds)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"logits", "features"} {
		if d := maxAbsDiff(t, got[o], want[o]); d != 0 {
			t.Errorf("ONNX Runtime: %s of the spliced model differs from the backbone's by %g", o, d)
		}
		if d := maxAbsDiff(t, gx[o], want[o]); d > 1e-4 {
			t.Errorf("GoMLX: %s of the spliced model differs from the backbone's by %g", o, d)
		}
	}
}

// TestLoRALayouts checks that LoRA on a weight stored [in, out] (the MatMul operand, as constant-
// folded exports store Linear weights) computes the same as on the same weight stored [out, in].
func TestLoRALayouts(t *testing.T) {
	m, man := vit(t)
	q, _ := man.Blocks[3].Edge(backbone.RoleQuery)
	// The [in, out] form of the query weight is the output of its Transpose node.
	inOut := q
	inOut.Tensor = "/encoder/layer.3/attention/attention/query/Transpose_output_0"
	inOut.Consumers = []string{"/encoder/layer.3/attention/attention/query/MatMul"}
	inOut.Layout = backbone.LayoutInOut
	feeds := map[string]ort.Tensor{"pixel_values": randomPixels(8, 2)}
	rng := rand.New(rand.NewPCG(5, 5))
	random := func(shape ...int64) ort.Tensor {
		v := make([]float32, shape[0]*shape[1])
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
		}
		return ort.NewTensor(v, shape...)
	}
	feeds["lora/3/query/A"], feeds["lora/3/query/B"] = random(8, 64), random(64, 8)
	var outs []ort.Tensor
	for _, e := range []backbone.Edge{q, inOut} {
		sp, _, err := LoRA{}.withDefaults().splice(3, e)
		if err != nil {
			t.Fatal(err)
		}
		spliced, err := m.Splice(sp)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, runORT(t, session(t, spliced, "lora/3/query/A", "lora/3/query/B"), feeds)["features"])
	}
	if d := maxAbsDiff(t, outs[0], outs[1]); d > 1e-5 {
		t.Errorf("LoRA on [out,in] and [in,out] weights differ by %g", d)
	}
	if d := maxAbsDiff(t, outs[0], runORT(t, session(t, m), map[string]ort.Tensor{"pixel_values": feeds["pixel_values"]})["features"]); d < 1e-3 || math.IsNaN(d) {
		t.Errorf("random LoRA parameters changed the features by only %g", d)
	}
}
