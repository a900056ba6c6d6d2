package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testmodel"
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
	want := &api.ModelMetadataV2{Name: fx.Name, Platform: "s3t",
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
		if res.ID != "req-"+name || res.ModelName != fx.Name || res.Parameters["ledger_version"] != float64(native.LedgerVersion) {
			t.Errorf("%s: id %q, model %q, parameters %v", name, res.ID, res.ModelName, res.Parameters)
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
		"wrong name":     {fx.Name, `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, `names "x"`},
		"wrong datatype": {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "INT8", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, "want FP32"},
		"wrong shape":    {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 783], "data": ` + string(img) + `}]}`, 400, "want 784"},
		"other layout":   {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 14, 56], "data": ` + string(img) + `}]}`, 400, "want [-1 1 28 28] or each example flattened, [-1 784]"},
		"short data":     {fx.Name, `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [2, 784], "data": ` + string(img) + `}]}`, 400, "has 784 values, want 1568"},
		"bad output":     {fx.Name, `{"outputs": [{"name": "logits"}], "inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "data": ` + string(img) + `}]}`, 400, `no output "logits"`},
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
