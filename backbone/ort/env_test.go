package ort

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestInitIdempotent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = Init() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Init #%d: %v", i, err)
		}
	}
	if err := Init(WithLibrary(Library())); err != nil {
		t.Errorf("Init with the loaded library: %v", err)
	}
	if err := Init(WithLibrary("/elsewhere/libonnxruntime.so.1")); !errors.Is(err, ErrAlreadyInitialized) {
		t.Errorf("Init with another library: got %v, want ErrAlreadyInitialized", err)
	}
	if v := Version(); !strings.HasPrefix(v, "1.") {
		t.Errorf("Version() = %q", v)
	}
}

func TestLibraryCandidates(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home directory:", err)
	}
	rel := filepath.Join("onnxruntime-"+DefaultORTVersion, "lib", "libonnxruntime.so.1")
	tests := []struct {
		name           string
		explicit       string
		library, cache string
		want           []string
	}{
		{"explicit wins", "/opt/ort.so", "/env/ort.so", "/cache", []string{"/opt/ort.so"}},
		{"environment", "", "/env/ort.so", "/cache", []string{"/env/ort.so"}},
		{"cache", "", "", "/cache", []string{filepath.Join("/cache", rel), "/usr/local/lib/libonnxruntime.so.1", "libonnxruntime.so.1"}},
		{"home", "", "", "", []string{filepath.Join(home, ".cache", "s3t", rel), "/usr/local/lib/libonnxruntime.so.1", "libonnxruntime.so.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvLibrary, tt.library)
			t.Setenv(EnvCache, tt.cache)
			var got []string
			for _, c := range libraryCandidates(tt.explicit) {
				got = append(got, c.path)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("candidates = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestInitErrors unloads the library, checks that failed loads say what they tried, and loads
// it again.
func TestInitErrors(t *testing.T) {
	loaded := Library()
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Init(WithLibrary(loaded)); err != nil {
			t.Fatalf("Init after Shutdown: %v", err)
		}
	})
	notLib, _ := filepath.Abs(filepath.Join("testdata", "affine.onnx"))
	tests := []struct {
		name     string
		opts     []InitOption
		library  string // S3T_ORT_LIBRARY
		cache    string // S3T_CACHE
		mentions []string
	}{
		{"missing explicit file", []InitOption{WithLibrary("/nonexistent/libonnxruntime.so.1")}, "", "",
			[]string{"/nonexistent/libonnxruntime.so.1 (WithLibrary): not found"}},
		{"not a shared library", []InitOption{WithLibrary(notLib)}, "", "",
			[]string{notLib + " (WithLibrary)", "Error loading ONNX shared library"}},
		{"missing S3T_ORT_LIBRARY", nil, "/nonexistent/ort.so", "",
			[]string{"/nonexistent/ort.so (S3T_ORT_LIBRARY): not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvLibrary, tt.library)
			t.Setenv(EnvCache, tt.cache)
			err := Init(tt.opts...)
			if !errors.Is(err, ErrLibrary) {
				Shutdown()
				t.Fatalf("Init: got %v, want ErrLibrary", err)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if Library() != "" {
				t.Errorf("Library() = %q after a failed Init", Library())
			}
		})
	}
}

func TestShutdownBusy(t *testing.T) {
	s, err := NewSession(fixture(t, "affine"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Shutdown(); !errors.Is(err, ErrBusy) {
		t.Errorf("Shutdown with an open session: got %v, want ErrBusy", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// helperEnv marks a child process of TestInitDefaultSearch: TestMain then loads nothing.
const helperEnv = "S3T_ORT_TEST_HELPER"

// TestInitDefaultSearch runs Init's default search in a fresh process (in this one the library
// stays mapped after Shutdown, so the dynamic linker would find it by soname) with no
// S3T_ORT_LIBRARY and an empty S3T_CACHE: the error must list every place tried.
func TestInitDefaultSearch(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		err := Init()
		fmt.Printf("INIT-ERROR: %v\n", err)
		if err == nil {
			Shutdown()
		}
		return
	}
	if _, err := os.Stat("/usr/local/lib/libonnxruntime.so.1"); err == nil {
		t.Skip("/usr/local/lib has ONNX Runtime: the default search succeeds here")
	}
	empty := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitDefaultSearch$", "-test.v")
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, EnvLibrary+"=") || strings.HasPrefix(kv, EnvCache+"=") || strings.HasPrefix(kv, "LD_LIBRARY_PATH=")
	}), helperEnv+"=1", EnvCache+"="+empty)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{
		"INIT-ERROR: " + ErrLibrary.Error(),
		filepath.Join(empty, "onnxruntime-"+DefaultORTVersion, "lib", "libonnxruntime.so.1") + " (S3T_CACHE): not found",
		"/usr/local/lib/libonnxruntime.so.1 (system): not found",
		"libonnxruntime.so.1 (dynamic linker search): ", "cannot open shared object file",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}
