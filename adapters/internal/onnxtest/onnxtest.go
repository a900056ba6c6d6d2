// Package onnxtest writes small ONNX models for tests: a graph of a few nodes with typed inputs,
// outputs and initializers, encoded directly in the protobuf wire format (onnx.proto field
// numbers), so that tests can build single-operator models in any element type without the
// generated ONNX types, which are internal to package backbone.
package onnxtest

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Element types, numbered as ONNX's TensorProto.DataType.
const (
	Float32 = 1
	Int32   = 6
	Int64   = 7
	Float64 = 11
)

// Model is a single-graph ONNX model.
type Model struct {
	// Opset is the default-domain opset version. Default 14.
	Opset int64
	// Nodes are the graph's nodes, in topological order.
	Nodes []Node
	// Inputs and Outputs are the graph's inputs and outputs.
	Inputs, Outputs []Value
	// Initializers are the graph's constant tensors.
	Initializers []Tensor
}

// Value declares a graph input or output. A negative dimension is dynamic ("N"); nil Dims leave
// the shape undeclared (an empty, non-nil Dims declares a scalar).
type Value struct {
	Name  string
	DType int
	Dims  []int64
}

// Node is one operator application.
type Node struct {
	Op      string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// Attr is a node attribute; set exactly one of the value fields.
type Attr struct {
	Name   string
	Int    *int64
	Float  *float32
	String *string
	Ints   []int64
	Tensor *Tensor
}

// Int returns an int attribute.
func Int(name string, v int64) Attr { return Attr{Name: name, Int: &v} }

// Float returns a float attribute.
func Float(name string, v float32) Attr { return Attr{Name: name, Float: &v} }

// String returns a string attribute.
func String(name, v string) Attr { return Attr{Name: name, String: &v} }

// TensorAttr returns a tensor attribute (a Constant's value).
func TensorAttr(name string, t Tensor) Attr { return Attr{Name: name, Tensor: &t} }

// Ints returns an ints attribute.
func Ints(name string, v ...int64) Attr { return Attr{Name: name, Ints: v} }

// Tensor is an initializer (or a Constant's value). Exactly one data slice is set, matching DType.
type Tensor struct {
	Name    string
	DType   int
	Dims    []int64
	Float32 []float32
	Float64 []float64
	Int64   []int64
}

// Bytes encodes the model (IR version 8).
func (m Model) Bytes() []byte {
	opset := m.Opset
	if opset == 0 {
		opset = 14
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType) // ir_version
	b = protowire.AppendVarint(b, 8)
	b = appendBytes(b, 2, []byte("s3t adapters onnxtest")) // producer_name
	b = appendBytes(b, 7, m.graph())                       // graph
	var os []byte
	os = appendBytes(os, 1, nil) // domain ""
	os = protowire.AppendTag(os, 2, protowire.VarintType)
	os = protowire.AppendVarint(os, uint64(opset))
	b = appendBytes(b, 8, os) // opset_import
	return b
}

func (m Model) graph() []byte {
	var g []byte
	for i, n := range m.Nodes {
		g = appendBytes(g, 1, n.encode(i))
	}
	g = appendBytes(g, 2, []byte("test"))
	for _, t := range m.Initializers {
		g = appendBytes(g, 5, t.encode())
	}
	for _, v := range m.Inputs {
		g = appendBytes(g, 11, v.encode())
	}
	for _, v := range m.Outputs {
		g = appendBytes(g, 12, v.encode())
	}
	return g
}

func (n Node) encode(i int) []byte {
	var b []byte
	for _, in := range n.Inputs {
		b = appendBytes(b, 1, []byte(in))
	}
	for _, out := range n.Outputs {
		b = appendBytes(b, 2, []byte(out))
	}
	b = appendBytes(b, 3, []byte(n.Op+"_"+itoa(i)))
	b = appendBytes(b, 4, []byte(n.Op))
	for _, a := range n.Attrs {
		b = appendBytes(b, 5, a.encode())
	}
	return b
}

func (a Attr) encode() []byte {
	var b []byte
	b = appendBytes(b, 1, []byte(a.Name))
	var typ uint64
	switch {
	case a.Float != nil:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(*a.Float))
		typ = 1
	case a.Int != nil:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(*a.Int))
		typ = 2
	case a.String != nil:
		b = appendBytes(b, 4, []byte(*a.String))
		typ = 3
	case a.Tensor != nil:
		b = appendBytes(b, 5, a.Tensor.encode())
		typ = 4
	default:
		for _, v := range a.Ints {
			b = protowire.AppendTag(b, 8, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
		typ = 7
	}
	b = protowire.AppendTag(b, 20, protowire.VarintType)
	return protowire.AppendVarint(b, typ)
}

func (t Tensor) encode() []byte {
	var b []byte
	for _, d := range t.Dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(t.DType))
	b = appendBytes(b, 8, []byte(t.Name))
	var raw []byte
	switch t.DType {
	case Float32:
		for _, v := range t.Float32 {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	case Float64:
		for _, v := range t.Float64 {
			raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(v))
		}
	case Int64:
		for _, v := range t.Int64 {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
		}
	}
	return appendBytes(b, 9, raw)
}

func (v Value) encode() []byte {
	var shape []byte
	for _, d := range v.Dims {
		var dim []byte
		if d < 0 {
			dim = appendBytes(dim, 2, []byte("N"))
		} else {
			dim = protowire.AppendTag(dim, 1, protowire.VarintType)
			dim = protowire.AppendVarint(dim, uint64(d))
		}
		shape = appendBytes(shape, 1, dim)
	}
	var tt []byte
	tt = protowire.AppendTag(tt, 1, protowire.VarintType)
	tt = protowire.AppendVarint(tt, uint64(v.DType))
	if v.Dims != nil {
		tt = appendBytes(tt, 2, shape)
	}
	var typ []byte
	typ = appendBytes(typ, 1, tt)
	var b []byte
	b = appendBytes(b, 1, []byte(v.Name))
	return appendBytes(b, 2, typ)
}

func appendBytes(b []byte, field protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}
