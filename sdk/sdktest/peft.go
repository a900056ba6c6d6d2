package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
)

// Backbone is a backbone the suite checks plans on.
type Backbone struct {
	// Name says which form it is ("vit-fmnist", "vit-fmnist-canonical").
	Name string
	// Model is the model, packed weights unpacked.
	Model *backbone.Model
	// Manifest is its manifest.
	Manifest *sdk.Manifest
}

var backbones = sync.OnceValues(func() ([]Backbone, error) {
	m, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		return nil, err
	}
	canon, err := m.Canonicalize(context.Background())
	if err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	var out []Backbone
	for _, b := range []struct {
		name string
		m    *backbone.Model
	}{{"vit-fmnist", m}, {"vit-fmnist-canonical", canon}} {
		man, err := backbone.DetectManifest(b.m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.name, err)
		}
		model := b.m
		if slices.ContainsFunc(man.Blocks, func(blk sdk.Block) bool {
			return slices.ContainsFunc(blk.Edges, func(e sdk.Edge) bool { return e.Slice != nil })
		}) {
			if model, man, err = model.Unpack(man); err != nil {
				return nil, fmt.Errorf("%s: %w", b.name, err)
			}
		}
		out = append(out, Backbone{Name: b.name, Model: model, Manifest: man})
	}
	return out, nil
})

// Backbones returns the backbones the suite uses: the ViT that ships with s3t as exported
// (out_in weights read through Transpose) and canonicalized (in_out weights read by MatMul). They
// are built once per process.
func Backbones() ([]Backbone, error) { return backbones() }

// Report is what CheckPlan measured.
type Report struct {
	// Params counts the plan's parameters.
	Params int
	// OffDiff is the largest output difference with every parameter off (the larger of left at
	// the default and fed).
	OffDiff float64
	// BlockChange is, per planned block, the largest output difference when only that block's
	// parameters are away from off.
	BlockChange map[int]float64
}

// CheckPlan checks a plan's math on a backbone through ONNX Runtime (see the package
// documentation); plugin is the name parameter scopes use. The returned error lists every
// failed check; the Report holds the measurements.
func CheckPlan(ctx context.Context, bb Backbone, plugin string, plan *sdk.PlanResponse, opts ...Option) (*Report, error) {
	cfg := newConfig(opts)
	if err := sdk.ValidatePlan(bb.Manifest, plan); err != nil {
		return nil, err
	}
	spliced, params, err := bb.Model.SplicePlan(plugin, plan)
	if err != nil {
		return nil, err
	}
	rep := &Report{Params: len(params), BlockChange: map[int]float64{}}
	var probs []error
	fail := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }

	// The spliced model's defaults are the off values.
	defaults := map[string]bool{}
	for _, v := range spliced.Params() {
		defaults[v.Name] = true
	}
	names := make([]string, len(params))
	for i, p := range params {
		names[i] = p.Name
		if !defaults[p.Name] {
			fail("parameter %s is not an input with a default in the spliced model", p.Name)
			continue
		}
		got, err := spliced.Initializer(p.Name)
		if err != nil || !slices.Equal(got.Float32, p.Off.Float32) || !slices.Equal(got.Shape, p.Off.Shape) {
			fail("parameter %s: the spliced model's default is not the plan's off value", p.Name)
		}
	}
	origBytes, err := bb.Model.Bytes()
	if err != nil {
		return nil, err
	}
	splicedBytes, err := spliced.Bytes()
	if err != nil {
		return nil, err
	}
	orig, err := ort.NewSession(origBytes, ort.WithIntraOpThreads(1))
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	plain, err := ort.NewSession(splicedBytes, ort.WithIntraOpThreads(1))
	if err != nil {
		return nil, fmt.Errorf("the spliced model does not load in ONNX Runtime: %w", err)
	}
	defer plain.Close()
	fed, err := ort.NewSession(splicedBytes, ort.WithIntraOpThreads(1), ort.WithOptionalInputs(names...))
	if err != nil {
		return nil, fmt.Errorf("the spliced model does not load in ONNX Runtime with its parameters as inputs: %w", err)
	}
	defer fed.Close()

	inputs, err := ort.SyntheticInputs(orig, 3, 20250101)
	if err != nil {
		return nil, err
	}
	want, err := orig.Run(ctx, inputs)
	if err != nil {
		return nil, err
	}
	run := func(s *ort.Session, values map[string]sdk.Tensor) (map[string]ort.Tensor, error) {
		in := make(map[string]ort.Tensor, len(inputs)+len(values))
		for k, v := range inputs {
			in[k] = v
		}
		for k, v := range values {
			in[k] = ort.NewTensor(v.Float32, v.Shape...)
		}
		return s.Run(ctx, in)
	}
	off := map[string]sdk.Tensor{}
	for _, p := range params {
		off[p.Name] = p.Off
	}

	// Off, parameters left at their defaults and fed explicitly.
	for _, c := range []struct {
		what string
		s    *ort.Session
		vals map[string]sdk.Tensor
	}{{"left at their defaults", plain, nil}, {"fed", fed, off}} {
		got, err := run(c.s, c.vals)
		if err != nil {
			fail("off values %s: %w", c.what, err)
			continue
		}
		d, err := maxDiff(want, got)
		if err != nil {
			fail("off values %s: %w", c.what, err)
			continue
		}
		rep.OffDiff = max(rep.OffDiff, d)
		if d > cfg.tolerance {
			fail("with every parameter off (%s) the outputs differ from the backbone's by %.3g > %.3g", c.what, d, cfg.tolerance)
		}
	}

	// Away from off, one block at a time.
	for _, bp := range plan.Blocks {
		vals := map[string]sdk.Tensor{}
		for k, v := range off {
			vals[k] = v
		}
		for _, p := range params {
			if p.Block == bp.Block {
				vals[p.Name] = perturb(p.Off, sdk.SeedFor(7, p.Name))
			}
		}
		got, err := run(fed, vals)
		if err != nil {
			fail("block %d away from off: %w", bp.Block, err)
			continue
		}
		d, err := maxDiff(want, got)
		if err != nil {
			fail("block %d away from off: %w", bp.Block, err)
			continue
		}
		rep.BlockChange[bp.Block] = d
		if !(d >= cfg.minChange) {
			fail("block %d: parameters away from off change the outputs by only %.3g (want >= %.3g): the rewrite has no effect", bp.Block, d, cfg.minChange)
		}
	}

	// Init values are finite and give finite outputs.
	init := map[string]sdk.Tensor{}
	for _, p := range params {
		t, err := p.Init.Sample(p.Name, p.Off.Shape, sdk.SeedFor(1, p.Name))
		if err != nil {
			fail("parameter %s: init: %w", p.Name, err)
			continue
		}
		init[p.Name] = t
	}
	if got, err := run(fed, init); err != nil {
		fail("init values: %w", err)
	} else if _, err := maxDiff(want, got); err != nil {
		fail("init values: %w", err)
	}

	if cfg.trainCheck != nil {
		if err := cfg.trainCheck(ctx, splicedBytes, params); err != nil {
			fail("train check: %w", err)
		}
	}
	return rep, errors.Join(probs...)
}

// perturb returns off plus uniform noise in [-0.5, 0.5), deterministic for seed.
func perturb(off sdk.Tensor, seed uint64) sdk.Tensor {
	noise, _ := sdk.Uniform(-0.5, 0.5).Sample(off.Name, off.Shape, seed)
	for i := range noise.Float32 {
		noise.Float32[i] += off.Float32[i]
	}
	return noise
}

// maxDiff returns the largest absolute difference between float32 outputs, failing on a
// missing output, a shape mismatch or a value that is not finite.
func maxDiff(want, got map[string]ort.Tensor) (float64, error) {
	d := 0.0
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			return 0, fmt.Errorf("output %q missing", name)
		}
		wv, err := ort.Values[float32](w)
		if err != nil {
			continue
		}
		gv, err := ort.Values[float32](g)
		if err != nil || !slices.Equal(w.Shape, g.Shape) {
			return 0, fmt.Errorf("output %q: shape %v, want %v", name, g.Shape, w.Shape)
		}
		for i := range wv {
			x := math.Abs(float64(gv[i]) - float64(wv[i]))
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return 0, fmt.Errorf("output %q: value %v is not finite", name, gv[i])
			}
			d = max(d, x)
		}
	}
	return d, nil
}

// RunPEFT runs the PEFT checks on an implementation in-process (no plugin process); name is
// the plugin's id. TestPEFT runs the same checks on a plugin process.
func RunPEFT(t *testing.T, name string, impl sdk.PEFT, opts ...Option) {
	t.Helper()
	cfg := newConfig(opts)
	ctx := context.Background()
	t.Run("describe", func(t *testing.T) {
		d, err := impl.Describe(ctx, &sdk.DescribeRequest{})
		if err != nil {
			t.Fatalf("Describe: %v", err)
		}
		if d.Name != name {
			t.Errorf("Describe says the name is %q, the plugin is served as %q", d.Name, name)
		}
		if d.Version == "" {
			t.Error("Describe gives no version")
		}
		var schema map[string]any
		if err := json.Unmarshal(d.ConfigSchema, &schema); err != nil {
			t.Fatalf("config schema is not a JSON object: %v", err)
		}
		if typ, ok := schema["type"]; ok && typ != "object" {
			t.Errorf("config schema type %v, want object", typ)
		}
		var defaults map[string]any
		if err := json.Unmarshal(d.Defaults, &defaults); err != nil {
			t.Fatalf("defaults are not a JSON object: %v", err)
		}
		if props, ok := schema["properties"].(map[string]any); ok {
			for k := range defaults {
				if _, ok := props[k]; !ok {
					t.Errorf("default %q is not a property of the config schema", k)
				}
			}
		}
		bbs, err := Backbones()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := impl.Plan(ctx, &sdk.PlanRequest{Manifest: *bbs[0].Manifest, Config: d.Defaults}); err != nil {
			t.Errorf("Plan with the described defaults: %v", err)
		}
	})
	t.Run("invalid-config", func(t *testing.T) {
		bbs, err := Backbones()
		if err != nil {
			t.Fatal(err)
		}
		_, err = impl.Plan(ctx, &sdk.PlanRequest{Manifest: *bbs[0].Manifest, Config: json.RawMessage(`[1, 2]`)})
		if !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("Plan with a config that is not an object: got %v, want an error wrapping sdk.ErrInvalidConfig", err)
		}
	})
	bbs, err := Backbones()
	if err != nil {
		t.Fatalf("sdktest: backbones: %v", err)
	}
	configs := append([]json.RawMessage{nil}, cfg.configs...)
	for _, bb := range bbs {
		for ci, conf := range configs {
			label := "default"
			if ci > 0 {
				label = fmt.Sprintf("config%d", ci)
			}
			t.Run(bb.Name+"/"+label, func(t *testing.T) {
				req := &sdk.PlanRequest{Manifest: *bb.Manifest, Config: conf}
				plan, err := impl.Plan(ctx, req)
				if err != nil {
					t.Fatalf("Plan(%s): %v", conf, err)
				}
				again, err := impl.Plan(ctx, req)
				if err != nil {
					t.Fatalf("Plan again: %v", err)
				}
				a, _ := json.Marshal(plan)
				b, _ := json.Marshal(again)
				if !bytes.Equal(a, b) {
					t.Errorf("Plan is not deterministic: two calls with the same request differ")
				}
				rep, err := CheckPlan(ctx, bb, name, plan, opts...)
				if rep != nil {
					t.Logf("%d parameters in %d blocks; off: max |diff| %.3g; away from off, per block: %v",
						rep.Params, len(plan.Blocks), rep.OffDiff, rep.BlockChange)
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestPEFT runs the PEFT conformance checks on the plugin that cmd starts, as a real process
// under the s3t host's Client (SHA-256 checked, go-plugin over gRPC).
func TestPEFT(t *testing.T, cmd plugins.Command, opts ...Option) {
	t.Helper()
	cfg := newConfig(opts)
	c := start(t, cmd, cfg)
	in := info(t, c, sdk.KindPEFT, cfg)
	RunPEFT(t, in.Name, c.PEFT(), opts...)
	t.Run("restart", func(t *testing.T) {
		// A new process plans the same.
		bbs, err := Backbones()
		if err != nil {
			t.Fatal(err)
		}
		req := &sdk.PlanRequest{Manifest: *bbs[0].Manifest}
		first, err := c.PEFT().Plan(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		c2 := start(t, cmd, cfg)
		second, err := c2.PEFT().Plan(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(first)
		b, _ := json.Marshal(second)
		if !bytes.Equal(a, b) {
			t.Error("two processes of the plugin plan differently")
		}
	})
}
