package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/server"
)

// TestBrowserGuard: a web page the user visits must not be able to drive the server through
// the user's browser. On a server with no keys (loopback only, every request allowed) a page
// could POST a deletion as a "simple" cross-site request (text/plain, no preflight), and read
// answers through DNS rebinding (its own name resolved to 127.0.0.1); both worked before. A
// foreign Origin is now refused on every server, and a Host that is not a loopback name on a
// server with no keys. Programs send no Origin and are unaffected.
func TestBrowserGuard(t *testing.T) {
	open := startServer(t, server.Config{DisableRuntime: true}, nil)
	keyed := startServer(t, server.Config{DisableRuntime: true}, map[string][]api.Scope{"sekret": {api.ScopeAdmin}})
	port := func(ts *testServer) string { return ts.URL[strings.LastIndex(ts.URL, ":"):] }
	deletion := `{"ids":["x"]}`
	tests := []struct {
		name         string
		ts           *testServer
		method, path string
		host, origin string
		fetchSite    string // Sec-Fetch-Site
		key          string
		status       int
		msg          string // in the error message; "" for an answer the guard let through
	}{
		{"open: cross-site deletion", open, "POST", "/v1/models/m/deletions", "", "http://evil.example", "", "", 403, `cross-origin request from "http://evil.example" refused`},
		{"open: cross-site v2 infer", open, "POST", "/v2/models/m/infer", "", "https://evil.example", "", "", 403, "cross-origin request"},
		{"open: origin null", open, "POST", "/v1/models/m/deletions", "", "null", "", "", 403, "cross-origin request"},
		{"open: rebound name", open, "POST", "/v1/models/m/deletions", "evil.example" + port(open), "", "", "", 403, `host "evil.example:`},
		{"open: rebound name, same origin", open, "GET", "/v1/models", "evil.example" + port(open), "http://evil.example" + port(open), "", "", 403, "a server with no API keys answers loopback names"},
		{"open: a program on 127.0.0.1", open, "POST", "/v1/models/m/deletions", "", "", "", "", 404, ""},
		{"open: localhost", open, "GET", "/v1/models", "localhost" + port(open), "", "", "", 200, ""},
		{"open: [::1]", open, "GET", "/v1/models", "[::1]" + port(open), "", "", "", 200, ""},
		{"open: same origin", open, "GET", "/v1/models", "", "http://127.0.0.1" + port(open), "", "", 200, ""},
		{"keys: cross-site", keyed, "POST", "/v1/models/m/deletions", "", "http://evil.example", "", "sekret", 403, "cross-origin request"},
		{"keys: any host", keyed, "GET", "/v1/models", "s3t.example.com", "", "", "sekret", 200, ""},
		{"keys: no key", keyed, "GET", "/v1/models", "", "", "", "", 401, "missing API key"},
		// Cross-site GETs carry no Origin; every request a browser sends carries Sec-Fetch-Site.
		{"open: cross-site GET", open, "GET", "/v1/models", "", "", "cross-site", "", 403, "Sec-Fetch-Site: cross-site"},
		{"open: same-site GET", open, "GET", "/v1/models", "", "", "same-site", "", 403, "Sec-Fetch-Site: same-site"},
		{"open: the address bar", open, "GET", "/v1/models", "", "", "none", "", 200, ""},
		{"keys: cross-site GET", keyed, "GET", "/v1/models", "", "", "cross-site", "sekret", 403, "another site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader(deletion)
			}
			req, err := http.NewRequest(tt.method, tt.ts.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.fetchSite != "" {
				req.Header.Set("Sec-Fetch-Site", tt.fetchSite)
			}
			if tt.key != "" {
				req.Header.Set("Authorization", "Bearer "+tt.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, tt.status)
			}
			if tt.msg == "" {
				return
			}
			var msg string
			if strings.HasPrefix(tt.path, "/v2/") { // the protocol's {"error": "message"}
				var e struct{ Error string }
				if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
					t.Fatalf("v2 error body %s", b)
				}
				msg = e.Error
			} else {
				var e struct{ Error api.Error }
				if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" {
					t.Fatalf("error body %s", b)
				}
				msg = e.Error.Message
			}
			if !strings.Contains(msg, tt.msg) {
				t.Fatalf("%s, want %q", b, tt.msg)
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") != `Bearer realm="s3t"` {
				t.Fatalf("401 without its challenge: WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestLoopbackOnly: the profiler (s3t serve --debug-addr) answered any Host and Origin, so a
// page rebound to 127.0.0.1 could read /debug/pprof/cmdline, a --database-url password in it.
func TestLoopbackOnly(t *testing.T) {
	h := server.LoopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "profile") }))
	for _, tt := range []struct {
		host, origin string
		status       int
	}{
		{"127.0.0.1:6060", "", 200},
		{"localhost:6060", "", 200},
		{"evil.example:6060", "", 403},
		{"127.0.0.1:6060", "http://evil.example", 403},
	} {
		req := httptest.NewRequest("GET", "/debug/pprof/cmdline", nil)
		req.Host = tt.host
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.status || (tt.status == 200) != (w.Body.String() == "profile") {
			t.Errorf("host %s, origin %q: %d %q, want %d", tt.host, tt.origin, w.Code, w.Body.String(), tt.status)
		}
	}
}
