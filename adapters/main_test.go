package adapters

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/dataset"
)

// TestMain shuts ONNX Runtime down after the tests (when a test loaded it), which also checks
// that every session was closed.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := ort.Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "ONNX Runtime shutdown after tests: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// testEngine returns an engine shared by the package's tests.
var testEngine = sync.OnceValues(NewEngine)

func engine(t testing.TB) *Engine {
	t.Helper()
	e, err := testEngine()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// vit loads the committed ViT backbone and its manifest.
func vit(t testing.TB) (*backbone.Model, *backbone.Manifest) {
	t.Helper()
	m, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		t.Fatal(err)
	}
	man, err := backbone.DetectManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, man
}

// session opens m in ONNX Runtime (with the optional inputs named), closed when the test ends.
func session(t testing.TB, m *backbone.Model, optional ...string) *ort.Session {
	t.Helper()
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(b, ort.WithOptionalInputs(optional...), ort.WithIntraOpThreads(1))
	if err != nil {
		t.Fatalf("ONNX Runtime session (run `make deps`): %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// runORT runs s and returns its outputs.
func runORT(t testing.TB, s *ort.Session, feeds map[string]ort.Tensor) map[string]ort.Tensor {
	t.Helper()
	out, err := s.Run(context.Background(), feeds)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// images returns the first n images of a data set: Fashion-MNIST's test split or MNIST.
// Tests that need the data sets skip under -short, as in the other packages.
func images(t testing.TB, set string, n int) *dataset.Set {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s (installed by `make deps`)", set)
	}
	var s *dataset.Set
	var err error
	switch set {
	case "fashion-mnist":
		s, err = dataset.LoadFashionMNIST("", dataset.Test)
	case "mnist":
		s, err = dataset.LoadMNIST("")
	default:
		t.Fatalf("unknown data set %q", set)
	}
	if err != nil {
		t.Fatalf("%s (run `make deps`): %v", set, err)
	}
	if n > s.Len() {
		n = s.Len()
	}
	return s.Slice(0, n)
}

// randomPixels returns n random images as the ViT's pixel_values input.
func randomPixels(n int, seed uint64) ort.Tensor {
	rng := rand.New(rand.NewPCG(seed, seed))
	v := make([]float32, n*dataset.ImageSize)
	for i := range v {
		v[i] = rng.Float32()
	}
	return ort.NewTensor(v, int64(n), dataset.Channels, dataset.Height, dataset.Width)
}

// pixels returns a set's images as the ViT's pixel_values input.
func pixels(s *dataset.Set) ort.Tensor {
	return ort.NewTensor(s.Pixels, s.Shape()...)
}

// maxAbsDiff returns the largest |a_i - b_i| of two float32 tensors of the same shape.
func maxAbsDiff(t testing.TB, a, b ort.Tensor) float64 {
	t.Helper()
	x, err := ort.Values[float32](a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := ort.Values[float32](b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) || fmt.Sprint(a.Shape) != fmt.Sprint(b.Shape) {
		t.Fatalf("shapes differ: %v and %v", a.Shape, b.Shape)
	}
	var d float64
	for i := range x {
		d = math.Max(d, math.Abs(float64(x[i])-float64(y[i])))
	}
	return d
}
