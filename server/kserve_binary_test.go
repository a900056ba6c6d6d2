package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testmodel"
)

// fp32Bytes is imgs as the binary extension's FP32 data: little-endian, row-major.
func fp32Bytes(imgs [][]float32) []byte {
	var b []byte
	for _, img := range imgs {
		for _, v := range img {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

// postBinary posts header (JSON) followed by data with Inference-Header-Content-Length set to
// hl (len(header) when empty) and returns the response's status, header length and body.
func postBinary(t *testing.T, url, header string, data []byte, hl string) (int, string, []byte) {
	t.Helper()
	if hl == "" {
		hl = strconv.Itoa(len(header))
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(append([]byte(header), data...)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(api.HeaderInferenceHeaderContentLength, hl)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get(api.HeaderInferenceHeaderContentLength), b
}

// TestKServeV2Binary checks that the binary tensor data extension gives the JSON v2 route's
// and the native route's answers exactly, inputs and outputs binary.
func TestKServeV2Binary(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{})
	fx := ps.fx
	in := fx.Rec.InputName
	for _, n := range []int{1, 5} {
		imgs := fx.Test[:n]
		native, err := ps.c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: rawInputs(t, imgs)})
		if err != nil {
			t.Fatal(err)
		}
		var flat []float32
		for _, img := range imgs {
			flat = append(flat, img...)
		}
		data, _ := json.Marshal(flat)
		jres, err := ps.c.InferV2(ctx, &api.InferRequestV2{Name: fx.Name,
			Inputs: []api.InferTensorV2{{Name: in, Datatype: "FP32", Shape: []int64{int64(n), 1, 28, 28}, Data: data}}})
		if err != nil {
			t.Fatal(err)
		}
		jprobs, err := jres.Output("probabilities").Float32s()
		if err != nil {
			t.Fatal(err)
		}
		jlabels, _ := jres.Output("label").Strings()

		// The client: binary input, binary probabilities, JSON labels.
		bres, err := ps.c.InferV2Binary(ctx, fx.Name, imgs, []int64{1, 28, 28})
		if err != nil {
			t.Fatal(err)
		}
		po, lo := bres.Output("probabilities"), bres.Output("label")
		if po == nil || lo == nil || po.Binary == nil || len(po.Data) != 0 || lo.Binary != nil ||
			!reflect.DeepEqual(po.Shape, []int64{int64(n), 10}) || po.Parameters["binary_data_size"] != float64(4*n*10) {
			t.Fatalf("batch %d: outputs %+v", n, bres.Outputs)
		}
		if bres.Parameters["ledger_version"] != float64(native.LedgerVersion) {
			t.Errorf("batch %d: parameters %v, native ledger version %d", n, bres.Parameters, native.LedgerVersion)
		}
		bprobs, err := po.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		blabels, err := lo.Strings()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(bprobs, jprobs) || !reflect.DeepEqual(blabels, jlabels) {
			t.Errorf("batch %d: binary %v %v, JSON v2 %v %v", n, bprobs, blabels, jprobs, jlabels)
		}
		for i, p := range native.Predictions {
			if blabels[i] != p.Label {
				t.Errorf("batch %d: input %d label %q, native %q", n, i, blabels[i], p.Label)
			}
			for c, l := range fx.Rec.Labels {
				if bprobs[i*10+c] != float32(p.Probabilities[l]) {
					t.Errorf("batch %d: input %d p(%s) = %v, native %v", n, i, l, bprobs[i*10+c], p.Probabilities[l])
				}
			}
		}

		// Binary input, JSON outputs: the JSON v2 answer exactly; then every output binary
		// (binary_data_output), labels in the BYTES encoding.
		header := `{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [` + strconv.Itoa(n) + `, 784], "parameters": {"binary_data_size": ` + strconv.Itoa(4*784*n) + `}}]}`
		status, hl, body := postBinary(t, ps.URL+"/v2/models/"+fx.Name+"/infer", header, fp32Bytes(imgs), "")
		if status != http.StatusOK || hl != "" {
			t.Fatalf("batch %d, JSON outputs: %d (header length %q) %s", n, status, hl, body)
		}
		res, err := api.DecodeInferResponseV2(body, hl)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Outputs, jres.Outputs) {
			t.Errorf("batch %d: binary input, JSON outputs %+v; JSON v2 %+v", n, res.Outputs, jres.Outputs)
		}
		header = `{"parameters": {"binary_data_output": true}, ` + header[1:]
		status, hl, body = postBinary(t, ps.URL+"/v2/models/"+fx.Name+"/infer", header, fp32Bytes(imgs), "")
		if status != http.StatusOK || hl == "" {
			t.Fatalf("batch %d, binary outputs: %d (header length %q) %s", n, status, hl, body)
		}
		if res, err = api.DecodeInferResponseV2(body, hl); err != nil {
			t.Fatal(err)
		}
		probs, err := res.Output("probabilities").Float32s()
		if err != nil {
			t.Fatal(err)
		}
		labels, err := res.Output("label").Strings()
		if err != nil {
			t.Fatal(err)
		}
		if res.Output("label").Binary == nil || !reflect.DeepEqual(probs, jprobs) || !reflect.DeepEqual(labels, jlabels) {
			t.Errorf("batch %d: binary outputs %v %v, JSON v2 %v %v", n, probs, labels, jprobs, jlabels)
		}
		// A per-output binary_data false wins over binary_data_output.
		h2 := `{"parameters": {"binary_data_output": true}, "outputs": [{"name": "label", "parameters": {"binary_data": false}}], ` + header[len(`{"parameters": {"binary_data_output": true}, `):]
		status, hl, body = postBinary(t, ps.URL+"/v2/models/"+fx.Name+"/infer", h2, fp32Bytes(imgs), "")
		if status != http.StatusOK || hl != "" {
			t.Fatalf("batch %d, label binary_data false: %d (header length %q) %s", n, status, hl, body)
		}
	}
}

func TestKServeV2BinaryErrors(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{Untrained: true})
	fx := ps.fx
	in := fx.Rec.InputName
	img := fp32Bytes(fx.Test[:1])
	nan := binary.LittleEndian.AppendUint32(bytes.Clone(img[:4*783]), math.Float32bits(float32(math.NaN())))
	jimg, _ := json.Marshal(fx.Test[0])
	input := func(datatype string, size int, extra string) string {
		return `{"inputs": [{"name": "` + in + `", "datatype": "` + datatype + `", "shape": [1, 784], "parameters": {"binary_data_size": ` + strconv.Itoa(size) + `}` + extra + `}]}`
	}
	good := input("FP32", 3136, "")
	for name, tc := range map[string]struct {
		header string
		data   []byte
		hl     string
		status int
		msg    string
	}{
		"length not a number": {good, img, "abc", 400, `Inference-Header-Content-Length: "abc" is not a positive length`},
		"length zero":         {good, img, "0", 400, "not a positive length"},
		"length past body":    {good, img, "99999", 400, "but the body has only 3"},
		"length cuts json":    {good, img, strconv.Itoa(len(good) - 3), 400, "request header (the first"},
		"size not shape x 4":  {input("FP32", 3000, ""), img, "", 400, "binary_data_size 3000, want 3136 (shape [1 784] x 4 bytes of FP32)"},
		"size not a count":    {strings.Replace(good, "3136", "31.5", 1), img, "", 400, "is not a byte count"},
		"non-FP32":            {input("INT8", 784, ""), img[:784], "", 400, `binary_data_size given for datatype "INT8"; binary data is supported for FP32 only`},
		"short data":          {good, img[:3000], "", 400, "binary_data_size 3136, but the body has only 3000 bytes"},
		"trailing bytes":      {good, append(bytes.Clone(img), 0, 0, 0, 0), "", 400, "4 trailing bytes after input"},
		"trailing, json data": {`{"inputs": [{"name": "` + in + `", "datatype": "FP32", "shape": [1, 784], "data": ` + string(jimg) + `}]}`, img, "", 400, "3136 trailing bytes after the JSON header, but no input has binary_data_size"},
		"data and binary":     {input("FP32", 3136, `, "data": [1]`), img, "", 400, "both data and binary_data_size"},
		"not finite":          {good, nan, "", 400, "value 783 (NaN) is not a finite float32"},
		"bad output flag":     {`{"parameters": {"binary_data_output": "yes"}, ` + good[1:], img, "", 400, "binary_data_output must be a boolean"},
	} {
		t.Run(name, func(t *testing.T) {
			status, _, body := postBinary(t, ps.URL+"/v2/models/"+fx.Name+"/infer", tc.header, tc.data, tc.hl)
			var e api.ErrorV2
			if err := json.Unmarshal(body, &e); err != nil || status != tc.status || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("status %d body %s; want %d with an error string containing %q", status, body, tc.status, tc.msg)
			}
		})
	}
	// A compressed body (tritonclient's request_compression_algorithm "gzip" or "deflate") is a
	// 415 naming its coding, with Accept-Encoding saying what is read, not a JSON syntax error.
	for _, ce := range []string{"gzip", "deflate"} {
		req, err := http.NewRequest(http.MethodPost, ps.URL+"/v2/models/"+fx.Name+"/infer", strings.NewReader("\x1f\x8b\x08\x00"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Encoding", ce)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("Accept-Encoding") != "identity" ||
			!strings.Contains(v2Message(t, b), `Content-Encoding "`+ce+`": request bodies are read uncompressed`) {
			t.Errorf("Content-Encoding %s: %d (Accept-Encoding %q) %s", ce, resp.StatusCode, resp.Header.Get("Accept-Encoding"), b)
		}
	}
	// binary_data_size in a plain JSON body (no header length).
	status, body := postJSON(t, ps.URL+"/v2/models/"+fx.Name+"/infer", good)
	var e api.ErrorV2
	if json.Unmarshal(body, &e) != nil || status != 400 || !strings.Contains(e.Error, "no Inference-Header-Content-Length header") {
		t.Errorf("binary_data_size without the header: %d %s", status, body)
	}
	// A well-formed binary request reaches the model: the untrained one's 409.
	status, _, body = postBinary(t, ps.URL+"/v2/models/"+fx.Name+"/infer", good, img, "")
	if status != http.StatusConflict {
		t.Errorf("untrained model, binary request: %d %s", status, body)
	}
	// The client decodes the errors; a shape that does not match the values is refused locally.
	_, err := ps.c.InferV2Binary(ctx, fx.Name, fx.Test[:1], []int64{1, 28, 28})
	if e := wantError(t, err, http.StatusConflict, api.CodeConflict); !strings.Contains(e.Message, "train it") {
		t.Errorf("message %q", e.Message)
	}
	_, err = ps.c.InferV2Binary(ctx, "nope", fx.Test[:1], nil)
	wantError(t, err, http.StatusNotFound, api.CodeNotFound)
	if _, err := ps.c.InferV2Binary(ctx, fx.Name, fx.Test[:1], []int64{1, 28, 27}); err == nil || !strings.Contains(err.Error(), "shape [1 28 27] holds 756") {
		t.Errorf("client shape check: %v", err)
	}
}
