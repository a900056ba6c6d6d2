package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/serving"
)

// TestKServeV2 drives the Open Inference Protocol routes and checks that inference agrees
// with the native route.
func TestKServeV2(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{})
	fx := ps.fx
	for _, p := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/" + fx.Name + "/ready"} {
		if resp := get(t, ps.URL+p); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", p, resp.StatusCode)
		}
	}
	md, err := ps.c.ModelMetadataV2(ctx, &api.ModelMetadataRequestV2{Name: fx.Name})
	if err != nil {
		t.Fatal(err)
	}
	want := &api.ModelMetadataV2{Name: fx.Name, Versions: []string{"1"}, Platform: "s3t",
		Inputs: []api.MetadataTensorV2{{Name: fx.Rec.InputName, Datatype: "FP32", Shape: []int64{-1, 1, 28, 28}}},
		Outputs: []api.MetadataTensorV2{{Name: "probabilities", Datatype: "FP32", Shape: []int64{-1, 10}},
			{Name: "label", Datatype: "BYTES", Shape: []int64{-1}}}}
	if !reflect.DeepEqual(md, want) {
		t.Errorf("metadata %+v, want %+v", md, want)
	}

	imgs := fx.Test[:4]
	native, err := ps.c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: rawInputs(t, imgs)})
	if err != nil {
		t.Fatal(err)
	}
	var flat []float32
	for _, img := range imgs {
		flat = append(flat, img...)
	}
	data, _ := json.Marshal(flat)
	nested := make([][]float32, len(imgs)) // [4][784], with shape [4, 784]
	copy(nested, imgs)
	ndata, _ := json.Marshal(nested)
	for name, in := range map[string]api.InferTensorV2{
		"flat":    {Name: md.Inputs[0].Name, Datatype: "FP32", Shape: []int64{4, 1, 28, 28}, Data: data},
		"nested":  {Name: md.Inputs[0].Name, Datatype: "FP32", Shape: []int64{4, 784}, Data: ndata},
		"28x28x1": {Name: md.Inputs[0].Name, Datatype: "FP32", Shape: []int64{4, 28, 28, 1}, Data: data}, // dimensions of 1 aside, the same layout
	} {
		res, err := ps.c.InferV2(ctx, &api.InferRequestV2{Name: fx.Name, ID: "req-" + name, Inputs: []api.InferTensorV2{in}})
		if err != nil {
			t.Fatal(err)
		}
		if res.ID != "req-"+name || res.ModelName != fx.Name || res.ModelVersion != "1" || res.Parameters["ledger_version"] != float64(native.LedgerVersion) {
			t.Errorf("%s: id %q, model %q version %q, parameters %v", name, res.ID, res.ModelName, res.ModelVersion, res.Parameters)
		}
		po, lo := res.Output("probabilities"), res.Output("label")
		if po == nil || lo == nil || po.Datatype != "FP32" || !reflect.DeepEqual(po.Shape, []int64{4, 10}) ||
			lo.Datatype != "BYTES" || !reflect.DeepEqual(lo.Shape, []int64{4}) {
			t.Fatalf("%s: outputs %+v", name, res.Outputs)
		}
		probs, err := po.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		labels, err := lo.Strings()
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range native.Predictions {
			if labels[i] != p.Label {
				t.Errorf("%s: input %d label %q, native %q", name, i, labels[i], p.Label)
			}
			for c, l := range fx.Rec.Labels {
				if probs[i*10+c] != float32(p.Probabilities[l]) {
					t.Errorf("%s: input %d p(%s) = %v, native %v", name, i, l, probs[i*10+c], p.Probabilities[l])
				}
			}
		}
	}
	// Asking for one output gives that one.
	res, err := ps.c.InferV2(ctx, &api.InferRequestV2{Name: fx.Name, Outputs: []api.RequestedOutputV2{{Name: "label"}},
		Inputs: []api.InferTensorV2{{Name: md.Inputs[0].Name, Datatype: "FP32", Shape: []int64{4, 784}, Data: data}}})
	if err != nil || len(res.Outputs) != 1 || res.Outputs[0].Name != "label" {
		t.Errorf("outputs [label]: %+v, %v", res, err)
	}
}

func TestKServeV2Errors(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{Untrained: true})
	fx := ps.fx
	in := fx.Rec.InputName
	img, _ := json.Marshal(fx.Test[0])
	for name, tc := range map[string]struct {
		model, body string
		status      int
		msg         string
	}{
		"not json":       {fx.Name, `{"inputs": [`, 400, "request body"},
		"no inputs":      {fx.Name, `{"inputs": []}`, 400, "has one input"},
		"two values":     {fx.Name, `{"inputs": []} {}`, 400, "request body: invalid character '{' after top-level value"},
		"wrong name":     {fx.Name, `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, `names "x"`},
		"wrong datatype": {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "INT8", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, "want FP32"},
		"wrong shape":    {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 783], "data": ` + string(img) + `}]}`, 400, "want 784"},
		"other layout":   {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 14, 56], "data": ` + string(img) + `}]}`, 400, "want [-1 1 28 28] or each example flattened, [-1 784]"},
		"short data":     {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [2, 784], "data": ` + string(img) + `}]}`, 400, "has 784 values, want 1568"},
		"bad output":     {fx.Name, `{"outputs": [{"name": "logits"}], "inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, `no output "logits"`},
		"output twice":   {fx.Name, `{"outputs": [{"name": "label"}, {"name": "label", "parameters": {"binary_data": true}}], "inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, `output "label" is requested twice`},
		"shm input":      {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "parameters": {"shared_memory_region": "in0", "shared_memory_byte_size": 3136}}]}`, 400, `input "` + in + `": shared_memory_region: the shared memory extensions are not supported`},
		"shm output":     {fx.Name, `{"outputs": [{"name": "label", "parameters": {"shared_memory_region": "out0", "shared_memory_byte_size": 64}}], "inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, `output "label" parameters: shared_memory_region: the shared memory extensions are not supported`},
		"flag a string":  {fx.Name, `{"outputs": [{"name": "label", "parameters": {"binary_data": "true"}}], "inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, `binary_data must be a boolean, not "true"`},
		"unknown model":  {"nope", `{"inputs": []}`, 404, "nope"},
		"untrained":      {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 409, "train it"},
	} {
		t.Run(name, func(t *testing.T) {
			status, body := postJSON(t, ps.URL+"/v2/models/"+tc.model+"/infer", tc.body)
			var e api.ErrorV2
			if err := json.Unmarshal(body, &e); err != nil || status != tc.status || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("status %d body %s; want %d with an error string containing %q", status, body, tc.status, tc.msg)
			}
		})
	}
	// The client decodes the protocol's error body.
	_, err := ps.c.InferV2(ctx, &api.InferRequestV2{Name: "nope"})
	if e := wantError(t, err, http.StatusNotFound, api.CodeNotFound); !strings.Contains(e.Message, "nope") {
		t.Errorf("message %q", e.Message)
	}
	// Not ready: 400 with ready false; unknown: 404.
	resp := get(t, ps.URL+"/v2/models/"+fx.Name+"/ready")
	var rd api.ModelReadyV2
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil || resp.StatusCode != http.StatusBadRequest || rd.Ready || rd.Name != fx.Name {
		t.Errorf("untrained model ready: %d %+v %v", resp.StatusCode, rd, err)
	}
	if resp := get(t, ps.URL+"/v2/models/nope/ready"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown model ready: %d", resp.StatusCode)
	}
	if resp := get(t, ps.URL+"/v2/models/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown model metadata: %d", resp.StatusCode)
	}
}

// v2Do sends method url (with body as JSON when not empty, and key as the bearer token when
// not empty) and returns the status and body.
func v2Do(t *testing.T, method, url, key, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestKServeV2ServerMetadata checks GET /v2, and the scopes of the v2 routes: server metadata
// and health without a key, as the health routes; the versioned model routes with the infer
// scope, as the unversioned ones.
func TestKServeV2ServerMetadata(t *testing.T) {
	ts := startServer(t, server.Config{DisableRuntime: true}, map[string][]api.Scope{"i-secret": {api.ScopeInfer}, "d-secret": {api.ScopeDelete}})
	status, body := v2Do(t, http.MethodGet, ts.URL+"/v2", "", "")
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || status != http.StatusOK {
		t.Fatalf("GET /v2 = %d %s (%v)", status, body, err)
	}
	if v, _ := raw["version"].(string); raw["name"] != "s3t" || v == "" || !reflect.DeepEqual(raw["extensions"], []any{"binary_tensor_data", "classification"}) || len(raw) != 3 {
		t.Errorf("GET /v2 = %s, want name s3t, a version and extensions [binary_tensor_data classification]", body)
	}
	md, err := ts.client(t, "").ServerMetadataV2(context.Background(), &api.ServerMetadataRequestV2{})
	if err != nil || md.Name != "s3t" || md.Version != raw["version"] || !slices.Equal(md.Extensions, []string{api.ExtensionBinaryTensorDataV2, api.ExtensionClassificationV2}) {
		t.Errorf("client ServerMetadataV2 = %+v, %v", md, err)
	}
	if status, body := v2Do(t, http.MethodHead, ts.URL+"/v2", "", ""); status != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /v2 = %d %q", status, body)
	}
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/v2/models/m/versions/1", ""},
		{http.MethodGet, "/v2/models/m/versions/1/ready", ""},
		{http.MethodPost, "/v2/models/m/versions/1/infer", `{"inputs": []}`},
	} {
		for key, want := range map[string]int{"": http.StatusUnauthorized, "d-secret": http.StatusForbidden, "i-secret": http.StatusNotImplemented} {
			status, body := v2Do(t, r.method, ts.URL+r.path, key, r.body)
			var e api.ErrorV2
			if err := json.Unmarshal(body, &e); err != nil || status != want || e.Error == "" {
				t.Errorf("%s %s with key %q = %d %s, want %d with the protocol's error body", r.method, r.path, key, status, body, want)
			}
		}
	}
}

// TestKServeV2Versions checks the versioned forms: the version a model's metadata lists, "1",
// answers exactly as the unversioned form; any other is 404 with the protocol's error body
// naming it.
func TestKServeV2Versions(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{})
	fx := ps.fx
	base := ps.URL + "/v2/models/" + fx.Name
	md, err := ps.c.ModelMetadataV2(ctx, &api.ModelMetadataRequestV2{Name: fx.Name})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(md.Versions, []string{"1"}) {
		t.Fatalf("metadata versions %q, want [1]", md.Versions)
	}
	vmd, err := ps.c.ModelMetadataV2(ctx, &api.ModelMetadataRequestV2{Name: fx.Name, Version: "1"})
	if err != nil || !reflect.DeepEqual(vmd, md) {
		t.Errorf("metadata at version 1: %+v, %v; unversioned %+v", vmd, err, md)
	}
	imgs := fx.Test[:3]
	var flat []float32
	for _, img := range imgs {
		flat = append(flat, img...)
	}
	data, _ := json.Marshal(flat)
	infer := `{"id": "x", "inputs": [{"name": "` + md.Inputs[0].Name + `", "datatype": "FP32", "shape": [3, 784], "data": ` + string(data) + `}]}`
	// The same bytes, status and body, for every route in both forms.
	for _, r := range []struct{ method, suffix, body string }{
		{http.MethodGet, "", ""},
		{http.MethodGet, "/ready", ""},
		{http.MethodPost, "/infer", infer},
	} {
		ustatus, ubody := v2Do(t, r.method, base+r.suffix, "", r.body)
		vstatus, vbody := v2Do(t, r.method, base+"/versions/1"+r.suffix, "", r.body)
		if ustatus != http.StatusOK || vstatus != ustatus || !bytes.Equal(vbody, ubody) {
			t.Errorf("%s %s: version 1 %d %s; unversioned %d %s", r.method, r.suffix, vstatus, vbody, ustatus, ubody)
		}
	}
	res, err := ps.c.InferV2(ctx, &api.InferRequestV2{Name: fx.Name, Version: "1",
		Inputs: []api.InferTensorV2{{Name: md.Inputs[0].Name, Datatype: "FP32", Shape: []int64{3, 784}, Data: data}}})
	if err != nil || res.ModelVersion != "1" || res.ModelName != fx.Name || len(res.Outputs) != 2 {
		t.Fatalf("infer at version 1: %+v, %v", res, err)
	}
	// The binary tensor data extension on the versioned route.
	header := `{"parameters": {"binary_data_output": true}, "inputs": [{"name": "` + md.Inputs[0].Name + `", "datatype": "FP32", "shape": [3, 784], "parameters": {"binary_data_size": ` + strconv.Itoa(4*784*3) + `}}]}`
	status, hl, body := postBinary(t, base+"/versions/1/infer", header, fp32Bytes(imgs), "")
	if status != http.StatusOK || hl == "" {
		t.Fatalf("binary infer at version 1: %d (header length %q) %.200s", status, hl, body)
	}
	bres, err := api.DecodeInferResponseV2(body, hl)
	if err != nil {
		t.Fatal(err)
	}
	bprobs, err1 := bres.Output("probabilities").Float32s()
	probs, err2 := res.Output("probabilities").Float32s()
	if err1 != nil || err2 != nil || !slices.Equal(bprobs, probs) || bres.ModelVersion != "1" {
		t.Errorf("binary infer at version 1: probabilities %v (%v), JSON %v (%v), version %q", bprobs, err1, probs, err2, bres.ModelVersion)
	}

	// Any other version is 404, named, on every route and before the body is read.
	for _, v := range []string{"2", "0", "01", "v1", "latest"} {
		for _, r := range []struct{ method, suffix, body string }{
			{http.MethodGet, "", ""},
			{http.MethodGet, "/ready", ""},
			{http.MethodPost, "/infer", infer},
			{http.MethodPost, "/infer", `{"inputs": [`},
		} {
			status, body := v2Do(t, r.method, base+"/versions/"+v+r.suffix, "", r.body)
			var e api.ErrorV2
			if err := json.Unmarshal(body, &e); err != nil || status != http.StatusNotFound || !strings.Contains(e.Error, strconv.Quote(v)) || !strings.Contains(e.Error, fx.Name) {
				t.Errorf("%s version %q%s: %d %s; want 404 with an error naming the version and the model", r.method, v, r.suffix, status, body)
			}
		}
	}
	if status, body := v2Do(t, http.MethodHead, base+"/versions/2/ready", "", ""); status != http.StatusNotFound || len(body) != 0 {
		t.Errorf("HEAD at version 2: %d %q", status, body)
	}
	_, err = ps.c.ModelMetadataV2(ctx, &api.ModelMetadataRequestV2{Name: fx.Name, Version: "2"})
	if e := wantError(t, err, http.StatusNotFound, api.CodeNotFound); !strings.Contains(e.Message, `"2"`) {
		t.Errorf("client metadata at version 2: %q", e.Message)
	}
	_, err = ps.c.InferV2(ctx, &api.InferRequestV2{Name: fx.Name, Version: "2"})
	if e := wantError(t, err, http.StatusNotFound, api.CodeNotFound); !strings.Contains(e.Message, `"2"`) {
		t.Errorf("client infer at version 2: %q", e.Message)
	}
	// An unknown model at version 1 is the unknown model's 404.
	for _, suffix := range []string{"", "/ready"} {
		status, body := v2Do(t, http.MethodGet, ps.URL+"/v2/models/nope/versions/1"+suffix, "", "")
		if status != http.StatusNotFound || !strings.Contains(v2Message(t, body), `"nope"`) {
			t.Errorf("unknown model at version 1%s: %d %s", suffix, status, body)
		}
	}
}

// TestKServeV2ServerReady checks that the server is ready (the protocol's "all the models are
// ready for inferencing") exactly when every model's own ready route says 200, while /readyz,
// the Kubernetes probe, stays 200.
func TestKServeV2ServerReady(t *testing.T) {
	ctx := context.Background()
	serverReady := func(t *testing.T, url string, want bool) {
		t.Helper()
		status, body := v2Do(t, http.MethodGet, url+"/v2/health/ready", "", "")
		var h api.HealthV2
		if err := json.Unmarshal(body, &h); err != nil || h.Ready == nil || *h.Ready != want || (status == http.StatusOK) != want ||
			(!want && status != http.StatusBadRequest) {
			t.Errorf("GET /v2/health/ready = %d %s, want ready %v", status, body, want)
		}
		wantStatus := http.StatusOK
		if !want {
			wantStatus = http.StatusBadRequest
		}
		if status, _ := v2Do(t, http.MethodHead, url+"/v2/health/ready", "", ""); status != wantStatus {
			t.Errorf("HEAD /v2/health/ready = %d, want %d", status, wantStatus)
		}
		if status, body := v2Do(t, http.MethodGet, url+"/readyz", "", ""); status != http.StatusOK {
			t.Errorf("GET /readyz = %d %s", status, body)
		}
	}
	modelReady := func(t *testing.T, url, name string, want int) {
		t.Helper()
		status, body := v2Do(t, http.MethodGet, url+"/v2/models/"+name+"/ready", "", "")
		var rd api.ModelReadyV2
		if err := json.Unmarshal(body, &rd); err != nil || status != want || rd.Name != name || rd.Ready != (want == http.StatusOK) {
			t.Errorf("GET /v2/models/%s/ready = %d %s, want %d", name, status, body, want)
		}
	}

	t.Run("no models", func(t *testing.T) {
		st, blobs := testmodel.OpenStore(t)
		svc, err := serving.New(serving.Config{Store: st, Blobs: blobs, Pool: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		ts := startServer(t, server.Config{Store: st, Blobs: blobs, Serving: svc, DisableRuntime: true}, nil)
		serverReady(t, ts.URL, true)
	})

	ps := newPredictServer(t, testmodel.Options{})
	serverReady(t, ps.URL, true)
	modelReady(t, ps.URL, ps.fx.Name, http.StatusOK)

	// A second model, created and not trained: it serves nothing, so the server is not ready.
	testmodel.New(t, ps.fx.Store, ps.fx.Blobs, testmodel.Options{Name: "pending", Untrained: true})
	modelReady(t, ps.URL, ps.fx.Name, http.StatusOK)
	modelReady(t, ps.URL, "pending", http.StatusBadRequest)
	serverReady(t, ps.URL, false)
	// Predictions of the ready model go on.
	if _, err := ps.c.Predict(ctx, &api.PredictRequest{Name: ps.fx.Name, Inputs: rawInputs(t, ps.fx.Test[:1])}); err != nil {
		t.Errorf("predict while the server is not ready: %v", err)
	}

	// Once it is gone, every model is ready again.
	if _, err := ps.c.DeleteModel(ctx, &api.DeleteModelRequest{Name: "pending"}); err != nil {
		t.Fatal(err)
	}
	serverReady(t, ps.URL, true)
}

// TestKServeV2Classification checks the classification extension as tritonclient's
// InferRequestedOutput(name, class_count=k) asks for it: output "probabilities" with parameters
// {"classification": k, "binary_data": ...} answers BYTES [n, k], each "<value>:<index>:<label>",
// the k most probable classes of each example, most probable first, in JSON or binary alike.
func TestKServeV2Classification(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{})
	fx := ps.fx
	in := fx.Rec.InputName
	imgs := fx.Test[:3]
	var flat []float32
	for _, img := range imgs {
		flat = append(flat, img...)
	}
	data, _ := json.Marshal(flat)
	full, err := ps.c.InferV2(ctx, &api.InferRequestV2{Name: fx.Name, Outputs: []api.RequestedOutputV2{{Name: "probabilities"}},
		Inputs: []api.InferTensorV2{{Name: in, Datatype: "FP32", Shape: []int64{3, 784}, Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	probs, err := full.Output("probabilities").Float32s()
	if err != nil {
		t.Fatal(err)
	}
	const k = 3
	var want []string // the top k of each example, from the probabilities output
	for i := range imgs {
		row := probs[i*10 : (i+1)*10]
		idx := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case row[a] > row[b]:
				return -1
			case row[a] < row[b]:
				return 1
			}
			return 0
		})
		for _, c := range idx[:k] {
			want = append(want, strconv.FormatFloat(float64(row[c]), 'f', -1, 32)+":"+strconv.Itoa(c)+":"+fx.Rec.Labels[c])
		}
	}
	for _, bin := range []bool{false, true} {
		res, err := ps.c.InferV2(ctx, &api.InferRequestV2{Name: fx.Name, ID: "cls",
			Outputs: []api.RequestedOutputV2{{Name: "probabilities", Parameters: map[string]any{"classification": k, "binary_data": bin}}, {Name: "label"}},
			Inputs:  []api.InferTensorV2{{Name: in, Datatype: "FP32", Shape: []int64{3, 784}, Data: data}}})
		if bin {
			// The client's InferV2 reads JSON: read the binary answer by hand.
			header := `{"outputs": [{"name": "probabilities", "parameters": {"classification": 3, "binary_data": true}}, {"name": "label"}], "inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [3, 784], "parameters": {"binary_data_size": ` + strconv.Itoa(4*784*3) + `}}]}`
			status, hl, body := postBinary(t, ps.URL+"/v2/models/"+fx.Name+"/infer", header, fp32Bytes(imgs), "")
			if status != http.StatusOK || hl == "" {
				t.Fatalf("binary classification: %d (header length %q) %.300s", status, hl, body)
			}
			res, err = api.DecodeInferResponseV2(body, hl)
		}
		if err != nil {
			t.Fatalf("binary %v: %v", bin, err)
		}
		o := res.Output("probabilities")
		if o == nil || o.Datatype != "BYTES" || !slices.Equal(o.Shape, []int64{3, k}) || (o.Binary != nil) != bin {
			t.Fatalf("binary %v: classification output %+v", bin, o)
		}
		got, err := o.Strings()
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("binary %v: classifications %q (%v), want %q", bin, got, err, want)
		}
		labels, _ := res.Output("label").Strings()
		for i, l := range labels {
			if !strings.HasSuffix(got[i*k], ":"+l) {
				t.Errorf("binary %v: example %d: top class %q, label output %q", bin, i, got[i*k], l)
			}
		}
	}
	// The server metadata lists the extension; a count out of range, not a whole number, or on
	// the label output is refused, naming it.
	md, err := ps.c.ServerMetadataV2(ctx, &api.ServerMetadataRequestV2{})
	if err != nil || !slices.Contains(md.Extensions, "classification") {
		t.Errorf("server metadata %+v, %v: want the classification extension listed", md, err)
	}
	for _, tc := range []struct{ output, value, msg string }{
		{"probabilities", `0`, "classification must be a number of classes from 1 to 10, not 0"},
		{"probabilities", `11`, "from 1 to 10, not 11"},
		{"probabilities", `2.5`, "not 2.5"},
		{"probabilities", `"3"`, `not "3"`},
		{"label", `1`, `classification applies to output "probabilities"`},
	} {
		body := `{"outputs": [{"name": "` + tc.output + `", "parameters": {"classification": ` + tc.value + `}}], "inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [3, 784], "data": ` + string(data) + `}]}`
		status, b := postJSON(t, ps.URL+"/v2/models/"+fx.Name+"/infer", body)
		if status != http.StatusBadRequest || !strings.Contains(v2Message(t, b), tc.msg) {
			t.Errorf("%s classification %s: %d %s, want 400 containing %q", tc.output, tc.value, status, b, tc.msg)
		}
	}
}
