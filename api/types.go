// Package api is the HTTP contract of the s3t server: documented request and response types
// and a Go client (Client) whose methods all take (ctx, *Request) and return (*Response, error).
//
// Errors are JSON bodies {"error":{"code":..., "message":...}} that the client decodes into a
// *Error; check them with errors.As or the helpers IsNotFound and IsGone.
package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Scope is a permission an API key carries.
type Scope string

// The scopes of API keys. Admin implies every other scope.
const (
	ScopeAdmin  Scope = "admin"  // register backbones, create and delete models
	ScopeTrain  Scope = "train"  // upload samples, start training
	ScopeInfer  Scope = "infer"  // read models and predict
	ScopeDelete Scope = "delete" // delete samples and read receipts
)

// Error codes carried in Error.Code.
const (
	CodeInvalid          = "invalid"            // 400: the request is malformed
	CodeUnauthorized     = "unauthorized"       // 401: no or unknown API key
	CodeForbidden        = "forbidden"          // 403: the key lacks the route's scope
	CodeNotFound         = "not_found"          // 404: no such backbone, model, sample or receipt
	CodeConflict         = "conflict"           // 409: contradicts stored state
	CodeGone             = "gone"               // 410: the sample was deleted; Receipt is the earlier receipt
	CodeTooLarge         = "too_large"          // 413: the body exceeds the route's size limit
	CodeNotImplemented   = "not_implemented"    // 501: the feature is not available on this server
	CodeInternal         = "internal"           // 500: a server fault
	CodeUnavailable      = "unavailable"        // 503: not ready
	CodePluginFailed     = "plugin_failed"      // 502 from the server itself: a plugin failed with an error of its own, or broke its contract (a proxy's 502 reads internal)
	CodeMethodNotAllowed = "method_not_allowed" // 405
)

// CodeFor returns the code the server gives an error of HTTP status status: the one listed
// with it above, else CodeInternal for a 5xx and CodeInvalid for another status. The KServe v2
// routes answer errors with a message alone ({"error": "message"}), and the client gives those
// the code of their status.
func CodeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalid
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusConflict:
		return CodeConflict
	case http.StatusGone:
		return CodeGone
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusNotImplemented:
		return CodeNotImplemented
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	if status >= 500 {
		return CodeInternal
	}
	return CodeInvalid
}

// Error is the error body of every failed request, and the error the client returns for it.
type Error struct {
	// Status is the HTTP status (set by the client; not part of the JSON body).
	Status int `json:"-"`
	// Code is a stable machine-readable code (the Code* constants).
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
	// Receipt is the earlier deletion receipt when Code is CodeGone.
	Receipt *Receipt `json:"receipt,omitempty"`
	// Lines are the per-line failures of a rejected sample upload (nothing was stored).
	Lines []LineError `json:"lines,omitempty"`
}

// Error implements error.
func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
	}
	return e.Code + ": " + e.Message
}

// ErrorBody is the JSON envelope of an Error.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// LineError is the failure of one NDJSON line of a sample upload.
type LineError struct {
	// Line is 1-based.
	Line int `json:"line"`
	// ID is the sample id on that line, when it could be read.
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string `json:"status"`
}

// RegisterBackboneRequest registers a frozen ONNX backbone, either uploaded (ONNX) or read by
// the server from Path (a file the server may read). Exactly one of ONNX and Path is set.
type RegisterBackboneRequest struct {
	Name string `json:"name"`
	Path string `json:"path,omitempty"`
	// ONNX is the model file; the client sends it as the raw request body.
	ONNX []byte `json:"-"`
}

// Backbone is a registered backbone.
type Backbone struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Info summarises the graph (inputs, outputs, opsets, operators).
	Info json.RawMessage `json:"info,omitempty"`
	// Manifest lists the blocks and the edges PEFT types may rewrite.
	Manifest json.RawMessage `json:"manifest,omitempty"`
	// ManifestError says why no manifest was detected (then Manifest is empty).
	ManifestError string `json:"manifest_error,omitempty"`
	// Runtime is how ONNX Runtime runs the backbone on this server.
	Runtime   *Runtime  `json:"runtime,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Runtime is the execution provider a backbone runs on and why.
type Runtime struct {
	Provider  string `json:"provider"`
	Requested string `json:"requested"`
	// Fallback says why Provider differs from Requested.
	Fallback string `json:"fallback,omitempty"`
	// Error is set when no session could be created (e.g. no ONNX Runtime library).
	Error string `json:"error,omitempty"`
}

// GetBackboneRequest names a backbone.
type GetBackboneRequest struct {
	Name string `json:"-"`
}

// ListBackbonesRequest lists every backbone.
type ListBackbonesRequest struct{}

// ListBackbonesResponse is every registered backbone, by name (without Info and Manifest).
type ListBackbonesResponse struct {
	Backbones []Backbone `json:"backbones"`
}

// PEFT is a model's parameter-efficient fine-tuning type and its configuration.
type PEFT struct {
	// Type is the PEFT type (lora, prefix, adapter, or a plugin's).
	Type string `json:"type"`
	// Config is the type's configuration, passed to it verbatim.
	Config json.RawMessage `json:"config,omitempty"`
}

// S3TConfig is a model's sharding: M shards of L slices, B sequences per shard chosen by
// Selector (cyclic, bms, random) with an optional per-slice deletion prior.
type S3TConfig struct {
	Shards    int       `json:"shards"`
	Slices    int       `json:"slices"`
	Sequences int       `json:"sequences"`
	Selector  string    `json:"selector"`
	Prior     []float64 `json:"prior,omitempty"`
}

// TrainingConfig is how each stage is trained. A field that is 0 (or absent) takes the
// server's default: 1 epoch, learning rate 0.001, batch size 32.
type TrainingConfig struct {
	Epochs       int     `json:"epochs"`
	LearningRate float64 `json:"learning_rate"`
	BatchSize    int     `json:"batch_size"`
}

// RetrainPolicy says when the server retrains dead sequences of a shard on its remaining data
// (in the background; the new checkpoints swap in atomically): when the shard's served prefix
// falls below MinPrefix stages, or when fewer than MinLiveShards shards serve anything. Zero
// values take the defaults (MinPrefix 1: retrain a shard once nothing of it is live;
// MinLiveShards 0: never for that reason). Disabled turns retraining off.
type RetrainPolicy struct {
	MinPrefix     int  `json:"min_prefix"`
	MinLiveShards int  `json:"min_live_shards"`
	Disabled      bool `json:"disabled,omitempty"`
}

// ModelSpec is what a model is created from; the server stores it verbatim.
type ModelSpec struct {
	Backbone string         `json:"backbone"`
	Labels   []string       `json:"labels"`
	PEFT     PEFT           `json:"peft"`
	S3T      S3TConfig      `json:"s3t"`
	Training TrainingConfig `json:"training"`
	Retrain  RetrainPolicy  `json:"retrain"`
	// HeadInput is the backbone output the task head reads, [batch, features] (default
	// "features" when the backbone has it, else its first output).
	HeadInput string `json:"head_input,omitempty"`
	Seed      int64  `json:"seed"`
}

// CreateModelRequest creates a model named Name.
type CreateModelRequest struct {
	Name string `json:"name"`
	ModelSpec
}

// Served is the checkpoint one shard serves: sequence Sequence at prefix length Length
// (0: the shard has no live model).
type Served struct {
	Sequence int `json:"sequence"`
	Length   int `json:"length"`
}

// Model is a model with its ledger state.
type Model struct {
	Name string    `json:"name"`
	Spec ModelSpec `json:"spec"`
	// Sequences[k] are the slice orders shard k is trained under.
	Sequences [][][]int `json:"sequences"`
	// Live[k][b] is the live prefix length of sequence b of shard k.
	Live [][]int `json:"live"`
	// Serving[k] is what shard k serves now: the longest prefix both live and trained.
	Serving []Served `json:"serving"`
	// Trained[k][b] is how many stages of sequence b of shard k are trained and published in
	// its current generation. Those above Live[k][b] are switched off for good (a deletion cut
	// them): never served again, their checkpoints erased where they saw the deleted sample,
	// until a retraining replaces the generation.
	Trained [][]int `json:"trained"`
	// Samples is the number of stored (not deleted) samples.
	Samples int64 `json:"samples"`
	// Version counts the model's committed ledger changes.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// PlannedBy names the builds of the plugins that made the model when it was created (absent
	// for models created before s3t recorded them).
	PlannedBy *PlannedBy `json:"planned_by,omitempty"`
	// BackboneSHA256 is the SHA-256 of the backbone's ONNX bytes, pinned when the model was
	// created: every training, retraining and prediction of the model runs these bytes.
	BackboneSHA256 string `json:"backbone_sha256"`
}

// PlannedBy names the plugins a model was made with: its PEFT type, whose plan (stored with the
// model) every training and retraining of it splices into the backbone, and its selector, whose
// slice orders are stored with it too. Neither is consulted again, so these builds are the ones
// behind every module the model trains, whatever is installed later.
type PlannedBy struct {
	PEFT     PluginRef `json:"peft"`
	Selector PluginRef `json:"selector"`
}

// PluginRef identifies a plugin's build.
type PluginRef struct {
	// Name is the plugin's full name ("peft.lora", "selector.cyclic").
	Name string `json:"name"`
	// Version is the plugin's version: as it reported it when installed, or a built-in's as
	// registered in s3t.
	Version string `json:"version"`
	// SHA256 is the SHA-256 of the executable that ran it (a built-in's: the s3t executable's);
	// empty when it ran inside the server's process (a server with no plugin host).
	SHA256 string `json:"sha256,omitempty"`
}

// GetModelRequest names a model.
type GetModelRequest struct {
	Name string `json:"-"`
}

// ListModelsRequest lists every model.
type ListModelsRequest struct{}

// ListModelsResponse is every model, by name.
type ListModelsResponse struct {
	Models []Model `json:"models"`
}

// DeleteModelRequest deletes a model and everything recorded for it.
type DeleteModelRequest struct {
	Name string `json:"-"`
}

// DeleteModelResponse confirms a model deletion.
type DeleteModelResponse struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
}

// Sample is one NDJSON line of a sample upload: an id chosen by the caller, the input (any
// JSON value the model's backbone takes, e.g. an array of pixels) and a label of the model.
type Sample struct {
	ID    string          `json:"id"`
	Input json.RawMessage `json:"input"`
	Label string          `json:"label"`
}

// UploadSamplesRequest uploads samples to Model; the client sends them as NDJSON. The upload
// is all or nothing: one bad line rejects it with an *Error listing the failing Lines.
type UploadSamplesRequest struct {
	Model   string   `json:"-"`
	Samples []Sample `json:"-"`
}

// Placement is the (shard, slice) unit a sample belongs to.
type Placement struct {
	Shard int `json:"shard"`
	Slice int `json:"slice"`
}

// UploadedSample is the outcome of one uploaded sample.
type UploadedSample struct {
	ID        string    `json:"id"`
	Placement Placement `json:"placement"`
	// Existed: the same sample was stored already (an idempotent retry).
	Existed bool `json:"existed,omitempty"`
}

// UploadSamplesResponse reports every uploaded sample, in upload order.
type UploadSamplesResponse struct {
	Stored  int              `json:"stored"`
	Existed int              `json:"existed"`
	Samples []UploadedSample `json:"samples"`
}

// GetSampleRequest names one sample of a model.
type GetSampleRequest struct {
	Model string `json:"-"`
	ID    string `json:"-"`
}

// SampleInfo is a stored sample's label and placement (the input is not returned).
type SampleInfo struct {
	ID        string    `json:"id"`
	Label     string    `json:"label"`
	Placement Placement `json:"placement"`
	CreatedAt time.Time `json:"created_at"`
}

// Truncation records that a sequence's live prefix was cut From -> To slices.
type Truncation struct {
	Sequence int `json:"sequence"`
	From     int `json:"from"`
	To       int `json:"to"`
}

// Receipt is the durable record of one deletion.
type Receipt struct {
	ID          string       `json:"id"`
	Time        time.Time    `json:"time"`
	Model       string       `json:"model"`
	SampleID    string       `json:"sample_id"`
	Shard       int          `json:"shard"`
	Slice       int          `json:"slice"`
	Truncations []Truncation `json:"truncations"`
	// Served is the shard's longest live prefix after the deletion.
	Served Served `json:"served"`
	// Serving is the checkpoint the shard serves after the deletion (the longest prefix that
	// is both live and trained; equal to Served once the model is trained).
	Serving Served `json:"serving"`
	// ServingGen is the generation of the checkpoint in Serving (0: none, or a receipt made
	// before it was recorded): with Serving, the exact checkpoint served after the deletion,
	// as a prediction's served names it.
	ServingGen int `json:"serving_gen"`
	// Live is every sequence's live prefix length in the shard after the deletion.
	Live []int `json:"live"`
	// LedgerVersion orders the receipts of one model.
	LedgerVersion int64 `json:"ledger_version"`
}

// DeleteSampleRequest unlearns one sample. The response is its Receipt; a sample deleted
// earlier gives an *Error with Code CodeGone carrying the earlier receipt.
type DeleteSampleRequest struct {
	Model string `json:"-"`
	ID    string `json:"-"`
}

// MaxDeleteBatch is the most ids one DeleteSamplesRequest may hold.
const MaxDeleteBatch = 10000

// DeleteSamplesRequest unlearns several samples of one model in one ledger transaction: 1 to
// MaxDeleteBatch ids.
type DeleteSamplesRequest struct {
	Model string   `json:"-"`
	IDs   []string `json:"ids"`
}

// Deletion statuses of DeletionResult.Status.
const (
	DeletionDeleted  = "deleted"   // deleted now; Receipt is new
	DeletionGone     = "gone"      // deleted earlier; Receipt is the earlier one
	DeletionNotFound = "not_found" // no such sample
)

// DeletionResult is the outcome for one id of a batch deletion.
type DeletionResult struct {
	ID      string   `json:"id"`
	Status  string   `json:"status"`
	Receipt *Receipt `json:"receipt,omitempty"`
}

// DeleteSamplesResponse has one result per requested id, in request order.
type DeleteSamplesResponse struct {
	Results []DeletionResult `json:"results"`
}

// GetReceiptRequest names a receipt.
type GetReceiptRequest struct {
	ID string `json:"-"`
}

// HealthRequest asks for liveness or readiness.
type HealthRequest struct{}

// DeleteBackboneRequest deletes a backbone no model uses (a conflict otherwise).
type DeleteBackboneRequest struct {
	Name string `json:"-"`
}

// DeleteBackboneResponse confirms a backbone deletion.
type DeleteBackboneResponse struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
}

// Pages of a model's receipts (ListReceiptsRequest.Limit).
const (
	DefaultReceiptsPage = 1000
	MaxReceiptsPage     = 10000
)

// ListReceiptsRequest lists a model's deletion receipts in ledger order, a page at a time: those
// of ledger versions above After (0: from the first), at most Limit (0: DefaultReceiptsPage; at
// most MaxReceiptsPage). Client.AllReceipts follows the pages.
type ListReceiptsRequest struct {
	Model string `json:"-"`
	After int64  `json:"-"`
	Limit int    `json:"-"`
}

// ListReceiptsResponse is a page of a model's receipts in ledger order. Next is the After of the
// next page; 0 when this page is the last.
type ListReceiptsResponse struct {
	Receipts []Receipt `json:"receipts"`
	Next     int64     `json:"next,omitempty"`
}
