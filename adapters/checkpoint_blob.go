package adapters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// checkpointMetaKey is the safetensors metadata key that carries the manifest in a checkpoint
// encoded as one blob.
const checkpointMetaKey = "s3t_checkpoint"

// EncodeCheckpoint encodes c as one safetensors file whose metadata carries the manifest: the
// form checkpoints take as blobs (object stores have no folders to keep two files together).
func EncodeCheckpoint(c *Checkpoint) ([]byte, error) {
	m, err := json.Marshal(c.Manifest)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, c.Params, map[string]string{"format": "pt", checkpointMetaKey: string(m)}); err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeCheckpoint decodes what EncodeCheckpoint wrote; a malformed blob wraps ErrCorrupt.
func DecodeCheckpoint(b []byte) (*Checkpoint, error) {
	params, meta, err := ReadSafetensors(b)
	if err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w: %w", ErrCorrupt, err)
	}
	var c Checkpoint
	if err := json.Unmarshal([]byte(meta[checkpointMetaKey]), &c.Manifest); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w: manifest: %v", ErrCorrupt, err)
	}
	if c.Manifest.Schema != CheckpointSchema {
		return nil, fmt.Errorf("decode checkpoint: %w: schema %d, want %d", ErrCorrupt, c.Manifest.Schema, CheckpointSchema)
	}
	for _, name := range slices.Concat(slices.Collect(maps.Keys(c.Manifest.Targets)), []string{HeadWeight, HeadBias}) {
		if _, ok := params[name]; !ok {
			return nil, fmt.Errorf("decode checkpoint: %w: parameter %q missing", ErrCorrupt, name)
		}
	}
	c.Params = params
	return &c, nil
}
