// Package serving answers predictions of S3T models: per shard, the checkpoint the ledger says
// it serves (the longest live and trained prefix), run through ONNX Runtime by an
// adapters.Predictor, and the shards' softmax probabilities averaged (METHOD.md, Serving).
//
// Everything is loaded lazily and cached: the backbone (by its SHA-256, shared by the models
// of one backbone), a small pool of Predictors per model, and the decoded checkpoints that
// are served now (a checkpoint no longer served is dropped at the next reload).
//
// Consistency: every Predict reads the model's ledger version and creation time (store.Stamp,
// one indexed row) and answers from a serving state that covers them, re-reading store.Serving
// when the cached state is older (with a state cached, the read runs beside the prediction, and
// a prediction that started on an out-of-date state is computed again: see PredictWith). A
// deletion commits its version bump before its receipt is returned, so a prediction started
// after the receipt never answers with a switched-off group. A replica that cannot read the
// version answers ErrUnavailable, never from its cache; a checkpoint blob whose samples digest is
// not the one its ledger record names is never served. (An embedded server's store is the
// ledger's only writer and knows the version without reading it, store.WithExclusive: no
// deletion can commit there unknown to it.)
package serving

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/internal/warmpool"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
	"github.com/s3t-dev/s3t/unlearning"
)

// Errors of the service. Callers check them with errors.Is; store.ErrNotFound passes through
// for an unknown model.
var (
	// ErrInvalidInput: the inputs do not fit the model (count, size, values).
	ErrInvalidInput = errors.New("serving: invalid input")
	// ErrNotLive: no shard of the model serves a checkpoint (never trained, or every prefix
	// was cut by deletions and not yet retrained).
	ErrNotLive = errors.New("serving: no trained checkpoint live")
	// ErrUnavailable: the ledger could not be read, so the service cannot tell what is served
	// now and refuses to answer from its cache.
	ErrUnavailable = errors.New("serving: ledger unavailable")
)

// NotLiveError is ErrNotLive for one model.
type NotLiveError struct{ Model string }

func (e *NotLiveError) Error() string {
	return fmt.Sprintf("model %q has no trained checkpoint live; train it", e.Model)
}

// Is makes errors.Is(err, ErrNotLive) hold.
func (e *NotLiveError) Is(target error) bool { return target == ErrNotLive }

// notFoundError is the store's not-found error for an unknown model, worded for the client
// (the store's says which read failed, such as the ledger version's "stamp"); it unwraps to the
// store's, so errors.Is(err, store.ErrNotFound) holds.
type notFoundError struct {
	model string
	err   error
}

func (e *notFoundError) Error() string { return fmt.Sprintf("model %q: not found", e.model) }
func (e *notFoundError) Unwrap() error { return e.err }

// modelNotFound words err, which wraps store.ErrNotFound, as the unknown model name.
func modelNotFound(name string, err error) error { return &notFoundError{model: name, err: err} }

// DefaultMaxBatch is the default Config.MaxBatch.
const DefaultMaxBatch = 1024

// Config configures a Service. Store and Blobs are required.
type Config struct {
	Store *store.Store
	Blobs *store.Blobs
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Threads is ONNX Runtime's intra-op threads per session (0: 1 when Pool > 1, else the
	// runtime's default).
	Threads int
	// Pool is the number of Predictors per model, i.e. the predictions of one model that run
	// at once (default GOMAXPROCS). A Predictor is not safe for concurrent use.
	Pool int
	// MaxBatch caps the inputs of one Predict (default DefaultMaxBatch).
	MaxBatch int
	// Spin is how long, after a lone prediction, the service keeps its helpers (as many as the
	// loaded model of most shards can use, at most one per core up to 2 cores, then one per 2
	// cores: see helperCount and helpers.ensure) polling for the next before they
	// sleep (default DefaultSpin; negative: sleep at once). Waking a sleeping thread costs
	// 0.1-0.3 ms on a virtual machine (go test ./serving -bench Wake), more than a shard of a
	// small model takes: under steady traffic the polling helpers are what lets one
	// prediction's shards run on several cores at once, and they keep the cores that receive
	// requests awake. They yield to any other runnable thread, and do not poll for 2 ms after
	// predictions overlapped; their cost is up to Spin of CPU per helper after the last
	// prediction.
	Spin time.Duration
}

// DefaultSpin is the default Config.Spin.
const DefaultSpin = 10 * time.Millisecond

// Service serves predictions. It is safe for concurrent use; Close releases its ONNX Runtime
// sessions.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	models map[string]*model
	loads  map[string]*load // models being loaded, by name
	closed bool

	bmu       sync.Mutex                 // serialises backbone loads
	backbones map[string]*loadedBackbone // by SHA-256 (guarded by bmu)

	// testHookLoad, when set, is called as a model starts loading, outside every lock.
	testHookLoad func(name string)
	// testHookRead, when set, is called as the ledger read of a prediction on a cached state
	// starts (on a helper, or on the caller).
	testHookRead func()
	// testHookBatch, when set, is called by a batch worker before each batch it runs.
	testHookBatch func()
	// testHookSpread, when set, is called as a prediction under load starts shares of its shards
	// on goroutines of their own (see spreads).
	testHookSpread func()
	helpers        *helpers // nil with one core or a pool of one
	coalesced      atomic.Int64
	recomputed     atomic.Int64 // see Recomputed
	runs           runSizes     // see RunSizes
}

// runSizeBounds are the upper bounds of the buckets of RunSizes.
var runSizeBounds = [...]int{1, 2, 4, 8, 16, 32, 64}

// RunSizeBounds returns the upper bounds of the buckets of RunSizes.
func RunSizeBounds() []int { return slices.Clone(runSizeBounds[:]) }

// runSizes counts ONNX Runtime runs of a shard by how many inputs each ran: one bucket per
// bound of runSizeBounds (inputs <= bound, above the bound before) and one beyond the last.
type runSizes struct {
	buckets [len(runSizeBounds) + 1]atomic.Int64
	inputs  atomic.Int64
}

func (r *runSizes) add(n int) {
	i, _ := slices.BinarySearch(runSizeBounds[:], n)
	r.buckets[i].Add(1)
	r.inputs.Add(int64(n))
}

// RunSizes returns how many ONNX Runtime runs of a shard the service has made so far, by the
// number of inputs in each (counts[i]: runs of more than bounds[i-1] and at most bounds[i]
// inputs, bounds being RunSizeBounds; the last, more than the last bound), and the inputs of all
// of them.
// A prediction of one input alone makes runs of 1; a batch of queued predictions, runs of
// their inputs together: the sizes show how much dynamic batching coalesces.
func (s *Service) RunSizes() (counts []int64, inputs int64) {
	// add counts the bucket before the inputs, so with the inputs read first every run in the
	// sum is in the counts too: while runs are counted the sum may lag, never run ahead.
	inputs = s.runs.inputs.Load()
	counts = make([]int64, len(s.runs.buckets))
	for i := range counts {
		counts[i] = s.runs.buckets[i].Load()
	}
	return counts, inputs
}

type loadedBackbone struct {
	model    *backbone.Model
	manifest *backbone.Manifest
}

// New returns a service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Blobs == nil {
		return nil, errors.New("serving: Config.Store and Config.Blobs are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Pool <= 0 {
		cfg.Pool = runtime.GOMAXPROCS(0)
	}
	if cfg.Threads <= 0 && cfg.Pool > 1 {
		cfg.Threads = 1
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Spin == 0 {
		cfg.Spin = DefaultSpin
	}
	s := &Service{cfg: cfg, log: cfg.Logger, models: map[string]*model{}, loads: map[string]*load{}, backbones: map[string]*loadedBackbone{}}
	if n := runtime.GOMAXPROCS(0); n > 1 && cfg.Pool > 1 {
		s.helpers = newHelpers(helperCount(n), max(cfg.Spin, 0))
	}
	return s, nil
}

// helperCount is the most helpers of a process of n Ps (GOMAXPROCS): n up to 2, else half of
// them. Fewer run while no loaded model could use them all (see helpers.ensure).
//
// A polling helper yields to other goroutines with runtime.Gosched, which puts it on the
// scheduler's global run queue, and a P that finds work there does not poll the network. With a
// helper on every P, a request whose bytes arrive after its goroutine parked waited for sysmon's
// network poll, every 10 ms: with 16 helpers on 16 cores, s3t bench serve measured one client's
// single-input predictions at p50 2.0 ms and p99 11 ms, against 0.55 ms in the handler, and
// GOMAXPROCS=4 on 2 cores did the same. With at most half the Ps polling, idle Ps wait in the
// network poller. Two cores are the exception, measured: both must stay awake (one helper made
// a prediction 0.53 ms instead of 0.34), and the scheduler's batched takes from the global queue
// leave it empty often enough that the network is polled.
func helperCount(n int) int {
	if n <= 2 {
		return n
	}
	return max(2, n/2)
}

// Coalesced returns how many predictions so far waited in a model's queue and then ran in one
// batch with other waiting ones.
func (s *Service) Coalesced() int64 { return s.coalesced.Load() }

// Info describes a model's inputs and outputs.
type Info struct {
	Name string
	// InputName and InputShape describe one example (without the batch axis).
	InputName  string
	InputShape []int64
	// InputSize is the number of float32 values of one example.
	InputSize int
	// Labels are the class names, by index.
	Labels []string
	// MaxBatch is the most inputs one prediction may have (Config.MaxBatch), so that a server
	// can refuse a larger request before it parses the inputs.
	MaxBatch int
}

// Served is what one shard served a prediction with: C[Shard, Sequence, Length] of generation
// Gen, or nothing when Length is 0.
type Served struct {
	Shard, Sequence, Length, Gen int
}

// Prediction is the aggregated prediction of one input.
type Prediction struct {
	// Label is the predicted class index (Info.Labels[Label] is its name).
	Label int
	// Probabilities[c] is the mean over the serving shards of their softmax probability of c.
	Probabilities []float64
}

// Result is the answer to one Predict.
type Result struct {
	Model       string
	Labels      []string
	Predictions []Prediction
	// Served has one entry per shard.
	Served []Served
	// Version is the ledger version of the serving state used.
	Version int64
}

// model is a model's cached record, predictors and serving state.
type model struct {
	name    string
	created time.Time
	config  []byte
	rec     *training.Record
	inf     *Info    // handed to PredictWith's decode
	svc     *Service // its helpers, counters, logger and test hooks
	// sem holds a token per Predictor in use; idle holds the others, and hands out the one whose
	// sessions last ran on the caller's CPU (their memory hot in that core's caches), else one
	// that never ran, else the one idle longest (see warmpool). A Predictor taken on one thread
	// for a share that runs on another is traded there (warmpool.Pool.Trade).
	sem    chan struct{}
	fmu    sync.Mutex
	idle   warmpool.Pool[*adapters.Predictor]
	closed bool          // set by drain, under fmu
	gone   chan struct{} // closed by drain
	all    []*adapters.Predictor

	// queue holds the predictions waiting for a batch worker (see runQueued), queued their
	// inputs, workers the batch workers started and not ended (see work), lanes how many run
	// at once while fewer than soloInputs inputs wait (see lanes).
	qmu     sync.Mutex
	queue   []*call
	queued  int
	workers int
	lanes   int

	mu    sync.Mutex // serialises reloads of state
	state *state     // guarded by smu
	smu   sync.RWMutex
}

// state is what a model serves at one ledger version.
type state struct {
	version int64
	// read is when the ledger read of this state began: a state read after a caller read the
	// version is at least as new as that version.
	read time.Time
	// shards[k] is shard k's record (nil: serves nothing), cks[k] its decoded checkpoint.
	shards []*store.CheckpointRecord
	cks    []*adapters.Checkpoint
	live   int
}

func (m *model) current() *state {
	m.smu.RLock()
	defer m.smu.RUnlock()
	return m.state
}

// Info returns a model's input and output description (store.ErrNotFound when unknown). It reads
// the ledger, so a model deleted, or deleted and created again, since it was loaded is not
// described from the cache.
func (s *Service) Info(ctx context.Context, name string) (*Info, error) {
	l := s.stamp(ctx, name)
	if l.err != nil {
		return nil, l.err
	}
	m, err := s.modelAt(ctx, name, l)
	if err != nil {
		return nil, err
	}
	return m.info(s.cfg.MaxBatch), nil
}

func (m *model) info(maxBatch int) *Info {
	return &Info{Name: m.name, InputName: m.rec.InputName, InputShape: append([]int64(nil), m.rec.InputShape...),
		InputSize: m.rec.InputSize(), Labels: append([]string(nil), m.rec.Labels...), MaxBatch: maxBatch}
}

// Ready reports whether some shard of the model serves a checkpoint now (at the current
// ledger version); the error is store.ErrNotFound or ErrUnavailable.
func (s *Service) Ready(ctx context.Context, name string) (bool, error) {
	_, st, err := s.fresh(ctx, name)
	if err != nil {
		return false, err
	}
	return st.live > 0, nil
}

// Predict returns the model's prediction of each input (each Info.InputSize float32 values).
func (s *Service) Predict(ctx context.Context, name string, inputs [][]float32) (*Result, error) {
	return s.PredictWith(ctx, name, func(info *Info) ([]float32, int, error) { return flatten(info, inputs) })
}

// PredictWith is Predict of the inputs that decode returns, given the model's Info (which it
// must not modify): n inputs laid end to end in x, each Info.InputSize values. A server hands
// over the decoding of a request, so that the service can read the ledger meanwhile; it parses
// the inputs straight into one slice, which the prediction only reads.
//
// Every prediction reads the model's ledger version, and answers from a serving state that
// covers it (see the package doc). When the model and a live serving state are cached, that read
// runs beside the rest of the prediction instead of before it: an idle core starts it while
// decode runs, and when none has by the time the inputs are decoded, the caller runs it while
// the helpers start the shards. The shards start on the cached state; the answer is kept only if
// the state covers the version read (the same check that otherwise comes before any run), and is
// computed again on a fresh state otherwise (a deletion or a retraining committed since). Either
// way the answer comes from a state at least as new as the ledger when the request arrived. The
// read costs 25-30 µs of a 0.3 ms prediction on the demo model, since the polling and the shard
// runs leave SQLite's code and pages cold (go test ./serving -bench LedgerVersion gives 3-4 µs
// warm); parsing one 784-value JSON input costs 9-14 µs (go test ./training -bench ParseInput).
func (s *Service) PredictWith(ctx context.Context, name string, decode func(*Info) (x []float32, n int, err error)) (*Result, error) {
	m, st := s.cached(name)
	if st == nil || st.live == 0 {
		return s.predictFresh(ctx, name, decode)
	}
	var l ledgerStamp
	read := &share{run: func() {
		if s.testHookRead != nil {
			s.testHookRead()
		}
		defer trace.StartRegion(ctx, "ledger read").End()
		l = s.stamp(ctx, name)
	}, done: make(chan struct{})}
	if s.helpers != nil && s.helpers.polling() {
		s.helpers.offer(read)
	}
	x, n, err := decode(m.inf)
	if err == nil {
		err = s.check(m, x, n)
	}
	if err != nil {
		// A read no helper has started never runs. One that has is waited for, so that a panic
		// in it reaches this caller (and the server's recovery and log) instead of vanishing.
		if !read.claim() {
			if v := read.wait(); v != nil {
				panic(v)
			}
		}
		return nil, err
	}
	beside := read.run // no helper has started the read: run it while the helpers start the shards
	if !read.claim() {
		beside = nil
	}
	outputs, err := m.run(ctx, st, x, n, beside)
	if beside == nil {
		if v := read.wait(); v != nil {
			panic(v)
		}
	}
	if l.err != nil {
		return nil, l.err
	}
	if l.created.Equal(m.created) && st.covers(l.version, l.asked) {
		if err != nil {
			return nil, err
		}
		return m.result(st, outputs, n)
	}
	s.recomputed.Add(1) // the ledger moved on since st: answer from a fresh state
	return s.predictFresh(ctx, name, func(*Info) ([]float32, int, error) { return x, n, nil })
}

// predictFresh reads the ledger version, then brings the serving state up to it, then predicts.
func (s *Service) predictFresh(ctx context.Context, name string, decode func(*Info) ([]float32, int, error)) (*Result, error) {
	m, st, err := s.fresh(ctx, name)
	if err != nil {
		return nil, err
	}
	x, n, err := decode(m.inf)
	if err != nil {
		return nil, err
	}
	if err := s.check(m, x, n); err != nil {
		return nil, err
	}
	if st.live == 0 {
		return nil, &NotLiveError{Model: name}
	}
	outputs, err := m.run(ctx, st, x, n, nil)
	if err != nil {
		return nil, err
	}
	return m.result(st, outputs, n)
}

// Recomputed returns how many predictions so far started on a cached serving state that the
// ledger read beside them showed was out of date, and were computed again on the current one.
func (s *Service) Recomputed() int64 { return s.recomputed.Load() }

// cached returns the cached model and its serving state (nil when either is not loaded yet).
func (s *Service) cached(name string) (*model, *state) {
	s.mu.Lock()
	m := s.models[name]
	s.mu.Unlock()
	if m == nil {
		return nil, nil
	}
	return m, m.current()
}

// flatten checks each input's size and lays them end to end (Predict's decode).
func flatten(info *Info, inputs [][]float32) ([]float32, int, error) {
	if len(inputs) == 1 && len(inputs[0]) == info.InputSize {
		return inputs[0], 1, nil // read only, and not kept past the prediction
	}
	if len(inputs) == 0 || len(inputs) > info.MaxBatch {
		return nil, len(inputs), nil // check says why
	}
	x := make([]float32, 0, len(inputs)*info.InputSize)
	for i, in := range inputs {
		if len(in) != info.InputSize {
			return nil, 0, fmt.Errorf("%w: input %d has %d values, want %d (shape %v)", ErrInvalidInput, i, len(in), info.InputSize, info.InputShape)
		}
		x = append(x, in...)
	}
	return x, len(inputs), nil
}

// check checks what a decode gave: from 1 to MaxBatch inputs of the model's input size, end to
// end in x.
func (s *Service) check(m *model, x []float32, n int) error {
	if n <= 0 {
		return fmt.Errorf("%w: no inputs", ErrInvalidInput)
	}
	if n > s.cfg.MaxBatch {
		return fmt.Errorf("%w: %d inputs, at most %d per request", ErrInvalidInput, n, s.cfg.MaxBatch)
	}
	if size := m.rec.InputSize(); len(x) != n*size {
		return fmt.Errorf("%w: %d values for %d inputs, want %d each (shape %v)", ErrInvalidInput, len(x), n, size, m.rec.InputShape)
	}
	return nil
}

// result aggregates the shards' logits of n inputs computed on st.
func (m *model) result(st *state, outputs [][]float32, n int) (*Result, error) {
	classes := len(m.rec.Labels)
	// Finite inputs can still overflow the backbone (values near float32's limit): its NaN
	// would otherwise become a 500, or an arbitrary label with NaN probabilities.
	for k, out := range outputs {
		for j, v := range out {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%w: input %d: shard %d's output is not finite: its values are too large for the backbone", ErrInvalidInput, j/classes, k)
			}
		}
	}
	scores, labels, err := unlearning.Aggregate(unlearning.MeanProbs, outputs, n, classes)
	if err != nil {
		return nil, fmt.Errorf("serving: %q: %w", m.name, err)
	}
	res := &Result{Model: m.name, Labels: m.rec.Labels, Version: st.version, Served: st.served(), Predictions: make([]Prediction, n)}
	for i := range n {
		res.Predictions[i] = Prediction{Label: labels[i], Probabilities: scores[i*classes : (i+1)*classes : (i+1)*classes]}
	}
	return res, nil
}

// run computes every serving shard's logits for x (n inputs). A prediction alone in the service
// runs at once when a Predictor is idle: its shards split over the idle Predictors and the
// helpers run the other shares (each Predictor runs ONNX Runtime on one thread, so a lone
// request uses the idle cores). Under load, while the cores outnumber the shards of the
// predictions in flight (see spreads), a prediction runs at once too, its shards spread over idle
// Predictors on goroutines of their own. Otherwise one of soloInputs inputs or more runs at once
// on one Predictor, and a smaller one waits in the model's queue, where the model's batch workers
// run it together with the other waiting predictions of the same serving state, as one batch
// (see runQueued).
//
// beside, when not nil, is called once by the caller while the shards run, or once the
// prediction waits in the queue.
func (m *model) run(ctx context.Context, st *state, x []float32, n int, beside func()) ([][]float32, error) {
	lone, spread, h := true, false, m.svc.helpers
	if h != nil {
		h.begin()
		defer h.end()
		lone = h.alone()
		spread = !lone && spreads(int(h.inflight.Load()), st.live, runtime.GOMAXPROCS(0))
	}
	classes := len(m.rec.Labels)
	if lone || spread || n >= soloInputs {
		if ps := m.tryAcquire(1); len(ps) == 1 {
			return m.runNow(ctx, st, x, n, classes, ps[0], beside, spread)
		}
	}
	return m.runQueued(ctx, st, x, n, classes, beside)
}

// spreads reports whether a prediction of a model serving shards shards, one of inflight
// predictions in the service, runs at once under load with its shards spread over idle
// Predictors: while every prediction in flight could have a core per shard (inflight x shards
// <= procs, GOMAXPROCS).
// Queueing for a batch pays off when the cores are all busy, since a batch costs less per input;
// while cores are idle, spreading a prediction's shards over them cuts its latency instead.
//
// On a 16-core host (s3t bench serve, 8 clients, the demo model's 2 shards, alternated with the
// previous build), the p50 of HTTP over the direct ensemble went from 1.53-1.82x to 1.18-1.24x
// for one input a request, and from 1.31-1.73x to 1.04-1.36x for 8: the server's own time per
// request of one input fell from 0.81-0.96 ms to 0.61-0.69 ms. Starting a goroutine per share
// rather than offering shares to the sleeping helpers mattered: offered to them, one input stayed
// at 1.58x. On 2 cores it never holds for 2 shards or more (inflight is then 2 or more), so
// nothing changes there.
func spreads(inflight, shards, procs int) bool {
	return shards > 1 && inflight*shards <= procs
}

// runNow runs one prediction on p (released at the end), and on more idle Predictors when it is
// alone, its extra shares offered to the helpers, or when spread (see spreads), each extra share
// started on a goroutine of its own (under load the helpers sleep, and a goroutine per share
// starts as soon as an idle core takes it). beside runs once the shares are offered, before the
// caller's own; a share nobody has started by the time the caller's own is done is run by the
// caller.
func (m *model) runNow(ctx context.Context, st *state, xs []float32, n, classes int, p *adapters.Predictor, beside func(), spread bool) ([][]float32, error) {
	x := ort.NewTensor(xs, append([]int64{int64(n)}, m.rec.InputShape...)...)
	var shards []int
	for k, c := range st.cks {
		if c != nil {
			shards = append(shards, k)
		}
	}
	preds, h := []*adapters.Predictor{p}, m.svc.helpers
	offer := h != nil && h.alone() && h.polling()
	if offer || spread {
		preds = append(preds, m.tryAcquire(len(shards)-1)...)
	}
	defer func() {
		for _, p := range preds {
			m.release(p)
		}
	}()
	outputs := make([][]float32, len(st.cks))
	errs := make([]error, len(preds))
	// work runs share w (shards w, w+len(preds), ...) on preds[slot], first traded for an idle
	// Predictor that last ran on this CPU when there is one: the extra Predictors were taken on
	// the caller's thread, and a share runs wherever its helper or goroutine is.
	work := func(w, slot int) {
		p := m.idle.Trade(preds[slot])
		preds[slot] = p
		for i := w; i < len(shards); i += len(preds) {
			k := shards[i]
			v, err := m.shardLogits(ctx, p, k, st.cks[k], x, n, classes)
			if err != nil {
				errs[w] = err
				return
			}
			outputs[k] = v
		}
	}
	shares := make([]*share, len(preds)-1)
	if !offer && len(shares) > 0 && m.svc.testHookSpread != nil {
		m.svc.testHookSpread()
	}
	for j := range shares {
		shares[j] = &share{run: func() { work(j+1, j+1) }, done: make(chan struct{})}
		if offer {
			h.offer(shares[j])
		} else {
			go shares[j].do()
		}
	}
	// A panic here is raised only once every share has ended: the Predictors go back to the
	// pool when this returns, and none may still be running a share.
	var panicked any
	mine := func(f func()) {
		defer func() {
			if v := recover(); v != nil && panicked == nil {
				panicked = v
			}
		}()
		f()
	}
	if beside != nil {
		mine(beside)
	}
	mine(func() { work(0, 0) })
	for j, sh := range shares {
		if sh.claim() {
			// Nobody has started it: run it here rather than wait, on this thread's
			// Predictor, whose session ran here last.
			mine(func() { work(j+1, 0) })
			continue
		}
		r := trace.StartRegion(ctx, "wait for a share")
		v := sh.wait()
		r.End()
		if v != nil && panicked == nil {
			panicked = v
		}
	}
	if panicked != nil {
		panic(panicked)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return outputs, nil
}

// shardLogits runs shard k's checkpoint ck on p for x, n inputs: n*classes logits.
func (m *model) shardLogits(ctx context.Context, p *adapters.Predictor, k int, ck *adapters.Checkpoint, x ort.Tensor, n, classes int) ([]float32, error) {
	defer trace.StartRegion(ctx, "shard").End()
	t, err := p.Logits(ctx, ck, x, 0)
	m.idle.Ran(p)
	var v []float32
	if err == nil {
		m.svc.runs.add(n)
		v, err = ort.Values[float32](t)
	}
	if err == nil && len(v) != n*classes {
		err = fmt.Errorf("head gives %d values for %d inputs of %d classes", len(v), n, classes)
	}
	if err != nil {
		return nil, fmt.Errorf("serving: %q shard %d: %w", m.name, k, err)
	}
	return v, nil
}

// maxCoalesced caps the inputs of one batch of queued predictions, since each of them waits for
// the whole batch. On the demo model a batch costs 160-170 µs an input at 8 inputs, half what
// one input alone costs, 142-151 at 16 and 139-143 at 32 (go test ./serving -bench Direct, two
// sets of 3 runs, on 2 cores): so two waiting requests of 8 inputs run as one batch of 16, and
// a cap of 64 only made 8 clients of 8 inputs each wait longer (s3t bench serve). With 16 rather
// than 8, those clients (2 cores, a minimal load generator, 3,000 requests, four alternated
// rounds) made 1,075-1,114 requests/s against 921-1,099 (medians 1,090 and 944).
const maxCoalesced = 16

// soloInputs is the size from which a prediction is worth an ONNX Runtime run of its own under
// load, and from which waiting predictions are worth a batch worker beyond the model's lanes
// (see moreWorkersLocked): half of 8 inputs, the batch that costs half as much per input as one
// input alone.
const soloInputs = 4

// lanes is how many batch workers of a model run at once while fewer than soloInputs inputs
// wait: half the cores, at least one, since the other cores serve HTTP.
//
// On 2 cores, 8 clients of single inputs (a minimal load generator, 6,000 requests, four runs
// each, alternated): one lane, a second from 4 inputs waiting, made 3,500-4,080
// predictions/s against 2,980-3,050 when every idle session ran the next request at once. Those
// runs were mostly single inputs, each costing the 0.35 ms of a batch of 1 where a batch of 4
// costs 0.2 ms an input, and with both cores in ONNX Runtime (a cgo call keeps its P) the
// requests in HTTP waited for the runtime to take a P back. A second lane for any waiting
// prediction gave 2,900-2,930; one lane alone 2,790-3,050; the second from 3 waiting inputs
// 3,380-3,400, from 5 or 6 2,970-3,230.
func lanes(pool int) int {
	return max(1, min(pool, runtime.GOMAXPROCS(0)/2))
}

// call is a prediction waiting in a model's queue for a batch worker.
type call struct {
	st   *state
	x    []float32
	n    int
	done chan callResult // buffered: whoever runs the call never blocks on it
}

type callResult struct {
	outputs [][]float32
	err     error
}

// runQueued queues a prediction, starts a batch worker when the queue needs one (see
// moreWorkersLocked), calls beside (when not nil), and waits until a worker has run the
// prediction, in one batch with other waiting predictions of the same serving state. Under load
// this trades a run per request for a run per batch, which costs a fraction per input; each
// input's logits are computed row by row, the same as alone (TestBatchedEqualsAlone).
func (m *model) runQueued(ctx context.Context, st *state, x []float32, n, classes int, beside func()) ([][]float32, error) {
	c := &call{st: st, x: x, n: n, done: make(chan callResult, 1)}
	m.qmu.Lock()
	m.queue = append(m.queue, c)
	m.queued += n
	start := m.moreWorkersLocked()
	m.qmu.Unlock()
	if start {
		go m.work(classes)
	}
	if beside != nil {
		beside() // while a worker runs the prediction
	}
	defer trace.StartRegion(ctx, "queued").End()
	select {
	case r := <-c.done:
		return r.outputs, r.err
	case <-ctx.Done():
		m.unqueue(c) // if a batch took it meanwhile, its result is dropped
		return nil, ctx.Err()
	case <-m.gone: // drain holds every session for good: no worker takes it any more
		if m.unqueue(c) {
			return nil, m.unloaded()
		}
		r := <-c.done // a worker took it before: drain waits for that batch
		return r.outputs, r.err
	}
}

// moreWorkersLocked reports whether the queue needs one more batch worker, and counts it as
// started (m.qmu held): one runs whenever predictions wait, up to m.lanes while any wait, and
// more, up to a session each, while soloInputs inputs or more wait.
func (m *model) moreWorkersLocked() bool {
	if m.queued == 0 || m.workers >= len(m.all) {
		return false
	}
	if m.workers < m.lanes || m.queued >= soloInputs {
		m.workers++
		return true
	}
	return false
}

// work is a batch worker: it takes an idle session, then runs the queued predictions in
// batches (the oldest waiting one, with the other waiting ones of its serving state, up to
// maxCoalesced inputs) until the queue is empty, the model is unloaded, or a batch panics (see
// runBatchSafely; the queue then gets a new worker). Taking the next batch as the previous one
// ends spares a hand-over between goroutines per batch.
func (m *model) work(classes int) {
	var p *adapters.Predictor
	select {
	case m.sem <- struct{}{}:
		p, _ = m.pop() // nil once drain has begun
	case <-m.gone:
	}
	if p != nil {
		defer func() { m.release(p) }()
	}
	for {
		m.qmu.Lock()
		var batch []*call
		if p != nil && !m.closing() {
			batch = m.takeLocked()
		}
		if len(batch) == 0 {
			m.workers--
			m.qmu.Unlock()
			return
		}
		start := m.moreWorkersLocked()
		m.qmu.Unlock()
		if start {
			go m.work(classes)
		}
		p = m.idle.Trade(p) // this goroutine may have moved to another CPU since the last batch
		if !m.runBatchSafely(p, batch, classes) {
			// This worker ends; the predictions still waiting get another.
			m.qmu.Lock()
			m.workers--
			start := m.moreWorkersLocked()
			m.qmu.Unlock()
			if start {
				go m.work(classes)
			}
			return
		}
	}
}

// runBatchSafely runs a batch on a worker, where no HTTP handler recovers a panic: one fails the
// batch's predictions, is logged with its stack, and ends the worker (false).
func (m *model) runBatchSafely(p *adapters.Predictor, batch []*call, classes int) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			m.svc.log.Error("serving: batch worker panicked", "model", m.name, "panic", v, "stack", string(debug.Stack()))
			err := fmt.Errorf("serving: %q: internal error in a batch of %d predictions: %v", m.name, len(batch), v)
			for _, c := range batch {
				select {
				case c.done <- callResult{err: err}:
				default: // answered before the panic
				}
			}
			ok = false
		}
	}()
	if hook := m.svc.testHookBatch; hook != nil {
		hook()
	}
	m.runBatch(context.Background(), p, batch, classes)
	return true
}

// closing reports whether drain has begun.
func (m *model) closing() bool {
	select {
	case <-m.gone:
		return true
	default:
		return false
	}
}

// unqueue removes c from the queue and reports whether it was still there.
func (m *model) unqueue(c *call) bool {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	for i, q := range m.queue {
		if q == c {
			m.queue = append(m.queue[:i], m.queue[i+1:]...)
			m.queued -= c.n
			return true
		}
	}
	return false
}

// takeLocked removes from the queue its oldest call and the other calls of the same serving
// state that fit with it in maxCoalesced inputs, oldest first (m.qmu held).
func (m *model) takeLocked() []*call {
	if len(m.queue) == 0 {
		return nil
	}
	st := m.queue[0].st
	room := maxCoalesced
	var out []*call
	kept := m.queue[:0]
	for i, q := range m.queue {
		if q.st == st && (i == 0 || q.n <= room) {
			out = append(out, q)
			room -= q.n
			m.queued -= q.n
			continue
		}
		kept = append(kept, q)
	}
	clear(m.queue[len(kept):])
	m.queue = kept
	return out
}

// runBatch runs the calls as one batch on p, shard after shard, and hands each its logits.
// ctx is not cancellable: the batch runs for every call in it.
func (m *model) runBatch(ctx context.Context, p *adapters.Predictor, calls []*call, classes int) {
	total := 0
	for _, c := range calls {
		total += c.n
	}
	x := calls[0].x
	if len(calls) > 1 {
		x = make([]float32, 0, len(calls[0].x)/calls[0].n*total)
		for _, c := range calls {
			x = append(x, c.x...)
		}
	}
	st := calls[0].st
	t := ort.NewTensor(x, append([]int64{int64(total)}, m.rec.InputShape...)...)
	outs := make([][][]float32, len(calls))
	for i := range calls {
		outs[i] = make([][]float32, len(st.cks))
	}
	for k, ck := range st.cks {
		if ck == nil {
			continue
		}
		v, err := m.shardLogits(ctx, p, k, ck, t, total, classes)
		if err != nil {
			for _, c := range calls {
				c.done <- callResult{err: err}
			}
			return
		}
		off := 0
		for i, c := range calls {
			outs[i][k] = v[off*classes : (off+c.n)*classes : (off+c.n)*classes]
			off += c.n
		}
	}
	if len(calls) > 1 {
		m.svc.coalesced.Add(int64(len(calls)))
	}
	for i, c := range calls {
		c.done <- callResult{outputs: outs[i]}
	}
}

// tryAcquire takes up to k more idle Predictors without waiting.
func (m *model) tryAcquire(k int) []*adapters.Predictor {
	var out []*adapters.Predictor
	for range max(k, 0) {
		select {
		case m.sem <- struct{}{}:
		default:
			return out
		}
		m.fmu.Lock()
		var p *adapters.Predictor
		ok := !m.closed
		if ok {
			p, ok = m.idle.Get()
		}
		m.fmu.Unlock()
		if !ok {
			<-m.sem
			return out
		}
		out = append(out, p)
	}
	return out
}

func (st *state) served() []Served {
	out := make([]Served, len(st.shards))
	for k, c := range st.shards {
		out[k] = Served{Shard: k}
		if c != nil {
			out[k] = Served{Shard: k, Sequence: c.Sequence, Length: c.Stage, Gen: c.Gen}
		}
	}
	return out
}

// ledgerStamp is a read of a model's ledger version and creation time, begun at asked.
type ledgerStamp struct {
	version int64
	created time.Time
	asked   time.Time
	err     error // store.ErrNotFound (the model is forgotten) or ErrUnavailable
}

// stamp reads the model's ledger version.
func (s *Service) stamp(ctx context.Context, name string) ledgerStamp {
	l := ledgerStamp{asked: time.Now()}
	l.version, l.created, l.err = s.cfg.Store.Stamp(ctx, name)
	if errors.Is(l.err, store.ErrNotFound) {
		s.forget(name)
		l.err = modelNotFound(name, l.err)
	} else if l.err != nil {
		l.err = fmt.Errorf("%w: %w", ErrUnavailable, l.err)
	}
	return l
}

// fresh returns the model and a serving state at least as new as the ledger version read now.
func (s *Service) fresh(ctx context.Context, name string) (*model, *state, error) {
	l := s.stamp(ctx, name)
	if l.err != nil {
		return nil, nil, l.err
	}
	m, err := s.modelAt(ctx, name, l)
	if err != nil {
		return nil, nil, err
	}
	if st := m.current(); st != nil && st.covers(l.version, l.asked) {
		return m, st, nil
	}
	st, err := s.reload(ctx, m, l.version, l.asked)
	if err != nil {
		return nil, nil, err
	}
	return m, st, nil
}

// modelAt returns the model the ledger read l describes: the cached one, unless the model was
// deleted and created again under its name since this replica loaded it (its versions started
// over, so they say nothing about the cached state).
func (s *Service) modelAt(ctx context.Context, name string, l ledgerStamp) (*model, error) {
	m, err := s.model(ctx, name)
	if err != nil {
		return nil, err
	}
	if !m.created.Equal(l.created) {
		s.forgetModel(m)
		return s.model(ctx, name)
	}
	return m, nil
}

func (st *state) covers(v int64, asked time.Time) bool {
	return st.version == v || (st.version > v && st.read.After(asked))
}

// reload reads the serving state from the ledger and swaps it in, reusing the decoded
// checkpoints that are still served and dropping the others.
func (s *Service) reload(ctx context.Context, m *model, v int64, asked time.Time) (*state, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.current()
	if old != nil && old.covers(v, asked) {
		return old, nil // another prediction reloaded meanwhile
	}
	read := time.Now()
	ss, err := s.cfg.Store.Serving(ctx, m.name)
	if errors.Is(err, store.ErrNotFound) {
		s.forget(m.name)
		return nil, modelNotFound(m.name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !ss.Model.CreatedAt.Equal(m.created) || !bytes.Equal(ss.Model.Config, m.config) {
		// The model was deleted and created again under its name: start over.
		s.forgetModel(m)
		return nil, fmt.Errorf("%w: model %q changed while loading; retry", ErrUnavailable, m.name)
	}
	byKey := map[string]*adapters.Checkpoint{}
	if old != nil {
		for k, c := range old.shards {
			if c != nil {
				byKey[ckKey(c)] = old.cks[k]
			}
		}
	}
	st := &state{version: ss.Version, read: read, shards: ss.Shards, cks: make([]*adapters.Checkpoint, len(ss.Shards))}
	for k, c := range ss.Shards {
		if c == nil {
			continue
		}
		ck := byKey[ckKey(c)]
		if ck == nil {
			if ck, err = s.checkpoint(ctx, c); err != nil {
				return nil, err
			}
		}
		st.cks[k] = ck
		st.live++
	}
	m.smu.Lock()
	m.state = st
	m.smu.Unlock()
	if old == nil || old.version != st.version {
		s.log.Debug("serving state loaded", "model", m.name, "version", st.version, "live_shards", st.live)
	}
	return st, nil
}

func ckKey(c *store.CheckpointRecord) string { return c.BlobKey + "\x00" + c.Digest }

func (s *Service) checkpoint(ctx context.Context, c *store.CheckpointRecord) (*adapters.Checkpoint, error) {
	b, err := s.cfg.Blobs.Get(ctx, c.BlobKey)
	if err != nil {
		// Not %w: a missing checkpoint blob is a server fault, not an unknown model.
		return nil, fmt.Errorf("serving: checkpoint C[%d, %d, %d] of %q: %v", c.Shard, c.Sequence, c.Stage, c.Model, err)
	}
	ck, err := adapters.DecodeCheckpoint(b)
	if err != nil {
		return nil, fmt.Errorf("serving: checkpoint %s: %w", c.BlobKey, err)
	}
	if ck.Manifest.Stage != c.Stage {
		return nil, fmt.Errorf("serving: checkpoint %s holds stage %d, the ledger says %d", c.BlobKey, ck.Manifest.Stage, c.Stage)
	}
	// The digest names the samples the checkpoint was trained on: a blob that is not the one the
	// ledger recorded is never served, whatever put it there.
	if ck.Manifest.SamplesDigest != c.Digest {
		return nil, fmt.Errorf("serving: checkpoint %s was trained on samples (digest %s) other than the ledger records (%s)",
			c.BlobKey, ck.Manifest.SamplesDigest, c.Digest)
	}
	return ck, nil
}

// load is a model being loaded by the first prediction that asked for it; the others wait.
type load struct {
	done  chan struct{} // closed once m and err are set
	m     *model
	err   error
	stale bool // forgotten while loading, so not cached (guarded by Service.mu)
}

// model returns the cached model, loading its record, backbone and predictors on first use.
// Loading happens outside s.mu: the first prediction of one model (a large backbone takes
// seconds to read, check and parse) does not hold up the predictions of the others; concurrent
// first predictions of the same model wait for one load.
func (s *Service) model(ctx context.Context, name string) (*model, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errServiceClosed
		}
		if m, ok := s.models[name]; ok {
			s.mu.Unlock()
			return m, nil
		}
		l, waiting := s.loads[name]
		if !waiting {
			l = &load{done: make(chan struct{})}
			s.loads[name] = l
		}
		s.mu.Unlock()
		if !waiting {
			m, err := s.loadModel(ctx, name)
			return s.finishLoad(name, l, m, err)
		}
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if l.err != nil && (errors.Is(l.err, context.Canceled) || errors.Is(l.err, context.DeadlineExceeded)) {
			continue // the loading request gave up; this one has not
		}
		return l.m, l.err
	}
}

var errServiceClosed = errors.New("serving: service closed")

// finishLoad caches a loaded model (unless the service closed or the model was forgotten
// meanwhile) and hands the outcome to the waiting predictions.
func (s *Service) finishLoad(name string, l *load, m *model, err error) (*model, error) {
	s.mu.Lock()
	delete(s.loads, name)
	switch {
	case err != nil:
	case s.closed:
		m.close()
		m, err = nil, errServiceClosed
	case l.stale:
		m.close()
		m, err = nil, fmt.Errorf("%w: model %q was deleted or changed while loading; retry", ErrUnavailable, name)
	default:
		s.models[name] = m
	}
	s.mu.Unlock()
	l.m, l.err = m, err
	close(l.done)
	return m, err
}

// loadModel reads a model's record and backbone and makes its Predictors.
func (s *Service) loadModel(ctx context.Context, name string) (*model, error) {
	if s.testHookLoad != nil {
		s.testHookLoad(name)
	}
	sm, err := s.cfg.Store.GetModel(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, modelNotFound(name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	rec, err := training.DecodeRecord(sm)
	if err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	if len(rec.Labels) == 0 {
		return nil, fmt.Errorf("serving: model %q has no labels", name)
	}
	bb, err := s.backbone(ctx, rec)
	if err != nil {
		return nil, err
	}
	m := &model{name: name, created: sm.CreatedAt, config: bytes.Clone(sm.Config), rec: rec,
		svc: s, sem: make(chan struct{}, s.cfg.Pool), gone: make(chan struct{}), lanes: lanes(s.cfg.Pool)}
	m.inf = m.info(s.cfg.MaxBatch)
	peft := adapters.Planned{Plugin: rec.PEFT.Type, Plan: rec.Plan}
	for range s.cfg.Pool {
		p, err := adapters.NewPredictor(bb.model, bb.manifest, peft, sm.Slices, rec.HeadInput, s.cfg.Threads)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("serving: model %q: %w", name, err)
		}
		m.all = append(m.all, p)
		m.idle.Put(p)
	}
	if s.helpers != nil {
		s.helpers.ensure(rec.S3T.Shards)
	}
	return m, nil
}

// backbone returns the model's backbone, checked against its pinned SHA-256, loading it once
// for all the models that share it.
func (s *Service) backbone(ctx context.Context, rec *training.Record) (*loadedBackbone, error) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if b, ok := s.backbones[rec.BackboneSHA256]; ok {
		return b, nil
	}
	data, err := s.cfg.Blobs.Get(ctx, training.BackboneKey(rec.Backbone))
	if err != nil {
		return nil, fmt.Errorf("serving: backbone %q: %v", rec.Backbone, err) // not %w: a server fault, not an unknown model
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != rec.BackboneSHA256 {
		return nil, fmt.Errorf("serving: backbone %q has SHA-256 %s, the model was created with %s", rec.Backbone, got, rec.BackboneSHA256)
	}
	bm, err := backbone.LoadBytes(data)
	if err != nil {
		return nil, fmt.Errorf("serving: backbone %q: %w", rec.Backbone, err)
	}
	man, err := backbone.DetectManifest(bm)
	if err != nil {
		return nil, fmt.Errorf("serving: backbone %q: %w", rec.Backbone, err)
	}
	b := &loadedBackbone{model: bm, manifest: man}
	s.backbones[rec.BackboneSHA256] = b
	return b, nil
}

// Forget drops what is cached for a model (call it when the model is deleted). Predictions
// in flight finish with what they hold.
func (s *Service) Forget(name string) { s.forget(name) }

// forgetModel drops m if it is still what is cached under its name. A prediction that found m
// out of date (its model was created again) must not drop the model another one loaded since:
// that would drain it under the predictions using it.
func (s *Service) forgetModel(m *model) { s.drop(m.name, m) }

func (s *Service) forget(name string) { s.drop(name, nil) }

// drop removes the model cached under name (only when it is only, if only is not nil), marks a
// load in progress stale, and drains the removed model.
func (s *Service) drop(name string, only *model) {
	s.mu.Lock()
	m, ok := s.models[name]
	if only != nil && m != only {
		s.mu.Unlock()
		return
	}
	delete(s.models, name)
	if l := s.loads[name]; l != nil {
		l.stale = true
	}
	s.mu.Unlock()
	if ok {
		go m.drain() // closes each predictor once no prediction holds it
	}
}

// pop takes an idle Predictor once the caller holds a token of sem.
func (m *model) pop() (*adapters.Predictor, error) {
	m.fmu.Lock()
	defer m.fmu.Unlock()
	if m.closed {
		<-m.sem
		return nil, m.unloaded()
	}
	p, _ := m.idle.Get() // a token of sem leaves one idle
	return p, nil
}

func (m *model) release(p *adapters.Predictor) {
	m.idle.Put(p)
	<-m.sem
}

func (m *model) unloaded() error {
	return fmt.Errorf("%w: model %q was unloaded (deleted or changed) during the request; retry", ErrUnavailable, m.name)
}

// drain waits until no prediction holds a Predictor and closes them all. The queued
// predictions give up at once (gone).
func (m *model) drain() {
	m.fmu.Lock()
	m.closed = true
	m.fmu.Unlock()
	close(m.gone)
	for range m.all {
		m.sem <- struct{}{}
	}
	m.close()
}

func (m *model) close() {
	for _, p := range m.all {
		if err := p.Close(); err != nil {
			m.svc.log.Warn("serving: close predictor", "model", m.name, "err", err)
		}
	}
}

// Close waits for the predictions in flight and releases every ONNX Runtime session.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	models := s.models
	s.models = map[string]*model{}
	s.mu.Unlock()
	for _, m := range models {
		m.drain()
	}
	if s.helpers != nil {
		s.helpers.close()
	}
	return nil
}
