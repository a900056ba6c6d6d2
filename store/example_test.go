package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/s3t-dev/s3t/store"
)

// A model with 2 shards of 3 slices and 2 sequences each; one sample uploaded and deleted.
func ExampleStore_Delete() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "s3t-example")
	defer os.RemoveAll(dir)
	s, err := store.Open(ctx, store.SQLiteDSN(dir), store.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		panic(err)
	}
	seqs := [][]int{{0, 1, 2}, {2, 0, 1}}
	if _, err := s.CreateModel(ctx, store.ModelSpec{Name: "mnist", Slices: 3, Sequences: [][][]int{seqs, seqs},
		Key: []byte("example key, use unlearning.NewKey")}); err != nil {
		panic(err)
	}
	if _, err := s.PutSamples(ctx, "mnist", []store.Sample{{ID: "img-1", Label: "7", Input: []byte{0, 255}}}); err != nil {
		panic(err)
	}
	rec, err := s.Delete(ctx, "mnist", "img-1")
	if err != nil {
		panic(err)
	}
	fmt.Printf("shard %d slice %d: %d sequences truncated, serving sequence %d at length %d, ledger version %d\n",
		rec.Shard, rec.Slice, len(rec.Truncations), rec.Served.Sequence, rec.Served.Length, rec.LedgerVersion)
	_, err = s.Delete(ctx, "mnist", "img-1")
	fmt.Println(err != nil, errorsIsGone(err))
	// Output:
	// shard 1 slice 2: 2 sequences truncated, serving sequence 0 at length 2, ledger version 2
	// true true
}

func errorsIsGone(err error) bool {
	var gone *store.GoneError
	return errors.As(err, &gone) && gone.Receipt.SampleID == "img-1"
}
