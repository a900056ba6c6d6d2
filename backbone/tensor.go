package backbone

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

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
	return Tensor{Name: name, DType: DTypeFloat32, Shape: shape, Float32: make([]float32, numElements(shape))}
}

// Scalar returns a float32 scalar tensor.
func Scalar(name string, v float32) Tensor {
	return Tensor{Name: name, DType: DTypeFloat32, Shape: []int64{}, Float32: []float32{v}}
}

// Int64s returns a one-dimensional int64 tensor.
func Int64s(name string, v ...int64) Tensor {
	return Tensor{Name: name, DType: DTypeInt64, Shape: []int64{int64(len(v))}, Int64: v}
}

func numElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// check verifies that the data matches the type and shape.
func (t Tensor) check() error {
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dimension in %v", t.Name, t.Shape)
		}
	}
	n := numElements(t.Shape)
	switch t.DType {
	case DTypeFloat32:
		if int64(len(t.Float32)) != n || t.Int64 != nil {
			return fmt.Errorf("tensor %q: shape %v needs %d float32 values, have %d", t.Name, t.Shape, n, len(t.Float32))
		}
	case DTypeInt64:
		if int64(len(t.Int64)) != n || t.Float32 != nil {
			return fmt.Errorf("tensor %q: shape %v needs %d int64 values, have %d", t.Name, t.Shape, n, len(t.Int64))
		}
	default:
		return fmt.Errorf("tensor %q: dtype %v: %w (float32 and int64 only)", t.Name, t.DType, ErrUnsupported)
	}
	return nil
}

// proto converts t to a TensorProto with raw little-endian data, named name.
func (t Tensor) proto(name string) *onnxpb.TensorProto {
	var raw []byte
	switch t.DType {
	case DTypeFloat32:
		raw = make([]byte, 4*len(t.Float32))
		for i, v := range t.Float32 {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
	case DTypeInt64:
		raw = make([]byte, 8*len(t.Int64))
		for i, v := range t.Int64 {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
	}
	return &onnxpb.TensorProto{
		Name:     proto.String(name),
		DataType: proto.Int32(int32(t.DType)),
		Dims:     append([]int64{}, t.Shape...),
		RawData:  raw,
	}
}

// tensorFromProto converts a float32 or int64 TensorProto (raw or typed data) to a Tensor.
func tensorFromProto(tp *onnxpb.TensorProto) (Tensor, error) {
	t := Tensor{Name: tp.GetName(), DType: DType(tp.GetDataType()), Shape: append([]int64{}, tp.GetDims()...)}
	raw, err := rawData(tp)
	if err != nil {
		return t, err
	}
	switch t.DType {
	case DTypeFloat32:
		t.Float32 = make([]float32, len(raw)/4)
		for i := range t.Float32 {
			t.Float32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case DTypeInt64:
		t.Int64 = make([]int64, len(raw)/8)
		for i := range t.Int64 {
			t.Int64[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	default:
		return t, fmt.Errorf("tensor %q: dtype %v: %w", t.Name, t.DType, ErrUnsupported)
	}
	return t, t.check()
}

// rawData returns the tensor's data as little-endian bytes, whichever field holds it. The result
// may alias tp.RawData; do not modify it.
func rawData(tp *onnxpb.TensorProto) ([]byte, error) {
	dt := DType(tp.GetDataType())
	if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("tensor %q: data not loaded: %w", tp.GetName(), ErrExternalData)
	}
	size := dt.Size()
	if size == 0 {
		return nil, fmt.Errorf("tensor %q: dtype %v: %w", tp.GetName(), dt, ErrUnsupported)
	}
	n := numElements(tp.GetDims())
	if tp.RawData != nil {
		if int64(len(tp.RawData)) != n*int64(size) {
			return nil, fmt.Errorf("tensor %q: %d bytes of data for shape %v of %v: %w",
				tp.GetName(), len(tp.RawData), tp.GetDims(), dt, ErrInvalidGraph)
		}
		return tp.RawData, nil
	}
	out := make([]byte, 0, n*int64(size))
	switch dt {
	case DTypeFloat32, DTypeComplex64:
		for _, v := range tp.GetFloatData() {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	case DTypeFloat64, DTypeComplex128:
		for _, v := range tp.GetDoubleData() {
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(v))
		}
	case DTypeInt64:
		for _, v := range tp.GetInt64Data() {
			out = binary.LittleEndian.AppendUint64(out, uint64(v))
		}
	case DTypeUint32, DTypeUint64:
		for _, v := range tp.GetUint64Data() {
			if dt == DTypeUint32 {
				out = binary.LittleEndian.AppendUint32(out, uint32(v))
			} else {
				out = binary.LittleEndian.AppendUint64(out, v)
			}
		}
	default: // int32_data carries int32 and every type of 16 bits or less
		for _, v := range tp.GetInt32Data() {
			switch size {
			case 1:
				out = append(out, byte(v))
			case 2:
				out = binary.LittleEndian.AppendUint16(out, uint16(v))
			default:
				out = binary.LittleEndian.AppendUint32(out, uint32(v))
			}
		}
	}
	if int64(len(out)) != n*int64(size) {
		return nil, fmt.Errorf("tensor %q: %d bytes of data for shape %v of %v: %w",
			tp.GetName(), len(out), tp.GetDims(), dt, ErrInvalidGraph)
	}
	return out, nil
}

// sliceTensor returns tp[start:end] along axis as a new raw-data tensor named name.
func sliceTensor(tp *onnxpb.TensorProto, name string, axis int, start, end int64) (*onnxpb.TensorProto, error) {
	raw, err := rawData(tp)
	if err != nil {
		return nil, err
	}
	dims := tp.GetDims()
	if axis < 0 || axis >= len(dims) || start < 0 || end > dims[axis] || start >= end {
		return nil, fmt.Errorf("slice %d:%d on axis %d of %q with shape %v: out of range", start, end, axis, tp.GetName(), dims)
	}
	size := int64(DType(tp.GetDataType()).Size())
	inner := size
	for _, d := range dims[axis+1:] {
		inner *= d
	}
	outer := numElements(dims[:axis])
	out := make([]byte, 0, outer*(end-start)*inner)
	for o := int64(0); o < outer; o++ {
		base := o * dims[axis] * inner
		out = append(out, raw[base+start*inner:base+end*inner]...)
	}
	nd := append([]int64{}, dims...)
	nd[axis] = end - start
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(tp.GetDataType()), Dims: nd, RawData: out}, nil
}

// tensorBytes returns the size of the tensor's data in bytes (strings count their lengths).
func tensorBytes(tp *onnxpb.TensorProto) int64 {
	if tp.RawData != nil {
		return int64(len(tp.RawData))
	}
	dt := DType(tp.GetDataType())
	if dt == DTypeString {
		var n int64
		for _, s := range tp.GetStringData() {
			n += int64(len(s))
		}
		return n
	}
	if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		for _, e := range tp.GetExternalData() {
			if e.GetKey() == "length" {
				n, _ := strconv.ParseInt(e.GetValue(), 10, 64)
				return n
			}
		}
	}
	return numElements(tp.GetDims()) * int64(dt.Size())
}
