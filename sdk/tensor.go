package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidTensor means a Tensor's data does not match its type and shape, or its type is not
// one a Subgraph may hold (float32, int64).
var ErrInvalidTensor = errors.New("invalid tensor")

// DType is a tensor element type, numbered as ONNX's TensorProto.DataType. It marshals to JSON as
// its name ("float32", "int64", ...).
type DType int32

// The element types. Values equal ONNX's TensorProto.DataType numbers.
const (
	DTypeUndefined  DType = 0
	DTypeFloat32    DType = 1
	DTypeUint8      DType = 2
	DTypeInt8       DType = 3
	DTypeUint16     DType = 4
	DTypeInt16      DType = 5
	DTypeInt32      DType = 6
	DTypeInt64      DType = 7
	DTypeString     DType = 8
	DTypeBool       DType = 9
	DTypeFloat16    DType = 10
	DTypeFloat64    DType = 11
	DTypeUint32     DType = 12
	DTypeUint64     DType = 13
	DTypeComplex64  DType = 14
	DTypeComplex128 DType = 15
	DTypeBFloat16   DType = 16
)

var dtypeNames = map[DType]string{
	DTypeUndefined: "undefined", DTypeFloat32: "float32", DTypeUint8: "uint8", DTypeInt8: "int8",
	DTypeUint16: "uint16", DTypeInt16: "int16", DTypeInt32: "int32", DTypeInt64: "int64",
	DTypeString: "string", DTypeBool: "bool", DTypeFloat16: "float16", DTypeFloat64: "float64",
	DTypeUint32: "uint32", DTypeUint64: "uint64", DTypeComplex64: "complex64",
	DTypeComplex128: "complex128", DTypeBFloat16: "bfloat16",
	17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz",
	21: "uint4", 22: "int4", 23: "float4e2m1",
}

// String returns the type's name, e.g. "float32"; unknown numbers print as "dtype(N)".
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// Size returns the size of one element in bytes; 0 for strings, sub-byte and unknown types.
func (d DType) Size() int {
	switch d {
	case DTypeUint8, DTypeInt8, DTypeBool, 17, 18, 19, 20:
		return 1
	case DTypeUint16, DTypeInt16, DTypeFloat16, DTypeBFloat16:
		return 2
	case DTypeFloat32, DTypeInt32, DTypeUint32:
		return 4
	case DTypeInt64, DTypeFloat64, DTypeUint64, DTypeComplex64:
		return 8
	case DTypeComplex128:
		return 16
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	switch d {
	case DTypeFloat32, DTypeFloat16, DTypeFloat64, DTypeBFloat16, 17, 18, 19, 20, 23:
		return true
	}
	return false
}

// MarshalJSON writes the type's name.
func (d DType) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a type name ("float32") or an ONNX DataType number.
func (d *DType) UnmarshalJSON(b []byte) error {
	var n int32
	if err := json.Unmarshal(b, &n); err == nil {
		*d = DType(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("dtype: want a name or a number, got %s", b)
	}
	t, err := ParseDType(s)
	if err != nil {
		return err
	}
	*d = t
	return nil
}

// ParseDType returns the type named s ("float32"; "float" is accepted for float32).
func ParseDType(s string) (DType, error) {
	if s == "float" {
		return DTypeFloat32, nil
	}
	for d, name := range dtypeNames {
		if name == s {
			return d, nil
		}
	}
	return DTypeUndefined, fmt.Errorf("unknown dtype %q", s)
}

// Dim is one dimension of a shape: a fixed size, a symbolic name (dim_param, e.g. "batch"), or
// unknown. It marshals to JSON as a number, a string, or null.
type Dim struct {
	// Size is the fixed size, or -1 when the size is symbolic or unknown.
	Size int64
	// Param is the symbolic name when Size is -1; empty when unknown.
	Param string
}

// Known reports whether the dimension has a fixed size.
func (d Dim) Known() bool { return d.Size >= 0 }

// String returns the size, the symbolic name, or "?".
func (d Dim) String() string {
	switch {
	case d.Size >= 0:
		return strconv.FormatInt(d.Size, 10)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// MarshalJSON writes a number, a string or null.
func (d Dim) MarshalJSON() ([]byte, error) {
	switch {
	case d.Size >= 0:
		return []byte(strconv.FormatInt(d.Size, 10)), nil
	case d.Param != "":
		return json.Marshal(d.Param)
	}
	return []byte("null"), nil
}

// UnmarshalJSON reads a number, a string or null.
func (d *Dim) UnmarshalJSON(b []byte) error {
	*d = Dim{Size: -1}
	if string(b) == "null" {
		return nil
	}
	if err := json.Unmarshal(b, &d.Size); err == nil {
		if d.Size < 0 {
			d.Size = -1
		}
		return nil
	}
	d.Size = -1
	return json.Unmarshal(b, &d.Param)
}

// Shape is a tensor shape. A nil Shape means the rank is unknown; a non-nil empty Shape is a
// scalar.
type Shape []Dim

// String formats the shape as "[batch,1,28,28]", or "?" when the rank is unknown.
func (s Shape) String() string {
	if s == nil {
		return "?"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Known reports whether the rank and every dimension are fixed.
func (s Shape) Known() bool {
	if s == nil {
		return false
	}
	for _, d := range s {
		if !d.Known() {
			return false
		}
	}
	return true
}

// Sizes returns the dimensions as int64s, -1 for symbolic or unknown ones; nil for unknown rank.
func (s Shape) Sizes() []int64 {
	if s == nil {
		return nil
	}
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = d.Size
	}
	return out
}

// ShapeOf returns the fixed shape with the given sizes (negative sizes become unknown).
func ShapeOf(sizes ...int64) Shape {
	s := make(Shape, len(sizes))
	for i, n := range sizes {
		if n < 0 {
			n = -1
		}
		s[i] = Dim{Size: n}
	}
	return s
}

// Tensor is a small dense tensor given by value: a new parameter's default ("off") value or a
// constant of a Subgraph. Exactly one data slice matching DType is set; its length is the product
// of Shape.
type Tensor struct {
	// Name is the tensor's name (local to its Subgraph).
	Name string `json:"name"`
	// DType is the element type: float32 or int64.
	DType DType `json:"dtype"`
	// Shape lists the dimensions; empty for a scalar.
	Shape []int64 `json:"shape"`
	// Float32 holds the data of a float32 tensor, row-major.
	Float32 []float32 `json:"float32,omitempty"`
	// Int64 holds the data of an int64 tensor, row-major.
	Int64 []int64 `json:"int64,omitempty"`
}

// Zeros returns a float32 tensor of zeros.
func Zeros(name string, shape ...int64) Tensor {
	return Tensor{Name: name, DType: DTypeFloat32, Shape: shape, Float32: make([]float32, NumElements(shape))}
}

// Scalar returns a float32 scalar tensor.
func Scalar(name string, v float32) Tensor {
	return Tensor{Name: name, DType: DTypeFloat32, Shape: []int64{}, Float32: []float32{v}}
}

// Int64s returns a one-dimensional int64 tensor.
func Int64s(name string, v ...int64) Tensor {
	return Tensor{Name: name, DType: DTypeInt64, Shape: []int64{int64(len(v))}, Int64: v}
}

// NumElements returns the product of dims (1 for a scalar).
func NumElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// Validate checks that the data matches the type and shape: float32 or int64, non-negative
// dimensions, exactly NumElements(Shape) values in the slice of the type and none in the other.
// Errors wrap ErrInvalidTensor.
func (t Tensor) Validate() error {
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("%w: tensor %q: negative dimension in %v", ErrInvalidTensor, t.Name, t.Shape)
		}
	}
	n := NumElements(t.Shape)
	switch t.DType {
	case DTypeFloat32:
		if int64(len(t.Float32)) != n || t.Int64 != nil {
			return fmt.Errorf("%w: tensor %q: shape %v needs %d float32 values, have %d", ErrInvalidTensor, t.Name, t.Shape, n, len(t.Float32))
		}
	case DTypeInt64:
		if int64(len(t.Int64)) != n || t.Float32 != nil {
			return fmt.Errorf("%w: tensor %q: shape %v needs %d int64 values, have %d", ErrInvalidTensor, t.Name, t.Shape, n, len(t.Int64))
		}
	default:
		return fmt.Errorf("%w: tensor %q: dtype %v (float32 and int64 only)", ErrInvalidTensor, t.Name, t.DType)
	}
	return nil
}

// Fill returns a float32 tensor of the given shape with every element set to v.
func Fill(name string, v float32, shape ...int64) Tensor {
	t := Zeros(name, shape...)
	for i := range t.Float32 {
		t.Float32[i] = v
	}
	return t
}

// Ones returns a float32 tensor of ones.
func Ones(name string, shape ...int64) Tensor { return Fill(name, 1, shape...) }

// Clone returns a deep copy of t.
func (t Tensor) Clone() Tensor {
	c := t
	if t.Shape != nil {
		c.Shape = append([]int64{}, t.Shape...)
	}
	if t.Float32 != nil {
		c.Float32 = append([]float32{}, t.Float32...)
	}
	if t.Int64 != nil {
		c.Int64 = append([]int64{}, t.Int64...)
	}
	return c
}
