package server_test

import (
	"crypto/sha256"
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
