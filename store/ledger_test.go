package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/unlearning"
)

func TestMigrateIsIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for range 2 {
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		ms, _ := migrations()
		v, err := s.SchemaVersion(ctx)
		if err != nil || v != ms[len(ms)-1].version {
			t.Fatalf("schema version %d, %v; want %d", v, err, ms[len(ms)-1].version)
		}
	})
}

func TestCreateModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("create")
		good := spec(name, 3, 4, 2)
		bad := func(f func(*ModelSpec)) ModelSpec { sp := spec(uniqueName("bad"), 3, 4, 2); f(&sp); return sp }
		tests := []struct {
			name string
			spec ModelSpec
			want error
		}{
			{"ok", good, nil},
			{"name in use", good, ErrConflict},
			{"empty name", bad(func(sp *ModelSpec) { sp.Name = "" }), ErrInvalid},
			{"no shards", bad(func(sp *ModelSpec) { sp.Sequences = nil }), ErrInvalid},
			{"not a permutation", bad(func(sp *ModelSpec) { sp.Sequences[1][0] = []int{0, 0, 1, 2} }), ErrInvalid},
			{"wrong length", bad(func(sp *ModelSpec) { sp.Slices = 3 }), ErrInvalid},
			{"config not JSON", bad(func(sp *ModelSpec) { sp.Config = []byte("{") }), ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m, err := s.CreateModel(ctx, tt.spec)
				if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				if err != nil {
					return
				}
				if m.Shards != 3 || m.Slices != 4 || m.Version != 0 || m.Samples != 0 || string(m.Key) != string(good.Key) {
					t.Errorf("model = %+v", m)
				}
				var cfg map[string]string
				if err := json.Unmarshal(m.Config, &cfg); err != nil || cfg["peft"] != "lora" {
					t.Errorf("config = %s", m.Config)
				}
				for k, live := range m.Live {
					if len(live) != 2 || live[0] != 4 || live[1] != 4 {
						t.Errorf("shard %d live = %v, want [4 4]", k, live)
					}
				}
				for _, sv := range m.Serving() {
					if sv != (unlearning.Served{Sequence: 0, Length: 4}) {
						t.Errorf("serving %+v", sv)
					}
				}
			})
		}
		// A model created without a key gets a fresh one.
		m, err := s.CreateModel(ctx, ModelSpec{Name: uniqueName("key"), Slices: 2, Sequences: [][][]int{{{0, 1}}}})
		if err != nil || len(m.Key) != unlearning.KeySize {
			t.Fatalf("model %+v, %v", m, err)
		}
	})
}

func TestListAndDeleteModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := uniqueName("list-a"), uniqueName("list-b")
		mustModel(t, s, spec(a, 2, 2, 1), 10)
		mustModel(t, s, spec(b, 2, 2, 1), 10)
		if _, err := s.Delete(ctx, a, "s000001"); err != nil {
			t.Fatal(err)
		}
		has := func(name string) bool {
			ms, err := s.ListModels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if m.Name == name {
					return true
				}
			}
			return false
		}
		if !has(a) || !has(b) {
			t.Fatal("ListModels misses a model")
		}
		if err := s.DeleteModel(ctx, a); err != nil {
			t.Fatal(err)
		}
		if has(a) || !has(b) {
			t.Fatal("DeleteModel removed the wrong model")
		}
		for _, err := range []error{
			s.DeleteModel(ctx, a),
			func() error { _, err := s.GetModel(ctx, a); return err }(),
			func() error { _, err := s.GetSample(ctx, a, "s000002"); return err }(),
			func() error { _, err := s.Delete(ctx, a, "s000002"); return err }(),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("after DeleteModel: %v, want ErrNotFound", err)
			}
		}
		var n int
		for _, tbl := range []string{"samples", "units", "prefixes", "deletions"} {
			if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tbl+` WHERE model = $1`, a).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s holds %d rows of the deleted model (%v)", tbl, n, err)
			}
		}
		if m, err := s.GetModel(ctx, b); err != nil || m.Samples != 10 {
			t.Errorf("other model: %+v, %v", m, err)
		}
	})
}

func TestPutSamples(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("put")
		mustModel(t, s, spec(name, 4, 4, 2), 0)
		batch := samples("p", 200)
		res, err := s.PutSamples(ctx, name, batch)
		if err != nil {
			t.Fatal(err)
		}
		// Placements are those of an Assigner fed the same ids in the same order.
		asg, _ := unlearning.NewAssigner(spec(name, 4, 4, 2).Key, 4, 4, nil)
		for i, r := range res {
			if want := asg.Place(batch[i].ID); r.Placement != want || r.Err != nil || r.Existed {
				t.Fatalf("result %d = %+v, want placement %+v", i, r, want)
			}
			if p, err := s.Placement(ctx, name, r.ID); err != nil || p != r.Placement {
				t.Fatalf("Placement(%s) = %+v, %v", r.ID, p, err)
			}
		}
		got, err := s.GetSample(ctx, name, "p000007")
		if err != nil || got.Label != "7" || string(got.Input) != "input-p-7" || got.Placement != res[7].Placement {
			t.Fatalf("GetSample = %+v, %v", got, err)
		}
		m, _ := s.GetModel(ctx, name)
		if m.Samples != 200 || m.Version != 1 {
			t.Fatalf("model after upload: samples %d version %d", m.Samples, m.Version)
		}
		if _, err := s.Delete(ctx, name, "p000003"); err != nil {
			t.Fatal(err)
		}

		conflict := batch[5]
		conflict.Label = "other"
		tests := []struct {
			name    string
			batch   []Sample
			wantErr error
			perID   map[string]error // nil entry: ok
			existed map[string]bool
		}{
			{"retry is idempotent", batch[4:10], nil, nil, existedAll(batch[4:10])},
			{"new and existing", append(samples("q", 3), batch[0]), nil, nil, map[string]bool{"p000000": true}},
			{"conflict fails the batch", append(samples("r", 3), conflict), ErrConflict, map[string]error{"p000005": ErrConflict, "r000000": nil}, nil},
			{"deleted id", append(samples("t", 2), batch[3]), ErrGone, map[string]error{"p000003": ErrGone}, nil},
			{"empty id", []Sample{{ID: "", Label: "x"}}, ErrInvalid, nil, nil},
			{"twice in batch, same", []Sample{{ID: "u1", Label: "a"}, {ID: "u1", Label: "a"}}, nil, nil, nil},
			{"twice in batch, different", []Sample{{ID: "v1", Label: "a"}, {ID: "v1", Label: "b"}}, ErrConflict, nil, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before, _ := s.GetModel(ctx, name)
				res, err := s.PutSamples(ctx, name, tt.batch)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if len(res) != len(tt.batch) {
					t.Fatalf("%d results for %d samples", len(res), len(tt.batch))
				}
				for _, r := range res {
					if want, ok := tt.perID[r.ID]; ok && (!errors.Is(r.Err, want) || (want == nil) != (r.Err == nil)) {
						t.Errorf("%s: err %v, want %v", r.ID, r.Err, want)
					}
					if tt.existed != nil && tt.existed[r.ID] != r.Existed {
						t.Errorf("%s: existed = %v", r.ID, r.Existed)
					}
				}
				after, _ := s.GetModel(ctx, name)
				if err != nil {
					if after.Samples != before.Samples || after.Version != before.Version {
						t.Errorf("failed batch changed the ledger: %d -> %d samples", before.Samples, after.Samples)
					}
					for _, smp := range tt.batch {
						if _, ok := tt.perID[smp.ID]; ok {
							continue
						}
						if _, gerr := s.GetSample(ctx, name, smp.ID); gerr == nil && smp.ID[0] != 'p' {
							t.Errorf("sample %s of a failed batch is readable", smp.ID)
						}
					}
				}
			})
		}
		if _, err := s.PutSamples(ctx, uniqueName("nope"), batch[:1]); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown model: %v", err)
		}
	})
}

func existedAll(ss []Sample) map[string]bool {
	m := map[string]bool{}
	for _, s := range ss {
		m[s.ID] = true
	}
	return m
}

// TestMigrateConcurrently migrates a fresh database from several stores at once (as several
// processes starting together would).
func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	dsns := map[string]string{"sqlite": SQLiteDSN(t.TempDir())}
	if u := os.Getenv("S3T_TEST_DATABASE_URL"); u != "" {
		// A fresh schema on the test server, through search_path.
		schema := strings.ReplaceAll(uniqueName("mig"), "-", "_")
		admin, err := Open(ctx, u, WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		if _, err := admin.db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
			t.Fatal(err)
		}
		defer admin.db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`)
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		dsns["postgres"] = u + sep + "search_path=" + schema
	}
	for name, dsn := range dsns {
		t.Run(name, func(t *testing.T) {
			errs := make(chan error, 4)
			for range 4 {
				go func() {
					s, err := Open(ctx, dsn, WithLogger(quiet))
					if err != nil {
						errs <- err
						return
					}
					defer s.Close()
					errs <- s.Migrate(ctx)
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			s, err := Open(ctx, dsn, WithLogger(quiet))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ms, _ := migrations()
			if v, err := s.SchemaVersion(ctx); err != nil || v != ms[len(ms)-1].version {
				t.Errorf("schema version %d, %v; want %d", v, err, ms[len(ms)-1].version)
			}
			if _, err := s.CreateModel(ctx, spec("m", 1, 2, 1)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestListSamplesOfAUnit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		name := uniqueName("list")
		mustModel(t, s, spec(name, 2, 3, 1), 120)
		if _, err := s.Delete(ctx, name, "s000000"); err != nil {
			t.Fatal(err)
		}
		m, _ := s.GetModel(ctx, name)
		total := 0
		for k := range 2 {
			for l := range 3 {
				p := unlearning.Placement{Shard: k, Slice: l}
				var pages [][]Sample
				after := ""
				for {
					page, err := s.ListSamples(ctx, name, p, after, 7)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) == 0 {
						break
					}
					pages = append(pages, page)
					after = page[len(page)-1].ID
				}
				all, err := s.ListSamples(ctx, name, p, "", 0) // unpaged
				if err != nil {
					t.Fatal(err)
				}
				ids := make([]string, len(all))
				for i, smp := range all {
					ids[i] = smp.ID
				}
				n := 0
				for _, page := range pages {
					for _, smp := range page {
						if smp.ID != ids[n] || smp.Placement != p || smp.ID == "s000000" || len(smp.Input) == 0 {
							t.Fatalf("unit %+v: sample %d = %+v, ids %v", p, n, smp, ids[n])
						}
						n++
					}
				}
				if n != len(ids) {
					t.Errorf("unit %+v: %d listed, %d ids", p, n, len(ids))
				}
				total += n
			}
		}
		if int64(total) != m.Samples || total != 119 {
			t.Errorf("%d samples listed, model holds %d", total, m.Samples)
		}
	})
}
