package api

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
)

// HeaderInferenceHeaderContentLength is the HTTP header of the KServe v2 binary tensor data
// extension: the length of the JSON part of a body whose tensors' bytes follow it.
const HeaderInferenceHeaderContentLength = "Inference-Header-Content-Length"

// v2InputNames caches each model's input name (server URL and model name to the name from
// its v2 metadata), so that InferV2Binary costs one request.
var v2InputNames sync.Map

// InferV2Binary predicts inputs with the KServe v2 route of model, sending them as one FP32
// tensor in the binary tensor data extension: a JSON header, then the values as little-endian
// float32, no JSON numbers. shape is one input's shape (the model's metadata input shape
// without its leading -1, e.g. [1, 28, 28]; nil: flat, [len(inputs[0])]); the tensor's shape
// is [len(inputs), shape...]. The model's input name is read from its metadata on first use
// and cached.
//
// The response asks for "probabilities" as binary data (its Binary set, decoded by Float32s)
// and "label" as JSON (decoded by Strings).
func (c *Client) InferV2Binary(ctx context.Context, model string, inputs [][]float32, shape []int64) (*InferResponseV2, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("api: InferV2Binary: no inputs")
	}
	row := len(inputs[0])
	if shape == nil {
		shape = []int64{int64(row)}
	}
	size := int64(1)
	for _, d := range shape {
		size *= d
	}
	for i, in := range inputs {
		if int64(len(in)) != size {
			return nil, fmt.Errorf("api: InferV2Binary: input %d has %d values, shape %v holds %d", i, len(in), shape, size)
		}
	}
	key := c.base.String() + "\x00" + model
	cached, ok := v2InputNames.Load(key)
	name, _ := cached.(string)
	if !ok {
		var err error
		if name, err = c.v2InputName(ctx, key, model); err != nil {
			return nil, err
		}
	}
	res, err := c.inferV2Binary(ctx, model, name, inputs, shape)
	if ok && IsInvalid(err) {
		// The model may have been recreated with another input name: read it again, and send
		// the request once more only when it changed.
		fresh, merr := c.v2InputName(ctx, key, model)
		if merr != nil || fresh == name {
			return nil, err
		}
		res, err = c.inferV2Binary(ctx, model, fresh, inputs, shape)
	}
	return res, err
}

// v2InputName reads model's input name from its v2 metadata and caches it under key.
func (c *Client) v2InputName(ctx context.Context, key, model string) (string, error) {
	md, err := c.ModelMetadataV2(ctx, &ModelMetadataRequestV2{Name: model})
	if err != nil {
		return "", err
	}
	if len(md.Inputs) != 1 {
		return "", fmt.Errorf("api: InferV2Binary: model %q has %d inputs, want 1", model, len(md.Inputs))
	}
	v2InputNames.Store(key, md.Inputs[0].Name)
	return md.Inputs[0].Name, nil
}

func (c *Client) inferV2Binary(ctx context.Context, model, input string, inputs [][]float32, shape []int64) (*InferResponseV2, error) {
	n := len(inputs) * len(inputs[0])
	header, err := json.Marshal(&InferRequestV2{
		Inputs: []InferTensorV2{{Name: input, Datatype: "FP32", Shape: append([]int64{int64(len(inputs))}, shape...),
			Parameters: map[string]any{"binary_data_size": 4 * n}}},
		Outputs: []RequestedOutputV2{{Name: "probabilities", Parameters: map[string]any{"binary_data": true}}, {Name: "label"}},
	})
	if err != nil {
		return nil, fmt.Errorf("api: InferV2Binary: encode: %w", err)
	}
	body := make([]byte, len(header), len(header)+4*n)
	copy(body, header)
	for _, in := range inputs {
		for _, v := range in {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
		}
	}
	path := "/v2/models/" + seg(model) + "/infer"
	res, err := c.postRead(ctx, path, "application/octet-stream", body, [2]string{HeaderInferenceHeaderContentLength, strconv.Itoa(len(header))})
	if err != nil {
		return nil, err
	}
	if res.status >= 300 {
		return nil, v2Error(errorOf(res.status, res.body))
	}
	out, err := DecodeInferResponseV2(res.body, res.header.Get(HeaderInferenceHeaderContentLength))
	if err != nil {
		return nil, fmt.Errorf("api: POST %s: %w", path, err)
	}
	return out, nil
}

// DecodeInferResponseV2 decodes an inference response body: JSON, or, when headerLength (the
// Inference-Header-Content-Length header) is not empty, a JSON header of that many bytes
// followed by the binary outputs' bytes, which it sets as their Binary.
func DecodeInferResponseV2(body []byte, headerLength string) (*InferResponseV2, error) {
	out := new(InferResponseV2)
	if headerLength == "" {
		if err := json.Unmarshal(body, out); err != nil {
			return nil, fmt.Errorf("decode response: %w", err)
		}
		return out, nil
	}
	hl, err := strconv.Atoi(headerLength)
	if err != nil || hl < 0 || hl > len(body) {
		return nil, fmt.Errorf("response %s %q: not a length within the body's %d bytes", HeaderInferenceHeaderContentLength, headerLength, len(body))
	}
	if err := json.Unmarshal(body[:hl], out); err != nil {
		return nil, fmt.Errorf("decode response header: %w", err)
	}
	rest := body[hl:]
	for i := range out.Outputs {
		t := &out.Outputs[i]
		v, ok := t.Parameters["binary_data_size"]
		if !ok {
			continue
		}
		f, ok := v.(float64)
		if !ok || f < 0 || f != math.Trunc(f) || int(f) > len(rest) {
			return nil, fmt.Errorf("output %q: binary_data_size %v, %d bytes left", t.Name, v, len(rest))
		}
		t.Binary, rest = rest[:int(f):int(f)], rest[int(f):]
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("response: %d trailing bytes after the binary outputs", len(rest))
	}
	return out, nil
}

// binaryFloat32s decodes the binary data of an FP32 tensor (little-endian).
func binaryFloat32s(t *InferTensorV2) ([]float32, error) {
	if len(t.Binary)%4 != 0 {
		return nil, fmt.Errorf("api: tensor %q: %d bytes of binary data is not a whole number of FP32 values", t.Name, len(t.Binary))
	}
	v := make([]float32, len(t.Binary)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Binary[4*i:]))
	}
	return v, nil
}

// binaryStrings decodes the binary data of a BYTES tensor: per element, a 4-byte
// little-endian length and that many bytes.
func binaryStrings(t *InferTensorV2) ([]string, error) {
	var v []string
	b := t.Binary
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("api: tensor %q: truncated BYTES element length", t.Name)
		}
		n := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return nil, fmt.Errorf("api: tensor %q: BYTES element of %d bytes, %d left", t.Name, n, len(b))
		}
		v = append(v, string(b[:n]))
		b = b[n:]
	}
	return v, nil
}
