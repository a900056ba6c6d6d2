package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const encoderFixture = "../../../backbone/testdata/torch-encoder.onnx"

func TestBackboneInspectText(t *testing.T) {
	out, stderr, code := run(t, "backbone", "inspect", encoderFixture)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"producer:   pytorch 1.13.0", "opsets:     ai.onnx 14", "x  float32  [batch,9,32]", "logits  float32  [batch,5]",
		"initializers: ", "MatMul", "manifest: 2 blocks, torch-transformer-encoder (detected) under encoder.layers",
		"block 1: encoder.layers.1", "slice axis 0 [32:64]", "attention_scores",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBackboneInspectJSON(t *testing.T) {
	out, stderr, code := run(t, "backbone", "inspect", encoderFixture, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Info struct {
			Inputs []struct {
				Name  string `json:"name"`
				DType string `json:"dtype"`
				Shape []any  `json:"shape"`
			} `json:"inputs"`
			Initializers struct {
				Parameters int64 `json:"parameters"`
			} `json:"initializers"`
		} `json:"info"`
		Manifest struct {
			Version int `json:"version"`
			Blocks  []struct {
				Name  string `json:"name"`
				Edges []struct {
					Role   string `json:"role"`
					Tensor string `json:"tensor"`
				} `json:"edges"`
			} `json:"blocks"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	in := rep.Info.Inputs
	if len(in) != 1 || in[0].Name != "x" || in[0].DType != "float32" || len(in[0].Shape) != 3 || in[0].Shape[0] != "batch" || in[0].Shape[1] != 9.0 {
		t.Errorf("inputs %+v", in)
	}
	if rep.Manifest.Version != 1 || len(rep.Manifest.Blocks) != 2 || rep.Manifest.Blocks[1].Name != "encoder.layers.1" {
		t.Errorf("manifest %+v", rep.Manifest)
	}
	if rep.Info.Initializers.Parameters == 0 {
		t.Error("no parameters counted")
	}
}

func TestBackboneInspectManifestFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.json")
	if err := os.WriteFile(path, []byte(`{"version": 1, "blocks": [{"name": "encoder.layers.1"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "backbone", "inspect", encoderFixture, "--manifest", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "manifest: 1 blocks, manual (file)") {
		t.Errorf("output:\n%s", out)
	}
	if err := os.WriteFile(path, []byte(`{"version": 1, "blocks": [{"name": "encoder.layers.7"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := run(t, "backbone", "inspect", encoderFixture, "--manifest", path); code != 1 || !strings.Contains(stderr, "encoder.layers.7") {
		t.Errorf("bad manifest: exit %d: %s", code, stderr)
	}
}

func TestBackboneInspectErrors(t *testing.T) {
	notONNX := filepath.Join(t.TempDir(), "x.onnx")
	if err := os.WriteFile(notONNX, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		code  int
		wants string
	}{
		{"no file", []string{"backbone", "inspect"}, 2, "one FILE"},
		{"missing file", []string{"backbone", "inspect", "nope.onnx"}, 1, "nope.onnx"},
		{"not onnx", []string{"backbone", "inspect", notONNX}, 1, "not an ONNX model"},
		{"bad flag", []string{"backbone", "inspect", "--nope", encoderFixture}, 2, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.wants) {
				t.Fatalf("exit %d (want %d): %s", code, tt.code, stderr)
			}
		})
	}
}

func TestBackboneCanonicalizeText(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "encoder.canonical.onnx")
	out, stderr, code := run(t, "backbone", "canonicalize", encoderFixture, dst, "--batch", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"nodes:    280 -> 113", "batch:    pinned to 2 (was batch)",
		"unpacked: 2 packed weights: encoder.layers.0.self_attn.in_proj_weight",
		"split:    6 packed projection slices",
		"encoder.layers.0.self_attn.in_proj_weight.query + encoder.layers.0.self_attn.in_proj_bias.query",
		"encoder.layers.1.linear2.weight", "Shape      14 -> 0", "Slice      6 -> 0",
		"verified: max difference", "manifest: 2 blocks on the canonical graph (torch-transformer-encoder)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The written file is the canonical model.
	out, stderr, code = run(t, "backbone", "inspect", dst)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"x  float32  [2,9,32]", "value             encoder.layers.1.self_attn.in_proj_weight.value   float32 [32,32] in_out"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Slice") || strings.Contains(out, "  Shape ") {
		t.Errorf("canonical graph still slices or computes shapes:\n%s", out)
	}
}

func TestBackboneCanonicalizeJSON(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "encoder.canonical.onnx")
	out, stderr, code := run(t, "backbone", "canonicalize", encoderFixture, dst, "--json", "--no-verify")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Out    string `json:"out"`
		Report struct {
			NodesBefore int   `json:"nodes_before"`
			NodesAfter  int   `json:"nodes_after"`
			Batch       int64 `json:"batch"`
			Relaxed     []string
			Split       []struct {
				Weight string `json:"weight"`
			} `json:"split"`
			Verified bool `json:"verified"`
		} `json:"report"`
		Blocks int `json:"blocks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	r := rep.Report
	if rep.Out != dst || r.NodesBefore != 280 || r.NodesAfter != 113 || r.Batch != 0 || len(r.Relaxed) != 10 ||
		len(r.Split) != 6 || r.Split[1].Weight != "encoder.layers.0.self_attn.in_proj_weight.key" || r.Verified || rep.Blocks != 2 {
		t.Errorf("report %+v", rep)
	}
}

func TestBackboneCanonicalizeErrors(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "out.onnx")
	bad := filepath.Join(t.TempDir(), "m.json")
	if err := os.WriteFile(bad, []byte(`{"version": 1, "blocks": [{"name": "encoder.layers.7"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		code  int
		wants string
	}{
		{"one file", []string{"backbone", "canonicalize", encoderFixture}, 2, "IN and OUT"},
		{"zero batch", []string{"backbone", "canonicalize", encoderFixture, dst, "--batch", "0"}, 2, "the batch must be at least 1"},
		{"missing file", []string{"backbone", "canonicalize", "nope.onnx", dst}, 1, "nope.onnx"},
		{"manifest of another model", []string{"backbone", "canonicalize", encoderFixture, dst, "--manifest", bad}, 1, "encoder.layers.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.wants) {
				t.Fatalf("exit %d (want %d): %s", code, tt.code, stderr)
			}
			if _, err := os.Stat(dst); err == nil {
				t.Error("output written despite the error")
			}
		})
	}
}
