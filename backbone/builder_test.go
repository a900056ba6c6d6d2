package backbone

import (
	"fmt"
	"testing"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

// graphBuilder assembles small ONNX graphs for tests.
type graphBuilder struct {
	g     *onnxpb.GraphProto
	opset int64
	ir    int64
	seed  float32
}

func newBuilder() *graphBuilder {
	return &graphBuilder{g: &onnxpb.GraphProto{Name: proto.String("test")}, opset: 14, ir: 7}
}

// input adds a float32 graph input; a negative dimension is the symbolic "batch".
func (b *graphBuilder) input(name string, dims ...int64) *graphBuilder {
	b.g.Input = append(b.g.Input, valueInfoProto(name, DTypeFloat32, batchShape(dims)))
	return b
}

// output adds a float32 graph output.
func (b *graphBuilder) output(name string, dims ...int64) *graphBuilder {
	b.g.Output = append(b.g.Output, valueInfoProto(name, DTypeFloat32, batchShape(dims)))
	return b
}

func batchShape(dims []int64) Shape {
	s := ShapeOf(dims...)
	for i := range s {
		if dims[i] < 0 {
			s[i].Param = "batch"
		}
	}
	return s
}

// init adds a float32 initializer with small deterministic values.
func (b *graphBuilder) init(name string, dims ...int64) *graphBuilder {
	t := Tensor{DType: DTypeFloat32, Shape: dims, Float32: make([]float32, numElements(dims))}
	for i := range t.Float32 {
		b.seed++
		t.Float32[i] = float32(int(b.seed*7919)%97-48) / 100
	}
	b.g.Initializer = append(b.g.Initializer, tensorProto(t, name))
	return b
}

// ints adds an int64 initializer.
func (b *graphBuilder) ints(name string, v ...int64) *graphBuilder {
	b.g.Initializer = append(b.g.Initializer, tensorProto(Int64s(name, v...), name))
	return b
}

// node adds a node; attrs alternate name and value (int, []int64, float32 or Tensor).
func (b *graphBuilder) node(op, name string, ins, outs []string, attrs ...any) *graphBuilder {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: ins, Output: outs}
	for i := 0; i < len(attrs); i += 2 {
		a := Attr{Name: attrs[i].(string)}
		switch v := attrs[i+1].(type) {
		case int:
			x := int64(v)
			a.Int = &x
		case []int64:
			a.Ints = v
		case float32:
			a.Float = &v
		case Tensor:
			a.Tensor = &v
		default:
			panic(fmt.Sprintf("attr %T", v))
		}
		ap, err := attrProto(a)
		if err != nil {
			panic(err)
		}
		n.Attribute = append(n.Attribute, ap)
	}
	b.g.Node = append(b.g.Node, n)
	return b
}

func (b *graphBuilder) proto() *onnxpb.ModelProto {
	return &onnxpb.ModelProto{
		IrVersion:    proto.Int64(b.ir),
		ProducerName: proto.String("s3t-test"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(b.opset)}},
		Graph:        b.g,
	}
}

func (b *graphBuilder) bytes(t testing.TB) []byte {
	t.Helper()
	data, err := proto.Marshal(b.proto())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// model serialises and loads the graph, so tests see what LoadBytes produces.
func (b *graphBuilder) model(t testing.TB) *Model {
	t.Helper()
	m, err := LoadBytes(b.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// linear adds y = x·W + bias with torch 1.13's naming: the weight constant-folded, transposed
// and renamed ("onnx::MatMul_N"), the bias named after its module, nodes named by scope.
func (b *graphBuilder) linear(module, x, y string, in, out int64, scoped bool) *graphBuilder {
	w := fmt.Sprintf("onnx::MatMul_%d", len(b.g.Initializer))
	b.init(w, in, out).init(module+".bias", out)
	scope := "/" + dotsToScope(module)
	mm, add := scope+"/MatMul", scope+"/Add"
	if !scoped {
		mm, add = "", ""
	}
	return b.node("MatMul", mm, []string{x, w}, []string{y + "_mm"}).
		node("Add", add, []string{module + ".bias", y + "_mm"}, []string{y})
}

// dotsToScope turns "encoder.layer.3.attention.self.query" into torch's scope path
// "encoder/layer.3/attention/self/query".
func dotsToScope(module string) string {
	var out []byte
	for i := 0; i < len(module); i++ {
		c := module[i]
		if c == '.' && !(i+1 < len(module) && module[i+1] >= '0' && module[i+1] <= '9') {
			c = '/'
		}
		out = append(out, c)
	}
	return string(out)
}

// bertLike builds an n-layer encoder with Hugging Face BERT naming (encoder.layer.N...), width d,
// sequence length 4: attention with a softmax, an MLP, residual adds.
func bertLike(n int, d int64, scoped bool) *graphBuilder {
	b := newBuilder().input("x", -1, 4, d)
	x := "x"
	for i := range n {
		p := fmt.Sprintf("encoder.layer.%d", i)
		v := func(s string) string { return fmt.Sprintf("%s/%s", p, s) }
		sc := func(s string) string {
			if !scoped {
				return ""
			}
			return "/" + dotsToScope(p) + "/" + s
		}
		b.linear(p+".attention.self.query", x, v("q"), d, d, scoped).
			linear(p+".attention.self.key", x, v("k"), d, d, scoped).
			linear(p+".attention.self.value", x, v("v"), d, d, scoped).
			node("Transpose", sc("attention/self/Transpose"), []string{v("k")}, []string{v("kT")}, "perm", []int64{0, 2, 1}).
			node("MatMul", sc("attention/self/MatMul"), []string{v("q"), v("kT")}, []string{v("scores")}).
			node("Softmax", sc("attention/self/Softmax"), []string{v("scores")}, []string{v("probs")}, "axis", -1).
			node("MatMul", sc("attention/self/MatMul_1"), []string{v("probs"), v("v")}, []string{v("ctx")}).
			linear(p+".attention.output.dense", v("ctx"), v("attn"), d, d, scoped).
			node("Add", sc("Add"), []string{x, v("attn")}, []string{v("h")}).
			linear(p+".intermediate.dense", v("h"), v("up"), d, 2*d, scoped).
			node("Relu", sc("Relu"), []string{v("up")}, []string{v("act")}).
			linear(p+".output.dense", v("act"), v("down"), 2*d, d, scoped).
			node("Add", sc("Add_1"), []string{v("h"), v("down")}, []string{v("out")})
		x = v("out")
	}
	b.init("pooler.dense.weight", d, 3).node("MatMul", "/pooler/MatMul", []string{x, "pooler.dense.weight"}, []string{"logits"}).
		output("logits", -1, 4, 3)
	return b
}
