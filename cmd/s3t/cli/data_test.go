package cli

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
)

// TestDataMNIST: s3t data writes one NDJSON sample a line, as the upload route reads them: a
// unique id, the 784 values of one digit in [0, 1], a label "0" to "9".
func TestDataMNIST(t *testing.T) {
	if _, err := loadTrainData("mnist", 0, 1); err != nil {
		t.Skipf("MNIST is not installed (make deps): %v", err)
	}
	out, stderr, code := run(t, "data", "mnist", "--count", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ids := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s api.Sample
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		var in []float64
		if err := json.Unmarshal(s.Input, &in); err != nil || len(in) != 784 {
			t.Fatalf("sample %s: input of %d values, %v", s.ID, len(in), err)
		}
		for _, v := range in {
			if v < 0 || v > 1 {
				t.Fatalf("sample %s: value %v outside [0, 1]", s.ID, v)
			}
		}
		if len(s.Label) != 1 || s.Label[0] < '0' || s.Label[0] > '9' || !strings.HasPrefix(s.ID, "mnist-") || ids[s.ID] {
			t.Fatalf("sample %q label %q", s.ID, s.Label)
		}
		ids[s.ID] = true
	}
	if len(ids) != 5 {
		t.Fatalf("%d samples, want 5", len(ids))
	}
	for _, args := range [][]string{{"data", "bogus"}, {"data", "mnist", "--count", "0"}, {"data"}} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
