package adapters

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/s3t-dev/s3t/backbone/ort"
)

// CheckpointSchema is the version of the checkpoint manifest's JSON schema.
const CheckpointSchema = 1

// Files of a checkpoint folder.
const (
	// CheckpointManifestFile is the checkpoint's JSON manifest, written last: a folder without it
	// holds an unfinished checkpoint.
	CheckpointManifestFile = "checkpoint.json"
	// CheckpointParamsFile holds the parameters as safetensors.
	CheckpointParamsFile = "params.safetensors"
)

// PEFTConfig names a PEFT type and its configuration, as checkpoints record it.
type PEFTConfig struct {
	// Type is the PEFT type: "lora" for the local LoRA, or a plugin's name, e.g. "peft.prefix".
	Type string `json:"type"`
	// Rank and Alpha configure LoRA.
	Rank  int     `json:"rank,omitempty"`
	Alpha float64 `json:"alpha,omitempty"`
	// Targets are the adapted weight roles in each block.
	Targets []string `json:"targets,omitempty"`
	// Config is a plugin's config, as its plan returned it (merged over its defaults).
	Config json.RawMessage `json:"config,omitempty"`
}

// TrainingRecord is the training configuration of a stage, as its checkpoint records it.
type TrainingRecord struct {
	Epochs       int     `json:"epochs"`
	BatchSize    int     `json:"batch_size"`
	MicroBatches int     `json:"micro_batches"`
	LearningRate float64 `json:"learning_rate"`
	WeightDecay  float64 `json:"weight_decay"`
	Schedule     string  `json:"schedule"`
	Warmup       int     `json:"warmup,omitempty"`
	HoldOut      float64 `json:"hold_out,omitempty"`
	Patience     int     `json:"patience,omitempty"`
	HeadInput    string  `json:"head_input"`
	Classes      int     `json:"classes"`
	ModelSeed    uint64  `json:"model_seed"`
	// HeadCarried says that the head of stage i > 1 started from stage i-1's (as METHOD.md
	// trains it) rather than from a fresh draw, as checkpoints made before it was recorded did:
	// such a checkpoint is not taken for a stage of this configuration, so a resumed sequence
	// never mixes the two.
	HeadCarried bool `json:"head_carried"`
}

// CheckpointManifest describes a checkpoint C[shard, sequence, stage]: what produced it and which
// data it saw. Everything but the Result fields is known before training, so a finished
// checkpoint can be checked against the configuration that would produce it again.
type CheckpointManifest struct {
	// Schema is CheckpointSchema.
	Schema int `json:"schema"`
	// PEFT is the PEFT type and configuration.
	PEFT PEFTConfig `json:"peft"`
	// Backbone is the SHA-256 of the backbone's ONNX bytes, hex.
	Backbone string `json:"backbone_sha256"`
	// Shard, Sequence and Stage locate the checkpoint; Stage counts from 1.
	Shard    int `json:"shard"`
	Sequence int `json:"sequence"`
	Stage    int `json:"stage"`
	// Slices are the slices it was trained on: the sequence's prefix sigma(1..Stage).
	Slices []int `json:"slices"`
	// Groups are the block groups G_1..G_Stage (manifest block indices) whose PEFT parameters it holds.
	Groups [][]int `json:"groups"`
	// Samples is the number of samples in Slices; HeldOut of them were held out for early stopping.
	Samples int `json:"samples"`
	HeldOut int `json:"held_out,omitempty"`
	// SamplesDigest is the SHA-256 of the slices' sample ids and labels, hex.
	SamplesDigest string `json:"samples_digest"`
	// Owner is what the stage was trained for (ShardConfig.Owner; a server's model: its name
	// and creation time), when given.
	Owner string `json:"owner,omitempty"`
	// Seed is the stage's seed, derived from the model seed, shard, sequence and stage.
	Seed uint64 `json:"seed"`
	// Training is the training configuration.
	Training TrainingRecord `json:"training"`
	// Targets maps each PEFT parameter to the framework name of the weight it adapts.
	Targets map[string]string `json:"targets"`

	// Result fields.
	// Steps is the number of optimizer steps; EpochLosses the mean training loss of each epoch;
	// BestEpoch the epoch kept by early stopping (from 0; -1 without).
	Steps       int       `json:"steps"`
	EpochLosses []float64 `json:"epoch_losses"`
	BestEpoch   int       `json:"best_epoch"`
	// ParamsSHA256 is the SHA-256 of the parameters file, hex.
	ParamsSHA256 string `json:"params_sha256"`
}

// key returns the manifest's configuration part, for comparing a checkpoint on disk with the one
// a configuration would produce.
func (m CheckpointManifest) key() string {
	m.Steps, m.EpochLosses, m.BestEpoch, m.ParamsSHA256 = 0, nil, 0, ""
	b, _ := json.Marshal(m)
	return string(b)
}

// Checkpoint is C[shard, sequence, stage]: the PEFT parameters of groups G_1..G_stage and the
// stage's head (HeadWeight, HeadBias).
type Checkpoint struct {
	Manifest CheckpointManifest
	Params   map[string]ort.Tensor
}

// PEFTParams returns the checkpoint's PEFT parameters (without the head).
func (c *Checkpoint) PEFTParams() map[string]ort.Tensor {
	out := maps.Clone(c.Params)
	delete(out, HeadWeight)
	delete(out, HeadBias)
	return out
}

// CheckpointDir returns the folder of C[shard, sequence, stage] under root.
func CheckpointDir(root string, shard, sequence, stage int) string {
	return filepath.Join(root, fmt.Sprintf("shard-%d", shard), fmt.Sprintf("seq-%d", sequence), fmt.Sprintf("stage-%d", stage))
}

// SaveCheckpoint writes c into dir: the parameters first, then the manifest (atomically), so
// that an interrupted save leaves no manifest and the stage counts as unfinished.
func SaveCheckpoint(dir string, c *Checkpoint) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	// A stale manifest must not vouch for new parameters.
	if err := os.Remove(filepath.Join(dir, CheckpointManifestFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, c.Params, map[string]string{"format": "pt", "s3t_schema": fmt.Sprint(CheckpointSchema)}); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	c.Manifest.ParamsSHA256 = hex.EncodeToString(sum[:])
	if err := writeFileAtomic(filepath.Join(dir, CheckpointParamsFile), buf.Bytes()); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	m, err := json.MarshalIndent(c.Manifest, "", "  ")
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CheckpointManifestFile), append(m, '\n')); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

// LoadCheckpoint reads the checkpoint in dir. A missing manifest (an unfinished or absent
// checkpoint) gives an error wrapping fs.ErrNotExist; an unreadable or inconsistent one wraps
// ErrCorrupt.
func LoadCheckpoint(dir string) (*Checkpoint, error) {
	mb, err := os.ReadFile(filepath.Join(dir, CheckpointManifestFile))
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(mb, &c.Manifest); err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w: manifest: %v", dir, ErrCorrupt, err)
	}
	if c.Manifest.Schema != CheckpointSchema {
		return nil, fmt.Errorf("load checkpoint %s: %w: schema %d, want %d", dir, ErrCorrupt, c.Manifest.Schema, CheckpointSchema)
	}
	pb, err := os.ReadFile(filepath.Join(dir, CheckpointParamsFile))
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w: %w", dir, ErrCorrupt, err)
	}
	if sum := sha256.Sum256(pb); hex.EncodeToString(sum[:]) != c.Manifest.ParamsSHA256 {
		return nil, fmt.Errorf("load checkpoint %s: %w: parameters file does not match its SHA-256", dir, ErrCorrupt)
	}
	if c.Params, _, err = ReadSafetensors(pb); err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w", dir, err)
	}
	for _, name := range slices.Concat(slices.Collect(maps.Keys(c.Manifest.Targets)), []string{HeadWeight, HeadBias}) {
		if _, ok := c.Params[name]; !ok {
			return nil, fmt.Errorf("load checkpoint %s: %w: parameter %q missing", dir, ErrCorrupt, name)
		}
	}
	return &c, nil
}

// HFClassifier is the module name the task head gets in a Hugging Face PEFT export
// (modules_to_save), as in transformers' image-classification models.
const HFClassifier = "classifier"

// ExportPEFT writes one checkpoint (one live prefix) into dir in the Hugging Face PEFT layout:
// adapter_config.json and adapter_model.safetensors with keys
// base_model.model.<module>.lora_A.weight / lora_B.weight, where <module> is the adapted weight's
// framework name without ".weight", and the head as base_model.model.classifier.weight / .bias
// (listed in modules_to_save). Only LoRA checkpoints (the local "lora" or the plugin "peft.lora")
// can be exported; ExportRaw exports any type.
func ExportPEFT(dir string, c *Checkpoint) error {
	m := c.Manifest
	switch m.PEFT.Type {
	case "lora":
	case "peft.lora":
		// The plugin's config holds rank and alpha.
		var lc struct {
			Rank        int            `json:"rank"`
			Alpha       float64        `json:"alpha"`
			RankPattern map[string]int `json:"rank_pattern"`
		}
		if err := json.Unmarshal(m.PEFT.Config, &lc); err != nil {
			return fmt.Errorf("export peft: %w: peft.lora config: %v", ErrInvalidArgument, err)
		}
		if len(lc.RankPattern) > 0 {
			return fmt.Errorf("export peft: %w: a peft.lora rank pattern has no export yet (use ExportRaw)", ErrInvalidArgument)
		}
		m.PEFT.Rank, m.PEFT.Alpha = lc.Rank, lc.Alpha
	default:
		return fmt.Errorf("export peft: %w: PEFT type %q has no Hugging Face PEFT layout (only lora; use ExportRaw)", ErrInvalidArgument, m.PEFT.Type)
	}
	out := map[string]ort.Tensor{}
	modules := map[string]bool{}
	var layers []int
	for _, g := range m.Groups {
		layers = append(layers, g...)
	}
	slices.Sort(layers)
	for name, target := range m.Targets {
		module := strings.TrimSuffix(target, ".weight")
		if module == "" || module == target {
			return fmt.Errorf("export peft: %w: parameter %q adapts %q, not a .weight", ErrInvalidArgument, name, target)
		}
		var key string
		switch {
		case strings.HasSuffix(name, "/A"):
			key = "base_model.model." + module + ".lora_A.weight"
		case strings.HasSuffix(name, "/B"):
			key = "base_model.model." + module + ".lora_B.weight"
		default:
			return fmt.Errorf("export peft: %w: parameter %q is not a LoRA A or B", ErrInvalidArgument, name)
		}
		out[key] = c.Params[name]
		parts := strings.Split(module, ".")
		modules[parts[len(parts)-1]] = true
	}
	out["base_model.model."+HFClassifier+".weight"] = c.Params[HeadWeight]
	out["base_model.model."+HFClassifier+".bias"] = c.Params[HeadBias]
	cfg := map[string]any{
		"peft_type":               "LORA",
		"task_type":               nil,
		"r":                       m.PEFT.Rank,
		"lora_alpha":              m.PEFT.Alpha,
		"lora_dropout":            0.0,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"target_modules":          slices.Sorted(maps.Keys(modules)),
		"layers_to_transform":     layers,
		"modules_to_save":         []string{HFClassifier},
		"base_model_name_or_path": "",
		"revision":                nil,
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export peft: %w", err)
	}
	cb, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("export peft: %w", err)
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, out, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export peft: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "adapter_model.safetensors"), buf.Bytes()); err != nil {
		return fmt.Errorf("export peft: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "adapter_config.json"), append(cb, '\n')); err != nil {
		return fmt.Errorf("export peft: %w", err)
	}
	return nil
}

// Export writes one checkpoint into dir: in the Hugging Face PEFT layout (ExportPEFT) for LoRA,
// the one type that has it, else (and for a LoRA with a rank pattern) as ExportRaw.
func Export(dir string, c *Checkpoint) error {
	if t := c.Manifest.PEFT.Type; t == "lora" || t == "peft.lora" {
		err := ExportPEFT(dir, c)
		if err == nil || !errors.Is(err, ErrInvalidArgument) || t == "lora" {
			return err
		}
	}
	return ExportRaw(dir, c)
}

// ExportRaw writes one checkpoint of any PEFT type into dir as adapter_model.safetensors (the
// parameters under their names in the spliced model, plus the head) and checkpoint.json (its
// manifest, which names the plugin and its config).
func ExportRaw(dir string, c *Checkpoint) error {
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, c.Params, map[string]string{"format": "pt", "peft_type": c.Manifest.PEFT.Type}); err != nil {
		return fmt.Errorf("export raw: %w", err)
	}
	m, err := json.MarshalIndent(c.Manifest, "", "  ")
	if err != nil {
		return fmt.Errorf("export raw: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export raw: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "adapter_model.safetensors"), buf.Bytes()); err != nil {
		return fmt.Errorf("export raw: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CheckpointManifestFile), append(m, '\n')); err != nil {
		return fmt.Errorf("export raw: %w", err)
	}
	return nil
}
