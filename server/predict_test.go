package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/serving"
)

// predictServer is a server with a serving.Service over a trained testmodel fixture.
type predictServer struct {
	URL string
	c   *api.Client
	fx  *testmodel.Fixture
}

func newPredictServer(t *testing.T, o testmodel.Options) *predictServer {
	t.Helper()
	return newPredictServerMax(t, o, 0)
}

// newPredictServerMax is newPredictServer with serving.Config.MaxBatch maxBatch (0: the default).
func newPredictServerMax(t *testing.T, o testmodel.Options, maxBatch int) *predictServer {
	t.Helper()
	if testing.Short() {
		t.Skip("trains a model")
	}
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, o)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := serving.New(serving.Config{Store: st, Blobs: blobs, Logger: quiet, Pool: 2, MaxBatch: maxBatch})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Serving: svc, Logger: quiet, DisableRuntime: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); svc.Close() })
	c, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &predictServer{URL: hs.URL, c: c, fx: fx}
}

// rawInputs encodes images as native inputs: even ones nested [1][28][28], odd ones flat.
func rawInputs(t *testing.T, imgs [][]float32) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, len(imgs))
	for i, img := range imgs {
		var v any = img
		if i%2 == 0 {
			rows := make([][]float32, 28)
			for r := range rows {
				rows[r] = img[r*28 : (r+1)*28]
			}
			v = [][][]float32{rows}
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// checkNative checks a native response against the ensemble computed directly through
// adapters.Predictor on the checkpoints the ledger serves now.
func checkNative(t *testing.T, fx *testmodel.Fixture, res *api.PredictResponse, imgs [][]float32) {
	t.Helper()
	m, err := fx.Store.GetModel(context.Background(), fx.Name)
	if err != nil {
		t.Fatal(err)
	}
	if res.LedgerVersion != m.Version {
		t.Errorf("ledger_version %d, the ledger is at %d", res.LedgerVersion, m.Version)
	}
	for k, sv := range m.Published() {
		if got := res.Served[k]; got.Shard != k || got.Length != sv.Length || (sv.Length > 0 && got.Sequence != sv.Sequence) {
			t.Errorf("served[%d] = %+v, the ledger publishes %+v", k, got, sv)
		}
	}
	scores, labels := fx.Direct(t, fx.Predictor(t, 1), fx.Served(t), imgs)
	classes := len(fx.Rec.Labels)
	if len(res.Predictions) != len(imgs) {
		t.Fatalf("%d predictions for %d inputs", len(res.Predictions), len(imgs))
	}
	for i, p := range res.Predictions {
		if p.Index != labels[i] || p.Label != fx.Rec.Labels[labels[i]] {
			t.Errorf("input %d: label %q (%d), direct %d", i, p.Label, p.Index, labels[i])
		}
		for c, l := range fx.Rec.Labels {
			if p.Probabilities[l] != scores[i*classes+c] {
				t.Errorf("input %d: p(%s) = %v, direct %v", i, l, p.Probabilities[l], scores[i*classes+c])
			}
		}
	}
}

func TestPredictRoute(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{})
	fx := ps.fx
	res, err := ps.c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: rawInputs(t, fx.Test)})
	if err != nil {
		t.Fatal(err)
	}
	checkNative(t, fx, res, fx.Test)

	// A deletion through the API: the very next prediction serves the truncated prefix.
	slice := fx.Sequences[0][res.Served[0].Sequence][1]
	rc, err := ps.c.DeleteSample(ctx, &api.DeleteSampleRequest{Model: fx.Name, ID: fx.Units[0][slice][0]})
	if err != nil {
		t.Fatal(err)
	}
	res, err = ps.c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: rawInputs(t, fx.Test[:3])})
	if err != nil {
		t.Fatal(err)
	}
	if res.LedgerVersion < rc.LedgerVersion || res.Served[0].Length != 1 {
		t.Fatalf("after receipt at version %d: prediction at %d serving %+v", rc.LedgerVersion, res.LedgerVersion, res.Served[0])
	}
	checkNative(t, fx, res, fx.Test[:3])
	// That prediction started on the cached state, and the ledger read beside it made it start
	// over on the new one; /metrics counts it.
	series := scrape(t, ps.URL)
	if n := value(t, series, "s3t_predictions_recomputed_total"); n != 1 {
		t.Errorf("s3t_predictions_recomputed_total = %v, want 1", n)
	}
	if n := value(t, series, "s3t_predictions_coalesced_total"); n != 0 {
		t.Errorf("s3t_predictions_coalesced_total = %v with one client, want 0", n)
	}
	// Three predictions, one of them computed twice, each one ONNX Runtime run per shard
	// serving a prefix: none of one input, and the inputs of each in its bucket.
	shards := 0
	for _, s := range res.Served {
		if s.Length > 0 {
			shards++
		}
	}
	n := float64(len(fx.Test))
	if n <= 4 {
		t.Fatalf("the fixture has %v test inputs; the buckets below assume more than 4", n)
	}
	for _, c := range []struct {
		le   string
		want float64
	}{{"1", 0}, {"2", 0}, {"4", 2 * float64(shards)}, {strconv.Itoa(bucketOf(len(fx.Test))), 3 * float64(shards)}, {"+Inf", 3 * float64(shards)}} {
		if got := value(t, series, "s3t_onnx_run_inputs_bucket", "le="+c.le); got != c.want {
			t.Errorf("s3t_onnx_run_inputs_bucket{le=%q} = %v, want %v", c.le, got, c.want)
		}
	}
	if got, want := value(t, series, "s3t_onnx_run_inputs_sum"), float64(shards)*(n+3+3); got != want {
		t.Errorf("s3t_onnx_run_inputs_sum = %v, want %v", got, want)
	}
	if got, want := value(t, series, "s3t_onnx_run_inputs_count"), 3*float64(shards); got != want {
		t.Errorf("s3t_onnx_run_inputs_count = %v, want %v", got, want)
	}
}

// bucketOf returns the upper bound of the s3t_onnx_run_inputs bucket of a run of n inputs.
func bucketOf(n int) int {
	for _, b := range serving.RunSizeBounds() {
		if n <= b {
			return b
		}
	}
	panic("no bucket")
}

func TestPredictRouteErrors(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{Untrained: true})
	fx := ps.fx
	good := rawInputs(t, fx.Test[:1])[0]
	rows := make([][]float32, 14) // the same 784 values nested 14 x 56, a layout of no image
	for i := range rows {
		rows[i] = fx.Test[0][56*i : 56*(i+1)]
	}
	other, _ := json.Marshal(rows)
	for name, tc := range map[string]struct {
		model  string
		inputs []json.RawMessage
		status int
		code   string
		msg    string
	}{
		"no inputs":   {fx.Name, nil, http.StatusBadRequest, api.CodeInvalid, "at least one input"},
		"short":       {fx.Name, []json.RawMessage{good, json.RawMessage(`[1, 2, 3]`)}, http.StatusBadRequest, api.CodeInvalid, "inputs[1]: input has 3 values, want 784"},
		"layout":      {fx.Name, []json.RawMessage{other}, http.StatusBadRequest, api.CodeInvalid, "inputs[0]: input: nested as [14 56], want [1 28 28] or flat"},
		"not numbers": {fx.Name, []json.RawMessage{json.RawMessage(`["a"]`)}, http.StatusBadRequest, api.CodeInvalid, "inputs[0]: input must be an array of numbers"},
		"object":      {fx.Name, []json.RawMessage{json.RawMessage(`{"x": 1}`)}, http.StatusBadRequest, api.CodeInvalid, "inputs[0]"},
		"unknown":     {"nope", []json.RawMessage{good}, http.StatusNotFound, api.CodeNotFound, "nope"},
		"untrained":   {fx.Name, []json.RawMessage{good}, http.StatusConflict, api.CodeConflict, "has no trained checkpoint live; train it"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ps.c.Predict(ctx, &api.PredictRequest{Name: tc.model, Inputs: tc.inputs})
			e := wantError(t, err, tc.status, tc.code)
			if !strings.Contains(e.Message, tc.msg) {
				t.Errorf("message %q lacks %q", e.Message, tc.msg)
			}
		})
	}
	// Malformed JSON and unknown fields.
	for _, body := range []string{`{"inputs": [`, `{"input": [[1]]}`} {
		resp, err := http.Post(ps.URL+"/v1/models/"+fx.Name+"/predict", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %s: status %d, want 400", body, resp.StatusCode)
		}
	}
}

// TestPredictMaxBatch: both inference routes refuse more inputs than the service's MaxBatch,
// the native one before it parses them (so the error is the count, not the first bad input).
func TestPredictMaxBatch(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServerMax(t, testmodel.Options{}, 2)
	fx := ps.fx
	bad := json.RawMessage(`["not a number"]`)
	_, err := ps.c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: []json.RawMessage{bad, bad, bad}})
	if e := wantError(t, err, http.StatusBadRequest, api.CodeInvalid); !strings.Contains(e.Message, "3 inputs, at most 2 per request") {
		t.Errorf("native route: %q", e.Message)
	}
	if _, err := ps.c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: rawInputs(t, fx.Test[:2])}); err != nil {
		t.Errorf("native route, 2 inputs: %v", err)
	}
	_, err = ps.c.InferV2Binary(ctx, fx.Name, fx.Test[:3], fx.Rec.InputShape)
	if e := wantError(t, err, http.StatusBadRequest, api.CodeInvalid); !strings.Contains(e.Message, "batch of 3, at most 2") {
		t.Errorf("v2 route: %q", e.Message)
	}
}

// TestPredictNotServing: a server without a serving.Service answers the inference routes 501.
func TestPredictNotServing(t *testing.T) {
	ts := startServer(t, server.Config{}, nil)
	c := ts.client(t, "")
	_, err := c.Predict(context.Background(), &api.PredictRequest{Name: "m", Inputs: []json.RawMessage{json.RawMessage(`[1]`)}})
	wantError(t, err, http.StatusNotImplemented, api.CodeNotImplemented)
	_, err = c.InferV2(context.Background(), &api.InferRequestV2{Name: "m"})
	wantError(t, err, http.StatusNotImplemented, api.CodeNotImplemented)
	resp := get(t, ts.URL+"/v2/health/live")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/v2/health/live = %d", resp.StatusCode)
	}
	if resp := get(t, ts.URL+"/v2/health/ready"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/v2/health/ready without serving = %d, want 400", resp.StatusCode)
	}
}

func postJSON(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	return v2Do(t, http.MethodPost, url, "", body)
}
