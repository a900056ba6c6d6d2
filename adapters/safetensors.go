package adapters

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/s3t-dev/s3t/backbone/ort"
)

// ErrCorrupt means a checkpoint file exists but cannot be used: truncated, not in the expected
// format, or inconsistent with its manifest.
var ErrCorrupt = errors.New("adapters: corrupt checkpoint")

// maxSafetensorsHeader bounds the JSON header, as the reference implementation does (100 MB).
const maxSafetensorsHeader = 100 << 20

type safetensorsEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// WriteSafetensors writes float32 tensors in the safetensors format (huggingface/safetensors): an
// 8-byte little-endian header length, a JSON header mapping each name to its dtype ("F32"), shape
// and data offsets, then the tensors' raw little-endian data in name order. metadata, when not
// empty, is stored under "__metadata__".
func WriteSafetensors(w io.Writer, tensors map[string]ort.Tensor, metadata map[string]string) error {
	names := slices.Sorted(maps.Keys(tensors))
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	data := make([][]float32, len(names))
	for i, n := range names {
		t := tensors[n]
		v, err := ort.Values[float32](t)
		if err != nil || t.Validate() != nil {
			return fmt.Errorf("write safetensors: %w: tensor %q must be a valid float32 tensor", ErrInvalidArgument, n)
		}
		data[i] = v
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[n] = safetensorsEntry{DType: "F32", Shape: shape, DataOffsets: [2]int64{off, off + 4*int64(len(v))}}
		off += 4 * int64(len(v))
	}
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("write safetensors: %w", err)
	}
	// Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
	for (8+len(h))%8 != 0 {
		h = append(h, ' ')
	}
	buf := make([]byte, 8, 8+len(h)+int(off))
	binary.LittleEndian.PutUint64(buf, uint64(len(h)))
	buf = append(buf, h...)
	for _, v := range data {
		for _, x := range v {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		}
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write safetensors: %w", err)
	}
	return nil
}

// ReadSafetensors parses a safetensors file holding float32 tensors and returns them with the
// header's metadata. Errors about the content wrap ErrCorrupt.
func ReadSafetensors(b []byte) (map[string]ort.Tensor, map[string]string, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("read safetensors: %w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) < 8 {
		return nil, nil, corrupt("%d bytes, shorter than the header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxSafetensorsHeader || n > uint64(len(b)-8) {
		return nil, nil, corrupt("header length %d for a file of %d bytes", n, len(b))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		return nil, nil, corrupt("header: %v", err)
	}
	data := b[8+n:]
	var meta map[string]string
	out := map[string]ort.Tensor{}
	type span struct {
		name   string
		lo, hi int64
	}
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, corrupt("metadata: %v", err)
			}
			continue
		}
		var e safetensorsEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, corrupt("tensor %q: %v", name, err)
		}
		if e.DType != "F32" {
			return nil, nil, corrupt("tensor %q has dtype %q, want F32", name, e.DType)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt32/d) {
				return nil, nil, corrupt("tensor %q has shape %v", name, e.Shape)
			}
			count *= d
		}
		lo, hi := e.DataOffsets[0], e.DataOffsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) || hi-lo != 4*count {
			return nil, nil, corrupt("tensor %q: offsets [%d, %d) for shape %v and %d data bytes", name, lo, hi, e.Shape, len(data))
		}
		v := make([]float32, count)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[lo+4*int64(i):]))
		}
		out[name] = ort.NewTensor(v, e.Shape...)
		spans = append(spans, span{name, lo, hi})
	}
	// The data must be covered exactly, without overlaps or gaps.
	slices.SortFunc(spans, func(a, b span) int { return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(a.hi, b.hi)) })
	var end int64
	for _, s := range spans {
		if s.lo != end {
			return nil, nil, corrupt("tensor %q starts at %d, want %d", s.name, s.lo, end)
		}
		end = s.hi
	}
	if end != int64(len(data)) {
		return nil, nil, corrupt("%d data bytes, tensors cover %d", len(data), end)
	}
	return out, meta, nil
}

// writeFileAtomic writes b to path through a temporary file in the same folder and a rename.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
