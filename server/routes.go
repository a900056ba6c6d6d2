package server

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
)

// Body kinds of a Route: how its request body is limited.
const (
	bodyNone   = iota // no body expected (limited to MaxBodyBytes all the same)
	bodyJSON          // a JSON document, limited to MaxBodyBytes
	bodyInfer         // a batch of inputs (JSON or binary tensors), limited to MaxInferBytes
	bodyUpload        // a stream (NDJSON, ONNX), limited to MaxUploadBytes
	bodyBatch         // a batch deletion's ids, limited to maxBatchBodyBytes (or MaxBodyBytes when larger)
)

// Route is one endpoint of the API: the single table that Echo, authentication, size limits,
// metrics and the OpenAPI document are all built from.
type Route struct {
	Method string
	// Path is Echo's pattern, with :param segments.
	Path string
	// Name is the OpenAPI operationId.
	Name    string
	Summary string
	// Scope is the API key scope required; empty means public. OrScope, when set, grants the
	// route too: a key with the train scope follows the training it starts.
	Scope, OrScope api.Scope
	// Request and Response are the body types (nil: none), for the OpenAPI document.
	Request, Response any
	// ContentType of the request body when it is not JSON.
	ContentType string
	// BodyOptional: the request body may be left out (or empty).
	BodyOptional bool
	// Binary: the KServe v2 binary tensor data extension; the request body may instead be a JSON
	// header of Inference-Header-Content-Length bytes followed by the input tensors' bytes, and
	// the response is so when an output asks for binary data.
	Binary bool
	// ResponseType is the media type of the success response when it is not JSON; with
	// "text/event-stream", Response is the type of each event's data.
	ResponseType string
	// Description is the OpenAPI operation's description, beyond its Summary.
	Description string
	// Query lists the route's query parameters (integers, all optional), for the OpenAPI
	// document.
	Query   []QueryParam
	body    int
	handler echo.HandlerFunc
}

// QueryParam is an optional integer query parameter of a route.
type QueryParam struct {
	Name, Description string
	Minimum           int
}

// stalledDescription is what the training status says of a job whose worker stopped renewing
// its lease (stalled, sumTraining), for the OpenAPI document.
const stalledDescription = "A running job carries its worker's lease end (`lease_until`). Once the lease has expired (its worker stopped renewing it: killed, lost, partitioned) the job still reads `running` but `stalled: true`, with `eta_seconds` and `examples_per_second` 0 and a message naming the worker and when its lease expired, " +
	"until a worker requeues it (state `queued`), once the lease has been expired for one more lease; the model's `eta_seconds` counts a stalled job's remaining steps but not its rate."

// classificationDescription is what the KServe v2 inference routes say of the classification
// extension, for the OpenAPI document.
const classificationDescription = "The classification extension: a requested output `probabilities` with `parameters.classification` k (1 to the model's classes) answers instead a BYTES tensor [batch, k] of each example's k most probable classes, most probable first, each `<probability>:<index>:<label>` (JSON, or binary with `binary_data`)."

// Routes lists every route of the server, in one place.
func (s *Server) Routes() []Route {
	return []Route{
		// Operations.
		{Method: http.MethodGet, Path: "/healthz", Name: "health", Summary: "Liveness: the process serves HTTP.", Response: api.Health{}, handler: s.health},
		{Method: http.MethodGet, Path: "/readyz", Name: "ready", Summary: "Readiness: the ledger answers and ONNX Runtime loads; 503 otherwise, and while the server drains before it stops (--drain-delay).", Response: api.Health{}, handler: s.ready},
		{Method: http.MethodGet, Path: "/metrics", Name: "metrics", Summary: "Prometheus metrics (text exposition format).", handler: s.metricsHandler},
		{Method: http.MethodGet, Path: "/openapi.json", Name: "openapi", Summary: "This API's OpenAPI 3 document.", handler: s.openAPI},

		// Backbones.
		{Method: http.MethodPost, Path: "/v1/backbones", Name: "registerBackboneFromPath", Summary: "Register a backbone from an ONNX file the server may read.", Scope: api.ScopeAdmin, Request: api.RegisterBackboneRequest{}, Response: api.Backbone{}, body: bodyJSON, handler: s.registerBackbonePath},
		{Method: http.MethodPut, Path: "/v1/backbones/:name", Name: "uploadBackbone", Summary: "Register a backbone from an uploaded ONNX file (the raw body).", Scope: api.ScopeAdmin, Response: api.Backbone{}, ContentType: "application/octet-stream", body: bodyUpload, handler: s.uploadBackbone},
		{Method: http.MethodGet, Path: "/v1/backbones", Name: "listBackbones", Summary: "List the backbones.", Scope: api.ScopeInfer, Response: api.ListBackbonesResponse{}, handler: s.listBackbones},
		{Method: http.MethodDelete, Path: "/v1/backbones/:name", Name: "deleteBackbone", Summary: "Delete a backbone no model uses.", Scope: api.ScopeAdmin, Response: api.DeleteBackboneResponse{}, handler: s.deleteBackbone},
		{Method: http.MethodGet, Path: "/v1/backbones/:name", Name: "getBackbone", Summary: "A backbone with its manifest and ONNX Runtime status.", Scope: api.ScopeInfer, Response: api.Backbone{}, handler: s.getBackbone},

		// Models.
		{Method: http.MethodPost, Path: "/v1/models", Name: "createModel", Summary: "Create a model.", Scope: api.ScopeAdmin, Request: api.CreateModelRequest{}, Response: api.Model{}, body: bodyJSON, handler: s.createModel},
		{Method: http.MethodGet, Path: "/v1/models", Name: "listModels", Summary: "List the models.", Scope: api.ScopeInfer, Response: api.ListModelsResponse{}, handler: s.listModels},
		{Method: http.MethodGet, Path: "/v1/models/:name", Name: "getModel", Summary: "A model with its live prefixes.", Scope: api.ScopeInfer, Response: api.Model{}, handler: s.getModel},
		{Method: http.MethodDelete, Path: "/v1/models/:name", Name: "deleteModel", Summary: "Erase a model and everything recorded for it.", Scope: api.ScopeAdmin, Response: api.DeleteModelResponse{}, handler: s.deleteModel},
		{Method: http.MethodPost, Path: "/v1/models/:name/train", Name: "startTraining", Summary: "Queue the training a model needs (a job per shard x sequence; force: retrain all).", Scope: api.ScopeTrain, Request: api.StartTrainingRequest{}, BodyOptional: true, Response: api.TrainingJobs{}, body: bodyJSON, handler: s.startTraining},
		{Method: http.MethodGet, Path: "/v1/models/:name/training", Name: "getTraining", Summary: "Training jobs with progress (stage, loss, examples/s, ETA).", Scope: api.ScopeInfer, OrScope: api.ScopeTrain, Response: api.TrainingStatus{}, handler: s.getTraining,
			Description: stalledDescription},
		{Method: http.MethodGet, Path: "/v1/models/:name/training/events", Name: "trainingEvents", Summary: "Training progress as Server-Sent Events (progress every second, then done).", Scope: api.ScopeInfer, OrScope: api.ScopeTrain, Response: api.TrainingStatus{}, ResponseType: "text/event-stream", handler: s.trainingEvents,
			Description: "A text/event-stream: an `event: progress` every second while jobs are queued or running, then one `event: done`, each with a TrainingStatus as its data (as GET /v1/models/{name}/training answers). " +
				"The stream ends instead with one `event: error` whose data is an ErrorBody when the status cannot be read, or with code `unavailable` when the server shuts down. " + stalledDescription},
		{Method: http.MethodDelete, Path: "/v1/models/:name/training", Name: "cancelTraining", Summary: "Cancel a model's unfinished training jobs.", Scope: api.ScopeTrain, Response: api.CancelTrainingResponse{}, handler: s.cancelTraining},
		{Method: http.MethodGet, Path: "/v1/models/:name/unlearning", Name: "getUnlearning", Summary: "Live prefixes, deletions, expected deletions before retraining, and the retraining policy.", Scope: api.ScopeInfer, Response: api.UnlearningStatus{}, handler: s.getUnlearning},

		// Samples.
		{Method: http.MethodPost, Path: "/v1/models/:name/samples", Name: "uploadSamples", Summary: "Upload samples as NDJSON, all or nothing, with per-line errors.", Scope: api.ScopeTrain, Response: api.UploadSamplesResponse{}, ContentType: "application/x-ndjson", body: bodyUpload, handler: s.uploadSamples},
		{Method: http.MethodGet, Path: "/v1/models/:name/samples/:id", Name: "getSample", Summary: "A sample's label and placement.", Scope: api.ScopeInfer, Response: api.SampleInfo{}, handler: s.getSample},

		// Deletions.
		{Method: http.MethodDelete, Path: "/v1/models/:name/samples/:id", Name: "deleteSample", Summary: "Unlearn one sample; the response is its receipt (410 with the earlier receipt when deleted before).", Scope: api.ScopeDelete, Response: api.Receipt{}, handler: s.deleteSample},
		{Method: http.MethodPost, Path: "/v1/models/:name/deletions", Name: "deleteSamples", Summary: "Unlearn several samples in one transaction.", Scope: api.ScopeDelete, Request: api.DeleteSamplesRequest{}, Response: api.DeleteSamplesResponse{}, body: bodyBatch, handler: s.deleteSamples},
		{Method: http.MethodGet, Path: "/v1/models/:name/deletions", Name: "listReceipts", Summary: "A model's deletion receipts in ledger order, a page at a time.", Scope: api.ScopeDelete, Response: api.ListReceiptsResponse{}, handler: s.listReceipts,
			Description: "Pages follow each other by ledger version: ask for the next one with `after` set to this one's `next`, absent on the last page.",
			Query: []QueryParam{{Name: "after", Description: "Receipts of ledger versions above this one (0: from the first): the `next` of the page before.", Minimum: 0},
				{Name: "limit", Description: fmt.Sprintf("At most this many receipts (default %d, at most %d).", api.DefaultReceiptsPage, api.MaxReceiptsPage), Minimum: 1}}},
		{Method: http.MethodGet, Path: "/v1/deletions/:receipt", Name: "getReceipt", Summary: "Read a deletion receipt back.", Scope: api.ScopeDelete, Response: api.Receipt{}, handler: s.getReceipt},

		// Inference: native, and the KServe Open Inference Protocol v2 (501 where the server does not serve).
		{Method: http.MethodPost, Path: "/v1/models/:name/predict", Name: "predict", Summary: "Predict a batch of inputs: labels, probabilities and what every shard served, at the current ledger version.", Scope: api.ScopeInfer, Request: api.PredictRequest{}, Response: api.PredictResponse{}, body: bodyInfer, handler: s.predict},
		{Method: http.MethodGet, Path: "/v2/health/live", Name: "liveV2", Summary: "KServe v2 server liveness.", Response: api.HealthV2{}, handler: s.liveV2},
		{Method: http.MethodGet, Path: "/v2/health/ready", Name: "readyV2", Summary: "KServe v2 server readiness (400 when not ready).", Response: api.HealthV2{}, handler: s.readyV2},
		{Method: http.MethodGet, Path: "/v2/models/:name", Name: "modelMetadataV2", Summary: "KServe v2 model metadata: its input and outputs.", Scope: api.ScopeInfer, Response: api.ModelMetadataV2{}, handler: s.modelMetadataV2},
		{Method: http.MethodGet, Path: "/v2/models/:name/ready", Name: "modelReadyV2", Summary: "KServe v2 model readiness: 200 when some shard serves a checkpoint, 400 when none does.", Scope: api.ScopeInfer, Response: api.ModelReadyV2{}, handler: s.modelReadyV2},
		{Method: http.MethodPost, Path: "/v2/models/:name/infer", Name: "inferV2", Summary: "KServe v2 inference: outputs probabilities (FP32) and label (BYTES).", Scope: api.ScopeInfer, Request: api.InferRequestV2{}, Response: api.InferResponseV2{}, Binary: true, body: bodyInfer, handler: s.inferV2,
			Description: classificationDescription},
		{Method: http.MethodGet, Path: "/v2", Name: "serverMetadataV2", Summary: "KServe v2 server metadata: name, version and the protocol extensions supported (binary_tensor_data, classification).", Response: api.ServerMetadataV2{}, handler: s.serverMetadataV2},
		{Method: http.MethodGet, Path: "/v2/models/:name/versions/:version", Name: "modelVersionMetadataV2", Summary: "KServe v2 model metadata at a version: the one a model has, \"1\", answers as GET /v2/models/{name}; any other is 404.", Scope: api.ScopeInfer, Response: api.ModelMetadataV2{}, handler: s.modelMetadataV2},
		{Method: http.MethodGet, Path: "/v2/models/:name/versions/:version/ready", Name: "modelVersionReadyV2", Summary: "KServe v2 model readiness at a version: \"1\" answers as GET /v2/models/{name}/ready; any other is 404.", Scope: api.ScopeInfer, Response: api.ModelReadyV2{}, handler: s.modelReadyV2},
		{Method: http.MethodPost, Path: "/v2/models/:name/versions/:version/infer", Name: "inferVersionV2", Summary: "KServe v2 inference at a version: \"1\" answers as POST /v2/models/{name}/infer; any other is 404.", Scope: api.ScopeInfer, Request: api.InferRequestV2{}, Response: api.InferResponseV2{}, Binary: true, body: bodyInfer, handler: s.inferV2,
			Description: classificationDescription},
	}
}

// limit caps a route's request body with http.MaxBytesReader; reading past the cap gives an
// *http.MaxBytesError, which the error handler maps to 413.
func (s *Server) limit(r Route) echo.MiddlewareFunc {
	n := s.cfg.MaxBodyBytes
	switch r.body {
	case bodyInfer:
		n = s.cfg.MaxInferBytes
	case bodyUpload:
		n = s.cfg.MaxUploadBytes
	case bodyBatch:
		n = max(n, maxBatchBodyBytes)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if req.ContentLength > n {
				return &http.MaxBytesError{Limit: n}
			}
			req.Body = http.MaxBytesReader(c.Response(), req.Body, n)
			return next(c)
		}
	}
}

// param returns the path parameter name, unescaped. Echo routes on the escaped path when the
// request has one (an id holding %2F), and then hands parameters over still escaped.
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if c.Request().URL.RawPath == "" {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}
