// Package training runs S3T training as durable jobs: one job per (shard, sequence) of a model,
// queued on the store's River queue, each training its L stages top-down with adapters'
// ShardTrainer, publishing every finished stage's checkpoint as a blob and a ledger record, and
// reporting progress (stage, step, loss, examples/s, ETA) in the ledger for any server to show.
//
// It also defines what the server stores about a model beyond the user's spec (Record) and where
// backbones and checkpoints live in the blob store, so that training and serving agree.
package training

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

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
	// The spec's HeadInput is the backbone output the linear head reads: NewRecord sets it
	// when the spec names none. (A field of its own here once shadowed the spec's, and every
	// model read "features" whatever its spec said.)
	// Plan is the PEFT plugin's plan for the backbone, made once at creation, so that training
	// and serving need no plugin process.
	Plan *sdk.PlanResponse `json:"plan"`
	// PlannedBy names the builds of the PEFT plugin that made Plan and of the selector that
	// chose the model's slice orders (nil in records made before they were recorded).
	PlannedBy *api.PlannedBy `json:"planned_by,omitempty"`
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
func (r *Record) InputSize() int { return shapeSize(r.InputShape) }

// Label returns the index of a label (-1 when it is not one of the model's).
func (r *Record) Label(l string) int { return slices.Index(r.Labels, l) }

// BackboneKey is the blob key of a registered backbone's ONNX file.
func BackboneKey(name string) string { return "backbones/" + name + "/model.onnx" }

// CheckpointKey returns a new blob key for C[shard, sequence, stage] of generation gen, written
// by training job job, which read its data at ledger version snapshot. Every call gives a key of
// its own (the job, the snapshot and a random part). Two jobs can train the same stage: a
// retraining queued twice by deletions close together, or one job that a lost lease let run on
// two workers. With a key per write they never write one blob, so a job whose checkpoint the
// ledger refuses (it saw a sample deleted since) removes its own blob and never another's, and a
// recorded blob is never overwritten by one trained on a deleted sample. The ledger's record
// names the key: readers take it from there. The job in the key lets a job clear what earlier
// runs of its sequence left unrecorded, without touching what another live job is writing (see
// Runner.sweep).
func CheckpointKey(model string, shard, sequence, gen, stage int, job, snapshot int64) string {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails (it panics if the system cannot supply)
	return fmt.Sprintf("%sgen-%d/stage-%d/j%d-v%d-%x.safetensors", SequencePrefix(model, shard, sequence), gen, stage, job, snapshot, nonce)
}

// CheckpointJob reads back the training job a CheckpointKey names (false for a key without one:
// one of the earlier layouts).
func CheckpointJob(key string) (int64, bool) {
	job, _, ok := checkpointWriter(key)
	return job, ok && job >= 0
}

// CheckpointSnapshot reads back the ledger version at which the job that wrote the blob read its
// data (false for the earliest layout, which does not name it).
func CheckpointSnapshot(key string) (int64, bool) {
	_, snapshot, ok := checkpointWriter(key)
	return snapshot, ok
}

// checkpointWriter parses a checkpoint key's file name: jJOB-vSNAPSHOT-NONCE.safetensors, or
// vSNAPSHOT-NONCE.safetensors (the layout before the job was named; job -1).
func checkpointWriter(key string) (job, snapshot int64, ok bool) {
	base := key[strings.LastIndexByte(key, '/')+1:]
	if n, err := fmt.Sscanf(base, "j%d-v%d-", &job, &snapshot); err == nil && n == 2 {
		return job, snapshot, true
	}
	if n, err := fmt.Sscanf(base, "v%d-", &snapshot); err == nil && n == 1 {
		return -1, snapshot, true
	}
	return 0, 0, false
}

// SequencePrefix is the blob prefix of every checkpoint of (shard, sequence) of a model.
func SequencePrefix(model string, shard, sequence int) string {
	return fmt.Sprintf("%scheckpoints/shard-%d/seq-%d/", ModelPrefix(model), shard, sequence)
}

// ParseCheckpointKey reads shard, sequence, generation and stage back from a checkpoint key of
// model: one CheckpointKey made, or one of the earlier layouts, which named a blob by its stage
// alone (.../gen-G/stage-S.safetensors) or without the job (.../stage-S/vSNAPSHOT-NONCE...).
func ParseCheckpointKey(model, key string) (shard, sequence, gen, stage int, ok bool) {
	rest, found := strings.CutPrefix(key, ModelPrefix(model)+"checkpoints/")
	if !found {
		return 0, 0, 0, 0, false
	}
	n, err := fmt.Sscanf(rest, "shard-%d/seq-%d/gen-%d/stage-%d", &shard, &sequence, &gen, &stage)
	return shard, sequence, gen, stage, err == nil && n == 4
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

// ParseInput reads a JSON input holding one example of the given shape (all finite float32)
// into float32 values: an array of numbers, flat or nested as the shape (see InputLayout). It
// scans the bytes itself: a prediction's input is parsed on every request, and decoding it
// through encoding/json's interface values cost more than the model on small backbones.
func ParseInput(raw json.RawMessage, shape []int64) ([]float32, error) {
	return AppendInput(make([]float32, 0, shapeSize(shape)), raw, shape)
}

// AppendInput is ParseInput appending the values to dst: a batch of inputs parsed end to end
// into one slice, with no slice per input to copy from.
func AppendInput(dst []float32, raw []byte, shape []int64) ([]float32, error) {
	out, end, err := ScanInput(dst, raw, 0, shape)
	if err != nil {
		return nil, err
	}
	for i := end; i < len(raw); i++ {
		if c := raw[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, fmt.Errorf("input: trailing data at byte %d", i)
		}
	}
	return out, nil
}

// ScanInput parses the JSON input at b[i:] (after any whitespace: an array of numbers holding
// one example of the given shape, flat or nested as the shape, all finite float32), appends its
// values to dst, and returns the index just after its closing bracket: a request holding several
// inputs is parsed in one pass, with what lies around each input left to the caller. Byte
// offsets in its errors count from b[0].
func ScanInput(dst []float32, b []byte, i int, shape []int64) (out []float32, end int, err error) {
	n := shapeSize(shape)
	var nest inputNesting
	if out, end, err = scanInput(dst, b, i, n, &nest); err != nil {
		return nil, 0, err
	}
	if got := len(out) - len(dst); got != n {
		return nil, 0, fmt.Errorf("input has %d values, want %d", got, n)
	}
	if !InputLayout(nest.shape(), shape) {
		return nil, 0, fmt.Errorf("input: nested as %v, want %v or flat", nest.shape(), shape)
	}
	return out, end, nil
}

// InputLayout reports whether an input nested as nested (the length of its arrays at each
// depth, outermost first) lays out an example of shape: flat (one array), or nested as the
// shape once the dimensions of size 1 are left out of both, since those do not change the order
// of the values ([28 28 1] is [1 28 28]). Any other nesting with the same number of values (say
// channels last, [32 32 3] for [3 32 32]) would put the values in the wrong order.
func InputLayout(nested []int, shape []int64) bool {
	if len(nested) == 1 {
		return true
	}
	j := 0
	for _, d := range nested {
		if d == 1 {
			continue
		}
		for j < len(shape) && shape[j] == 1 {
			j++
		}
		if j == len(shape) || shape[j] != int64(d) {
			return false
		}
		j++
	}
	for ; j < len(shape); j++ {
		if shape[j] != 1 {
			return false
		}
	}
	return true
}

func shapeSize(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// maxNesting is how deeply an input's arrays may nest.
const maxNesting = 8

// inputNesting records the nesting of an input's arrays as scanInput reads it: each depth's
// arrays must have the same length (the first one's), and the numbers must all lie at one
// depth.
type inputNesting struct {
	dims  [maxNesting + 1]int // dims[d]: the length of the arrays at depth d (1: the outermost); 0 before the first closes
	count [maxNesting + 1]int // count[d]: the elements so far of the array open at depth d
	leaf  int                 // the depth of the numbers; 0 before the first
}

// shape returns the arrays' lengths from the outermost in.
func (n *inputNesting) shape() []int { return n.dims[1 : n.leaf+1] }

// scanInput appends the values of the JSON array at b[i:] (after any whitespace) to dst, at most
// n, checking that its arrays nest regularly (recorded in nest), and returns the index after its
// closing bracket; the caller checks the count, the nesting against the shape, and what follows.
func scanInput(dst []float32, b []byte, i, n int, nest *inputNesting) ([]float32, int, error) {
	out := dst
	limit := len(dst) + n
	depth, start := 0, i
	expectValue := true // after '[' or ','
	afterComma := false
	for i < len(b) {
		c := b[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '[':
			if !expectValue {
				return nil, 0, fmt.Errorf("input: unexpected '[' at byte %d", i)
			}
			if nest.leaf != 0 && depth >= nest.leaf {
				return nil, 0, fmt.Errorf("input: an array among numbers at byte %d", i)
			}
			if depth == maxNesting {
				return nil, 0, fmt.Errorf("input: arrays nested deeper than %d at byte %d", maxNesting, i)
			}
			nest.count[depth]++
			depth++
			nest.count[depth] = 0
			afterComma = false
			i++
		case c == ']':
			if depth == 0 || afterComma {
				return nil, 0, fmt.Errorf("input: unexpected ']' at byte %d", i)
			}
			switch k := nest.count[depth]; {
			case k == 0:
				return nil, 0, fmt.Errorf("input: empty array at byte %d", i)
			case nest.dims[depth] == 0:
				nest.dims[depth] = k
			case nest.dims[depth] != k:
				return nil, 0, fmt.Errorf("input: an array of %d elements where the first at its depth has %d (byte %d)", k, nest.dims[depth], i)
			}
			depth--
			expectValue = false
			i++
			if depth == 0 {
				return out, i, nil
			}
		case c == ',':
			if expectValue || depth == 0 {
				return nil, 0, fmt.Errorf("input: unexpected ',' at byte %d", i)
			}
			expectValue, afterComma = true, true
			i++
		case c == '-' || (c >= '0' && c <= '9'):
			if !expectValue || depth == 0 {
				return nil, 0, fmt.Errorf("input must be an array of numbers (unexpected number at byte %d)", i)
			}
			if nest.leaf != depth {
				if nest.leaf != 0 { // arrays are never empty: every depth above leaf holds numbers
					return nil, 0, fmt.Errorf("input: a number among arrays at byte %d", i)
				}
				nest.leaf = depth
			}
			v, j, ok := shortDecimal(b, i)
			if !ok {
				j = i + 1
				for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '-' || b[j] == '+') {
					j++
				}
				if !jsonNumber(b[i:j]) {
					return nil, 0, fmt.Errorf("input: %q is not a JSON number", b[i:j])
				}
				f, err := strconv.ParseFloat(string(b[i:j]), 32)
				if err != nil || math.IsInf(f, 0) {
					return nil, 0, fmt.Errorf("input value %s is not a finite float32", b[i:j])
				}
				v = float32(f)
			}
			if len(out) == limit {
				return nil, 0, fmt.Errorf("input has more than %d values", n)
			}
			out = append(out, v)
			nest.count[depth]++
			expectValue, afterComma = false, false
			i = j
		default:
			return nil, 0, fmt.Errorf("input must be an array of numbers, found %q at byte %d", c, i)
		}
	}
	if depth != 0 || i == start {
		return nil, 0, errors.New("input: unterminated or empty: want an array of numbers")
	}
	return out, i, nil // whitespace only
}

// pow10 are the powers of ten that float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// shortDecimal parses the JSON number at b[i:] when it is a plain decimal, -?(0|[1-9][0-9]*)
// (\.[0-9]+)?, of at most 19 digits whose digits as an integer m are below 2^53 and that has at
// most 22 of them after the point (the form of pixel values, 0 and 0.34901962), and returns its
// float32 value and the index after it. ok is false for any other number, or what is not one:
// strconv.ParseFloat and jsonNumber then decide (exponents, long mantissas, errors).
//
// The value is exactly strconv.ParseFloat's: m and 10^k are exact float64s, so m / 10^k is the
// float64 nearest the decimal (Clinger's fast path); rounding that to float32 gives the float32
// nearest the decimal unless the float64 lies exactly halfway between two float32s, the one case
// that is left to ParseFloat (a float32 halfway point strictly between the decimal and its
// nearest float64 would be nearer the decimal than that float64). The values lie within 1e-22
// and 2^53, inside float32's normal range. TestShortDecimalMatchesParseFloat checks it.
func shortDecimal(b []byte, i int) (v float32, end int, ok bool) {
	neg := b[i] == '-'
	if neg {
		i++
	}
	var m uint64
	digits, frac := 0, 0
	switch {
	case i < len(b) && b[i] == '0':
		i++
		if i < len(b) && b[i] >= '0' && b[i] <= '9' {
			return 0, 0, false // a leading zero: not JSON
		}
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			m = m*10 + uint64(b[i]-'0')
			digits++
		}
	default:
		return 0, 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if m != 0 || b[i] != '0' {
				digits++ // leading zeros of the fraction add nothing to m
			}
			m = m*10 + uint64(b[i]-'0')
			frac++
		}
		if frac == 0 {
			return 0, 0, false
		}
	}
	if digits > 19 || m >= 1<<53 || frac >= len(pow10) {
		return 0, 0, false
	}
	if i < len(b) {
		if c := b[i]; c == 'e' || c == 'E' || c == '.' || c == '-' || c == '+' {
			return 0, 0, false
		}
	}
	f := float64(m) / pow10[frac]
	if math.Float64bits(f)&(1<<29-1) == 1<<28 {
		return 0, 0, false // halfway between two float32s
	}
	v = float32(f)
	if neg {
		v = -v
	}
	return v, i, true
}

// microBatches is the number of concurrent micro-batches of every training step. It is part of
// the result (a step's gradient is summed over them in a fixed order), so it is fixed here.
const microBatches = 2

// jsonNumber reports whether b is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(b []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// BucketCheck is what CheckBucket found: how many models the ledger has, and which of their
// backbones' files the bucket lacks (each with the models that use it).
type BucketCheck struct {
	Models  int
	Missing map[string][]string // backbone name -> the models using it
}

// Wrong reports whether the bucket holds none of the backbones the ledger's models use: a
// process given another bucket than the one the models were made with (a wrong S3T_BLOB_URL).
func (c BucketCheck) Wrong() bool { return c.Models > 0 && len(c.Missing) > 0 && c.found() == 0 }

func (c BucketCheck) found() int {
	n := c.Models
	for _, ms := range c.Missing {
		n -= len(ms)
	}
	return n
}

// String names what is missing, for an error or a log line.
func (c BucketCheck) String() string {
	names := slices.Sorted(maps.Keys(c.Missing))
	parts := make([]string, len(names))
	for i, b := range names {
		parts[i] = fmt.Sprintf("%s (used by %s)", BackboneKey(b), strings.Join(c.Missing[b], ", "))
	}
	return fmt.Sprintf("%d of the ledger's %d models use a backbone the bucket lacks: %s", c.Models-c.found(), c.Models, strings.Join(parts, "; "))
}

// CheckBucket checks that the bucket holds the backbone of every model of the ledger (a model's
// backbone cannot be deleted while the model exists). A process started with another bucket than
// the one its ledger's models were made with would otherwise fail every training job of them
// within seconds, each attempt on "not found", and leave them failed until trained again.
func CheckBucket(ctx context.Context, st *store.Store, blobs *store.Blobs) (BucketCheck, error) {
	models, err := st.ListModels(ctx)
	if err != nil {
		return BucketCheck{}, fmt.Errorf("check bucket: %w", err)
	}
	c := BucketCheck{Missing: map[string][]string{}}
	present := map[string]bool{}
	for _, m := range models {
		rec, err := DecodeRecord(m)
		if err != nil {
			continue // not this check's to report: training and serving the model say so
		}
		c.Models++
		ok, seen := present[rec.Backbone]
		if !seen {
			_, err := blobs.ModTime(ctx, BackboneKey(rec.Backbone))
			switch {
			case err == nil:
				ok = true
			case errors.Is(err, store.ErrNotFound):
			default:
				return BucketCheck{}, fmt.Errorf("check bucket: %w", err)
			}
			present[rec.Backbone] = ok
		}
		if !ok {
			c.Missing[rec.Backbone] = append(c.Missing[rec.Backbone], m.Name)
		}
	}
	return c, nil
}
