package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/training"
)

// The KServe Open Inference Protocol v2 (REST): health, model metadata, model readiness and
// inference. Errors of these routes are {"error": "message"}, as the protocol says;
// authentication failures keep the server's own error body.

// Names of the v2 outputs.
const (
	outputProbabilities = "probabilities"
	outputLabel         = "label"
)

// v2Error writes err as the protocol's error body with the status the server maps it to.
func (s *Server) v2Error(c echo.Context, err error) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return err // 413 from the size limit, through the server's error handler
	}
	status, body := toAPIError(servingError(err))
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "route", c.Path(), "status", status, "err", err)
	}
	return c.JSON(status, api.ErrorV2{Error: body.Message})
}

func v2Invalid(format string, args ...any) error { return invalidf(format, args...) }

func (s *Server) liveV2(c echo.Context) error {
	t := true
	return c.JSON(http.StatusOK, api.HealthV2{Live: &t})
}

// readyV2 is 200 when the ledger answers and the server serves predictions, 400 otherwise
// (the protocol: a 4xx status means false).
func (s *Server) readyV2(c echo.Context) error {
	ready := s.cfg.Serving != nil
	if ready {
		if _, err := s.cfg.Store.SchemaVersion(c.Request().Context()); err != nil {
			s.log.Warn("not ready", "err", err)
			ready = false
		}
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusBadRequest
	}
	return c.JSON(status, api.HealthV2{Ready: &ready})
}

func (s *Server) modelMetadataV2(c echo.Context) error {
	if s.cfg.Serving == nil {
		return s.v2Error(c, errNoServing)
	}
	name := param(c, "name")
	info, err := s.cfg.Serving.Info(c.Request().Context(), name)
	if err != nil {
		return s.v2Error(c, err)
	}
	return c.JSON(http.StatusOK, metadataV2(info))
}

func metadataV2(info *serving.Info) *api.ModelMetadataV2 {
	return &api.ModelMetadataV2{
		Name:     info.Name,
		Platform: "s3t",
		Inputs:   []api.MetadataTensorV2{{Name: info.InputName, Datatype: "FP32", Shape: append([]int64{-1}, info.InputShape...)}},
		Outputs: []api.MetadataTensorV2{
			{Name: outputProbabilities, Datatype: "FP32", Shape: []int64{-1, int64(len(info.Labels))}},
			{Name: outputLabel, Datatype: "BYTES", Shape: []int64{-1}},
		},
	}
}

// modelReadyV2 is 200 when some shard of the model serves a checkpoint now, 400 when none does.
func (s *Server) modelReadyV2(c echo.Context) error {
	if s.cfg.Serving == nil {
		return s.v2Error(c, errNoServing)
	}
	name := param(c, "name")
	ready, err := s.cfg.Serving.Ready(c.Request().Context(), name)
	if err != nil {
		return s.v2Error(c, err)
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusBadRequest
	}
	return c.JSON(status, api.ModelReadyV2{Name: name, Ready: ready})
}

func (s *Server) inferV2(c echo.Context) error {
	if s.cfg.Serving == nil {
		return s.v2Error(c, errNoServing)
	}
	ctx := c.Request().Context()
	name := param(c, "name")
	var req api.InferRequestV2
	dec := json.NewDecoder(c.Request().Body)
	if err := dec.Decode(&req); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return s.v2Error(c, v2Invalid("request body: %v", err))
	}
	info, err := s.cfg.Serving.Info(ctx, name)
	if err != nil {
		return s.v2Error(c, err)
	}
	inputs, err := v2Inputs(&req, info)
	if err != nil {
		return s.v2Error(c, err)
	}
	want := []string{outputProbabilities, outputLabel}
	if len(req.Outputs) > 0 {
		want = want[:0]
		for _, o := range req.Outputs {
			if o.Name != outputProbabilities && o.Name != outputLabel {
				return s.v2Error(c, v2Invalid("outputs: model %q has no output %q (it has %q and %q)", name, o.Name, outputProbabilities, outputLabel))
			}
			want = append(want, o.Name)
		}
	}
	res, err := s.cfg.Serving.Predict(ctx, name, inputs)
	if err != nil {
		return s.v2Error(c, err)
	}
	n, classes := len(res.Predictions), len(res.Labels)
	out := &api.InferResponseV2{ModelName: name, ID: req.ID, Parameters: map[string]any{"ledger_version": res.Version}}
	for _, o := range want {
		var t api.InferTensorV2
		switch o {
		case outputProbabilities:
			probs := make([]float32, 0, n*classes)
			for _, p := range res.Predictions {
				for _, v := range p.Probabilities {
					probs = append(probs, float32(v))
				}
			}
			t = api.InferTensorV2{Name: o, Datatype: "FP32", Shape: []int64{int64(n), int64(classes)}}
			t.Data, err = json.Marshal(probs)
		case outputLabel:
			labels := make([]string, n)
			for i, p := range res.Predictions {
				labels[i] = res.Labels[p.Label]
			}
			t = api.InferTensorV2{Name: o, Datatype: "BYTES", Shape: []int64{int64(n)}}
			t.Data, err = json.Marshal(labels)
		}
		if err != nil {
			return s.v2Error(c, err)
		}
		out.Outputs = append(out.Outputs, t)
	}
	return c.JSON(http.StatusOK, out)
}

// v2Inputs checks the request's one input against the model and splits it into examples.
func v2Inputs(req *api.InferRequestV2, info *serving.Info) ([][]float32, error) {
	if len(req.Inputs) != 1 {
		return nil, v2Invalid("inputs: model %q has one input, %q; the request has %d", info.Name, info.InputName, len(req.Inputs))
	}
	in := req.Inputs[0]
	wantShape := append([]int64{-1}, info.InputShape...)
	if in.Name != info.InputName {
		return nil, v2Invalid("inputs: model %q has one input, %q; the request names %q", info.Name, info.InputName, in.Name)
	}
	if in.Datatype != "FP32" {
		return nil, v2Invalid("input %q: datatype %q, want FP32", in.Name, in.Datatype)
	}
	if len(in.Shape) < 2 || in.Shape[0] < 1 || slices.Contains(in.Shape[1:], 0) {
		return nil, v2Invalid("input %q: shape %v, want %v (a batch of examples)", in.Name, in.Shape, wantShape)
	}
	row := int64(1)
	for _, d := range in.Shape[1:] {
		if d < 1 {
			return nil, v2Invalid("input %q: shape %v, want %v (a batch of examples)", in.Name, in.Shape, wantShape)
		}
		row *= d
	}
	if row != int64(info.InputSize) {
		return nil, v2Invalid("input %q: shape %v holds %d values per example, want %d (shape %v)", in.Name, in.Shape, row, info.InputSize, wantShape)
	}
	n := int(in.Shape[0])
	if n > serving.DefaultMaxBatch {
		return nil, v2Invalid("input %q: batch of %d, at most %d", in.Name, n, serving.DefaultMaxBatch)
	}
	if len(in.Data) == 0 {
		return nil, v2Invalid("input %q: no data", in.Name)
	}
	flat, err := training.ParseInput(in.Data, n*info.InputSize)
	if err != nil {
		return nil, v2Invalid("input %q data: %v (shape %v)", in.Name, err, in.Shape)
	}
	out := make([][]float32, n)
	for i := range out {
		out[i] = flat[i*info.InputSize : (i+1)*info.InputSize : (i+1)*info.InputSize]
	}
	return out, nil
}
