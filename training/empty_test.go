package training_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/store"
)

// TestTrainRefusesEmptySlices: every stage needs data, so a model with an empty (shard, slice)
// unit is refused up front with a message that says which and what to do.
func TestTrainRefusesEmptySlices(t *testing.T) {
	e := newEnv(t, 2, 2, 2, 3)
	ids, err := e.runner.Start(context.Background(), testModel, false)
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "holds no samples") || len(ids) != 0 {
		t.Fatalf("Start = %v, %v; want ErrInvalid naming the empty unit", ids, err)
	}
}
