package training

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/sdk/sdktest"
)

// ErrInvalidSpec marks a model spec that does not fit its backbone or PEFT type.
var ErrInvalidSpec = errors.New("invalid model spec")

// ErrPluginUnavailable marks a plugin that could not answer: it did not start, crashed or
// timed out, its binary no longer matches its checksum, or the plugin host is closed. That is
// the server's trouble, not the spec's (an unknown plugin name, or a config the plugin
// refuses, is ErrInvalidSpec).
var ErrPluginUnavailable = errors.New("plugin unavailable")

// ErrPluginFailed marks a plugin that answered with an error of its own that is not about the
// spec (a plain error, a panic, a deadline of its own), or with an answer that breaks its
// contract (a selector's sequences that are not distinct permutations of the slices): the
// plugin's fault, neither the spec's nor the host's.
var ErrPluginFailed = errors.New("plugin failed")

// PluginError wraps an error of the plugin called name ("peft.type" or "s3t.selector" for
// what), keeping err's chain: in ErrPluginUnavailable when the plugin host failed to get an
// answer; in ErrInvalidSpec when the plugin is unknown or of another kind, or refused the spec
// (its config, the backbone, the request: the sdk's sentinels for those); in ErrPluginFailed
// otherwise. (Every error of a plugin used to read as an invalid spec, its panics included.)
func PluginError(what, name string, err error) error {
	for _, host := range []error{plugins.ErrStart, plugins.ErrCrashed, plugins.ErrTimeout, plugins.ErrTampered, plugins.ErrNotInstalled, plugins.ErrClosed} {
		if errors.Is(err, host) {
			return fmt.Errorf("%w: %s %q: %w", ErrPluginUnavailable, what, name, err)
		}
	}
	for _, spec := range []error{plugins.ErrNotFound, plugins.ErrKind, sdk.ErrInvalidConfig, sdk.ErrUnsupportedBackbone, sdk.ErrInvalidManifest, sdk.ErrInvalidRequest} {
		if errors.Is(err, spec) {
			return fmt.Errorf("%w: %s %q: %w", ErrInvalidSpec, what, name, err)
		}
	}
	return fmt.Errorf("%w: %s %q: %w", ErrPluginFailed, what, name, err)
}

// Planner makes a PEFT plugin's plan and names the plugin's build that made it
// (plugins.Manager.PlanRef); nil: the built-ins, in process.
type Planner func(ctx context.Context, name string, req *sdk.PlanRequest) (*sdk.PlanResponse, api.PluginRef, error)

// CheckPluginPlan checks a plan of a PEFT plugin that does not ship with s3t on the backbone b
// (manifest man) before a model is made of it, as the plugin authors' conformance suite does
// (sdktest.CheckPlan, with the trainer's own check): with every parameter off the outputs are
// the backbone's (METHOD.md: "off" is exactly the identity), every planned block changes them
// away from off, the init values give finite outputs, and the trainer can import the spliced
// model and gets a gradient for every parameter. Without it, a plan the trainer cannot import
// failed only when the model trained, and one whose "off" is not the identity trained as if it
// were. Backbones whose manifest reads packed weights (sliced edges) are not checked here.
func CheckPluginPlan(ctx context.Context, name string, b *backbone.Model, man *sdk.Manifest, plan *sdk.PlanResponse) error {
	for _, blk := range man.Blocks {
		for _, e := range blk.Edges {
			if e.Slice != nil {
				return nil
			}
		}
	}
	if _, err := sdktest.CheckPlan(ctx, sdktest.Backbone{Name: "model backbone", Model: b, Manifest: man}, name, plan,
		sdktest.WithTrainCheck(adapters.CheckTrainable)); err != nil {
		return fmt.Errorf("the plan fails its checks: %w", err)
	}
	return nil
}

// NewRecord derives a model's Record from its spec and its backbone's ONNX bytes: the pinned
// SHA-256, the data input, the head input (spec.HeadInput, or "features" when the backbone
// has that output, else its first output) and the PEFT plugin's plan, checked against the
// backbone's manifest, with the plugin's build (PlannedBy.PEFT; the caller sets the selector's).
// Errors about the spec wrap ErrInvalidSpec.
func NewRecord(ctx context.Context, spec api.ModelSpec, onnx []byte, plan Planner) (*Record, error) {
	sum := sha256.Sum256(onnx)
	rec := &Record{ModelSpec: spec, BackboneSHA256: hex.EncodeToString(sum[:])}
	b, err := backbone.LoadBytes(onnx)
	if err != nil {
		return nil, fmt.Errorf("backbone %q: %w", spec.Backbone, err)
	}
	man, err := backbone.DetectManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: backbone %q has no manifest PEFT types can use: %v", ErrInvalidSpec, spec.Backbone, err)
	}
	ins := b.Inputs()
	if len(ins) != 1 || len(ins[0].Shape) < 2 || ins[0].DType != sdk.DTypeFloat32 {
		return nil, fmt.Errorf("%w: backbone %q: want one float32 data input [batch, ...], got %d inputs", ErrInvalidSpec, spec.Backbone, len(ins))
	}
	rec.InputName = ins[0].Name
	for _, d := range ins[0].Shape[1:] {
		if !d.Known() {
			return nil, fmt.Errorf("%w: backbone %q: input %q has a symbolic dimension besides the batch axis", ErrInvalidSpec, spec.Backbone, ins[0].Name)
		}
		rec.InputShape = append(rec.InputShape, d.Size)
	}
	outs := b.Outputs()
	if rec.HeadInput == "" {
		rec.HeadInput = outs[0].Name
		if slices.ContainsFunc(outs, func(o backbone.ValueInfo) bool { return o.Name == "features" }) {
			rec.HeadInput = "features"
		}
	} else if !slices.ContainsFunc(outs, func(o backbone.ValueInfo) bool { return o.Name == rec.HeadInput }) {
		return nil, fmt.Errorf("%w: head_input %q is not an output of backbone %q", ErrInvalidSpec, rec.HeadInput, spec.Backbone)
	}
	name := plugins.QualifiedName(sdk.KindPEFT, spec.PEFT.Type)
	req := &sdk.PlanRequest{Manifest: *man, Config: spec.PEFT.Config}
	p, builtin := plugins.Builtins().Lookup(name)
	var ref api.PluginRef
	switch {
	case plan != nil:
		rec.Plan, ref, err = plan(ctx, name, req)
	case builtin && p.PEFT != nil:
		rec.Plan, err = p.PEFT.Plan(ctx, req)
		ref = api.PluginRef{Name: name, Version: p.Version} // in process: no executable of its own
	default:
		return nil, fmt.Errorf("%w: peft.type %q is not a built-in PEFT type (lora, prefix, adapter) and no plugin host is configured", ErrInvalidSpec, spec.PEFT.Type)
	}
	if err != nil {
		return nil, PluginError("peft.type", spec.PEFT.Type, err)
	}
	if err := sdk.ValidatePlan(man, rec.Plan); err != nil {
		return nil, fmt.Errorf("%w: peft %q: %v", ErrInvalidSpec, spec.PEFT.Type, err)
	}
	if !builtin {
		if err := CheckPluginPlan(ctx, name, b, man, rec.Plan); err != nil {
			return nil, fmt.Errorf("%w: peft %q: %v", ErrInvalidSpec, spec.PEFT.Type, err)
		}
	}
	// The plugin's full name, which scopes its parameters ("peft.lora/3/query/A", as sdk
	// documents): a record kept the type as the spec spelled it, so a "lora" model's parameters
	// were "lora/3/query/A", and ExportPEFT took its checkpoints for the legacy local LoRA type.
	// Models recorded before keep their type, and with it their checkpoints' names.
	rec.PEFT.Type, rec.PEFT.Config = name, rec.Plan.Config
	rec.PlannedBy = &api.PlannedBy{PEFT: ref}
	return rec, nil
}
