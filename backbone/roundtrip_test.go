package backbone_test

// Round trips on real exports through ONNX Runtime: a spliced model with its parameters at their
// "off" values computes what the original computes; a cut's trunk and top together compute it
// too; an exposed intermediate output equals the trunk's output.
//
// Each comparison runs twice. Through package ort at its defaults (all graph optimizations), the
// outputs must agree within maxDiff times their magnitude (at least 1): ONNX Runtime's layout
// optimizations (NCHWc convolutions) pick kernels per graph, so a CNN's logits of magnitude ~60
// move by a few float32 ulps (up to 1.5e-5 on detypify) when the graph around them changes. With
// those layout optimizations off (ORT_ENABLE_EXTENDED), the outputs must be bit-identical.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/dataset"
)

var (
	vitPath      = flag.String("vit", "../assets/vit-fmnist.onnx", "the default ViT backbone (HF ViT naming)")
	encoderPath  = flag.String("torch-encoder", "testdata/torch-encoder.onnx", "a torch nn.TransformerEncoder export")
	detypifyPath = flag.String("detypify", filepath.Join(dataset.CacheDir(), "models", "detypify", "model.onnx"),
		"the detypify CNN (fetched by `make deps`)")
)

// maxDiff is the largest absolute difference the round trips allow.
const maxDiff = 1e-6

// realModel describes one real export and how to feed it.
type realModel struct {
	name     string
	path     string
	optional bool   // skip when the file is missing (a download), instead of failing
	manifest string // hand-written manifest, if detection is not what the tests want
	inputs   func(t *testing.T) []map[string]ort.Tensor
	family   string
	blocks   int
}

func realModels() []realModel {
	return []realModel{
		{name: "vit", path: *vitPath, inputs: fashionMNIST(0, 32), family: "hf-vit", blocks: 4},
		{name: "torch-encoder", path: *encoderPath, inputs: encoderInput, family: "torch-transformer-encoder", blocks: 2},
		{name: "detypify", path: *detypifyPath, optional: true, manifest: "testdata/detypify.manifest.json",
			inputs: upscaled(224, 3), family: "manual", blocks: 17},
	}
}

func (r realModel) load(t *testing.T) (*backbone.Model, *backbone.Manifest) {
	t.Helper()
	if _, err := os.Stat(r.path); errors.Is(err, fs.ErrNotExist) && r.optional {
		t.Skipf("%s not found (run `make deps`): %v", r.name, err)
	}
	m, err := backbone.LoadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	var man *backbone.Manifest
	if r.manifest != "" {
		hand, err := backbone.LoadManifest(r.manifest)
		if err != nil {
			t.Fatal(err)
		}
		man, err = backbone.ResolveManifest(m, hand)
		if err != nil {
			t.Fatal(err)
		}
	} else if man, err = backbone.DetectManifest(m); err != nil {
		t.Fatal(err)
	}
	if man.Family != r.family || len(man.Blocks) != r.blocks {
		t.Fatalf("manifest: family %q with %d blocks, want %q with %d", man.Family, len(man.Blocks), r.family, r.blocks)
	}
	return m, man
}

// fashionMNIST feeds test images [from, to) as pixel_values.
func fashionMNIST(from, to int) func(t *testing.T) []map[string]ort.Tensor {
	return func(t *testing.T) []map[string]ort.Tensor {
		set, err := dataset.LoadFashionMNIST("", dataset.Test)
		if err != nil {
			t.Fatalf("Fashion-MNIST (run `make deps`): %v", err)
		}
		s := set.Slice(from, to)
		return []map[string]ort.Tensor{{"pixel_values": ort.NewTensor(s.Pixels, s.Shape()...)}}
	}
}

// upscaled feeds n Fashion-MNIST images, one per run, scaled up to size x size.
func upscaled(size, n int) func(t *testing.T) []map[string]ort.Tensor {
	return func(t *testing.T) []map[string]ort.Tensor {
		set, err := dataset.LoadFashionMNIST("", dataset.Test)
		if err != nil {
			t.Fatalf("Fashion-MNIST (run `make deps`): %v", err)
		}
		var out []map[string]ort.Tensor
		for i := range n {
			img := set.Image(i)
			px := make([]float32, size*size)
			for y := range size {
				for x := range size {
					px[y*size+x] = img[(y*dataset.Height/size)*dataset.Width+x*dataset.Width/size]
				}
			}
			out = append(out, map[string]ort.Tensor{"x": ort.NewTensor(px, 1, 1, int64(size), int64(size))})
		}
		return out
	}
}

// encoderInput feeds the seeded input recorded next to the torch encoder export.
func encoderInput(t *testing.T) []map[string]ort.Tensor {
	data, err := os.ReadFile(strings.TrimSuffix(*encoderPath, ".onnx") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Input struct {
			Name  string    `json:"name"`
			Shape []int64   `json:"shape"`
			Data  []float32 `json:"data"`
		} `json:"input"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	return []map[string]ort.Tensor{{info.Input.Name: ort.NewTensor(info.Input.Data, info.Input.Shape...)}}
}

// run runs model bytes on inputs; params, when given, are fed too.
func run(t *testing.T, m *backbone.Model, inputs map[string]ort.Tensor, params map[string]ort.Tensor) map[string]ort.Tensor {
	t.Helper()
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var opts []ort.SessionOption
	feed := map[string]ort.Tensor{}
	for k, v := range inputs {
		feed[k] = v
	}
	for k, v := range params {
		opts = append(opts, ort.WithOptionalInputs(k))
		feed[k] = v
	}
	s, err := ort.NewSession(data, append(opts, ort.WithIntraOpThreads(1))...)
	if err != nil {
		t.Fatalf("ONNX Runtime session (run `make deps`): %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	out, err := s.Run(context.Background(), feed)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runExact runs the model through ONNX Runtime with graph optimizations up to
// ORT_ENABLE_EXTENDED (no layout changes), on float32 inputs, and returns every output.
func runExact(t *testing.T, m *backbone.Model, inputs map[string]ort.Tensor) map[string]ort.Tensor {
	t.Helper()
	if err := ort.Init(); err != nil {
		t.Fatalf("ONNX Runtime (run `make deps`): %v", err)
	}
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var params []string
	for _, p := range m.Params() {
		if _, fed := inputs[p.Name]; fed {
			params = append(params, p.Name)
		}
	}
	s, err := ort.NewSession(data, ort.WithGraphOptimization(ort.OptimizeExtended), ort.WithIntraOpThreads(1),
		ort.WithOptionalInputs(params...))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	feed := map[string]ort.Tensor{}
	for _, vi := range m.Inputs() {
		if t, ok := inputs[vi.Name]; ok {
			feed[vi.Name] = t
		}
	}
	for _, name := range params {
		feed[name] = inputs[name]
	}
	out, err := s.Run(context.Background(), feed)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mismatch compares two float32 tensors. It returns the largest absolute difference, and whether
// that exceeds maxDiff scaled by the tensor's magnitude (max |b|, at least 1): a float32 sum over
// many terms is only as exact as its largest terms.
func mismatch(t *testing.T, name string, a, b ort.Tensor) (bad bool, worst float64) {
	t.Helper()
	y, _ := ort.Values[float32](b)
	scale := 1.0
	for _, v := range y {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	worst = diff(t, name, a, b)
	return worst > maxDiff*scale, worst
}

// diff returns the largest absolute difference between two float32 tensors.
func diff(t *testing.T, name string, a, b ort.Tensor) float64 {
	t.Helper()
	x, err := ort.Values[float32](a)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	y, err := ort.Values[float32](b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(x) != len(y) || len(x) == 0 {
		t.Fatalf("%s: %d values vs %d", name, len(x), len(y))
	}
	d := 0.0
	for i := range x {
		d = math.Max(d, math.Abs(float64(x[i])-float64(y[i])))
	}
	return d
}

// lora rewrites a weight W into W + scale·B·A (B: [out, r], A: [r, in], in the weight's layout).
// B defaults to zero, so the default is the identity.
func lora(e backbone.Edge, rank int64) (backbone.Subgraph, error) {
	dims := e.Shape.Sizes()
	if len(dims) != 2 || dims[0] < 0 || dims[1] < 0 {
		return backbone.Subgraph{}, fmt.Errorf("weight %q: shape %v", e.Tensor, e.Shape)
	}
	var left, right string
	a, b := backbone.Zeros("A", rank, dims[1]), backbone.Zeros("B", dims[0], rank) // out_in: [out, in] = B·A
	left, right = "B", "A"
	if e.Layout == backbone.LayoutInOut { // [in, out] = Aᵀ·Bᵀ, stored as A: [in, r], B: [r, out]
		a, b = backbone.Zeros("A", dims[0], rank), backbone.Zeros("B", rank, dims[1])
		left, right = "A", "B"
	} else if e.Layout != backbone.LayoutOutIn {
		return backbone.Subgraph{}, fmt.Errorf("weight %q: layout %q", e.Tensor, e.Layout)
	}
	for i := range a.Float32 {
		a.Float32[i] = float32(i%7-3) / 10 // A is trained from a random start; only B = 0 is "off"
	}
	return backbone.Subgraph{
		Input: "W", Output: "W_lora",
		Nodes: []backbone.Node{
			{Op: "MatMul", Inputs: []string{left, right}, Outputs: []string{"delta"}},
			{Op: "Mul", Inputs: []string{"delta", "scale"}, Outputs: []string{"scaled"}},
			{Op: "Add", Inputs: []string{"W", "scaled"}, Outputs: []string{"W_lora"}},
		},
		Params:    []backbone.Tensor{a, b},
		Constants: []backbone.Tensor{backbone.Scalar("scale", 2)},
	}, nil
}

// adapter rewrites a block output h into h + up(relu(down(h))), with up = 0 by default: on the
// last axis of width d (transformers), or with 1x1 convolutions on the channels (CNNs, conv true).
func adapter(d, r int64, conv bool) backbone.Subgraph {
	down, up := backbone.Zeros("down", d, r), backbone.Zeros("up", r, d)
	op := "MatMul"
	if conv {
		down, up = backbone.Zeros("down", r, d, 1, 1), backbone.Zeros("up", d, r, 1, 1)
		op = "Conv"
	}
	for i := range down.Float32 {
		down.Float32[i] = float32(i%5-2) / 10
	}
	return backbone.Subgraph{
		Input: "h", Output: "h_adapted",
		Nodes: []backbone.Node{
			{Op: op, Inputs: []string{"h", "down"}, Outputs: []string{"z"}},
			{Op: "Relu", Inputs: []string{"z"}, Outputs: []string{"a"}},
			{Op: op, Inputs: []string{"a", "up"}, Outputs: []string{"delta"}},
			{Op: "Add", Inputs: []string{"h", "delta"}, Outputs: []string{"h_adapted"}},
		},
		Params: []backbone.Tensor{down, up},
	}
}

// width returns the hidden width of a transformer block, from its MLP output weight.
func width(b backbone.Block) (int64, bool) {
	e, ok := b.Edge(backbone.RoleMLPOut)
	if !ok {
		return 0, false
	}
	dims := e.Shape.Sizes()
	if e.Layout == backbone.LayoutInOut {
		return dims[1], true
	}
	return dims[0], true
}

// spliceAll puts LoRA on every weight edge and an adapter on every block output.
func spliceAll(t *testing.T, m *backbone.Model, man *backbone.Manifest) (*backbone.Model, []string) {
	t.Helper()
	var splices []backbone.Splice
	for _, b := range man.Blocks {
		for _, e := range b.Edges {
			scope := fmt.Sprintf("peft/%d/%s/", b.Index, e.Role)
			switch {
			case e.Kind == backbone.KindWeight:
				sub, err := lora(e, 2)
				if err != nil {
					t.Fatal(err)
				}
				splices = append(splices, backbone.Splice{Edge: e, Graph: sub, Scope: scope})
			case e.Role == backbone.RoleOutput:
				if d, ok := width(b); ok {
					splices = append(splices, backbone.Splice{Edge: e, Graph: adapter(d, 3, false), Scope: scope})
				} else if s := e.Shape; len(s) == 4 && s[1].Known() {
					splices = append(splices, backbone.Splice{Edge: e, Graph: adapter(s[1].Size, 3, true), Scope: scope})
				} else {
					t.Fatalf("block %d: cannot size an adapter for output %q with shape %v", b.Index, e.Tensor, e.Shape)
				}
			}
		}
	}
	spliced, err := m.Splice(splices...)
	if err != nil {
		t.Fatal(err)
	}
	var params []string
	for _, p := range spliced.Params() {
		params = append(params, p.Name)
	}
	if want := 2 * len(splices); len(params) != want {
		t.Fatalf("%d parameters after %d splices, want %d", len(params), len(splices), want)
	}
	return spliced, params
}

func TestRealModelsRoundTrip(t *testing.T) {
	for _, r := range realModels() {
		t.Run(r.name, func(t *testing.T) {
			m, man := r.load(t)
			unpacked, uman, err := m.Unpack(man)
			if err != nil {
				t.Fatal(err)
			}
			spliced, params := spliceAll(t, unpacked, uman)
			for k, in := range r.inputs(t) {
				want, wantExact := run(t, m, in, nil), runExact(t, m, in)
				for _, variant := range []struct {
					name  string
					model *backbone.Model
				}{{"unpacked", unpacked}, {"spliced", spliced}} {
					got, gotExact := run(t, variant.model, in, nil), runExact(t, variant.model, in)
					for name, w := range want {
						if bad, worst := mismatch(t, name, got[name], w); bad {
							t.Errorf("input %d: %s: output %q differs by %g", k, variant.name, name, worst)
						} else if k == 0 {
							t.Logf("%s: output %q: max abs diff %g (all optimizations)", variant.name, name, worst)
						}
						if d := diff(t, name, gotExact[name], wantExact[name]); d != 0 {
							t.Errorf("input %d: %s: output %q differs by %g without layout optimizations", k, variant.name, name, d)
						}
					}
				}
				// The parameters are live: feeding non-zero values changes the outputs.
				if k == 0 {
					feed := map[string]ort.Tensor{}
					for _, p := range spliced.Params() {
						n := int64(1)
						for _, d := range p.Shape.Sizes() {
							n *= d
						}
						v := make([]float32, n)
						for i := range v {
							v[i] = 0.05 * float32(i%7-3) / 3
						}
						feed[p.Name] = ort.NewTensor(v, p.Shape.Sizes()...)
					}
					got := run(t, spliced, in, feed)
					for name, w := range want {
						if d := diff(t, name, got[name], w); d < 1e-4 {
							t.Errorf("output %q moved by only %g with %d parameters fed", name, d, len(params))
						}
					}
				}
			}
		})
	}
}

func TestRealModelsCutAndExpose(t *testing.T) {
	for _, r := range realModels() {
		t.Run(r.name, func(t *testing.T) {
			m, man := r.load(t)
			inputs := r.inputs(t)
			for _, bi := range []int{len(man.Blocks) / 2, len(man.Blocks) - 1} {
				at := man.Blocks[bi].Input
				if at == "" {
					t.Fatalf("block %d has no input", bi)
				}
				trunk, top, err := m.Cut(at)
				if err != nil {
					t.Fatalf("cut below block %d at %q: %v", bi, at, err)
				}
				exposed, err := m.ExposeOutputs(at)
				if err != nil {
					t.Fatal(err)
				}
				for k, in := range inputs {
					for _, exact := range []bool{false, true} {
						runner := func(m *backbone.Model, in map[string]ort.Tensor) map[string]ort.Tensor {
							if exact {
								return runExact(t, m, in)
							}
							return run(t, m, in, nil)
						}
						want := runner(m, in)
						mid := runner(trunk, in)
						if len(mid) != 1 || mid[at].Shape == nil {
							t.Fatalf("trunk outputs %v, want %q", keys(mid), at)
						}
						got := runner(top, map[string]ort.Tensor{at: mid[at]})
						ex := runner(exposed, in)
						for name, w := range want {
							bad, worst := mismatch(t, name, got[name], w)
							if exact && worst != 0 || bad {
								t.Errorf("block %d, input %d, exact %v: trunk+top output %q differs by %g", bi, k, exact, name, worst)
							}
							if bad, worst := mismatch(t, name, ex[name], w); exact && worst != 0 || bad {
								t.Errorf("block %d, input %d, exact %v: exposing changed output %q by %g", bi, k, exact, name, worst)
							}
						}
						if bad, worst := mismatch(t, at, ex[at], mid[at]); exact && worst != 0 || bad {
							t.Errorf("block %d, input %d, exact %v: exposed %q differs from the trunk's by %g", bi, k, exact, at, worst)
						}
					}
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRealModelsInspect checks that each real export loads, is described, and validates.
func TestRealModelsInspect(t *testing.T) {
	for _, r := range realModels() {
		t.Run(r.name, func(t *testing.T) {
			m, man := r.load(t)
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			info := m.Inspect()
			if len(info.Inputs) != 1 || len(info.Outputs) == 0 || info.Initializers.Parameters == 0 || len(info.Ops) == 0 {
				t.Fatalf("info: %+v", info)
			}
			for _, b := range man.Blocks {
				if _, ok := b.Output(); !ok || (b.Index > 0 && b.Input == "") {
					t.Errorf("block %d (%s): output or input missing", b.Index, b.Name)
				}
				if r.family == "manual" {
					continue
				}
				roles := map[backbone.Role]bool{}
				for _, e := range b.Edges {
					roles[e.Role] = true
				}
				for _, want := range []backbone.Role{backbone.RoleQuery, backbone.RoleKey, backbone.RoleValue,
					backbone.RoleAttentionOutput, backbone.RoleMLPIn, backbone.RoleMLPOut,
					backbone.RoleAttentionScores, backbone.RoleAttentionKeys, backbone.RoleAttentionValues} {
					if !roles[want] {
						t.Errorf("block %d (%s): no %s edge", b.Index, b.Name, want)
					}
				}
			}
		})
	}
}
