package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/plugins/selectors"
	"github.com/s3t-dev/s3t/server"
)

var fashionLabels = []string{"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"}

func sampleInput(i int) json.RawMessage {
	v := make([]float32, 28*28)
	for j := range v {
		v[j] = float32((i+j)%7) / 8
	}
	b, _ := json.Marshal(v)
	return b
}

// TestEndToEnd drives the real server over HTTP: backbone, model, upload, deletion, receipts
// and scopes, as a user would.
func TestEndToEnd(t *testing.T) {
	const adminKey, trainerKey = "admin-secret", "trainer-secret"
	ts := startServer(t, server.Config{}, map[string][]api.Scope{
		adminKey:   {api.ScopeAdmin},
		trainerKey: {api.ScopeTrain, api.ScopeInfer},
	})
	ctx := context.Background()
	admin, trainer, anon := ts.client(t, adminKey), ts.client(t, trainerKey), ts.client(t, "")

	// Register the ViT backbone by upload; the manifest is detected.
	bb, err := admin.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()})
	if err != nil {
		t.Fatalf("register backbone: %v", err)
	}
	if len(bb.Manifest) == 0 || bb.SHA256 == "" {
		t.Fatalf("backbone without manifest: %+v (manifest error %q)", bb, bb.ManifestError)
	}
	got, err := trainer.GetBackbone(ctx, &api.GetBackboneRequest{Name: "vit"})
	if err != nil || got.Runtime == nil {
		t.Fatalf("get backbone = %+v, %v; want a runtime status", got, err)
	}
	t.Logf("runtime: %+v", *got.Runtime)
	if _, err := admin.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "junk", ONNX: []byte("not onnx")}); err != nil {
		wantError(t, err, http.StatusBadRequest, api.CodeInvalid)
	} else {
		t.Fatal("registering junk bytes succeeded")
	}

	// Create a model.
	spec := api.ModelSpec{Backbone: "vit", Labels: fashionLabels, PEFT: api.PEFT{Type: "lora", Config: json.RawMessage(`{"rank":4}`)},
		S3T: api.S3TConfig{Shards: 2, Slices: 3, Sequences: 2, Selector: "cyclic"}, Seed: 7}
	m, err := admin.CreateModel(ctx, &api.CreateModelRequest{Name: "fmnist", ModelSpec: spec})
	if err != nil {
		t.Fatalf("create model: %v", err)
	}
	if len(m.Sequences) != 2 || len(m.Sequences[0]) != 2 || len(m.Serving) != 2 || m.Spec.Training.BatchSize == 0 {
		t.Fatalf("model = %+v", m)
	}
	// A server without a plugin host plans with the built-ins in process: named, versioned, no
	// executable of their own; read back from the ledger.
	if got, err := admin.GetModel(ctx, &api.GetModelRequest{Name: "fmnist"}); err != nil || got.PlannedBy == nil ||
		*got.PlannedBy != (api.PlannedBy{PEFT: api.PluginRef{Name: "peft.lora", Version: lora.Version}, Selector: api.PluginRef{Name: "selector.cyclic", Version: selectors.Version}}) {
		t.Errorf("planned_by %+v (%v), want the in-process built-ins", got.PlannedBy, err)
	}
	// The model names the backbone's bytes it was made with, whatever its name.
	if got, err := admin.GetModel(ctx, &api.GetModelRequest{Name: "fmnist"}); err != nil || got.BackboneSHA256 != bb.SHA256 || m.BackboneSHA256 != bb.SHA256 {
		t.Errorf("backbone_sha256 %q on GET, %q on create (%v), want the backbone's %q", got.BackboneSHA256, m.BackboneSHA256, err, bb.SHA256)
	}
	_, err = admin.CreateModel(ctx, &api.CreateModelRequest{Name: "fmnist", ModelSpec: spec})
	if e := wantError(t, err, http.StatusConflict, api.CodeConflict); !strings.HasPrefix(e.Message, `model "fmnist" already exists`) {
		t.Errorf("duplicate model: %q, want it to say the model already exists", e.Message)
	}
	_, err = trainer.CreateModel(ctx, &api.CreateModelRequest{Name: "other", ModelSpec: spec})
	wantError(t, err, http.StatusForbidden, api.CodeForbidden)
	_, err = anon.ListModels(ctx, &api.ListModelsRequest{})
	wantError(t, err, http.StatusUnauthorized, api.CodeUnauthorized)

	// An upload with one bad line stores nothing and names the line.
	var samples []api.Sample
	for i := range 12 {
		samples = append(samples, api.Sample{ID: fmt.Sprintf("s%02d", i), Input: sampleInput(i), Label: fashionLabels[i%10]})
	}
	bad := append(append([]api.Sample{}, samples...), api.Sample{ID: "bad", Input: sampleInput(0), Label: "unicorn"})
	_, err = trainer.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "fmnist", Samples: bad})
	e := wantError(t, err, http.StatusBadRequest, api.CodeInvalid)
	if len(e.Lines) != 1 || e.Lines[0].Line != 13 || e.Lines[0].ID != "bad" {
		t.Fatalf("line errors = %+v, want line 13 (id bad)", e.Lines)
	}
	if m, _ := admin.GetModel(ctx, &api.GetModelRequest{Name: "fmnist"}); m.Samples != 0 {
		t.Fatalf("a rejected upload stored %d samples", m.Samples)
	}
	up, err := trainer.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "fmnist", Samples: samples})
	if err != nil || up.Stored != 12 {
		t.Fatalf("upload = %+v, %v", up, err)
	}
	// Re-uploading is idempotent; the same id with another label conflicts, naming the line.
	if up, err := trainer.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "fmnist", Samples: samples[:2]}); err != nil || up.Existed != 2 {
		t.Fatalf("re-upload = %+v, %v", up, err)
	}
	clash := []api.Sample{samples[3], {ID: "s00", Input: sampleInput(0), Label: "boot"}}
	_, err = trainer.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "fmnist", Samples: clash})
	e = wantError(t, err, http.StatusConflict, api.CodeConflict)
	if len(e.Lines) != 1 || e.Lines[0].Line != 2 {
		t.Fatalf("conflict lines = %+v", e.Lines)
	}

	info, err := trainer.GetSample(ctx, &api.GetSampleRequest{Model: "fmnist", ID: "s05"})
	if err != nil || info.Placement != up.Samples[5].Placement {
		t.Fatalf("get sample = %+v, %v; want placement %+v", info, err, up.Samples[5].Placement)
	}

	// Deletion: a key without the delete scope is refused.
	_, err = trainer.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "fmnist", ID: "s05"})
	wantError(t, err, http.StatusForbidden, api.CodeForbidden)

	rc, err := admin.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "fmnist", ID: "s05"})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if rc.ID == "" || rc.SampleID != "s05" || rc.Shard != info.Placement.Shard || rc.Slice != info.Placement.Slice || len(rc.Live) != 2 {
		t.Fatalf("receipt = %+v", rc)
	}
	_, err = admin.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "fmnist", ID: "s05"})
	e = wantError(t, err, http.StatusGone, api.CodeGone)
	if e.Receipt == nil || e.Receipt.ID != rc.ID || e.Receipt.LedgerVersion != rc.LedgerVersion {
		t.Fatalf("410 receipt = %+v, want %+v", e.Receipt, rc)
	}
	_, err = admin.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "fmnist", ID: "nope"})
	wantError(t, err, http.StatusNotFound, api.CodeNotFound)
	// A deleted sample's GET carries its receipt for a key that may read receipts (the delete
	// scope), and only says it is gone to others.
	_, err = admin.GetSample(ctx, &api.GetSampleRequest{Model: "fmnist", ID: "s05"})
	if e := wantError(t, err, http.StatusGone, api.CodeGone); e.Receipt == nil || e.Receipt.ID != rc.ID {
		t.Fatalf("410 of a deleted sample's GET: receipt %+v, want %s", e.Receipt, rc.ID)
	}
	_, err = trainer.GetSample(ctx, &api.GetSampleRequest{Model: "fmnist", ID: "s05"})
	if e := wantError(t, err, http.StatusGone, api.CodeGone); e.Receipt != nil || !strings.Contains(e.Message, "delete scope") {
		t.Fatalf("410 of a deleted sample's GET without the delete scope: %+v, want no receipt", e)
	}

	back, err := admin.GetReceipt(ctx, &api.GetReceiptRequest{ID: rc.ID})
	if err != nil || back.ID != rc.ID || back.SampleID != "s05" || !back.Time.Equal(rc.Time) {
		t.Fatalf("receipt back = %+v, %v; want %+v", back, err, rc)
	}
	_, err = admin.GetReceipt(ctx, &api.GetReceiptRequest{ID: "0000"})
	wantError(t, err, http.StatusNotFound, api.CodeNotFound)

	// Batch deletion: one result per id, in order.
	br, err := admin.DeleteSamples(ctx, &api.DeleteSamplesRequest{Model: "fmnist", IDs: []string{"s01", "s05", "nope", "s02"}})
	if err != nil {
		t.Fatalf("batch delete: %v", err)
	}
	want := []string{api.DeletionDeleted, api.DeletionGone, api.DeletionNotFound, api.DeletionDeleted}
	for i, r := range br.Results {
		if r.Status != want[i] {
			t.Errorf("batch result %d = %+v, want %s", i, r, want[i])
		}
	}
	if br.Results[1].Receipt == nil || br.Results[1].Receipt.ID != rc.ID {
		t.Errorf("gone result carries %+v, want the earlier receipt %s", br.Results[1].Receipt, rc.ID)
	}
	// The largest batch, 10,000 ids of 512 bytes each written as Go's encoder escapes "<"
	// (6 bytes each, about 30 MB of JSON), fits the route's body limit (the JSON routes' 1 MiB
	// refused it): every id is unknown, none deleted.
	big := make([]string, 10000)
	for i := range big {
		big[i] = fmt.Sprintf("%05d", i) + strings.Repeat("<", 507)
	}
	br, err = admin.DeleteSamples(ctx, &api.DeleteSamplesRequest{Model: "fmnist", IDs: big})
	if err != nil {
		t.Fatalf("batch of 10,000 long ids: %v", err)
	}
	if len(br.Results) != len(big) || br.Results[9999].Status != api.DeletionNotFound {
		t.Fatalf("batch of 10,000 long ids: %d results, the last %+v", len(br.Results), br.Results[len(br.Results)-1])
	}
	m, err = admin.GetModel(ctx, &api.GetModelRequest{Name: "fmnist"})
	if err != nil || m.Samples != 9 {
		t.Fatalf("model after deletions = %+v, %v; want 9 samples", m, err)
	}

	all, err := admin.ListReceipts(ctx, &api.ListReceiptsRequest{Model: "fmnist"})
	if err != nil || len(all.Receipts) != 3 || all.Receipts[0].ID != rc.ID {
		t.Fatalf("receipts = %+v, %v; want 3, the first %s", all, err, rc.ID)
	}
	for i := 1; i < len(all.Receipts); i++ {
		if all.Receipts[i].LedgerVersion <= all.Receipts[i-1].LedgerVersion {
			t.Fatalf("receipts out of ledger order: %+v", all.Receipts)
		}
	}
	// A page at a time: the next page starts after the last one's ledger version.
	page, err := admin.ListReceipts(ctx, &api.ListReceiptsRequest{Model: "fmnist", Limit: 2})
	if err != nil || len(page.Receipts) != 2 || page.Next != all.Receipts[1].LedgerVersion {
		t.Fatalf("first page of 2 = %+v, %v; want 2 and next %d", page, err, all.Receipts[1].LedgerVersion)
	}
	page, err = admin.ListReceipts(ctx, &api.ListReceiptsRequest{Model: "fmnist", After: page.Next, Limit: 2})
	if err != nil || len(page.Receipts) != 1 || page.Receipts[0].ID != all.Receipts[2].ID || page.Next != 0 {
		t.Fatalf("last page = %+v, %v; want the third receipt and no next", page, err)
	}
	if every, err := admin.AllReceipts(ctx, "fmnist"); err != nil || len(every) != 3 {
		t.Fatalf("AllReceipts = %d, %v; want 3", len(every), err)
	}
	for _, q := range []string{"after=-1", "after=x", "limit=0", fmt.Sprintf("limit=%d", api.MaxReceiptsPage+1)} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/models/fmnist/deletions?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("receipts ?%s: %d, want 400", q, resp.StatusCode)
		}
	}
	_, err = admin.ListReceipts(ctx, &api.ListReceiptsRequest{Model: "nomodel"})
	wantError(t, err, http.StatusNotFound, api.CodeNotFound)
	// Ledger errors read without the store package's prefixes.
	_, err = admin.GetModel(ctx, &api.GetModelRequest{Name: "nomodel"})
	if e := wantError(t, err, http.StatusNotFound, api.CodeNotFound); e.Message != `get model "nomodel": not found` {
		t.Errorf("unknown model: %q", e.Message)
	}

	// Training is a seam for the training issue: 501 without a trainer.
	_, err = trainer.StartTraining(ctx, &api.StartTrainingRequest{Model: "fmnist"})
	wantError(t, err, http.StatusNotImplemented, api.CodeNotImplemented)

	// Metrics count the deletions and the requests by route.
	body, _ := io.ReadAll(get(t, ts.URL+"/metrics").Body)
	for _, w := range []string{`s3t_deletions_total{result="deleted"} 3`, `s3t_deletions_total{result="gone"} 2`,
		`s3t_http_requests_total{method="DELETE",route="/v1/models/:name/samples/:id",status="410"} 1`,
		`s3t_http_request_duration_seconds_bucket{method="POST",route="/v1/models/:name/samples"`} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}

	// A backbone in use cannot be deleted; deleting the model erases it and frees the backbone.
	_, err = admin.DeleteBackbone(ctx, &api.DeleteBackboneRequest{Name: "vit"})
	wantError(t, err, http.StatusConflict, api.CodeConflict)
	if _, err := admin.DeleteModel(ctx, &api.DeleteModelRequest{Name: "fmnist"}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.GetModel(ctx, &api.GetModelRequest{Name: "fmnist"})
	wantError(t, err, http.StatusNotFound, api.CodeNotFound)
	if _, err := admin.DeleteBackbone(ctx, &api.DeleteBackboneRequest{Name: "vit"}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.GetBackbone(ctx, &api.GetBackboneRequest{Name: "vit"})
	wantError(t, err, http.StatusNotFound, api.CodeNotFound)
}
