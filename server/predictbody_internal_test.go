package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/s3t-dev/s3t/api"
)

// TestSplitInputs: the fast path gives what encoding/json gives for the common shape, and
// leaves everything else to encoding/json.
func TestSplitInputs(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"inputs": [[1, 2], [3, 4.5e-1]]}`, true},
		{` { "inputs" : [ [[1],[2]] , [-3] ] } ` + "\n", true},
		{`{"inputs":[]}`, true},
		{`{"inputs":[[1,2]]}`, true},
		{`{"inputs":[[1,2]], "x": 1}`, false}, // another key: encoding/json refuses it
		{`{"x": 1, "inputs":[[1]]}`, false},   // key order
		{`{"inputs":[[1,"2"]]}`, false},       // a string
		{`{"inputs":[1]}`, false},             // not an array
		{`{"inputs":[[1,2]]]}`, false},        // unbalanced
		{`{"inputs":[[1,2]]} {}`, false},      // two values
		{`{"inputs":[[1,2],]}`, false},        // trailing comma
		{`{"inputs":[[1,null]]}`, false},      // null
		{`{"\u0069nputs":[[1]]}`, false},      // an escaped key: left to encoding/json
		{`{"inputs":[[1,2]`, false},           // truncated
	}
	for _, tt := range tests {
		got, ok := splitInputs([]byte(tt.body))
		if ok != tt.ok {
			t.Errorf("splitInputs(%s): ok = %v, want %v", tt.body, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		var want api.PredictRequest
		if err := json.Unmarshal([]byte(tt.body), &want); err != nil {
			t.Fatalf("%s: %v", tt.body, err)
		}
		if len(got) != len(want.Inputs) {
			t.Fatalf("splitInputs(%s) = %d inputs, want %d", tt.body, len(got), len(want.Inputs))
		}
		for i := range got {
			var g, w any
			json.Unmarshal(got[i], &g)
			json.Unmarshal(want.Inputs[i], &w)
			if !reflect.DeepEqual(g, w) {
				t.Errorf("splitInputs(%s)[%d] = %s, want %s", tt.body, i, got[i], want.Inputs[i])
			}
		}
	}
}
