package adapters

import (
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// This file builds the GoMLX backend the package runs on: gomlx's pure-Go backend (simplego),
// configured so that it cannot deadlock, with the operations it lacks and our graphs need.
//
// The deadlock. simplego runs the ops of a graph in parallel when that graph is the only one
// executing: each ready op is started through the backend's worker pool (WaitToStart, which blocks
// while 2×NumCPU workers are busy). Several ops then start sub-tasks through the same pool and
// wait for them (DotGeneral splits its batch, Erf splits large inputs) without telling the pool
// they are asleep. When every worker slot holds an op that waits for its sub-tasks, no sub-task
// can start: the execution hangs. Backprop graphs have many independent ready ops, so training
// hits it (TestNoDeadlock runs a graph that hangs the default configuration). The option
// "ops_sequential" runs the ops one after the other on the caller's goroutine, which holds no
// worker slot, so sub-tasks always find a free one, while the op-internal parallelism (the batch
// split of a matmul) is kept; Trainer runs micro-batches concurrently to use the other cores. The
// alternative, "parallelism=-1", starts a goroutine per task without any bound (and prints to
// stdout).
//
// Missing operations. simplego v0.26.0 implements neither Pad nor Reverse. Pad is needed by the
// ViT's embeddings (the CLS token is prepended with a constant Pad) and by the gradient of Slice.
// The backend below wraps simplego's builder and implements Pad from Concatenate, BroadcastInDim,
// Reshape and Slice, which simplego has; Reverse (the gradient of a convolution's kernel) is not
// needed by any trainable part and stays unimplemented.
//
// Speed. simplego's executors of the heavy float32 ops (DotGeneral, broadcasting arithmetic,
// reductions, transposes, Exp, Erf) are scalar loops over per-element index iterators; kernel.go
// replaces them, in this process, with the package's own (matmul.go, kernel_elementwise.go,
// AVX2 on amd64), which keep training deterministic.

// simplegoConfig is the simplego configuration: see above.
const simplegoConfig = "ops_sequential"

// newBackend returns a fresh simplego backend with the package's configuration and operations.
func newBackend() (backends.Backend, error) {
	b, err := simplego.New(simplegoConfig)
	if err != nil {
		return nil, fmt.Errorf("simplego backend: %w", err)
	}
	return &backend{Backend: b}, nil
}

// backend is a simplego backend whose builders implement Pad.
type backend struct {
	backends.Backend
}

// Builder implements backends.Backend.
func (b *backend) Builder(name string) backends.Builder {
	return &builder{Builder: b.Backend.Builder(name)}
}

// Capabilities implements backends.Backend: simplego's, plus Pad.
func (b *backend) Capabilities() backends.Capabilities {
	c := b.Backend.Capabilities().Clone()
	c.Operations[backends.OpTypePad] = true
	return c
}

// builder is a simplego builder with Pad.
type builder struct {
	backends.Builder
}

// Pad implements backends.Builder. For each axis, in order: interior padding (fill values between
// the elements), then the start and end padding; negative start or end padding removes elements,
// as in XLA's Pad.
func (b *builder) Pad(x, fill backends.Op, axes ...backends.PadAxis) (backends.Op, error) {
	shape, err := b.OpShape(x)
	if err != nil {
		return nil, err
	}
	if len(axes) > shape.Rank() {
		return nil, fmt.Errorf("Pad: %d axis configurations for a rank-%d operand", len(axes), shape.Rank())
	}
	fillShape, err := b.OpShape(fill)
	if err != nil {
		return nil, err
	}
	if !fillShape.IsScalar() || fillShape.DType != shape.DType {
		return nil, fmt.Errorf("Pad: fill value must be a %s scalar, got %s", shape.DType, fillShape)
	}
	for axis, p := range axes {
		if p.Interior < 0 {
			return nil, fmt.Errorf("Pad: negative interior padding %d on axis %d", p.Interior, axis)
		}
		if x, err = b.padInterior(x, fill, axis, p.Interior); err != nil {
			return nil, err
		}
		if x, err = b.padEdges(x, fill, axis, p.Start, p.End); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// padInterior inserts n fill values between consecutive elements along axis: a [.., d, ..] operand
// is reshaped to [.., d, 1, ..], concatenated with fill [.., d, n, ..] and flattened back to
// [.., d·(n+1), ..], whose last n entries are then cut.
func (b *builder) padInterior(x, fill backends.Op, axis, n int) (backends.Op, error) {
	shape, err := b.OpShape(x)
	if err != nil {
		return nil, err
	}
	d := shape.Dimensions[axis]
	if n == 0 || d <= 1 {
		return x, nil
	}
	expanded := slices.Insert(slices.Clone(shape.Dimensions), axis+1, 1)
	xe, err := b.Reshape(x, expanded...)
	if err != nil {
		return nil, err
	}
	fillDims := slices.Clone(expanded)
	fillDims[axis+1] = n
	f, err := b.BroadcastInDim(fill, shapes.Make(shape.DType, fillDims...), nil)
	if err != nil {
		return nil, err
	}
	joined, err := b.Concatenate(axis+1, xe, f)
	if err != nil {
		return nil, err
	}
	flat := slices.Clone(shape.Dimensions)
	flat[axis] = d * (n + 1)
	if joined, err = b.Reshape(joined, flat...); err != nil {
		return nil, err
	}
	return b.sliceAxis(joined, shape.Rank(), flat, axis, 0, d+(d-1)*n)
}

// padEdges adds (or, when negative, removes) start and end entries along axis.
func (b *builder) padEdges(x, fill backends.Op, axis, start, end int) (backends.Op, error) {
	shape, err := b.OpShape(x)
	if err != nil {
		return nil, err
	}
	d := shape.Dimensions[axis]
	if start < 0 || end < 0 {
		from, to := max(-start, 0), d-max(-end, 0)
		if from > to {
			return nil, fmt.Errorf("Pad: padding (%d, %d) removes more than the %d entries of axis %d", start, end, d, axis)
		}
		if x, err = b.sliceAxis(x, shape.Rank(), shape.Dimensions, axis, from, to); err != nil {
			return nil, err
		}
		start, end = max(start, 0), max(end, 0)
		if shape, err = b.OpShape(x); err != nil {
			return nil, err
		}
	}
	if start == 0 && end == 0 {
		return x, nil
	}
	parts := make([]backends.Op, 0, 3)
	block := func(n int) error {
		dims := slices.Clone(shape.Dimensions)
		dims[axis] = n
		f, err := b.BroadcastInDim(fill, shapes.Make(shape.DType, dims...), nil)
		if err == nil {
			parts = append(parts, f)
		}
		return err
	}
	if start > 0 {
		if err := block(start); err != nil {
			return nil, err
		}
	}
	parts = append(parts, x)
	if end > 0 {
		if err := block(end); err != nil {
			return nil, err
		}
	}
	return b.Concatenate(axis, parts...)
}

// sliceAxis keeps entries [from, to) of axis.
func (b *builder) sliceAxis(x backends.Op, rank int, dims []int, axis, from, to int) (backends.Op, error) {
	starts := make([]int, rank)
	limits := slices.Clone(dims)
	strides := slices.Repeat([]int{1}, rank)
	starts[axis], limits[axis] = from, to
	return b.Slice(x, starts, limits, strides)
}
