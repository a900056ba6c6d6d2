package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/store"
)

// Default limits of Config.
const (
	DefaultMaxBodyBytes      = 1 << 20   // JSON requests: 1 MiB
	DefaultMaxInferBytes     = 64 << 20  // predict and infer requests: 64 MiB
	DefaultMaxUploadBytes    = 512 << 20 // NDJSON sample uploads and ONNX uploads: 512 MiB
	DefaultMaxLineBytes      = 16 << 20  // one NDJSON line: 16 MiB
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
)

// Trainer queues, cancels and reports the training of models (training.Runner); a server
// without one answers the training routes with 501 not_implemented.
type Trainer interface {
	// Start queues the training a model needs (force: retrain every sequence) and returns
	// the new jobs' ids.
	Start(ctx context.Context, model string, force bool) ([]int64, error)
	// Retrain queues the training of the given shards only (the retraining policy's call).
	Retrain(ctx context.Context, model string, shards []int) ([]int64, error)
	// Cancel cancels a model's unfinished jobs and returns their ids.
	Cancel(ctx context.Context, model string) ([]int64, error)
	// Status returns a model's training jobs.
	Status(ctx context.Context, model string) ([]*store.Training, error)
}

// Planner makes a PEFT plugin's plan for a backbone, and names the plugin's build that made it
// (plugins.Manager); nil: the built-in PEFT types plan in process.
type Planner interface {
	PlanRef(ctx context.Context, name string, req *sdk.PlanRequest) (*sdk.PlanResponse, plugins.Ref, error)
}

// SelectorSource gives the sequence selector called name ("selector.cyclic", ...), and the
// build of the plugin its calls go to.
type SelectorSource interface {
	SelectorRef(name string) (sdk.Selector, plugins.Ref, error)
}

// Config configures a Server. Store and Blobs are required; everything else has a default.
type Config struct {
	// Store is the ledger. The server does not close it.
	Store *store.Store
	// Blobs holds uploaded backbones (and, for the training issue, checkpoints).
	Blobs *store.Blobs
	// Keys are the accepted API keys. With none, every request is allowed and Listen binds
	// loopback only.
	Keys []Key
	// Trainer runs training; nil: the training routes answer 501.
	Trainer Trainer
	// Serving answers predictions (native and KServe v2); nil: those routes answer 501.
	Serving *serving.Service
	// Plugins plans PEFT types out of process; nil: built-ins only, in process.
	Plugins Planner
	// Selectors runs sequence selectors out of process (plugins.Manager.SelectorRef: the
	// built-ins and installed selector plugins); nil: the built-ins only, in process.
	Selectors SelectorSource
	// TLS, when set, makes Serve speak HTTPS (and HTTP/2) with it (TLSFiles); nil: plain HTTP.
	TLS *tls.Config
	// DrainDelay is how long Serve goes on serving once its context ends, with /readyz
	// answering 503, before it closes its listener: the time a load balancer needs to see the
	// replica not ready and stop sending it requests (0: close at once).
	DrainDelay time.Duration
	// AllowPaths lets clients register a backbone from a path on the server's file system.
	AllowPaths bool
	// DisableRuntime skips creating ONNX Runtime sessions for backbones (their Runtime then says
	// so); for machines without the library.
	DisableRuntime bool
	// RuntimeError is why ONNX Runtime cannot be loaded in this process (s3t serve tries at
	// start), or nil. Predictions and training need it: while it is set, /readyz and the
	// KServe v2 readiness routes answer not ready with it, so that no traffic is sent to a
	// server that can predict nothing.
	RuntimeError error
	// MaxBodyBytes limits JSON request bodies (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxInferBytes limits predict and KServe v2 infer request bodies, which carry a batch of
	// inputs (default DefaultMaxInferBytes: serving's default batch of 1,024 inputs of 784
	// values fits in either encoding).
	MaxInferBytes int64
	// MaxUploadBytes limits sample and backbone uploads (default DefaultMaxUploadBytes).
	MaxUploadBytes int64
	// MaxLineBytes limits one NDJSON line (default DefaultMaxLineBytes).
	MaxLineBytes int
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registry receives the server's metrics (default: a fresh registry served at /metrics).
	Registry *prometheus.Registry
	// QueueDepth reports the training queue's waiting and running jobs for /metrics
	// (store.Jobs.Depth); nil: no queue series.
	QueueDepth func(ctx context.Context) (waiting, running int, err error)
}

// Server is the s3t HTTP API. Create it with New; serve it with Serve or use Handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	echo    *echo.Echo
	routes  []Route
	auth    *authenticator
	metrics *metrics
	openapi []byte

	mu       sync.Mutex
	sessions map[string]*runtimeEntry // backbone name -> ONNX Runtime session or its error

	// backboneLocks serializes, per backbone name, this server's registrations and deletions of
	// the backbone and the last check and insert of each model creation on it (lockBackbone):
	// so no two registrations of one name both succeed, and no model is created on a backbone
	// whose deletion succeeds. Across replicas a model creation and a backbone deletion each
	// check the other's side again after their own write, so that one of them sees the other
	// (createModel, deleteBackbone).
	backboneLocks sync.Map // name -> *sync.Mutex

	retrain *retrainer // the retraining policy's checks (with a Trainer)

	// stopping is closed when Serve begins to shut down (stopOnce), before it waits for the
	// requests in flight: long-lived responses (the training event stream) select on it and end,
	// so that they do not hold the shutdown up until its timeout.
	stopping chan struct{}
	stopOnce sync.Once
	// draining is set while Serve waits out Config.DrainDelay: /readyz answers 503.
	draining atomic.Bool
}

type runtimeEntry struct {
	sha  string
	sess *ort.Session
	err  error
}

// New builds a server: every route of Routes on Echo, with size limits, authentication,
// metrics and one error handler.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Blobs == nil {
		return nil, errors.New("server: Config.Store and Config.Blobs are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxInferBytes <= 0 {
		cfg.MaxInferBytes = DefaultMaxInferBytes
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, sessions: map[string]*runtimeEntry{}, stopping: make(chan struct{})}
	s.retrain = newRetrainer(s.applyRetrainPolicy)
	auth, err := newAuthenticator(cfg.Keys)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	state := &stateCollector{store: cfg.Store, trainer: cfg.Trainer, depth: cfg.QueueDepth, log: cfg.Logger}
	collectors := []prometheus.Collector{state}
	if cfg.Serving != nil {
		collectors = append(collectors, servingCollectors(cfg.Serving)...)
	}
	if cfg.TLS != nil {
		collectors = append(collectors, certificateExpiry(cfg.TLS))
	}
	if s.metrics, err = newMetrics(cfg.Registry, collectors...); err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.metrics.middleware, s.recoverPanics, s.auth.guardBrowsers)
	s.routes = s.Routes()
	for _, r := range s.routes {
		// Authentication before the size limit: a caller without a key learns nothing of the
		// limits (and is refused before any of its body is read).
		e.Add(r.Method, r.Path, r.handler, s.auth.require(r.Scope, r.OrScope), s.limit(r))
		if r.Method == http.MethodGet && r.ResponseType != eventStreamMediaType {
			// HEAD as net/http's mux answers it: the GET's status and headers, no body (the
			// http.Server drops it). Probes and uptime checks use it; the event stream, which
			// would not end, has none.
			e.Add(http.MethodHead, r.Path, r.handler, s.auth.require(r.Scope, r.OrScope), s.limit(r))
		}
	}
	if s.openapi, err = json.Marshal(OpenAPI(s.routes)); err != nil {
		return nil, fmt.Errorf("server: openapi: %w", err)
	}
	s.echo = e
	return s, nil
}

// lockBackbone locks backbone name's registrations, deletion and model creations (see
// Server.backboneLocks) and returns the unlock. One name's upload to a slow bucket holds up
// only that name's work.
func (s *Server) lockBackbone(name string) func() {
	v, _ := s.backboneLocks.LoadOrStore(name, new(sync.Mutex))
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// ErrOpenNonLoopback is Listen's error for a non-loopback address on a server without API keys.
var ErrOpenNonLoopback = errors.New("a server without API keys listens on loopback only (give it keys, s3t serve --keys, or a loopback address)")

// LoopbackHost reports whether host (of a listen address) is a loopback address or localhost;
// an empty host (all interfaces) is not.
func LoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Listen opens the TCP listener of addr. With no API keys configured the server allows every
// request, so it listens on loopback only: a host other than a loopback address (or localhost)
// is refused (ErrOpenNonLoopback), and the log says that every request is allowed.
func (s *Server) Listen(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server: listen address %q: %w", addr, err)
	}
	if len(s.cfg.Keys) == 0 {
		if !LoopbackHost(host) {
			return nil, fmt.Errorf("server: listen address %q: %w", addr, ErrOpenNonLoopback)
		}
		s.auth.loopbackOnly.Store(true)
		s.log.Info("no API keys configured: every request is allowed, loopback only", "addr", addr)
	} else if s.cfg.TLS == nil && !LoopbackHost(host) {
		s.log.Warn("API keys over plain HTTP: they cross the network in clear text; serve TLS (s3t serve --tls-cert, --tls-key) or put a TLS-terminating proxy in front", "addr", addr)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("server: listen: %w", err)
	}
	return ln, nil
}

// Serve serves HTTP on ln until ctx is cancelled, then shuts down gracefully: it stops
// accepting, ends the training event streams (each sends a final error event, code
// unavailable), lets in-flight requests finish (up to DefaultShutdownTimeout), waits for the
// retraining policy's check in progress and closes the backbone sessions. With a Trainer, it
// first applies the retraining policy to every model (see retrainer). Serve runs once per
// Server.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Trainer != nil {
		s.checkRetraining(ctx)
	}
	hs := &http.Server{Handler: s.echo, ReadHeaderTimeout: DefaultReadHeaderTimeout, ErrorLog: serverErrorLog(s.log.Handler())}
	errc := make(chan error, 1)
	if s.cfg.TLS != nil {
		hs.TLSConfig = s.cfg.TLS // ServeTLS offers HTTP/2 too, and takes the certificate from it
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	s.log.Info("serving", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil)
	select {
	case err := <-errc:
		s.beginShutdown()
		s.retrain.close()
		s.closeSessions()
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	if d := s.cfg.DrainDelay; d > 0 {
		s.draining.Store(true)
		s.log.Info("draining: /readyz answers 503, requests are still served until the listener closes", "for", d)
		select {
		case <-time.After(d):
		case err := <-errc: // the listener failed meanwhile
			errc <- err
		}
	}
	s.log.Info("shutting down HTTP: requests in flight finish", "timeout", DefaultShutdownTimeout)
	s.beginShutdown()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc
	s.retrain.close()
	s.closeSessions()
	if err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	s.log.Info("HTTP stopped")
	return nil
}

// beginShutdown tells the long-lived responses that the server is shutting down (see
// Server.stopping); it may be called more than once.
func (s *Server) beginShutdown() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// checkRetraining queues the retraining policy's check of every model.
func (s *Server) checkRetraining(ctx context.Context) {
	ms, err := s.cfg.Store.ListModels(ctx)
	if err != nil {
		s.log.Warn("retraining policy: list models", "err", err)
		return
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	s.retrain.mark(names...)
}

func (s *Server) closeSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.sessions {
		if r.sess != nil {
			if err := r.sess.Close(); err != nil {
				s.log.Warn("close backbone session", "backbone", name, "err", err)
			}
		}
		delete(s.sessions, name)
	}
}

// recoverPanics turns a handler panic into a 500 through the error handler.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("server: panic in %s %s: %v", c.Request().Method, c.Path(), p)
			}
		}()
		return next(c)
	}
}
