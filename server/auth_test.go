package server_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/server"
)

func TestLoadKeys(t *testing.T) {
	h := server.HashKey("s3cret")
	tests := []struct {
		name, file string
		want       []api.Scope
		err        string
	}{
		{"one key", "# ops\n\nops " + h + " admin\n", []api.Scope{api.ScopeAdmin}, ""},
		{"several scopes", "app " + h + " infer,delete\n", []api.Scope{api.ScopeInfer, api.ScopeDelete}, ""},
		{"unknown scope", "app " + h + " root\n", nil, "unknown scope"},
		{"short hash", "app abcd admin\n", nil, "64 hex digits"},
		{"missing field", "app " + h + "\n", nil, "want NAME"},
		// A file with no key would leave the server open to every request.
		{"empty", "", nil, "no key in the file"},
		{"comments only", "# ops\n\n", nil, "no key in the file"},
		{"a name twice", "ops " + h + " admin\nops " + server.HashKey("other") + " infer\n", nil, `a key named "ops" is in the file already`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			keys, err := server.LoadKeys(path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("LoadKeys = %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil || len(keys) != 1 {
				t.Fatalf("LoadKeys = %+v, %v", keys, err)
			}
			if keys[0].Hash != sha256.Sum256([]byte("s3cret")) || strings.Join(scopeStrings(keys[0].Scopes), ",") != strings.Join(scopeStrings(tt.want), ",") {
				t.Fatalf("key = %+v, want scopes %v", keys[0], tt.want)
			}
		})
	}
}

func scopeStrings(s []api.Scope) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}

// TestBearerScheme: the auth scheme is matched in any case (RFC 7235) and may be followed by
// more than one space; anything else is a missing key, and a wrong key is an unknown one.
func TestBearerScheme(t *testing.T) {
	ts := startServer(t, server.Config{DisableRuntime: true}, map[string][]api.Scope{"s3cret": {api.ScopeInfer}})
	tests := []struct {
		header string
		status int
		msg    string
	}{
		{"Bearer s3cret", http.StatusOK, ""},
		{"bearer s3cret", http.StatusOK, ""},
		{"BEARER s3cret", http.StatusOK, ""},
		{"bEaReR s3cret", http.StatusOK, ""},
		{"Bearer   s3cret", http.StatusOK, ""},
		{"bearer \t s3cret", http.StatusOK, ""},
		{"", http.StatusUnauthorized, "missing API key"},
		{"Bearer", http.StatusUnauthorized, "missing API key"},
		{"Bearer   ", http.StatusUnauthorized, "missing API key"},
		{"Bearers3cret", http.StatusUnauthorized, "missing API key"},
		{"Basic s3cret", http.StatusUnauthorized, "missing API key"},
		{"s3cret", http.StatusUnauthorized, "missing API key"},
		{"bearer wrong", http.StatusUnauthorized, "unknown API key"},
		{"Bearer s3cret s3cret", http.StatusUnauthorized, "unknown API key"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.header), func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, ts.URL+"/v1/backbones", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body api.ErrorBody
			if resp.StatusCode != http.StatusOK {
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == nil {
					t.Fatalf("status %d, error body %+v: %v", resp.StatusCode, body, err)
				}
			}
			if resp.StatusCode != tt.status || (tt.msg != "" && !strings.Contains(body.Error.Message, tt.msg)) {
				t.Fatalf("status %d %+v, want %d %q", resp.StatusCode, body.Error, tt.status, tt.msg)
			}
		})
	}
}
