package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/training"
	"github.com/s3t-dev/s3t/unlearning"
)

// openHost opens the plugin host over the data directory pluginData, for the commands that
// take --plugin-data; with pluginData empty it returns nil, and the callers use the built-ins in
// process. done closes the host.
func openHost(pluginData string, logger *slog.Logger) (mgr *plugins.Manager, done func(), err error) {
	if pluginData == "" {
		return nil, func() {}, nil
	}
	if mgr, err = plugins.Open(plugins.Config{DataDir: pluginData, Logger: logger}); err != nil {
		return nil, nil, err
	}
	return mgr, func() { mgr.Close() }, nil
}

// openSelector returns the sequence selector called name ("cyclic" or "selector.cyclic"): with
// no plugin host (mgr nil) a built-in, run in this process; otherwise the built-in or installed
// selector plugin through the host (out of process).
func openSelector(name string, mgr *plugins.Manager) (sdk.Selector, error) {
	if mgr == nil {
		sel, err := unlearning.NewSelector(name)
		if err != nil {
			return nil, fmt.Errorf("%w: --selector: %w; give --plugin-data to use an installed selector plugin", errUsage, err)
		}
		return sel, nil
	}
	sel, err := mgr.Selector(plugins.QualifiedName(sdk.KindSelector, name))
	if errors.Is(err, plugins.ErrNotFound) {
		err = fmt.Errorf("%w: --selector: %w", errUsage, err)
	}
	return sel, err
}

// planPEFT asks the PEFT plugin called name for its plan for the backbone, with config (a JSON
// object; empty for the plugin's defaults). With no plugin host (mgr nil), the plugin must be a
// built-in and its Plan runs in this process (plans are pure functions of manifest and config, so
// the result is the same as out of process). Otherwise the plan comes from the host: the plugin
// runs out of process (built-in or installed) and its plan is cached under the host's data
// directory. Either way the plan is checked against the manifest.
func planPEFT(ctx context.Context, name string, config json.RawMessage, bm *backbone.Model, man *backbone.Manifest, mgr *plugins.Manager) (*sdk.PlanResponse, error) {
	req := &sdk.PlanRequest{Manifest: *man, Config: config}
	var plan *sdk.PlanResponse
	if mgr == nil {
		p, ok := plugins.Builtins().Lookup(name)
		if !ok || p.PEFT == nil {
			return nil, fmt.Errorf("%w: --peft %q is not a built-in PEFT type (built-ins: lora, prefix, adapter); give --plugin-data to use an installed plugin",
				errUsage, name)
		}
		var err error
		if plan, err = p.PEFT.Plan(ctx, req); err != nil {
			return nil, planError(name, err)
		}
	} else {
		var err error
		if plan, err = mgr.Plan(ctx, name, req); err != nil {
			return nil, planError(name, err)
		}
	}
	if err := sdk.ValidatePlan(man, plan); err != nil {
		return nil, fmt.Errorf("plan %s: %w", name, err)
	}
	if _, builtin := plugins.Builtins().Lookup(name); !builtin {
		if err := training.CheckPluginPlan(ctx, name, bm, man, plan); err != nil {
			return nil, fmt.Errorf("plan %s: %w", name, err)
		}
	}
	return plan, nil
}

// planError marks a config the plugin rejects, or a backbone it cannot adapt, as a usage error.
func planError(name string, err error) error {
	if errors.Is(err, sdk.ErrInvalidConfig) || errors.Is(err, sdk.ErrUnsupportedBackbone) {
		return fmt.Errorf("%w: --peft %s: %w", errUsage, name, err)
	}
	return fmt.Errorf("plan %s: %w", name, err)
}

// loraFlagsConfig merges the LoRA shorthand flags that were set (--rank, --alpha, --targets)
// into a plugin config object. rank > 0, alpha > 0 and targets non-empty mean set; alpha
// defaults to 2 x rank when only the rank is set, as before plugins.
func loraFlagsConfig(config json.RawMessage, rank int, alpha float64, targets []string) (json.RawMessage, error) {
	obj := map[string]any{}
	if len(bytes.TrimSpace(config)) > 0 {
		if err := json.Unmarshal(config, &obj); err != nil {
			return nil, fmt.Errorf("%w: --peft-config is not a JSON object: %w", errUsage, err)
		}
	}
	if rank > 0 {
		obj["rank"] = rank
		if alpha == 0 {
			alpha = 2 * float64(rank)
		}
	}
	if alpha > 0 {
		obj["alpha"] = alpha
	}
	if len(targets) > 0 {
		obj["targets"] = targets
	}
	if len(obj) == 0 {
		return config, nil
	}
	return json.Marshal(obj)
}

// peftOf returns the PEFT type a model was trained with: its stored plan, or for a model.json
// written before plugins (no plan), the local LoRA its config describes.
func peftOf(mf *modelFile) adapters.PEFTType {
	if mf.Plan != nil {
		return adapters.Planned{Plugin: mf.PEFT.Type, Plan: mf.Plan}
	}
	roles := make([]backbone.Role, len(mf.PEFT.Targets))
	for i, t := range mf.PEFT.Targets {
		roles[i] = backbone.Role(t)
	}
	return adapters.LoRA{Rank: mf.PEFT.Rank, Alpha: mf.PEFT.Alpha, Targets: roles}
}
