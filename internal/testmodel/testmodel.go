// Package testmodel builds a real, tiny, trained S3T model for tests: a SQLite ledger, file
// blobs, the committed ViT registered as a backbone, a LoRA model (the built-in plugin's plan)
// whose shards are trained for real on a few MNIST digits (one epoch) and whose checkpoints are
// published through the ledger as the training jobs publish them. It also computes the
// ensemble directly through adapters.Predictor, the reference serving is compared with.
package testmodel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/dataset"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
	"github.com/s3t-dev/s3t/unlearning"
)

// BackboneName is the name the ViT is stored under.
const BackboneName = "vit"

// Options size the model. Zero values take the defaults (2 shards, 2 slices, 2 sequences, 64
// samples, seed 7).
type Options struct {
	Name                 string
	Shards, Slices, Seqs int
	Samples              int
	Seed                 uint64
	Untrained            bool // create the model and its samples, train nothing
}

// Fixture is a trained model in a ledger.
type Fixture struct {
	Store *store.Store
	Blobs *store.Blobs
	Name  string
	Rec   *training.Record
	// Sequences[k] are shard k's sequences.
	Sequences [][][]int
	// Checkpoints[k][b][i] is C[k, b, i+1] of generation 1.
	Checkpoints [][][]*adapters.Checkpoint
	// Units[k][slice] are the sample ids placed on (k, slice).
	Units [][][]string
	// Test are a few MNIST images that are not training samples.
	Test [][]float32

	bb  *backbone.Model
	man *backbone.Manifest
}

var (
	mnistOnce sync.Once
	mnist     *dataset.Set
	mnistErr  error
	engine    = sync.OnceValues(adapters.NewEngine)
)

// MNIST returns the MNIST digits (skipping the test when they are not installed).
func MNIST(t testing.TB) *dataset.Set {
	t.Helper()
	mnistOnce.Do(func() { mnist, mnistErr = dataset.LoadMNIST("") })
	if mnistErr != nil {
		t.Skipf("MNIST not installed (run `make deps`): %v", mnistErr)
	}
	return mnist
}

// OpenStore opens a migrated SQLite ledger (with opts) and file blobs in a temporary folder,
// closed when the test ends.
func OpenStore(t testing.TB, opts ...store.Option) (*store.Store, *store.Blobs) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(ctx, store.SQLiteDSN(dir), append([]store.Option{store.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	burl, err := store.DefaultBlobURL(dir)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := store.OpenBlobs(ctx, burl)
	if err != nil {
		t.Fatal(err)
	}
	st.OnPurge(blobs.Purger())
	t.Cleanup(func() { blobs.Close(); st.Close() })
	return st, blobs
}

// New builds a trained model in st and blobs.
func New(t testing.TB, st *store.Store, blobs *store.Blobs, o Options) *Fixture {
	t.Helper()
	ctx := context.Background()
	if o.Name == "" {
		o.Name = "digits"
	}
	if o.Shards == 0 {
		o.Shards = 2
	}
	if o.Slices == 0 {
		o.Slices = 2
	}
	if o.Seqs == 0 {
		o.Seqs = 2
	}
	if o.Samples == 0 {
		o.Samples = 64
	}
	if o.Seed == 0 {
		o.Seed = 7
	}
	set := MNIST(t)
	raw := assets.ViTFashionMNIST()
	if err := blobs.Put(ctx, training.BackboneKey(BackboneName), raw); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	bb, err := backbone.LoadBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	man, err := backbone.DetectManifest(bb)
	if err != nil {
		t.Fatal(err)
	}
	lora, ok := plugins.Builtins().Lookup("peft.lora")
	if !ok || lora.PEFT == nil {
		t.Fatal("no built-in peft.lora")
	}
	plan, err := lora.PEFT.Plan(ctx, &sdk.PlanRequest{Manifest: *man, Config: json.RawMessage(`{"rank": 4}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ValidatePlan(man, plan); err != nil {
		t.Fatal(err)
	}
	labels := make([]string, dataset.Classes)
	for i := range labels {
		labels[i] = strconv.Itoa(i)
	}
	rec := &training.Record{
		ModelSpec: api.ModelSpec{Backbone: BackboneName, Labels: labels, PEFT: api.PEFT{Type: "peft.lora", Config: plan.Config},
			S3T:      api.S3TConfig{Shards: o.Shards, Slices: o.Slices, Sequences: o.Seqs, Selector: "cyclic"},
			Training: api.TrainingConfig{Epochs: 1, LearningRate: 5e-3, BatchSize: 16}, Seed: int64(o.Seed), HeadInput: "features"},
		BackboneSHA256: hex.EncodeToString(sum[:]),
		InputName:      bb.Inputs()[0].Name,
		InputShape:     []int64{dataset.Channels, dataset.Height, dataset.Width},
		Plan:           plan,
	}
	cfg, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := unlearning.NewSelector("cyclic")
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([][][]int, o.Shards)
	for k := range seqs {
		if seqs[k], err = unlearning.Select(ctx, sel, &sdk.SelectRequest{Slices: o.Slices, Budget: o.Seqs}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateModel(ctx, store.ModelSpec{Name: o.Name, Config: cfg, Slices: o.Slices, Sequences: seqs,
		Key: make([]byte, unlearning.KeySize)}); err != nil {
		t.Fatal(err)
	}
	perm := rand.New(rand.NewPCG(o.Seed, 1)).Perm(set.Len())
	samples := make([]store.Sample, o.Samples)
	byID := map[string]adapters.Example{}
	for i := range samples {
		j := perm[i]
		id := fmt.Sprintf("mnist-%05d", j)
		samples[i] = store.Sample{ID: id, Label: labels[set.Labels[j]], Input: training.EncodeInput(set.Image(j))}
		byID[id] = adapters.Example{ID: id, Input: set.Image(j), Label: set.Labels[j]}
	}
	res, err := st.PutSamples(ctx, o.Name, samples)
	if err != nil {
		t.Fatal(err)
	}
	fx := &Fixture{Store: st, Blobs: blobs, Name: o.Name, Rec: rec, Sequences: seqs, bb: bb, man: man,
		Units: make([][][]string, o.Shards), Checkpoints: make([][][]*adapters.Checkpoint, o.Shards)}
	data := make([][][]adapters.Example, o.Shards)
	for k := range o.Shards {
		fx.Units[k] = make([][]string, o.Slices)
		data[k] = make([][]adapters.Example, o.Slices)
	}
	for _, r := range res {
		p := r.Placement
		fx.Units[p.Shard][p.Slice] = append(fx.Units[p.Shard][p.Slice], r.ID)
		data[p.Shard][p.Slice] = append(data[p.Shard][p.Slice], byID[r.ID])
	}
	for _, j := range perm[o.Samples : o.Samples+8] {
		fx.Test = append(fx.Test, set.Image(j))
	}
	if o.Untrained {
		return fx
	}
	eng, err := engine()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := eng.NewShardTrainer(adapters.ShardConfig{
		Backbone: bb, Manifest: man, PEFT: fx.PEFT(), Slices: o.Slices,
		Head: adapters.Head{Input: rec.HeadInput, Classes: len(labels)}, Epochs: 1,
		Optimizer: adapters.AdamW{LearningRate: 5e-3}, BatchSize: 16, Seed: o.Seed,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for k := range o.Shards {
		cks, err := tr.TrainShard(ctx, k, seqs[k], data[k])
		if err != nil {
			t.Fatal(err)
		}
		fx.Checkpoints[k] = cks
		for b, stages := range cks {
			for i, c := range stages {
				fx.Publish(t, k, b, i+1, c)
			}
		}
	}
	return fx
}

// PEFT is the model's PEFT type as training and serving use it.
func (fx *Fixture) PEFT() adapters.PEFTType {
	return adapters.Planned{Plugin: fx.Rec.PEFT.Type, Plan: fx.Rec.Plan}
}

// Publish stores c as C[k, b, stage] of generation 1 and records it in the ledger.
func (fx *Fixture) Publish(t testing.TB, k, b, stage int, c *adapters.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	blob, err := adapters.EncodeCheckpoint(c)
	if err != nil {
		t.Fatal(err)
	}
	key := training.CheckpointKey(fx.Name, k, b, 1, stage, 0, 0)
	if err := fx.Blobs.Put(ctx, key, blob); err != nil {
		t.Fatal(err)
	}
	if err := fx.Store.PublishCheckpoint(ctx, store.CheckpointRecord{Model: fx.Name, Shard: k, Sequence: b, Gen: 1, Stage: stage,
		BlobKey: key, Samples: int64(c.Manifest.Samples), Digest: c.Manifest.SamplesDigest}); err != nil {
		t.Fatal(err)
	}
}

// Predictor returns a predictor of the model's checkpoints, closed when the test ends.
func (fx *Fixture) Predictor(t testing.TB, threads int) *adapters.Predictor {
	t.Helper()
	p, err := adapters.NewPredictor(fx.bb, fx.man, fx.PEFT(), len(fx.Sequences[0][0]), fx.Rec.HeadInput, threads)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Served returns, per shard, the checkpoint the ledger says it serves now (nil: none), from
// the fixture's own copies of the trained checkpoints.
func (fx *Fixture) Served(t testing.TB) []*adapters.Checkpoint {
	t.Helper()
	m, err := fx.Store.GetModel(context.Background(), fx.Name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*adapters.Checkpoint, m.Shards)
	for k, sv := range m.Published() {
		if sv.Length > 0 {
			out[k] = fx.Checkpoints[k][sv.Sequence][sv.Length-1]
		}
	}
	return out
}

// Direct is training.Ensemble of cks on inputs through p, failing the test on an error. It
// returns the scores [n, classes] and the labels.
func (fx *Fixture) Direct(t testing.TB, p *adapters.Predictor, cks []*adapters.Checkpoint, inputs [][]float32) ([]float64, []int) {
	t.Helper()
	scores, labels, err := training.Ensemble(context.Background(), p, cks, fx.Rec, inputs)
	if err != nil {
		t.Fatal(err)
	}
	return scores, labels
}

// ConcurrentSingles runs clients goroutines that each make per predictions of one input
// through predict (which returns that input's probabilities), the inputs taken from fx.Test in
// turn, and fails the test unless every answer is exactly the direct ensemble of the served
// checkpoints on its input alone.
func (fx *Fixture) ConcurrentSingles(t testing.TB, clients, per int, predict func(x []float32) ([]float64, error)) {
	t.Helper()
	cks := fx.Served(t)
	p := fx.Predictor(t, 1)
	want := make([][]float64, len(fx.Test))
	for i := range fx.Test {
		want[i], _ = fx.Direct(t, p, cks, fx.Test[i:i+1])
	}
	var wg sync.WaitGroup
	for g := range clients {
		wg.Go(func() {
			for r := range per {
				i := (g*per + r) % len(fx.Test)
				got, err := predict(fx.Test[i])
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(got, want[i]) {
					t.Errorf("input %d: %v, want %v", i, got, want[i])
				}
			}
		})
	}
	wg.Wait()
}
