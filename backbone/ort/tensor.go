package ort

import (
	"fmt"
	"math"
	"strconv"
)

// DType is a tensor element type, numbered as ONNX's TensorProto.DataType (and ONNX Runtime's
// ONNXTensorElementDataType). Describe reports every ONNX type; Run supports those with a
// constant below except Undefined.
type DType int32

// Element types that Run accepts and returns. Undefined marks a value that is not a tensor
// (a sequence, a map) in a model description.
const (
	Undefined DType = 0
	Float32   DType = 1
	Uint8     DType = 2
	Int8      DType = 3
	Uint16    DType = 4
	Int16     DType = 5
	Int32     DType = 6
	Int64     DType = 7
	Bool      DType = 9
	Float64   DType = 11
	Uint32    DType = 12
	Uint64    DType = 13
)

var dtypeNames = map[DType]string{
	Undefined: "undefined", Float32: "float32", Uint8: "uint8", Int8: "int8", Uint16: "uint16",
	Int16: "int16", Int32: "int32", Int64: "int64", 8: "string", Bool: "bool", 10: "float16",
	Float64: "float64", Uint32: "uint32", Uint64: "uint64", 14: "complex64", 15: "complex128",
	16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2",
	20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1",
}

// String returns the type's name in Go spelling ("float32", "int64"; "float16" for ONNX types
// without a Go counterpart).
func (d DType) String() string {
	if n, ok := dtypeNames[d]; ok {
		return n
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// MarshalText encodes d by name ("float32"), so JSON shows names.
func (d DType) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes a name written by MarshalText.
func (d *DType) UnmarshalText(b []byte) error {
	for k, n := range dtypeNames {
		if n == string(b) {
			*d = k
			return nil
		}
	}
	return fmt.Errorf("element type %q: %w", b, ErrInvalidArgument)
}

// Element is the set of Go element types a Tensor can hold.
type Element interface {
	float32 | float64 | int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64 | bool
}

// Tensor is a dense tensor in row-major order. Data is a slice of one of the Element types
// ([]float32, []int64, ...) holding exactly the product of Shape's dimensions; an empty, non-nil
// Shape is a scalar with one element. The package never modifies a caller's Data, and Run's
// outputs own their Data.
type Tensor struct {
	Shape []int64
	Data  any
}

// NewTensor returns a Tensor over data (not copied) with the given shape.
func NewTensor[T Element](data []T, shape ...int64) Tensor {
	if shape == nil {
		shape = []int64{}
	}
	return Tensor{Shape: shape, Data: data}
}

// Values returns t's data as []T, or an error wrapping ErrDType when t holds another type.
func Values[T Element](t Tensor) ([]T, error) {
	v, ok := t.Data.([]T)
	if !ok {
		var zero T
		return nil, fmt.Errorf("tensor holds %s, not %T: %w", t.DType(), zero, ErrDType)
	}
	return v, nil
}

// DType returns the element type of t.Data, or Undefined when it is not a supported slice.
func (t Tensor) DType() DType {
	switch t.Data.(type) {
	case []float32:
		return Float32
	case []float64:
		return Float64
	case []int8:
		return Int8
	case []uint8:
		return Uint8
	case []int16:
		return Int16
	case []uint16:
		return Uint16
	case []int32:
		return Int32
	case []uint32:
		return Uint32
	case []int64:
		return Int64
	case []uint64:
		return Uint64
	case []bool:
		return Bool
	}
	return Undefined
}

// Len returns the number of elements in t.Data (0 when Data is not a supported slice).
func (t Tensor) Len() int {
	switch d := t.Data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int8:
		return len(d)
	case []uint8:
		return len(d)
	case []int16:
		return len(d)
	case []uint16:
		return len(d)
	case []int32:
		return len(d)
	case []uint32:
		return len(d)
	case []int64:
		return len(d)
	case []uint64:
		return len(d)
	case []bool:
		return len(d)
	}
	return 0
}

// Validate checks that t.Data is a supported slice and that its length is the product of the
// dimensions in t.Shape (all of them non-negative). Errors wrap ErrDType or ErrShape.
func (t Tensor) Validate() error {
	if t.DType() == Undefined {
		return fmt.Errorf("tensor data is %T, not a slice of a supported element type: %w", t.Data, ErrDType)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return err
	}
	if int64(t.Len()) != n {
		return fmt.Errorf("shape %v needs %d elements, data has %d: %w", t.Shape, n, t.Len(), ErrShape)
	}
	return nil
}

// numElements returns the product of shape's dimensions, rejecting negative dimensions and
// overflow.
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v: dimension %d is negative: %w", shape, i, ErrShape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v: element count overflows: %w", shape, ErrShape)
		}
		n *= d
	}
	return n, nil
}

// checkFinite returns an error wrapping ErrNotFinite when a float tensor holds NaN or ±Inf;
// other types always pass.
func checkFinite(t Tensor) error {
	switch d := t.Data.(type) {
	case []float32:
		for i, v := range d {
			if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
				return fmt.Errorf("element %d is %v: %w", i, v, ErrNotFinite)
			}
		}
	case []float64:
		for i, v := range d {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("element %d is %v: %w", i, v, ErrNotFinite)
			}
		}
	}
	return nil
}

// sliceRows returns rows [lo, hi) of t along its first dimension, sharing t's data.
func sliceRows(t Tensor, lo, hi int64) Tensor {
	row := int64(1)
	for _, d := range t.Shape[1:] {
		row *= d
	}
	shape := append([]int64{hi - lo}, t.Shape[1:]...)
	a, b := lo*row, hi*row
	var data any
	switch d := t.Data.(type) {
	case []float32:
		data = d[a:b:b]
	case []float64:
		data = d[a:b:b]
	case []int8:
		data = d[a:b:b]
	case []uint8:
		data = d[a:b:b]
	case []int16:
		data = d[a:b:b]
	case []uint16:
		data = d[a:b:b]
	case []int32:
		data = d[a:b:b]
	case []uint32:
		data = d[a:b:b]
	case []int64:
		data = d[a:b:b]
	case []uint64:
		data = d[a:b:b]
	case []bool:
		data = d[a:b:b]
	}
	return Tensor{Shape: shape, Data: data}
}

// concatRows joins parts (same element type, same trailing dimensions) along the first dimension.
func concatRows(parts []Tensor) Tensor {
	rows := int64(0)
	for _, p := range parts {
		rows += p.Shape[0]
	}
	shape := append([]int64{rows}, parts[0].Shape[1:]...)
	var data any
	switch parts[0].Data.(type) {
	case []float32:
		data = concatData[float32](parts)
	case []float64:
		data = concatData[float64](parts)
	case []int8:
		data = concatData[int8](parts)
	case []uint8:
		data = concatData[uint8](parts)
	case []int16:
		data = concatData[int16](parts)
	case []uint16:
		data = concatData[uint16](parts)
	case []int32:
		data = concatData[int32](parts)
	case []uint32:
		data = concatData[uint32](parts)
	case []int64:
		data = concatData[int64](parts)
	case []uint64:
		data = concatData[uint64](parts)
	case []bool:
		data = concatData[bool](parts)
	}
	return Tensor{Shape: shape, Data: data}
}

func concatData[T Element](parts []Tensor) []T {
	n := 0
	for _, p := range parts {
		n += p.Len()
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p.Data.([]T)...)
	}
	return out
}

// zeros returns a zeroed slice of n elements of type d (nil for an unsupported type).
func zeros(d DType, n int64) any {
	switch d {
	case Float32:
		return make([]float32, n)
	case Float64:
		return make([]float64, n)
	case Int8:
		return make([]int8, n)
	case Uint8:
		return make([]uint8, n)
	case Int16:
		return make([]int16, n)
	case Uint16:
		return make([]uint16, n)
	case Int32:
		return make([]int32, n)
	case Uint32:
		return make([]uint32, n)
	case Int64:
		return make([]int64, n)
	case Uint64:
		return make([]uint64, n)
	case Bool:
		return make([]bool, n)
	}
	return nil
}
