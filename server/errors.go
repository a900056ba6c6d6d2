package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/store"
)

// statusError is an error a handler returns with its HTTP status and body already decided.
type statusError struct {
	status int
	body   *api.Error
	cause  error // what it answers for, when kept (errors.Is sees through)
}

func (e *statusError) Error() string { return e.body.Error() }

func (e *statusError) Unwrap() error { return e.cause }

// invalidf is a 400 invalid error.
func invalidf(format string, args ...any) error {
	return &statusError{status: http.StatusBadRequest, body: &api.Error{Code: api.CodeInvalid, Message: fmt.Sprintf(format, args...)}}
}

// unavailablef is a 503 unavailable error.
func unavailablef(format string, args ...any) error {
	return &statusError{status: http.StatusServiceUnavailable, body: &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf(format, args...)}}
}

// notFoundf is a 404 not_found error.
func notFoundf(format string, args ...any) error {
	return &statusError{status: http.StatusNotFound, body: &api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf(format, args...)}}
}

// toAPIError maps any handler error to an HTTP status and error body. It is the only place
// errors become statuses: store sentinels, size limits, Echo's own errors and statusError.
func toAPIError(err error) (int, *api.Error) {
	var (
		se   *statusError
		gone *store.GoneError
		mb   *http.MaxBytesError
		he   *echo.HTTPError
	)
	switch {
	case errors.As(err, &se):
		return se.status, se.body
	case errors.As(err, &gone):
		return http.StatusGone, &api.Error{Code: api.CodeGone, Message: clientMessage(err), Receipt: toReceipt(gone.Receipt)}
	case errors.As(err, &mb):
		return http.StatusRequestEntityTooLarge, &api.Error{Code: api.CodeTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", mb.Limit)}
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, &api.Error{Code: api.CodeNotFound, Message: clientMessage(err)}
	case errors.Is(err, store.ErrGone):
		return http.StatusGone, &api.Error{Code: api.CodeGone, Message: clientMessage(err)}
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, &api.Error{Code: api.CodeConflict, Message: clientMessage(err)}
	case errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest, &api.Error{Code: api.CodeInvalid, Message: clientMessage(err)}
	case errors.As(err, &he):
		return he.Code, &api.Error{Code: api.CodeFor(he.Code), Message: fmt.Sprint(he.Message)}
	}
	return http.StatusInternalServerError, &api.Error{Code: api.CodeInternal, Message: "internal error"}
}

// clientMessage is the text of a ledger error for a client: without the store package's
// prefixes ("store: get model ...: store: not found" reads "get model ...: not found").
func clientMessage(err error) string { return strings.ReplaceAll(err.Error(), "store: ", "") }

// handleError is Echo's error handler: one JSON body {"error":{...}} for every failure, or on
// the KServe v2 routes the protocol's {"error": "message"} (authentication, size limits and
// unknown routes included). Server faults are logged with the cause; clients see "internal
// error".
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		s.log.Warn("error after response started", "route", c.Path(), "err", err)
		return
	}
	status, body := toAPIError(err)
	if errors.Is(err, serving.ErrNotLive) {
		body = s.trainingUnderWay(c.Request().Context(), param(c, "name"), body)
	}
	if status == http.StatusInternalServerError && !s.ledgerAnswers(c.Request().Context()) {
		// Most likely the failure was the ledger's: say so, with the status clients retry
		// (a deletion request above all), rather than "internal error".
		status, body = http.StatusServiceUnavailable, &api.Error{Code: api.CodeUnavailable, Message: "the ledger is unavailable; retry later"}
	}
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "route", c.Path(), "status", status, "err", err)
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(status)
	} else if isV2(c.Request().URL.Path) {
		werr = c.JSON(status, api.ErrorV2{Error: body.Message})
	} else {
		werr = c.JSON(status, api.ErrorBody{Error: body})
	}
	if werr != nil {
		s.log.Warn("write error response", "err", werr)
	}
}

// isV2 reports whether path is on the KServe v2 routes.
func isV2(path string) bool { return path == "/v2" || strings.HasPrefix(path, "/v2/") }

// ledgerAnswers reports whether the ledger answers a query within a second (what /readyz
// checks).
func (s *Server) ledgerAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return s.cfg.Store.Ping(ctx) == nil
}

// trainingUnderWay rewrites the answer to a prediction of a model with nothing live while its
// training is queued or running (a retraining the policy queued after a deletion, or a first
// training): "train it" would send the user to queue what is already coming.
func (s *Server) trainingUnderWay(ctx context.Context, model string, body *api.Error) *api.Error {
	if s.cfg.Trainer == nil || model == "" {
		return body
	}
	ts, err := s.cfg.Trainer.Status(ctx, model)
	if err != nil {
		return body
	}
	n := 0
	for _, t := range ts {
		if unfinished(t) {
			n++
		}
	}
	if n == 0 {
		return body
	}
	return &api.Error{Code: body.Code, Message: fmt.Sprintf("model %q has no trained checkpoint live yet: its training is under way, %d job(s) queued or running (GET /v1/models/%s/training follows it)", model, n, model)}
}
