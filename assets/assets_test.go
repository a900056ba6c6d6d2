package assets

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"testing"
)

func TestViTFashionMNISTInfo(t *testing.T) {
	info, err := ViTFashionMNISTInfo()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ViTFashionMNIST())
	if got := hex.EncodeToString(sum[:]); got != info.ONNXSHA256 {
		t.Errorf("vit-fmnist.onnx has sha256 %s, provenance says %s", got, info.ONNXSHA256)
	}
	if len(ViTFashionMNIST()) != info.ONNXBytes {
		t.Errorf("vit-fmnist.onnx has %d bytes, provenance says %d", len(ViTFashionMNIST()), info.ONNXBytes)
	}
	if info.Script != "scripts/vit/train_vit.py" || info.Seed == 0 || info.Epochs < 1 || info.TorchVersion == "" || info.Opset < 13 {
		t.Errorf("incomplete provenance: script %q seed %d epochs %d torch %q opset %d",
			info.Script, info.Seed, info.Epochs, info.TorchVersion, info.Opset)
	}
	if info.TestTotal != 10000 || info.TestCorrect < 8500 || info.TestCorrect > info.TestTotal ||
		math.Abs(info.TestAccuracy-float64(info.TestCorrect)/float64(info.TestTotal)) > 1e-12 {
		t.Errorf("test accuracy %v = %d/%d", info.TestAccuracy, info.TestCorrect, info.TestTotal)
	}
	if info.Input.Name != "pixel_values" || !slices.Equal(info.Input.Shape, []int64{-1, 1, 28, 28}) || !info.Input.Normalization.InGraph {
		t.Errorf("input %+v", info.Input)
	}
	var outs []string
	for _, o := range info.Outputs {
		outs = append(outs, o.Name)
	}
	if !slices.Equal(outs, []string{"logits", "features"}) || !slices.Equal(info.Outputs[1].Shape, []int64{-1, int64(info.Architecture.HiddenSize)}) {
		t.Errorf("outputs %+v", info.Outputs)
	}
	if a := info.Architecture; a.PatchSize != 7 || a.HiddenSize != 64 || a.NumHiddenLayers != 4 || a.NumAttentionHeads != 4 || a.NumLabels != 10 || len(info.Labels) != a.NumLabels {
		t.Errorf("architecture %+v, %d labels", a, len(info.Labels))
	}
}

func TestViTFashionMNISTReference(t *testing.T) {
	info, err := ViTFashionMNISTInfo()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ViTFashionMNISTReference()
	if err != nil {
		t.Fatal(err)
	}
	if ref.Dataset != "fashion-mnist" || ref.Split != "test" || ref.First != info.ReferenceImages || ref.First < 1 {
		t.Fatalf("reference for %s/%s, %d images (provenance: %d)", ref.Dataset, ref.Split, ref.First, info.ReferenceImages)
	}
	// The first test labels of Fashion-MNIST.
	if want := []int{9, 2, 1, 1, 6, 1, 4, 6}; !slices.Equal(ref.Labels[:len(want)], want) {
		t.Errorf("labels %v, want %v...", ref.Labels, want)
	}
	for i := range ref.First {
		if len(ref.Logits[i]) != info.Architecture.NumLabels || len(ref.Features[i]) != info.Architecture.HiddenSize {
			t.Fatalf("image %d: %d logits, %d features", i, len(ref.Logits[i]), len(ref.Features[i]))
		}
	}
}
