package ort

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"
	"unsafe"

	onnx "github.com/yalue/onnxruntime_go"
)

// RunStats times one Run, or one RunBatched summed over its chunks.
type RunStats struct {
	// Total is the wall time of the whole call: input checks, tensor setup, ONNX Runtime and
	// the outputs handed back.
	Total time.Duration
	// ORT is the wall time spent inside ONNX Runtime's Run. When outputs are preallocated
	// (every output shape known from the inputs, the usual case) that is the C call alone;
	// otherwise it also covers onnxruntime_go copying ONNX Runtime's outputs into Go memory.
	ORT time.Duration
	// Runs counts the ONNX Runtime runs (the chunks of RunBatched; one more when a run was
	// retried because the model declares an output shape it does not produce).
	Runs int
}

// Overhead returns the time the Go layer added around ONNX Runtime (Total - ORT).
func (r RunStats) Overhead() time.Duration { return r.Total - r.ORT }

// RunOption configures one Run or RunBatched call.
type RunOption func(*runConfig)

type runConfig struct {
	fetch []string
	check *bool
	stats *RunStats
}

// Fetch selects the outputs to return, among the session's outputs. Default: all of them.
// (ONNX Runtime still computes every output the session was created with; see WithOutputs.)
func Fetch(names ...string) RunOption {
	return func(c *runConfig) { c.fetch = append(c.fetch, names...) }
}

// CheckFinite turns the NaN/±Inf check of float inputs and outputs on or off for this call,
// overriding WithCheckFinite.
func CheckFinite(on bool) RunOption {
	return func(c *runConfig) { c.check = &on }
}

// RecordStats stores the call's timings in dst (also when the call fails).
func RecordStats(dst *RunStats) RunOption {
	return func(c *runConfig) { c.stats = dst }
}

// Run feeds the named inputs to the model and returns the named outputs. Every input the
// session takes must be given (see Inputs), with the element type the model declares, its rank,
// and its fixed dimensions; otherwise Run returns an error wrapping ErrUnknownInput,
// ErrMissingInput, ErrDType or ErrShape before ONNX Runtime sees anything. Failures inside ONNX
// Runtime wrap ErrRun. A cancelled ctx stops a run in flight (ONNX Runtime's terminate flag);
// the error then wraps ctx.Err(). Input data is not copied and must not change during the call.
func (s *Session) Run(ctx context.Context, inputs map[string]Tensor, opts ...RunOption) (map[string]Tensor, error) {
	start := time.Now()
	cfg := runConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	var st RunStats
	out, err := s.runCall(ctx, inputs, cfg, &st)
	st.Total = time.Since(start)
	if cfg.stats != nil {
		*cfg.stats = st
	}
	if err != nil {
		return nil, fmt.Errorf("ort: run: %w", err)
	}
	return out, nil
}

func (s *Session) runCall(ctx context.Context, inputs map[string]Tensor, cfg runConfig, st *RunStats) (map[string]Tensor, error) {
	fetch, err := s.fetchList(cfg.fetch)
	if err != nil {
		return nil, err
	}
	return s.run(ctx, inputs, fetch, s.checkOn(cfg), st)
}

func (s *Session) checkOn(cfg runConfig) bool {
	if cfg.check != nil {
		return *cfg.check
	}
	return s.check
}

// fetchList resolves output names to indexes into s.outputs.
func (s *Session) fetchList(names []string) ([]int, error) {
	if len(names) == 0 {
		all := make([]int, len(s.outputs))
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	var idx []int
	for _, name := range names {
		i, ok := s.outIdx[name]
		if !ok {
			if slices.ContainsFunc(s.model.Outputs, func(o Info) bool { return o.Name == name }) {
				return nil, fmt.Errorf("output %q is not computed by this session (created WithOutputs %s): %w", name, list(s.outputs), ErrUnknownOutput)
			}
			return nil, fmt.Errorf("output %q (outputs: %s): %w", name, list(s.outputs), ErrUnknownOutput)
		}
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	return idx, nil
}

// feeds checks inputs against the session and orders them as ONNX Runtime was given them.
func (s *Session) feeds(inputs map[string]Tensor, check bool) ([]Tensor, error) {
	feeds := make([]Tensor, len(s.inputs))
	for i, in := range s.inputs {
		t, ok := inputs[in.Name]
		if !ok {
			return nil, fmt.Errorf("input %q not given (inputs: %s): %w", in.Name, list(s.inputs), ErrMissingInput)
		}
		if err := checkInput(in, t); err != nil {
			return nil, err
		}
		if check {
			if err := checkFinite(t); err != nil {
				return nil, fmt.Errorf("input %q: %w", in.Name, err)
			}
		}
		feeds[i] = t
	}
	if len(inputs) > len(s.inputs) {
		var unknown []string
		for name := range inputs {
			if _, ok := s.inIdx[name]; !ok {
				unknown = append(unknown, name)
			}
		}
		sort.Strings(unknown)
		name := unknown[0]
		if slices.ContainsFunc(s.model.Inputs, func(i Info) bool { return i.Name == name && i.Optional }) {
			return nil, fmt.Errorf("input %q is optional and this session keeps its default; create the session WithOptionalInputs(%q) to feed it: %w", name, name, ErrUnknownInput)
		}
		return nil, fmt.Errorf("input %q (inputs: %s): %w", name, list(s.inputs), ErrUnknownInput)
	}
	return feeds, nil
}

// checkInput checks one tensor against the model's declaration of the input.
func checkInput(in Info, t Tensor) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("input %q: %w", in.Name, err)
	}
	if d := t.DType(); d != in.DType {
		return fmt.Errorf("input %q is %s, the model wants %s: %w", in.Name, d, in.DType, ErrDType)
	}
	if in.Shape == nil {
		return nil
	}
	if len(t.Shape) != len(in.Shape) {
		return fmt.Errorf("input %q has shape %v (rank %d), the model wants %s (rank %d): %w",
			in.Name, t.Shape, len(t.Shape), in, len(in.Shape), ErrShape)
	}
	for k, d := range in.Shape {
		if d >= 0 && t.Shape[k] != d {
			return fmt.Errorf("input %q has shape %v, the model wants %s (dimension %d must be %d): %w",
				in.Name, t.Shape, in, k, d, ErrShape)
		}
	}
	return nil
}

// run is one ONNX Runtime run of already resolved outputs.
func (s *Session) run(ctx context.Context, inputs map[string]Tensor, fetch []int, check bool, st *RunStats) (map[string]Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	feeds, err := s.feeds(inputs, check)
	if err != nil {
		return nil, err
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}

	in := make([]onnx.Value, len(feeds))
	defer destroy(in)
	for i, t := range feeds {
		if in[i], err = toORT(t); err != nil {
			return nil, fmt.Errorf("input %q: %w", s.inputs[i].Name, err)
		}
	}
	ro, stop, err := s.runOptions(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()

	out := make([]onnx.Value, len(s.outputs))
	defer destroy(out)
	results := make([]Tensor, len(s.outputs))
	pre := s.preallocate.Load() && s.allocOutputs(feeds, out, results)

	t := time.Now()
	err = s.sess.RunWithOptions(in, out, ro)
	st.ORT += time.Since(t)
	st.Runs++
	if err != nil && pre && ctx.Err() == nil {
		// The model may declare an output shape it does not produce: run again with outputs
		// allocated by ONNX Runtime, and stop preallocating if that was it.
		first := err
		destroy(out)
		clear(results)
		t = time.Now()
		err = s.sess.RunWithOptions(in, out, ro)
		st.ORT += time.Since(t)
		st.Runs++
		if err == nil && s.preallocate.CompareAndSwap(true, false) {
			s.log.Warn("ort: model output shape differs from its declaration, outputs now allocated by onnx runtime", "error", first)
		}
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrRun, err)
	}

	res := make(map[string]Tensor, len(fetch))
	for _, i := range fetch {
		name := s.outputs[i].Name
		r := results[i]
		if r.Data == nil {
			if r, err = fromORT(out[i]); err != nil {
				return nil, fmt.Errorf("output %q: %w", name, err)
			}
		}
		if check {
			if err := checkFinite(r); err != nil {
				return nil, fmt.Errorf("output %q: %w", name, err)
			}
		}
		res[name] = r
	}
	return res, nil
}

// allocOutputs allocates, in Go memory that ONNX Runtime writes into, every output whose shape
// follows from the inputs, and reports whether it allocated any. Scalars are left in out only
// (their value is read back after the run); the others are also recorded in results.
func (s *Session) allocOutputs(feeds []Tensor, out []onnx.Value, results []Tensor) bool {
	did := false
	for i, plan := range s.plans {
		if plan == nil {
			continue
		}
		shape := make([]int64, len(plan))
		for k, d := range plan {
			if d.input < 0 {
				shape[k] = d.size
			} else {
				shape[k] = feeds[d.input].Shape[d.axis]
			}
		}
		n, err := numElements(shape)
		if err != nil || n == 0 {
			continue
		}
		v, data, err := newOutput(s.outputs[i].DType, shape, n)
		if err != nil {
			continue
		}
		out[i] = v
		if len(shape) > 0 {
			results[i] = Tensor{Shape: shape, Data: data}
		}
		did = true
	}
	return did
}

// runOptions returns ONNX Runtime run options whose terminate flag is raised when ctx is done,
// and a function to release them; nil options when ctx cannot be cancelled. Options come from
// and go back to the session's idle list; options that were terminated are reset first. Called
// with s.mu read-held, and so is the release function.
func (s *Session) runOptions(ctx context.Context) (*onnx.RunOptions, func(), error) {
	if ctx.Done() == nil {
		return nil, func() {}, nil
	}
	var ro *onnx.RunOptions
	s.optsMu.Lock()
	if n := len(s.idleOpts); n > 0 {
		ro, s.idleOpts = s.idleOpts[n-1], s.idleOpts[:n-1]
	}
	s.optsMu.Unlock()
	if ro == nil {
		var err error
		if ro, err = onnx.NewRunOptions(); err != nil {
			return nil, nil, fmt.Errorf("run options: %w", err)
		}
	}
	var mu sync.Mutex
	released, terminated := false, false
	stopWatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !released {
			ro.Terminate()
			terminated = true
		}
	})
	return ro, func() {
		stopWatch()
		mu.Lock()
		released = true
		mu.Unlock()
		if terminated && ro.UnsetTerminate() != nil {
			ro.Destroy()
			return
		}
		s.optsMu.Lock()
		s.idleOpts = append(s.idleOpts, ro)
		s.optsMu.Unlock()
	}, nil
}

// RunBatched runs a large input in chunks of at most batch rows and concatenates the outputs
// along their first dimension, so that its result equals one Run over everything. The inputs
// split are those whose first dimension the model declares dynamic (they must agree on the row
// count N), or whose shape it leaves undeclared; the others (PEFT parameters, say) go whole to
// every chunk. Every fetched output
// must have one row per input row. A call with N <= batch is a plain Run. Stats (RecordStats)
// are summed over the chunks.
func (s *Session) RunBatched(ctx context.Context, inputs map[string]Tensor, batch int, opts ...RunOption) (map[string]Tensor, error) {
	start := time.Now()
	cfg := runConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	var st RunStats
	out, err := s.runBatched(ctx, inputs, batch, cfg, &st)
	st.Total = time.Since(start)
	if cfg.stats != nil {
		*cfg.stats = st
	}
	if err != nil {
		return nil, fmt.Errorf("ort: run batched: %w", err)
	}
	return out, nil
}

func (s *Session) runBatched(ctx context.Context, inputs map[string]Tensor, batch int, cfg runConfig, st *RunStats) (map[string]Tensor, error) {
	if batch < 1 {
		return nil, fmt.Errorf("batch size %d: %w", batch, ErrInvalidArgument)
	}
	fetch, err := s.fetchList(cfg.fetch)
	if err != nil {
		return nil, err
	}
	check := s.checkOn(cfg)
	var split []string
	rows := int64(-1)
	for _, in := range s.inputs {
		t, ok := inputs[in.Name]
		if !ok || (in.Shape != nil && (len(in.Shape) == 0 || in.Shape[0] >= 0)) {
			continue // missing inputs are reported by run; fixed ones are fed whole
		}
		if err := checkInput(in, t); err != nil {
			return nil, err
		}
		if len(t.Shape) == 0 {
			return nil, fmt.Errorf("input %q is a scalar, it has no rows to split: %w", in.Name, ErrShape)
		}
		if rows >= 0 && t.Shape[0] != rows {
			return nil, fmt.Errorf("input %q has %d rows, input %q has %d: %w", in.Name, t.Shape[0], split[0], rows, ErrShape)
		}
		rows = t.Shape[0]
		split = append(split, in.Name)
	}
	if rows < 0 {
		return s.run(ctx, inputs, fetch, check, st) // nothing to split
	}
	if rows <= int64(batch) {
		return s.run(ctx, inputs, fetch, check, st)
	}

	parts := make(map[string][]Tensor, len(fetch))
	chunk := maps.Clone(inputs)
	for lo := int64(0); lo < rows; lo += int64(batch) {
		hi := min(lo+int64(batch), rows)
		for _, name := range split {
			chunk[name] = sliceRows(inputs[name], lo, hi)
		}
		out, err := s.run(ctx, chunk, fetch, check, st)
		if err != nil {
			return nil, fmt.Errorf("rows %d-%d: %w", lo, hi, err)
		}
		for name, t := range out {
			if len(t.Shape) == 0 || t.Shape[0] != hi-lo {
				return nil, fmt.Errorf("output %q has shape %v for %d input rows, cannot concatenate: %w", name, t.Shape, hi-lo, ErrShape)
			}
			if p := parts[name]; len(p) > 0 && !slices.Equal(p[0].Shape[1:], t.Shape[1:]) {
				return nil, fmt.Errorf("output %q has shape %v in one chunk and %v in another: %w", name, p[0].Shape, t.Shape, ErrShape)
			}
			parts[name] = append(parts[name], t)
		}
	}
	res := make(map[string]Tensor, len(parts))
	for name, p := range parts {
		res[name] = concatRows(p)
	}
	return res, nil
}

// destroy releases the ONNX Runtime values in vs and clears the slice.
func destroy(vs []onnx.Value) {
	for i, v := range vs {
		// onnxruntime_go can leave a typed nil pointer in an output slot after a failed
		// conversion; Destroy on it would dereference nil.
		if v != nil && !reflect.ValueOf(v).IsNil() {
			v.Destroy()
		}
		vs[i] = nil
	}
}

// supported reports whether Run can feed and return tensors of type d.
func supported(d DType) bool {
	switch d {
	case Float32, Float64, Int8, Uint8, Int16, Uint16, Int32, Uint32, Int64, Uint64, Bool:
		return true
	}
	return false
}

// toORT wraps t's data (not copied) in an ONNX Runtime value.
func toORT(t Tensor) (onnx.Value, error) {
	switch d := t.Data.(type) {
	case []float32:
		return valueOf(t.Shape, d)
	case []float64:
		return valueOf(t.Shape, d)
	case []int8:
		return valueOf(t.Shape, d)
	case []uint8:
		return valueOf(t.Shape, d)
	case []int16:
		return valueOf(t.Shape, d)
	case []uint16:
		return valueOf(t.Shape, d)
	case []int32:
		return valueOf(t.Shape, d)
	case []uint32:
		return valueOf(t.Shape, d)
	case []int64:
		return valueOf(t.Shape, d)
	case []uint64:
		return valueOf(t.Shape, d)
	case []bool:
		return valueOf(t.Shape, d)
	}
	return nil, fmt.Errorf("data is %T: %w", t.Data, ErrDType)
}

func valueOf[T Element](shape []int64, data []T) (onnx.Value, error) {
	if len(shape) == 0 {
		return onnx.NewScalar(data[0])
	}
	return onnx.NewTensor(onnx.Shape(shape), data)
}

// newOutput allocates an output of n elements that ONNX Runtime fills in, returning the value
// and its Go data (nil for a scalar, whose value lives in the onnx.Scalar).
func newOutput(d DType, shape []int64, n int64) (onnx.Value, any, error) {
	switch d {
	case Float32:
		return alloc[float32](shape, n)
	case Float64:
		return alloc[float64](shape, n)
	case Int8:
		return alloc[int8](shape, n)
	case Uint8:
		return alloc[uint8](shape, n)
	case Int16:
		return alloc[int16](shape, n)
	case Uint16:
		return alloc[uint16](shape, n)
	case Int32:
		return alloc[int32](shape, n)
	case Uint32:
		return alloc[uint32](shape, n)
	case Int64:
		return alloc[int64](shape, n)
	case Uint64:
		return alloc[uint64](shape, n)
	case Bool:
		return alloc[bool](shape, n)
	}
	return nil, nil, fmt.Errorf("%s: %w", d, ErrDType)
}

func alloc[T Element](shape []int64, n int64) (onnx.Value, any, error) {
	if len(shape) == 0 {
		v, err := onnx.NewEmptyScalar[T]()
		return v, nil, err
	}
	data := alignedSlice[T](n)
	v, err := onnx.NewTensor(onnx.Shape(shape), data)
	return v, data, err
}

// outputAlign is the address alignment of the output buffers handed to ONNX Runtime, that of its
// own allocator. Some of its kernels (Eigen's vectorized Log, for one) compute the elements
// before the first aligned address of their output with scalar code, which rounds differently:
// in Go memory placed anywhere, an output's bits would depend on where the buffer happened to
// start (TestOutputBitsIndependentOfPlacement).
const outputAlign = 64

// alignedSlice returns n zero values starting at an outputAlign-aligned address.
func alignedSlice[T Element](n int64) []T {
	var zero T
	size := int64(unsafe.Sizeof(zero))
	buf := make([]T, n+outputAlign/size)
	skip := int64(0)
	if r := int64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))) % outputAlign); r != 0 {
		skip = (outputAlign - r) / size // Go aligns a slice to its element size
	}
	return buf[skip : skip+n : skip+n]
}

// fromORT turns an output value into a Tensor over Go memory.
func fromORT(v onnx.Value) (Tensor, error) {
	for _, conv := range converters {
		if t, ok := conv(v); ok {
			return t, nil
		}
	}
	return Tensor{}, fmt.Errorf("onnx runtime returned %T, not a tensor of a supported type: %w", v, ErrDType)
}

var converters = []func(onnx.Value) (Tensor, bool){
	convert[float32], convert[float64], convert[int8], convert[uint8], convert[int16],
	convert[uint16], convert[int32], convert[uint32], convert[int64], convert[uint64], convert[bool],
}

func convert[T Element](v onnx.Value) (Tensor, bool) {
	switch x := v.(type) {
	case *onnx.Tensor[T]:
		// onnxruntime_go copied ONNX Runtime's buffer into this Go slice, which outlives
		// the value's Destroy.
		return Tensor{Shape: []int64(x.GetShape()), Data: x.GetData()}, true
	case *onnx.Scalar[T]:
		return Tensor{Shape: []int64{}, Data: []T{x.GetData()}}, true
	}
	return Tensor{}, false
}
