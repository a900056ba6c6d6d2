package adapters

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/sdk"
)

// Names of the task head's parameters in Trainer.Params.
const (
	// HeadWeight is the head's weight, [classes, features] (a torch Linear's layout).
	HeadWeight = "head/weight"
	// HeadBias is the head's bias, [classes].
	HeadBias = "head/bias"
)

// Head configures the task head a Trainer puts on the model: a linear classifier
// logits = x·Wᵀ + b over one of the model's tensors.
type Head struct {
	// Input is the model output the head reads, of shape [batch, features]. Default "features".
	Input string
	// Classes is the number of classes. Required.
	Classes int
}

// TrainConfig configures a Trainer.
type TrainConfig struct {
	// Train lists the PEFT parameters to train (from an Adapter), initialised as their Init says.
	Train []Param
	// Fixed gives values for PEFT parameters that are not trained (for example groups trained at
	// earlier stages); parameters in neither list keep their default ("off") value.
	Fixed map[string]ort.Tensor
	// Head is the task head, always trained.
	Head Head
	// HeadInit, when set, holds the head's starting values (HeadWeight and HeadBias, both):
	// stage i of a sequence continues the head of stage i-1 (METHOD.md: the head is
	// initialised once per sequence and trained at every stage). Unset, the head starts from a
	// seeded draw (torch's default Linear initialisation).
	HeadInit map[string]ort.Tensor
	// Optimizer is the optimizer. Defaults: see AdamW.
	Optimizer AdamW
	// Schedule scales the optimizer's learning rate step by step. Default constant.
	Schedule Schedule
	// BatchSize is Fit's batch size. Default 64.
	BatchSize int
	// MicroBatches splits each batch into this many parts whose gradients are computed at the
	// same time, one goroutine each (the batch's mean loss and gradient are recombined exactly;
	// simplego runs one graph on little more than one core). The results depend on it, as on the
	// batch size: keep it fixed to reproduce a run. Default 2.
	MicroBatches int
	// Seed seeds the parameters' initialisation and Fit's shuffling.
	Seed uint64
	// Progress, when set, is called after every step of Fit.
	Progress func(Progress)
}

// Progress reports one training step of Fit.
type Progress struct {
	// Epoch is the trainer's epoch, from 0; Step counts this Fit call's steps from 1, Steps is
	// their total.
	Epoch, Step, Steps int
	// Loss is the step's mean loss.
	Loss float64
	// ExamplesPerSecond is the throughput since Fit started.
	ExamplesPerSecond float64
}

// Trainer trains PEFT parameters and a linear head on an imported model, with the backbone frozen:
// each step computes the loss (mean cross-entropy) and its gradients in GoMLX and applies AdamW in
// Go. Training is deterministic: the same model, configuration and data give bit-identical
// parameters. A Trainer is not safe for concurrent use.
type Trainer struct {
	model *Model
	cfg   TrainConfig
	input string // the model's data input

	names  []string // trained parameters, then the head's
	shapes map[string][]int64
	values map[string][]float32
	state  map[string]*adamState
	fixed  []string // fixed parameters, sorted
	step   int      // optimizer steps taken
	epoch  int      // epochs Fit has run

	grad, logits *mlctx.Exec
}

// NewTrainer returns a trainer for m, which must have exactly one input (the data: images, or
// cached activations for a model cut above the frozen trunk).
func (e *Engine) NewTrainer(m *Model, cfg TrainConfig) (*Trainer, error) {
	if m.engine != e {
		return nil, fmt.Errorf("new trainer: %w: model imported by another engine", ErrInvalidArgument)
	}
	cfg.Optimizer = cfg.Optimizer.withDefaults()
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 64
	}
	if cfg.MicroBatches == 0 {
		cfg.MicroBatches = 2
	}
	if cfg.Head.Input == "" {
		cfg.Head.Input = "features"
	}
	if err := cfg.Schedule.validate(); err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	if err := cfg.Optimizer.validate(); err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	if cfg.BatchSize < 1 || cfg.MicroBatches < 1 || cfg.Head.Classes < 1 {
		return nil, fmt.Errorf("new trainer: %w: batch size %d, micro-batches %d, classes %d",
			ErrInvalidArgument, cfg.BatchSize, cfg.MicroBatches, cfg.Head.Classes)
	}
	if len(m.inputs) != 1 {
		return nil, fmt.Errorf("new trainer: %w: the model takes %d inputs, want 1", ErrInvalidArgument, len(m.inputs))
	}
	t := &Trainer{
		model:  m,
		cfg:    cfg,
		input:  m.inputs[0].Name,
		shapes: map[string][]int64{},
		values: map[string][]float32{},
		state:  map[string]*adamState{},
	}
	params := map[string][]int64{}
	for _, p := range m.params {
		params[p.Name] = p.Shape.Sizes()
	}
	for _, p := range cfg.Train {
		shape, ok := params[p.Name]
		if !ok {
			return nil, fmt.Errorf("new trainer: %w: %q is not a parameter of the model", ErrInvalidArgument, p.Name)
		}
		if !slices.Equal(shape, p.Shape) {
			return nil, fmt.Errorf("new trainer: %w: parameter %q has shape %v in the model, %v in the config",
				ErrInvalidArgument, p.Name, shape, p.Shape)
		}
		if _, dup := t.values[p.Name]; dup {
			return nil, fmt.Errorf("new trainer: %w: parameter %q listed twice", ErrInvalidArgument, p.Name)
		}
		if p.Init.Dist != nil {
			if err := p.Init.Dist.Validate(); err != nil {
				return nil, fmt.Errorf("new trainer: %w: parameter %q: %w", ErrInvalidArgument, p.Name, err)
			}
		}
		t.add(p.Name, p.Shape, p.Init)
	}
	for name, v := range cfg.Fixed {
		shape, ok := params[name]
		if !ok || t.values[name] != nil {
			return nil, fmt.Errorf("new trainer: %w: fixed value for %q, which is not an untrained parameter",
				ErrInvalidArgument, name)
		}
		if _, err := ort.Values[float32](v); err != nil || !slices.Equal(v.Shape, shape) || v.Validate() != nil {
			return nil, fmt.Errorf("new trainer: %w: fixed value for %q must be float32 %v", ErrInvalidArgument, name, shape)
		}
		t.fixed = append(t.fixed, name)
	}
	slices.Sort(t.fixed)
	// Keep copies: the caller may reuse its tensors.
	t.cfg.Fixed = make(map[string]ort.Tensor, len(cfg.Fixed))
	for name, v := range cfg.Fixed {
		d, _ := ort.Values[float32](v)
		t.cfg.Fixed[name] = ort.NewTensor(slices.Clone(d), v.Shape...)
	}
	features, err := t.headFeatures()
	if err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	bound := 1 / math.Sqrt(float64(features)) // torch's default Linear initialisation
	t.add(HeadWeight, []int64{int64(cfg.Head.Classes), int64(features)}, Init{Uniform: bound})
	t.add(HeadBias, []int64{int64(cfg.Head.Classes)}, Init{Uniform: bound})
	if cfg.HeadInit != nil {
		if len(cfg.HeadInit) != 2 {
			return nil, fmt.Errorf("new trainer: %w: HeadInit holds %d values, want %s and %s", ErrInvalidArgument, len(cfg.HeadInit), HeadWeight, HeadBias)
		}
		for _, name := range []string{HeadWeight, HeadBias} {
			v, ok := cfg.HeadInit[name]
			d, err := ort.Values[float32](v)
			if !ok || err != nil || !slices.Equal(v.Shape, t.shapes[name]) || v.Validate() != nil {
				return nil, fmt.Errorf("new trainer: %w: HeadInit must give %s as float32 %v", ErrInvalidArgument, name, t.shapes[name])
			}
			t.values[name] = slices.Clone(d) // the caller may reuse its tensors
		}
	}
	if err := t.compile(); err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	return t, nil
}

// headFeatures returns the size of the head's input, from the model's declaration of that output.
func (t *Trainer) headFeatures() (int, error) {
	for _, o := range t.model.outputs {
		if o.Name == t.cfg.Head.Input {
			if len(o.Shape) == 2 && o.Shape[1].Known() {
				return int(o.Shape[1].Size), nil
			}
			return 0, fmt.Errorf("%w: head input %q has shape %s, want [batch, features]",
				ErrInvalidArgument, o.Name, o.Shape)
		}
	}
	return 0, fmt.Errorf("%w: head input %q is not an output of the model", ErrInvalidArgument, t.cfg.Head.Input)
}

// add registers a trained parameter with its initial value: zeros or uniform in [-b, b] from a
// PCG seeded by the training seed and the parameter's name (so that each parameter's
// initialisation does not depend on which others exist).
func (t *Trainer) add(name string, shape []int64, init Init) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	if init.Dist != nil {
		// Validated when the Adapter was built; Sample fails only on an invalid Init.
		st, err := init.Dist.Sample(name, shape, sdk.SeedFor(t.cfg.Seed, name))
		if err != nil {
			panic(fmt.Sprintf("adapters: init of %q: %v", name, err))
		}
		v = st.Float32
	} else if init.Uniform > 0 {
		h := fnv.New64a()
		h.Write([]byte(name))
		rng := rand.New(rand.NewPCG(t.cfg.Seed, h.Sum64()))
		for i := range v {
			v[i] = float32(init.Uniform * (2*rng.Float64() - 1))
		}
	}
	t.names = append(t.names, name)
	t.shapes[name] = slices.Clone(shape)
	t.values[name] = v
	t.state[name] = &adamState{}
}

// compile creates the GoMLX executables: (x, labels, trained..., fixed...) -> (loss, gradients...)
// and (x, trained..., fixed...) -> logits. Graphs are built and compiled at the first call for
// each batch shape.
func (t *Trainer) compile() error {
	nt := len(t.names)
	logits := func(ctx *mlctx.Context, x *graph.Node, params []*graph.Node) *graph.Node {
		feeds := map[string]*graph.Node{t.input: x}
		for i, n := range t.names[:nt-2] {
			feeds[n] = params[i]
		}
		for i, n := range t.fixed {
			feeds[n] = params[nt+i]
		}
		f := t.model.call(ctx, feeds, []string{t.cfg.Head.Input})[0]
		w, b := params[nt-2], params[nt-1]
		return graph.Add(graph.DotGeneral(f, []int{1}, nil, w, []int{1}, nil), graph.InsertAxes(b, 0))
	}
	return catch("compile training step", func() (err error) {
		t.grad, err = mlctx.NewExecAny(t.model.engine.backend, t.model.weights,
			func(ctx *mlctx.Context, args []*graph.Node) []*graph.Node {
				x, labels, params := args[0], args[1], args[2:]
				z := logits(ctx, x, params)
				loss := losses.SparseCategoricalCrossEntropyLogits(
					[]*graph.Node{graph.InsertAxes(labels, -1)}, []*graph.Node{z})
				return append([]*graph.Node{loss}, graph.Gradient(loss, params[:nt]...)...)
			})
		if err != nil {
			return err
		}
		t.logits, err = mlctx.NewExecAny(t.model.engine.backend, t.model.weights,
			func(ctx *mlctx.Context, args []*graph.Node) []*graph.Node {
				return []*graph.Node{logits(ctx, args[0], args[1:])}
			})
		return err
	})
}

// paramArgs returns the trained then fixed parameters as GoMLX tensors.
func (t *Trainer) paramArgs() ([]any, error) {
	args := make([]any, 0, len(t.names)+len(t.fixed))
	for _, n := range t.names {
		args = append(args, tensorOf(t.values[n], t.shapes[n]))
	}
	for _, n := range t.fixed {
		v, err := toGoMLX(t.cfg.Fixed[n])
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	return args, nil
}

func tensorOf(v []float32, shape []int64) *tensors.Tensor {
	dims := make([]int, len(shape))
	for i, d := range shape {
		dims[i] = int(d)
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

// batch checks a batch: x float32 [n, ...] and n labels in [0, classes).
func (t *Trainer) batch(x ort.Tensor, labels []int) ([]float32, int, error) {
	data, err := ort.Values[float32](x)
	if err != nil || x.Validate() != nil || len(x.Shape) < 1 || x.Shape[0] < 1 {
		return nil, 0, fmt.Errorf("%w: x must be a float32 tensor [batch, ...], got %s%v", ErrInvalidArgument, x.DType(), x.Shape)
	}
	if err := t.model.checkFeed(t.input, x); err != nil {
		return nil, 0, err
	}
	n := int(x.Shape[0])
	if labels != nil && len(labels) != n {
		return nil, 0, fmt.Errorf("%w: %d labels for %d examples", ErrInvalidArgument, len(labels), n)
	}
	for _, l := range labels {
		if l < 0 || l >= t.cfg.Head.Classes {
			return nil, 0, fmt.Errorf("%w: label %d outside [0, %d)", ErrInvalidArgument, l, t.cfg.Head.Classes)
		}
	}
	return data, n, nil
}

// Step trains on one batch: x holds the model's input for n examples ([n, ...], float32) and
// labels their classes. It returns the batch's mean cross-entropy before the update.
func (t *Trainer) Step(ctx context.Context, x ort.Tensor, labels []int) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	data, n, err := t.batch(x, labels)
	if err == nil && len(labels) != n {
		err = fmt.Errorf("%w: %d labels for %d examples", ErrInvalidArgument, len(labels), n)
	}
	if err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	row := len(data) / n
	dims := make([]int, len(x.Shape))
	for i, d := range x.Shape {
		dims[i] = int(d)
	}
	// Micro-batches: contiguous parts whose sizes differ by at most one.
	parts := min(t.cfg.MicroBatches, n)
	outs := make([][]*tensors.Tensor, parts)
	errs := make([]error, parts)
	sizes := make([]int, parts)
	var wg sync.WaitGroup
	from := 0
	for p := range parts {
		size := n / parts
		if p < n%parts {
			size++
		}
		sizes[p] = size
		lo, hi := from, from+size
		from = hi
		// Each execution gets its own tensors: gomlx moves an argument's data to the backend and
		// may not share it between executions in flight.
		params, err := t.paramArgs()
		if err != nil {
			return 0, fmt.Errorf("step: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := slices.Clone(dims)
			d[0] = hi - lo
			lab := make([]int32, hi-lo)
			for i := range lab {
				lab[i] = int32(labels[lo+i])
			}
			args := append([]any{tensors.FromFlatDataAndDimensions(data[lo*row:hi*row], d...),
				tensors.FromFlatDataAndDimensions(lab, hi-lo)}, params...)
			errs[p] = catch("training step", func() (err error) {
				outs[p], err = t.grad.Exec(args...)
				return err
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("step: %w", err)
		}
	}
	// Recombine: the batch mean is the size-weighted mean of the parts' means, summed in order.
	var loss float64
	grads := make([][]float64, len(t.names))
	for p, out := range outs {
		w := float64(sizes[p]) / float64(n)
		l, err := float32s(out[0])
		if err != nil {
			return 0, fmt.Errorf("step: %w", err)
		}
		loss += w * float64(l[0])
		for i := range t.names {
			g, err := float32s(out[1+i])
			if err != nil {
				return 0, fmt.Errorf("step: %w", err)
			}
			if grads[i] == nil {
				grads[i] = make([]float64, len(g))
			}
			for j, v := range g {
				grads[i][j] += w * float64(v)
			}
		}
	}
	t.step++
	opt := t.cfg.Optimizer
	opt.LearningRate *= t.cfg.Schedule.factor(t.step)
	for i, name := range t.names {
		opt.adamStep(t.step, t.values[name], grads[i], t.state[name])
	}
	return loss, nil
}

// Fit trains for the given number of epochs over the examples (x [N, ...] float32, N labels) in
// batches of BatchSize, shuffled each epoch by a generator seeded with Seed and the epoch's number.
// Epochs are numbered across calls, so Fit(1) twice trains as Fit(2) does. It returns each epoch's
// mean loss.
func (t *Trainer) Fit(ctx context.Context, x ort.Tensor, labels []int, epochs int) ([]float64, error) {
	data, n, err := t.batch(x, labels)
	if err == nil && len(labels) != n {
		err = fmt.Errorf("%w: %d labels for %d examples", ErrInvalidArgument, len(labels), n)
	}
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	row := len(data) / n
	shape := slices.Clone(x.Shape)
	bs := t.cfg.BatchSize
	steps := epochs * ((n + bs - 1) / bs)
	start, done, seen := time.Now(), 0, 0
	var means []float64
	bx := make([]float32, min(bs, n)*row)
	by := make([]int, min(bs, n))
	for range epochs {
		epoch := t.epoch
		perm := rand.New(rand.NewPCG(t.cfg.Seed, uint64(epoch)+1<<32)).Perm(n)
		var sum float64
		for lo := 0; lo < n; lo += bs {
			idx := perm[lo:min(lo+bs, n)]
			for i, j := range idx {
				copy(bx[i*row:(i+1)*row], data[j*row:(j+1)*row])
				by[i] = labels[j]
			}
			shape[0] = int64(len(idx))
			loss, err := t.Step(ctx, ort.NewTensor(bx[:len(idx)*row], shape...), by[:len(idx)])
			if err != nil {
				return means, fmt.Errorf("fit: epoch %d: %w", epoch, err)
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return means, fmt.Errorf("fit: epoch %d, step %d: %w: the loss is %v (lower the learning rate, %g now)",
					epoch, done+1, ErrDiverged, loss, t.cfg.Optimizer.LearningRate)
			}
			sum += loss * float64(len(idx))
			done++
			seen += len(idx)
			if t.cfg.Progress != nil {
				t.cfg.Progress(Progress{Epoch: epoch, Step: done, Steps: steps, Loss: loss,
					ExamplesPerSecond: float64(seen) / time.Since(start).Seconds()})
			}
		}
		means = append(means, sum/float64(n))
		t.epoch++
	}
	return means, nil
}

// Logits returns the head's logits [n, classes] for x with the current parameters.
func (t *Trainer) Logits(ctx context.Context, x ort.Tensor) (ort.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return ort.Tensor{}, err
	}
	if _, _, err := t.batch(x, nil); err != nil {
		return ort.Tensor{}, fmt.Errorf("logits: %w", err)
	}
	xt, err := toGoMLX(x)
	if err != nil {
		return ort.Tensor{}, fmt.Errorf("logits: %w", err)
	}
	params, err := t.paramArgs()
	if err != nil {
		return ort.Tensor{}, fmt.Errorf("logits: %w", err)
	}
	var out *tensors.Tensor
	if err := catch("logits", func() (err error) {
		out, err = t.logits.Exec1(append([]any{xt}, params...)...)
		return err
	}); err != nil {
		return ort.Tensor{}, err
	}
	return fromGoMLX(out)
}

// Params returns copies of the trained parameters (the PEFT parameters of TrainConfig.Train and
// the head's HeadWeight and HeadBias).
func (t *Trainer) Params() map[string]ort.Tensor {
	out := make(map[string]ort.Tensor, len(t.names))
	for _, n := range t.names {
		out[n] = ort.NewTensor(slices.Clone(t.values[n]), t.shapes[n]...)
	}
	return out
}

// SetParams overwrites trained parameters (by name, as Params returns them) without touching the
// optimizer's state or step count: early stopping uses it to go back to the best epoch's values.
func (t *Trainer) SetParams(params map[string]ort.Tensor) error {
	for name, v := range params {
		cur, ok := t.values[name]
		d, err := ort.Values[float32](v)
		if !ok || err != nil || len(d) != len(cur) || !slices.Equal(v.Shape, t.shapes[name]) {
			return fmt.Errorf("set params: %w: %q is not a trained float32 %v parameter", ErrInvalidArgument, name, t.shapes[name])
		}
		copy(cur, d)
	}
	return nil
}

// Steps returns the number of optimizer steps taken.
func (t *Trainer) Steps() int { return t.step }
