package cli

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestClusterBenchStats(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Fatalf("median = %v", got)
	}
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentile(lat, 50), percentile(lat, 99); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
	if cpus := allowedCPUs(); len(cpus) == 0 {
		t.Fatal("no CPU allowed")
	}
}

// TestBenchClusterUsage: without a PostgreSQL URL the command refuses with a usage error.
func TestBenchClusterUsage(t *testing.T) {
	t.Setenv("S3T_DATABASE_URL", "")
	var out, errb bytes.Buffer
	if code := Execute(context.Background(), []string{"bench", "cluster"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "postgres") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// TestBenchClusterSmoke runs the bench on a tiny model against the test PostgreSQL server.
func TestBenchClusterSmoke(t *testing.T) {
	base := os.Getenv("S3T_TEST_DATABASE_URL")
	if base == "" || testing.Short() {
		t.Skip("needs S3T_TEST_DATABASE_URL (make test starts a PostgreSQL) and trains a model")
	}
	t.Setenv("S3T_TEST_AS_CLI", "1") // the processes the bench starts are this test binary
	var out, errb bytes.Buffer
	args := []string{"bench", "cluster", "--database-url", base, "--samples", "160", "--epochs", "1", "--deletions", "40", "--clients", "4"}
	if code := Execute(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"train, 1 worker", "train, 2 workers", "speedup", "delete p99"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}
