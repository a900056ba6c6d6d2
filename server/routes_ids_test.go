package server_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/server"
)

// TestSampleIDsNeedingEscapes checks that ids with spaces, slashes and percent signs round-trip
// through URL paths.
func TestSampleIDsNeedingEscapes(t *testing.T) {
	ts := startServer(t, server.Config{DisableRuntime: true}, nil)
	ctx := context.Background()
	c := ts.client(t, "")
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"a b", "dir/file", "100%", "ünï", "q?x=1#f"}
	var samples []api.Sample
	for _, id := range ids {
		samples = append(samples, api.Sample{ID: id, Input: json.RawMessage(pixels(0)), Label: "a"})
	}
	if _, err := c.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "m", Samples: samples}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			info, err := c.GetSample(ctx, &api.GetSampleRequest{Model: "m", ID: id})
			if err != nil || info.ID != id {
				t.Fatalf("get %q = %+v, %v", id, info, err)
			}
			rc, err := c.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "m", ID: id})
			if err != nil || rc.SampleID != id {
				t.Fatalf("delete %q = %+v, %v", id, rc, err)
			}
		})
	}
}
