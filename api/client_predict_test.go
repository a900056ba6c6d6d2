package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPredictBody: the hand-built predict body decodes to the same request as json.Marshal's,
// and an empty input fails in the client, before anything is sent (the server judges the rest).
func TestPredictBody(t *testing.T) {
	tests := []struct {
		name    string
		inputs  []json.RawMessage
		wantErr string
	}{
		{"one", []json.RawMessage{json.RawMessage(`[0.5,1,-2e-3]`)}, ""},
		{"nested and spaced", []json.RawMessage{json.RawMessage(" [[1, 2], [3, 4]]\n"), json.RawMessage(`[5]`)}, ""},
		{"none", nil, ""},
		{"an object, for the server to refuse", []json.RawMessage{json.RawMessage(`{"a":[1]}`)}, ""},
		{"empty", []json.RawMessage{json.RawMessage(`[1]`), json.RawMessage(` `)}, "inputs[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []byte
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, _ = io.ReadAll(r.Body)
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				w.Write([]byte(`{"model":"m","predictions":[],"served":[]}`))
			}))
			defer ts.Close()
			c, err := NewClient(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Predict(context.Background(), &PredictRequest{Name: "m", Inputs: tt.inputs})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != nil {
					t.Fatalf("err = %v (sent %q), want an error naming %s and nothing sent", err, got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var sent, want PredictRequest
			if err := json.Unmarshal(got, &sent); err != nil {
				t.Fatalf("body %q: %v", got, err)
			}
			ref, _ := json.Marshal(&PredictRequest{Inputs: tt.inputs})
			if err := json.Unmarshal(ref, &want); err != nil {
				t.Fatal(err)
			}
			if len(sent.Inputs) != len(want.Inputs) {
				t.Fatalf("sent %d inputs, want %d", len(sent.Inputs), len(want.Inputs))
			}
			for i := range want.Inputs {
				var a, b bytes.Buffer
				json.Compact(&a, sent.Inputs[i])
				json.Compact(&b, want.Inputs[i])
				if a.String() != b.String() {
					t.Errorf("input %d: sent %s, want %s", i, a.String(), b.String())
				}
			}
		})
	}
}

// BenchmarkPredictBody compares the predict body built by hand with json.Marshal's, for one
// 28x28 input.
//
//	go test ./api -run '^$' -bench PredictBody
func BenchmarkPredictBody(b *testing.B) {
	v := make([]float32, 784)
	for i := range v {
		v[i] = float32(i%255) / 255
	}
	raw, _ := json.Marshal(v)
	req := &PredictRequest{Name: "m", Inputs: []json.RawMessage{raw}}
	b.Run("by-hand", func(b *testing.B) {
		for b.Loop() {
			if _, err := req.body(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
