package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/s3t-dev/s3t/unlearning"
)

// Receipt is the durable record of one deletion, returned to the caller and readable back
// with [Store.GetReceipt].
type Receipt struct {
	// ID is random (128 bits, hex); it names the receipt, not the sample.
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Model    string    `json:"model"`
	SampleID string    `json:"sample_id"`
	Shard    int       `json:"shard"`
	Slice    int       `json:"slice"`
	// Truncations are the sequences of the shard that lost stages (empty when the slice
	// was already cut from every live prefix).
	Truncations []unlearning.Truncation `json:"truncations"`
	// Served is the shard's longest live prefix after the deletion (Length 0: none is live).
	Served unlearning.Served `json:"served"`
	// Serving is the checkpoint the shard serves after the deletion: the longest prefix that
	// is both live and trained (equal to Served once the model is trained; Length 0: none).
	Serving unlearning.Served `json:"serving"`
	// ServingGen is the generation of the checkpoint in Serving (0: none; absent from receipts
	// made before it was recorded): with Serving, the exact checkpoint served after the deletion.
	ServingGen int `json:"serving_gen"`
	// Live is the live prefix length of every sequence of the shard after the deletion.
	Live []int `json:"live"`
	// LedgerVersion is the model's ledger version this deletion produced; receipts of one
	// model are totally ordered by it.
	LedgerVersion int64 `json:"ledger_version"`
}

// GoneError is returned (wrapping ErrGone) for a sample deleted earlier; it carries the
// earlier receipt.
type GoneError struct {
	Receipt *Receipt
}

func (e *GoneError) Error() string {
	return fmt.Sprintf("sample %q of %q already deleted (receipt %s)", e.Receipt.SampleID, e.Receipt.Model, e.Receipt.ID)
}

// Unwrap makes errors.Is(err, ErrGone) hold.
func (e *GoneError) Unwrap() error { return ErrGone }

// Delete unlearns one sample. In one transaction it looks up the sample's (shard, slice),
// plans the deletion on the shard restored from the stored live prefixes, truncates them,
// erases the sample row (secure_delete on SQLite), lowers the unit count, increments the
// ledger version, queues the purge of derived data and writes the receipt, which it returns.
// After commit the purge queue is drained (see [Store.OnPurge]).
//
// An unknown id gives ErrNotFound; an id deleted earlier gives a *GoneError (ErrGone) with
// the earlier receipt. Concurrent deletions of the same id yield exactly one receipt.
func (s *Store) Delete(ctx context.Context, model, sampleID string) (*Receipt, error) {
	var rec *Receipt
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		d, err := s.newDeleter(ctx, tx, model)
		if err != nil {
			return err
		}
		rec, err = d.delete(ctx, sampleID)
		if err != nil {
			return err
		}
		return d.finish(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("store: delete %q from %q: %w", sampleID, model, err)
	}
	s.erasures.Add(1)
	s.log.Info("sample deleted", "model", model, "sample", sampleID, "receipt", rec.ID,
		"shard", rec.Shard, "slice", rec.Slice, "truncations", len(rec.Truncations), "version", rec.LedgerVersion)
	s.drainAfterCommit(ctx, []string{rec.ID})
	return rec, nil
}

// DeleteResult is the outcome for one id of [Store.DeleteBatch].
type DeleteResult struct {
	SampleID string
	// Receipt is the new receipt, or the earlier one when Err wraps ErrGone.
	Receipt *Receipt
	// Err is nil, wraps ErrNotFound (unknown id) or is a *GoneError (deleted earlier, or
	// earlier in the same batch).
	Err error
}

// DeleteBatch deletes several samples of one model in one transaction: either every
// deletion and receipt is committed or none is. Unknown and already deleted ids are reported
// in their result and do not stop the others. The returned error is for the batch as a
// whole (model unknown, database failure), in which case nothing was deleted.
func (s *Store) DeleteBatch(ctx context.Context, model string, ids []string) ([]DeleteResult, error) {
	results := make([]DeleteResult, len(ids))
	deleted := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		deleted = 0
		d, err := s.newDeleter(ctx, tx, model)
		if err != nil {
			return err
		}
		for i, id := range ids {
			rec, err := d.delete(ctx, id)
			var gone *GoneError
			switch {
			case err == nil:
				results[i] = DeleteResult{SampleID: id, Receipt: rec}
				deleted++
			case errors.As(err, &gone):
				results[i] = DeleteResult{SampleID: id, Receipt: gone.Receipt, Err: err}
			case errors.Is(err, ErrNotFound):
				results[i] = DeleteResult{SampleID: id, Err: err}
			default:
				return err
			}
		}
		return d.finish(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("store: delete batch of %d from %q: %w", len(ids), model, err)
	}
	if deleted > 0 {
		s.erasures.Add(1)
	}
	s.log.Info("samples deleted", "model", model, "requested", len(ids), "deleted", deleted)
	purges := []string{}
	for _, r := range results {
		if r.Err == nil {
			purges = append(purges, r.Receipt.ID)
		}
	}
	s.drainAfterCommit(ctx, purges)
	return results, nil
}

// deleter carries one model's state through a deletion transaction.
type deleter struct {
	s       *Store
	tx      *sql.Tx
	m       *Model
	version int64 // the model's version before this transaction
	shards  map[int]*unlearning.Shard
	dirty   map[[2]int]bool // (shard, sequence) live lengths to write
	units   map[[2]int]int  // (shard, slice) -> samples removed
	now     time.Time
	done    map[string]*Receipt // receipts made in this transaction, by sample id
}

func (s *Store) newDeleter(ctx context.Context, tx *sql.Tx, model string) (*deleter, error) {
	// Taking the model row first serialises deleters of one model (a row lock on
	// PostgreSQL; SQLite transactions are IMMEDIATE, so one writer at a time anyway). Every
	// round trip from here to the commit holds the lock, so there are as few as can be.
	m, err := lockModel(ctx, tx, model)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("model %q: %w", model, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &deleter{s: s, tx: tx, m: m, version: m.Version, shards: map[int]*unlearning.Shard{},
		dirty: map[[2]int]bool{}, units: map[[2]int]int{}, now: s.now().UTC(), done: map[string]*Receipt{}}, nil
}

func (d *deleter) delete(ctx context.Context, id string) (*Receipt, error) {
	if rec, ok := d.done[id]; ok {
		return nil, &GoneError{Receipt: rec}
	}
	var p unlearning.Placement
	var blobKey string
	// Deleted and read in one round trip; a failure below rolls the whole transaction back.
	err := d.tx.QueryRowContext(ctx, `DELETE FROM samples WHERE model = $1 AND id = $2 RETURNING shard, slice, blob_key`, d.m.Name, id).
		Scan(&p.Shard, &p.Slice, &blobKey)
	if errors.Is(err, sql.ErrNoRows) {
		rec, rerr := d.s.receiptFor(ctx, d.tx, d.m.Name, id)
		if rerr == nil {
			return nil, &GoneError{Receipt: rec}
		}
		if !errors.Is(rerr, ErrNotFound) {
			return nil, rerr
		}
		return nil, fmt.Errorf("sample %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if p.Shard < 0 || p.Shard >= d.m.Shards {
		return nil, fmt.Errorf("sample %q: shard %d out of range", id, p.Shard)
	}
	sh, ok := d.shards[p.Shard]
	if !ok {
		if sh, err = unlearning.RestoreShard(d.m.Sequences[p.Shard], d.m.Live[p.Shard]); err != nil {
			return nil, err
		}
		d.shards[p.Shard] = sh
	}
	plan, err := sh.Delete(p.Slice)
	if err != nil {
		return nil, err
	}
	for _, t := range plan.Truncations {
		d.dirty[[2]int{p.Shard, t.Sequence}] = true
	}
	d.units[[2]int{p.Shard, p.Slice}]++
	d.version++
	rec := &Receipt{
		ID: newID(), Time: d.now, Model: d.m.Name, SampleID: id, Shard: p.Shard, Slice: p.Slice,
		Truncations: plan.Truncations, Served: sh.Served(), Live: sh.Live(), LedgerVersion: d.version,
	}
	rec.Serving = published(rec.Live, d.m.Trained[p.Shard])
	if rec.Serving.Length > 0 {
		rec.ServingGen = d.m.Gen[p.Shard][rec.Serving.Sequence]
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if _, err := d.tx.ExecContext(ctx, `INSERT INTO deletions (receipt, model, sample_id, version, at, body, shard, slice) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		rec.ID, rec.Model, id, rec.LedgerVersion, d.now.UnixNano(), string(body), p.Shard, p.Slice); err != nil {
		return nil, err
	}
	if _, err := d.tx.ExecContext(ctx, `INSERT INTO purges (id, model, sample_id, shard, slice, blob_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		rec.ID, rec.Model, id, p.Shard, p.Slice, blobKey, d.now.UnixNano()); err != nil {
		return nil, err
	}
	d.done[id] = rec
	return rec, nil
}

// finish writes the changed live lengths, unit counts and the new ledger version.
func (d *deleter) finish(ctx context.Context) error {
	for ks := range d.dirty {
		live := d.shards[ks[0]].Live()[ks[1]]
		if _, err := d.tx.ExecContext(ctx, `UPDATE prefixes SET live = $1 WHERE model = $2 AND shard = $3 AND sequence = $4 AND live >= $1`,
			live, d.m.Name, ks[0], ks[1]); err != nil {
			return err
		}
	}
	for u, n := range d.units {
		res, err := d.tx.ExecContext(ctx, `UPDATE units SET count = count - $1 WHERE model = $2 AND shard = $3 AND slice = $4 AND count >= $1`,
			n, d.m.Name, u[0], u[1])
		if err != nil {
			return err
		}
		if r, _ := res.RowsAffected(); r != 1 {
			return fmt.Errorf("unit (%d, %d) count below %d: ledger inconsistent", u[0], u[1], n)
		}
	}
	_, err := d.tx.ExecContext(ctx, `UPDATE models SET version = $1 WHERE name = $2`, d.version, d.m.Name)
	return err
}

// GetReceipt reads a receipt back by its id.
func (s *Store) GetReceipt(ctx context.Context, id string) (*Receipt, error) {
	var body string
	err := s.db.QueryRowContext(ctx, `SELECT body FROM deletions WHERE receipt = $1`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: receipt %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: receipt %q: %w", id, err)
	}
	rec := new(Receipt)
	if err := json.Unmarshal([]byte(body), rec); err != nil {
		return nil, fmt.Errorf("store: receipt %q: %w", id, err)
	}
	return rec, nil
}

// Receipts returns a model's receipts in ledger order.
func (s *Store) Receipts(ctx context.Context, model string) ([]*Receipt, error) {
	return s.ReceiptsAfter(ctx, model, 0, 0)
}

// ReceiptsAfter returns a model's receipts of ledger versions above after, in ledger order, at
// most limit of them (0: all).
func (s *Store) ReceiptsAfter(ctx context.Context, model string, after int64, limit int) ([]*Receipt, error) {
	q, args := `SELECT body FROM deletions WHERE model = $1 AND version > $2 ORDER BY version`, []any{model, after}
	if limit > 0 {
		q, args = q+` LIMIT $3`, append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: receipts of %q: %w", model, err)
	}
	defer rows.Close()
	var out []*Receipt
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("store: receipts of %q: %w", model, err)
		}
		rec := new(Receipt)
		if err := json.Unmarshal([]byte(body), rec); err != nil {
			return nil, fmt.Errorf("store: receipts of %q: %w", model, err)
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

func (s *Store) receiptFor(ctx context.Context, q queryer, model, sampleID string) (*Receipt, error) {
	var body string
	err := q.QueryRowContext(ctx, `SELECT body FROM deletions WHERE model = $1 AND sample_id = $2`, model, sampleID).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	rec := new(Receipt)
	if err := json.Unmarshal([]byte(body), rec); err != nil {
		return nil, err
	}
	return rec, nil
}
