package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/unlearning"
)

// checkLedger verifies a model's ledger against itself: replaying the receipts in ledger
// order on fresh shards gives the stored live prefixes and each receipt's truncations; no
// receipt's sample is readable; unit counts match the stored samples.
func checkLedger(t testing.TB, s *Store, model string) *Model {
	t.Helper()
	ctx := context.Background()
	m, err := s.GetModel(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.Receipts(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	shards := make([]*unlearning.Shard, m.Shards)
	for k := range shards {
		shards[k], _ = unlearning.NewShard(m.Sequences[k])
	}
	var last int64
	for _, r := range recs {
		if r.LedgerVersion <= last || r.LedgerVersion > m.Version {
			t.Errorf("receipt %s: ledger version %d after %d (model at %d)", r.ID, r.LedgerVersion, last, m.Version)
		}
		last = r.LedgerVersion
		plan, err := shards[r.Shard].Delete(r.Slice)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(plan.Truncations, r.Truncations) || !reflect.DeepEqual(shards[r.Shard].Live(), r.Live) ||
			shards[r.Shard].Served() != r.Served {
			t.Errorf("receipt %s: truncations %v live %v served %v; replay gives %v %v %v", r.ID, r.Truncations, r.Live, r.Served,
				plan.Truncations, shards[r.Shard].Live(), shards[r.Shard].Served())
		}
		if _, err := s.GetSample(ctx, model, r.SampleID); !errors.Is(err, ErrGone) {
			t.Errorf("receipt %s: sample %s still readable (%v)", r.ID, r.SampleID, err)
		}
	}
	for k, sh := range shards {
		if !reflect.DeepEqual(sh.Live(), m.Live[k]) {
			t.Errorf("shard %d: stored live %v, receipts give %v", k, m.Live[k], sh.Live())
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT u.shard, u.slice, u.count, (SELECT COUNT(*) FROM samples x WHERE x.model = u.model AND x.shard = u.shard AND x.slice = u.slice)
		FROM units u WHERE u.model = $1`, model)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, l, c, n int
		if err := rows.Scan(&k, &l, &c, &n); err != nil {
			t.Fatal(err)
		}
		if c != n {
			t.Errorf("unit (%d, %d): count %d, %d samples stored", k, l, c, n)
		}
	}
	return m
}

func TestDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("del")
		mustModel(t, s, spec(name, 2, 4, 2), 100)
		p, _ := s.Placement(ctx, name, "s000010")
		before, _ := s.GetModel(ctx, name)

		rec, err := s.Delete(ctx, name, "s000010")
		if err != nil {
			t.Fatal(err)
		}
		sh, _ := unlearning.RestoreShard(before.Sequences[p.Shard], before.Live[p.Shard])
		plan, _ := sh.Delete(p.Slice)
		if rec.Shard != p.Shard || rec.Slice != p.Slice || rec.Model != name || rec.SampleID != "s000010" ||
			!reflect.DeepEqual(rec.Truncations, plan.Truncations) || rec.Served != sh.Served() ||
			rec.LedgerVersion != before.Version+1 || len(rec.ID) != 32 || rec.Time.IsZero() {
			t.Fatalf("receipt %+v; plan %+v", rec, plan)
		}
		if len(rec.Truncations) != 2 {
			t.Errorf("a full shard with two sequences should lose stages in both: %+v", rec.Truncations)
		}
		after := checkLedger(t, s, name)
		if after.Samples != before.Samples-1 || !reflect.DeepEqual(after.Live[p.Shard], sh.Live()) {
			t.Errorf("after delete: samples %d, live %v", after.Samples, after.Live)
		}
		if !reflect.DeepEqual(after.Live[1-p.Shard], before.Live[1-p.Shard]) {
			t.Errorf("other shard changed: %v", after.Live[1-p.Shard])
		}
		if v, _, err := s.Stamp(ctx, name); err != nil || v != rec.LedgerVersion {
			t.Errorf("Stamp = %d, %v; want %d", v, err, rec.LedgerVersion)
		}
		if _, _, err := s.Stamp(ctx, uniqueName("nope")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stamp(unknown) = %v", err)
		}
		got, err := s.GetReceipt(ctx, rec.ID)
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Errorf("GetReceipt = %+v, %v; want %+v", got, err, rec)
		}

		tests := []struct {
			name, model, id string
			want            error
		}{
			{"unknown id", name, "nope", ErrNotFound},
			{"unknown model", uniqueName("nope"), "s000001", ErrNotFound},
			{"deleted id", name, "s000010", ErrGone},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, err := s.Delete(ctx, tt.model, tt.id)
				if !errors.Is(err, tt.want) || r != nil {
					t.Fatalf("Delete = %v, %v; want %v", r, err, tt.want)
				}
				var gone *GoneError
				if errors.As(err, &gone) && !reflect.DeepEqual(gone.Receipt, rec) {
					t.Errorf("gone receipt %+v, want %+v", gone.Receipt, rec)
				}
			})
		}
		if _, err := s.GetReceipt(ctx, "0000"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetReceipt(unknown) = %v", err)
		}
		if _, err := s.GetSample(ctx, name, "s000010"); !errors.Is(err, ErrGone) {
			t.Errorf("GetSample(deleted) = %v", err)
		}
		if _, err := s.Placement(ctx, name, "s000010"); !errors.Is(err, ErrGone) {
			t.Errorf("Placement(deleted) = %v", err)
		}
		// Delete everything: prefixes only ever shrink, every shard dies, the ledger holds.
		for i := range 100 {
			_, err := s.Delete(ctx, name, fmt.Sprintf("s%06d", i))
			if err != nil && !errors.Is(err, ErrGone) {
				t.Fatal(err)
			}
		}
		m := checkLedger(t, s, name)
		for k, sv := range m.Serving() {
			if sv.Length != 0 || m.Samples != 0 {
				t.Errorf("shard %d still serves %+v with %d samples", k, sv, m.Samples)
			}
		}
	})
}

func TestDeleteSameIDConcurrently(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("race")
		mustModel(t, s, spec(name, 2, 4, 2), 50)
		for _, id := range []string{"s000001", "s000002", "s000003"} {
			const n = 8
			var wg sync.WaitGroup
			recs := make([]*Receipt, n)
			errs := make([]error, n)
			for g := range n {
				wg.Go(func() { recs[g], errs[g] = s.Delete(ctx, name, id) })
			}
			wg.Wait()
			var winner *Receipt
			for g := range n {
				if errs[g] == nil {
					if winner != nil {
						t.Fatalf("%s: two receipts %s and %s", id, winner.ID, recs[g].ID)
					}
					winner = recs[g]
				}
			}
			if winner == nil {
				t.Fatalf("%s: no receipt: %v", id, errs)
			}
			for g := range n {
				var gone *GoneError
				if errs[g] != nil && (!errors.As(errs[g], &gone) || gone.Receipt.ID != winner.ID) {
					t.Errorf("%s: loser got %v", id, errs[g])
				}
			}
		}
		var count int
		s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deletions WHERE model = $1`, name).Scan(&count)
		if count != 3 {
			t.Errorf("%d receipts, want 3", count)
		}
		checkLedger(t, s, name)
	})
}

func TestDeleteDifferentIDsConcurrently(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("par")
		mustModel(t, s, spec(name, 4, 4, 2), 200)
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for g := range 8 {
			wg.Go(func() {
				for i := g; i < 200; i += 8 {
					if _, err := s.Delete(ctx, name, fmt.Sprintf("s%06d", i)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		m := checkLedger(t, s, name)
		if m.Samples != 0 || m.Version != 201 {
			t.Errorf("samples %d version %d", m.Samples, m.Version)
		}
	})
}

func TestDeleteBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("batch")
		mustModel(t, s, spec(name, 2, 4, 2), 20)
		first, err := s.Delete(ctx, name, "s000000")
		if err != nil {
			t.Fatal(err)
		}
		before, _ := s.GetModel(ctx, name)
		ids := []string{"s000001", "nope", "s000000", "s000002", "s000001"}
		res, err := s.DeleteBatch(ctx, name, ids)
		if err != nil {
			t.Fatal(err)
		}
		want := []error{nil, ErrNotFound, ErrGone, nil, ErrGone}
		for i, r := range res {
			if r.SampleID != ids[i] || !errors.Is(r.Err, want[i]) || (want[i] == nil) != (r.Err == nil) {
				t.Errorf("result %d = %+v, want err %v", i, r, want[i])
			}
		}
		if res[2].Receipt.ID != first.ID || res[4].Receipt.ID != res[0].Receipt.ID {
			t.Errorf("gone results carry the wrong receipts: %+v", res)
		}
		if res[0].Receipt.LedgerVersion != before.Version+1 || res[3].Receipt.LedgerVersion != before.Version+2 {
			t.Errorf("versions %d, %d after %d", res[0].Receipt.LedgerVersion, res[3].Receipt.LedgerVersion, before.Version)
		}
		m := checkLedger(t, s, name)
		if m.Samples != 17 || m.Version != before.Version+2 {
			t.Errorf("samples %d version %d", m.Samples, m.Version)
		}
		if _, err := s.DeleteBatch(ctx, uniqueName("nope"), ids); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown model: %v", err)
		}
		// A batch whose context is cancelled changes nothing.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.DeleteBatch(cctx, name, []string{"s000005", "s000006"}); err == nil {
			t.Fatal("cancelled batch succeeded")
		}
		if m2 := checkLedger(t, s, name); m2.Version != m.Version || m2.Samples != m.Samples {
			t.Errorf("cancelled batch changed the ledger")
		}
	})
}

func TestPurgeQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("purge")
		mustModel(t, s, spec(name, 2, 2, 1), 0)
		if _, err := s.PutSamples(ctx, name, []Sample{{ID: "a", Label: "x", BlobKey: "inputs/a"}, {ID: "b", Label: "y", Input: []byte("b")}}); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		fail := true
		var seen []Purge
		s.OnPurge(func(ctx context.Context, p Purge) error {
			mu.Lock()
			defer mu.Unlock()
			if p.Model != name {
				return nil // other tests' purges on a shared PostgreSQL
			}
			if fail {
				return errors.New("cache unavailable")
			}
			seen = append(seen, p)
			return nil
		})
		rec, err := s.Delete(ctx, name, "a")
		if err != nil {
			t.Fatalf("a failing purger must not fail the deletion: %v", err)
		}
		pending := pendingFor(t, s, name)
		if len(pending) != 1 || pending[0].ID != rec.ID || pending[0].BlobKey != "inputs/a" || pending[0].Shard != rec.Shard {
			t.Fatalf("pending = %+v", pending)
		}
		mu.Lock()
		fail = false
		mu.Unlock()
		if _, err := s.DrainPurges(ctx); err != nil {
			t.Fatal(err)
		}
		if len(pendingFor(t, s, name)) != 0 || len(seen) != 1 || seen[0].SampleID != "a" {
			t.Fatalf("after drain: pending %v, seen %+v", pendingFor(t, s, name), seen)
		}
		if err := s.DeleteModel(ctx, name); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || seen[1].SampleID != "" || seen[1].Shard != -1 {
			t.Fatalf("DeleteModel purges: %+v", seen)
		}
	})
}

func pendingFor(t testing.TB, s *Store, model string) []Purge {
	t.Helper()
	all, err := s.PendingPurges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []Purge
	for _, p := range all {
		if p.Model == model {
			out = append(out, p)
		}
	}
	return out
}

func TestSecureDeleteLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	ctx := context.Background()
	mustModel(t, s, spec("m", 2, 2, 1), 500)
	marker := []byte("SECRET-MARKER-7c1f9a")
	if _, err := s.PutSamples(ctx, "m", []Sample{{ID: "secret", Label: "x", Input: marker}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, LedgerFile)
	if !fileContains(t, db, marker) {
		t.Fatal("marker not found in the database before deletion; test is broken")
	}
	if _, err := s.Delete(ctx, "m", "secret"); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{db, db + "-wal", db + "-journal"} {
		if fileContains(t, f, marker) {
			t.Errorf("%s still holds the deleted input", filepath.Base(f))
		}
	}
}

// TestQueuedPurgesAreRetried checks that a purge left queued by a failing purger runs again on
// its own, without a DrainPurges (a restart, in practice): the derived data of a deleted sample
// stayed in the bucket until the process next started.
func TestQueuedPurgesAreRetried(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(ctx, b.dsn(t), WithLogger(quiet), WithPurgeRetry(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			name := uniqueName("retry")
			mustModel(t, s, spec(name, 1, 1, 1), 0)
			if _, err := s.PutSamples(ctx, name, []Sample{{ID: "a", Label: "x", Input: []byte("a")}}); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			fail, runs := true, 0
			s.OnPurge(func(ctx context.Context, p Purge) error {
				mu.Lock()
				defer mu.Unlock()
				if p.Model != name {
					return nil
				}
				runs++
				if fail {
					return errors.New("bucket unavailable")
				}
				return nil
			})
			if _, err := s.Delete(ctx, name, "a"); err != nil {
				t.Fatal(err)
			}
			if len(pendingFor(t, s, name)) != 1 {
				t.Fatal("the failed purge is not queued")
			}
			mu.Lock()
			fail = false
			mu.Unlock()
			for deadline := time.Now().Add(10 * time.Second); len(pendingFor(t, s, name)) != 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the queued purge was not retried")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if runs < 2 {
				t.Fatalf("purger ran %d times, want the failure and a retry", runs)
			}
		})
	}
}

// TestErasuresOnlyGrow checks the count the embedded server's compaction follows: every
// committed deletion of samples or of a model raises it, where the number of receipts can come
// back to an earlier value (a model's deletion takes its receipts along), and the rewrite was
// skipped after new deletions.
func TestErasuresOnlyGrow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := uniqueName("era"), uniqueName("erb")
		for _, m := range []string{a, b} {
			mustModel(t, s, spec(m, 1, 1, 1), 0)
			if _, err := s.PutSamples(ctx, m, []Sample{{ID: "x", Label: "x", Input: []byte("x")}, {ID: "y", Label: "x", Input: []byte("y")}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.DeleteBatch(ctx, a, []string{"x", "y"}); err != nil {
			t.Fatal(err)
		}
		before, err := s.DeletionTotal(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e0 := s.Erasures()
		if err := s.DeleteModel(ctx, a); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(ctx, b, "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteBatch(ctx, b, []string{"y", "nope"}); err != nil {
			t.Fatal(err)
		}
		after, _ := s.DeletionTotal(ctx)
		if after != before {
			t.Fatalf("receipts %d, then %d: the case this test is about needs them equal", before, after)
		}
		if e := s.Erasures(); e != e0+3 {
			t.Fatalf("erasures %d after a model's deletion and two of samples, want %d", e, e0+3)
		}
		if _, err := s.DeleteBatch(ctx, b, []string{"nope"}); err != nil { // nothing deleted
			t.Fatal(err)
		}
		if e := s.Erasures(); e != e0+3 {
			t.Fatalf("a batch that deleted nothing counted: erasures %d", e)
		}
	})
}

// TestOpenFoldsALeftoverLog: a process killed right after a deletion leaves the erasure in the
// write-ahead log and the erased input's old page in the database file. The store folds the
// log in shortly after it opens, not at its first write, which a restarted server may not make
// for a while (the bytes stayed in ledger.db after a restart in a chaos audit).
func TestOpenFoldsALeftoverLog(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	ctx := context.Background()
	mustModel(t, s, spec("m", 1, 2, 1), 50)
	marker := []byte("SECRET-MARKER-4e2d81")
	if _, err := s.PutSamples(ctx, "m", []Sample{{ID: "secret", Label: "x", Input: marker}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "m", "secret"); err != nil {
		t.Fatal(err)
	}
	// The crash image: the files as they are right after the deletion's commit, before the
	// background checkpoint (which waits for a tick without writes).
	crashed := t.TempDir()
	// The log first: should the background checkpoint run between the two copies, the copied
	// file then holds the erasure, and the test skips rather than fail.
	for _, f := range []string{LedgerFile + "-wal", LedgerFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(crashed, LedgerFile)
	if !fileContains(t, db, marker) {
		t.Skip("the background checkpoint ran before the files were copied: no crash image to test")
	}
	r, err := Open(ctx, SQLiteDSN(crashed), WithLogger(quiet)) // no Migrate: nothing written
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for deadline := time.Now().Add(3 * time.Second); fileContains(t, db, marker) || fileContains(t, db+"-wal", marker); {
		if time.Now().After(deadline) {
			t.Fatal("the deleted input is still in the database files 3 s after the store opened")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The deletion itself survived the crash.
	if _, err := r.GetSample(ctx, "m", "secret"); !errors.Is(err, ErrGone) {
		t.Fatalf("deleted sample after the crash: %v, want ErrGone", err)
	}
}
