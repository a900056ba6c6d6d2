package ort

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNewSessionErrors(t *testing.T) {
	tests := []struct {
		name  string
		model string
		opts  []SessionOption
		want  error
	}{
		{"negative intra-op threads", "affine", []SessionOption{WithIntraOpThreads(-1)}, ErrInvalidArgument},
		{"negative inter-op threads", "affine", []SessionOption{WithInterOpThreads(-2)}, ErrInvalidArgument},
		{"unknown provider", "affine", []SessionOption{WithProvider("tpu")}, ErrInvalidArgument},
		{"negative device", "affine", []SessionOption{WithCUDA(-1)}, ErrInvalidArgument},
		{"unknown optional input", "bias_default", []SessionOption{WithOptionalInputs("nope")}, ErrUnknownInput},
		{"required input named optional", "bias_default", []SessionOption{WithOptionalInputs("x")}, ErrInvalidArgument},
		{"unknown output", "affine", []SessionOption{WithOutputs("nope")}, ErrUnknownOutput},
		{"unsupported opset", "unsupported", nil, ErrInvalidModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSession(fixture(t, tt.model), tt.opts...)
			if !errors.Is(err, tt.want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewSessionFromFile(filepath.Join("testdata", "missing.onnx")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
}

func TestNewSessionFromFile(t *testing.T) {
	s, err := NewSessionFromFile(filepath.Join("testdata", "affine.onnx"), WithIntraOpThreads(1), WithInterOpThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), map[string]Tensor{"x": NewTensor([]float32{1, 2, 3, 4}, 1, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if got := out["y"].Data.([]float32); !slices.Equal(got, []float32{7.5, -1, 8}) {
		t.Errorf("y = %v", got)
	}
	st := s.Status()
	if st.IntraOpThreads != 1 || st.InterOpThreads != 2 || st.Provider != CPU || st.Requested != CPU || st.Fallback != "" {
		t.Errorf("Status() = %+v", st)
	}
}

// TestCUDAFallback asks for CUDA for real. This machine has neither a GPU nor ONNX Runtime's
// CUDA provider libraries, so the session must come up on CPU, say why, and log it.
func TestCUDAFallback(t *testing.T) {
	var logs bytes.Buffer
	s := open(t, "affine", WithCUDA(0), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if s.Provider() == CUDA {
		t.Skip("CUDA is usable here: the fallback path is not exercised")
	}
	st := s.Status()
	if st.Provider != CPU || st.Requested != CUDA || st.DeviceID != 0 {
		t.Errorf("Status() = %+v, want cpu in use after asking for cuda", st)
	}
	if st.Fallback == "" {
		t.Error("no fallback reason")
	}
	t.Logf("fallback reason: %s", st.Fallback)
	for _, want := range []string{`msg="ort: cuda unavailable, falling back to cpu"`, "reason=", "device=0"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}
	out, err := s.Run(context.Background(), map[string]Tensor{"x": NewTensor([]float32{1, 2, 3, 4}, 1, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if got := out["y"].Data.([]float32); !slices.Equal(got, []float32{7.5, -1, 8}) {
		t.Errorf("y = %v after fallback", got)
	}
}

func TestParseProvider(t *testing.T) {
	tests := []struct {
		in   string
		want Provider
		err  error
	}{
		{"", CPU, nil},
		{"cpu", CPU, nil},
		{" CUDA ", CUDA, nil},
		{"tensorrt", "", ErrInvalidArgument},
	}
	for _, tt := range tests {
		got, err := ParseProvider(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("ParseProvider(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestSessionInputsOutputs(t *testing.T) {
	s := open(t, "bias_default", WithOptionalInputs("bias", "bias"))
	if got := strs(s.Inputs()); !slices.Equal(got, []string{"x float32[batch,3]", "bias float32[3] (optional)"}) {
		t.Errorf("Inputs() = %q", got)
	}
	s2 := open(t, "affine", WithOutputs("z"))
	if got := strs(s2.Outputs()); !slices.Equal(got, []string{"z float32[batch,3]"}) {
		t.Errorf("Outputs() = %q", got)
	}
	if len(s2.Model().Outputs) != 2 {
		t.Errorf("Model().Outputs = %v", s2.Model().Outputs)
	}
}
