package cli

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/store"
)

func newMigrateCmd() *cobra.Command {
	var data, databaseURL string
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the schema migrations to the ledger (SQLite in --data, or PostgreSQL)",
		Long: `Bring the ledger's schema up to date: s3t's own numbered migrations, then the job queue's
(River's). Without --database-url the ledger is the SQLite file ledger.db in the data directory;
with it (postgres://...) the PostgreSQL database it names. Migrations are versioned and
idempotent: each runs once, in its own transaction with its version row, and several processes
migrating at once are serialised (an advisory lock on PostgreSQL), so running the command again,
or beside a starting server, is safe. It prints the schema versions before and after.

Environment:
  S3T_DATA          data directory holding the SQLite ledger (--data)
  S3T_DATABASE_URL  PostgreSQL URL of the ledger; overrides --data (--database-url)
`,
		Example: `  s3t migrate --data ./s3t-data
  S3T_DATABASE_URL=postgres://s3t@db.internal:5432/s3t s3t migrate`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return migrate(c.Context(), c.OutOrStdout(), data, databaseURL)
		},
	}
	c.Flags().StringVar(&data, "data", env("S3T_DATA"), "data directory of the SQLite ledger (S3T_DATA)")
	c.Flags().StringVar(&databaseURL, "database-url", os.Getenv("S3T_DATABASE_URL"),
		"PostgreSQL URL of the ledger, postgres://... (S3T_DATABASE_URL); overrides --data")
	hideDefaults(c.Flags(), "database-url")
	return c
}

// migrate opens the ledger, applies the pending migrations and reports the versions.
func migrate(ctx context.Context, w io.Writer, data, databaseURL string) error {
	var dsn, where string
	if databaseURL != "" {
		if !store.IsPostgresURL(databaseURL) {
			return fmt.Errorf("%w: --database-url must be a postgres:// or postgresql:// URL", errUsage)
		}
		dsn, where = databaseURL, redactURL(databaseURL)
	} else {
		dir, err := filepath.Abs(data)
		if err != nil {
			return fmt.Errorf("migrate: data directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("migrate: data directory: %w", err)
		}
		dsn = store.SQLiteDSN(dir)
		where = filepath.Join(dir, store.LedgerFile)
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	before, err := schemaVersions(ctx, st)
	if err != nil {
		return err
	}
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	after, err := schemaVersions(ctx, st)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "ledger %s (%s)\n", where, st.Dialect())
	fmt.Fprintf(w, "schema version: %d -> %d\n", before[0], after[0])
	fmt.Fprintf(w, "job queue (River) schema version: %d -> %d\n", before[1], after[1])
	if before == after {
		fmt.Fprintln(w, "already up to date")
	}
	return nil
}

// schemaVersions returns the ledger's and the job queue's schema versions.
func schemaVersions(ctx context.Context, st *store.Store) ([2]int, error) {
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		return [2]int{}, err
	}
	q, err := st.JobQueueVersion(ctx)
	if err != nil {
		return [2]int{}, err
	}
	return [2]int{v, q}, nil
}

// redactURL hides the password of a database URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
