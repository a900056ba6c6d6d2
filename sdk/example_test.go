package sdk_test

import (
	"fmt"

	"github.com/s3t-dev/s3t/sdk"
)

// A LoRA update of an out_in weight W [out, in]: W + (alpha/r)·B·A, off at B = 0. The sizes
// have the types a plugin gets them in (an edge's Shape.Sizes() and a rank are int64, a JSON
// config's alpha is a float64), and the scale is a float division: 16/6, not 2. The Builder
// snippet of README.md is this example's body, line for line (TestREADMEBuilderSnippet).
func ExampleBuilder() {
	req := &sdk.PlanRequest{Manifest: sdk.Manifest{Opset: 14}}
	out, in := int64(64), int64(64)
	r, alpha := int64(6), 16.0

	b := sdk.NewBuilder(req.Manifest.Opset) // operators for the backbone's opset
	w := b.Input("W")                       // the edge's value
	am := b.Param(sdk.Zeros("A", r, in))    // parameters: their off values
	bm := b.Param(sdk.Zeros("B", out, r))
	scale := b.Const(sdk.Scalar("scale", float32(alpha/float64(r)))) // a float division
	y := b.Add(w, b.Mul(b.MatMul(bm, am), scale))
	g, err := b.Build(y) // validated Subgraph
	if err != nil {
		panic(err)
	}
	for _, n := range g.Nodes {
		fmt.Println(n.Op, n.Inputs, "->", n.Outputs)
	}
	fmt.Println("output:", g.Output)
	fmt.Println("scale:", g.Constants[0].Float32[0])
	// Output:
	// MatMul [B A] -> [MatMul_1]
	// Mul [MatMul_1 scale] -> [Mul_2]
	// Add [W Mul_2] -> [Add_3]
	// output: Add_3
	// scale: 2.6666667
}
