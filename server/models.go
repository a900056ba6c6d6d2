package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
	"github.com/s3t-dev/s3t/unlearning"
)

// Defaults filled into a model spec that leaves them out.
const (
	defaultSelector     = "cyclic"
	defaultEpochs       = 1
	defaultLearningRate = 1e-3
	defaultBatchSize    = 32
)

// Upper bounds of a model spec. A model costs ledger rows, training jobs and /metrics series
// per shard and sequence, and a head per label; the training bounds keep a typo from queueing
// a job that never ends or diverges. Slices and sequences are bounded by the selector
// (sdk.MaxSlices, sdk.MaxBudget and slices!).
const (
	maxShards = 1024
	// maxTrainingUnits bounds shards x sequences, the model's training jobs (and per-sequence
	// /metrics series): 1,024 shards of 16 sequences, or 64 of 256.
	maxTrainingUnits = 16384
	maxLabels        = 10000
	maxEpochs        = 10000
	maxBatchSize     = 65536
	maxLearningRate  = 10.0
)

// checkRange is the 400 of an integer field outside [lo, hi].
func checkRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return invalidf("%s must be in [%d, %d], got %d", field, lo, hi, v)
	}
	return nil
}

// normalize fills defaults into spec and validates it (400 on a bad field).
func normalize(spec *api.ModelSpec) error {
	if spec.Backbone == "" {
		return invalidf("backbone is required")
	}
	if n := len(spec.Labels); n < 2 || n > maxLabels {
		return invalidf("labels: want 2 to %d labels, got %d", maxLabels, n)
	}
	seen := make(map[string]bool, len(spec.Labels))
	for _, l := range spec.Labels {
		if strings.ContainsFunc(l, unicode.IsControl) || strings.ContainsRune(l, utf8.RuneError) {
			return invalidf("labels: %q holds a control character, invalid UTF-8 or U+FFFD", l)
		}
		if l == "" || seen[l] {
			return invalidf("labels: %q is empty or repeated", l)
		}
		seen[l] = true
	}
	if spec.PEFT.Type == "" {
		return invalidf("peft.type is required (lora, prefix, adapter or a plugin's type)")
	}
	if len(spec.PEFT.Config) > 0 && !json.Valid(spec.PEFT.Config) {
		return invalidf("peft.config is not valid JSON")
	}
	c := &spec.S3T
	for _, f := range []struct {
		name  string
		v, hi int
	}{
		{"s3t.shards", c.Shards, maxShards},
		{"s3t.slices", c.Slices, sdk.MaxSlices},
		{"s3t.sequences", c.Sequences, sdk.MaxBudget},
	} {
		if err := checkRange(f.name, f.v, 1, f.hi); err != nil {
			return err
		}
	}
	if most := sdk.Factorial(c.Slices); c.Sequences > most {
		// Checked here too (the selector checks it as its "budget"), to name the field.
		return invalidf("s3t.sequences: at most %d! = %d distinct slice orders for %d slices, got %d", c.Slices, most, c.Slices, c.Sequences)
	}
	if n := c.Shards * c.Sequences; n > maxTrainingUnits {
		return invalidf("s3t: shards x sequences must be at most %d (a training job and /metrics series each), got %d x %d = %d",
			maxTrainingUnits, c.Shards, c.Sequences, n)
	}
	if c.Selector == "" {
		c.Selector = defaultSelector
	}
	if len(c.Prior) != 0 && len(c.Prior) != c.Slices {
		return invalidf("s3t.prior: want %d values (one per slice), got %d", c.Slices, len(c.Prior))
	}
	t := &spec.Training
	if t.Epochs == 0 {
		t.Epochs = defaultEpochs
	}
	if t.LearningRate == 0 {
		t.LearningRate = defaultLearningRate
	}
	if t.BatchSize == 0 {
		t.BatchSize = defaultBatchSize
	}
	if err := checkRange("training.epochs", t.Epochs, 1, maxEpochs); err != nil {
		return err
	}
	if err := checkRange("training.batch_size", t.BatchSize, 1, maxBatchSize); err != nil {
		return err
	}
	if !(t.LearningRate > 0 && t.LearningRate <= maxLearningRate) { // also refuses NaN
		return invalidf("training.learning_rate must be in (0, %g], got %g", maxLearningRate, t.LearningRate)
	}
	r := &spec.Retrain
	if r.MinPrefix < 0 || r.MinPrefix > c.Slices || r.MinLiveShards < 0 || r.MinLiveShards > c.Shards {
		return invalidf("retrain: min_prefix must be in [0, %d] and min_live_shards in [0, %d]", c.Slices, c.Shards)
	}
	if r.MinPrefix == 0 {
		r.MinPrefix = 1
	}
	return nil
}

// modelRecord derives what a model needs beyond its spec from its backbone (training.NewRecord).
func (s *Server) modelRecord(ctx context.Context, spec *api.ModelSpec) (*training.Record, error) {
	_, err := s.loadBackbone(ctx, spec.Backbone)
	var data []byte
	if err == nil {
		data, err = s.cfg.Blobs.Get(ctx, training.BackboneKey(spec.Backbone))
	}
	if errors.Is(err, store.ErrNotFound) { // not registered, or deleted since
		return nil, invalidf("backbone %q is not registered", spec.Backbone)
	}
	if err != nil {
		return nil, fmt.Errorf("backbone %q: %w", spec.Backbone, err)
	}
	var planner training.Planner
	if s.cfg.Plugins != nil {
		planner = func(ctx context.Context, name string, req *sdk.PlanRequest) (*sdk.PlanResponse, api.PluginRef, error) {
			plan, ref, err := s.cfg.Plugins.PlanRef(ctx, name, req)
			return plan, api.PluginRef(ref), err
		}
	}
	rec, err := training.NewRecord(ctx, *spec, data, planner)
	return rec, specError(err)
}

// specError maps an error about a model spec to its answer: a plugin that could not answer is
// 503 (retry later), a spec that does not fit 400.
func specError(err error) error {
	switch {
	case errors.Is(err, training.ErrPluginUnavailable):
		return unavailablef("%v", err)
	case errors.Is(err, training.ErrPluginFailed):
		return &statusError{status: http.StatusBadGateway, body: &api.Error{Code: api.CodePluginFailed, Message: err.Error()}, cause: err}
	case errors.Is(err, training.ErrInvalidSpec):
		return invalidf("%v", err)
	}
	return err
}

// sequences chooses the B slice orders of every shard with the spec's selector: through the
// plugin host when the server has one (the built-ins and installed selector plugins), else the
// built-ins in process. Shard k uses seed Seed+k, so a spec always yields the same layout. ref
// names the selector's build.
func (s *Server) sequences(ctx context.Context, spec *api.ModelSpec) (_ [][][]int, ref api.PluginRef, _ error) {
	name := plugins.QualifiedName(sdk.KindSelector, spec.S3T.Selector)
	var sel sdk.Selector
	var err error
	if s.cfg.Selectors != nil {
		var r plugins.Ref
		sel, r, err = s.cfg.Selectors.SelectorRef(name)
		ref = api.PluginRef(r)
	} else {
		sel, err = unlearning.NewSelector(spec.S3T.Selector)
		if p, ok := plugins.Builtins().Lookup(name); ok {
			ref = api.PluginRef{Name: name, Version: p.Version} // in process: no executable of its own
		}
	}
	if err != nil {
		return nil, ref, specError(training.PluginError("s3t.selector", spec.S3T.Selector, err))
	}
	out := make([][][]int, spec.S3T.Shards)
	for k := range out {
		req := &sdk.SelectRequest{Slices: spec.S3T.Slices, Budget: spec.S3T.Sequences, Prior: spec.S3T.Prior, Seed: spec.Seed + int64(k)}
		if err := req.Validate(); err != nil {
			return nil, ref, invalidf("s3t: %v", err)
		}
		if out[k], err = unlearning.Select(ctx, sel, req); err != nil {
			// A selector's answer that is not B distinct permutations (unlearning.ErrBadSequences)
			// is no sentinel of the spec's: PluginError makes it the plugin's fault, a 502 that
			// says what was wrong (it was a 500 "internal error", the reason in the log alone).
			return nil, ref, specError(training.PluginError("s3t.selector", spec.S3T.Selector, fmt.Errorf("shard %d: %w", k, err)))
		}
	}
	return out, ref, nil
}

func (s *Server) createModel(c echo.Context) error {
	ctx := c.Request().Context()
	var req api.CreateModelRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := checkName("model", req.Name); err != nil {
		return err
	}
	if err := normalize(&req.ModelSpec); err != nil {
		return err
	}
	rec, err := s.modelRecord(ctx, &req.ModelSpec)
	if err != nil {
		return err
	}
	seqs, selRef, err := s.sequences(ctx, &req.ModelSpec)
	if err != nil {
		return err
	}
	rec.PlannedBy.Selector = selRef
	cfg, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode model spec: %w", err)
	}
	m, err := s.insertModel(ctx, store.ModelSpec{Name: req.Name, Config: cfg, Slices: req.S3T.Slices, Sequences: seqs}, rec)
	if err != nil {
		return err
	}
	s.log.Info("model created", "model", m.Name, "backbone", req.Backbone, "peft", req.PEFT.Type,
		"shards", m.Shards, "slices", m.Slices, "sequences", req.S3T.Sequences)
	out, err := toModel(m)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

// insertModel stores a model planned on backbone bytes rec.BackboneSHA256, if the backbone
// still holds them: it may have been deleted, or registered again, while the model was planned.
// A replica beside this server may delete the backbone meanwhile too: the backbone is checked
// again after the insert (that deletion checks the models after removing it, so one of the two
// sees the other), and the model removed if it is gone.
func (s *Server) insertModel(ctx context.Context, spec store.ModelSpec, rec *training.Record) (*store.Model, error) {
	defer s.lockBackbone(rec.Backbone)()
	if err := s.backboneHolds(ctx, spec.Name, rec); err != nil {
		return nil, err
	}
	m, err := s.cfg.Store.CreateModel(ctx, spec)
	if errors.Is(err, store.ErrConflict) {
		return nil, fmt.Errorf("model %q already exists: %w", spec.Name, store.ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("create model %q: %w", spec.Name, err)
	}
	if err := s.backboneHolds(ctx, spec.Name, rec); err != nil {
		// Not on the request's context: a client gone now must not leave the model behind.
		if derr := s.cfg.Store.DeleteModel(context.WithoutCancel(ctx), spec.Name); derr != nil {
			return nil, fmt.Errorf("create model %q: remove it again: %w (after: %w)", spec.Name, derr, err)
		}
		return nil, err
	}
	return m, nil
}

// backboneHolds returns a conflict unless rec's backbone is registered with the bytes that
// model was planned on.
func (s *Server) backboneHolds(ctx context.Context, model string, rec *training.Record) error {
	b, err := s.loadBackbone(ctx, rec.Backbone)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("create model %q: backbone %q was deleted while the model was created: %w", model, rec.Backbone, store.ErrConflict)
	case err != nil:
		return fmt.Errorf("create model %q: %w", model, err)
	case b.SHA256 != rec.BackboneSHA256:
		return fmt.Errorf("create model %q: backbone %q was registered again with other bytes while the model was created: %w", model, rec.Backbone, store.ErrConflict)
	}
	return nil
}

func (s *Server) listModels(c echo.Context) error {
	ms, err := s.cfg.Store.ListModels(c.Request().Context())
	if err != nil {
		return fmt.Errorf("list models: %w", err)
	}
	out := api.ListModelsResponse{Models: make([]api.Model, 0, len(ms))}
	for _, m := range ms {
		am, err := toModel(m)
		if err != nil {
			return err
		}
		out.Models = append(out.Models, *am)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getModel(c echo.Context) error {
	m, err := s.cfg.Store.GetModel(c.Request().Context(), param(c, "name"))
	if err != nil {
		return err // the store's names the model
	}
	out, err := toModel(m)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) deleteModel(c echo.Context) error {
	name := param(c, "name")
	if err := s.cfg.Store.DeleteModel(c.Request().Context(), name); err != nil {
		return fmt.Errorf("delete model: %w", err)
	}
	if s.cfg.Serving != nil {
		s.cfg.Serving.Forget(name)
	}
	s.log.Info("model deleted", "model", name)
	return c.JSON(http.StatusOK, api.DeleteModelResponse{Name: name, Deleted: true})
}

// modelSpec decodes the spec a model was created with.
func modelSpec(m *store.Model) (api.ModelSpec, error) {
	var spec api.ModelSpec
	if err := json.Unmarshal(m.Config, &spec); err != nil {
		return spec, fmt.Errorf("model %q: decode stored spec: %w", m.Name, err)
	}
	return spec, nil
}

func toModel(m *store.Model) (*api.Model, error) {
	spec, err := modelSpec(m)
	if err != nil {
		return nil, err
	}
	var stored struct { // what the record holds beyond the spec
		PlannedBy      *api.PlannedBy `json:"planned_by"`
		BackboneSHA256 string         `json:"backbone_sha256"`
	}
	if err := json.Unmarshal(m.Config, &stored); err != nil {
		return nil, fmt.Errorf("model %q: decode stored record: %w", m.Name, err)
	}
	out := &api.Model{Name: m.Name, Spec: spec, Sequences: m.Sequences, Live: m.Live,
		Samples: m.Samples, Version: m.Version, CreatedAt: m.CreatedAt, PlannedBy: stored.PlannedBy,
		BackboneSHA256: stored.BackboneSHA256}
	for _, sv := range m.Published() {
		out.Serving = append(out.Serving, api.Served(sv))
	}
	out.Trained = m.Trained
	return out, nil
}

// hasLabel reports whether label is one of the spec's labels.
func hasLabel(spec *api.ModelSpec, label string) bool { return slices.Contains(spec.Labels, label) }
