// Command ia3 is an example third-party s3t plugin: IA3 ("Infused Adapter by Inhibiting and
// Amplifying Inner Activations", Liu et al. 2022), which rescales attention keys, attention
// values and the feed-forward activations by learned vectors. It is written against the s3t SDK
// alone and ships as its own binary:
//
//	go build -o bin/ia3 ./examples/ia3
//	s3t plugin install bin/ia3
//
// See README.md.
package main

import "github.com/s3t-dev/s3t/sdk"

func main() {
	sdk.Serve(Plugin())
}

// Plugin returns the plugin this binary serves.
func Plugin() *sdk.Plugin {
	return &sdk.Plugin{Name: Name, Version: Version, Description: "IA3: learned rescaling of keys, values and MLP activations", PEFT: &IA3{}}
}
