package api

import (
	"encoding/json"
	"strconv"
	"testing"
)

// BenchmarkV2Headers times encoding/json on the JSON headers of one single-input KServe v2
// binary inference: the request header the client encodes (InferV2Binary) and the server
// decodes, and the response header the server encodes and the client decodes
// (DecodeInferResponseV2, with the 40 bytes of binary probabilities after it).
//
//	go test ./api -run '^$' -bench V2Headers
func BenchmarkV2Headers(b *testing.B) {
	req := &InferRequestV2{
		Inputs: []InferTensorV2{{Name: "pixel_values", Datatype: "FP32", Shape: []int64{1, 1, 28, 28},
			Parameters: map[string]any{"binary_data_size": 4 * 784}}},
		Outputs: []RequestedOutputV2{{Name: "probabilities", Parameters: map[string]any{"binary_data": true}}, {Name: "label"}},
	}
	res := &InferResponseV2{ModelName: "bench-lora", Parameters: map[string]any{"ledger_version": 1234},
		Outputs: []InferTensorV2{
			{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 10}, Parameters: map[string]any{"binary_data_size": 40}},
			{Name: "label", Datatype: "BYTES", Shape: []int64{1}, Data: json.RawMessage(`["7"]`)},
		}}
	reqHeader, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	resHeader, err := json.Marshal(res)
	if err != nil {
		b.Fatal(err)
	}
	resBody := append(resHeader, make([]byte, 40)...)
	b.Run("request-encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("request-decode", func(b *testing.B) {
		for b.Loop() {
			var r InferRequestV2
			if err := json.Unmarshal(reqHeader, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("response-encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(res); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("response-decode", func(b *testing.B) {
		hl := strconv.Itoa(len(resHeader))
		for b.Loop() {
			out, err := DecodeInferResponseV2(resBody, hl)
			if err != nil || len(out.Outputs[0].Binary) != 40 {
				b.Fatal(out, err)
			}
		}
	})
}
