package sdk_test

import (
	"fmt"

	"github.com/s3t-dev/s3t/sdk"
)

// A LoRA update of an out_in weight W [out, in]: W + (alpha/r)·B·A, off at B = 0.
func ExampleBuilder() {
	const out, in, r = 64, 64, 8
	b := sdk.NewBuilder(14)
	w := b.Input("W")
	am := b.Param(sdk.Zeros("A", r, in))
	bm := b.Param(sdk.Zeros("B", out, r))
	scale := b.Const(sdk.Scalar("scale", 16.0/r))
	g, err := b.Build(b.Add(w, b.Mul(b.MatMul(bm, am), scale)))
	if err != nil {
		panic(err)
	}
	for _, n := range g.Nodes {
		fmt.Println(n.Op, n.Inputs, "->", n.Outputs)
	}
	fmt.Println("output:", g.Output)
	// Output:
	// MatMul [B A] -> [MatMul_1]
	// Mul [MatMul_1 scale] -> [Mul_2]
	// Add [W Mul_2] -> [Add_3]
	// output: Add_3
}
