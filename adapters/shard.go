package adapters

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// Groups returns the block groups G_1..G_L of a backbone with blocks blocks, counted from the top
// (METHOD.md): G_1 holds the top n = floor(blocks/L) block indices, G_2 the n below, and so on,
// each in ascending order. Blocks below the L·n top ones belong to no group and stay off.
func Groups(blocks, L int) ([][]int, error) {
	if L < 1 || blocks < L {
		return nil, fmt.Errorf("groups: %w: %d blocks cannot form %d groups of at least one block", ErrInvalidArgument, blocks, L)
	}
	n := blocks / L
	groups := make([][]int, L)
	for i := range L {
		hi := blocks - i*n
		for b := hi - n; b < hi; b++ {
			groups[i] = append(groups[i], b)
		}
	}
	return groups, nil
}

// Example is one training sample: its id, the backbone's input for it (one example, without the
// batch axis) and its label.
type Example struct {
	ID    string
	Input []float32
	Label int
}

// EarlyStopping configures early stopping on a held-out part of a stage's own data (the slices
// of its prefix, never later ones): after each epoch the held-out loss is measured, training
// stops after Patience epochs without improvement, and the best epoch's parameters are kept.
type EarlyStopping struct {
	// HoldOut is the fraction of the stage's samples held out, in [0, 0.5]; 0 disables early
	// stopping.
	HoldOut float64
	// Patience is the number of epochs without improvement before stopping. Default 1.
	Patience int
}

// ShardConfig configures a ShardTrainer.
type ShardConfig struct {
	// Backbone is the frozen backbone; Manifest its blocks and edges.
	Backbone *backbone.Model
	Manifest *backbone.Manifest
	// PEFT is the PEFT type: a plugin's plan (Planned) or the local LoRA. Default LoRA.
	PEFT PEFTType
	// LoRA configures the local LoRA when PEFT is nil.
	LoRA LoRA
	// Slices is L, the number of slices per shard, stages per sequence and block groups.
	Slices int
	// Head is the task head trained at every stage.
	Head Head
	// Epochs is the number of epochs per stage. Default 1.
	Epochs int
	// Optimizer, Schedule (its Steps is set per stage), BatchSize and MicroBatches configure
	// each stage's Trainer.
	Optimizer    AdamW
	Schedule     Schedule
	BatchSize    int
	MicroBatches int
	// EarlyStopping is off by default.
	EarlyStopping EarlyStopping
	// Seed is the model seed; each stage's seed is derived from it, the shard, the sequence and
	// the stage.
	Seed uint64
	// Cache holds trunk activations. Default a new MemoryCache.
	Cache ActivationCache
	// NoCache recomputes the trunk activations with ONNX Runtime at every epoch instead of
	// caching them (for benchmarks).
	NoCache bool
	// Dir, when set, is the checkpoint root: finished stages are saved there and, when present
	// and valid for this configuration, loaded instead of trained again.
	Dir string
	// Owner names what the stages are trained for (a server's model: its name and creation
	// time). Each checkpoint's manifest records it, so that a stage another owner left in Dir (a
	// deleted model's, under the name of one created again) is never taken for this one's.
	Owner string
	// Progress, when set, is called after every training step.
	Progress func(StageProgress)
	// StageDone, when set, is called after each stage with its checkpoint; trained is false
	// when the checkpoint was loaded from Dir instead.
	StageDone func(c *Checkpoint, trained bool)
	// Logger receives stage events. Default slog.Default().
	Logger *slog.Logger
}

// StageProgress reports one training step of a stage.
type StageProgress struct {
	Shard, Sequence, Stage int
	Progress
}

// ShardTrainer trains the shards of one S3T model: for each sequence of a shard, stages
// 1..L in order, stage i training the PEFT parameters of group G_i and the head on the
// cumulative slices sigma(1..i), with G_1..G_(i-1) fixed at their trained values and lower groups
// off. The head is drawn (seeded) at stage 1 and goes on from the previous stage's at each later
// one, as METHOD.md trains it. Trunk activations below each stage's lowest trainable block come
// from ONNX Runtime once and are cached per (sample, edge). A ShardTrainer is not safe for
// concurrent use; Close releases its ONNX Runtime session.
type ShardTrainer struct {
	engine   *Engine
	cfg      ShardConfig
	groups   [][]int
	edges    []string // input of each group's lowest block
	sha      string
	input    backbone.ValueInfo
	rowSize  int
	adapters []Adapter // adapters[i]: the PEFT rewrite of groups G_1..G_(i+1)
	tops     map[int]*Model
	trunk    *ort.Session
	edgeRows map[string][]int64 // an activation's shape without the batch axis
	log      *slog.Logger
}

// NewShardTrainer prepares S3T training of a backbone.
func (e *Engine) NewShardTrainer(cfg ShardConfig) (*ShardTrainer, error) {
	if cfg.Backbone == nil || cfg.Manifest == nil {
		return nil, fmt.Errorf("new shard trainer: %w: backbone and manifest are required", ErrInvalidArgument)
	}
	if cfg.Epochs == 0 {
		cfg.Epochs = 1
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 64
	}
	if cfg.MicroBatches == 0 {
		cfg.MicroBatches = 2
	}
	if cfg.Head.Input == "" {
		cfg.Head.Input = "features"
	}
	if cfg.EarlyStopping.Patience == 0 {
		cfg.EarlyStopping.Patience = 1
	}
	cfg.Optimizer = cfg.Optimizer.withDefaults()
	cfg.LoRA = cfg.LoRA.withDefaults()
	if cfg.PEFT == nil {
		cfg.PEFT = cfg.LoRA
	}
	if cfg.Cache == nil {
		cfg.Cache = NewMemoryCache()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Epochs < 1 || cfg.EarlyStopping.HoldOut < 0 || cfg.EarlyStopping.HoldOut > 0.5 || cfg.EarlyStopping.Patience < 1 {
		return nil, fmt.Errorf("new shard trainer: %w: epochs %d, early stopping %+v", ErrInvalidArgument, cfg.Epochs, cfg.EarlyStopping)
	}
	if cfg.Schedule.Kind == Cosine && cfg.Schedule.Steps == 0 {
		cfg.Schedule.Steps = 1 // set per stage
	}
	if err := cfg.Schedule.validate(); err != nil {
		return nil, fmt.Errorf("new shard trainer: %w", err)
	}
	groups, err := Groups(len(cfg.Manifest.Blocks), cfg.Slices)
	if err != nil {
		return nil, fmt.Errorf("new shard trainer: %w", err)
	}
	ins := cfg.Backbone.Inputs()
	if len(ins) != 1 || !ins[0].Shape.Known() && len(ins[0].Shape) < 1 {
		return nil, fmt.Errorf("new shard trainer: %w: the backbone must have one data input", ErrInvalidArgument)
	}
	row := 1
	for _, d := range ins[0].Shape[1:] {
		if !d.Known() {
			return nil, fmt.Errorf("new shard trainer: %w: input %q has shape %s; only the batch axis may vary",
				ErrInvalidArgument, ins[0].Name, ins[0].Shape)
		}
		row *= int(d.Size)
	}
	b, err := cfg.Backbone.Bytes()
	if err != nil {
		return nil, fmt.Errorf("new shard trainer: %w", err)
	}
	sum := sha256.Sum256(b)
	s := &ShardTrainer{engine: e, cfg: cfg, groups: groups, sha: hex.EncodeToString(sum[:]), input: ins[0], rowSize: row,
		tops: map[int]*Model{}, edgeRows: map[string][]int64{}, log: cfg.Logger}
	var blocks []int
	for _, g := range groups {
		blocks = append(blocks, g...)
		edge := cfg.Manifest.Blocks[g[0]].Input
		if edge == "" {
			return nil, fmt.Errorf("new shard trainer: %w: block %d has no input edge in the manifest", ErrInvalidArgument, g[0])
		}
		s.edges = append(s.edges, edge)
		a, err := cfg.PEFT.Adapter(cfg.Manifest, blocks...)
		if err != nil {
			return nil, fmt.Errorf("new shard trainer: %w", err)
		}
		s.adapters = append(s.adapters, a)
	}
	exposed, err := cfg.Backbone.ExposeOutputs(s.edges...)
	if err != nil {
		return nil, fmt.Errorf("new shard trainer: trunk: %w", err)
	}
	tb, err := exposed.Bytes()
	if err != nil {
		return nil, fmt.Errorf("new shard trainer: trunk: %w", err)
	}
	// As many ONNX Runtime threads as the process may use cores: its default is every core of
	// the machine, and on a worker held to fewer its extra threads spin on the same cores.
	if s.trunk, err = ort.NewSession(tb, ort.WithOutputs(s.edges...), ort.WithIntraOpThreads(runtime.GOMAXPROCS(0))); err != nil {
		return nil, fmt.Errorf("new shard trainer: trunk session: %w", err)
	}
	// One run on a zero input learns the activations' shapes.
	if _, err := s.run(context.Background(), []Example{{ID: "shape probe", Input: make([]float32, row)}}); err != nil {
		s.trunk.Close()
		return nil, fmt.Errorf("new shard trainer: %w", err)
	}
	return s, nil
}

// Close releases the ONNX Runtime session.
func (s *ShardTrainer) Close() error { return s.trunk.Close() }

// Groups returns the block groups G_1..G_L.
func (s *ShardTrainer) Groups() [][]int { return slices.Clone(s.groups) }

// Edges returns the activation cached for each stage: the input of the lowest block of G_i.
func (s *ShardTrainer) Edges() []string { return slices.Clone(s.edges) }

// BackboneSHA256 returns the backbone's SHA-256, hex.
func (s *ShardTrainer) BackboneSHA256() string { return s.sha }

// Adapter returns the PEFT rewrite of groups G_1..G_stage.
func (s *ShardTrainer) Adapter(stage int) Adapter { return s.adapters[stage-1] }

// StageSeed derives the seed of stage (from 1) of a sequence of a shard from the model seed.
func StageSeed(model uint64, shard, sequence, stage int) uint64 {
	h := sha256.New()
	for _, v := range []uint64{model, uint64(shard), uint64(sequence), uint64(stage)} {
		h.Write(binary.LittleEndian.AppendUint64(nil, v))
	}
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

// StageSteps returns the optimizer steps of a stage trained on n samples (without early
// stopping's hold-out).
func (s *ShardTrainer) StageSteps(n int) int {
	n -= int(math.Floor(float64(n) * s.cfg.EarlyStopping.HoldOut))
	return s.cfg.Epochs * ((n + s.cfg.BatchSize - 1) / s.cfg.BatchSize)
}

// TrainShard trains every sequence of a shard through all L stages and returns the checkpoints,
// [sequence][stage-1]. slices[j] holds slice j's samples.
func (s *ShardTrainer) TrainShard(ctx context.Context, shard int, seqs [][]int, slices [][]Example) ([][]*Checkpoint, error) {
	out := make([][]*Checkpoint, len(seqs))
	for b, seq := range seqs {
		cs, err := s.TrainSequence(ctx, shard, b, seq, slices, len(seq))
		if err != nil {
			return nil, err
		}
		out[b] = cs
	}
	return out, nil
}

// TrainSequence trains stages 1..stages of sequence number sequence (seq, a permutation of the
// slices) of a shard, in order, and returns their checkpoints. Only slices seq[:stages] are read.
// With a checkpoint folder, a stage whose checkpoint is present and valid for this
// configuration and data is loaded, not trained again; an unfinished one is trained from scratch.
func (s *ShardTrainer) TrainSequence(ctx context.Context, shard, sequence int, seq []int, data [][]Example, stages int) ([]*Checkpoint, error) {
	if len(seq) != s.cfg.Slices || stages < 1 || stages > len(seq) {
		return nil, fmt.Errorf("train sequence: %w: sequence %v of %d slices, %d stages", ErrInvalidArgument, seq, s.cfg.Slices, stages)
	}
	if err := s.eraseStale(shard, sequence, seq, data); err != nil {
		return nil, err
	}
	var out []*Checkpoint
	var prev *Checkpoint
	for i := 1; i <= stages; i++ {
		c, err := s.stage(ctx, shard, sequence, seq[:i], data, prev)
		if err != nil {
			return nil, fmt.Errorf("train shard %d sequence %d stage %d: %w", shard, sequence, i, err)
		}
		out = append(out, c)
		prev = c
	}
	return out, nil
}

// eraseStale removes, before any stage trains, every local checkpoint of the sequence (all its
// stages, not only those this call trains) whose samples digest is not that of data now: it was
// trained on other samples, perhaps on one deleted since, and a stage would only overwrite it
// when training reached it (hours, on a large model; a worker's sweep leaves the folders of its
// running jobs to them). A stage whose slices now hold no sample goes too.
func (s *ShardTrainer) eraseStale(shard, sequence int, seq []int, data [][]Example) error {
	if s.cfg.Dir == "" {
		return nil
	}
	for i := 1; i <= len(seq); i++ {
		dir := CheckpointDir(s.cfg.Dir, shard, sequence, i)
		raw, err := os.ReadFile(filepath.Join(dir, CheckpointManifestFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue // none, or an unfinished one (trained from scratch when reached)
		}
		var man CheckpointManifest
		if err == nil {
			err = json.Unmarshal(raw, &man)
		}
		if err == nil {
			if _, digest, derr := stageData(seq[:i], data); derr == nil && digest == man.SamplesDigest {
				continue
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("train shard %d sequence %d: erase stage %d trained on other data: %w", shard, sequence, i, err)
		}
		s.log.Info("erased a local stage checkpoint trained on other data", "shard", shard, "sequence", sequence, "stage", i, "dir", dir)
	}
	return nil
}

// stageData returns the samples of the prefix's slices, each slice sorted by id, and their digest.
func stageData(prefix []int, data [][]Example) ([]Example, string, error) {
	h := sha256.New()
	var out []Example
	for _, j := range prefix {
		if j < 0 || j >= len(data) {
			return nil, "", fmt.Errorf("%w: slice %d of %d", ErrInvalidArgument, j, len(data))
		}
		sl := slices.Clone(data[j])
		slices.SortFunc(sl, func(a, b Example) int { return strings.Compare(a.ID, b.ID) })
		fmt.Fprintf(h, "slice %d %d\n", j, len(sl))
		for _, e := range sl {
			fmt.Fprintf(h, "%q %d\n", e.ID, e.Label)
		}
		out = append(out, sl...)
	}
	if len(out) == 0 {
		return nil, "", fmt.Errorf("%w: slices %v hold no samples", ErrInvalidArgument, prefix)
	}
	return out, hex.EncodeToString(h.Sum(nil)), nil
}

// manifest returns the manifest a stage's checkpoint will have, before training.
func (s *ShardTrainer) manifest(shard, sequence int, prefix []int, n, heldOut int, digest string) CheckpointManifest {
	stage := len(prefix)
	targets := map[string]string{}
	for _, p := range s.adapters[stage-1].Params {
		targets[p.Name] = p.Target
	}
	sched := s.cfg.Schedule.Kind
	if sched == "" {
		sched = Constant
	}
	return CheckpointManifest{
		Schema:        CheckpointSchema,
		PEFT:          s.cfg.PEFT.Record(),
		Backbone:      s.sha,
		Shard:         shard,
		Sequence:      sequence,
		Stage:         stage,
		Slices:        slices.Clone(prefix),
		Groups:        slices.Clone(s.groups[:stage]),
		Samples:       n,
		HeldOut:       heldOut,
		SamplesDigest: digest,
		Owner:         s.cfg.Owner,
		Seed:          StageSeed(s.cfg.Seed, shard, sequence, stage),
		Training: TrainingRecord{
			Epochs: s.cfg.Epochs, BatchSize: s.cfg.BatchSize, MicroBatches: s.cfg.MicroBatches,
			LearningRate: s.cfg.Optimizer.LearningRate, WeightDecay: s.cfg.Optimizer.WeightDecay,
			Schedule: string(sched), Warmup: s.cfg.Schedule.Warmup,
			HoldOut: s.cfg.EarlyStopping.HoldOut, Patience: s.cfg.EarlyStopping.Patience,
			HeadInput: s.cfg.Head.Input, Classes: s.cfg.Head.Classes, ModelSeed: s.cfg.Seed, HeadCarried: true,
		},
		Targets: targets,
	}
}

// stage trains (or loads) one stage on the prefix's slices, with the previous stage's PEFT
// parameters fixed.
func (s *ShardTrainer) stage(ctx context.Context, shard, sequence int, prefix []int, data [][]Example, prev *Checkpoint) (*Checkpoint, error) {
	stage := len(prefix)
	examples, digest, err := stageData(prefix, data)
	if err != nil {
		return nil, err
	}
	seed := StageSeed(s.cfg.Seed, shard, sequence, stage)
	// Early stopping's hold-out: a seeded choice among this stage's own samples.
	var held []Example
	if s.cfg.EarlyStopping.HoldOut > 0 {
		k := int(math.Floor(float64(len(examples)) * s.cfg.EarlyStopping.HoldOut))
		perm := rand.New(rand.NewPCG(seed, 0x486f6c644f7574)).Perm(len(examples))
		isHeld := make([]bool, len(examples))
		for _, j := range perm[:k] {
			isHeld[j] = true
		}
		var train []Example
		for j, e := range examples {
			if isHeld[j] {
				held = append(held, e)
			} else {
				train = append(train, e)
			}
		}
		examples = train
	}
	man := s.manifest(shard, sequence, prefix, len(examples)+len(held), len(held), digest)
	dir := ""
	if s.cfg.Dir != "" {
		dir = CheckpointDir(s.cfg.Dir, shard, sequence, stage)
		c, err := LoadCheckpoint(dir)
		switch {
		case err == nil && c.Manifest.key() == man.key():
			s.log.Info("stage already trained", "shard", shard, "sequence", sequence, "stage", stage, "dir", dir)
			if s.cfg.StageDone != nil {
				s.cfg.StageDone(c, false)
			}
			return c, nil
		case err == nil:
			s.log.Warn("checkpoint was made with another configuration or data; training again",
				"shard", shard, "sequence", sequence, "stage", stage, "dir", dir)
		case !errors.Is(err, fs.ErrNotExist):
			s.log.Warn("checkpoint unusable; training again", "dir", dir, "err", err)
		}
	}
	top, err := s.top(stage)
	if err != nil {
		return nil, err
	}
	fixed := map[string]ort.Tensor{}
	var head map[string]ort.Tensor // stage 1: a seeded draw
	if stage > 1 {
		if prev == nil || prev.Manifest.Stage != stage-1 || !slices.Equal(prev.Manifest.Slices, prefix[:stage-1]) {
			return nil, fmt.Errorf("%w: stage %d needs the checkpoint of stage %d of the same prefix", ErrInvalidArgument, stage, stage-1)
		}
		fixed = prev.PEFTParams()
		// The head goes on from the previous stage's, which saw only slices prefix[:stage-1].
		head = map[string]ort.Tensor{HeadWeight: prev.Params[HeadWeight], HeadBias: prev.Params[HeadBias]}
	}
	cfg := TrainConfig{
		Train:        s.adapters[stage-1].Block(s.groups[stage-1]...),
		Fixed:        fixed,
		Head:         s.cfg.Head,
		HeadInit:     head,
		Optimizer:    s.cfg.Optimizer,
		Schedule:     s.cfg.Schedule,
		BatchSize:    s.cfg.BatchSize,
		MicroBatches: s.cfg.MicroBatches,
		Seed:         seed,
	}
	cfg.Schedule.Steps = s.cfg.Epochs * ((len(examples) + s.cfg.BatchSize - 1) / s.cfg.BatchSize)
	if s.cfg.Progress != nil {
		cfg.Progress = func(p Progress) {
			s.cfg.Progress(StageProgress{Shard: shard, Sequence: sequence, Stage: stage, Progress: p})
		}
	}
	tr, err := s.engine.NewTrainer(top, cfg)
	if err != nil {
		return nil, err
	}
	edge := s.edges[stage-1]
	labels := make([]int, len(examples))
	for j, e := range examples {
		labels[j] = e.Label
	}
	var x, hx ort.Tensor
	if !s.cfg.NoCache {
		if x, err = s.activations(ctx, edge, examples); err != nil {
			return nil, err
		}
	}
	if len(held) > 0 {
		if s.cfg.NoCache {
			hx, err = s.compute(ctx, edge, held)
		} else {
			hx, err = s.activations(ctx, edge, held)
		}
		if err != nil {
			return nil, err
		}
	}
	start := time.Now()
	best, bestLoss, bestEpoch := map[string]ort.Tensor(nil), math.Inf(1), -1
	var losses []float64
	for epoch := range s.cfg.Epochs {
		if s.cfg.NoCache {
			if x, err = s.compute(ctx, edge, examples); err != nil {
				return nil, err
			}
		}
		l, err := tr.Fit(ctx, x, labels, 1)
		if err != nil {
			return nil, err
		}
		losses = append(losses, l...)
		if len(held) == 0 {
			continue
		}
		hl, err := heldOutLoss(ctx, tr, hx, held)
		if err != nil {
			return nil, err
		}
		s.log.Debug("held-out loss", "shard", shard, "sequence", sequence, "stage", stage, "epoch", epoch, "loss", hl)
		if hl < bestLoss {
			best, bestLoss, bestEpoch = tr.Params(), hl, epoch
		} else if epoch-bestEpoch >= s.cfg.EarlyStopping.Patience {
			break
		}
	}
	if best != nil {
		if err := tr.SetParams(best); err != nil {
			return nil, err
		}
	}
	params := tr.Params()
	for n, v := range fixed {
		params[n] = v
	}
	man.Steps, man.EpochLosses, man.BestEpoch = tr.Steps(), losses, bestEpoch
	c := &Checkpoint{Manifest: man, Params: params}
	s.log.Info("stage trained", "shard", shard, "sequence", sequence, "stage", stage, "slices", prefix,
		"samples", len(examples), "steps", tr.Steps(), "loss", losses[len(losses)-1], "elapsed", time.Since(start).Round(time.Millisecond))
	if dir != "" {
		// A stage stopped while it trained is not saved: the stop may be its data's deletion
		// (a sample, or the whole model), and the deletion's purge may have erased Dir already.
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if err := SaveCheckpoint(dir, c); err != nil {
			return nil, err
		}
	}
	if s.cfg.StageDone != nil {
		s.cfg.StageDone(c, true)
	}
	return c, nil
}

// heldOutLoss returns the mean cross-entropy of the trainer's logits on held-out samples.
func heldOutLoss(ctx context.Context, tr *Trainer, x ort.Tensor, held []Example) (float64, error) {
	z, err := tr.Logits(ctx, x)
	if err != nil {
		return 0, err
	}
	v, _ := ort.Values[float32](z)
	k := len(v) / len(held)
	var sum float64
	for i, e := range held {
		row := v[i*k : (i+1)*k]
		m := float64(slices.Max(row))
		var s float64
		for _, r := range row {
			s += math.Exp(float64(r) - m)
		}
		sum += m + math.Log(s) - float64(row[e.Label])
	}
	return sum / float64(len(held)), nil
}

// top returns the GoMLX model of stage: the backbone with the PEFT rewrite of G_1..G_stage, cut at the
// input of G_stage's lowest block.
func (s *ShardTrainer) top(stage int) (*Model, error) {
	if m, ok := s.tops[stage]; ok {
		return m, nil
	}
	spliced, err := s.cfg.Backbone.Splice(s.adapters[stage-1].Splices...)
	if err != nil {
		return nil, err
	}
	_, top, err := spliced.Cut(s.edges[stage-1])
	if err != nil {
		return nil, err
	}
	m, err := s.engine.Import(top)
	if err != nil {
		return nil, err
	}
	s.tops[stage] = m
	return m, nil
}

// activations returns the examples' activations at edge, from the cache, computing the missing
// ones with ONNX Runtime (all edges at once) and caching them.
func (s *ShardTrainer) activations(ctx context.Context, edge string, examples []Example) (ort.Tensor, error) {
	var missing []Example
	for _, e := range examples {
		if _, ok := s.cfg.Cache.Get(e.ID, edge); !ok {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		out, err := s.run(ctx, missing)
		if err != nil {
			return ort.Tensor{}, err
		}
		for _, name := range s.edges {
			v, _ := ort.Values[float32](out[name])
			row := len(v) / len(missing)
			for j, e := range missing {
				s.cfg.Cache.Put(e.ID, name, slices.Clone(v[j*row:(j+1)*row]))
			}
		}
	}
	shape := s.edgeRows[edge]
	row := 1
	for _, d := range shape {
		row *= int(d)
	}
	data := make([]float32, 0, len(examples)*row)
	for _, e := range examples {
		v, ok := s.cfg.Cache.Get(e.ID, edge)
		if !ok || len(v) != row {
			return ort.Tensor{}, fmt.Errorf("%w: activation of %q at %q missing from the cache", ErrInvalidArgument, e.ID, edge)
		}
		data = append(data, v...)
	}
	return ort.NewTensor(data, append([]int64{int64(len(examples))}, shape...)...), nil
}

// compute runs the trunk on the examples and returns their activations at edge, uncached.
func (s *ShardTrainer) compute(ctx context.Context, edge string, examples []Example) (ort.Tensor, error) {
	out, err := s.run(ctx, examples)
	if err != nil {
		return ort.Tensor{}, err
	}
	return out[edge], nil
}

// run computes every edge's activations for the examples with ONNX Runtime.
func (s *ShardTrainer) run(ctx context.Context, examples []Example) (map[string]ort.Tensor, error) {
	px := make([]float32, 0, len(examples)*s.rowSize)
	for _, e := range examples {
		if len(e.Input) != s.rowSize {
			return nil, fmt.Errorf("%w: sample %q has %d input values, want %d", ErrInvalidArgument, e.ID, len(e.Input), s.rowSize)
		}
		px = append(px, e.Input...)
	}
	shape := append([]int64{int64(len(examples))}, s.input.Shape.Sizes()[1:]...)
	out, err := s.trunk.RunBatched(ctx, map[string]ort.Tensor{s.input.Name: ort.NewTensor(px, shape...)}, 256)
	if err != nil {
		return nil, fmt.Errorf("trunk activations: %w", err)
	}
	for _, name := range s.edges {
		if _, ok := s.edgeRows[name]; !ok {
			s.edgeRows[name] = slices.Clone(out[name].Shape[1:])
		}
	}
	if err := s.finite(out, examples); err != nil {
		return nil, err
	}
	return out, nil
}

// finite returns an ErrInvalidArgument naming the examples whose activations at an edge are
// not all finite: finite inputs near float32's limit overflow the frozen layers, and training
// on them diverged after its first step, which read as too high a learning rate. Only
// deleting such samples makes the shard trainable again.
func (s *ShardTrainer) finite(out map[string]ort.Tensor, examples []Example) error {
	notFinite := func(f float32) bool { return math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) }
	seen := make([]bool, len(examples))
	for _, name := range s.edges {
		v, err := ort.Values[float32](out[name])
		if err != nil {
			return fmt.Errorf("trunk activations at %q: %w", name, err)
		}
		row := len(v) / len(examples)
		for j := range examples {
			if !seen[j] && slices.ContainsFunc(v[j*row:(j+1)*row], notFinite) {
				seen[j] = true
			}
		}
	}
	var bad []string
	for j, e := range examples {
		if seen[j] {
			bad = append(bad, strconv.Quote(e.ID))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	more := ""
	if len(bad) > 10 {
		bad, more = bad[:10], fmt.Sprintf(" and %d more", len(bad)-10)
	}
	return fmt.Errorf("%w: the frozen backbone gives values that are not finite for sample(s) %s%s (input values too large for it): delete them and train again",
		ErrInvalidArgument, strings.Join(bad, ", "), more)
}

// Purge removes a deleted sample's activations from the cache and reports how many it removed.
func (s *ShardTrainer) Purge(id string) int { return s.cfg.Cache.Purge(id) }
