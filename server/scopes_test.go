package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/server"
)

// TestScopes: a route takes a key with its scope (or admin); the training status also takes the
// train scope, so that a key that starts training can follow it (s3t models train queued its jobs
// and then failed with 403 with a train-only key: a CLI audit).
func TestScopes(t *testing.T) {
	keys := map[string][]api.Scope{"adm": {api.ScopeAdmin}, "trn": {api.ScopeTrain}, "inf": {api.ScopeInfer}, "del": {api.ScopeDelete}}
	ts := startServer(t, server.Config{}, keys)
	for _, tt := range []struct {
		method, path string
		allowed      []string // the keys let through (any status but 401/403)
	}{
		{"GET", "/v1/models/m/training", []string{"adm", "trn", "inf"}},
		{"GET", "/v1/models/m/training/events", []string{"adm", "trn", "inf"}},
		{"POST", "/v1/models/m/train", []string{"adm", "trn"}},
		{"DELETE", "/v1/models/m/training", []string{"adm", "trn"}},
		{"GET", "/v1/models/m", []string{"adm", "inf"}},
		{"GET", "/v1/models/m/deletions", []string{"adm", "del"}},
		{"POST", "/v1/models", []string{"adm"}},
	} {
		for key := range keys {
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := false
			for _, k := range tt.allowed {
				want = want || k == key
			}
			if got := resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized; got != want {
				t.Errorf("%s %s with key %s: %d %s; want allowed %v", tt.method, tt.path, key, resp.StatusCode, body, want)
			}
			if resp.StatusCode == http.StatusForbidden && strings.HasSuffix(tt.path, "/training") && tt.method == "GET" &&
				!strings.Contains(string(body), `lacks scope \"infer\" or \"train\"`) {
				t.Errorf("%s %s with key %s: 403 body %s, want it to name both scopes", tt.method, tt.path, key, body)
			}
		}
	}
}
