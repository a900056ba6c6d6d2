// Package training runs S3T training as durable jobs: one job per (shard, sequence) of a model,
// queued on the store's River queue, each training its L stages top-down with adapters'
// ShardTrainer, publishing every finished stage's checkpoint as a blob and a ledger record, and
// reporting progress (stage, step, loss, examples/s, ETA) in the ledger for any server to show.
//
// It also defines what the server stores about a model beyond the user's spec (Record) and where
// backbones and checkpoints live in the blob store, so that training and serving agree.
package training

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/store"
)

// Record is a model's stored configuration: the user's spec and what the server derived from
// it when the model was created. Training and serving read it; nothing in it changes later.
type Record struct {
	api.ModelSpec
	// BackboneSHA256 pins the backbone's bytes: a backbone re-registered under the same name
	// with other bytes does not silently change a model.
	BackboneSHA256 string `json:"backbone_sha256"`
	// Input is the backbone's data input: its name and the shape of one example.
	InputName  string  `json:"input_name"`
	InputShape []int64 `json:"input_shape"`
	// HeadInput is the backbone output the linear head reads.
	HeadInput string `json:"head_input"`
	// Plan is the PEFT plugin's plan for the backbone, made once at creation, so that training
	// and serving need no plugin process.
	Plan *sdk.PlanResponse `json:"plan"`
}

// DecodeRecord reads a model's stored configuration.
func DecodeRecord(m *store.Model) (*Record, error) {
	var r Record
	if err := json.Unmarshal(m.Config, &r); err != nil {
		return nil, fmt.Errorf("model %q: decode stored record: %w", m.Name, err)
	}
	if r.Plan == nil || len(r.InputShape) == 0 {
		return nil, fmt.Errorf("model %q: stored record lacks its plan or input shape", m.Name)
	}
	return &r, nil
}

// InputSize is the number of float32 values of one example.
func (r *Record) InputSize() int {
	n := 1
	for _, d := range r.InputShape {
		n *= int(d)
	}
	return n
}

// Label returns the index of a label (-1 when it is not one of the model's).
func (r *Record) Label(l string) int { return slices.Index(r.Labels, l) }

// BackboneKey is the blob key of a registered backbone's ONNX file.
func BackboneKey(name string) string { return "backbones/" + name + "/model.onnx" }

// CheckpointKey is the blob key of C[shard, sequence, stage] of generation gen of a model.
func CheckpointKey(model string, shard, sequence, gen, stage int) string {
	return fmt.Sprintf("models/%s/checkpoints/shard-%d/seq-%d/gen-%d/stage-%d.safetensors", model, shard, sequence, gen, stage)
}

// ModelPrefix is the blob prefix of everything derived from a model.
func ModelPrefix(model string) string { return "models/" + model + "/" }

// EncodeInput encodes one example's values as the ledger stores them: float32, little endian.
func EncodeInput(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// DecodeInput decodes what EncodeInput wrote, checking it holds n values.
func DecodeInput(b []byte, n int) ([]float32, error) {
	if len(b) != 4*n {
		return nil, fmt.Errorf("stored input has %d bytes, want %d float32 values", len(b), n)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// ParseInput reads a JSON input (an array of numbers, nested or flat, holding n values, all
// finite) into float32 values.
func ParseInput(raw json.RawMessage, n int) ([]float32, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("input is not JSON: %w", err)
	}
	out := make([]float32, 0, n)
	var walk func(any) error
	walk = func(x any) error {
		switch t := x.(type) {
		case float64:
			if math.IsNaN(t) || math.IsInf(t, 0) || math.Abs(t) > math.MaxFloat32 {
				return fmt.Errorf("input value %v is not a finite float32", t)
			}
			if len(out) == n {
				return fmt.Errorf("input has more than %d values", n)
			}
			out = append(out, float32(t))
		case []any:
			for _, e := range t {
				if err := walk(e); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("input must be an array of numbers, found %T", x)
		}
		return nil
	}
	if err := walk(v); err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, fmt.Errorf("input has %d values, want %d", len(out), n)
	}
	return out, nil
}

// microBatches is the number of concurrent micro-batches of every training step. It is part of
// the result (a step's gradient is summed over them in a fixed order), so it is fixed here.
const microBatches = 2
