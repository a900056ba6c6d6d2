package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

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
		{"not json", 502, `bad gateway`, "Bad Gateway", false},
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
