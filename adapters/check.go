package adapters

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/sdk"
)

// checkEngine is the engine CheckTrainable uses, made on first use.
var checkEngine = sync.OnceValues(NewEngine)

// CheckTrainable is the trainer's conformance check (sdktest.TrainCheck) on a shared engine: see
// Engine.CheckTrainable. Pass it to sdktest.WithTrainCheck.
func CheckTrainable(ctx context.Context, model []byte, params []sdk.ParamSpec) error {
	e, err := checkEngine()
	if err != nil {
		return err
	}
	return e.CheckTrainable(ctx, model, params)
}

// CheckTrainable checks that GoMLX can train the parameters of a spliced model (ONNX bytes,
// e.g. from backbone.Model.SplicePlan): it imports the model, sets every parameter to a value
// away from "off" (its Init, drawn from sdk.SeedFor(1, name), plus small seeded noise, so that
// products such as LoRA's B·A and gates such as prefix tuning's have a gradient), runs a forward
// and backward pass on a seeded synthetic batch of 2 (float inputs uniform in [-1, 1), integer
// inputs 0; axes of unknown size 2 for the batch, 4 otherwise) with the loss Σ r·y over every
// float output y (r a fixed random tensor), and requires a finite, non-zero gradient for every
// parameter. Errors wrap ErrInvalidArgument (the model or params) or ErrEngine.
func (e *Engine) CheckTrainable(ctx context.Context, model []byte, params []sdk.ParamSpec) error {
	if len(params) == 0 {
		return fmt.Errorf("check trainable: %w: no parameters", ErrInvalidArgument)
	}
	bm, err := backbone.LoadBytes(model)
	if err != nil {
		return fmt.Errorf("check trainable: %w", err)
	}
	m, err := e.Import(bm)
	if err != nil {
		return fmt.Errorf("check trainable: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("check trainable: %w", err)
	}
	declared := map[string][]int64{}
	for _, p := range m.params {
		declared[p.Name] = p.Shape.Sizes()
	}
	names := make([]string, len(params))
	values := make([]any, 0, len(m.inputs)+len(params))
	rng := rand.New(rand.NewPCG(1, 2))
	for _, in := range m.inputs {
		dims := make([]int, len(in.Shape))
		n := 1
		for i, d := range in.Shape {
			switch {
			case d.Known():
				dims[i] = int(d.Size)
			case i == 0:
				dims[i] = 2
			default:
				dims[i] = 4
			}
			n *= dims[i]
		}
		switch in.DType {
		case backbone.DTypeFloat32:
			v := make([]float32, n)
			for j := range v {
				v[j] = float32(2*rng.Float64() - 1)
			}
			values = append(values, tensors.FromFlatDataAndDimensions(v, dims...))
		case backbone.DTypeInt64:
			values = append(values, tensors.FromFlatDataAndDimensions(make([]int64, n), dims...))
		case backbone.DTypeInt32:
			values = append(values, tensors.FromFlatDataAndDimensions(make([]int32, n), dims...))
		default:
			return fmt.Errorf("check trainable: %w: input %q is %s", ErrUnsupported, in.Name, in.DType)
		}
	}
	for i, p := range params {
		names[i] = p.Name
		shape, ok := declared[p.Name]
		if !ok {
			return fmt.Errorf("check trainable: %w: %q is not a parameter of the model", ErrInvalidArgument, p.Name)
		}
		if !slices.Equal(shape, p.Off.Shape) {
			return fmt.Errorf("check trainable: %w: parameter %q has shape %v in the model, %v in the plan",
				ErrInvalidArgument, p.Name, shape, p.Off.Shape)
		}
		v, err := p.Init.Sample(p.Name, shape, sdk.SeedFor(1, p.Name))
		if err != nil {
			return fmt.Errorf("check trainable: %w: parameter %q: %w", ErrInvalidArgument, p.Name, err)
		}
		noise := rand.New(rand.NewPCG(sdk.SeedFor(2, p.Name), 3))
		for j := range v.Float32 {
			v.Float32[j] += float32(0.05 * noise.NormFloat64())
		}
		values = append(values, tensorOf(v.Float32, shape))
	}
	var outputs []string
	for _, o := range m.outputs {
		if o.DType == backbone.DTypeFloat32 {
			outputs = append(outputs, o.Name)
		}
	}
	if len(outputs) == 0 {
		return fmt.Errorf("check trainable: %w: the model has no float32 output", ErrInvalidArgument)
	}
	ni := len(m.inputs)
	var grads []*tensors.Tensor
	err = catch("check trainable", func() error {
		exec, err := mlctx.NewExecAny(m.engine.backend, m.weights, func(ctx *mlctx.Context, args []*graph.Node) []*graph.Node {
			feeds := map[string]*graph.Node{}
			for i, in := range m.inputs {
				feeds[in.Name] = args[i]
			}
			for i, n := range names {
				feeds[n] = args[ni+i]
			}
			outs := m.call(ctx, feeds, outputs)
			r := rand.New(rand.NewPCG(4, 5))
			var loss *graph.Node
			for _, y := range outs {
				w := make([]float32, y.Shape().Size())
				for j := range w {
					w[j] = float32(r.NormFloat64())
				}
				term := graph.ReduceAllSum(graph.Mul(y, graph.Reshape(graph.Const(y.Graph(), w), y.Shape().Dimensions...)))
				if loss == nil {
					loss = term
				} else {
					loss = graph.Add(loss, term)
				}
			}
			return graph.Gradient(loss, args[ni:]...)
		})
		if err != nil {
			return err
		}
		grads, err = exec.Exec(values...)
		return err
	})
	if err != nil {
		return err
	}
	var probs []error
	for i, g := range grads {
		d, err := float32s(g)
		if err != nil {
			return fmt.Errorf("check trainable: %w", err)
		}
		nonzero, finite := false, true
		for _, v := range d {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				finite = false
			}
			if v != 0 {
				nonzero = true
			}
		}
		switch {
		case !finite:
			probs = append(probs, fmt.Errorf("parameter %q has a gradient that is not finite", names[i]))
		case !nonzero:
			probs = append(probs, fmt.Errorf("parameter %q has a zero gradient", names[i]))
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("check trainable: %w: %w", ErrInvalidArgument, errors.Join(probs...))
	}
	return nil
}
