package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/server"
)

// TestSampleIDsNeedingEscapes checks that ids with spaces, slashes and percent signs round-trip
// through URL paths.
func TestSampleIDsNeedingEscapes(t *testing.T) {
	ctx := context.Background()
	_, c := untrainedModel(t)
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

// TestSampleIDLimits checks that an upload refuses an id too long for paths and receipts, one
// holding a control character, one that would be stored as another id, or one no URL path can
// address, naming the line, and stores nothing.
func TestSampleIDLimits(t *testing.T) {
	ctx := context.Background()
	_, c := untrainedModel(t)
	for _, tt := range []struct {
		id, msg string
		ok      bool
	}{
		{strings.Repeat("x", 512), "", true},
		{strings.Repeat("x", 513), "over 512", false},
		{"nul\x00id", "control character", false},
		{"tab\tid", "control character", false},
		{"new\nline", "control character", false},
		// JSON decoding turns invalid UTF-8 (and lone surrogates) into U+FFFD: the id stored
		// would not be the one sent, and deleting by the id sent answered 404.
		{"bad\xffutf8", "not valid UTF-8", false},
		{"fffd\ufffd", "U+FFFD", false},
		{".", "cannot be addressed in a URL path", false},
		{"..", "cannot be addressed in a URL path", false},
		{"a.b/..c", "", true},
	} {
		t.Run(fmt.Sprintf("%.12q", tt.id), func(t *testing.T) {
			good := api.Sample{ID: "good-" + fmt.Sprint(len(tt.id)), Input: json.RawMessage(pixels(0)), Label: "a"}
			_, err := c.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "m", Samples: []api.Sample{good, {ID: tt.id, Input: json.RawMessage(pixels(0)), Label: "a"}}})
			if tt.ok {
				if err != nil {
					t.Fatalf("upload: %v", err)
				}
				return
			}
			e := wantError(t, err, 400, api.CodeInvalid)
			if len(e.Lines) != 1 || e.Lines[0].Line != 2 || !strings.Contains(e.Lines[0].Message, tt.msg) {
				t.Fatalf("line errors %+v, want line 2: %s", e.Lines, tt.msg)
			}
			if _, err := c.GetSample(ctx, &api.GetSampleRequest{Model: "m", ID: good.ID}); err == nil {
				t.Fatal("the good line of a refused upload was stored")
			}
		})
	}
}

// TestSampleLineMistakes: the likely mistakes in an upload's lines are named in the terms of
// the format, not of Go's types ("cannot unmarshal number into Go struct field Sample.label").
func TestSampleLineMistakes(t *testing.T) {
	ts, _ := untrainedModel(t)
	px := pixels(0)
	for _, tt := range []struct{ line, msg string }{
		{`{"id":"n","input":` + px + `,"label":7}`, `label is a JSON number: it must be a string, one of the model's labels`},
		{`{"id":42,"input":` + px + `,"label":"a"}`, `id is a JSON number: it must be a string`},
		{`[{"id":"n","input":` + px + `,"label":"a"}]`, `an array, not a sample object`},
		{`"n"`, `a JSON string, not a sample object`},
		{`{"id":"n","input":` + px + `,"label":"a","extra":1}`, `not a sample object (want one JSON object a line`},
	} {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/models/m/samples", strings.NewReader(tt.line+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error api.Error }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest || len(body.Error.Lines) != 1 || !strings.Contains(body.Error.Lines[0].Message, tt.msg) {
			t.Errorf("line %.40q: %d %+v (%v), want a line error with %q", tt.line, resp.StatusCode, body.Error, err, tt.msg)
		}
	}
}

// untrainedModel starts a server (no ONNX Runtime sessions) with the ViT registered and an
// untrained model "m" of labels a and b, 1 shard of 2 slices.
func untrainedModel(t *testing.T) (*testServer, *api.Client) {
	t.Helper()
	ts := startServer(t, server.Config{DisableRuntime: true}, nil)
	c := ts.client(t, "")
	if _, err := c.RegisterBackbone(context.Background(), &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}
	if _, err := c.CreateModel(context.Background(), &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	return ts, c
}
