package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Purge is derived data to erase after a deletion: the cached activations and blobs of one
// sample, or (SampleID == "") everything derived from a deleted model.
type Purge struct {
	ID       string
	Model    string
	SampleID string
	Shard    int // -1 for a whole model
	Slice    int // -1 for a whole model
	BlobKey  string
	Created  time.Time
	// Version is the ledger version the deletion produced (its receipt's), so that a purger can
	// tell what was derived from data read before it; 0 for a whole model, and once the model
	// itself has been deleted (its deletions go with it).
	Version int64
}

// Purger erases derived data for one purge. It must be idempotent: after a crash a purge may
// be handed over again.
type Purger func(ctx context.Context, p Purge) error

// OnPurge registers a purger. Purges are written to a queue table in the same transaction as
// the deletion, so none is lost on a crash. Right after the commit, before Delete returns,
// the new purges are handed to every purger; those all purgers completed leave the queue
// shortly after, in one background commit (so the request pays for one commit, not two). A
// failing purge stays queued for the next [Store.DrainPurges]; a purge completed just before
// a crash may be handed over again, so purgers must be idempotent.
func (s *Store) OnPurge(p Purger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgers = append(s.purgers, p)
}

// drainAfterCommit runs the purges a transaction just queued (ids; nil: every queued
// purge) right after its commit; failures are logged and left for the next drain.
func (s *Store) drainAfterCommit(ctx context.Context, ids []string) {
	s.mu.Lock()
	n := len(s.purgers)
	s.mu.Unlock()
	if n == 0 {
		return
	}
	if _, err := s.drain(ctx, ids, false); err != nil {
		s.log.Warn("purge failed; queued for retry", "err", err)
	}
}

// PendingPurges returns the queued purges, oldest first.
func (s *Store) PendingPurges(ctx context.Context) ([]Purge, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT p.id, p.model, p.sample_id, p.shard, p.slice, p.blob_key, p.created_at, COALESCE(d.version, 0)
		FROM purges p LEFT JOIN deletions d ON d.receipt = p.id AND d.model = p.model ORDER BY p.created_at, p.id`)
	if err != nil {
		return nil, fmt.Errorf("store: pending purges: %w", err)
	}
	defer rows.Close()
	var out []Purge
	for rows.Next() {
		var p Purge
		var at int64
		if err := rows.Scan(&p.ID, &p.Model, &p.SampleID, &p.Shard, &p.Slice, &p.BlobKey, &at, &p.Version); err != nil {
			return nil, fmt.Errorf("store: pending purges: %w", err)
		}
		p.Created = time.Unix(0, at).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// DrainPurges hands every queued purge to the registered purgers and removes those that all
// purgers completed. It returns how many were removed and the first purger error. Call it at
// startup, and from time to time, to finish purges interrupted by a crash or a failing
// purger. With no purger registered it does nothing.
func (s *Store) DrainPurges(ctx context.Context) (int, error) {
	if err := s.flushPurged(ctx); err != nil {
		return 0, err
	}
	return s.drain(ctx, nil, true)
}

// flushPurged removes from the queue the purges completed after a commit.
func (s *Store) flushPurged(ctx context.Context) error {
	s.mu.Lock()
	ids := s.purged
	s.purged = nil
	s.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	if err := s.removePurges(ctx, ids); err != nil {
		s.mu.Lock()
		s.purged = append(s.purged, ids...)
		s.mu.Unlock()
		return err
	}
	return nil
}

func (s *Store) removePurges(ctx context.Context, ids []string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM purges WHERE id = $1`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: purge queue cleanup: %w", err)
	}
	return nil
}

// drain runs the purgers on the queued purges ids (nil: all). With now, completed purges
// leave the queue before drain returns; otherwise the background loop removes them in one
// commit shortly after (a crash in between only runs them again; purgers are idempotent).
func (s *Store) drain(ctx context.Context, ids []string, now bool) (int, error) {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	s.mu.Lock()
	purgers := append([]Purger(nil), s.purgers...)
	s.mu.Unlock()
	if len(purgers) == 0 {
		return 0, nil
	}
	var pending []Purge
	if ids == nil {
		var err error
		if pending, err = s.PendingPurges(ctx); err != nil {
			return 0, err
		}
	} else {
		for _, id := range ids {
			p, err := s.pendingPurge(ctx, id)
			if errors.Is(err, ErrNotFound) {
				continue // drained meanwhile
			}
			if err != nil {
				return 0, err
			}
			pending = append(pending, p)
		}
	}
	done := make([]string, 0, len(pending))
	var first error
	for _, p := range pending {
		var perr error
		for _, f := range purgers {
			if err := f(ctx, p); err != nil {
				perr = err
				break
			}
		}
		if perr != nil {
			if first == nil {
				first = fmt.Errorf("store: purge %s (%s/%s): %w", p.ID, p.Model, p.SampleID, perr)
			}
			continue
		}
		done = append(done, p.ID)
	}
	if len(done) > 0 {
		if now {
			if err := s.removePurges(ctx, done); err != nil {
				return 0, err
			}
		} else {
			s.mu.Lock()
			s.purged = append(s.purged, done...)
			s.mu.Unlock()
			s.wrote()
		}
	}
	return len(done), first
}

func (s *Store) pendingPurge(ctx context.Context, id string) (Purge, error) {
	p := Purge{ID: id}
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT p.model, p.sample_id, p.shard, p.slice, p.blob_key, p.created_at, COALESCE(d.version, 0)
		FROM purges p LEFT JOIN deletions d ON d.receipt = p.id AND d.model = p.model WHERE p.id = $1`, id).
		Scan(&p.Model, &p.SampleID, &p.Shard, &p.Slice, &p.BlobKey, &at, &p.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("store: purge %s: %w", id, err)
	}
	p.Created = time.Unix(0, at).UTC()
	return p, nil
}

// PurgeBacklog returns how many purges the queue holds and when the oldest was queued (zero
// when none). A purge leaves the queue within a second of its completion; one that stays
// longer is failing (its purger errs, and it runs again every WithPurgeRetry), and the derived
// data of a deleted sample or model it names is still stored.
func (s *Store) PurgeBacklog(ctx context.Context) (n int, oldest time.Time, err error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM purges`).Scan(&n, &at); err != nil {
		return 0, time.Time{}, fmt.Errorf("store: purge backlog: %w", err)
	}
	if at.Valid {
		oldest = time.Unix(0, at.Int64).UTC()
	}
	return n, oldest, nil
}
