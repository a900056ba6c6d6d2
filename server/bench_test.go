package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/server"
)

// BenchmarkDeleteOverHTTP measures deletion latency, request to receipt, through the api client
// against the real server on SQLite (one sample per iteration); it reports p50 and p99.
func BenchmarkDeleteOverHTTP(b *testing.B) {
	ts := startServer(b, server.Config{DisableRuntime: true}, nil)
	ctx := context.Background()
	c, err := api.NewClient(ts.URL)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		b.Fatal(err)
	}
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 4, Slices: 8, Sequences: 3}}
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		b.Fatal(err)
	}
	samples := make([]api.Sample, b.N)
	for i := range samples {
		samples[i] = api.Sample{ID: fmt.Sprintf("s%07d", i), Input: json.RawMessage(`[0.5,0.25]`), Label: "a"}
	}
	if _, err := c.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "m", Samples: samples}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "m", ID: samples[i].ID}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}
