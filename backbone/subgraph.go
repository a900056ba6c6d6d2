package backbone

import (
	"fmt"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

// attrProto converts a to an AttributeProto.
func attrProto(a Attr) (*onnxpb.AttributeProto, error) {
	p := &onnxpb.AttributeProto{Name: proto.String(a.Name)}
	set := 0
	if a.Int != nil {
		set++
		p.I, p.Type = proto.Int64(*a.Int), onnxpb.AttributeProto_INT.Enum()
	}
	if a.Float != nil {
		set++
		p.F, p.Type = proto.Float32(*a.Float), onnxpb.AttributeProto_FLOAT.Enum()
	}
	if a.String != nil {
		set++
		p.S, p.Type = []byte(*a.String), onnxpb.AttributeProto_STRING.Enum()
	}
	if a.Ints != nil {
		set++
		p.Ints, p.Type = a.Ints, onnxpb.AttributeProto_INTS.Enum()
	}
	if a.Floats != nil {
		set++
		p.Floats, p.Type = a.Floats, onnxpb.AttributeProto_FLOATS.Enum()
	}
	if a.Tensor != nil {
		set++
		if err := a.Tensor.Validate(); err != nil {
			return nil, err
		}
		p.T, p.Type = tensorProto(*a.Tensor, a.Tensor.Name), onnxpb.AttributeProto_TENSOR.Enum()
	}
	if a.Name == "" || set != 1 {
		return nil, fmt.Errorf("attribute %q: %w: needs a name and exactly one value (has %d)", a.Name, ErrInvalidGraph, set)
	}
	return p, nil
}
