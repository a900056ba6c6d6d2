package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestBenchServeHelpers(t *testing.T) {
	if got := roundRobin([][]string{{"a1", "a2", "a3"}, {"b1"}, {"c1", "c2"}}); !slices.Equal(got, []string{"a1", "b1", "c1", "a2", "c2", "a3"}) {
		t.Errorf("roundRobin = %v", got)
	}
	var lat []time.Duration
	for i := 1; i <= 200; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(lat, 50); p != 100*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(lat, 99); p != 198*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(lat[:1], 99); p != time.Millisecond {
		t.Errorf("p99 of one = %v", p)
	}
	st := summarize(lat, 2*time.Second, 8)
	if st.P50Ms != 100 || st.P99Ms != 198 || st.Requests != 200 || st.PerSecond != 800 {
		t.Errorf("summarize = %+v", st)
	}
	m := medianStats([]latencyStats{{P50Ms: 3, P99Ms: 9, PerSecond: 1, Requests: 10}, {P50Ms: 1, P99Ms: 30, PerSecond: 5, Requests: 10}, {P50Ms: 2, P99Ms: 10, PerSecond: 2, Requests: 10}})
	if m != (latencyStats{P50Ms: 2, P99Ms: 10, PerSecond: 2, Requests: 30}) {
		t.Errorf("medianStats = %+v", m)
	}
	text := `# HELP s3t_http_request_duration_seconds x
s3t_http_request_duration_seconds_bucket{method="POST",route="/v1/models/:name/predict",le="0.001"} 3
s3t_http_request_duration_seconds_sum{method="POST",route="/v1/models/:name/predict"} 0.25
s3t_http_request_duration_seconds_count{method="POST",route="/v1/models/:name/predict"} 100
s3t_http_request_duration_seconds_sum{method="GET",route="/healthz"} 7
s3t_http_request_duration_seconds_sum{method="POST",route="/v2/models/:name/infer"} 0.5
s3t_http_request_duration_seconds_count{method="POST",route="/v2/models/:name/infer"} 40
`
	if sum, n := parsePredictTime(text); sum != 0.25 || n != 100 {
		t.Errorf("parsePredictTime = %v, %v", sum, n)
	}
	if sum, n := parseRouteTime(text, inferV2Route); sum != 0.5 || n != 40 {
		t.Errorf("parseRouteTime(v2) = %v, %v", sum, n)
	}
}

// TestBenchServeTiny runs the whole benchmark at a tiny size: this test binary serves as
// `s3t serve` (S3T_TEST_AS_CLI), trains 2 x 2 stages on 40 digits and measures a few requests.
func TestBenchServeTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and trains a model")
	}
	if _, err := loadTrainData("mnist", 16, 40); err != nil {
		t.Skipf("MNIST is not installed (make deps): %v", err)
	}
	t.Setenv("S3T_TEST_AS_CLI", "1")
	traces := t.TempDir()
	out, stderr, code := run(t, "bench", "serve", "--train", "40", "--test", "16", "--slices", "2", "--sequences", "1",
		"--reps", "1", "--requests", "8", "--warmup", "2", "--clients", "1,2", "--batch-sizes", "1", "--deletions", "4", "--trace", traces, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res serveBenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Predict) != 2 || res.Deletion.Requests != 4 || res.AgreeMaxDelta > 1e-3 {
		t.Fatalf("result %+v", res)
	}
	for _, p := range res.Predict {
		if p.HTTP.P50Ms <= 0 || p.Direct.P50Ms <= 0 || p.RatioP50 <= 0 || p.HTTP.Requests != 8 || p.ServerMs <= 0 ||
			p.V2Binary.P50Ms <= 0 || p.V2Binary.Requests != 8 || p.V2BinaryServerMs <= 0 || p.V2BinaryRatioP50 <= 0 ||
			p.Minimal.P50Ms <= 0 || p.Minimal.Requests != 8 || p.MinimalServerMs <= 0 || p.MinimalRatioP50 <= 0 {
			t.Errorf("row %+v", p)
		}
		// The paced direct runs: only where there are 2 cores or more per client.
		fits := 2*p.Clients <= res.GOMAXPROCS
		if paced := p.DirectPaced; (paced != nil) != fits || paced != nil && (paced.P50Ms <= 0 || paced.Requests != 8 || p.PacedRatioP50 <= 0 || p.PacedRatioP99 <= 0) {
			t.Errorf("row of %d client(s), GOMAXPROCS %d: paced %+v, ratio %v", p.Clients, res.GOMAXPROCS, paced, p.PacedRatioP50)
		}
	}
	if res.RSS.Idle <= 0 || res.RSS.FirstPredict <= res.RSS.Idle {
		t.Errorf("server RSS %+v: want the first prediction to load checkpoints", res.RSS)
	}
	// --trace: both sides traced, while calls ran.
	if tr := res.Traced; tr == nil || tr.Dir != traces || tr.HTTP.Requests == 0 || tr.Direct.Requests == 0 {
		t.Errorf("traced %+v", res.Traced)
	}
	for _, f := range []string{"server.trace", "direct.trace"} {
		b, err := os.ReadFile(filepath.Join(traces, f))
		if err != nil || len(b) < 1024 || !bytes.HasPrefix(b, []byte("go 1.")) {
			t.Errorf("%s: %d bytes, %v: want a Go execution trace", f, len(b), err)
		}
	}
}
