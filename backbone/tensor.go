package backbone

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

func numElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// tensorProto converts t to a TensorProto with raw little-endian data, named name.
func tensorProto(t Tensor, name string) *onnxpb.TensorProto {
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
	return t, t.Validate()
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
