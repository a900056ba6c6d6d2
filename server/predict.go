package server

import (
	"context"
	"errors"
	"net/http"
	"runtime/trace"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/serving"
)

// errNoServing answers the inference routes of a server without a serving.Service.
var errNoServing = &statusError{status: http.StatusNotImplemented, body: &api.Error{Code: api.CodeNotImplemented, Message: "this server does not serve predictions"}}

// servingError maps the serving package's errors to statuses: bad inputs 400, a model with
// nothing live 409, a ledger that cannot be read 503; store errors pass through.
func servingError(err error) error {
	switch {
	case errors.Is(err, serving.ErrInvalidInput):
		return &statusError{status: http.StatusBadRequest, body: &api.Error{Code: api.CodeInvalid, Message: err.Error()}}
	case errors.Is(err, serving.ErrNotLive):
		// The cause is kept for handleError (trainingUnderWay).
		return &statusError{status: http.StatusConflict, body: &api.Error{Code: api.CodeConflict, Message: err.Error()}, cause: err}
	case errors.Is(err, serving.ErrUnavailable), errors.Is(err, ort.ErrLibrary):
		// ort.ErrLibrary: this process cannot run ONNX Runtime (see Config.RuntimeError).
		return &statusError{status: http.StatusServiceUnavailable, body: &api.Error{Code: api.CodeUnavailable, Message: err.Error()}}
	}
	return err
}

// predict is the native inference route: a batch of inputs, each a JSON array of numbers.
func (s *Server) predict(c echo.Context) error {
	svc := s.cfg.Serving
	if svc == nil {
		return errNoServing
	}
	ctx, end := tracedRequest(c.Request().Context(), "predict")
	defer end()
	name := param(c, "name")
	r := trace.StartRegion(ctx, "read body")
	body, release, err := readBody(c.Request())
	r.End()
	if err != nil {
		return bodyError(err)
	}
	defer release()
	// The inputs are parsed while the service reads the ledger (serving.PredictWith).
	res, err := svc.PredictWith(ctx, name, func(info *serving.Info) ([]float32, int, error) {
		defer trace.StartRegion(ctx, "decode").End()
		return predictInputs(body, name, info)
	})
	if err != nil {
		return servingError(err)
	}
	out := &api.PredictResponse{Model: name, LedgerVersion: res.Version,
		Predictions: make([]api.Prediction, len(res.Predictions)), Served: make([]api.ShardServed, len(res.Served))}
	for i, p := range res.Predictions {
		probs := make(map[string]float64, len(res.Labels))
		for c, l := range res.Labels {
			probs[l] = p.Probabilities[c]
		}
		out.Predictions[i] = api.Prediction{Label: res.Labels[p.Label], Index: p.Label, Probabilities: probs}
	}
	for k, sv := range res.Served {
		out.Served[k] = api.ShardServed{Shard: sv.Shard, Sequence: sv.Sequence, Length: sv.Length, Gen: sv.Gen}
	}
	defer trace.StartRegion(ctx, "encode").End()
	return c.JSON(http.StatusOK, out)
}

// tracedRequest starts a runtime/trace task of the given kind for a request while a Go
// execution trace is being taken (s3t serve --debug-addr: /debug/pprof/trace), so that the
// trace groups each request's regions (reading, decoding, the ledger read, the shard runs,
// encoding) across the goroutines that run them; end ends it. Otherwise it returns ctx as is.
func tracedRequest(ctx context.Context, kind string) (context.Context, func()) {
	if !trace.IsEnabled() {
		return ctx, func() {}
	}
	ctx, task := trace.NewTask(ctx, kind)
	return ctx, task.End
}
