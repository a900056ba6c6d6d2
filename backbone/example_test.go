package backbone_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/s3t-dev/s3t/backbone"
)

// Detect the blocks of a torch nn.TransformerEncoder export and the edges of each.
func ExampleDetectManifest() {
	m, err := backbone.LoadFile("testdata/torch-encoder.onnx")
	if err != nil {
		log.Fatal(err)
	}
	man, err := backbone.DetectManifest(m)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(man.Family, man.Container)
	for _, b := range man.Blocks {
		var roles []string
		for _, e := range b.Edges {
			roles = append(roles, string(e.Role))
		}
		fmt.Println(b.Index, b.Name, strings.Join(roles, " "))
	}
	q, _ := man.Blocks[1].Edge(backbone.RoleQuery)
	fmt.Println(q.Tensor, q.Layout, q.Shape, *q.Slice)
	// Output:
	// torch-transformer-encoder encoder.layers
	// 0 encoder.layers.0 output query key value attention_output mlp_in mlp_out attention_scores attention_keys attention_values
	// 1 encoder.layers.1 output query key value attention_output mlp_in mlp_out attention_scores attention_keys attention_values
	// encoder.layers.1.self_attn.in_proj_weight out_in [96,32] {0 0 32}
}

// Splice a gated residual onto the top block's output: h + g·tanh(h), with the gate g a new
// parameter whose default 0 leaves the model unchanged.
func ExampleModel_Splice() {
	m, err := backbone.LoadFile("testdata/torch-encoder.onnx")
	if err != nil {
		log.Fatal(err)
	}
	man, err := backbone.DetectManifest(m)
	if err != nil {
		log.Fatal(err)
	}
	out, _ := man.Blocks[1].Output()
	gate := backbone.Subgraph{
		Input: "h", Output: "h_gated",
		Nodes: []backbone.Node{
			{Op: "Tanh", Inputs: []string{"h"}, Outputs: []string{"t"}},
			{Op: "Mul", Inputs: []string{"t", "g"}, Outputs: []string{"gt"}},
			{Op: "Add", Inputs: []string{"h", "gt"}, Outputs: []string{"h_gated"}},
		},
		Params: []backbone.Tensor{backbone.Scalar("g", 0)},
	}
	spliced, err := m.Splice(backbone.Splice{Edge: out, Graph: gate, Scope: "gate/1/"})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range spliced.Params() {
		fmt.Println(p.Name, p.DType, p.Shape)
	}
	// Output:
	// gate/1/g float32 []
}
