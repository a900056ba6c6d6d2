package backbone

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestNodeScope(t *testing.T) {
	tests := []struct {
		name string
		want []string
	}{
		{"/vit/encoder/layer.0/attention/attention/query/MatMul", []string{"vit", "encoder", "layer", "0", "attention", "attention", "query"}},
		{"/encoder/layers.10/self_attn/Gemm", []string{"encoder", "layers", "10", "self_attn"}},
		{"/blocks/blocks.0/qkv/MatMul", []string{"blocks", "0", "qkv"}},                 // a called nn.Sequential repeats its name
		{"/blocks/blocks.2/blocks.2.3/conv/Conv", []string{"blocks", "2", "3", "conv"}}, // nested Sequentials
		{"/attention/attention/Softmax", []string{"attention", "attention"}},            // a repeat without an index is kept
		{"/Reshape", []string{}},
		{"MatMul_12", nil},
		{"node_Conv_694", nil},
		{"", nil},
	}
	for _, tt := range tests {
		if got := nodeScope(tt.name); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("nodeScope(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestDetectExactIndices checks, on a 12-layer encoder, that every edge of block N belongs to
// layer N exactly: layer.1 must not pick up layer.10 or layer.11.
func TestDetectExactIndices(t *testing.T) {
	for _, scoped := range []bool{true, false} {
		t.Run(fmt.Sprintf("scoped=%v", scoped), func(t *testing.T) {
			m := bertLike(12, 8, scoped).model(t)
			man, err := DetectManifest(m)
			if err != nil {
				t.Fatal(err)
			}
			if man.Container != "encoder.layer" || len(man.Blocks) != 12 || man.Family != "hf-bert" || man.Opset != 14 {
				t.Fatalf("manifest: container %q, %d blocks, family %q, opset %d", man.Container, len(man.Blocks), man.Family, man.Opset)
			}
			for i, b := range man.Blocks {
				layer := fmt.Sprintf("encoder.layer.%d", i)
				if b.Name != layer || b.Index != i {
					t.Errorf("block %d: name %q index %d", i, b.Name, b.Index)
				}
				out, _ := b.Output()
				if out.Tensor != layer+"/out" {
					t.Errorf("block %d: output %q", i, out.Tensor)
				}
				wantIn := "x"
				if i > 0 {
					wantIn = fmt.Sprintf("encoder.layer.%d/out", i-1)
				}
				if b.Input != wantIn {
					t.Errorf("block %d: input %q, want %q", i, b.Input, wantIn)
				}
				roles := map[Role]Edge{}
				for _, e := range b.Edges {
					roles[e.Role] = e
					if e.Kind == KindWeight && !strings.HasPrefix(e.Param, layer+".") {
						t.Errorf("block %d: %s edge param %q is not in %s", i, e.Role, e.Param, layer)
					}
				}
				for role, module := range map[Role]string{
					RoleQuery: "attention.self.query", RoleKey: "attention.self.key", RoleValue: "attention.self.value",
					RoleAttentionOutput: "attention.output.dense", RoleMLPIn: "intermediate.dense", RoleMLPOut: "output.dense",
				} {
					e, ok := roles[role]
					if !ok {
						t.Errorf("block %d: no %s edge", i, role)
						continue
					}
					if e.Param != layer+"."+module+".weight" || e.Layout != LayoutInOut || len(e.Consumers) != 1 || e.Kind != KindWeight {
						t.Errorf("block %d: %s edge %+v", i, role, e)
					}
					if scoped && e.Consumers[0] != "/"+dotsToScope(layer+"."+module)+"/MatMul" {
						t.Errorf("block %d: %s consumer %q", i, role, e.Consumers[0])
					}
				}
				for role, tensor := range map[Role]string{RoleAttentionScores: "scores", RoleAttentionKeys: "kT", RoleAttentionValues: "v"} {
					if e := roles[role]; e.Tensor != layer+"/"+tensor {
						t.Errorf("block %d: %s edge %q, want %q", i, role, e.Tensor, layer+"/"+tensor)
					}
				}
			}
			if err := m.ValidateManifest(man); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDetectNoBlocks(t *testing.T) {
	_, err := DetectManifest(tiny().model(t))
	if !errors.Is(err, ErrNoBlocks) {
		t.Fatalf("got %v, want ErrNoBlocks", err)
	}
	for _, want := range []string{"fc (2 tensors, 8 elements)", "layers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestManifestJSONRoundTrip(t *testing.T) {
	m := bertLike(3, 8, true).model(t)
	man, err := DetectManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	data, err := man.JSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(man, back) {
		t.Fatalf("round trip changed the manifest:\n%s", data)
	}
	// Stable field names: plugins read these.
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	edge := raw["blocks"].([]any)[0].(map[string]any)["edges"].([]any)[1].(map[string]any)
	for _, k := range []string{"role", "kind", "tensor", "consumers", "dtype", "shape", "layout", "param"} {
		if _, ok := edge[k]; !ok {
			t.Errorf("edge JSON lacks %q: %v", k, edge)
		}
	}
	if edge["dtype"] != "float32" {
		t.Errorf("dtype marshals as %v", edge["dtype"])
	}
}

// TestResolveManifestByName resolves a hand-written manifest that names blocks only.
func TestResolveManifestByName(t *testing.T) {
	m := bertLike(3, 8, true).model(t)
	detected, err := DetectManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	hand, err := ParseManifest([]byte(`{"version": 1, "blocks": [{"name": "encoder.layer.1"}, {"name": "encoder.layer.2"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ResolveManifest(m, hand)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Blocks) != 2 || got.Source != "file" || got.Family != "manual" {
		t.Fatalf("resolved: %+v", got)
	}
	for i, b := range got.Blocks {
		want := detected.Blocks[i+1]
		want.Index = i
		if !reflect.DeepEqual(b, want) {
			t.Errorf("block %d:\n got %+v\nwant %+v", i, b, want)
		}
	}
	// Edges given by hand are kept and completed; the output is found.
	hand2, err := ParseManifest([]byte(`{"version": 1, "blocks": [{"name": "encoder.layer.0", "edges": [
		{"role": "query", "tensor": "onnx::MatMul_0", "consumers": ["/encoder/layer.0/attention/self/query/MatMul"]},
		{"role": "conv", "tensor": "onnx::MatMul_6"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err = ResolveManifest(m, hand2)
	if err != nil {
		t.Fatal(err)
	}
	b := got.Blocks[0]
	if len(b.Edges) != 3 || b.Edges[0].Role != RoleOutput || b.Edges[0].Tensor != "encoder.layer.0/out" {
		t.Fatalf("edges: %+v", b.Edges)
	}
	q := b.Edges[1]
	if q.Kind != KindWeight || q.Layout != LayoutInOut || q.Shape.String() != "[8,8]" || q.DType != DTypeFloat32 {
		t.Errorf("query edge not completed: %+v", q)
	}
	if c := b.Edges[2]; c.Kind != KindWeight {
		t.Errorf("custom role edge on a constant: kind %q", c.Kind)
	}
}

func TestManifestErrors(t *testing.T) {
	m := bertLike(2, 8, true).model(t)
	parseErrs := []struct{ name, json string }{
		{"not JSON", `{`},
		{"unknown field", `{"version": 1, "blocks": [{"name": "a"}], "extra": 1}`},
		{"wrong version", `{"version": 2, "blocks": [{"name": "a"}]}`},
		{"no blocks", `{"version": 1, "blocks": []}`},
		{"index out of order", `{"version": 1, "blocks": [{"name": "a"}, {"name": "b", "index": 5}]}`},
	}
	for _, tt := range parseErrs {
		t.Run("parse/"+tt.name, func(t *testing.T) {
			if _, err := ParseManifest([]byte(tt.json)); !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("got %v, want ErrInvalidManifest", err)
			}
		})
	}
	out0 := `{"role": "output", "tensor": "encoder.layer.0/out"}`
	out1 := `{"role": "output", "tensor": "encoder.layer.1/out"}`
	resolveErrs := []struct {
		name, json string
		want       error
	}{
		{"unknown block", `{"version": 1, "blocks": [{"name": "encoder.layer.7"}]}`, ErrNoBlocks},
		{"layer.1 is not layer.10", `{"version": 1, "blocks": [{"name": "encoder.layer.0"}, {"name": "encoder.layer.1"}, {"name": "encoder.layer.10"}]}`, ErrNoBlocks},
		{"missing tensor", `{"version": 1, "blocks": [{"name": "b", "edges": [{"role": "output", "tensor": "nope"}]}]}`, ErrInvalidManifest},
		{"two outputs", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `,` + out1 + `]}]}`, ErrInvalidManifest},
		{"bottom to top", `{"version": 1, "blocks": [{"name": "b1", "edges": [` + out1 + `]}, {"name": "b0", "edges": [` + out0 + `]}]}`, ErrInvalidManifest},
		{"duplicate name", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `]}, {"name": "b", "edges": [` + out1 + `]}]}`, ErrInvalidManifest},
		{"weight not constant", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `, {"role": "query", "tensor": "x"}]}]}`, ErrInvalidManifest},
		{"activation constant", `{"version": 1, "blocks": [{"name": "b", "edges": [{"role": "output", "tensor": "onnx::MatMul_0"}]}]}`, ErrInvalidManifest},
		{"consumer does not read", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `, {"role": "query", "tensor": "onnx::MatMul_0", "consumers": ["/pooler/MatMul"]}]}]}`, ErrInvalidManifest},
		{"consumer missing", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `, {"role": "query", "tensor": "onnx::MatMul_0", "consumers": ["nope"]}]}]}`, ErrInvalidManifest},
		{"bad role", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `, {"role": "Bad Role", "tensor": "onnx::MatMul_0"}]}]}`, ErrInvalidManifest},
		{"slice outside", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `, {"role": "query", "tensor": "onnx::MatMul_0", "slice": {"axis": 1, "start": 4, "end": 12}}]}]}`, ErrInvalidManifest},
		{"duplicate edge", `{"version": 1, "blocks": [{"name": "b", "edges": [` + out0 + `, {"role": "query", "tensor": "onnx::MatMul_0"}, {"role": "key", "tensor": "onnx::MatMul_0"}]}]}`, ErrInvalidManifest},
	}
	for _, tt := range resolveErrs {
		t.Run("resolve/"+tt.name, func(t *testing.T) {
			man, err := ParseManifest([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ResolveManifest(m, man)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestUnpackedPart checks the names Unpack gives the parts of a packed q/k/v weight or bias.
func TestUnpackedPart(t *testing.T) {
	tests := []struct {
		name, kind string
		path       string
		role       Role
	}{
		{"encoder.layers.0.self_attn.in_proj_weight.query", "weight", "encoder.layers.0.self_attn.in_proj", RoleQuery},
		{"blocks.3.attn.qkv.weight.value", "weight", "blocks.3.attn.qkv", RoleValue},
		{"encoder.layers.0.self_attn.in_proj_bias.key", "bias", "encoder.layers.0.self_attn.in_proj", RoleKey},
		{"encoder.layer.0.attention.attention.query.weight", "weight", "", ""}, // a whole weight
		{"in_proj_weight.query", "weight", "", ""},                             // no module path
		{"blocks.3.attn.qkv.weight.part0", "weight", "", ""},
		{"encoder.layers.0.self_attn.in_proj_weight.query", "bias", "", ""},
	}
	for _, tt := range tests {
		path, role, ok := unpackedPart(tt.name, tt.kind)
		if got := strings.Join(path, "."); got != tt.path || role != tt.role || ok != (tt.role != "") {
			t.Errorf("unpackedPart(%q, %q) = %q, %q, %v; want %q, %q", tt.name, tt.kind, got, role, ok, tt.path, tt.role)
		}
	}
}
