package assets_test

import (
	"fmt"

	"github.com/s3t-dev/s3t/assets"
)

func ExampleViTFashionMNISTInfo() {
	info, err := assets.ViTFashionMNISTInfo()
	if err != nil {
		panic(err)
	}
	fmt.Println("input:", info.Input.Name, info.Input.Shape)
	for _, o := range info.Outputs {
		fmt.Println("output:", o.Name, o.Shape)
	}
	// Output:
	// input: pixel_values [-1 1 28 28]
	// output: logits [-1 10]
	// output: features [-1 64]
}
