package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
)

func do(t *testing.T, s *Server, method, path, body string) (int, *api.Error) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	if rec.Code < 300 {
		return rec.Code, nil
	}
	if isV2(path) { // the protocol's {"error": "message"}
		var e api.ErrorV2
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("%s %s = %d with body %q, want a KServe v2 error", method, path, rec.Code, rec.Body)
		}
		return rec.Code, &api.Error{Code: api.CodeFor(rec.Code), Message: e.Error}
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil {
		t.Fatalf("%s %s = %d with body %q, want a JSON error", method, path, rec.Code, rec.Body)
	}
	return rec.Code, eb.Error
}

func TestRequestLimits(t *testing.T) {
	s := newTestServer(t, Config{MaxBodyBytes: 64, MaxInferBytes: 160, MaxUploadBytes: 256, MaxLineBytes: 128})
	inputs := func(n int) string { // a predict body of about 6n bytes
		return `{"inputs":[[` + strings.TrimSuffix(strings.Repeat("0.5, ", n), ", ") + `]]}`
	}
	big := `{"name":"m","backbone":"` + strings.Repeat("x", 100) + `"}`
	var lines bytes.Buffer
	for range 10 {
		lines.WriteString(`{"id":"a","input":[1],"label":"x"}` + "\n")
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"json body over limit", http.MethodPost, "/v1/models", big, 413, api.CodeTooLarge},
		// Inference bodies carry a batch: their own, larger limit (this server serves nothing).
		{"predict under the infer limit", http.MethodPost, "/v1/models/m/predict", inputs(20), 501, api.CodeNotImplemented},
		{"predict over the infer limit", http.MethodPost, "/v1/models/m/predict", inputs(40), 413, api.CodeTooLarge},
		// The v2 routes answer every error in the protocol's shape (see do), the size limit's too.
		{"v2 infer over the infer limit", http.MethodPost, "/v2/models/m/infer", inputs(40), 413, api.CodeTooLarge},
		{"v2 unknown route", http.MethodGet, "/v2/nothing", "", 404, api.CodeNotFound},
		{"v2 wrong method", http.MethodGet, "/v2/models/m/infer", "", 405, api.CodeMethodNotAllowed},
		{"upload over limit", http.MethodPost, "/v1/models/m/samples", lines.String(), 413, api.CodeTooLarge},
		{"bad json", http.MethodPost, "/v1/models", `{"name":`, 400, api.CodeInvalid},
		{"unknown field", http.MethodPost, "/v1/models", `{"nam":"x"}`, 400, api.CodeInvalid},
		{"unknown route", http.MethodGet, "/v1/nothing", "", 404, api.CodeNotFound},
		{"wrong method", http.MethodPatch, "/v1/models", "", 405, api.CodeMethodNotAllowed},
		{"bad name", http.MethodPut, "/v1/backbones/Bad%20Name", "x", 400, api.CodeInvalid},
		{"paths not allowed", http.MethodPost, "/v1/backbones", `{"name":"b","path":"/etc/passwd"}`, 403, api.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, e := do(t, s, tt.method, tt.path, tt.body)
			if status != tt.status || e == nil || e.Code != tt.code {
				t.Fatalf("%s %s = %d %+v, want %d %s", tt.method, tt.path, status, e, tt.status, tt.code)
			}
		})
	}
	// Under the infer limit, a v2 request gets past the limit to the route (its errors are the
	// protocol's {"error": "..."}).
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2/models/m/infer", strings.NewReader(inputs(20))))
	if rec.Code != http.StatusNotImplemented {
		t.Errorf("v2 infer under the infer limit = %d %s, want 501 from the route", rec.Code, rec.Body)
	}
}

// TestV2AuthErrors checks that a KServe v2 client refused by authentication gets the
// protocol's error body, while the native routes keep theirs, and that authentication comes
// before the size limit.
func TestV2AuthErrors(t *testing.T) {
	s := newTestServer(t, Config{MaxInferBytes: 1 << 10, Keys: []Key{{Name: "deleter", Scopes: []api.Scope{api.ScopeDelete}, Hash: sha256.Sum256([]byte("d-secret"))}}})
	tests := []struct {
		name, path, key string
		status          int
		v2              bool
	}{
		{"v2 without a key", "/v2/models/m/infer", "", 401, true},
		{"v2 without the infer scope", "/v2/models/m/infer", "d-secret", 403, true},
		{"native without a key", "/v1/models/m/predict", "", 401, false},
		{"native without the infer scope", "/v1/models/m/predict", "d-secret", 403, false},
		// Authentication comes before the size limit.
		{"native over the size limit without a key", "/v1/models/m/predict", "", 401, false},
		{"v2 over the size limit without a key", "/v2/models/m/infer", "", 401, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{}`
			if strings.Contains(tt.name, "over the size limit") {
				body = `{"inputs":[[` + strings.Repeat("0.5,", 1000) + `0.5]]}` // 4 KB, over this server's infer limit
			}
			req := httptest.NewRequest(http.MethodPost, tt.path, strings.NewReader(body))
			if tt.key != "" {
				req.Header.Set("Authorization", "Bearer "+tt.key)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			var v2 api.ErrorV2
			var native api.ErrorBody
			isV2Body := json.Unmarshal(rec.Body.Bytes(), &v2) == nil && v2.Error != ""
			isNative := json.Unmarshal(rec.Body.Bytes(), &native) == nil && native.Error != nil && native.Error.Code == api.CodeFor(tt.status)
			if rec.Code != tt.status || isV2Body != tt.v2 || isNative == tt.v2 {
				t.Errorf("POST %s = %d %s, want %d in the %s error shape", tt.path, rec.Code, rec.Body, tt.status, map[bool]string{true: "KServe v2", false: "native"}[tt.v2])
			}
		})
	}
}

// TestLedgerDownIs503 checks that a request failing because the ledger does not answer is a 503
// unavailable, which clients retry (a deletion request above all), not a 500 "internal error".
func TestLedgerDownIs503(t *testing.T) {
	s := newTestServer(t, Config{})
	s.cfg.Store.Close() // as a database that went away
	for _, r := range []struct{ method, path, body string }{
		{http.MethodDelete, "/v1/models/m/samples/x", ""},
		{http.MethodPost, "/v1/models/m/deletions", `{"ids":["x"]}`},
		{http.MethodGet, "/v1/models", ""},
		{http.MethodGet, "/v1/deletions/r1", ""},
	} {
		if status, e := do(t, s, r.method, r.path, r.body); status != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable {
			t.Errorf("%s %s with the ledger down = %d %+v, want 503 unavailable", r.method, r.path, status, e)
		}
	}
	// /readyz takes no key: it says the ledger does not answer, not the driver's error (which
	// names the database's host, port and user).
	status, e := do(t, s, http.MethodGet, "/readyz", "")
	if status != http.StatusServiceUnavailable || e.Message != "the ledger does not answer (the server's log says why)" {
		t.Errorf("/readyz with the ledger down = %d %+v", status, e)
	}
}

// TestHeadRequests checks that a GET route answers HEAD (probes and uptime checks use it; it
// answered 405) with the GET's status and no body, except the training event stream, which
// would not end.
func TestHeadRequests(t *testing.T) {
	ts := httptest.NewServer(newTestServer(t, Config{}).Handler())
	defer ts.Close()
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/healthz", http.StatusOK},
		{"/readyz", http.StatusOK},
		{"/metrics", http.StatusOK},
		{"/v1/models", http.StatusOK},
		{"/v1/models/nope", http.StatusNotFound},
		{"/v1/models/nope/training/events", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(http.MethodHead, ts.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || len(body) != 0 {
			t.Errorf("HEAD %s = %d with %d bytes, want %d and no body", tt.path, resp.StatusCode, len(body), tt.status)
		}
	}
}
