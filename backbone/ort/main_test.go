package ort

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestMain loads ONNX Runtime once for the package's tests and, at the end, checks that every
// session was closed (Shutdown refuses otherwise).
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run())
	}
	if err := Init(); err != nil {
		fmt.Fprintf(os.Stderr, "backbone/ort tests need ONNX Runtime (run `make deps`): %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "shutdown after tests: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// fixture reads testdata/name.onnx.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// open creates a session on testdata/name.onnx that logs to the test log and is closed when
// the test ends.
func open(t testing.TB, name string, opts ...SessionOption) *Session {
	t.Helper()
	opts = append([]SessionOption{WithLogger(testLogger(t))}, opts...)
	s, err := NewSession(fixture(t, name), opts...)
	if err != nil {
		t.Fatalf("NewSession(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// testLogger returns a logger that writes to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, nil))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
