package serving_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/store"
)

// TestUnknownModelError: every entry point of the service answers an unknown model with
// store.ErrNotFound, worded as the model not found (not as the ledger read that failed).
func TestUnknownModelError(t *testing.T) {
	st, blobs := testmodel.OpenStore(t)
	svc, err := serving.New(serving.Config{Store: st, Blobs: blobs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"Info", func() error { _, err := svc.Info(ctx, "nope"); return err }},
		{"Ready", func() error { _, err := svc.Ready(ctx, "nope"); return err }},
		{"Predict", func() error { _, err := svc.Predict(ctx, "nope", [][]float32{{1}}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, store.ErrNotFound) || err.Error() != `model "nope": not found` {
				t.Fatalf("err = %v, want store.ErrNotFound worded `model \"nope\": not found`", err)
			}
		})
	}
}
