package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/s3t-dev/s3t/internal/buildinfo"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered schema step, migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// Migrate brings the schema up to date, the ledger's and then the job queue's (River's own
// migrations). It is idempotent: each migration runs once, in its
// own transaction together with its row in schema_migrations, so a crash leaves the schema at
// a migration boundary. A ledger at a schema version this build does not know (a later s3t
// migrated it) is refused with [ErrSchemaNewer], and left as it is.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	known := ms[len(ms)-1].version
	for i, m := range ms {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			if err := s.migrationLock(ctx, tx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
				return err
			}
			if i == 0 {
				// A ledger a later s3t migrated (a rollback of the binary, an old replica
				// started after a new one migrated the shared database) was served by this
				// code as if it knew the schema.
				var v sql.NullInt64
				if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
					return err
				}
				if v.Int64 > int64(known) {
					return fmt.Errorf("%w: the ledger is at schema version %d, this s3t (%s) knows up to %d: run the s3t that migrated it, or restore the backup taken before that upgrade", ErrSchemaNewer, v.Int64, buildinfo.Version(), known)
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range splitSQL(m.sql) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", firstLine(stmt), err)
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, s.now().UnixNano()); err != nil {
				return err
			}
			s.log.Info("store migration applied", "version", m.version, "name", m.name)
			return nil
		})
		if errors.Is(err, ErrSchemaNewer) {
			return err
		}
		if err != nil {
			return fmt.Errorf("store: migrate %04d_%s: %w", m.version, m.name, err)
		}
	}
	if err := s.migrateRiver(ctx); err != nil {
		return fmt.Errorf("store: migrate job queue: %w", err)
	}
	return nil
}

// Ping reports whether the ledger answers a read: the migrations' table, which every migrated
// ledger has. Unlike SchemaVersion it writes nothing, so probes (/readyz) and the checks of a
// failing job take no lock and send PostgreSQL no DDL.
func (s *Store) Ping(ctx context.Context) error {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// SchemaVersion returns the highest applied migration (0 before [Store.Migrate]).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return int(v.Int64), nil
}

// splitSQL splits a migration into statements at semicolons ending a line, dropping
// comment-only lines. Migrations must not put a semicolon at the end of a line inside a
// string literal.
func splitSQL(src string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// migrationLock serialises migrations of several processes on PostgreSQL (an advisory lock
// released at commit). SQLite needs none: its transactions are IMMEDIATE.
func (s *Store) migrationLock(ctx context.Context, tx *sql.Tx) error {
	if s.dialect != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7326001)`)
	return err
}
