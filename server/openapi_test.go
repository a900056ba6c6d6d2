package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/store"
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
	var documented, served []string
	for p, ops := range doc.Paths {
		for m, raw := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
			// Each route documents the error body it answers with: the KServe v2 routes the
			// protocol's, the others the server's.
			var op struct {
				Responses struct {
					Default struct {
						Content map[string]struct {
							Schema struct {
								Ref string `json:"$ref"`
							} `json:"schema"`
						} `json:"content"`
					} `json:"default"`
				} `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			ref, want := op.Responses.Default.Content["application/json"].Schema.Ref, "/ErrorBody"
			if isV2(p) {
				want = "/ErrorV2"
			}
			if !strings.HasSuffix(ref, want) {
				t.Errorf("%s %s: error schema %q, want %s", m, p, ref, want)
			}
		}
	}
	for _, r := range s.echo.Routes() {
		if r.Method == http.MethodHead {
			continue // a GET route's twin (the document lists the GET)
		}
		p, _ := openAPIPath(r.Path)
		served = append(served, r.Method+" "+p)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if fmt.Sprint(documented) != fmt.Sprint(served) {
		t.Fatalf("documented routes:\n%s\nserved routes:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
	if len(served) != len(s.Routes()) {
		t.Fatalf("Echo serves %d routes, the table has %d", len(served), len(s.Routes()))
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
