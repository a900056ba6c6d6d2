package cli

import (
	"bytes"
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

// TestNewerSchemaRefused: a data directory a later s3t migrated (a rollback of the binary after
// an upgrade) was migrated "up to date" and served by code that does not know its schema.
// s3t migrate and s3t serve now refuse it, exit 1, saying what to do, and leave it as it is.
func TestNewerSchemaRefused(t *testing.T) {
	t.Setenv("S3T_DATABASE_URL", "")
	dir := filepath.Join(t.TempDir(), "data")
	if _, stderr, code := run(t, "migrate", "--data", dir); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from_the_future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, args := range [][]string{{"migrate", "--data", dir}, {"serve", "--addr", "127.0.0.1:0", "--data", dir}} {
		// A serve that starts would serve until the context ends (then exit 0).
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var out, errb bytes.Buffer
		code := Execute(ctx, args, &out, &errb)
		cancel()
		stderr := errb.String()
		if code != 1 || !strings.Contains(stderr, "schema version 9999") || !strings.Contains(stderr, "run the s3t that migrated it") {
			t.Errorf("%s on a ledger at schema version 9999: exit %d, stderr %q; want 1 and what to do", args[0], code, stderr)
		}
	}
	db, err = sql.Open("sqlite", filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM schema_migrations WHERE version = 9999`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the newer schema's row: %d, %v; want it left as it was", n, err)
	}
}
