package adapters

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// The package exchanges tensors as ort.Tensor (row-major data plus shape), the type ONNX Runtime
// sessions take and return, so that activations computed by ONNX Runtime (the cached trunk) go
// straight into GoMLX and back.

// toGoMLX copies an ort.Tensor into a gomlx tensor. Supported element types: float32, float64,
// int32 and int64.
func toGoMLX(t ort.Tensor) (*tensors.Tensor, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	dims := make([]int, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = int(d)
	}
	switch d := t.Data.(type) {
	case []float32:
		return tensors.FromFlatDataAndDimensions(d, dims...), nil
	case []float64:
		return tensors.FromFlatDataAndDimensions(d, dims...), nil
	case []int32:
		return tensors.FromFlatDataAndDimensions(d, dims...), nil
	case []int64:
		return tensors.FromFlatDataAndDimensions(d, dims...), nil
	}
	return nil, fmt.Errorf("%w: element type %s is not supported (float32, float64, int32, int64)",
		ErrInvalidArgument, t.DType())
}

// fromGoMLX copies a gomlx tensor into an ort.Tensor.
func fromGoMLX(t *tensors.Tensor) (ort.Tensor, error) {
	shape := make([]int64, t.Rank())
	for i, d := range t.Shape().Dimensions {
		shape[i] = int64(d)
	}
	var data any
	var err error
	switch t.DType() {
	case dtypes.Float32:
		data, err = tensors.CopyFlatData[float32](t)
	case dtypes.Float64:
		data, err = tensors.CopyFlatData[float64](t)
	case dtypes.Int32:
		data, err = tensors.CopyFlatData[int32](t)
	case dtypes.Int64:
		data, err = tensors.CopyFlatData[int64](t)
	default:
		return ort.Tensor{}, fmt.Errorf("%w: GoMLX output of type %s", ErrUnsupported, t.DType())
	}
	if err != nil {
		return ort.Tensor{}, fmt.Errorf("%w: reading a GoMLX tensor: %w", ErrEngine, err)
	}
	return ort.Tensor{Shape: shape, Data: data}, nil
}

// float32s copies a gomlx float32 tensor's data.
func float32s(t *tensors.Tensor) ([]float32, error) {
	d, err := tensors.CopyFlatData[float32](t)
	if err != nil {
		return nil, fmt.Errorf("%w: reading a GoMLX tensor: %w", ErrEngine, err)
	}
	return d, nil
}
