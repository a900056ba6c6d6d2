package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// queueOnlyServer serves, on a real listener, a server whose training runner queues jobs and
// works none (its queue has no workers, as on a replica that leaves training to others), with a
// model "m" of 4 samples, not trained. st is its ledger, for a test to write the rows a worker
// would. stop cancels Serve and returns its error; the cleanup waits for Serve to return.
func queueOnlyServer(t *testing.T) (url string, c *api.Client, st *store.Store, stop func() error) {
	t.Helper()
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs, err := st.NewJobs(store.JobsConfig{Workers: 0})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := training.New(training.Config{Store: st, Blobs: blobs, Jobs: jobs, WorkDir: filepath.Join(t.TempDir(), "work"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Trainer: runner, Logger: quiet, DisableRuntime: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	var (
		once     sync.Once
		serveErr error
	)
	stop = func() error {
		once.Do(func() { cancel(); serveErr = <-served })
		return serveErr
	}
	t.Cleanup(func() { stop() })
	url = "http://" + ln.Addr().String()

	if c, err = api.NewClient(url); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1},
		Training: api.TrainingConfig{Epochs: 1, LearningRate: 1e-2, BatchSize: 2}}
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	var ndjson strings.Builder
	for i := range 4 {
		fmt.Fprintln(&ndjson, withPixels(fmt.Sprintf(`{"id":"s%d","input":PIX,"label":"a"}`, i)))
	}
	if _, err := c.UploadNDJSON(ctx, "m", strings.NewReader(ndjson.String())); err != nil {
		t.Fatal(err)
	}
	return url, c, st, stop
}

// queuedTrainingServer is queueOnlyServer with the training of "m" queued: it stays unfinished
// for as long as the test runs.
func queuedTrainingServer(t *testing.T) (url string, stop func() error) {
	t.Helper()
	url, c, _, stop := queueOnlyServer(t)
	if res, err := c.StartTraining(context.Background(), &api.StartTrainingRequest{Model: "m"}); err != nil || len(res.Jobs) != 1 {
		t.Fatalf("start training = %+v, %v; want 1 job", res, err)
	}
	return url, stop
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ event, data string }

// readEvents sends the events of an SSE stream on a channel, closed at the stream's end.
func readEvents(body io.Reader) <-chan sseEvent {
	out := make(chan sseEvent, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

// TestShutdownEndsTrainingEvents: a training event stream stays open while the model's training
// is queued; stopping the server ends it at once with a final error event (code unavailable),
// and Serve returns nil long before the shutdown timeout (it used to wait the whole
// DefaultShutdownTimeout and fail with "context deadline exceeded").
func TestShutdownEndsTrainingEvents(t *testing.T) {
	url, stop := queuedTrainingServer(t)
	req, err := http.NewRequest(http.MethodGet, url+"/v1/models/m/training/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET training/events = %d %s", resp.StatusCode, ct)
	}
	events := readEvents(resp.Body)
	// Two progress events: the stream is open and following the queued training.
	for range 2 {
		select {
		case ev := <-events:
			var st api.TrainingStatus
			if ev.event != "progress" || json.Unmarshal([]byte(ev.data), &st) != nil || st.Done || len(st.Jobs) != 1 || st.Jobs[0].State != api.TrainingQueued {
				t.Fatalf("event %q %s, want progress with the queued job", ev.event, ev.data)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no progress event")
		}
	}

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	var last sseEvent
	deadline := time.After(server.DefaultShutdownTimeout / 3)
wait:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				break wait // the server ended the stream
			}
			last = ev
		case <-deadline:
			t.Fatalf("the training event stream was still open %v after the shutdown began (last event %q)", time.Since(start), last.event)
		}
	}
	if last.event != "error" {
		t.Fatalf("last event %q %s, want an error event", last.event, last.data)
	}
	var body api.ErrorBody
	if err := json.Unmarshal([]byte(last.data), &body); err != nil || body.Error == nil || body.Error.Code != api.CodeUnavailable || !strings.Contains(body.Error.Message, "shutting down") {
		t.Fatalf("final event data %s (%v), want an ErrorBody with code %s saying the server is shutting down", last.data, err, api.CodeUnavailable)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Serve had not returned %v after the shutdown began, with a training event stream open", time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a training event stream open", d)
	}
}

// TestShutdownEndsWatchTraining: the api client's WatchTraining, following a queued training,
// returns the server's shutdown error when the server stops, not a cut stream.
func TestShutdownEndsWatchTraining(t *testing.T) {
	url, stop := queuedTrainingServer(t)
	c, err := api.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	watched := make(chan error, 1)
	go func() {
		n := 0
		_, err := c.WatchTraining(context.Background(), &api.GetTrainingRequest{Model: "m"}, func(*api.TrainingStatus) error {
			if n++; n == 1 {
				close(first)
			}
			return nil
		})
		watched <- err
	}()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no progress event")
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a client watching the training", d)
	}
	select {
	case err := <-watched:
		var e *api.Error
		if !errors.As(err, &e) || e.Code != api.CodeUnavailable || !strings.Contains(e.Message, "shutting down") {
			t.Fatalf("WatchTraining = %v, want the server's shutdown error (code %s)", err, api.CodeUnavailable)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchTraining did not return after the server stopped")
	}
}
