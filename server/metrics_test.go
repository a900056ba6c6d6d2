package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/buildinfo"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/store"
)

// statusTrainer is a Trainer whose Status reports fixed jobs (the other methods are not
// called here).
type statusTrainer struct {
	server.Trainer
	jobs []*store.Training
}

func (f *statusTrainer) Status(context.Context, string) ([]*store.Training, error) {
	return f.jobs, nil
}

// sample is one series of a text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads /metrics into its series.
func scrape(t *testing.T, url string) []sample {
	t.Helper()
	resp := get(t, url+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if j := strings.IndexByte(s.name, '{'); j >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.name[j+1:], "}"), ",") {
				k, val, _ := strings.Cut(kv, "=")
				s.labels[k] = strings.Trim(val, `"`)
			}
			s.name = s.name[:j]
		}
		out = append(out, s)
	}
	return out
}

// value finds the series name with (at least) labels "k=v" and returns its value.
func value(t *testing.T, series []sample, name string, labels ...string) float64 {
	t.Helper()
next:
	for _, s := range series {
		if s.name != name {
			continue
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value
	}
	t.Fatalf("no series %s%v on /metrics", name, labels)
	return 0
}

func TestMetricsLedgerState(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, testmodel.Options{Samples: 32})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := &statusTrainer{jobs: []*store.Training{
		{JobID: 1, Model: fx.Name, State: store.TrainingDone, Step: 10, Steps: 10},
		{JobID: 2, Model: fx.Name, Sequence: 1, State: store.TrainingRunning, Step: 4, Steps: 10},
		{JobID: 3, Model: fx.Name, Shard: 1, State: store.TrainingCancelled, Step: 1, Steps: 10},
	}}
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Logger: quiet, DisableRuntime: true, Trainer: tr,
		QueueDepth: func(context.Context) (int, int, error) { return 3, 1, nil }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	m := scrape(t, hs.URL)
	model := "model=" + fx.Name
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"s3t_ledger_scrape_success", nil, 1},
		{"s3t_queue_jobs", []string{"state=waiting"}, 3},
		{"s3t_queue_jobs", []string{"state=running"}, 1},
		{"s3t_training_jobs", []string{model, "state=running"}, 1},
		{"s3t_training_jobs", []string{model, "state=done"}, 1},
		{"s3t_training_jobs", []string{model, "state=queued"}, 0},
		{"s3t_training_steps", []string{model, "kind=done"}, 14},
		{"s3t_training_steps", []string{model, "kind=total"}, 20},
		{"s3t_training_progress_ratio", []string{model}, 0.7},
		{"s3t_model_samples", []string{model}, 32},
		{"s3t_model_deletions", []string{model, "shard=1"}, 0},
	}
	for k := range fx.Sequences {
		shard := "shard=" + strconv.Itoa(k)
		checks = append(checks, struct {
			name   string
			labels []string
			want   float64
		}{"s3t_served_prefix_length", []string{model, shard}, 2})
		for b := range fx.Sequences[k] {
			seq := "sequence=" + strconv.Itoa(b)
			checks = append(checks, struct {
				name   string
				labels []string
				want   float64
			}{"s3t_live_prefix_length", []string{model, shard, seq}, 2}, struct {
				name   string
				labels []string
				want   float64
			}{"s3t_trained_stages", []string{model, shard, seq}, 2})
		}
	}
	for _, c := range checks {
		if got := value(t, m, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// Delete a sample of the last slice of shard 0's sequence 0: that sequence's prefix is cut
	// to 1, the shard's deletions count 1, and the request counters see the deletion.
	cl, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	seq := fx.Sequences[0][0]
	id := fx.Units[0][seq[len(seq)-1]][0]
	if _, err := cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: fx.Name, ID: id}); err != nil {
		t.Fatal(err)
	}
	m = scrape(t, hs.URL)
	if got := value(t, m, "s3t_live_prefix_length", model, "shard=0", "sequence=0"); got != 1 {
		t.Errorf("live prefix of (0, 0) after the deletion = %v, want 1", got)
	}
	if got := value(t, m, "s3t_model_deletions", model, "shard=0"); got != 1 {
		t.Errorf("deletions of shard 0 = %v, want 1", got)
	}
	if got := value(t, m, "s3t_model_samples", model); got != 31 {
		t.Errorf("samples after the deletion = %v, want 31", got)
	}
	if got := value(t, m, "s3t_deletions_total", "result=deleted"); got != 1 {
		t.Errorf("s3t_deletions_total{result=deleted} = %v, want 1", got)
	}
	if got := value(t, m, "s3t_http_requests_total", "route=/v1/models/:name/samples/:id", "method=DELETE", "status=200"); got != 1 {
		t.Errorf("DELETE requests = %v, want 1", got)
	}
}

// A server without a queue or trainer still reports the ledger's state, and no queue series.
func TestMetricsWithoutQueue(t *testing.T) {
	ts := startServer(t, server.Config{}, nil)
	m := scrape(t, ts.URL)
	if got := value(t, m, "s3t_ledger_scrape_success"); got != 1 {
		t.Errorf("s3t_ledger_scrape_success = %v, want 1", got)
	}
	for _, s := range m {
		if s.name == "s3t_queue_jobs" {
			t.Errorf("queue series without Config.QueueDepth: %+v", s)
		}
	}
}

// TestMetricsLabelsAreBounded: a request's method becomes a label value only when it is a
// standard one ("other" otherwise): Go's server takes any token as a method, before any key is
// checked, so a client could add series without bound (an audit added 850 lines to /metrics
// with 50 methods). A batch deletion on an unknown model counts its ids as not_found, as the
// one-sample route does.
func TestMetricsLabelsAreBounded(t *testing.T) {
	ts := startServer(t, server.Config{}, map[string][]api.Scope{"k": {api.ScopeAdmin}})
	for _, method := range []string{"EVIL1", "EVIL2", strings.Repeat("M", 200), "GET"} {
		req, err := http.NewRequest(method, ts.URL+"/v1/models", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/models/nomodel/deletions", strings.NewReader(`{"ids":["a","b","c"]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("batch deletion on an unknown model: %d, want 404", resp.StatusCode)
	}
	m := scrape(t, ts.URL)
	standard := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
		"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true, "other": true}
	for _, s := range m {
		if method, ok := s.labels["method"]; ok && !standard[method] {
			t.Errorf("series %s has method label %q", s.name, method)
		}
	}
	if got := value(t, m, "s3t_http_requests_total", "route=/v1/models", "method=other"); got != 3 {
		t.Errorf("requests with odd methods counted %v times as other, want 3", got)
	}
	if got := value(t, m, "s3t_deletions_total", "result=not_found"); got != 3 {
		t.Errorf("s3t_deletions_total{result=not_found} = %v after a batch of 3 ids on an unknown model, want 3", got)
	}
}

// TestMetricsPurgeBacklogAndBuildInfo: a purge that keeps failing (a bucket that answers
// errors) left a deleted sample's checkpoints stored with nothing on /metrics to alert on, only
// a log line every 10 s; and nothing said which build a process runs. The purge queue's length
// and its oldest purge's age are on /metrics, and s3t_build_info names the build.
func TestMetricsPurgeBacklogAndBuildInfo(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, testmodel.Options{Samples: 32})
	var failing atomic.Bool
	failing.Store(true)
	st.OnPurge(func(context.Context, store.Purge) error {
		if failing.Load() {
			return errors.New("bucket unavailable")
		}
		return nil
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Logger: quiet, DisableRuntime: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	m := scrape(t, hs.URL)
	if got := value(t, m, "s3t_purges_pending"); got != 0 {
		t.Errorf("s3t_purges_pending before any deletion = %v, want 0", got)
	}
	if got := value(t, m, "s3t_build_info", "version="+buildinfo.Version(), "goversion="+runtime.Version()); got != 1 {
		t.Errorf("s3t_build_info = %v, want 1", got)
	}
	cl, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: fx.Name, ID: fx.Units[0][0][0]}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	m = scrape(t, hs.URL)
	if got := value(t, m, "s3t_purges_pending"); got != 1 {
		t.Errorf("s3t_purges_pending with a failing purge = %v, want 1", got)
	}
	if got := value(t, m, "s3t_purge_oldest_age_seconds"); got < 0.02 || got > 60 {
		t.Errorf("s3t_purge_oldest_age_seconds = %v, want the failing purge's age", got)
	}
	failing.Store(false)
	if _, err := st.DrainPurges(ctx); err != nil {
		t.Fatal(err)
	}
	m = scrape(t, hs.URL)
	if got := value(t, m, "s3t_purges_pending"); got != 0 {
		t.Errorf("s3t_purges_pending after the purge completed = %v, want 0", got)
	}
	if got := value(t, m, "s3t_purge_oldest_age_seconds"); got != 0 {
		t.Errorf("s3t_purge_oldest_age_seconds with no purge queued = %v, want 0", got)
	}
}
