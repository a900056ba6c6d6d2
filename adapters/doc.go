// Package adapters holds PEFT parameter sets: per-stage checkpoints, their storage format
// (safetensors, exportable in the Hugging Face PEFT layout), and the GoMLX trainer that trains
// one stage. It is built by the training issue.
package adapters
