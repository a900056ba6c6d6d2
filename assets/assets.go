// Package assets holds the files s3t ships inside its binary: the default backbone, a small ViT
// pretrained on Fashion-MNIST (vit-fmnist.onnx), with its provenance and torch's reference outputs.
//
// scripts/vit/train_vit.py trains and exports the ViT and writes all three files; rerun it with
// `python3 scripts/vit/train_vit.py --out assets` to regenerate them.
package assets

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

var (
	//go:embed vit-fmnist.onnx
	vitONNX []byte
	//go:embed vit-fmnist.json
	vitInfo []byte
	//go:embed vit-fmnist-reference.json
	vitReference []byte
)

// ViTFashionMNIST returns the default backbone as an ONNX file: a ViT pretrained on
// Fashion-MNIST. It reads `pixel_values` [N, 1, 28, 28] float32 pixels in [0, 1] (the dataset
// normalization is part of the graph, as package dataset loads them) and returns `logits`
// [N, 10] and `features` [N, 64]. The slice is shared: callers must not modify it.
func ViTFashionMNIST() []byte { return vitONNX }

// ViTFashionMNISTInfo returns the provenance of ViTFashionMNIST.
func ViTFashionMNISTInfo() (Info, error) {
	var info Info
	if err := json.Unmarshal(vitInfo, &info); err != nil {
		return Info{}, fmt.Errorf("assets: vit-fmnist.json: %w", err)
	}
	return info, nil
}

// ViTFashionMNISTReference returns torch's outputs for the first images of the Fashion-MNIST
// test set, to check another engine against.
func ViTFashionMNISTReference() (Reference, error) {
	var ref Reference
	if err := json.Unmarshal(vitReference, &ref); err != nil {
		return Reference{}, fmt.Errorf("assets: vit-fmnist-reference.json: %w", err)
	}
	if len(ref.Labels) != ref.First || len(ref.Logits) != ref.First || len(ref.Features) != ref.First {
		return Reference{}, fmt.Errorf("assets: vit-fmnist-reference.json: %d labels, %d logits, %d features for %d images",
			len(ref.Labels), len(ref.Logits), len(ref.Features), ref.First)
	}
	return ref, nil
}

// Info is the provenance of a committed model, as written by the script that made it.
type Info struct {
	// Name is the model's short name ("vit-fmnist").
	Name string `json:"name"`
	// Description says what the model is.
	Description string `json:"description"`
	// Script is the path, from the repository root, of the script that trained and exported it.
	Script string `json:"script"`
	// Command is the command line that produced the committed files.
	Command string `json:"command"`
	// Seed seeds everything random in the script; rerunning with it reproduces the files on the
	// same machine setup (torch version, BLAS).
	Seed int64 `json:"seed"`
	// Epochs is the number of passes over the training set.
	Epochs int `json:"epochs"`
	// BatchSize is the training batch size.
	BatchSize int `json:"batch_size"`
	// LearningRate is AdamW's peak learning rate.
	LearningRate float64 `json:"learning_rate"`
	// WeightDecay is AdamW's weight decay on matrices.
	WeightDecay float64 `json:"weight_decay"`
	// LabelSmoothing is the cross-entropy label smoothing.
	LabelSmoothing float64 `json:"label_smoothing"`
	// Augmentation describes the training-time augmentation.
	Augmentation string `json:"augmentation"`
	// Threads is the number of CPU threads torch trained with.
	Threads int `json:"threads"`
	// BLAS lists the BLAS libraries the training process loaded.
	BLAS []string `json:"blas"`
	// TorchVersion is torch.__version__ of the training run.
	TorchVersion string `json:"torch_version"`
	// Opset is the ONNX opset of the export.
	Opset int `json:"opset"`
	// TrainSeconds is the wall time of the training loop.
	TrainSeconds float64 `json:"train_seconds"`
	// Parameters is the number of trained parameters.
	Parameters int `json:"parameters"`
	// Architecture gives the model's dimensions.
	Architecture Architecture `json:"architecture"`
	// TestSet names the evaluation set.
	TestSet string `json:"test_set"`
	// TestAccuracy is TestCorrect / TestTotal.
	TestAccuracy float64 `json:"test_accuracy"`
	// TestCorrect is the number of test images whose argmax logit is the label, computed by torch.
	TestCorrect int `json:"test_correct"`
	// TestTotal is the number of test images.
	TestTotal int `json:"test_total"`
	// TestMinTop2Margin is the smallest gap between the two largest logits over the test set: how
	// close torch came to a tie, i.e. how much another engine's rounding may move an argmax.
	TestMinTop2Margin float64 `json:"test_min_top2_margin"`
	// ONNXFile is the model's file name.
	ONNXFile string `json:"onnx_file"`
	// ONNXSHA256 is the hex SHA-256 of the ONNX file.
	ONNXSHA256 string `json:"onnx_sha256"`
	// ONNXBytes is the size of the ONNX file.
	ONNXBytes int `json:"onnx_bytes"`
	// ONNXOps counts the graph's nodes by op type.
	ONNXOps map[string]int `json:"onnx_ops"`
	// Export says how the ONNX file was exported, in particular how weights are named.
	Export string `json:"export"`
	// Input describes the model's input.
	Input Input `json:"input"`
	// Outputs describes the model's outputs, in graph order.
	Outputs []Output `json:"outputs"`
	// Labels names the classes, by index.
	Labels []string `json:"labels"`
	// ReferenceFile is the file name of the reference outputs (see ViTFashionMNISTReference).
	ReferenceFile string `json:"reference_file"`
	// ReferenceImages is the number of test images in the reference file.
	ReferenceImages int `json:"reference_images"`
}

// Architecture gives a ViT's dimensions, with Hugging Face ViTConfig's names where one exists.
type Architecture struct {
	// ImageSize is the side of the square input image in pixels.
	ImageSize int `json:"image_size"`
	// Channels is the number of input channels.
	Channels int `json:"channels"`
	// PatchSize is the side of a square patch in pixels.
	PatchSize int `json:"patch_size"`
	// Tokens is the sequence length inside the encoder: the patches plus the CLS token.
	Tokens int `json:"tokens"`
	// HiddenSize is the width of every token (and of the features output).
	HiddenSize int `json:"hidden_size"`
	// NumAttentionHeads is the number of attention heads per block.
	NumAttentionHeads int `json:"num_attention_heads"`
	// IntermediateSize is the width of the MLP's hidden layer.
	IntermediateSize int `json:"intermediate_size"`
	// NumHiddenLayers is the number of transformer blocks (encoder.layer.0 ... N-1).
	NumHiddenLayers int `json:"num_hidden_layers"`
	// NumLabels is the number of classes the classifier scores.
	NumLabels int `json:"num_labels"`
	// LayerNorm is "pre": each block normalizes before attention and before the MLP.
	LayerNorm string `json:"layer_norm"`
	// Activation is the MLP's activation ("gelu", the exact erf form).
	Activation string `json:"activation"`
	// LayerNormEps is the epsilon of every LayerNorm.
	LayerNormEps float64 `json:"layer_norm_eps"`
}

// Input describes a model input.
type Input struct {
	// Name is the graph input's name.
	Name string `json:"name"`
	// Shape is its shape; -1 marks the dynamic batch axis.
	Shape []int64 `json:"shape"`
	// DType is the element type ("float32").
	DType string `json:"dtype"`
	// Range is the [min, max] of the values the model expects.
	Range []float64 `json:"range"`
	// Normalization is what the graph does to the input before anything else.
	Normalization Normalization `json:"normalization"`
}

// Normalization is a per-pixel affine map (x - Mean) / Std.
type Normalization struct {
	// Mean is subtracted from every pixel.
	Mean float64 `json:"mean"`
	// Std divides the result.
	Std float64 `json:"std"`
	// InGraph is true when the model applies it itself, so callers feed raw [0, 1] pixels.
	InGraph bool `json:"in_graph"`
	// Formula writes the map out.
	Formula string `json:"formula"`
}

// Output describes a model output.
type Output struct {
	// Name is the graph output's name.
	Name string `json:"name"`
	// Shape is its shape; -1 marks the dynamic batch axis.
	Shape []int64 `json:"shape"`
	// DType is the element type ("float32").
	DType string `json:"dtype"`
	// Description says what it holds.
	Description string `json:"description,omitempty"`
}

// Reference holds torch's outputs for the first images of a test set.
type Reference struct {
	// Dataset names the data set of the images ("fashion-mnist").
	Dataset string `json:"dataset"`
	// Split names its split ("test").
	Split string `json:"split"`
	// First is the number of images: the first First images of the split, in file order.
	First int `json:"first"`
	// Labels holds the images' labels.
	Labels []int `json:"labels"`
	// Logits holds torch's `logits` output, one row per image.
	Logits [][]float32 `json:"logits"`
	// Features holds torch's `features` output, one row per image.
	Features [][]float32 `json:"features"`
}
