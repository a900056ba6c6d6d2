package server_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
)

// testServer is a real server on 127.0.0.1:0 with a SQLite ledger and file blobs in a temp dir.
type testServer struct {
	URL string
	srv *server.Server
	// stop cancels Serve and returns its error (at most once; later calls return nil).
	stop func() error
}

// startServer starts a server with keys (secret -> scopes) and stops it when the test ends.
// Its ledger and blobs are cfg's when set (a replica beside another), else new ones.
func startServer(t testing.TB, cfg server.Config, keys map[string][]api.Scope) *testServer {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.Store == nil {
		cfg.Store, cfg.Blobs = testmodel.OpenStore(t) // closed after the server stops (cleanups run last first)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	for secret, scopes := range keys {
		cfg.Keys = append(cfg.Keys, server.Key{Name: string(scopes[0]), Scopes: scopes, Hash: sha256.Sum256([]byte(secret))})
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() (err error) {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{URL: "http://" + ln.Addr().String(), srv: srv, stop: stop}
}

// client returns an api client of ts with the given key ("" for none).
func (ts *testServer) client(t *testing.T, key string) *api.Client {
	t.Helper()
	var opts []api.ClientOption
	if key != "" {
		opts = append(opts, api.WithAPIKey(key))
	}
	c, err := api.NewClient(ts.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantError checks that err is an *api.Error with status and code, and returns it.
func wantError(t *testing.T, err error, status int, code string) *api.Error {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want an *api.Error %d %s", err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error = %d %s (%s), want %d %s", e.Status, e.Code, e.Message, status, code)
	}
	return e
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// pixels is a valid input of the committed ViT (1x28x28 values, all v) as JSON.
func pixels(v int) string {
	return "[" + strings.TrimSuffix(strings.Repeat(fmt.Sprint(v)+",", 28*28), ",") + "]"
}

// withPixels replaces PIX in an NDJSON line by a valid ViT input.
func withPixels(line string) string { return strings.ReplaceAll(line, "PIX", pixels(1)) }
