package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// newTestServer builds a Server on a SQLite ledger and mem:// blobs, without listening.
func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.SQLiteDSN(t.TempDir()), store.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	blobs, err := store.OpenBlobs(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blobs.Close(); st.Close() })
	cfg.Store, cfg.Blobs = st, blobs
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DisableRuntime = true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpenAPIMatchesRoutes checks that /openapi.json documents exactly the routes Echo serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := newTestServer(t, Config{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /openapi.json = %d", rec.Code)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	type response struct {
		Content map[string]struct {
			Schema struct {
				Ref string `json:"$ref"`
			} `json:"schema"`
		} `json:"content"`
	}
	type operation struct {
		OperationID string              `json:"operationId"`
		Parameters  []json.RawMessage   `json:"parameters"`
		Security    json.RawMessage     `json:"security"`
		Responses   map[string]response `json:"responses"`
	}
	var documented, served []string
	ids := map[string]string{} // operationId -> method and path
	for p, ops := range doc.Paths {
		for m, raw := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			if other, dup := ids[op.OperationID]; dup || op.OperationID == "" {
				t.Errorf("%s %s: operationId %q, also %s", m, p, op.OperationID, other)
			}
			ids[op.OperationID] = m + " " + p
			if m == "head" {
				// The GET's twin: its parameters, security and statuses, no body.
				var get operation
				if err := json.Unmarshal(ops["get"], &get); err != nil {
					t.Fatalf("head %s without a get: %v", p, err)
				}
				if op.OperationID != get.OperationID+"Head" || fmt.Sprint(op.Parameters) != fmt.Sprint(get.Parameters) ||
					string(op.Security) != string(get.Security) || !slices.Equal(slices.Sorted(maps.Keys(op.Responses)), slices.Sorted(maps.Keys(get.Responses))) {
					t.Errorf("head %s = %+v, not the twin of get %+v", p, op, get)
				}
				for status, res := range op.Responses {
					if res.Content != nil {
						t.Errorf("head %s: response %s has content %v", p, status, res.Content)
					}
				}
				continue
			}
			// Each route documents the error body it answers with: the KServe v2 routes the
			// protocol's, the others the server's.
			ref, want := op.Responses["default"].Content["application/json"].Schema.Ref, "/ErrorBody"
			if isV2(p) {
				want = "/ErrorV2"
			}
			if !strings.HasSuffix(ref, want) {
				t.Errorf("%s %s: error schema %q, want %s", m, p, ref, want)
			}
			// The v2 readiness routes answer "not ready" as 400 with their success body.
			notReady, ok := op.Responses["400"]
			if isV2(p) && strings.HasSuffix(p, "/ready") {
				success := op.Responses["2XX"].Content["application/json"].Schema.Ref
				if got := notReady.Content["application/json"].Schema.Ref; !ok || success == "" || got != success {
					t.Errorf("%s %s: 400 schema %q, want the success's %q", m, p, got, success)
				}
			} else if ok {
				t.Errorf("%s %s documents a 400 response", m, p)
			}
		}
	}
	heads := 0
	for _, r := range s.echo.Routes() {
		if r.Method == http.MethodHead {
			heads++
		}
		p, _ := openAPIPath(r.Path)
		served = append(served, r.Method+" "+p)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if fmt.Sprint(documented) != fmt.Sprint(served) {
		t.Fatalf("documented routes:\n%s\nserved routes:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
	if len(served)-heads != len(s.Routes()) || heads == 0 {
		t.Fatalf("Echo serves %d routes and %d HEAD twins, the table has %d", len(served)-heads, heads, len(s.Routes()))
	}
	// The KServe v2 routes the protocol names, versioned forms and server metadata included.
	for _, want := range []string{"GET /v2", "HEAD /v2", "GET /v2/health/live", "GET /v2/health/ready",
		"GET /v2/models/{name}", "GET /v2/models/{name}/versions/{version}",
		"GET /v2/models/{name}/ready", "GET /v2/models/{name}/versions/{version}/ready",
		"POST /v2/models/{name}/infer", "POST /v2/models/{name}/versions/{version}/infer"} {
		if !slices.Contains(documented, want) {
			t.Errorf("%s is not documented", want)
		}
	}
	if slices.Contains(documented, "HEAD /v1/models/{name}/training/events") {
		t.Error("the event stream documents a HEAD")
	}
}

func TestToAPIError(t *testing.T) {
	rc := &store.Receipt{ID: "r1", SampleID: "x"}
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"not found", fmt.Errorf("get: %w", store.ErrNotFound), 404, api.CodeNotFound},
		{"gone with receipt", fmt.Errorf("delete: %w", &store.GoneError{Receipt: rc}), 410, api.CodeGone},
		{"conflict", fmt.Errorf("create: %w", store.ErrConflict), 409, api.CodeConflict},
		{"store invalid", fmt.Errorf("put: %w", store.ErrInvalid), 400, api.CodeInvalid},
		{"validation", invalidf("bad %s", "field"), 400, api.CodeInvalid},
		{"size limit", fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 10}), 413, api.CodeTooLarge},
		{"unknown", errors.New("disk on fire"), 500, api.CodeInternal},
		{"plugin failed", specError(training.PluginError("s3t.selector", "x", errors.New("down"))), 502, api.CodePluginFailed},
		{"plugin refused", specError(training.PluginError("peft.type", "x", fmt.Errorf("%w: rank", sdk.ErrInvalidConfig))), 400, api.CodeInvalid},
		{"plugin host", specError(training.PluginError("peft.type", "x", fmt.Errorf("%w: exit 1", plugins.ErrCrashed))), 503, api.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := toAPIError(tt.err)
			if status != tt.status || body.Code != tt.code {
				t.Fatalf("toAPIError = %d %s, want %d %s", status, body.Code, tt.status, tt.code)
			}
			if tt.code == api.CodeGone && (body.Receipt == nil || body.Receipt.ID != "r1") {
				t.Fatalf("gone without the earlier receipt: %+v", body)
			}
			if status == 500 && strings.Contains(body.Message, "disk") {
				t.Fatalf("internal error leaks its cause: %q", body.Message)
			}
		})
	}
}

// TestOpenAPITrainingStalled: the document describes a training job's lease and stall as the
// status reports them (TestTrainingStatusStalled): the TrainingJob schema has lease_until and
// stalled, and the training status routes say what a stalled job is.
func TestOpenAPITrainingStalled(t *testing.T) {
	s := newTestServer(t, Config{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	var doc struct {
		Paths      map[string]map[string]struct{ Description string } `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct{ Type, Format string } `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	job := doc.Components.Schemas["TrainingJob"].Properties
	for name, want := range map[string]struct{ Type, Format string }{
		"stalled":     {Type: "boolean"},
		"lease_until": {Type: "string", Format: "date-time"},
		"worker":      {Type: "string"},
		"eta_seconds": {Type: "number"},
	} {
		if got, ok := job[name]; !ok || got != want {
			t.Errorf("TrainingJob.%s = %+v (documented: %v), want %+v", name, got, ok, want)
		}
	}
	for _, p := range []string{"/v1/models/{name}/training", "/v1/models/{name}/training/events"} {
		if d := doc.Paths[p]["get"].Description; !strings.Contains(d, "`stalled: true`") || !strings.Contains(d, "lease_until") {
			t.Errorf("GET %s: description %q does not say what a stalled job is", p, d)
		}
	}
}
