package server

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
)

func (s *Server) health(c echo.Context) error {
	return c.JSON(http.StatusOK, api.Health{Status: "ok"})
}

// ready answers 200 when the ledger answers a query.
func (s *Server) ready(c echo.Context) error {
	if _, err := s.cfg.Store.SchemaVersion(c.Request().Context()); err != nil {
		s.log.Warn("not ready", "err", err)
		return &statusError{status: http.StatusServiceUnavailable, body: &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("ledger: %v", err)}}
	}
	if err := s.cfg.RuntimeError; err != nil && s.cfg.Serving != nil {
		return &statusError{status: http.StatusServiceUnavailable, body: &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("ONNX Runtime: %v", err)}}
	}
	return c.JSON(http.StatusOK, api.Health{Status: "ready"})
}
