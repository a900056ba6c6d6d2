package cli

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var versionLine = regexp.MustCompile(`(?m)^schema version: (\d+) -> (\d+)$`)
var queueLine = regexp.MustCompile(`(?m)^job queue \(River\) schema version: (\d+) -> (\d+)$`)

// migrateTwice runs `s3t migrate` twice with args and checks that the first run takes the
// schema from 0 to the latest version and the second finds it up to date.
func migrateTwice(t *testing.T, args ...string) {
	t.Helper()
	latest := 0
	for i := range 2 {
		out, stderr, code := run(t, append([]string{"migrate"}, args...)...)
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s", i+1, code, stderr)
		}
		m, q := versionLine.FindStringSubmatch(out), queueLine.FindStringSubmatch(out)
		if m == nil || q == nil {
			t.Fatalf("run %d: no versions in %q", i+1, out)
		}
		from, _ := strconv.Atoi(m[1])
		to, _ := strconv.Atoi(m[2])
		qfrom, _ := strconv.Atoi(q[1])
		qto, _ := strconv.Atoi(q[2])
		switch i {
		case 0:
			if from != 0 || to < 1 || qfrom != 0 || qto < 1 {
				t.Errorf("first run: %q, want 0 -> the latest versions", out)
			}
			latest = to
			if strings.Contains(out, "already up to date") {
				t.Errorf("first run says up to date: %q", out)
			}
		case 1:
			if from != latest || to != latest || qfrom != qto || !strings.Contains(out, "already up to date") {
				t.Errorf("second run: %q, want %d -> %d, up to date", out, latest, latest)
			}
		}
	}
}

func TestMigrateSQLite(t *testing.T) {
	t.Setenv("S3T_DATABASE_URL", "")
	dir := filepath.Join(t.TempDir(), "data")
	migrateTwice(t, "--data", dir)
	if _, err := os.Stat(filepath.Join(dir, "ledger.db")); err != nil {
		t.Error(err)
	}
}

func TestMigratePostgres(t *testing.T) {
	base := os.Getenv("S3T_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("S3T_TEST_DATABASE_URL not set (make test starts a PostgreSQL server and sets it)")
	}
	// A schema of its own, so the first run starts from an empty database.
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	schema := fmt.Sprintf("cli_migrate_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	defer db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	u := base + sep + "search_path=" + schema
	t.Run("flag", func(t *testing.T) {
		migrateTwice(t, "--database-url", u, "--data", t.TempDir())
	})
	// S3T_DATABASE_URL overrides the data directory; the schema is already current.
	t.Setenv("S3T_DATABASE_URL", u)
	out, stderr, code := run(t, "migrate", "--data", t.TempDir())
	if code != 0 || !strings.Contains(out, "already up to date") || !strings.Contains(out, "(postgres)") {
		t.Errorf("with S3T_DATABASE_URL: exit %d, %q, %s", code, out, stderr)
	}
}

func TestMigrateRejectsANonPostgresURL(t *testing.T) {
	_, stderr, code := run(t, "migrate", "--database-url", "mysql://x")
	if code != 2 {
		t.Errorf("exit %d, want 2: %s", code, stderr)
	}
}
