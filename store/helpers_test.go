package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backend is one database the tests run against.
type backend struct {
	name string
	open func(t testing.TB) *Store
}

// backends returns SQLite in a temporary directory, and PostgreSQL when
// S3T_TEST_DATABASE_URL names a server (tests there use unique model names).
func backends(t testing.TB) []backend {
	bs := []backend{{"sqlite", func(t testing.TB) *Store { return openSQLite(t, t.TempDir()) }}}
	if u := os.Getenv("S3T_TEST_DATABASE_URL"); u != "" {
		bs = append(bs, backend{"postgres", func(t testing.TB) *Store {
			s, err := Open(context.Background(), u, WithLogger(quiet))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}})
	}
	return bs
}

func forEachBackend(t *testing.T, f func(t *testing.T, s *Store)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t)) })
	}
}

func openSQLite(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), SQLiteDSN(dir), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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
