package adapters

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/dataset"
)

// stage is the ViT prepared for training the LoRA of its top block: the spliced model cut at the
// block's input into a trunk (run by ONNX Runtime once, to fill the activation cache) and a top
// part (imported into GoMLX).
type stage struct {
	spliced, trunk, top *backbone.Model
	adapter             Adapter
	cut                 string
}

func newStage(t testing.TB, block int) stage {
	t.Helper()
	m, man := vit(t)
	a, err := LoRA{}.Adapter(man, block)
	if err != nil {
		t.Fatal(err)
	}
	spliced, err := m.Splice(a.Splices...)
	if err != nil {
		t.Fatal(err)
	}
	cut := man.Blocks[block].Input
	trunk, top, err := spliced.Cut(cut)
	if err != nil {
		t.Fatal(err)
	}
	return stage{spliced: spliced, trunk: trunk, top: top, adapter: a, cut: cut}
}

// mnistSplit returns cached trunk activations and labels for a seeded train/test split of MNIST.
func mnistSplit(t testing.TB, s stage, nTrain, nTest int) (xTrain ort.Tensor, yTrain []int, xTest ort.Tensor, yTest []int) {
	t.Helper()
	set := images(t, "mnist", dataset.MNISTSize)
	perm := rand.New(rand.NewPCG(7, 7)).Perm(set.Len())
	pick := func(idx []int) (ort.Tensor, []int) {
		px := make([]float32, 0, len(idx)*dataset.ImageSize)
		ys := make([]int, len(idx))
		for i, j := range idx {
			px = append(px, set.Image(j)...)
			ys[i] = set.Labels[j]
		}
		sess := session(t, s.trunk)
		out, err := sess.RunBatched(context.Background(),
			map[string]ort.Tensor{"pixel_values": ort.NewTensor(px, int64(len(idx)), 1, 28, 28)}, 500)
		if err != nil {
			t.Fatal(err)
		}
		return out[s.cut], ys
	}
	xTrain, yTrain = pick(perm[:nTrain])
	xTest, yTest = pick(perm[nTrain : nTrain+nTest])
	return
}

func accuracy(t testing.TB, tr *Trainer, x ort.Tensor, y []int) float64 {
	t.Helper()
	z, err := tr.Logits(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := ort.Values[float32](z)
	k := len(v) / len(y)
	correct := 0
	for i, label := range y {
		row := v[i*k : (i+1)*k]
		if slices.Index(row, slices.Max(row)) == label {
			correct++
		}
	}
	return float64(correct) / float64(len(y))
}

func newTrainer(t testing.TB, s stage, cfg TrainConfig) (*Model, *Trainer) {
	t.Helper()
	m, err := engine(t).Import(s.top)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Train == nil {
		cfg.Train = s.adapter.Params
	}
	if cfg.Head.Classes == 0 {
		cfg.Head.Classes = dataset.Classes
	}
	tr, err := engine(t).NewTrainer(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, tr
}

// TestTrainLoRA trains LoRA on the query and value weights of the ViT's top block plus a linear
// head on MNIST, from cached trunk activations, and checks that it learns, that the backbone's
// weights stay bit-identical, and that ONNX Runtime running the spliced model with the trained
// parameters computes the same features as GoMLX.
func TestTrainLoRA(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	s := newStage(t, 3)
	xTrain, yTrain, xTest, yTest := mnistSplit(t, s, 2000, 1000)
	m, tr := newTrainer(t, s, TrainConfig{Seed: 1, Optimizer: AdamW{LearningRate: 1e-2}})
	before := accuracy(t, tr, xTest, yTest)
	losses, err := tr.Fit(context.Background(), xTrain, yTrain, 3)
	if err != nil {
		t.Fatal(err)
	}
	after := accuracy(t, tr, xTest, yTest)
	t.Logf("epoch losses %.4f; test accuracy %.3f before, %.3f after %d steps", losses, before, after, tr.Steps())
	if !(losses[2] < losses[0]) || after < 0.65 {
		t.Errorf("training did not learn: losses %v, accuracy %.3f", losses, after)
	}
	// LoRA did train: B moved away from its "off" value.
	for _, p := range s.adapter.Params {
		v, _ := ort.Values[float32](tr.Params()[p.Name])
		if p.Init.Uniform == 0 && !slices.ContainsFunc(v, func(x float32) bool { return x != 0 }) {
			t.Errorf("%s is still zero", p.Name)
		}
	}
	// Every backbone weight is bit-identical to the ONNX initializer.
	for _, name := range m.Weights() {
		want, err := s.top.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Weight(name)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := ort.Values[float32](got)
		i, _ := ort.Values[int64](got)
		if !slices.EqualFunc(g, want.Float32, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) ||
			!slices.Equal(i, want.Int64) {
			t.Errorf("weight %s changed", name)
		}
	}
	// ONNX Runtime on the spliced top with the trained parameters fed computes GoMLX's features.
	feeds := map[string]ort.Tensor{s.cut: head(xTest, 64)}
	var optional []string
	for _, p := range s.adapter.Params {
		feeds[p.Name] = tr.Params()[p.Name]
		optional = append(optional, p.Name)
	}
	want := runORT(t, session(t, s.top, optional...), feeds)["features"]
	got, err := m.Forward(context.Background(), feeds, "features")
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(t, got["features"], want); d > 1e-4 {
		t.Errorf("trained features: GoMLX and ONNX Runtime differ by %g", d)
	} else {
		t.Logf("trained features: max |GoMLX - ORT| = %.3g", d)
	}
}

// head returns the first n rows of x.
func head(x ort.Tensor, n int) ort.Tensor {
	v, _ := ort.Values[float32](x)
	row := len(v) / int(x.Shape[0])
	shape := slices.Clone(x.Shape)
	shape[0] = int64(n)
	return ort.NewTensor(v[:n*row], shape...)
}

// TestTrainDeterministic trains twice with the same seed and data and checks that the parameters
// are bit-identical, and that another seed gives other parameters.
func TestTrainDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	s := newStage(t, 3)
	x, y, _, _ := mnistSplit(t, s, 256, 0)
	run := func(seed uint64) map[string]ort.Tensor {
		_, tr := newTrainer(t, s, TrainConfig{Seed: seed, Optimizer: AdamW{WeightDecay: 0.01}})
		if _, err := tr.Fit(context.Background(), x, y, 2); err != nil {
			t.Fatal(err)
		}
		return tr.Params()
	}
	a, b, c := run(1), run(1), run(2)
	// Two Fit calls of one epoch train as one call of two.
	_, tr := newTrainer(t, s, TrainConfig{Seed: 1, Optimizer: AdamW{WeightDecay: 0.01}})
	for range 2 {
		if _, err := tr.Fit(context.Background(), x, y, 1); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range tr.Params() {
		if !reflect.DeepEqual(v, a[name]) {
			t.Errorf("%s: Fit(1) twice differs from Fit(2)", name)
		}
	}
	for name, v := range a {
		av, _ := ort.Values[float32](v)
		bv, _ := ort.Values[float32](b[name])
		cv, _ := ort.Values[float32](c[name])
		bits := func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }
		if !slices.EqualFunc(av, bv, bits) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
		if slices.EqualFunc(av, cv, bits) {
			t.Errorf("%s is the same for seeds 1 and 2", name)
		}
	}
}

// lossAndGrads evaluates the trainer's loss and gradients on one batch with its current
// parameters, without updating them (one micro-batch).
func lossAndGrads(t *testing.T, tr *Trainer, x ort.Tensor, y []int) (float64, [][]float32) {
	t.Helper()
	xt, _ := toGoMLX(x)
	lab := make([]int32, len(y))
	for i, l := range y {
		lab[i] = int32(l)
	}
	params, err := tr.paramArgs()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]any{xt, tensors.FromFlatDataAndDimensions(lab, len(lab))}, params...)
	var out []*tensors.Tensor
	if err := catch("gradients", func() (err error) { out, err = tr.grad.Exec(args...); return err }); err != nil {
		t.Fatal(err)
	}
	loss := tensors.MustCopyFlatData[float32](out[0])[0]
	var grads [][]float32
	for _, g := range out[1:] {
		grads = append(grads, tensors.MustCopyFlatData[float32](g))
	}
	return float64(loss), grads
}

// withDefaultDotGradients runs fn with gomlx's own Dot/DotGeneral gradients installed (graphs
// built inside fn use them).
func withDefaultDotGradients(fn func()) {
	graph.VJPRegistration[graph.NodeTypeDot] = defaultDotVJP
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = defaultDotGeneralVJP
	defer func() {
		graph.VJPRegistration[graph.NodeTypeDot] = dotVJP
		graph.VJPRegistration[graph.NodeTypeDotGeneral] = dotGeneralVJP
	}()
	fn()
}

// TestTrainGradients checks the gradients of the whole training loss (the ViT's top block with
// LoRA on query and value, final LayerNorm, CLS token, linear head, cross-entropy) in float32:
// against gomlx's default Dot/DotGeneral gradients, and against a central finite difference of the
// loss along a random direction of all parameters.
func TestTrainGradients(t *testing.T) {
	s := newStage(t, 3)
	rng := rand.New(rand.NewPCG(9, 9))
	xv := make([]float32, 16*17*64)
	for i := range xv {
		xv[i] = float32(rng.NormFloat64())
	}
	x := ort.NewTensor(xv, 16, 17, 64)
	y := make([]int, 16)
	for i := range y {
		y[i] = i % 10
	}
	_, fast := newTrainer(t, s, TrainConfig{Seed: 3})
	// Move B away from 0 so that every path of the graph carries gradient.
	for _, p := range s.adapter.Params {
		for i := range fast.values[p.Name] {
			fast.values[p.Name][i] += float32(0.05 * rng.NormFloat64())
		}
	}
	loss, grads := lossAndGrads(t, fast, x, y)
	var slowGrads [][]float32
	withDefaultDotGradients(func() {
		_, slow := newTrainer(t, s, TrainConfig{Seed: 3})
		for n, v := range fast.values {
			copy(slow.values[n], v)
		}
		_, slowGrads = lossAndGrads(t, slow, x, y)
	})
	for i, name := range fast.names {
		var num, den float64
		for j := range grads[i] {
			d := float64(grads[i][j] - slowGrads[i][j])
			num += d * d
			den += float64(slowGrads[i][j]) * float64(slowGrads[i][j])
		}
		if rel := math.Sqrt(num / math.Max(den, 1e-30)); rel > 1e-5 {
			t.Errorf("%s: matmul and default gradients differ by %.3g (relative L2)", name, rel)
		}
	}
	// Directional derivative: (L(p+hd) - L(p-hd)) / 2h against ∇L·d, d a random unit direction.
	dirs := map[string][]float64{}
	var norm, dot float64
	for i, name := range fast.names {
		d := make([]float64, len(grads[i]))
		for j := range d {
			d[j] = rng.NormFloat64()
			norm += d[j] * d[j]
		}
		dirs[name] = d
	}
	norm = math.Sqrt(norm)
	for i, name := range fast.names {
		for j := range dirs[name] {
			dirs[name][j] /= norm
			dot += float64(grads[i][j]) * dirs[name][j]
		}
	}
	orig := map[string][]float32{}
	for n, v := range fast.values {
		orig[n] = slices.Clone(v)
	}
	at := func(h float64) float64 {
		for n, v := range fast.values {
			for j := range v {
				v[j] = float32(float64(orig[n][j]) + h*dirs[n][j])
			}
		}
		l, _ := lossAndGrads(t, fast, x, y)
		return l
	}
	const h = 1e-2
	fd := (at(h) - at(-h)) / (2 * h)
	t.Logf("loss %.5f, ∇L·d = %.6f, finite difference %.6f", loss, dot, fd)
	if math.Abs(fd-dot) > 1e-2*math.Max(math.Abs(dot), 1e-3) {
		t.Errorf("directional derivative: autodiff %.6f, finite difference %.6f", dot, fd)
	}
}

// BenchmarkTrainStep times one training step at batch 64 on the ViT's top block (LoRA rank 8 on
// query and value, linear head; inputs are block activations, as from the activation cache), with
// the matmul gradients and with gomlx's defaults, on one and two micro-batches. The PyTorch figure
// for the same model and batch comes from testdata/torch_lora_bench.py.
func BenchmarkTrainStep(b *testing.B) {
	s := newStage(b, 3)
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 64
	xv := make([]float32, n*17*64)
	for i := range xv {
		xv[i] = float32(rng.NormFloat64())
	}
	x := ort.NewTensor(xv, n, 17, 64)
	y := make([]int, n)
	for i := range y {
		y[i] = i % 10
	}
	for _, c := range []struct {
		name     string
		micro    int
		defaults bool
	}{
		{"vjp=matmul/micro=2", 2, false},
		{"vjp=matmul/micro=1", 1, false},
		{"vjp=gomlx-default/micro=2", 2, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			run := func() {
				_, tr := newTrainer(b, s, TrainConfig{Seed: 1, MicroBatches: c.micro})
				if _, err := tr.Step(context.Background(), x, y); err != nil { // compiles
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if _, err := tr.Step(context.Background(), x, y); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "examples/s")
			}
			if c.defaults {
				withDefaultDotGradients(run)
			} else {
				run()
			}
		})
	}
}

// TestTrainerErrors checks that bad configurations and batches are errors.
func TestTrainerErrors(t *testing.T) {
	s := newStage(t, 3)
	m, err := engine(t).Import(s.top)
	if err != nil {
		t.Fatal(err)
	}
	a := s.adapter.Params
	wrongShape := a[0]
	wrongShape.Shape = []int64{1, 2}
	for _, c := range []struct {
		name string
		cfg  TrainConfig
	}{
		{"no classes", TrainConfig{Train: a}},
		{"unknown parameter", TrainConfig{Train: []Param{{Name: "lora/9/query/A", Shape: []int64{8, 64}}}, Head: Head{Classes: 10}}},
		{"wrong shape", TrainConfig{Train: []Param{wrongShape}, Head: Head{Classes: 10}}},
		{"listed twice", TrainConfig{Train: []Param{a[0], a[0]}, Head: Head{Classes: 10}}},
		{"trained and fixed", TrainConfig{Train: a, Fixed: map[string]ort.Tensor{a[0].Name: ort.NewTensor(make([]float32, 512), 8, 64)}, Head: Head{Classes: 10}}},
		{"fixed of wrong shape", TrainConfig{Fixed: map[string]ort.Tensor{a[0].Name: ort.NewTensor(make([]float32, 512), 64, 8)}, Head: Head{Classes: 10}}},
		{"head on a non-output", TrainConfig{Head: Head{Input: "nope", Classes: 10}}},
		{"negative learning rate", TrainConfig{Head: Head{Classes: 10}, Optimizer: AdamW{LearningRate: -1}}},
		{"beta of 1", TrainConfig{Head: Head{Classes: 10}, Optimizer: AdamW{Beta2: 1}}},
		{"head init of wrong shape", TrainConfig{Head: Head{Classes: 10}, HeadInit: map[string]ort.Tensor{
			HeadWeight: ort.NewTensor(make([]float32, 640), 64, 10), HeadBias: ort.NewTensor(make([]float32, 10), 10)}}},
		{"head init without a bias", TrainConfig{Head: Head{Classes: 10}, HeadInit: map[string]ort.Tensor{
			HeadWeight: ort.NewTensor(make([]float32, 640), 10, 64)}}},
		{"head init of another parameter", TrainConfig{Head: Head{Classes: 10}, HeadInit: map[string]ort.Tensor{
			HeadWeight: ort.NewTensor(make([]float32, 640), 10, 64), a[0].Name: ort.NewTensor(make([]float32, 10), 10)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := engine(t).NewTrainer(m, c.cfg); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("NewTrainer: got %v, want ErrInvalidArgument", err)
			}
		})
	}
	// A head given in HeadInit is where the trainer starts, copied.
	w, b := make([]float32, 640), make([]float32, 10)
	for i := range w {
		w[i] = float32(i) / 640
	}
	b[3] = -2
	init := map[string]ort.Tensor{HeadWeight: ort.NewTensor(w, 10, 64), HeadBias: ort.NewTensor(b, 10)}
	tr, err := engine(t).NewTrainer(m, TrainConfig{Train: a, Head: Head{Classes: 10}, HeadInit: init})
	if err != nil {
		t.Fatal(err)
	}
	w[0] = 99 // the trainer kept a copy
	got := tr.Params()
	gw, _ := ort.Values[float32](got[HeadWeight])
	gb, _ := ort.Values[float32](got[HeadBias])
	if gw[0] != 0 || gw[639] != 639.0/640 || !slices.Equal(gb, b) {
		t.Errorf("head from HeadInit: weight[0] %v, weight[639] %v, bias %v", gw[0], gw[639], gb)
	}
	if tr, err = engine(t).NewTrainer(m, TrainConfig{Train: a, Head: Head{Classes: 10}}); err != nil {
		t.Fatal(err)
	}
	x := ort.NewTensor(make([]float32, 2*17*64), 2, 17, 64)
	for _, c := range []struct {
		name   string
		x      ort.Tensor
		labels []int
	}{
		{"missing labels", x, nil},
		{"too few labels", x, []int{1}},
		{"label out of range", x, []int{1, 10}},
		{"negative label", x, []int{-1, 0}},
		{"int input", ort.NewTensor(make([]int64, 2*17*64), 2, 17, 64), []int{0, 1}},
		{"bad data", ort.NewTensor(make([]float32, 3), 2, 17, 64), []int{0, 1}},
		{"wrong shape", ort.NewTensor(make([]float32, 2*16*64), 2, 16, 64), []int{0, 1}},
	} {
		t.Run("step/"+c.name, func(t *testing.T) {
			_, err := tr.Step(context.Background(), c.x, c.labels)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Step: got %v, want ErrInvalidArgument", err)
			}
		})
	}
	if tr.Steps() != 0 {
		t.Errorf("failed steps counted: %d", tr.Steps())
	}
}
