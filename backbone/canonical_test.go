package backbone_test

// Canonicalization of the real exports, checked through ONNX Runtime: the canonical graph has no
// shape arithmetic, no Slice and no constant computation left, q/k/v are separate weights the
// manifest finds, the outputs equal the original's, and a second pass changes nothing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// canonicalCase is one model canonicalized one way.
type canonicalCase struct {
	model string // a name from realModels
	pin   int64  // PinBatch, 0 for none
	// verifyOn feeds the first real input to the built-in check instead of a random one.
	verifyOn bool
	// absolute bounds the largest absolute output difference from the original on the real
	// inputs; 0 means maxDiff relative to the output's magnitude (see mismatch).
	absolute float64
	// exact requires bit-identical outputs with ONNX Runtime's layout optimizations off.
	exact bool
	check func(t *testing.T, orig, canon *backbone.Model, rep backbone.CanonicalReport)
}

func TestCanonicalizeRealModels(t *testing.T) {
	cases := []canonicalCase{
		{model: "torch-encoder", pin: 2, verifyOn: true, absolute: 1e-6, check: checkTorchEncoder},
		{model: "torch-encoder", absolute: 1e-6, exact: true, check: checkTorchEncoder},
		{model: "vit", pin: 32, absolute: 1e-6, check: checkViT},
		{model: "vit", absolute: 1e-6, exact: true, check: checkViT},
		{model: "detypify", check: checkDetypify},
		{model: "detypify", pin: 1, check: checkDetypify},
	}
	models := map[string]realModel{}
	for _, r := range realModels() {
		models[r.name] = r
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/pin=%d", tc.model, tc.pin), func(t *testing.T) {
			r := models[tc.model]
			m, man := r.load(t)
			inputs := r.inputs(t)
			opts := []backbone.CanonicalOption{}
			if tc.pin > 0 {
				opts = append(opts, backbone.PinBatch(tc.pin))
			}
			if man.Source == "file" {
				opts = append(opts, backbone.WithManifest(man))
			}
			if tc.verifyOn {
				opts = append(opts, backbone.WithVerifyInputs(fromORT(t, inputs[0])...))
			}
			var rep backbone.CanonicalReport
			c, err := m.Canonicalize(context.Background(), append(slices.Clone(opts), backbone.WithReport(&rep))...)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("nodes %d -> %d, %d values folded, %d projections split, %d reshape targets relaxed, verified max diff %.3g",
				rep.NodesBefore, rep.NodesAfter, len(rep.Folded), len(rep.Split), len(rep.Relaxed), rep.MaxDiff)
			if !rep.Verified || rep.MaxDiff > backbone.CanonicalTolerance || len(rep.Skipped) > 0 {
				t.Errorf("report: verified %v, max diff %g, skipped %q", rep.Verified, rep.MaxDiff, rep.Skipped)
			}
			if rep.NodesAfter >= rep.NodesBefore || rep.Batch != tc.pin {
				t.Errorf("report: nodes %d -> %d, batch %d", rep.NodesBefore, rep.NodesAfter, rep.Batch)
			}
			assertNoConstantWork(t, c)

			// Same outputs as the original on the real inputs.
			for i, in := range inputs {
				want, got := run(t, m, in, nil), run(t, c, in, nil)
				for name, w := range want {
					if tc.absolute > 0 {
						if d := diff(t, name, got[name], w); d > tc.absolute {
							t.Errorf("input %d, output %q: max abs difference %g > %g", i, name, d, tc.absolute)
						}
					} else if bad, d := mismatch(t, name, got[name], w); bad {
						t.Errorf("input %d, output %q: max difference %g", i, name, d)
					}
				}
				if tc.exact {
					want, got := runExact(t, m, in), runExact(t, c, in)
					for name, w := range want {
						if d := diff(t, name, got[name], w); d != 0 {
							t.Errorf("input %d, output %q: differs by %g with layout optimizations off, want bit-identical", i, name, d)
						}
					}
				}
			}

			// The manifest finds the same blocks on the canonical graph.
			cman := canonicalManifest(t, c, r)
			if len(cman.Blocks) != len(man.Blocks) {
				t.Errorf("canonical manifest: %d blocks, want %d", len(cman.Blocks), len(man.Blocks))
			}
			tc.check(t, m, c, rep)

			// Idempotence: a second pass changes nothing.
			var rep2 backbone.CanonicalReport
			c2, err := c.Canonicalize(context.Background(), append(slices.Clone(opts), backbone.WithReport(&rep2))...)
			if err != nil {
				t.Fatalf("second pass: %v", err)
			}
			if len(rep2.Folded)+len(rep2.Split)+len(rep2.Relaxed)+len(rep2.Unpacked) > 0 || rep2.NodesAfter != rep2.NodesBefore {
				t.Errorf("second pass changed the graph: %+v", rep2)
			}
			b1, _ := c.Bytes()
			b2, _ := c2.Bytes()
			if !slices.Equal(b1, b2) {
				t.Error("second pass: the model's bytes differ")
			}
		})
	}
}

// assertNoConstantWork fails when the canonical graph still computes something that does not
// depend on its inputs: shape arithmetic, Constant nodes, slicing, loops.
func assertNoConstantWork(t *testing.T, m *backbone.Model) {
	t.Helper()
	for _, op := range m.Inspect().Ops {
		switch op.Op {
		case "Shape", "Size", "Slice", "Constant", "ConstantOfShape", "Concat", "Unsqueeze", "Squeeze", "Cast",
			"CastLike", "Loop", "If", "SequenceEmpty", "Range", "Expand":
			t.Errorf("canonical graph has %d %s nodes", op.Count, op.Op)
		}
	}
}

// canonicalManifest detects (or resolves, for a model with a hand-written manifest) the
// canonical model's manifest.
func canonicalManifest(t *testing.T, c *backbone.Model, r realModel) *backbone.Manifest {
	t.Helper()
	if r.manifest == "" {
		man, err := backbone.DetectManifest(c)
		if err != nil {
			t.Fatalf("detect on the canonical graph: %v", err)
		}
		if man.Family != r.family {
			t.Errorf("canonical manifest family %q, want %q", man.Family, r.family)
		}
		return man
	}
	hand, err := backbone.LoadManifest(r.manifest)
	if err != nil {
		t.Fatal(err)
	}
	man, err := backbone.ResolveManifest(c, hand)
	if err != nil {
		t.Fatalf("resolve on the canonical graph: %v", err)
	}
	return man
}

func checkTorchEncoder(t *testing.T, orig, c *backbone.Model, rep backbone.CanonicalReport) {
	// q/k/v are three weights per block, in [in, out] layout, read by their own MatMul.
	man := canonicalManifest(t, c, realModel{family: "torch-transformer-encoder"})
	for i, b := range man.Blocks {
		for _, r := range []backbone.Role{backbone.RoleQuery, backbone.RoleKey, backbone.RoleValue} {
			e, ok := b.Edge(r)
			want := fmt.Sprintf("encoder.layers.%d.self_attn.in_proj_weight.%s", i, r)
			if !ok || e.Tensor != want || e.Slice != nil || e.Layout != backbone.LayoutInOut || e.Shape.String() != "[32,32]" {
				t.Errorf("block %d %s: %+v, want %s in_out [32,32] without a slice", i, r, e, want)
			}
		}
		if e, _ := b.Edge(backbone.RoleMLPIn); e.Tensor != fmt.Sprintf("encoder.layers.%d.linear1.weight", i) || e.Layout != backbone.LayoutInOut {
			t.Errorf("block %d mlp_in: %+v", i, e)
		}
		for _, r := range []backbone.Role{backbone.RoleAttentionScores, backbone.RoleAttentionKeys, backbone.RoleAttentionValues} {
			if _, ok := b.Edge(r); !ok {
				t.Errorf("block %d: no %s edge", i, r)
			}
		}
	}
	ops := opCounts(c)
	if ops["MatMul"] != 14 || ops["Gather"] != 1 || ops["Transpose"] != 12 {
		t.Errorf("ops %v: want 14 MatMul (3 projections, 2 attention, 2 MLP per block), 1 Gather (token 0), 12 activation Transposes", ops)
	}
	if len(rep.Split) != 6 || len(rep.Unpacked) != 2 {
		t.Errorf("split %d projections from %d packed weights, want 6 from 2", len(rep.Split), len(rep.Unpacked))
	}
	if rep.Batch == 0 && len(rep.Relaxed) != 10 {
		t.Errorf("%d Reshape targets relaxed, want all 10", len(rep.Relaxed))
	}
	// The query part is the first third of in_proj_weight, transposed.
	packed, err := orig.Initializer("encoder.layers.0.self_attn.in_proj_weight")
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.Initializer("encoder.layers.0.self_attn.in_proj_weight.query")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 32 {
		for j := range 32 {
			if q.Float32[i*32+j] != packed.Float32[j*32+i] {
				t.Fatalf("query[%d][%d] = %v, want in_proj_weight[%d][%d] = %v", i, j, q.Float32[i*32+j], j, i, packed.Float32[j*32+i])
			}
		}
	}
	// The outputs equal torch's on the recorded input.
	want := torchOutput(t)
	got := run(t, c, encoderInput(t)[0], nil)["logits"]
	if d := diff(t, "logits", got, want); d > 1e-5 {
		t.Errorf("canonical logits differ from torch's by %g", d)
	}
}

func checkViT(t *testing.T, orig, c *backbone.Model, rep backbone.CanonicalReport) {
	if len(rep.Split) != 0 || len(rep.Unpacked) != 0 {
		t.Errorf("split %v, unpacked %v: the ViT has separate q/k/v", rep.Split, rep.Unpacked)
	}
	man := canonicalManifest(t, c, realModel{family: "hf-vit"})
	roles := map[backbone.Role]string{
		backbone.RoleQuery: "attention.attention.query", backbone.RoleKey: "attention.attention.key",
		backbone.RoleValue: "attention.attention.value", backbone.RoleAttentionOutput: "attention.output.dense",
		backbone.RoleMLPIn: "intermediate.dense", backbone.RoleMLPOut: "output.dense",
	}
	for i, b := range man.Blocks {
		for r, module := range roles {
			name := fmt.Sprintf("encoder.layer.%d.%s.weight", i, module)
			e, ok := b.Edge(r)
			if !ok || e.Tensor != name || e.Layout != backbone.LayoutInOut {
				t.Errorf("block %d %s: %+v, want %s in_out", i, r, e, name)
				continue
			}
			// The weight kept its name and is stored transposed: [in, out].
			w, err := orig.Initializer(name)
			if err != nil {
				t.Fatal(err)
			}
			wt, err := c.Initializer(name)
			if err != nil {
				t.Fatal(err)
			}
			out, in := w.Shape[0], w.Shape[1]
			if !slices.Equal(wt.Shape, []int64{in, out}) {
				t.Fatalf("%s: shape %v, want [%d %d]", name, wt.Shape, in, out)
			}
			for k := range in * out {
				if wt.Float32[k] != w.Float32[(k%out)*in+k/out] {
					t.Fatalf("%s: element %d is not the transpose of the original", name, k)
				}
			}
		}
	}
}

func checkDetypify(t *testing.T, orig, c *backbone.Model, rep backbone.CanonicalReport) {
	// The index computation of as_strided (a Loop over constants) is one int64 initializer.
	idx := slices.IndexFunc(rep.Folded, func(f backbone.FoldedValue) bool { return f.Name == "indices_19" })
	if idx < 0 || rep.Folded[idx].DType != backbone.DTypeInt64 {
		t.Errorf("indices_19 not folded into an int64 initializer: %+v", rep.Folded)
	}
	if ops := opCounts(c); ops["Conv"] != 50 || ops["Gather"] != 1 {
		t.Errorf("ops %v", ops)
	}
}

func opCounts(m *backbone.Model) map[string]int {
	out := map[string]int{}
	for _, o := range m.Inspect().Ops {
		out[o.Op] = o.Count
	}
	return out
}

// fromORT converts float32 feeds to backbone tensors.
func fromORT(t *testing.T, feeds map[string]ort.Tensor) []backbone.Tensor {
	t.Helper()
	var out []backbone.Tensor
	for name, x := range feeds {
		v, err := ort.Values[float32](x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, backbone.Tensor{Name: name, DType: backbone.DTypeFloat32, Shape: x.Shape, Float32: v})
	}
	return out
}

// torchOutput reads torch's output recorded next to the encoder export.
func torchOutput(t *testing.T) ort.Tensor {
	t.Helper()
	data, err := os.ReadFile(strings.TrimSuffix(*encoderPath, ".onnx") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Output struct {
			Shape []int64   `json:"shape"`
			Data  []float32 `json:"data"`
		} `json:"output"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	return ort.NewTensor(info.Output.Data, info.Output.Shape...)
}

func TestCanonicalizeOptionErrors(t *testing.T) {
	vit, err := backbone.LoadFile(*vitPath)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := backbone.LoadFile(*encoderPath)
	if err != nil {
		t.Fatal(err)
	}
	if pinned, err = pinned.Canonicalize(context.Background(), backbone.PinBatch(2)); err != nil {
		t.Fatal(err)
	}
	image := backbone.Zeros("pixel_values", 1, 1, 28, 28)
	tests := []struct {
		name string
		m    *backbone.Model
		opts []backbone.CanonicalOption
		want error
		msg  string
	}{
		{"zero batch", vit, []backbone.CanonicalOption{backbone.PinBatch(0)}, backbone.ErrInvalidOption, "PinBatch(0)"},
		{"negative batch", vit, []backbone.CanonicalOption{backbone.PinBatch(-4)}, backbone.ErrInvalidOption, "at least 1"},
		{"batch fixed otherwise", pinned, []backbone.CanonicalOption{backbone.PinBatch(3)}, backbone.ErrInvalidOption, `input "x" has a fixed batch of 2`},
		{"nil manifest", vit, []backbone.CanonicalOption{backbone.WithManifest(nil)}, backbone.ErrInvalidOption, "WithManifest(nil)"},
		{"manifest of another model", vit, []backbone.CanonicalOption{backbone.WithManifest(&backbone.Manifest{Version: 1,
			Blocks: []backbone.Block{{Name: "encoder.layers.0"}}})}, backbone.ErrNoBlocks, "encoder.layers.0"},
		{"no verification inputs", vit, []backbone.CanonicalOption{backbone.WithVerifyInputs()}, backbone.ErrInvalidOption, "without inputs"},
		{"verification inputs without verification", vit, []backbone.CanonicalOption{backbone.WithVerifyInputs(image), backbone.WithVerify(false)},
			backbone.ErrInvalidOption, "WithVerify(false)"},
		{"unknown verification input", vit, []backbone.CanonicalOption{backbone.WithVerifyInputs(backbone.Zeros("pixels", 1, 1, 28, 28))},
			backbone.ErrInvalidOption, `"pixels" is not a model input`},
		{"verification input of the wrong batch", pinned, []backbone.CanonicalOption{backbone.WithVerifyInputs(backbone.Zeros("x", 3, 9, 32))},
			ort.ErrShape, "dimension 0 must be 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep backbone.CanonicalReport
			_, err := tt.m.Canonicalize(context.Background(), append(tt.opts, backbone.WithReport(&rep))...)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "canonicalize: ") {
				t.Fatalf("error %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
			if rep.Verified {
				t.Error("report says verified")
			}
		})
	}
}

func TestCanonicalizeDetypifyFixedBatch(t *testing.T) {
	var r realModel
	for _, x := range realModels() {
		if x.name == "detypify" {
			r = x
		}
	}
	m, _ := r.load(t)
	_, err := m.Canonicalize(context.Background(), backbone.PinBatch(4))
	if !errors.Is(err, backbone.ErrInvalidOption) || !strings.Contains(err.Error(), `input "x" has a fixed batch of 1, not 4`) {
		t.Fatalf("error %v", err)
	}
}

func TestCanonicalizeCancelled(t *testing.T) {
	m, err := backbone.LoadFile(*encoderPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Canonicalize(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestCanonicalizeWithoutVerify checks that the check can be skipped and that the result is the
// same as with it.
func TestCanonicalizeWithoutVerify(t *testing.T) {
	m, err := backbone.LoadFile(*encoderPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep backbone.CanonicalReport
	a, err := m.Canonicalize(context.Background(), backbone.WithVerify(false), backbone.WithReport(&rep))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verified || rep.MaxDiff != 0 {
		t.Errorf("report: verified %v, max diff %g", rep.Verified, rep.MaxDiff)
	}
	b, err := m.Canonicalize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := a.Bytes()
	bb, _ := b.Bytes()
	if !slices.Equal(ab, bb) {
		t.Error("the result depends on verification")
	}
}
