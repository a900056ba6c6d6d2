package ort

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	onnx "github.com/yalue/onnxruntime_go"
)

var fixtures = []string{"affine", "embed", "bias_default", "shapes", "misdeclared"}

func TestDescribe(t *testing.T) {
	tests := []struct {
		model           string
		inputs, outputs []string
	}{
		{"affine", []string{"x float32[batch,4]"}, []string{"y float32[batch,3]", "z float32[batch,3]"}},
		{"embed", []string{"ids int64[batch,5]"}, []string{"emb float32[batch,5,2]", "next int64[batch,5]"}},
		{"bias_default", []string{"x float32[batch,3]", "bias float32[3] (optional)"}, []string{"y float32[batch,3]"}},
		{"shapes", []string{"x float32[batch,3]"}, []string{"total float32[]", "logx float32[batch,3]", "free float32[...]", "rows float32[?]"}},
		{"misdeclared", []string{"x float32[batch,3]"}, []string{"y float32[1,3]"}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			m, err := Describe(fixture(t, tt.model))
			if err != nil {
				t.Fatal(err)
			}
			if m.IRVersion != 8 || m.Opsets[""] != 13 || m.Producer != "s3t-ort-testdata" {
				t.Errorf("IR %d, opsets %v, producer %q", m.IRVersion, m.Opsets, m.Producer)
			}
			if got := strs(m.Inputs); !slices.Equal(got, tt.inputs) {
				t.Errorf("inputs = %q, want %q", got, tt.inputs)
			}
			if got := strs(m.Outputs); !slices.Equal(got, tt.outputs) {
				t.Errorf("outputs = %q, want %q", got, tt.outputs)
			}
		})
	}
}

func TestInfoJSON(t *testing.T) {
	m, err := Describe(fixture(t, "bias_default"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"x","dtype":"float32","shape":[-1,3],"dim_names":["batch",""]},` +
		`{"name":"bias","dtype":"float32","shape":[3],"dim_names":[""],"optional":true}]`
	if string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back []Info
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, m.Inputs) {
		t.Errorf("round trip: %v, %v", back, err)
	}
	var d DType
	if err := d.UnmarshalText([]byte("complex7")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown dtype name: %v", err)
	}
}

func strs(infos []Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.String()
	}
	return out
}

// TestDescribeAgreesWithORT checks the Go reading of each fixture against what ONNX Runtime
// reports for it.
func TestDescribeAgreesWithORT(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			b := fixture(t, name)
			m, err := Describe(b)
			if err != nil {
				t.Fatal(err)
			}
			ins, outs, err := onnx.GetInputOutputInfoWithONNXData(b)
			if err != nil {
				t.Fatal(err)
			}
			var required []Info
			for _, in := range m.Inputs {
				if !in.Optional {
					required = append(required, in)
				}
			}
			compare(t, "input", required, ins)
			compare(t, "output", m.Outputs, outs)
		})
	}
}

func compare(t *testing.T, kind string, ours []Info, theirs []onnx.InputOutputInfo) {
	t.Helper()
	if len(ours) != len(theirs) {
		t.Fatalf("%d %ss, ONNX Runtime says %d", len(ours), kind, len(theirs))
	}
	for i, o := range ours {
		r := theirs[i]
		// An undeclared shape is unknown to Describe; ONNX Runtime fills in what its shape
		// inference found.
		sameShape := o.Shape == nil || slices.Equal(o.Shape, []int64(r.Dimensions))
		if o.Name != r.Name || int(o.DType) != int(r.DataType) || !sameShape {
			t.Errorf("%s %d: ours %s %v, ONNX Runtime %s", kind, i, o, o.Shape, r.String())
		}
	}
}

func TestDescribeInvalid(t *testing.T) {
	affine := fixture(t, "affine")
	tests := []struct {
		name  string
		model []byte
	}{
		{"empty", nil},
		{"text", []byte("hello world, this is not an ONNX model")},
		{"json", []byte(`{"graph": {"node": []}}`)},
		{"truncated", affine[:len(affine)/2]},
		{"no graph", []byte{0x08, 0x08}},              // ir_version: 8 and nothing else
		{"wrong wire type", []byte{0x3d, 0, 0, 0, 0}}, // graph as fixed32
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Describe(tt.model); !errors.Is(err, ErrInvalidModel) {
				t.Errorf("Describe: got %v, want ErrInvalidModel", err)
			}
			if s, err := NewSession(tt.model); !errors.Is(err, ErrInvalidModel) {
				if s != nil {
					s.Close()
				}
				t.Errorf("NewSession: got %v, want ErrInvalidModel", err)
			}
		})
	}
}

// TestTruncatedModels loads every proper prefix of a real model: each must be refused with an
// error, by the Go reader or by ONNX Runtime, and none may crash the process.
func TestTruncatedModels(t *testing.T) {
	for _, name := range []string{"affine", "bias_default"} {
		b := fixture(t, name)
		for n := range len(b) {
			s, err := NewSession(b[:n])
			if err == nil {
				s.Close()
				t.Errorf("%s truncated to %d of %d bytes loaded", name, n, len(b))
				continue
			}
			if !errors.Is(err, ErrInvalidModel) {
				t.Errorf("%s truncated to %d bytes: %v, want ErrInvalidModel", name, n, err)
			}
		}
	}
}

func TestUnsupportedOpset(t *testing.T) {
	if _, err := Describe(fixture(t, "unsupported")); err != nil {
		t.Fatalf("Describe reads a well-formed file: %v", err)
	}
	_, err := NewSession(fixture(t, "unsupported"))
	if !errors.Is(err, ErrInvalidModel) {
		t.Fatalf("NewSession: got %v, want ErrInvalidModel", err)
	}
	t.Log(err)
}

func FuzzDescribe(f *testing.F) {
	for _, name := range fixtures {
		f.Add(fixture(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Describe(b)
		if err == nil && len(m.Outputs) == 0 {
			t.Error("a model without outputs was accepted")
		}
	})
}
