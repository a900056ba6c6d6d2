package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/s3t-dev/s3t/unlearning"
)

// published picks what a shard serves from its sequences' live and trained lengths: the
// longest min(live, trained), ties to the lowest sequence.
func published(live, trained []int) unlearning.Served {
	var out unlearning.Served
	for b, n := range live {
		n = min(n, trained[b])
		if n > out.Length {
			out = unlearning.Served{Sequence: b, Length: n}
		}
	}
	return out
}

// CheckpointRecord is a published checkpoint C[shard, sequence, stage] of generation Gen.
type CheckpointRecord struct {
	Model    string `json:"model"`
	Shard    int    `json:"shard"`
	Sequence int    `json:"sequence"`
	Gen      int    `json:"gen"`
	Stage    int    `json:"stage"`
	// BlobKey is where the checkpoint's bytes are.
	BlobKey string `json:"blob_key"`
	// Samples is how many samples the stage saw, Digest their digest.
	Samples int64     `json:"samples"`
	Digest  string    `json:"digest"`
	Created time.Time `json:"created_at"`
	// Snapshot is the ledger version the training read its data at (from [TrainingTarget];
	// not stored): publishing checks that no sample the stage saw was deleted since.
	Snapshot int64 `json:"-"`
	// Job and Holder are the training job publishing and the worker holding its lease (not
	// stored): the record is refused unless that worker still holds the job and it
	// runs (ErrNotHolder), so a run that lost its job (its lease passed to another worker, or
	// the job was cancelled) records nothing, and the job's new run may remove every blob of its
	// sequence that no record names. Job 0 publishes outside a job (fixtures, tools).
	Job    int64  `json:"-"`
	Holder string `json:"-"`
}

// ErrStale: a training job's generation is no longer the one it may publish into (the
// sequence was retrained by another job, or the model changed under it).
var ErrStale = errors.New("store: stale training")

// ErrNotHolder: a training job's record was refused because the worker publishing no longer
// runs the job (its lease passed to another worker, or the job was cancelled).
var ErrNotHolder = errors.New("store: the training job is not this worker's")

// TrainingTarget says what a training job of (shard, sequence) should produce, read at the
// job's start together with the ledger version its data is read at.
type TrainingTarget struct {
	// Gen is the generation to publish: the current one when it is still untouched by
	// deletions and not fully trained (a first training, or its resumption), the next one
	// otherwise (a retraining on the remaining data).
	Gen int
	// Retrain is true when Gen is the next generation.
	Retrain bool
	// From is the first stage still to publish (1-based; always 1 for a retraining); From > L
	// means nothing is left.
	From int
	// Snapshot is the model's ledger version when the target was read; the job must read
	// its samples after this call, so that every deletion it did not see has a later version.
	Snapshot int64
}

// Target returns what a training job of (shard, sequence) must do now; force asks for a
// retraining (the next generation) even if the current one is intact.
func (s *Store) Target(ctx context.Context, model string, shard, sequence int, force bool) (*TrainingTarget, error) {
	m, err := s.GetModel(ctx, model)
	if err != nil {
		return nil, err
	}
	if shard < 0 || shard >= m.Shards || sequence < 0 || sequence >= len(m.Sequences[shard]) {
		return nil, fmt.Errorf("store: target of %q (%d, %d): %w: out of range", model, shard, sequence, ErrInvalid)
	}
	live, gen, trained := m.Live[shard][sequence], m.Gen[shard][sequence], m.Trained[shard][sequence]
	t := &TrainingTarget{Gen: gen, From: trained + 1, Snapshot: m.Version}
	if force || live < m.Slices {
		// Stages above live are switched off for good in this generation: train the next.
		// A retraining publishes every stage again, from its own reading of the data, even
		// where an earlier attempt staged some: SwapGeneration checks they are all its own.
		t.Gen, t.Retrain, t.From = gen+1, true, 1
	}
	return t, nil
}

// PublishCheckpoint records a trained stage, after its blob is written. For the current
// generation it raises trained to the stage (stages publish in order; re-publishing a stage is
// idempotent) and bumps the model's version so that servers reload. For the next generation (a
// retraining) the record is staged until [Store.SwapGeneration]. It refuses (ErrStale) a
// generation the sequence is not at, and a stage that saw a sample deleted since c.Snapshot:
// for the current generation, a stage above the live prefix (deletions cut it); for the next,
// a stage at or above the position of a slice hit by a deletion committed after the snapshot.
// The caller then deletes the blob: nothing that saw a deleted sample is ever recorded.
func (s *Store) PublishCheckpoint(ctx context.Context, c CheckpointRecord) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var version int64
		if err := tx.QueryRowContext(ctx, `UPDATE models SET version = version + 1 WHERE name = $1 RETURNING version`, c.Model).Scan(&version); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if c.Job != 0 {
			// After the model's row, as every write transaction locks it first (DeleteModel then
			// locks the job's row too).
			res, err := tx.ExecContext(ctx, `UPDATE trainings SET updated_at = $1 WHERE job_id = $2 AND holder = $3 AND state = $4`,
				s.now().UnixNano(), c.Job, c.Holder, TrainingRunning)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != 1 {
				return fmt.Errorf("%w: training job %d is no longer run by %q (its lease passed to another worker, or it was cancelled)", ErrNotHolder, c.Job, c.Holder)
			}
		}
		var gen, trained, live int
		if err := tx.QueryRowContext(ctx, `SELECT gen, trained, live FROM prefixes WHERE model = $1 AND shard = $2 AND sequence = $3`,
			c.Model, c.Shard, c.Sequence).Scan(&gen, &trained, &live); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: no sequence (%d, %d)", ErrInvalid, c.Shard, c.Sequence)
			}
			return err
		}
		prevMissing := false // a next-generation stage whose previous stage has no record
		if c.Gen == gen+1 && c.Stage > 1 {
			has, err := hasStage(ctx, tx, c, c.Stage-1)
			if err != nil {
				return err // not "stage missing": a passing database error must not fail the job for good
			}
			prevMissing = !has
		}
		switch {
		case c.Gen == gen && c.Stage > trained+1, prevMissing:
			return fmt.Errorf("%w: stage %d published before stage %d", ErrInvalid, c.Stage, c.Stage-1)
		case c.Gen != gen && c.Gen != gen+1:
			return fmt.Errorf("%w: generation %d, the sequence is at %d", ErrStale, c.Gen, gen)
		case c.Gen == gen && c.Stage > live:
			return fmt.Errorf("%w: stage %d is above the live prefix %d (a sample it may have seen was deleted)", ErrStale, c.Stage, live)
		}
		if c.Gen == gen+1 {
			cut, err := cutSince(ctx, tx, c.Model, c.Shard, c.Sequence, c.Snapshot)
			if err != nil {
				return err
			}
			if c.Stage > cut {
				return fmt.Errorf("%w: a sample of slice %d of stage %d was deleted after the training read its data", ErrStale, c.Stage, c.Stage)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO checkpoints (model, shard, sequence, gen, stage, blob_key, samples, digest, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (model, shard, sequence, gen, stage) DO UPDATE SET blob_key = excluded.blob_key, samples = excluded.samples,
				digest = excluded.digest, created_at = excluded.created_at`,
			c.Model, c.Shard, c.Sequence, c.Gen, c.Stage, c.BlobKey, c.Samples, c.Digest, s.now().UnixNano()); err != nil {
			return err
		}
		if c.Gen == gen && c.Stage > trained {
			_, err := tx.ExecContext(ctx, `UPDATE prefixes SET trained = $1 WHERE model = $2 AND shard = $3 AND sequence = $4`,
				c.Stage, c.Model, c.Shard, c.Sequence)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: publish C[%d, %d, %d] gen %d of %q: %w", c.Shard, c.Sequence, c.Stage, c.Gen, c.Model, err)
	}
	return nil
}

// cutSince returns how many leading stages of (shard, sequence) no deletion committed after
// snapshot touches: L when none does, else the position (from 0) of the earliest slice hit.
func cutSince(ctx context.Context, tx *sql.Tx, model string, shard, sequence int, snapshot int64) (int, error) {
	m, err := getModel(ctx, tx, model, false)
	if err != nil {
		return 0, err
	}
	seq := m.Sequences[shard][sequence]
	live := m.Slices
	rows, err := tx.QueryContext(ctx, `SELECT slice FROM deletions WHERE model = $1 AND shard = $2 AND version > $3`, model, shard, snapshot)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var slice int
		if err := rows.Scan(&slice); err != nil {
			return 0, err
		}
		if p := slices.Index(seq, slice); p >= 0 && p < live {
			live = p
		}
	}
	return live, rows.Err()
}

// hasStage reports whether the generation of c's sequence has a checkpoint record of stage.
func hasStage(ctx context.Context, tx *sql.Tx, c CheckpointRecord, stage int) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM checkpoints WHERE model = $1 AND shard = $2 AND sequence = $3 AND gen = $4 AND stage = $5`,
		c.Model, c.Shard, c.Sequence, c.Gen, stage).Scan(&n)
	return n > 0, err
}

// Swap is the outcome of [Store.SwapGeneration].
type Swap struct {
	// Live is the new generation's live prefix length: L, or less when samples of its
	// slices were deleted after the retraining read its data.
	Live int `json:"live"`
	// Replaced are the blob keys of the old generation's checkpoints, no longer referenced;
	// the caller deletes them.
	Replaced []string `json:"-"`
}

// SwapGeneration switches (shard, sequence) to generation gen, whose L stages a retraining
// published on data read at ledger version snapshot (digests[i] is stage i+1's samples
// digest, as the retraining published it), in one transaction: the deletions committed after
// snapshot in this shard cut the new generation's live prefix (a deleted sample in slice
// sigma(p) switches stages p.. off), trained becomes L, and the old generation's checkpoint
// records go. ErrStale when the sequence is not at gen-1 any more, or when a staged stage is
// not the one this retraining published (another retraining's, on other data).
func (s *Store) SwapGeneration(ctx context.Context, model string, shard, sequence, gen int, snapshot int64, digests []string) (*Swap, error) {
	out := &Swap{}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE models SET version = version + 1 WHERE name = $1`, model); err != nil {
			return err
		}
		m, err := getModel(ctx, tx, model, false)
		if err != nil {
			return err
		}
		if shard < 0 || shard >= m.Shards || sequence < 0 || sequence >= len(m.Sequences[shard]) {
			return fmt.Errorf("%w: no sequence (%d, %d)", ErrInvalid, shard, sequence)
		}
		if cur := m.Gen[shard][sequence]; cur != gen-1 {
			return fmt.Errorf("%w: generation %d, the sequence is at %d", ErrStale, gen, cur)
		}
		var staged int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM checkpoints WHERE model = $1 AND shard = $2 AND sequence = $3 AND gen = $4`,
			model, shard, sequence, gen).Scan(&staged); err != nil {
			return err
		}
		if staged != m.Slices {
			return fmt.Errorf("%w: generation %d has %d of %d stages", ErrInvalid, gen, staged, m.Slices)
		}
		live, err := cutSince(ctx, tx, model, shard, sequence, snapshot)
		if err != nil {
			return err
		}
		drows, err := tx.QueryContext(ctx, `SELECT stage, digest FROM checkpoints WHERE model = $1 AND shard = $2 AND sequence = $3 AND gen = $4`,
			model, shard, sequence, gen)
		if err != nil {
			return err
		}
		for drows.Next() {
			var stage int
			var d string
			if err := drows.Scan(&stage, &d); err != nil {
				drows.Close()
				return err
			}
			if stage < 1 || stage > len(digests) || digests[stage-1] != d {
				drows.Close()
				return fmt.Errorf("%w: staged stage %d was not published by this training", ErrStale, stage)
			}
		}
		drows.Close()
		if err := drows.Err(); err != nil {
			return err
		}
		out.Live = live
		krows, err := tx.QueryContext(ctx, `SELECT blob_key FROM checkpoints WHERE model = $1 AND shard = $2 AND sequence = $3 AND gen < $4`,
			model, shard, sequence, gen)
		if err != nil {
			return err
		}
		for krows.Next() {
			var k string
			if err := krows.Scan(&k); err != nil {
				krows.Close()
				return err
			}
			out.Replaced = append(out.Replaced, k)
		}
		krows.Close()
		if err := krows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM checkpoints WHERE model = $1 AND shard = $2 AND sequence = $3 AND gen < $4`,
			model, shard, sequence, gen); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE prefixes SET gen = $1, live = $2, trained = $3 WHERE model = $4 AND shard = $5 AND sequence = $6`,
			gen, live, m.Slices, model, shard, sequence)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: swap (%d, %d) of %q to generation %d: %w", shard, sequence, model, gen, err)
	}
	s.log.Info("generation swapped in", "model", model, "shard", shard, "sequence", sequence, "gen", gen, "live", out.Live)
	return out, nil
}

// CheckpointRecordOf returns the published record of C[shard, sequence, stage] of generation gen.
func (s *Store) CheckpointRecordOf(ctx context.Context, model string, shard, sequence, gen, stage int) (*CheckpointRecord, error) {
	c := &CheckpointRecord{Model: model, Shard: shard, Sequence: sequence, Gen: gen, Stage: stage}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT blob_key, samples, digest, created_at FROM checkpoints
		WHERE model = $1 AND shard = $2 AND sequence = $3 AND gen = $4 AND stage = $5`, model, shard, sequence, gen, stage).
		Scan(&c.BlobKey, &c.Samples, &c.Digest, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: checkpoint C[%d, %d, %d] gen %d of %q: %w", shard, sequence, stage, gen, model, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: checkpoint of %q: %w", model, err)
	}
	c.Created = time.Unix(0, created).UTC()
	return c, nil
}

// CheckpointKeys returns the blob keys of every checkpoint record of a model.
func (s *Store) CheckpointKeys(ctx context.Context, model string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT blob_key FROM checkpoints WHERE model = $1 ORDER BY shard, sequence, gen, stage`, model)
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints of %q: %w", model, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// ServingState is what a model serves at one ledger version.
type ServingState struct {
	Model   *Model
	Version int64
	// Shards[k] is shard k's checkpoint (nil when the shard serves nothing).
	Shards []*CheckpointRecord
}

// Serving reads, in one transaction, the model and the record of the checkpoint every shard
// serves (see [Model.Published]).
func (s *Store) Serving(ctx context.Context, model string) (*ServingState, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.dialect == Postgres})
	if err != nil {
		return nil, fmt.Errorf("store: serving state of %q: %w", model, err)
	}
	defer tx.Rollback()
	m, err := getModel(ctx, tx, model, true)
	if err != nil {
		return nil, fmt.Errorf("store: serving state of %q: %w", model, err)
	}
	st := &ServingState{Model: m, Version: m.Version, Shards: make([]*CheckpointRecord, m.Shards)}
	for k, sv := range m.Published() {
		if sv.Length == 0 {
			continue
		}
		c := &CheckpointRecord{Model: model, Shard: k, Sequence: sv.Sequence, Gen: m.Gen[k][sv.Sequence], Stage: sv.Length}
		var created int64
		if err := tx.QueryRowContext(ctx, `SELECT blob_key, samples, digest, created_at FROM checkpoints
			WHERE model = $1 AND shard = $2 AND sequence = $3 AND gen = $4 AND stage = $5`, model, k, c.Sequence, c.Gen, c.Stage).
			Scan(&c.BlobKey, &c.Samples, &c.Digest, &created); err != nil {
			return nil, fmt.Errorf("store: serving state of %q: checkpoint C[%d, %d, %d]: %w", model, k, c.Sequence, c.Stage, err)
		}
		c.Created = time.Unix(0, created).UTC()
		st.Shards[k] = c
	}
	return st, nil
}

// UnitCounts returns the number of stored samples of every (shard, slice) unit of a model:
// counts[shard][slice].
func (s *Store) UnitCounts(ctx context.Context, model string) ([][]int, error) {
	m, err := s.GetModel(ctx, model)
	if err != nil {
		return nil, err
	}
	flat, err := unitCounts(ctx, s.db, m)
	if err != nil {
		return nil, fmt.Errorf("store: unit counts of %q: %w", model, err)
	}
	out := make([][]int, m.Shards)
	for k := range out {
		out[k] = flat[k*m.Slices : (k+1)*m.Slices]
	}
	return out, nil
}

// Stale reports, for every (shard, sequence) of a model, whether a published stage of its
// current generation that is still live saw fewer or other samples than its slices hold now:
// samples were uploaded after (or while) it trained, and no checkpoint of that sequence saw
// them. stale[shard][sequence]. m is the model as the caller read it (GetModel): its
// generations and live prefixes say which stages count.
func (s *Store) Stale(ctx context.Context, m *Model) ([][]bool, error) {
	model := m.Name
	flat, err := unitCounts(ctx, s.db, m)
	if err != nil {
		return nil, fmt.Errorf("store: stale sequences of %q: %w", model, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT shard, sequence, gen, stage, samples FROM checkpoints WHERE model = $1`, model)
	if err != nil {
		return nil, fmt.Errorf("store: stale sequences of %q: %w", model, err)
	}
	defer rows.Close()
	out := make([][]bool, m.Shards)
	for k := range out {
		out[k] = make([]bool, len(m.Sequences[k]))
	}
	for rows.Next() {
		var k, b, gen, stage int
		var samples int64
		if err := rows.Scan(&k, &b, &gen, &stage, &samples); err != nil {
			return nil, fmt.Errorf("store: stale sequences of %q: %w", model, err)
		}
		if k < 0 || k >= m.Shards || b < 0 || b >= len(m.Sequences[k]) || gen != m.Gen[k][b] || stage < 1 || stage > m.Live[k][b] {
			continue // another generation (a retraining's staged stages), or switched off
		}
		var now int64 // the samples stage's slices (the sequence's first stage) hold now
		for _, j := range m.Sequences[k][b][:stage] {
			now += int64(flat[k*m.Slices+j])
		}
		if now != samples {
			out[k][b] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: stale sequences of %q: %w", model, err)
	}
	return out, nil
}

// DeletionCounts returns the number of deletions of every shard of a model.
func (s *Store) DeletionCounts(ctx context.Context, model string) ([]int64, error) {
	m, err := s.GetModel(ctx, model)
	if err != nil {
		return nil, err
	}
	out := make([]int64, m.Shards)
	rows, err := s.db.QueryContext(ctx, `SELECT shard, COUNT(*) FROM deletions WHERE model = $1 GROUP BY shard`, model)
	if err != nil {
		return nil, fmt.Errorf("store: deletion counts of %q: %w", model, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k int
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		if k >= 0 && k < m.Shards {
			out[k] = n
		}
	}
	return out, rows.Err()
}

// Erasures returns how many deletions (of samples, or of whole models) this store has
// committed since it was opened: a number that only grows, unlike DeletionTotal, which a
// model's deletion lowers (its receipts go with it). The embedded server rewrites its ledger
// when it changes (s3t serve --compact-every).
func (s *Store) Erasures() int64 { return s.erasures.Load() }

// DeletionTotal returns the number of deletion receipts of every model.
func (s *Store) DeletionTotal(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deletions`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: deletion total: %w", err)
	}
	return n, nil
}

// Stamp returns a model's ledger version and creation time in one cheap read: together they
// tell a serving replica whether its in-memory state is current, even across a model deleted
// and created again under the same name (whose versions start over). With WithExclusive it is
// read from memory while no write of this Store committed since the row was last read.
func (s *Store) Stamp(ctx context.Context, model string) (int64, time.Time, error) {
	if !s.exclusive {
		return s.readStamp(ctx, model)
	}
	// The count is read before the row: a write that commits in between leaves an entry that
	// is already out of date by the count, and read again next time.
	n := s.commits.Load()
	if e, ok := s.stamps.Load(model); ok {
		if e := e.(*stampEntry); e.commits == n {
			return e.version, e.created, nil
		}
	}
	v, created, err := s.readStamp(ctx, model)
	if err != nil {
		s.stamps.Delete(model)
		return 0, time.Time{}, err
	}
	s.stamps.Store(model, &stampEntry{version: v, created: created, commits: n})
	return v, created, nil
}

// stampEntry is a model's stamp as Stamp read it when the Store had committed commits write
// transactions.
type stampEntry struct {
	version int64
	created time.Time
	commits uint64
}

// readStamp reads a model's stamp from the database.
func (s *Store) readStamp(ctx context.Context, model string) (int64, time.Time, error) {
	s.stampMu.Lock()
	if s.stamp == nil {
		st, err := s.db.PrepareContext(ctx, `SELECT version, created_at FROM models WHERE name = $1`)
		if err != nil {
			s.stampMu.Unlock()
			return 0, time.Time{}, fmt.Errorf("store: stamp of %q: %w", model, err)
		}
		s.stamp = st
	}
	stmt := s.stamp
	s.stampMu.Unlock()
	var v, created int64
	err := stmt.QueryRowContext(ctx, model).Scan(&v, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, fmt.Errorf("store: stamp of %q: %w", model, ErrNotFound)
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: stamp of %q: %w", model, err)
	}
	return v, time.Unix(0, created).UTC(), nil
}

// DeletedSince reports whether a deletion in a shard of a model committed after ledger
// version snapshot: a training job that read its data at snapshot must then start over.
func (s *Store) DeletedSince(ctx context.Context, model string, shard int, snapshot int64) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deletions WHERE model = $1 AND shard = $2 AND version > $3`, model, shard, snapshot).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: deletions of %q since %d: %w", model, snapshot, err)
	}
	return n > 0, nil
}
