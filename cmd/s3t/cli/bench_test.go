package cli

import (
	"encoding/json"
	"testing"
)

func TestBenchInferJSON(t *testing.T) {
	out, stderr, code := run(t, "bench", "infer", "--backbone", "../../../assets/vit-fmnist.onnx",
		"--batch", "1,4", "--rounds", "1", "--iterations", "3", "--warmup", "1", "--threads", "1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Provider string             `json:"provider"`
		Params   int                `json:"lora_tensors"`
		Results  []inferBenchResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// The ViT has 4 blocks: A and B for query and value in each.
	if got.Provider != "cpu" || got.Params != 16 || len(got.Results) != 2 {
		t.Fatalf("got %+v", got)
	}
	for _, r := range got.Results {
		if r.Original.Runs != 3 || r.Spliced.Runs != 3 || r.Original.P50Ms <= 0 || r.SplicedRatio <= 0 {
			t.Errorf("batch %d: %+v", r.Batch, r)
		}
		if r.Original.P99Ms < r.Original.P50Ms || r.Original.ORTP50Ms > r.Original.P50Ms {
			t.Errorf("batch %d: inconsistent percentiles %+v", r.Batch, r.Original)
		}
	}
}

func TestBenchInferUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "infer"},
		{"bench", "infer", "--backbone", "x.onnx", "--batch", "0"},
		{"bench", "infer", "--backbone", "x.onnx", "--provider", "tpu"},
	} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if _, _, code := run(t, "bench", "infer", "--backbone", "does-not-exist.onnx"); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
}
