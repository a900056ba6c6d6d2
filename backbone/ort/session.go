package ort

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	onnx "github.com/yalue/onnxruntime_go"
)

// Provider is an ONNX Runtime execution provider.
type Provider string

// Execution providers a session can ask for.
const (
	// CPU is ONNX Runtime's default CPU provider, always available.
	CPU Provider = "cpu"
	// CUDA is NVIDIA's CUDA provider. It needs an ONNX Runtime build with the CUDA provider
	// libraries next to it, the CUDA/cuDNN runtime and a GPU; without them a session falls back
	// to CPU.
	CUDA Provider = "cuda"
)

// ParseProvider reads a provider name as written in configuration ("cpu", "cuda"; case is
// ignored, "" means CPU). Other names give an error wrapping ErrInvalidArgument.
func ParseProvider(s string) (Provider, error) {
	switch p := Provider(strings.ToLower(strings.TrimSpace(s))); p {
	case "", CPU:
		return CPU, nil
	case CUDA:
		return CUDA, nil
	}
	return "", fmt.Errorf("execution provider %q (want cpu or cuda): %w", s, ErrInvalidArgument)
}

// SessionOption configures NewSession.
type SessionOption func(*sessionConfig)

type sessionConfig struct {
	intraOp, interOp int
	provider         Provider
	deviceID         int
	optional         []string
	outputs          []string
	checkFinite      bool
	logger           *slog.Logger
	optimization     Optimization
}

// Optimization is ONNX Runtime's graph optimization level.
type Optimization int

// The graph optimization levels. OptimizeAll is ONNX Runtime's default and the fastest; it may
// change the memory layout of convolutions (NCHWc), so two graphs that compute the same function
// can differ in the last bits. OptimizeExtended keeps results bit-reproducible across rewrites of
// the same graph.
const (
	OptimizeAll      Optimization = iota // every optimization, layout changes included (default)
	OptimizeExtended                     // node fusions, no layout changes
	OptimizeBasic                        // constant folding and redundant-node removal only
	OptimizeNone                         // run the graph as written
)

// String returns the level's name.
func (o Optimization) String() string {
	switch o {
	case OptimizeAll:
		return "all"
	case OptimizeExtended:
		return "extended"
	case OptimizeBasic:
		return "basic"
	case OptimizeNone:
		return "none"
	}
	return fmt.Sprintf("Optimization(%d)", int(o))
}

func (o Optimization) level() (onnx.GraphOptimizationLevel, bool) {
	switch o {
	case OptimizeAll:
		return onnx.GraphOptimizationLevelEnableAll, true
	case OptimizeExtended:
		return onnx.GraphOptimizationLevelEnableExtended, true
	case OptimizeBasic:
		return onnx.GraphOptimizationLevelEnableBasic, true
	case OptimizeNone:
		return onnx.GraphOptimizationLevelDisableAll, true
	}
	return 0, false
}

// WithGraphOptimization sets ONNX Runtime's graph optimization level. Default OptimizeAll.
func WithGraphOptimization(o Optimization) SessionOption {
	return func(c *sessionConfig) { c.optimization = o }
}

// WithIntraOpThreads sets the threads ONNX Runtime uses inside one operator. Default 0: ONNX
// Runtime's choice, one per physical core. 1 runs each operator on the calling thread.
func WithIntraOpThreads(n int) SessionOption {
	return func(c *sessionConfig) { c.intraOp = n }
}

// WithInterOpThreads sets the threads ONNX Runtime uses to run independent operators at the same
// time. Default 0: operators run one after the other (sequential execution mode, no inter-op
// pool). n > 1 switches the session to parallel execution mode with n threads.
func WithInterOpThreads(n int) SessionOption {
	return func(c *sessionConfig) { c.interOp = n }
}

// WithProvider selects the execution provider. Default CPU. Asking for CUDA where it cannot be
// used logs why and falls back to CPU; Session.Status reports the outcome.
func WithProvider(p Provider) SessionOption {
	return func(c *sessionConfig) { c.provider = p }
}

// WithCUDA selects the CUDA provider on the given GPU (0 is the first); it is
// WithProvider(CUDA) plus the device.
func WithCUDA(deviceID int) SessionOption {
	return func(c *sessionConfig) { c.provider, c.deviceID = CUDA, deviceID }
}

// WithOptionalInputs names optional model inputs (initializers with a default value, such as
// spliced PEFT parameters) that this session takes on every Run. By default a session takes
// only the model's required inputs and optional ones keep their defaults: ONNX Runtime binds
// input names when the session is created, so the set cannot change per run.
func WithOptionalInputs(names ...string) SessionOption {
	return func(c *sessionConfig) { c.optional = append(c.optional, names...) }
}

// WithOutputs restricts the outputs this session computes, in the given order; ONNX Runtime
// then skips the nodes only other outputs need. Default: every model output. Run's Fetch picks
// among the session's outputs per call.
func WithOutputs(names ...string) SessionOption {
	return func(c *sessionConfig) { c.outputs = append(c.outputs, names...) }
}

// WithCheckFinite makes every Run reject NaN or ±Inf in float inputs and outputs (ErrNotFinite)
// unless the call says otherwise with CheckFinite. Default false: the scan costs a pass over
// the data.
func WithCheckFinite(on bool) SessionOption {
	return func(c *sessionConfig) { c.checkFinite = on }
}

// WithLogger sets the logger for the session's events (the CUDA fallback, a misdeclared output
// shape). Default: slog.Default() at the time NewSession is called.
func WithLogger(l *slog.Logger) SessionOption {
	return func(c *sessionConfig) { c.logger = l }
}

// Status is how a session runs, for callers to show (the backbone's status).
type Status struct {
	// Provider is the execution provider in use.
	Provider Provider `json:"provider"`
	// Requested is the provider the session asked for.
	Requested Provider `json:"requested"`
	// DeviceID is the CUDA device asked for (meaningful when Requested is CUDA).
	DeviceID int `json:"device_id"`
	// Fallback says why Provider differs from Requested; empty when it does not.
	Fallback string `json:"fallback,omitempty"`
	// IntraOpThreads and InterOpThreads are the configured thread counts (0: ONNX Runtime's
	// default).
	IntraOpThreads int `json:"intra_op_threads"`
	InterOpThreads int `json:"inter_op_threads"`
}

// Session is a model loaded into ONNX Runtime. Its methods are safe for concurrent use: many
// goroutines may Run at once (ONNX Runtime's Run is thread-safe), and Close waits for runs in
// flight.
type Session struct {
	model   *ModelInfo
	inputs  []Info // fed on every run, in the order ONNX Runtime was given
	outputs []Info // computed on every run, same
	inIdx   map[string]int
	outIdx  map[string]int
	plans   [][]dimSource // per output: how to know its shape before running (nil: cannot)
	status  Status
	check   bool
	log     *slog.Logger

	// preallocate is cleared when the model turned out to declare an output shape it does not
	// produce; outputs are then left to ONNX Runtime to allocate.
	preallocate atomic.Bool

	mu     sync.RWMutex // read-held by runs, write-held by Close
	sess   *onnx.DynamicAdvancedSession
	closed bool

	// idleOpts are run options kept for the next cancellable run: creating them costs two
	// cgo calls and a C allocation per run (guarded by optsMu; destroyed by Close).
	optsMu   sync.Mutex
	idleOpts []*onnx.RunOptions
}

// dimSource says where one output dimension's size comes from: a fixed size (input < 0) or the
// given axis of an input fed in the same run.
type dimSource struct {
	size        int64
	input, axis int
}

// NewSession loads an ONNX model from its serialized bytes (a model whose weights live in
// external data files needs NewSessionFromFile). It initializes the ONNX Runtime environment
// when needed (see Init). Bytes that are not a loadable model give an error wrapping
// ErrInvalidModel; bad options give ErrInvalidArgument.
func NewSession(model []byte, opts ...SessionOption) (*Session, error) {
	return newSession(model, "", opts)
}

// NewSessionFromFile loads the ONNX model at path; external data files are found relative to
// it. See NewSession.
func NewSessionFromFile(path string, opts ...SessionOption) (*Session, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ort: new session: %w", err)
	}
	return newSession(b, path, opts)
}

func newSession(model []byte, path string, opts []SessionOption) (*Session, error) {
	cfg := sessionConfig{provider: CPU}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ort: new session: %w", err)
	}
	info, err := Describe(model)
	if err != nil {
		return nil, fmt.Errorf("ort: new session: %w", err)
	}
	s := &Session{
		model:  info,
		inIdx:  map[string]int{},
		outIdx: map[string]int{},
		check:  cfg.checkFinite,
		log:    cfg.logger,
		status: Status{
			Requested:      cfg.provider,
			DeviceID:       cfg.deviceID,
			IntraOpThreads: cfg.intraOp,
			InterOpThreads: cfg.interOp,
		},
	}
	if err := s.bindNames(cfg); err != nil {
		return nil, fmt.Errorf("ort: new session: %w", err)
	}
	if err := acquire(); err != nil {
		return nil, err
	}
	if err := s.create(model, path, cfg); err != nil {
		release()
		return nil, fmt.Errorf("ort: new session: %w", err)
	}
	s.preallocate.Store(true)
	return s, nil
}

func (c *sessionConfig) validate() error {
	if c.intraOp < 0 || c.interOp < 0 {
		return fmt.Errorf("thread counts must be >= 0 (intra-op %d, inter-op %d): %w", c.intraOp, c.interOp, ErrInvalidArgument)
	}
	if c.provider != CPU && c.provider != CUDA {
		return fmt.Errorf("execution provider %q (want cpu or cuda): %w", c.provider, ErrInvalidArgument)
	}
	if c.deviceID < 0 {
		return fmt.Errorf("device id %d: %w", c.deviceID, ErrInvalidArgument)
	}
	if _, ok := c.optimization.level(); !ok {
		return fmt.Errorf("graph optimization %v: %w", c.optimization, ErrInvalidArgument)
	}
	return nil
}

// bindNames fixes the session's inputs and outputs and plans output shapes.
func (s *Session) bindNames(cfg sessionConfig) error {
	byName := map[string]Info{}
	for _, in := range s.model.Inputs {
		byName[in.Name] = in
	}
	for _, in := range s.model.Inputs {
		if !in.Optional {
			s.inputs = append(s.inputs, in)
		}
	}
	for _, name := range cfg.optional {
		in, ok := byName[name]
		switch {
		case !ok:
			return fmt.Errorf("optional input %q: not a model input (inputs: %s): %w", name, list(s.model.Inputs), ErrUnknownInput)
		case !in.Optional:
			return fmt.Errorf("input %q is required, not optional: %w", name, ErrInvalidArgument)
		case slices.ContainsFunc(s.inputs, func(i Info) bool { return i.Name == name }):
			continue
		}
		s.inputs = append(s.inputs, in)
	}
	if len(s.inputs) == 0 {
		// onnxruntime_go's Run indexes the first input name; a model without inputs has
		// nothing to serve anyway.
		return fmt.Errorf("model has no inputs to feed: %w", ErrInvalidModel)
	}
	if len(cfg.outputs) == 0 {
		s.outputs = s.model.Outputs
	} else {
		for _, name := range cfg.outputs {
			i := slices.IndexFunc(s.model.Outputs, func(o Info) bool { return o.Name == name })
			if i < 0 {
				return fmt.Errorf("output %q: not a model output (outputs: %s): %w", name, list(s.model.Outputs), ErrUnknownOutput)
			}
			if !slices.ContainsFunc(s.outputs, func(o Info) bool { return o.Name == name }) {
				s.outputs = append(s.outputs, s.model.Outputs[i])
			}
		}
	}
	for i, in := range s.inputs {
		s.inIdx[in.Name] = i
	}
	for i, out := range s.outputs {
		s.outIdx[out.Name] = i
	}
	s.plans = make([][]dimSource, len(s.outputs))
	for i, out := range s.outputs {
		s.plans[i] = s.planShape(out)
	}
	return nil
}

// planShape finds, for each dimension of out, a fixed size or an input dimension with the same
// symbolic name. It returns nil when some dimension cannot be known before running, or when
// the element type is not one Run returns.
func (s *Session) planShape(out Info) []dimSource {
	if out.Shape == nil || !supported(out.DType) {
		return nil
	}
	plan := make([]dimSource, len(out.Shape))
	for k, d := range out.Shape {
		if d >= 0 {
			plan[k] = dimSource{size: d, input: -1}
			continue
		}
		name := out.DimNames[k]
		if name == "" {
			return nil
		}
		found := false
		for i, in := range s.inputs {
			if a := slices.Index(in.DimNames, name); a >= 0 && in.Shape[a] < 0 {
				plan[k] = dimSource{input: i, axis: a}
				found = true
				break
			}
		}
		if !found {
			return nil
		}
	}
	return plan
}

// create makes the ONNX Runtime session, falling back from CUDA to CPU when CUDA cannot be used.
func (s *Session) create(model []byte, path string, cfg sessionConfig) error {
	if cfg.provider == CUDA {
		sess, err := s.createWith(model, path, cfg, true)
		if err == nil {
			s.sess, s.status.Provider = sess, CUDA
			return nil
		}
		s.status.Fallback = err.Error()
		s.log.Warn("ort: cuda unavailable, falling back to cpu", "device", cfg.deviceID, "reason", err)
	}
	sess, err := s.createWith(model, path, cfg, false)
	if err != nil {
		return err
	}
	s.sess, s.status.Provider = sess, CPU
	return nil
}

// errCUDA marks failures of the CUDA provider itself, as opposed to the model.
var errCUDA = errors.New("cuda provider")

func (s *Session) createWith(model []byte, path string, cfg sessionConfig, cuda bool) (*onnx.DynamicAdvancedSession, error) {
	so, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(cfg.intraOp); err != nil {
		return nil, fmt.Errorf("intra-op threads: %w", err)
	}
	level, _ := cfg.optimization.level()
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return nil, fmt.Errorf("graph optimization: %w", err)
	}
	if cfg.interOp > 1 {
		if err := so.SetExecutionMode(onnx.ExecutionModeParallel); err != nil {
			return nil, fmt.Errorf("execution mode: %w", err)
		}
	}
	if err := so.SetInterOpNumThreads(cfg.interOp); err != nil {
		return nil, fmt.Errorf("inter-op threads: %w", err)
	}
	if cuda {
		if err := appendCUDA(so, cfg.deviceID); err != nil {
			return nil, fmt.Errorf("%w: %w", errCUDA, err)
		}
	}
	inNames, outNames := names(s.inputs), names(s.outputs)
	var sess *onnx.DynamicAdvancedSession
	if path != "" {
		sess, err = onnx.NewDynamicAdvancedSession(path, inNames, outNames, so)
	} else {
		sess, err = onnx.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, so)
	}
	if err != nil {
		if cuda {
			return nil, fmt.Errorf("%w: %w", errCUDA, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	return sess, nil
}

func appendCUDA(so *onnx.SessionOptions, deviceID int) error {
	co, err := onnx.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(deviceID)}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(co)
}

// names lists the names of infos.
func names(infos []Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Name
	}
	return out
}

// list joins the names of infos for error messages.
func list(infos []Info) string {
	if len(infos) == 0 {
		return "none"
	}
	return strings.Join(names(infos), ", ")
}

// Model returns what the model file declares (all inputs and outputs, IR version, opsets).
func (s *Session) Model() ModelInfo {
	m := *s.model
	m.Opsets = maps.Clone(m.Opsets)
	m.Inputs, m.Outputs = cloneInfos(m.Inputs), cloneInfos(m.Outputs)
	return m
}

// Inputs describes the inputs every Run takes, in order.
func (s *Session) Inputs() []Info { return cloneInfos(s.inputs) }

// Outputs describes the outputs every Run computes, in order.
func (s *Session) Outputs() []Info { return cloneInfos(s.outputs) }

// Status reports the execution provider in use and why it differs from the one asked for.
func (s *Session) Status() Status { return s.status }

// Provider returns the execution provider in use.
func (s *Session) Provider() Provider { return s.status.Provider }

// Close releases the ONNX Runtime session after runs in flight finish. Later runs fail with
// ErrClosed; closing twice is a no-op.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.optsMu.Lock()
	for _, ro := range s.idleOpts {
		ro.Destroy()
	}
	s.idleOpts = nil
	s.optsMu.Unlock()
	err := s.sess.Destroy()
	s.sess = nil
	release()
	if err != nil {
		return fmt.Errorf("ort: close session: %w", err)
	}
	return nil
}
