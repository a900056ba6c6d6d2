package server_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
)

// TestGracefulShutdown cancels Serve while an upload is streaming: the upload completes and is
// stored, then Serve returns without error and new connections are refused.
func TestGracefulShutdown(t *testing.T) {
	ctx := context.Background()
	ts, c := untrainedModel(t)
	pr, pw := io.Pipe()
	type result struct {
		res *api.UploadSamplesResponse
		err error
	}
	got := make(chan result, 1)
	go func() {
		res, err := c.UploadNDJSON(ctx, "m", pr)
		got <- result{res, err}
	}()
	// The first line reaches the handler, which then waits for more: the request is in flight.
	fmt.Fprintln(pw, withPixels(`{"id":"first","input":PIX,"label":"a"}`))
	time.Sleep(200 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	default:
	}
	fmt.Fprintln(pw, withPixels(`{"id":"second","input":PIX,"label":"b"}`))
	pw.Close()
	r := <-got
	if r.err != nil || r.res.Stored != 2 {
		t.Fatalf("in-flight upload = %+v, %v", r.res, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := c.Health(ctx, &api.HealthRequest{}); err == nil {
		t.Fatal("the server still answers after shutdown")
	}
}
