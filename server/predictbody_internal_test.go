package server

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/serving"
)

// TestParseInputs: the one-pass parse of the common shape gives what encoding/json and
// training.AppendInput give, and leaves every other body, and every error, to them.
func TestParseInputs(t *testing.T) {
	info := &serving.Info{InputSize: 2, InputShape: []int64{2}, MaxBatch: 2}
	tests := []struct {
		body string
		ok   bool
		err  string // decodeInputs' error, when it has one
	}{
		{`{"inputs": [[1, 2], [3, 4.5e-1]]}`, true, ""},
		{` { "inputs" : [ [[1],[2]] , [-3, 0] ] } ` + "\n", true, ""},
		{`{"inputs":[[[1,2]]]}`, true, ""},
		{`{"inputs":[[[1],2]]}`, false, "inputs[0]: input: a number among arrays"},
		{`{"inputs":[[1,2]]}`, true, ""},
		{`{"inputs":[[0.34901962,1e-3]]}`, true, ""},
		{`{"inputs":[]}`, false, "at least one input"},
		{`{"inputs":[[1,2]], "x": 1}`, false, "unknown field"}, // another key: encoding/json refuses it
		{`{"x": 1, "inputs":[[1,2]]}`, false, "unknown field"},
		{`{"\u0069nputs":[[1,2]]}`, false, ""}, // an escaped key: left to encoding/json, which takes it
		{`{"inputs":[[1,"2"]]}`, false, `inputs[0]: input must be an array of numbers, found '"'`},
		{`{"inputs":[1]}`, false, "inputs[0]: input must be an array of numbers"},
		{`{"inputs":[[1,2]]]}`, false, "request body"},
		{`{"inputs":[[1,2]]} {}`, false, "more than one JSON value"},
		{`{"inputs":[[1,2],]}`, false, "request body"},
		{`{"inputs":[[1,null]]}`, false, "inputs[0]: input must be an array of numbers"},
		{`{"inputs":[[1,2]`, false, "request body"},
		{`{"inputs":[[1,2,3]]}`, false, "inputs[0]: input has more than 2 values"},
		{`{"inputs":[[1,2],[3]]}`, false, "inputs[1]: input has 1 values, want 2"},
		{`{"inputs":[[1,2],[3,4],[5,6]]}`, false, "3 inputs, at most 2"},
		{`{"inputs":[[1e39,2]]}`, false, "not a finite float32"},
	}
	for _, tt := range tests {
		x, n, ok := parseInputs([]byte(tt.body), info.InputShape, info.MaxBatch)
		if ok != tt.ok {
			t.Errorf("parseInputs(%s): ok = %v, want %v", tt.body, ok, tt.ok)
		}
		wx, wn, err := decodeInputs([]byte(tt.body), "m", info)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("decodeInputs(%s) = %v; want an error with %q", tt.body, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("decodeInputs(%s): %v", tt.body, err)
			continue
		}
		if ok && (n != wn || !slices.Equal(x, wx) || cap(x) != len(x)) {
			t.Errorf("parseInputs(%s) = %v (cap %d), %d; encoding/json gives %v, %d", tt.body, x, cap(x), n, wx, wn)
		}
		if gx, gn, err := predictInputs([]byte(tt.body), "m", info); err != nil || gn != wn || !slices.Equal(gx, wx) {
			t.Errorf("predictInputs(%s) = %v, %d, %v; want %v, %d", tt.body, gx, gn, err, wx, wn)
		}
	}
}

// FuzzParseInputs: whatever the body, the one-pass parse either refuses it or gives exactly
// what encoding/json and training.AppendInput give, and predictInputs agrees with the latter.
//
//	go test ./server -run '^$' -fuzz FuzzParseInputs -fuzztime 60s
func FuzzParseInputs(f *testing.F) {
	for _, b := range []string{`{"inputs": [[1, 2], [3, 4.5e-1]]}`, ` { "inputs" : [ [[1],[2]] , [-3, 0] ] } `,
		`{"inputs":[[0.34901962,1e-3]]}`, `{"inputs":[]}`, `{"inputs":[[1,2]], "x": 1}`, `{"inputs":[[1,"2"]]}`,
		`{"inputs":[[1,2],]}`, `{"inputs":[[1,2,3]]}`, `{"inputs":[[1e39,2]]}`, `{"inputs":[[-0,0.0],[1E2,2e-2]]}`} {
		f.Add([]byte(b))
	}
	info := &serving.Info{InputSize: 2, InputShape: []int64{2}, MaxBatch: 3}
	f.Fuzz(func(t *testing.T, body []byte) {
		x, n, ok := parseInputs(body, info.InputShape, info.MaxBatch)
		wx, wn, err := decodeInputs(body, "m", info)
		if ok {
			if err != nil {
				t.Fatalf("parseInputs(%q) = %v, %d; encoding/json refuses it: %v", body, x, n, err)
			}
			if n != wn || len(x) != len(wx) {
				t.Fatalf("parseInputs(%q) = %v, %d; encoding/json gives %v, %d", body, x, n, wx, wn)
			}
			for i := range x {
				if math.Float32bits(x[i]) != math.Float32bits(wx[i]) {
					t.Fatalf("parseInputs(%q)[%d] = %v; encoding/json gives %v", body, i, x[i], wx[i])
				}
			}
		}
		gx, gn, gerr := predictInputs(body, "m", info)
		if (gerr == nil) != (err == nil) || gerr != nil && gerr.Error() != err.Error() || gn != wn || !slices.Equal(gx, wx) {
			t.Fatalf("predictInputs(%q) = %v, %d, %v; encoding/json gives %v, %d, %v", body, gx, gn, gerr, wx, wn, err)
		}
	})
}

// TestServingErrorStatuses: what the serving package's errors answer; a process that cannot
// load ONNX Runtime answered 500 "internal error" to every prediction.
func TestServingErrorStatuses(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
	}{
		{fmt.Errorf("x: %w", serving.ErrInvalidInput), 400},
		{fmt.Errorf("x: %w", serving.ErrNotLive), 409},
		{fmt.Errorf("x: %w", serving.ErrUnavailable), 503},
		{fmt.Errorf("serving: %q shard 0: predict: %w", "m", ort.ErrLibrary), 503},
		{errors.New("a fault"), 500},
	} {
		if status, _ := toAPIError(servingError(tt.err)); status != tt.status {
			t.Errorf("%v: %d, want %d", tt.err, status, tt.status)
		}
	}
}
