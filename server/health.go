package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
)

func (s *Server) health(c echo.Context) error {
	return c.JSON(http.StatusOK, api.Health{Status: "ok"})
}

// ready answers 200 when the ledger answers a query. It takes no key, so a 503 says which part
// is not ready and the log says why: the cause names the database's host, port and user (an
// operator audit read them off a replica listening on every interface), or a library's path.
func (s *Server) ready(c echo.Context) error {
	if s.draining.Load() {
		return &statusError{status: http.StatusServiceUnavailable, body: &api.Error{Code: api.CodeUnavailable, Message: "shutting down"}}
	}
	if err := s.cfg.Store.Ping(c.Request().Context()); err != nil {
		s.log.Warn("not ready: the ledger does not answer", "err", err)
		return &statusError{status: http.StatusServiceUnavailable, body: &api.Error{Code: api.CodeUnavailable, Message: "the ledger does not answer (the server's log says why)"}}
	}
	if err := s.cfg.RuntimeError; err != nil && s.cfg.Serving != nil {
		s.log.Warn("not ready: ONNX Runtime cannot be loaded", "err", err)
		return &statusError{status: http.StatusServiceUnavailable, body: &api.Error{Code: api.CodeUnavailable, Message: "ONNX Runtime cannot be loaded (the server's log says why)"}}
	}
	return c.JSON(http.StatusOK, api.Health{Status: "ready"})
}
