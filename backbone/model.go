package backbone

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

// The range of default-domain ("" or "ai.onnx") opset versions this package accepts. Opset 7 is
// the oldest that ONNX Runtime runs and the first with numpy-style broadcasting, which the
// rewrites rely on; opset 21 is the newest whose operators the rewrites and the inspection were
// checked against (ONNX Runtime 1.30 runs it). Other domains are listed but not checked.
const (
	MinOpset = 7
	MaxOpset = 21
)

// Model is a loaded ONNX model. It is immutable: rewrites return a new Model, which may share
// tensor data with the original. A Model is safe for concurrent reads.
type Model struct {
	pb *onnxpb.ModelProto
}

// LoadOption configures LoadBytes.
type LoadOption func(*loadConfig)

type loadConfig struct {
	dir string
}

// WithExternalDataDir resolves tensors stored outside the model (data_location EXTERNAL) against
// dir. Without it, LoadBytes rejects a model with external data.
func WithExternalDataDir(dir string) LoadOption {
	return func(c *loadConfig) { c.dir = dir }
}

// LoadFile reads an ONNX model from path. Tensors with external data are read from files
// relative to the model's directory and kept in memory, so the returned model is self-contained.
func LoadFile(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	m, err := LoadBytes(data, WithExternalDataDir(filepath.Dir(path)))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, nil
}

// LoadBytes parses an ONNX model. It checks that the bytes are a model with a graph and a
// supported default-domain opset (MinOpset..MaxOpset), and loads external tensor data when a
// directory is given with WithExternalDataDir.
func LoadBytes(data []byte, opts ...LoadOption) (*Model, error) {
	var cfg loadConfig
	for _, o := range opts {
		o(&cfg)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrNotONNX)
	}
	pb := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, pb); err != nil {
		return nil, fmt.Errorf("%w (truncated or corrupt?): %w", ErrNotONNX, err)
	}
	if pb.IrVersion == nil || pb.GetIrVersion() <= 0 {
		return nil, fmt.Errorf("%w: no ir_version field", ErrNotONNX)
	}
	if pb.Graph == nil {
		return nil, ErrNoGraph
	}
	m := &Model{pb: pb}
	if _, err := m.checkOpset(); err != nil {
		return nil, err
	}
	if err := loadExternal(pb.Graph, cfg.dir); err != nil {
		return nil, err
	}
	nameNodes(pb.Graph)
	return m, nil
}

// nameNodes gives every node of g a unique name, so that edges can name their consumers: an
// unnamed node gets its op type and position ("Conv_12"), a repeated name a numeric suffix.
func nameNodes(g *onnxpb.GraphProto) {
	used := map[string]bool{}
	for _, n := range g.GetNode() {
		used[n.GetName()] = true
	}
	seen := map[string]bool{}
	for i, n := range g.GetNode() {
		name := n.GetName()
		if name != "" && !seen[name] {
			seen[name] = true
			continue
		}
		base := name
		if base == "" {
			base = n.GetOpType() + "_" + strconv.Itoa(i)
		}
		cand := base
		for k := 1; used[cand] || seen[cand]; k++ {
			cand = base + "_" + strconv.Itoa(k)
		}
		n.Name = proto.String(cand)
		used[cand], seen[cand] = true, true
	}
}

// Opset returns the model's default-domain opset version.
func (m *Model) Opset() int64 {
	v, _ := m.checkOpset()
	return v
}

func (m *Model) checkOpset() (int64, error) {
	found := false
	var v int64
	for _, o := range m.pb.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			found, v = true, o.GetVersion()
		}
	}
	if !found {
		return 0, fmt.Errorf("%w: no default-domain opset import (supported: %d..%d; truncated file?)",
			ErrUnsupportedOpset, MinOpset, MaxOpset)
	}
	if v < MinOpset || v > MaxOpset {
		return v, fmt.Errorf("%w: default-domain opset %d (supported: %d..%d)", ErrUnsupportedOpset, v, MinOpset, MaxOpset)
	}
	return v, nil
}

// Bytes serialises the model (protobuf, all tensor data inline).
func (m *Model) Bytes() ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.pb)
	if err != nil {
		return nil, fmt.Errorf("serialise model: %w", err)
	}
	return b, nil
}

// WriteFile serialises the model to path, atomically (write to a temporary file, then rename),
// readable by all (0644, as os.WriteFile makes files under the usual umask; the temporary file
// was 0600, and so was every model written).
func (m *Model) WriteFile(path string) error {
	b, err := m.Bytes()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write model: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write model: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	return nil
}

// Inputs returns the graph inputs that callers feed: graph inputs without a default initializer.
func (m *Model) Inputs() []ValueInfo { return m.valueInfos(m.pb.Graph.GetInput(), true) }

// Params returns the graph inputs that have a default initializer (overridable initializers,
// such as spliced PEFT parameters): a caller may feed them or leave the default.
func (m *Model) Params() []ValueInfo {
	all := m.valueInfos(m.pb.Graph.GetInput(), false)
	init := initializerSet(m.pb.Graph)
	var out []ValueInfo
	for _, v := range all {
		if init[v.Name] {
			out = append(out, v)
		}
	}
	return out
}

// Outputs returns the graph outputs.
func (m *Model) Outputs() []ValueInfo { return m.valueInfos(m.pb.Graph.GetOutput(), false) }

func (m *Model) valueInfos(vis []*onnxpb.ValueInfoProto, skipInit bool) []ValueInfo {
	init := initializerSet(m.pb.Graph)
	out := make([]ValueInfo, 0, len(vis))
	for _, vi := range vis {
		if skipInit && init[vi.GetName()] {
			continue
		}
		out = append(out, valueInfoFromProto(vi))
	}
	return out
}

// Initializer returns a float32 or int64 initializer by name, decoded.
func (m *Model) Initializer(name string) (Tensor, error) {
	for _, t := range m.pb.Graph.GetInitializer() {
		if t.GetName() == name {
			return tensorFromProto(t)
		}
	}
	return Tensor{}, fmt.Errorf("initializer %q: %w", name, ErrNoSuchTensor)
}

// ValueInfo describes a named tensor: its element type and shape, as far as they are known.
type ValueInfo struct {
	// Name is the tensor's name in the graph.
	Name string `json:"name"`
	// DType is the element type; DTypeUndefined when unknown.
	DType DType `json:"dtype"`
	// Shape is the shape; nil when the rank is unknown.
	Shape Shape `json:"shape"`
}

func valueInfoFromProto(vi *onnxpb.ValueInfoProto) ValueInfo {
	out := ValueInfo{Name: vi.GetName()}
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return out
	}
	out.DType = DType(tt.GetElemType())
	out.Shape = shapeFromProto(tt.GetShape())
	return out
}

func shapeFromProto(sp *onnxpb.TensorShapeProto) Shape {
	if sp == nil {
		return nil
	}
	s := make(Shape, len(sp.GetDim()))
	for i, d := range sp.GetDim() {
		s[i] = Dim{Size: -1}
		switch v := d.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			s[i].Size = v.DimValue
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			s[i].Param = v.DimParam
		}
	}
	return s
}

func valueInfoProto(name string, dt DType, s Shape) *onnxpb.ValueInfoProto {
	tt := &onnxpb.TypeProto_Tensor{}
	if dt != DTypeUndefined {
		tt.ElemType = proto.Int32(int32(dt))
	}
	if s != nil {
		sp := &onnxpb.TensorShapeProto{Dim: make([]*onnxpb.TensorShapeProto_Dimension, len(s))}
		for i, d := range s {
			dim := &onnxpb.TensorShapeProto_Dimension{}
			switch {
			case d.Size >= 0:
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Size}
			case d.Param != "":
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
			}
			sp.Dim[i] = dim
		}
		tt.Shape = sp
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}},
	}
}

func initializerSet(g *onnxpb.GraphProto) map[string]bool {
	s := make(map[string]bool, len(g.GetInitializer()))
	for _, t := range g.GetInitializer() {
		s[t.GetName()] = true
	}
	return s
}

// loadExternal reads every EXTERNAL tensor of g (initializers and tensors in node attributes,
// subgraphs included) from files under dir into RawData.
func loadExternal(g *onnxpb.GraphProto, dir string) error {
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var load func(t *onnxpb.TensorProto) error
	load = func(t *onnxpb.TensorProto) error {
		if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return nil
		}
		var loc string
		var off, length int64 = 0, -1
		for _, e := range t.GetExternalData() {
			var err error
			switch e.GetKey() {
			case "location":
				loc = e.GetValue()
			case "offset":
				off, err = strconv.ParseInt(e.GetValue(), 10, 64)
			case "length":
				length, err = strconv.ParseInt(e.GetValue(), 10, 64)
			}
			if err != nil {
				return fmt.Errorf("tensor %q: %s=%q: %w", t.GetName(), e.GetKey(), e.GetValue(), ErrExternalData)
			}
		}
		if dir == "" {
			return fmt.Errorf("tensor %q is stored in %q, but no directory was given to resolve it: %w",
				t.GetName(), loc, ErrExternalData)
		}
		if loc == "" || !filepath.IsLocal(loc) {
			return fmt.Errorf("tensor %q: location %q must be a relative path inside the model's directory: %w",
				t.GetName(), loc, ErrExternalData)
		}
		f, ok := files[loc]
		if !ok {
			var err error
			if f, err = os.Open(filepath.Join(dir, loc)); err != nil {
				return fmt.Errorf("tensor %q: %w: %w", t.GetName(), ErrExternalData, err)
			}
			files[loc] = f
		}
		want := numElements(t.GetDims()) * int64(DType(t.GetDataType()).Size())
		if length < 0 {
			length = want
		}
		if length != want && DType(t.GetDataType()).Size() > 0 {
			return fmt.Errorf("tensor %q: %d bytes in %q for shape %v: %w", t.GetName(), length, loc, t.GetDims(), ErrExternalData)
		}
		buf := make([]byte, length)
		if _, err := f.ReadAt(buf, off); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("tensor %q: read %d bytes at %d of %q: %w: %w", t.GetName(), length, off, loc, ErrExternalData, err)
		}
		t.RawData = buf
		t.ExternalData = nil
		t.DataLocation = nil
		return nil
	}
	return walkTensors(g, load)
}

// walkTensors calls fn for every tensor stored in g: initializers, sparse initializers' values
// and indices, and tensor attributes of nodes, recursing into subgraphs.
func walkTensors(g *onnxpb.GraphProto, fn func(*onnxpb.TensorProto) error) error {
	for _, t := range g.GetInitializer() {
		if err := fn(t); err != nil {
			return err
		}
	}
	for _, st := range g.GetSparseInitializer() {
		for _, t := range []*onnxpb.TensorProto{st.GetValues(), st.GetIndices()} {
			if t != nil {
				if err := fn(t); err != nil {
					return err
				}
			}
		}
	}
	for _, n := range g.GetNode() {
		for _, a := range n.GetAttribute() {
			if t := a.GetT(); t != nil {
				if err := fn(t); err != nil {
					return err
				}
			}
			for _, t := range a.GetTensors() {
				if err := fn(t); err != nil {
					return err
				}
			}
			for _, sg := range append([]*onnxpb.GraphProto{a.GetG()}, a.GetGraphs()...) {
				if sg != nil {
					if err := walkTensors(sg, fn); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
