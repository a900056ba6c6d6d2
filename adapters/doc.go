// Package adapters holds PEFT parameter sets and the GoMLX engine that trains them: per-stage
// checkpoints, their storage format (safetensors, exportable in the Hugging Face PEFT layout) and
// the trainer of one stage. It is the only package of s3t that imports GoMLX.
//
// # The engine
//
// A PEFT type is an ONNX subgraph spliced into the frozen backbone (backbone.Model.Splice), its
// parameters graph inputs with default "off" values. ONNX Runtime serves that spliced graph;
// Engine.Import converts the same graph into GoMLX with onnx-gomlx, and a Trainer trains the
// chosen parameters (and a linear task head) with everything else frozen: one artifact, two
// engines, no hand-copied math.
//
// A PEFTType gives the splices and parameters (an Adapter) of any set of blocks. Planned is the
// one for every plugin: it takes a plan (sdk.PEFT.Plan, for example from plugins.Manager) and
// returns its rewrites of the requested blocks, each parameter named as backbone.SplicePlan
// names it and initialised by its sdk.Init from sdk.SeedFor(stage seed, name). LoRA is the older
// local LoRA, kept for benchmarks and model files written before plugins.
// The trainer, the ShardTrainer and the Predictor see only the PEFTType, so LoRA, prefix tuning,
// bottleneck adapters and third-party types train and serve through one code path. Plans' dropout
// hints are not implemented and a non-zero rate is refused. CheckTrainable is the trainer's part
// of the plugin conformance suite (sdktest.WithTrainCheck).
//
// Training usually runs on the part of the backbone above the lowest trainable block
// (backbone.Model.Cut): ONNX Runtime computes the trunk's activations once, and GoMLX trains from
// them.
//
// # S3T training
//
// A ShardTrainer (Engine.NewShardTrainer) trains one model's shards as METHOD.md says: the
// backbone's blocks form L groups counted from the top (Groups); for each of a shard's B sequences,
// stage i trains the PEFT parameters of group G_i and the head on the cumulative slices
// sigma(1..i), with G_1..G_(i-1) fixed at the values of stage i-1 and lower groups off; the head
// is drawn (seeded) at stage 1 and starts each later stage from stage i-1's (TrainConfig.HeadInit).
// Each stage's checkpoint C[shard, sequence, stage] holds the PEFT parameters of G_1..G_i and
// the stage's head, saved as safetensors with a JSON manifest (SaveCheckpoint, LoadCheckpoint)
// and exportable (Export: the Hugging Face PEFT layout for LoRA, ExportPEFT; parameters and
// manifest for other types, ExportRaw). Nothing from later slices reaches a stage: its optimizer
// state, hold-out for early stopping and schedule are its own, and its seed is derived from the
// model seed, shard, sequence and stage (StageSeed), so retraining a stage from scratch on the
// same slices reproduces its checkpoint bit for bit. Trunk activations (the input of each group's
// lowest block) are computed once by ONNX Runtime and kept per (sample id, edge) in an
// ActivationCache, from which a deleted sample is purged. A Predictor serves checkpoints through
// ONNX Runtime.
//
// GoMLX runs on its pure-Go backend (simplego): no cgo, no accelerator plugin to download. The
// package deals with three shortcomings of gomlx v0.26.0 and onnx-gomlx v0.3.4, each tested:
//   - simplego's worker pool deadlocks when parallel ops wait for their own sub-tasks; the engine
//     runs ops sequentially, keeping the parallel matmuls inside them (backend.go), and trains a
//     batch as concurrent micro-batches to use the cores (TrainConfig.MicroBatches);
//   - gomlx's gradients of Dot and DotGeneral build a broadcast product instead of a matmul
//     (several times slower); the package installs matmul-based gradients (grad.go);
//   - onnx-gomlx mishandles a few constructs (Pad with an omitted input, Gemm's beta) and lacks
//     some operators, and simplego lacks Pad: the package fills what its graphs need and refuses
//     the rest with ErrUnsupported at import (ops.go, backend.go).
//
// gomlx reports errors by panicking; every exported function recovers them and returns errors
// wrapping ErrEngine. Training is deterministic: the same model, configuration, seed and data
// give bit-identical parameters on the same machine.
package adapters
