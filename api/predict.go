package api

import (
	"encoding/json"
	"fmt"
)

// PredictRequest asks the model Name for the predictions of a batch of inputs. Each input is
// a JSON array of numbers holding one example of the model's input shape, flat (784 values for
// [1, 28, 28]) or nested as the shape, dimensions of size 1 aside ([28][28] or [1][28][28]); a
// nesting that would change the order of the values (channels last, say) is refused.
type PredictRequest struct {
	Name   string            `json:"-"`
	Inputs []json.RawMessage `json:"inputs"`
}

// Prediction is the aggregated prediction of one input: the mean over the serving shards of
// their softmax probabilities, and its most probable label.
type Prediction struct {
	Label string `json:"label"`
	// Index is Label's class index.
	Index int `json:"index"`
	// Probabilities maps every label to its probability.
	Probabilities map[string]float64 `json:"probabilities"`
}

// ShardServed is what one shard served the prediction with: checkpoint C[Shard, Sequence,
// Length] of generation Gen; Length 0 means the shard served nothing (it has no live model).
type ShardServed struct {
	Shard    int `json:"shard"`
	Sequence int `json:"sequence"`
	Length   int `json:"length"`
	Gen      int `json:"gen"`
}

// PredictResponse holds one prediction per input, in order, what every shard served, and the
// model's ledger version the answer was computed at: a deletion whose receipt carries version
// v is reflected in every answer with LedgerVersion >= v.
type PredictResponse struct {
	Model         string        `json:"model"`
	Predictions   []Prediction  `json:"predictions"`
	Served        []ShardServed `json:"served"`
	LedgerVersion int64         `json:"ledger_version"`
}

// KServe Open Inference Protocol v2 (REST). Errors of the /v2 routes are {"error": "message"}
// as the protocol says (the client returns them as *Error with the HTTP status).

// ModelVersionV2 is the version of every model on the v2 routes. An s3t model has one
// servable version at a time: its metadata lists this one, the routes
// /v2/models/{name}/versions/{version}[/ready|/infer] answer with it as the unversioned ones do,
// and any other version is 404. The model's ledger version, which every upload, checkpoint and
// deletion moves, is an inference answer's parameters.ledger_version.
const ModelVersionV2 = "1"

// ExtensionBinaryTensorDataV2 is the binary tensor data extension's name in the server metadata.
const ExtensionBinaryTensorDataV2 = "binary_tensor_data"

// ExtensionClassificationV2 is the classification extension's name in the server metadata: a
// requested output "probabilities" with parameters {"classification": k} answers, instead, a
// BYTES tensor [batch, k] of each example's k most probable classes, most probable first, each
// "<probability>:<index>:<label>".
const ExtensionClassificationV2 = "classification"

// ServerMetadataRequestV2 asks for the server metadata (GET /v2).
type ServerMetadataRequestV2 struct{}

// ServerMetadataV2 is the body of GET /v2: the server's name and version, and the protocol
// extensions it supports.
type ServerMetadataV2 struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

// HealthV2 is the body of /v2/health/live and /v2/health/ready.
type HealthV2 struct {
	Live  *bool `json:"live,omitempty"`
	Ready *bool `json:"ready,omitempty"`
}

// ModelReadyV2 is the body of /v2/models/{name}[/versions/{version}]/ready (status 200 when
// ready, 400 when not).
type ModelReadyV2 struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
}

// MetadataTensorV2 describes a model input or output; -1 is a variable dimension.
type MetadataTensorV2 struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// ModelMetadataRequestV2 names a model, and a version (empty: the unversioned route).
type ModelMetadataRequestV2 struct {
	Name    string `json:"-"`
	Version string `json:"-"`
}

// ModelMetadataV2 is the body of GET /v2/models/{name}[/versions/{version}]; Versions lists
// ModelVersionV2.
type ModelMetadataV2 struct {
	Name     string             `json:"name"`
	Versions []string           `json:"versions,omitempty"`
	Platform string             `json:"platform"`
	Inputs   []MetadataTensorV2 `json:"inputs"`
	Outputs  []MetadataTensorV2 `json:"outputs"`
}

// InferTensorV2 is an input or output tensor: Data holds the values in row-major order, as a
// flat JSON array or nested to the shape (numbers for FP32, strings for BYTES). With the
// binary tensor data extension, Data is empty, Parameters hold "binary_data_size" and Binary
// the raw bytes (FP32 little-endian; BYTES as a 4-byte little-endian length and the bytes,
// per element).
type InferTensorV2 struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	// Binary is the tensor's binary data (not part of the JSON): set by InferV2Binary on
	// outputs the server sent binary.
	Binary []byte `json:"-"`
}

// Float32s decodes Data (or Binary, when set) of an FP32 tensor given flat.
func (t *InferTensorV2) Float32s() ([]float32, error) {
	if t.Binary != nil {
		return binaryFloat32s(t)
	}
	var v []float32
	if err := json.Unmarshal(t.Data, &v); err != nil {
		return nil, fmt.Errorf("api: tensor %q: %w", t.Name, err)
	}
	return v, nil
}

// Strings decodes Data (or Binary, when set) of a BYTES tensor given flat.
func (t *InferTensorV2) Strings() ([]string, error) {
	if t.Binary != nil {
		return binaryStrings(t)
	}
	var v []string
	if err := json.Unmarshal(t.Data, &v); err != nil {
		return nil, fmt.Errorf("api: tensor %q: %w", t.Name, err)
	}
	return v, nil
}

// RequestedOutputV2 names an output the client wants (all outputs when none are named).
type RequestedOutputV2 struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferRequestV2 is the body of POST /v2/models/{name}[/versions/{version}]/infer. The model
// has one input (see its metadata), datatype FP32, shape [batch, ...input shape]. Version
// (empty: the unversioned route) is part of the path, not the body.
type InferRequestV2 struct {
	Name       string              `json:"-"`
	Version    string              `json:"-"`
	ID         string              `json:"id,omitempty"`
	Parameters map[string]any      `json:"parameters,omitempty"`
	Inputs     []InferTensorV2     `json:"inputs"`
	Outputs    []RequestedOutputV2 `json:"outputs,omitempty"`
}

// InferResponseV2 answers an InferRequestV2: outputs "probabilities" (FP32 [batch, classes])
// and "label" (BYTES [batch]); ModelVersion is ModelVersionV2, and Parameters carry
// "ledger_version".
type InferResponseV2 struct {
	ModelName    string          `json:"model_name"`
	ModelVersion string          `json:"model_version,omitempty"`
	ID           string          `json:"id,omitempty"`
	Parameters   map[string]any  `json:"parameters,omitempty"`
	Outputs      []InferTensorV2 `json:"outputs"`
}

// Output returns the output called name (nil when absent).
func (r *InferResponseV2) Output(name string) *InferTensorV2 {
	for i := range r.Outputs {
		if r.Outputs[i].Name == name {
			return &r.Outputs[i]
		}
	}
	return nil
}

// ErrorV2 is the error body of the /v2 routes.
type ErrorV2 struct {
	Error string `json:"error"`
}
