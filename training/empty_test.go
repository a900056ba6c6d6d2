package training_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/unlearning"
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

// TestRetrainAfterDeletionsEmptyASlice: deletions may empty a slice of a trained model (its
// data subjects all asked). The retraining policy and train must still retrain the shard on
// what remains: every sequence whose first slice holds samples (a later empty slice adds no
// data to its stage), bit for bit as from scratch on the remaining data; a sequence whose
// first slice is empty is left out, and refused with a reason when it is all there is to do.
func TestRetrainAfterDeletionsEmptyASlice(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, 2, 2, 48)
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(t, ids)
	m, err := e.st.GetModel(ctx, testModel)
	if err != nil {
		t.Fatal(err)
	}
	// Sequences [0 1] and [1 0]: delete all of slice 1 and one sample of slice 0, so that
	// nothing is live in the shard (what the default policy retrains).
	first, second := m.Sequences[0][0][0], m.Sequences[0][0][1]
	gone, err := e.st.ListSamples(ctx, testModel, unlearning.Placement{Shard: 0, Slice: second}, "", 0)
	if err != nil || len(gone) == 0 {
		t.Fatal(gone, err)
	}
	one, err := e.st.ListSamples(ctx, testModel, unlearning.Placement{Shard: 0, Slice: first}, "", 1)
	if err != nil || len(one) != 1 {
		t.Fatal(one, err)
	}
	var del []string
	for _, s := range append(gone, one...) {
		del = append(del, s.ID)
	}
	if _, err := e.st.DeleteBatch(ctx, testModel, del); err != nil {
		t.Fatal(err)
	}
	if m, _ = e.st.GetModel(ctx, testModel); !reflect.DeepEqual(m.Live, [][]int{{0, 0}}) {
		t.Fatalf("after the deletions live %v, want nothing live", m.Live)
	}
	for _, tc := range []struct {
		name  string
		start func() ([]int64, error)
	}{
		{"policy", func() ([]int64, error) { return e.runner.Retrain(ctx, testModel, []int{0}) }},
		{"train", func() ([]int64, error) { return e.runner.Start(ctx, testModel, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := tc.start()
			if err != nil || len(ids) != 1 {
				t.Fatalf("= %v, %v; want sequence 0 queued (its first slice holds samples)", ids, err)
			}
			e.wait(t, ids)
			m, _ := e.st.GetModel(ctx, testModel)
			if m.Live[0][0] != 2 || m.Trained[0][0] != 2 || m.Live[0][1] != 0 {
				t.Fatalf("after retraining live %v trained %v; want sequence 0 whole, 1 dead", m.Live, m.Trained)
			}
			_, c := e.served(t, 0)
			sameParams(t, "retrained C[0,0,2]", c, e.retrainFromScratch(t, 0, 0, 2))
			if want := 48 - len(del); c.Manifest.Samples != want {
				t.Errorf("the retrained stage saw %d samples, want %d", c.Manifest.Samples, want)
			}
			// Only sequence 1 is left, and it cannot be trained: refused, saying why.
			ids, err = tc.start()
			if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "sequence 1") || len(ids) != 0 {
				t.Fatalf("again = %v, %v; want ErrInvalid naming sequence 1", ids, err)
			}
			// Cut sequence 0 again for the next case.
			smps, _ := e.st.ListSamples(ctx, testModel, unlearning.Placement{Shard: 0, Slice: first}, "", 1)
			if _, err := e.st.Delete(ctx, testModel, smps[0].ID); err != nil {
				t.Fatal(err)
			}
			del = append(del, smps[0].ID)
		})
	}
}
