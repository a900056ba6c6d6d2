package backbone

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

// tiny is y = relu(x·W + b) with W and b named like torch parameters.
func tiny() *graphBuilder {
	return newBuilder().input("x", -1, 3).init("fc.weight", 3, 2).init("fc.bias", 2).
		node("MatMul", "/fc/MatMul", []string{"x", "fc.weight"}, []string{"h"}).
		node("Add", "/fc/Add", []string{"h", "fc.bias"}, []string{"z"}).
		node("Relu", "/Relu", []string{"z"}, []string{"y"}).
		output("y", -1, 2)
}

func TestLoadBytesErrors(t *testing.T) {
	good := tiny().bytes(t)
	noGraph, _ := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(7),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(14)}}})
	withOpset := func(v int64) []byte {
		b := tiny()
		b.opset = v
		return b.bytes(t)
	}
	noOpset := func() []byte {
		pb := tiny().proto()
		pb.OpsetImport = nil
		data, _ := proto.Marshal(pb)
		return data
	}()
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotONNX},
		{"text", []byte("this is not an ONNX model, just text\n"), ErrNotONNX},
		{"png header", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), ErrNotONNX},
		{"truncated in the graph", good[:len(good)/2], ErrNotONNX},
		{"no graph", noGraph, ErrNoGraph},
		{"no opset import", noOpset, ErrUnsupportedOpset},
		{"opset 6", withOpset(6), ErrUnsupportedOpset},
		{"opset 22", withOpset(22), ErrUnsupportedOpset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadBytes: got %v, want %v", err, tt.want)
			}
		})
	}
	for _, v := range []int64{MinOpset, 17, MaxOpset} {
		if _, err := LoadBytes(withOpset(v)); err != nil {
			t.Errorf("opset %d: %v", v, err)
		}
	}
}

// TestLoadTruncated cuts a model at every few bytes: each prefix either loads (a cut between
// top-level fields can leave a complete, smaller message) or fails with one of the sentinels.
func TestLoadTruncated(t *testing.T) {
	good := bertLike(2, 8, true).bytes(t)
	for n := 1; n < len(good); n += 1 + n/20 {
		_, err := LoadBytes(good[:n])
		if err == nil {
			t.Errorf("prefix of %d/%d bytes loaded", n, len(good))
			continue
		}
		if !errors.Is(err, ErrNotONNX) && !errors.Is(err, ErrNoGraph) && !errors.Is(err, ErrUnsupportedOpset) {
			t.Errorf("prefix of %d bytes: unexpected error %v", n, err)
		}
	}
}

func TestBytesRoundTrip(t *testing.T) {
	m := tiny().model(t)
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := LoadBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m.pb, m2.pb) {
		t.Fatal("model changed in a Bytes/LoadBytes round trip")
	}
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	m3, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m.pb, m3.pb) {
		t.Fatal("model changed in a WriteFile/LoadFile round trip")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("written model's mode %v, %v; want 0644 like any file written for others to read", fi.Mode(), err)
	}
}

// external writes tiny's initializers to dir/data.bin and returns the model bytes that point there.
func external(t *testing.T, dir, location string, mutate func(*onnxpb.TensorProto)) []byte {
	t.Helper()
	pb := tiny().proto()
	var blob []byte
	for _, init := range pb.Graph.Initializer {
		raw := init.RawData
		init.ExternalData = []*onnxpb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(location)},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(len(blob)))},
			{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(raw)))},
		}
		init.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
		init.RawData = nil
		blob = append(blob, raw...)
		if mutate != nil {
			mutate(init)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "data.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestExternalData(t *testing.T) {
	want := tiny().model(t)
	dir := t.TempDir()
	data := external(t, dir, "data.bin", nil)
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fc.weight", "fc.bias"} {
		got, err := m.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		exp, _ := want.Initializer(name)
		if !slicesEqual(got.Float32, exp.Float32) {
			t.Errorf("%s: got %v, want %v", name, got.Float32, exp.Float32)
		}
	}
	// The loaded model is self-contained.
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBytes(b); err != nil {
		t.Fatalf("reload without directory: %v", err)
	}

	tests := []struct {
		name     string
		location string
		mutate   func(*onnxpb.TensorProto)
		noDir    bool
	}{
		{name: "no directory", location: "data.bin", noDir: true},
		{name: "missing file", location: "nope.bin"},
		{name: "escapes the directory", location: "../data.bin"},
		{name: "absolute path", location: filepath.Join(dir, "data.bin")},
		{name: "short file", location: "data.bin", mutate: func(tp *onnxpb.TensorProto) {
			tp.ExternalData[1].Value = proto.String("1000000")
		}},
		{name: "length disagrees with shape", location: "data.bin", mutate: func(tp *onnxpb.TensorProto) {
			tp.ExternalData[2].Value = proto.String("4")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := external(t, dir, tt.location, tt.mutate)
			var opts []LoadOption
			if !tt.noDir {
				opts = append(opts, WithExternalDataDir(dir))
			}
			_, err := LoadBytes(data, opts...)
			if !errors.Is(err, ErrExternalData) {
				t.Fatalf("got %v, want ErrExternalData", err)
			}
		})
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNameNodes(t *testing.T) {
	m := newBuilder().input("x", 2).
		node("Relu", "", []string{"x"}, []string{"a"}).
		node("Relu", "dup", []string{"a"}, []string{"b"}).
		node("Relu", "dup", []string{"b"}, []string{"c"}).
		node("Relu", "Relu_0", []string{"c"}, []string{"d"}).
		output("d", 2).model(t)
	var names []string
	for _, n := range m.pb.Graph.Node {
		names = append(names, n.GetName())
	}
	want := []string{"Relu_0_1", "dup", "dup_1", "Relu_0"}
	if !slicesEqual(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestInspect(t *testing.T) {
	info := bertLike(2, 8, true).model(t).Inspect()
	if info.Producer != "s3t-test" || info.IRVersion != 7 || len(info.Opsets) != 1 || info.Opsets[0].Version != 14 {
		t.Errorf("header: %+v", info)
	}
	if len(info.Inputs) != 1 || info.Inputs[0].Name != "x" || info.Inputs[0].Shape.String() != "[batch,4,8]" {
		t.Errorf("inputs: %+v", info.Inputs)
	}
	// Per layer: 4 square and 2 rectangular weights, 6 biases; plus the pooler.
	wantParams := int64(2*(4*64+2*128+5*8+16) + 24)
	if info.Initializers.Count != 2*12+1 || info.Initializers.Parameters != wantParams || info.Initializers.Bytes != 4*wantParams {
		t.Errorf("initializers: %+v, want %d parameters", info.Initializers, wantParams)
	}
	if info.Ops[0] != (OpCount{Op: "MatMul", Count: 2*8 + 1}) {
		t.Errorf("ops: %+v", info.Ops)
	}
}
