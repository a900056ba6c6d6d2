package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/serving"
)

// BenchmarkPredictHTTP compares, in one process, a prediction of one input through the whole
// HTTP route (client JSON, Echo, parsing, serving, response), and through the KServe v2 route
// with binary tensor data, with serving.Service.Predict alone: the routes' own cost.
//
//	go test ./server -run '^$' -bench PredictHTTP -count 5
func BenchmarkPredictHTTP(b *testing.B) {
	st, blobs := testmodel.OpenStore(b)
	fx := testmodel.New(b, st, blobs, testmodel.Options{Samples: 48})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := serving.New(serving.Config{Store: st, Blobs: blobs, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Serving: svc, Logger: quiet, DisableRuntime: true})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	c, err := api.NewClient(hs.URL)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	img := fx.Test[0]
	raw, _ := json.Marshal(img)
	b.Run("http", func(b *testing.B) {
		req := &api.PredictRequest{Name: fx.Name, Inputs: []json.RawMessage{raw}}
		for b.Loop() {
			if _, err := c.Predict(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("v2-binary", func(b *testing.B) { // KServe v2 with the binary tensor data extension
		for b.Loop() {
			if _, err := c.InferV2Binary(ctx, fx.Name, [][]float32{img}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	body, _ := json.Marshal(&api.PredictRequest{Inputs: []json.RawMessage{raw}})
	b.Run("handler", func(b *testing.B) { // the route without a network or a client
		h := srv.Handler()
		for b.Loop() {
			req := httptest.NewRequest("POST", "/v1/models/"+fx.Name+"/predict", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code, rec.Body.String())
			}
		}
	})
	b.Run("service", func(b *testing.B) {
		for b.Loop() {
			if _, err := svc.Predict(ctx, fx.Name, [][]float32{img}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A request's context can be cancelled; ONNX Runtime then runs with run options that a
	// cancellation terminates.
	b.Run("service-cancellable", func(b *testing.B) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for b.Loop() {
			if _, err := svc.Predict(cctx, fx.Name, [][]float32{img}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
