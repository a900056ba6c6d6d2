package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// The tests in this file restart the store (close it and open the same database again, as a
// restarted or second process would) on every backend: SQLite, and PostgreSQL when
// S3T_TEST_DATABASE_URL is set. They are the backend-independent forms of the SQLite-only
// restart tests next to them (TestJobsSurviveRestart, TestPurgesSurviveACrash,
// TestPlacementsResumeAcrossBatchesAndRestarts).

func forEachReopenable(t *testing.T, f func(t *testing.T, dsn string)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b.dsn(t)) })
	}
}

func TestBackendJobsSurviveRestart(t *testing.T) {
	forEachReopenable(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := openDSN(t, dsn)
		// An enqueue-only instance (a serving replica) queues the job and goes away.
		j, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		id, err := j.Enqueue(ctx, "train", trainArgs{Model: "m", Shard: 3})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()

		w, err := openDSN(t, dsn).NewJobs(JobsConfig{Workers: 1, PollInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan Job, 1)
		w.Handle("train", func(ctx context.Context, job Job) error { done <- job; return nil })
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer w.Stop(ctx)
		select {
		case job := <-done:
			if job.ID != id {
				t.Errorf("ran job %d, want %d", job.ID, id)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the queued job was not run after the restart")
		}
		if info := waitJob(t, w, id); info.State != "completed" {
			t.Errorf("state %s", info.State)
		}
	})
}

func TestBackendPurgesSurviveARestart(t *testing.T) {
	forEachReopenable(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := openDSN(t, dsn)
		mustModel(t, s, spec("m", 2, 2, 1), 10)
		// The cache is down when the deletion commits, and the process then stops.
		var first []Purge
		s.OnPurge(func(_ context.Context, p Purge) error { first = append(first, p); return errors.New("cache down") })
		rec, err := s.Delete(ctx, "m", "s000004")
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if len(first) != 1 || first[0].ID != rec.ID || first[0].Version != rec.LedgerVersion {
			t.Fatalf("first hand-over %+v for receipt %+v", first, rec)
		}

		s2 := openDSN(t, dsn)
		var got []Purge
		s2.OnPurge(func(_ context.Context, p Purge) error { got = append(got, p); return nil })
		if n, err := s2.DrainPurges(ctx); err != nil || n != 1 {
			t.Fatalf("DrainPurges = %d, %v", n, err)
		}
		if len(got) != 1 || got[0].ID != rec.ID || got[0].SampleID != "s000004" || got[0].Shard != rec.Shard || got[0].Slice != rec.Slice ||
			got[0].Version != rec.LedgerVersion || got[0].Version == 0 {
			t.Fatalf("purged %+v for receipt %+v", got, rec)
		}
		if n, _ := s2.DrainPurges(ctx); n != 0 {
			t.Errorf("a drained purge ran again")
		}
	})
}

func TestBackendPlacementsResumeAcrossRestarts(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			all := samples("z", 300)
			// One store gets everything at once; the other in three batches with a reopen
			// between.
			s1 := b.open(t)
			mustModel(t, s1, spec("m", 3, 5, 2), 0)
			want, err := s1.PutSamples(ctx, "m", all)
			if err != nil {
				t.Fatal(err)
			}
			dsn := b.dsn(t)
			var got []PutResult
			for i, part := range [][]Sample{all[:100], all[100:101], all[101:]} {
				s2 := openDSN(t, dsn)
				if i == 0 {
					mustModel(t, s2, spec("m", 3, 5, 2), 0)
				}
				res, err := s2.PutSamples(ctx, "m", part)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, res...)
				s2.Close()
			}
			for i := range want {
				if want[i].Placement != got[i].Placement {
					t.Fatalf("sample %d placed at %+v after restarts, %+v in one batch", i, got[i].Placement, want[i].Placement)
				}
			}
		})
	}
}

// TestPostgresSchemasAreIsolated checks the test harness itself: two fresh PostgreSQL
// databases (schemas) do not share rows.
func TestPostgresSchemasAreIsolated(t *testing.T) {
	u := testDatabaseURL()
	if u == "" {
		t.Skip("S3T_TEST_DATABASE_URL not set")
	}
	ctx := context.Background()
	a, b := openDSN(t, freshSchema(t, u)), openDSN(t, freshSchema(t, u))
	mustModel(t, a, spec("m", 1, 2, 1), 3)
	mustModel(t, b, spec("m", 1, 2, 1), 0)
	if a.Dialect() != Postgres || b.Dialect() != Postgres {
		t.Fatalf("dialects %s, %s", a.Dialect(), b.Dialect())
	}
	if _, err := b.Delete(ctx, "m", "s000001"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a sample of the other schema deleted: %v", err)
	}
}

// TestPostgresKeepsIdleConnections: bursts of concurrent requests reuse their connections
// instead of closing all but two (database/sql's default) and opening new ones, each of which
// costs PostgreSQL a backend process (it took half the server's CPU under 4 deleting clients).
func TestPostgresKeepsIdleConnections(t *testing.T) {
	base := testDatabaseURL()
	if base == "" {
		t.Skip("S3T_TEST_DATABASE_URL not set")
	}
	s := openDSN(t, freshSchema(t, base))
	ctx := context.Background()
	for range 3 {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := s.db.ExecContext(ctx, `SELECT pg_sleep(0.05)`); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if st := s.db.Stats(); st.MaxIdleClosed != 0 || st.OpenConnections < 8 {
		t.Errorf("after 3 bursts of 8 requests: %d connections closed for lack of idle slots, %d open", st.MaxIdleClosed, st.OpenConnections)
	}
}
