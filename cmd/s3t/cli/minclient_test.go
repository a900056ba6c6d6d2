package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestMinimalClient: requests reach the server whole, over one kept-alive connection, and a
// status other than 200 is an error that carries the body.
func TestMinimalClient(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.EscapedPath() != "/v1/models/m%201/predict" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers: "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
			return
		}
		if string(body) == `{"inputs":[[1,2]]}` {
			w.Write([]byte(strings.Repeat("x", 100000))) // longer than the client's buffer
			return
		}
		http.Error(w, "unexpected body "+string(body), http.StatusConflict)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	mc := newMinimalClient(strings.TrimPrefix(srv.URL, "http://"), 1)
	defer mc.close()
	ctx := context.Background()
	for range 5 {
		if err := mc.post(ctx, "/v1/models/m%201/predict", "application/json", []byte(`{"inputs":[[1,2]]}`)); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 requests opened %d connections, want 1 kept alive", n)
	}
	err := mc.post(ctx, "/v1/models/m%201/predict", "application/json", []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "unexpected body {}") {
		t.Errorf("409: err = %v", err)
	}
	if err := mc.post(ctx, "/v1/models/m%201/predict", "application/json", []byte(`{"inputs":[[1,2]]}`)); err != nil {
		t.Errorf("after an error status: %v", err)
	}
}
