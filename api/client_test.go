package api_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
)

func TestClientDecodesErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		code   string
		gone   bool
	}{
		{"json error", 404, `{"error":{"code":"not_found","message":"no such model"}}`, api.CodeNotFound, false},
		{"gone with receipt", 410, `{"error":{"code":"gone","message":"deleted","receipt":{"id":"r1","sample_id":"x"}}}`, api.CodeGone, true},
		{"not json", 502, `bad gateway`, api.CodeInternal, false}, // the code of the status (CodeFor)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotAuth string
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth = r.Header.Get("Authorization")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer ts.Close()
			c, err := api.NewClient(ts.URL, api.WithAPIKey("k1"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetModel(context.Background(), &api.GetModelRequest{Name: "m"})
			var e *api.Error
			if !errors.As(err, &e) || e.Status != tt.status || e.Code != tt.code {
				t.Fatalf("err = %#v, want status %d code %q", err, tt.status, tt.code)
			}
			if api.IsGone(err) != tt.gone || (tt.gone && e.Receipt.ID != "r1") {
				t.Fatalf("gone = %v, receipt %+v", api.IsGone(err), e.Receipt)
			}
			if gotAuth != "Bearer k1" {
				t.Fatalf("Authorization = %q", gotAuth)
			}
		})
	}
}

func TestNewClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"127.0.0.1:8080", "ftp://x", "://"} {
		if _, err := api.NewClient(u); err == nil {
			t.Errorf("NewClient(%q) succeeded", u)
		}
	}
}

// TestConcurrentRequestsReuseConnections: a Client used by 8 goroutines at once keeps their
// connections for the next requests instead of opening one per request (net/http's default
// transport keeps 2 idle connections per server).
func TestConcurrentRequestsReuseConnections(t *testing.T) {
	var conns atomic.Int32
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond) // the 8 requests of a round overlap
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	defer ts.Close()
	c, err := api.NewClient(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	const clients, rounds = 8, 10
	for range rounds {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				if _, err := c.Health(context.Background(), &api.HealthRequest{}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if n := conns.Load(); n > 2*clients {
		t.Errorf("%d rounds of %d concurrent requests opened %d connections, want at most %d", rounds, clients, n, 2*clients)
	}
}
