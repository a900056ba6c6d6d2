package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/s3t-dev/s3t/unlearning"
)

// ModelSpec is what [Store.CreateModel] needs. The store does not interpret Config; it keeps
// the S3T layout: Sequences[k] are the B sequences of shard k (each a permutation of the
// Slices slices), so Shards = len(Sequences).
type ModelSpec struct {
	Name      string
	Config    json.RawMessage // the caller's model configuration, stored verbatim (JSON)
	Slices    int
	Sequences [][][]int
	// Key is the assignment key; nil draws a fresh one (unlearning.NewKey).
	Key []byte
}

// Model is a model's ledger entry.
type Model struct {
	Name      string          `json:"name"`
	Config    json.RawMessage `json:"config"`
	Shards    int             `json:"shards"`
	Slices    int             `json:"slices"`
	Sequences [][][]int       `json:"sequences"`
	Key       []byte          `json:"-"`
	// Version counts committed ledger changes of this model (uploads, deletions); a
	// receipt carries the version its deletion produced.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Live[k][b] is the live prefix length of sequence b of shard k.
	Live [][]int `json:"live"`
	// Gen[k][b] is the generation of the checkpoints Live[k][b] counts for (1 for the first
	// training; each retraining swaps in the next).
	Gen [][]int `json:"gen"`
	// Trained[k][b] is how many stages of generation Gen[k][b] are published.
	Trained [][]int `json:"trained"`
	// Samples is the number of stored (not deleted) samples.
	Samples int64 `json:"samples"`
}

// Serving returns what every shard serves, from the live prefix lengths.
func (m *Model) Serving() []unlearning.Served {
	out := make([]unlearning.Served, len(m.Live))
	for k, live := range m.Live {
		for b, n := range live {
			if n > out[k].Length {
				out[k] = unlearning.Served{Sequence: b, Length: n}
			}
		}
	}
	return out
}

// Published returns, per shard, the checkpoint it serves now: the sequence with the longest
// prefix that is both live and trained (min(Live, Trained)), ties to the lowest index;
// Length 0 when the shard has none.
func (m *Model) Published() []unlearning.Served {
	out := make([]unlearning.Served, len(m.Live))
	for k := range m.Live {
		out[k] = published(m.Live[k], m.Trained[k])
	}
	return out
}

// CreateModel records a new model with every sequence live at full length. A name in use
// gives ErrConflict.
func (s *Store) CreateModel(ctx context.Context, spec ModelSpec) (*Model, error) {
	if spec.Name == "" || spec.Slices < 1 || len(spec.Sequences) == 0 {
		return nil, fmt.Errorf("store: create model %q: %w: need a name, slices >= 1 and at least one shard", spec.Name, ErrInvalid)
	}
	for k, seqs := range spec.Sequences {
		if len(seqs) == 0 {
			return nil, fmt.Errorf("store: create model %q: %w: shard %d has no sequences", spec.Name, ErrInvalid, k)
		}
		if err := unlearning.CheckSequences(seqs, spec.Slices, len(seqs)); err != nil {
			return nil, fmt.Errorf("store: create model %q: %w: shard %d: %v", spec.Name, ErrInvalid, k, err)
		}
	}
	cfg := spec.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	if !json.Valid(cfg) {
		return nil, fmt.Errorf("store: create model %q: %w: config is not JSON", spec.Name, ErrInvalid)
	}
	key := spec.Key
	if key == nil {
		var err error
		if key, err = unlearning.NewKey(); err != nil {
			return nil, fmt.Errorf("store: create model %q: %w", spec.Name, err)
		}
	}
	seqJSON, err := json.Marshal(spec.Sequences)
	if err != nil {
		return nil, fmt.Errorf("store: create model %q: %w", spec.Name, err)
	}
	now := s.now()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO models (name, config, shards, slices, sequences, assign_key, version, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 0, $7) ON CONFLICT (name) DO NOTHING`,
			spec.Name, string(cfg), len(spec.Sequences), spec.Slices, string(seqJSON), key, now.UnixNano())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrConflict
		}
		for k, seqs := range spec.Sequences {
			for b := range seqs {
				if _, err := tx.ExecContext(ctx, `INSERT INTO prefixes (model, shard, sequence, live) VALUES ($1, $2, $3, $4)`,
					spec.Name, k, b, spec.Slices); err != nil {
					return err
				}
			}
			for l := 0; l < spec.Slices; l++ {
				if _, err := tx.ExecContext(ctx, `INSERT INTO units (model, shard, slice, count) VALUES ($1, $2, $3, 0)`,
					spec.Name, k, l); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: create model %q: %w", spec.Name, err)
	}
	s.log.Debug("model created", "model", spec.Name, "shards", len(spec.Sequences), "slices", spec.Slices) // the server logs it at Info, with its spec
	return s.GetModel(ctx, spec.Name)
}

// queryer is what *sql.DB and *sql.Tx share.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// GetModel returns a model with its live prefixes and sample count.
func (s *Store) GetModel(ctx context.Context, name string) (*Model, error) {
	m, err := getModel(ctx, s.db, name, true)
	if err != nil {
		return nil, fmt.Errorf("store: get model %q: %w", name, err)
	}
	return m, nil
}

func getModel(ctx context.Context, q queryer, name string, withCount bool) (*Model, error) {
	return readModel(ctx, q, name, withCount, q.QueryRowContext(ctx, `SELECT `+modelColumns+` FROM models WHERE name = $1`, name))
}

// lockModel takes the model's row lock in tx (the way every write transaction of a model
// begins, see Store) and reads the model in the same round trip.
func lockModel(ctx context.Context, tx *sql.Tx, name string) (*Model, error) {
	return readModel(ctx, tx, name, false, tx.QueryRowContext(ctx, `UPDATE models SET version = version WHERE name = $1 RETURNING `+modelColumns, name))
}

const modelColumns = `config, shards, slices, sequences, assign_key, version, created_at`

// readModel scans a row of modelColumns and reads the model's prefixes (and sample count).
func readModel(ctx context.Context, q queryer, name string, withCount bool, row *sql.Row) (*Model, error) {
	m := &Model{Name: name}
	var cfg, seqs string
	var created int64
	err := row.Scan(&cfg, &m.Shards, &m.Slices, &seqs, &m.Key, &m.Version, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	m.Config = json.RawMessage(cfg)
	m.CreatedAt = time.Unix(0, created).UTC()
	if err := json.Unmarshal([]byte(seqs), &m.Sequences); err != nil {
		return nil, fmt.Errorf("decode sequences: %w", err)
	}
	m.Live, m.Gen, m.Trained = make([][]int, m.Shards), make([][]int, m.Shards), make([][]int, m.Shards)
	for k := range m.Live {
		m.Live[k] = make([]int, len(m.Sequences[k]))
		m.Gen[k] = make([]int, len(m.Sequences[k]))
		m.Trained[k] = make([]int, len(m.Sequences[k]))
	}
	rows, err := q.QueryContext(ctx, `SELECT shard, sequence, live, gen, trained FROM prefixes WHERE model = $1`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k, b, n, g, t int
		if err := rows.Scan(&k, &b, &n, &g, &t); err != nil {
			return nil, err
		}
		if k < 0 || k >= m.Shards || b < 0 || b >= len(m.Live[k]) {
			return nil, fmt.Errorf("prefix row (%d, %d) out of range", k, b)
		}
		m.Live[k][b], m.Gen[k][b], m.Trained[k][b] = n, g, t
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if withCount {
		if err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(count), 0) FROM units WHERE model = $1`, name).Scan(&m.Samples); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ListModels returns every model, by name.
func (s *Store) ListModels(ctx context.Context) ([]*Model, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM models ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list models: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: list models: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list models: %w", err)
	}
	out := make([]*Model, 0, len(names))
	for _, n := range names {
		m, err := s.GetModel(ctx, n)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// DeleteModel erases a model and everything recorded for it: samples, placements, prefixes
// and receipts. Blobs and caches of its samples are queued for the purgers (one purge per
// sample with a blob key, plus one with an empty SampleID standing for the whole model).
func (s *Store) DeleteModel(ctx context.Context, name string) error {
	now := s.now().UnixNano()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE models SET version = version + 1 WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO purges (id, model, sample_id, shard, slice, blob_key, created_at)
			SELECT $1 || '-' || id, model, id, shard, slice, blob_key, $2 FROM samples WHERE model = $3 AND blob_key <> ''`,
			newID(), now, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO purges (id, model, sample_id, shard, slice, blob_key, created_at)
			VALUES ($1, $2, '', -1, -1, '', $3)`, newID(), name, now); err != nil {
			return err
		}
		// Explicit deletes, child tables first (the cascade would do it, but this does not
		// depend on foreign_keys being on).
		for _, q := range []string{
			`DELETE FROM samples WHERE model = $1`,
			`DELETE FROM checkpoints WHERE model = $1`,
			`DELETE FROM trainings WHERE model = $1`,
			`DELETE FROM deletions WHERE model = $1`,
			`DELETE FROM prefixes WHERE model = $1`,
			`DELETE FROM units WHERE model = $1`,
			`DELETE FROM models WHERE name = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete model %q: %w", name, err)
	}
	s.erasures.Add(1)
	s.log.Info("model deleted", "model", name)
	s.drainAfterCommit(ctx, nil)
	return nil
}

// Sample is one labelled training sample. Its input is either Input (bytes kept in the
// ledger) or BlobKey (the key of a blob holding it), or both.
type Sample struct {
	ID      string `json:"id"`
	Label   string `json:"label"`
	Input   []byte `json:"input,omitempty"`
	BlobKey string `json:"blob_key,omitempty"`
	// Placement is where the ledger put the sample (set by the store).
	Placement unlearning.Placement `json:"placement"`
	CreatedAt time.Time            `json:"created_at"`
}

// PutResult is the outcome of one sample of [Store.PutSamples].
type PutResult struct {
	ID        string               `json:"id"`
	Placement unlearning.Placement `json:"placement"`
	// Existed: the same sample (same label, input and blob key) was already stored; the
	// upload is an idempotent retry and nothing changed for it.
	Existed bool `json:"existed,omitempty"`
	// Err is nil, or wraps ErrInvalid (empty id), ErrConflict (the id is stored with other
	// content, or appears twice in the batch with different content) or ErrGone (the id was
	// deleted; a deleted id cannot be uploaded again).
	Err error `json:"-"`
}

// PutSamples stores a batch of samples in one transaction, all or nothing. New ids are
// placed with the model's [unlearning.Assigner], restored from the stored per-unit counts,
// in batch order, so placements are reproducible from the key and the upload history.
// Re-uploading a stored sample unchanged is accepted (Existed). When any sample fails, nothing
// is stored, the error wraps ErrConflict (or ErrInvalid, ErrGone) and the results say which
// ids failed and why; the other results carry no placement.
func (s *Store) PutSamples(ctx context.Context, model string, samples []Sample) ([]PutResult, error) {
	results := make([]PutResult, len(samples))
	var failed int
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		failed = 0
		var version int64
		if err := tx.QueryRowContext(ctx, `UPDATE models SET version = version + 1 WHERE name = $1 RETURNING version`, model).Scan(&version); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		m, err := getModel(ctx, tx, model, false)
		if err != nil {
			return err
		}
		counts, err := unitCounts(ctx, tx, m)
		if err != nil {
			return err
		}
		asg, err := unlearning.NewAssigner(m.Key, m.Shards, m.Slices, counts)
		if err != nil {
			return err
		}
		seen := make(map[string]int, len(samples))
		now := s.now().UnixNano()
		for i, smp := range samples {
			r := &results[i]
			r.ID = smp.ID
			if smp.ID == "" {
				r.Err, failed = fmt.Errorf("sample %d: %w: empty id", i, ErrInvalid), failed+1
				continue
			}
			if j, dup := seen[smp.ID]; dup {
				p := samples[j]
				if p.Label != smp.Label || !bytes.Equal(p.Input, smp.Input) || p.BlobKey != smp.BlobKey {
					r.Err, failed = fmt.Errorf("sample %q: %w: twice in the batch with different content", smp.ID, ErrConflict), failed+1
				} else {
					r.Placement, r.Existed = results[j].Placement, true
				}
				continue
			}
			seen[smp.ID] = i
			var label, blobKey string
			var input []byte
			var shard, slice int
			err := tx.QueryRowContext(ctx, `SELECT label, input, blob_key, shard, slice FROM samples WHERE model = $1 AND id = $2`, model, smp.ID).
				Scan(&label, &input, &blobKey, &shard, &slice)
			switch {
			case err == nil:
				if label != smp.Label || !bytes.Equal(input, smp.Input) || blobKey != smp.BlobKey {
					r.Err, failed = fmt.Errorf("sample %q: %w: stored with other content", smp.ID, ErrConflict), failed+1
				} else {
					r.Placement, r.Existed = unlearning.Placement{Shard: shard, Slice: slice}, true
				}
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM deletions WHERE model = $1 AND sample_id = $2`, model, smp.ID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				r.Err, failed = fmt.Errorf("sample %q: %w: deleted earlier", smp.ID, ErrGone), failed+1
				continue
			}
			if failed > 0 {
				continue // the batch is lost anyway; only report the remaining failures
			}
			p := asg.Place(smp.ID)
			r.Placement = p
			if _, err := tx.ExecContext(ctx, `INSERT INTO samples (model, id, shard, slice, label, input, blob_key, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, model, smp.ID, p.Shard, p.Slice, smp.Label, smp.Input, smp.BlobKey, now); err != nil {
				return err
			}
		}
		if failed > 0 {
			return errBatchFailed
		}
		after := asg.Counts()
		for u, c := range after {
			if c == counts[u] {
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE units SET count = $1 WHERE model = $2 AND shard = $3 AND slice = $4`,
				c, model, u/m.Slices, u%m.Slices); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errBatchFailed) {
		for i := range results {
			if results[i].Err == nil {
				results[i].Placement, results[i].Existed = unlearning.Placement{}, false
			}
		}
		return results, fmt.Errorf("store: put samples into %q: %d of %d failed, nothing stored: %w", model, failed, len(samples), firstErr(results))
	}
	if err != nil {
		return nil, fmt.Errorf("store: put samples into %q: %w", model, err)
	}
	s.log.Debug("samples stored", "model", model, "count", len(samples))
	return results, nil
}

var errBatchFailed = errors.New("batch failed")

func firstErr(rs []PutResult) error {
	for _, r := range rs {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// unitCounts reads the per-unit counts, index shard*slices+slice.
func unitCounts(ctx context.Context, q queryer, m *Model) ([]int, error) {
	counts := make([]int, m.Shards*m.Slices)
	rows, err := q.QueryContext(ctx, `SELECT shard, slice, count FROM units WHERE model = $1`, m.Name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k, l, c int
		if err := rows.Scan(&k, &l, &c); err != nil {
			return nil, err
		}
		if k < 0 || k >= m.Shards || l < 0 || l >= m.Slices {
			return nil, fmt.Errorf("unit row (%d, %d) out of range", k, l)
		}
		counts[k*m.Slices+l] = c
	}
	return counts, rows.Err()
}

// GetSample returns a stored sample. A deleted sample gives ErrGone, an unknown one
// ErrNotFound.
func (s *Store) GetSample(ctx context.Context, model, id string) (*Sample, error) {
	smp := &Sample{ID: id}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT label, input, blob_key, shard, slice, created_at FROM samples WHERE model = $1 AND id = $2`, model, id).
		Scan(&smp.Label, &smp.Input, &smp.BlobKey, &smp.Placement.Shard, &smp.Placement.Slice, &created)
	if errors.Is(err, sql.ErrNoRows) {
		if rec, rerr := s.receiptFor(ctx, s.db, model, id); rerr == nil {
			return nil, &GoneError{Receipt: rec} // with the receipt, as a second deletion answers
		}
		return nil, fmt.Errorf("store: get sample %q of %q: %w", id, model, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get sample %q of %q: %w", id, model, err)
	}
	smp.CreatedAt = time.Unix(0, created).UTC()
	return smp, nil
}

// Placement returns the (shard, slice) of a stored sample (errors as [Store.GetSample]).
func (s *Store) Placement(ctx context.Context, model, id string) (unlearning.Placement, error) {
	var p unlearning.Placement
	err := s.db.QueryRowContext(ctx, `SELECT shard, slice FROM samples WHERE model = $1 AND id = $2`, model, id).Scan(&p.Shard, &p.Slice)
	if errors.Is(err, sql.ErrNoRows) {
		_, err := s.GetSample(ctx, model, id)
		return p, err
	}
	if err != nil {
		return p, fmt.Errorf("store: placement of %q in %q: %w", id, model, err)
	}
	return p, nil
}

// ListSamples returns up to limit stored samples of one unit with id > after, in id order
// (limit <= 0: all), inputs included; for training jobs reading a slice page by page.
func (s *Store) ListSamples(ctx context.Context, model string, p unlearning.Placement, after string, limit int) ([]Sample, error) {
	q := `SELECT id, label, input, blob_key, created_at FROM samples WHERE model = $1 AND shard = $2 AND slice = $3 AND id > $4 ORDER BY id`
	args := []any{model, p.Shard, p.Slice, after}
	if limit > 0 {
		q += ` LIMIT $5`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list samples of %q: %w", model, err)
	}
	defer rows.Close()
	var out []Sample
	for rows.Next() {
		smp := Sample{Placement: p}
		var created int64
		if err := rows.Scan(&smp.ID, &smp.Label, &smp.Input, &smp.BlobKey, &created); err != nil {
			return nil, fmt.Errorf("store: list samples of %q: %w", model, err)
		}
		smp.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, smp)
	}
	return out, rows.Err()
}
