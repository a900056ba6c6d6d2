package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/dataset"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

// modelFileName is the model description `s3t train` writes under --out and `s3t eval` reads.
const modelFileName = "model.json"

// modelSchema is the version of model.json's schema.
const modelSchema = 1

// modelConfig is everything that determines a trained S3T model: two runs with the same config
// produce the same checkpoints.
type modelConfig struct {
	Schema         int                 `json:"schema"`
	Backbone       string              `json:"backbone"` // path, "" for the committed ViT
	BackboneSHA256 string              `json:"backbone_sha256"`
	Data           string              `json:"data"`
	TestSize       int                 `json:"test_size"`
	TrainLimit     int                 `json:"train_limit"`
	Shards         int                 `json:"shards"`
	Slices         int                 `json:"slices"`
	Budget         int                 `json:"budget"`
	Selector       string              `json:"selector"`
	PEFT           adapters.PEFTConfig `json:"peft"`
	HeadInput      string              `json:"head_input"`
	Epochs         int                 `json:"epochs"`
	LearningRate   float64             `json:"learning_rate"`
	Schedule       string              `json:"schedule"`
	WeightDecay    float64             `json:"weight_decay"`
	BatchSize      int                 `json:"batch_size"`
	MicroBatches   int                 `json:"micro_batches"`
	HoldOut        float64             `json:"hold_out"`
	Patience       int                 `json:"patience"`
	Seed           uint64              `json:"seed"`
}

// modelFile is model.json: the config, the sequences of every shard and the sample placements.
type modelFile struct {
	modelConfig
	// Sequences holds each shard's B sequences.
	Sequences [][][]int `json:"sequences"`
	// Units holds the sample ids of each (shard, slice): Units[shard][slice].
	Units [][][]string `json:"units"`
	// Plan is the PEFT plugin's plan for the backbone (PEFT.Type names the plugin, PEFT.Config
	// its config); stored so that eval and resumed training use it without the plugin.
	Plan *sdk.PlanResponse `json:"plan,omitempty"`
}

// trainData is a labelled data set split into training samples (with ids) and a test set.
type trainData struct {
	train      []adapters.Example
	testX      []float32
	testY      []int
	inputShape []int64 // one example's shape
}

// testSplitSeed fixes the MNIST test split, independent of the training seed, so that models
// trained with different seeds are evaluated on the same images.
const testSplitSeed = 0x5337

// loadTrainData loads a data set by name. MNIST (10,000 digits) is split by a fixed seeded
// permutation: the first testSize images are the test set, the rest the training set;
// Fashion-MNIST uses its own splits. trainLimit > 0 keeps that many training samples.
func loadTrainData(name string, testSize, trainLimit int) (*trainData, error) {
	var train, test *dataset.Set
	var trainIdx, testIdx []int
	switch name {
	case "mnist":
		set, err := dataset.LoadMNIST("")
		if err != nil {
			return nil, err
		}
		if testSize < 0 || testSize >= set.Len() {
			return nil, fmt.Errorf("%w: --test-size %d for %d images", errUsage, testSize, set.Len())
		}
		perm := rand.New(rand.NewPCG(testSplitSeed, 1)).Perm(set.Len())
		train, test = set, set
		testIdx, trainIdx = perm[:testSize], perm[testSize:]
	case "fashion-mnist":
		var err error
		if train, err = dataset.LoadFashionMNIST("", dataset.Train); err != nil {
			return nil, err
		}
		if test, err = dataset.LoadFashionMNIST("", dataset.Test); err != nil {
			return nil, err
		}
		trainIdx = rand.New(rand.NewPCG(testSplitSeed, 1)).Perm(train.Len())
		testIdx = rand.New(rand.NewPCG(testSplitSeed, 2)).Perm(test.Len())[:min(testSize, test.Len())]
	default:
		return nil, fmt.Errorf("%w: --data %q (want mnist or fashion-mnist)", errUsage, name)
	}
	if trainLimit > 0 && trainLimit < len(trainIdx) {
		trainIdx = trainIdx[:trainLimit]
	}
	d := &trainData{inputShape: []int64{dataset.Channels, dataset.Height, dataset.Width}}
	for _, j := range trainIdx {
		d.train = append(d.train, adapters.Example{ID: fmt.Sprintf("%s-%05d", name, j), Input: train.Image(j), Label: train.Labels[j]})
	}
	for _, j := range testIdx {
		d.testX = append(d.testX, test.Image(j)...)
		d.testY = append(d.testY, test.Labels[j])
	}
	return d, nil
}

// loadBackbone loads the backbone at path (the committed ViT when path is "") and detects its
// manifest.
func loadBackbone(path string) (*backbone.Model, *backbone.Manifest, string, error) {
	var m *backbone.Model
	var err error
	if path == "" {
		m, err = backbone.LoadBytes(assets.ViTFashionMNIST())
	} else {
		m, err = backbone.LoadFile(path)
	}
	if err != nil {
		return nil, nil, "", err
	}
	man, err := backbone.DetectManifest(m)
	if err != nil {
		return nil, nil, "", err
	}
	b, err := m.Bytes()
	if err != nil {
		return nil, nil, "", err
	}
	return m, man, fmt.Sprintf("%x", sha256.Sum256(b)), nil
}

// assignmentKey derives the Assigner's key from the seed, so that a model's placements can be
// reproduced from its config.
func assignmentKey(seed uint64) []byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "s3t train assignment key %d", seed))
	return sum[:unlearning.KeySize]
}

func newTrainCmd() *cobra.Command {
	var (
		cfg        modelConfig
		out        string
		rank       int
		alpha      float64
		targets    string
		peftConfig string
		pluginData string
		threads    int
		progress   bool
	)
	c := &cobra.Command{
		Use:   "train",
		Short: "Train an S3T model: m shards x B sequences x L stages of a PEFT type on a frozen backbone",
		Long: `Train an S3T model (METHOD.md) from the command line. The training samples are placed on
--shards x --slices (shard, slice) units by a keyed hash; each shard gets --budget sequences of its
slices from the selector; each sequence trains L stages top-down, stage i training the LoRA of
block group G_i and the head (drawn at stage 1, then going on from the stage before) on slices
sigma(1..i), from trunk activations computed once by ONNX Runtime.

The PEFT type is a plugin (--peft lora, prefix, adapter, or an installed plugin's name) with its
config as a JSON object (--peft-config; --rank, --alpha and --targets are shorthands for LoRA's).
Its plan is made once, before training, and stored in model.json: without --plugin-data the
built-in's Plan runs in this process; with it, the plugin host runs the plugin out of process
(built-ins and plugins installed in that data directory) and caches the plan there. Every
PEFT type then trains through the same code. Every stage's checkpoint is written under --out as soon as it is done: running the
same command again resumes, skipping finished stages and redoing an interrupted one.

A plain LoRA fine-tune is --shards 1 --slices 1 --budget 1.`,
		Example: `  s3t train --data mnist --shards 2 --slices 4 --budget 2 --peft lora --epochs 2 --out runs/s3t
  s3t train --peft prefix --peft-config '{"tokens": 4}' --out runs/prefix
  s3t train --peft adapter --plugin-data s3t-data --out runs/adapter
  s3t eval --model runs/s3t --delete-first-slices`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("%w: --out is required", errUsage)
			}
			if cfg.Shards < 1 || cfg.Slices < 1 || cfg.Budget < 1 || cfg.Epochs < 1 || cfg.BatchSize < 1 {
				return fmt.Errorf("%w: --shards, --slices, --budget, --epochs and --batch must be >= 1", errUsage)
			}
			if _, err := adapters.ParseScheduleKind(cfg.Schedule); err != nil {
				return fmt.Errorf("%w: --schedule: %w", errUsage, err)
			}
			cfg.Schema = modelSchema
			cfg.PEFT.Type = plugins.QualifiedName(sdk.KindPEFT, cfg.PEFT.Type)
			// The LoRA shorthands count only when given.
			fl := c.Flags()
			if !fl.Changed("rank") {
				rank = 0
			}
			if !fl.Changed("alpha") {
				alpha = 0
			}
			var roles []string
			if fl.Changed("targets") {
				for _, t := range strings.Split(targets, ",") {
					if t = strings.TrimSpace(t); t != "" {
						roles = append(roles, t)
					}
				}
			}
			config, err := loraFlagsConfig(json.RawMessage(peftConfig), rank, alpha, roles)
			if err != nil {
				return err
			}
			cfg.PEFT.Config = config
			return runTrain(c.Context(), c.ErrOrStderr(), c.OutOrStdout(), cfg, out, pluginData, threads, progress)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Backbone, "backbone", "", "ONNX backbone file (default: the committed ViT, assets/vit-fmnist.onnx)")
	f.StringVar(&cfg.Data, "data", "mnist", "data set: mnist or fashion-mnist")
	f.IntVar(&cfg.TestSize, "test-size", 2000, "images held out as the test set (mnist)")
	f.IntVar(&cfg.TrainLimit, "train-limit", 0, "train on at most this many samples (0: all)")
	f.IntVar(&cfg.Shards, "shards", 2, "m, the number of shards")
	f.IntVar(&cfg.Slices, "slices", 4, "L, the number of slices per shard (and of stages and block groups)")
	f.IntVar(&cfg.Budget, "budget", 2, "B, the number of sequences per shard")
	f.StringVar(&cfg.Selector, "selector", "cyclic", "sequence selector: "+strings.Join(unlearning.SelectorNames, ", "))
	f.StringVar(&cfg.PEFT.Type, "peft", "lora", "PEFT type: lora, prefix, adapter, or a plugin's name (peft.NAME)")
	f.StringVar(&peftConfig, "peft-config", "", "the PEFT plugin's config as a JSON object (default: the plugin's defaults)")
	f.StringVar(&pluginData, "plugin-data", "", "plan the PEFT type and run the selector through the plugin host over this data directory (out of process, plans cached; installed plugins too); default: the built-ins in process")
	f.IntVar(&rank, "rank", 8, "LoRA shorthand: rank (sets the config's rank)")
	f.Float64Var(&alpha, "alpha", 0, "LoRA shorthand: alpha (default 2 x rank when --rank is given)")
	f.StringVar(&targets, "targets", "query,value", "LoRA shorthand: comma-separated weight roles adapted in each block")
	f.StringVar(&cfg.HeadInput, "head-input", "features", "backbone output the linear head reads, [batch, features]")
	f.IntVar(&cfg.Epochs, "epochs", 1, "epochs per stage")
	f.Float64Var(&cfg.LearningRate, "lr", 1e-2, "learning rate (AdamW)")
	f.StringVar(&cfg.Schedule, "schedule", "constant", "learning-rate schedule per stage: constant or cosine")
	f.Float64Var(&cfg.WeightDecay, "weight-decay", 0, "AdamW weight decay")
	f.IntVar(&cfg.BatchSize, "batch", 64, "batch size")
	f.IntVar(&cfg.MicroBatches, "micro-batches", 2, "concurrent micro-batches per step (part of the result; keep fixed)")
	f.Float64Var(&cfg.HoldOut, "hold-out", 0, "fraction of each stage's own samples held out for early stopping (0: off)")
	f.IntVar(&cfg.Patience, "patience", 1, "early stopping: epochs without improvement before stopping")
	f.Uint64Var(&cfg.Seed, "seed", 1, "model seed (assignment, initialisation, shuffling)")
	f.StringVar(&out, "out", "", "output folder for model.json and the checkpoints (required)")
	f.IntVar(&threads, "threads", 0, "GOMAXPROCS for training (0: all cores)")
	f.BoolVar(&progress, "progress", true, "show a progress bar on stderr")
	return c
}

// runTrain trains every shard of a model and writes it under out.
func runTrain(ctx context.Context, stderr, stdout io.Writer, cfg modelConfig, out, pluginData string, threads int, showProgress bool) error {
	if threads > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
	}
	start := time.Now()
	m, man, sha, err := loadBackbone(cfg.Backbone)
	if err != nil {
		return err
	}
	cfg.BackboneSHA256 = sha
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	host, closeHost, err := openHost(pluginData, logger) // one host for the plan and the selection
	if err != nil {
		return err
	}
	defer closeHost() // (closing twice is harmless)
	plan, err := planPEFT(ctx, cfg.PEFT.Type, cfg.PEFT.Config, m, man, host)
	if err != nil {
		return err
	}
	cfg.PEFT.Config = plan.Config // the config merged over the plugin's defaults
	data, err := loadTrainData(cfg.Data, cfg.TestSize, cfg.TrainLimit)
	if err != nil {
		return err
	}
	mf, err := planModel(ctx, cfg, data, host)
	if err != nil {
		return err
	}
	closeHost() // its plugin processes have nothing more to do while the model trains
	mf.Plan = plan
	if err := writeModelFile(out, mf); err != nil {
		return err
	}
	byID := make(map[string]adapters.Example, len(data.train))
	for _, e := range data.train {
		byID[e.ID] = e
	}
	eng, err := adapters.NewEngine()
	if err != nil {
		return err
	}
	sched, _ := adapters.ParseScheduleKind(cfg.Schedule)
	bar := newProgressBar(stderr, showProgress)
	st, err := eng.NewShardTrainer(adapters.ShardConfig{
		Backbone: m, Manifest: man,
		PEFT:          peftOf(mf),
		Slices:        cfg.Slices,
		Head:          adapters.Head{Input: cfg.HeadInput, Classes: dataset.Classes},
		Epochs:        cfg.Epochs,
		Optimizer:     adapters.AdamW{LearningRate: cfg.LearningRate, WeightDecay: cfg.WeightDecay},
		Schedule:      adapters.Schedule{Kind: sched},
		BatchSize:     cfg.BatchSize,
		MicroBatches:  cfg.MicroBatches,
		EarlyStopping: adapters.EarlyStopping{HoldOut: cfg.HoldOut, Patience: cfg.Patience},
		Seed:          cfg.Seed,
		Dir:           out,
		Progress:      bar.step,
		StageDone:     bar.stageDone,
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	// The bar's total: every stage's steps.
	shards := make([][][]adapters.Example, cfg.Shards)
	for k := range cfg.Shards {
		shards[k] = make([][]adapters.Example, cfg.Slices)
		for j, ids := range mf.Units[k] {
			for _, id := range ids {
				shards[k][j] = append(shards[k][j], byID[id])
			}
		}
		for _, seq := range mf.Sequences[k] {
			n := 0
			for i, j := range seq {
				n += len(shards[k][j])
				bar.addStage(i+1, st.StageSteps(n))
			}
		}
	}
	bar.start = time.Now()
	for k := range cfg.Shards {
		if _, err := st.TrainShard(ctx, k, mf.Sequences[k], shards[k]); err != nil {
			bar.finish()
			if ctx.Err() != nil {
				return fmt.Errorf("train: interrupted (%v): the finished stages are in %s; the same command resumes after them: %w", context.Cause(ctx), out, err)
			}
			return err
		}
	}
	bar.finish()
	fmt.Fprintf(stdout, "trained %s: %d shards x %d sequences x %d stages on %d samples in %s (%d steps trained, %d stages loaded); peak memory %s\n",
		cfg.PEFT.Type, cfg.Shards, cfg.Budget, cfg.Slices, len(data.train), time.Since(start).Round(time.Second), bar.trained, bar.loaded, humanBytes(peakRSS()))
	fmt.Fprintf(stdout, "model written to %s; evaluate with: s3t eval --model %s\n", out, out)
	return nil
}

// planModel places the samples on (shard, slice) units and selects each shard's sequences.
func planModel(ctx context.Context, cfg modelConfig, data *trainData, host *plugins.Manager) (*modelFile, error) {
	asg, err := unlearning.NewAssigner(assignmentKey(cfg.Seed), cfg.Shards, cfg.Slices, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	mf := &modelFile{modelConfig: cfg, Units: make([][][]string, cfg.Shards), Sequences: make([][][]int, cfg.Shards)}
	for k := range mf.Units {
		mf.Units[k] = make([][]string, cfg.Slices)
	}
	for _, e := range data.train {
		p := asg.Place(e.ID)
		mf.Units[p.Shard][p.Slice] = append(mf.Units[p.Shard][p.Slice], e.ID)
	}
	sel, err := openSelector(cfg.Selector, host)
	if err != nil {
		return nil, err
	}
	for k := range cfg.Shards {
		seqs, err := unlearning.Select(ctx, sel, &sdk.SelectRequest{Slices: cfg.Slices, Budget: cfg.Budget, Seed: int64(cfg.Seed) + int64(k)})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		mf.Sequences[k] = seqs
	}
	return mf, nil
}

// writeModelFile writes model.json, refusing to overwrite a different model's.
func writeModelFile(dir string, mf *modelFile) error {
	path := filepath.Join(dir, modelFileName)
	if old, err := readModelFile(dir); err == nil {
		// Compared as compact JSON: model.json is indented, raw JSON configs included.
		ob, oerr := json.Marshal(old)
		nb, nerr := json.Marshal(mf)
		if oerr != nil || nerr != nil || !bytes.Equal(ob, nb) {
			return fmt.Errorf("%w: %s holds another model (other options or data); use a new --out", errUsage, dir)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(mf, "", " ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readModelFile reads model.json from dir.
func readModelFile(dir string) (*modelFile, error) {
	b, err := os.ReadFile(filepath.Join(dir, modelFileName))
	if err != nil {
		return nil, err
	}
	var mf modelFile
	if err := json.Unmarshal(b, &mf); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, modelFileName), err)
	}
	if mf.Schema != modelSchema {
		return nil, fmt.Errorf("%s: schema %d, want %d", filepath.Join(dir, modelFileName), mf.Schema, modelSchema)
	}
	return &mf, nil
}

// progressBar draws training progress on stderr: steps, loss, examples/s and ETA. A step of
// stage i runs i block groups in GoMLX, so the ETA weighs each step by its stage.
type progressBar struct {
	line        *statusLine
	on          bool
	mu          sync.Mutex
	total       int // steps
	done        int
	trained     int
	loaded      int
	work        int // steps weighted by stage
	workDone    int
	workRunDone int // work trained in this run
	start       time.Time
	last        time.Time
	stage       adapters.StageProgress
}

func (b *progressBar) addStage(stage, steps int) {
	b.total += steps
	b.work += stage * steps
}

func newProgressBar(w io.Writer, on bool) *progressBar {
	return &progressBar{line: newStatusLine(w), on: on}
}

func (b *progressBar) step(p adapters.StageProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done++
	b.trained++
	b.workDone += p.Stage
	b.workRunDone += p.Stage
	b.stage = p
	if time.Since(b.last) >= 200*time.Millisecond {
		b.draw()
	}
}

func (b *progressBar) stageDone(c *adapters.Checkpoint, trained bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := c.Manifest
	if !trained {
		b.loaded++
		b.done += m.Steps
		b.workDone += m.Steps * m.Stage
	}
	if b.on {
		verb := "trained"
		if !trained {
			verb = "loaded "
		}
		loss := 0.0
		if len(m.EpochLosses) > 0 {
			loss = m.EpochLosses[len(m.EpochLosses)-1]
		}
		b.line.print(fmt.Sprintf("%s C[shard %d, seq %d, stage %d]  slices %v  %d samples  %d steps  loss %.4f",
			verb, m.Shard, m.Sequence, m.Stage, m.Slices, m.Samples, m.Steps, loss))
		b.draw()
	}
}

func (b *progressBar) draw() {
	if !b.on || b.total == 0 {
		return
	}
	b.last = time.Now()
	frac := min(1, float64(b.done)/float64(b.total))
	const width = 24
	n := int(frac * width)
	eta := "?"
	if el := time.Since(b.start); b.workRunDone > 0 && b.workDone < b.work {
		perUnit := el / time.Duration(b.workRunDone)
		eta = (perUnit * time.Duration(b.work-b.workDone)).Round(time.Second).String()
	}
	p := b.stage
	b.line.set(fmt.Sprintf("[%s%s] %d/%d steps  shard %d seq %d stage %d  loss %.4f  %.0f ex/s  ETA %s",
		strings.Repeat("=", n), strings.Repeat(" ", width-n), b.done, b.total, p.Shard, p.Sequence, p.Stage, p.Loss, p.ExamplesPerSecond, eta))
}

func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		b.draw()
		b.line.end()
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes, or 0 where
// /proc/self/status is not available.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}
