package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/testmodel"
)

// TestUnknownModelMessage: the inference routes say an unknown model is not found in those
// words, not in the ledger's ("store: stamp of ..."): for a name never created, and for a model
// deleted after the server loaded it.
func TestUnknownModelMessage(t *testing.T) {
	ctx := context.Background()
	ps := newPredictServer(t, testmodel.Options{Untrained: true})
	fx := ps.fx
	// Load the model into the service (409: nothing trained), then delete it.
	if _, err := ps.c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: rawInputs(t, fx.Test[:1])}); err == nil {
		t.Fatal("predict on an untrained model succeeded")
	}
	if _, err := ps.c.DeleteModel(ctx, &api.DeleteModelRequest{Name: fx.Name}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nope", fx.Name} {
		want := `model "` + name + `": not found`
		t.Run(name, func(t *testing.T) {
			tests := []struct {
				route string
				call  func() (int, string)
			}{
				{"native predict", func() (int, string) {
					_, err := ps.c.Predict(ctx, &api.PredictRequest{Name: name, Inputs: rawInputs(t, fx.Test[:1])})
					e := wantError(t, err, http.StatusNotFound, api.CodeNotFound)
					return e.Status, e.Message
				}},
				{"v2 infer", func() (int, string) {
					status, body := postJSON(t, ps.URL+"/v2/models/"+name+"/infer", `{"inputs": []}`)
					return status, v2Message(t, body)
				}},
				{"v2 metadata", func() (int, string) {
					resp := get(t, ps.URL+"/v2/models/"+name)
					var e api.ErrorV2
					if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
						t.Fatal(err)
					}
					return resp.StatusCode, e.Error
				}},
				{"v2 ready", func() (int, string) {
					resp := get(t, ps.URL+"/v2/models/"+name+"/ready")
					var e api.ErrorV2
					if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
						t.Fatal(err)
					}
					return resp.StatusCode, e.Error
				}},
			}
			for _, tt := range tests {
				if status, msg := tt.call(); status != http.StatusNotFound || msg != want {
					t.Errorf("%s: %d %q, want 404 %q", tt.route, status, msg, want)
				}
			}
		})
	}
}

func v2Message(t *testing.T, body []byte) string {
	t.Helper()
	var e api.ErrorV2
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return e.Error
}
