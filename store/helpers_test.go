package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backend is one database the tests run against.
type backend struct {
	name string
	// dsn returns a fresh, empty database that can be opened any number of times (with
	// openDSN), as restarted processes would: a SQLite file in a temporary directory, or a
	// schema of its own on the PostgreSQL test server (through search_path), dropped at the
	// end of the test.
	dsn func(t testing.TB) string
}

// open opens and migrates a fresh database of the backend.
func (b backend) open(t testing.TB) *Store { return openDSN(t, b.dsn(t)) }

// testDatabaseURL is the PostgreSQL server the tests use; `make test` starts one
// (scripts/pg.sh) and sets it. Without it the tests run on SQLite only.
func testDatabaseURL() string { return os.Getenv("S3T_TEST_DATABASE_URL") }

// backends returns SQLite, and PostgreSQL when S3T_TEST_DATABASE_URL names a server.
func backends(t testing.TB) []backend {
	bs := []backend{{"sqlite", func(t testing.TB) string { return SQLiteDSN(t.TempDir()) }}}
	if u := testDatabaseURL(); u != "" {
		bs = append(bs, backend{"postgres", func(t testing.TB) string { return freshSchema(t, u) }})
	}
	return bs
}

func forEachBackend(t *testing.T, f func(t *testing.T, s *Store)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t)) })
	}
}

var pgAdmin struct {
	once sync.Once
	db   *sql.DB
	err  error
}

// freshSchema creates an empty schema on the PostgreSQL server at base, dropped when the
// test ends, and returns base with search_path set to it: each test gets its own tables
// and its own River queue, so tests neither see each other's rows nor run each other's jobs.
func freshSchema(t testing.TB, base string) string {
	t.Helper()
	pgAdmin.once.Do(func() { pgAdmin.db, pgAdmin.err = sql.Open("pgx", base) })
	if pgAdmin.err != nil {
		t.Fatal(pgAdmin.err)
	}
	schema := "t_" + strings.ReplaceAll(uniqueName("s"), "-", "_")
	ctx := context.Background()
	if _, err := pgAdmin.db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("postgres test server %s: %v", base, err)
	}
	t.Cleanup(func() {
		if _, err := pgAdmin.db.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// openDSN opens and migrates the database at dsn, closed when the test ends.
func openDSN(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openSQLite(t testing.TB, dir string) *Store {
	t.Helper()
	return openDSN(t, SQLiteDSN(dir))
}

var modelSeq atomic.Int64

// uniqueName returns a model name unique within the test binary and across runs.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), modelSeq.Add(1))
}

// rotations returns the first b right-rotations of [0..l-1] (the cyclic selector).
func rotations(l, b int) [][]int {
	out := make([][]int, b)
	for r := range b {
		seq := make([]int, l)
		for i := range l {
			seq[(i+r)%l] = i
		}
		out[r] = seq
	}
	return out
}

// spec is a model with m shards of l slices and b cyclic sequences each.
func spec(name string, m, l, b int) ModelSpec {
	seqs := make([][][]int, m)
	for k := range seqs {
		seqs[k] = rotations(l, b)
	}
	return ModelSpec{Name: name, Config: []byte(`{"peft":"lora"}`), Slices: l, Sequences: seqs,
		Key: []byte("0123456789abcdef0123456789abcdef")}
}

func samples(prefix string, n int) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{ID: fmt.Sprintf("%s%06d", prefix, i), Label: fmt.Sprint(i % 10), Input: []byte(fmt.Sprintf("input-%s-%d", prefix, i))}
	}
	return out
}

func mustModel(t testing.TB, s *Store, sp ModelSpec, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateModel(ctx, sp); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		if _, err := s.PutSamples(ctx, sp.Name, samples("s", n)); err != nil {
			t.Fatal(err)
		}
	}
}

func fileContains(t testing.TB, path string, needle []byte) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, needle)
}
