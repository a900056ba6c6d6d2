package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/server"
)

// TestUploadStreamLimit streams an NDJSON upload without a length (chunked) past the size
// limit: the server answers 413 and stores nothing.
func TestUploadStreamLimit(t *testing.T) {
	// The limit fits the ViT registered by path below (613 KB), which is held to it too.
	ts := startServer(t, server.Config{AllowPaths: true, DisableRuntime: true, MaxUploadBytes: 1 << 20, MaxLineBytes: 1900}, nil)
	ctx := context.Background()
	c := ts.client(t, "")
	path := filepath.Join(t.TempDir(), "vit.onnx")
	if err := os.WriteFile(path, assets.ViTFashionMNIST(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", Path: path}); err != nil {
		t.Fatalf("register by path: %v", err)
	}
	list, err := c.ListBackbones(ctx, &api.ListBackbonesRequest{})
	if err != nil || len(list.Backbones) != 1 || list.Backbones[0].Name != "vit" {
		t.Fatalf("list backbones = %+v, %v", list, err)
	}
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 100000; i++ { // 4 MB, past the limit
			if _, err := fmt.Fprintf(pw, `{"id":"s%d","input":[1,2,3],"label":"a"}`+"\n", i); err != nil {
				return
			}
		}
		pw.Close()
	}()
	_, err = c.UploadNDJSON(ctx, "m", pr)
	pr.CloseWithError(io.ErrClosedPipe)
	wantError(t, err, http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	m, err := c.GetModel(ctx, &api.GetModelRequest{Name: "m"})
	if err != nil || m.Samples != 0 {
		t.Fatalf("after a rejected upload: %+v, %v", m, err)
	}

	// Per-line validation: each failing line is reported with its number.
	body := strings.Join([]string{
		withPixels(`{"id":"ok","input":PIX,"label":"a"}`),
		`not json`,
		`{"id":"","input":[1],"label":"a"}`,
		`{"id":"x","label":"a"}`,
		`{"id":"y","input":[1],"label":"a","extra":1}`,
		`{"id":"z","input":[` + strings.TrimSuffix(strings.Repeat(`[`+strings.TrimSuffix(strings.Repeat("1,", 56), ",")+`],`, 14), ",") + `],"label":"a"}`, // 784 values nested 14 x 56
	}, "\n")
	_, err = c.UploadNDJSON(ctx, "m", strings.NewReader(body))
	e := wantError(t, err, http.StatusBadRequest, api.CodeInvalid)
	var got []int
	for _, l := range e.Lines {
		got = append(got, l.Line)
	}
	if fmt.Sprint(got) != "[2 3 4 5 6]" || !strings.Contains(e.Lines[4].Message, "nested as [14 56], want [1 28 28] or flat") {
		t.Fatalf("failing lines = %v, want [2 3 4 5 6] (%+v)", got, e.Lines)
	}
	long := withPixels(`{"id":"ok","input":PIX,"label":"a"}`) + "\n" + `{"id":"long","input":"` + strings.Repeat("x", 2<<10) + `","label":"a"}`
	_, err = c.UploadNDJSON(ctx, "m", strings.NewReader(long))
	e = wantError(t, err, http.StatusBadRequest, api.CodeInvalid)
	if len(e.Lines) != 1 || e.Lines[0].Line != 2 {
		t.Fatalf("long line: %+v, want line 2", e.Lines)
	}
	_, err = c.UploadNDJSON(ctx, "nomodel", strings.NewReader(`{"id":"a","input":[1],"label":"a"}`))
	wantError(t, err, http.StatusNotFound, api.CodeNotFound)
}

// TestHealthAndNoKeys checks the operational routes and that a server without keys allows
// every request and binds loopback only.
func TestHealthAndNoKeys(t *testing.T) {
	ts := startServer(t, server.Config{DisableRuntime: true}, nil)
	c := ts.client(t, "")
	if h, err := c.Health(context.Background(), &api.HealthRequest{}); err != nil || h.Status != "ok" {
		t.Fatalf("healthz = %+v, %v", h, err)
	}
	for _, p := range []string{"/readyz", "/metrics", "/openapi.json"} {
		if resp := get(t, ts.URL+p); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", p, resp.StatusCode)
		}
	}
	// A keyless server refuses a non-loopback address rather than listen where nobody outside
	// reaches it, and takes a loopback one.
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		if ln, err := ts.srv.Listen(addr); !errors.Is(err, server.ErrOpenNonLoopback) {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("keyless Listen(%q) = %v, want ErrOpenNonLoopback", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		ln, err := ts.srv.Listen(addr)
		if err != nil {
			t.Fatalf("keyless Listen(%q): %v", addr, err)
		}
		ln.Close()
	}
}
