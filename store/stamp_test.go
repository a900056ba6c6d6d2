package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestStampExclusive: with WithExclusive, Stamp answers from memory until a write of the Store
// commits, and after every kind of write that changes a model's version or identity (samples,
// checkpoints, a deletion, a batch of them, a retraining's swap, the model's deletion and its
// creation again) it is the database's own; a row changed behind the Store's back, which
// WithExclusive rules out, shows that the answers come from memory in between.
func TestStampExclusive(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, SQLiteDSN(t.TempDir()), WithLogger(quiet), WithExclusive())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const name = "x"
	check := func(step string) {
		t.Helper()
		for range 2 { // the read that fills the cache, then one from it
			v, c, err := s.Stamp(ctx, name)
			dv, dc, derr := s.readStamp(ctx, name)
			notFound := errors.Is(err, ErrNotFound)
			if v != dv || !c.Equal(dc) || notFound != errors.Is(derr, ErrNotFound) || err != nil && !notFound {
				t.Fatalf("after %s: Stamp = %d %v %v, the database %d %v %v", step, v, c, err, dv, dc, derr)
			}
		}
	}
	mustModel(t, s, spec(name, 1, 3, 1), 30)
	check("creation and upload")
	tgt, err := s.Target(ctx, name, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	for stage := 1; stage <= 3; stage++ {
		if err := s.PublishCheckpoint(ctx, ckpt(name, 0, 1, stage, tgt.Snapshot)); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("publishing stage %d", stage))
	}

	// Behind the Store's back: not seen until the Store's next commit.
	before, _, _ := s.Stamp(ctx, name)
	if _, err := s.db.ExecContext(ctx, `UPDATE models SET version = version + 100 WHERE name = $1`, name); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Stamp(ctx, name); v != before {
		t.Fatalf("Stamp %d after a change behind the Store's back, want the cached %d", v, before)
	}
	if _, err := s.PutSamples(ctx, name, samples("t", 3)); err != nil {
		t.Fatal(err)
	}
	check("an upload")

	if _, err := s.Delete(ctx, name, sampleIn(t, s, name, 2)); err != nil {
		t.Fatal(err)
	}
	check("a deletion")
	if _, err := s.DeleteBatch(ctx, name, []string{sampleIn(t, s, name, 0), sampleIn(t, s, name, 1)}); err != nil {
		t.Fatal(err)
	}
	check("a batch deletion")
	tgt, err = s.Target(ctx, name, 0, 0, false)
	if err != nil || !tgt.Retrain {
		t.Fatalf("Target = %+v, %v; want a retraining", tgt, err)
	}
	var digests []string
	for stage := 1; stage <= 3; stage++ {
		if err := s.PublishCheckpoint(ctx, ckpt(name, 0, tgt.Gen, stage, tgt.Snapshot)); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, fmt.Sprintf("d0-%d-%d", tgt.Gen, stage))
	}
	if _, err := s.SwapGeneration(ctx, name, 0, 0, tgt.Gen, tgt.Snapshot, digests); err != nil {
		t.Fatal(err)
	}
	check("a retraining's swap")
	if err := s.DeleteModel(ctx, name); err != nil {
		t.Fatal(err)
	}
	check("the model's deletion")
	mustModel(t, s, spec(name, 1, 3, 1), 3)
	check("the model's creation again")
}

// TestPing: Ping answers for a migrated ledger and fails, creating nothing, for one that is not
// (SchemaVersion, which /readyz ran before, created the migrations' table on every probe) and
// for a closed one.
func TestPing(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, s *Store) {
		if err := s.Ping(ctx); err != nil {
			t.Errorf("a migrated ledger: %v", err)
		}
	})
	fresh, err := Open(ctx, SQLiteDSN(t.TempDir()), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.Ping(ctx); err == nil {
		t.Error("an unmigrated ledger answers Ping")
	}
	var n int
	if err := fresh.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_migrations'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("Ping created the migrations' table (%d, %v)", n, err)
	}
	closed := openSQLite(t, t.TempDir())
	closed.Close()
	if err := closed.Ping(ctx); err == nil {
		t.Error("a closed ledger answers Ping")
	}
}
