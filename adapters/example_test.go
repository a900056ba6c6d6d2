package adapters_test

import (
	"context"
	"fmt"
	"log"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// Import the default backbone into GoMLX and run it.
func ExampleEngine_Import() {
	m, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		log.Fatal(err)
	}
	e, err := adapters.NewEngine()
	if err != nil {
		log.Fatal(err)
	}
	g, err := e.Import(m)
	if err != nil {
		log.Fatal(err)
	}
	pixels := ort.NewTensor(make([]float32, 2*28*28), 2, 1, 28, 28)
	out, err := g.Forward(context.Background(), map[string]ort.Tensor{"pixel_values": pixels})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out["logits"].Shape, out["features"].Shape)
	// Output:
	// [2 10] [2 64]
}

// Train LoRA on the top block of the default backbone and a linear head: splice LoRA in, cut the
// model at the block's input, compute the trunk's activations once with ONNX Runtime, and train
// the top part in GoMLX from them.
func ExampleEngine_NewTrainer() {
	ctx := context.Background()
	m, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		log.Fatal(err)
	}
	man, err := backbone.DetectManifest(m)
	if err != nil {
		log.Fatal(err)
	}
	top := len(man.Blocks) - 1
	lora, err := adapters.LoRA{Rank: 8}.Adapter(man, top) // query and value by default
	if err != nil {
		log.Fatal(err)
	}
	spliced, err := m.Splice(lora.Splices...)
	if err != nil {
		log.Fatal(err)
	}
	cut := man.Blocks[top].Input
	trunk, upper, err := spliced.Cut(cut)
	if err != nil {
		log.Fatal(err)
	}

	// The activation cache: ONNX Runtime runs the frozen trunk once per sample.
	b, err := trunk.Bytes()
	if err != nil {
		log.Fatal(err)
	}
	s, err := ort.NewSession(b)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	images := ort.NewTensor(make([]float32, 4*28*28), 4, 1, 28, 28) // your data here
	labels := []int{0, 1, 2, 3}
	act, err := s.Run(ctx, map[string]ort.Tensor{"pixel_values": images})
	if err != nil {
		log.Fatal(err)
	}

	e, err := adapters.NewEngine()
	if err != nil {
		log.Fatal(err)
	}
	g, err := e.Import(upper)
	if err != nil {
		log.Fatal(err)
	}
	tr, err := e.NewTrainer(g, adapters.TrainConfig{
		Train: lora.Params,
		Head:  adapters.Head{Classes: 10},
		Seed:  1,
	})
	if err != nil {
		log.Fatal(err)
	}
	losses, err := tr.Fit(ctx, act[cut], labels, 3)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(losses), len(tr.Params()))
}
