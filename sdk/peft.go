package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// PEFT is a parameter-efficient fine-tuning type (LoRA, prefix tuning, a bottleneck adapter,
// ...) described as data: the host never runs plugin code on a hot path. Given a backbone
// manifest and a config, Plan returns, per block, the new parameters and for each edge it
// rewrites an ONNX subgraph f(edge value, params) -> new value; the host splices those into the
// backbone and runs the result in ONNX Runtime (serving) and GoMLX (training).
//
// Both methods are deterministic: the same request gives the same response. Implementations
// must honour ctx.
type PEFT interface {
	// Describe says what the PEFT type is and which config it takes.
	Describe(ctx context.Context, req *DescribeRequest) (*DescribeResponse, error)
	// Plan returns the parameters and rewrites for a backbone. A config the plugin rejects is an
	// error wrapping ErrInvalidConfig; a backbone that lacks the edges the config needs is an
	// error wrapping ErrUnsupportedBackbone.
	Plan(ctx context.Context, req *PlanRequest) (*PlanResponse, error)
}

// Errors a PEFT plugin returns; they keep their identity across the process boundary, so a
// host tests them with errors.Is.
var (
	// ErrInvalidConfig means a config is not valid JSON for the plugin's schema or holds values
	// the plugin rejects.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrUnsupportedBackbone means the manifest lacks what the PEFT type needs (for example
	// attention keys and values for prefix tuning).
	ErrUnsupportedBackbone = errors.New("backbone not supported")
	// ErrInvalidPlan means a plan breaks the contract (see ValidatePlan).
	ErrInvalidPlan = errors.New("invalid plan")
)

// DescribeRequest is the input of PEFT.Describe. It has no fields yet.
type DescribeRequest struct{}

// DescribeResponse is the output of PEFT.Describe.
type DescribeResponse struct {
	// Name is the plugin's namespaced id, e.g. "peft.lora"; it equals the name it is served
	// under.
	Name string `json:"name"`
	// Version is the plugin's version, e.g. "1.0.0".
	Version string `json:"version"`
	// Description is one line for people.
	Description string `json:"description,omitempty"`
	// ConfigSchema is a JSON Schema document (draft 2020-12) of the config object Plan
	// accepts: {"type": "object", "properties": {...}}.
	ConfigSchema json.RawMessage `json:"config_schema"`
	// Defaults is the config Plan uses for every field a request leaves out; it is a JSON object
	// valid against ConfigSchema.
	Defaults json.RawMessage `json:"defaults"`
}

// PlanRequest is the input of PEFT.Plan.
type PlanRequest struct {
	// Manifest describes the backbone: its blocks, bottom to top, and their edges. Packed edges
	// (with a Slice) are unpacked by the host before it plans.
	Manifest Manifest `json:"manifest"`
	// Config is the plugin's config as a JSON object; fields left out take their defaults, and
	// an empty Config means the defaults.
	Config json.RawMessage `json:"config,omitempty"`
}

// PlanResponse is the output of PEFT.Plan: what to add to each block.
type PlanResponse struct {
	// Config is the config the plan was made with: the request's merged over the defaults, so
	// that it can be stored with the model and replayed.
	Config json.RawMessage `json:"config,omitempty"`
	// Blocks lists the blocks that get parameters, by increasing index; a block that gets none
	// may be left out.
	Blocks []BlockPlan `json:"blocks"`
	// Notes records choices people may want to know about (a block skipped, a fallback edge).
	Notes []string `json:"notes,omitempty"`
}

// BlockPlan is what a PEFT type adds to one block.
type BlockPlan struct {
	// Block is the block's index in the manifest.
	Block int `json:"block"`
	// Rewrites are the block's edge rewrites, at most one per edge.
	Rewrites []Rewrite `json:"rewrites"`
}

// Rewrite replaces one edge of a block by a subgraph computing its new value from the old one
// and new parameters.
type Rewrite struct {
	// Edge is the manifest's edge, copied unchanged (role, tensor, consumers).
	Edge Edge `json:"edge"`
	// Graph computes the edge's new value. Its Params hold each parameter's "off" value: the
	// value that makes Graph the identity, so that a spliced model with its parameters left at
	// their defaults computes exactly what the backbone computes.
	Graph Subgraph `json:"graph"`
	// Init says, for every parameter in Graph.Params (by local name), how training initialises
	// it. It may differ from the off value (LoRA: A is random, B starts at its off value 0).
	Init map[string]Init `json:"init"`
	// Dropout names values of Graph (by local name) to which a trainer applies inverted dropout
	// with the given rate while training, and only then: serving and the conformance checks
	// run the graph as it is. LoRA uses it for its dropout on A.
	Dropout map[string]float64 `json:"dropout,omitempty"`
}

// ParamSpec describes one parameter of a plan with its global name, as a host or a trainer
// sees it after splicing.
type ParamSpec struct {
	// Name is the parameter's name in the spliced model: Scope + the local name.
	Name string `json:"name"`
	// Block is the index of the block it belongs to.
	Block int `json:"block"`
	// Off is the parameter's "off" value (named Name).
	Off Tensor `json:"off"`
	// Init says how training initialises it.
	Init Init `json:"init"`
}

// Params lists every parameter of the plan with its global name, for a plugin called name.
func (p *PlanResponse) Params(plugin string) []ParamSpec {
	var out []ParamSpec
	for _, bp := range p.Blocks {
		for i, rw := range bp.Rewrites {
			scope := bp.Scope(plugin, i)
			for _, t := range rw.Graph.Params {
				off := t.Clone()
				off.Name = scope + t.Name
				out = append(out, ParamSpec{Name: off.Name, Block: bp.Block, Off: off, Init: rw.Init[t.Name]})
			}
		}
	}
	return out
}

// DecodeConfig decodes a JSON config object into dst, which holds the defaults: fields the
// config leaves out keep them. Unknown fields are rejected, so that a typo is an error rather
// than a silently ignored setting; an empty config leaves dst as it is. Errors wrap
// ErrInvalidConfig.
func DecodeConfig(config json.RawMessage, dst any) error {
	if len(bytes.TrimSpace(config)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the config object", ErrInvalidConfig)
	}
	return nil
}

// Describe builds a PEFT plugin's DescribeResponse from its JSON Schema text and its default
// config (any value that marshals to a JSON object).
func Describe(name, version, description, schema string, defaults any) (*DescribeResponse, error) {
	d, err := json.Marshal(defaults)
	if err != nil {
		return nil, fmt.Errorf("%s: defaults: %w", name, err)
	}
	return &DescribeResponse{Name: name, Version: version, Description: description,
		ConfigSchema: json.RawMessage(schema), Defaults: d}, nil
}
