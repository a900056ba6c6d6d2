package ort

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Info describes one input or output of a model.
type Info struct {
	// Name is the tensor's name in the graph.
	Name string `json:"name"`
	// DType is the element type; Undefined when the value is not a tensor (a sequence, a map).
	DType DType `json:"dtype"`
	// Shape holds one entry per dimension: its fixed size, or -1 where the dimension is dynamic.
	// It is nil when the model declares no shape (any rank will do); a scalar has an empty,
	// non-nil Shape.
	Shape []int64 `json:"shape"`
	// DimNames holds the symbolic name of each dimension ("batch") or "" (same length as Shape).
	DimNames []string `json:"dim_names,omitempty"`
	// Optional marks an input with a default value in the model (an initializer that callers may
	// override, as spliced PEFT parameters are). A session feeds it only when created
	// WithOptionalInputs naming it.
	Optional bool `json:"optional,omitempty"`
}

// String formats i as `pixel_values float32[batch,1,28,28]`: "?" marks a dynamic dimension
// without a name, "[...]" a shape the model does not declare.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Name)
	b.WriteByte(' ')
	b.WriteString(i.DType.String())
	if i.Shape == nil {
		b.WriteString("[...]")
	} else {
		b.WriteByte('[')
		for k, d := range i.Shape {
			if k > 0 {
				b.WriteByte(',')
			}
			switch {
			case d >= 0:
				fmt.Fprint(&b, d)
			case k < len(i.DimNames) && i.DimNames[k] != "":
				b.WriteString(i.DimNames[k])
			default:
				b.WriteByte('?')
			}
		}
		b.WriteByte(']')
	}
	if i.Optional {
		b.WriteString(" (optional)")
	}
	return b.String()
}

// ModelInfo is what Describe reads from an ONNX model without running it.
type ModelInfo struct {
	// IRVersion is the ONNX IR version of the file.
	IRVersion int64 `json:"ir_version"`
	// Producer is the producer_name field (e.g. "pytorch").
	Producer string `json:"producer,omitempty"`
	// Opsets maps each operator-set domain ("" for the default ONNX domain) to its version.
	Opsets map[string]int64 `json:"opsets"`
	// Inputs lists the graph inputs in graph order, initializers excluded unless they can be
	// overridden (then they are marked Optional).
	Inputs []Info `json:"inputs"`
	// Outputs lists the graph outputs in graph order.
	Outputs []Info `json:"outputs"`
}

// Describe reads the inputs, outputs, IR version and opsets of an ONNX model (a serialized
// ModelProto) without loading it into ONNX Runtime. Bytes that do not parse as a model with a
// graph give an error wrapping ErrInvalidModel. It agrees with ONNX Runtime's own view: inputs
// exclude initializers, and initializers also listed as inputs are Optional from IR version 4 on
// (before that ONNX Runtime treats them as constants, and so does Describe).
func Describe(model []byte) (*ModelInfo, error) {
	m, err := parseModel(model)
	if err != nil {
		return nil, fmt.Errorf("describe model: %w: %w", ErrInvalidModel, err)
	}
	return m, nil
}

// ONNX protobuf field numbers (onnx/onnx.proto).
const (
	modelIRVersion    = 1
	modelProducerName = 2
	modelGraph        = 7
	modelOpsetImport  = 8

	opsetDomain  = 1
	opsetVersion = 2

	graphInitializer       = 5
	graphInput             = 11
	graphOutput            = 12
	graphSparseInitializer = 15

	tensorName         = 8
	sparseValues       = 1
	valueInfoName      = 1
	valueInfoType      = 2
	typeTensor         = 1
	typeSparseTensor   = 8
	tensorTypeElem     = 1
	tensorTypeShape    = 2
	shapeDim           = 1
	dimValue           = 1
	dimParam           = 2
	firstOverridableIR = 4
)

// field is one protobuf field: its number, wire type and value (x for numbers, v for bytes).
type field struct {
	num protowire.Number
	typ protowire.Type
	x   uint64
	v   []byte
}

// walk calls fn for every top-level field of the protobuf message b.
func walk(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var y uint32
			y, n = protowire.ConsumeFixed32(b)
			f.x = uint64(y)
		case protowire.Fixed64Type:
			f.x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// want checks a known field's wire type.
func (f field) want(t protowire.Type) error {
	if f.typ != t {
		return fmt.Errorf("field %d has wire type %d, want %d", f.num, f.typ, t)
	}
	return nil
}

func parseModel(b []byte) (*ModelInfo, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty model")
	}
	m := &ModelInfo{Opsets: map[string]int64{}}
	// A message field that occurs several times is merged; for the fields read here that is
	// the same as parsing the concatenation of the occurrences.
	var graph []byte
	hasGraph := false
	err := walk(b, func(f field) error {
		switch f.num {
		case modelIRVersion:
			if err := f.want(protowire.VarintType); err != nil {
				return err
			}
			m.IRVersion = int64(f.x)
		case modelProducerName:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			m.Producer = string(f.v)
		case modelGraph:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			graph = append(graph, f.v...)
			hasGraph = true
		case modelOpsetImport:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			domain, version, err := parseOpset(f.v)
			if err != nil {
				return fmt.Errorf("opset_import: %w", err)
			}
			m.Opsets[domain] = version
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !hasGraph {
		return nil, fmt.Errorf("no graph")
	}
	if err := parseGraph(graph, m); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	if len(m.Outputs) == 0 {
		return nil, fmt.Errorf("graph has no outputs")
	}
	return m, nil
}

func parseOpset(b []byte) (string, int64, error) {
	var domain string
	var version int64
	err := walk(b, func(f field) error {
		switch f.num {
		case opsetDomain:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			domain = string(f.v)
		case opsetVersion:
			if err := f.want(protowire.VarintType); err != nil {
				return err
			}
			version = int64(f.x)
		}
		return nil
	})
	return domain, version, err
}

func parseGraph(b []byte, m *ModelInfo) error {
	initializers := map[string]bool{}
	var inputs, outputs []Info
	err := walk(b, func(f field) error {
		switch f.num {
		case graphInitializer, graphSparseInitializer:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			name, err := initializerName(f.v, f.num == graphSparseInitializer)
			if err != nil {
				return fmt.Errorf("initializer: %w", err)
			}
			initializers[name] = true
		case graphInput, graphOutput:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			info, err := parseValueInfo(f.v)
			if err != nil {
				return fmt.Errorf("value info: %w", err)
			}
			if f.num == graphInput {
				inputs = append(inputs, info)
			} else {
				outputs = append(outputs, info)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, in := range inputs {
		if initializers[in.Name] {
			if m.IRVersion < firstOverridableIR {
				continue
			}
			in.Optional = true
		}
		m.Inputs = append(m.Inputs, in)
	}
	m.Outputs = outputs
	return nil
}

// initializerName reads the name of a TensorProto, or of a SparseTensorProto's values.
func initializerName(b []byte, sparse bool) (string, error) {
	if sparse {
		var values []byte
		err := walk(b, func(f field) error {
			if f.num == sparseValues && f.typ == protowire.BytesType {
				values = append(values, f.v...)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		b = values
	}
	var name string
	err := walk(b, func(f field) error {
		if f.num == tensorName {
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			name = string(f.v)
		}
		return nil
	})
	return name, err
}

func parseValueInfo(b []byte) (Info, error) {
	var info Info
	var typ []byte
	err := walk(b, func(f field) error {
		switch f.num {
		case valueInfoName:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			info.Name = string(f.v)
		case valueInfoType:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			typ = append(typ, f.v...)
		}
		return nil
	})
	if err != nil {
		return info, err
	}
	// TypeProto: only (sparse) tensors have an element type and a shape.
	var tensor []byte
	err = walk(typ, func(f field) error {
		if (f.num == typeTensor || f.num == typeSparseTensor) && f.typ == protowire.BytesType {
			tensor = append(tensor, f.v...)
		}
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("%q: type: %w", info.Name, err)
	}
	var shape []byte
	hasShape := false
	err = walk(tensor, func(f field) error {
		switch f.num {
		case tensorTypeElem:
			if err := f.want(protowire.VarintType); err != nil {
				return err
			}
			info.DType = DType(int32(f.x))
		case tensorTypeShape:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			shape = append(shape, f.v...)
			hasShape = true
		}
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("%q: tensor type: %w", info.Name, err)
	}
	if !hasShape {
		return info, nil
	}
	info.Shape, info.DimNames = []int64{}, []string{}
	err = walk(shape, func(f field) error {
		if f.num != shapeDim {
			return nil
		}
		if err := f.want(protowire.BytesType); err != nil {
			return err
		}
		size, name := int64(-1), ""
		err := walk(f.v, func(d field) error {
			switch d.num {
			case dimValue:
				if err := d.want(protowire.VarintType); err != nil {
					return err
				}
				size, name = int64(d.x), ""
				if size < 0 {
					size = -1
				}
			case dimParam:
				if err := d.want(protowire.BytesType); err != nil {
					return err
				}
				size, name = -1, string(d.v)
			}
			return nil
		})
		info.Shape = append(info.Shape, size)
		info.DimNames = append(info.DimNames, name)
		return err
	})
	if err != nil {
		return info, fmt.Errorf("%q: shape: %w", info.Name, err)
	}
	return info, nil
}

// clone returns a deep copy of i.
func (i Info) clone() Info {
	i.Shape = slices.Clone(i.Shape)
	i.DimNames = slices.Clone(i.DimNames)
	return i
}

func cloneInfos(infos []Info) []Info {
	out := make([]Info, len(infos))
	for k, in := range infos {
		out[k] = in.clone()
	}
	return out
}
