package server_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
)

// openAPIOp is the part of an OpenAPI operation these tests read.
type openAPIOp struct {
	Parameters  []openAPIParam `json:"parameters"`
	RequestBody *struct {
		Required bool                       `json:"required"`
		Content  map[string]json.RawMessage `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		Content map[string]json.RawMessage `json:"content"`
		Headers map[string]json.RawMessage `json:"headers"`
	} `json:"responses"`
}

type openAPIParam struct {
	Name string `json:"name"`
	In   string `json:"in"`
}

// openAPIDoc reads the server's /openapi.json.
func openAPIDoc(t *testing.T, url string) map[string]map[string]openAPIOp {
	t.Helper()
	resp := get(t, url+"/openapi.json")
	var doc struct {
		Paths map[string]map[string]openAPIOp `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc.Paths
}

// TestOpenAPIRequestBodyRequired sends every documented operation that takes a request body an
// empty one: the server refuses it where the document says the body is required, and accepts
// it where it says the body is optional (POST /v1/models/{name}/train, in either framing).
func TestOpenAPIRequestBodyRequired(t *testing.T) {
	url, _, _, _ := queueOnlyServer(t)
	doc := openAPIDoc(t, url)
	filled := strings.NewReplacer("{name}", "m", "{id}", "s0", "{receipt}", "r")
	optional := 0
	for path, ops := range doc {
		for method, op := range ops {
			if op.RequestBody == nil {
				continue
			}
			framings := map[string]io.Reader{"no body": nil}
			if !op.RequestBody.Required {
				optional++
				// A body of unknown length: the client sends it chunked, empty.
				framings["empty chunked"] = struct{ io.Reader }{strings.NewReader("")}
			}
			for framing, body := range framings {
				req, err := http.NewRequest(strings.ToUpper(method), url+filled.Replace(path), body)
				if err != nil {
					t.Fatal(err)
				}
				if body != nil {
					req.TransferEncoding = []string{"chunked"}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Logf("%s %s %s: %d %.80s", method, path, framing, resp.StatusCode, b)
				ok := resp.StatusCode < 300
				if ok == op.RequestBody.Required {
					t.Errorf("%s %s with %s: %d %s, but the document says the request body is required: %v", method, path, framing, resp.StatusCode, b, op.RequestBody.Required)
				}
			}
		}
	}
	if optional == 0 {
		t.Error("no operation documents an optional request body (POST /v1/models/{name}/train takes none)")
	}
}

// TestOpenAPIMediaTypes checks the media types the document gives the routes that are not
// plain JSON in and out, and that the training event stream is served as documented.
func TestOpenAPIMediaTypes(t *testing.T) {
	url, _ := queuedTrainingServer(t)
	doc := openAPIDoc(t, url)
	tests := []struct {
		method, path      string
		request, response []string // media types, sorted
		header            string   // a header parameter, and response header
	}{
		{method: "get", path: "/v1/models/{name}/training/events", response: []string{"text/event-stream"}},
		{method: "get", path: "/v1/models/{name}/training", response: []string{"application/json"}},
		{method: "post", path: "/v1/models/{name}/train", request: []string{"application/json"}, response: []string{"application/json"}},
		{method: "post", path: "/v2/models/{name}/infer", request: []string{"application/json", "application/octet-stream"}, response: []string{"application/json", "application/octet-stream"},
			header: api.HeaderInferenceHeaderContentLength},
		{method: "post", path: "/v1/models/{name}/predict", request: []string{"application/json"}, response: []string{"application/json"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			op, ok := doc[tt.path][tt.method]
			if !ok {
				t.Fatal("not documented")
			}
			var request []string
			if op.RequestBody != nil {
				request = slices.Sorted(maps.Keys(op.RequestBody.Content))
			}
			response := slices.Sorted(maps.Keys(op.Responses["2XX"].Content))
			if !slices.Equal(request, tt.request) || !slices.Equal(response, tt.response) {
				t.Errorf("request %v, response %v; want %v, %v", request, response, tt.request, tt.response)
			}
			hasParam := slices.Contains(op.Parameters, openAPIParam{Name: tt.header, In: "header"})
			_, hasHeader := op.Responses["2XX"].Headers[tt.header]
			if tt.header != "" && (!hasParam || !hasHeader) {
				t.Errorf("header %s: parameter %v, response header %v", tt.header, hasParam, hasHeader)
			}
		})
	}
	// The event stream is served with the media type documented.
	resp := get(t, url+"/v1/models/m/training/events")
	want := slices.Collect(maps.Keys(doc["/v1/models/{name}/training/events"]["get"].Responses["2XX"].Content))
	if got := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || len(want) != 1 || got != want[0] {
		t.Fatalf("GET training/events: %d %s, documented %v", resp.StatusCode, got, want)
	}
}
