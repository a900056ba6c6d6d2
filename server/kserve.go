package server

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/internal/buildinfo"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/training"
	"github.com/s3t-dev/s3t/unlearning"
)

// The KServe Open Inference Protocol v2 (REST): health, model metadata, model readiness and
// inference. Errors of these routes are {"error": "message"}, as the protocol says: the handlers
// return them as any route does, and the error handler writes them in that shape (handleError).

// Names of the v2 outputs.
const (
	outputProbabilities = "probabilities"
	outputLabel         = "label"
)

func v2Invalid(format string, args ...any) error { return invalidf(format, args...) }

// Model versions. The protocol names a model v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}]
// and leaves what a version is to the server. An s3t model has one servable version at a time,
// api.ModelVersionV2 ("1"): its metadata lists it, the versioned routes with it answer exactly
// as the unversioned ones, and any other version is 404. The model's ledger version is not its
// version: it moves with every upload, published checkpoint and deletion, and no past one can
// be served (exact unlearning serves nothing that saw a deleted sample), so a URL naming it
// would stop working at the next write. Inference answers give it as parameters.ledger_version.

// v2Version checks the version the route names, if any (404 for any but api.ModelVersionV2).
func v2Version(c echo.Context) error {
	if !slices.Contains(c.ParamNames(), "version") {
		return nil // the unversioned form
	}
	if v := param(c, "version"); v != api.ModelVersionV2 {
		return &statusError{status: http.StatusNotFound, body: &api.Error{Code: api.CodeNotFound,
			Message: fmt.Sprintf("model %q has no version %q: a model has one version, %q", param(c, "name"), v, api.ModelVersionV2)}}
	}
	return nil
}

// serverMetadataV2 is GET /v2: the server's name and version and the protocol extensions it
// supports (the binary tensor data and classification extensions).
func (s *Server) serverMetadataV2(c echo.Context) error {
	return c.JSON(http.StatusOK, api.ServerMetadataV2{Name: "s3t", Version: buildinfo.Version(),
		Extensions: []string{api.ExtensionBinaryTensorDataV2, api.ExtensionClassificationV2}})
}

func (s *Server) liveV2(c echo.Context) error {
	t := true
	return c.JSON(http.StatusOK, api.HealthV2{Live: &t})
}

// readyV2 is the protocol's server readiness, "if all the models are ready for inferencing":
// 200 when every model of the ledger serves a checkpoint on some shard now (a published,
// live stage; a server with no model is ready), 400 otherwise (a 4xx status means false), and
// 400 when the server does not serve predictions or the ledger does not answer. It reads the
// ledger only: the route takes no key, and loading every model to answer it (backbone,
// predictors) would let anyone fill the server's memory with models nobody asks for. The
// per-model route (modelReadyV2) loads the model, so it also says not ready for a model whose
// checkpoints cannot be loaded. A model created and not trained yet makes the server not
// ready: that is why Kubernetes probes /readyz (the process and its ledger), not this route.
func (s *Server) readyV2(c echo.Context) error {
	ready := s.modelsReady(c.Request().Context())
	status := http.StatusOK
	if !ready {
		status = http.StatusBadRequest
	}
	return c.JSON(status, api.HealthV2{Ready: &ready})
}

// modelsReady reports whether every model of the ledger serves a checkpoint on some shard
// (see readyV2). It stops at the first that does not.
func (s *Server) modelsReady(ctx context.Context) bool {
	if s.cfg.Serving == nil || s.cfg.RuntimeError != nil {
		return false
	}
	ms, err := s.cfg.Store.ListModels(ctx)
	if err != nil {
		s.log.Warn("v2 server not ready", "err", err)
		return false
	}
	for _, m := range ms {
		if !slices.ContainsFunc(m.Published(), func(sv unlearning.Served) bool { return sv.Length > 0 }) {
			s.log.Debug("v2 server not ready: a model serves nothing", "model", m.Name)
			return false
		}
	}
	return true
}

// modelMetadataV2 answers GET /v2/models/{name}[/versions/{version}].
func (s *Server) modelMetadataV2(c echo.Context) error {
	if s.cfg.Serving == nil {
		return errNoServing
	}
	if err := v2Version(c); err != nil {
		return err
	}
	name := param(c, "name")
	info, err := s.cfg.Serving.Info(c.Request().Context(), name)
	if err != nil {
		return servingError(err)
	}
	return c.JSON(http.StatusOK, metadataV2(info))
}

func metadataV2(info *serving.Info) *api.ModelMetadataV2 {
	return &api.ModelMetadataV2{
		Name:     info.Name,
		Versions: []string{api.ModelVersionV2},
		Platform: "s3t",
		Inputs:   []api.MetadataTensorV2{{Name: info.InputName, Datatype: "FP32", Shape: append([]int64{-1}, info.InputShape...)}},
		Outputs: []api.MetadataTensorV2{
			{Name: outputProbabilities, Datatype: "FP32", Shape: []int64{-1, int64(len(info.Labels))}},
			{Name: outputLabel, Datatype: "BYTES", Shape: []int64{-1}},
		},
	}
}

// modelReadyV2 is 200 when some shard of the model serves a checkpoint now, 400 when none does
// (GET /v2/models/{name}[/versions/{version}]/ready).
func (s *Server) modelReadyV2(c echo.Context) error {
	if s.cfg.Serving == nil {
		return errNoServing
	}
	if err := v2Version(c); err != nil {
		return err
	}
	name := param(c, "name")
	ready, err := s.cfg.Serving.Ready(c.Request().Context(), name)
	if err != nil {
		return servingError(err)
	}
	ready = ready && s.cfg.RuntimeError == nil // it would predict nothing
	status := http.StatusOK
	if !ready {
		status = http.StatusBadRequest
	}
	return c.JSON(status, api.ModelReadyV2{Name: name, Ready: ready})
}

// inferV2 answers POST /v2/models/{name}[/versions/{version}]/infer.
func (s *Server) inferV2(c echo.Context) error {
	if s.cfg.Serving == nil {
		return errNoServing
	}
	if err := v2Version(c); err != nil {
		return err
	}
	if ce := c.Request().Header.Get(echo.HeaderContentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		// A compressed body (tritonclient's request_compression_algorithm) would otherwise be
		// read as JSON and refused as "invalid character '\x1f'". RFC 9110 15.5.16: 415, with
		// Accept-Encoding naming the codings accepted.
		c.Response().Header().Set("Accept-Encoding", "identity")
		return &statusError{status: http.StatusUnsupportedMediaType, body: &api.Error{Code: api.CodeInvalid,
			Message: fmt.Sprintf("Content-Encoding %q: request bodies are read uncompressed; send the body without Content-Encoding", ce)}}
	}
	ctx, end := tracedRequest(c.Request().Context(), "infer v2")
	defer end()
	name := param(c, "name")
	r := trace.StartRegion(ctx, "read body")
	body, release, err := readBody(c.Request())
	r.End()
	if err != nil {
		return bodyError(err)
	}
	defer release()
	hl := c.Request().Header.Get(api.HeaderInferenceHeaderContentLength)
	// The request (its JSON, the outputs it asks for, its inputs) is decoded while the service
	// reads the ledger (serving.PredictWith); the decode runs once, so req and want hold after.
	var (
		req  *api.InferRequestV2
		want []v2Output
	)
	res, err := s.cfg.Serving.PredictWith(ctx, name, func(info *serving.Info) ([]float32, int, error) {
		defer trace.StartRegion(ctx, "decode").End()
		var bin []byte
		var err error
		if req, bin, err = decodeInferV2(body, hl); err != nil {
			return nil, 0, err
		}
		if want, err = v2Outputs(req, info); err != nil {
			return nil, 0, err
		}
		return v2Inputs(req, info, bin)
	})
	if err != nil {
		return servingError(err)
	}
	defer trace.StartRegion(ctx, "encode").End()
	n, classes := len(res.Predictions), len(res.Labels)
	out := &api.InferResponseV2{ModelName: name, ModelVersion: api.ModelVersionV2, ID: req.ID, Parameters: map[string]any{"ledger_version": res.Version}}
	var binOut []byte // the binary outputs' bytes, in the order of the outputs
	for _, o := range want {
		var t api.InferTensorV2
		switch {
		case o.classes > 0:
			// The classification extension: the top o.classes of each example's probabilities.
			t = api.InferTensorV2{Name: o.name, Datatype: "BYTES", Shape: []int64{int64(n), int64(o.classes)}}
			top := make([]string, 0, n*o.classes)
			for _, p := range res.Predictions {
				top = appendClassifications(top, p.Probabilities, res.Labels, o.classes)
			}
			binOut, err = bytesOutput(&t, top, o.binary, binOut)
		case o.name == outputProbabilities:
			t = api.InferTensorV2{Name: o.name, Datatype: "FP32", Shape: []int64{int64(n), int64(classes)}}
			if o.binary {
				start := len(binOut)
				binOut = slices.Grow(binOut, 4*n*classes)
				for _, p := range res.Predictions {
					for _, v := range p.Probabilities {
						binOut = binary.LittleEndian.AppendUint32(binOut, math.Float32bits(float32(v)))
					}
				}
				t.Parameters = map[string]any{binaryDataSize: len(binOut) - start}
				break
			}
			probs := make([]float32, 0, n*classes)
			for _, p := range res.Predictions {
				for _, v := range p.Probabilities {
					probs = append(probs, float32(v))
				}
			}
			t.Data, err = json.Marshal(probs)
		case o.name == outputLabel:
			t = api.InferTensorV2{Name: o.name, Datatype: "BYTES", Shape: []int64{int64(n)}}
			labels := make([]string, n)
			for i, p := range res.Predictions {
				labels[i] = res.Labels[p.Label]
			}
			binOut, err = bytesOutput(&t, labels, o.binary, binOut)
		}
		if err != nil {
			return servingError(err)
		}
		out.Outputs = append(out.Outputs, t)
	}
	if !slices.ContainsFunc(want, func(o v2Output) bool { return o.binary }) {
		return c.JSON(http.StatusOK, out)
	}
	header, err := json.Marshal(out)
	if err != nil {
		return servingError(err)
	}
	h := c.Response().Header()
	h.Set(api.HeaderInferenceHeaderContentLength, strconv.Itoa(len(header)))
	return c.Blob(http.StatusOK, echo.MIMEOctetStream, append(header, binOut...))
}

// binaryDataSize is the parameter of a tensor whose values follow the JSON header as bytes
// (the protocol's binary tensor data extension).
const binaryDataSize = "binary_data_size"

// sharedMemoryRegion is the parameter of the shared memory extensions (Triton's system and CUDA
// shared memory), which the server does not support: an input or output that names a region
// is refused rather than read from the request or answered in the response.
const sharedMemoryRegion = "shared_memory_region"

// bytesOutput sets the values of t, a BYTES tensor: as JSON strings, or, when bin, in the
// binary tensor data extension's encoding (each element a 4-byte little-endian length, then
// its bytes) appended to binOut, which it returns.
func bytesOutput(t *api.InferTensorV2, values []string, bin bool, binOut []byte) ([]byte, error) {
	if !bin {
		var err error
		t.Data, err = json.Marshal(values)
		return binOut, err
	}
	start := len(binOut)
	for _, v := range values {
		binOut = binary.LittleEndian.AppendUint32(binOut, uint32(len(v)))
		binOut = append(binOut, v...)
	}
	t.Parameters = map[string]any{binaryDataSize: len(binOut) - start}
	return binOut, nil
}

// appendClassifications appends the k most probable classes of one example, most probable
// first (the lower index first among equals), as the classification extension writes them:
// "<value>:<index>:<label>", the value as the probabilities output gives it (float32).
func appendClassifications(dst []string, probs []float64, labels []string, k int) []string {
	idx := make([]int, len(probs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(float32(probs[b]), float32(probs[a])) })
	for _, c := range idx[:k] {
		dst = append(dst, strconv.FormatFloat(float64(float32(probs[c])), 'f', -1, 32)+":"+strconv.Itoa(c)+":"+labels[c])
	}
	return dst
}

// decodeInferV2 decodes an inference request's body: JSON, or, with the binary tensor data
// extension (hl, the Inference-Header-Content-Length header, not empty), a JSON header of hl
// bytes followed by the tensors' bytes, returned as bin (a part of body).
func decodeInferV2(body []byte, hl string) (req *api.InferRequestV2, bin []byte, err error) {
	req = new(api.InferRequestV2)
	if hl == "" {
		if err := json.Unmarshal(body, req); err != nil {
			return nil, nil, v2Invalid("request body: %v", err)
		}
		return req, nil, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(hl), 10, 64)
	if err != nil || n < 1 {
		return nil, nil, v2Invalid("%s: %q is not a positive length", api.HeaderInferenceHeaderContentLength, hl)
	}
	if n > int64(len(body)) {
		return nil, nil, v2Invalid("%s: %d, but the body has only %d bytes", api.HeaderInferenceHeaderContentLength, n, len(body))
	}
	if err := json.Unmarshal(body[:n], req); err != nil {
		return nil, nil, v2Invalid("request header (the first %d bytes of the body, per %s): %v", n, api.HeaderInferenceHeaderContentLength, err)
	}
	return req, body[n:], nil
}

// v2Output is an output to answer, whether its values go as binary data, and, when classes
// is not 0, the classification extension's top classes instead of the probabilities.
type v2Output struct {
	name    string
	binary  bool
	classes int
}

// v2Outputs lists the outputs the request asks for (all when it names none), each binary when
// its parameters say binary_data, or else when the request's parameters say binary_data_output.
// An output of probabilities whose parameters say classification (the classification
// extension) answers that many top classes of each example instead, among the model's.
func v2Outputs(req *api.InferRequestV2, info *serving.Info) ([]v2Output, error) {
	all, err := boolParam(req.Parameters, "binary_data_output", "request parameters")
	if err != nil {
		return nil, err
	}
	if len(req.Outputs) == 0 {
		return []v2Output{{outputProbabilities, all, 0}, {outputLabel, all, 0}}, nil
	}
	var want []v2Output
	for _, o := range req.Outputs {
		if o.Name != outputProbabilities && o.Name != outputLabel {
			return nil, v2Invalid("outputs: model %q has no output %q (it has %q and %q)", info.Name, o.Name, outputProbabilities, outputLabel)
		}
		if slices.ContainsFunc(want, func(w v2Output) bool { return w.name == o.Name }) {
			return nil, v2Invalid("outputs: output %q is requested twice", o.Name)
		}
		where := fmt.Sprintf("output %q parameters", o.Name)
		if _, ok := o.Parameters[sharedMemoryRegion]; ok {
			return nil, v2Invalid("%s: %s: the shared memory extensions are not supported; leave it out to have the output in the response", where, sharedMemoryRegion)
		}
		bin := all
		if _, ok := o.Parameters["binary_data"]; ok {
			if bin, err = boolParam(o.Parameters, "binary_data", where); err != nil {
				return nil, err
			}
		}
		classes := 0
		if v, ok := o.Parameters["classification"]; ok {
			f, isNum := v.(float64)
			if !isNum || f != math.Trunc(f) || f < 1 || f > float64(len(info.Labels)) {
				return nil, v2Invalid("%s: classification must be a number of classes from 1 to %d, not %s", where, len(info.Labels), jsonText(v))
			}
			if o.Name != outputProbabilities {
				return nil, v2Invalid("%s: classification applies to output %q (output %q is already the top class)", where, outputProbabilities, outputLabel)
			}
			classes = int(f)
		}
		want = append(want, v2Output{o.Name, bin, classes})
	}
	return want, nil
}

// boolParam reads a boolean parameter (false when absent).
func boolParam(params map[string]any, key, where string) (bool, error) {
	v, ok := params[key]
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, v2Invalid("%s: %s must be a boolean, not %s", where, key, jsonText(v))
	}
	return b, nil
}

// jsonText is v as JSON text, to quote a parameter's value in a message (a string "true" reads
// "true" with its quotes, not as the boolean).
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// v2Inputs checks the request's one input against the model and returns its examples, end to
// end, and how many. bin is the request's binary data (nil without the binary extension): when
// the input's parameters give a binary_data_size, its values are those bytes, FP32
// little-endian.
func v2Inputs(req *api.InferRequestV2, info *serving.Info, bin []byte) ([]float32, int, error) {
	if len(req.Inputs) != 1 {
		return nil, 0, v2Invalid("inputs: model %q has one input, %q; the request has %d", info.Name, info.InputName, len(req.Inputs))
	}
	in := req.Inputs[0]
	wantShape := append([]int64{-1}, info.InputShape...)
	if in.Name != info.InputName {
		return nil, 0, v2Invalid("inputs: model %q has one input, %q; the request names %q", info.Name, info.InputName, in.Name)
	}
	if _, ok := in.Parameters[sharedMemoryRegion]; ok {
		return nil, 0, v2Invalid("input %q: %s: the shared memory extensions are not supported; send the values in the request (data, or binary data with %s)", in.Name, sharedMemoryRegion, binaryDataSize)
	}
	binSize, isBin := in.Parameters[binaryDataSize]
	if isBin && bin == nil {
		return nil, 0, v2Invalid("input %q: %s given but the request has no %s header (the binary tensor data extension)", in.Name, binaryDataSize, api.HeaderInferenceHeaderContentLength)
	}
	if isBin && in.Datatype != "FP32" {
		return nil, 0, v2Invalid("input %q: %s given for datatype %q; binary data is supported for FP32 only", in.Name, binaryDataSize, in.Datatype)
	}
	if in.Datatype != "FP32" {
		return nil, 0, v2Invalid("input %q: datatype %q, want FP32", in.Name, in.Datatype)
	}
	if len(in.Shape) < 2 || in.Shape[0] < 1 || slices.Contains(in.Shape[1:], 0) {
		return nil, 0, v2Invalid("input %q: shape %v, want %v (a batch of examples)", in.Name, in.Shape, wantShape)
	}
	row := int64(1)
	example := make([]int, 0, len(in.Shape)-1) // one example's shape, for InputLayout below
	for _, d := range in.Shape[1:] {
		if d < 1 {
			return nil, 0, v2Invalid("input %q: shape %v, want %v (a batch of examples)", in.Name, in.Shape, wantShape)
		}
		row *= d
		example = append(example, int(d))
	}
	if row != int64(info.InputSize) {
		return nil, 0, v2Invalid("input %q: shape %v holds %d values per example, want %d (shape %v)", in.Name, in.Shape, row, info.InputSize, wantShape)
	}
	// The model's shape (dimensions of size 1 aside), or each example flattened: the same count
	// in another layout (say channels last, [n, 32, 32, 3] for [n, 3, 32, 32]) would be read in
	// the wrong order.
	if !training.InputLayout(example, info.InputShape) {
		return nil, 0, v2Invalid("input %q: shape %v, want %v or each example flattened, [-1 %d] (dimensions of size 1 aside)", in.Name, in.Shape, wantShape, info.InputSize)
	}
	n := int(in.Shape[0])
	if n > info.MaxBatch {
		return nil, 0, v2Invalid("input %q: batch of %d, at most %d", in.Name, n, info.MaxBatch)
	}
	var flat []float32
	if isBin {
		var err error
		if flat, err = binaryFP32(in, binSize, bin, n*info.InputSize); err != nil {
			return nil, 0, err
		}
	} else {
		if len(bin) > 0 {
			return nil, 0, v2Invalid("request body: %d trailing bytes after the JSON header, but no input has %s", len(bin), binaryDataSize)
		}
		if len(in.Data) == 0 {
			return nil, 0, v2Invalid("input %q: no data", in.Name)
		}
		var err error
		if flat, err = training.ParseInput(in.Data, in.Shape); err != nil {
			return nil, 0, v2Invalid("input %q data: %v (shape %v)", in.Name, err, in.Shape)
		}
	}
	return flat, n, nil
}

// binaryFP32 decodes the binary data of input in (the whole of bin: the model has one input),
// count float32 values, little-endian, all finite.
func binaryFP32(in api.InferTensorV2, size any, bin []byte, count int) ([]float32, error) {
	f, ok := size.(float64)
	if !ok || f < 0 || f != math.Trunc(f) {
		return nil, v2Invalid("input %q: %s %v is not a byte count", in.Name, binaryDataSize, size)
	}
	if len(in.Data) > 0 && string(in.Data) != "null" {
		return nil, v2Invalid("input %q: both data and %s; give one", in.Name, binaryDataSize)
	}
	if want := 4 * count; f != float64(want) {
		return nil, v2Invalid("input %q: %s %v, want %d (shape %v x 4 bytes of FP32)", in.Name, binaryDataSize, size, want, in.Shape)
	}
	size4 := 4 * count
	if len(bin) < size4 {
		return nil, v2Invalid("input %q: %s %d, but the body has only %d bytes after the JSON header", in.Name, binaryDataSize, size4, len(bin))
	}
	if len(bin) > size4 {
		return nil, v2Invalid("request body: %d trailing bytes after input %q's %d bytes of binary data", len(bin)-size4, in.Name, size4)
	}
	out := make([]float32, count)
	for i := range out {
		v := math.Float32frombits(binary.LittleEndian.Uint32(bin[4*i:]))
		if math.IsInf(float64(v), 0) || v != v {
			return nil, v2Invalid("input %q: value %d (%v) is not a finite float32", in.Name, i, v)
		}
		out[i] = v
	}
	return out, nil
}
